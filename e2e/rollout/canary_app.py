#!/usr/bin/env python3
"""A small test application for the rollout end-to-end scenarios (Python standard library only).

It serves a steady stream of simulated requests, each from a new user: for every request it asks
flagd-rs (Connect JSON on the evaluation port) which variant of the flag the user gets, then
"serves" the request as that variant. The canary variant can be made to fail a fixed share of its
requests (exactly every Nth, so the error rate is exact over any window) and to be slow.

It exports Prometheus counters on a loopback port:
  canary_app_requests_total{variant, outcome="ok"|"error"}
  canary_app_request_duration_seconds_sum{variant} / _count{variant}
  canary_app_flag_errors_total   (evaluations that failed, e.g. while flagd-rs restarts)
"""

import argparse
import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VARIANTS = ("stable", "canary")


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = {(v, o): 0 for v in VARIANTS for o in ("ok", "error")}
        self.duration_sum = {v: 0.0 for v in VARIANTS}
        self.duration_count = {v: 0 for v in VARIANTS}
        self.flag_errors = 0

    def record(self, variant, ok, seconds):
        with self.lock:
            key = (variant, "ok" if ok else "error")
            self.requests[key] = self.requests.get(key, 0) + 1
            self.duration_sum[variant] = self.duration_sum.get(variant, 0.0) + seconds
            self.duration_count[variant] = self.duration_count.get(variant, 0) + 1

    def render(self):
        with self.lock:
            out = ["# TYPE canary_app_requests_total counter"]
            for (variant, outcome), n in sorted(self.requests.items()):
                out.append(
                    f'canary_app_requests_total{{variant="{variant}",outcome="{outcome}"}} {n}'
                )
            out.append("# TYPE canary_app_request_duration_seconds summary")
            for variant in sorted(self.duration_count):
                out.append(
                    f'canary_app_request_duration_seconds_sum{{variant="{variant}"}} '
                    f"{self.duration_sum[variant]:.6f}"
                )
                out.append(
                    f'canary_app_request_duration_seconds_count{{variant="{variant}"}} '
                    f"{self.duration_count[variant]}"
                )
            out.append("# TYPE canary_app_flag_errors_total counter")
            out.append(f"canary_app_flag_errors_total {self.flag_errors}")
            return "\n".join(out) + "\n"


def serve_metrics(port, stats):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = stats.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()


class Flagd:
    """A keep-alive Connect JSON client that reconnects after errors."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def variant(self, flag, user):
        body = json.dumps({"flagKey": flag, "context": {"targetingKey": user}})
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            self.conn.request(
                "POST",
                "/flagd.evaluation.v1.Service/ResolveString",
                body=body,
                headers={"Content-Type": "application/json"},
            )
            response = self.conn.getresponse()
            data = response.read()
            if response.status != 200:
                return None
            return json.loads(data).get("variant")
        except (OSError, http.client.HTTPException, ValueError):
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return None


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--flagd-port", type=int, required=True)
    p.add_argument("--metrics-port", type=int, required=True)
    p.add_argument("--flag", default="progressive-rollout")
    p.add_argument("--name", default="app", help="prefix of the simulated user ids")
    p.add_argument("--rate", type=float, default=200.0, help="requests per second")
    p.add_argument("--canary-fail-every", type=int, default=0,
                   help="fail every Nth canary request, the first one included (0: never)")
    p.add_argument("--canary-latency", type=float, default=0.05, help="seconds")
    p.add_argument("--stable-latency", type=float, default=0.04, help="seconds")
    args = p.parse_args()

    stats = Stats()
    serve_metrics(args.metrics_port, stats)
    flagd = Flagd(args.flagd_port)
    canary_served = 0
    period = 1.0 / args.rate
    next_at = time.monotonic()
    user = 0
    while True:
        user += 1
        variant = flagd.variant(args.flag, f"{args.name}-user-{user}")
        if variant is None:
            with stats.lock:
                stats.flag_errors += 1
            time.sleep(0.05)
            next_at = time.monotonic()
            continue
        if variant == "canary":
            failed = args.canary_fail_every > 0 and canary_served % args.canary_fail_every == 0
            canary_served += 1
            stats.record(variant, not failed, args.canary_latency)
        else:
            stats.record(variant, True, args.stable_latency)
        next_at += period
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:
            # Far behind (a slow machine): do not try to catch up in a burst.
            next_at = time.monotonic()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
