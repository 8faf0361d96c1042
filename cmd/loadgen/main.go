// Command loadgen measures how fast a Socket.IO server of a Redis cluster
// fans events out to WebSocket clients: eventserver, or the Node.js
// reference (integration/clients/node-server.js). bench/compare.sh runs both
// side by side. See internal/loadgen.
//
//	loadgen --url http://127.0.0.1:7600 --redis redis://127.0.0.1:6379/0 \
//	        --jwt-secret "$EVENTSERVER_JWT_SECRET" --clients 1000 --events 2000 --rate 500
//	loadgen --url http://127.0.0.1:7700 --redis redis://127.0.0.1:6379/0 --auth-rooms ...
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
	"github.com/eventserver/eventserver/internal/loadgen"
	"github.com/eventserver/eventserver/internal/redisconn"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	target := fs.String("url", "http://127.0.0.1:7600", "the server's base URL")
	label := fs.String("label", "", "name of the server in the output")
	clients := fs.Int("clients", 100, "WebSocket clients to open")
	events := fs.Int("events", 1000, "events to publish")
	rate := fs.Int("rate", 200, "events a second")
	payload := fs.Int("payload", 0, "bytes of filler in each event")
	room := fs.String("room", "collaboration_1", "room of the clients and the events")
	redisURL := fs.String("redis", "", "Redis of the cluster, where the events are published (required)")
	prefix := fs.String("prefix", "socket.io", "the cluster's Redis prefix")
	secret := fs.String("jwt-secret", "", "mint a user token per client with this HS256 key (eventserver; default EVENTSERVER_JWT_SECRET)")
	authRooms := fs.Bool("auth-rooms", false, `send {"rooms":[room]} as handshake auth (the Node reference server joins them)`)
	pid := fs.Int("pid", 0, "the server's pid: sample its memory and CPU time")
	settle := fs.Duration("settle", 5*time.Second, "how long to wait for the last deliveries")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", a...)
		return 2
	}
	if *redisURL == "" {
		return fail("--redis is required")
	}
	rdb, _, err := redisconn.NewClient(*redisURL)
	if err != nil {
		return fail("--redis: %v", err)
	}
	defer rdb.Close()

	cfg := loadgen.Config{URL: *target, Room: *room, Clients: *clients, Events: *events, Rate: *rate,
		Payload: *payload, Redis: rdb, Prefix: *prefix, Settle: *settle, PID: *pid}
	if *secret == "" {
		*secret = os.Getenv("EVENTSERVER_JWT_SECRET")
	}
	if *secret != "" && !*authRooms {
		cid, err := strconv.ParseInt(strings.TrimPrefix(*room, "collaboration_"), 10, 64)
		if err != nil || !strings.HasPrefix(*room, "collaboration_") || cid <= 0 {
			return fail("--room must be collaboration_<id> to mint tokens for it")
		}
		key := []byte(*secret)
		cfg.Token = func(i int) string {
			tok, err := auth.Mint(key, map[string]any{
				"client_type": "user", "sub": i + 1, "name": fmt.Sprintf("loadgen-%d", i+1),
				"organization_id": 1, "collaboration_ids": []int64{cid}, "event_scope": "collaboration",
			}, time.Hour, time.Time{})
			if err != nil {
				panic(err) // a non-empty key and a positive ttl cannot fail
			}
			return tok
		}
	}
	if *authRooms {
		cfg.Auth = map[string]any{"rooms": []string{*room}}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if *asJSON {
		out := struct {
			Label string `json:"label"`
			*loadgen.Result
		}{*label, res}
		b, _ := json.Marshal(out)
		fmt.Println(string(b))
	} else {
		fmt.Printf("%s: %d clients (connected in %s), %d events: %d/%d delivered, %d duplicates, %.0f deliveries/s, latency p50 %s p90 %s p99 %s max %s",
			*label, res.Clients, res.ConnectTime.Round(time.Millisecond), res.Events, res.Delivered, res.Expected, res.Duplicates,
			res.Throughput, res.P50.Round(10*time.Microsecond), res.P90.Round(10*time.Microsecond), res.P99.Round(10*time.Microsecond), res.Max.Round(10*time.Microsecond))
		if *pid > 0 {
			fmt.Printf(", server RSS %d KiB idle / %d KiB peak, CPU %.2f s", res.RSSIdleKiB, res.RSSPeakKiB, res.CPUSeconds)
		}
		fmt.Println()
	}
	if res.Delivered < res.Expected || res.Duplicates > 0 {
		return 1
	}
	return 0
}
