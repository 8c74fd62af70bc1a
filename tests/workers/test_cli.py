"""The command line: option parsing, and ``python -m workers`` as a real subprocess."""

from __future__ import annotations

import argparse
import functools
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import trio

from stratum.core.shares import Algorithm
from tests.workers.fakepool import FakePool
from workers.cli import add_arguments, build_parser, config_from_args, main, parse_stratum_url

ROOT = Path(__file__).parents[2]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # main() configures structlog for the process with the (captured) stderr of the moment.
    yield
    structlog.reset_defaults()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("stratum+tcp://127.0.0.1:3333", ("127.0.0.1", 3333)),
        ("tcp://pool.example:1", ("pool.example", 1)),
        ("localhost:3334", ("localhost", 3334)),
        ("stratum+tcp://[::1]:3333/", ("::1", 3333)),
    ],
)
def test_parse_url(url: str, expected: tuple[str, int]) -> None:
    assert parse_stratum_url(url) == expected


@pytest.mark.parametrize("url", ["http://h:1", "h", "stratum+tcp://h:0", "h:70000", ""])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ValueError, match=r"url|port"):
        parse_stratum_url(url)


def test_options_become_a_config() -> None:
    args = build_parser().parse_args(
        [
            "--url",
            "stratum+tcp://127.0.0.1:3334",
            "--user",
            "acct.rig",
            "--algorithm",
            "scrypt",
            "--processes",
            "2",
            "--fleet",
            "3",
            "--duration",
            "5",
        ]
    )
    config = config_from_args(args)
    assert (config.host, config.port, config.algorithm) == ("127.0.0.1", 3334, Algorithm.SCRYPT)
    assert (config.processes, config.fleet, config.duration) == (2, 3, 5.0)
    assert config.usernames() == ["acct.rig-1", "acct.rig-2", "acct.rig-3"]


def test_hashmarket_can_mount_the_options_on_its_subcommand() -> None:
    parser = argparse.ArgumentParser(prog="hashmarket")
    sub = parser.add_subparsers(dest="command")
    add_arguments(sub.add_parser("worker"))
    args = parser.parse_args(["worker", "--url", "h:1", "--user", "a"])
    assert config_from_args(args).user == "a"


@pytest.mark.parametrize(
    "extra",
    [
        ["--user", "bad name"],
        ["--user", "a.b", "--processes", "0"],
        ["--user", "a.b", "--fleet", "0"],
        ["--user", "a.b", "--duration", "-1"],
    ],
)
def test_invalid_options_exit_2(extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", "127.0.0.1:1", *extra, "--log-format", "json"]) == 2
    assert "error:" in capsys.readouterr().err


async def serve(nursery: trio.Nursery, pool: FakePool) -> int:
    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, pool.handle, 0, host="127.0.0.1")
    )
    port: int = listeners[0].socket.getsockname()[1]
    return port


def worker_command(port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "workers",
        "--url",
        f"stratum+tcp://127.0.0.1:{port}",
        "--user",
        "acct.cli",
        "--processes",
        "1",
        "--status-interval",
        "0.5",
        "--log-format",
        "json",
        *extra,
    ]


async def test_subprocess_runs_for_its_duration_and_prints_a_summary(
    nursery: trio.Nursery,
) -> None:
    pool = FakePool(difficulty=1e-5)
    port = await serve(nursery, pool)
    with trio.fail_after(60):
        result = await trio.run_process(
            worker_command(port, "--duration", "3"),
            cwd=ROOT,
            capture_stdout=True,
            capture_stderr=True,
        )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    summary = json.loads(result.stdout)
    assert summary["accepted"] == pool.accepted() > 0
    assert summary["hashes"] > 0
    assert summary["workers"][0]["username"] == "acct.cli"
    events = [json.loads(line)["event"] for line in result.stderr.decode().splitlines()]
    assert "worker.status" in events
    assert "worker.summary" in events


async def test_sigint_stops_cleanly_with_a_summary(nursery: trio.Nursery) -> None:
    pool = FakePool(difficulty=1e-5)
    port = await serve(nursery, pool)
    proc = await trio.lowlevel.open_process(
        worker_command(port),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        with trio.fail_after(60):
            await pool.wait_for(lambda: pool.accepted() >= 2)
        proc.send_signal(signal.SIGINT)
        assert proc.stdout is not None
        out = b""
        with trio.fail_after(30):
            while chunk := await proc.stdout.receive_some(65536):
                out += chunk
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()
    summary = json.loads(out)
    assert summary["accepted"] >= 2
    assert summary["uptime_s"] > 0
