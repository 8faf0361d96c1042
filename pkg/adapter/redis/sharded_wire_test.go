package redis

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/eventserver/eventserver/pkg/socketio"
)

// shardedGolden is one file of testdata/sharded_golden_<mode>.jsonl,
// written by integration/clients/sharded-golden.js: what Node's sharded
// adapter (@socket.io/redis-adapter 8.3.0) SPUBLISHed, byte for byte.
type shardedGolden struct {
	uid, sid string
	cases    map[string][]goldenMessage
}

type goldenMessage struct {
	channel string
	payload []byte
}

func loadShardedGolden(t *testing.T, mode Mode) shardedGolden {
	t.Helper()
	f, err := os.Open("testdata/sharded_golden_" + string(mode) + ".jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g := shardedGolden{cases: map[string][]goldenMessage{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			Type, UID, Sid, Case, Channel, Payload string
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		if line.Type == "info" {
			g.uid, g.sid = line.UID, line.Sid
			continue
		}
		p, err := base64.StdEncoding.DecodeString(line.Payload)
		if err != nil {
			t.Fatal(err)
		}
		g.cases[line.Case] = append(g.cases[line.Case], goldenMessage{line.Channel, p})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if g.uid == "" || len(g.cases) < 15 {
		t.Fatalf("golden file of %s incomplete: uid %q, %d cases", mode, g.uid, len(g.cases))
	}
	return g
}

// requestIDOf reads data.requestId of a golden message.
func requestIDOf(t *testing.T, payload []byte) string {
	t.Helper()
	m, err := decodeObject(string(payload))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := m["data"].(map[string]any)
	id, _ := data["requestId"].(string)
	return id
}

// TestShardedGoldenBytes: for every message type, the Go encoder makes
// the bytes Node's sharded adapter made from the same input, and picks
// the same channel, in each subscription mode.
func TestShardedGoldenBytes(t *testing.T) {
	for _, mode := range []Mode{ModeStatic, ModeDynamic, ModeDynamicPrivate} {
		t.Run(string(mode), func(t *testing.T) {
			g := loadShardedGolden(t, mode)
			const prefix = "golden"
			ns := prefix + "#/#"
			peer := ns + "PEER000000000000#"
			ev := func(data ...any) *socketio.Packet {
				return &socketio.Packet{Type: socketio.PacketEvent, Nsp: "/", Data: data}
			}
			no := false
			type want struct {
				name    string
				typ     clusterType
				data    func(id string) object
				channel string // "" for shardedChannel of the broadcast's rooms
				rooms   []string
			}
			bcast := func(p *socketio.Packet, opts socketio.BroadcastOptions) func(string) object {
				return func(id string) object { return broadcastData(p, id, opts) }
			}
			cases := []want{
				{name: "broadcast_all", typ: ctBroadcast, data: bcast(ev("hello", 1, "two", map[string]any{"<&>": true, "three": 3.5}, nil, []any{false}), socketio.BroadcastOptions{})},
				{name: "broadcast_room", typ: ctBroadcast, rooms: []string{"room1"},
					data: bcast(ev("news", "x"), socketio.BroadcastOptions{Rooms: []string{"room1"}})},
				{name: "broadcast_sid", typ: ctBroadcast, rooms: []string{g.sid},
					data: bcast(ev("direct", 1), socketio.BroadcastOptions{Rooms: []string{g.sid}})},
				{name: "broadcast_rooms_except", typ: ctBroadcast, rooms: []string{"room1", "room2"},
					data: bcast(ev("multi", 7), socketio.BroadcastOptions{Rooms: []string{"room1", "room2"}, Except: []string{"room3"}})},
				{name: "broadcast_volatile_compress", typ: ctBroadcast, rooms: []string{"room2", "room1"},
					data: bcast(ev("v"), socketio.BroadcastOptions{Rooms: []string{"room2", "room1"}, Flags: socketio.BroadcastFlags{Volatile: true, Compress: &no}})},
				{name: "broadcast_binary", typ: ctBroadcast, rooms: []string{"room1"},
					data: bcast(ev("bin", []byte{1, 2, 3}, map[string]any{"nested": []byte("hi")}), socketio.BroadcastOptions{Rooms: []string{"room1"}})},
				{name: "broadcast_ack", typ: ctBroadcast, channel: ns, data: bcast(ev("ask", 42),
					socketio.BroadcastOptions{Rooms: []string{"room1"}, Flags: socketio.BroadcastFlags{Timeout: time.Second}})},
				{name: "sockets_join", typ: ctSocketsJoin, channel: ns, data: func(string) object {
					return roomsData(socketio.BroadcastOptions{Rooms: []string{"room1"}, Except: []string{"nobody"}}, []string{"room9", "room8"})
				}},
				{name: "sockets_leave", typ: ctSocketsLeave, channel: ns, data: func(string) object {
					return roomsData(socketio.BroadcastOptions{Rooms: []string{"room9"}}, []string{"room8"})
				}},
				{name: "disconnect_sockets", typ: ctDisconnectSockets, channel: ns, data: func(string) object {
					return object{{"opts", optsObject(socketio.BroadcastOptions{Rooms: []string{"nobody"}})}, {"close", true}}
				}},
				{name: "fetch_sockets", typ: ctFetchSockets, channel: ns, data: func(id string) object {
					return fetchSocketsData(socketio.BroadcastOptions{Rooms: []string{"room1"}, Flags: socketio.BroadcastFlags{Timeout: 300 * time.Millisecond}}, id)
				}},
				{name: "server_side_emit", typ: ctServerSideEmit, channel: ns, data: func(string) object {
					return serverSideEmitData("", []any{"sse", 1, map[string]any{"a": "b"}})
				}},
				{name: "server_side_emit_ack", typ: ctServerSideEmit, channel: ns, data: func(id string) object {
					return serverSideEmitData(id, []any{"sse-ack", 2})
				}},
				{name: "server_side_emit_response", typ: ctServerSideEmitResponse, channel: peer, data: func(string) object {
					return serverSideEmitResponseData("req2", []any{map[string]any{"answer": 5}})
				}},
				{name: "server_side_emit_response_undefined", typ: ctServerSideEmitResponse, channel: peer, data: func(string) object {
					return serverSideEmitResponseData("req3", nil)
				}},
			}
			for _, c := range cases {
				msgs := g.cases[c.name]
				if len(msgs) != 1 {
					t.Errorf("%s: %d golden messages", c.name, len(msgs))
					continue
				}
				gm := msgs[0]
				got, err := encodeSharded(c.typ, shardedMessage(c.typ, c.data(requestIDOf(t, gm.payload)), g.uid, "/"))
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				if !bytes.Equal(got, gm.payload) {
					t.Errorf("%s: bytes differ\n got %q\nwant %q", c.name, got, gm.payload)
				}
				channel := c.channel
				if channel == "" {
					channel = shardedChannel(mode, ns, c.rooms)
				}
				if channel != gm.channel {
					t.Errorf("%s: channel %q, Node's %q", c.name, channel, gm.channel)
				}
			}

			// The client count, then the client's acknowledgement.
			acks := g.cases["broadcast_client_count+broadcast_ack"]
			if len(acks) != 2 {
				t.Fatalf("broadcast ack responses: %d", len(acks))
			}
			for i, d := range []object{clientCountData("req4", 1), broadcastAckData("req4", map[string]any{"ok": 9})} {
				typ := []clusterType{ctBroadcastClientCount, ctBroadcastAck}[i]
				got, err := encodeSharded(typ, shardedMessage(typ, d, g.uid, "/"))
				if err != nil || !bytes.Equal(got, acks[i].payload) || acks[i].channel != peer {
					t.Errorf("%s: %v\n got %q\nwant %q on %s", typ, err, got, acks[i].payload, acks[i].channel)
				}
			}
		})
	}
}

// TestShardedGoldenDecode: what Node sent reads as Node meant it.
func TestShardedGoldenDecode(t *testing.T) {
	g := loadShardedGolden(t, ModeDynamic)
	read := func(name string) (clusterType, map[string]any) {
		t.Helper()
		msgs := g.cases[name]
		if len(msgs) == 0 {
			t.Fatalf("no %s", name)
		}
		m, err := decodeObject(string(msgs[0].payload))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if uid, _ := m["uid"].(string); uid != g.uid || m["nsp"] != "/" {
			t.Errorf("%s: uid %v nsp %v", name, m["uid"], m["nsp"])
		}
		typ, _ := toInt(m["type"])
		data, _ := m["data"].(map[string]any)
		return clusterType(typ), data
	}

	typ, data := read("broadcast_binary")
	p, err := packetFrom(data["packet"].(map[string]any))
	if typ != ctBroadcast || err != nil || !reflect.DeepEqual(p.Data, []any{"bin", []byte{1, 2, 3}, map[string]any{"nested": []byte("hi")}}) {
		t.Errorf("binary broadcast: %v %v %#v", typ, err, p)
	}
	typ, data = read("broadcast_volatile_compress")
	opts := optsFrom(data["opts"].(map[string]any))
	if typ != ctBroadcast || !opts.Flags.Volatile || opts.Flags.Compress == nil || *opts.Flags.Compress ||
		!slices.Equal(opts.Rooms, []string{"room2", "room1"}) {
		t.Errorf("flags: %+v", opts)
	}
	typ, data = read("broadcast_ack")
	opts = optsFrom(data["opts"].(map[string]any))
	if id, _ := data["requestId"].(string); typ != ctBroadcast || len(id) != 16 || opts.Flags.Timeout != time.Second {
		t.Errorf("broadcast with ack: %v %v", data, opts)
	}
	typ, data = read("fetch_sockets_response")
	arr, _ := data["sockets"].([]any)
	if typ != ctFetchSocketsResponse || len(arr) != 1 {
		t.Fatalf("fetch response: %v %v", typ, data)
	}
	s, ok := remoteSocketFrom(arr[0])
	if !ok || s.ID != g.sid || !slices.Contains(s.Rooms, "room1") || s.Handshake.Query.Get("EIO") != "4" || s.Handshake.Time.IsZero() {
		t.Errorf("fetched socket: %+v", s)
	}
	typ, data = read("server_side_emit_response_undefined")
	if _, has := data["packet"]; typ != ctServerSideEmitResponse || has {
		t.Errorf("undefined answer: %v %v", typ, data)
	}
	typ, data = read("server_side_emit")
	if typ != ctServerSideEmit || !reflect.DeepEqual(data["packet"], []any{"sse", int64(1), map[string]any{"a": "b"}}) {
		t.Errorf("server-side emit: %v %#v", typ, data)
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": ModeClassic, "classic": ModeClassic, "static": ModeStatic, "dynamic": ModeDynamic, "dynamic-private": ModeDynamicPrivate} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("%q: %q %v", in, got, err)
		}
	}
	if _, err := ParseMode("Dynamic"); err == nil {
		t.Error("Dynamic accepted")
	}
	if _, err := NewBroker(Config{Client: newClient("127.0.0.1:1"), Mode: ModeStatic}); err == nil {
		t.Error("NewBroker took a sharded mode")
	}
	if _, err := NewShardedBroker(Config{Client: newClient("127.0.0.1:1")}); err == nil {
		t.Error("NewShardedBroker took the classic mode")
	}
}
