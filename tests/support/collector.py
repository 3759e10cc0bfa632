"""A test collector: an HTTP/1.1 server that records every request.

usage: collector.py OUT.jsonl [--port N] [--delay-start SECS] [--fail N]
                    [--fail-status S] [--retry-after SECS] [--hold SECS]
                    [--tls CERT KEY]

Listens on 127.0.0.1 (port 0 = any; the chosen port is printed on stdout as
one line once the socket is bound; with --delay-start the port is printed at
once and the socket is bound only after SECS, so clients see a collector that
is down and comes back). Every request is appended to OUT.jsonl as one JSON
line: {"method", "path", "headers": [[name, value]...], "body": base64,
"status", "t": arrival time, "peer": the client's port}. With --hold
each answer waits SECS after its request was read (requests on other
connections are served meanwhile). The first N requests (--fail) are answered with --fail-status
(default 503, with Retry-After when given), the rest with 200. Keep-alive
is supported; bodies are read by Content-Length or chunked coding.
"""
import argparse
import base64
import http.server
import json
import socketserver
import ssl
import sys
import threading
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n)

    def _handle(self):
        body = self._body()
        srv = self.server
        with srv.lock:
            srv.count += 1
            failing = srv.count <= srv.args.fail
            status = srv.args.fail_status if failing else 200
            rec = {
                "method": self.command,
                "path": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body": base64.b64encode(body).decode(),
                "status": status,
                "t": time.time(),
                "peer": self.client_address[1],
            }
            with open(srv.args.out, "a") as f:
                f.write(json.dumps(rec) + "\n")
        if srv.args.hold:
            time.sleep(srv.args.hold)
        reply = b"busy\n" if failing else b"ok\n"
        self.send_response(status)
        if failing and srv.args.retry_after is not None:
            self.send_header("Retry-After", str(srv.args.retry_after))
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_POST = _handle
    do_PUT = _handle
    do_GET = _handle


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--delay-start", type=float, default=0)
    p.add_argument("--fail", type=int, default=0)
    p.add_argument("--fail-status", type=int, default=503)
    p.add_argument("--retry-after", type=int)
    p.add_argument("--hold", type=float, default=0)
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = p.parse_args()
    if args.delay_start:
        if not args.port:
            sys.exit("--delay-start needs --port")
        print(args.port, flush=True)
        time.sleep(args.delay_start)
    srv = Server(("127.0.0.1", args.port), Handler)
    srv.args = args
    srv.lock = threading.Lock()
    srv.count = 0
    if args.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*args.tls)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    if not args.delay_start:
        print(srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
