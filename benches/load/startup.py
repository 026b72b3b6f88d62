#!/usr/bin/env python3
"""Start -> ready and rewrite -> served for flag files of different sizes, one JSON line per
round and file.

Usage: startup.py <flagd-rs binary> <eval port> <work dir> <rounds> <rewrites> <file>...

For each round, for each file in turn (interleaved, so that every file meets the machine in the
same state): copies the file to <work dir>/served-<n>.json, starts the daemon on it (eval port,
management +1, sync +2, OFREP +3, admin +4), and polls /readyz every 2 ms until it answers 200:
start -> ready. After a second at rest it reads the daemon's RSS. Then, <rewrites> times, it
rewrites the file with the marker flag's default variant flipped (written beside it and renamed
over it, as editors and config tools do) and polls the marker flag over OFREP every 2 ms until the
new value is served: rewrite -> served, debounce included. Prints
{"test":"load-file","file":...,"flags":...,"run":...,"ready_ms":...,"rss_kib":...,
 "anon_kib":...,"file_kib":...,"served_ms":[...]}.
"""
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time

MARKER = "load-marker"


def get(port, path, timeout=1.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def status(pid):
    fields = {}
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0])
    return fields


class Ofrep:
    """One keep-alive connection asking for the marker flag's value."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)

    def value(self):
        self.conn.request(
            "POST",
            f"/ofrep/v1/evaluate/flags/{MARKER}",
            body=b'{"context":{}}',
            headers={"content-type": "application/json"},
        )
        response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            return None
        return json.loads(body).get("value")


def render(doc, default):
    """The document with the marker's default variant set, as the bytes a rewrite writes."""
    doc["flags"][MARKER]["defaultVariant"] = default
    return (json.dumps(doc, indent=2) + "\n").encode()


def rewrite(path, text):
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def measure(binary, port, work, source, run, rewrites):
    with open(source, encoding="utf-8") as f:
        doc = json.load(f)
    flags = len(doc["flags"])
    served = os.path.join(work, f"served-{flags}.json")
    shutil.copyfile(source, served)
    state = os.path.join(work, f"state-load-{flags}")
    shutil.rmtree(state, ignore_errors=True)
    args = [
        binary, "start", "-p", str(port), "-m", str(port + 1), "-g", str(port + 2),
        "-r", str(port + 3), "--admin-port", str(port + 4), "--state-dir", state,
        "-f", f"file:{served}",
    ]
    log = open(os.path.join(work, f"load-{flags}.log"), "wb")
    started = time.monotonic()
    daemon = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
    try:
        ready_ms = None
        deadline = started + 60
        while time.monotonic() < deadline:
            try:
                if get(port + 1, "/readyz") == 200:
                    ready_ms = (time.monotonic() - started) * 1000
                    break
            except OSError:
                pass
            if daemon.poll() is not None:
                break
            time.sleep(0.002)
        if ready_ms is None:
            raise SystemExit(f"the daemon on {source} did not become ready (log: {log.name})")
        time.sleep(1.0)
        rss = status(daemon.pid)
        ofrep = Ofrep(port + 3)
        current = doc["flags"][MARKER]["defaultVariant"]
        if ofrep.value() != (current == "on"):
            raise SystemExit("the marker flag does not serve its default variant")
        times = []
        for _ in range(rewrites):
            current = "off" if current == "on" else "on"
            # Rendered before the clock starts: only the write, the daemon's reload and the
            # polling are timed.
            text = render(doc, current)
            t0 = time.monotonic()
            rewrite(served, text)
            deadline = t0 + 10
            while ofrep.value() != (current == "on"):
                if time.monotonic() > deadline:
                    raise SystemExit("the rewrite was not served within 10 s")
                time.sleep(0.002)
            times.append(round((time.monotonic() - t0) * 1000, 2))
            time.sleep(0.3)
        return {
            "test": "load-file",
            "file": os.path.basename(source),
            "flags": flags,
            "bytes": os.path.getsize(source),
            "run": run,
            "ready_ms": round(ready_ms, 2),
            "rss_kib": rss.get("VmRSS", 0),
            "anon_kib": rss.get("RssAnon", 0),
            "file_kib": rss.get("RssFile", 0),
            "served_ms": times,
        }
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()


def main():
    binary, port, work, rounds, rewrites = sys.argv[1:6]
    files = sys.argv[6:]
    for run in range(1, int(rounds) + 1):
        for source in files:
            row = measure(binary, int(port), work, source, run, int(rewrites))
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
