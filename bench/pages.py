"""Console pages over HTTP at continent scale (issue 8): the overview, the shortage board and a
member page, served by `healthmesh serve --workers N` on the continent database, each answered
with p95 under 200 ms?

    .venv/bin/python -m bench.pages [--url DB_URL] [--workers 2] [--rounds 60] [--clients 1]
                                    [--baseline-rounds 2] [--port 8766]

What it does:

1. Starts the server as it is served (each worker warms its analytics cache before it accepts
   connections: `supply.warmer`) and records how long it took to answer its first request.
2. Signs in as the regional coordinator and as Nigeria's focal point (Nigeria is the largest
   member: 1,286 facilities, 49,503 balances) and requests, `--rounds` times, each page below in
   turn, every round after a committed one-unit stock issue at a random facility (so every answer
   includes the cache catching up with a change), from `--clients` concurrent clients. Every
   request on a new connection, so the workers share them.
3. Baseline, in the same run: the same pages from a server with the analytics cache off
   (`HEALTHMESH_ANALYTICS_CACHE=0`: every answer aggregated in SQL), `--baseline-rounds` rounds.

Prints p50/p95/p99/max per page, the baseline's p50, and whether p95 < 200 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx

from bench.common import machine
from bench.load import DEFAULT_URL, cleanup, prepare, start_server, stop_server

TARGET_MS = 200.0


@dataclass(frozen=True)
class Page:
    label: str
    path: str
    user: str


PAGES = [
    Page("overview (coordinator)", "/console", "coordinator"),
    Page("shortage board, region (coordinator)", "/console/shortages", "coordinator"),
    Page("shortage board, NGA (focal point)", "/console/shortages", "fp.nga"),
    Page("member page NGA (coordinator)", "/console/members/NGA", "coordinator"),
    Page("member page NGA (focal point)", "/console/members/NGA", "fp.nga"),
    Page("member page, a random member (coordinator)", "/console/members/{member}", "coordinator"),
]


@dataclass
class Timings:
    by_page: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, label: str, ms: float) -> None:
        with self.lock:
            self.by_page.setdefault(label, []).append(ms)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def sign_in(base: str, username: str, password: str) -> str:
    response = httpx.post(f"{base}/api/v1/auth/login", json={"username": username, "password": password})
    response.raise_for_status()
    return str(response.headers["set-cookie"]).split(";")[0]


def issue_one(client: httpx.Client, plan: dict[str, object], rng: random.Random) -> None:
    """A committed one-unit issue, as a facility's report would be."""
    lot = rng.choice(plan["lots"])  # type: ignore[arg-type]
    token = plan["tokens"][f"fp.{lot['member'].lower()}"][0]  # type: ignore[index]
    body = {
        "kind": "issue",
        "facility": lot["facility"],
        "product": lot["product"],
        "lot_number": lot["lot_number"],
        "quantity": 1,
    }
    response = client.post("/api/v1/stock/events", json=body, headers={"Authorization": f"Bearer {token}"})
    if response.status_code != 201:
        raise RuntimeError(f"stock event refused: {response.status_code} {response.text[:200]}")


def drive(
    base: str, cookies: dict[str, str], plan: dict[str, object], rounds: int, seed: int, timings: Timings
) -> None:
    rng = random.Random(seed)
    members = plan["members"]
    limits = httpx.Limits(max_keepalive_connections=0)  # a new connection per request
    with httpx.Client(base_url=base, limits=limits, timeout=60) as client:
        for _ in range(rounds):
            issue_one(client, plan, rng)
            for page in PAGES:
                path = page.path.format(member=rng.choice(members))  # type: ignore[arg-type]
                started = time.perf_counter()
                response = client.get(path, headers={"Cookie": cookies[page.user]})
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    timings.errors.append(f"{path}: {response.status_code}")
                timings.add(page.label, elapsed)


def measure(
    url: str, workers: int, port: int, rounds: int, clients: int, cache: bool, plan: dict[str, object]
) -> tuple[Timings, float]:
    """Serve, sign in, drive; returns the timings and the seconds to the first answer."""
    folder = Path(tempfile.mkdtemp(prefix="hm-pages-"))
    os.environ["HEALTHMESH_ANALYTICS_CACHE"] = "1" if cache else "0"
    started = time.monotonic()
    server = start_server(url, workers, port, folder / "server.log")
    ready = time.monotonic() - started
    try:
        base = f"http://127.0.0.1:{port}"
        password = str(plan["password"])
        cookies = {user: sign_in(base, user, password) for user in ("coordinator", "fp.nga")}
        timings = Timings()
        threads = [
            threading.Thread(target=drive, args=(base, cookies, plan, rounds, seed, timings))
            for seed in range(clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return timings, ready
    finally:
        stop_server(server)
        os.environ.pop("HEALTHMESH_ANALYTICS_CACHE", None)


def report(timings: Timings, baseline: Timings | None, args: argparse.Namespace, ready: float) -> None:
    print(f"\nConsole pages over HTTP, {machine()}, {date.today().isoformat()}")
    print(
        f"  {args.workers} workers, {args.clients} client(s), {args.rounds} rounds, each after a committed "
        f"stock issue; first answer {ready:.1f} s after start (the warm-up)"
    )
    header = (
        f"  {'page':<44} {'n':>4} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7} {'no cache p50':>13}  p95<200"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for page in PAGES:
        values = timings.by_page.get(page.label, [])
        if not values:
            continue
        p95 = percentile(values, 95)
        base = baseline.by_page.get(page.label, []) if baseline else []
        base_text = f"{statistics.median(base):,.0f}" if base else "-"
        print(
            f"  {page.label:<44} {len(values):>4} {statistics.median(values):>7.1f} {p95:>7.1f} "
            f"{percentile(values, 99):>7.1f} {max(values):>7.1f} {base_text:>13}  "
            f"{'yes' if p95 < TARGET_MS else 'NO'}"
        )
    print(f"  errors: {len(timings.errors)}" + (f" (first: {timings.errors[0]})" if timings.errors else ""))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=os.environ.get("HEALTHMESH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--baseline-rounds", type=int, default=2, help="0: no baseline")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()
    plan = prepare(args.url, args.seed, 1)
    try:
        timings, ready = measure(args.url, args.workers, args.port, args.rounds, args.clients, True, plan)
        baseline = None
        if args.baseline_rounds:
            baseline, _ = measure(args.url, args.workers, args.port, args.baseline_rounds, 1, False, plan)
        report(timings, baseline, args, ready)
    finally:
        cleanup(args.url)


if __name__ == "__main__":
    main()
