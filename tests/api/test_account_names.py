"""One account-name rule: miners, the market, the key ring and signed requests agree."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from marketplace.api.auth import Authenticator
from marketplace.api.errors import RpcError
from marketplace.api.ratelimit import RateLimiter
from marketplace.api.signing import RPC_TARGET
from marketplace.core.errors import InvalidArgument, InvalidState
from marketplace.core.key_events import OPERATOR_ACCOUNT, Scope
from marketplace.core.keys import KeyRing
from marketplace.core.names import check_account_name
from stratum.core.errors import StratumError
from stratum.core.handshake import parse_username
from stratum.core.names import is_account_name
from tests.marketplace_core.helpers import make_market

NAMES = st.one_of(
    st.text(alphabet="ab_-Z9", max_size=70),
    st.text(max_size=8),
    st.sampled_from(["a" * 64, "a" * 65, "a" * 128, "a b", "a.b", "é", "", "operator"]),
)


def market_accepts(name: str) -> bool:
    try:
        make_market().create_account(account=name, now_ms=0)
    except InvalidArgument:
        return False
    except InvalidState:  # the fee account exists already: the name itself passed
        return True
    return True


def keyring_accepts(name: str) -> bool:
    keys = KeyRing(master_key=b"m" * 32, new_key_id=lambda: "k-1")
    try:
        # The operator account's keys have the operator scope alone (control.md).
        scope = Scope.OPERATOR if name == OPERATOR_ACCOUNT else Scope.READ
        keys.create_key(account=name, label="x", scopes=[scope], expires_ms=None, now_ms=0)
    except InvalidArgument:
        return False
    return True


def miner_accepts(name: str) -> bool:
    try:
        return parse_username(f"{name}.rig").account == name
    except StratumError:
        return False


def signed_request_accepts(name: str) -> bool:
    keys = KeyRing(master_key=b"m" * 32, new_key_id=lambda: "k-1")
    auth = Authenticator(
        keyring=keys, window_ms=60_000, limiter=RateLimiter(rate_per_s=1, burst=1), not_before_ms=0
    )
    headers = {
        b"x-auth": b"k-1:" + b"0" * 64,
        b"x-time": b"0",
        b"x-nonce": b"n",
        b"x-organization-id": name.encode(),
    }
    with pytest.raises(RpcError) as info:  # the key is unknown: only the header check varies
        auth.authenticate(headers=headers, body=b"", target=RPC_TARGET, now_ms=0, wall_ms=0, cost=1)
    return info.value.message == "unknown key"


@given(NAMES)
@example("a" * 65)
@example("alice bob")
def test_every_side_accepts_the_same_account_names(name: str) -> None:
    expected = is_account_name(name)
    assert market_accepts(name) is expected
    assert keyring_accepts(name) is expected
    assert miner_accepts(name) is expected
    assert signed_request_accepts(name) is expected


def test_the_rule_in_words() -> None:
    assert check_account_name("alice_2-b") == "alice_2-b"
    with pytest.raises(InvalidArgument, match="1-64 of A-Z a-z 0-9 _ -") as info:
        check_account_name("a" * 65)
    assert info.value.data == {"field": "account"}
    with pytest.raises(InvalidArgument):
        check_account_name(None)
