"""The layer check itself: it finds what it must find, and the project passes it."""

from __future__ import annotations

from pathlib import Path

from tests.layers import check


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in ("stratum", "marketplace", "workers"):
        (root / package).mkdir(exist_ok=True)
        (root / package / "__init__.py").touch()
    return root


def test_the_project_passes() -> None:
    assert check(Path(__file__).resolve().parents[2]) == []


def test_a_core_importing_a_clock_a_driver_or_trio_is_reported(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "marketplace/core/__init__.py": "",
            "marketplace/core/a.py": "import time\n",
            "marketplace/core/b.py": "def f():\n    from marketplace import engine\n",
            "marketplace/engine.py": "",
            "stratum/core/__init__.py": "",
            "stratum/core/c.py": "from trio import sleep\n",
            "stratum/core/d.py": "from marketplace.core import a\n",
        },
    )
    problems = check(root)
    assert any("marketplace/core/a.py:1" in p and "imports time" in p for p in problems)
    assert any(
        "marketplace/core/b.py:2" in p and "driver marketplace.engine" in p for p in problems
    )
    assert any("stratum/core/c.py:1" in p and "imports trio" in p for p in problems)
    assert any("stratum/core/d.py:1" in p and "stratum is below" in p for p in problems)


def test_type_checking_imports_and_core_to_core_imports_are_fine(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "stratum/core/__init__.py": "",
            "stratum/core/shares.py": "import hashlib\nimport msgspec\n",
            "marketplace/core/__init__.py": "",
            "marketplace/core/m.py": (
                "from typing import TYPE_CHECKING\n"
                "from stratum.core.shares import x\n"
                "from . import n\n"
                "if TYPE_CHECKING:\n    import trio\n"
            ),
            "marketplace/core/n.py": "from fractions import Fraction\n",
        },
    )
    assert check(root) == []


def test_a_cycle_through_a_function_level_import_is_reported(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "marketplace/node.py": "from marketplace.operator import lock\n",
            "marketplace/operator.py": "def f():\n    from marketplace.node import build\n",
            "marketplace/solo.py": "from marketplace import node\n",
        },
    )
    problems = check(root)
    assert problems == [
        "import cycle: marketplace.node -> marketplace.operator -> marketplace.node"
    ]
