"""The call table: both clients and the CLI read it, it agrees with the server's method table,
and the client imports none of the server."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from typing import Any, get_type_hints

import msgspec
import pytest

from marketplace.admin_calls import AdminCalls, admin_rows
from marketplace.api import wire
from marketplace.api.admin import ADMIN_METHODS
from marketplace.api.methods import METHODS
from marketplace.client import (
    TRANSPORT_ERROR,
    ApiError,
    AsyncMarketClient,
    Credentials,
    MarketClient,
    _Core,
)
from marketplace.client_calls import ApiCall, ApiCalls, rows

SERVER_MODULES = (
    "hypercorn",
    "sqlite3",
    "marketplace.api.app",
    "marketplace.api.keys",  # where the key ring lived: the client imported it for ``Scope``
    "marketplace.api.auth",
    "marketplace.api.methods",
    "marketplace.api.server",
    "marketplace.core.keys",
    "marketplace.core.market",
    "marketplace.core.pools",
    "marketplace.upstream",
    "marketplace.engine",
    "marketplace.storage",
    "marketplace.masterkey",
    "marketplace.accounts",
    "marketplace.node",
    "marketplace.operator",
    "marketplace.assembly",
    "marketplace.api.admin",
    "marketplace.control",
)


def test_the_client_imports_none_of_the_server() -> None:
    code = (
        "import json, sys\n"
        "import marketplace.client, marketplace.client_cli\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    imported = set(json.loads(done.stdout))
    assert "marketplace.client_calls" in imported
    assert "marketplace.core.key_events" in imported  # Scope, from the core's vocabulary
    leaked = sorted(
        name
        for name in imported
        if any(name == bad or name.startswith(bad + ".") for bad in SERVER_MODULES)
    )
    assert leaked == []


def test_the_table_agrees_with_the_server() -> None:
    assert {row.method for row in rows()} == set(METHODS)
    for row in rows():
        name = row.method
        method = METHODS[name]
        assert get_type_hints(row.build)["return"] is method.params, name
        handler = method.awaited or method.run
        assert get_type_hints(handler)["return"] is row.result, name
        assert row.public == (method.scope is None), name
        assert row.mutating == method.mutating, name


def test_the_operator_table_agrees_with_the_server() -> None:
    assert {row.method for row in admin_rows()} == set(ADMIN_METHODS)
    # Both tables are one client's methods: no name may mean two calls.
    assert not {r.build.__name__ for r in rows()} & {r.build.__name__ for r in admin_rows()}
    for row in admin_rows():
        method = ADMIN_METHODS[row.method]
        assert get_type_hints(row.build)["return"] == method.params, row.method
        assert get_type_hints(method.run)["return"] is row.result, row.method
        assert not row.public, row.method
        assert row.mutating == method.mutating, row.method
        assert row.cli is not None
        assert row.cli.group.split()[0] == "admin"


def test_every_row_is_a_documented_method_of_both_clients() -> None:
    for row in [*rows(), *admin_rows()]:
        name = row.build.__name__
        assert getattr(ApiCalls, name, None) is row or getattr(AdminCalls, name) is row
        for client_type in (MarketClient, AsyncMarketClient):
            method = getattr(client_type.__new__(client_type), name)
            doc = inspect.getdoc(method) or ""
            assert "(``" in doc or "``int``" in doc, f"{name}: what it returns"
            assert "Raises ``ApiError``" in doc, f"{name}: what it raises"
            # The same signature as the row (``self`` bound), for help() and editors.
            expected = list(inspect.signature(row.build).parameters)[1:]
            assert list(inspect.signature(method).parameters) == expected
    for client_type in (MarketClient, AsyncMarketClient):
        for name, member in vars(client_type).items():
            if not name.startswith("_") and callable(member):
                assert inspect.getdoc(member), f"{client_type.__name__}.{name}"


def test_a_row_must_take_a_request_id_exactly_when_it_mutates() -> None:
    def build(self: Any, key_id: str) -> wire.KeyIdParams:
        return wire.KeyIdParams(key_id=key_id)

    with pytest.raises(TypeError, match="request_id"):
        ApiCall(
            build, "apikey.revoke", wire.OkOut, lambda r: r, public=False, mutating=True, cli=None
        )


def test_mutating_requests_carry_a_request_id_reads_do_not() -> None:
    given = ApiCalls.cancel_order.request("o-1", request_id="mine")
    assert (given.method, given.request_id, given.mutating) == ("order.cancel", "mine", True)
    made = ApiCalls.deposit.request("1")
    assert made.request_id is not None
    assert made.request_id != ApiCalls.deposit.request("1").request_id
    read = ApiCalls.get_order.request("o-1")
    assert (read.request_id, read.signed) == (None, True)
    assert not ApiCalls.market_info.request().signed
    with pytest.raises(ValueError, match="bogus"):
        ApiCalls.create_key.request("x", ["bogus"])


def _answer(result: Any) -> tuple[int, bytes]:
    return 200, msgspec.json.encode({"jsonrpc": "2.0", "id": 1, "result": result})


def test_one_retry_after_a_transport_failure_with_the_same_request_id() -> None:
    core = _Core(credentials=Credentials("alice", "k-1", "s" * 64), clock_ms=lambda: 1_000)
    request = ApiCalls.deposit.request("0.5")
    steps = core.exchange(request)
    posts = [steps.send(None)]
    assert json.loads(posts[0][0])["method"] == "server.time"  # the first signed call syncs
    posts.append(steps.send(_answer({"time_ms": 5_000, "market_time_ms": 5_000})))
    posts.append(steps.send(ApiError(TRANSPORT_ERROR, "connection reset")))
    moved = {
        "entry": {"id": 1, "kind": "deposit", "amount": "0.5", "ref": "", "time_ms": 5_000},
        "balance": {"available": "0.50000000", "escrowed": "0"},
    }
    with pytest.raises(StopIteration) as done:
        steps.send(_answer(moved))
    assert done.value.value.balance.available == "0.50000000"
    first, retry = posts[1][1], posts[2][1]
    assert first["X-Request-Id"] == retry["X-Request-Id"] == request.request_id
    assert first["X-Nonce"] != retry["X-Nonce"]
    assert core.offset_ms == 4_000


def test_a_second_transport_failure_or_a_refusal_is_raised() -> None:
    core = _Core(credentials=None)
    steps = core.exchange(ApiCalls.market_info.request())
    steps.send(None)
    steps.send(ApiError(TRANSPORT_ERROR, "down"))
    with pytest.raises(ApiError) as info:
        steps.send(ApiError(TRANSPORT_ERROR, "still down"))
    assert info.value.message == "still down"
    steps = core.exchange(ApiCalls.orderbook.request("sha256d"))
    steps.send(None)
    refusal = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "no"}}
    with pytest.raises(ApiError) as info:
        steps.send((200, msgspec.json.encode(refusal)))
    assert info.value.code == -32602
