//go:build heapprofile

package main

// Built only with -tags heapprofile (bench/heapprofile.sh): serves
// net/http/pprof on EVENTSERVER_PPROF_LISTEN (default 127.0.0.1:6060), a
// listener of its own, so that a reader can see where the memory of idle
// connections goes. Never in the shipped binary.

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
)

func init() {
	// Every 512 bytes allocated sampled, not every 512 KiB: a few
	// hundred bytes per connection are what is being looked for.
	runtime.MemProfileRate = 512
	addr := os.Getenv("EVENTSERVER_PPROF_LISTEN")
	if addr == "" {
		addr = "127.0.0.1:6060"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	// The listener lives as long as the process: this goroutine's owner is
	// the process itself (a profiling build only).
	go func() {
		if err := http.ListenAndServe(addr, mux); err != nil {
			fmt.Fprintf(os.Stderr, "heapprofile: %v\n", err)
		}
	}()
}
