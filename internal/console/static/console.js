// eventserver console: renders the snapshots that /console/api/stream
// pushes (server-sent events). Plain JS, no dependencies.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  let last = null;
  let nodesKey = "";
  let filter = "";
  let nodeCounts = "";
  const open = new Set(); // keys of nodes whose details are open

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const k of kids) if (k) e.append(k);
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }
  function clock(t) {
    return t ? new Date(t).toLocaleTimeString([], { hour12: false }) : "—";
  }
  function ago(t, now) {
    if (!t) return "";
    const s = Math.max(0, Math.round((now - new Date(t).getTime()) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min ago";
    return Math.floor(s / 86400) + " d ago";
  }
  function fmt(n) {
    if (n >= 100) return Math.round(n).toString();
    if (n >= 10) return n.toFixed(1);
    return n.toFixed(2).replace(/\.?0+$/, "") || "0";
  }
  function pretty(raw) {
    if (raw === undefined || raw === null) return "none received";
    try { return JSON.stringify(raw, null, 2); } catch (e) { return String(raw); }
  }

  // The status line is a live region: it changes (and is announced) only
  // when the state does, not at every snapshot.
  function setStatus(text, cls) {
    const s = $("status");
    if (s.textContent !== text) s.textContent = text;
    s.className = cls || "";
  }

  // Nodes, grouped by collaboration then organization.
  function renderNodes(snap) {
    const now = new Date(snap.at).getTime();
    const key = JSON.stringify(snap.nodes.map((n) => [n.key, n.status, n.since, n.instance, n.connections, n.last_config_at, n.last_metrics_at]));
    const counts = { online: 0, stale: 0, offline: 0 };
    for (const n of snap.nodes) counts[n.status] = (counts[n.status] || 0) + 1;
    nodeCounts = counts.online + " online, " + counts.stale + " stale, " + counts.offline +
      " offline (in the last hour)";
    if (key !== nodesKey) {
      nodesKey = key;
      const box = $("nodes");
      const groups = [];
      let cur = null;
      for (const n of snap.nodes) {
        if (!cur || cur.collab !== n.collaboration_id) {
          cur = { collab: n.collaboration_id, orgs: [] };
          groups.push(cur);
        }
        let org = cur.orgs[cur.orgs.length - 1];
        if (!org || org.id !== n.organization_id) {
          org = { id: n.organization_id, nodes: [] };
          cur.orgs.push(org);
        }
        org.nodes.push(n);
      }
      const frag = document.createDocumentFragment();
      if (groups.length === 0) frag.append(el("p", { class: "summary", text: "No node has been online in the last hour." }));
      for (const g of groups) {
        const sec = el("section", { class: "group collab", "aria-label": "Collaboration " + g.collab });
        sec.append(el("h3", { text: "Collaboration " + g.collab }));
        for (const o of g.orgs) {
          const div = el("div", { class: "org" });
          div.append(el("h4", { text: "Organization " + o.id }));
          const tbody = el("tbody");
          for (const n of o.nodes) tbody.append(nodeRow(n, now));
          div.append(el("table", {}, el("thead", {}, el("tr", {},
            el("th", { scope: "col", text: "Node" }), el("th", { scope: "col", text: "Status" }),
            el("th", { scope: "col", text: "Since" }), el("th", { scope: "col", text: "Last ping" }),
            el("th", { scope: "col", text: "Replica" }), el("th", { scope: "col", text: "Conns" }),
            el("th", { scope: "col", text: "Config and metrics" }))), tbody));
          sec.append(div);
        }
        frag.append(sec);
      }
      box.replaceChildren(frag);
    }
    applyFilter();
    for (const e of document.querySelectorAll("[data-t]")) e.textContent = ago(e.getAttribute("data-t"), now);
  }

  function nodeRow(n, now) {
    const id = typeof n.id === "string" ? n.id : JSON.stringify(n.id);
    const det = el("details", { "data-key": n.key, open: open.has(n.key) },
      el("summary", { text: "show" }),
      el("h5", { text: "Configuration" + (n.last_config_at ? " (" + clock(n.last_config_at) + ")" : "") }),
      el("pre", { text: pretty(n.last_config) }),
      el("h5", { text: "Metrics" + (n.last_metrics_at ? " (" + clock(n.last_metrics_at) + ")" : "") }),
      el("pre", { text: pretty(n.last_metrics) }));
    det.addEventListener("toggle", () => { if (det.open) open.add(n.key); else open.delete(n.key); });
    return el("tr", { class: "node", "data-key": n.key, "data-search": (n.name + " " + id + " " + n.key).toLowerCase() },
      el("td", {}, el("span", { class: "name", text: n.name || "(no name)" }), " ", el("span", { class: "id", text: "id " + id })),
      el("td", {}, el("span", { class: "status status-" + n.status, text: n.status })),
      el("td", {}, el("span", { text: clock(n.since) }), el("span", { class: "ago", "data-t": n.since, text: ago(n.since, now) })),
      el("td", {}, n.last_ping ? el("span", { class: "ago", "data-t": n.last_ping, text: ago(n.last_ping, now) }) : el("span", { text: "—" })),
      el("td", { text: n.instance || "—" }),
      el("td", { class: "num", text: String(n.connections || 0) }),
      el("td", {}, n.status === "offline" ? el("span", { text: "—" }) : det));
  }

  function applyFilter() {
    const f = filter.trim().toLowerCase();
    let shown = 0, all = 0;
    for (const tr of document.querySelectorAll("#nodes tr.node")) {
      const hit = !f || tr.getAttribute("data-search").includes(f);
      tr.hidden = !hit;
      all++;
      if (hit) shown++;
    }
    for (const org of document.querySelectorAll("#nodes .org")) org.hidden = !org.querySelector("tr.node:not([hidden])");
    for (const g of document.querySelectorAll("#nodes .collab")) g.hidden = !g.querySelector(".org:not([hidden])");
    $("node-summary").textContent = f ? nodeCounts + " · " + shown + " of " + all + " match “" + filter.trim() + "”" : nodeCounts;
  }

  // Timeline: per collaboration, a bar a minute, online up, offline down.
  function renderTimeline(snap) {
    const tl = snap.timeline;
    $("timeline-summary").textContent = tl.total + " transition" + (tl.total === 1 ? "" : "s") + " in the last hour";
    const frag = document.createDocumentFragment();
    const W = 600, H = 44, mid = H / 2, n = 60, bw = W / n;
    for (const c of tl.collaborations) {
      let on = 0, off = 0, peak = 1;
      for (const [a, b] of c.buckets) { on += a; off += b; peak = Math.max(peak, a, b); }
      const label = "Collaboration " + c.collaboration_id + ": " + c.online + " online now; " + on + " came online, " + off + " went offline in the last hour";
      const s = svg("svg", { viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", role: "img", "aria-label": label });
      s.append(svg("line", { x1: 0, y1: mid, x2: W, y2: mid, class: "axis" }));
      c.buckets.forEach(([a, b], i) => {
        if (a) s.append(svg("rect", { x: i * bw + 1, y: mid - (a / peak) * (mid - 2), width: bw - 2, height: (a / peak) * (mid - 2), class: "bar-on" }));
        if (b) s.append(svg("rect", { x: i * bw + 1, y: mid, width: bw - 2, height: (b / peak) * (mid - 2), class: "bar-off" }));
      });
      const fig = el("figure", { class: "tl", "data-collaboration": c.collaboration_id },
        el("figcaption", { text: "Collaboration " + c.collaboration_id + " · " + c.online + " online · ▲ " + on + " online · ▼ " + off + " offline" }));
      fig.append(s);
      frag.append(fig);
    }
    if (tl.collaborations.length === 0) frag.append(el("p", { class: "summary", text: "No transition in the last hour." }));
    $("timeline").replaceChildren(frag);
    const ol = document.createDocumentFragment();
    for (const t of tl.recent) {
      ol.append(el("li", { text: clock(t.at) + " · " + (t.name || t.key) + " (collaboration " + t.collaboration_id + ", organization " +
        t.organization_id + ") " + (t.online ? "came online" : "went offline") }));
    }
    $("recent").replaceChildren(ol);
  }

  function renderReplicas(snap) {
    const tbody = document.querySelector("#replicas tbody");
    const frag = document.createDocumentFragment();
    let answering = 0, missing = 0;
    for (const r of snap.replicas) {
      if (r.missing) missing++; else answering++;
      const c = r.connections || {};
      frag.append(el("tr", { class: r.missing ? "replica missing" : "replica", "data-instance": r.instance },
        el("th", { scope: "row" }, el("span", { text: r.instance }), r.self ? el("span", { class: "id", text: " (serves this page)" }) : null),
        el("td", {}, r.missing ? el("span", { class: "status status-missing", text: "missing since " + clock(r.last_seen) })
          : el("span", { class: "status " + (r.ready ? "status-online" : "status-offline"), text: r.ready ? "ready" : "not ready" })),
        el("td", { text: r.missing ? "—" : r.redis }),
        el("td", { class: "num", text: r.missing ? "—" : String(c.node || 0) }),
        el("td", { class: "num", text: r.missing ? "—" : String(c.user || 0) }),
        el("td", { class: "num", text: r.missing ? "—" : String(c.unauthenticated || 0) }),
        el("td", { text: r.version || "—" })));
    }
    tbody.replaceChildren(frag);
    let text = answering + " replica" + (answering === 1 ? "" : "s") + " answering";
    if (missing) text += ", " + missing + " missing";
    if (snap.unanswered) text += ", " + snap.unanswered + " did not answer in time";
    $("replica-summary").textContent = text;
  }

  function spark(id, title, values, interval, bad) {
    const W = 200, H = 36;
    const peak = Math.max(1, ...values);
    const pts = values.map((v, i) => (i * W / Math.max(1, values.length - 1)).toFixed(1) + "," + (H - 2 - (v / peak) * (H - 4)).toFixed(1)).join(" ");
    const total = values.reduce((a, b) => a + b, 0);
    const lastRate = values.length ? values[values.length - 1] / interval : 0; // the latest complete interval
    const s = svg("svg", { viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", "aria-hidden": "true" });
    s.append(svg("polyline", { points: pts }));
    return el("div", { class: "spark" + (bad && total ? " bad" : ""), id: "traffic-" + id },
      el("h3", { text: title }),
      el("div", { class: "now" }, el("span", { class: "rate", text: fmt(lastRate || 0) }), " /s"),
      el("div", { class: "total" }, el("span", { class: "count", id: "traffic-" + id + "-total", text: String(Math.round(total)) }), " in 10 min"),
      s);
  }

  function renderTraffic(snap) {
    const t = snap.traffic;
    const refused = new Array(t.in.length).fill(0);
    const reasons = [];
    for (const [reason, vals] of Object.entries(t.refused || {})) {
      vals.forEach((v, i) => { refused[i] += v; });
      const sum = vals.reduce((a, b) => a + b, 0);
      if (sum) reasons.push(reason + " " + sum);
    }
    const frag = document.createDocumentFragment();
    frag.append(spark("in", "Events in", t.in, t.interval_seconds));
    frag.append(spark("out", "Events out", t.out, t.interval_seconds));
    frag.append(spark("publish", "Publish API calls", t.publish, t.interval_seconds));
    const r = spark("refused", "Refused events", refused, t.interval_seconds, true);
    r.append(el("div", { class: "total", text: reasons.length ? "by reason: " + reasons.join(", ") : "no reason" }));
    frag.append(r);
    frag.append(spark("drops", "Drops (adapter, slow consumers)", t.drops, t.interval_seconds, true));
    $("traffic").replaceChildren(frag);
  }

  function render(snap) {
    last = snap;
    renderNodes(snap);
    renderTimeline(snap);
    renderReplicas(snap);
    renderTraffic(snap);
    if (snap.errors && snap.errors.length) setStatus("Live, partial data: " + snap.errors.join("; "), "error");
    else setStatus("Live", "live");
    $("updated").textContent = "updated " + clock(snap.at) + " by replica " + snap.instance;
  }

  let es = null;
  function connect() {
    es = new EventSource("/console/api/stream");
    es.addEventListener("snapshot", (e) => {
      try { render(JSON.parse(e.data)); } catch (err) { setStatus("Bad snapshot: " + err, "error"); }
    });
    es.addEventListener("signedout", () => { es.close(); location.reload(); });
    es.onerror = () => {
      setStatus("Connection lost" + (last ? " (last update " + clock(last.at) + ")" : "") + ", retrying…", "error");
      fetch("/console/api/snapshot", { credentials: "same-origin" }).then((r) => {
        if (r.status === 401) { es.close(); location.reload(); return; }
        if (es.readyState === EventSource.CLOSED) setTimeout(connect, 3000);
      }).catch(() => { if (es.readyState === EventSource.CLOSED) setTimeout(connect, 3000); });
    };
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("search").addEventListener("input", (e) => { filter = e.target.value; applyFilter(); });
    connect();
  });
})();
