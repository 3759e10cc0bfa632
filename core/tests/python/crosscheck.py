#!/usr/bin/env python3
"""Decodes rcapture-encoded LogEntry bytes with eCapture's upstream schema and checks every field.

Usage: crosscheck.py GENERATED_DIR CASES_JSON

GENERATED_DIR holds `upstream_event_pb2.py` (protoc --python_out of
upstream_event.proto). CASES_JSON is written by core/tests/python_crosscheck.rs:
a list of {"name", "entry_hex", "kind": "event"|"heartbeat"|"run_log",
"expect": {...}}. For events, `expect` holds every upstream field (payload as
hex) plus the rcapture extensions (tid, uid, module, fd, truncated, status, seq),
which the upstream schema must see as unknown fields with exactly these
values. Exits 1 with a per-field diff on any mismatch.
"""

import json
import sys

UPSTREAM_EVENT_FIELDS = [
    "timestamp", "uuid", "src_ip", "src_port", "dst_ip", "dst_port",
    "pid", "pname", "type", "length", "payload",
]
# rcapture extension field numbers (WIRE.md §1) and how they are encoded.
EVENT_EXTENSIONS = {"tid": (12, "varint"), "uid": (13, "varint"),
                    "module": (14, "string"), "fd": (15, "varint"),
                    "truncated": (16, "varint"), "status": (17, "sint")}
SEQ_FIELD = 5
WIRETYPE_VARINT = 0
WIRETYPE_LEN = 2


def unknown_fields(msg):
    """{field_number: [(wire_type, data)]} of the fields the schema does not know."""
    from google.protobuf import unknown_fields as uf
    out = {}
    for f in uf.UnknownFieldSet(msg):
        out.setdefault(f.field_number, []).append((f.wire_type, f.data))
    return out


def check_extension(diffs, unknown, name, number, encoding, want):
    got = unknown.get(number, [])
    # proto3: a zero or empty value is not written at all.
    if want in (0, ""):
        if got:
            diffs.append(f"{name} (#{number}): expected absent (default), got {got}")
        return
    if encoding == "varint":
        expected = [(WIRETYPE_VARINT, want)]
    elif encoding == "sint":
        # sint32: ZigZag.
        expected = [(WIRETYPE_VARINT, ((want << 1) ^ (want >> 31)) & 0xFFFFFFFF)]
    else:
        expected = [(WIRETYPE_LEN, want.encode())]
    if got != expected:
        diffs.append(f"{name} (#{number}): expected unknown field {expected}, got {got}")


def check_event(pb, entry, expect, unknown_entry, diffs):
    if entry.log_type != pb.LOG_TYPE_EVENT:
        diffs.append(f"log_type: expected LOG_TYPE_EVENT, got {entry.log_type}")
    if entry.WhichOneof("payload") != "event_payload":
        diffs.append(f"payload oneof: expected event_payload, got {entry.WhichOneof('payload')}")
        return
    ev = entry.event_payload
    for field in UPSTREAM_EVENT_FIELDS:
        got = getattr(ev, field)
        want = expect[field]
        if field == "payload":
            got = got.hex()
        if got != want:
            diffs.append(f"event.{field}: expected {want!r}, got {got!r}")
    if ev.length != len(ev.payload):
        diffs.append(f"event.length {ev.length} != len(payload) {len(ev.payload)}")
    unknown = unknown_fields(ev)
    for name, (number, encoding) in EVENT_EXTENSIONS.items():
        check_extension(diffs, unknown, f"event.{name}", number, encoding, expect[name])
    stray = sorted(set(unknown) - {n for n, _ in EVENT_EXTENSIONS.values()})
    if stray:
        diffs.append(f"event: unexpected unknown fields {stray}")
    check_extension(diffs, unknown_entry, "seq", SEQ_FIELD, "varint", expect["seq"])


def check_heartbeat(pb, entry, expect, unknown_entry, diffs):
    if entry.log_type != pb.LOG_TYPE_HEARTBEAT:
        diffs.append(f"log_type: expected LOG_TYPE_HEARTBEAT, got {entry.log_type}")
    if entry.WhichOneof("payload") != "heartbeat_payload":
        diffs.append(f"payload oneof: expected heartbeat_payload, got {entry.WhichOneof('payload')}")
        return
    hb = entry.heartbeat_payload
    for field in ("timestamp", "count", "message"):
        if getattr(hb, field) != expect[field]:
            diffs.append(f"heartbeat.{field}: expected {expect[field]!r}, got {getattr(hb, field)!r}")
    if unknown_entry:
        diffs.append(f"heartbeat entry: unexpected unknown fields {unknown_entry}")


def check_run_log(pb, entry, expect, unknown_entry, diffs):
    if entry.log_type != pb.LOG_TYPE_PROCESS_LOG:
        diffs.append(f"log_type: expected LOG_TYPE_PROCESS_LOG, got {entry.log_type}")
    if entry.WhichOneof("payload") != "run_log":
        diffs.append(f"payload oneof: expected run_log, got {entry.WhichOneof('payload')}")
        return
    if entry.run_log != expect["run_log"]:
        diffs.append(f"run_log: expected {expect['run_log']!r}, got {entry.run_log!r}")
    if unknown_entry:
        diffs.append(f"run_log entry: unexpected unknown fields {unknown_entry}")


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    sys.path.insert(0, sys.argv[1])
    import upstream_event_pb2 as pb

    with open(sys.argv[2], encoding="utf-8") as f:
        cases = json.load(f)
    checkers = {"event": check_event, "heartbeat": check_heartbeat, "run_log": check_run_log}
    failed = 0
    for case in cases:
        diffs = []
        entry = pb.LogEntry()
        try:
            entry.ParseFromString(bytes.fromhex(case["entry_hex"]))
        except Exception as e:  # DecodeError, or anything else the runtime raises
            diffs.append(f"upstream LogEntry did not parse: {e}")
        else:
            checkers[case["kind"]](pb, entry, case["expect"], unknown_fields(entry), diffs)
        if diffs:
            failed += 1
            print(f"FAIL {case['name']}:", file=sys.stderr)
            for d in diffs:
                print(f"  {d}", file=sys.stderr)
        else:
            print(f"ok   {case['name']}")
    print(f"{len(cases) - failed}/{len(cases)} entries match the upstream schema")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
