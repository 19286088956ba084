"""Writes COUNT Redis SET commands (RESP) to stdout: random keys from a 10M key space, values
of uniformly random length from 16 bytes to 64 KiB. For bench/rss-churn.sh."""

import random
import sys

count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
rng = random.Random(42)
filler = bytes(rng.randrange(256) for _ in range(1 << 16))
out = sys.stdout.buffer
batch = []
for i in range(count):
    key = b"key:%08d" % rng.randrange(10_000_000)
    size = rng.randint(16, 1 << 16)
    value = filler[:size]
    batch.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, size, value))
    if len(batch) == 256:
        out.write(b"".join(batch))
        batch.clear()
out.write(b"".join(batch))
out.flush()
