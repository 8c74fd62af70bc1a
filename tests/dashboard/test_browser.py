"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright with
its ``executable_path``), against a live node with miners hashing.

Every test records each request the page makes (anything not on loopback is refused and
fails the test), collects the console's errors (there must be none) and saves a screenshot in
its temporary folder. Waits are Playwright's, each bounded, each saying what it waited for.
With ``HASHMARKET_SCREENSHOT=docs/dashboard.png`` the market view's screenshot is also written
there (the README's picture).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Request,
    Route,
    sync_playwright,
)

from marketplace.client import ApiError, Credentials, MarketClient
from tests.dashboard.live import LiveNode

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "chromium is not installed (apt-get install chromium): browser tests skipped",
        allow_module_level=True,
    )

WAIT_MS = 30_000  # the longest any one wait may take on a loaded 2-core box
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
ARGS = [
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHARTS = ("chart-speed-1h", "chart-speed-24h", "chart-prices", "chart-shares", "chart-depth")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    node = LiveNode(tmp_path_factory.mktemp("live") / "m.db")
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def context(playwright: Playwright) -> Iterator[BrowserContext]:
    args = list(ARGS)
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    with tempfile.TemporaryDirectory(prefix="hashmarket-chromium-") as profile:
        browser = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=args
        )
        try:
            yield browser
        finally:
            browser.close()


class Watched:
    """A page whose requests and console errors are recorded (see the module doc)."""

    def __init__(self, context: BrowserContext, base: str) -> None:
        self.page: Page = context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.requests: list[str] = []
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self._request(request))
        self.page.on("console", lambda message: self._console(message))
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.route("**/*", self._route)
        self.base = base

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} at {message.location}")

    def _route(self, route: Route) -> None:
        url = route.request.url
        host = urlsplit(url).hostname or ""
        if url.startswith("data:") or host in LOOPBACK:
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def open(self, query: str = "") -> None:
        self.page.goto(f"{self.base}/{query}")
        self.page.wait_for_function("document.body.dataset.ready === 'true'")

    def finish(self, shot: Path) -> None:
        """Save the screenshot, then check the console and every request."""
        self.page.screenshot(path=str(shot), full_page=True)
        self.page.close()
        assert shot.stat().st_size > 10_000
        assert self.errors == [], self.errors
        assert self.outside == [], f"requests left loopback: {self.outside}"
        assert self.requests, "the page made no request at all"
        assert all(
            urlsplit(u).hostname in LOOPBACK for u in self.requests if not u.startswith("data:")
        )


@pytest.fixture
def page(
    context: BrowserContext, live: LiveNode, tmp_path: Path, request: Any
) -> Iterator[Watched]:
    watched = Watched(context, live.url)
    yield watched
    watched.finish(tmp_path / f"{request.node.name}.png")


def totals(page: Page) -> dict[str, str]:
    return page.eval_on_selector_all(
        "[data-total]", "els => Object.fromEntries(els.map(e => [e.dataset.total, e.textContent]))"
    )


def book_rows(page: Page) -> list[list[str]]:
    return page.eval_on_selector_all(
        "#book tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )


def client(live: LiveNode, creds: Credentials | None = None) -> MarketClient:
    return MarketClient(live.url, credentials=creds)


# ---------------------------------------------------------------------------------- market


def test_market_view_charts_live_speed_and_totals_equal_the_api(
    page: Watched, live: LiveNode, tmp_path: Path
) -> None:
    page.open()
    # Charts render with data points.
    for chart in CHARTS:
        page.page.wait_for_function(
            "id => { const g = document.getElementById(id);"
            " return g && g.data && g.data.some(t => (t.x || []).length > 0); }",
            arg=chart,
        )
    # The live speed changes without a reload.
    loaded = page.page.evaluate("window.performance.timeOrigin")
    first = totals(page.page)["accepted_speed"]
    page.page.wait_for_function(
        "before => document.querySelector('[data-total=accepted_speed]').textContent !== before",
        arg=first,
    )
    assert page.page.evaluate("window.performance.timeOrigin") == loaded  # no reload
    # The same moment: miners paused, market time frozen; the page shows an event of then.
    live.pause_miners()
    frozen = live.clock.freeze()
    # The allocation settles at the frozen time; from here on nothing changes.
    live.rebalance()
    try:
        seen = int(page.page.evaluate("document.body.dataset.events"))
        page.page.wait_for_function(
            "([ms, seen]) => Number(document.body.dataset.events) >= seen + 2 &&"
            " document.querySelector('[data-total=time]').dataset.ms === String(ms)",
            arg=[frozen, seen],
        )
        with client(live) as api:
            stats = api.market_stats("sha256d")
            book = api.orderbook("sha256d")
        shown = totals(page.page)
        rows = book_rows(page.page)
        points = page.page.evaluate(
            "ids => Object.fromEntries(ids.map(id => [id,"
            " document.getElementById(id).data.map(t => (t.x || []).length)]))",
            list(CHARTS),
        )
        if os.environ.get("HASHMARKET_SCREENSHOT"):
            page.page.screenshot(
                path=str(ROOT / os.environ["HASHMARKET_SCREENSHOT"]), full_page=True
            )
    finally:
        live.clock.thaw()
        live.resume_miners()
    assert shown["accepted_speed"] == stats.accepted_speed
    assert Decimal(stats.accepted_speed) > 0
    assert shown["unit"] == stats.unit == "MH"
    assert shown["workers"] == str(stats.workers) == "2"
    assert shown["shares_per_s"] == stats.shares_per_s
    assert shown["total_speed"] == book.total_speed
    assert shown["orders"] == str(len(book.orders)) == "3"
    assert shown["best_price"] == book.orders[0].price == "2.00000000"
    served = [o for o in book.orders if o.workers]
    assert shown["fill_price"] == min(served, key=lambda o: Decimal(o.price)).price
    assert rows == [
        [o.id, o.type, o.price, o.limit, o.accepted_speed, str(o.workers)] for o in book.orders
    ]
    assert all(sum(lengths) > 0 for lengths in points.values()), points


def test_the_page_signs_exactly_as_the_api_vectors_say(page: Watched) -> None:
    page.open()
    vectors = json.loads((ROOT / "tests" / "vectors" / "api-signing.json").read_text())["vectors"]
    for vector in vectors:
        signature = page.page.evaluate(
            "v => window.hashmarket.sign({secret: v.secret, keyId: v.key_id, time: v.time,"
            " nonce: v.nonce, orgId: v.org_id, method: v.method, path: v.path, query: v.query,"
            " body: v.body})",
            vector,
        )
        assert signature == vector["signature"]


# ---------------------------------------------------------------------------------- account


def sign_in(page: Watched, creds: Credentials) -> None:
    page.open("?tab=account")
    form = page.page.locator("#signin")
    form.locator("[name=account]").fill(creds.account)
    form.locator("[name=key_id]").fill(creds.key_id)
    form.locator("[name=secret]").fill(creds.secret)
    form.locator("button[type=submit]").click()
    page.page.wait_for_selector("#account:not([hidden])")


def test_account_view_signs_in_and_shows_the_balance_the_api_shows(
    page: Watched, live: LiveNode
) -> None:
    issued = live.create_account("alice", deposit_btc=3)
    creds = Credentials(issued.account_id, issued.key_id, issued.secret)
    with client(live, creds) as api:
        balance = api.balance()
    # A wrong secret is refused, with the API's code next to the form.
    page.open("?tab=account")
    form = page.page.locator("#signin")
    form.locator("[name=account]").fill(creds.account)
    form.locator("[name=key_id]").fill(creds.key_id)
    form.locator("[name=secret]").fill("not-the-secret")
    form.locator("button[type=submit]").click()
    page.page.wait_for_selector("[data-error=signin][data-code='4001']")
    sign_in(page, creds)
    page.page.wait_for_function(
        "want => document.querySelector('[data-balance=available]').textContent === want",
        arg=balance.available,
    )
    assert page.page.text_content("[data-balance=escrowed]") == balance.escrowed
    assert page.page.text_content("[data-account=id]") == "alice"
    # The key is in this tab's sessionStorage only.
    stored = page.page.evaluate("sessionStorage.getItem('hashmarket.credentials')")
    assert json.loads(stored)["keyId"] == creds.key_id
    assert page.page.evaluate("localStorage.length") == 0
    assert page.page.evaluate("document.cookie") == ""


def test_an_order_placed_and_cancelled_from_the_page_is_seen_by_the_api(
    page: Watched, live: LiveNode
) -> None:
    issued = live.create_account("bob", deposit_btc=2)
    creds = Credentials(issued.account_id, issued.key_id, issued.secret)
    sign_in(page, creds)
    create = page.page.locator("#form-create")
    create.locator("[name=price]").fill("0.7")
    create.locator("[name=limit]").fill("0")
    create.locator("[name=amount]").fill("0.01")
    create.locator("button[type=submit]").click()
    page.page.wait_for_selector("[data-error=create][data-state=ok]")
    placed = page.page.text_content("[data-error=create]") or ""
    match = re.fullmatch(r"placed (o-\d+)", placed)
    assert match, placed
    order_id = match.group(1)
    with client(live, creds) as api:
        order = api.get_order(order_id)
    assert (order.status, order.price, order.amount) == ("active", "0.70000000", "0.01000000")
    # The order shows in the account's list, with its chart.
    page.page.wait_for_selector(f".order[data-order='{order_id}'][data-status=active]")
    change = page.page.locator("#form-change")
    page.page.wait_for_function(
        "id => [...document.querySelectorAll('#form-change [name=id] option')]"
        ".some(o => o.value === id)",
        arg=order_id,
    )
    change.locator("[name=id]").select_option(order_id)
    change.locator("[name=action]").select_option("cancel")
    change.locator("button[type=submit]").click()
    page.page.wait_for_selector("[data-error=change][data-state=ok]")
    with client(live, creds) as api:
        assert api.get_order(order_id).status == "cancelled"
        balance = api.balance()
    page.page.wait_for_function(
        "want => document.querySelector('[data-balance=available]').textContent === want",
        arg=balance.available,
    )


def test_an_api_error_is_shown_next_to_the_form(page: Watched, live: LiveNode) -> None:
    issued = live.create_account("carol", deposit_btc=1)
    creds = Credentials(issued.account_id, issued.key_id, issued.secret)
    sign_in(page, creds)
    create = page.page.locator("#form-create")
    create.locator("[name=price]").fill("0.5")
    create.locator("[name=amount]").fill("0.00000100")  # under the market's minimum
    create.locator("button[type=submit]").click()
    page.page.wait_for_selector("[data-error=create][data-state=error]")
    with client(live, creds) as api, pytest.raises(ApiError) as refused:
        api.create_order(
            algorithm="sha256d", type="standard", price="0.5", limit="0", amount="0.00000100"
        )
    shown = page.page.text_content("[data-error=create]") or ""
    assert page.page.get_attribute("[data-error=create]", "data-code") == str(refused.value.code)
    assert refused.value.code == 4220
    assert f"error 4220: {refused.value.message}" in shown
    # The refused call changed nothing: no order for carol.
    with client(live, creds) as api:
        assert api.list_orders() == []
    # A second form's error is shown next to that form, not the first.
    change = page.page.locator("#form-change")
    change.locator("[name=action]").select_option("refill")
    change.locator("[name=value]").fill("1")
    change.locator("button[type=submit]").click()
    page.page.wait_for_selector("[data-error=change][data-state=error]")
    assert "-32602" in (page.page.text_content("[data-error=change]") or "")
