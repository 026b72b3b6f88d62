"""Runs the flagd testbed's provider scenarios through the published Python OFREP provider
(`openfeature-provider-ofrep`) against the real flagd-rs executable.

The testbed's `gherkin/*.feature` files are written for flagd providers in RPC and in-process
mode. OFREP is remote evaluation by the daemon, so every scenario about what the daemon answers
(values, reasons, error codes, variants, zero values, targeting, static context, selectors,
flag and flag-set metadata) applies to an OFREP client as well; scenarios about the provider's
own machinery (options, connections, events, caches, the sync stream) do not. The features and
scenarios left out, and why, are listed in SKIPPED_FEATURES and `skip_reason` below.

Daemons are started the way the testbed's launchpad starts flagd: in a work directory holding
`rawflags/` (a copy of the testbed's `flags/*.json`) and `flags/allFlags.json` (every raw file
not named `selector-*`, deep-merged in file-name order), serving `flags/allFlags.json` and
`rawflags/selector-flags.json` (the metadata provider adds
`rawflags/selector-flag-combined-metadata.json`) with `-X injectedmetadata=set`. The daemon runs
inside the work directory, so its sources are known by these relative paths and the scenarios'
selectors name them as written. `@fractional-v2` scenarios use a daemon started with
`--fractional-hash v2`.

Environment:
  E2E_BIN                 the flagd-rs executable (required)
  FLAGD_TESTBED           the testbed directory (relative paths from the repository root);
                          default: <repository root>/../shared/testbed
  FLAGD_TESTBED_REQUIRED  when set (not 0), a missing testbed is a failure instead of a skip

Prints one line per failed scenario, the skipped scenarios with their reasons, a
`python-testbed: <feature>: N passed, M failed, K skipped` line per feature and finally
`python-testbed: N passed, M failed, K skipped`. Exits non-zero when any scenario failed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

import gherkin_reader as gherkin
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TESTBED_REPOSITORY = "https://github.com/open-feature/flagd-testbed"
TESTBED_TAG = "v3.9.0"

ALL_FLAGS = "flags/allFlags.json"
SELECTOR_FLAGS = "rawflags/selector-flags.json"
COMBINED_METADATA_FLAGS = "rawflags/selector-flag-combined-metadata.json"

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
REQUEST_TIMEOUT = 5.0

# Features that do not apply to an OFREP client, and why.
SKIPPED_FEATURES = {
    "config.feature": "checks the flagd provider's own option and environment-variable parsing; "
    "the daemon takes no part and the OFREP provider has none of these options",
    "connection.feature": "connects the flagd provider over TLS, unix sockets and custom target "
    "URIs and follows reconnection through provider events; OFREP is one plain HTTP request per "
    "evaluation (flagd never serves it over TLS or a socket) and the OFREP provider emits no "
    "connection events",
    "events.feature": "observes provider events (ready, error, stale, change) of the flagd "
    "provider's event stream; the OFREP provider emits none",
    "rpc-caching.feature": "checks the RPC provider's client-side cache (reason CACHED) and its "
    "eviction on change events; OFREP evaluates every call at the daemon",
    "sync-payload.feature": "checks that an in-process provider takes the static context from "
    "the sync payload when GetMetadata is disabled; OFREP uses no sync stream (the daemon applies "
    "the static context itself, which contextEnrichment.feature checks)",
}

# Reasons for single scenarios of features that otherwise apply.
DEPRECATED_NO_DEFAULT = (
    "@deprecated: describes the legacy flagd.evaluation.v1 answer for a flag without a default "
    "variant (FLAG_NOT_FOUND); OFREP answers reason DEFAULT with the caller's default "
    "(protocol-facts §1 and §7), which the @no-default-variant scenario checks"
)
FRACTIONAL_V1 = "@fractional-v1: legacy v1 bucketing (flagd < 0.15) is not implemented"
PROVIDER_MACHINERY = (
    "needs provider events, connection loss or a client cache, which the OFREP provider does "
    "not have"
)

# The daemon each provider name of the scenarios stands for.
SETUPS = {"stable": "default", "metadata": "metadata"}


# ------------------------------------------------------------------------------------------------
# Daemons


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def deep_merge(dst: dict, src: dict) -> None:
    for key, value in src.items():
        if isinstance(dst.get(key), dict) and isinstance(value, dict):
            deep_merge(dst[key], value)
        else:
            dst[key] = value


def http_post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}{path}", timeout=REQUEST_TIMEOUT
        ) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


@dataclass
class Daemon:
    """One flagd-rs process in its own work directory, started as the testbed's launchpad
    starts flagd."""

    setup: str
    hash: str
    binary: str
    testbed_flags: str
    work: str = ""
    ofrep_port: int = 0
    management_port: int = 0
    process: subprocess.Popen | None = None
    log: Any = None

    def sources(self) -> list[str]:
        files = [ALL_FLAGS, SELECTOR_FLAGS]
        if self.setup == "metadata":
            files.append(COMBINED_METADATA_FLAGS)
        return files

    def start(self) -> None:
        self.work = tempfile.mkdtemp(prefix=f"flagd-rs-testbed-{self.setup}-{self.hash}-")
        raw = os.path.join(self.work, "rawflags")
        os.makedirs(raw)
        os.makedirs(os.path.join(self.work, "flags"))
        names = sorted(n for n in os.listdir(self.testbed_flags) if n.endswith(".json"))
        merged: dict = {}
        for name in names:
            shutil.copy(os.path.join(self.testbed_flags, name), os.path.join(raw, name))
            if not name.startswith("selector-"):
                with open(os.path.join(raw, name), encoding="utf-8") as f:
                    deep_merge(merged, json.load(f))
        with open(os.path.join(self.work, ALL_FLAGS), "w", encoding="utf-8") as f:
            json.dump(merged, f, indent=2)

        eval_port, mgmt_port, sync_port, ofrep_port, admin_port = free_ports(5)
        self.ofrep_port, self.management_port = ofrep_port, mgmt_port
        args = [self.binary, "start"]
        for source in self.sources():
            args += ["--uri", f"file:{source}"]
        args += [
            "--context-value", "injectedmetadata=set",
            "--fractional-hash", self.hash,
            "--port", str(eval_port),
            "--management-port", str(mgmt_port),
            "--sync-port", str(sync_port),
            "--ofrep-port", str(ofrep_port),
            "--admin-port", str(admin_port),
            "--state-dir", os.path.join(self.work, "state"),
        ]  # fmt: skip
        self.log = open(os.path.join(self.work, "daemon.log"), "wb")
        self.process = subprocess.Popen(
            args, cwd=self.work, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.wait_until_serving()

    def wait_until_serving(self) -> None:
        """Waits for readiness and for one enabled flag of every source to be served."""
        deadline = time.monotonic() + START_TIMEOUT
        probes = [(source, self.probe_key(source)) for source in self.sources()]

        def waiting(what: str) -> None:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the daemon exited while {what}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the daemon timed out while {what}:\n{self.log_tail()}")
            time.sleep(0.05)

        while True:
            try:
                if http_status(self.management_port, "/readyz") == 200:
                    break
            except OSError:
                pass
            waiting("waiting for /readyz")
        for source, key in probes:
            while True:
                try:
                    status, _ = http_post(
                        self.ofrep_port,
                        f"/ofrep/v1/evaluate/flags/{key}",
                        b"{}",
                        {"Flagd-Selector": f"source={source}"},
                    )
                    if status == 200:
                        break
                except OSError:
                    pass
                waiting(f"waiting for `{key}` of {source} to be served")

    def probe_key(self, source: str) -> str:
        with open(os.path.join(self.work, source), encoding="utf-8") as f:
            flags = json.load(f).get("flags", {})
        enabled = sorted(k for k, v in flags.items() if v.get("state") != "DISABLED")
        if not enabled:
            raise RuntimeError(f"{source} defines no enabled flag")
        return enabled[0]

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(os.path.join(self.work, "daemon.log"), encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log is not None:
            self.log.close()
        if self.work:
            shutil.rmtree(self.work, ignore_errors=True)


class Daemons:
    """The daemons of one run, one per (setup, hash generation), started when first needed."""

    def __init__(self, binary: str, testbed_flags: str):
        self.binary = binary
        self.testbed_flags = testbed_flags
        self.running: dict[tuple[str, str], Daemon] = {}

    def get(self, setup: str, hash_generation: str) -> Daemon:
        key = (setup, hash_generation)
        if key not in self.running:
            daemon = Daemon(setup, hash_generation, self.binary, self.testbed_flags)
            self.running[key] = daemon
            daemon.start()
        return self.running[key]

    def stop_all(self) -> None:
        for daemon in self.running.values():
            daemon.stop()


# ------------------------------------------------------------------------------------------------
# Steps

STR = r'"((?:[^"\\]|\\.)*)"'  # a quoted argument in the middle of a step
LAST = r'"(.*)"'  # a quoted argument at the end (JSON inside it is not escaped)


def unquote(text: str) -> str:
    return text.replace('\\"', '"').replace("\\'", "'")


class Skip(Exception):
    """The scenario does not apply to an OFREP client."""


class Failure(Exception):
    """The scenario failed."""


STEPS: list[tuple[re.Pattern, str]] = [
    (re.compile(rf"^an option {STR} of type {STR} with value {LAST}$"), "option"),
    (re.compile(r"^an? (\w+) flagd provider$"), "provider"),
    (
        re.compile(rf"^an? (\w+)-flag with key {STR} and a (?:fallback|default) value {LAST}$"),
        "flag",
    ),
    (
        re.compile(rf"^a context containing a key {STR}, with type {STR} and with value {LAST}$"),
        "context",
    ),
    (re.compile(rf"^a context containing a targeting key with value {LAST}$"), "targeting_key"),
    (
        re.compile(
            rf"^a context containing a nested property with outer key {STR} and inner key {STR}, "
            rf"with value {LAST}$"
        ),
        "nested",
    ),
    (re.compile(r"^the flag was evaluated with details$"), "evaluate"),
    (re.compile(rf"^the resolved details value should be {LAST}$"), "expect_value"),
    (re.compile(rf"^the reason should be {LAST}$"), "expect_reason"),
    (re.compile(rf"^the error-code should be {LAST}$"), "expect_error_code"),
    (re.compile(rf"^the variant should be {LAST}$"), "expect_variant"),
    (re.compile(r"^the resolved metadata should contain$"), "expect_metadata"),
    (re.compile(r"^the resolved metadata is empty$"), "expect_no_metadata"),
    # The provider's machinery: events, connection loss, flag changes observed through events.
    (re.compile(r"^an? (ready|error|stale|change) event (handler|was fired)$"), "machinery"),
    (
        re.compile(r"^the (ready|error|stale|change) event handler should have been executed.*$"),
        "machinery",
    ),
    (re.compile(r"^the connection is lost for (\d+)s$"), "machinery"),
    (re.compile(r"^the flag was modified$"), "machinery"),
    (re.compile(r"^the flag should be part of the event payload$"), "machinery"),
    (re.compile(r"^the client should be in fatal state$"), "machinery"),
]


def parse_step(step: gherkin.Step) -> tuple[str, list[str]]:
    matches = [(action, m) for pattern, action in STEPS if (m := pattern.match(step.text))]
    if len(matches) != 1:
        raise Failure(f"step `{step}`: {'unknown' if not matches else 'ambiguous'} step text")
    action, m = matches[0]
    return action, [unquote(g) for g in m.groups()]


def typed(type_name: str, text: str) -> Any:
    """A step's text as a value of the named flag or context type."""
    try:
        if type_name == "Boolean":
            if text not in ("true", "false"):
                raise ValueError("not true or false")
            return text == "true"
        if type_name == "String":
            return text
        if type_name in ("Integer", "Long"):
            return int(text)
        if type_name in ("Float", "Double"):
            return float(text)
        if type_name == "Object":
            return json.loads(text)
    except ValueError as e:
        raise Failure(f"`{text}` is not a valid {type_name}: {e}") from e
    raise Failure(f"unknown type `{type_name}`")


def same(a: Any, b: Any) -> bool:
    """Deep equality where numbers compare by value but booleans are never numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


RESULT_TYPES: dict[str, tuple[type, ...]] = {
    "Boolean": (bool,),
    "String": (str,),
    "Integer": (int,),
    "Long": (int,),
    "Float": (float,),
    "Double": (float,),
    "Object": (dict, list),
}


def text_of(enum_or_text: Any) -> Any:
    return getattr(enum_or_text, "value", enum_or_text)


@dataclass
class World:
    """The state of one scenario."""

    case: gherkin.Case
    daemons: Daemons
    options: dict[str, str] = field(default_factory=dict)
    setup: str | None = None
    flag: tuple[str, str, Any] | None = None  # type, key, default
    targeting_key: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    details: Any = None

    def hash_generation(self) -> str:
        return "v2" if self.case.has_tag("fractional-v2") else "v3"

    def apply(self, action: str, args: list[str], step: gherkin.Step) -> None:
        handler: Callable[[list[str], gherkin.Step], None] = getattr(self, f"do_{action}")
        handler(args, step)

    def do_machinery(self, _args: list[str], _step: gherkin.Step) -> None:
        raise Skip(PROVIDER_MACHINERY)

    def do_option(self, args: list[str], _step: gherkin.Step) -> None:
        name, _type, value = args
        if name not in ("cache", "selector"):
            raise Failure(f"option `{name}` has no OFREP counterpart in this runner")
        # `cache` configures the RPC provider's cache; the OFREP provider has none, so every
        # value (the suites ask for `disabled`) already holds.
        self.options[name] = value

    def do_provider(self, args: list[str], _step: gherkin.Step) -> None:
        name = args[0]
        if name not in SETUPS:
            raise Failure(f"provider `{name}` has no daemon setup in this runner")
        self.setup = SETUPS[name]

    def do_flag(self, args: list[str], _step: gherkin.Step) -> None:
        type_name, key, default = args
        self.flag = (type_name, key, typed(type_name, default))

    def do_context(self, args: list[str], _step: gherkin.Step) -> None:
        key, type_name, value = args
        self.attributes[key] = typed(type_name, value)

    def do_targeting_key(self, args: list[str], _step: gherkin.Step) -> None:
        self.targeting_key = args[0]

    def do_nested(self, args: list[str], _step: gherkin.Step) -> None:
        outer, inner, value = args
        nested = self.attributes.get(outer)
        nested = dict(nested) if isinstance(nested, dict) else {}
        nested[inner] = value
        self.attributes[outer] = nested

    def do_evaluate(self, _args: list[str], _step: gherkin.Step) -> None:
        if self.flag is None:
            raise Failure("no flag was requested")
        if self.setup is None:
            raise Failure("no provider was created")
        daemon = self.daemons.get(self.setup, self.hash_generation())
        selector = self.options.get("selector")
        headers = {"Flagd-Selector": selector} if selector else {}
        provider = OFREPProvider(
            f"http://127.0.0.1:{daemon.ofrep_port}",
            headers_factory=lambda: dict(headers),
            timeout=REQUEST_TIMEOUT,
        )
        domain = f"testbed-{id(self)}"
        api.set_provider(provider, domain=domain)
        client = api.get_client(domain=domain)
        type_name, key, default = self.flag
        method = {
            "Boolean": client.get_boolean_details,
            "String": client.get_string_details,
            "Integer": client.get_integer_details,
            "Long": client.get_integer_details,
            "Float": client.get_float_details,
            "Double": client.get_float_details,
            "Object": client.get_object_details,
        }[type_name]
        context = EvaluationContext(targeting_key=self.targeting_key, attributes=self.attributes)
        self.details = method(key, default, context)

    def evaluated(self) -> Any:
        if self.details is None:
            raise Failure("the flag was not evaluated yet")
        return self.details

    def describe(self) -> str:
        d = self.evaluated()
        return (
            f"value={d.value!r} reason={text_of(d.reason)} variant={d.variant!r} "
            f"error={text_of(d.error_code)} message={d.error_message!r}"
        )

    def do_expect_value(self, args: list[str], _step: gherkin.Step) -> None:
        assert self.flag is not None
        type_name = self.flag[0]
        expected = typed(type_name, args[0])
        got = self.evaluated().value
        if not (isinstance(got, RESULT_TYPES[type_name]) and same(got, expected)):
            raise Failure(f"expected value {expected!r}; got {self.describe()}")

    def do_expect_reason(self, args: list[str], _step: gherkin.Step) -> None:
        if text_of(self.evaluated().reason) != args[0]:
            raise Failure(f"expected reason {args[0]}; got {self.describe()}")

    def do_expect_error_code(self, args: list[str], _step: gherkin.Step) -> None:
        expected = args[0] or None
        if text_of(self.evaluated().error_code) != expected:
            raise Failure(f"expected error code {expected}; got {self.describe()}")

    def do_expect_variant(self, args: list[str], _step: gherkin.Step) -> None:
        if self.evaluated().variant != args[0]:
            raise Failure(f"expected variant {args[0]!r}; got {self.describe()}")

    def do_expect_metadata(self, _args: list[str], step: gherkin.Step) -> None:
        metadata = self.evaluated().flag_metadata or {}
        if not step.table:
            raise Failure("the step needs a table")
        problems = []
        for row in step.table[1:]:
            if len(row) != 3:
                raise Failure(f"metadata rows need 3 cells, got {row}")
            key, type_name, text = row
            got = metadata.get(key)
            if type_name in ("Integer", "Long", "Float", "Double"):
                ok = (
                    isinstance(got, (int, float))
                    and not isinstance(got, bool)
                    and got == float(text)
                )
            else:
                ok = same(got, typed(type_name, text))
            if not ok:
                problems.append(f"`{key}`: expected {type_name} {text}, got {got!r}")
        if problems:
            raise Failure(f"metadata mismatch: {'; '.join(problems)} (metadata {metadata})")

    def do_expect_no_metadata(self, _args: list[str], _step: gherkin.Step) -> None:
        metadata = self.evaluated().flag_metadata or {}
        if metadata:
            raise Failure(f"expected no metadata, got {metadata}")


def skip_reason(case: gherkin.Case, actions: list[tuple[str, list[str]]]) -> str | None:
    """Why a case of an applicable feature is left out, decided before it runs."""
    if case.has_tag("deprecated") and case.has_tag("no-default"):
        return DEPRECATED_NO_DEFAULT
    if case.has_tag("fractional-v1"):
        return FRACTIONAL_V1
    if any(action == "machinery" for action, _ in actions):
        return PROVIDER_MACHINERY
    return None


def run_case(case: gherkin.Case, daemons: Daemons) -> tuple[str, str]:
    """('passed' | 'failed' | 'skipped', detail)."""
    try:
        actions = [parse_step(step) for step in case.steps]
    except Failure as e:
        return "failed", str(e)
    reason = skip_reason(case, actions)
    if reason:
        return "skipped", reason
    world = World(case, daemons)
    for step, (action, args) in zip(case.steps, actions):
        try:
            world.apply(action, args, step)
        except Skip as e:
            return "skipped", str(e)
        except Failure as e:
            return "failed", f"step `{step}`: {e}"
        except Exception as e:  # noqa: BLE001 - anything else the client raises fails the case
            return "failed", f"step `{step}`: {e!r}\n{traceback.format_exc()}"
    return "passed", ""


# ------------------------------------------------------------------------------------------------


def testbed_dir() -> str:
    configured = os.environ.get("FLAGD_TESTBED", "")
    if configured:
        return os.path.normpath(os.path.join(ROOT, configured))
    return os.path.normpath(os.path.join(ROOT, "..", "shared", "testbed"))


def required() -> bool:
    value = os.environ.get("FLAGD_TESTBED_REQUIRED", "")
    return value not in ("", "0")


def main() -> int:
    binary = os.path.abspath(os.environ.get("E2E_BIN", "")) if os.environ.get("E2E_BIN") else ""
    if not binary or not os.access(binary, os.X_OK):
        print(f"python-testbed: E2E_BIN does not name the flagd-rs executable ({binary!r})")
        print("python-testbed: 0 passed, 1 failed, 0 skipped")
        return 1
    testbed = testbed_dir()
    gherkin_dir = os.path.join(testbed, "gherkin")
    flags_dir = os.path.join(testbed, "flags")
    if not (os.path.isdir(gherkin_dir) and os.path.isdir(flags_dir)):
        what = f"the flagd testbed is not at {testbed}"
        how = f"set FLAGD_TESTBED=path to a checkout of {TESTBED_REPOSITORY} at tag {TESTBED_TAG}"
        if required():
            print(f"python-testbed: {what} (FLAGD_TESTBED_REQUIRED is set, so this is a failure); {how}")
            print("python-testbed: 0 passed, 1 failed, 0 skipped")
            return 1
        print(f"skipped python-testbed: {what}; {how} (set FLAGD_TESTBED_REQUIRED=1 to make this a failure)")
        return 0

    files = sorted(f for f in os.listdir(gherkin_dir) if f.endswith(".feature"))
    counts: dict[str, dict[str, int]] = {}
    failures: list[str] = []
    skipped: dict[str, list[str]] = defaultdict(list)
    daemons = Daemons(binary, flags_dir)
    try:
        for name in files:
            tally = counts.setdefault(name, {"passed": 0, "failed": 0, "skipped": 0})
            try:
                feature = gherkin.read(os.path.join(gherkin_dir, name))
            except gherkin.GherkinError as e:
                tally["failed"] += 1
                failures.append(f"{name}: cannot read the feature: {e}")
                continue
            cases = feature.cases()
            if name in SKIPPED_FEATURES:
                tally["skipped"] += len(cases)
                skipped[f"{name} does not apply: {SKIPPED_FEATURES[name]}"] += [
                    c.name for c in cases
                ]
                continue
            for case in cases:
                try:
                    outcome, detail = run_case(case, daemons)
                except RuntimeError as e:  # a daemon that does not start fails its cases
                    outcome, detail = "failed", str(e)
                tally[outcome] += 1
                if outcome == "failed":
                    failures.append(f"{case.name}\n    {detail}")
                elif outcome == "skipped":
                    skipped[detail].append(case.name)
    finally:
        daemons.stop_all()
        try:
            api.shutdown()
        except Exception:  # noqa: BLE001 - shutting the clients down must not hide the results
            traceback.print_exc()

    for reason, names in skipped.items():
        print(f"python-testbed: skipped {len(names)} case(s): {reason}")
        for case_name in names:
            print(f"    - {case_name}")
    for failure in failures:
        print(f"FAIL {failure}")
    for name, tally in counts.items():
        print(
            f"python-testbed: {name}: {tally['passed']} passed, {tally['failed']} failed, "
            f"{tally['skipped']} skipped"
        )
    total = {k: sum(t[k] for t in counts.values()) for k in ("passed", "failed", "skipped")}
    print(
        f"python-testbed: {total['passed']} passed, {total['failed']} failed, "
        f"{total['skipped']} skipped"
    )
    return 0 if total["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
