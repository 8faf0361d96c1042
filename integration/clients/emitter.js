#!/usr/bin/env node
// A scripted @socket.io/redis-emitter 5.1 for the cluster-mode tests: it
// publishes into a Socket.IO cluster through Redis without being a server,
// as a backend process would. Driven through stdin/stdout, one JSON object a
// line. Run it from anywhere once `npm ci` has run at the root:
//   node integration/clients/emitter.js --redis redis://127.0.0.1:6379 [--prefix socket.io]
//
// Output lines (stdout):
//   {"type":"ready"}                                 connected to Redis, stdin is being read
//   {"type":"redis_error","message":"..."}
//   {"type":"error","message":"..."}
//   {"id":1,"ok":true,"receivers":N}                 the answer to command 1, after Redis
//                                                    answered the PUBLISH (N: subscriptions,
//                                                    patterns included, that got the message)
//   {"id":1,"ok":false,"error":"..."}
// Input lines (stdin; "nsp" defaults to "/tasks"; "rooms"/"except" are optional
// arrays, a socket id works as a room):
//   {"id":1,"cmd":"emit","nsp":"/tasks","rooms":[..],"except":[..],"event":"e","args":[..],
//    "volatile":false,"compress":true}
//   {"id":2,"cmd":"socketsJoin","rooms":[..],"except":[..],"join":["x"]}
//   {"id":3,"cmd":"socketsLeave","rooms":[..],"except":[..],"leave":["x"]}
//   {"id":4,"cmd":"disconnectSockets","rooms":[..],"except":[..],"close":true}
//   {"id":5,"cmd":"serverSideEmit","event":"e","args":[..]}   (no acks: the emitter has none)
//   {"cmd":"exit"}
// An argument {"$binary":"<base64>"} is sent as a Buffer.
// On stdin EOF it closes the Redis client and exits 0.
"use strict";

const { load, out, argsOf, toRooms, eachFlag, readCommands } = require("./lib");

const { Emitter } = load("@socket.io/redis-emitter");
const { createClient } = load("redis");

function usage(msg) {
  process.stderr.write((msg ? msg + "\n" : "") + "usage: emitter.js --redis URL [--prefix socket.io]\n");
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { redis: "", prefix: "socket.io" };
  eachFlag(argv, usage, (arg, next) => {
    switch (arg) {
      case "--redis": opts.redis = next(); break;
      case "--prefix": opts.prefix = next(); break;
      case "-h": case "--help": usage(); break;
      default: usage("unknown argument " + arg);
    }
  });
  if (!opts.redis) usage("--redis is required");
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

process.on("uncaughtException", (err) => out({ type: "error", message: String(err && err.stack || err) }));
process.on("unhandledRejection", (err) => out({ type: "error", message: String(err && err.stack || err) }));

const client = createClient({ url: opts.redis });
client.on("error", (err) => out({ type: "redis_error", message: String(err && err.message || err) }));

// The emitter calls redisClient.publish and drops the promise: hand it a
// client whose publish records the promises so that a command can wait for them.
let published = [];
const recording = {
  publish(channel, message) {
    const p = client.publish(channel, message);
    published.push(p);
    return p;
  },
};
const root = new Emitter(recording, { key: opts.prefix });

function target(cmd) {
  return toRooms(root.of(cmd.nsp || "/tasks"), cmd);
}

function start(cmd) {
  switch (cmd.cmd) {
    case "emit": {
      let op = target(cmd);
      if (cmd.volatile) op = op.volatile;
      if (cmd.compress === false) op = op.compress(false);
      op.emit(cmd.event, ...argsOf(cmd));
      return;
    }
    case "socketsJoin":
      target(cmd).socketsJoin((cmd.join || []).map(String));
      return;
    case "socketsLeave":
      target(cmd).socketsLeave((cmd.leave || []).map(String));
      return;
    case "disconnectSockets":
      target(cmd).disconnectSockets(!!cmd.close);
      return;
    case "serverSideEmit":
      root.of(cmd.nsp || "/tasks").serverSideEmit(cmd.event, ...argsOf(cmd));
      return;
    default:
      throw new Error("unknown command: " + JSON.stringify(cmd.cmd));
  }
}

let closing = false;
async function shutdown() {
  if (closing) return;
  closing = true;
  setTimeout(() => process.exit(0), 3000).unref();
  try {
    if (client.isOpen) await client.quit();
  } catch (err) {
    process.stderr.write("redis quit: " + err + "\n");
  }
  process.exit(0);
}

async function main() {
  await client.connect();
  await client.ping();
  readCommands(out, (cmd) => {
    let pending;
    try {
      published = [];
      start(cmd);
      pending = published;
      published = [];
    } catch (err) {
      out({ id: cmd.id, ok: false, error: String(err && err.message || err) });
      return;
    }
    Promise.all(pending).then(
      (counts) => out({ id: cmd.id, ok: true, receivers: counts.reduce((a, b) => a + Number(b), 0) }),
      (err) => out({ id: cmd.id, ok: false, error: String(err && err.message || err) }),
    );
  }, shutdown);
  out({ type: "ready" });
}

main().catch((err) => {
  process.stderr.write("emitter: " + String(err && err.stack || err) + "\n");
  process.exit(1);
});
