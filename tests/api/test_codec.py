"""The JSON-RPC codec: parse errors, batches, notifications, ids."""

from __future__ import annotations

import json

import pytest

from marketplace.api.errors import ApiCode, RpcError
from marketplace.api.rpc import BadCall, Call, encode_error, join_answers, parse_body


@pytest.mark.parametrize(
    "body", [b"", b"{", b"\xff", b'{"a":1} x', b"[" * 5000 + b"]" * 5000, b'"\\ud800"']
)
def test_parse_errors(body: bytes) -> None:
    with pytest.raises(RpcError) as info:
        parse_body(body)
    assert info.value.code is ApiCode.PARSE_ERROR


def test_empty_batch_is_one_invalid_request() -> None:
    with pytest.raises(RpcError) as info:
        parse_body(b"[]")
    assert info.value.code is ApiCode.INVALID_REQUEST


def test_single_call_notification_and_ids() -> None:
    parsed = parse_body(b'{"jsonrpc":"2.0","method":"m","params":{"a":1},"id":"x"}')
    assert not parsed.batch
    assert parsed.items == [Call(0, "x", False, "m", b'{"a":1}')]
    parsed = parse_body(b'{"jsonrpc":"2.0","method":"m"}')
    assert parsed.items == [Call(0, None, True, "m", b"{}")]
    parsed = parse_body(b'{"jsonrpc":"2.0","method":"m","id":null}')
    assert parsed.items == [Call(0, None, False, "m", b"{}")]


def test_batch_with_bad_elements_keeps_readable_ids() -> None:
    body = json.dumps(
        [
            {"jsonrpc": "2.0", "method": "a", "id": 1},
            {"jsonrpc": "1.0", "method": "b", "id": 2},
            {"jsonrpc": "2.0", "id": 3},
            {"jsonrpc": "2.0", "method": "c", "id": 1.5},
            5,
            {"jsonrpc": "2.0", "method": "d", "id": 4, "extra": True},
        ]
    ).encode()
    parsed = parse_body(body)
    assert parsed.batch
    assert isinstance(parsed.items[0], Call)
    bad = parsed.items[1:]
    assert all(isinstance(b, BadCall) for b in bad)
    assert [b.id for b in bad] == [2, 3, None, None, 4]
    assert all(b.error.code is ApiCode.INVALID_REQUEST for b in bad)  # type: ignore[union-attr]


def test_answers() -> None:
    error = RpcError(ApiCode.RATE_LIMITED, "rate limited", {"retry_after_ms": 50})
    one = encode_error(7, error)
    assert json.loads(one) == {
        "jsonrpc": "2.0",
        "error": {"code": 4029, "message": "rate limited", "data": {"retry_after_ms": 50}},
        "id": 7,
    }
    assert "data" not in json.loads(encode_error(None, RpcError(ApiCode.PARSE_ERROR, "x")))["error"]
    assert join_answers(False, []) is None
    assert join_answers(True, []) is None
    assert json.loads(join_answers(True, [one, one]) or b"") == [json.loads(one)] * 2


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"", "empty body"),
        (b"\n\t ", "empty body"),
        (b'{"a": "\xc3"}', "invalid UTF-8 at byte 7"),
        (b'"\\ud800"', "lone surrogate \\ud800 at byte 1: not a character"),
        (b'["\\\\\\ud83d"]', "lone surrogate \\ud83d at byte 4: not a character"),
        (b'{"a":1', "Input data was truncated"),  # truly truncated: msgspec's words are right
    ],
)
def test_parse_errors_say_what_is_wrong(body: bytes, detail: str) -> None:
    with pytest.raises(RpcError) as info:
        parse_body(body)
    assert info.value.data == {"detail": detail}


@pytest.mark.parametrize(
    "body", [b'"\\ud83d\\ude00"', b'"\\\\ud800"', b'["\\u00e9", "\\\\\\\\ud800"]']
)
def test_surrogate_pairs_and_escaped_backslashes_are_fine(body: bytes) -> None:
    # Valid JSON (not a request, so each element is a -32600), never a -32700.
    parsed = parse_body(body)
    assert all(isinstance(item, BadCall) for item in parsed.items)
