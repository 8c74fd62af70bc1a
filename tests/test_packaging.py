"""The wheel holds every package: found by pyproject's rule, not listed by hand."""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]
ROOTS = ("stratum", "marketplace", "workers")


def packages_on_disk() -> set[str]:
    """Every folder under the roots that holds Python code, as a dotted name."""
    found = set()
    for root in ROOTS:
        for source in (ROOT / root).rglob("*.py"):
            if "__pycache__" not in source.parts:
                found.add(".".join(source.parent.relative_to(ROOT).parts))
    return found


def test_every_package_is_found_by_the_pyproject_rule() -> None:
    setuptools_config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    # A list of packages (not a rule) is what left new subpackages out of the wheel.
    assert isinstance(setuptools_config["packages"], dict)
    rule = setuptools_config["packages"]["find"]
    # setuptools runs exactly this for [tool.setuptools.packages.find].
    found = set(
        find_packages(
            where=str(ROOT / rule.get("where", ["."])[0]),
            include=rule.get("include", ("*",)),
            exclude=rule.get("exclude", ()),
        )
    )
    on_disk = packages_on_disk()
    assert {"marketplace.core", "marketplace.api", "stratum.core", "workers"} <= on_disk
    assert found == on_disk
    assert not any(name.split(".")[0] in {"tests", "bench", "examples"} for name in found)


def test_the_dashboards_files_are_package_data() -> None:
    setuptools_config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools_config["package-data"]["marketplace.web"]
    package = ROOT / "marketplace" / "web"
    covered = {path for pattern in patterns for path in package.glob(pattern)}
    files = {path for path in (package / "static").iterdir() if path.is_file()}
    assert {"index.html", "dashboard.js", "dashboard.css"} <= {path.name for path in files}
    assert files <= covered
