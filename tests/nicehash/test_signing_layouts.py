"""The three layouts NiceHash's servers accept, in the shared signing code and through the door
(in process, over the JSON-RPC door's own service): the organisation layout over the path and
query as sent, the same with them percent-decoded (NiceHash's Java demo), and the older layout
without organisation slots and without the header (the account is then the key's). Each is
accepted only where it applies, ``POST /rpc`` keeps its one layout, and a store that cannot
take writes is answered 503 in NiceHash's shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from marketplace.api.nicehash.door import LAYOUTS, NiceHashDoor, Reply
from marketplace.api.signing import (
    Layout,
    SignedTarget,
    signature,
    signing_message,
    signing_messages,
)
from marketplace.durability import StorageUnavailable
from tests.api.conftest import Harness, rpc_body

from .helpers import signed

VECTOR = json.loads((Path(__file__).parents[1] / "vectors" / "api-signing.json").read_text())[
    "vectors"
][0]


def test_nicehash_vector_in_every_layout_set() -> None:
    v = VECTOR
    target = SignedTarget(v["method"], v["path"], v["query"])
    kwargs: dict[str, Any] = {
        "key_id": v["key_id"],
        "time_ms": v["time"],
        "nonce": v["nonce"],
        "target": target,
        "body": None,
    }
    for layouts in (LAYOUTS, frozenset({Layout.ORGANIZATION})):
        messages = signing_messages(org_id=v["org_id"], layouts=layouts, **kwargs)
        assert signature(v["secret"], messages[0]) == v["signature"]
        assert len(messages) == 1  # nothing to decode in that query: one message
    # Without the header the organisation layouts do not apply, nor the older one where it is
    # not allowed.
    assert signing_messages(org_id=None, layouts=frozenset({Layout.ORGANIZATION}), **kwargs) == []
    assert signing_messages(org_id="x", layouts=frozenset({Layout.NO_ORGANIZATION}), **kwargs) == []
    older = signing_messages(org_id=None, layouts=LAYOUTS, **kwargs)
    assert older == [
        signing_message(
            key_id=v["key_id"],
            time_ms=v["time"],
            nonce=v["nonce"],
            org_id="",
            method="GET",
            path=v["path"],
            query=v["query"],
            body=None,
        )
    ]


def test_decoded_variant_is_java_s() -> None:
    target = SignedTarget("GET", "/main/api/v2/hashpower/myOrders", "market=%45U&op=L%54")
    messages = signing_messages(
        key_id="k",
        time_ms="1",
        nonce="n",
        org_id="o",
        target=target,
        body=None,
        layouts=LAYOUTS,
    )
    assert [m.split(b"\x00")[-1] for m in messages] == [b"market=%45U&op=L%54", b"market=EU&op=LT"]


async def _respond(
    door: NiceHashDoor, url: str, headers: dict[str, str], body: bytes | None, method: str = "GET"
) -> Reply:
    path, _, query = url.partition("?")
    return await door.respond(
        http=method,
        raw_path=path.encode(),
        query=query.encode(),
        headers={k.lower().encode(): v.encode() for k, v in headers.items()},
        body=body or b"",
        remote=None,
    )


@pytest.mark.parametrize(
    "layout", ["organization", "decoded", "older", "older-decoded", "older-with-header"]
)
async def test_each_layout_through_the_door(layout: str) -> None:
    h = Harness()
    creds = await h.bootstrap()
    door = NiceHashDoor(h.service)
    path, query = "/main/api/v2/hashpower/myOrders", "algorithm=SHA%32%35%36&op=LT&limit=5"
    decoded = "algorithm=SHA256&op=LT&limit=5"
    kw: dict[str, Any] = {"time_ms": h.clock(), "nonce": f"n-{layout}"}
    if layout == "decoded":
        kw["sign_query"] = decoded
    if layout.startswith("older"):
        kw["org"] = None
    if layout == "older-decoded":
        kw["sign_query"] = decoded
    url, headers, body = signed(creds, "GET", path, query, **kw)
    if layout == "older-with-header":
        headers["X-Organization-Id"] = creds.account_id  # signed without it, sent with it
    reply = await _respond(door, url, headers, body)
    if layout == "older-with-header":
        assert reply.status == 401
    else:
        assert reply.status == 200, reply
        assert json.loads(reply.body) == {"list": []}


async def test_rpc_keeps_its_one_layout() -> None:
    h = Harness()
    creds = await h.bootstrap()
    body = rpc_body("account.balance")
    _url, headers, data = signed(creds, "POST", "/rpc", org=None, data=body, time_ms=h.clock())
    answer = json.loads(
        await h.service.handle(
            body=body, headers={k.lower().encode(): v.encode() for k, v in headers.items()}
        )
        or b"{}"
    )
    assert answer["error"]["code"] == 4001
    assert data == body


class FailingExecutor:
    """An executor whose store cannot take writes."""

    async def execute(self, fn: Any) -> Any:
        raise StorageUnavailable(cause="disk full", retry_after_ms=2500)


async def test_storage_fault_is_503() -> None:
    h = Harness()
    creds = await h.bootstrap()
    await h.call(creds, "account.deposit", {"amount": "1"})
    created = await h.call(
        creds,
        "order.create",
        {
            "algorithm": "sha256d",
            "type": "standard",
            "price": "0.01",
            "limit": "1",
            "amount": "0.01",
        },
    )
    order_id = created["result"]["id"]
    h.service._executor = FailingExecutor()
    door = NiceHashDoor(h.service)
    url, headers, body = signed(
        creds,
        "POST",
        f"/main/api/v2/hashpower/order/{order_id}/refill",
        body={"amount": "0.01"},
        time_ms=h.clock(),
    )
    reply = await _respond(door, url, headers, body, method="POST")
    assert reply.status == 503
    assert reply.retry_after_s == 3
    assert json.loads(reply.body)["errors"] == [{"code": 503, "message": "Service unavailable"}]
    url, headers, body = signed(
        creds, "GET", f"/main/api/v2/hashpower/order/{order_id}", time_ms=h.clock(), nonce="read-1"
    )
    assert (await _respond(door, url, headers, body)).status == 200  # reads go on from memory
