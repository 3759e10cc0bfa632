"""mitmdump addon for tests: appends every request mitmproxy receives, as one
JSON line, to the file named by $RCAPTURE_MITM_OUT.

usage: RCAPTURE_MITM_OUT=flows.jsonl mitmdump -s mitm_record.py ...
Each line: {"method", "url", "scheme", "host", "port", "path",
"http_version", "headers": [[name, value]...], "body": base64}.
"""
import base64
import json
import os


class Record:
    def request(self, flow):
        r = flow.request
        rec = {
            "method": r.method,
            "url": r.pretty_url,
            "scheme": r.scheme,
            "host": r.host,
            "port": r.port,
            "path": r.path,
            "http_version": r.http_version,
            "headers": [[k, v] for k, v in r.headers.items(multi=True)],
            "body": base64.b64encode(r.raw_content or b"").decode(),
        }
        with open(os.environ["RCAPTURE_MITM_OUT"], "a") as f:
            f.write(json.dumps(rec) + "\n")


addons = [Record()]
