"""A whole hashmarket for your tests (control.md, "From Python and pytest").

``Market`` (blocking) and ``TrioMarket`` start a real ``hashmarket serve`` on free loopback
ports with a temporary database and the operator methods on; the pytest plugin
(``marketplace.testing.plugin``, registered by the package's ``pytest11`` entry point) gives a
test one as the ``hashmarket`` fixture, or several through ``hashmarket_factory``::

    def test_my_bot(hashmarket):
        alice = hashmarket.buyer("alice", deposit="1.0")
        order = alice.client.create_order(algorithm="sha256d", type="standard",
                                          price="0.001", limit="0", amount="0.01")
        hashmarket.advance(600)
        ...
"""

from marketplace.testing.market import Buyer, Market, MarketError, TrioMarket, Worker

__all__ = ["Buyer", "Market", "MarketError", "TrioMarket", "Worker"]
