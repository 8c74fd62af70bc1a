"""Minute buckets, windows and bounded memory."""

from __future__ import annotations

from marketplace.core.stats import HISTORY_MINUTES, MINUTE_MS, RateWindow, Series
from marketplace.core.work import share_work
from stratum.core.shares import Algorithm

SHA, SCRYPT = Algorithm.SHA256D, Algorithm.SCRYPT


def test_share_work_is_the_exact_floor() -> None:
    assert share_work(1.0, SHA) == 2**32
    assert share_work(0.5, SHA) == 2**31
    assert share_work(0.001, SHA) == int(0.001 * 2**32)
    # scrypt's difficulty 1 is 65536 times easier (market.md "Work"); the first journals'
    # rule counted it as sha256d's.
    assert share_work(1.0, SCRYPT) == 2**16
    assert share_work(0.001, SCRYPT) == int(0.001 * 2**16)
    assert share_work(1.0, SCRYPT, rule=1) == 2**32


def test_buckets_points_and_speeds() -> None:
    series = Series()
    base = 100 * MINUTE_MS
    for i in range(60):  # one share of difficulty 1 per second for a minute
        series.add_share(
            time_ms=base + i * 1000, difficulty=1.0, work=2**32, accepted=True, reason=""
        )
    series.add_share(time_ms=base + 500, difficulty=2.0, work=2**33, accepted=False, reason="stale")
    series.add_money(time_ms=base + 10, spend_msat=7)
    points = series.points(since_ms=base, now_ms=base + 2 * MINUTE_MS - 1)
    assert [p.time_ms for p in points] == [base, base + MINUTE_MS]
    assert points[0].accepted_shares == 60
    assert points[0].accepted_speed_hs == 2**32  # 60 shares * 2**32 / 60 s
    assert points[0].rejected_speed_hs == 2 * 2**32 // 60
    assert points[0].rejected_shares == 1
    assert points[0].spend_msat == 7
    assert points[1].accepted_shares == 0
    assert series.accepted_speed(now_ms=base + MINUTE_MS, window_ms=MINUTE_MS) == 2**32
    assert series.rejected_recent(now_ms=base + MINUTE_MS) == {"stale": 1}
    assert series.rejected_shares == {"stale": 1}
    assert series.rejected_speed(now_ms=base + MINUTE_MS, window_ms=MINUTE_MS) == {
        "stale": 2 * 2**32 // 60
    }


def test_history_is_bounded_to_a_day() -> None:
    series = Series()
    for minute in range(3 * HISTORY_MINUTES):
        series.add_share(
            time_ms=minute * MINUTE_MS, difficulty=1.0, work=2**32, accepted=True, reason=""
        )
        assert len(series) <= HISTORY_MINUTES + 1
    assert series.accepted_shares == 3 * HISTORY_MINUTES
    # A share older than the kept day counts in totals only.
    series.add_share(time_ms=0, difficulty=1.0, work=2**32, accepted=False, reason="stale")
    assert series.rejected_shares == {"stale": 1}
    now = 3 * HISTORY_MINUTES * MINUTE_MS
    assert series.rejected_recent(now_ms=now) == {}
    assert len(series.points(since_ms=0, now_ms=now)) == HISTORY_MINUTES + 1


def test_out_of_order_minutes_are_kept_sorted() -> None:
    series = Series()
    series.add_share(time_ms=5 * MINUTE_MS, difficulty=1.0, work=2**32, accepted=True, reason="")
    series.add_share(time_ms=3 * MINUTE_MS, difficulty=1.0, work=2**32, accepted=True, reason="")
    points = series.points(since_ms=3 * MINUTE_MS, now_ms=5 * MINUTE_MS + 1000)
    assert [p.accepted_shares for p in points] == [1, 0, 1]


def test_rate_window_uses_the_start_estimate_until_shares_arrive() -> None:
    window = RateWindow(joined_ms=0, prior_hs=1000, window_ms=10_000)
    assert window.rate(5_000) == 1000
    window.add(time_ms=5_000, work=20_000)  # 20,000 hashes in the first 5 s: 4,000 H/s
    # Half the window observed (20,000 hashes) and half filled with the prior.
    assert window.rate(5_000) == (20_000 * 1000 + 1000 * 5_000) // 10_000
    assert window.rate(14_000) == 2000  # the share is in the window, prior gone
    assert window.rate(15_000) == 0  # it has left the window
