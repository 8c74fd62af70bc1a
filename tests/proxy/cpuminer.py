"""A miner that takes moves the way cpuminer 2.5.1 does: it never sends
``mining.extranonce.subscribe``, and on ``client.reconnect [host, port, wait]`` it drops its
work (``restart_threads``), disconnects, connects to the address given and subscribes with its
session id (the ``mining.notify`` subscription id of its last subscribe), so the server can
give it back its session; it then authorizes and works on the first job it gets. A share found
before the move is never sent on the new connection (cpuminer drops it: its work was
restarted). Every wait on the server is bounded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trio

from tests.marketplace_io.miner import Notified, RawMiner, StratumError


@dataclass
class CpuminerStyle:
    username: str
    host: str
    port: int
    miner: RawMiner | None = None
    session_id: str | None = None
    connects: int = 0
    accepted: int = 0
    rejected: list[Any] = field(default_factory=list)
    subscribe_replies: list[Any] = field(default_factory=list)

    @property
    def current(self) -> RawMiner:
        assert self.miner is not None
        return self.miner

    async def connect(self) -> None:
        """Connect, subscribe (resuming the session if there is one), authorize, and read
        until the first job (or a ``client.reconnect``: see ``follow_reconnect``)."""
        stream = await trio.open_tcp_stream(self.host, self.port)
        self.miner = miner = RawMiner(stream)
        params = (
            ["cpuminer/2.5.1"] if self.session_id is None else ["cpuminer/2.5.1", self.session_id]
        )
        result = await miner.call("mining.subscribe", params)
        self.subscribe_replies.append(result)
        self.connects += 1
        self.session_id = result[0][1][1]
        miner.extranonce1, miner.extranonce2_size = result[1], int(result[2])
        assert await miner.call("mining.authorize", [self.username, "x"]) is True
        if not miner.notified:
            await miner.read_notifications_until("mining.notify", "client.reconnect")

    async def follow_reconnect(self) -> list[Any]:
        """Wait (bounded) for ``client.reconnect``, then do what cpuminer does; its params."""
        miner = self.current
        message = next((m for m in miner.others if m.get("method") == "client.reconnect"), None)
        if message is None:
            message = await miner.read_notifications_until("client.reconnect")
        host, port, wait_s = message["params"]
        await miner.stream.aclose()
        await trio.sleep(float(wait_s))
        self.host, self.port = str(host), int(port)
        await self.connect()
        return list(message["params"])

    async def submit(self, job: Notified | None = None) -> bool:
        """Solve and submit a share of ``job`` (default: the latest); count the verdict."""
        try:
            await self.current.submit(self.username, job)
        except StratumError as error:
            self.rejected.append(error.code)
            return False
        self.accepted += 1
        return True
