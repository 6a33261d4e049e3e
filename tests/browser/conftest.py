"""Browser tests: the console served by a real uvicorn on the seeded demo region, driven by
Playwright in Debian's Chromium (`/usr/bin/chromium`; no browser is ever downloaded).

Each backend (SQLite, PostgreSQL) gets its own seeded database and server for the session.
Every page a test opens records the hosts it requested; a request to any host but the platform
fails the test (the console must work with no internet). Screenshots go to
`test-artifacts/screenshots/` as test artefacts.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import urlparse

import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
from sqlalchemy import text

from healthmesh import migrate
from healthmesh.config import load_settings
from healthmesh.db import make_engine, make_sessionmaker, unit_of_work
from healthmesh.demo import seed as demo_seed
from healthmesh.demo.logistics_seed import seed_logistics
from healthmesh.demo.supply_seed import seed_supply
from healthmesh.demo.trends import seed_trends
from healthmesh.web.app import create_app
from tests.conftest import _postgres_database

CHROMIUM = "/usr/bin/chromium"
PASSWORD = demo_seed.DEMO_PASSWORD
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
]

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class LiveServer:
    base_url: str
    backend: str
    database_url: str


def _seed(url: str, data_dir: Path) -> None:
    migrate.upgrade(url)
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    with unit_of_work(factory) as db:
        demo_seed.seed_demo(db, seed=2026)
        seed_supply(db, seed=2026, today=date.today())
        seed_logistics(db, seed=2026, today=date.today())
        seed_trends(db, date.today())
    engine.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def live_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The platform on the demo region, served by uvicorn in a thread, for the whole session."""
    data_dir = tmp_path_factory.mktemp(f"console-{request.param}")
    admin = None
    name = ""
    if request.param == "sqlite":
        url = f"sqlite+pysqlite:///{data_dir / 'healthmesh.sqlite3'}"
    else:
        name = f"healthmesh_browser_{os.getpid()}_{secrets.token_hex(3)}"
        url, admin = _postgres_database(name)
    _seed(url, data_dir)
    settings = load_settings(data_dir=data_dir, database_url=url)
    app = create_app(settings)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the console did not start")
        time.sleep(0.05)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", request.param, url)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.engine.dispose()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@dataclass
class Visit:
    """A signed-in browser context, and every host its pages asked for."""

    page: Page
    context: BrowserContext
    server: LiveServer
    hosts: set[str] = field(default_factory=set)
    console_errors: list[str] = field(default_factory=list)

    def open(self, path: str) -> Page:
        self.page.goto(self.server.base_url + path)
        self.page.wait_for_load_state("networkidle")
        return self.page

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        target = ARTIFACTS / f"{name}-{self.server.backend}.png"
        self.page.screenshot(path=str(target), full_page=True)
        return target


def _sign_in(context: BrowserContext, server: LiveServer, username: str) -> None:
    response = context.request.post(
        server.base_url + "/api/v1/auth/login", data={"username": username, "password": PASSWORD}
    )
    assert response.ok, response.text()


@pytest.fixture
def visit_as(browser: Browser, live_server: LiveServer) -> Iterator[object]:
    """`visit_as("fp.tha")` -> a Visit signed in as that demo user (None: not signed in)."""
    visits: list[Visit] = []
    own = urlparse(live_server.base_url).netloc

    def open_as(username: str | None) -> Visit:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        visit = Visit(page, context, live_server)
        page.on("request", lambda request: visit.hosts.add(urlparse(request.url).netloc))
        page.on(
            "console", lambda message: message.type == "error" and visit.console_errors.append(message.text)
        )
        if username is not None:
            _sign_in(context, live_server, username)
        visits.append(visit)
        return visit

    yield open_as
    for visit in visits:
        foreign = {host for host in visit.hosts if host and host != own}
        visit.context.close()
        assert not foreign, f"the console asked other hosts: {sorted(foreign)}"
