"""The `healthmesh` command line (Typer). Each command is one unit of work: it commits once at
the end or changes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

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


@app.command("demo")
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the generated demo region")] = 2026,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve once seeded")] = True,
    history: Annotated[
        bool, typer.Option("--history/--no-history", help="Add 12 weeks of stock, the outbreak and needs")
    ] = True,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Create and seed the demo region (if the database is empty), print the logins, and serve."""
    from datetime import date

    from healthmesh.demo import seed as demo_seed
    from healthmesh.demo.logistics_seed import seed_logistics
    from healthmesh.demo.supply_seed import seed_supply

    settings = _settings()
    engine = make_engine(settings.effective_database_url)
    migrate.upgrade(settings.effective_database_url)
    factory = make_sessionmaker(engine)
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
        console.print(f"serving on http://{host}:{port}  (API explorer: http://{host}:{port}/docs)")
        serve(host=host, port=port, workers=1)


if __name__ == "__main__":
    app()
