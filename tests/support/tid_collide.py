"""Two client threads whose tids share rcapture's per-thread call slot.

usage: tid_collide.py CERT KEY MARKER

rcapture keeps each thread's TLS call in flight in slot tid % 16384 of an
array, and sends a call to an overflow hash when another thread holds that
slot. Thread A starts an SSL_read that stays in flight (the in-process
server answers A only later); threads are then started until one, B, has
A's slot index; B makes two request/response exchanges while A's read is
pending, then A's reply is released. Prints one JSON line with both tids.
"""
import json
import socket
import ssl
import sys
import threading

SLOTS = 16384
cert, key, marker = sys.argv[1], sys.argv[2], sys.argv[3]

sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
sctx.load_cert_chain(cert, key)
cctx = ssl.create_default_context()
cctx.check_hostname = False
cctx.verify_mode = ssl.CERT_NONE

lsock = socket.socket()
lsock.bind(("127.0.0.1", 0))
lsock.listen(4)
port = lsock.getsockname()[1]
release_a = threading.Event()


def serve_one():
    raw, _ = lsock.accept()
    with sctx.wrap_socket(raw, server_side=True) as s:
        f = s.makefile("rb")
        while True:
            line = f.readline()
            if not line:
                return
            who = line.split()[0].decode()
            if who.startswith("A-"):
                release_a.wait(60)
            s.sendall(f"{who.replace('REQ', 'RESP')} {marker}\n".encode())


servers = [threading.Thread(target=serve_one, daemon=True) for _ in range(2)]
for t in servers:
    t.start()

a_ready = threading.Event()
out = {}


def client(name, requests, ready=None):
    out[name + "_tid"] = threading.get_native_id()
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with cctx.wrap_socket(raw, server_hostname="localhost") as s:
            f = s.makefile("rb")
            for req in requests:
                s.sendall(f"{req} {marker}\n".encode())
                if ready is not None:
                    ready.set()  # A's read is about to block in SSL_read
                out.setdefault(name, []).append(f.readline().decode().strip())


a = threading.Thread(target=client, args=("a", ["A-REQ"], a_ready))
a.start()
a_ready.wait(30)
want = out["a_tid"] % SLOTS


def candidate():
    if threading.get_native_id() % SLOTS == want:
        client("b", ["B-REQ1", "B-REQ2"])


# tids are handed out in order (wrapping at pid_max): one of the next
# threads gets A's slot index.
for _ in range(4 * SLOTS):
    t = threading.Thread(target=candidate)
    t.start()
    t.join()
    if "b" in out:
        break
release_a.set()
a.join(60)
out["a_slot"] = out["a_tid"] % SLOTS
out["b_slot"] = out.get("b_tid", -1) % SLOTS
print(json.dumps(out))
