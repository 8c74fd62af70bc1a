"""Run a module under cProfile, measuring the main thread's CPU time, only while asked.

    python bench/_profiled.py OUT MODULE [ARGS...]

runs ``python -m MODULE ARGS...`` with a profiler that records between SIGUSR1 (start) and
SIGUSR2 (stop), as often as they come, and writes the sum to OUT when the module exits. The
benchmarks signal it around their measured windows, so a profile holds the steady state only
(not the start, the connections' set-up or the shutdown). Its clock is cProfile's (wall time):
a CPU-time clock (``time.thread_time``) is a system call per function entry and exit, which
would distort the profile more than the machine's other load does.
"""

from __future__ import annotations

import cProfile
import runpy
import signal
import sys
from types import FrameType


def main() -> None:
    output, module, *rest = sys.argv[1:]
    profiler = cProfile.Profile()

    def start(signum: int, frame: FrameType | None) -> None:
        profiler.enable()

    def stop(signum: int, frame: FrameType | None) -> None:
        profiler.disable()

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = [module, *rest]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        profiler.disable()
        profiler.dump_stats(output)


if __name__ == "__main__":
    main()
