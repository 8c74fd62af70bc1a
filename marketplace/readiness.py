"""Whether a node is ready to serve: the named checks ``GET /readyz`` answers.

Theory of operation
-------------------
A ``Readiness`` holds one entry per thing the node needs before it can serve (its journal
replayed, its Stratum listeners and its API up); each entry is either passing or names why
not. The assembly owns the object: it makes it with every check failing ("starting"), passes
each as it comes up, and hands the same object to the web routes, which answer 200 while every
check passes and 503 with the failing ones otherwise. Anything else that can make a node
unfit to serve adds a check of its own, either set (``fail(name, reason)``, ``passed(name)``)
or read when asked (``watch(name, probe)``: the store's health is one), and the routes need no
change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

#: A check read when asked: ``None`` when it passes, else why not.
Probe = Callable[[], str | None]


class Readiness:
    """Named checks, all of which must pass for the node to be ready (see the module doc)."""

    def __init__(self, checks: Iterable[str] = ()) -> None:
        self._failing: dict[str, str] = dict.fromkeys(checks, "starting")
        self._known: set[str] = set(self._failing)
        self._probes: dict[str, Probe] = {}

    def watch(self, name: str, probe: Probe) -> None:
        """The check ``name`` is ``probe()`` whenever readiness is asked (a state someone
        else owns, such as the store's health)."""
        self._known.add(name)
        self._probes[name] = probe

    def _failures(self) -> dict[str, str]:
        failing = dict(self._failing)
        for name, probe in self._probes.items():
            reason = probe()
            if reason is not None:
                failing[name] = reason
        return failing

    def passed(self, name: str) -> None:
        """The check ``name`` passes (made if new)."""
        self._known.add(name)
        self._failing.pop(name, None)

    def fail(self, name: str, reason: str) -> None:
        """The check ``name`` fails because of ``reason`` (made if new)."""
        self._known.add(name)
        self._failing[name] = reason

    @property
    def ready(self) -> bool:
        """Whether every check passes."""
        return not self._failures()

    def report(self) -> dict[str, str]:
        """Every check by name: ``"ok"`` or why it fails."""
        failing = self._failures()
        return {name: failing.get(name, "ok") for name in sorted(self._known)}
