"""Tables and plots of bench/capacity.sh's results (docs/capacity.md).

    python3 bench/capacity.py RESULTS.jsonl [PLOT-DIR]

RESULTS.jsonl: the JSON lines of bench/capacity.sh (a "machine" line, then
cmd/loadgen's objects with phase, name, mode, instances and the load average
before and after). Prints the per-component costs and the simulation as
Markdown tables; with PLOT-DIR, also writes PNG plots there (matplotlib,
Agg backend):

    redis_per_master.png         Redis CPU of each master against instances,
                                 classic against sharded (dynamic)
    server_cpu_per_delivery.png  server CPU per delivery against deliveries/s
    p99.png                      p99 latency against deliveries/s
    redis_per_publish.png        one redis-server: Redis CPU per publish
                                 against subscribed instances, with the fit
"""
import json
import os
import sys


def load(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    machine = next((r for r in rows if r.get("phase") == "machine"), {})
    by = {r["name"]: r for r in rows if r.get("phase") != "machine"}
    return machine, by, [r for r in rows if r.get("phase") == "simulation"]


def fit(xs, ys):
    """Least squares y = a + b x; returns (a, b)."""
    n = len(xs)
    if n < 2:
        return (ys[0] if ys else 0.0), 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return my - b * mx, b


def components(by):
    """The per-component costs: a dict of figures and the rows of a table."""
    out, rows = {}, []

    def row(what, value, how):
        rows.append((what, value, how))

    idle = by.get("idle")
    if idle:
        r = idle["result"]
        out["rss_kib_per_conn"] = r.get("rss_per_conn_kib")
        row("server RSS per idle WebSocket (KiB)", f'{r.get("rss_per_conn_kib", 0):.1f}',
            f'{r["clients"]} idle on one process after a ping cycle, {r["alive"]}/{r["clients"]} alive; '
            f'RSS {r.get("rss_before_kib", 0) / 1024:.1f} → {r.get("rss_after_kib", 0) / 1024:.1f} MiB')

    conns = sorted((int(k.split("-")[1]), v["result"]) for k, v in by.items() if k.startswith("connects-"))
    if conns:
        k1, c1 = conns[0]
        out["cpu_ms_per_connect"] = c1["cpu_ms_per_connect"]
        row("server CPU per connect (ms)", f'{c1["cpu_ms_per_connect"]:.3f}',
            f'{c1["connected"]} connects, {c1["in_flight"]} in flight, JWT checked, {k1} room joined and announced; '
            f'{c1["connects_per_second"]:.0f}/s, p99 {c1["latency"]["p99_ms"]:.0f} ms')
        if len(conns) > 1:
            kn, cn = conns[-1]
            per_join = (cn["cpu_ms_per_connect"] - c1["cpu_ms_per_connect"]) / (kn - k1)
            out["cpu_ms_per_join"] = per_join
            row("server CPU per room join (ms)", f"{per_join:.4f}",
                f'(CPU per connect with {kn} rooms − with {k1}) / {kn - k1}: {cn["cpu_ms_per_connect"]:.3f} − '
                f'{c1["cpu_ms_per_connect"]:.3f} ms; includes the announcement of the join to the room (one delivery)')

    d1 = by.get("delivery-room1")
    dn = next((v for k, v in by.items() if k.startswith("delivery-room") and k != "delivery-room1"), None)
    if d1 and dn:
        s1, sn = d1["result"]["steps"][0], dn["result"]["steps"][0]
        size = dn["result"]["clients"] / dn["result"]["rooms"]
        # cpu = a·events + b·deliveries; with rooms of 1, deliveries = events.
        e1, e2, dd2 = s1["events"], sn["events"], sn["delivered"]
        ab = s1["cpu_seconds"] / e1
        b = (sn["cpu_seconds"] - ab * e2) / (dd2 - e2)
        a = ab - b
        out["cpu_us_per_event"] = a * 1e6
        out["cpu_us_per_delivery"] = b * 1e6
        row("server CPU per delivery, one process (µs)", f"{b * 1e6:.1f}",
            f'{sn["rate"]} events/s to rooms of {size:.0f} ({sn["deliveries_per_second"]:.0f} deliveries/s, '
            f'{sn["cpu_us_per_delivery"]:.1f} µs each all in) against rooms of 1 ({s1["cpu_us_per_delivery"]:.1f} µs): '
            f'the slope')
        row("server CPU per published event, one process (µs)", f"{a * 1e6:.1f}",
            "the intercept: the HTTP request, parsing, routing (no Redis here)")

    reds = sorted((v["instances"], v["result"]) for k, v in by.items() if k.startswith("redis-"))
    if reds:
        ns, per_pub, srv = [], [], []
        for n, r in reds:
            s = r["steps"][0]
            ns.append(n)
            per_pub.append(sum(s.get("redis_cpu_seconds", [0])) * 1e6 / s["events"])
            srv.append(s["cpu_seconds"] * 1e6 / s["events"])
        a, b = fit(ns, per_pub)
        sa, sb = fit(ns, srv)
        out.update(redis_us_per_publish=a, redis_us_per_subscriber=b, redis_points=list(zip(ns, per_pub)),
                   server_us_per_event_base=sa, server_us_per_event_per_instance=sb)
        pts = ", ".join(f"{n}: {p:.1f}" for n, p in zip(ns, per_pub))
        rate = reds[0][1]["steps"][0]["rate"]
        row("Redis CPU per publish, fixed part (µs)", f"{a:.1f}",
            f"one redis-server, classic pub/sub, {rate} events/s; µs per publish by subscribed instances: {pts}; "
            "intercept of the fit")
        row("Redis CPU per publish per subscribed instance (µs)", f"{b:.2f}", "slope of the same fit")
        pts = ", ".join(f"{n}: {p:.0f}" for n, p in zip(ns, srv))
        row("server CPU per event per instance that receives it (µs)", f"{sb:.1f}",
            f"slope of all servers' CPU per event against instances ({pts} µs); each instance decodes and routes "
            "every event of a room it holds (classic: every event)")
    return out, rows


def sim_rows(sims):
    rows = []
    for r in sims:
        res = r["result"]
        for s in res["steps"]:
            red = [c / s["seconds"] * 100 for c in s.get("redis_cpu_seconds", [])]
            rows.append(dict(mode=r["mode"], instances=r["instances"], clients=res["clients"], rooms=res["rooms"],
                             spread=res.get("spread", 0) or r["instances"], events=s["events"], secs=s["seconds"],
                             redis_s=s.get("redis_cpu_seconds", []), server_s=s.get("cpu_seconds", 0),
                             rate=s["rate"], dps=s["deliveries_per_second"], delivered=s["delivered"],
                             expected=s["expected"], errors=s["publish_errors"], p50=s["latency"]["p50_ms"],
                             p99=s["latency"]["p99_ms"], cpu_us=s.get("cpu_us_per_delivery", 0),
                             server_cores=s.get("cpu_seconds", 0) / s["seconds"], redis=red,
                             redis_us_per_pub=sum(s.get("redis_cpu_seconds", [])) * 1e6 / max(1, s["events"]),
                             load=(r["load_before"], r["load_after"])))
    return rows


def marginal(sims):
    """Per mode, instances and spread: the slopes over the rates (what one
    more event costs, without the fixed background of idle connections and
    the cluster's own traffic)."""
    out = []
    keys = sorted({(r["spread"], r["mode"], r["instances"]) for r in sims})
    for spread, mode, n in keys:
        pts = sorted((r for r in sims if (r["spread"], r["mode"], r["instances"]) == (spread, mode, n)),
                     key=lambda r: r["rate"])
        if len(pts) < 2:
            continue
        eps = [r["events"] / r["secs"] for r in pts]
        dps = [r["delivered"] / r["secs"] for r in pts]
        _, srv_d = fit(dps, [r["server_s"] / r["secs"] for r in pts])
        base, srv_e = fit(eps, [r["server_s"] / r["secs"] for r in pts])
        masters = len(pts[0]["redis_s"])
        per_master = [fit(eps, [r["redis_s"][k] / r["secs"] for r in pts])[1] * 1e6 for k in range(masters)]
        out.append(dict(spread=spread, mode=mode, instances=n, server_us_per_delivery=srv_d * 1e6,
                        server_base_us_per_conn=base * 1e6 / pts[0]["clients"],
                        server_us_per_event=srv_e * 1e6, redis_us_per_publish_per_master=per_master,
                        room_size=pts[0]["clients"] / pts[0]["rooms"]))
    return out


def plots(comp, sims, outdir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(outdir, exist_ok=True)
    colors = {"classic": "tab:red", "dynamic": "tab:blue", "static": "tab:green"}
    modes = sorted({r["mode"] for r in sims})
    rates = sorted({r["rate"] for r in sims})
    if sims:
        top = rates[-1]
        spreads = sorted({r["spread"] >= r["instances"] for r in sims}, reverse=True)  # True: every instance

        def where(every):
            return "rooms on every instance" if every else "each room on %d instances" % next(
                r["spread"] for r in sims if r["spread"] < r["instances"])

        def sub(r, every):
            return (r["spread"] >= r["instances"]) == every

        fig, axes = plt.subplots(1, len(spreads), figsize=(6 * len(spreads), 4.2), sharey=True, squeeze=False)
        for ax, every in zip(axes[0], spreads):
            for m in modes:
                pts = sorted((r["instances"], r["redis"]) for r in sims
                             if r["mode"] == m and r["rate"] == top and sub(r, every))
                if not pts:
                    continue
                for k in range(max(len(p[1]) for p in pts)):
                    ax.plot([p[0] for p in pts], [p[1][k] for p in pts], "o-" if k == 0 else "o--",
                            color=colors.get(m), alpha=1 - 0.25 * k, label=f"{m}, master {k + 1}")
            ax.set_xlabel("eventserver instances")
            ax.set_title(f"{where(every)}, {top} events/s", fontsize=10)
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        axes[0][0].set_ylabel("Redis CPU per master (% of one core)")
        fig.suptitle("Each master's CPU, 3-master Redis Cluster (2 shared cores, loopback)", fontsize=11)
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, "redis_per_master.png"), dpi=100)
        plt.close(fig)

        styles = {n: s for n, s in zip(sorted({r["instances"] for r in sims}), ["o", "s", "^", "D", "v"])}
        for name, key, ylabel, title in (
                ("server_cpu_per_delivery.png", "cpu_us", "server CPU per delivery (µs, all instances)",
                 "Server CPU per delivery"),
                ("p99.png", "p99", "p99 latency (ms), POST to arrival", "p99 latency")):
            fig, axes = plt.subplots(1, len(spreads), figsize=(6 * len(spreads), 4.2), sharey=True, squeeze=False)
            for ax, every in zip(axes[0], spreads):
                for m in modes:
                    for n in sorted(styles):
                        pts = sorted((r["dps"], r[key]) for r in sims
                                     if r["mode"] == m and r["instances"] == n and sub(r, every))
                        if pts:
                            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", marker=styles[n],
                                    color=colors.get(m), label=f"{m}, {n} instances")
                ax.set_xlabel("deliveries a second (all instances)")
                ax.set_title(where(every), fontsize=10)
                ax.set_ylim(bottom=0)
                ax.grid(alpha=0.3)
                ax.legend(fontsize=7)
            axes[0][0].set_ylabel(ylabel)
            fig.suptitle(title + " (2 shared cores, loopback)", fontsize=11)
            fig.tight_layout()
            fig.savefig(os.path.join(outdir, name), dpi=100)
            plt.close(fig)

    if comp.get("redis_points"):
        ns = [p[0] for p in comp["redis_points"]]
        fig, ax = plt.subplots(figsize=(7, 4.2))
        ax.plot(ns, [p[1] for p in comp["redis_points"]], "o", color="tab:red", label="measured")
        a, b = comp["redis_us_per_publish"], comp["redis_us_per_subscriber"]
        ax.plot([0, max(ns)], [a, a + b * max(ns)], "-", color="gray", label=f"fit: {a:.1f} + {b:.2f}·instances µs")
        ax.set_xlabel("subscribed eventserver instances")
        ax.set_ylabel("Redis CPU per publish (µs)")
        ax.set_title("One redis-server, classic pub/sub")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, "redis_per_publish.png"), dpi=110)
        plt.close(fig)


def main(path, outdir=None):
    machine, by, sims_raw = load(path)
    if machine:
        print(f'machine: {machine["cores"]} cores ({machine["cpu"]}), {machine["mem_mib"]} MiB, Linux {machine["kernel"]}, '
              f'{machine["go"]}, Redis {machine["redis"]}, open files {machine["open_files"]}, '
              f'load average {machine["load"]:.2f} at the start, {machine["date"]}')
        print()
    comp, rows = components(by)
    if rows:
        print("| cost | measured | how |")
        print("| --- | --- | --- |")
        for what, value, how in rows:
            print(f"| {what} | {value} | {how} |")
        loads = [(v["name"], v["load_before"], v["load_after"]) for v in by.values() if v.get("phase") == "components"]
        print()
        print("load average before → after: " + ", ".join(f"{n} {a:.1f}→{b:.1f}" for n, a, b in loads))
        print()
    sims = sim_rows(sims_raw)
    if sims:
        print("| rooms on | mode | instances × clients | rooms | events/s | deliveries/s | delivered | p50 (ms) | p99 (ms) "
              "| server CPU per delivery (µs) | servers' cores | Redis CPU per master (% of a core) "
              "| Redis CPU per publish, all masters (µs) | load before → after |")
        print("| --- " * 14 + "|")
        for r in sims:
            where = "all" if r["spread"] >= r["instances"] else f'{r["spread"]}'
            print(f"| {where} ", end="")
            lost = "" if r["delivered"] >= r["expected"] and not r["errors"] else f' ({r["errors"]} publish errors)'
            print(f'| {r["mode"]} | {r["instances"]} × {r["clients"] // r["instances"]} | {r["rooms"]} | {r["rate"]} '
                  f'| {r["dps"]:.0f} | {r["delivered"]}/{r["expected"]}{lost} | {r["p50"]:.1f} | {r["p99"]:.1f} '
                  f'| {r["cpu_us"]:.1f} | {r["server_cores"]:.2f} | {" / ".join(f"{x:.1f}" for x in r["redis"])} '
                  f'| {r["redis_us_per_pub"]:.1f} | {r["load"][0]:.1f} → {r["load"][1]:.1f} |')
        print()
        print("Marginal costs (slopes over the rates; what one more event costs):")
        print()
        print("| rooms on | mode | instances | server CPU per event (µs, all instances) | per delivery (µs) "
              "| Redis CPU per publish, each master (µs) | sum of masters (µs) "
              "| servers' CPU at 0 events/s, per connection (µs/s) |")
        print("| --- " * 8 + "|")
        for m in marginal(sims):
            where = "every instance" if m["spread"] >= m["instances"] else f'{m["spread"]} instances'
            pm = m["redis_us_per_publish_per_master"]
            print(f'| {where} | {m["mode"]} | {m["instances"]} | {m["server_us_per_event"]:.0f} '
                  f'| {m["server_us_per_delivery"]:.1f} | {" / ".join(f"{x:.0f}" for x in pm)} | {sum(pm):.0f} '
                  f'| {m["server_base_us_per_conn"]:.1f} |')
    if outdir:
        plots(comp, sims, outdir)
        print()
        print(f"plots written to {outdir}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(*sys.argv[1:3])
