// Shared pieces of the scripted clients and servers in this folder: package
// loading from the repository root, JSON-line output, the {"$binary":...}
// argument mapping and the command-line loop.
"use strict";

const path = require("path");
const readline = require("readline");

// load resolves a package from the repository root's node_modules even when
// the script is started from another working directory.
function load(name) {
  return require(require.resolve(name, {
    paths: [process.cwd(), path.resolve(__dirname, "..", "..")],
  }));
}

// binaryReplacer prints Buffers and typed arrays as {"$binary":"<base64>"}
// and bigints as strings.
function binaryReplacer(key, value) {
  const orig = this[key];
  if (Buffer.isBuffer(orig) || orig instanceof ArrayBuffer || ArrayBuffer.isView(orig)) {
    const bytes = orig instanceof ArrayBuffer ? new Uint8Array(orig) : new Uint8Array(orig.buffer, orig.byteOffset, orig.byteLength);
    return { $binary: Buffer.from(bytes).toString("base64") };
  }
  if (typeof value === "bigint") return value.toString();
  return value;
}

// out writes one JSON line. Writes to pipes and files are synchronous on
// Linux, so lines keep their order and are complete before process.exit().
function out(obj, replacer) {
  process.stdout.write(JSON.stringify(obj, replacer) + "\n");
}

// decodeArg turns {"$binary":"base64"} (anywhere) into a Buffer.
function decodeArg(v) {
  if (Array.isArray(v)) return v.map(decodeArg);
  if (v && typeof v === "object") {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === "$binary" && typeof v.$binary === "string") {
      return Buffer.from(v.$binary, "base64");
    }
    const o = {};
    for (const k of keys) o[k] = decodeArg(v[k]);
    return o;
  }
  return v;
}

// eachFlag calls onFlag(arg, next) for every argument; next() returns the
// flag's value, from "--flag=value" or the following argument, and calls
// usage when there is none.
function eachFlag(argv, usage, onFlag) {
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value;
    const eq = arg.indexOf("=");
    if (arg.startsWith("--") && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const next = () => {
      if (value !== undefined) return value;
      if (i + 1 >= argv.length) usage("missing value for " + arg);
      return argv[++i];
    };
    onFlag(arg, next);
  }
}

// readCommands reads one JSON command a line from stdin and hands each to
// onCommand. A line that is not JSON is reported through write; {"cmd":"exit"}
// (answered when it has an id) and stdin EOF call onClose.
function readCommands(write, onCommand, onClose) {
  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  rl.on("line", (raw) => {
    const line = raw.trim();
    if (!line) return;
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch (err) {
      write({ type: "error", message: "bad JSON: " + String(err && err.message || err) });
      return;
    }
    if (cmd.cmd === "exit") {
      if (cmd.id !== undefined) write({ id: cmd.id, ok: true });
      rl.close();
      return;
    }
    onCommand(cmd);
  });
  rl.on("close", onClose);
  return rl;
}

// argsOf is a command's "args" as a list of arguments (a lone value is one
// argument; absent or null is none), with {"$binary":...} mapped back.
function argsOf(cmd) {
  let args = cmd.args === undefined || cmd.args === null ? [] : cmd.args;
  if (!Array.isArray(args)) args = [args];
  return decodeArg(args);
}

// toRooms narrows a broadcast operator to a command's "rooms" and "except".
function toRooms(op, cmd) {
  if (Array.isArray(cmd.rooms) && cmd.rooms.length > 0) op = op.to(cmd.rooms.map(String));
  if (Array.isArray(cmd.except) && cmd.except.length > 0) op = op.except(cmd.except.map(String));
  return op;
}

// launchChromium starts Debian's Chromium (executablePath) headless through
// playwright-core, with the flags this machine needs: no sandbox (root), and
// no background networking or updates (its network is closed, and those
// connections would be refused many at a time).
function launchChromium(executablePath) {
  const { chromium } = load("playwright-core");
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-background-networking",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

module.exports = { load, out, binaryReplacer, decodeArg, argsOf, toRooms, eachFlag, readCommands, launchChromium };
