// What the Node conformance targets share: the --listen flag and the
// contract's lifecycle (one {"url":...} line once listening, exit 0 at stdin
// EOF).
"use strict";

// listenArgs splits "HOST:PORT" for server.listen.
function listenArgs(listen, usage) {
  const i = listen.lastIndexOf(":");
  const port = Number(listen.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 0) usage("bad --listen " + listen);
  return { host: listen.slice(0, i), port };
}

// serveUntilEOF listens, prints the URL line, and exits 0 when stdin ends
// (open connections are dropped with the process).
function serveUntilEOF(httpServer, { host, port }) {
  httpServer.listen(port, host, () => {
    const addr = httpServer.address();
    process.stdout.write(JSON.stringify({ url: `http://${addr.address}:${addr.port}` }) + "\n");
  });
  process.stdin.on("data", () => {});
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
}

module.exports = { listenArgs, serveUntilEOF };
