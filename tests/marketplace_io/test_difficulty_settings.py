"""Share difficulty settings per algorithm: flags over TOML over environment over defaults, and
the names without an algorithm setting both (issue 9)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from marketplace.assembly import stratum_config
from marketplace.config import NodeConfig, add_serve_arguments, load_config
from stratum.config import DEFAULT_DIFFICULTY, DifficultyBounds
from stratum.core.shares import Algorithm

SHA, SCRYPT = Algorithm.SHA256D, Algorithm.SCRYPT


def bounds(
    argv: list[str], *, toml: str = "", env: dict[str, str] | None = None, tmp_path: Path
) -> dict[Algorithm, DifficultyBounds]:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    if toml:
        (tmp_path / "node.toml").write_text(toml)
        argv = [*argv, "--config", str(tmp_path / "node.toml")]
    config = load_config(parser.parse_args(argv), environ=env or {})
    return {a: stratum_config(config, a).difficulty_bounds() for a in Algorithm}


@pytest.mark.parametrize("algorithm", list(Algorithm))
@pytest.mark.parametrize("bound", ["start", "min", "max"])
def test_each_per_algorithm_setting_flag_over_toml_over_env_over_default(
    algorithm: Algorithm, bound: str, tmp_path: Path
) -> None:
    name = f"{algorithm.value}_{bound}_difficulty"
    default: float = getattr(DEFAULT_DIFFICULTY[algorithm], bound)
    env = {f"HASHMARKET_{name.upper()}": str(default * 2)}
    toml = f"{name} = {default * 3!r}\n"
    flag = ["--" + name.replace("_", "-"), str(default * 4)]
    other = SCRYPT if algorithm is SHA else SHA

    def value(got: dict[Algorithm, DifficultyBounds]) -> float:
        # The other algorithm never moves: the setting is this algorithm's alone.
        assert got[other] == DEFAULT_DIFFICULTY[other]
        result: float = getattr(got[algorithm], bound)
        return result

    assert value(bounds(flag, toml=toml, env=env, tmp_path=tmp_path)) == default * 4
    assert value(bounds([], toml=toml, env=env, tmp_path=tmp_path)) == default * 3
    assert value(bounds([], env=env, tmp_path=tmp_path)) == default * 2
    assert value(bounds([], tmp_path=tmp_path)) == default


def test_the_setting_without_an_algorithm_sets_both(tmp_path: Path) -> None:
    got = bounds(["--start-difficulty", "0.02", "--max-difficulty", "5"], tmp_path=tmp_path, env={})
    assert (got[SHA].start, got[SCRYPT].start) == (0.02, 0.02)
    assert (got[SHA].max, got[SCRYPT].max) == (5.0, 5.0)
    assert (got[SHA].min, got[SCRYPT].min) == (
        DEFAULT_DIFFICULTY[SHA].min,
        DEFAULT_DIFFICULTY[SCRYPT].min,
    )
    # The same from the file and from the environment.
    assert bounds([], toml="min_difficulty = 1e-7\n", tmp_path=tmp_path)[SCRYPT].min == 1e-7
    env = {"HASHMARKET_START_DIFFICULTY": "0.03"}
    assert bounds([], env=env, tmp_path=tmp_path)[SHA].start == 0.03
    # A node built in code (the demo does) works the same way.
    config = NodeConfig(start_difficulty=0.0002, scrypt_start_difficulty=0.01)
    assert stratum_config(config, SHA).difficulty_bounds().start == 0.0002
    assert stratum_config(config, SCRYPT).difficulty_bounds().start == 0.01


def test_per_algorithm_wins_in_its_own_place_and_a_higher_place_wins_over_both(
    tmp_path: Path,
) -> None:
    # Same place: the per-algorithm flag beats the flag for both.
    got = bounds(
        ["--start-difficulty", "0.02", "--scrypt-start-difficulty", "0.08"], tmp_path=tmp_path
    )
    assert (got[SHA].start, got[SCRYPT].start) == (0.02, 0.08)
    # A higher place beats a per-algorithm setting in a lower one, in either direction.
    env = {"HASHMARKET_SHA256D_START_DIFFICULTY": "0.003"}
    assert bounds(["--start-difficulty", "0.007"], env=env, tmp_path=tmp_path)[SHA].start == 0.007
    got = bounds(
        ["--sha256d-start-difficulty", "0.004"],
        toml="start_difficulty = 0.006\n",
        env=env,
        tmp_path=tmp_path,
    )
    assert (got[SHA].start, got[SCRYPT].start) == (0.004, 0.006)
