"""The pytest plugin as a user's project meets it: the fixtures, several markets from the
factory, and ``--hashmarket-keep`` keeping a failed test's market directory (only that one)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.examples.helpers import run_pytest

USER_TESTS = """
def test_two_markets(hashmarket_factory):
    first, second = hashmarket_factory(), hashmarket_factory(control=False)
    assert first.api_url != second.api_url
    first.advance(60)
    print("passing", first.directory)


def test_a_failure(hashmarket):
    print("failing", hashmarket.directory)
    assert hashmarket.operator.list_faults() == ["no such fault"]
"""


def test_keep_keeps_the_failed_tests_directory_only(tmp_path: Path) -> None:
    (tmp_path / "test_users.py").write_text(USER_TESTS)
    done = run_pytest(tmp_path, "-rA", "--hashmarket-keep")
    out = done.stdout
    assert done.returncode == 1, out[-3000:]
    assert "1 failed, 1 passed" in out
    kept = re.findall(r"hashmarket: kept (\S+)", out)
    failing = re.findall(r"failing (\S+)", out)
    passing = re.findall(r"passing (\S+)", out)
    assert kept == failing
    assert (Path(kept[0]) / "node.log").exists()
    assert "node.listening" in out  # the failed test's report shows the end of the node's log
    assert passing
    assert not Path(passing[0]).exists()
    shutil.rmtree(kept[0])  # the test's own clean-up of what the plugin kept
