package redis

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/eventserver/eventserver/pkg/socketio"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// TestAnswersToNodePeers sends what a Node server (adapter 8.3.0) or
// emitter (5.1.0) publishes, byte for byte, and checks what the Go server
// does and answers. Empty lists must be [] (fault c): a Node requester
// ignores an answer without its array and waits for its timeout.
func TestAnswersToNodePeers(t *testing.T) {
	c := newCluster(t, 1, nil)
	s := c.servers[0]
	a := s.connect("/", "a", []string{"r"}, acking("pong"))
	s.nsp("/").OnServerSideEmit("question", func(_ []any, ack socketio.Ack) {
		ack(map[string]any{"answer": 42})
	})
	spy := newSpy(t, c.redis.Addr(), c.prefix+"-response#*")
	ctx := context.Background()
	publish := func(channel string, payload any) {
		t.Helper()
		if err := s.client.Publish(ctx, channel, payload).Err(); err != nil {
			t.Fatal(err)
		}
	}
	request := func(nsp, payload string) { publish(c.prefix+"-request#"+nsp+"#", payload) }
	answer := func(id string) string {
		t.Helper()
		return spy.wait(t, "answer to "+id, func(m *goredis.Message) bool {
			return strings.Contains(m.Payload, `"requestId":"`+id+`"`)
		}).Payload
	}
	exact := func(id, want string) {
		t.Helper()
		if got := answer(id); got != want {
			t.Errorf("answer to %s\n got %s\nwant %s", id, got, want)
		}
	}

	t.Run("empty answers", func(t *testing.T) {
		request("/", `{"uid":"NODE01","requestId":"f1","type":5,"opts":{"rooms":["nobody"],"except":[]}}`)
		exact("f1", `{"requestId":"f1","sockets":[]}`)
		request("/", `{"uid":"NODE01","requestId":"s1","type":0,"rooms":["nobody"]}`)
		exact("s1", `{"requestId":"s1","sockets":[]}`)
		request("/tasks", `{"uid":"NODE01","requestId":"a1","type":1}`)
		exact("a1", `{"requestId":"a1","rooms":[]}`)
	})
	t.Run("fetch", func(t *testing.T) {
		request("/", `{"uid":"NODE01","requestId":"f2","type":5,"opts":{"rooms":["r"],"except":[]}}`)
		var resp struct {
			RequestID string `json:"requestId"`
			Sockets   []struct {
				ID        string         `json:"id"`
				Handshake map[string]any `json:"handshake"`
				Rooms     []string       `json:"rooms"`
				Data      map[string]any `json:"data"`
			} `json:"sockets"`
		}
		if err := json.Unmarshal([]byte(answer("f2")), &resp); err != nil {
			t.Fatal(err)
		}
		if len(resp.Sockets) != 1 {
			t.Fatalf("%+v", resp)
		}
		got := resp.Sockets[0]
		if got.ID != a.id() || !reflect.DeepEqual(got.Data, map[string]any{"name": "a"}) || len(got.Rooms) != 2 {
			t.Errorf("%+v", got)
		}
		h := got.Handshake
		for _, key := range []string{"headers", "time", "address", "xdomain", "secure", "issued", "url", "query", "auth"} {
			if _, ok := h[key]; !ok {
				t.Errorf("handshake without %s: %v", key, h)
			}
		}
		if ua, ok := h["headers"].(map[string]any)["user-agent"].(string); !ok || ua == "" {
			t.Errorf("headers should be lower case and hold strings, as in Node: %v", h["headers"])
		}
	})
	t.Run("sockets and rooms", func(t *testing.T) {
		request("/", `{"uid":"NODE01","requestId":"s2","type":0,"rooms":["r"]}`)
		exact("s2", `{"requestId":"s2","sockets":["`+a.id()+`"]}`)
		request("/", `{"uid":"NODE01","requestId":"a2","type":1}`)
		if got := answer("a2"); !strings.Contains(got, `"r"`) || !strings.Contains(got, a.id()) {
			t.Errorf("%s", got)
		}
	})
	t.Run("serverSideEmit with ack", func(t *testing.T) {
		request("/", `{"uid":"NODE01","requestId":"e1","type":6,"data":["question","?"]}`)
		exact("e1", `{"type":6,"requestId":"e1","data":{"answer":42}}`)
	})
	t.Run("one-socket join, leave, disconnect", func(t *testing.T) {
		request("/", `{"uid":"NODE01","requestId":"j1","type":2,"sid":"`+a.id()+`","room":"solo"}`)
		exact("j1", `{"requestId":"j1"}`)
		if !slices.Contains(s.rooms("/", a), "solo") {
			t.Error("not joined")
		}
		request("/", `{"uid":"NODE01","requestId":"l1","type":3,"sid":"`+a.id()+`","room":"solo"}`)
		exact("l1", `{"requestId":"l1"}`)
		if slices.Contains(s.rooms("/", a), "solo") {
			t.Error("not left")
		}
	})
	t.Run("emitter", func(t *testing.T) {
		// emitter.to("r").emit("ev", {a: [1, 2, 3]}), on the room's channel.
		publish(c.prefix+"#/#r#", mustHex(t, golden["emitter"]))
		a.waitCount("ev", 1)
		if got := a.args("ev"); !reflect.DeepEqual(got, []any{map[string]any{"a": []any{float64(1), float64(2), float64(3)}}}) {
			t.Errorf("%#v", got)
		}
		// emitter.in("r").socketsJoin("joined"): no uid.
		request("/", `{"type":2,"opts":{"rooms":["r"],"except":[]},"rooms":["joined"]}`)
		testwait.Until(t, wait, "a joined", func() bool { return slices.Contains(s.rooms("/", a), "joined") })
		// emitter.serverSideEmit("hello", 1)
		got := make(chan []any, 1)
		s.nsp("/").OnServerSideEmit("hello", func(args []any, _ socketio.Ack) { got <- args })
		request("/", `{"uid":"emitter","type":6,"data":["hello",1]}`)
		select {
		case args := <-got:
			if !reflect.DeepEqual(args, []any{int64(1)}) {
				t.Errorf("%#v", args)
			}
		case <-time.After(wait):
			t.Fatal("no hello")
		}
	})
	t.Run("ignored", func(t *testing.T) {
		before := a.count("x")
		// Another namespace's packet on our channel, a room we do not have,
		// and our own uid: none is delivered.
		p := func(uid, nsp string) []byte {
			b, _ := encodeBroadcast(nil, uid, &socketio.Packet{Type: socketio.PacketEvent, Nsp: nsp, Data: []any{"x"}}, nil, nil, nil)
			return b
		}
		publish(c.prefix+"#/#", p("NODE01", "/tasks"))
		publish(c.prefix+"#/#nobody#", p("NODE01", "/"))
		publish(c.prefix+"#/#", p(s.adapter("/").UID(), "/"))
		publish(c.prefix+"#/#", p("NODE01", "/")) // this one is
		a.waitCount("x", before+1)
		_ = s.nsp("/").Emit("marker")
		a.waitCount("marker", 1)
		if n := a.count("x"); n != before+1 {
			t.Errorf("x delivered %d times", n-before)
		}
	})
	t.Run("malformed", func(t *testing.T) {
		before := s.counter("messages_dropped_total", "reason", dropMalformed)
		publish(c.prefix+"#/#", "\xc1garbage")
		request("/", "{not json")
		request("/", "\x93\x01")
		publish(c.prefix+"-response#/#", "{")
		testwait.Until(t, wait, "malformed messages counted", func() bool {
			return s.counter("messages_dropped_total", "reason", dropMalformed) >= before+4
		})
		// Still working.
		request("/", `{"uid":"NODE01","requestId":"f3","type":5,"opts":{"rooms":["nobody"],"except":[]}}`)
		exact("f3", `{"requestId":"f3","sockets":[]}`)
	})
}
