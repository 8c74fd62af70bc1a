"""Which gateway share ids the market took (``core.gateway_marks``): each once, in any order,
through replay and snapshots."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from marketplace.core.gateway_marks import MAX_INCARNATIONS, GatewayMarks, SharesTaken

IDS = {"gateway": "g", "incarnation": "i"}


def test_untaken_offsets_and_merged_ranges() -> None:
    marks = GatewayMarks()
    assert marks.untaken(**IDS, first=0, count=3) == [0, 1, 2]
    marks.take(**IDS, first=0, count=3)
    marks.take(**IDS, first=10, count=2)  # out of order: a later batch recorded first
    assert marks.untaken(**IDS, first=0, count=3) == []
    assert marks.untaken(**IDS, first=2, count=10) == [1, 2, 3, 4, 5, 6, 7]
    marks.take(**IDS, first=3, count=7)
    assert marks.export_state().taken == [("g/i", [(0, 11)])]
    assert marks.untaken(gateway="g", incarnation="other", first=0, count=1) == [0]
    assert [type(e) for e in marks.drain_events()] == [SharesTaken] * 3


def test_old_incarnations_are_forgotten() -> None:
    marks = GatewayMarks()
    for n in range(MAX_INCARNATIONS + 1):
        marks.take(gateway="g", incarnation=str(n), first=0, count=1)
    assert marks.untaken(gateway="g", incarnation="0", first=0, count=1) == [0]
    assert marks.untaken(gateway="g", incarnation="1", first=0, count=1) == []


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(1, 20)), max_size=30))
def test_taken_is_the_union_of_batches_through_replay_and_snapshot(
    batches: list[tuple[int, int]],
) -> None:
    marks = GatewayMarks()
    model: set[int] = set()
    for first, count in batches:
        marks.take(**IDS, first=first, count=count)
        model.update(range(first, first + count))
    expected = [i for i in range(250) if i not in model]
    assert marks.untaken(**IDS, first=0, count=250) == expected
    replica = GatewayMarks()
    for event in marks.drain_events():
        replica.apply(event)
    restored = GatewayMarks()
    restored.import_state(restored.decode_state(marks.encode_state()))
    for other in (replica, restored):
        assert other.untaken(**IDS, first=0, count=250) == expected
        assert other.export_state() == marks.export_state()
