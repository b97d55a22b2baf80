"""Writer process for the kill -9 test: submits numbered batches through the store-and-forward
buffer and prints ``ack K`` once batch K is durable; ``drain`` mode replays what is left."""

from __future__ import annotations

import sys
import time

import numpy as np

from historian.backend import Points
from historian.buffer import StoreAndForward
from historian.influx import InfluxV1Backend

TAGS = [f"kill/tag{i}" for i in range(10)]
T0 = 1_763_800_000_000_000_000


def batch(k: int) -> Points:
    n = len(TAGS)
    return Points(TAGS, np.arange(n, dtype=np.int64), np.full(n, T0 + k * 1_000_000, np.int64),
                  np.full(n, float(k)), np.zeros(n, np.uint8))


def main() -> int:
    mode, buf, url = sys.argv[1:4]
    backend = InfluxV1Backend(url, "killtest", timeout_s=2.0)
    saf = StoreAndForward(backend, buf, retry_min_s=0.05, retry_max_s=0.2)
    saf.start()
    if mode == "write":
        k = 0
        while True:
            saf.submit(batch(k), np.ones(len(TAGS), bool))
            print(f"ack {k}", flush=True)
            k += 1
            time.sleep(0.002)
    ok = saf.drain(60)
    saf.close()
    print("drained" if ok else "not drained", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
