"""Forwarding shares to a buyer's pool, and journaling what the pool answers (proxy.md).

Theory of operation
-------------------
The bridge hands the proxy each accepted share whose hash meets its pool's target; the upstream
manager queues it on the order's live session (a bounded channel, never blocking the miner's
reply). ``Forwarder.run`` is that session's consumer: it starts one task per share, at most
``in_flight`` awaiting their answers at once, each submitting
``[pool username, pool job id, slot || extranonce2, ntime, nonce, version bits?]`` with the
project's Stratum client and waiting at most ``answer_timeout_s``. Every outcome becomes one
``PoolAnswered`` event (``record``; the answers that came in while the last were being
journaled go in one command, so a busy pool costs few commits): accepted, refused with the
pool's ``[code, message]``,
"no answer" (a timeout, a lost connection) or "not forwarded" (shares left in the queue when
the session ended, or that could not be queued); a charged share the pool did not accept is
refunded to the buyer at the next settlement. Answers slower than ``slow_answer_s`` are noted in
the relay's ``last_error``; ``REJECT_STREAK`` refusals in a row end the session (``drop``).
Journaling is shielded, so a closing session still records what it knows; answers that come
while the store fails are logged and lost (the share stays charged).

``delay`` (order id -> seconds to hold each share back) is the seam fault injection uses;
``latencies`` (seconds from our accept to the pool's answer) is kept for the benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import structlog
import trio

from marketplace.core.errors import MarketError
from marketplace.core.market import Market
from marketplace.core.relay import Forward, Relay
from marketplace.durability import StorageUnavailable
from marketplace.engine import Engine
from marketplace.pool_login import UpstreamConfig, failure
from stratum.client import ConnectionLost, StratumClient

log = structlog.get_logger("marketplace.upstream")

#: One answer to journal: the queued share, accepted or not, and why not.
Answer = tuple["Queued", bool, str]


@dataclass(eq=False)
class Queued:
    """A share waiting for its pool: what to send, the price it was charged at (0: not
    charged) and when we accepted it (trio time)."""

    forward: Forward
    price_msat: int
    queued_at: float


class Forwarder:
    """Submits queued shares and journals the answers (see the module doc)."""

    def __init__(
        self,
        *,
        engine: Engine,
        market: Market,
        config: UpstreamConfig,
        now: Callable[[], int],
    ) -> None:
        self._engine = engine
        self._market = market
        self._config = config
        self._now = now
        #: Seconds each forwarded share of an order is held back (fault injection).
        self.delay: Callable[[str], float] | None = None
        #: Seconds from our accept to the pool's answer, while ``keep_latencies``.
        self.latencies: list[float] = []
        self.keep_latencies = False

    async def run(
        self,
        *,
        username: str,
        relay: Relay,
        client: StratumClient,
        receive: trio.MemoryReceiveChannel[Queued],
        drop: Callable[[str], None],
    ) -> None:
        """Submit what arrives on ``receive`` over ``client`` as ``username`` until
        cancelled; ``drop(why)`` ends the session when the pool refuses too many in a row."""
        limiter = trio.CapacityLimiter(self._config.in_flight)
        answers_in, answers_out = trio.open_memory_channel[Answer](math.inf)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._recorder, answers_out)
                async for queued in receive:
                    await limiter.acquire_on_behalf_of(queued)
                    nursery.start_soon(
                        self._submit, username, relay, client, queued, limiter, drop, answers_in
                    )
        finally:
            # Answers not journaled yet when the session ends are journaled now.
            pending: list[Answer] = []
            while True:
                try:
                    pending.append(answers_out.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            if pending:
                await self.record(pending)

    async def _recorder(self, answers: trio.MemoryReceiveChannel[Answer]) -> None:
        """Journal answers as they come: each command takes every answer waiting."""
        async for answer in answers:
            batch = [answer]
            while True:
                try:
                    batch.append(answers.receive_nowait())
                except trio.WouldBlock:
                    break
            await self.record(batch)

    async def _submit(
        self,
        username: str,
        relay: Relay,
        client: StratumClient,
        queued: Queued,
        limiter: trio.CapacityLimiter,
        drop: Callable[[str], None],
        answers: trio.MemorySendChannel[Answer],
    ) -> None:
        config = self._config
        forward = queued.forward
        accepted, reason = False, "no answer: the connection to the pool was lost"
        try:
            hold = self.delay(forward.order_id) if self.delay else 0.0
            if hold > 0:
                await trio.sleep(hold)
            with trio.fail_after(config.answer_timeout_s):
                result = await client.submit(
                    username=username,
                    job_id=forward.job_id,
                    extranonce2=forward.extranonce2,
                    ntime=forward.ntime,
                    nonce=forward.nonce,
                    version_bits=forward.version_bits,
                )
            accepted = result.accepted
            reason = "" if accepted else failure(result.failure)
        except trio.TooSlowError:
            reason = f"no answer within {config.answer_timeout_s:g} s"
        except ConnectionLost:
            pass
        finally:
            limiter.release_on_behalf_of(queued)
        took = trio.current_time() - queued.queued_at
        if self.keep_latencies:
            self.latencies.append(took)
        if took > config.slow_answer_s:
            relay.note(f"the pool took {took:.1f} s to answer a share (slow)")
        fatal = relay.answered(accepted=accepted, reason=reason)
        answers.send_nowait((queued, accepted, reason))
        if fatal is not None:
            drop(fatal)

    async def answer_unsent(self, receive: trio.MemoryReceiveChannel[Queued], reason: str) -> None:
        """The session ended: what is still queued was not forwarded (journaled so)."""
        unsent: list[Answer] = []
        while True:
            try:
                unsent.append((receive.receive_nowait(), False, reason))
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
        receive.close()
        if unsent:
            await self.record(unsent)

    async def record(self, answers: list[Answer]) -> None:
        """Journal the pool's answers (shielded: a closing session must not lose them)."""
        market = self._market

        def command() -> None:
            for queued, accepted, reason in answers:
                forward = queued.forward
                try:
                    market.record_pool_answer(
                        order_id=forward.order_id,
                        accepted=accepted,
                        reason=reason,
                        difficulty=forward.difficulty,
                        price_msat=queued.price_msat,
                        now_ms=self._now(),
                    )
                except MarketError as exc:
                    log.warning("upstream.answer_refused", order=forward.order_id, error=str(exc))

        with trio.move_on_after(5) as scope:
            scope.shield = True
            try:
                await self._engine.execute(command)
            except StorageUnavailable as refused:
                # The store fails (durability.py): these answers are lost, not the node.
                log.warning("upstream.answers_not_recorded", count=len(answers), error=str(refused))
