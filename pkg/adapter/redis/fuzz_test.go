package redis

import (
	"encoding/hex"
	"math"
	"reflect"
	"testing"
)

// FuzzDecodeBroadcast decodes arbitrary broadcast messages as a peer
// (Node or Go) could publish them: no panic, no negative timeout, and
// what decodes encodes back to a message that decodes to the same thing.
func FuzzDecodeBroadcast(f *testing.F) {
	for _, h := range golden {
		b, _ := hex.DecodeString(h)
		f.Add(b)
	}
	// flags.timeout 1e300 ms, and 2^63 as a float: both overflowed.
	f.Add(mustHexF("93a178c081a5666c61677381a774696d656f7574cb7e37e43c8800759c"))
	f.Add(mustHexF("93a17883a47479706502a46461746191a161a26964cb43e0000000000000a5666c616773c0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeBroadcast(string(b))
		if err != nil {
			return
		}
		if m.opts.Flags.Timeout < 0 {
			t.Fatalf("negative timeout %v", m.opts.Flags.Timeout)
		}
		if m.packet == nil {
			return
		}
		if m.packet.ID != nil && *m.packet.ID > math.MaxInt64 {
			t.Fatalf("id %d out of range", *m.packet.ID)
		}
		rooms, except := optsRooms(m.opts)
		enc, err := encodeBroadcast(nil, m.uid, m.packet, rooms, except, &m.opts.Flags)
		if err != nil {
			return // a value the encoder refuses (too deep): an error, not a panic
		}
		m2, err := decodeBroadcast(string(enc))
		if err != nil {
			t.Fatalf("our encoding of %+v does not decode: %v", m, err)
		}
		if !reflect.DeepEqual(m2.packet, m.packet) {
			t.Fatalf("packet %+v came back as %+v", m.packet, m2.packet)
		}
	})
}

// FuzzDecodeRequest decodes arbitrary requests and responses (JSON or
// msgpack, as Node decides) and reads them the way onRequest does.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"uid":"A1b2C3","requestId":"Zz9_-x","type":0,"rooms":["r1"]}`,
		`{"uid":"A1b2C3","type":2,"opts":{"rooms":[],"except":[]},"rooms":["joined"]}`,
		`{"uid":"A1b2C3","requestId":"Zz9_-x","type":6,"data":["hello",1,{"a":true}]}`,
		`{"type":8,"requestId":"Zz9_-x","clientCount":9223372036854775808}`,
		`{"type":1e400}`, `[]`, `{`,
	} {
		f.Add([]byte(s))
	}
	for _, k := range []string{"broadcastRequest", "broadcastAck", "broadcastAckUndefined"} {
		b, _ := hex.DecodeString(golden[k])
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeObject(string(b))
		if err != nil {
			return
		}
		_, _ = toInt(req["type"])
		if n, ok := toInt(req["clientCount"]); ok {
			if f, isFloat := req["clientCount"].(float64); isFloat && f != float64(n) {
				t.Fatalf("clientCount %v read as %d", f, n)
			}
		}
		_, _ = toStr(req["requestId"])
		_ = wireOptsFrom(req["opts"])
		_ = toStrings(req["rooms"])
		if pm, ok := req["packet"].(map[string]any); ok {
			_, _ = packetFrom(pm)
		}
		if om, ok := req["opts"].(map[string]any); ok {
			if o := optsFrom(om); o.Flags.Timeout < 0 {
				t.Fatalf("negative timeout %v", o.Flags.Timeout)
			}
		}
	})
}

func mustHexF(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
