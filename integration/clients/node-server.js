#!/usr/bin/env node
// A reference Socket.IO cluster member for the cluster-mode tests.
//
// It is a Node socket.io 4.8 server with @socket.io/redis-adapter 8.3 on
// node-redis 4 clients: what the Go Redis adapter must interoperate with.
// It serves the namespaces "/" and "/tasks" WITHOUT any authentication, prints
// what happens as JSON lines on stdout and runs the commands it reads as JSON
// lines on stdin. Run it from anywhere once `npm ci` has run at the root:
//   node integration/clients/node-server.js --redis redis://127.0.0.1:6379 \
//        [--prefix socket.io] [--port 0] [--host 127.0.0.1] \
//        [--requests-timeout 5000] [--sse-events a,b]
//
// For the benchmarks (bench/compare.sh), all off by default:
//   --no-redis              one process, no Redis adapter (then --redis is not needed)
//   --ping-interval MS      Engine.IO heartbeat interval (default socket.io's 25000);
//   --ping-timeout MS       and timeout (default socket.io's 20000)
//   --jwt-secret KEY        /tasks verifies an HS256 JWT per connect (Authorization:
//                           Bearer, or auth.token) with node's crypto, refuses a bad
//                           or expired one, joins collaboration_<id> for each of its
//                           collaboration_ids and announces it there with a "message"
//                           event ("User <name> joined room <room>"), as eventserver
//                           does for a user (vantage6's words)
//   --publish-token T       POST /api/v1/emit with eventserver's body shape
//                           ({"event","room"|"rooms","data"|"args"}; /tasks only),
//                           bearer T, answers 202 {"ok":true}
//   --quiet                 no connection, disconnect or client_event lines
//
// Sharded pub/sub and Redis Cluster, both off by default:
//   --sharded MODE          createShardedAdapter (Redis 7 SPUBLISH/SSUBSCRIBE) with
//                           subscriptionMode MODE (static, dynamic, dynamic-private)
//                           and channelPrefix --prefix, instead of createAdapter
//   --cluster               --redis is a comma-separated list of redis:// node URLs
//                           of a Redis Cluster (node-redis createCluster)
//
// Output lines (stdout) without an "id" are events:
//   {"type":"listening","port":N}        once, when the adapters' Redis subscriptions
//                                        are confirmed and the HTTP server listens
//   {"type":"connection","nsp":"/tasks","sid":"...","auth":{...},"rooms":[...]}
//   {"type":"disconnect","nsp":"/tasks","sid":"...","reason":"..."}
//   {"type":"client_event","nsp":"/tasks","sid":"...","event":"e","args":[...],"acked":bool}
//   {"type":"server_side_emit","nsp":"/tasks","event":"e","args":[...],"acked":bool,
//    "reply":...,"via":"listener|catchall"}
//                                        another server's serverSideEmit; when the last
//                                        argument is an ack it is answered (with
//                                        {"from":"node","event":E} unless sseAck changed it)
//                                        and left out of "args"
//   {"type":"redis_error","client":"pub|sub","message":"..."}
//   {"type":"error","message":"..."}
// Every command line gets exactly one answer line carrying the command's "id":
//   {"id":1,"ok":true,...} or {"id":1,"ok":false,"error":"..."}
// Commands ("nsp" defaults to "/tasks"; "rooms"/"except" are optional arrays):
//   {"id":1,"cmd":"emit","rooms":[..],"except":[..],"event":"e","args":[..],
//    "local":false,"volatile":false,"compress":true}
//   {"id":2,"cmd":"emitWithAck","rooms":[..],"event":"e","args":[..],"timeout":2000}
//        -> {"id":2,"ok":true,"responses":[..]} / {"ok":false,"error":..,"responses":[..]}
//   {"id":3,"cmd":"fetchSockets","rooms":[..],"except":[..],"local":false}
//        -> {"id":3,"ok":true,"sockets":[{"id":..,"rooms":[..],"data":..,"auth":..,"local":bool}]}
//   {"id":4,"cmd":"serverSideEmit","event":"e","args":[..]}
//   {"id":5,"cmd":"serverSideEmitWithAck","event":"e","args":[..],"timeout":3000}
//        -> {"id":5,"ok":true,"responses":[..]} / {"ok":false,"error":..,"responses":[..]}
//   {"id":6,"cmd":"allRooms"}                    -> {"id":6,"ok":true,"rooms":[..]} (sorted)
//   {"id":7,"cmd":"socketsJoin","rooms":[..],"except":[..],"join":["x"]}
//   {"id":7,"cmd":"socketsLeave","rooms":[..],"except":[..],"leave":["x"]}
//   {"id":8,"cmd":"disconnectSockets","rooms":[..],"except":[..],"close":true}
//   {"id":9,"cmd":"serverCount"}                  -> {"id":9,"ok":true,"count":N}
//   {"id":10,"cmd":"join","sid":"..","rooms":["a"]}   a local socket joins (leave: likewise)
//   {"id":11,"cmd":"localSockets"}               -> {"ok":true,"sockets":[{"id","rooms","data"}]}
//   {"id":12,"cmd":"sseAck","event":"e","mode":"reply|undefined|none","reply":X}
//        how later serverSideEmit acks for event e ("*": every event) are answered
//   {"id":13,"cmd":"ping"}                       -> {"id":13,"ok":true}
//   {"cmd":"exit"}                               same as stdin EOF
// Fire-and-forget commands (emit, serverSideEmit, socketsJoin, socketsLeave,
// disconnectSockets) answer after a PING on the publishing Redis connection has
// returned, i.e. after Redis has handed the message to every subscriber.
//
// JSON mapping: an argument {"$binary":"<base64>"} becomes a Buffer and a
// Buffer is printed as {"$binary":"<base64>"}; undefined prints as null in
// arrays and is left out of objects (plain JSON.stringify).
//
// On stdin EOF it closes Socket.IO (which unsubscribes the adapters) and the
// Redis clients and exits 0.
"use strict";

const crypto = require("crypto");
const http = require("http");

const lib = require("./lib");
const { load, argsOf, toRooms, eachFlag } = lib;
const { Server } = load("socket.io");
const { createAdapter, createShardedAdapter } = load("@socket.io/redis-adapter");
const { createClient, createCluster } = load("redis");

// out prints Buffers as {"$binary":"<base64>"}.
function out(obj) {
  lib.out(obj, lib.binaryReplacer);
}

function usage(msg) {
  process.stderr.write(
    (msg ? msg + "\n" : "") +
      "usage: node-server.js --redis URL [--prefix socket.io] [--port 0] [--host 127.0.0.1]\n" +
      "                      [--requests-timeout 5000] [--sse-events a,b]\n" +
      "                      [--no-redis] [--ping-interval MS] [--ping-timeout MS]\n" +
      "                      [--jwt-secret KEY] [--publish-token T] [--quiet]\n" +
      "                      [--sharded static|dynamic|dynamic-private] [--cluster]\n",
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = {
    redis: "",
    prefix: "socket.io",
    port: 0,
    host: "127.0.0.1",
    requestsTimeout: 5000,
    sseEvents: [],
    noRedis: false,
    pingInterval: 0,
    pingTimeout: 0,
    jwtSecret: "",
    publishToken: "",
    quiet: false,
    sharded: "",
    cluster: false,
  };
  eachFlag(argv, usage, (arg, next) => {
    switch (arg) {
      case "--redis": opts.redis = next(); break;
      case "--prefix": opts.prefix = next(); break;
      case "--port": opts.port = Number(next()); break;
      case "--host": opts.host = next(); break;
      case "--requests-timeout": opts.requestsTimeout = Number(next()); break;
      case "--sse-events":
        opts.sseEvents = next().split(",").map((s) => s.trim()).filter(Boolean);
        break;
      case "--no-redis": opts.noRedis = true; break;
      case "--ping-interval": opts.pingInterval = Number(next()); break;
      case "--ping-timeout": opts.pingTimeout = Number(next()); break;
      case "--jwt-secret": opts.jwtSecret = next(); break;
      case "--publish-token": opts.publishToken = next(); break;
      case "--quiet": opts.quiet = true; break;
      case "--sharded": opts.sharded = next(); break;
      case "--cluster": opts.cluster = true; break;
      case "-h": case "--help": usage(); break;
      default: usage("unknown argument " + arg);
    }
  });
  if (!opts.redis && !opts.noRedis) usage("--redis is required (or --no-redis)");
  for (const k of ["pingInterval", "pingTimeout"]) {
    if (!Number.isInteger(opts[k]) || opts[k] < 0) usage("bad --" + k.replace(/[A-Z]/, (c) => "-" + c.toLowerCase()));
  }
  if (!Number.isInteger(opts.port) || opts.port < 0) usage("bad --port");
  if (!(opts.requestsTimeout > 0)) usage("bad --requests-timeout");
  if (opts.sharded && !["static", "dynamic", "dynamic-private"].includes(opts.sharded)) usage("bad --sharded " + opts.sharded);
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

process.on("uncaughtException", (err) => out({ type: "error", message: String(err && err.stack || err) }));
process.on("unhandledRejection", (err) => out({ type: "error", message: String(err && err.stack || err) }));

// Without Redis (--no-redis) there are no clients and no adapter.
function newRedis() {
  if (opts.noRedis) return null;
  if (opts.cluster) return createCluster({ rootNodes: opts.redis.split(",").map((url) => ({ url })) });
  return createClient({ url: opts.redis });
}
const pub = newRedis();
const sub = opts.noRedis ? null : pub.duplicate();
if (pub) pub.on("error", (err) => out({ type: "redis_error", client: "pub", message: String(err && err.message || err) }));
if (sub) sub.on("error", (err) => out({ type: "redis_error", client: "sub", message: String(err && err.message || err) }));

// The adapter calls subClient.subscribe/pSubscribe in its constructor and
// drops the promises; keep them to know when the subscriptions are live.
const subscriptions = [];
for (const method of sub ? ["subscribe", "pSubscribe", "sSubscribe"] : []) {
  if (typeof sub[method] !== "function") continue;
  const orig = sub[method].bind(sub);
  sub[method] = (...a) => {
    const p = orig(...a);
    subscriptions.push(p);
    return p;
  };
}

// How serverSideEmit acks are answered, per event ("*" = default).
const sseAcks = new Map();
function sseReply(event) {
  const cfg = sseAcks.get(event) || sseAcks.get("*");
  if (!cfg) return { mode: "reply", reply: { from: "node", event } };
  return cfg;
}

let io;
const httpServer = http.createServer();

function describeSocket(socket, local) {
  return {
    id: socket.id,
    rooms: [...socket.rooms].sort(),
    data: socket.data === undefined ? null : socket.data,
    auth: socket.handshake ? socket.handshake.auth : null,
    local,
  };
}

// verifyHS256 checks an HS256 JWT with key and returns its claims; it throws
// on a bad signature, algorithm or shape, or an expired token.
function verifyHS256(token, key) {
  const parts = String(token).split(".");
  if (parts.length !== 3) throw new Error("malformed token");
  const header = JSON.parse(Buffer.from(parts[0], "base64url").toString());
  if (header.alg !== "HS256") throw new Error("unexpected algorithm " + header.alg);
  const mac = crypto.createHmac("sha256", key).update(parts[0] + "." + parts[1]).digest();
  const sig = Buffer.from(parts[2], "base64url");
  if (sig.length !== mac.length || !crypto.timingSafeEqual(sig, mac)) throw new Error("bad signature");
  const claims = JSON.parse(Buffer.from(parts[1], "base64url").toString());
  const now = Date.now() / 1000;
  if (typeof claims.exp === "number" && claims.exp < now) throw new Error("expired token");
  if (typeof claims.nbf === "number" && claims.nbf > now + 60) throw new Error("token not valid yet");
  return claims;
}

// jwtMiddleware (--jwt-secret): one verification per connect, rooms from
// the claims.
function jwtMiddleware(socket, next) {
  const h = socket.handshake.headers.authorization || "";
  const auth = socket.handshake.auth || {};
  const token = h.startsWith("Bearer ") ? h.slice(7) : auth.token;
  if (!token) return next(new Error("missing token"));
  let claims;
  try {
    claims = verifyHS256(token, opts.jwtSecret);
  } catch (err) {
    return next(new Error(String(err.message || err)));
  }
  const ids = Array.isArray(claims.collaboration_ids) ? claims.collaboration_ids : [];
  const rooms = ids.map((id) => "collaboration_" + id);
  socket.join(rooms);
  announced.set(socket, { name: String(claims.name), rooms });
  next();
}

// announced: what jwtMiddleware verified, announced on connection.
const announced = new WeakMap();

function onConnection(nsp) {
  return (socket) => {
    const auth = socket.handshake.auth || {};
    if (Array.isArray(auth.rooms)) socket.join(auth.rooms.map(String));
    if (Object.prototype.hasOwnProperty.call(auth, "data")) socket.data = auth.data;
    const a = announced.get(socket);
    if (a) {
      for (const room of a.rooms) socket.nsp.to(room).emit("message", `User <${a.name}> joined room <${room}>`);
    }
    if (opts.quiet) return;
    out({ type: "connection", nsp, sid: socket.id, auth, rooms: [...socket.rooms].sort() });
    socket.on("disconnect", (reason) => out({ type: "disconnect", nsp, sid: socket.id, reason }));
    socket.onAny((event, ...args) => {
      let acked = false;
      if (typeof args[args.length - 1] === "function") {
        const ack = args.pop();
        ack({ from: "node", event });
        acked = true;
      }
      out({ type: "client_event", nsp, sid: socket.id, event, args, acked });
    });
  };
}

const RESERVED = new Set(["connect", "connection", "new_namespace"]);

// Records (and acks) a serverSideEmit from another server.
function handleServerSideEmit(nsp, via, event, args) {
  args = args.slice();
  let acked = false;
  let reply;
  if (typeof args[args.length - 1] === "function") {
    const ack = args.pop();
    const cfg = sseReply(event);
    if (cfg.mode === "reply") {
      reply = cfg.reply;
      ack(reply);
      acked = true;
    } else if (cfg.mode === "undefined") {
      ack(undefined);
      acked = true;
    }
  }
  const line = { type: "server_side_emit", nsp, event, args, acked, via };
  if (reply !== undefined) line.reply = reply;
  out(line);
}

function setupNamespace(name) {
  const nsp = io.of(name);
  if (opts.jwtSecret && name === "/tasks") nsp.use(jwtMiddleware);
  nsp.on("connection", onConnection(name));
  for (const ev of opts.sseEvents) {
    if (RESERVED.has(ev)) continue;
    nsp.on(ev, (...args) => handleServerSideEmit(name, "listener", ev, args));
  }
  // Catch-all: the adapter hands every serverSideEmit to _onServerSideEmit;
  // events without a listener (or with a reserved name) are handled here.
  const orig = nsp._onServerSideEmit.bind(nsp);
  nsp._onServerSideEmit = (data) => {
    const [event, ...args] = data;
    if (!RESERVED.has(event) && nsp.listenerCount(event) > 0) return orig(data);
    handleServerSideEmit(name, "catchall", event, args);
  };
  return nsp;
}

function operator(cmd) {
  let op = io.of(cmd.nsp || "/tasks");
  if (cmd.local) op = op.local;
  if (cmd.volatile) op = op.volatile;
  if (cmd.compress === false) op = op.compress(false);
  return toRooms(op, cmd);
}

// withTimeout rejects when p takes longer than ms (when ms > 0).
function withTimeout(p, ms, what) {
  if (!(ms > 0)) return p;
  let timer;
  return Promise.race([
    p,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(what + ": no answer within " + ms + " ms")), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// flushed resolves once Redis has processed everything sent on pub before
// (at once without Redis).
// On a Redis Cluster: a PING to every master the client knows, each given
// 1 s (a master that died, before the client notices, never answers).
const flushed = () => {
  if (!pub) return Promise.resolve();
  if (opts.cluster) {
    return Promise.all(pub.masters.map((m) =>
      withTimeout(Promise.resolve(pub.nodeClient(m)).then((c) => c.ping()), 1000, "ping").catch(() => {})));
  }
  return pub.ping();
};

// publishAPI (--publish-token) is eventserver's POST /api/v1/emit, enough of
// it for the benchmarks: same path, bearer token and body shape, 202.
function publishAPI(req, res) {
  const reply = (status, obj) => {
    res.writeHead(status, { "Content-Type": "application/json" });
    res.end(JSON.stringify(obj));
  };
  if (req.method !== "POST" || req.url !== "/api/v1/emit") return reply(404, { error: "not found" });
  const want = Buffer.from("Bearer " + opts.publishToken);
  const got = Buffer.from(req.headers.authorization || "");
  if (got.length !== want.length || !crypto.timingSafeEqual(got, want)) return reply(401, { error: "missing or wrong bearer token" });
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString());
    } catch (err) {
      return reply(400, { error: "invalid JSON body: " + err.message });
    }
    if (!body || typeof body.event !== "string" || !body.event) return reply(400, { error: "event: required", field: "event" });
    if (body.namespace !== undefined && body.namespace !== "/tasks") return reply(400, { error: "unknown namespace", field: "namespace" });
    let op = io.of("/tasks");
    const rooms = body.room !== undefined ? [body.room] : body.rooms;
    if (Array.isArray(rooms)) op = op.to(rooms.map(String));
    if (Array.isArray(body.except)) op = op.except(body.except.map(String));
    let args = [];
    if (body.data !== undefined && body.data !== null) args = [body.data];
    else if (Array.isArray(body.args)) args = body.args;
    op.emit(body.event, ...args);
    reply(202, { ok: true });
  });
}

async function run(cmd) {
  const nspName = cmd.nsp || "/tasks";
  switch (cmd.cmd) {
    case "ping":
      return {};
    case "emit":
      operator(cmd).emit(cmd.event, ...argsOf(cmd));
      await flushed();
      return {};
    case "emitWithAck": {
      const timeout = cmd.timeout > 0 ? cmd.timeout : 2000;
      try {
        const responses = await operator(cmd).timeout(timeout).emitWithAck(cmd.event, ...argsOf(cmd));
        return { responses };
      } catch (err) {
        return { ok: false, error: String(err && err.message || err), responses: err && err.responses || [] };
      }
    }
    case "fetchSockets": {
      const sockets = await operator(cmd).fetchSockets();
      return { sockets: sockets.map((s) => describeSocket(s, !!s.server)) };
    }
    case "serverSideEmit":
      io.of(nspName).serverSideEmit(cmd.event, ...argsOf(cmd));
      await flushed();
      return {};
    case "serverSideEmitWithAck": {
      // The adapter times out by itself after --requests-timeout; "timeout"
      // only bounds how long this command waits.
      try {
        const p = io.of(nspName).serverSideEmitWithAck(cmd.event, ...argsOf(cmd));
        const responses = await withTimeout(p, cmd.timeout, "serverSideEmitWithAck");
        return { responses };
      } catch (err) {
        return { ok: false, error: String(err && err.message || err), responses: err && err.responses || [] };
      }
    }
    case "allRooms": {
      const rooms = await io.of(nspName).adapter.allRooms();
      return { rooms: [...rooms].map(String).sort() };
    }
    case "socketsJoin":
      operator(cmd).socketsJoin((cmd.join || []).map(String));
      await flushed();
      return {};
    case "socketsLeave":
      operator(cmd).socketsLeave((cmd.leave || []).map(String));
      await flushed();
      return {};
    case "disconnectSockets":
      operator(cmd).disconnectSockets(!!cmd.close);
      await flushed();
      return {};
    case "serverCount":
      return { count: await io.of(nspName).adapter.serverCount() };
    case "join":
    case "leave": {
      const socket = io.of(nspName).sockets.get(cmd.sid);
      if (!socket) return { ok: false, error: "no local socket " + cmd.sid + " on " + nspName };
      const rooms = (cmd.rooms || []).map(String);
      if (cmd.cmd === "join") socket.join(rooms);
      else for (const r of rooms) socket.leave(r);
      return { rooms: [...socket.rooms].sort() };
    }
    case "localSockets":
      return { sockets: [...io.of(nspName).sockets.values()].map((s) => describeSocket(s, true)) };
    case "sseAck": {
      const mode = cmd.mode || "reply";
      if (!["reply", "undefined", "none"].includes(mode)) return { ok: false, error: "bad mode " + mode };
      sseAcks.set(cmd.event || "*", { mode, reply: cmd.reply === undefined ? null : cmd.reply });
      return {};
    }
    default:
      return { ok: false, error: "unknown command: " + JSON.stringify(cmd.cmd) };
  }
}

let closing = false;
async function shutdown() {
  if (closing) return;
  closing = true;
  // Whatever happens (Redis gone, ...), exit 0 soon.
  setTimeout(() => process.exit(0), 3000).unref();
  try {
    if (io) await io.close();
  } catch (err) {
    process.stderr.write("close: " + err + "\n");
  }
  for (const c of [sub, pub]) {
    try {
      if (c && c.isOpen) await c.quit();
    } catch (err) {
      process.stderr.write("redis quit: " + err + "\n");
    }
  }
  process.exit(0);
}

async function main() {
  if (pub) await Promise.all([pub.connect(), sub.connect()]);
  // Requests that are not Socket.IO's (engine.io passes them on).
  if (opts.publishToken) httpServer.on("request", publishAPI);
  const serverOpts = { cors: { origin: true, credentials: true } };
  if (pub && opts.sharded) {
    serverOpts.adapter = createShardedAdapter(pub, sub, { channelPrefix: opts.prefix, subscriptionMode: opts.sharded });
  } else if (pub) {
    serverOpts.adapter = createAdapter(pub, sub, { key: opts.prefix, requestsTimeout: opts.requestsTimeout });
  }
  if (opts.pingInterval) serverOpts.pingInterval = opts.pingInterval;
  if (opts.pingTimeout) serverOpts.pingTimeout = opts.pingTimeout;
  io = new Server(httpServer, serverOpts);
  setupNamespace("/");
  setupNamespace("/tasks");
  await Promise.all(subscriptions);
  await new Promise((resolve, reject) => {
    httpServer.once("error", reject);
    httpServer.listen(opts.port, opts.host, resolve);
  });

  lib.readCommands(out, (cmd) => {
    run(cmd).then(
      (res) => out(Object.assign({ id: cmd.id, ok: true }, res)),
      (err) => out({ id: cmd.id, ok: false, error: String(err && err.message || err) }),
    );
  }, shutdown);
  out({ type: "listening", port: httpServer.address().port });
}

main().catch((err) => {
  process.stderr.write("node-server: " + String(err && err.stack || err) + "\n");
  process.exit(1);
});
