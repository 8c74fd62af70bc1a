"""A whole market for a test: a real ``hashmarket serve`` on free loopback ports (control.md).

Theory of operation
-------------------
``Market`` (blocking) and ``TrioMarket`` (for trio tests) start the real program,
``python -m marketplace serve``, as a subprocess on a temporary database, with ``--control``
(operator methods, market time, faults) and ``--faucet`` on by default, every port 0 and
``--ports-file``; they are ready once the node wrote its ports. After the first start an
operator key is issued through the node's inbox (``hashmarket operator-key create``'s path),
so ``operator`` is a client of the project's own library signed in as the operator.
``buyer`` opens an account the same way (``hashmarket account create``'s path) and funds it
from the faucet; ``worker`` starts the project's CPU worker (``python -m workers``).

``stop`` (SIGTERM: the node's graceful shutdown), ``kill`` (SIGKILL) and ``restart`` (the
same database, the same ports, so clients and workers find it again) are for crash tests. The
node logs JSON lines to ``node.log`` in the market's directory (``log_lines``, ``events``).
Both flavours share ``_Launch`` (the command line, the files, the process); they differ only
in how they wait.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

import trio

from marketplace.client import AsyncMarketClient, Credentials, MarketClient
from marketplace.core.key_events import OPERATOR_ACCOUNT

#: How long a node may take to start, and to stop after SIGTERM.
START_TIMEOUT_S: Final = 30.0
STOP_TIMEOUT_S: Final = 20.0
_POLL_S: Final = 0.05
#: How many looks at the ports file fit in the start timeout.
_START_POLLS: Final = int(START_TIMEOUT_S / _POLL_S)


class MarketError(RuntimeError):
    """The market process could not be started, or died."""


@dataclass(frozen=True)
class Buyer:
    """An account with a funded key: who it is and a client signed in as it."""

    account_id: str
    key_id: str
    secret: str
    client: Any  # MarketClient (Market) or AsyncMarketClient (TrioMarket)

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.account_id, self.key_id, self.secret)

    def env(self, api_url: str) -> dict[str, str]:
        """The environment a script needs to act as this account (``HASHMARKET_*``)."""
        return {
            **os.environ,
            "HASHMARKET_URL": api_url,
            "HASHMARKET_ACCOUNT": self.account_id,
            "HASHMARKET_KEY_ID": self.key_id,
            "HASHMARKET_SECRET": self.secret,
        }


def _flag(name: str, value: object) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if value is True:
        return [flag]
    if value is False or value is None:
        return []
    return [flag, str(value)]


def read_events(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines of ``path`` (other lines skipped)."""
    events = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
    return events


class _Launch:
    """The files, command line and process of one market (both flavours)."""

    def __init__(
        self,
        *,
        directory: str | Path | None,
        control: bool,
        faucet: bool,
        log_level: str,
        settings: Mapping[str, object],
    ) -> None:
        self.owns_directory = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="hashmarket-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.db = self.directory / "market.db"
        self.log_path = self.directory / "node.log"
        self._ports_file = self.directory / "ports.json"
        self.control = control
        self._settings = {"faucet": faucet, "log_level": log_level, **settings}
        self.ports: dict[str, Any] | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.operator_key: dict[str, str] | None = None
        self._workers = 0

    def node_config(self) -> Any:
        """The settings the operator commands need to find the database."""
        from marketplace.config import NodeConfig

        return NodeConfig(db=str(self.db))

    def spawn(self) -> None:
        """Start the node (on the ports it had, after a first start)."""
        ports = self.ports or {"api": 0, "stratum": {"sha256d": 0, "scrypt": 0}}
        self._ports_file.unlink(missing_ok=True)
        args = [
            sys.executable, "-m", "marketplace", "serve",
            "--db", str(self.db),
            "--ports-file", str(self._ports_file),
            "--host", "127.0.0.1",
            "--api-port", str(ports["api"]),
            "--sha256d-port", str(ports["stratum"]["sha256d"]),
            "--scrypt-port", str(ports["stratum"]["scrypt"]),
            "--log-format", "json",
        ]  # fmt: skip
        if self.control:
            args.append("--control")
        for name, value in self._settings.items():
            args += _flag(name, value)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def ready(self) -> bool:
        """Whether the node wrote its ports. Raises ``MarketError`` if it died."""
        process = self.process
        if process is None:
            raise MarketError("the market was not started")
        if process.poll() is not None:
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
            raise MarketError(f"hashmarket serve exited {process.returncode}:\n{tail}")
        if not self._ports_file.exists():
            return False
        self.ports = json.loads(self._ports_file.read_text())
        return True

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signum)

    @property
    def api_url(self) -> str:
        if self.ports is None:
            raise MarketError("the market is not started")
        return f"http://127.0.0.1:{self.ports['api']}"

    def stratum_url(self, algorithm: str = "sha256d") -> str:
        if self.ports is None:
            raise MarketError("the market is not started")
        return f"stratum+tcp://127.0.0.1:{self.ports['stratum'][str(algorithm)]}"

    def operator_credentials(self) -> Credentials:
        assert self.operator_key is not None
        key = self.operator_key
        return Credentials(OPERATOR_ACCOUNT, key["key_id"], key["secret"])

    def worker_args(
        self, user: str, *, processes: int, algorithm: str, options: Mapping[str, object]
    ) -> tuple[list[str], Path]:
        self._workers += 1
        log_path = self.directory / f"worker-{self._workers}-{user}.log"
        args = [
            sys.executable, "-m", "workers",
            "--url", self.stratum_url(algorithm),
            "--user", user,
            "--algorithm", str(algorithm),
            "--processes", str(processes),
            "--log-format", "json",
        ]  # fmt: skip
        for name, value in {"backoff_max": 1, **options}.items():
            args += _flag(name, value)
        return args, log_path

    def cleanup(self, *, keep: bool) -> None:
        if self.owns_directory and not keep:
            shutil.rmtree(self.directory, ignore_errors=True)


class Worker:
    """A running CPU worker (``python -m workers``) and its JSON log."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The worker's log events so far (only those named ``name``, if given)."""
        events = read_events(self.log_path)
        return events if name is None else [e for e in events if e.get("event") == name]

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGINT (the worker stops and prints its summary), waiting up to ``timeout_s``;
        SIGKILL after that. The exit status."""
        if self.running:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL, at once."""
        if self.running:
            self.process.kill()
            self.process.wait(timeout=5)
        self._log.close()


class _Base:
    """What both flavours read (see the module doc)."""

    def __init__(
        self,
        *,
        control: bool = True,
        faucet: bool = True,
        directory: str | Path | None = None,
        log_level: str = "info",
        **settings: object,
    ) -> None:
        self._launch = _Launch(
            directory=directory,
            control=control,
            faucet=faucet,
            log_level=log_level,
            settings=settings,
        )
        self._workers: list[Worker] = []
        self._clients: list[Any] = []

    @property
    def directory(self) -> Path:
        """Where the database, the node's log and the workers' logs are."""
        return self._launch.directory

    @property
    def db(self) -> Path:
        return self._launch.db

    @property
    def api_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the JSON-RPC API."""
        return self._launch.api_url

    def stratum_url(self, algorithm: str = "sha256d") -> str:
        """``stratum+tcp://127.0.0.1:PORT`` of ``algorithm``'s market."""
        return self._launch.stratum_url(algorithm)

    def stratum_port(self, algorithm: str = "sha256d") -> int:
        """The Stratum port of ``algorithm``'s market."""
        return int(self.stratum_url(algorithm).rsplit(":", 1)[1])

    @property
    def running(self) -> bool:
        """Whether the node process is alive."""
        return self._launch.running

    @property
    def gateway_port(self) -> int | None:
        """The port gateways link to (``gateways=N`` or ``gateway_port=...``), if any."""
        ports = self._launch.ports or {}
        return None if ports.get("gateway") is None else int(ports["gateway"])

    @property
    def gateway_pids(self) -> list[int]:
        """The local gateways' process ids (``gateways=N``), as the node started them."""
        ports = self._launch.ports or {}
        return [int(pid) for pid in ports.get("gateway_pids", [])]

    @property
    def operator_credentials(self) -> Credentials:
        """The operator key ``operator`` signs with (account ``operator``)."""
        return self._launch.operator_credentials()

    def log_lines(self) -> list[str]:
        """The node's log so far, one JSON event per line (every start of it)."""
        path = self._launch.log_path
        return path.read_text(errors="replace").splitlines() if path.exists() else []

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The node's log events so far (only those named ``name``, if given)."""
        events = read_events(self._launch.log_path)
        return events if name is None else [e for e in events if e.get("event") == name]

    def _spawn_worker(
        self, user: str, *, processes: int, algorithm: str, options: Mapping[str, object]
    ) -> Worker:
        args, log_path = self._launch.worker_args(
            user, processes=processes, algorithm=algorithm, options=options
        )
        worker = Worker(args, log_path)
        self._workers.append(worker)
        return worker


class Market(_Base):
    """A market for a blocking test: ``with Market() as m: ...`` (see the module doc).

    Settings beyond these are ``hashmarket serve`` flags by their names
    (``Market(price_down_interval=1)`` is ``--price-down-interval 1``).
    """

    operator: MarketClient

    def __enter__(self) -> Market:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the node and wait until it listens. Raises ``MarketError``."""
        launch = self._launch
        launch.spawn()
        deadline = time.monotonic() + START_TIMEOUT_S
        for _ in range(_START_POLLS):
            if launch.ready() or time.monotonic() > deadline:
                break
            time.sleep(_POLL_S)
        if not launch.ready():
            self.kill()
            raise MarketError(f"hashmarket serve not up in {START_TIMEOUT_S} s")
        if launch.operator_key is None and launch.control:
            from marketplace.operator import operator_key_create

            launch.operator_key = operator_key_create(launch.node_config())
            self.operator = MarketClient(self.api_url, credentials=launch.operator_credentials())

    def buyer(self, name: str, *, deposit: str | None = "1.0") -> Buyer:
        """Open account ``name`` with a key (every buyer scope) and deposit ``deposit`` BTC
        from the faucet; the account and a client signed in as it."""
        from marketplace.operator import account_create

        made = account_create(self._launch.node_config(), name)
        client = MarketClient(
            self.api_url, credentials=Credentials(name, made["key_id"], made["secret"])
        )
        self._clients.append(client)
        if deposit:
            client.deposit(deposit)
        return Buyer(name, made["key_id"], made["secret"], client)

    def advance(self, seconds: float) -> int:
        """Advance market time ``seconds`` (``admin.time.advance``); the market time reached."""
        return self.operator.advance(seconds)

    def worker(
        self, user: str, *, processes: int = 1, algorithm: str = "sha256d", **options: object
    ) -> Worker:
        """Start a CPU worker mining as ``user`` (``account.worker``); more worker flags by
        name (``password="d=0.001"``, ``log_level="debug"``)."""
        return self._spawn_worker(user, processes=processes, algorithm=algorithm, options=options)

    def stop(self, *, signum: int = signal.SIGTERM) -> int | None:
        """``signum`` (SIGTERM, or SIGINT as from a terminal): the graceful shutdown; the exit
        status (0)."""
        launch = self._launch
        launch.signal(signum)
        if launch.process is not None:
            try:
                launch.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                launch.process.kill()
                launch.process.wait(timeout=5)
            return launch.process.returncode
        return None

    def kill(self) -> None:
        """SIGKILL: the node dies at once (a crash)."""
        launch = self._launch
        if launch.process is not None and launch.running:
            launch.process.kill()
            launch.process.wait(timeout=5)

    def restart(self) -> None:
        """Stop the node if it runs, then start it again on the same database and ports."""
        if self.running:
            self.stop()
        self.start()

    def close(self, *, keep: bool = False) -> None:
        """Stop every worker and the node; remove the temporary directory unless ``keep``."""
        for worker in self._workers:
            worker.stop()
        self.stop()
        for client in [*self._clients, getattr(self, "operator", None)]:
            if client is not None:
                client.close()
        self._launch.cleanup(keep=keep)


class TrioMarket(_Base):
    """The same market for a trio test: ``async with TrioMarket() as m: ...``; the methods
    that wait are awaited, and clients are ``AsyncMarketClient``."""

    operator: AsyncMarketClient

    async def __aenter__(self) -> TrioMarket:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start the node and wait until it listens. Raises ``MarketError``."""
        launch = self._launch
        launch.spawn()
        with trio.move_on_after(START_TIMEOUT_S):
            for _ in range(_START_POLLS):
                if launch.ready():
                    break
                await trio.sleep(_POLL_S)
        if not launch.ready():
            await self.kill()
            raise MarketError(f"hashmarket serve not up in {START_TIMEOUT_S} s")
        if launch.operator_key is None and launch.control:
            from marketplace.operator import operator_key_create

            config = launch.node_config()
            launch.operator_key = await trio.to_thread.run_sync(operator_key_create, config)
            credentials = launch.operator_credentials()
            self.operator = AsyncMarketClient(self.api_url, credentials=credentials)

    async def buyer(self, name: str, *, deposit: str | None = "1.0") -> Buyer:
        """As ``Market.buyer``, with an ``AsyncMarketClient``."""
        from marketplace.operator import account_create

        config = self._launch.node_config()
        made = await trio.to_thread.run_sync(account_create, config, name)
        client = AsyncMarketClient(
            self.api_url, credentials=Credentials(name, made["key_id"], made["secret"])
        )
        self._clients.append(client)
        if deposit:
            await client.deposit(deposit)
        return Buyer(name, made["key_id"], made["secret"], client)

    async def advance(self, seconds: float) -> int:
        """As ``Market.advance``."""
        return await self.operator.advance(seconds)

    def worker(
        self, user: str, *, processes: int = 1, algorithm: str = "sha256d", **options: object
    ) -> Worker:
        """As ``Market.worker`` (starting a process does not wait)."""
        return self._spawn_worker(user, processes=processes, algorithm=algorithm, options=options)

    async def stop(self, *, signum: int = signal.SIGTERM) -> int | None:
        """As ``Market.stop``."""
        launch = self._launch
        launch.signal(signum)
        process = launch.process
        if process is None:
            return None
        try:
            await trio.to_thread.run_sync(partial(process.wait, timeout=STOP_TIMEOUT_S))
        except subprocess.TimeoutExpired:
            await self.kill()
        return process.returncode

    async def kill(self) -> None:
        """As ``Market.kill``."""
        process = self._launch.process
        if process is not None and process.poll() is None:
            process.kill()
            await trio.to_thread.run_sync(process.wait)

    async def restart(self) -> None:
        """As ``Market.restart``."""
        if self.running:
            await self.stop()
        await self.start()

    async def aclose(self, *, keep: bool = False) -> None:
        """As ``Market.close``."""
        for worker in self._workers:
            await trio.to_thread.run_sync(worker.stop)
        await self.stop()
        for client in [*self._clients, getattr(self, "operator", None)]:
            if client is not None:
                await client.aclose()
        self._launch.cleanup(keep=keep)
