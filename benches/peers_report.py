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


def table(path):
    evals, loads, mems = {}, {}, {}
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            raw = raw.strip()
            if not raw.startswith("{"):
                continue
            d = json.loads(raw)
            name = short(d.get("peer", "?"))
            if "eval" in d:
                evals[name] = {k: v.get("ops_per_s_median", 0) for k, v in d["eval"].items()}
                errs = sum(v.get("errors_total", 0) for v in d["eval"].values())
                if errs:
                    evals[name]["_errors"] = errs
            elif "load" in d:
                loads[name] = {f: v.get("load_ms_median") for f, v in d["load"].items()}
                if name == "flagd-rs":
                    loads["_ours_detail"] = d["load"]
            elif "file" in d and "rss_after_mb" in d:
                added = d["rss_after_mb"] - d["rss_before_mb"]
                mems.setdefault(name, {})[d["file"]] = (added, d.get("peak_rss_mb"))

    if evals:
        peers = [p for p in evals if p != "flagd-rs"]
        header = ["kind"] + peers + ["flagd-rs", "fastest peer", "ours / fastest"]
        rows = []
        for key, label in KINDS:
            peer_rates = {p: evals[p].get(key) for p in peers if evals[p].get(key)}
            best = max(peer_rates, key=peer_rates.get) if peer_rates else None
            ours = evals.get("flagd-rs", {}).get(key)
            row = [label] + [rate(evals[p][key]) if evals[p].get(key) else "-" for p in peers]
            row += [rate(ours) if ours else "-", best or "-"]
            row.append(f"{ours / peer_rates[best]:.1f}x" if ours and best else "-")
            rows.append(row)
        print("Evaluations per second (median of 7 runs; higher is better)")
        print_table(header, rows)
        for p, v in evals.items():
            if v.get("_errors"):
                print(f"note: {p} reported {v['_errors']} errors while timing")

    if loads:
        detail = loads.pop("_ours_detail", None)
        files = ["flags-1000.json", "flags-10000.json"]
        header = ["evaluator"] + [f"load {f}" for f in files]
        rows = [[p] + [f"{loads[p].get(f, 0):,.2f} ms" if loads[p].get(f) is not None else "-" for f in files] for p in loads]
        peers = [p for p in loads if p != "flagd-rs"]
        if "flagd-rs" in loads and peers:
            row = ["ours / fastest peer"]
            for f in files:
                best = min((loads[p][f] for p in peers if loads[p].get(f)), default=None)
                ours = loads["flagd-rs"].get(f)
                row.append(f"{ours / best:.2f}x" if ours and best else "-")
            rows.append(row)
        print("Load of a flag document, bytes to a usable flag set (median; lower is better)")
        print_table(header, rows)
        if detail:
            for f, v in detail.items():
                print(f"flagd-rs {f}: parse {v.get('parse_ms_median')} ms, schema validation "
                      f"{v.get('validate_ms_median')} ms, validation+compile from parsed "
                      f"{v.get('validate_and_compile_ms_median')} ms, {v.get('diagnostics')} diagnostics")
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
                  f"e.g. {tk!r}: flagd-rs {a!r}, peer {b!r}")


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
