"""Closed-loop HTTP load generator for bench_serving (a separate process, loopback only).

``python -m bench.loadgen_serving --url http://127.0.0.1:PORT/path --body FILE
--concurrency N --seconds S --max-requests M`` keeps N connections busy, each
sending the next request as soon as the last reply ends, for S seconds or M
requests (whichever comes first), and prints one JSON line: requests, errors,
requests/s, and latency percentiles in milliseconds.

Why raw asyncio streams and not httpx: on a 2-core machine the client shares the
CPU with the server, and httpx costs about a millisecond of CPU per request, which
would cap every server at the client's speed. This client sends pre-built
HTTP/1.1 keep-alive requests and parses only the status line and Content-Length.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length body: (status, body); status 0 if the
    connection closed."""
    status_line = await reader.readline()
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return (int(status_line.split()[1]) if status_line else 0), body


async def _one_connection(
    host: str, port: int, request: bytes, deadline: float, budget: list[int], latencies: list[float], errors: list[str]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            t0 = time.perf_counter()
            writer.write(request)
            await writer.drain()
            status, body = await read_response(reader)
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                errors.append(f"{status}: {body[:200]!r}")
    finally:
        writer.close()


async def run(url: str, body: bytes, concurrency: int, seconds: float, max_requests: int, warmup: int) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"loopback only; got {host}")
    request = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    ).encode() + body
    # Warm-up (not measured): the servers' first requests pay for lazy set-up.
    await _one_connection(host, port, request, time.perf_counter() + 30, [warmup], [], [])
    latencies: list[float] = []
    errors: list[str] = []
    budget = [max_requests]
    t0 = time.perf_counter()
    deadline = t0 + seconds
    await asyncio.gather(
        *[_one_connection(host, port, request, deadline, budget, latencies, errors) for _ in range(concurrency)]
    )
    elapsed = time.perf_counter() - t0
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return 1000 * ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")

    return {
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "seconds": round(elapsed, 3),
        "rps": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--body", required=True, help="file with the JSON request body")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--max-requests", type=int, default=100_000)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()
    with open(args.body, "rb") as fh:
        body = fh.read()
    result = asyncio.run(run(args.url, body, args.concurrency, args.seconds, args.max_requests, args.warmup))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
