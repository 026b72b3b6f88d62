#!/usr/bin/env python3
"""Helpers for run.sh (Python standard library only).

  helpers.py ports N                      print N free loopback TCP ports
  helpers.py snapshot EVAL_PORT ADMIN_PORT USERS
      print, as canonical JSON, what flagd-rs serves: ResolveAll for USERS users and the admin
      API's effective flags (without the revision number)
  helpers.py variants EVAL_PORT FLAG USERS
      print {"variant": count} for FLAG over USERS users
  helpers.py get EXPR                     read JSON on stdin, print the Python expression EXPR of it (`d`)
  helpers.py first-above PROM_URL QUERY START_RFC3339 END_RFC3339 THRESHOLD
      print the first time (Unix seconds) between START and END at which the instant query QUERY
      had a value above THRESHOLD, as Prometheus answers it (a range query, 100 ms steps), or
      "none"
  helpers.py epoch RFC3339                print the time as Unix seconds
"""

import http.client
import json
import socket
import sys
import urllib.parse
import urllib.request
from datetime import datetime


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def call(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    if response.status != 200:
        raise SystemExit(f"{method} {path}: HTTP {response.status}: {data[:200]!r}")
    return json.loads(data)


def resolve_all(port, users):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = {}
    for i in range(users):
        user = f"snapshot-user-{i}"
        body = json.dumps({"context": {"targetingKey": user}})
        conn.request("POST", "/flagd.evaluation.v1.Service/ResolveAll", body=body,
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit(f"ResolveAll: HTTP {response.status}")
        out[user] = json.loads(data).get("flags", {})
    conn.close()
    return out


def epoch(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def first_above(prom, query, start, end, threshold):
    params = urllib.parse.urlencode(
        {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "0.1"})
    with urllib.request.urlopen(f"{prom}/api/v1/query_range?{params}", timeout=10) as r:
        answer = json.load(r)
    times = []
    for series in answer["data"]["result"]:
        for t, v in series["values"]:
            if v not in ("NaN", "+Inf", "-Inf") and float(v) > threshold:
                times.append(float(t))
                break
    return min(times) if times else None


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "ports":
        print(" ".join(str(p) for p in free_ports(int(argv[2]))))
    elif cmd == "snapshot":
        eval_port, admin_port, users = int(argv[2]), int(argv[3]), int(argv[4])
        flags = call(admin_port, "GET", "/v1/flags")["flags"]
        flags.sort(key=lambda f: (f.get("flagSetId") or "", f["key"]))
        print(json.dumps({"resolveAll": resolve_all(eval_port, users), "flags": flags},
                         sort_keys=True))
    elif cmd == "variants":
        eval_port, flag, users = int(argv[2]), argv[3], int(argv[4])
        conn = http.client.HTTPConnection("127.0.0.1", eval_port, timeout=10)
        counts = {}
        for i in range(users):
            body = json.dumps({"flagKey": flag, "context": {"targetingKey": f"probe-user-{i}"}})
            conn.request("POST", "/flagd.evaluation.v1.Service/ResolveString", body=body,
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            data = json.loads(response.read())
            variant = data.get("variant", "?")
            counts[variant] = counts.get(variant, 0) + 1
        print(json.dumps(counts, sort_keys=True))
    elif cmd == "first-above":
        t = first_above(argv[2], argv[3], epoch(argv[4]), epoch(argv[5]), float(argv[6]))
        print("none" if t is None else f"{t:.3f}")
    elif cmd == "epoch":
        print(f"{epoch(argv[2]):.3f}")
    elif cmd == "get":
        d = json.load(sys.stdin)
        print(eval(argv[2], {"d": d, "json": json}))  # noqa: S307 - test helper, expressions come from run.sh
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
