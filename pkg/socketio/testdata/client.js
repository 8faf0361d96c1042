// A scripted socket.io-client 4.8 for node_test.go:
//   node client.js URL TRANSPORTS(json) WAIT_UPGRADE(0|1)
// It connects to URL/tasks with auth {token:"good"}, runs acks both ways
// and a binary round trip, prints one JSON line per step and disconnects.
"use strict";
const path = require("path");
const { io } = require(path.join(__dirname, "..", "..", "..", "node_modules", "socket.io-client"));
const [url, transports, waitUpgrade] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const s = io(url + "/tasks", { transports: JSON.parse(transports), auth: { token: "good" }, reconnection: false });
const fail = (e) => { out({ error: String(e) }); process.exit(1); };
setTimeout(() => fail("timeout"), 10000).unref();
s.on("connect_error", (e) => fail(e.message));
s.on("question", (n, cb) => cb(n + 1, "answered"));
s.on("welcome", async (auth) => {
  out({ welcome: auth });
  if (waitUpgrade === "1" && s.io.engine.transport.name !== "websocket") {
    await new Promise((r) => s.io.engine.once("upgrade", r));
  }
  s.emit("ack", 12, "two", Buffer.from([1, 2, 3]), (...args) => {
    out({ ack: [args[0], args[1], Array.from(args[2])] });
    s.emit("ask");
  });
});
s.on("answer", (a) => {
  out({ answer: a, transport: s.io.engine.transport.name });
  // The last socket's disconnect closes the engine, once written.
  s.io.engine.once("close", () => setImmediate(() => process.exit(0)));
  s.disconnect();
});
