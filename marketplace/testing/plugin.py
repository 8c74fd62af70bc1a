"""The pytest plugin: ``hashmarket`` and ``hashmarket_factory`` fixtures (control.md).

Registered through the package's ``pytest11`` entry point, so installing hashmarket is all a
project needs. ``hashmarket`` is a started ``Market`` with ``--control`` for one test;
``hashmarket_factory(**settings)`` starts as many as a test asks for (a marketplace and a
buyer's pool...), each with its own settings. Every market is stopped when the test ends and
its temporary directory removed, unless the test failed and pytest runs with
``--hashmarket-keep``: then the directory (database, node log, workers' logs) stays and its
path is printed. A failed test's report also shows the end of each node's log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from marketplace.testing.market import Market

#: Lines of a node's log shown with a failed test.
_LOG_TAIL = 40


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hashmarket")
    group.addoption(
        "--hashmarket-keep",
        action="store_true",
        default=False,
        help="keep the temporary directory (database and logs) of a failed test's markets",
    )


_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    outcome: Any = yield
    report: pytest.TestReport = outcome.get_result()
    item.stash.setdefault(_REPORTS, {})[report.when] = report


def _failed(item: pytest.Item) -> bool:
    return any(report.failed for report in item.stash.get(_REPORTS, {}).values())


@pytest.fixture
def hashmarket_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Market]]:
    """Start markets: ``hashmarket_factory(**settings)`` is a started ``Market`` (settings as
    ``Market`` takes them); all are stopped after the test."""
    markets: list[Market] = []

    def start(**settings: Any) -> Market:
        market = Market(**settings)
        markets.append(market)
        market.start()
        return market

    yield start
    keep = request.config.getoption("--hashmarket-keep") and _failed(request.node)
    for market in markets:
        if _failed(request.node):
            tail = "\n".join(market.log_lines()[-_LOG_TAIL:])
            request.node.add_report_section("teardown", f"hashmarket {market.directory}", tail)
        market.close(keep=keep)
        if keep:
            print(f"\nhashmarket: kept {market.directory}")


@pytest.fixture
def hashmarket(hashmarket_factory: Callable[..., Market]) -> Market:
    """A started ``Market`` (``serve --control --faucet``) for this test."""
    return hashmarket_factory()
