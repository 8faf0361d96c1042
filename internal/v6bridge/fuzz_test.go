package v6bridge

import (
	"testing"
)

// FuzzHandle hands arbitrary queue messages to the bridge, as a vantage6
// server (or anything else that can publish on its channel) could: the
// bridge never panics (its recover would report OutcomeFailed, and the fake
// target never fails), and whatever it emits can be encoded.
func FuzzHandle(f *testing.F) {
	for _, s := range []string{
		captured,
		`{"method": "emit", "event": "kill_containers", "data": {"ids": [9007199254740993, -9223372036854775808]}, "binary": false, "namespace": "/tasks", "room": ["collaboration_1", "collaboration_2"], "skip_sid": ["abc"], "callback": null}`,
		`{"method": "emit", "event": "x", "data": [{"_placeholder": true, "num": 0}, "AAEC"], "binary": true, "namespace": "/tasks", "room": "collaboration_1"}`,
		`{"method": "close_room", "room": "collaboration_1", "namespace": "/tasks"}`,
		`{"method": "disconnect", "sid": "ourSocket1", "namespace": "/tasks"}`,
		`{"method": "enter_room", "sid": "a", "room": "b", "namespace": "/tasks"}`,
		"\x80\x04\x95", `{"method": 7}`, `null`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	target := &fakeTarget{local: map[string]bool{"ourSocket1": true}}
	b, _, _ := newBridge(f, target)
	f.Fuzz(func(t *testing.T, payload []byte) {
		if out := b.Handle(payload); out == OutcomeFailed {
			t.Fatalf("outcome %q for %q", out, payload)
		}
		target.take()
	})
}
