#!/usr/bin/env node
// Captures what Node's sharded Redis adapter (@socket.io/redis-adapter 8.3.0,
// createShardedAdapter, socket.io 4.8) SPUBLISHes, for the golden tests of
// the Go adapter's sharded modes (pkg/adapter/redis/testdata/sharded_golden.jsonl).
//
//   node integration/clients/sharded-golden.js --redis redis://127.0.0.1:PORT \
//        [--prefix golden] [--mode dynamic]
//
// It runs one Node server (namespace "/") with the sharded adapter, one
// socket.io client connected to it (it joins "room1" and acks "ask" with
// {"ok":1}), and a raw node-redis client that SSUBSCRIBEs the channels the
// server publishes on and plays a second server (uid PEER): it sends the
// requests whose answers are captured too. It also hears the client's own
// room channel (P#/#<sid>#). It prints one JSON line per
// captured message, then exits 0:
//   {"case":"<name>","channel":"<channel>","payload":"<base64 of the bytes>"}
// and, first, {"type":"info","uid":"<the server's uid>","sid":"<the client's id>"}.
// The peer's own requests are not captured.
"use strict";

const http = require("http");
const lib = require("./lib");
const { load, eachFlag } = lib;
const { Server } = load("socket.io");
const { io: ioc } = load("socket.io-client");
const { createShardedAdapter } = load("@socket.io/redis-adapter");
const { createClient } = load("redis");

function usage(msg) {
  process.stderr.write((msg ? msg + "\n" : "") + "usage: sharded-golden.js --redis URL [--prefix golden] [--mode dynamic]\n");
  process.exit(2);
}

const opts = { redis: "", prefix: "golden", mode: "dynamic" };
eachFlag(process.argv.slice(2), usage, (arg, next) => {
  switch (arg) {
    case "--redis": opts.redis = next(); break;
    case "--prefix": opts.prefix = next(); break;
    case "--mode": opts.mode = next(); break;
    default: usage("unknown argument " + arg);
  }
});
if (!opts.redis) usage("--redis is required");

const PEER = "PEER000000000000"; // the fake second server's uid
const P = opts.prefix + "#/#";

function fail(err) {
  process.stderr.write("sharded-golden: " + String(err && err.stack || err) + "\n");
  process.exit(1);
}
process.on("unhandledRejection", fail);

async function main() {
  const pub = createClient({ url: opts.redis });
  const sub = pub.duplicate();
  const spy = pub.duplicate();
  const peerPub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect(), spy.connect(), peerPub.connect()]);

  // Every captured message, in order; waiters by case.
  let current = "";
  const captured = [];
  let waiter = null;
  const onMessage = (message, channel) => {
    // The peer's own requests come back on the namespace channel: not Node's.
    if (message[0] === 0x7b && JSON.parse(message.toString()).uid === PEER) return;
    const line = { case: current, channel: channel.toString(), payload: Buffer.from(message).toString("base64") };
    captured.push(line);
    lib.out(line);
    if (waiter) waiter();
  };
  // The spy hears the namespace channel, two room channels and the peer's
  // response channel.
  for (const ch of [P, P + "room1#", P + "room2#", P + PEER + "#"]) {
    await spy.sSubscribe(ch, onMessage, true);
  }

  const httpServer = http.createServer();
  const io = new Server(httpServer, { adapter: createShardedAdapter(pub, sub, { channelPrefix: opts.prefix, subscriptionMode: opts.mode }) });
  io.on("connection", (socket) => {
    socket.join("room1");
  });
  await new Promise((r) => httpServer.listen(0, "127.0.0.1", r));
  const uid = io.of("/").adapter.uid;

  const client = ioc("http://127.0.0.1:" + httpServer.address().port, { transports: ["websocket"] });
  client.on("ask", (n, ack) => ack({ ok: n }));
  await new Promise((r) => client.on("connect", r));
  // Let the server's SSUBSCRIBEs settle.
  await new Promise((r) => setTimeout(r, 200));
  await spy.sSubscribe(P + client.id + "#", onMessage, true);
  lib.out({ type: "info", uid, sid: client.id });

  // step runs f under the case name and waits for n more captured messages.
  async function step(name, n, f) {
    current = name;
    const want = captured.length + n;
    const done = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(name + ": " + (captured.length - want + n) + " of " + n + " messages")), 3000);
      waiter = () => {
        if (captured.length >= want) {
          clearTimeout(timer);
          waiter = null;
          resolve();
        }
      };
    });
    f();
    await done;
  }
  const peer = (msg) => peerPub.sPublish(P, JSON.stringify(Object.assign(msg, { uid: PEER, nsp: "/" })));

  await step("broadcast_all", 1, () => io.emit("hello", 1, "two", { "<&>": true, three: 3.5 }, null, [false]));
  await step("broadcast_room", 1, () => io.to("room1").emit("news", "x"));
  await step("broadcast_sid", 1, () => io.to(client.id).emit("direct", 1));
  await step("broadcast_rooms_except", 1, () => io.to(["room1", "room2"]).except("room3").emit("multi", 7));
  await step("broadcast_volatile_compress", 1, () => io.to(["room2", "room1"]).volatile.compress(false).emit("v"));
  await step("broadcast_binary", 1, () => io.to("room1").emit("bin", Buffer.from([1, 2, 3]), { nested: Buffer.from("hi") }));
  await step("broadcast_ack", 1, () => {
    io.to("room1").timeout(1000).emitWithAck("ask", 42).catch(() => {});
  });
  await step("sockets_join", 1, () => io.in("room1").except("nobody").socketsJoin(["room9", "room8"]));
  await step("sockets_leave", 1, () => io.in("room9").socketsLeave("room8"));
  await step("disconnect_sockets", 1, () => io.in("nobody").disconnectSockets(true));
  await step("fetch_sockets", 1, () => {
    io.in("room1").timeout(300).fetchSockets().catch(() => {});
  });
  await step("server_side_emit", 1, () => io.serverSideEmit("sse", 1, { a: "b" }));
  await step("server_side_emit_ack", 1, () => {
    io.serverSideEmitWithAck("sse-ack", 2).catch(() => {});
  });

  // Answers to the peer's requests, on the peer's response channel.
  io.on("question", (n, ack) => ack({ answer: n }));
  io.on("silent", (n, ack) => ack());
  await step("fetch_sockets_response", 1, () => peer({ type: 7, data: { opts: { rooms: ["room1"], except: [] }, requestId: "req1" } }));
  await step("server_side_emit_response", 1, () => peer({ type: 9, data: { requestId: "req2", packet: ["question", 5] } }));
  await step("server_side_emit_response_undefined", 1, () => peer({ type: 9, data: { requestId: "req3", packet: ["silent", 5] } }));
  // The client count, then the client's ack.
  await step("broadcast_client_count+broadcast_ack", 2, () =>
    peer({ type: 3, data: { packet: { type: 2, data: ["ask", 9], nsp: "/" }, requestId: "req4", opts: { rooms: ["room1"], except: [], flags: { timeout: 1000 } } } }));

  client.close();
  io.close();
  for (const c of [spy, peerPub, pub, sub]) {
    try { await c.quit(); } catch (_) { /* closed already */ }
  }
  process.exit(0);
}

main().catch(fail);
