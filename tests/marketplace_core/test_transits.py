"""Workers in transit (pure): a reconnecting worker is found again by its session id, gets the
layout reserved for it, and loses its place only after its deadline."""

from __future__ import annotations

from marketplace.core.model import WorkerKey
from marketplace.core.transits import Transits
from stratum.core.jobs import Layout
from stratum.core.shares import Algorithm

KEY = WorkerKey(7, "seller", "cpu", Algorithm.SHA256D)
LAYOUT = Layout(extranonce1=bytes.fromhex("f00000010003"), extranonce2_size=2)
SESSION = bytes.fromhex("0a0b0c0d")


def test_a_worker_resumes_its_session_with_the_layout_reserved_for_it() -> None:
    transits = Transits()
    transits.begin(SESSION, key=KEY, order_id="o-000002", layout=LAYOUT, until_ms=5_000)
    assert transits.holds(KEY, SESSION)
    assert not transits.holds(KEY, b"other")
    assert transits.layout_for(b"other") is None
    assert transits.layout_for(SESSION) == LAYOUT
    assert transits.given(SESSION) == LAYOUT
    assert transits.given(SESSION) is None
    transit = transits.of(KEY)
    assert transit is not None
    assert transit.order_id == "o-000002"
    assert transits.take(SESSION) is transit
    assert len(transits) == 0
    assert transits.of(KEY) is None


def test_a_worker_that_does_not_come_back_loses_its_place_at_its_deadline() -> None:
    transits = Transits()
    transits.begin(SESSION, key=KEY, order_id=None, layout=None, until_ms=5_000)
    assert transits.layout_for(SESSION) is None  # back to its own layout: nothing to give
    assert transits.next_deadline_ms() == 5_000
    assert transits.expired(4_999) == []
    (late,) = transits.expired(5_000)
    assert late.key == KEY
    assert transits.take(SESSION) is None
    assert transits.next_deadline_ms() is None
