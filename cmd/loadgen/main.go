// Command loadgen measures a Socket.IO server, eventserver or the Node.js
// reference (integration/clients/node-server.js), in one of three shapes;
// bench/compare.sh runs both side by side. See internal/loadgen. It prints
// one JSON object, and exits 1 when a client failed or an event was lost.
//
//	loadgen idle     --url http://127.0.0.1:7600 --clients 5000 --pid PID [--metrics URL] [--sources 127.0.0.2,127.0.0.3]
//	loadgen connects --url http://127.0.0.1:7600 --clients 3000 --in-flight 200 --pid PID
//	loadgen fanout   --url URL1,URL2,URL3 --publish-token T --clients 3000 --rooms 100 \
//	                 --rates 500,750,1000,1500,2000,3000 --step 5s --pid PID1,PID2,PID3 [--redis-pid P1,P2,P3]
//
// Clients present a user token made with --jwt-secret (default
// EVENTSERVER_JWT_SECRET) for collaboration <id> of their room
// collaboration_<id>; --auth-rooms also sends {"rooms":[room]} as handshake
// auth (node-server.js without --jwt-secret joins those).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/internal/identity"
	"github.com/eventserver/eventserver/internal/loadgen"
	v6rooms "github.com/eventserver/eventserver/pkg/rooms" // rooms is a flag here
)

func main() { os.Exit(run(os.Args[1:])) }

const usage = "usage: loadgen idle|connects|fanout [flags] (-h for the flags of each)"

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
	shape := args[0]
	fs := flag.NewFlagSet("loadgen "+shape, flag.ContinueOnError)
	urls := fs.String("url", "http://127.0.0.1:7600", "the server's base URL (fanout: a comma-separated list)")
	label := fs.String("label", "", "name of the server in the output")
	clients := fs.Int("clients", 0, "WebSocket clients (default: idle 1000, connects 3000, fanout 3000)")
	inFlight := fs.Int("in-flight", 200, "connects at a time")
	secret := fs.String("jwt-secret", "", "mint a user token per client with this HS256 key (default EVENTSERVER_JWT_SECRET)")
	authRooms := fs.Bool("auth-rooms", false, `also send {"rooms":[room]} as handshake auth`)
	pids := fs.String("pid", "", "the server's pid (fanout: a comma-separated list): read its memory and CPU time")
	redisPIDs := fs.String("redis-pid", "", "fanout: comma-separated redis-server pids: their CPU time per step, each apart")
	roomsPerClient := fs.Int("rooms-per-client", 1, "idle, connects: collaborations in each client's token (client i: i*n+1 .. i*n+n), each a room joined and announced")
	sources := fs.String("sources", "", "comma-separated loopback addresses to dial from (e.g. 127.0.0.2,127.0.0.3)")
	metrics := fs.String("metrics", "", "idle: a /metrics URL with go_goroutines")
	wait := fs.Duration("wait", 6*time.Second, "idle: how long the clients stay idle (longer than the ping interval)")
	warmup := fs.Int("warmup", 200, "connects: connects opened and closed before the timed ones")
	publishToken := fs.String("publish-token", "", "fanout: bearer token of POST /api/v1/emit")
	rooms := fs.Int("rooms", 100, "fanout: rooms")
	spread := fs.Int("spread", 0, "fanout: put each room's members on this many processes only (0: on every process)")
	rates := fs.String("rates", "500,750,1000,1500,2000,3000", "fanout: events a second, one step each")
	step := fs.Duration("step", 5*time.Second, "fanout: how long each rate lasts")
	payload := fs.Int("payload", 128, "fanout: bytes of filler in each event")
	settle := fs.Duration("settle", 5*time.Second, "fanout: how long to wait for a step's last deliveries")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", a...)
		return 2
	}
	pidList, err := ints(*pids)
	if err != nil {
		return fail("--pid: %v", err)
	}
	redisPIDList, err := ints(*redisPIDs)
	if err != nil {
		return fail("--redis-pid: %v", err)
	}
	if *roomsPerClient < 1 {
		return fail("--rooms-per-client: %d is not positive", *roomsPerClient)
	}
	var srcs []string
	if *sources != "" {
		srcs = strings.Split(*sources, ",")
	}
	if *secret == "" {
		*secret = os.Getenv("EVENTSERVER_JWT_SECRET")
	}
	// token(i, room, n): client i's token for collaborations room .. room+n-1.
	var token func(i int, room string, n int) string
	if *secret != "" {
		key := []byte(*secret)
		token = func(i int, room string, n int) string {
			cid, _ := strconv.ParseInt(strings.TrimPrefix(room, "collaboration_"), 10, 64)
			cids := make([]int64, n)
			for k := range cids {
				cids[k] = cid + int64(k)
			}
			tok, err := auth.Mint(key, identity.Claims(&identity.Identity{
				Kind: v6rooms.KindUser, ID: auth.NumericSubject(int64(i + 1)), Name: fmt.Sprintf("loadgen-%d", i+1),
				OrganizationID: 1, CollaborationIDs: cids, Scope: v6rooms.ScopeCollaboration,
			}), time.Hour, time.Time{})
			if err != nil {
				panic(err) // a non-empty key and a positive ttl cannot fail
			}
			return tok
		}
	}
	var roomAuth func(room string) map[string]any
	if *authRooms {
		roomAuth = func(room string) map[string]any { return map[string]any{"rooms": []string{room}} }
	}
	// idle and connects: client i alone in collaboration_<i+1> (with
	// --rooms-per-client n, in collaboration_<i*n+1> .. <i*n+n>), so that the
	// announcement of its join ("message" to the room) reaches itself only.
	ownRoom := func(i int) string { return "collaboration_" + strconv.Itoa(i**roomsPerClient+1) }
	target := loadgen.Target{URL: *urls, Sources: srcs}
	if token != nil {
		target.Token = func(i int) string { return token(i, ownRoom(i), *roomsPerClient) }
	}
	if roomAuth != nil {
		target.Auth = func(i int) map[string]any { return roomAuth(ownRoom(i)) }
	}
	if len(pidList) > 0 {
		target.PID = pidList[0]
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var res any
	switch shape {
	case "idle":
		res, err = loadgen.Idle(ctx, loadgen.IdleConfig{Target: target, Clients: *clients, InFlight: *inFlight,
			Wait: *wait, MetricsURL: *metrics})
	case "connects":
		if *warmup == 0 {
			*warmup = -1
		}
		res, err = loadgen.Connects(ctx, loadgen.ConnectsConfig{Target: target, Clients: *clients, InFlight: *inFlight,
			Warmup: *warmup})
	case "fanout":
		rateList, rerr := ints(*rates)
		if rerr != nil {
			return fail("--rates: %v", rerr)
		}
		var fanToken func(i int, room string) string
		if token != nil {
			fanToken = func(i int, room string) string { return token(i, room, 1) }
		}
		res, err = loadgen.Fanout(ctx, loadgen.FanoutConfig{URLs: strings.Split(*urls, ","), PublishToken: *publishToken,
			Clients: *clients, Rooms: *rooms, Spread: *spread, Token: fanToken, Auth: roomAuth, Rates: rateList, Step: *step,
			Payload: *payload, Settle: *settle, PIDs: pidList, RedisPIDs: redisPIDList, Sources: srcs})
	default:
		return fail("unknown shape %q; %s", shape, usage)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	b, err := json.Marshal(map[string]any{"shape": shape, "label": *label, "result": res})
	if err != nil {
		return fail("%v", err)
	}
	fmt.Println(string(b))
	// Exit 1 when something was lost: the figures are printed all the same.
	switch r := res.(type) {
	case *loadgen.IdleResult:
		if r.Alive < r.Clients {
			return 1
		}
	case *loadgen.ConnectsResult:
		if r.Failed > 0 {
			return 1
		}
	case *loadgen.FanoutResult:
		for _, s := range r.Steps {
			if s.Delivered < s.Expected || s.PublishErrors > 0 {
				return 1
			}
		}
		if r.Duplicates > 0 {
			return 1
		}
	}
	return 0
}

// ints parses a comma-separated list of integers ("" is none).
func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}
