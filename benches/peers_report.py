#!/usr/bin/env python3
"""Summarises a side-by-side run of flagd-rs and the peer evaluators.

  peers_report.py table <results.jsonl>   ops/s, load ms and RSS per evaluator, with the ratio of
                                          flagd-rs to the fastest (or leanest) peer
  peers_report.py diff <workload/results> per-flag agreement of flagd-rs with each peer's
                                          differential output (v3 hash against py and rust,
                                          v2 hash against js)

Only the standard library is used.
"""
import json
import re
import sys
from collections import Counter

OURS = "flagd-rs@"
KINDS = [
    ("static-bool", "static"),
    ("email-domain", "if/in"),
    ("canary-split", "fractional"),
    ("semver-gate", "sem_ver"),
    ("string-ops", "starts/ends"),
    ("ref-shared", "$ref"),
]


def short(peer):
    if peer.startswith(OURS):
        return "flagd-rs"
    if peer.startswith("js-"):
        return "js"
    if peer.startswith("py-"):
        return "py"
    if peer.startswith("rust-flagd-evaluation-engine"):
        return "rust-engine"
    if peer.startswith("rust-"):
        return "rust"
    return peer


def rate(x):
    if x >= 1e6:
        return f"{x / 1e6:.2f} M/s"
    if x >= 1e3:
        return f"{x / 1e3:.0f} k/s"
    return f"{x:.0f} /s"


def print_table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"
    print(line(header))
    print("|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|")
    for r in rows:
        print(line(r))
    print()


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else None


def table(path):
    # Each `eval`/`load` measurement is tagged with its round: a round is the peers then flagd-rs,
    # so a ratio is only ever taken between numbers measured minutes apart, not hours.
    evals, loads, mems, machines = [], [], {}, []
    detail = []
    rnd = {"eval": -1, "load": -1}
    seen = {"eval": set(), "load": set()}
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            raw = raw.strip()
            if not raw.startswith("{"):
                continue
            d = json.loads(raw)
            if "machine" in d:
                machines.append(d["machine"])
                continue
            name = short(d.get("peer", "?"))
            for mode in ("eval", "load"):
                if mode in d and (name in seen[mode] or rnd[mode] < 0):
                    rnd[mode] += 1
                    seen[mode] = set()
            if "eval" in d:
                seen["eval"].add(name)
                evals.append((rnd["eval"], name, {k: v.get("ops_per_s_median", 0) for k, v in d["eval"].items()},
                              sum(v.get("errors_total", 0) for v in d["eval"].values())))
            elif "load" in d:
                seen["load"].add(name)
                loads.append((rnd["load"], name, {f: v.get("load_ms_median") for f, v in d["load"].items()}))
                if name == "flagd-rs":
                    detail.append(d["load"])
            elif "file" in d and "rss_after_mb" in d:
                added = d["rss_after_mb"] - d["rss_before_mb"]
                mems.setdefault(name, {})[d["file"]] = (added, d.get("peak_rss_mb"), d.get("rss_added_by_second_copy_mb"))

    if machines:
        print("machine: " + "; ".join(f"{m['when']} load {m['loadavg']}" for m in machines) + f" ({machines[0]['nproc']} CPUs)")
        print()

    if evals:
        names = list(dict.fromkeys(n for _, n, _, _ in evals))
        peers = [n for n in names if n != "flagd-rs"]
        rounds = sorted({r for r, _, _, _ in evals})
        by = {(r, n): v for r, n, v, _ in evals}
        header = ["kind"] + peers + ["flagd-rs", "fastest peer", "ours / fastest", "per round"]
        rows = []
        for key, label in KINDS:
            med = {n: median([by[(r, n)][key] for r in rounds if (r, n) in by and by[(r, n)].get(key)]) for n in names}
            ratios, fastest = [], []
            for r in rounds:
                pr = {p: by[(r, p)].get(key) for p in peers if (r, p) in by and by[(r, p)].get(key)}
                ours = by.get((r, "flagd-rs"), {}).get(key)
                if pr and ours:
                    best = max(pr, key=pr.get)
                    fastest.append(best)
                    ratios.append(ours / pr[best])
            row = [label] + [rate(med[n]) if med[n] else "-" for n in peers]
            row += [rate(med["flagd-rs"]) if med.get("flagd-rs") else "-",
                    max(set(fastest), key=fastest.count) if fastest else "-",
                    f"{median(ratios):.1f}x" if ratios else "-",
                    " ".join(f"{x:.1f}" for x in ratios)]
            rows.append(row)
        print(f"Evaluations per second, median over {len(rounds)} round(s) of each evaluator's median of 7 runs;")
        print("ratio = median over rounds of flagd-rs / fastest peer in the same round (higher is better)")
        print_table(header, rows)
        for r, n, _, errs in evals:
            if errs:
                print(f"note: {n} reported {errs} errors while timing (round {r + 1})")

    if loads:
        files = ["flags-1000.json", "flags-10000.json"]
        names = list(dict.fromkeys(n for _, n, _ in loads))
        peers = [n for n in names if n != "flagd-rs"]
        rounds = sorted({r for r, _, _ in loads})
        by = {(r, n): v for r, n, v in loads}
        header = ["evaluator"] + [f"load {f}" for f in files]
        rows = []
        for n in names:
            row = [n]
            for f in files:
                m = median([by[(r, n)][f] for r in rounds if (r, n) in by and by[(r, n)].get(f) is not None])
                row.append(f"{m:,.2f} ms" if m is not None else "-")
            rows.append(row)
        if "flagd-rs" in names and peers:
            row = ["flagd-rs / fastest peer"]
            for f in files:
                ratios = []
                for r in rounds:
                    pr = [by[(r, p)][f] for p in peers if (r, p) in by and by[(r, p)].get(f)]
                    ours = by.get((r, "flagd-rs"), {}).get(f)
                    if pr and ours:
                        ratios.append(ours / min(pr))
                row.append(f"{median(ratios):.2f}x" if ratios else "-")
            rows.append(row)
        print(f"Load of a flag document, bytes to a usable flag set (median over {len(rounds)} round(s); lower is better)")
        print_table(header, rows)
        for f in files:
            parts = [d[f] for d in detail if f in d]
            if parts:
                pick = lambda k: median([p.get(k) for p in parts if p.get(k) is not None])
                print(f"flagd-rs {f}: parse {pick('parse_ms_median')} ms, schema validation "
                      f"{pick('validate_ms_median')} ms, validation+compile from parsed "
                      f"{pick('validate_and_compile_ms_median')} ms, {parts[0].get('diagnostics')} diagnostics")
        print()

    if mems:
        files = ["flags.json", "flags-10000.json"]
        header = ["evaluator"] + [f"RSS added {f}" for f in files] + ["peak RSS (10k)"]
        rows = []
        for p, v in mems.items():
            row = [p] + [f"{v[f][0]:+.1f} MB" if f in v else "-" for f in files]
            row.append(f"{v['flags-10000.json'][1]:.1f} MB" if "flags-10000.json" in v else "-")
            rows.append(row)
        print("Memory (VmRSS after load minus before, fresh process per file; lower is better)")
        print_table(header, rows)
        ours = mems.get("flagd-rs", {}).get("flags-10000.json")
        if ours and ours[2] is not None:
            print(f"flagd-rs: a second copy of the 10k set, loaded while the first is alive, adds {ours[2]:+.1f} MB")
            print("(the first load's transient parse tree stays in the heap and is reused)")
            print()


def norm(cell):
    """Puts the peers' spellings of an error on one form: ERROR:TYPE_MISMATCH."""
    if not cell.startswith("ERROR:"):
        return cell
    code = cell[len("ERROR:"):].split(".")[-1]
    code = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", code).upper()
    return "ERROR:" + code


def read_results(path):
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                d = json.loads(line)
                out.append((d["targetingKey"], {k: norm(v) for k, v in d["results"].items()}))
    return out


def compare(ours_path, peer_path, label):
    try:
        ours, peer = read_results(ours_path), read_results(peer_path)
    except FileNotFoundError as e:
        print(f"{label}: missing {e.filename}")
        return
    if len(ours) != len(peer):
        print(f"{label}: {len(ours)} vs {len(peer)} contexts")
    flags = list(ours[0][1].keys()) if ours else []
    total = Counter()
    mismatch = Counter()
    non_ascii = Counter()
    examples = {}
    for (tk, a), (tk2, b) in zip(ours, peer):
        if tk != tk2:
            print(f"{label}: context order differs at {tk!r} / {tk2!r}")
            return
        for f in flags:
            total[f] += 1
            if a.get(f) != b.get(f):
                mismatch[f] += 1
                if not tk.isascii():
                    non_ascii[f] += 1
                examples.setdefault(f, (tk, a.get(f), b.get(f)))
    agree = sum(total.values()) - sum(mismatch.values())
    print(f"{label}: {agree}/{sum(total.values())} cells agree")
    for f in flags:
        if mismatch[f]:
            tk, a, b = examples[f]
            print(f"  {f}: {mismatch[f]} differ ({non_ascii[f]} with non-ASCII targetingKey); "
                  f"e.g. {tk!r}: {a!r} vs {b!r}")


def diff(results_dir):
    compare(f"{results_dir}/flagd-rs.jsonl", f"{results_dir}/py.jsonl", "flagd-rs (v3 hash) vs py")
    compare(f"{results_dir}/flagd-rs.jsonl", f"{results_dir}/rust.jsonl", "flagd-rs (v3 hash) vs rust")
    compare(f"{results_dir}/flagd-rs-v2.jsonl", f"{results_dir}/js.jsonl", "flagd-rs (v2 hash) vs js")
    compare(f"{results_dir}/py.jsonl", f"{results_dir}/rust.jsonl", "py vs rust (peers among themselves)")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "table":
        table(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "diff":
        diff(sys.argv[2])
    else:
        sys.exit(__doc__)
