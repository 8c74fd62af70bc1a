"""The standby's follow loop on both backends: it restores, follows the active market's journal
without its lock, and takes the lock (with every stored event applied) once the active market's
journal is closed. (Under load with SIGKILL, through ``hashmarket serve``: ``tests/e2e``.)"""

from __future__ import annotations

import pytest
import trio

from marketplace.engine import Engine
from marketplace.standby import follow_until_active
from marketplace.storage import Journal, NodeBusy, open_journal
from tests.clocks import trio_clock

from .helpers import BTC, make_market

#: Long enough that the active market's last events and its end fall between two polls.
POLL_S = 1.0


async def test_a_standby_follows_and_takes_over_with_every_event(journal_db: str) -> None:
    active_market, standby_market = make_market(), make_market()
    taken: list[int] = []
    with trio.fail_after(30):
        async with open_journal(journal_db) as journal:
            active = Engine(components=[active_market], journal=journal, clock=trio_clock())
            await active.restore()
            await active.execute(lambda: active_market.create_account(account="a", now_ms=0))
            follower = Journal(journal_db)
            standby = Engine(components=[standby_market], journal=follower, clock=trio_clock())

            # Told when a poll has read up to the deposit: the standby sleeps right after it.
            polled = trio.Event()
            catch_up = standby.catch_up

            async def telling() -> int:
                applied = await catch_up()
                if standby.durable_seq == 2:
                    polled.set()
                return applied

            standby.catch_up = telling  # type: ignore[method-assign]

            async def follow() -> None:
                taken.append(await follow_until_active(standby, follower, poll_s=POLL_S))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow)
                # It follows: what the active market commits shows up on the standby.
                await active.execute(
                    lambda: active_market.deposit(account="a", amount_msat=BTC, now_ms=0)
                )
                await polled.wait()
                assert standby_market.balance("a").available_msat == BTC
                assert not follower.is_open  # no lock while the active market lives
                with pytest.raises(NodeBusy):
                    await follower.open()
                # The last events before the active market goes, and it goes, while the standby
                # waits for its next poll: it must find them once it holds the lock.
                for _ in range(5):
                    await active.execute(
                        lambda: active_market.deposit(account="a", amount_msat=1, now_ms=0)
                    )
                await journal.close()
        assert taken == [7]  # every event, the ones after the last poll too
        assert follower.is_open
        assert standby_market.encode_state() == active_market.encode_state()
        # The standby is the writer now.
        assert follower.last_seq == standby.durable_seq == 7
        await follower.close()
