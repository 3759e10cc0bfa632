"""A TLS client that waits for a go line on stdin, then writes N records of
64 bytes (one SSL_write_ex each) as fast as it can, and never reads.

usage: burst_client.py PORT N    (prints "connected" once the handshake is done)
"""
import socket
import ssl
import sys

port, n = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
raw = socket.create_connection(("127.0.0.1", port))
s = ctx.wrap_socket(raw, server_hostname="localhost")
print("connected", flush=True)
sys.stdin.readline()
msg = b"B" * 64
for _ in range(n):
    s.sendall(msg)
print("done", flush=True)
s.close()
