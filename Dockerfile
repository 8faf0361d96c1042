# syntax=docker/dockerfile:1
#
# The eventserver image: one static binary, run as a non-root user, in an
# image with nothing else (no shell, no package manager). The same image runs
# alone (no Redis: in-memory) or as a cluster member (EVENTSERVER_REDIS_URL).
#
#   docker build -t eventserver/eventserver --build-arg VERSION=$(git describe --always) .
#   docker run -p 7600:7600 -e EVENTSERVER_JWT_SECRET=change-me eventserver/eventserver
#
# The binary is built by scripts/build.sh, the script the tests build it
# with (deploy/image_test.go checks that this file keeps doing so).

# Keep in step with the go line of go.mod.
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    VERSION="${VERSION}" sh scripts/build.sh /out/eventserver

FROM scratch
# CA certificates, for rediss:// and an https vantage6 API.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/eventserver /eventserver
# 65532: the conventional "nonroot" user; the binary writes no files, so the
# root filesystem can be mounted read-only.
USER 65532:65532
ENV EVENTSERVER_LISTEN=:7600
EXPOSE 7600
# No shell and no curl in the image: the binary asks itself (GET /healthz).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/eventserver", "healthcheck"]
ENTRYPOINT ["/eventserver"]
