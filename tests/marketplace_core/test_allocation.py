"""The allocation rule as a pure function: cases and properties."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.core.allocation import OrderSlot, allocate, check_allocation

Q = OrderSlot


def run(
    queue: list[OrderSlot],
    speed: dict[str, int],
    holdings: dict[str, list[str]] | None = None,
    idle: list[str] | None = None,
) -> tuple[dict[str, list[str]], list[str]]:
    holdings = holdings or {}
    if idle is None:
        held = {w for ws in holdings.values() for w in ws}
        idle = [w for w in speed if w not in held]
    result = allocate(queue=queue, holdings=holdings, idle=idle, speed=speed)
    assert check_allocation(queue=queue, held=result.held, idle=result.idle, speed=speed) == []
    return result.held, result.idle


def test_unlimited_order_takes_everything() -> None:
    held, idle = run([Q("a", 0), Q("b", 0)], {"w1": 5, "w2": 5})
    assert held == {"a": ["w1", "w2"], "b": []}
    assert idle == []


def test_queue_order_and_limits_with_one_worker_overshoot() -> None:
    speed = {f"w{i}": 10 for i in range(6)}
    held, idle = run([Q("fixed", 15), Q("high", 20), Q("low", 0)], speed)
    # fixed takes w0 (10 < 15) and w1 (20, overshoot by one worker), high takes two, low the rest.
    assert held == {"fixed": ["w0", "w1"], "high": ["w2", "w3"], "low": ["w4", "w5"]}
    assert idle == []


def test_workers_beyond_every_limit_stay_idle() -> None:
    held, idle = run([Q("a", 10)], {"w1": 10, "w2": 10, "w3": 10})
    assert held == {"a": ["w1"]}
    assert idle == ["w2", "w3"]


def test_stickiness_keeps_current_workers() -> None:
    speed = {"w1": 10, "w2": 10, "w3": 10}
    # b holds w3 and w1 while a holds nothing but wants 10: a takes the idle one first.
    held, idle = run([Q("a", 10), Q("b", 20)], speed, {"b": ["w3", "w1"]}, ["w2"])
    assert held == {"a": ["w2"], "b": ["w3", "w1"]}
    assert idle == []


def test_higher_order_takes_from_the_lowest_order_last_assigned_first() -> None:
    speed = {w: 10 for w in ["w1", "w2", "w3", "w4"]}
    holdings = {"mid": ["w1", "w2"], "low": ["w3", "w4"]}
    held, _idle = run([Q("new", 10), Q("mid", 20), Q("low", 0)], speed, holdings, [])
    assert held == {"new": ["w4"], "mid": ["w1", "w2"], "low": ["w3"]}


def test_ended_orders_release_their_workers_to_the_queue() -> None:
    speed = {"w1": 10, "w2": 10}
    held, idle = run([Q("a", 10)], speed, {"gone": ["w1", "w2"]}, [])
    assert held == {"a": ["w1"]}
    assert idle == ["w2"]


def test_order_over_its_limit_gives_back_the_excess() -> None:
    speed = {"w1": 10, "w2": 10, "w3": 10}
    held, _idle = run([Q("a", 15), Q("b", 10)], speed, {"a": ["w1", "w2", "w3"]}, [])
    assert held == {"a": ["w1", "w2"], "b": ["w3"]}


def test_no_moves_when_nothing_changed() -> None:
    speed = {f"w{i}": 3 + i for i in range(10)}
    queue = [Q("a", 12), Q("b", 7), Q("c", 0)]
    first = allocate(queue=queue, holdings={}, idle=list(speed), speed=speed)
    again = allocate(queue=queue, holdings=first.held, idle=first.idle, speed=speed)
    assert again.held == first.held
    assert again.idle == first.idle


def test_check_allocation_names_violations() -> None:
    speed = {"w1": 10, "w2": 10, "w3": 10}
    queue = [Q("a", 25), Q("b", 0)]
    problems = check_allocation(
        queue=queue, held={"a": ["w1"], "b": ["w2"]}, idle=["w3"], speed=speed
    )
    assert any("higher-priority a" in p for p in problems)
    assert any("idle" in p for p in problems)
    over = check_allocation(queue=[Q("a", 5)], held={"a": ["w1", "w2"]}, idle=[], speed=speed)
    assert any("overshoots" in p for p in over)
    twice = check_allocation(queue=[Q("a", 0)], held={"a": ["w1", "w1"]}, idle=[], speed=speed)
    assert any("twice" in p for p in twice)
    stray = check_allocation(queue=[], held={"x": ["w1"]}, idle=[], speed=speed)
    assert any("not in the queue" in p for p in stray)


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[list[OrderSlot], dict[str, int], dict[str, list[str]], list[str]]:
    n_workers = draw(st.integers(0, 25))
    workers = [f"w{i}" for i in range(n_workers)]
    speed = {w: draw(st.integers(0, 50)) for w in workers}
    n_orders = draw(st.integers(0, 8))
    queue = [Q(f"o{i}", draw(st.sampled_from([0, 5, 10, 20, 40, 80]))) for i in range(n_orders)]
    owners = [*(slot.order_id for slot in queue), "ended", None]
    holdings: dict[str, list[str]] = {}
    idle = []
    for w in workers:
        owner = draw(st.sampled_from(owners))
        if owner is None:
            idle.append(w)
        else:
            holdings.setdefault(owner, []).append(w)
    return queue, speed, holdings, idle


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_allocation_obeys_the_rule_from_any_start(
    scenario: tuple[list[OrderSlot], dict[str, int], dict[str, list[str]], list[str]],
) -> None:
    queue, speed, holdings, idle = scenario
    result = allocate(queue=queue, holdings=holdings, idle=idle, speed=speed)
    assert check_allocation(queue=queue, held=result.held, idle=result.idle, speed=speed) == []
    placed = sorted([*result.idle, *(w for ws in result.held.values() for w in ws)])
    assert placed == sorted(speed)
    # Stable: a second pass over its own answer moves nothing.
    again = allocate(queue=queue, holdings=result.held, idle=result.idle, speed=speed)
    assert again.held == result.held
    assert again.idle == result.idle
    # Sticky: a worker whose order is queued and was not over its limit keeps it, unless a
    # higher order took it. At least: an order alone in the queue keeps its old workers while
    # they do not reach its limit.
    if len(queue) == 1 and queue[0].limit_hs == 0:
        assert set(holdings.get(queue[0].order_id, [])) <= set(result.held[queue[0].order_id])
