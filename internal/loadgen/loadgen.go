// Package loadgen measures a Socket.IO server the same way whether it is
// eventserver or the Node.js reference (integration/clients/node-server.js),
// so that bench/compare.sh can put the two side by side in one run. It has
// three shapes:
//
//   - Idle: N idle WebSockets on one process; the server's resident memory
//     per connection after a ping cycle, and its goroutines.
//   - Connects: connects a second to one warm process, a bounded number in
//     flight, token verification included; server CPU per connect.
//   - Fanout: clients in rooms spread over several processes of a cluster,
//     events published over HTTP (POST /api/v1/emit) round-robin at
//     increasing rates; deliveries a second, completeness, latency from the
//     POST to the arrival at each client, server CPU per delivery.
//
// Its clients are raw WebSockets that speak Engine.IO v4 and Socket.IO v5
// text frames by hand, with small buffers and one goroutine each, so that the
// generator's own cost stays small; they may dial from several loopback
// source addresses (127.0.0.2, ...) so that 100k connections do not exhaust
// the ephemeral ports of one address.
package loadgen
