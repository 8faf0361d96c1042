#!/usr/bin/env node
// The Node reference Socket.IO server of the conformance suite: socket.io
// 4.8 (pinned in package-lock.json) on 127.0.0.1. On "/" and "/custom": on
// connection it emits "auth" with the handshake auth, answers "message" with
// "message-back" and the same arguments, and acks "message-with-ack" with the
// same arguments. See README.md for the target contract:
//   node integration/conformance/node-socketio.js [--listen 127.0.0.1:0]
//        [--path /socket.io/] [--connect-timeout 1000] [--deflate]
// It prints {"url":"http://127.0.0.1:PORT"} once listening and exits 0 at
// stdin EOF.
"use strict";

const http = require("http");
const path = require("path");
const { load, eachFlag } = require(path.join(__dirname, "..", "clients", "lib.js"));
const { listenArgs, serveUntilEOF } = require(path.join(__dirname, "target.js"));

const opts = { listen: "127.0.0.1:0", path: "/socket.io/", connectTimeout: 1000, deflate: false };
const usage = (msg) => {
  process.stderr.write(msg + "\nusage: node-socketio.js [--listen HOST:PORT] [--path P] [--connect-timeout MS] [--deflate]\n");
  process.exit(2);
};
eachFlag(process.argv.slice(2), usage, (flag, next) => {
  switch (flag) {
    case "--listen": opts.listen = next(); break;
    case "--path": opts.path = next(); break;
    case "--connect-timeout": opts.connectTimeout = Number(next()); break;
    case "--deflate": opts.deflate = true; break;
    default: usage("unknown flag " + flag);
  }
});
if (!Number.isInteger(opts.connectTimeout) || opts.connectTimeout <= 0) usage("bad --connect-timeout");

const { Server } = load("socket.io");
const httpServer = http.createServer();
const io = new Server(httpServer, {
  path: opts.path,
  pingInterval: 300,
  pingTimeout: 200,
  maxHttpBufferSize: 1e6,
  connectTimeout: opts.connectTimeout,
  perMessageDeflate: opts.deflate ? { threshold: 0 } : false,
});

function onConnection(socket) {
  socket.emit("auth", socket.handshake.auth);
  socket.on("message", (...args) => socket.emit("message-back", ...args));
  socket.on("message-with-ack", (...args) => {
    const ack = args.pop();
    ack(...args);
  });
}
io.on("connection", onConnection);
io.of("/custom").on("connection", onConnection);
serveUntilEOF(httpServer, listenArgs(opts.listen, usage));
