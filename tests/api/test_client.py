"""The client library (sync and trio) and the CLI against a real server."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import trio
from structlog.testing import capture_logs

from marketplace import client_cli
from marketplace.client import (
    TRANSPORT_ERROR,
    ApiError,
    AsyncMarketClient,
    Credentials,
    MarketClient,
)
from tests.api.conftest import real_stack


def creds_of(boot: Any) -> Credentials:
    return Credentials(boot.account_id, boot.key_id, boot.secret)


async def test_async_client(tmp_path: Path) -> None:
    async with real_stack(tmp_path / "j.db") as stack:
        creds = creds_of(await stack.bootstrap())
        with trio.fail_after(20):
            async with AsyncMarketClient(stack.url, credentials=creds) as client:
                assert await client.server_time() == stack.clock()
                info = await client.market_info()
                assert {m.algorithm for m in info.markets} == {"sha256d", "scrypt"}
                moved = await client.deposit("0.5")
                assert moved.balance.available == "0.50000000"
                # The server's clock is years behind this machine's: the client synced.
                assert abs(client.clock_offset_ms - (stack.clock() - trio_wall_ms())) < 5_000
                order = await client.create_order(
                    algorithm="sha256d", type="standard", price="0.002", limit="1", amount="0.1"
                )
                assert order.status == "active"
                assert (await client.get_order(order.id)) == order
                assert [o.id for o in await client.list_orders()] == [order.id]
                assert (await client.set_price(order.id, "0.0025")).price == "0.00250000"
                assert (await client.refill(order.id, "0.1")).amount == "0.20000000"
                assert (await client.balance()).escrowed == "0.20000000"
                book = await client.orderbook("sha256d")
                assert [o.id for o in book.orders] == [order.id]
                with pytest.raises(ApiError) as info_err:
                    await client.create_order(
                        algorithm="sha256d", type="standard", price="0.002", limit="1", amount="9"
                    )
                assert info_err.value.code == 4020
                assert info_err.value.data == {"available": "0.30000000"}
                # A server clock jump: the client gets 4008, re-syncs and retries once.
                stack.clock.advance(3_600_000)
                cancelled = await client.cancel_order(order.id)
                assert cancelled.status == "cancelled"
                key = await client.create_key("bot", ["read"])
                assert isinstance(key.secret, str)
                rotated = await client.rotate_key(key.key_id, grace_s=10)
                assert rotated.version == 2
                assert {k.key_id for k in await client.list_keys()} >= {
                    key.key_id,
                    rotated.key_id,
                }
                assert (await client.revoke_key(rotated.key_id)).ok
                ledger = await client.ledger(limit=2)
                assert [e.kind for e in ledger.entries] == ["release", "escrow"]


def trio_wall_ms() -> int:
    import time

    return time.time_ns() // 1_000_000


async def test_sync_client_in_a_thread(tmp_path: Path) -> None:
    async with real_stack(tmp_path / "j.db") as stack:
        creds = creds_of(await stack.bootstrap())

        def script() -> tuple[str, str, int]:
            with MarketClient(stack.url, credentials=creds) as client:
                client.deposit("1")
                order = client.create_order(
                    algorithm="scrypt",
                    type="standard",
                    price="0.001",
                    limit="5",
                    amount="0.01",
                    request_id="once",
                )
                again = client.create_order(
                    algorithm="scrypt",
                    type="standard",
                    price="0.001",
                    limit="5",
                    amount="0.01",
                    request_id="once",
                )
                assert again == order
                try:
                    client.get_order("o-424242")
                except ApiError as error:
                    code = error.code
                return order.limit, order.unit, code

        with trio.fail_after(20):
            limit, unit, code = await trio.to_thread.run_sync(script)
        assert (limit, unit, code) == ("5.000", "kH", 4040)
        assert len(stack.views.list_orders(account=creds.account)) == 1


def test_transport_failure_is_an_api_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        MarketClient(f"http://127.0.0.1:{port}", timeout_s=2) as client,
        pytest.raises(ApiError) as info,
    ):
        client.server_time()
    assert info.value.code == TRANSPORT_ERROR


async def run_cli(argv: list[str]) -> int:
    with trio.fail_after(20):
        return await trio.to_thread.run_sync(client_cli.main, argv)


async def test_cli_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server's log lines would land in the same captured stdout: keep them apart.
    with capture_logs() as logs:
        await _cli_session(tmp_path, capsys, monkeypatch)
    assert any(entry["event"] == "api.request" for entry in logs)


async def _cli_session(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with real_stack(tmp_path / "j.db") as stack:
        boot = await stack.bootstrap()
        monkeypatch.setenv("HASHMARKET_URL", stack.url)
        monkeypatch.setenv("HASHMARKET_ACCOUNT", boot.account_id)
        monkeypatch.setenv("HASHMARKET_KEY_ID", boot.key_id)
        monkeypatch.setenv("HASHMARKET_SECRET", boot.secret)
        assert await run_cli(["account", "deposit", "0.5", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["balance"]["available"] == "0.50000000"
        argv = ["order", "create", "--algorithm", "sha256d", "--type", "standard"]
        argv += ["--price", "0.002", "--limit", "1.5", "--amount", "0.01", "--json"]
        assert await run_cli(argv) == 0
        order = json.loads(capsys.readouterr().out)
        assert order["limit"] == "1.500000"
        assert await run_cli(["order", "list"]) == 0
        table = capsys.readouterr().out
        assert table.splitlines()[0].split()[:3] == ["ID", "ALGORITHM", "TYPE"]
        assert order["id"] in table
        assert await run_cli(["account", "balance"]) == 0
        assert "escrowed   0.01000000" in capsys.readouterr().out
        assert await run_cli(["market", "info"]) == 0
        assert "sha256d" in capsys.readouterr().out
        # --json prints what the API answers: lists inside their object.
        assert await run_cli(["order", "list", "--json"]) == 0
        assert [o["id"] for o in json.loads(capsys.readouterr().out)["orders"]] == [order["id"]]
        assert await run_cli(["key", "list", "--json"]) == 0
        assert [k["key_id"] for k in json.loads(capsys.readouterr().out)["keys"]] == [boot.key_id]
        assert await run_cli(["market", "info", "--algorithm", "scrypt", "--json"]) == 0
        markets = json.loads(capsys.readouterr().out)["markets"]
        assert [m["algorithm"] for m in markets] == ["scrypt"]
        # Refused before any request (bad scope, bad URL): still "error CODE: ..." and exit 1.
        assert await run_cli(["key", "create", "--scopes", "bogus"]) == 1
        assert capsys.readouterr().err.startswith("error -32602: ")
        assert await run_cli(["market", "info", "--url", "http://127.0.0.1:abc"]) == 1
        assert capsys.readouterr().err.startswith("error -32000: bad API URL")
        # A refused call: code and message on stderr, exit 1.
        assert await run_cli(["order", "cancel", "o-999999"]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith("error 4040: no such order")
        # Flags win over the environment.
        bad = ["account", "balance", "--secret", "0" * 64]
        assert await run_cli(bad) == 1
        assert capsys.readouterr().err.startswith("error 4001: bad signature")
        assert await run_cli(["key", "create", "--label", "ro", "--scopes", "read", "--json"]) == 0
        assert set(json.loads(capsys.readouterr().out)["scopes"]) == {"read"}


def test_cli_plugs_into_hashmarket() -> None:
    from marketplace.cli import build_parser

    args = build_parser().parse_args(["order", "set-price", "o-000001", "0.003", "--json"])
    assert args.handler is client_cli.run_client_command
    assert (args.id, args.value, args.json) == ("o-000001", "0.003", True)
