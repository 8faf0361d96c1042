package engineio

import (
	"testing"

	"golang.org/x/sys/unix"
)

// maskedFrame is a client frame with a zero mask.
func maskedFrame(b0 byte, payload string) []byte {
	f := []byte{b0, 0x80 | byte(len(payload)), 0, 0, 0, 0}
	return append(f, payload...)
}

func FuzzDecodePayload(f *testing.F) {
	for _, s := range []string{"4hello", "4a\x1e4b\x1ebAQIDBA==", "b", "\x1e", "abc", "1", "6\x1e3", "b!!"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		pks, err := decodePayload(body)
		if err == nil && len(pks) == 0 {
			t.Fatal("no packets and no error")
		}
	})
}

// FuzzFeed feeds arbitrary client bytes to a websocket: it must never
// panic, and a message it delivers must not exceed maxPayload.
func FuzzFeed(f *testing.F) {
	f.Add(maskedFrame(0x81, "4hi"))
	f.Add(append(maskedFrame(0x01, "4h"), maskedFrame(0x80, "i")...))
	f.Add(maskedFrame(0x89, "p"))
	f.Add(maskedFrame(0x88, "\x03\xe8"))
	f.Add(maskedFrame(0x82, "\x00\x01"))
	f.Add([]byte{0x81, 0xff, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{0x81, 0x7e, 0x10})
	s, err := NewServer(Config{MaxPayload: 64})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Shutdown(f.Context()) //nolint:errcheck
	f.Fuzz(func(t *testing.T, in []byte) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			t.Skip(err)
		}
		defer unix.Close(fds[1])
		c := &Conn{s: s, id: "fuzz", transport: tWebSocket, hbIdx: -1}
		c.OnMessage(func(data []byte, _ bool) {
			if len(data) > 64 {
				t.Fatalf("delivered %d bytes", len(data))
			}
		})
		w := &wsConn{c: c, p: s.pollers[0], fd: int32(fds[0])}
		c.ws = w
		for len(in) > 0 { // in two reads, to exercise an incomplete frame
			n := len(in)/2 + 1
			w.feed(append([]byte(nil), in[:n]...))
			in = in[n:]
		}
		c.mu.Lock()
		w.closeLocked(closeNormal)
		c.mu.Unlock()
	})
}
