"""The `healthmesh` command line (Typer). Each command is one unit of work: it commits once at
the end or changes nothing."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from healthmesh import migrate
from healthmesh.accounts.access import Principal, Role
from healthmesh.config import Settings, load_settings
from healthmesh.db import make_engine, make_sessionmaker, unit_of_work
from healthmesh.errors import DomainError

if TYPE_CHECKING:
    import httpx

    from healthmesh.ledger.bundle import Bundle, Failure

app = typer.Typer(help="HealthMesh: cross-border medical resource integration.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
users_app = typer.Typer(help="User accounts.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
stock_app = typer.Typer(help="Stock events and snapshots.", no_args_is_help=True)
app.add_typer(stock_app, name="stock")
needs_app = typer.Typer(help="Needs (requests for supplies).", no_args_is_help=True)
app.add_typer(needs_app, name="needs")
allocate_app = typer.Typer(
    help="Allocation rounds: snapshot the round, run the engine on it.", no_args_is_help=True
)
app.add_typer(allocate_app, name="allocate")
ledger_app = typer.Typer(
    help="The transparency log: keys, witnesses, export and offline verification.", no_args_is_help=True
)
app.add_typer(ledger_app, name="ledger")
witness_app = typer.Typer(
    help="Run a member's witness, which cosigns the log's checkpoints.", no_args_is_help=True
)
app.add_typer(witness_app, name="witness")

console = Console()
err = Console(stderr=True)

#: The operator at the command line has the database in hand; imports run with full rights
#: unless `--as USER` narrows them to that user's role and scope.
OPERATOR = Principal(user_id=0, username="operator", role=Role.ADMIN)


def _settings() -> Settings:
    settings = load_settings()
    settings.ensure_data_dir()
    return settings


def _fail(exc: DomainError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc}")
    return typer.Exit(code=1)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision")] = "head") -> None:
    """Create or migrate the schema to the latest revision."""
    settings = _settings()
    migrate.upgrade(settings.effective_database_url, revision)
    console.print(f"database at {revision}: {settings.effective_database_url.split('@')[-1]}")


@users_app.command("create")
def users_create(
    username: str,
    role: Annotated[Role, typer.Option(help="Role of the account")],
    jurisdiction: Annotated[str | None, typer.Option(help="ISO3 of the member (national roles)")] = None,
    facility: Annotated[str | None, typer.Option(help="Facility code (facility roles)")] = None,
    full_name: Annotated[str, typer.Option()] = "",
    email: Annotated[str, typer.Option()] = "",
    password: Annotated[
        str,
        typer.Option(
            prompt=True, hide_input=True, confirmation_prompt=True, envvar="HEALTHMESH_NEW_PASSWORD"
        ),
    ] = "",
) -> None:
    """Create a user account (the first administrator is made this way)."""
    from pydantic import SecretStr, ValidationError

    from healthmesh.accounts import service
    from healthmesh.accounts.schemas import UserCreate

    settings = _settings()
    try:
        data = UserCreate(
            username=username,
            password=SecretStr(password),
            role=role,
            jurisdiction=jurisdiction,
            facility=facility,
            full_name=full_name,
            email=email,
        )
    except ValidationError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=1) from None
    factory = make_sessionmaker(make_engine(settings.effective_database_url))
    try:
        with unit_of_work(factory) as db:
            user = service.create_user(db, None, data)
            console.print(f"created {user.username} ({user.role.value})")
    except DomainError as exc:
        raise _fail(exc) from None


@app.command("import")
def import_(
    kind: Annotated[
        str, typer.Argument(help="jurisdictions, facilities, products, authorisations or recognitions")
    ],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    as_user: Annotated[str | None, typer.Option("--as", help="Apply this user's role and scope")] = None,
) -> None:
    """Import a CSV list; the whole file is checked first and any bad line changes nothing."""
    from healthmesh.registry import transfer

    settings = _settings()
    factory = make_sessionmaker(make_engine(settings.effective_database_url))
    try:
        csv_kind = transfer.get_kind(kind)
        text = file.read_text(encoding="utf-8-sig")
        total = max(text.count("\n") - 1, 0)
        with unit_of_work(factory) as db:
            actor = _actor(db, as_user)
            with _progress() as progress:
                task = progress.add_task(f"importing {kind}", total=total)
                report = transfer.import_csv(
                    db, actor, csv_kind, text, progress=lambda done: progress.update(task, completed=done)
                )
    except DomainError as exc:
        raise _fail(exc) from None
    console.print(f"{report.kind}: {report.created} created, {report.updated} updated")


@app.command("export")
def export(
    kind: Annotated[
        str, typer.Argument(help="jurisdictions, facilities, products, authorisations or recognitions")
    ],
    out: Annotated[Path | None, typer.Option(help="File to write; standard output if omitted")] = None,
) -> None:
    """Export a registry list as CSV (the same columns the import takes)."""
    from healthmesh.registry import transfer

    settings = _settings()
    factory = make_sessionmaker(make_engine(settings.effective_database_url))
    try:
        with unit_of_work(factory) as db:
            text = transfer.export_csv(db, transfer.get_kind(kind))
    except DomainError as exc:
        raise _fail(exc) from None
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}")


def _actor(db: Session, as_user: str | None) -> Principal:
    from healthmesh.accounts.models import User

    if as_user is None:
        return OPERATOR
    user = db.scalar(select(User).where(User.username == as_user))
    if user is None:
        raise typer.BadParameter(f"no user {as_user!r}", param_hint="--as")
    return user.principal()


@stock_app.command("import")
def stock_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    as_user: Annotated[str | None, typer.Option("--as", help="Apply this user's role and scope")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Defaults to the file's digest")] = None,
) -> None:
    """Import stock events from CSV; checked whole, any bad line changes nothing, never counted twice."""
    from healthmesh.supply import transfer as stock_transfer

    settings = _settings()
    factory = make_sessionmaker(make_engine(settings.effective_database_url))
    text = file.read_text(encoding="utf-8-sig")
    try:
        with unit_of_work(factory) as db, _progress() as progress:
            task = progress.add_task("recording stock events", total=max(text.count("\n") - 1, 1))
            result = stock_transfer.import_events(
                db,
                _actor(db, as_user),
                text,
                idempotency_key=idempotency_key,
                progress=lambda done: progress.update(task, completed=done),
            )
    except DomainError as exc:
        raise _fail(exc) from None
    if result.replayed:
        console.print(
            f"already imported as batch {result.batch_id} ({result.events} events); nothing changed"
        )
    else:
        console.print(f"recorded {result.events} events as batch {result.batch_id}")


@stock_app.command("snapshot")
def stock_snapshot(
    day: Annotated[str | None, typer.Option(help="YYYY-MM-DD; default today (UTC)")] = None,
    days: Annotated[int, typer.Option(help="Also take the N-1 days before it (backfill)")] = 1,
) -> None:
    """Take the daily snapshot(s) of every facility x product for trend charts (re-taking replaces)."""
    from datetime import date, timedelta

    from healthmesh.supply import snapshots

    last = date.fromisoformat(day) if day else date.today()
    settings = _settings()
    factory = make_sessionmaker(make_engine(settings.effective_database_url))
    with unit_of_work(factory) as db, _progress() as progress:
        task = progress.add_task("taking snapshots", total=days)
        rows = 0
        for offset in range(days - 1, -1, -1):
            rows += snapshots.take_snapshot(db, last - timedelta(days=offset))
            progress.advance(task)
    console.print(f"{days} day(s) up to {last.isoformat()}: {rows} snapshot rows")


@needs_app.command("import")
def needs_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    as_user: Annotated[str | None, typer.Option("--as", help="Apply this user's role and scope")] = None,
) -> None:
    """Import needs from CSV; any bad line changes nothing."""
    from healthmesh.needs import transfer as needs_transfer

    settings = _settings()
    factory = make_sessionmaker(make_engine(settings.effective_database_url))
    try:
        with unit_of_work(factory) as db:
            created = needs_transfer.import_needs(
                db, _actor(db, as_user), file.read_text(encoding="utf-8-sig")
            )
    except DomainError as exc:
        raise _fail(exc) from None
    console.print(f"created {created} needs")


@allocate_app.command("snapshot")
def allocate_snapshot(
    out: Annotated[Path, typer.Option(help="Where to write the snapshot JSON")],
    day: Annotated[str | None, typer.Option(help="The round's date, YYYY-MM-DD (default today)")] = None,
) -> None:
    """Write the current round's input (shareable lots, open needs, eligibility) as JSON."""
    from datetime import date

    from healthmesh.allocation import builder

    settings = _settings()
    factory = make_sessionmaker(make_engine(settings.effective_database_url))
    with unit_of_work(factory) as db:
        snapshot = builder.build_snapshot(db, date.fromisoformat(day) if day else date.today())
    out.write_text(json.dumps(snapshot.model_dump(mode="json", by_alias=True), indent=1, sort_keys=True))
    console.print(
        f"wrote {out}: {len(snapshot.lots)} lots, {len(snapshot.needs)} needs, digest {snapshot.digest()}"
    )


@allocate_app.command("run")
def allocate_run(
    snapshot: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="A snapshot written by `snapshot`")
    ],
    policy: Annotated[
        str, typer.Option(help="equity, covax, efficiency, emergency, pro_rata, population, fcfs")
    ] = "equity",
    output: Annotated[str, typer.Option("--format", help="json or table")] = "table",
) -> None:
    """Run the engine on a snapshot file (no database needed) and print the plan and fairness report."""
    from pydantic import ValidationError

    from healthmesh.allocation import service
    from healthmesh.allocation.snapshot import parse

    try:
        parsed = parse(snapshot.read_text())
        round_ = parsed.to_round()
        plan, used = service.run_policy(round_, policy)
    except ValidationError as exc:
        err.print(f"[red]error:[/red] {snapshot} is not a valid snapshot: {exc}")
        raise typer.Exit(code=1) from None
    except DomainError as exc:
        raise _fail(exc) from None
    result = service.plan_json(round_, plan, used)
    result["snapshot_digest"] = parsed.digest()
    if output == "json":
        typer.echo(json.dumps(result, indent=1, default=str))
        return
    fair = result["fairness"]
    table = Table(title=f"{policy} on {parsed.day} ({len(plan.lines)} lines)")
    for column in ("member", "fill rate"):
        table.add_column(column)
    for member, rate in fair["fill_rate_by_member"].items():
        table.add_row(member, f"{rate:.0%}")
    console.print(table)
    console.print(
        f"min fill {fair['min_fill_rate']:.0%}, Gini {fair['gini_of_member_fill_rates']:.3f}, weighted unmet "
        f"{fair['weighted_unmet_need']:,.0f}, expiring unused {fair['units_expiring_unused']:,}, "
        f"distance {fair['total_distance_km']:,.0f} km"
    )


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
) -> None:
    """Serve the API and the console (migrating the schema first)."""
    import uvicorn

    settings = _settings()
    migrate.upgrade(settings.effective_database_url)
    uvicorn.run("healthmesh.web.asgi:app", host=host, port=port, workers=workers, log_level="info")


DEMO_SCALES = ("asean", "continent")


@app.command("demo")
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the generated demo region")] = 2026,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve once seeded")] = True,
    history: Annotated[
        bool, typer.Option("--history/--no-history", help="Add 12 weeks of stock, the outbreak and needs")
    ] = True,
    scale: Annotated[
        str,
        typer.Option(
            help="asean: the demo region; continent: the 55 African Union members at load-test size "
            "(20,000 facilities, 2,000,000 lots, a year of consumption, 100,000 needs), PostgreSQL only"
        ),
    ] = "asean",
    scale_factor: Annotated[
        float,
        typer.Option(help="With --scale continent: multiply the facility, lot, event and need counts"),
    ] = 1.0,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Create and seed the demo region (if the database is empty), print the logins, and serve.
    With `--scale continent`, load the continent-scale data set into an empty PostgreSQL database."""
    from datetime import date

    from healthmesh.demo import seed as demo_seed
    from healthmesh.demo.logistics_seed import seed_logistics
    from healthmesh.demo.supply_seed import seed_supply
    from healthmesh.demo.trends import seed_trends

    if scale not in DEMO_SCALES:
        raise typer.BadParameter(f"{scale!r}: choose asean or continent", param_hint="--scale")
    settings = _settings()
    if scale == "continent":
        _seed_continent(settings.effective_database_url, seed, scale_factor)
        factory = make_sessionmaker(make_engine(settings.effective_database_url))
    else:
        migrate.upgrade(settings.effective_database_url)
        factory = make_sessionmaker(make_engine(settings.effective_database_url))
        if demo_seed.is_seeded(factory):
            console.print("demo region already present; not seeding again")
        else:
            with unit_of_work(factory) as db, _progress() as progress:
                summary = demo_seed.seed_demo(db, seed=seed, progress=progress)
                supply = (
                    seed_supply(db, seed=seed, today=date.today(), progress=progress.console.log)
                    if history
                    else None
                )
                if history:
                    seed_logistics(db, seed=seed, today=date.today(), progress=progress.console.log)
                    weeks = seed_trends(db, date.today())
                    progress.console.log(f"took {weeks} weekly snapshots for the trend charts")
            console.print(
                f"seeded {summary.jurisdictions} members, {summary.facilities} facilities, "
                f"{summary.products} products, {summary.authorisations} authorisations"
            )
            if supply is not None:
                console.print(
                    f"and 12 weeks of stock: {supply.events:,} events, {supply.outstanding_needs:,} "
                    f"outstanding needs, an outbreak in {', '.join(supply.outbreak_members)}"
                )
    table = Table(title=f"Demo logins (password for all: {demo_seed.DEMO_PASSWORD})")
    for column in ("username", "role", "scope"):
        table.add_column(column)
    for username, role, scope in demo_seed.demo_logins(factory):
        table.add_row(username, role, scope)
    console.print(table)
    if serve_after:
        console.print(
            f"serving on http://{host}:{port}  (operations console: http://{host}:{port}/console, "
            f"API explorer: http://{host}:{port}/docs)"
        )
        serve(host=host, port=port, workers=1)


def _seed_continent(url: str, seed: int, scale_factor: float) -> None:
    """`demo --scale continent`: PostgreSQL only, migrated, empty; a progress bar per stage, then
    each stage's rows and seconds, the counts and the balance check."""
    from datetime import date

    from rich.progress import TaskID
    from sqlalchemy.engine import make_url

    from healthmesh.demo import continent

    if make_url(url).get_backend_name() != "postgresql":
        err.print(f"[red]error:[/red] {continent.NOT_POSTGRES}")
        raise typer.Exit(code=1)
    migrate.upgrade(url)
    tasks: dict[str, TaskID] = {}
    with _progress() as progress:

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        try:
            summary = continent.seed_continent(
                url, seed=seed, scale=scale_factor, today=date.today(), progress=report
            )
        except (continent.ContinentError, ValueError) as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(code=1) from None
    table = Table("stage", "rows", "seconds", title=f"Continent demo, scale {scale_factor:g}, seed {seed}")
    for name, rows, seconds in continent.stage_rows(summary):
        table.add_row(name, rows, seconds)
    table.add_row("total", "", f"{summary.seconds:.1f}")
    console.print(table)
    console.print(
        f"seeded {summary.members} members, {summary.facilities:,} facilities, {summary.products} products, "
        f"{summary.authorisations:,} authorisations, {summary.users} users; {summary.lots:,} lots, "
        f"{summary.events:,} stock events ({summary.issues:,} daily issues at "
        f"{summary.plan.sample_facilities} facilities), {summary.stock_balances:,} stock balances, "
        f"{summary.needs:,} outstanding needs; database {summary.database_bytes / 2**20:,.0f} MiB",
        soft_wrap=True,
    )
    console.print(
        "checked in SQL: every lot balance equals the sum of its events, every facility x product "
        "balance the sum of its lots, and no running balance goes negative"
    )


# --- transparency log ---------------------------------------------------------------------------

EXPORT_PAGE = 1000
LEDGER_API = "/api/v1/ledger"
#: `ledger verify` exit codes: all good, a failed check, an input that is not a bundle at all.
VERIFY_OK, VERIFY_FAILED, VERIFY_UNREADABLE = 0, 1, 2


def export_bundle(
    db: Session, settings: Settings, progress: Callable[[int, int], None] | None = None
) -> Bundle:
    """The whole log as stored: entries with the tree's own leaf hashes (level 0 of `log_nodes`,
    what the proofs are made of), every checkpoint with its cosignatures, and the keys. Nothing
    is checked here: a tampered row must reach the bundle as it is, for `verify` to name it."""
    from sqlalchemy import and_

    from healthmesh.ledger import bundle, service
    from healthmesh.ledger.models import LogCheckpoint, LogEntry, LogNode

    keys = service.public_keys(settings, db)
    total = service.size(db)
    entries: list[bundle.Entry] = []
    for start in range(0, total, EXPORT_PAGE):
        stmt = (
            select(LogEntry.index, LogEntry.kind, LogEntry.body, LogNode.hash)
            .outerjoin(LogNode, and_(LogNode.level == 0, LogNode.index == LogEntry.index))
            .where(LogEntry.index >= start, LogEntry.index < min(start + EXPORT_PAGE, total))
            .order_by(LogEntry.index)
        )
        for index, kind, body, leaf in db.execute(stmt):
            entries.append(bundle.entry(index, kind, body, bytes(leaf or b"")))
        if progress is not None:
            progress(min(start + EXPORT_PAGE, total), total)
    checkpoints = [
        bundle.checkpoint(row.size, bytes(row.root_hash), service.cosigned_note(db, row))
        for row in db.scalars(select(LogCheckpoint).order_by(LogCheckpoint.size))
    ]
    return bundle.Bundle(
        origin=keys["origin"],
        log_key=keys["log"],
        witness_keys=tuple(keys["witnesses"]),
        entries=tuple(entries),
        checkpoints=tuple(checkpoints),
    )


def fetch_bundle(
    http: httpx.Client, sizes: Sequence[int] = (), progress: Callable[[int, int], None] | None = None
) -> Bundle:
    """A bundle from a server's public API: its keys, its latest checkpoint (signing the head),
    the latest cosigned one, any `sizes` asked for, and every entry up to the largest."""
    from healthmesh.ledger import bundle

    keys = _get(http, f"{LEDGER_API}/keys").json()
    notes_by_size: dict[int, str] = {}
    _add_note(notes_by_size, _get(http, f"{LEDGER_API}/checkpoint").text)
    cosigned = http.get(f"{LEDGER_API}/checkpoint", params={"cosigned": "true"})
    if cosigned.status_code == 200:
        _add_note(notes_by_size, cosigned.text)
    for size in sizes:
        _add_note(notes_by_size, _get(http, f"{LEDGER_API}/checkpoints/{size}").text)
    total = max(notes_by_size)
    entries: list[object] = []
    while len(entries) < total:
        page = _get(
            http,
            f"{LEDGER_API}/entries",
            params={"start": len(entries), "end": min(len(entries) + 1000, total)},
        ).json()
        if not isinstance(page, list) or not page:
            break  # the server has fewer entries than it signed: `verify` will say so
        entries.extend(page)
        if progress is not None:
            progress(len(entries), total)
    return bundle.from_json(
        {
            "schema": bundle.SCHEMA,
            "origin": keys.get("origin") if isinstance(keys, dict) else None,
            "log_key": keys.get("log") if isinstance(keys, dict) else None,
            "witness_keys": keys.get("witnesses") if isinstance(keys, dict) else None,
            "entries": entries,
            "checkpoints": [
                {"size": size, "root_hash": _signed_root(note).hex(), "note": note}
                for size, note in sorted(notes_by_size.items())
            ],
        }
    )


def _get(http: httpx.Client, path: str, params: dict[str, int] | None = None) -> httpx.Response:
    from healthmesh.ledger.bundle import BundleError

    response = http.get(path, params=params)
    if response.status_code != 200:
        raise BundleError(f"GET {path} answered {response.status_code}: {response.text.strip()[:200]}")
    return response


def _add_note(notes_by_size: dict[int, str], note: str) -> None:
    from healthmesh.ledger import notes
    from healthmesh.ledger.bundle import BundleError

    try:
        size = notes.parse_checkpoint(notes.parse_note(note).body).size
    except notes.NoteError as exc:
        raise BundleError(f"the server's checkpoint is unreadable: {exc}") from None
    notes_by_size[size] = note


def _signed_root(note: str) -> bytes:
    """The API serves no stored root apart from the note's: the note's stands for it."""
    from healthmesh.ledger import notes

    return notes.parse_checkpoint(notes.parse_note(note).body).root_hash


def _http_client(base_url: str) -> AbstractContextManager[httpx.Client]:
    """A client for the server at `base_url` (its root, or its `/api/v1/ledger`)."""
    import httpx

    root = base_url.rstrip("/").removesuffix(LEDGER_API)
    return httpx.Client(base_url=root, timeout=60.0, follow_redirects=True)


def _read_source(source: str, sizes: Sequence[int], save: Path | None) -> Bundle:
    """The bundle in a file or behind a URL; BundleError (or an I/O error) when unreadable."""
    import httpx

    from healthmesh.ledger import bundle

    if not source.startswith(("http://", "https://")):
        return bundle.loads(Path(source).read_bytes())
    try:
        with _http_client(source) as http, _progress() as progress:
            task = progress.add_task("fetching entries", total=None)
            data = fetch_bundle(
                http, sizes, lambda done, total: progress.update(task, completed=done, total=total)
            )
    except (httpx.HTTPError, ValueError) as exc:  # unreachable, or not JSON where JSON was due
        if isinstance(exc, bundle.BundleError):
            raise
        raise bundle.BundleError(f"cannot read the log at {source}: {exc}") from None
    if save is not None:
        save.write_text(bundle.dumps(data), encoding="utf-8")
    return data


def _failure_table(failures: Sequence[Failure]) -> Table:
    from rich.text import Text

    table = Table(title=f"{len(failures)} failed check(s)", title_justify="left")
    table.add_column("check", no_wrap=True, style="red")
    table.add_column("where", no_wrap=True)
    table.add_column("detail")
    for failure in failures:  # Text, not markup: a tampered body may contain brackets
        table.add_row(Text(failure.check), Text(failure.where), Text(failure.detail))
    return table


@ledger_app.command("export")
def ledger_export(out: Annotated[Path, typer.Option(help="The bundle file to write (JSON)")]) -> None:
    """Write the whole log (entries, every checkpoint with its cosignatures, the keys) as one JSON
    bundle that `ledger verify` checks offline. Signs the current head first, so the bundle ends
    with a signed checkpoint."""
    from healthmesh.ledger import bundle, service

    settings = _settings()
    factory = make_sessionmaker(make_engine(settings.effective_database_url))
    with unit_of_work(factory) as db:
        try:
            service.publish_checkpoint(db, service.load_signer(settings))
        except DomainError as exc:  # the tree no longer extends the last checkpoint: export it anyway
            err.print(f"[yellow]warning:[/yellow] the current head was not signed: {exc}")
        with _progress() as progress:
            task = progress.add_task("exporting entries", total=service.size(db))
            data = export_bundle(db, settings, lambda done, _: progress.update(task, completed=done))
    out.write_text(bundle.dumps(data), encoding="utf-8")
    summary = bundle.summarize(data)
    console.print(
        f"wrote {out}: {summary.entries:,} entries, {summary.checkpoints} checkpoints "
        f"(latest size {summary.latest_size:,}), {summary.cosignatures} cosignature(s)",
        soft_wrap=True,
    )


@ledger_app.command("verify")
def ledger_verify(
    source: Annotated[str, typer.Argument(help="A bundle from `ledger export`, or a server's URL")],
    checkpoint: Annotated[
        list[int] | None,
        typer.Option("--checkpoint", help="From a URL: also check the checkpoint of this size (repeatable)"),
    ] = None,
    save: Annotated[Path | None, typer.Option(help="From a URL: also write the fetched bundle here")] = None,
) -> None:
    """Recompute every leaf hash and root, and check every signature, cosignature, consistency
    and inclusion. Exit 0 when all hold, 1 on any failure (each one named), 2 if the input is
    not a readable bundle."""
    from healthmesh.ledger import bundle

    try:
        data = _read_source(source, checkpoint or [], save)
    except (bundle.BundleError, OSError) as exc:
        err.print(f"[red]unreadable:[/red] {source}: {exc}")
        raise typer.Exit(code=VERIFY_UNREADABLE) from None
    with _progress() as progress:
        task = progress.add_task("checking inclusion", total=None)
        failures = bundle.verify(data, lambda done, total: progress.update(task, completed=done, total=total))
    if failures:
        console.print(_failure_table(failures))
        raise typer.Exit(code=VERIFY_FAILED)
    summary = bundle.summarize(data)
    console.print(
        f"OK {data.origin}: {summary.entries:,} entries, {summary.checkpoints} checkpoints "
        f"(latest size {summary.latest_size:,}) consistent and signed, "
        f"{summary.cosignatures} cosignature(s) from {summary.witnesses} witness(es)",
        soft_wrap=True,
    )


@ledger_app.command("keygen")
def ledger_keygen() -> None:
    """Make the log's signing key if there is none yet (in the data directory, never in the
    database) and print its public verifier key, which members use to check checkpoints."""
    from healthmesh.ledger import service

    settings = _settings()
    existed = service.key_path(settings).exists()
    signer = service.load_signer(settings)
    err.print(f"{'existing' if existed else 'new'} signing key: {service.key_path(settings)}")
    typer.echo(signer.verifier().vkey)


@ledger_app.command("add-witness")
def ledger_add_witness(
    verifier_key: Annotated[str, typer.Argument(help="The witness's cosignature/v1 verifier key")],
    url: Annotated[str, typer.Argument(help="Where the witness listens, e.g. https://witness.example.org")],
) -> None:
    """Trust a member's witness: `ledger cosign` asks it to cosign each new checkpoint."""
    from healthmesh.ledger import notes, service

    try:
        alg = notes.parse_verifier_key(verifier_key).alg
    except notes.NoteError as exc:
        err.print(f"[red]error:[/red] verifier key: {exc}")
        raise typer.Exit(code=1) from None
    if alg != notes.ALG_COSIGNATURE_V1:  # a note-signing key could never cosign
        err.print("[red]error:[/red] not a witness key: expected a cosignature/v1 key (alg 0x04)")
        raise typer.Exit(code=1)
    if not url.startswith(("http://", "https://")):
        err.print(f"[red]error:[/red] {url!r} is not an http(s) URL")
        raise typer.Exit(code=1)
    settings = _settings()
    factory = make_sessionmaker(make_engine(settings.effective_database_url))
    try:
        with unit_of_work(factory) as db:
            witness = service.register_witness(db, verifier_key, url)
            console.print(f"witness {witness.name} at {witness.url}")
    except DomainError as exc:
        raise _fail(exc) from None


@ledger_app.command("cosign")
def ledger_cosign() -> None:
    """Sign the current head and ask every registered witness to cosign it (exit 1 if any
    witness did not)."""
    from healthmesh.ledger.collect import collect

    settings = _settings()
    factory = make_sessionmaker(make_engine(settings.effective_database_url))
    with unit_of_work(factory) as db:
        results = collect(db, settings)
    if not results:
        console.print("no witness registered (add one with `healthmesh ledger add-witness`)")
        return
    table = Table("witness", "result", "detail")
    for result in results:
        table.add_row(
            result.witness, "[green]cosigned[/green]" if result.ok else "[red]failed[/red]", result.detail
        )
    console.print(table)
    if not all(result.ok for result in results):
        raise typer.Exit(code=1)


@witness_app.command("keygen")
def witness_keygen(
    name: Annotated[str, typer.Option(help="The witness's name, e.g. witness.moh.go.th")],
    out: Annotated[Path, typer.Option(help="Where to write the private key (mode 0600, never overwritten)")],
) -> None:
    """Make a witness key: the private key goes to --out, the public verifier key (to register
    with `healthmesh ledger add-witness`) is printed."""
    from healthmesh.ledger.witness_app import generate_witness_key

    try:
        skey, vkey = generate_witness_key(name)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=1) from None
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        err.print(f"[red]error:[/red] {out} exists; not overwriting a key")
        raise typer.Exit(code=1) from None
    with os.fdopen(fd, "w") as handle:
        handle.write(skey + "\n")
    err.print(f"private key written to {out}")
    typer.echo(vkey)


@witness_app.command("serve")
def witness_serve(
    name: Annotated[str, typer.Option(help="The witness's name (must match the key)")],
    key_file: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="From `witness keygen`")],
    log_key: Annotated[
        list[str], typer.Option("--log-key", help="A log's verifier key to trust (repeatable)")
    ],
    state: Annotated[Path, typer.Option(help="JSON file keeping the latest cosigned checkpoint per log")],
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8080,
) -> None:
    """Serve the witness (C2SP tlog-witness): cosign a checkpoint only if it extends the last one."""
    from healthmesh.ledger.witness_app import serve as serve_witness

    serve_witness(name, key_file, log_key, state, host, port)


# --- mutual aid (issue 9) -------------------------------------------------------------------------

mutual_aid_app = typer.Typer(
    help="Mutual aid: plan lending between members over a horizon.", no_args_is_help=True
)
app.add_typer(mutual_aid_app, name="mutual-aid")


@mutual_aid_app.command("plan")
def mutual_aid_plan(
    demand: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="CSV member,date,units")],
    supply: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="CSV member,units[,date]")],
    distances: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="CSV from,to,distance[,delay] or a matrix")
    ],
    delay: Annotated[int, typer.Option(min=0, help="Shipping delay in periods")] = 1,
    distance_per_period: Annotated[
        float | None, typer.Option(min=0, help="Distance covered per period (adds to the delay)")
    ] = None,
    min_stock_fraction: Annotated[
        float, typer.Option(min=0, max=1, help="Own stock that never leaves")
    ] = 0.0,
    max_send: Annotated[float | None, typer.Option(min=0, help="Units a member sends per period")] = None,
    no_send_while_short: Annotated[
        bool, typer.Option(help="A member short in a period sends nothing")
    ] = False,
    no_resend: Annotated[int, typer.Option(min=0, help="Received units stay this many periods")] = 0,
    no_worse_off: Annotated[bool, typer.Option(help="No member above its shortfall without sharing")] = False,
    release_limit: Annotated[
        float | None, typer.Option(min=0, help="Reserve units released per period")
    ] = None,
    whole_units: Annotated[bool, typer.Option(help="Whole units (MIP)")] = False,
    objective: Annotated[str, typer.Option(help="shortfall or equity")] = "shortfall",
    time_limit: Annotated[float, typer.Option(min=1, help="Seconds per HiGHS run")] = 120.0,
    output: Annotated[str, typer.Option("--format", help="json or table")] = "table",
    save: Annotated[
        bool, typer.Option(help="Store the plan for approval (members as ISO3 codes; needs --product)")
    ] = False,
    product: Annotated[str | None, typer.Option(help="The product the plan moves (with --save)")] = None,
    as_user: Annotated[str | None, typer.Option("--as", help="Store as this user (with --save)")] = None,
) -> None:
    """Plan transfers between members, period by period, from three CSV files (the database only
    with --save: the plan is stored for `healthmesh mutual-aid approve`)."""
    from healthmesh.mutual_aid import approval, service, transfer
    from healthmesh.mutual_aid.model import Policy

    if save and not product:
        raise typer.BadParameter("--save needs the product the plan moves", param_hint="--product")

    policy = Policy(
        delay_periods=delay,
        distance_per_period=distance_per_period,
        min_stock_fraction=min_stock_fraction,
        max_send_per_period=max_send,
        no_send_while_short=no_send_while_short,
        no_resend_periods=no_resend,
        no_worse_off=no_worse_off,
        reserve_release_limit=release_limit,
        whole_units=whole_units,
        objective=objective,  # type: ignore[arg-type]  # checked by the service
        time_limit_seconds=time_limit,
    )
    stored_id = None
    try:
        inputs = transfer.from_csv(
            demand.read_text(encoding="utf-8"),
            supply.read_text(encoding="utf-8"),
            distances.read_text(encoding="utf-8"),
        )
        plan = service.plan_from_inputs(inputs, policy)
        if save and product:
            settings = _settings()
            migrate.upgrade(settings.effective_database_url)
            factory = make_sessionmaker(make_engine(settings.effective_database_url))
            with unit_of_work(factory) as db:
                stored_id = approval.save(db, _actor(db, as_user), product, inputs, policy, plan).id
    except DomainError as exc:
        raise _fail(exc) from None
    if output == "json":
        body = service.plan_to_json(plan)
        typer.echo(json.dumps({"id": stored_id, **body} if stored_id else body, indent=1))
        return
    if stored_id:
        console.print(
            f"stored as mutual-aid plan {stored_id}: "
            f"approve it with `healthmesh mutual-aid approve {stored_id}`"
        )
    t, s = plan.totals, plan.solver
    console.print(
        f"{len(plan.members)} members x {len(plan.periods)} periods; {s.kind} {s.status} in "
        f"{s.solve_seconds:.2f} s (LP bound {s.lp_bound:,.1f}"
        + (f", MIP gap {s.mip_gap:.2e}" if s.mip_gap is not None else "")
        + ")"
    )
    console.print(
        f"shortfall {t.shortfall:,.1f} unit-periods (without sharing {t.shortfall_without_sharing:,.1f}); "
        f"{t.transfers} transfers, {t.units_moved:,.1f} units moved, unit-distance {t.unit_distance:,.1f}; "
        f"largest unmet share {t.largest_unmet_share:.1%} "
        f"(without {t.largest_unmet_share_without_sharing:.1%})"
    )
    table = Table("sent", "from", "to", "arrives", "units", "distance")
    for move in plan.transfers:
        table.add_row(
            move.period, move.source, move.target, move.arrives, f"{move.units:,.1f}", f"{move.distance:,.1f}"
        )
    console.print(table)


@mutual_aid_app.command("approve")
def mutual_aid_approve(
    plan_id: Annotated[int, typer.Argument(help="A plan stored with `plan --save`")],
    as_user: Annotated[
        str | None, typer.Option("--as", help="Approve as this user (role and scope apply)")
    ] = None,
) -> None:
    """Approve a stored plan: its first period's transfers and reserve releases are reserved at the
    senders and planned as shipments, all or nothing, and logged."""
    from healthmesh.accounts.access import Permission
    from healthmesh.errors import PermissionDenied
    from healthmesh.mutual_aid import approval

    settings = _settings()
    factory = make_sessionmaker(make_engine(settings.effective_database_url))
    try:
        with unit_of_work(factory) as db:
            actor = _actor(db, as_user)
            if not actor.has(Permission.ALLOCATION_APPROVE):
                raise PermissionDenied(f"{actor.username} may not approve plans")
            stored, shipments = approval.approve(db, actor, plan_id)
            lines = [
                f"{s.code} {s.source.code} -> {s.destination.code}: "
                f"{sum(line.quantity for line in s.lines)} units"
                for s in shipments
            ]
    except DomainError as exc:
        raise _fail(exc) from None
    console.print(f"mutual-aid plan {stored.id} approved: {len(lines)} shipments planned")
    for line in lines:
        console.print(f"  {line}")


if __name__ == "__main__":
    app()
