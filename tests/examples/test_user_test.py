"""A user's own test, the way the README shows it: ``examples/test_price_bot.py`` copied as
``test_mybot.py`` into a directory outside the repository, beside the bot, and run by pytest
with the installed package (its ``hashmarket`` fixture comes from the ``pytest11`` entry
point)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.examples.helpers import EXAMPLES, ROOT

USER_TEST = EXAMPLES / "test_price_bot.py"


def test_a_users_test_of_their_bot_passes_outside_the_repository(tmp_path: Path) -> None:
    assert ROOT not in tmp_path.parents
    shutil.copy(USER_TEST, tmp_path / "test_mybot.py")
    for name in ("price_bot.py", "_common.py"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PYTHONPATH"))}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mybot.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout


def test_the_readme_shows_that_test_as_it_is() -> None:
    readme = (ROOT / "README.md").read_text()
    body = USER_TEST.read_text()
    assert f"```python\n{body}```" in readme
