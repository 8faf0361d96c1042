"""The table of bench/compare.sh: eventserver and Node.js side by side, with
the ratio eventserver / Node.js and the issue's target for that ratio.

    python3 bench/table.py RESULTS.jsonl MACHINE-FILE ES-LABEL NODE-LABEL

RESULTS.jsonl holds one `cmd/loadgen` JSON object a line, each with "kind"
(es or node) added.
"""
import json
import sys


def main(results, machine, es_label, node_label):
    rows = [json.loads(l) for l in open(results) if l.strip()]
    by = {}
    for r in rows:
        by.setdefault((r["shape"], r["kind"]), []).append(r["result"])
    out = []

    def row(name, es, node, target="", fmt="{:.1f}", ratio=True):
        def show(v):
            return "—" if v is None else (fmt.format(v) if isinstance(v, (int, float)) else str(v))
        r = ""
        if ratio and isinstance(es, (int, float)) and isinstance(node, (int, float)) and node:
            r = f"{es / node:.2f}×"
        out.append([name, show(es), show(node), r, target])

    def pair(shape, pick):
        """Results of a shape, paired es/node by pick(result) (e.g. clients)."""
        es = {pick(r): r for r in by.get((shape, "es"), [])}
        node = {pick(r): r for r in by.get((shape, "node"), [])}
        return [(k, es.get(k), node.get(k)) for k in sorted(set(es) | set(node))]

    # memory
    big = (by.get(("idle", "es-big")) or [None])[-1]
    for n, es, node in pair("idle", lambda r: r["clients"]):
        g = lambda r, k: None if r is None else r.get(k)
        row(f"memory: RSS per idle websocket at {n} (KiB)", g(es, "rss_per_conn_kib"), g(node, "rss_per_conn_kib"), "≤ 1× (aim ⅓)")
        row(f"memory: RSS with {n} idle websockets (MiB)", g(es, "rss_after_kib") and es["rss_after_kib"] / 1024,
            g(node, "rss_after_kib") and node["rss_after_kib"] / 1024)
        alive = lambda r: None if r is None else f'{r["alive"]}/{r["clients"]}'
        row(f"memory: open after a ping cycle, of {n}", alive(es), alive(node), "all")
        row(f"memory: goroutines with {n} idle websockets", g(es, "goroutines_after"), None, "", "{:.0f}")
    if big is not None:
        n = big["clients"]
        row(f"memory: RSS with {n} idle websockets, one process (MiB)", big["rss_after_kib"] / 1024, None)
        row(f"memory: RSS per idle websocket at {n} (KiB)", big["rss_per_conn_kib"], None)
        row(f"memory: open after a ping cycle, of {n}", f'{big["alive"]}/{n}', None, "all")
        row(f"memory: goroutines with {n} idle websockets", big.get("goroutines_after"), None, "", "{:.0f}")
        row(f"memory: load generator RSS for {n} clients (MiB)", big["loadgen_rss_kib"] / 1024, None)

    # connects
    for n, es, node in pair("connects", lambda r: r["clients"]):
        g = lambda r, k: None if r is None else r.get(k)
        lat = lambda r, k: None if r is None else r["latency"][k]
        inf = (es or node)["in_flight"]
        row(f"connects: per second ({n}, {inf} in flight, JWT checked)", g(es, "connects_per_second"), g(node, "connects_per_second"), "≥ 2×", "{:.0f}")
        row("connects: server CPU per connect (ms)", g(es, "cpu_ms_per_connect"), g(node, "cpu_ms_per_connect"), "", "{:.3f}")
        row("connects: latency p50 (ms)", lat(es, "p50_ms"), lat(node, "p50_ms"), "", "{:.1f}")
        row("connects: latency p99 (ms)", lat(es, "p99_ms"), lat(node, "p99_ms"), "", "{:.1f}")
        fails = lambda r: None if r is None else f'{r["failed"]} of {r["clients"]}'
        row("connects: failed", fails(es), fails(node), "0")
        row("connects: load generator CPU (s)", g(es, "loadgen_cpu_seconds"), g(node, "loadgen_cpu_seconds"), "", "{:.2f}", ratio=False)

    # fanout
    fan = {k: v[-1] for k, v in by.items() if k[0] == "fanout"}
    es, node = fan.get(("fanout", "es")), fan.get(("fanout", "node"))
    if es or node:
        any_ = es or node
        per_room = any_["clients"] / any_["rooms"]
        steps = lambda r: {} if r is None else {s["rate"]: s for s in r["steps"]}
        se, sn = steps(es), steps(node)
        for rate in sorted(set(se) | set(sn)):
            e, n = se.get(rate), sn.get(rate)
            nominal = rate * per_room
            name = f"fanout {rate}/s ({nominal / 1000:g}k deliveries/s offered):"
            g = lambda s, k: None if s is None else s.get(k)
            lat = lambda s, k: None if s is None else s["latency"][k]
            row(f"{name} deliveries/s", g(e, "deliveries_per_second"), g(n, "deliveries_per_second"), "", "{:.0f}")
            comp = lambda s: None if s is None else f'{s["delivered"]}/{s["expected"]}' + (f' ({s["publish_errors"]} publish errors)' if s["publish_errors"] else "")
            row(f"{name} delivered", comp(e), comp(n), "all")
            row(f"{name} p50 (ms)", lat(e, "p50_ms"), lat(n, "p50_ms"), "", "{:.1f}")
            row(f"{name} p99 (ms)", lat(e, "p99_ms"), lat(n, "p99_ms"), "≤ ⅕" if nominal == 60000 else "", "{:.1f}")
            row(f"{name} max (ms)", lat(e, "max_ms"), lat(n, "max_ms"), "", "{:.1f}")
            row(f"{name} server CPU per delivery (µs)", g(e, "cpu_us_per_delivery"), g(n, "cpu_us_per_delivery"), "≤ ⅓", "{:.1f}")
            row(f"{name} load generator CPU (s)", g(e, "loadgen_cpu_seconds"), g(n, "loadgen_cpu_seconds"), "", "{:.2f}", ratio=False)

        def best(r):
            ok = [s["rate"] for s in (r or {}).get("steps", [])
                  if s["latency"]["p99_ms"] < 100 and s["delivered"] >= s["expected"] and not s["publish_errors"]]
            return max(ok) if ok else (None if r is None else 0)
        row("fanout: highest rate with p99 < 100 ms, nothing lost (emits/s)", best(es), best(node), "≥ 1.5×", "{:.0f}")
        row("fanout: duplicates", None if es is None else es["duplicates"], None if node is None else node["duplicates"], "0", "{:.0f}")

    notes = []
    for r in rows:
        res = r["result"]
        for k in ("error", "metrics_error"):
            if res.get(k):
                notes.append(f'{r["shape"]} {res.get("clients")} on {r["kind"]}: {k}: {res[k]}')
        for st in res.get("steps", []):
            if st.get("publish_error"):
                notes.append(f'fanout {st["rate"]}/s on {r["kind"]}: first publish error: {st["publish_error"]}')

    print(f"machine: {open(machine).read().strip()}")
    print()
    cols = ["measure", es_label, node_label, "ratio", "target (ratio)"]
    print("| " + " | ".join(cols) + " |")
    print("| --- " * len(cols) + "|")
    for r in out:
        print("| " + " | ".join(r) + " |")
    for n in notes:
        print("note: " + n)


if __name__ == "__main__":
    main(*sys.argv[1:5])
