"""The market's commands for orders that mine for a buyer's pool (proxy.md), mixed into
``Market``.

Theory of operation
-------------------
An order names its pool by id (``OrderCreated.pool_id``, ``OrderPoolSet``); the pool itself is
the ``PoolRegistry``'s, and whether its upstream session is alive is the driver's (ephemeral:
``relay.py``). What is durable here is what money and the buyer's history depend on:

- ``set_order_pool``: an active order moves to another pool (or back to the chain);
- ``record_pool_answer``: the pool's answer to one forwarded share (``PoolAnswered``), counted
  on the order; a charged share it rejected is refunded at the next settlement (``book.py``);
- ``cancel_for_pool``: the placeholder rule ended the order (``OrderCancelled`` with the
  reason the driver measured), releasing its unspent budget.

Like every ``Market`` command these validate first and change nothing when they refuse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from marketplace.core import events
from marketplace.core.errors import InvalidArgument, NotFound
from marketplace.core.order_rules import check_active

if TYPE_CHECKING:
    from marketplace.core.book import Book

#: Longest pool reason or cancel reason kept (pools' messages can be long).
MAX_REASON: Final = 200


class PoolOrders:
    """Commands and reads of orders with a pool; a part of ``Market`` (see the module doc)."""

    if TYPE_CHECKING:
        _book: Book

        def _emit(self, event: events.MarketEvent) -> None: ...

    def pool_of(self, order_id: str) -> str | None:
        """The pool ``order_id`` mines for (``None``: the chain, or no such order)."""
        order = self._book.orders.get(order_id)
        return None if order is None else order.pool_id

    def orders_using_pool(self, pool_id: str) -> list[str]:
        """The active orders that mine for ``pool_id``, oldest first."""
        return [
            order.id
            for order in self._book.orders.values()
            if order.active and order.pool_id == pool_id
        ]

    def set_order_pool(
        self, *, account: str, order_id: str, pool_id: str | None, now_ms: int
    ) -> None:
        """Command: the active order mines for ``pool_id`` from now on (``None``: the emulated
        chain; the caller checked the pool is usable). Raises ``NotFound``, ``InvalidState``
        (not active)."""
        order = self._book.owned(account, order_id)
        check_active(order)
        if pool_id != order.pool_id:
            self._emit(events.OrderPoolSet(order_id=order.id, pool_id=pool_id, time_ms=now_ms))

    def record_pool_answer(
        self,
        *,
        order_id: str,
        accepted: bool,
        reason: str | None,
        difficulty: float,
        price_msat: int,
        now_ms: int,
    ) -> None:
        """Command: the order's pool answered one forwarded share of ``difficulty``, charged
        at ``price_msat`` (0: not charged); ``reason`` says why it was refused. Raises
        ``NotFound`` (no such order), ``InvalidArgument`` (a negative price or difficulty)."""
        if order_id not in self._book.orders:
            raise NotFound("no such order", {"id": order_id[:64]})
        if price_msat < 0 or not difficulty >= 0:
            raise InvalidArgument("price and difficulty must not be negative")
        self._emit(
            events.PoolAnswered(
                order_id=order_id,
                accepted=accepted,
                reason=None if accepted else (reason or "other")[:MAX_REASON],
                difficulty=difficulty,
                price_msat=price_msat,
                time_ms=now_ms,
            )
        )

    def cancel_for_pool(self, *, order_id: str, reason: str, now_ms: int) -> None:
        """Command: the market cancels an active order because of its pool (the placeholder
        rule), saying why; its unspent budget is released. Raises ``NotFound``,
        ``InvalidState`` (not active)."""
        order = self._book.orders.get(order_id)
        if order is None:
            raise NotFound("no such order", {"id": order_id[:64]})
        check_active(order)
        self._emit(
            events.OrderCancelled(order_id=order.id, time_ms=now_ms, reason=reason[:MAX_REASON])
        )
