"""The one way state changes in the marketplace: commands emit events, events change state.

Theory of operation
-------------------
Every durable component (the market, the API key ring) keeps its state in memory and changes
it only in ``apply(event)``. A command method validates its arguments against the current state
(raising a ``MarketError`` and changing nothing when they are bad), then calls ``_emit(event)``,
which applies the event at once and queues it in the outbox. The driver that ran the command
drains the outbox and appends the events to the durable journal before it answers anyone; on
restart it replays the journal through ``apply`` and gets the same state back. Events carry
everything ``apply`` needs (times, ids, amounts), so replay never consults a clock.

Events are msgspec Structs with a ``tag`` (a tagged union per component); ``component`` names
the component in the journal so one journal can hold several.

Snapshots: a component can also export its durable state as one Struct (``export_state``) and
be rebuilt from it (``import_state``), so a restart loads the latest snapshot and replays only
the events after it. A snapshot is a cache of the fold, never the truth: the events stay in the
journal, and a snapshot that cannot be read is ignored in favour of a full replay. Snapshots are
JSON (msgspec), because exact charge accumulators and statistics totals are integers of any
size. Ephemeral state (connections, allocation) is not in them, as it is not in the events.

Rebuilding in place: when the journal could not store a batch, the events it held are in memory
but not on disk. The driver then builds an empty twin (``blank``), folds the journal into it and
lets the live component ``become`` the twin in one synchronous step: everything that holds a
reference to the component (the API, the bridges, the views) sees the journal's state at once,
and never a half-rebuilt one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Final, Generic, Protocol, Self, TypeVar

import msgspec

E = TypeVar("E", bound=msgspec.Struct)
T = TypeVar("T")


_ENCODER: Final = msgspec.msgpack.Encoder()


class EventSourced(Generic[E]):
    """Base class for a component whose state is the fold of its events."""

    #: Name of the component in the journal (``"market"``, ``"keys"``).
    component: ClassVar[str]
    #: The tagged union of this component's events, for decoding the journal.
    event_type: ClassVar[Any]
    #: The Struct type ``export_state`` returns (``None``: the component cannot snapshot).
    state_type: ClassVar[Any] = None
    #: Version of ``state_type``'s shape: bump it when the shape changes, so a snapshot of the
    #: old shape is ignored (full replay) instead of misread.
    state_format: ClassVar[int] = 1
    _event_decoder: ClassVar[msgspec.msgpack.Decoder[Any] | None] = None

    def __init__(self) -> None:
        self._outbox: list[E] = []
        self._encoded: list[bytes] = []  # the outbox's events as ``encode_event`` bytes

    def apply(self, event: E) -> None:
        """Change state by one event. Must be deterministic and must not raise for an event
        that ``_emit`` accepted."""
        raise NotImplementedError

    def _emit(self, event: E) -> None:
        # An event the journal could not store must not change memory either: encoding it
        # first makes such a command fail (a bug, ours: e.g. an integer over 64 bits that no
        # input check stopped) with the state untouched, instead of after ``apply``. The
        # bytes are kept for the journal, so the event is encoded once.
        encoded = _ENCODER.encode(event)
        self.apply(event)
        self._outbox.append(event)
        self._encoded.append(encoded)

    def drain_events(self) -> list[E]:
        """The events emitted since the last drain, oldest first; empties the outbox."""
        events, self._outbox, self._encoded = self._outbox, [], []
        return events

    def drain_encoded(self) -> list[tuple[E, bytes]]:
        """``drain_events`` with each event's ``encode_event`` bytes."""
        if not self._outbox:
            return []  # the common case for every component but the one a command changed
        pairs = list(zip(self._outbox, self._encoded, strict=True))
        self._outbox, self._encoded = [], []
        return pairs

    @classmethod
    def encode_event(cls, event: E) -> bytes:
        return _ENCODER.encode(event)

    @classmethod
    def decode_event(cls, data: bytes) -> E:
        """One event from ``encode_event`` bytes (a typed decoder made once per class: building
        one per call costs more than the decoding). Raises ``msgspec.DecodeError``."""
        decoder = cls.__dict__.get("_event_decoder")
        if decoder is None:
            decoder = msgspec.msgpack.Decoder(cls.event_type)
            cls._event_decoder = decoder
        result: E = decoder.decode(data)
        return result

    def export_state(self) -> Any:
        """The durable state as one ``state_type`` value (shares nothing with the component)."""
        raise NotImplementedError

    def import_state(self, state: Any) -> None:
        """Become the component that exported ``state``. Only on a fresh component (no event
        applied yet); raises ``RuntimeError`` otherwise."""
        raise NotImplementedError

    def blank(self) -> Self:
        """A new component of this class and configuration with no event applied (what a
        restart starts from). Raises ``NotImplementedError`` for a component that cannot be
        rebuilt in place."""
        raise NotImplementedError

    def become(self, other: Self) -> None:
        """Take ``other``'s whole state in place (a ``blank`` twin into which the journal was
        folded); ``other`` must not be used afterwards. Raises ``TypeError`` for a component
        of another class, ``RuntimeError`` while either has events not yet drained (they would
        be lost from the journal's view)."""
        if type(other) is not type(self):
            raise TypeError(f"{type(self).__name__} cannot become a {type(other).__name__}")
        if self._outbox or other._outbox:
            raise RuntimeError("become with events not yet drained")
        self.__dict__.update(other.__dict__)

    def encode_state(self) -> bytes:
        """``export_state()`` as JSON bytes."""
        return msgspec.json.encode(self.export_state())

    @classmethod
    def decode_state(cls, data: bytes) -> Any:
        """A ``state_type`` value from ``encode_state`` bytes. Raises ``msgspec.DecodeError`` (or
        ``ValidationError``) for bytes of another shape."""
        return msgspec.json.decode(data, type=cls.state_type)


class Executor(Protocol):
    """Runs a synchronous command and returns once its events are durable (the ``Engine``;
    tests use an in-memory one). The command runs atomically: nothing else touches the
    components until it returns."""

    async def execute(self, fn: Callable[[], T]) -> T: ...
