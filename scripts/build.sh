#!/bin/sh
# Builds the eventserver binary: static (no cgo), reproducible paths, stripped,
# with the version stamped in. The Dockerfile runs this script, and the tests
# that start the real binary build it with this script too, so that what is
# tested is what ships.
#
#   scripts/build.sh OUTPUT          e.g. scripts/build.sh bin/eventserver
#
# VERSION sets the version (default: `git describe`, or "dev" outside git).
set -eu

out=${1:?usage: scripts/build.sh OUTPUT}
cd "$(dirname "$0")/.."
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}

CGO_ENABLED=0 exec go build \
  -trimpath \
  -buildvcs=false \
  -ldflags "-s -w -X github.com/eventserver/eventserver/internal/cli.Version=${version}" \
  -o "$out" \
  ./cmd/eventserver
