"""Open-loop load generator for ``POST /v1/events`` (bench_live; a separate process, loopback only).

``python -m bench.loadgen_events --url http://127.0.0.1:PORT/v1/events --rate R --batch B
--seconds S --users U --items I --connections C`` sends R requests a second (each with B
events of U users over I items) on a fixed schedule, whatever the server's latency (open
loop: a slow server makes requests wait, it does not slow the offered load), over C
keep-alive connections, for S seconds. It prints one JSON line: requests, events, errors,
the offered and achieved event rates, and acknowledgement latency percentiles in ms
(measured from each request's scheduled send time, so queueing counts).

Raw asyncio streams instead of httpx, as in loadgen_serving: the client shares 2 cores
with the server and the stream job and must cost little CPU. Each body is encoded when its
request is due, with event times of that moment (a few seconds of client clock spread)
and users drawn uniformly from U: as a shop's clickstream, not a replay (encoding 100
events costs about 0.2 ms, 10 ms a second at 5,000 events/s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from urllib.parse import urlsplit

from bench.loadgen_serving import read_response


def _body(rng: random.Random, batch: int, users: int, items: int) -> bytes:
    now = time.time()
    events = [
        {
            "event_time": round(now + rng.uniform(-5, 0), 3),
            "user_id": f"u{rng.randrange(users)}",
            "item_id": f"i{rng.randrange(items)}",
            "event_type": "view",
        }
        for _ in range(batch)
    ]
    return json.dumps({"events": events}).encode()


async def _send(
    host: str,
    port: int,
    path: str,
    queue: asyncio.Queue[tuple[float, bytes] | None],
    lat: list[float],
    errors: list[str],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            job = await queue.get()
            if job is None:
                return
            scheduled, body = job
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            writer.write(head + body)
            await writer.drain()
            status, _ = await read_response(reader)
            if status != 200:
                errors.append(str(status))
            lat.append(time.perf_counter() - scheduled)
    finally:
        writer.close()


async def run(url: str, rate: float, batch: int, seconds: float, users: int, items: int, connections: int) -> dict:
    u = urlsplit(url)
    host, port, path = u.hostname or "127.0.0.1", u.port or 80, u.path
    rng = random.Random(16)
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    lat: list[float] = []
    errors: list[str] = []
    workers = [asyncio.create_task(_send(host, port, path, queue, lat, errors)) for _ in range(connections)]
    start = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((due, _body(rng, batch, users, items)))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - start
    lat.sort()

    def pct(p: float) -> float:
        return round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else float("nan")

    return {
        "requests": len(lat),
        "events": len(lat) * batch,
        "errors": len(errors),
        "offered_events_per_s": round(rate * batch, 1),
        "achieved_events_per_s": round(len(lat) * batch / elapsed, 1),
        "elapsed_s": round(elapsed, 2),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(1000 * lat[-1], 2) if lat else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--rate", type=float, required=True, help="requests per second")
    ap.add_argument("--batch", type=int, default=100, help="events per request")
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--connections", type=int, default=16)
    a = ap.parse_args()
    print(json.dumps(asyncio.run(run(a.url, a.rate, a.batch, a.seconds, a.users, a.items, a.connections))))


if __name__ == "__main__":
    main()
