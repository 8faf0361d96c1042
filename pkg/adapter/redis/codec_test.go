package redis

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eventserver/eventserver/pkg/socketio"
)

// Golden bytes produced by Node's notepack.io 3.0.1 (the codec of
// @socket.io/redis-adapter 8.3.0 and @socket.io/redis-emitter 5.1.0), with
// `node -e` and require("notepack.io").encode(...).toString("hex"). The
// JS value of each is in its comment.
var golden = map[string]string{
	// ["A1b2C3", {type:2, data:["new_task", {id:12, parent_id:null}], nsp:"/tasks"}, {rooms:["collaboration_1"], except:[], flags:{}}]
	"roomBroadcast": "93a641316232433383a47479706502a46461746192a86e65775f7461736b82a269640ca9706172656e745f6964c0a36e7370a62f7461736b7383a5726f6f6d7391af636f6c6c61626f726174696f6e5f31a665786365707490a5666c61677380",
	// ["A1b2C3", {type:2, data:["hello"], nsp:"/"}, {rooms:[], except:["sidX"], flags:{volatile:true}}]
	"exceptVolatile": "93a641316232433383a47479706502a46461746191a568656c6c6fa36e7370a12f83a5726f6f6d7390a665786365707491a473696458a5666c61677381a8766f6c6174696c65c3",
	// ["A1b2C3", {type:2, data:["ev", 1], nsp:"/"}, {rooms:["a","b"], except:[], flags:{timeout:5000}}]
	"multiRoomTimeout": "93a641316232433383a47479706502a46461746192a2657601a36e7370a12f83a5726f6f6d7392a161a162a665786365707490a5666c61677381a774696d656f7574cd1388",
	// ["A1b2C3", {type:2, data:["bin", Buffer.from([0,1,2,255]), 1.5, -3, -200, 70000, 2**40, -(2**40), true, false,
	//   "a string longer than thirty-one chars", "héllo ✓ 😀"], nsp:"/"}, {rooms:[], except:[], flags:{}}]
	"binaryAndNumbers": "93a641316232433383a47479706502a4646174619ca362696ec404000102ffcb3ff8000000000000fdd1ff38ce00011170cf0000010000000000d3ffffff0000000000c3c2d9256120737472696e67206c6f6e676572207468616e207468697274792d6f6e65206368617273af68c3a96c6c6f20e29c9320f09f9880a36e7370a12f83a5726f6f6d7390a665786365707490a5666c61677380",
	// {uid:"A1b2C3", requestId:"Zz9_-x", type:7, packet:{type:2, data:["ping"], nsp:"/"}, opts:{rooms:[], except:[], flags:{timeout:1000}}}
	"broadcastRequest": "85a3756964a6413162324333a9726571756573744964a65a7a395f2d78a47479706507a67061636b657483a47479706502a46461746191a470696e67a36e7370a12fa46f70747383a5726f6f6d7390a665786365707490a5666c61677381a774696d656f7574cd03e8",
	// {type:9, requestId:"Zz9_-x", packet:"pong"}
	"broadcastAck": "83a47479706509a9726571756573744964a65a7a395f2d78a67061636b6574a4706f6e67",
	// {type:9, requestId:"Zz9_-x", packet:undefined}: notepack leaves the key out
	"broadcastAckUndefined": "82a47479706509a9726571756573744964a65a7a395f2d78",
	// ["x", undefined, null]: notepack 3 encodes undefined as nil
	"undefinedInArray": "93a178c0c0",
	// what @socket.io/redis-emitter 5.1.0 publishes for emitter.to("r").emit("ev", {a:[1,2,3]}):
	// ["emitter", {type:2, data:["ev", {a:[1,2,3]}], nsp:"/"}, {rooms:["r"], flags:{}, except:[]}]
	"emitter": "93a7656d697474657283a47479706502a46461746192a2657681a16193010203a36e7370a12f83a5726f6f6d7391a172a5666c61677380a665786365707490",
	// [new Date(1000), new Date(1500), new Date(2**34 * 1000)]: timestamp 32, 64 and 96
	"date": "93d6ff00000001d7ff7735940000000001c70cff000000000000000400000000",
}

func mustHex(t testing.TB, s string) string {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestEncodeMatchesNotepack(t *testing.T) {
	long := "a string longer than thirty-one chars"
	cases := []struct {
		name   string
		encode func() ([]byte, error)
	}{
		{"roomBroadcast", func() ([]byte, error) {
			p := &socketio.Packet{Type: socketio.PacketEvent, Nsp: "/tasks", Data: []any{"new_task", map[string]any{"id": 12, "parent_id": nil}}}
			return encodeBroadcast(nil, "A1b2C3", p, []string{"collaboration_1"}, []string{}, &socketio.BroadcastFlags{})
		}},
		{"exceptVolatile", func() ([]byte, error) {
			p := &socketio.Packet{Type: socketio.PacketEvent, Nsp: "/", Data: []any{"hello"}}
			f := &socketio.BroadcastFlags{}
			f.Volatile = true
			return encodeBroadcast(nil, "A1b2C3", p, nil, []string{"sidX"}, f)
		}},
		{"multiRoomTimeout", func() ([]byte, error) {
			p := &socketio.Packet{Type: socketio.PacketEvent, Nsp: "/", Data: []any{"ev", 1}}
			return encodeBroadcast(nil, "A1b2C3", p, []string{"a", "b"}, nil, &socketio.BroadcastFlags{Timeout: 5 * time.Second})
		}},
		{"binaryAndNumbers", func() ([]byte, error) {
			p := &socketio.Packet{Type: socketio.PacketEvent, Nsp: "/", Data: []any{"bin", []byte{0, 1, 2, 255}, 1.5, -3, int16(-200), uint32(70000),
				float64(1 << 40), int64(-(1 << 40)), true, false, long, "héllo ✓ 😀"}}
			return encodeBroadcast(nil, "A1b2C3", p, nil, nil, nil)
		}},
		{"broadcastRequest", func() ([]byte, error) {
			p := &socketio.Packet{Type: socketio.PacketEvent, Nsp: "/", Data: []any{"ping"}}
			return encodeBroadcastRequest("A1b2C3", "Zz9_-x", p, []string{}, []string{}, &socketio.BroadcastFlags{Timeout: time.Second})
		}},
		{"broadcastAck", func() ([]byte, error) { return encodeBroadcastAck("Zz9_-x", []any{"pong"}) }},
		{"broadcastAckUndefined", func() ([]byte, error) { return encodeBroadcastAck("Zz9_-x", nil) }},
		{"emitter", nil}, // key order differs (Node's emitter puts flags before except); decode only
	}
	for _, c := range cases {
		if c.encode == nil {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			got, err := c.encode()
			if err != nil {
				t.Fatal(err)
			}
			if want := golden[c.name]; hex.EncodeToString(got) != want {
				t.Errorf("encoded\n got %x\nwant %s", got, want)
			}
		})
	}
}

func TestDecodeNotepackGolden(t *testing.T) {
	t.Run("roomBroadcast", func(t *testing.T) {
		m, err := decodeBroadcast(mustHex(t, golden["roomBroadcast"]))
		if err != nil {
			t.Fatal(err)
		}
		if m.uid != "A1b2C3" || m.packet.Type != socketio.PacketEvent || m.packet.Nsp != "/tasks" || m.packet.ID != nil {
			t.Fatalf("message %+v packet %+v", m, m.packet)
		}
		want := []any{"new_task", map[string]any{"id": int64(12), "parent_id": nil}}
		if !reflect.DeepEqual(m.packet.Data, want) {
			t.Errorf("data %#v", m.packet.Data)
		}
		if r := sortedRooms(m.opts.Rooms); !reflect.DeepEqual(r, []string{"collaboration_1"}) || len(m.opts.Except) != 0 {
			t.Errorf("rooms %v except %v", r, m.opts.Except)
		}
	})
	t.Run("flags", func(t *testing.T) {
		m, err := decodeBroadcast(mustHex(t, golden["exceptVolatile"]))
		if err != nil {
			t.Fatal(err)
		}
		if !m.opts.Flags.Volatile || !slices.Contains(m.opts.Except, "sidX") || len(m.opts.Rooms) != 0 {
			t.Errorf("opts %+v", m.opts)
		}
		m, err = decodeBroadcast(mustHex(t, golden["multiRoomTimeout"]))
		if err != nil {
			t.Fatal(err)
		}
		if m.opts.Flags.Timeout != 5*time.Second {
			t.Errorf("timeout %v: flags.timeout is milliseconds on the wire", m.opts.Flags.Timeout)
		}
	})
	t.Run("binaryAndNumbers", func(t *testing.T) {
		m, err := decodeBroadcast(mustHex(t, golden["binaryAndNumbers"]))
		if err != nil {
			t.Fatal(err)
		}
		want := []any{"bin", []byte{0, 1, 2, 255}, 1.5, int64(-3), int64(-200), int64(70000), int64(1 << 40), int64(-(1 << 40)),
			true, false, "a string longer than thirty-one chars", "héllo ✓ 😀"}
		if !reflect.DeepEqual(m.packet.Data, want) {
			t.Errorf("data\n got %#v\nwant %#v", m.packet.Data, want)
		}
		if _, ok := m.packet.Data[1].([]byte); !ok {
			t.Error("the local encoder would not see the binary part")
		}
	})
	t.Run("broadcastRequest", func(t *testing.T) {
		req, err := decodeObject(mustHex(t, golden["broadcastRequest"]))
		if err != nil {
			t.Fatal(err)
		}
		if req["uid"] != "A1b2C3" || req["requestId"] != "Zz9_-x" || req["type"] != int64(typeBroadcast) {
			t.Errorf("request %#v", req)
		}
		p, err := packetFrom(req["packet"].(map[string]any))
		if err != nil || p.Nsp != "/" || !reflect.DeepEqual(p.Data, []any{"ping"}) {
			t.Errorf("packet %+v %v", p, err)
		}
		o := optsFrom(req["opts"].(map[string]any))
		if o.Flags.Timeout != time.Second {
			t.Errorf("timeout %v", o.Flags.Timeout)
		}
	})
	t.Run("broadcastAck", func(t *testing.T) {
		r, err := decodeObject(mustHex(t, golden["broadcastAck"]))
		if err != nil || r["packet"] != "pong" || r["type"] != int64(9) {
			t.Errorf("%#v %v", r, err)
		}
		r, err = decodeObject(mustHex(t, golden["broadcastAckUndefined"]))
		if _, has := r["packet"]; err != nil || has {
			t.Errorf("%#v %v", r, err)
		}
	})
	t.Run("undefined", func(t *testing.T) {
		// notepack 3 encodes undefined as nil...
		v, err := decodeMsgpack(mustHex(t, golden["undefinedInArray"]))
		if err != nil || !reflect.DeepEqual(v, []any{"x", nil, nil}) {
			t.Errorf("%#v %v", v, err)
		}
		// ...and decodes fixext 1 of type 0, the older encoding of
		// undefined, which we must accept as nil.
		v, err = decodeMsgpack(mustHex(t, "93a178d40000c0"))
		if err != nil || !reflect.DeepEqual(v, []any{"x", nil, nil}) {
			t.Errorf("%#v %v", v, err)
		}
	})
	t.Run("emitter", func(t *testing.T) {
		m, err := decodeBroadcast(mustHex(t, golden["emitter"]))
		if err != nil {
			t.Fatal(err)
		}
		if m.uid != "emitter" || !slices.Contains(m.opts.Rooms, "r") || len(m.opts.Except) != 0 {
			t.Errorf("%+v", m)
		}
		want := []any{"ev", map[string]any{"a": []any{int64(1), int64(2), int64(3)}}}
		if !reflect.DeepEqual(m.packet.Data, want) {
			t.Errorf("data %#v", m.packet.Data)
		}
	})
	t.Run("date", func(t *testing.T) {
		v, err := decodeMsgpack(mustHex(t, golden["date"]))
		if err != nil {
			t.Fatal(err)
		}
		want := []any{jsDate{time.UnixMilli(1000).UTC()}, jsDate{time.UnixMilli(1500).UTC()}, jsDate{time.Unix(1<<34, 0).UTC()}}
		if !reflect.DeepEqual(v, want) {
			t.Errorf("got %v want %v", v, want)
		}
		// notepack's legacy Date, fixext 8 of type 0: milliseconds.
		v, err = decodeMsgpack(mustHex(t, "d70000000000000003e8"))
		if err != nil || !v.(jsDate).Equal(time.UnixMilli(1000)) {
			t.Errorf("%v %v", v, err)
		}
	})
	// The JSON a client gets is what JSON.stringify gives in Node
	// (node -e 'console.log(JSON.stringify([new Date(1000), ...]))').
	t.Run("date JSON", func(t *testing.T) {
		cases := []struct {
			hex  string
			want string
		}{
			{"d6ff00000001", `"1970-01-01T00:00:01.000Z"`},
			{"d7ff7735940000000001", `"1970-01-01T00:00:01.500Z"`},
			// 253402300800 s: year 10000, which time.Time's JSON refuses.
			{"c70cff000000000000003afff44180", `"+010000-01-01T00:00:00.000Z"`},
			// 8.64e12 s: the last Date; one second more is an Invalid Date.
			{"c70cff00000000000007dba8218000", `"+275760-09-13T00:00:00.000Z"`},
			{"c70cff00000000000007dba8218001", `null`},
			// the fuzzer's: second 0x303030303030303 (an Invalid Date)
			{"c70cff303030303030303030303030", `null`},
			// negative years
			{"c70cff00000000fffffff184aa5080", `"-000001-01-01T00:00:00.000Z"`},
		}
		for _, c := range cases {
			v, err := decodeMsgpack(mustHex(t, c.hex))
			if err != nil {
				t.Errorf("%s: %v", c.hex, err)
				continue
			}
			got, err := json.Marshal(v)
			if err != nil || string(got) != c.want {
				t.Errorf("%s: %s %v, want %s", c.hex, got, err, c.want)
			}
		}
	})
}

// TestLargeContainers: 16-bit and 32-bit headers, both ways.
func TestLargeContainers(t *testing.T) {
	// notepack.encode([[0,1000,...,19000], {k00:0,...,k16:16}, "x".repeat(300), Buffer.alloc(300, 7)])
	arr := make([]any, 20)
	for i := range arr {
		arr[i] = int64(i * 1000)
	}
	m := map[string]any{}
	for i := range 17 {
		m["k"+string(rune('0'+i/10))+string(rune('0'+i%10))] = int64(i)
	}
	v := []any{arr, m, strings.Repeat("x", 300), bytes.Repeat([]byte{7}, 300)}
	enc, err := appendValue(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	want := "94dc0014" + "00cd03e8cd07d0cd0bb8cd0fa0cd1388cd1770cd1b58cd1f40cd2328cd2710cd2af8cd2ee0cd32c8cd36b0cd3a98cd3e80cd4268cd4650cd4a38" +
		"de0011a36b303000a36b303101a36b303202a36b303303a36b303404a36b303505a36b303606a36b303707a36b303808a36b303909a36b31300aa36b31310ba36b31320ca36b31330da36b31340ea36b31350fa36b313610" +
		"da012c" + strings.Repeat("78", 300) + "c5012c" + strings.Repeat("07", 300)
	if hex.EncodeToString(enc) != want {
		t.Errorf("encoded\n got %x\nwant %s", enc, want)
	}
	back, err := decodeMsgpack(string(enc))
	if err != nil || !reflect.DeepEqual(back, v) {
		t.Errorf("round trip: %v", err)
	}
	big := make([]any, 70000)
	for i := range big {
		big[i] = true
	}
	enc, err = appendValue(nil, big)
	if err != nil || enc[0] != 0xdd {
		t.Fatalf("array 32: %x %v", enc[:5], err)
	}
	if back, err := decodeMsgpack(string(enc)); err != nil || len(back.([]any)) != 70000 {
		t.Errorf("array 32 back: %v", err)
	}
}

// TestEncodeGoValues: what Go code hands to Emit arrives as JSON would
// carry it, binary kept.
func TestEncodeGoValues(t *testing.T) {
	type inner struct {
		Name string `json:"name"`
		Skip string `json:"-"`
		Opt  *int   `json:"opt,omitempty"`
	}
	when := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	in := []any{
		inner{Name: "n", Skip: "x"},
		&inner{Name: "p"},
		map[string]int{"b": 2, "a": 1},
		map[int]string{1: "one"},
		[]string{"s"},
		[2]int{1, 2},
		json.RawMessage(`{"raw":[1,2.5]}`),
		json.Number("42"),
		when,
		bytes.NewBufferString("bytes"),
		strings.NewReader("reader"),
		(*inner)(nil),
		uint64(math.MaxUint64),
		float32(0.5),
		3.0,
		math.Inf(1),
	}
	enc, err := appendValue(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeMsgpack(string(enc))
	if err != nil {
		t.Fatal(err)
	}
	want := []any{
		map[string]any{"name": "n"},
		map[string]any{"name": "p"},
		map[string]any{"a": int64(1), "b": int64(2)},
		map[string]any{"1": "one"},
		[]any{"s"},
		[]any{int64(1), int64(2)},
		map[string]any{"raw": []any{int64(1), 2.5}},
		int64(42),
		"2024-05-06T07:08:09Z",
		[]byte("bytes"),
		"reader",
		nil,
		uint64(math.MaxUint64),
		0.5,
		int64(3), // a JS number: integral is an integer
		math.Inf(1),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("\n got %#v\nwant %#v", got, want)
	}
	for _, bad := range []any{make(chan int), func() {}, complex(1, 2)} {
		if _, err := appendValue(nil, []any{bad}); err == nil {
			t.Errorf("%T encoded", bad)
		}
	}
	cyclic := []any{nil}
	cyclic[0] = cyclic
	if _, err := appendValue(nil, cyclic); err == nil {
		t.Error("cyclic value encoded")
	}
}

// TestDecodeMalformed: truncated, trailing or hostile input is an error,
// never a panic or a huge allocation.
func TestDecodeMalformed(t *testing.T) {
	for _, h := range []string{
		"", "c1", "93a178", "92c0c0c0", "dd7fffffff", "df7fffffff", "db7fffffff61", "c6ffffffff",
		"d9", "cd01", "c7ff00", strings.Repeat("91", 200) + "c0",
	} {
		if v, err := decodeMsgpack(mustHex(t, h)); err == nil {
			t.Errorf("%s decoded as %#v", h, v)
		}
	}
	for _, payload := range []string{"", "{", "{}", "[1]", mustHex(t, "93c0c0c0"), mustHex(t, "93a175c0a3626164"), mustHex(t, "93a17581a474797065a178c0")} {
		if m, err := decodeBroadcast(payload); err == nil && m.packet != nil {
			t.Errorf("%q decoded as %+v", payload, m)
		}
	}
}

func FuzzDecodeMsgpack(f *testing.F) {
	for _, h := range golden {
		b, _ := hex.DecodeString(h)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeMsgpack(string(b))
		if err != nil {
			return
		}
		if _, err := appendValue(nil, v); err != nil {
			t.Errorf("decoded value does not encode: %v", err)
		}
	})
}

// TestJSONMatchesNode: the JSON requests and responses are byte for byte
// what Node's JSON.stringify produces for the same objects.
func TestJSONMatchesNode(t *testing.T) {
	opts := socketio.BroadcastOptions{Rooms: []string{"a"}, Except: []string{"b"}}
	cases := []struct {
		v    any
		want string
	}{
		{socketsRequest{"A1b2C3", "Zz9_-x", typeSockets, []string{"r1"}}, `{"uid":"A1b2C3","requestId":"Zz9_-x","type":0,"rooms":["r1"]}`},
		{allRoomsRequest{"A1b2C3", "Zz9_-x", typeAllRooms}, `{"uid":"A1b2C3","requestId":"Zz9_-x","type":1}`},
		{roomsRequest{"A1b2C3", typeRemoteJoin, newWireOpts(socketio.BroadcastOptions{}), []string{"joined"}}, `{"uid":"A1b2C3","type":2,"opts":{"rooms":[],"except":[]},"rooms":["joined"]}`},
		{roomsRequest{"A1b2C3", typeRemoteLeave, newWireOpts(opts), []string{"left"}}, `{"uid":"A1b2C3","type":3,"opts":{"rooms":["a"],"except":["b"]},"rooms":["left"]}`},
		{disconnectRequest{"A1b2C3", typeRemoteDisconnect, newWireOpts(socketio.BroadcastOptions{}), true}, `{"uid":"A1b2C3","type":4,"opts":{"rooms":[],"except":[]},"close":true}`},
		{sidRoomRequest{"A1b2C3", "Zz9_-x", typeRemoteJoin, "s1", "solo"}, `{"uid":"A1b2C3","requestId":"Zz9_-x","type":2,"sid":"s1","room":"solo"}`},
		{sidDisconnectRequest{"A1b2C3", "Zz9_-x", typeRemoteDisconnect, "s1", false}, `{"uid":"A1b2C3","requestId":"Zz9_-x","type":4,"sid":"s1","close":false}`},
		{fetchRequest{"A1b2C3", "Zz9_-x", typeRemoteFetch, newWireOpts(socketio.BroadcastOptions{})}, `{"uid":"A1b2C3","requestId":"Zz9_-x","type":5,"opts":{"rooms":[],"except":[]}}`},
		{serverSideEmitRequest{UID: "A1b2C3", Type: typeServerSideEmit, Data: []any{"hello", 1, map[string]any{"a": true}}}, `{"uid":"A1b2C3","type":6,"data":["hello",1,{"a":true}]}`},
		{serverSideEmitRequest{"A1b2C3", "Zz9_-x", typeServerSideEmit, []any{"hello"}}, `{"uid":"A1b2C3","requestId":"Zz9_-x","type":6,"data":["hello"]}`},
		{socketsResponse{"Zz9_-x", []string{}}, `{"requestId":"Zz9_-x","sockets":[]}`},
		{roomsResponse{"Zz9_-x", []string{}}, `{"requestId":"Zz9_-x","rooms":[]}`},
		{doneResponse{"Zz9_-x"}, `{"requestId":"Zz9_-x"}`},
		{fetchResponse{"Zz9_-x", (&Adapter{}).fetched(nil)}, `{"requestId":"Zz9_-x","sockets":[]}`},
		{serverSideEmitResponse{typeServerSideEmit, "Zz9_-x", json.RawMessage(`"pong"`)}, `{"type":6,"requestId":"Zz9_-x","data":"pong"}`},
		{serverSideEmitResponse{typeServerSideEmit, "Zz9_-x", nil}, `{"type":6,"requestId":"Zz9_-x"}`},
		{clientCountResponse{typeBroadcastClientCount, "Zz9_-x", 0}, `{"type":8,"requestId":"Zz9_-x","clientCount":0}`},
	}
	for _, c := range cases {
		got, err := json.Marshal(c.v)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("%T\n got %s\nwant %s", c.v, got, c.want)
		}
	}
}

// TestEmptyArraysOnTheWire decodes our own encodings: an empty rooms or
// except list must be [] (a Node peer reads opts.rooms with new Set(...),
// and a response without its array never completes a Node request).
func TestEmptyArraysOnTheWire(t *testing.T) {
	p := &socketio.Packet{Type: socketio.PacketEvent, Data: []any{"ev"}}
	for name, opts := range map[string]socketio.BroadcastOptions{
		"nil lists":   {},
		"empty lists": {Rooms: []string{}, Except: []string{}},
	} {
		rooms, except := optsRooms(opts)
		enc, err := encodeBroadcast(nil, "u", p, rooms, except, nil)
		if err != nil {
			t.Fatal(err)
		}
		v, err := decodeMsgpack(string(enc))
		if err != nil {
			t.Fatal(err)
		}
		o := v.([]any)[2].(map[string]any)
		for _, key := range []string{"rooms", "except"} {
			if arr, ok := o[key].([]any); !ok || arr == nil || len(arr) != 0 {
				t.Errorf("%s: broadcast %s = %#v, want []", name, key, o[key])
			}
		}
		if f, ok := o["flags"].(map[string]any); !ok || len(f) != 0 {
			t.Errorf("%s: flags = %#v, want {}", name, o["flags"])
		}
		enc, err = encodeBroadcastRequest("u", "r", p, rooms, except, nil)
		if err != nil {
			t.Fatal(err)
		}
		req, err := decodeObject(string(enc))
		if err != nil {
			t.Fatal(err)
		}
		ro := req["opts"].(map[string]any)
		if arr, ok := ro["rooms"].([]any); !ok || len(arr) != 0 {
			t.Errorf("%s: broadcast request rooms = %#v", name, ro["rooms"])
		}
		for _, v := range []any{
			fetchRequest{Opts: newWireOpts(opts)},
			roomsRequest{Opts: newWireOpts(opts), Rooms: nonNil[string](nil)},
			serverSideEmitRequest{Data: nonNil[any](nil)},
		} {
			raw, _ := json.Marshal(v)
			if bytes.Contains(raw, []byte("null")) {
				t.Errorf("%s: %s", name, raw)
			}
		}
	}
}

func TestGlobEscape(t *testing.T) {
	c := newChannels("socket.io", "/", "uid")
	if c.pattern != "socket.io#/#*" || c.broadcast != "socket.io#/#" || c.request != "socket.io-request#/#" ||
		c.response != "socket.io-response#/#" || c.specific != "socket.io-response#/#uid#" {
		t.Errorf("%+v", c)
	}
	if got := newChannels("p", "/a*[b]", "u").pattern; got != `p#/a\*\[b\]#*` {
		t.Errorf("pattern %s", got)
	}
	if got := c.roomChannel([]string{"r"}); got != "socket.io#/#r#" {
		t.Error(got)
	}
	if got := c.roomChannel([]string{"r", "s"}); got != "socket.io#/#" {
		t.Error(got)
	}
}

// TestExactIntegers: ids that a float64 would round (above 2^53) and the
// int64 and uint64 edges cross the cluster exactly, whether the event's
// arguments are decoded values (json.Number, from a client) or raw JSON
// (from the publish API), in a broadcast and back out as the JSON a
// client gets.
func TestExactIntegers(t *testing.T) {
	for _, n := range []string{"9007199254740993", "-9007199254740993", "9223372036854775807",
		"-9223372036854775808", "9223372036854775808", "18446744073709551615"} {
		for _, arg := range []any{json.Number(n), json.RawMessage(`{"id":` + n + `}`), []any{json.Number(n)}} {
			p := &socketio.Packet{Type: socketio.PacketEvent, Nsp: "/tasks", Data: []any{"ev", arg}}
			enc, err := encodeBroadcast(nil, "A1b2C3", p, []string{"r"}, nil, &socketio.BroadcastFlags{})
			if err != nil {
				t.Fatalf("%s: %v", n, err)
			}
			m, err := decodeBroadcast(string(enc))
			if err != nil {
				t.Fatalf("%s: %v", n, err)
			}
			got, err := json.Marshal(m.packet.Data[1])
			if err != nil {
				t.Fatal(err)
			}
			want, _ := json.Marshal(arg)
			if string(got) != string(want) {
				t.Errorf("%s crossed the cluster as %s, want %s", n, got, want)
			}
		}
	}
}
