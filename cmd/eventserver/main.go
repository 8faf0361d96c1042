// Command eventserver is a Socket.IO event server for vantage6.
package main

import (
	"os"

	"github.com/eventserver/eventserver/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}
