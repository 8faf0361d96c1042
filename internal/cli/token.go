package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/eventserver/eventserver/internal/auth"
	"github.com/eventserver/eventserver/internal/identity"
	"github.com/eventserver/eventserver/pkg/rooms"
)

const tokenUsage = `Usage:
  eventserver token node --id 3 --name org2-node --collaboration 1 --organization 2 [--ttl 6h]
  eventserver token user --id 5 --name alice --organization 2 --collaborations 1,4 --scope collaboration [--ttl 6h]

Mints an HS256 claims token with EVENTSERVER_JWT_SECRET (or --jwt-secret), in
the format the claims resolver reads (see the README), and prints it.
--scope is global, collaboration or organization; leave it out for a user who
may receive no events.

Flags:
`

// Token runs "eventserver token".
func Token(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "node" && args[0] != "user") {
		fmt.Fprint(stderr, tokenUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return 0
		}
		return 2
	}
	kind := args[0]
	fs := flag.NewFlagSet("eventserver token "+kind, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, tokenUsage); fs.PrintDefaults() }
	secret := fs.String("jwt-secret", "", "HS256 key (default: EVENTSERVER_JWT_SECRET)")
	id := fs.String("id", "", "the node's or user's id (sub); an integer, as vantage6 issues it, or a string")
	name := fs.String("name", "", "name of the node or user (default: node-<id> / user-<id>)")
	org := fs.Int64("organization", 0, "organization id")
	collab := fs.Int64("collaboration", 0, "node: its collaboration id")
	collabs := fs.String("collaborations", "", "user: comma-separated collaboration ids")
	scope := fs.String("scope", "", "user: event receive scope: global, collaboration or organization")
	ttl := fs.Duration("ttl", 6*time.Hour, "lifetime of the token")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "eventserver token: "+format+"\n", a...)
		return 2
	}
	if *secret == "" {
		*secret = getenv("EVENTSERVER_JWT_SECRET")
	}
	if *secret == "" {
		return fail("no secret: set EVENTSERVER_JWT_SECRET or --jwt-secret")
	}
	if *id == "" {
		return fail("--id is required")
	}
	if *org <= 0 {
		return fail("--organization must be a positive integer")
	}
	if *ttl <= 0 {
		return fail("--ttl must be positive")
	}
	sub := auth.Subject{Value: *id}
	if n, err := strconv.ParseInt(*id, 10, 64); err == nil {
		sub = auth.NumericSubject(n)
	}
	if *name == "" {
		*name = kind + "-" + *id
	}
	who := &identity.Identity{Kind: rooms.Kind(kind), ID: sub, Name: *name, OrganizationID: *org}
	switch who.Kind {
	case rooms.KindNode:
		if *collab <= 0 {
			return fail("--collaboration must be a positive integer")
		}
		who.CollaborationIDs = []int64{*collab}
	case rooms.KindUser:
		ids := []int64{}
		for _, f := range strings.Split(*collabs, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			n, err := strconv.ParseInt(f, 10, 64)
			if err != nil || n <= 0 {
				return fail("--collaborations: %q is not a positive integer", f)
			}
			ids = append(ids, n)
		}
		who.CollaborationIDs = ids
		if *scope != "" {
			s, ok := rooms.ParseScope(*scope)
			if !ok {
				return fail("--scope must be global, collaboration or organization, not %q", *scope)
			}
			who.Scope = s
		}
	}
	tok, err := auth.Mint([]byte(*secret), identity.Claims(who), *ttl, time.Now())
	if err != nil {
		return fail("%v", err)
	}
	fmt.Fprintln(stdout, tok)
	return 0
}
