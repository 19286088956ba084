"""Sends GET heads a byte at a time over many connections at once, for bench/slow-heads.sh.

Usage: slow_heads.py PORT PATH CONNECTIONS PAD_BYTES [PACE]

Every connection gets one byte of its head per round (TCP_NODELAY, so each byte is a segment
of its own), round after round, until every head is sent; then each answer's status line is
read. With PACE (bytes per second per connection) the rounds are spaced 1/PACE s apart, so a
server that keeps up reads each byte on its own; without it they follow each other at once. The head is a GET of PATH with an `X-Pad` field of PAD_BYTES bytes. Prints one line:
`heads=N bytes=B seconds=S statuses=200:N,...`.
"""

import socket
import sys
import time
from collections import Counter


def main() -> None:
    port, path, conns, pad = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    pace = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    head = (f"GET {path} HTTP/1.1\r\nHost: bench\r\nX-Pad: {'a' * pad}\r\n"
            "Connection: close\r\n\r\n").encode()
    socks = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(s)
    started = time.monotonic()
    for at in range(len(head)):
        if pace > 0:
            wait = started + at / pace - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        byte = head[at:at + 1]
        for s in socks:
            s.sendall(byte)
    statuses = Counter()
    for s in socks:
        s.settimeout(30)
        line = b""
        try:
            while b"\r\n" not in line:
                got = s.recv(4096)
                if not got:
                    break
                line += got
        except OSError:
            pass
        parts = line.split(b" ", 2)
        statuses[parts[1].decode() if len(parts) > 1 else "none"] += 1
        s.close()
    seconds = time.monotonic() - started
    counts = ",".join(f"{k}:{v}" for k, v in sorted(statuses.items()))
    print(f"heads={conns} bytes={conns * len(head)} seconds={seconds:.2f} statuses={counts}")


if __name__ == "__main__":
    main()
