#!/usr/bin/env python3
"""Writes the request bodies and flag files of the daemon load benchmarks into a directory.

Usage: prepare.py <work dir> <peer workload dir>

The peer workload dir must already hold the generator's output (flags.json, flags-1000.json,
contexts.jsonl).

Outputs:
  flags.json               the peer workload's 8 flags (static, targeting, fractional, sem_ver...),
                           served from a file source so that it can be rewritten
  bulk100.json             the first 100 flags of the peer workload's flags-1000.json
  grpc-static.bin          length-prefixed protobuf ResolveBooleanRequest for the static flag
  grpc-targeting.bin       the same for the targeting flag
  connect-static.json      the Connect JSON ResolveBooleanRequest for the static flag
  connect-targeting.json   the same for the targeting flag
  ofrep-single.json        an OFREP evaluation request (context only; the flag is in the path)
  ofrep-bulk.json          an OFREP bulk request with the first context of contexts.jsonl
"""
import json
import shutil
import struct
import sys

# Boolean flags of the peer workload's flags.json.
STATIC_FLAG = "static-bool"  # no targeting
TARGETING_FLAG = "ref-shared"  # if + $ref to a shared rule: and(ends_with email, age >= 30)
CONTEXT = {"targetingKey": "user-1234", "email": "jane@acme.com", "age": 42}


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, payload):
    """A length-delimited field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def value(v):
    """google.protobuf.Value for strings, numbers and booleans."""
    if isinstance(v, bool):
        return varint(4 << 3 | 0) + varint(int(v))
    if isinstance(v, (int, float)):
        return varint(2 << 3 | 1) + struct.pack("<d", float(v))
    return field(3, str(v).encode())


def struct_message(fields):
    """google.protobuf.Struct: repeated map entries {1: key, 2: Value}."""
    return b"".join(field(1, field(1, k.encode()) + field(2, value(v))) for k, v in fields.items())


def grpc_frame(message):
    """The gRPC length prefix: uncompressed flag and big-endian length."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def resolve_boolean(flag, context):
    return field(1, flag.encode()) + field(2, struct_message(context))


def write(path, data):
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(path, mode) as fh:
        fh.write(data)


def main():
    work, peers = sys.argv[1:3]
    shutil.copyfile(f"{peers}/flags.json", f"{work}/flags.json")

    with open(f"{peers}/flags-1000.json", encoding="utf-8") as fh:
        thousand = json.load(fh)
    keys = list(thousand["flags"])[:100]
    bulk = dict(thousand, flags={k: thousand["flags"][k] for k in keys})
    write(f"{work}/bulk100.json", json.dumps(bulk))

    for name, flag in [("static", STATIC_FLAG), ("targeting", TARGETING_FLAG)]:
        write(f"{work}/grpc-{name}.bin", grpc_frame(resolve_boolean(flag, CONTEXT)))
        write(f"{work}/connect-{name}.json", json.dumps({"flagKey": flag, "context": CONTEXT}))
    write(f"{work}/ofrep-single.json", json.dumps({"context": CONTEXT}))
    with open(f"{peers}/contexts.jsonl", encoding="utf-8") as fh:
        first = json.loads(fh.readline())
    write(f"{work}/ofrep-bulk.json", json.dumps({"context": first}))


if __name__ == "__main__":
    main()
