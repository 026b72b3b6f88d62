#!/usr/bin/env python3
"""Writes the flag files of the daemon's load benchmark (deterministic).

Usage: gen_flags.py <out dir> [flags]    (flags: 10000 by default)

Outputs:
  load-<flags>.json   <flags> flags as a person or a tool would write them (indented), each with
                      targeting and metadata, the operators in rotation: if/in on an email domain,
                      starts_with/ends_with, sem_ver, fractional splits, == on a plan, numeric
                      comparisons under and/or, $ref to shared $evaluators; boolean, string,
                      number and object variants; flag-set metadata at the top
  load-1.json         the same document with only the marker flag, the baseline
The marker flag `load-marker` serves its default variant to a context without `email`; the
benchmark rewrites it (`defaultVariant` "on" <-> "off") to time a one-flag change.
"""
import json
import os
import random
import sys

MARKER = "load-marker"

EVALUATORS = {
    "isStaff": {"ends_with": [{"var": "email"}, "@acme.com"]},
    "isBeta": {"in": [{"var": "plan"}, ["beta", "enterprise-beta"]]},
    "isAdult": {">=": [{"var": "age"}, 18]},
}


def marker(default):
    return {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": default,
        "targeting": {"if": [{"==": [{"var": "email"}, "nobody@example.com"]}, "on", None]},
        "metadata": {"owner": "load-bench", "ticket": "LOAD-1"},
    }


def flag(i, rng):
    kind = i % 8
    bools = {"on": True, "off": False}
    if kind == 0:
        variants, default = bools, "off"
        targeting = {"if": [{"in": [f"@d{i % 97}.example.com", {"var": "email"}]}, "on", "off"]}
    elif kind == 1:
        variants = {"a": "alpha", "b": "beta", "c": "control"}
        default = "c"
        targeting = {
            "if": [
                {"starts_with": [{"var": "region"}, f"r{i % 13}-"]}, "a",
                {"ends_with": [{"var": "email"}, f".t{i % 7}"]}, "b",
                "c",
            ]
        }
    elif kind == 2:
        variants, default = {"new": True, "old": False}, "old"
        major, minor = rng.randrange(1, 6), rng.randrange(0, 20)
        targeting = {"if": [{"sem_ver": [{"var": "appVersion"}, ">=", f"{major}.{minor}.0"]}, "new", "old"]}
    elif kind == 3:
        variants = {"stable": "stable", "canary": "canary"}
        default = "stable"
        canary = rng.randrange(1, 50)
        targeting = {"fractional": [{"cat": [{"var": "$flagd.flagKey"}, {"var": "targetingKey"}]},
                                    ["stable", 100 - canary], ["canary", canary]]}
    elif kind == 4:
        variants = {"small": 10, "medium": 50, "large": 200}
        default = "small"
        targeting = {"if": [{"==": [{"var": "plan"}, "enterprise"]}, "large",
                            {"==": [{"var": "plan"}, "pro"]}, "medium", "small"]}
    elif kind == 5:
        variants, default = bools, "off"
        targeting = {"if": [{"and": [{"$ref": "isStaff"}, {"$ref": "isAdult"}]}, "on", "off"]}
    elif kind == 6:
        variants = {
            "compact": {"columns": 2, "theme": "light", "dense": True},
            "wide": {"columns": 4, "theme": "dark", "dense": False},
        }
        default = "compact"
        targeting = {"if": [{"or": [{"$ref": "isBeta"}, {">": [{"var": "seats"}, 100 + i % 400]}]},
                            "wide", "compact"]}
    else:
        variants, default = bools, "off"
        targeting = {"if": [{"in": [{"var": "country"}, ["de", "fr", "nl", "se", f"x{i % 50}"]]}, "on", "off"]}
    return {
        "state": "ENABLED" if i % 23 else "DISABLED",
        "variants": variants,
        "defaultVariant": default,
        "targeting": targeting,
        "metadata": {"owner": f"team-{i % 40}", "ticket": f"FEAT-{1000 + i}", "expires": 2027 + i % 3},
    }


def document(flags):
    return {
        "$schema": "https://flagd.dev/schema/v0/flags.json",
        "metadata": {"version": "1", "team": "load"},
        "$evaluators": EVALUATORS,
        "flags": flags,
    }


def write(path, doc):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def main():
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    rng = random.Random(14)
    flags = {MARKER: marker("off")}
    for i in range(n - 1):
        flags[f"feature-{i:05d}"] = flag(i, rng)
    os.makedirs(out, exist_ok=True)
    write(os.path.join(out, f"load-{n}.json"), document(flags))
    write(os.path.join(out, "load-1.json"), document({MARKER: marker("off")}))


if __name__ == "__main__":
    main()
