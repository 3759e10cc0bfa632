"""A real WebSocket client of rcapture's event stream (python `websockets`).

usage: ws_client.py URL PB2_DIR MODULE [--deflate] [--origin ORIGIN] [--secs N]

MODULE is the protoc-generated module in PB2_DIR to decode with
(`upstream_event_pb2`: eCapture's v1 schema, or `event_pb2`: with rcapture's
extensions). Prints one JSON line for the handshake
({"handshake": {"status": 101, "headers": {...}, "extensions": [...]}}), then
one per message: {"entry": {...}} for binary frames, {"text": ...} for text
frames; `payload` as hex, plus `unknown_event` / `unknown_entry`: the field
numbers the schema did not know. Exits at close or after --secs (default 60).
"""
import argparse
import importlib
import json
import sys
import time

from google.protobuf import json_format
from websockets.sync.client import connect


def unknown_numbers(msg):
    from google.protobuf import unknown_fields as uf
    return sorted({f.field_number for f in uf.UnknownFieldSet(msg)})


def entry_json(pb, data):
    entry = pb.LogEntry()
    entry.ParseFromString(data)
    out = json_format.MessageToDict(
        entry,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        use_integers_for_enums=True,
    )
    out["unknown_entry"] = unknown_numbers(entry)
    kind = entry.WhichOneof("payload")
    out["payload_kind"] = kind
    if kind == "event_payload":
        ev = entry.event_payload
        d = out["event_payload"]
        d["payload"] = ev.payload.hex()
        # int64 fields as numbers (MessageToDict gives strings).
        d["timestamp"] = ev.timestamp
        d["pid"] = ev.pid
        out["unknown_event"] = unknown_numbers(ev)
    elif kind == "heartbeat_payload":
        hb = entry.heartbeat_payload
        out["heartbeat_payload"] = {"timestamp": hb.timestamp, "count": hb.count, "message": hb.message}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("pb2_dir")
    ap.add_argument("module")
    ap.add_argument("--deflate", action="store_true")
    ap.add_argument("--origin", default="http://localhost/")
    ap.add_argument("--secs", type=float, default=60)
    a = ap.parse_args()
    sys.path.insert(0, a.pb2_dir)
    pb = importlib.import_module(a.module)

    with connect(
        a.url,
        origin=a.origin or None,
        compression="deflate" if a.deflate else None,
        max_size=None,
        open_timeout=20,
    ) as ws:
        resp = ws.response
        print(json.dumps({"handshake": {
            "status": resp.status_code,
            "headers": {k.lower(): v for k, v in resp.headers.raw_items()},
            "extensions": [type(e).__name__ for e in ws.protocol.extensions],
        }}), flush=True)
        end = time.monotonic() + a.secs
        while time.monotonic() < end:
            try:
                msg = ws.recv(timeout=max(0.1, end - time.monotonic()))
            except TimeoutError:
                break
            if isinstance(msg, bytes):
                print(json.dumps({"entry": entry_json(pb, msg)}), flush=True)
            else:
                print(json.dumps({"text": msg}), flush=True)


if __name__ == "__main__":
    main()
