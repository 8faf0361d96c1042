// Package testsupport is the home of what the tests share, under pkg/ so
// that pkg/ tests need nothing from internal/:
//
//   - testwait: wait with a poller and a deadline, never a bare sleep;
//   - testenv: skip without a prerequisite (fail under CI=true), a buffer
//     for a child process's output, the tests' RabbitMQ;
//   - testclient: open the Go Socket.IO client without its races;
//   - testmetrics: read one value of a Prometheus registry.
//
// pkg/redistest, which starts a real Redis, lives beside it.
package testsupport
