#!/usr/bin/env node
// console.js: the operator console (/console/) in Debian's headless
// Chromium, driven by playwright-core, one command a line on stdin, one
// answer a line on stdout: {"type":"result","id":N,"message":"..."} or
// {"type":"fail","id":N,"message":"<error>"}.
//
//   node console.js [--chromium /usr/bin/chromium] [--width 1440 --height 900]
//
// Commands (each with "id"; "timeout" in ms where it waits, default 20000):
//   {"cmd":"goto","url":U}
//   {"cmd":"fill","selector":S,"value":V}          fill an input
//   {"cmd":"press","selector":S,"key":K}           e.g. Enter (keyboard)
//   {"cmd":"click","selector":S}
//   {"cmd":"waitFor","selector":S,"state":"visible|hidden|attached|detached"}
//   {"cmd":"waitText","selector":S,"text":T}       S's text contains T
//   {"cmd":"waitNotText","selector":S,"text":T}    S's text no longer is T
//   {"cmd":"text","selector":S}                    answers S's text
//   {"cmd":"count","selector":S}                   answers how many S are visible
//   {"cmd":"fetch","path":P}                       GET from the page (its cookies): answers the status
//   {"cmd":"screenshot","path":F}                  full page, PNG
// It reports page errors as {"type":"error"} and the browser's version as
// {"type":"browser"}; it exits on stdin EOF or {"cmd":"exit"}.
"use strict";

const { out, launchChromium } = require("./lib");
const readline = require("readline");

function parseArgs(argv) {
  const opts = { chromium: "/usr/bin/chromium", width: 1440, height: 900 };
  for (let i = 0; i < argv.length; i++) {
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(argv[i] + " needs a value");
      return argv[++i];
    };
    switch (argv[i]) {
      case "--chromium": opts.chromium = next(); break;
      case "--width": opts.width = Number(next()); break;
      case "--height": opts.height = Number(next()); break;
      default: throw new Error("unknown argument " + argv[i]);
    }
  }
  return opts;
}

async function run(page, cmd) {
  const timeout = cmd.timeout || 20000;
  switch (cmd.cmd) {
    case "goto":
      await page.goto(cmd.url, { timeout });
      return page.url();
    case "fill":
      await page.locator(cmd.selector).fill(cmd.value, { timeout });
      return "";
    case "press":
      await page.locator(cmd.selector).press(cmd.key, { timeout });
      return "";
    case "click":
      await page.locator(cmd.selector).click({ timeout });
      return "";
    case "waitFor":
      await page.locator(cmd.selector).first().waitFor({ state: cmd.state || "visible", timeout });
      return "";
    case "waitText":
      await page.waitForFunction(([s, t]) => {
        const e = document.querySelector(s);
        return e && e.textContent.includes(t);
      }, [cmd.selector, cmd.text], { timeout, polling: 100 });
      return await page.locator(cmd.selector).first().textContent();
    case "waitNotText":
      await page.waitForFunction(([s, t]) => {
        const e = document.querySelector(s);
        return e && e.textContent.trim() !== t;
      }, [cmd.selector, cmd.text], { timeout, polling: 100 });
      return await page.locator(cmd.selector).first().textContent();
    case "text":
      return await page.locator(cmd.selector).first().textContent({ timeout });
    case "count": {
      const all = await page.locator(cmd.selector).all();
      let n = 0;
      for (const l of all) if (await l.isVisible()) n++;
      return String(n);
    }
    case "fetch":
      return String(await page.evaluate(async (p) => (await fetch(p, { credentials: "same-origin" })).status, cmd.path));
    case "screenshot":
      await page.screenshot({ path: cmd.path, fullPage: true, timeout });
      return cmd.path;
    default:
      throw new Error("unknown command " + cmd.cmd);
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const browser = await launchChromium(opts.chromium);
  out({ type: "browser", message: browser.version() });
  const context = await browser.newContext({ viewport: { width: opts.width, height: opts.height } });
  const page = await context.newPage();
  page.on("pageerror", (err) => out({ type: "error", message: "page: " + String(err) }));
  page.on("console", (m) => {
    if (m.type() === "error") out({ type: "console", message: m.text() });
  });

  // Commands run one after another, in order.
  let chain = Promise.resolve();
  let closing = false;
  const finish = async () => {
    if (closing) return;
    closing = true;
    await chain.catch(() => {});
    try {
      await browser.close();
    } catch (err) {
      out({ type: "error", message: "closing the browser: " + String(err) });
    }
    process.exit(0);
  };
  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  rl.on("line", (raw) => {
    let cmd;
    try {
      cmd = JSON.parse(raw);
    } catch (err) {
      out({ type: "error", message: String(err) });
      return;
    }
    if (cmd.cmd === "exit" || cmd.cmd === "disconnect") {
      rl.close();
      return;
    }
    chain = chain.then(async () => {
      try {
        out({ type: "result", id: cmd.id, message: await run(page, cmd) });
      } catch (err) {
        out({ type: "fail", id: cmd.id, message: String(err && err.message || err) });
      }
    });
  });
  rl.on("close", finish);
}

main().catch((err) => {
  out({ type: "error", message: String(err && err.stack || err) });
  process.exit(1);
});
