"""Server-wide registries that every session of one listener shares.

Theory of operation
-------------------
A session is one connection, but three facts belong to the whole listener: which extranonce1
values live connections hold (``ExtranonceAllocator``: unique, so two miners never search the
same space, and given back on resume), which job ids were handed out (``JobIds``: unique across
connections, so a share is never checked against another connection's job), and which shares
were already submitted (``SubmittedShares``: a duplicate stays a duplicate across job ids and
across a reconnect that resumes the session). The driver creates one of each per listener and
injects them into every ``ServerSession``; nothing here knows about sockets or time beyond the
``now_ms`` it is given.
"""

from __future__ import annotations

from collections.abc import Callable


class ExtranonceAllocator:
    """Hands out extranonce1 values unique among live connections (shared by all sessions).

    ``prefix`` (settable) makes every fresh value begin with those bytes: a Stratum gateway owns
    a prefix, so values stay unique across the gateways of one market. A resumed session gets
    the value it asks for only under the prefix, or when ``admit`` says the market reserved it
    (a miner moving from another gateway)."""

    def __init__(self, *, size: int = 4, start: int = 0, prefix: bytes = b"") -> None:
        if not 1 <= size <= 8:
            raise ValueError("extranonce1 size must be 1..8 bytes")
        self.size = size
        self._start = start
        self._live: set[bytes] = set()
        #: Says whether a requested value outside the prefix may be handed out.
        self.admit: Callable[[bytes], bool] | None = None
        self.prefix = prefix

    @property
    def prefix(self) -> bytes:
        """The bytes every fresh value begins with (``b""``: none)."""
        return self._prefix

    @prefix.setter
    def prefix(self, prefix: bytes) -> None:
        if len(prefix) >= self.size:
            raise ValueError("the extranonce1 prefix must be shorter than the extranonce1")
        self._prefix = prefix
        self._space = 1 << (8 * (self.size - len(prefix)))
        self._next = self._start % self._space

    def __len__(self) -> int:
        return len(self._live)

    def allocate(self, requested: bytes | None = None) -> bytes:
        """A fresh value, or ``requested`` (session resume) if it has the right size, is free
        and is under the prefix (or admitted).

        Raises ``RuntimeError`` if every value is in use.
        """
        if (
            requested is not None
            and len(requested) == self.size
            and requested not in self._live
            and (
                requested.startswith(self._prefix)
                or (self.admit is not None and self.admit(requested))
            )
        ):
            self._live.add(requested)
            return requested
        width = self.size - len(self._prefix)
        for _ in range(min(self._space, len(self._live) + 1)):
            value = self._prefix + self._next.to_bytes(width, "big")
            self._next = (self._next + 1) % self._space
            if value not in self._live:
                self._live.add(value)
                return value
        raise RuntimeError("extranonce1 space exhausted")

    def release(self, value: bytes) -> None:
        """Give ``value`` back. Idempotent."""
        self._live.discard(value)


class JobIds:
    """Job ids shared by all of a server's sessions: unique across its connections, and (from a
    random start) unlikely to repeat an id of an earlier run. A miner that resumes its session
    and submits a share of a job from before the reconnect gets "stale", never a share checked
    against a different job that happens to have the same id."""

    def __init__(self, start: int = 1) -> None:
        self._next = start % 2**32

    def next(self) -> str:
        """The next id: eight hex digits, wrapping after 2**32."""
        value = self._next
        self._next = (value + 1) % 2**32
        return f"{value:08x}"


class SubmittedShares:
    """Which shares were already submitted, per template and extranonce1 (shared by all of a
    server's sessions).

    A share is the same work whatever job id it is submitted under: vardiff and
    ``suggest_difficulty`` re-send the current template under a new id, and a miner that
    resumes its session gets its old extranonce1 and the order's current template again. So
    the duplicate check keys on the header's fixed parts (template plus extranonce1), not on
    the job id: a session shares one set between the ids of one template, and when a
    connection closes its sets are parked here for ``retention_ms`` (at most ``max_parked``)
    for a resumed session to take over.
    """

    def __init__(self, *, retention_ms: int = 900_000, max_parked: int = 100_000) -> None:
        self.retention_ms = retention_ms
        self.max_parked = max_parked
        self._parked: dict[bytes, tuple[int, set[bytes]]] = {}  # oldest first

    def __len__(self) -> int:
        return len(self._parked)

    def claim(self, template: bytes, *, now_ms: int) -> set[bytes]:
        """The set for ``template`` (a parked one, or a new empty one)."""
        self._prune(now_ms)
        parked = self._parked.pop(template, None)
        return set() if parked is None else parked[1]

    def park(self, template: bytes, seen: set[bytes], *, now_ms: int) -> None:
        """Keep ``seen`` for ``template`` after its connection closed."""
        if not seen:
            return
        self._parked.pop(template, None)
        self._parked[template] = (now_ms, seen)
        self._prune(now_ms)

    def _prune(self, now_ms: int) -> None:
        parked = self._parked
        horizon = now_ms - self.retention_ms
        while parked:
            template, (since, _) = next(iter(parked.items()))
            if since > horizon and len(parked) <= self.max_parked:
                return
            del parked[template]
