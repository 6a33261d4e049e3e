"""Benchmark: how long each console page takes to render server-side on the demo region.

    .venv/bin/python -m bench.console [--repeat 7] [--data-dir DIR]

Seeds the demo region (as `make demo` does) into a fresh SQLite database unless --data-dir
points at one already seeded, signs in as the regional coordinator (who sees every page with
region-wide data, the heaviest case) and as a national focal point, and times each page through
the ASGI application in process (no network; the figure is the server's own work: queries,
services, template rendering). In the same run, the JSON API behind the heaviest page
(`/api/v1/shortages`) and `/healthz` are timed as the baselines a page is compared with.

Target (issue): every page renders the demo region server-side in under a second.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from fastapi.testclient import TestClient

from bench.common import machine
from healthmesh import migrate
from healthmesh.config import load_settings
from healthmesh.db import make_engine, make_sessionmaker, unit_of_work
from healthmesh.demo import seed as demo_seed
from healthmesh.demo.logistics_seed import seed_logistics
from healthmesh.demo.supply_seed import seed_supply
from healthmesh.demo.trends import seed_trends
from healthmesh.web.app import create_app

TARGET_SECONDS = 1.0
PAGES = (
    "/console",
    "/console/members/THA",
    "/console/shortages",
    "/console/needs",
    "/console/allocation",
    "/console/shipments",
    "/console/ledger",
    "/console/admin",
)
BASELINES = ("/healthz", "/api/v1/shortages?limit=200")


def _seed(data_dir: Path) -> str:
    url = f"sqlite+pysqlite:///{data_dir / 'healthmesh.sqlite3'}"
    migrate.upgrade(url)
    factory = make_sessionmaker(make_engine(url))
    if not demo_seed.is_seeded(factory):
        with unit_of_work(factory) as db:
            demo_seed.seed_demo(db, seed=2026)
            seed_supply(db, seed=2026, today=date.today())
            seed_logistics(db, seed=2026, today=date.today())
            seed_trends(db, date.today())
    return url


def _time(client: TestClient, path: str, repeat: int) -> tuple[int, float, float]:
    status = client.get(path).status_code  # warm: the first request compiles templates
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - started)
        status = response.status_code
    return status, statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="hm-console-bench-"))
    print(f"console benchmark: demo region in {data_dir}; {machine()}")
    started = time.perf_counter()
    url = _seed(data_dir)
    print(f"seeded (or found) the demo region in {time.perf_counter() - started:.1f} s")
    app = create_app(load_settings(data_dir=data_dir, database_url=url))
    worst = 0.0
    for username in ("coordinator", "fp.tha"):
        with TestClient(app) as client:
            signed = client.post(
                "/api/v1/auth/login", json={"username": username, "password": demo_seed.DEMO_PASSWORD}
            )
            assert signed.status_code == 200, signed.text
            print(f"\nas {username}: median and worst of {args.repeat} renders")
            print(f"{'page':<32} {'status':>6} {'median ms':>10} {'worst ms':>9}")
            for path in BASELINES + PAGES:
                status, median, slowest = _time(client, path, args.repeat)
                if path in PAGES and status == 200:
                    worst = max(worst, slowest)
                label = f"{path} (baseline)" if path in BASELINES else path
                print(f"{label:<32} {status:>6} {median * 1000:>10.1f} {slowest * 1000:>9.1f}")
    verdict = "met" if worst < TARGET_SECONDS else "MISSED"
    print(
        f"\ntarget: every page under {TARGET_SECONDS:.0f} s server-side: {verdict} "
        f"(slowest render {worst * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    main()
