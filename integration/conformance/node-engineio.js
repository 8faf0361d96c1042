#!/usr/bin/env node
// The Node reference Engine.IO server of the conformance suite: engine.io
// 6.6 (pinned in package-lock.json) on 127.0.0.1, echoing every message back
// (text as text, binary as binary). See README.md for the target contract:
//   node integration/conformance/node-engineio.js [--listen 127.0.0.1:0]
//        [--path /engine.io/] [--deflate]
// It prints {"url":"http://127.0.0.1:PORT"} once listening and exits 0 at
// stdin EOF.
"use strict";

const http = require("http");
const path = require("path");
const { load, eachFlag } = require(path.join(__dirname, "..", "clients", "lib.js"));
const { listenArgs, serveUntilEOF } = require(path.join(__dirname, "target.js"));

const opts = { listen: "127.0.0.1:0", path: "/engine.io/", deflate: false };
const usage = (msg) => {
  process.stderr.write(msg + "\nusage: node-engineio.js [--listen HOST:PORT] [--path P] [--deflate]\n");
  process.exit(2);
};
eachFlag(process.argv.slice(2), usage, (flag, next) => {
  switch (flag) {
    case "--listen": opts.listen = next(); break;
    case "--path": opts.path = next(); break;
    case "--deflate": opts.deflate = true; break;
    default: usage("unknown flag " + flag);
  }
});

const engine = load("engine.io");
const httpServer = http.createServer();
const server = engine.attach(httpServer, {
  path: opts.path,
  pingInterval: 300,
  pingTimeout: 200,
  maxHttpBufferSize: 1e6,
  // engine.io 6 leaves permessage-deflate off unless asked.
  perMessageDeflate: opts.deflate ? { threshold: 0 } : false,
});
server.on("connection", (socket) => {
  socket.on("message", (data) => socket.send(data));
});
serveUntilEOF(httpServer, listenArgs(opts.listen, usage));
