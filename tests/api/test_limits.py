"""Nonce store, token buckets and idempotency records: pure, with time passed in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.api.nonces import NonceStore
from marketplace.api.ratelimit import RateLimiter
from marketplace.core.idempotency import IdempotencyRecords, Recorded, params_digest


def test_nonce_remembered_through_the_window_then_forgotten() -> None:
    store = NonceStore(window_ms=60_000)
    store.add("k", b"n1", request_ms=1_000, now_ms=1_000)
    assert store.seen("k", b"n1", now_ms=1_000)
    assert not store.seen("other", b"n1", now_ms=1_000)
    # Up to and including the last instant the window would still accept X-Time = 1000.
    assert store.seen("k", b"n1", now_ms=61_000)
    assert not store.seen("k", b"n1", now_ms=61_001)
    assert len(store) == 0


def test_nonce_kept_from_the_later_of_request_and_server_time() -> None:
    store = NonceStore(window_ms=100)
    store.add("k", b"n", request_ms=5_000, now_ms=4_950)  # client clock ahead
    assert store.seen("k", b"n", now_ms=5_100)
    assert not store.seen("k", b"n", now_ms=5_101)


@given(
    events=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 500), st.integers(-200, 200)), max_size=60
    )
)
def test_nonce_never_forgotten_while_a_replay_could_pass_the_window(
    events: list[tuple[int, int, int]],
) -> None:
    window = 100
    store = NonceStore(window_ms=window)
    now = 0
    added: dict[bytes, int] = {}
    for nonce_no, step, skew in events:
        now += step
        nonce = str(nonce_no).encode()
        request_ms = now + skew
        for known, request in added.items():
            if abs(now - request) <= window:  # a replay now would pass the window check
                assert store.seen("k", known, now_ms=now)
        if abs(now - request_ms) <= window and not store.seen("k", nonce, now_ms=now):
            store.add("k", nonce, request_ms=request_ms, now_ms=now)
            added[nonce] = request_ms


def test_bucket_burst_then_rate() -> None:
    limiter = RateLimiter(rate_per_s=20, burst=40)
    assert all(limiter.take("k", now_ms=0) == 0 for _ in range(40))
    wait = limiter.take("k", now_ms=0)
    assert wait == 50  # one token every 50 ms
    assert limiter.take("k", now_ms=49) == 1
    assert limiter.take("k", now_ms=50) == 0
    assert limiter.take("other", now_ms=50) == 0  # buckets are per key
    with pytest.raises(ValueError, match="cost"):
        limiter.take("k", now_ms=50, cost=41)


@given(
    steps=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 5)), min_size=1, max_size=80),
    rate=st.integers(1, 50),
    burst=st.integers(5, 60),
)
def test_bucket_never_grants_more_than_burst_plus_refill(
    steps: list[tuple[int, int]], rate: int, burst: int
) -> None:
    limiter = RateLimiter(rate_per_s=rate, burst=burst)
    now = 0
    granted = 0
    for step, cost in steps:
        now += step
        wait = limiter.take("k", now_ms=now, cost=cost)
        if wait == 0:
            granted += cost
        else:
            assert wait > 0
            # After waiting as told, the same take passes.
            probe = RateLimiter(rate_per_s=rate, burst=burst)
            probe._buckets = dict(limiter._buckets)
            assert probe.take("k", now_ms=now + wait, cost=cost) == 0
            assert probe.take("k", now_ms=now + wait - 1, cost=0) == 0
        assert granted * 1000 <= burst * 1000 + now * rate


def test_idempotency_records_expire_and_prune() -> None:
    records = IdempotencyRecords(ttl_ms=1_000)
    first = Recorded("order.create", params_digest("order.create", b"{}"), b"{}", 0)
    records.put(("k", "r1", 0), first)
    assert records.get(("k", "r1", 0), now_ms=1_000) == first
    assert records.get(("k", "r1", 0), now_ms=1_001) is None
    assert records.get(("k", "r1", 1), now_ms=0) is None
    records.put(("k", "r2", 0), first._replace(time_ms=1_000))
    assert len(records) == 2  # r1 is exactly TTL old: kept
    records.put(("k", "r3", 0), first._replace(time_ms=1_500))
    assert len(records) == 2  # r1 pruned by r3's time, r2 kept
    records.drop_key("k")
    assert len(records) == 0


def test_params_digest_tells_calls_apart() -> None:
    assert params_digest("a", b"{}") != params_digest("b", b"{}")
    assert params_digest("a", b'{"x":1}') != params_digest("a", b'{"x":2}')
    assert params_digest("a", b'{"amount":"0.25"}') != params_digest("a", b'{"amount":"0.250"}')


def test_params_digest_ignores_how_the_same_params_were_serialised() -> None:
    one = params_digest("order.create", b'{"price":"0.002","amount":"0.01","limit":"1"}')
    assert one == params_digest(
        "order.create", b'{ "amount" : "0.01", "limit":"1","price":"0.002"}'
    )
    assert params_digest("x", b"not json") == params_digest("x", b"not json")
