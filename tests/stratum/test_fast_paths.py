"""The share path's shortcuts give exactly what the long way gives.

A submit decoded in one step (``decode_submit``) is the request the two-step decode makes, and
anything it does not take goes the long way; the coinbase midstate gives every vector's merkle
root; vardiff's early answer at a difficulty bound is the one its rounding would have given.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from stratum.core.errors import StratumError
from stratum.core.messages import Method, decode_params, decode_submit, envelope_decoder
from stratum.core.shares import CoinbasePrefix, merkle_root
from stratum.core.vardiff import VardiffConfig, retarget

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "shares.json").read_text()
)["vectors"]

hex8 = st.text("0123456789abcdefABCDEF", min_size=8, max_size=8)
names = st.sampled_from(["acct.rig", "mining.submit"])
param = st.one_of(
    hex8,
    names,
    st.text(max_size=12),
    st.integers(-5, 5),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=2),
)
params = st.one_of(
    st.tuples(names, st.just("0000abcd"), hex8, hex8, hex8).map(list),
    st.tuples(names, st.just("0000abcd"), hex8, hex8, hex8, hex8).map(list),
    st.lists(param, max_size=7),
    param,
)
request_ids = st.one_of(st.integers(-(2**40), 2**40), st.text(max_size=8), st.none(), st.floats())
methods = st.sampled_from(["mining.submit", "mining.authorize", "mining.subscribe", 5, None])


@settings(max_examples=400, deadline=None)
@given(
    request_id=request_ids,
    method=methods,
    body=params,
    extra=st.dictionaries(st.sampled_from(["result", "error", "x"]), param, max_size=2),
)
def test_a_submit_decoded_in_one_step_is_the_two_step_request(
    request_id: object, method: object, body: object, extra: dict[str, object]
) -> None:
    line = msgspec.json.encode({"id": request_id, "method": method, "params": body, **extra})
    fast = decode_submit(line)
    try:
        envelope = envelope_decoder.decode(line)
        slow = (
            (envelope.id, decode_params(Method.SUBMIT, envelope.params))
            if envelope.method == Method.SUBMIT
            else None
        )
    except (msgspec.DecodeError, msgspec.ValidationError, StratumError):
        slow = None
    if fast is None:
        assert slow is None  # it went the long way, which says what was wrong
    else:
        assert slow == (fast.id, fast.params)


def test_a_submit_naming_the_method_only_in_its_params_goes_the_long_way() -> None:
    params = '["mining.submit","0000abcd","00000000","6543abcd","0000002a"]'
    line = b'{"id":1,"method":"mining.authorize","params":%s}' % params.encode()
    assert decode_submit(line) is None
    assert decode_submit(line.replace(b"authorize", b"submit")) is not None


def test_the_coinbase_midstate_gives_every_vectors_merkle_root() -> None:
    for vector in VECTORS:
        coinbase = bytes.fromhex(vector["coinbase_hex"])
        branch = tuple(bytes.fromhex(node) for node in vector["notify"][4])
        cut = len(vector["notify"][2]) // 2 + len(vector["extranonce1"]) // 2
        root = CoinbasePrefix(coinbase[:cut]).merkle_root(coinbase[cut:], branch)
        assert root == merkle_root(coinbase, branch)
        assert root.hex() == vector["merkle_root_hex"]


@settings(max_examples=400, deadline=None)
@given(
    low=st.floats(1e-12, 1e3),
    span=st.floats(1.0, 1e6),
    at=st.sampled_from(["min", "max", "inside"]),
    shares=st.floats(0, 1e6),
    elapsed_ms=st.integers(-10, 10**7),
)
def test_vardiff_at_a_bound_answers_what_rounding_would(
    low: float, span: float, at: str, shares: float, elapsed_ms: int
) -> None:
    config = VardiffConfig(
        target_share_interval_ms=10_000,
        retarget_period_ms=30_000,
        window_ms=300_000,
        min_difficulty=low,
        max_difficulty=low * span,
    )
    difficulty = {"min": low, "max": low * span, "inside": low * span**0.5}[at]
    # Far from any bound, retarget rounds whenever it moves; clamping that afterwards is what
    # it did at a bound before it learnt to answer there without rounding.
    unbounded = dataclasses.replace(config, min_difficulty=1e-300, max_difficulty=1e300)
    moved = retarget(difficulty=difficulty, shares=shares, elapsed_ms=elapsed_ms, config=unbounded)
    assert retarget(
        difficulty=difficulty, shares=shares, elapsed_ms=elapsed_ms, config=config
    ) == config.clamp(moved)
