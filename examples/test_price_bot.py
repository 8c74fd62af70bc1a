"""Testing price_bot.py against a real market, the way you would test your own bot.

With hashmarket installed, pytest has the ``hashmarket`` fixture: a real market with a fresh
database, whose clock the test moves. Run: ``pytest test_price_bot.py``.
"""

import subprocess
import sys
import time
from pathlib import Path

BOT = Path(__file__).with_name("price_bot.py")


def wait_until(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_bot_follows_the_best_bid_down_and_up(hashmarket):
    rival = hashmarket.buyer("rival", deposit="1.0")
    theirs = rival.client.create_order(
        algorithm="sha256d", type="standard", price="0.00100000", limit="0", amount="0.01"
    )
    me = hashmarket.buyer("me", deposit="1.0")
    bot = subprocess.Popen(
        [sys.executable, BOT, "--price", "0.00200000", "--interval", "0.1", "--rounds", "900"],
        env=me.env(hashmarket.api_url),
        stdout=subprocess.PIPE,
        text=True,
    )

    def my_price():  # from the public order book: the bot's own key is busy enough
        book = me.client.orderbook("sha256d")
        return next((o.price for o in book.orders if o.id != theirs.id), None)

    try:
        # The bot places its order and lowers it once; the next lowering must wait ten
        # minutes of market time, so make them pass: one lowering each time.
        wait_until(lambda: my_price() == "0.00180000")
        hashmarket.advance(600)
        wait_until(lambda: my_price() == "0.00162000")
        for _ in range(10):  # down to just above the rival, 10% at a time
            lowered = my_price()
            if lowered == "0.00100100":
                break
            hashmarket.advance(600)
            wait_until(lambda old=lowered: my_price() != old)
        assert my_price() == "0.00100100"
        # Outbid: the bot raises at once, no waiting.
        rival.client.set_price(theirs.id, "0.00150000")
        wait_until(lambda: my_price() == "0.00150100")
    finally:
        bot.terminate()
    assert "refused" not in bot.communicate(timeout=10)[0]
