#!/usr/bin/env python3
"""Parsing and summarising for benches/load/run.sh.

  stats.py h2load <output file> [<bytes>]  h2load's summary as JSON: rps, done, succeeded, failed,
                                           errored, status_2xx, data_bytes (DATA frame payload) and
                                           errors; with <bytes>, the size of every good response's
                                           body, responses that lack it count as errors (gRPC)
  stats.py wrk <output file>               wrk's summary as JSON: rps, requests, non_2xx,
                                           socket_errors
  stats.py log <h2load log file> <skip s>  latency percentiles (ms) of an h2load --log-file, leaving
                                           out requests started in the first <skip> seconds; also
                                           the number of responses whose status was not 200
  stats.py get <json> <key>                one value of a JSON object (for the script's arithmetic)
  stats.py median-rps <results.jsonl> <test> <server>
                                           the median req/s of one scenario so far (0 if none)
  stats.py report <results.jsonl>          the tables of RESULTS.md, medians over repeated runs,
                                           with the daemon/no-op ratios of this results file
"""
import json
import re
import statistics
import sys


def number(pattern, text, default=0.0):
    m = re.search(pattern, text, re.MULTILINE)
    return float(m.group(1)) if m else default


def h2load(path, response_bytes=0):
    text = open(path, encoding="utf-8", errors="replace").read()
    m = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored",
        text,
    )
    if not m:
        raise SystemExit(f"no h2load summary in {path}")
    total, _started, done, succeeded, failed, errored = map(int, m.groups())
    result = {
        "rps": number(r"finished in [\d.]+m?s, ([\d.]+) req/s", text),
        "total": total,
        "done": done,
        "succeeded": succeeded,
        "failed": failed,
        "errored": errored,
        "status_2xx": int(number(r"status codes: (\d+) 2xx", text)),
        "data_bytes": int(number(r"\((\d+)\) data", text)),
    }
    # A response can be counted in the status codes and still be in flight when the run
    # ends, so only a shortfall of 2xx counts.
    errors = failed + errored + max(0, done - result["status_2xx"])
    if response_bytes:
        # gRPC errors travel in trailers with an HTTP 200, which h2load counts as success; a
        # response without its message is one, and every good response carries the same bytes.
        errors += max(0, done - result["data_bytes"] // response_bytes)
    result["errors"] = errors
    return result


def wrk(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    if "Requests/sec" not in text:
        raise SystemExit(f"no wrk summary in {path}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "rps": number(r"^Requests/sec:\s+([\d.]+)", text),
        "requests": int(number(r"^\s+(\d+) requests in", text)),
        "non_2xx": int(number(r"Non-2xx or 3xx responses: (\d+)", text)),
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
    }


def percentile(sorted_values, q):
    """Nearest rank."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-int(q * 1000) * len(sorted_values) // 1000))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def log(path, skip):
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.split("\t")
            if len(parts) >= 3:
                rows.append((int(parts[0]), int(parts[1]), int(parts[2])))
    if not rows:
        raise SystemExit(f"no requests in {path}")
    first = min(r[0] for r in rows)
    kept = [r for r in rows if r[0] >= first + skip * 1_000_000]
    durations = sorted(r[2] / 1000.0 for r in kept)
    span = (max(r[0] for r in kept) - min(r[0] for r in kept)) / 1e6 if kept else 0
    return {
        "requests": len(kept),
        "achieved_rps": len(kept) / span if span else 0.0,
        "not_200": sum(1 for r in kept if r[1] != 200),
        "p50_ms": percentile(durations, 0.50),
        "p90_ms": percentile(durations, 0.90),
        "p99_ms": percentile(durations, 0.99),
        "p999_ms": percentile(durations, 0.999),
        "max_ms": durations[-1] if durations else float("nan"),
    }


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    if v is None:
        return "n/a"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def report(path):
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.startswith("{")]

    def pick(test, server=None):
        return [r for r in rows if r.get("test") == test and (server is None or r.get("server") == server)]

    out = []
    throughput = [
        ("grpc-static", "gRPC ResolveBoolean, static flag (h2load 8x16)"),
        ("grpc-targeting", "gRPC ResolveBoolean, targeting flag (h2load 8x16)"),
        ("grpc-v2-static", "gRPC v2 ResolveBoolean, static flag, vs the no-op's v1 (h2load 8x16)"),
        ("connect-static", "Connect JSON ResolveBoolean, static flag (wrk 32 conns)"),
        ("connect-targeting", "Connect JSON ResolveBoolean, targeting flag (wrk 32 conns)"),
        ("ofrep-single", "OFREP single flag, static (wrk 32 conns)"),
        ("ofrep-bulk100", "OFREP bulk, 100 flags (wrk 32 conns)"),
    ]
    out.append(
        "| Scenario | flagd-rs req/s | no-op req/s | ratio | flagd-rs CPU µs/req | no-op CPU µs/req "
        "| CPU ratio (no-op/flagd-rs) | runs | errors |"
    )
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for test, label in throughput:
        daemon = pick(test, "daemon")
        if not daemon:
            continue
        noop = pick(test, "noop")
        d = median([r["rps"] for r in daemon])
        n = median([r["rps"] for r in noop])
        # Ratios of the runs paired by repetition, then their median: each pair shares the
        # machine's conditions of that moment.
        pairs = [
            a["rps"] / b["rps"]
            for a in daemon
            for b in noop
            if a.get("run") == b.get("run") and b["rps"]
        ]
        ratio = f"{median(pairs) * 100:.1f} %" if pairs else "n/a"
        errors = sum(r.get("errors", 0) for r in daemon + noop)
        dc = median([r.get("cpu_us_per_req") for r in daemon])
        nc = median([r.get("cpu_us_per_req") for r in noop])
        cpu_ratio = f"{nc / dc * 100:.1f} %" if dc and nc else "n/a"
        out.append(
            f"| {label} | {fmt(d)} | {fmt(n)} | {ratio} | {fmt(dc, 1)} | {fmt(nc, 1)} | {cpu_ratio} "
            f"| {len(daemon)} | {errors} |"
        )

    latency = [r for r in rows if r.get("test", "").startswith("p99-")]
    if latency:
        out.append("")
        out.append("| Constant-rate scenario | target req/s | achieved req/s | p50 ms | p99 ms | p99.9 ms | max ms | not 200 |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in latency:
            out.append(
                f"| {r['test']} ({r['server']}) | {fmt(r['target_rps'])} | {fmt(r['achieved_rps'])} | "
                f"{fmt(r['p50_ms'], 3)} | {fmt(r['p99_ms'], 3)} | {fmt(r['p999_ms'], 3)} | "
                f"{fmt(r['max_ms'], 2)} | {r['not_200'] + r.get('errors', 0)} |"
            )

    for proto in ("grpc", "connect"):
        none = pick(f"p99-reload-{proto}-targeting-none")
        busy = pick(f"p99-reload-{proto}-targeting-10ps")
        pairs = [b["p99_ms"] / a["p99_ms"] for a in none for b in busy if a.get("run") == b.get("run") and a["p99_ms"]]
        if pairs:
            out.append("")
            out.append(
                f"{proto} p99 with 10 rewrites/s vs none, paired by round: "
                f"{', '.join(f'{p * 100:.0f} %' for p in pairs)}; median {median(pairs) * 100:.1f} %; "
                f"median p99 {fmt(median([r['p99_ms'] for r in busy]), 3)} vs "
                f"{fmt(median([r['p99_ms'] for r in none]), 3)} ms; failed "
                f"{sum(r['not_200'] + r.get('errors', 0) for r in none + busy)}"
            )
    for r in pick("reload-wrk"):
        out.append("")
        out.append(
            f"Connect JSON at max rate, {r.get('reloads_per_s', 0)} rewrites/s ({r['server']}): "
            f"{fmt(r['rps'])} req/s, {r['errors']} errors"
        )
    for r in pick("events"):
        out.append("")
        out.append(
            f"save -> configuration_change: {r['writes']} writes, p50 {fmt(r['p50_ms'], 1)} ms, "
            f"p99 {fmt(r['p99_ms'], 1)} ms, max {fmt(r['max_ms'], 1)} ms, extra events {r['extra_events']}"
        )
    for r in pick("rss"):
        out.append("")
        split = ""
        if "anon_kib" in r:
            split = f" (anonymous {r['anon_kib'] / 1024:.1f} MiB, file-backed {r['file_kib'] / 1024:.1f} MiB)"
        out.append(f"RSS {r['label']}: {r['rss_kib'] / 1024:.1f} MiB{split}")
    for r in pick("watchers"):
        out.append("")
        out.append(
            f"SyncFlags watchers: {r['streams']} streams on {r['connections']} connections, opened in "
            f"{fmt(r['open_ms'])} ms; RSS {r['rss_before_kib'] / 1024:.1f} -> {r['rss_after_kib'] / 1024:.1f} MiB "
            f"({fmt(r['bytes_per_stream'])} B/stream); change -> all notified: p50 {fmt(r['p50_ms'], 1)} ms, "
            f"p99 {fmt(r['p99_ms'], 1)} ms, max {fmt(r['max_ms'], 1)} ms ({r['notified']} notified)"
        )
    for r in pick("sse"):
        kind = "plain streams" if not r["contexts"] else f"streams over {r['contexts']} contexts (a bulk request and a token each)"
        out.append("")
        out.append(
            f"OFREP event streams: {r['streams']} {kind}, opened in {fmt(r['open_ms'])} ms; RSS "
            f"{r['rss_before_kib'] / 1024:.1f} (0 streams) -> {r['rss_after_kib'] / 1024:.1f} MiB "
            f"({fmt(r['bytes_per_stream'])} B/stream); change -> all notified: p50 {fmt(r['p50_ms'], 1)} ms, "
            f"p99 {fmt(r['p99_ms'], 1)} ms, max {fmt(r['max_ms'], 1)} ms (worst of 3 changes; one stream "
            f"alone: p50 {fmt(r['single_p50_ms'], 1)} ms)"
        )
    for flag, label, base in [(f, l, b) for f in ("static", "targeting") for l, b in (
        ("100 active overrides vs none", "overrides-100"),
        ("100 active overrides and 1 admin write/s vs none", "overrides-100w"),
    )]:
        none, hundred = pick(f"overrides-0-{flag}"), pick(f"{base}-{flag}")
        if not none or not hundred:
            continue
        pairs = [a["rps"] / b["rps"] for a in hundred for b in none if a.get("run") == b.get("run") and b["rps"]]
        out.append("")
        out.append(
            f"gRPC ResolveBoolean, {flag} flag, {label}: "
            f"{fmt(median([r['rps'] for r in hundred]))} vs {fmt(median([r['rps'] for r in none]))} req/s, "
            f"ratio {median(pairs) * 100:.1f} % (runs {[round(p * 100, 1) for p in pairs]}), CPU µs/req "
            f"{fmt(median([r.get('cpu_us_per_req') for r in hundred]), 1)} vs "
            f"{fmt(median([r.get('cpu_us_per_req') for r in none]), 1)}, errors "
            f"{sum(r.get('errors', 0) for r in none + hundred)}"
        )
    for proto in ("grpc", "connect"):
        opened, off = pick(f"dashboard-open-{proto}"), pick(f"dashboard-off-{proto}")
        if not opened or not off:
            continue
        cpu = [a["cpu_us_per_req"] / b["cpu_us_per_req"] for a in opened for b in off
               if a.get("run") == b.get("run") and b.get("cpu_us_per_req")]
        out.append("")
        out.append(
            f"{proto} ResolveBoolean, targeting flag, dashboard open vs --ui off: "
            f"{fmt(median([r['rps'] for r in opened]))} vs {fmt(median([r['rps'] for r in off]))} req/s, "
            f"CPU µs/req {fmt(median([r.get('cpu_us_per_req') for r in opened]), 1)} vs "
            f"{fmt(median([r.get('cpu_us_per_req') for r in off]), 1)}, ratio {median(cpu):.3f} "
            f"(runs {[round(c, 3) for c in cpu]}), errors {sum(r.get('errors', 0) for r in opened + off)}"
        )
    traced, untraced = pick("otel-on-grpc"), pick("otel-off-grpc")
    if traced and untraced:
        cpu = [a["cpu_us_per_req"] / b["cpu_us_per_req"] for a in traced for b in untraced
               if a.get("run") == b.get("run") and b.get("cpu_us_per_req")]
        out.append("")
        out.append(
            f"gRPC ResolveBoolean, targeting flag, tracing at 1 % vs off: "
            f"{fmt(median([r['rps'] for r in traced]))} vs {fmt(median([r['rps'] for r in untraced]))} req/s, "
            f"CPU µs/req {fmt(median([r.get('cpu_us_per_req') for r in traced]), 1)} vs "
            f"{fmt(median([r.get('cpu_us_per_req') for r in untraced]), 1)}, ratio {median(cpu):.3f} "
            f"(runs {[round(c, 3) for c in cpu]}), errors {sum(r.get('errors', 0) for r in traced + untraced)}"
        )
    for r in pick("override-visible"):
        out.append("")
        out.append(
            f"override accepted -> visible ({r['load']}, {r['switches']} switches), ms p50/p99/max from the "
            f"request: ack {fmt(r['ack_p50_ms'], 2)}/{fmt(r['ack_p99_ms'], 2)}/{fmt(r['ack_max_ms'], 2)}, "
            f"RPC {fmt(r['rpc_p50_ms'], 2)}/{fmt(r['rpc_p99_ms'], 2)}/{fmt(r['rpc_max_ms'], 2)}, "
            f"EventStream {fmt(r['event_p50_ms'], 2)}/{fmt(r['event_p99_ms'], 2)}/{fmt(r['event_max_ms'], 2)}, "
            f"SyncFlags {fmt(r['sync_p50_ms'], 2)}/{fmt(r['sync_p99_ms'], 2)}/{fmt(r['sync_max_ms'], 2)}"
        )
    out.extend(load_report(rows))
    print("\n".join(out))


def load_report(rows):
    """The load mode: per file, medians over rounds; the large file beyond the 1-flag file,
    paired by round (each pair met the machine in the same state)."""
    files = [r for r in rows if r.get("test") == "load-file"]
    if not files:
        return []
    out = ["", "| flag file | flags | start -> ready ms | rewrite -> served ms (p50 / max) | RSS MiB | anonymous MiB | rounds |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    by_flags = {}
    for r in files:
        by_flags.setdefault(r["flags"], []).append(r)
    for flags in sorted(by_flags):
        rs = by_flags[flags]
        served = sorted(t for r in rs for t in r["served_ms"])
        out.append(
            f"| {rs[0]['file']} | {flags:,} | {fmt(median([r['ready_ms'] for r in rs]), 1)} | "
            f"{fmt(median(served), 1)} / {fmt(served[-1] if served else None, 1)} | "
            f"{median([r['rss_kib'] for r in rs]) / 1024:.1f} | {median([r['anon_kib'] for r in rs]) / 1024:.1f} | {len(rs)} |"
        )
    if len(by_flags) >= 2:
        small, large = by_flags[min(by_flags)], by_flags[max(by_flags)]
        pairs = [(a, b) for a in small for b in large if a["run"] == b["run"]]
        if pairs:
            ready = median([b["ready_ms"] - a["ready_ms"] for a, b in pairs])
            rss = median([(b["rss_kib"] - a["rss_kib"]) / 1024 for a, b in pairs])
            served = median([t for _, b in pairs for t in b["served_ms"]])
            out.append("")
            out.append(
                f"{max(by_flags):,} flags beyond {min(by_flags):,}, paired by round: start -> ready "
                f"+{ready:.1f} ms, RSS +{rss:.1f} MiB; rewrite of one flag -> served {served:.1f} ms (median)"
            )
    return out


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "h2load":
        print(json.dumps(h2load(args[0], int(args[1]) if len(args) > 1 else 0)))
    elif cmd == "wrk":
        print(json.dumps(wrk(args[0])))
    elif cmd == "log":
        print(json.dumps(log(args[0], float(args[1]))))
    elif cmd == "get":
        print(json.loads(args[0])[args[1]])
    elif cmd == "median-rps":
        rows = [json.loads(line) for line in open(args[0], encoding="utf-8") if line.startswith("{")]
        rps = [r["rps"] for r in rows if r.get("test") == args[1] and r.get("server") == args[2]]
        print(int(median(rps) or 0))
    elif cmd == "report":
        report(args[0])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
