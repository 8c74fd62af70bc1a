"""The work a share proves (market.md "Work"): d * 2**32 for sha256d and d * 2**16 for scrypt,
while a journal written under the first rule (d * 2**32 for scrypt too) replays to the
balances it had."""

from __future__ import annotations

from fractions import Fraction

from marketplace.core.events import ShareRecorded
from marketplace.core.fleet import Fleet
from marketplace.core.invariants import check_market
from marketplace.core.market import Market
from marketplace.core.model import FEE_ACCOUNT, Balance, MarketConfig, WorkerKey
from marketplace.core.work import LEGACY_WORK_RULE, WORK_RULE, hashes_per_diff1
from stratum.core.jobs import Share
from stratum.core.shares import Algorithm

SCRYPT = Algorithm.SCRYPT
T = 1_700_000_000_000
PRICE = 10**6  # msat per kH/s per day
KH = 10**3

# A scrypt market's journal as the code before the fix wrote it (recorded with that code):
# an account, a deposit, an order at PRICE with a 1e9 msat budget, three accepted shares of
# difficulty 0.5, 0.5 and 2.0, and a settlement. Under the first rule the shares were worth
# 3 * 2**32 * PRICE / (KH * 86400) msat.
RECORDED_EVENTS = [
    b"\x83\xa5event\xafaccount_created\xa7account\xa5buyer\xa7time_ms\xcf\x00\x00\x01\x8b\xcf\xe5h"
    b"\x00",
    b"\x84\xa5event\xa9deposited\xa7account\xa5buyer\xabamount_msat\xcf\x00\x00\x00\x17Hv\xe8\x00"
    b"\xa7time_ms\xcf\x00\x00\x01\x8b\xcf\xe5h\x00",
    b"\x8a\xa5event\xadorder_created\xa8order_id\xa8o-000001\xa7account\xa5buyer\xa9algorithm"
    b"\xa6scrypt\xa4type\xa8standard\xaaprice_msat\xce\x00\x0fB@\xa8limit_hs\x00\xabamount_msat"
    b"\xce;\x9a\xca\x00\xaaduration_s\xc0\xa7time_ms\xcf\x00\x00\x01\x8b\xcf\xe5h\x00",
    b"\x8a\xa5event\xa5share\xa7conn_id\x01\xa7account\xa6seller\xa6worker\xa3rig\xa9algorithm"
    b"\xa6scrypt\xa8order_id\xa8o-000001\xaadifficulty\xcb?\xe0\x00\x00\x00\x00\x00\x00\xa8accepted"
    b"\xc3\xa6reason\xc0\xa7time_ms\xcf\x00\x00\x01\x8b\xcf\xe5k\xe8",
    b"\x8a\xa5event\xa5share\xa7conn_id\x01\xa7account\xa6seller\xa6worker\xa3rig\xa9algorithm"
    b"\xa6scrypt\xa8order_id\xa8o-000001\xaadifficulty\xcb?\xe0\x00\x00\x00\x00\x00\x00\xa8accepted"
    b"\xc3\xa6reason\xc0\xa7time_ms\xcf\x00\x00\x01\x8b\xcf\xe5k\xe9",
    b"\x8a\xa5event\xa5share\xa7conn_id\x01\xa7account\xa6seller\xa6worker\xa3rig\xa9algorithm"
    b"\xa6scrypt\xa8order_id\xa8o-000001\xaadifficulty\xcb@\x00\x00\x00\x00\x00\x00\x00\xa8accepted"
    b"\xc3\xa6reason\xc0\xa7time_ms\xcf\x00\x00\x01\x8b\xcf\xe5k\xea",
    b"\x83\xa5event\xa7settled\xadsettlement_id\xa8s-000001\xa7time_ms\xcf\x00\x00\x01\x8b\xcf\xe5"
    b"\x8f\x10",
]
#: The balances that journal had when it was written (the fees on the fee account, whatever
#: its name now).
RECORDED_BALANCES = {
    "buyer": Balance(available_msat=99_000_000_000, escrowed_msat=850_869_192),
    "seller": Balance(available_msat=146_148_192, escrowed_msat=0),
    FEE_ACCOUNT: Balance(available_msat=2_982_616, escrowed_msat=0),
}


def test_hashes_per_difficulty_one() -> None:
    assert hashes_per_diff1(Algorithm.SHA256D) == 2**32
    assert hashes_per_diff1(SCRYPT) == 2**16
    assert hashes_per_diff1(SCRYPT, LEGACY_WORK_RULE) == 2**32


def test_a_journal_of_the_first_rule_replays_to_its_balances() -> None:
    market = Market(config=MarketConfig(faucet=True))
    for body in RECORDED_EVENTS:
        event = Market.decode_event(body)
        if isinstance(event, ShareRecorded):
            assert event.work_rule == LEGACY_WORK_RULE
        market.apply(event)
    check_market(market)
    assert {a: market.balance(a) for a in RECORDED_BALANCES} == RECORDED_BALANCES
    assert market.book.orders["o-000001"].spent_msat == int(
        3 * 2**32 * Fraction(PRICE, KH * 86_400)
    )


def test_a_new_scrypt_share_is_worth_d_times_2_16_and_replays_so() -> None:
    market = Market(config=MarketConfig(faucet=True))
    for body in RECORDED_EVENTS[:3]:
        market.apply(Market.decode_event(body))
    for i, difficulty in enumerate([0.5, 0.5, 2.0]):
        market.record_share(
            Share(
                conn_id=1,
                account="seller",
                worker="rig",
                algorithm=SCRYPT,
                source="o-000001",
                difficulty=difficulty,
                accepted=True,
                reason=None,
                time_ms=T + 1000 + i,
            ),
            order_id="o-000001",
        )
    market.settle(now_ms=T + 10_000)
    events = market.drain_events()
    assert all(e.work_rule == WORK_RULE for e in events if isinstance(e, ShareRecorded))
    spent = int(3 * 2**16 * Fraction(PRICE, KH * 86_400))
    assert spent == 2275
    assert market.book.orders["o-000001"].spent_msat == spent
    assert market.balance("buyer").escrowed_msat == 10**9 - spent
    # The order's statistics count the same work: 3 * 2**16 hashes.
    buckets = market.book.order_stats["o-000001"].export_state().buckets
    assert sum(b.accepted_work for b in buckets) == 3 * 2**16
    replica = Market(config=MarketConfig(faucet=True))
    for body in RECORDED_EVENTS[:3]:
        replica.apply(Market.decode_event(body))
    for event in events:
        replica.apply(Market.decode_event(Market.encode_event(event)))
    assert replica.encode_state() == market.encode_state()
    check_market(replica)


def test_the_fleet_estimates_scrypt_workers_with_the_new_rule() -> None:
    fleet = Fleet(config=MarketConfig())
    key = WorkerKey(1, "seller", "rig", SCRYPT)
    fleet.worker_joined(worker=key, estimate_hs=1, now_ms=0)
    for i in range(60):
        fleet.share_accepted(worker=key, difficulty=1.0, time_ms=i * 1000)
    # One difficulty-1 share a second is 65536 H/s of scrypt (the window holds 60 of them).
    assert fleet.worker_speed(key, now_ms=59_999) == 2**16
