#!/usr/bin/env node
// A scripted vantage6 UI for the end-to-end tests.
//
// It connects to the /tasks namespace with socket.io-client 4.8 (what the
// vantage6 UI uses) and is driven through stdin/stdout with one JSON object a
// line. Run it from the repository root after `npm ci`:
//   node integration/clients/ui.js --url http://127.0.0.1:PORT --token T
// --namespace /admin connects to that namespace instead of /tasks.
// --auth-json '{"rooms":["r1"]}' sends that object as the handshake auth (with
// --auth-mode auth the token is added to it as "token").
//
// Output lines (stdout):
//   {"type":"connect","sid":"...","transport":"polling|websocket"}
//   {"type":"upgrade","transport":"websocket"}
//   {"type":"event","event":"node-online","args":[{...}]}   every event, all its arguments
//   {"type":"disconnect","reason":"..."}
//   {"type":"connect_error","message":"...","data":...}
//   {"type":"error","message":"..."}
//   {"type":"ready"}                                       stdin is being read
//   {"type":"sent","event":"..."}                          an emit returned
//   {"type":"ack","id":7,"args":[...]}                     the server answered an ack request
//   {"type":"disconnected"}                                the disconnect command returned
//
// Input lines (stdin):
//   {"cmd":"emit","event":"ping","args":[]}                exact positional arguments
//   {"cmd":"emit","event":"x","args":[{}],"ack":7}         request an ack, reported with id 7
//   {"cmd":"connect"} / {"cmd":"connect","token":"T"}      connect again (optionally new token)
//   {"cmd":"disconnect"}
//   {"cmd":"exit"}
// On stdin EOF the client closes the socket and exits 0.
"use strict";

const readline = require("readline");

const { load, out, eachFlag } = require("./lib");
const { io } = load("socket.io-client");

function usage(msg) {
  process.stderr.write(
    (msg ? msg + "\n" : "") +
      "usage: ui.js --url URL [--token T] [--auth-mode header|auth|none]\n" +
      "             [--transports polling,websocket] [--no-reconnect] [--origin ORIGIN]\n" +
      "             [--auth-json JSON] [--namespace /tasks]\n",
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = {
    url: "",
    token: "",
    authMode: "header",
    transports: ["polling", "websocket"],
    reconnect: true,
    origin: "",
    authJSON: null,
    namespace: "/tasks",
  };
  eachFlag(argv, usage, (arg, next) => {
    switch (arg) {
      case "--url": opts.url = next(); break;
      case "--token": opts.token = next(); break;
      case "--auth-mode": opts.authMode = next(); break;
      case "--transports":
        opts.transports = next().split(",").map((s) => s.trim()).filter(Boolean);
        break;
      case "--no-reconnect": opts.reconnect = false; break;
      case "--origin": opts.origin = next(); break;
      case "--namespace": opts.namespace = next(); break;
      case "--auth-json": {
        const raw = next();
        try {
          opts.authJSON = JSON.parse(raw);
        } catch (err) {
          usage("bad --auth-json: " + err.message);
        }
        if (!opts.authJSON || typeof opts.authJSON !== "object" || Array.isArray(opts.authJSON)) {
          usage("--auth-json must be a JSON object");
        }
        break;
      }
      case "-h": case "--help": usage(); break;
      default: usage("unknown argument " + arg);
    }
  });
  if (!opts.url) usage("--url is required");
  if (!opts.namespace.startsWith("/")) usage("--namespace must start with /");
  if (!["header", "auth", "none"].includes(opts.authMode)) usage("bad --auth-mode");
  const okTransports = opts.transports.length > 0 &&
    opts.transports.every((t) => t === "polling" || t === "websocket");
  if (!okTransports) usage("bad --transports");
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

const extraHeaders = {};
if (opts.authMode === "header") extraHeaders.Authorization = "Bearer " + opts.token;
if (opts.origin) extraHeaders.Origin = opts.origin;

const clientOpts = {
  transports: opts.transports,
  reconnection: opts.reconnect,
  withCredentials: true, // as the UI does (only matters in a browser)
  extraHeaders, // the Node polling transport sets these on every request, websocket on the upgrade
};
// authFor is the handshake auth object (undefined: none).
function authFor(token) {
  if (opts.authMode === "auth") return Object.assign({}, opts.authJSON, { token });
  if (opts.authJSON) return Object.assign({}, opts.authJSON);
  return undefined;
}
const auth = authFor(opts.token);
if (auth !== undefined) clientOpts.auth = auth;

const socket = io(opts.url.replace(/\/+$/, "") + opts.namespace, clientOpts);

// Each (re)connection makes a new Engine.IO socket: watch each one's upgrade.
socket.io.on("open", () => {
  const engine = socket.io.engine;
  engine.on("upgrade", (transport) => out({ type: "upgrade", transport: transport.name }));
});

socket.on("connect", () => {
  out({ type: "connect", sid: socket.id, transport: socket.io.engine.transport.name });
});
socket.on("disconnect", (reason) => out({ type: "disconnect", reason }));
socket.on("connect_error", (err) => {
  out({
    type: "connect_error",
    message: err && err.message !== undefined ? err.message : String(err),
    data: err && err.data !== undefined ? err.data : null,
  });
});
socket.onAny((event, ...args) => out({ type: "event", event, args }));

process.on("uncaughtException", (err) => out({ type: "error", message: String(err && err.stack || err) }));

function emit(cmd) {
  const event = cmd.event;
  let args = cmd.args === undefined || cmd.args === null ? [] : cmd.args;
  if (!Array.isArray(args)) args = [args];
  if (Object.prototype.hasOwnProperty.call(cmd, "ack")) {
    const id = cmd.ack;
    socket.emit(event, ...args, (...ackArgs) => out({ type: "ack", id, args: ackArgs }));
  } else {
    socket.emit(event, ...args);
  }
  out({ type: "sent", event });
}

function finish() {
  socket.close();
  // Give the close packet a moment to leave, then exit.
  setTimeout(() => process.exit(0), 50);
}

const rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on("line", (raw) => {
  const line = raw.trim();
  if (!line) return;
  try {
    const cmd = JSON.parse(line);
    switch (cmd.cmd) {
      case "emit":
        emit(cmd);
        break;
      case "disconnect":
        socket.disconnect();
        out({ type: "disconnected" });
        break;
      case "connect":
        if (Object.prototype.hasOwnProperty.call(cmd, "token")) {
          opts.token = String(cmd.token);
          if (opts.authMode === "header") {
            extraHeaders.Authorization = "Bearer " + opts.token; // read at each (re)connection
          } else if (opts.authMode === "auth") {
            socket.auth = authFor(opts.token);
          }
        }
        socket.connect();
        break;
      case "exit":
        rl.close();
        break;
      default:
        out({ type: "error", message: "unknown command: " + JSON.stringify(cmd.cmd) });
    }
  } catch (err) {
    out({ type: "error", message: String(err && err.message || err) });
  }
});
rl.on("close", finish);
out({ type: "ready" });
