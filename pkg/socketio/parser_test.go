package socketio

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestDecodePacket(t *testing.T) {
	big := json.Number("12345678901234567890")
	cases := []struct {
		in   string
		want inPacket
		err  bool
	}{
		{in: "0", want: inPacket{typ: PacketConnect, nsp: "/"}},
		{in: `0/custom,{"token":"x"}`, want: inPacket{typ: PacketConnect, nsp: "/custom", data: map[string]any{"token": "x"}, hasData: true}},
		{in: "1/custom,", want: inPacket{typ: PacketDisconnect, nsp: "/custom"}},
		{in: `2["a",1]`, want: inPacket{typ: PacketEvent, nsp: "/", data: []any{"a", json.Number("1")}, hasData: true}},
		{in: `2/x,12["a",12345678901234567890]`, want: inPacket{typ: PacketEvent, nsp: "/x", id: 12, hasID: true, data: []any{"a", big}, hasData: true}},
		{in: `3/x,7["r"]`, want: inPacket{typ: PacketAck, nsp: "/x", id: 7, hasID: true, data: []any{"r"}, hasData: true}},
		{in: `51-["a",{"_placeholder":true,"num":0}]`, want: inPacket{typ: PacketBinaryEvent, nsp: "/", attachments: 1, data: []any{"a", map[string]any{"_placeholder": true, "num": json.Number("0")}}, hasData: true}},
		{in: `62-/x,3[]`, want: inPacket{typ: PacketBinaryAck, nsp: "/x", id: 3, hasID: true, attachments: 2, data: []any{}, hasData: true}},
		{in: `2[3,"numeric event"]`, want: inPacket{typ: PacketEvent, nsp: "/", data: []any{json.Number("3"), "numeric event"}, hasData: true}},
		{in: "", err: true},
		{in: "7", err: true},
		{in: "abc", err: true},
		{in: "2{}", err: true},
		{in: "2[]", err: true},
		{in: `2["disconnect"]`, err: true},
		{in: `2[true]`, err: true},
		{in: `2abc["a"]`, err: true},
		{in: `2["a"]x`, err: true},
		{in: `2["a"`, err: true},
		{in: `0"str"`, err: true},
		{in: `1{}`, err: true},
		{in: `3{}`, err: true},
		{in: `5x-["a"]`, err: true},
		{in: `50-["a"]`, err: true},
		{in: `511-["a"]`, err: true},
		{in: `51["a"]`, err: true},
		{in: `299999999999999999999["a"]`, err: true},
	}
	for _, c := range cases {
		got, err := decodePacket([]byte(c.in), 10)
		if c.err {
			if err == nil {
				t.Errorf("%q: want an error, got %+v", c.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q:\n got %#v\nwant %#v", c.in, got, c.want)
		}
	}
}

func TestReconstruct(t *testing.T) {
	p, err := decodePacket([]byte(`52-["a",{"x":[{"_placeholder":true,"num":1}]},{"_placeholder":true,"num":0}]`), 10)
	if err != nil {
		t.Fatal(err)
	}
	v, err := reconstruct(p.data, [][]byte{{1}, {2}})
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"a", map[string]any{"x": []any{[]byte{2}}}, []byte{1}}
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("got %#v", v)
	}
	for _, bad := range []string{
		`51-["a",{"_placeholder":true,"num":1}]`,
		`51-["a",{"_placeholder":true,"num":-1}]`,
		`51-["a",{"_placeholder":true,"num":"0"}]`,
		`51-["a",{"_placeholder":true}]`,
	} {
		p, err := decodePacket([]byte(bad), 10)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reconstruct(p.data, [][]byte{{1}}); err == nil {
			t.Errorf("%s: want an error", bad)
		}
	}
}

func TestEncodePacket(t *testing.T) {
	id := uint64(9)
	cases := []struct {
		p    Packet
		text string
		att  [][]byte
	}{
		{Packet{Type: PacketEvent, Nsp: "/", Data: []any{"a", 1, "<&>"}}, `2["a",1,"<&>"]`, nil},
		{Packet{Type: PacketEvent, Nsp: "/x", Data: []any{"a", json.Number("12345678901234567890")}, ID: &id}, `2/x,9["a",12345678901234567890]`, nil},
		{Packet{Type: PacketAck, Nsp: "/", ID: &id}, `39[]`, nil},
		{Packet{Type: PacketDisconnect, Nsp: "/x"}, `1/x,`, nil},
		{Packet{Type: PacketEvent, Nsp: "/", Data: []any{"a", []byte{1}, map[string]any{"b": []any{[]byte{2}}}}}, `52-["a",{"_placeholder":true,"num":0},{"b":[{"_placeholder":true,"num":1}]}]`, [][]byte{{1}, {2}}},
		{Packet{Type: PacketAck, Nsp: "/x", Data: []any{[]byte{3}}, ID: &id}, `61-/x,9[{"_placeholder":true,"num":0}]`, [][]byte{{3}}},
	}
	for _, c := range cases {
		text, att, err := encodePacket(&c.p)
		if err != nil {
			t.Fatal(err)
		}
		if string(text) != c.text || !reflect.DeepEqual(att, c.att) {
			t.Errorf("got %s %v, want %s %v", text, att, c.text, c.att)
		}
	}
	if _, _, err := encodePacket(&Packet{Type: PacketEvent, Data: []any{"a", func() {}}}); err == nil {
		t.Error("a func must not encode")
	}
}
