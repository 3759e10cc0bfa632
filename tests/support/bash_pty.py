"""Types lines into an interactive bash on a pseudo-terminal.

Usage: bash_pty.py [--bash PATH] [--uid N] < lines.json   (a JSON list of strings)

Starts `PATH --norc --noprofile -i` (default /usr/bin/bash; as user id N
with --uid) on a pty with a clean environment and no history file, prints
its pid on the first stdout line, then types each
line (followed by Enter) once bash shows a prompt (PS1 or PS2), and waits
for bash to exit; the last stdout line is `exit STATUS`. Everything bash
wrote to the terminal goes to stderr.
"""
import argparse
import json
import os
import pty
import select
import sys
import time

PROMPTS = (b"PS1-RC$ ", b"PS2-RC> ")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bash", default="/usr/bin/bash")
    ap.add_argument("--uid", type=int)
    args = ap.parse_args()
    bash = args.bash
    lines = json.load(sys.stdin)
    env = {
        "TERM": "xterm",
        "HISTFILE": "",
        "PS1": PROMPTS[0].decode(),
        "PS2": PROMPTS[1].decode(),
        "HOME": "/tmp",
        "PATH": "/usr/bin:/bin",
    }
    pid, fd = pty.fork()
    if pid == 0:
        if args.uid is not None:
            os.setgroups([])
            os.setgid(args.uid)
            os.setuid(args.uid)
        os.execve(bash, [bash, "--norc", "--noprofile", "-i"], env)
    print(pid, flush=True)
    seen = bytearray()
    deadline = time.monotonic() + 60

    def prompts():
        return sum(seen.count(p) for p in PROMPTS)

    def read_some():
        r, _, _ = select.select([fd], [], [], 0.2)
        if not r:
            return True
        try:
            data = os.read(fd, 65536)
        except OSError:
            return False  # bash exited: the pty is gone
        if not data:
            return False
        seen.extend(data)
        sys.stderr.buffer.write(data)
        return True

    def wait_prompts(n):
        while prompts() < n:
            if time.monotonic() > deadline:
                sys.exit("bash_pty: no prompt from bash within 60 s")
            if not read_some():
                return

    # Each line typed makes bash prompt again (PS1, or PS2 inside a command).
    for want, line in enumerate(lines, start=1):
        wait_prompts(want)
        data = line.encode() + b"\r"
        # Type it in pieces, reading the echo, so the pty never fills up.
        for i in range(0, len(data), 512):
            os.write(fd, data[i : i + 512])
            while read_some() and select.select([fd], [], [], 0)[0]:
                pass
    while read_some():
        if time.monotonic() > deadline:
            sys.exit("bash_pty: bash did not exit within 60 s")
    _, status = os.waitpid(pid, 0)
    print(f"exit {os.waitstatus_to_exitcode(status)}", flush=True)


main()
