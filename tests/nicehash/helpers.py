"""A whole node for the NiceHash door's tests: ``run_node`` on free loopback ports with the
real clock (NiceHash's clients sign with the wall clock), a funded buyer, the JSON-RPC client
beside the NiceHash clients, and NiceHash-signed requests of our own for the error tests."""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from hashlib import sha256
from pathlib import Path
from typing import Any

import httpx
import msgspec
import trio

from marketplace.accounts import Bootstrap
from marketplace.api.app import ApiSettings
from marketplace.assembly import Node, run_node
from marketplace.client import AsyncMarketClient, Credentials
from marketplace.config import NodeConfig

from .clients import PythonDemo, PythonPublic


@dataclass
class Buyer:
    creds: Bootstrap
    rpc: AsyncMarketClient
    demo: PythonDemo

    async def place(self, price: str = "0.0100", limit: str = "1") -> str:
        """A standard sha256d order of 0.01 BTC placed over JSON-RPC; its id."""
        with trio.fail_after(10):
            order = await self.rpc.create_order(
                algorithm="sha256d", type="standard", price=price, limit=limit, amount="0.01"
            )
        return order.id


@dataclass
class NiceHashNode:
    node: Node
    http: httpx.AsyncClient

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.node.api_port}"

    def public(self) -> PythonPublic:
        return PythonPublic(self.http)

    async def buyer(self, name: str = "alice", deposit: str | None = "1") -> Buyer:
        """An account with its first key, ``deposit`` BTC from the faucet (JSON-RPC)."""
        creds = await self.node.core.create_account(name)
        rpc = AsyncMarketClient(
            self.url, credentials=Credentials(creds.account_id, creds.key_id, creds.secret)
        )
        if deposit is not None:
            with trio.fail_after(10):
                await rpc.deposit(deposit)
        demo = PythonDemo(
            self.http, organisation_id=creds.account_id, key=creds.key_id, secret=creds.secret
        )
        return Buyer(creds, rpc, demo)


@asynccontextmanager
async def nicehash_node(
    tmp_path: Path, *, api: ApiSettings | None = None, **settings: Any
) -> AsyncIterator[NiceHashNode]:
    """``run_node`` (faucet on, every port free) with ``settings`` over the defaults, and
    ``api`` for what a node has no flag for (rate limits)."""
    config = NodeConfig(
        **{
            "db": str(tmp_path / "node.db"),
            "api_port": 0,
            "sha256d_port": 0,
            "scrypt_port": 0,
            "faucet": True,
            "synchronous": "NORMAL",
            "log_level": "warning",
            **settings,
        }
    )
    async with trio.open_nursery() as nursery:
        with trio.fail_after(20):
            node: Node = await nursery.start(partial(run_node, config, api=api))
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{node.api_port}", timeout=10
        ) as http:
            yield NiceHashNode(node, http)
        nursery.cancel_scope.cancel()


def signed(
    creds: Bootstrap,
    method: str,
    path: str,
    query: str = "",
    body: Any = None,
    *,
    time_ms: int,
    org: str | None = "",
    nonce: str | None = None,
    request_id: str | None = None,
    sign_path: str | None = None,
    sign_query: str | None = None,
    data: bytes | None = None,
) -> tuple[str, dict[str, str], bytes | None]:
    """A NiceHash-signed request of our own: (url, headers, body): ``body`` as compact JSON,
    or ``data`` as it is. ``org=None`` signs the older layout and sends no
    ``X-Organization-Id``; ``sign_path``/``sign_query`` sign other text than is sent (the
    decoded layout)."""
    if body is not None:
        data = json.dumps(body, separators=(",", ":")).encode()
    nonce = nonce or uuid.uuid4().hex
    organisation = creds.account_id if org == "" else org
    parts = [
        creds.key_id.encode(),
        str(time_ms).encode(),
        nonce.encode(),
        b"",
        (organisation or "").encode(),
        b"",
        method.encode(),
        (sign_path or path).encode(),
        (query if sign_query is None else sign_query).encode(),
    ]
    if data:
        parts.append(data)
    digest = hmac.new(creds.secret.encode(), b"\x00".join(parts), sha256).hexdigest()
    headers = {"X-Time": str(time_ms), "X-Nonce": nonce, "X-Auth": f"{creds.key_id}:{digest}"}
    if organisation is not None:
        headers["X-Organization-Id"] = organisation
    if request_id is not None:
        headers["X-Request-Id"] = request_id
    if data:
        headers["Content-Type"] = "application/json"
    return path + ("?" + query if query else ""), headers, data


def error_of(response: httpx.Response) -> tuple[int, int, str]:
    """(HTTP status, NiceHash code, message) of a NiceHash error answer, its shape checked."""
    body = response.json()
    assert set(body) == {"error_id", "errors"}, body
    uuid.UUID(body["error_id"], version=4)
    (error,) = body["errors"]
    assert set(error) == {"code", "message"}
    return response.status_code, error["code"], error["message"]


def decode(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return msgspec.json.decode(response.content)
