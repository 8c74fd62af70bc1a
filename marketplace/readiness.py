"""Whether a node is ready to serve: the named checks ``GET /readyz`` answers.

Theory of operation
-------------------
A ``Readiness`` holds one entry per thing the node needs before it can serve (its journal
replayed, its Stratum listeners and its API up); each entry is either passing or names why
not. The assembly owns the object: it makes it with every check failing ("starting"), passes
each as it comes up, and hands the same object to the web routes, which answer 200 while every
check passes and 503 with the failing ones otherwise. Anything else that can make a node
unfit to serve (a failing store, say) adds a check of its own with ``fail(name, reason)`` and
passes it again when it recovers: the routes need no change.
"""

from __future__ import annotations

from collections.abc import Iterable


class Readiness:
    """Named checks, all of which must pass for the node to be ready (see the module doc)."""

    def __init__(self, checks: Iterable[str] = ()) -> None:
        self._failing: dict[str, str] = dict.fromkeys(checks, "starting")
        self._known: set[str] = set(self._failing)

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
        return not self._failing

    def report(self) -> dict[str, str]:
        """Every check by name: ``"ok"`` or why it fails."""
        return {name: self._failing.get(name, "ok") for name in sorted(self._known)}
