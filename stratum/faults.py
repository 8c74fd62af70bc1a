"""The seam through which a Stratum server misbehaves on purpose: injected faults.

A test of a miner or a proxy needs a pool that goes slow, drops connections, answers stale,
stops sending work or sends junk, on cue and repeatably (the marketplace's control.md).
``StratumServer.faults`` holds an object with these four questions, asked per connection at
the moment they matter; ``None`` (the default) injects nothing and costs nothing. The answers
(and their randomness) are the implementer's (``marketplace.control.faults``); dropping a
connection after a while needs no hook here: the implementer calls ``Connection.drop``.
"""

from __future__ import annotations

from typing import Final, Protocol

from stratum.core.jobs import MinerLink

#: What precedes a line when ``junk_before_line`` says so: not JSON, as a broken pool sends.
JUNK_LINE: Final = b"}{ injected fault: this line is not JSON\n"


class LinkFaults(Protocol):
    """Injected misbehaviour towards one connection's miner."""

    def latency_s(self, link: MinerLink) -> float:
        """How long every line sent to ``link`` is held back now (0: not at all)."""
        ...

    def junk_before_line(self, link: MinerLink) -> bool:
        """Whether the next line sent to ``link`` is preceded by ``JUNK_LINE``."""
        ...

    def reject_share(self, link: MinerLink) -> bool:
        """Whether ``link``'s next otherwise valid share is answered 21 stale (uncharged)."""
        ...

    def stalled(self, link: MinerLink) -> bool:
        """Whether new jobs for ``link`` are withheld, as a dead pool would."""
        ...
