#!/usr/bin/env python3
"""Run a command on a pseudo-terminal, like a user at a terminal would.

    ptyrun.py [--send LINE]... -- CMD [ARG...]

Before each --send LINE the output is read until it ends with a shell prompt ('# ' or '$ '),
then LINE and Enter (CR) are typed. After the last line, the output is read to the end.
The transcript (CRs and ANSI escape sequences removed) is printed and the command's exit
code returned. Used by the -it scenarios: `docker run -it` and `docker exec -it`.
"""
import os
import pty
import re
import select
import sys
import time

PROMPT = re.compile(rb"[#$] $")
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def read_some(fd, timeout):
    r, _, _ = select.select([fd], [], [], timeout)
    if not r:
        return b""
    try:
        return os.read(fd, 4096)
    except OSError:
        return None  # EIO: the other side is closed


def main():
    argv = sys.argv[1:]
    sends = []
    while argv and argv[0] == "--send":
        sends.append(argv[1].encode())
        argv = argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(argv[0], argv)
    out = b""
    eof = False
    mark = 0  # the prompt to wait for comes after this offset (after the last line typed)
    for line in sends:
        deadline = time.monotonic() + 20
        while not PROMPT.search(ANSI.sub(b"", out[mark:]).replace(b"\r", b"")) and time.monotonic() < deadline:
            chunk = read_some(fd, 0.5)
            if chunk is None:
                eof = True
                break
            out += chunk
        if eof:
            break
        mark = len(out)
        os.write(fd, line + b"\r")
    deadline = time.monotonic() + 30
    while not eof and time.monotonic() < deadline:
        chunk = read_some(fd, 0.5)
        if chunk is None:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    text = ANSI.sub(b"", out).replace(b"\r", b"")
    sys.stdout.write(text.decode("utf-8", "replace"))
    if not text.endswith(b"\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()
    sys.exit(os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8)


if __name__ == "__main__":
    main()
