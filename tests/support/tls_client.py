"""A Python ssl client (SSL_write_ex / SSL_read_ex): one request, one response.

usage: tls_client.py PORT MARKER [POST_BYTES]
With POST_BYTES the request is a POST whose body (START-MARK ... MIDDLE-MARK
... END-MARK) is written with a single sendall, i.e. one SSL_write_ex call.
"""
import socket
import ssl
import sys

port, marker = int(sys.argv[1]), sys.argv[2]
post = int(sys.argv[3]) if len(sys.argv) > 3 else None
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with socket.create_connection(("127.0.0.1", port)) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        head = f"X-Marker: {marker}\r\nHost: localhost\r\nConnection: close\r\n"
        if post is None:
            s.sendall(f"GET /py HTTP/1.1\r\n{head}\r\n".encode())
        else:
            s.sendall(f"POST /upload HTTP/1.1\r\n{head}Content-Length: {post}\r\n\r\n".encode())
            half = post // 2
            body = bytearray(b"x" * post)
            body[0:10] = b"START-MARK"
            body[half:half + 11] = b"MIDDLE-MARK"
            body[post - 8:post] = b"END-MARK"
            s.sendall(bytes(body))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
print(data.split(b"\r\n", 1)[0].decode())
