// Package cli is the command line of eventserver: serve (the default),
// token, healthcheck and version.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/eventserver/eventserver/internal/app"
	"github.com/eventserver/eventserver/internal/config"
)

// Version is set at build time with -ldflags "-X .../internal/cli.Version=...".
var Version = "dev"

// Main runs the command line and returns the exit code.
func Main(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "token":
			return Token(args[1:], getenv, stdout, stderr)
		case "healthcheck":
			return Healthcheck(args[1:], getenv, stdout, stderr)
		case "version":
			fmt.Fprintln(stdout, "eventserver", Version)
			return 0
		case "serve":
			args = args[1:]
		}
	}
	cfg, err := config.Load(args, getenv, stdout)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "eventserver:", err)
		return 2
	}
	log, err := app.NewLogger(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "eventserver:", err)
		return 2
	}
	defer func() { _ = log.Sync() }()
	a, err := app.New(cfg, log, app.WithVersion(Version))
	if err != nil {
		fmt.Fprintln(stderr, "eventserver:", err)
		return 2
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	done := make(chan error, 1)
	go func() { done <- a.Run() }()
	select {
	case err := <-done:
		log.Error("server stopped", zap.Error(err))
		return 1
	case s := <-sig:
		log.Info("signal received", zap.String("signal", s.String()))
	}
	// A second signal stops at once.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownDelay+cfg.DrainTimeout+10*time.Second)
	defer cancel()
	go func() {
		select {
		case <-sig:
			log.Warn("second signal: stopping now")
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := a.Shutdown(ctx); err != nil {
		log.Error("shutdown", zap.Error(err))
		return 1
	}
	if err := <-done; err != nil {
		log.Error("server stopped", zap.Error(err))
		return 1
	}
	return 0
}
