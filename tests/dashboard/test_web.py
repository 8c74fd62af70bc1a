"""The web side of the API port through a real node: the page and its assets (versioned URLs,
ETag, 304, gzip, a year of cache), /healthz, /readyz and its checks, 404 and 405."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import httpx
import pytest
import trio

from marketplace.durability import StorageUnavailable
from marketplace.readiness import Readiness
from tests.marketplace_io.test_assembly import serving, settings


async def test_the_page_and_its_assets_come_from_the_installed_packages(tmp_path: Path) -> None:
    async with serving(settings(tmp_path / "m.db")) as node:
        base = f"http://127.0.0.1:{node.api_port}"
        assert node.dashboard_url == base + "/"
        async with httpx.AsyncClient(base_url=base) as http:
            with trio.fail_after(20):
                page = await http.get("/")
                assert page.status_code == 200
                assert page.headers["content-type"].startswith("text/html")
                assert page.headers["cache-control"] == "no-cache"
                urls = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
                names = sorted(url.split("?")[0].removeprefix("/static/") for url in urls)
                assert names == ["dashboard.css", "dashboard.js", "plotly.min.js"]
                # Nothing outside this node: every URL the page names is a path of ours.
                assert not re.search(r'(?:src|href)="(?:https?:)?//', page.text)
                for url in urls:
                    asset = await http.get(url)
                    assert asset.status_code == 200, url
                    assert "immutable" in asset.headers["cache-control"]
                    assert "max-age=31536000" in asset.headers["cache-control"]
                    etag = asset.headers["etag"]
                    assert url.endswith("?v=" + etag.strip('"')[:12])
                    again = await http.get(url, headers={"if-none-match": etag})
                    assert again.status_code == 304
                    assert again.content == b""
                raw = await http.get(
                    "/static/plotly.min.js", headers={"accept-encoding": "identity"}
                )
                assert raw.headers.get("content-encoding") is None
                assert len(raw.content) > 1_000_000  # the real plotly.js, not a stub
                zipped = await http.get(
                    "/static/plotly.min.js", headers={"accept-encoding": "gzip"}
                )
                assert zipped.headers["content-encoding"] == "gzip"
                assert int(zipped.headers["content-length"]) < len(raw.content) // 2
                assert zipped.content == raw.content  # httpx undid the gzip
                assert (await http.get("/static/nope.js")).status_code == 404
                assert (await http.get("/static/../assembly.py")).status_code == 404
                assert (await http.get("/static/index.html")).status_code == 404
                assert (await http.get("/nope")).status_code == 404
                refused = await http.post("/")
                assert refused.status_code == 405
                assert refused.headers["allow"] == "GET"
                head = await http.head("/static/dashboard.js")
                assert head.status_code == 200
                assert head.content == b""


async def test_healthz_and_readyz_follow_the_nodes_checks(tmp_path: Path) -> None:
    async with (
        serving(settings(tmp_path / "m.db")) as node,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.api_port}") as http,
    ):
        with trio.fail_after(20):
            health = await http.get("/healthz")
            assert (health.status_code, health.text) == (200, "ok\n")
            ready = await http.get("/readyz")
            assert ready.status_code == 200
            assert ready.json() == {
                "ready": True,
                "checks": {"api": "ok", "journal": "ok", "storage": "ok", "stratum": "ok"},
            }
            # Another part of the node (a failing store, say) adds its own check.
            node.readiness.fail("storage", "the store is failing")
            failing = await http.get("/readyz")
            assert failing.status_code == 503
            assert failing.json()["checks"]["storage"] == "the store is failing"
            assert (await http.get("/healthz")).status_code == 200
            node.readiness.passed("storage")
            assert (await http.get("/readyz")).status_code == 200


def test_readiness_is_not_ready_until_every_check_passed() -> None:
    readiness = Readiness(["journal", "stratum", "api"])
    assert not readiness.ready
    assert readiness.report() == {"api": "starting", "journal": "starting", "stratum": "starting"}
    for name in ("journal", "stratum"):
        readiness.passed(name)
        assert not readiness.ready
    readiness.passed("api")
    assert readiness.ready
    readiness.fail("journal", "replaying")
    assert not readiness.ready
    assert readiness.report()["journal"] == "replaying"


async def test_readyz_answers_503_while_the_store_fails(tmp_path: Path) -> None:
    config = settings(tmp_path / "m.db")
    async with (
        serving(config) as node,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.api_port}") as http,
    ):
        health = node.core.health
        with trio.fail_after(60):
            assert (await http.get("/readyz")).status_code == 200
            # Another process holds the database: the node's next write fails once SQLite's
            # busy timeout passes, and the node is degraded until the store takes writes again.
            locker = sqlite3.connect(config.db, timeout=0.1, isolation_level=None)
            locker.execute("BEGIN EXCLUSIVE")
            try:
                market = node.core.market
                with pytest.raises(StorageUnavailable):
                    await node.core.engine.execute(
                        lambda: market.create_account(account="held", now_ms=0)
                    )
                while health.ready:
                    await health.wait_changed()
                failing = await http.get("/readyz")
                assert failing.status_code == 503
                assert failing.json()["checks"]["storage"].startswith(health.state.value)
                assert (await http.get("/healthz")).status_code == 200
            finally:
                locker.execute("ROLLBACK")
                locker.close()
            while not health.ready:
                await health.wait_changed()
            assert (await http.get("/readyz")).status_code == 200
