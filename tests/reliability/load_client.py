"""Bounded load from a second process: N concurrent clients, R requests in all, loopback only.

    python tests/reliability/load_client.py http://127.0.0.1:PORT ids.txt --clients 50 --requests 20000

Prints one JSON line: requests, errors, status counts, p50/p99 ms, throughput.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from urllib.parse import urlparse

import httpx


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("ids")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=20_000)
    args = ap.parse_args()
    host = urlparse(args.base).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        print("refusing a non-loopback target", file=sys.stderr)
        return 2
    ids = [line.strip() for line in open(args.ids) if line.strip()]
    per = args.requests // args.clients
    lat: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        mine, codes = [], {}
        with httpx.Client(base_url=args.base, timeout=30) as c:
            for i in range(per):
                uid = ids[(k * per + i) % len(ids)]
                t0 = time.perf_counter()
                try:
                    r = c.get(f"/features/{uid}")
                    codes[r.status_code] = codes.get(r.status_code, 0) + 1
                except httpx.HTTPError as exc:
                    with lock:
                        errors.append(repr(exc))
                    continue
                mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)
            for code, n in codes.items():
                statuses[code] = statuses.get(code, 0) + n

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    pick = lambda q: lat[min(len(lat) - 1, int(q * (len(lat) - 1)))] * 1000 if lat else None  # noqa: E731
    print(
        json.dumps(
            {
                "requests": per * args.clients,
                "errors": len(errors),
                "statuses": statuses,
                "p50_ms": pick(0.5),
                "p99_ms": pick(0.99),
                "throughput_rps": len(lat) / wall,
                "seconds": wall,
                "first_errors": errors[:3],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
