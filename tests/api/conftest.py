"""Builders for the API tests: an in-memory executor, signed requests, and a
real stack (SQLite journal + Engine + hypercorn on 127.0.0.1)."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec
import pytest
import trio

from marketplace.accounts import Bootstrap, Components, bootstrap_account
from marketplace.api.app import ApiApp, ApiSettings, RpcService
from marketplace.api.methods import METHODS, Method
from marketplace.api.server import serve_api
from marketplace.api.signing import sign_headers
from marketplace.core.eventsourced import EventSourced
from marketplace.core.fleet import Fleet
from marketplace.core.keys import KeyRing
from marketplace.core.market import Market
from marketplace.core.model import MarketConfig
from marketplace.core.pools import PoolRegistry
from marketplace.core.security import AccountSecurity
from marketplace.core.views import MarketViews
from marketplace.engine import Engine
from marketplace.storage import Journal, Synchronous, open_journal
from stratum.core.shares import Algorithm
from tests.clocks import ManualClock

T = TypeVar("T")
MASTER = b"m" * 32


class MemoryExecutor:
    """Runs a command and drains every outbox into ``events`` (the journal's stand-in)."""

    def __init__(self, components: list[EventSourced[Any]]) -> None:
        self.components = components
        self.events: list[tuple[str, bytes]] = []

    async def execute(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        finally:
            for component in self.components:
                for event in component.drain_events():
                    self.events.append((component.component, component.encode_event(event)))


def counter_ids(prefix: str = "k") -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"{prefix}-{next(numbers):04d}"


def make_components() -> tuple[Market, KeyRing]:
    market = Market(config=MarketConfig(faucet=True))
    keyring = KeyRing(master_key=MASTER, new_key_id=counter_ids())
    return market, keyring


def make_security(*, address_lock_ms: int = 86_400_000) -> AccountSecurity:
    return AccountSecurity(
        master_key=MASTER, new_id=counter_ids("e"), address_lock_ms=address_lock_ms
    )


class Harness:
    """An ``RpcService`` over a fresh market, in memory (no HTTP)."""

    def __init__(
        self,
        *,
        settings: ApiSettings | None = None,
        methods: dict[str, Method] | None = None,
        clock: ManualClock | None = None,
        security: AccountSecurity | None = None,
        pools: PoolRegistry | None = None,
    ) -> None:
        self.clock = clock or ManualClock()
        self.market, self.keyring = make_components()
        self.security = security or make_security()
        self.pools = pools
        self.fleet = Fleet(config=self.market.config)
        self.views = MarketViews(self.market, self.fleet)
        components: list[EventSourced[Any]] = [self.market, self.keyring, self.security]
        self.executor = MemoryExecutor([*components, *([pools] if pools else [])])
        self.service = RpcService(
            market=self.market,
            fleet=self.fleet,
            keyring=self.keyring,
            security=self.security,
            executor=self.executor,
            settings=settings,
            clock=self.clock,
            methods=methods or METHODS,
            pools=pools,
        )
        self.app = ApiApp(self.service)
        self._nonces = itertools.count(1)

    @property
    def components(self) -> Components:
        return Components(self.executor, self.market, self.keyring, self.security)

    async def bootstrap(self, account: str = "alice") -> Bootstrap:
        return await bootstrap_account(self.components, account=account, now_ms=self.clock())

    def sign(self, creds: Bootstrap, body: bytes, **kw: Any) -> dict[bytes, bytes]:
        kw.setdefault("now_ms", self.clock())
        headers = signed_headers(creds, body, nonce=f"n{next(self._nonces)}", **kw)
        return {k.lower().encode(): v.encode() for k, v in headers.items()}

    async def call(
        self, creds: Bootstrap | None, method: str, params: Any = None, **kw: Any
    ) -> Any:
        body = rpc_body(method, params)
        headers = {} if creds is None else self.sign(creds, body, **kw)
        answer = await self.service.handle(body=body, headers=headers)
        assert answer is not None
        return json.loads(answer)


def rpc_body(method: str, params: Any = None, *, call_id: int = 1) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": call_id, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode()


def signed_headers(
    creds: Bootstrap,
    body: bytes,
    *,
    now_ms: int,
    nonce: str,
    request_id: str | None = None,
    org: str | None = None,
) -> dict[str, str]:
    return sign_headers(
        key_id=creds.key_id,
        secret=creds.secret,
        org_id=org or creds.account_id,
        time_ms=now_ms,
        nonce=nonce,
        body=body,
        request_id=request_id,
    )


class Stack:
    """A real stack: journal, engine, hypercorn on 127.0.0.1, and an httpx client."""

    def __init__(
        self,
        *,
        engine: Engine,
        market: Market,
        fleet: Fleet,
        keyring: KeyRing,
        security: AccountSecurity,
        clock: ManualClock,
        port: int,
        http: httpx.AsyncClient,
    ) -> None:
        self.http = http
        self.engine = engine
        self.market = market
        self.views = MarketViews(market, fleet)
        self.keyring = keyring
        self.security = security
        self.clock = clock
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._nonces = itertools.count(1)

    @property
    def components(self) -> Components:
        return Components(self.engine, self.market, self.keyring, self.security)

    async def bootstrap(self, account: str = "alice") -> Bootstrap:
        return await bootstrap_account(self.components, account=account, now_ms=self.clock())

    def nonce(self) -> str:
        return f"nonce-{next(self._nonces)}"

    async def journaled_since(self, seq: int) -> list[Any]:
        """The events journaled after ``seq``, decoded by their components."""
        components = self.engine.components
        with trio.fail_after(10):
            return [
                components[entry.component].decode_event(entry.body)
                async for entry in self.engine.journal.replay(after=seq)
            ]

    async def post(
        self, body: bytes, headers: dict[str, str] | None = None, *, path: str = "/rpc"
    ) -> httpx.Response:
        with trio.fail_after(10):
            return await self.http.post(path, content=body, headers=headers or {})

    async def call(
        self, creds: Bootstrap | None, method: str, params: Any = None, **kw: Any
    ) -> Any:
        body = rpc_body(method, params)
        headers = None
        if creds is not None:
            kw.setdefault("nonce", self.nonce())
            kw.setdefault("now_ms", self.clock())
            headers = signed_headers(creds, body, **kw)
        response = await self.post(body, headers)
        assert response.status_code == 200, response.text
        return response.json()


@asynccontextmanager
async def real_stack(
    path: Path,
    *,
    clock: ManualClock | None = None,
    settings: ApiSettings | None = None,
    methods: dict[str, Method] | None = None,
    market: Market | None = None,
    keyring: KeyRing | None = None,
    security: AccountSecurity | None = None,
    nicehash: bool = False,
) -> AsyncIterator[Stack]:
    """Journal at ``path`` + engine (restored) + the API served on an ephemeral port (with
    NiceHash's REST door too when ``nicehash``)."""
    clock = clock or ManualClock()
    if market is None or keyring is None:
        market, keyring = make_components()
    security = security or make_security()
    settings = settings or ApiSettings(stratum_ports={Algorithm.SHA256D: 3333})
    async with open_journal(path, synchronous=Synchronous.NORMAL) as journal:
        engine = Engine(components=[market, keyring, security], journal=journal, clock=clock)
        await engine.restore()
        fleet = Fleet(config=market.config)
        service = RpcService(
            market=market,
            fleet=fleet,
            keyring=keyring,
            security=security,
            executor=engine,
            settings=settings,
            clock=clock,
            methods=methods or METHODS,
        )
        async with trio.open_nursery() as nursery:
            with trio.fail_after(10):
                port = await nursery.start(
                    partial(
                        serve_api,
                        app=ApiApp(service, nicehash=nicehash),
                        host="127.0.0.1",
                        port=0,
                    )
                )
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                yield Stack(
                    engine=engine,
                    market=market,
                    fleet=fleet,
                    keyring=keyring,
                    security=security,
                    clock=clock,
                    port=port,
                    http=http,
                )
            nursery.cancel_scope.cancel()


def journal_of(journal: Journal) -> int:
    return journal.last_seq


def result_of(answer: Any) -> Any:
    assert "error" not in answer, answer
    return answer["result"]


def error_of(answer: Any) -> tuple[int, str, dict[str, Any]]:
    assert "error" in answer, answer
    error = answer["error"]
    return error["code"], error["message"], error.get("data", {})


def decode(data: bytes) -> Any:
    return msgspec.json.decode(data)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
