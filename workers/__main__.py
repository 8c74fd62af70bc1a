"""``python -m workers``: the CPU miner."""

from workers.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
