"""An order's upstream as the proxy sees it (pure): status, slots and layouts, mirrored jobs,
where a share goes, and the dead time behind the placeholder rule."""

from __future__ import annotations

import pytest

from marketplace.core.relay import (
    HOUR_MS,
    REJECT_STREAK,
    Relay,
    RelayError,
    RelayStatus,
)
from stratum.core.jobs import Share
from stratum.core.messages import NotifyParams
from stratum.core.shares import Algorithm, target_for

SHA = Algorithm.SHA256D
T0 = 1_700_000_000_000
E = "f0000001"


def notify(job_id: str = "pj1", *, clean: bool = True) -> NotifyParams:
    return NotifyParams(
        job_id,
        "ab" * 32,
        "01" * 20,
        "02" * 20,
        ("d1" * 32,),
        "20000000",
        "1d00ffff",
        "6b0afc41",
        clean,
    )


def up(relay: Relay, *, difficulty: float = 1.0, now_ms: int = T0) -> None:
    relay.begin()
    relay.subscribed(extranonce1=E, extranonce2_size=8)
    relay.version_rolling(0x00FFE000)
    relay.set_difficulty(difficulty)
    relay.notified(notify(), now_ms=now_ms)


def share(relay: Relay, *, hash_value: int, seq: int | None = None, slot: str = "0000") -> Share:
    assert relay.current is not None
    return Share(
        conn_id=1,
        account="s",
        worker="w",
        algorithm=SHA,
        source=relay.order_id,
        difficulty=0.001,
        accepted=True,
        reason=None,
        time_ms=T0,
        hash_hex=f"{hash_value:064x}",
        job_seq=relay.current.seq if seq is None else seq,
        extranonce1=E + slot,
        extranonce2="00112233aabbccdd"[:12],
        ntime="6b0afc41",
        nonce="01020304",
        version_bits="00002000",
    )


def make() -> Relay:
    return Relay(order_id="o-000001", algorithm=SHA, created_ms=T0, now_ms=T0)


def test_status_follows_the_sessions() -> None:
    relay = make()
    assert relay.status is RelayStatus.CONNECTING
    assert relay.view().difficulty is None
    up(relay, difficulty=2.0, now_ms=T0 + 5)
    assert relay.alive
    assert relay.since_ms == T0 + 5
    assert relay.view().difficulty == 2.0
    assert relay.fail("the pool closed the connection", now_ms=T0 + 9) is True
    assert relay.status is RelayStatus.DEAD
    assert relay.current is None
    assert relay.view().last_error == "the pool closed the connection"
    # A failed first attempt is dead too (proxy.md: a failed authorize).
    other = make()
    assert other.fail("authorize refused: [24, 'Unauthorized worker']", now_ms=T0) is False
    assert other.status is RelayStatus.DEAD


def test_a_layout_no_worker_can_use_is_refused() -> None:
    relay = make()
    relay.begin()
    with pytest.raises(RelayError, match=r"extranonce2_size 3 is too small \(min 4\)"):
        relay.subscribed(extranonce1=E, extranonce2_size=3)
    with pytest.raises(RelayError, match="not hex"):
        relay.subscribed(extranonce1="zz", extranonce2_size=4)


def test_slots_give_each_worker_its_own_layout() -> None:
    relay = make()
    up(relay)
    a, b = relay.assign("a"), relay.assign("b")
    assert a.extranonce1 == bytes.fromhex(E + "0000")
    assert b.extranonce1 == bytes.fromhex(E + "0001")
    assert a.extranonce2_size == 6
    assert a.version_mask == 0x00FFE000
    assert relay.assign("a") == a  # its own slot again
    relay.release("a")
    # Round-robin: a slot just given back is not at once reused.
    assert relay.assign("c").extranonce1.endswith(bytes.fromhex("0002"))
    relay.rekey("b", "b2")
    assert relay.layout_of("b2") == b
    assert relay.layout_of("b") is None
    assert sorted(map(str, relay.holders())) == ["b2", "c"]
    # The pool moves us: same slots, its new extranonce, with the next job.
    relay.set_extranonce(extranonce1="abcdef01", extranonce2_size=10)
    assert relay.take_relayout()
    assert not relay.take_relayout()
    assert relay.assign("b2").extranonce1 == bytes.fromhex("abcdef01" + "0001")
    assert relay.assign("b2").extranonce2_size == 8


def test_a_share_meeting_the_pools_target_is_forwarded_as_slot_and_extranonce2() -> None:
    relay = make()
    up(relay, difficulty=1.0)
    target = target_for(SHA, 1.0)
    route = relay.route(share(relay, hash_value=target, slot="0007"))
    assert route.billable
    assert route.forward is not None
    forward = route.forward
    assert (forward.job_id, forward.extranonce2) == ("pj1", "0007" + "00112233aabb")
    assert (forward.ntime, forward.nonce, forward.version_bits) == (
        "6b0afc41",
        "01020304",
        "00002000",
    )
    # Above the pool's target: charged (our difficulty), not forwarded.
    assert relay.route(share(relay, hash_value=target + 1)) == (True, None)
    # The difficulty a job was mirrored with counts, not the one set after it.
    relay.set_difficulty(1000.0)
    assert relay.route(share(relay, hash_value=target)).forward is not None
    relay.notified(notify("pj2", clean=False), now_ms=T0)
    assert relay.route(share(relay, hash_value=target)).forward is None


def test_only_the_live_sessions_jobs_are_billable() -> None:
    relay = make()
    up(relay)
    old = share(relay, hash_value=1)
    relay.fail("lost", now_ms=T0 + 1)
    assert relay.route(old) == (False, None)  # dead: charged nothing
    up(relay, now_ms=T0 + 2)
    assert relay.route(old) == (False, None)  # a job of the session before
    assert relay.route(share(relay, hash_value=1)).billable
    relay.set_extranonce(extranonce1="abcdef01", extranonce2_size=8)
    relay.notified(notify("pj9"), now_ms=T0 + 3)
    assert relay.route(share(relay, hash_value=1, seq=relay.current.seq - 1)) == (False, None)  # type: ignore[union-attr]


def test_a_relay_never_reuses_another_relays_job_seqs() -> None:
    first = Relay(order_id="o", algorithm=SHA, created_ms=T0, now_ms=T0, first_seq=1 << 32)
    second = Relay(order_id="o", algorithm=SHA, created_ms=T0, now_ms=T0, first_seq=2 << 32)
    up(first)
    up(second)
    assert first.current is not None
    assert second.current is not None
    assert first.current.seq != second.current.seq
    assert second.route(share(first, hash_value=1)) == (False, None)


def test_a_pool_that_refuses_every_share_is_given_up() -> None:
    relay = make()
    up(relay)
    for _ in range(REJECT_STREAK - 1):
        assert relay.answered(accepted=False, reason="[23, 'Low difficulty share']") is None
    relay.answered(accepted=True, reason=None)
    for _ in range(REJECT_STREAK - 1):
        assert relay.answered(accepted=False, reason="x") is None
    fatal = relay.answered(accepted=False, reason="[23, 'Low difficulty share']")
    assert fatal is not None
    assert "rejected 20 shares in a row" in fatal


def test_the_placeholder_rule_counts_dead_time_per_hour_of_the_orders_life() -> None:
    relay = make()  # connecting from T0: not alive counts
    assert relay.cancel_reason(T0 + HOUR_MS // 2) is None
    reason = relay.cancel_reason(T0 + HOUR_MS // 2 + 1)
    assert reason is not None
    assert "first hour" in reason
    # Alive from minute 20 to minute 50, dead after: 20 + 10 = 30 minutes, not more.
    relay = make()
    up(relay, now_ms=T0 + 20 * 60_000)
    relay.fail("the pool closed the connection", now_ms=T0 + 50 * 60_000)
    assert relay.cancel_reason(T0 + HOUR_MS - 1) is None
    # The next hour starts afresh: dead from its start, more than 30 minutes into it.
    assert relay.cancel_reason(T0 + HOUR_MS + 30 * 60_000) is None
    reason = relay.cancel_reason(T0 + HOUR_MS + 30 * 60_000 + 1)
    assert reason is not None
    assert "hour 2" in reason
    assert "the pool closed the connection" in reason
