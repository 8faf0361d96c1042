package engineio

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
)

// WebSocket opcodes (RFC 6455).
const (
	opCont   = 0x0
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xa
)

// WebSocket close codes used here.
const (
	closeNormal      = 1000
	closeGoingAway   = 1001
	closeProtocol    = 1002
	closeInvalidData = 1007
	closeTooBig      = 1009
)

// appendFrameHeader appends an unmasked, final server frame header.
func appendFrameHeader(dst []byte, op byte, n int) []byte {
	dst = append(dst, 0x80|op)
	switch {
	case n <= 125:
		dst = append(dst, byte(n))
	case n <= 0xffff:
		dst = append(dst, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return dst
}

// frameHeaderLen is the length of a server frame header for n bytes.
func frameHeaderLen(n int) int {
	switch {
	case n <= 125:
		return 2
	case n <= 0xffff:
		return 4
	}
	return 10
}

// appendFrame appends a complete server frame; prefix (0 for none) is
// an Engine.IO packet type byte written before data.
func appendFrame(dst []byte, op, prefix byte, data []byte) []byte {
	n := len(data)
	if prefix != 0 {
		n++
	}
	dst = appendFrameHeader(dst, op, n)
	if prefix != 0 {
		dst = append(dst, prefix)
	}
	return append(dst, data...)
}

func closeFrame(code int) []byte {
	return []byte{0x80 | opClose, 2, byte(code >> 8), byte(code)}
}

var (
	framePing = []byte{0x80 | opText, 1, pPing}
)

// frameHeader is a parsed client frame header.
type frameHeader struct {
	fin    bool
	op     byte
	length int
	mask   [4]byte
	hlen   int
}

// parseFrameHeader reads a client frame header from b. ok is false when
// b does not hold the whole header yet; code is non-zero for a frame
// that must close the connection with that code.
func parseFrameHeader(b []byte, maxPayload int) (h frameHeader, ok bool, code int) {
	if len(b) < 2 {
		return h, false, 0
	}
	h.fin = b[0]&0x80 != 0
	h.op = b[0] & 0x0f
	if b[0]&0x70 != 0 || b[1]&0x80 == 0 {
		return h, true, closeProtocol // extension bits, or an unmasked client frame
	}
	l := uint64(b[1] & 0x7f)
	h.hlen = 2
	switch l {
	case 126:
		if len(b) < 4 {
			return h, false, 0
		}
		l = uint64(binary.BigEndian.Uint16(b[2:]))
		h.hlen = 4
	case 127:
		if len(b) < 10 {
			return h, false, 0
		}
		l = binary.BigEndian.Uint64(b[2:])
		h.hlen = 10
	}
	if h.op >= opClose && (l > 125 || !h.fin) {
		return h, true, closeProtocol
	}
	if l > uint64(maxPayload) {
		return h, true, closeTooBig
	}
	if len(b) < h.hlen+4 {
		return h, false, 0
	}
	copy(h.mask[:], b[h.hlen:])
	h.hlen += 4
	h.length = int(l)
	return h, true, 0
}

func unmask(b []byte, m [4]byte) {
	for i := range b {
		b[i] ^= m[i&3]
	}
}

func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}
