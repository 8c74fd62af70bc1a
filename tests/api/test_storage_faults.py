"""The API while the store fails: mutating calls get 5030 "service unavailable" with
``data.retry_after_ms`` and change nothing; reads are answered from the journal's state, and
refused too while the engine is still putting memory back; everything works again once the
store does. (An engine over the in-memory journal that fails on cue; no HTTP.)"""

from __future__ import annotations

import itertools
import json
from typing import Any

import trio

from marketplace.accounts import Bootstrap, Components, bootstrap_account
from marketplace.api.app import RpcService
from marketplace.api.errors import ApiCode
from marketplace.client import SERVICE_UNAVAILABLE, ApiError
from marketplace.core.fleet import Fleet
from marketplace.durability import StorageState
from marketplace.engine import Engine
from tests.clocks import ManualClock
from tests.marketplace_io.fakes import MemoryJournal

from .conftest import (
    error_of,
    make_components,
    make_security,
    result_of,
    rpc_body,
    signed_headers,
)


class Node:
    """RpcService over an engine whose journal breaks on cue."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.journal = MemoryJournal()
        self.market, self.keyring = make_components()
        self.security = make_security()
        self.engine = Engine(
            components=[self.market, self.keyring, self.security],
            journal=self.journal,
            clock=self.clock,
        )
        self.service = RpcService(
            market=self.market,
            fleet=Fleet(config=self.market.config),
            keyring=self.keyring,
            security=self.security,
            executor=self.engine,
            clock=self.clock,
            health=self.engine.health,
        )
        self._nonces = itertools.count(1)

    async def call(self, creds: Bootstrap, method: str, params: Any = None) -> Any:
        body = rpc_body(method, params)
        headers = signed_headers(creds, body, now_ms=self.clock(), nonce=f"n{next(self._nonces)}")
        encoded = {k.lower().encode(): v.encode() for k, v in headers.items()}
        answer = await self.service.handle(body=body, headers=encoded)
        assert answer is not None
        return json.loads(answer)

    async def until(self, state: StorageState) -> None:
        with trio.fail_after(60):
            while self.engine.health.state is not state:
                await self.engine.health.wait_changed()


async def test_mutating_calls_get_5030_and_reads_the_journals_state(autojump_clock: Any) -> None:
    node = Node()
    await node.engine.restore()
    creds = await bootstrap_account(
        Components(node.engine, node.market, node.keyring, node.security),
        account="alice",
        now_ms=node.clock(),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(node.engine.run)
        result_of(await node.call(creds, "account.deposit", {"amount": "0.5"}))
        node.journal.break_store()
        refusal = error_of(await node.call(creds, "account.deposit", {"amount": "0.25"}))
        code, message, data = refusal
        assert (code, message) == (5030, "service unavailable")
        assert code == ApiCode.SERVICE_UNAVAILABLE == SERVICE_UNAVAILABLE
        assert 0 < data["retry_after_ms"] <= 1000
        # The client's one exception type reads the hint.
        assert ApiError(code, message, data).retry_after_ms == data["retry_after_ms"]
        # While memory is being put back (the engine's service has not run yet), reads wait
        # too; then they see the journal's state.
        assert node.engine.health.state is StorageState.RESTORING
        assert error_of(await node.call(creds, "account.balance"))[0] == 5030
        await node.until(StorageState.DEGRADED)
        balance = result_of(await node.call(creds, "account.balance"))
        assert balance["available"] == "0.50000000"
        # Another mutating call while degraded: refused before it runs, nothing changes.
        code, _, data = error_of(await node.call(creds, "account.deposit", {"amount": "1"}))
        assert code == 5030
        assert data["retry_after_ms"] > 0
        node.journal.mend_store()
        await node.until(StorageState.HEALTHY)
        result_of(await node.call(creds, "account.deposit", {"amount": "0.25"}))
        balance = result_of(await node.call(creds, "account.balance"))
        assert balance["available"] == "0.75000000"
        nursery.cancel_scope.cancel()
