from __future__ import annotations

import itertools
from pathlib import Path

import trio

from marketplace.client import AsyncMarketClient, Credentials
from marketplace.core.model import OrderStatus
from tests.examples.helpers import account_env, run_example, running_node

SAT_MSAT = 1000  # 1 satoshi in msat
START = 200_000_000  # 0.002 BTC: far above the rival's bid
RIVAL = 100_000_000  # 0.001 BTC
RIVAL_RAISED = 150_000_000  # 0.0015 BTC
STEP = 100 * SAT_MSAT  # --step 0.00000100


async def test_price_bot_follows_the_best_bid_within_the_price_down_rule(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with running_node(tmp_path, price_down_interval=1) as node:
            bot_env = await account_env(node, "botbuyer")
            rival_env = await account_env(node, "rival")
            bot_account = bot_env["HASHMARKET_ACCOUNT"]
            rival_client = AsyncMarketClient(
                rival_env["HASHMARKET_URL"], credentials=Credentials.from_env(rival_env)
            )
            async with rival_client:
                await rival_client.deposit("0.10000000")
                rival = await rival_client.create_order(
                    algorithm="sha256d",
                    type="standard",
                    price="0.00100000",
                    limit="0.05",
                    amount="0.01000000",
                )
                output: list[str] = []
                history: list[tuple[float, int]] = []  # (time, price_msat) at each change

                bot_args = [
                    "--price", "0.00200000",
                    "--amount", "0.01000000",
                    "--limit", "0.05",
                    "--step", "0.00000100",
                    "--max-price", "0.00500000",
                    "--interval", "0.2",
                    "--rounds", "60",
                ]  # fmt: skip

                async def bot() -> None:
                    output.append(await run_example("price_bot.py", bot_args, bot_env))

                def bot_price() -> int | None:
                    orders = node.core.views.list_orders(account=bot_account)
                    return orders[0].price_msat if orders else None

                async def watch_until(price_msat: int) -> None:
                    while True:
                        price = bot_price()
                        if price is not None and (not history or history[-1][1] != price):
                            history.append((trio.current_time(), price))
                        if price == price_msat:
                            return
                        await trio.sleep(0.02)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(bot)
                    # The bot closes the gap down to just above the rival, step by step.
                    await watch_until(RIVAL + STEP)
                    lowered_at = len(history)
                    # Outbid: the bot must raise at once, not wait for any interval.
                    await rival_client.set_price(rival.id, "0.00150000")
                    await watch_until(RIVAL_RAISED + STEP)
        final_price = bot_price()

    out = output[0]
    # Lowering: starts at the placed price, never more than 10% per step, ends just above the
    # rival. At most once per price_down_interval (1 s): the market refuses a lowering that comes
    # too soon, so the bot's waiting shows as "hold" rounds and no refusal.
    downs = history[:lowered_at]
    # The bot may lower once before the first poll sees its start price (it placed the order
    # itself and the first lowering needs no wait), so the price chain starts at START.
    prices = [START] + [price for _, price in downs if price != START]
    assert len(prices) >= 6  # 0.002 -> 0.001001 needs several 10% steps
    for p0, p1 in itertools.pairwise(prices):
        assert p1 < p0
        assert p1 * 10 >= p0 * 9, (p0, p1)
    assert downs[-1][1] == RIVAL + STEP
    assert final_price == RIVAL_RAISED + STEP
    # The bot's own account of it.
    assert "lower 0.00200000 -> 0.00180000" in out
    assert "raise 0.00100100 -> 0.00150100" in out
    assert "refused" not in out
    rounds = [line for line in out.splitlines() if line.startswith("round ")]
    assert any(" hold (next lowering in " in line for line in rounds)
    # Outbid: the round that sees the rival's new price raises at once; between the last lowering
    # and the raise every round only keeps its price (raising never waits for the interval).
    last_lower = max(i for i, line in enumerate(rounds) if " lower " in line)
    first_raise = next(i for i, line in enumerate(rounds) if " raise " in line)
    assert first_raise > last_lower
    assert all(line.endswith(" keep") for line in rounds[last_lower + 1 : first_raise])
    assert "price=0.00150100 status=active" in out.splitlines()[-1]
    (order,) = node.core.views.list_orders(account=bot_account)
    assert order.status is OrderStatus.ACTIVE
    assert order.price_msat == RIVAL_RAISED + STEP
