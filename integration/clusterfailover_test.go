package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/eventserver/eventserver/pkg/redistest"
	"github.com/eventserver/eventserver/pkg/testsupport/testwait"
)

// TestClusterFailoverPresence: three replicas of the binary on a 3-master
// Redis Cluster with a replica per master (redis+cluster://, classic
// pub/sub), python nodes on two of them and a Node UI on the third; then
// SIGKILL of the master that holds presence's keys (their one hash tag),
// longer down than the heartbeat TTL (1.2 s) before its replica is
// promoted. It shows that the instances follow the failover: every /readyz
// is 200 again, an event published through each instance reaches the UI,
// and presence loses no node (GET /api/v1/nodes of every replica lists both
// before and after, past the TTL and the sweeps) and sends no notice (no
// node-offline, no second node-online). The sharded modes' failovers are in
// TestShardedMixedCluster.
func TestClusterFailoverPresence(t *testing.T) {
	rc := redistest.StartCluster(t, 3, 1)
	prefix := uniquePrefix(t)
	a := startInstance(t, "a", rc.URL(), prefix)
	b := startInstance(t, "b", rc.URL(), prefix)
	c := startInstance(t, "c", rc.URL(), prefix)
	instances := []*procServer{a, b, c}
	logRedisOnFailure(t, instances)
	ws := clientOpts{transports: "websocket"}
	withToken := func(o clientOpts, tok string) clientOpts { o.token = tok; return o }
	n3 := startPyNode(t, a.server, "node3@a", withToken(ws, nodeToken(t, 3, 1, 2, time.Hour)))
	n4 := startPyNode(t, b.server, "node4@b", withToken(ws, nodeToken(t, 4, 1, 3, time.Hour)))
	ui := startUI(t, c.server, "user5@c", withToken(ws, userToken(t, 5, 2, []int64{1}, "collaboration", time.Hour)))
	n3.waitEvent("sync", wait)
	n4.waitEvent("sync", wait)
	ui.waitType("connect", wait)
	all := []*client{n3, n4, ui}

	checkNodes := func(when string) { t.Helper(); waitNodesListed(t, instances, "3,4", when) }
	checkNodes("before the failover")
	for _, s := range instances {
		barrier(t, s.server, all...)
	}
	onlineBefore := len(ui.events("node-online"))

	master, err := rc.MasterOf("{" + prefix + ":presence}")
	if err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	rc.Kill(master)
	testwait.For(t, 30*time.Second, func() error {
		if now, err := rc.MasterOf("{" + prefix + ":presence}"); err != nil || now == master {
			return fmt.Errorf("presence's master is still %s (%v)", now, err)
		}
		return nil
	})
	rc.WaitOK(30 * time.Second)
	t.Logf("presence's master %s killed; its replica took over after %s", master, time.Since(killedAt).Round(time.Millisecond))

	// Every instance is ready, and an event published through it reaches
	// the UI (published again until it does: pub/sub loses what is sent
	// while a subscription is being made again).
	for i, s := range instances {
		waitReadyz(t, s.URL, 200)
		event := fmt.Sprintf("after-%d", i)
		testwait.For(t, 30*time.Second, func() error {
			s.mustPublish(`{"event":"` + event + `","room":"collaboration_1","data":null}`)
			if len(ui.events(event)) > 0 {
				return nil
			}
			return fmt.Errorf("%s never reached %s through %s", event, ui.name, s.name)
		})
	}

	// Presence, past the TTL and a few sweeps after the failover: both
	// nodes listed everywhere, no notice sent.
	quiet := time.Now().Add(3 * time.Second)
	testwait.For(t, wait, func() error {
		if time.Now().Before(quiet) {
			return fmt.Errorf("waiting past TTL and sweeps")
		}
		return nil
	})
	checkNodes("after the failover")
	for _, s := range instances {
		barrier(t, s.server, all...)
	}
	if n := len(ui.events("node-offline")); n != 0 {
		t.Errorf("%s: %d node-offline for nodes that stayed connected", ui.name, n)
	}
	if n := len(ui.events("node-online")); n != onlineBefore {
		t.Errorf("%s: node-online %d times, %d before the failover", ui.name, n, onlineBefore)
	}
}
