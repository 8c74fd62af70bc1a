"""The operator methods of ``serve --control`` on an in-process node, through the client
library: scopes, market time, blocks, workers, rules (control.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from marketplace.api.admin_wire import PoolFault
from marketplace.assembly import Node
from marketplace.client import ApiError, AsyncMarketClient, Credentials
from marketplace.core.key_events import OPERATOR_ACCOUNT
from stratum.core.shares import Algorithm

from .miner import RawMiner
from .test_assembly import serving, settings

DAY_S = 86_400


def url(node: Node) -> str:
    return f"http://127.0.0.1:{node.api_port}"


@asynccontextmanager
async def controlled(
    tmp_path: Path, *, control: bool = True, **overrides: Any
) -> AsyncIterator[tuple[Node, AsyncMarketClient, AsyncMarketClient]]:
    """A node (``--control`` unless told otherwise), an operator client and a buyer client."""
    async with serving(settings(tmp_path / "m.db", control=control, **overrides)) as node:
        made = await node.core.issue_operator_key()
        core = node.core
        # A restart of the same database: the buyer has a key already, so mint another.
        sign_up = core.recover_key if core.keyring.has_account("buyer") else core.create_account
        buyer = await sign_up("buyer")
        operator = AsyncMarketClient(
            url(node), credentials=Credentials(OPERATOR_ACCOUNT, made.key_id, made.secret)
        )
        client = AsyncMarketClient(url(node), credentials=Credentials(*buyer))
        async with operator, client:
            yield node, operator, client


async def miner(node: Node, username: str, algorithm: Algorithm = Algorithm.SHA256D) -> RawMiner:
    stream = await trio.open_tcp_stream("127.0.0.1", node.stratum_ports[algorithm])
    raw = RawMiner(stream, timeout=10)
    await raw.login(username)
    return raw


async def test_without_control_every_admin_method_is_not_found(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with controlled(tmp_path, control=False) as (_node, operator, buyer):
            for client in (operator, buyer):
                with pytest.raises(ApiError) as info:
                    await client.advance(60)
                assert info.value.code == -32601
                with pytest.raises(ApiError) as info:
                    await client.list_faults()
                assert info.value.code == -32601


async def test_scopes_operator_keys_run_admin_and_buyer_keys_do_not(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with controlled(tmp_path) as (_node, operator, buyer):
            with pytest.raises(ApiError) as info:
                await buyer.advance(60)
            assert (info.value.code, info.value.data) == (4003, {"scope": "operator"})
            with pytest.raises(ApiError) as info:
                await buyer.connected_workers()
            assert info.value.code == 4003
            with pytest.raises(ApiError) as info:
                await operator.balance()
            assert info.value.code == 4003
            assert await operator.list_faults() == []
            assert (await operator.market_info()).markets  # public methods are open to it


async def test_a_day_passes_signing_stays_on_the_wall_clock_and_a_restart_keeps_it(
    tmp_path: Path,
) -> None:
    with trio.fail_after(30):
        async with controlled(tmp_path) as (node, operator, buyer):
            before = await buyer.market_time()
            started = trio.current_time()
            reached = await operator.advance(DAY_S)
            assert trio.current_time() - started < 1.0
            assert reached >= before + DAY_S * 1000
            wall = await buyer.server_time()
            assert await buyer.market_time() - wall >= DAY_S * 1000 - 1000
            # Signed with the wall clock (as every client signs), a day later: accepted, and
            # the market's objects carry market time.
            await buyer.deposit("1")
            order = await buyer.create_order(
                algorithm="sha256d", type="standard", price="0.001", limit="0", amount="0.01"
            )
            assert order.created_ms >= reached
            offset = node.core.market_time.offset_ms
        # A restart (a new process's clock) keeps the market time.
        async with controlled(tmp_path) as (node, _operator, buyer):
            assert node.core.market_time.offset_ms == offset
            assert await buyer.market_time() >= reached
            assert (await buyer.get_order(order.id)).created_ms == order.created_ms


async def test_a_repeated_advance_with_the_same_request_id_advances_once(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with controlled(tmp_path) as (node, operator, _buyer):
            first = await operator.advance(3600, request_id="once")
            again = await operator.advance(3600, request_id="once")
            assert again == first
            assert node.core.market_time.offset_ms < 3600_000 + 60_000
            with pytest.raises(ApiError) as info:
                await operator.advance(60, request_id="once")
            assert info.value.code == -32600


async def test_bad_params_are_refused_with_what_to_fix(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with controlled(tmp_path) as (_node, operator, _buyer):
            for call in (
                operator.advance(0),
                operator.advance(400 * DAY_S + 1),
                operator.set_difficulty("seller.rig", -1.0),
                operator.set_rules("sha256d"),
                operator.set_rules("sha256d", fee_bps=10_001),
                operator.set_rules("sha256d", price_down_step="1.5"),
            ):
                with pytest.raises(ApiError) as info:
                    await call
                assert info.value.code == -32602, info.value
            with pytest.raises(ApiError) as info:
                await operator.kick("nobody.here")
            assert info.value.code == 4040
            with pytest.raises(ValueError, match="reject_rate"):
                await operator.set_fault("pool", reject_rate=0.5)
            with pytest.raises(ValueError, match="reject_rate"):
                await operator.set_fault("api", reject_rate=0.5)
            assert await operator.list_faults() == []


async def test_blocks_and_the_operators_hands_on_workers(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with controlled(tmp_path) as (node, operator, _buyer):
            rig = await miner(node, "seller.rig")
            first = rig.latest
            block = await operator.new_block("sha256d")
            job = await rig.pump()
            assert job.clean_jobs
            assert job.params[1] != first.params[1]  # a new previous block hash
            assert block.height == node.bridges[0].chain.tip.height
            assert block.jobs_pushed >= 1
            (listed,) = await operator.connected_workers("sha256d")
            assert listed.name == "seller.rig"
            assert listed.extranonce1 == rig.extranonce1
            assert listed.shares == {"accepted": 0}
            assert listed.version_mask == "00000000"
            assert listed.unit == "MH"
            assert await operator.connected_workers("scrypt") == []
            assert await rig.submit("seller.rig") is True
            (listed,) = await operator.connected_workers()
            assert listed.shares == {"accepted": 1}

            done = await operator.message("seller.rig", "hello from the operator")
            assert (done.worker, done.conn_id) == ("seller.rig", listed.conn_id)
            await operator.set_difficulty(f"conn:{listed.conn_id}", 0.5)
            seen: list[dict[str, Any]] = []
            while len(seen) < 3:
                seen.append(await rig._read_line())
            methods = [m.get("method") for m in seen]
            assert methods == ["client.show_message", "mining.set_difficulty", "mining.notify"]
            assert seen[0]["params"] == ["hello from the operator"]
            assert seen[1]["params"] == [0.5]

            # Two connections under one name: name one of them by its connection.
            twin = await miner(node, "seller.rig")
            with pytest.raises(ApiError) as info:
                await operator.kick("seller.rig")
            assert info.value.code == -32602
            assert "conn:" in info.value.message
            twin_id = max(w.conn_id for w in await operator.connected_workers())
            await operator.reconnect(f"conn:{twin_id}", wait_s=3)
            told = await twin._read_line()
            assert told["method"] == "client.reconnect"
            assert told["params"] == ["127.0.0.1", node.stratum_ports[Algorithm.SHA256D], 3]
            with pytest.raises(EOFError):
                await twin._read_line()
            await operator.kick("seller.rig")
            with pytest.raises(EOFError):
                await rig.pump()


async def test_rules_change_from_now_on_and_are_journaled(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with controlled(tmp_path) as (_node, operator, buyer):
            market = await operator.set_rules(
                "sha256d", min_price="0.002", price_down_step="0.05", price_down_interval_s=60
            )
            assert (market.min_price, market.price_down_step_bps) == ("0.00200000", 500)
            assert market.price_down_interval_s == 60
            await buyer.deposit("1")
            with pytest.raises(ApiError) as info:
                await buyer.create_order(
                    algorithm="sha256d", type="standard", price="0.001", limit="0", amount="0.01"
                )
            assert info.value.code == 4220
        async with controlled(tmp_path) as (_node, _operator, buyer):
            info_after = await buyer.market_info()
            sha = next(m for m in info_after.markets if m.algorithm == "sha256d")
            assert (sha.min_price, sha.price_down_interval_s) == ("0.00200000", 60)


async def test_pool_faults_go_through_the_operator_api(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with controlled(tmp_path) as (node, operator, _buyer):
            assert node.upstreams is not None
            forwarding = node.upstreams.forwarding
            listed = await operator.set_fault("pool", algorithm="scrypt", latency_ms=50)
            assert listed == [PoolFault(algorithm=Algorithm.SCRYPT, latency_ms=50)]
            assert forwarding.delay is not None
            assert await operator.list_faults() == listed
            assert await operator.clear_faults() == []
            assert forwarding.delay is None
