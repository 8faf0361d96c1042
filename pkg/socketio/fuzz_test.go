package socketio

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzDecodePacket decodes arbitrary client packets as Node's parser would:
// no panic; an EVENT or ACK that decodes is encoded back by our encoder to
// a packet that decodes to the same thing (numbers stay exact: they are
// json.Number all the way); placeholders are either reconstructed from
// the attachments or refused.
func FuzzDecodePacket(f *testing.F) {
	for _, s := range []string{
		`0`, `0/tasks,{"token":"x"}`, `1/tasks,`, `2["ev",1,{"a":[true,null]}]`,
		`2/tasks,17["echo",12345678901234567890,{"id":9007199254740993}]`,
		`3/tasks,17[]`, `451-/tasks,["up",{"_placeholder":true,"num":0}]`,
		`61-3[{"_placeholder":true,"num":1}]`, `2["connect"]`, `2[]`, `9`, `2/tasks`,
		`4{"message":"x"}`, `2["a"]x`, `2 ["a"]`, `218446744073709551616["a"]`,
	} {
		f.Add([]byte(s), []byte{0, 1, 2})
	}
	f.Fuzz(func(t *testing.T, s, attachment []byte) {
		p, err := decodePacket(s, 2)
		if err != nil {
			return
		}
		if p.attachments > 2 {
			t.Fatalf("%d attachments over the bound", p.attachments)
		}
		data := p.data
		if p.attachments > 0 {
			att := make([][]byte, p.attachments)
			for i := range att {
				att[i] = attachment
			}
			if data, err = reconstruct(data, att); err != nil {
				return
			}
		}
		if p.typ != PacketEvent && p.typ != PacketAck && p.typ != PacketBinaryEvent && p.typ != PacketBinaryAck {
			return
		}
		arr, _ := data.([]any)
		out := &Packet{Type: p.typ, Nsp: p.nsp, Data: arr}
		if out.Type == PacketBinaryEvent {
			out.Type = PacketEvent
		} else if out.Type == PacketBinaryAck {
			out.Type = PacketAck
		}
		if p.hasID {
			id := p.id
			out.ID = &id
		}
		text, att, err := encodePacket(out)
		if err != nil {
			t.Fatalf("decoded %q does not encode: %v", s, err)
		}
		q, err := decodePacket(text, len(att)+1)
		if err != nil {
			t.Fatalf("%q → %q does not decode: %v", s, text, err)
		}
		back := q.data
		if len(att) > 0 {
			if back, err = reconstruct(back, att); err != nil {
				t.Fatalf("%q: %v", text, err)
			}
		}
		if q.nsp != p.nsp || q.hasID != p.hasID || q.id != p.id || !sameJSON(back, data) {
			t.Fatalf("%q → %q → %+v, want %+v", s, text, q, p)
		}
	})
}

// sameJSON compares decoded values, []byte included, numbers by their text.
func sameJSON(a, b any) bool {
	switch x := a.(type) {
	case json.Number:
		y, ok := b.(json.Number)
		return ok && x == y
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameJSON(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if !sameJSON(v, y[k]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}
