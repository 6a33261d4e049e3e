"""Load test on loopback (issue 8): the API and the console served by `healthmesh serve` with
several workers on the continent database, driven by locust for a bounded time with a mix of
stock reports, dashboard reads and need submissions.

    .venv/bin/pip install locust          # a benchmark tool: in no dependency list
    .venv/bin/python -m bench.load [--url DB_URL] [--workers 2] [--users 16] [--seconds 60]
                                   [--warmup 20] [--wait 0.5] [--port 8765] [--member-pages]

What it does:

1. Gives the demo's focal points (`fp.<iso3>`) and the regional coordinator API tokens (named
   `load-test`, deleted at the end: one per simulated client, as separate clients have, unless
   `--shared-tokens`), picks lots with stock at facilities across the members, and
   starts `healthmesh serve --workers N` on 127.0.0.1 (HEALTHMESH_DATABASE_URL = the database).
2. Runs locust headless in a child process (gevent stays out of this one): `--users` users, each
   waiting up to `--wait` seconds between requests, for `--warmup` seconds (not counted: every
   worker fills its analytics cache), then `--seconds` seconds measured. The mix, by weight:

   - 35 `POST /api/v1/stock/events`: a one-unit issue at a random facility, by its member's focal point;
   - 10 `POST /api/v1/needs`: a submitted need of a random product, by a focal point;
   - 15 `GET /api/v1/shortages` as the coordinator (region-wide);
   - 10 `GET /api/v1/shortages` as a focal point;
   - 10 `GET /api/v1/indicators?level=jurisdiction` as a focal point;
   - 10 `GET /console` (the overview page's HTML) signed in as the coordinator (session cookie);
   - with `--member-pages`, 10 `GET /console/members/<ISO3>` (a member page's HTML) signed in as
     that member's focal point.

3. Prints the sustained requests per second, p50/p95/p99 latency per request type (from every
   request's own time, not locust's rounded buckets) and the errors (any non-2xx or exception:
   the target is zero), then stops the server and deletes the tokens. The stock reports and the
   needs stay in the database, as any report would.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import delete, select

from bench.common import machine
from healthmesh.accounts.models import ApiToken, User
from healthmesh.accounts.security import new_token, token_digest
from healthmesh.db import make_engine, make_sessionmaker
from healthmesh.demo.seed import DEMO_PASSWORD
from healthmesh.registry.models import Facility, Jurisdiction, Product
from healthmesh.supply.models import Lot, LotBalance

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/hm_continent"
TOKEN_NAME = "load-test"  # noqa: S105 - a label, not a secret
WEIGHTS = {
    "POST stock event": 35,
    "POST need": 10,
    "GET shortages (region)": 15,
    "GET shortages (member)": 10,
    "GET indicators (member)": 10,
    "GET /console (overview)": 10,
}
#: With --member-pages: the member page's HTML, the heaviest page (every facility of the member).
MEMBER_PAGE_WEIGHT = 10


# --- set-up, in this process ---------------------------------------------------------------------


def prepare(url: str, seed: int, clients: int) -> dict[str, Any]:
    """`clients` tokens each for the focal points and the coordinator (one per simulated client),
    and lots to issue from (one-unit issues from lots with plenty available never run dry)."""
    rng = random.Random(seed)
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    with factory() as db:
        users = list(
            db.scalars(select(User).where((User.username == "coordinator") | User.username.like("fp.%")))
        )
        tokens: dict[str, list[str]] = defaultdict(list)
        for user in users:
            for _ in range(clients):
                raw = new_token("at")
                db.add(
                    ApiToken(user_id=user.id, name=TOKEN_NAME, prefix=raw[:12], token_hash=token_digest(raw))
                )
                tokens[user.username].append(raw)
        members = {j: iso3 for j, iso3 in db.execute(select(Jurisdiction.id, Jurisdiction.iso3))}
        lots = [
            {"facility": code, "product": product, "lot_number": number, "member": members[j]}
            for code, j, product, number in db.execute(
                select(Facility.code, Facility.jurisdiction_id, Product.code, Lot.lot_number)
                .join(LotBalance, LotBalance.facility_id == Facility.id)
                .join(Lot, Lot.id == LotBalance.lot_id)
                .join(Product, Product.id == LotBalance.product_id)
                .where(
                    LotBalance.on_hand - LotBalance.reserved >= 500,
                    (Lot.expiry_date.is_(None)) | (Lot.expiry_date > date.today()),
                )
                .order_by(LotBalance.lot_id)
                .limit(20000)
            )
        ]
        products = list(db.scalars(select(Product.code)))
        db.commit()
    engine.dispose()
    return {
        "tokens": tokens,
        "lots": rng.sample(lots, min(len(lots), 5000)),
        "products": products,
        "members": sorted(members.values()),
        "password": DEMO_PASSWORD,
        "needed_by": (date.today() + timedelta(days=14)).isoformat(),
    }


def cleanup(url: str) -> None:
    engine = make_engine(url)
    with make_sessionmaker(engine)() as db:
        db.execute(delete(ApiToken).where(ApiToken.name == TOKEN_NAME))
        db.commit()
    engine.dispose()


def start_server(url: str, workers: int, port: int, log: Path) -> subprocess.Popen[bytes]:
    data_dir = Path(tempfile.mkdtemp(prefix="hm-load-"))
    env = {
        **os.environ,
        "HEALTHMESH_DATABASE_URL": url,
        "HEALTHMESH_DATA_DIR": str(data_dir),
        "HEALTHMESH_SECRET_KEY": "load-test-secret",
    }
    command = [
        str(Path(sys.executable).with_name("healthmesh")),
        "serve",
        "--workers",
        str(workers),
        "--port",
        str(port),
    ]
    process = subprocess.Popen(
        command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise SystemExit(f"the server exited: see {log}")
        time.sleep(0.5)
    stop_server(process)
    raise SystemExit(f"the server did not answer within 60 s: see {log}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """Stop the server we started (its own process group: the workers with it)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# --- the driver, in a child process (locust patches the standard library with gevent) ------------


def drive(spec_path: Path) -> None:
    """Run locust for the warm-up and the measured time; write every request's time to a file.
    (locust is imported here, untyped: it is a benchmark tool, not a dependency.)"""
    gevent: Any = importlib.import_module("gevent")
    locust: Any = importlib.import_module("locust")
    environment: Any = importlib.import_module("locust.env")

    spec = json.loads(spec_path.read_text())
    plan = spec["plan"]
    tokens: dict[str, list[str]] = plan["tokens"]
    lots: list[dict[str, str]] = plan["lots"]
    members: list[str] = plan["members"]
    samples: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, list[str]] = defaultdict(list)
    measuring = {"on": False}

    def record(request_type: str, name: str, response_time: float, exception: Any, **_: Any) -> None:
        if not measuring["on"]:
            return
        samples[name].append(response_time)
        if exception is not None:
            errors[name].append(f"{type(exception).__name__}: {str(exception)[:200]}")

    clients = iter(range(10**6))

    def bearer(user: Any, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[username][user.client_number]}"}

    def expect(user: Any, method: str, path: str, name: str, status: int, **kwargs: Any) -> None:
        # A connection per request: a kept-alive connection stays with the worker that accepted it,
        # and the kernel hands most of them to one worker (a load balancer would spread requests).
        kwargs["headers"] = {**kwargs.get("headers", {}), "Connection": "close"}
        with getattr(user.client, method)(path, name=name, catch_response=True, **kwargs) as response:
            if response.status_code != status:
                response.failure(f"{response.status_code}: {response.text[:200]}")

    def stock_event(user: Any) -> None:
        lot = user.rng.choice(lots)
        body = {
            "facility": lot["facility"],
            "product": lot["product"],
            "lot_number": lot["lot_number"],
            "kind": "issue",
            "quantity": 1,
        }
        headers = bearer(user, f"fp.{lot['member'].lower()}")
        expect(user, "post", "/api/v1/stock/events", "POST stock event", 201, json=body, headers=headers)

    def need(user: Any) -> None:
        body = {
            "jurisdiction": user.member,
            "product": user.rng.choice(plan["products"]),
            "quantity": user.rng.randrange(10, 5000),
            "urgency": user.rng.choice(["routine", "urgent"]),
            "needed_by": plan["needed_by"],
            "justification": "load test",
            "submit": True,
        }
        headers = bearer(user, f"fp.{user.member.lower()}")
        expect(user, "post", "/api/v1/needs", "POST need", 201, json=body, headers=headers)

    def board_region(user: Any) -> None:
        headers = bearer(user, "coordinator")
        expect(user, "get", "/api/v1/shortages?limit=200", "GET shortages (region)", 200, headers=headers)

    def board_member(user: Any) -> None:
        headers = bearer(user, f"fp.{user.rng.choice(members).lower()}")
        expect(user, "get", "/api/v1/shortages?limit=200", "GET shortages (member)", 200, headers=headers)

    def indicators(user: Any) -> None:
        headers = bearer(user, f"fp.{user.rng.choice(members).lower()}")
        path = "/api/v1/indicators?level=jurisdiction"
        expect(user, "get", path, "GET indicators (member)", 200, headers=headers)

    def overview(user: Any) -> None:
        headers = {"Cookie": user.cookies["coordinator"]}
        expect(user, "get", "/console", "GET /console (overview)", 200, headers=headers)

    def member_page(user: Any) -> None:
        headers = {"Cookie": user.cookies[f"fp.{user.member.lower()}"]}
        path = f"/console/members/{user.member}"
        expect(user, "get", path, "GET /console/members/<ISO3>", 200, headers=headers)

    def sign_in(user: Any) -> None:
        user.client_number = 0 if spec["shared_tokens"] else next(clients)
        user.rng = random.Random()
        user.member = user.rng.choice(members)
        user.cookies = {}
        for username in ("coordinator", f"fp.{user.member.lower()}"):
            response = user.client.post(
                "/api/v1/auth/login",
                json={"username": username, "password": plan["password"]},
                name="(sign-in)",
            )
            if response.status_code != 200:
                raise RuntimeError(f"sign-in as {username} failed: {response.status_code}")
            user.cookies[username] = str(response.headers.get("set-cookie", "")).split(";")[0]

    class Client(locust.FastHttpUser):  # type: ignore[misc]
        wait_time = locust.between(0, spec["wait"])
        tasks = {
            stock_event: WEIGHTS["POST stock event"],
            need: WEIGHTS["POST need"],
            board_region: WEIGHTS["GET shortages (region)"],
            board_member: WEIGHTS["GET shortages (member)"],
            indicators: WEIGHTS["GET indicators (member)"],
            overview: WEIGHTS["GET /console (overview)"],
        } | ({member_page: MEMBER_PAGE_WEIGHT} if spec["member_pages"] else {})

        def on_start(self) -> None:
            sign_in(self)

    env = environment.Environment(user_classes=[Client], host=spec["host"])
    env.events.request.add_listener(record)
    runner = env.create_local_runner()
    runner.start(spec["users"], spawn_rate=spec["users"])
    gevent.sleep(spec["warmup"])
    measuring["on"] = True
    started = time.perf_counter()
    gevent.sleep(spec["seconds"])
    measuring["on"] = False
    elapsed = time.perf_counter() - started
    runner.quit()
    Path(spec["out"]).write_text(
        json.dumps({"elapsed": elapsed, "samples": samples, "errors": errors}, separators=(",", ":"))
    )


# --- main ----------------------------------------------------------------------------------------


def report(result: dict[str, Any], args: argparse.Namespace) -> int:
    samples: dict[str, list[float]] = result["samples"]
    errors: dict[str, list[str]] = result["errors"]
    elapsed = result["elapsed"]
    total = sum(len(times) for times in samples.values())
    failed = sum(len(found) for found in errors.values())
    print(
        f"\n{total:,} requests in {elapsed:.1f} s measured: {total / elapsed:.1f} requests/s sustained "
        f"({args.users} users, think time 0-{args.wait:g} s, {args.workers} workers); errors: {failed}"
    )
    print(
        f"{'request':<30} {'count':>7} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7}"
    )
    for name in sorted(samples, key=lambda n: -len(samples[n])):
        times = np.asarray(samples[name])
        p50, p95, p99 = np.percentile(times, [50, 95, 99])
        print(
            f"{name:<30} {len(times):>7,} {len(times) / elapsed:>7.1f} {p50:>8.1f} {p95:>8.1f} {p99:>8.1f} "
            f"{len(errors.get(name, [])):>7}"
        )
    everything = np.concatenate([np.asarray(times) for times in samples.values()]) if total else np.zeros(1)
    p50, p95, p99 = np.percentile(everything, [50, 95, 99])
    print(f"{'all':<30} {total:>7,} {total / elapsed:>7.1f} {p50:>8.1f} {p95:>8.1f} {p99:>8.1f} {failed:>7}")
    for name, found in errors.items():
        for message in sorted(set(found))[:5]:
            print(f"  error in {name}: {message}")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=DEFAULT_URL, help="database URL (PostgreSQL)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--wait", type=float, default=0.5, help="longest think time between requests (s)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--member-pages", action="store_true", help="add GET /console/members/<ISO3>")
    parser.add_argument(
        "--shared-tokens", action="store_true", help="every simulated client uses the same token per user"
    )
    parser.add_argument("--drive", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive is not None:
        drive(args.drive)
        return
    print(f"load test: {args.url}; {machine()}; {date.today()}")
    folder = Path(tempfile.mkdtemp(prefix="hm-load-"))
    plan = prepare(args.url, args.seed, 1 if args.shared_tokens else args.users)
    server = None
    try:
        server = start_server(args.url, args.workers, args.port, folder / "server.log")
        spec = {
            "plan": plan,
            "host": f"http://127.0.0.1:{args.port}",
            "users": args.users,
            "wait": args.wait,
            "warmup": args.warmup,
            "seconds": args.seconds,
            "member_pages": args.member_pages,
            "shared_tokens": args.shared_tokens,
            "out": str(folder / "result.json"),
        }
        (folder / "spec.json").write_text(json.dumps(spec))
        print(
            f"  serving with {args.workers} workers; {args.users} users; "
            f"{args.warmup:g} s warm-up, then {args.seconds:g} s measured ..."
        )
        subprocess.run(
            [sys.executable, "-m", "bench.load", "--drive", str(folder / "spec.json")],
            check=True,
            timeout=args.warmup + args.seconds + 120,
        )
        status = report(json.loads((folder / "result.json").read_text()), args)
    finally:
        if server is not None:
            stop_server(server)
        cleanup(args.url)
    print(f"  server log: {folder / 'server.log'}")
    raise SystemExit(status)


if __name__ == "__main__":
    main()
