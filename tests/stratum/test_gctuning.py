"""The serving processes' collector settings (stratum.gctuning)."""

from __future__ import annotations

import gc

from stratum.gctuning import YOUNG_THRESHOLD, tune_gc


def test_tune_gc_freezes_what_exists_and_raises_only_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG_THRESHOLD, before[1], before[2])
        # Collection still works: a cycle made now is found by a full collection.
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
