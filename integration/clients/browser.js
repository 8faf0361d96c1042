#!/usr/bin/env node
// browser.js: open pages in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core), each in a context of its own, and report, one
// JSON object a line on stdout with the page's name in "page", what the
// pages report: a page prints "ES " + JSON on its console (see
// integration/origin_test.go). It also reports each CORS preflight
// (OPTIONS) that Chromium sends, as the DevTools protocol sees it:
// {"type":"preflight","message":"<url>","reason":"<status>"}.
//
//   node browser.js --page NAME=URL [--page NAME=URL ...] [--chromium /usr/bin/chromium]
//
// It stays until stdin closes or a {"cmd":"disconnect"} line arrives.
"use strict";

const readline = require("readline");
const { launchChromium } = require("./lib");

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function parseArgs(argv) {
  const opts = { pages: [], chromium: "/usr/bin/chromium" };
  for (let i = 0; i < argv.length; i++) {
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(argv[i] + " needs a value");
      return argv[++i];
    };
    switch (argv[i]) {
      case "--page": {
        const v = next();
        const eq = v.indexOf("=");
        if (eq <= 0) throw new Error("--page wants NAME=URL");
        opts.pages.push({ name: v.slice(0, eq), url: v.slice(eq + 1) });
        break;
      }
      case "--chromium": opts.chromium = next(); break;
      default: throw new Error("unknown argument " + argv[i]);
    }
  }
  if (opts.pages.length === 0) throw new Error("--page is required");
  return opts;
}

// openPage opens one page and forwards what it reports, tagged with its name.
async function openPage(browser, name, url) {
  const say = (obj) => out(Object.assign({ page: name }, obj));
  const page = await (await browser.newContext()).newPage();
  page.on("console", (m) => {
    const text = m.text();
    if (text.startsWith("ES ")) {
      try {
        say(JSON.parse(text.slice(3)));
        return;
      } catch (err) {
        say({ type: "error", message: "bad page line " + text });
        return;
      }
    }
    say({ type: "console", message: m.type() + ": " + text });
  });
  page.on("pageerror", (err) => say({ type: "error", message: "page: " + String(err) }));

  // Chromium's preflights are not page requests; the DevTools protocol shows them.
  const cdp = await page.context().newCDPSession(page);
  const preflights = new Map(); // requestId -> url
  cdp.on("Network.requestWillBeSent", (e) => {
    if (e.request.method === "OPTIONS") preflights.set(e.requestId, e.request.url);
  });
  cdp.on("Network.responseReceived", (e) => {
    if (preflights.has(e.requestId)) {
      say({ type: "preflight", message: preflights.get(e.requestId), reason: String(e.response.status) });
      preflights.delete(e.requestId);
    }
  });
  cdp.on("Network.loadingFailed", (e) => {
    if (preflights.has(e.requestId)) {
      say({ type: "preflight", message: preflights.get(e.requestId), reason: "failed: " + e.errorText });
      preflights.delete(e.requestId);
    }
  });
  await cdp.send("Network.enable");

  await page.goto(url);
  say({ type: "ready" });
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const browser = await launchChromium(opts.chromium);
  let closing = false;
  const finish = async () => {
    if (closing) return;
    closing = true;
    try {
      await browser.close();
    } catch (err) {
      out({ type: "error", message: "closing the browser: " + String(err) });
    }
    process.exit(0);
  };
  out({ type: "browser", message: browser.version() });

  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  rl.on("line", (raw) => {
    try {
      const cmd = JSON.parse(raw);
      if (cmd.cmd === "disconnect") rl.close();
    } catch (err) {
      out({ type: "error", message: String(err) });
    }
  });
  rl.on("close", finish);

  await Promise.all(opts.pages.map((p) => openPage(browser, p.name, p.url)));
}

main().catch((err) => {
  out({ type: "error", message: String(err && err.stack || err) });
  process.exit(1);
});
