package engineio

import (
	"bytes"
	"encoding/base64"
	"errors"
)

// Engine.IO v4 packet types, as the byte that opens a text packet.
const (
	pOpen    = '0'
	pClose   = '1'
	pPing    = '2'
	pPong    = '3'
	pMessage = '4'
	pUpgrade = '5'
	pNoop    = '6'
)

// recordSeparator joins the packets of one HTTP long-polling payload.
const recordSeparator = '\x1e'

var errBadPacket = errors.New("engineio: invalid packet")

// packet is one decoded Engine.IO packet. For a binary message typ is
// pMessage and bin is true; data is the message without the type byte.
type packet struct {
	typ  byte
	bin  bool
	data []byte
}

// decodePayload splits a polling body into packets. It returns an error
// for any malformed packet, so that nothing of a bad payload is delivered.
func decodePayload(body []byte) ([]packet, error) {
	var out []packet
	for len(body) > 0 || out == nil {
		var p []byte
		if i := bytes.IndexByte(body, recordSeparator); i >= 0 {
			p, body = body[:i], body[i+1:]
			if len(body) == 0 {
				return nil, errBadPacket // trailing separator
			}
		} else {
			p, body = body, nil
		}
		pk, err := decodePacket(p, false)
		if err != nil {
			return nil, err
		}
		out = append(out, pk)
	}
	return out, nil
}

// decodePacket decodes one text packet; in a polling payload a packet
// that starts with 'b' is a base64 binary message.
func decodePacket(p []byte, websocket bool) (packet, error) {
	if len(p) == 0 {
		return packet{}, errBadPacket
	}
	if p[0] == 'b' && !websocket {
		d := make([]byte, base64.StdEncoding.DecodedLen(len(p)-1))
		n, err := base64.StdEncoding.Decode(d, p[1:])
		if err != nil {
			return packet{}, errBadPacket
		}
		return packet{typ: pMessage, bin: true, data: d[:n]}, nil
	}
	if p[0] < pOpen || p[0] > pNoop {
		return packet{}, errBadPacket
	}
	return packet{typ: p[0], data: p[1:]}, nil
}

// qpacket is a packet waiting in a polling queue: a text packet with its
// type byte, or the raw bytes of a binary message.
type qpacket struct {
	data []byte
	bin  bool
}

func (q qpacket) pollLen() int {
	if q.bin {
		return 1 + base64.StdEncoding.EncodedLen(len(q.data))
	}
	return len(q.data)
}

// appendPayload encodes queued packets as one polling payload.
func appendPayload(dst []byte, q []qpacket) []byte {
	for i, p := range q {
		if i > 0 {
			dst = append(dst, recordSeparator)
		}
		if p.bin {
			dst = append(dst, 'b')
			dst = base64.StdEncoding.AppendEncode(dst, p.data)
		} else {
			dst = append(dst, p.data...)
		}
	}
	return dst
}
