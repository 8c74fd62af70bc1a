"""Every injected fault (control.md, "Faults"), seen from the outside the way a user's program
sees it: the project's real CPU worker (``python -m workers``, its JSON log) against a real
``hashmarket serve --control``, and the client library against its API.

Synchronisation is by polling a condition under a deadline; the one absence shown (no job
during a stall) is watched over a bounded window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from marketplace.client import HTTP_ERROR, ApiError
from marketplace.testing import Market, Worker

from .test_e2e import wait_for as wait_every

#: The worker logs many events a second: look often.
wait_for = partial(wait_every, every=0.1)

FAST = {
    # About a share a second from one hashing process, and no job refresh of its own for the
    # length of a test: what the worker sees of jobs is what a test does.
    "start_difficulty": 0.0001,
    "min_difficulty": 0.00001,
    "target_share_interval": 1,
    "job_interval": 110,
}


def since(worker: Worker, mark: int, name: str) -> list[dict[str, Any]]:
    """The worker's events named ``name`` after its first ``mark`` events."""
    return [e for e in worker.events()[mark:] if e.get("event") == name]


def test_a_real_worker_meets_each_stratum_fault(hashmarket_factory: Callable[..., Market]) -> None:
    market = hashmarket_factory(**FAST)
    operator = market.operator
    buyer = market.buyer("buyer")
    order = buyer.client.create_order(
        algorithm="sha256d", type="standard", price="0.001", limit="0", amount="0.1"
    )
    worker = market.worker("seller.rig", log_level="debug")
    wait_for("accepted shares", lambda: len(worker.events("share.accepted")) >= 2)

    # Latency: every line we send is late, so every answer is.
    operator.set_fault("stratum", latency_ms=400)
    mark = len(worker.events())
    slow = wait_for(
        "slow answers",
        lambda: [e for e in since(worker, mark, "share.accepted")[1:] if e["rtt_ms"] >= 400][1:],
    )
    assert all(e["rtt_ms"] >= 400 for e in slow)
    operator.clear_faults()

    # Stale answers: the worker's shares are refused 21 stale, and nobody is charged for them.
    operator.set_fault("stratum", worker="seller.rig", reject_rate=1.0)
    mark = len(worker.events())
    wait_for("a stale answer", lambda: since(worker, mark, "share.rejected"))
    spent = buyer.client.get_order(order.id).spent
    mark = len(worker.events())
    stale = wait_for("three more", lambda: since(worker, mark, "share.rejected")[2:])
    assert {e["reason"] for e in stale} == {"stale"}
    assert buyer.client.get_order(order.id).spent == spent
    operator.clear_faults()
    wait_for("charges again", lambda: buyer.client.get_order(order.id).spent != spent)

    # Stall: a new block finds no new job on its way to the worker.
    operator.set_fault("stratum", stall=True)
    mark = len(worker.events())
    operator.new_block("sha256d")
    window = time.monotonic() + 1.5
    while time.monotonic() < window:
        assert not [e for e in since(worker, mark, "worker.job") if e["clean"]]
        time.sleep(0.1)
    operator.clear_faults()
    operator.new_block("sha256d")
    wait_for("the next block's job", lambda: [e for e in since(worker, mark, "worker.job")])

    # Junk: a line that is not JSON; the worker gives up on the connection and comes back.
    mark = len(worker.events())
    operator.set_fault("stratum", junk_rate=1.0)
    operator.new_block("sha256d")
    lost = wait_for("the junk line", lambda: since(worker, mark, "worker.disconnected"))
    assert "bad line from server" in lost[0]["error"]
    operator.clear_faults()
    wait_for("a reconnection", lambda: since(worker, mark, "worker.connected"))

    # Drop: the connection is closed after a second; the worker reconnects, and is dropped
    # again a second later.
    mark = len(worker.events())
    operator.set_fault("stratum", worker="seller.rig", drop_after_s=1)
    wait_for("two drops", lambda: since(worker, mark, "worker.disconnected")[1:], timeout=20)
    assert since(worker, mark, "worker.connected")
    operator.clear_faults()
    assert {e["reason"] for e in market.events("conn.closed")} >= {"dropped"}
    assert worker.running


def test_the_client_library_meets_the_api_faults(hashmarket: Market) -> None:
    operator = hashmarket.operator
    alice = hashmarket.buyer("alice")
    operator.set_fault("api", error_rate=1.0, seed=3)
    with pytest.raises(ApiError) as info:
        alice.client.balance()
    assert (info.value.code, info.value.data) == (HTTP_ERROR, {"status": 503})
    assert "503" in info.value.message
    operator.set_fault("api", rate_limit=2)  # replaces the 503s
    alice.client.balance()
    alice.client.balance()
    with pytest.raises(ApiError) as info:
        alice.client.balance()
    assert info.value.code == 4029
    assert info.value.data["retry_after_ms"] > 0
    assert [f.rate_limit for f in operator.list_faults()] == [2]
    operator.clear_faults()
    alice.client.balance()
