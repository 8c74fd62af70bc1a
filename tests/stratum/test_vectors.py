"""Every share vector (found by cpuminer 2.5.1) through the session's validation pipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from stratum.core.jobs import Job
from stratum.core.registries import ExtranonceAllocator
from stratum.core.session import ServerSession
from stratum.core.session_types import SessionConfig
from stratum.core.shares import Algorithm

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "shares.json").read_text()
)["vectors"]


def _line(request_id: int, method: str, params: list[Any]) -> bytes:
    return msgspec.json.encode({"id": request_id, "method": method, "params": params}) + b"\n"


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"{v['algorithm']}-{v['note'][:40]}")
def test_vector(vector: dict[str, Any]) -> None:
    notify = vector["notify"]
    now_ms = int(notify[7], 16) * 1000
    extranonce1 = bytes.fromhex(vector["extranonce1"])
    config = SessionConfig(
        algorithm=Algorithm(vector["algorithm"]),
        start_difficulty=vector["difficulty"],
        min_difficulty=1e-9,
        max_difficulty=1e9,
        vardiff=None,
        extranonce2_size=len(vector["submit"][2]) // 2,
    )
    allocator = ExtranonceAllocator(size=len(extranonce1))
    session = ServerSession(conn_id=1, config=config, extranonces=allocator, now_ms=now_ms)
    # Resume the session id that is the vector's extranonce1, so the server uses it.
    session.receive_data(_line(1, "mining.subscribe", ["cpuminer/2.5.1", extranonce1.hex()]))
    session.receive_data(_line(2, "mining.authorize", [vector["submit"][0], "x"]))
    subscribed = session.next_outcome(now_ms)
    assert subscribed is not None
    assert msgspec.json.decode(subscribed.reply)["result"][1] == extranonce1.hex()
    authorized = session.next_outcome(now_ms)
    assert authorized is not None
    assert authorized.start_work
    job = Job(
        source="vectors",
        seq=1,
        height=0,
        prevhash=notify[1],
        coinb1=notify[2],
        coinb2=notify[3],
        merkle_branch=tuple(notify[4]),
        version=notify[5],
        nbits=notify[6],
        ntime=notify[7],
        clean_jobs=notify[8],
    )
    lines = [msgspec.json.decode(x) for x in session.send_job(job, now_ms).splitlines()]
    assert lines[0] == {
        "id": None,
        "method": "mining.set_difficulty",
        "params": [vector["difficulty"]],
    }
    local_id = lines[1]["params"][0]
    assert lines[1]["params"][1:] == notify[1:]

    submit = list(vector["submit"])
    submit[1] = local_id
    session.receive_data(_line(4, "mining.submit", submit))
    outcome = session.next_outcome(now_ms)
    assert outcome is not None
    assert outcome.share is not None
    reply = msgspec.json.decode(outcome.reply)
    share = outcome.share
    assert share.accepted is vector["accepted"]
    assert share.hash_hex == vector["hash_hex_be"]
    assert share.difficulty == vector["difficulty"]
    if vector["accepted"]:
        assert reply == {"id": 4, "result": True, "error": None}
        assert share.reason is None
        assert share.source == "vectors"
    else:
        assert reply["error"] == [23, "Low difficulty share", None]
        assert share.reason == "low_difficulty"
    # The merkle root the session computed is the miner's.
    sent = session.jobs[local_id]
    assert sent.merkle_root(bytes.fromhex(submit[2])).hex() == vector["merkle_root_hex"]
