"""A user's own test, the way the README shows it: ``examples/test_price_bot.py`` copied as
``test_mybot.py`` into a directory outside the repository, beside the bot, and run by pytest
with the installed package (its ``hashmarket`` fixture comes from the ``pytest11`` entry
point)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.examples.helpers import EXAMPLES, ROOT, run_pytest

USER_TEST = EXAMPLES / "test_price_bot.py"


def test_a_users_test_of_their_bot_passes_outside_the_repository(tmp_path: Path) -> None:
    assert ROOT not in tmp_path.parents
    shutil.copy(USER_TEST, tmp_path / "test_mybot.py")
    for name in ("price_bot.py", "_common.py"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    done = run_pytest(tmp_path, "-q", "test_mybot.py")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout


def test_the_readme_shows_that_test_as_it_is() -> None:
    readme = (ROOT / "README.md").read_text()
    body = USER_TEST.read_text()
    assert f"```python\n{body}```" in readme
