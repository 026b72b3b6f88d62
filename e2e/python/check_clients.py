"""Evaluates the flags of e2e/python/flags.json against a running flagd-rs through the published
Python OpenFeature providers: flagd in RPC mode (evaluation port), flagd in in-process mode (sync
port) and OFREP (OFREP port).

Ports come from the environment: E2E_EVAL_PORT, E2E_SYNC_PORT, E2E_OFREP_PORT. The daemon must
have been started with `-X env=prod`, which the env-flag check relies on. Prints one line per
check and a final `python-e2e: N passed, M failed`; exits non-zero when a check fails.
"""

import os
import sys
import traceback

from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import CacheType, ResolverType
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode

HOST = "127.0.0.1"
EVAL_PORT = int(os.environ["E2E_EVAL_PORT"])
SYNC_PORT = int(os.environ["E2E_SYNC_PORT"])
OFREP_PORT = int(os.environ["E2E_OFREP_PORT"])

STAFF = EvaluationContext(targeting_key="u-1", attributes={"email": "ada@example.com"})
CUSTOMER = EvaluationContext(targeting_key="u-2", attributes={"email": "bob@other.org"})

# (name, method, key, default, context, expected value, expected reason or None,
#  expected error code or None)
CHECKS = [
    ("boolean", "boolean", "bool-flag", False, None, True, "STATIC", None),
    ("string", "string", "string-flag", "x", None, "hello", "STATIC", None),
    ("integer", "integer", "int-flag", 0, None, 42, "STATIC", None),
    ("float", "float", "float-flag", 0.0, None, 3.25, "STATIC", None),
    # A whole float must reach a typed client as a float, not as an integer.
    ("zero float", "float", "float-zero-flag", 1.5, None, 0.0, "STATIC", None),
    ("whole float", "float", "float-whole-flag", 1.5, None, 2.0, "STATIC", None),
    (
        "object",
        "object",
        "object-flag",
        {},
        None,
        {"retries": 3, "mode": "fast", "tags": ["a", "b"]},
        "STATIC",
        None,
    ),
    ("targeting match", "string", "targeted-flag", "x", STAFF, "staff", "TARGETING_MATCH", None),
    ("targeting fallthrough", "string", "targeted-flag", "x", CUSTOMER, "customer", "DEFAULT", None),
    ("static context (-X)", "string", "env-flag", "x", None, "production", "TARGETING_MATCH", None),
    ("disabled flag", "boolean", "disabled-flag", False, None, False, "DISABLED", None),
    ("missing flag", "boolean", "no-such-flag", True, None, True, "ERROR", ErrorCode.FLAG_NOT_FOUND),
    ("type mismatch", "boolean", "string-flag", True, None, True, "ERROR", ErrorCode.TYPE_MISMATCH),
]


def providers():
    """(label, provider factory) for each way a Python application can reach flagd-rs."""
    return [
        (
            "flagd rpc",
            lambda: FlagdProvider(
                resolver_type=ResolverType.RPC,
                host=HOST,
                port=EVAL_PORT,
                cache=CacheType.DISABLED,
                deadline_ms=2000,
            ),
        ),
        (
            "flagd in-process",
            lambda: FlagdProvider(
                resolver_type=ResolverType.IN_PROCESS,
                host=HOST,
                port=SYNC_PORT,
                deadline_ms=2000,
            ),
        ),
        ("ofrep", lambda: OFREPProvider(f"http://{HOST}:{OFREP_PORT}", timeout=5.0)),
    ]


def evaluate(client, method, key, default, context):
    fn = getattr(client, f"get_{method}_details")
    return fn(key, default, context) if context is not None else fn(key, default)


def reason_text(reason):
    return getattr(reason, "value", reason)


def main() -> int:
    passed = failed = 0
    for label, make in providers():
        domain = label.replace(" ", "-")
        try:
            api.set_provider_and_wait(make(), domain=domain)
        except Exception:  # noqa: BLE001 - any start-up failure fails every check of it
            traceback.print_exc()
            print(f"FAIL {label}: provider did not become ready")
            failed += len(CHECKS)
            continue
        client = api.get_client(domain=domain)
        for name, method, key, default, context, value, reason, error in CHECKS:
            try:
                details = evaluate(client, method, key, default, context)
                problems = []
                if details.value != value or type(details.value) is not type(value):
                    problems.append(f"value {details.value!r} != {value!r}")
                if error is not None and details.error_code != error:
                    problems.append(f"error {details.error_code} != {error}")
                if error is None and details.error_code is not None:
                    problems.append(f"unexpected error {details.error_code}: {details.error_message}")
                if reason is not None and reason_text(details.reason) != reason:
                    problems.append(f"reason {reason_text(details.reason)} != {reason}")
            except Exception as e:  # noqa: BLE001 - a client exception is a failed check
                problems = [f"raised {e!r}"]
            if problems:
                failed += 1
                print(f"FAIL {label}: {name} ({key}): {'; '.join(problems)}")
            else:
                passed += 1
                print(f"ok   {label}: {name}")
    try:
        api.shutdown()
    except Exception:  # noqa: BLE001 - shutting clients down must not hide the results
        traceback.print_exc()
    print(f"python-e2e: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
