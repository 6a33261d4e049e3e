"""Twenty clients at once against a real server (`healthmesh serve`, two workers) on PostgreSQL.

The demo region's registry, with stock at the three DELSA reserve depots, a pledge from Thailand
and needs from three hospitals in each of seven members. A first allocation round is approved
and half its shipments are on the road; five plans under different policies then compete for
the same new lots and the same needs. Twenty clients, each with its own account, at the same
moment:

* three coordinators approve all five plans (each in its own order), run and approve new rounds
  as deliveries arrive, turn every approved plan into shipments and dispatch them, racing each
  other at every step;
* two coordinators race to dispatch the first round's waiting shipments;
* a coordinator records deliveries at the depots and issues stock from one, each request sent
  twice under its Idempotency-Key, the first answer lost (a dropped connection);
* focal points endorse their members' new needs, a second focal point of three members racing
  the first on each, then cancelling needs the competing plans want;
* every shipment is received where it arrives, a focal point and the hospital's manager racing
  for three of the hospitals, each receipt retried under its key after a lost answer;
* an auditor reads balances, the shortage board and plans, and signs checkpoints, throughout.

Afterwards, from the database and the public log: stock is conserved and every balance is the sum
of its events; no unit is promised twice and no need is allocated beyond its quantity; each
decision was made once; every request got an answer that is not a 5xx (409 is the answer to a
lost race); and the transparency log verifies and holds exactly one entry per committed decision.

SQLite admits one writer at a time (a writing transaction takes the lock at BEGIN), so these races
cannot happen there: the test runs on PostgreSQL only.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from healthmesh.accounts.access import Role
from healthmesh.db import make_engine
from tests import hardening_server as hs

pytestmark = pytest.mark.slow

WORKERS = 2
MEMBERS = ("PHL", "VNM", "LAO", "KHM", "IDN", "MMR", "TLS")
HOSPITALS_PER_MEMBER = 3
#: Products and their pack sizes: Ag-RDT kits, FFP2 respirators, 10 L oxygen concentrators.
PRODUCTS = {"DX-AGRDT-25": 25, "PPE-RESP-FFP2": 20, "OXY-CONC-10": 1}
DEPOTS = ("RRD-MYS-SUBANG", "RRD-THA-CHAINAT", "RRD-PHL-AGUINALDO")
PLEDGER = "THA-NW-0001"
PLEDGED = 400  # FFP2 respirators Thailand's central store offers to the pool
COMPETING_POLICIES = ("equity", "covax", "efficiency", "pro_rata", "fcfs")
NEW_ROUNDS = 2  # per coordinator, once the competing plans are decided
DELIVERIES = 3  # procurement deliveries at the depots during the run
#: Members with two focal points racing to endorse the same needs (then cancelling needs the
#: competing plans want), and whose first hospital's manager races the focal point to receive.
RACING_MEMBERS = ("PHL", "VNM", "LAO")
LOST_ANSWER = httpx.Timeout(30.0, read=0.05)  # the client stops waiting before the answer comes
PHASE_SECONDS = 150.0
ACCEPTABLE = {200, 201, 409}


@dataclass
class Call:
    client: str
    action: str
    target: str
    status: int | None  # None: no answer (the connection failed)
    detail: str = ""


@dataclass
class Journal:
    """Every answer every client got, in one thread-safe list."""

    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, call: Call) -> None:
        with self.lock:
            self.calls.append(call)

    def of(self, action: str) -> list[Call]:
        return [call for call in self.calls if call.action == action]


class Client:
    """One user's HTTP client; every answer goes to the journal."""

    def __init__(self, name: str, http: httpx.Client, journal: Journal) -> None:
        self.name, self.http, self.journal = name, http, journal

    def call(
        self,
        action: str,
        target: str,
        path: str,
        *,
        body: Any = None,
        key: str | None = None,
        lose_first: bool = False,
    ) -> httpx.Response | None:
        """POST; with `lose_first` the first attempt's answer is not waited for and the request is
        sent again under the same Idempotency-Key. A 409 saying the key is still being applied is
        retried, as the answer asks."""
        headers = {"Idempotency-Key": key} if key else {}
        if lose_first:
            try:
                first = self.http.post(path, json=body, headers=headers, timeout=LOST_ANSWER)
                self.journal.add(
                    Call(self.name, f"{action}:first", target, first.status_code, first.text[:300])
                )
            except httpx.ReadTimeout:
                self.journal.add(Call(self.name, f"{action}:lost", target, None, "answer not awaited"))
        for _ in range(100):
            try:
                response = self.http.post(path, json=body, headers=headers)
            except httpx.TransportError as exc:
                self.journal.add(Call(self.name, action, target, None, f"{type(exc).__name__}: {exc}"))
                return None
            if not (key and response.status_code == 409 and "retry shortly" in response.text):
                break
            time.sleep(0.05)
        self.journal.add(Call(self.name, action, target, response.status_code, response.text[:300]))
        return response

    def get(self, path: str, action: str = "read", **params: Any) -> Any:
        """GET, journalled: the body of a 200 (JSON when it is), else None."""
        try:
            response = self.http.get(path, params=params)
        except httpx.TransportError as exc:
            self.journal.add(Call(self.name, action, path, None, f"{type(exc).__name__}: {exc}"))
            return None
        self.journal.add(Call(self.name, action, path, response.status_code, response.text[:300]))
        if response.status_code != 200:
            return None
        return response.json() if "json" in response.headers.get("content-type", "") else response.text


@dataclass
class Setup:
    """What the setup made, by the ids the server gave."""

    day: date
    hospitals: dict[str, list[str]]  # member -> hospital codes
    round_one: int
    competing_plans: list[int]
    to_endorse: dict[str, list[int]]  # member -> needs submitted, not yet endorsed
    to_cancel: dict[str, list[int]]  # member -> open needs the competing plans allocate to
    waiting_shipments: list[int]  # round one's, not yet dispatched
    issue_lots: list[tuple[str, str, str]]  # (depot, product, lot) the stock client issues from


@dataclass
class Outcome:
    engine: Engine
    server: hs.Server
    journal: Journal
    setup: Setup

    def answered(self) -> list[Call]:
        """The answers the clients waited for (not the deliberately lost ones)."""
        return [call for call in self.journal.calls if not call.action.endswith(":lost")]


# --- setup ---------------------------------------------------------------------------------------


def _ok(response: httpx.Response) -> Any:
    assert response.status_code in (200, 201), (
        f"{response.request.url}: {response.status_code} {response.text}"
    )
    return response.json()


def _hospitals(engine: Engine) -> dict[str, list[str]]:
    """Each member's first hospitals, by code."""
    sql = (
        "SELECT f.code FROM facilities f JOIN jurisdictions j ON j.id = f.jurisdiction_id "
        "WHERE j.iso3 = :iso3 AND f.kind = 'hospital' ORDER BY f.code LIMIT :n"
    )
    return {m: [code for (code,) in hs.rows(engine, sql, iso3=m, n=HOSPITALS_PER_MEMBER)] for m in MEMBERS}


def _identities(hospitals: dict[str, list[str]]) -> list[hs.Identity]:
    """The twenty clients' accounts, and the two the setup uses (the demo's coordinator, fp.tha)."""
    out = [hs.Identity(f"coord.approve.{n}", Role.REGIONAL_COORDINATOR) for n in (1, 2, 3)]
    out += [hs.Identity(f"coord.dispatch.{n}", Role.REGIONAL_COORDINATOR) for n in (1, 2)]
    out += [hs.Identity("coord.stock", Role.REGIONAL_COORDINATOR), hs.Identity("auditor.watch", Role.AUDITOR)]
    out += [hs.Identity(f"fp.{m.lower()}", Role.NATIONAL_FOCAL_POINT, m) for m in MEMBERS]
    out += [hs.Identity(f"fp2.{m.lower()}", Role.NATIONAL_FOCAL_POINT, m) for m in RACING_MEMBERS]
    out += [_manager(hospitals, m) for m in RACING_MEMBERS]
    out += [hs.Identity("fp.tha", Role.NATIONAL_FOCAL_POINT, "THA")]
    return [*out, hs.Identity("coordinator", Role.REGIONAL_COORDINATOR)]


def _manager(hospitals: dict[str, list[str]], member: str) -> hs.Identity:
    hospital = hospitals[member][0]
    return hs.Identity(f"manager.{hospital.lower()}", Role.FACILITY_MANAGER, member, hospital)


def _delivery(day: date, batch: str, packs: int, lots_per_product: int = 2) -> list[dict[str, Any]]:
    """Procurement delivering lots of each product to each depot (one batch, all or nothing)."""
    events = []
    for d, depot in enumerate(DEPOTS):
        for product, pack in PRODUCTS.items():
            for n in range(1, lots_per_product + 1):
                events.append(
                    {
                        "facility": depot,
                        "product": product,
                        "lot_number": f"{product.split('-')[1]}-{batch}{d}{n}",
                        "expiry_date": (day + timedelta(days=240 + 60 * n + 10 * d)).isoformat(),
                        "kind": "receipt",
                        "quantity": pack * (packs + n + d),
                        "reason": "procurement delivery",
                        "reference": f"PO-2026-{batch}{d}{n}",
                    }
                )
    return events


def _raise_needs(
    apis: dict[str, httpx.Client], hospitals: dict[str, list[str]], day: date
) -> list[dict[str, Any]]:
    """A need per hospital and product, submitted by the member's focal point."""
    rng = random.Random(10)
    needs = []
    for member, codes in hospitals.items():
        for code in codes:
            for product, pack in PRODUCTS.items():
                body = {
                    "facility": code,
                    "product": product,
                    "quantity": pack * rng.randrange(8, 20),
                    "urgency": rng.choice(["routine", "urgent", "emergency"]),
                    "needed_by": (day + timedelta(days=rng.randrange(10, 40))).isoformat(),
                    "justification": "acute respiratory outbreak: admissions doubled in four weeks",
                    "population_served": rng.randrange(50_000, 900_000),
                    "submit": True,
                }
                needs.append(_ok(apis[f"fp.{member.lower()}"].post("/api/v1/needs", json=body)))
    return needs


def _pledge(fp_tha: httpx.Client, day: date) -> None:
    """Thailand's central store takes in respirators and offers part of them to the pool."""
    receipt = {
        "facility": PLEDGER,
        "product": "PPE-RESP-FFP2",
        "lot_number": "FFP2-TH-2026-07",
        "expiry_date": (day + timedelta(days=400)).isoformat(),
        "kind": "receipt",
        "quantity": 1200,
        "reason": "national procurement",
    }
    _ok(fp_tha.post("/api/v1/stock/events", json=receipt))
    pledge = {
        "facility": PLEDGER,
        "product": "PPE-RESP-FFP2",
        "quantity": PLEDGED,
        "valid_from": day.isoformat(),
        "valid_to": (day + timedelta(days=90)).isoformat(),
        "note": "surplus offered to the regional pool",
    }
    _ok(fp_tha.post("/api/v1/pledges", json=pledge))


def _set_up(server: hs.Server, tokens: dict[str, str], hospitals: dict[str, list[str]]) -> Setup:
    """Round one approved and half shipped; five competing plans proposed; needs in each state."""
    day = date.today()
    apis = {name: server.client(token) for name, token in tokens.items()}
    coordinator = apis["coordinator"]
    try:
        _ok(coordinator.post("/api/v1/stock/events/batch", json={"events": _delivery(day, "A", 6)}))
        _pledge(apis["fp.tha"], day)
        needs = _raise_needs(apis, hospitals, day)
        groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for index, need in enumerate(needs):
            groups[index % 3].append(need)
        for need in groups[0]:
            _ok(apis[f"fp.{need['jurisdiction'].lower()}"].post(f"/api/v1/needs/{need['id']}/endorse"))
        round_one = _ok(coordinator.post("/api/v1/allocation/plans", json={"policy": "equity"}))
        _ok(coordinator.post(f"/api/v1/allocation/plans/{round_one['id']}/approve"))
        shipments = _ok(coordinator.post(f"/api/v1/logistics/plans/{round_one['id']}/shipments", json={}))
        assert len(shipments) >= 10, "round one should ship from several depots to many hospitals"
        for shipment in shipments[::2]:
            for status in ("picked", "dispatched"):
                path = f"/api/v1/logistics/shipments/{shipment['id']}/moves"
                _ok(coordinator.post(path, json={"status": status}))
        new_stock = _delivery(day, "B", 6)
        _ok(coordinator.post("/api/v1/stock/events/batch", json={"events": new_stock}))
        for need in groups[1]:
            _ok(apis[f"fp.{need['jurisdiction'].lower()}"].post(f"/api/v1/needs/{need['id']}/endorse"))
        competing = [
            _ok(coordinator.post("/api/v1/allocation/plans", json={"policy": policy}))
            for policy in COMPETING_POLICIES
        ]
    finally:
        for api in apis.values():
            api.close()
    wanted = {line["need_id"] for plan in competing for line in plan["lines"]}
    to_cancel: dict[str, list[int]] = defaultdict(list)
    for need in groups[1]:
        if need["id"] in wanted and need["jurisdiction"] in RACING_MEMBERS:
            to_cancel[need["jurisdiction"]].append(need["id"])
    to_endorse: dict[str, list[int]] = defaultdict(list)
    for need in groups[2]:
        to_endorse[need["jurisdiction"]].append(need["id"])
    return Setup(
        day=day,
        hospitals=hospitals,
        round_one=round_one["id"],
        competing_plans=[plan["id"] for plan in competing],
        to_endorse=dict(to_endorse),
        to_cancel=dict(to_cancel),
        waiting_shipments=[s["id"] for s in shipments[1::2]],
        issue_lots=[
            (e["facility"], e["product"], e["lot_number"]) for e in new_stock if e["facility"] == DEPOTS[2]
        ],
    )


# --- the clients ---------------------------------------------------------------------------------

Job = Callable[[Client], None]


def _approver(setup: Setup, order: int) -> Job:
    """Approve every competing plan in its own order, run and approve new rounds, then ship every
    approved plan and dispatch its shipments."""

    def run(client: Client) -> None:
        plans = setup.competing_plans[order:] + setup.competing_plans[:order]
        for plan in plans:
            client.call("approve", f"plan {plan}", f"/api/v1/allocation/plans/{plan}/approve")
        for n in range(NEW_ROUNDS):
            policy = COMPETING_POLICIES[(order + n) % len(COMPETING_POLICIES)]
            made = client.call("run", policy, "/api/v1/allocation/plans", body={"policy": policy})
            if made is not None and made.status_code == 201:
                plan = made.json()["id"]
                client.call("approve", f"plan {plan}", f"/api/v1/allocation/plans/{plan}/approve")
        approved = client.get("/api/v1/allocation/plans", status="approved", limit=200) or []
        for plan in sorted(p["id"] for p in approved if p["id"] != setup.round_one):
            client.call("ship", f"plan {plan}", f"/api/v1/logistics/plans/{plan}/shipments", body={})
            page = client.get("/api/v1/logistics/shipments", plan_id=plan, limit=500) or {"items": []}
            _dispatch(client, [s["id"] for s in page["items"] if s["status"] in ("planned", "picked")])

    return run


def _dispatch(client: Client, shipments: list[int]) -> None:
    for shipment in shipments:
        for status in ("picked", "dispatched"):
            path = f"/api/v1/logistics/shipments/{shipment}/moves"
            client.call(status, f"shipment {shipment}", path, body={"status": status})


def _dispatcher(setup: Setup, reverse: bool) -> Job:
    def run(client: Client) -> None:
        _dispatch(client, setup.waiting_shipments[::-1] if reverse else setup.waiting_shipments)

    return run


def _stock_keeper(setup: Setup) -> Job:
    """Record deliveries at the depots, then issue a pack at a time from Camp Aguinaldo for a
    local emergency; every request is sent twice under its key, the first answer lost."""

    def run(client: Client) -> None:
        for n in range(DELIVERIES):
            body = {"events": _delivery(setup.day, f"C{n}", 3, lots_per_product=1)}
            path = "/api/v1/stock/events/batch"
            client.call("deliver", f"delivery {n}", path, body=body, key=f"po-C{n}", lose_first=True)
        for n, (depot, product, lot) in enumerate(setup.issue_lots):
            body = {
                "facility": depot,
                "product": product,
                "lot_number": lot,
                "kind": "issue",
                "quantity": PRODUCTS[product],
                "reason": "Manila flood response",
                "reference": f"DELSA-REQ-{n}",
            }
            client.call("issue", lot, "/api/v1/stock/events", body=body, key=f"issue-{n}", lose_first=True)

    return run


def _watcher(senders: threading.Event) -> Job:
    """Read what a coordinator's screens read, and sign checkpoints, while everyone writes."""

    def run(client: Client) -> None:
        while not senders.is_set():
            client.get("/api/v1/stock/balances", limit=200)
            client.get("/api/v1/shortages")
            client.get("/api/v1/allocation/plans")
            client.get("/api/v1/logistics/shipments/map")
            client.get("/api/v1/ledger/checkpoint", action="checkpoint")

    return run


def _endorser(needs: list[int], then: Job) -> Job:
    def run(client: Client) -> None:
        for need in needs:
            client.call("endorse", f"need {need}", f"/api/v1/needs/{need}/endorse")
        then(client)

    return run


def _canceller(needs: list[int]) -> Job:
    def run(client: Client) -> None:
        for need in needs:
            client.call("cancel", f"need {need}", f"/api/v1/needs/{need}/cancel")

    return run


def _receipt(shipment: dict[str, Any], receiver: str) -> dict[str, Any]:
    """Everything accepted, except one damaged pack on every third shipment's first line."""
    lines = []
    for index, line in enumerate(shipment["lines"]):
        pack = PRODUCTS[line["product"]]
        if index == 0 and shipment["id"] % 3 == 0 and line["quantity"] > pack:
            rejected = [{"reason": "damaged", "quantity": pack}]
            lines.append({"line_id": line["id"], "accepted": line["quantity"] - pack, "rejected": rejected})
        else:
            lines.append({"line_id": line["id"], "accepted": line["quantity"]})
    return {"lines": lines, "receiver": receiver, "place": "pharmacy store", "note": "counted on arrival"}


def _receiver(senders: threading.Event, ours: Callable[[dict[str, Any]], bool]) -> Job:
    """Receive every shipment on the road to the client's member or hospital (`ours`) until the
    senders are done and nothing is left; each receipt sent twice under its key, the first answer
    lost."""

    def run(client: Client) -> None:
        tried: set[int] = set()
        deadline = time.monotonic() + PHASE_SECONDS
        while time.monotonic() < deadline:
            done = senders.is_set()
            page = client.get("/api/v1/logistics/shipments", status="dispatched", limit=500) or {"items": []}
            todo = [s for s in page["items"] if s["id"] not in tried and ours(s)]
            for summary in todo:
                tried.add(summary["id"])
                shipment = client.get(f"/api/v1/logistics/shipments/{summary['id']}")
                if shipment is None or shipment["status"] != "dispatched":
                    continue
                body = _receipt(shipment, f"Pharmacy store ({client.name})")
                path = f"/api/v1/logistics/shipments/{summary['id']}/receipt"
                key = f"{client.name}:{summary['code']}"
                client.call("receive", summary["code"], path, body=body, key=key, lose_first=True)
            if done and not todo:
                return
            if not todo:
                time.sleep(0.2)

    return run


def _jobs(setup: Setup, senders: threading.Event) -> dict[str, Job]:
    jobs = {f"coord.approve.{n + 1}": _approver(setup, n) for n in range(3)}
    jobs["coord.dispatch.1"] = _dispatcher(setup, reverse=False)
    jobs["coord.dispatch.2"] = _dispatcher(setup, reverse=True)
    jobs["coord.stock"] = _stock_keeper(setup)
    jobs["auditor.watch"] = _watcher(senders)
    for member in MEMBERS:
        arriving = _receiver(senders, lambda s, member=member: s["destination_member"] == member)
        jobs[f"fp.{member.lower()}"] = _endorser(setup.to_endorse.get(member, []), then=arriving)
    for member in RACING_MEMBERS:  # the same needs in the same order: the two race on each
        cancel = _canceller(setup.to_cancel.get(member, []))
        jobs[f"fp2.{member.lower()}"] = _endorser(setup.to_endorse.get(member, []), then=cancel)
        hospital = setup.hospitals[member][0]
        jobs[f"manager.{hospital.lower()}"] = _receiver(senders, lambda s, h=hospital: s["destination"] == h)
    return jobs


def _run_clients(server: hs.Server, tokens: dict[str, str], setup: Setup) -> Journal:
    """All twenty from one barrier; the receivers and the watcher stop once the senders are done."""
    journal = Journal()
    senders = threading.Event()
    jobs = _jobs(setup, senders)
    assert len(jobs) == 20
    barrier = threading.Barrier(len(jobs), timeout=60)
    failures: list[str] = []

    def work(name: str) -> None:
        with server.client(tokens[name]) as http:
            try:
                barrier.wait()
                jobs[name](Client(name, http, journal))
            except Exception as exc:  # reported after the join, with the client's name
                failures.append(f"{name}: {exc!r}")

    threads = {name: threading.Thread(target=work, args=(name,), name=name) for name in jobs}
    for thread in threads.values():
        thread.start()
    for name, thread in threads.items():
        if name.startswith("coord."):
            thread.join(PHASE_SECONDS)
    senders.set()
    for thread in threads.values():
        thread.join(PHASE_SECONDS)
    assert not [name for name, thread in threads.items() if thread.is_alive()], "a client never finished"
    assert not failures, failures
    return journal


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(
            "sqlite",
            marks=pytest.mark.skip(
                reason="SQLite admits one writer at a time (BEGIN IMMEDIATE): these races need PostgreSQL"
            ),
        ),
        "postgresql",
    ],
)
def outcome(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    """The whole run, once per module: setup, the twenty clients, and the server left up to be read."""
    data_dir: Path = tmp_path_factory.mktemp("concurrency")
    with hs.fresh_database(request.param, data_dir) as url:
        hs.seed_region(url)
        engine = make_engine(url)
        try:
            hospitals = _hospitals(engine)
            tokens = hs.issue_tokens(engine, _identities(hospitals))
            with hs.running(hs.Server(url, data_dir, workers=WORKERS)) as server:
                setup = _set_up(server, tokens, hospitals)
                yield Outcome(engine, server, _run_clients(server, tokens, setup), setup)
        finally:
            engine.dispose()


# --- the checks ----------------------------------------------------------------------------------


def _listing(calls: list[Call]) -> str:
    return "\n".join(f"{c.client} {c.action} {c.target}: {c.status} {c.detail}" for c in calls[:15])


def test_every_request_got_an_answer_and_none_was_a_server_error(outcome: Outcome) -> None:
    calls = outcome.answered()
    unanswered = [c for c in calls if c.status is None]
    assert not unanswered, _listing(unanswered)
    # A stock issue the depot no longer has (an approval reserved it first) is refused: 422,
    # naming the lot and what is available.
    refused_issue = [c for c in calls if c.action.startswith("issue") and c.status == 422]
    assert all("available" in c.detail for c in refused_issue), _listing(refused_issue)
    unexpected = [c for c in calls if c.status not in ACCEPTABLE and c not in refused_issue]
    assert not unexpected, _listing(unexpected)
    assert outcome.server.tracebacks() == []
    assert len(calls) > 400, "the clients should have made hundreds of requests"


def test_every_race_had_one_winner(outcome: Outcome) -> None:
    """Each plan approved, each need endorsed, each shipment dispatched and received once; the
    losers got 409 (and a receipt retried under its own key got the first answer again)."""
    journal = outcome.journal
    for action in ("approve", "endorse", "dispatched", "receive"):
        winners = Counter(c.target for c in journal.of(action) if c.status == 200)
        assert winners, f"no {action} succeeded"
        assert [t for t, n in winners.items() if n > 1] == [], f"{action}: won more than once"
    competing = {f"plan {plan}" for plan in outcome.setup.competing_plans}
    approvals = [c for c in journal.of("approve") if c.target in competing]
    assert len(approvals) == 3 * len(competing)
    assert sum(c.status == 409 for c in approvals) >= 2 * len(competing)
    receipts = {c.target for c in journal.of("receive") if c.status == 200}
    received = hs.scalar(outcome.engine, "SELECT COUNT(*) FROM shipments WHERE status = 'received'")
    assert len(receipts) == received


def test_every_shipment_reached_its_end(outcome: Outcome) -> None:
    """Every shipment of an approved plan was dispatched and received by someone: no request that
    mattered was lost between the racing clients."""
    statuses = hs.rows(outcome.engine, "SELECT status, COUNT(*) FROM shipments GROUP BY status")
    assert dict(statuses).keys() == {"received"}


def test_stock_is_conserved_and_every_balance_is_the_sum_of_its_events(outcome: Outcome) -> None:
    assert hs.stock_problems(outcome.engine) == []
    kinds = hs.totals_by_kind(outcome.engine)
    assert kinds["transfer_in"] > 0, "no shipment was received"
    assert kinds["reservation"] >= kinds["transfer_out"] > 0


def test_no_unit_is_promised_twice(outcome: Outcome) -> None:
    """Reservations match approved plans (in `stock_problems`); needs match what plans gave them;
    the pledge shrank by exactly what approved plans took from it."""
    engine = outcome.engine
    assert hs.need_problems(engine) == []
    taken = hs.scalar(
        engine,
        "SELECT COALESCE(SUM(a.quantity), 0) FROM allocation_lines a "
        "JOIN allocation_plans p ON p.id = a.plan_id AND p.status = 'approved' WHERE a.origin = 'pledge'",
    )
    left = hs.scalar(engine, "SELECT COALESCE(SUM(quantity), 0) FROM pledges WHERE status = 'active'")
    assert left == PLEDGED - taken


def test_each_decision_was_recorded_once(outcome: Outcome) -> None:
    engine = outcome.engine
    endorsed = hs.rows(
        engine,
        "SELECT need_id, COUNT(*) FROM need_transitions WHERE to_status = 'endorsed' "
        "GROUP BY need_id HAVING COUNT(*) > 1",
    )
    assert endorsed == [], "needs endorsed twice (need, endorsements)"
    moved = hs.rows(
        engine,
        "SELECT reference, kind, COUNT(DISTINCT batch_id) FROM stock_events "
        "WHERE kind IN ('transfer_out', 'transfer_in') GROUP BY reference, kind "
        "HAVING COUNT(DISTINCT batch_id) > 1",
    )
    assert moved == [], "shipments dispatched or received twice"
    keyed = [f"po-C{n}" for n in range(DELIVERIES)] + [
        f"issue-{n}" for n in range(len(outcome.setup.issue_lots))
    ]
    batches = Counter(
        key for (key,) in hs.rows(engine, "SELECT idempotency_key FROM ingest_batches") if key in keyed
    )
    refused = sum(1 for c in outcome.journal.of("issue") if c.status == 422)
    assert sum(batches.values()) == len(keyed) - refused
    assert max(batches.values()) == 1


def test_the_transparency_log_verifies_and_holds_one_entry_per_decision(outcome: Outcome) -> None:
    assert hs.log_problems(outcome.server.url, outcome.engine) == []
