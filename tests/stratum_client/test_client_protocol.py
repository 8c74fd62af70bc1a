"""The sans-I/O client session: every message, ordering, pending ids, byte splits."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratum.core.client_events import (
    Authorized,
    Configured,
    ConnectionClosed,
    DifficultySuggested,
    Event,
    ExtranonceSubscribed,
    NewDifficulty,
    NewExtranonce,
    NewJob,
    NewVersionMask,
    ReconnectRequested,
    RequestFailed,
    ShowMessage,
    StratumFailure,
    SubmitResult,
    Subscribed,
    UnknownNotification,
)
from stratum.core.client_protocol import (
    ClientProtocol,
    ClientState,
    LocalProtocolError,
    RemoteProtocolError,
)
from stratum.core.errors import RejectReason, reason_for_code
from stratum.core.framing import NEED_DATA
from stratum.core.messages import Method

NOTIFY = [
    "jA",
    "abcdef01" * 5 + "00000000" * 3,
    "0100",
    "ffff",
    ["d1" * 32],
    "20000000",
    "1d00ffff",
    "6b0afc41",
    True,
]


def line(obj: Any) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def events(proto: ClientProtocol) -> list[Event]:
    out: list[Event] = []
    for _ in range(1000):
        event = proto.next_event()
        if event is NEED_DATA:
            return out
        out.append(event)
    raise AssertionError("next_event never asked for data")


def feed(proto: ClientProtocol, data: bytes) -> list[Event]:
    proto.receive_data(data)
    return events(proto)


def subscribed(extranonce1: str = "f000000d", size: int = 4) -> ClientProtocol:
    proto = ClientProtocol(user_agent="test/1")
    request_id, _ = proto.subscribe()
    reply = {
        "id": request_id,
        "result": [[["mining.set_difficulty", "s1"], ["mining.notify", "abcd"]], extranonce1, size],
        "error": None,
    }
    (event,) = feed(proto, line(reply))
    assert isinstance(event, Subscribed)
    return proto


def test_subscribe_request_and_reply() -> None:
    proto = ClientProtocol(user_agent="test/1")
    request_id, data = proto.subscribe(session_id="abcd")
    assert json.loads(data) == {
        "id": request_id,
        "method": "mining.subscribe",
        "params": ["test/1", "abcd"],
    }
    assert data.endswith(b"\n")
    assert proto.state is ClientState.SUBSCRIBING
    reply = {
        "id": request_id,
        "result": [[["mining.notify", "abcd"]], "0a0b0c0d", 4],
        "error": None,
    }
    assert feed(proto, line(reply)) == [
        Subscribed(
            request_id=request_id, extranonce1="0a0b0c0d", extranonce2_size=4, session_id="abcd"
        )
    ]
    assert proto.state is ClientState.SUBSCRIBED
    assert (proto.extranonce1, proto.extranonce2_size, proto.session_id) == ("0a0b0c0d", 4, "abcd")


def test_subscribe_without_session_sends_only_the_agent() -> None:
    _, data = ClientProtocol(user_agent="ua").subscribe()
    assert json.loads(data)["params"] == ["ua"]


def test_refused_subscribe_can_be_retried() -> None:
    proto = ClientProtocol()
    request_id, _ = proto.subscribe(session_id="dead")
    (event,) = feed(
        proto, line({"id": request_id, "result": None, "error": [20, "no such session", None]})
    )
    assert event == RequestFailed(
        request_id=request_id,
        method=Method.SUBSCRIBE,
        failure=StratumFailure(code=20, message="no such session"),
    )
    assert proto.state is ClientState.CONNECTED
    proto.subscribe()  # allowed again


def test_requests_before_subscribe_are_our_bug() -> None:
    proto = ClientProtocol()
    with pytest.raises(LocalProtocolError, match=r"mining\.authorize"):
        proto.authorize("a.b", "x")
    with pytest.raises(LocalProtocolError):
        proto.submit(username="a", job_id="j", extranonce2="00", ntime="00000000", nonce="00000000")
    proto.configure(["version-rolling"], {"version-rolling.mask": "1fffe000"})  # BIP 310: first
    proto.subscribe()
    with pytest.raises(LocalProtocolError):
        proto.subscribe()


def test_authorize_ok_and_refused() -> None:
    proto = subscribed()
    first, data = proto.authorize("acct.w1", "d=0.01")
    assert json.loads(data)["params"] == ["acct.w1", "d=0.01"]
    second, _ = proto.authorize("acct.w2", "x")
    third, _ = proto.authorize("acct.w3", "x")
    got = feed(
        proto,
        line({"id": first, "result": True, "error": None})
        + line({"id": second, "result": None, "error": [24, "Unauthorized worker", None]})
        + line({"id": third, "result": False, "error": None}),
    )
    assert got == [
        Authorized(request_id=first, username="acct.w1", ok=True),
        Authorized(
            request_id=second,
            username="acct.w2",
            ok=False,
            failure=StratumFailure(code=24, message="Unauthorized worker"),
        ),
        Authorized(
            request_id=third,
            username="acct.w3",
            ok=False,
            failure=StratumFailure(code=24, message="Unauthorized worker"),
        ),
    ]


def test_extranonce_subscribe_configure_suggest() -> None:
    proto = subscribed()
    ext, data = proto.extranonce_subscribe()
    assert json.loads(data) == {"id": ext, "method": "mining.extranonce.subscribe", "params": []}
    conf, data = proto.configure(["version-rolling"], {"version-rolling.mask": "1fffe000"})
    assert json.loads(data)["params"] == [["version-rolling"], {"version-rolling.mask": "1fffe000"}]
    sug, data = proto.suggest_difficulty(0.5)
    assert json.loads(data)["params"] == [0.5]
    got = feed(
        proto,
        line({"id": ext, "result": None, "error": [20, "Not supported.", None]})
        + line(
            {
                "id": conf,
                "result": {"version-rolling": True, "version-rolling.mask": "1fffe000"},
                "error": None,
            }
        )
        + line({"id": sug, "result": True, "error": None}),
    )
    assert got == [
        ExtranonceSubscribed(request_id=ext, ok=False),
        Configured(request_id=conf, version_rolling=True, version_rolling_mask=0x1FFFE000),
        DifficultySuggested(request_id=sug, ok=True),
    ]


def test_configure_unknown_extension_is_false() -> None:
    proto = ClientProtocol()
    conf, _ = proto.configure(["minimum-difficulty"], {})
    (event,) = feed(
        proto, line({"id": conf, "result": {"minimum-difficulty": False}, "error": None})
    )
    assert event == Configured(request_id=conf, version_rolling=False, version_rolling_mask=None)


def test_submit_results_by_code_and_out_of_order_ids() -> None:
    proto = subscribed()
    ids = []
    for i in range(4):
        request_id, data = proto.submit(
            username="acct.w1",
            job_id="jA",
            extranonce2=f"{i:08x}",
            ntime="6b0afc41",
            nonce="24d10500",
            version_bits="00002000" if i == 3 else None,
        )
        ids.append(request_id)
        params = json.loads(data)["params"]
        assert len(params) == (6 if i == 3 else 5)
    assert len(set(ids)) == 4
    assert proto.pending_ids == tuple(ids)
    # Answered out of order, matched by id.
    got = feed(
        proto,
        line({"id": ids[2], "result": None, "error": [23, "Low difficulty share", None]})
        + line({"id": ids[0], "result": True, "error": None})
        + line({"id": ids[3], "result": None, "error": {"code": 21, "message": "Job not found"}})
        + line({"id": ids[1], "result": None, "error": [22, "Duplicate share", None]}),
    )
    assert [e.request_id for e in got] == [ids[2], ids[0], ids[3], ids[1]]  # type: ignore[union-attr]
    results = {e.request_id: e for e in got if isinstance(e, SubmitResult)}
    assert results[ids[0]].accepted
    assert results[ids[0]].extranonce2 == "00000000"
    assert results[ids[1]].reason is RejectReason.DUPLICATE
    assert results[ids[2]].reason is RejectReason.LOW_DIFFICULTY
    assert results[ids[3]].reason is RejectReason.STALE
    assert proto.pending_ids == ()


def test_reply_with_an_id_we_never_used_goes_to_the_oldest_request() -> None:
    proto = subscribed()
    first, _ = proto.submit(
        username="a", job_id="j", extranonce2="00", ntime="00000000", nonce="00000001"
    )
    second, _ = proto.submit(
        username="a", job_id="j", extranonce2="00", ntime="00000000", nonce="00000002"
    )
    (event,) = feed(proto, line({"id": 4, "result": True, "error": None}))  # cpuminer-style id
    assert isinstance(event, SubmitResult)
    assert (event.request_id, event.nonce) == (first, "00000001")
    assert proto.pending_ids == (second,)


def test_reply_to_nothing_is_the_servers_fault() -> None:
    proto = subscribed()
    with pytest.raises(RemoteProtocolError, match="no request"):
        feed(proto, line({"id": 99, "result": True, "error": None}))
    assert proto.state is ClientState.CLOSED


def test_reason_codes() -> None:
    assert [reason_for_code(c) for c in range(20, 27)] == [
        RejectReason.OTHER,
        RejectReason.STALE,
        RejectReason.DUPLICATE,
        RejectReason.LOW_DIFFICULTY,
        RejectReason.UNAUTHORIZED,
        RejectReason.NOT_SUBSCRIBED,
        RejectReason.UNKNOWN,
    ]


def test_difficulty_applies_to_jobs_received_after_it() -> None:
    proto = subscribed()
    notify = {"id": None, "method": "mining.notify", "params": NOTIFY}
    got = feed(
        proto,
        line(notify)
        + line({"id": None, "method": "mining.set_difficulty", "params": [0.0001]})
        + line({**notify, "params": ["jB", *NOTIFY[1:8], False]}),
    )
    assert isinstance(got[0], NewJob)
    assert got[0].difficulty == 1.0
    assert got[0].clean_jobs is True
    assert got[0].merkle_branch == ("d1" * 32,)
    assert got[1] == NewDifficulty(difficulty=0.0001)
    assert isinstance(got[2], NewJob)
    assert (got[2].job_id, got[2].difficulty, got[2].clean_jobs) == ("jB", 0.0001, False)


def test_other_notifications() -> None:
    proto = subscribed()
    got = feed(
        proto,
        line({"id": None, "method": "mining.set_extranonce", "params": ["01020304", 2]})
        + line({"id": None, "method": "mining.set_version_mask", "params": ["00ffe000"]})
        + line({"id": None, "method": "client.reconnect", "params": ["127.0.0.1", "3333", 2]})
        + line({"id": None, "method": "client.reconnect", "params": []})
        + line({"id": None, "method": "client.show_message", "params": ["serving order 7"]})
        + line({"id": None, "method": "mining.ping", "params": []}),
    )
    assert got == [
        NewExtranonce(extranonce1="01020304", extranonce2_size=2),
        NewVersionMask(mask="00ffe000"),
        ReconnectRequested(host="127.0.0.1", port=3333, wait_s=2.0),
        ReconnectRequested(host=None, port=None, wait_s=0.0),
        ShowMessage(text="serving order 7"),
        UnknownNotification(method="mining.ping"),
    ]
    assert (proto.extranonce1, proto.extranonce2_size) == ("01020304", 2)


def test_server_requests_are_answered() -> None:
    proto = subscribed()
    assert (
        feed(
            proto,
            line({"id": 50, "method": "client.get_version", "params": []})
            + line({"id": "x", "method": "mining.ping", "params": []}),
        )
        == []
    )
    replies = [json.loads(x) for x in proto.data_to_send().splitlines()]
    assert replies == [
        {"id": 50, "result": "test/1", "error": None},
        {"id": "x", "result": None, "error": [20, "Not supported.", None]},
    ]
    assert proto.data_to_send() == b""


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"not json\n", "bad line"),
        (line({"id": None, "method": "mining.notify", "params": ["j", "zz"]}), "mining.notify"),
        (line({"id": None, "method": "mining.set_difficulty", "params": [0]}), "positive"),
        (b"[" * 20000, "longer"),
        (b"{" + b" " * 17000 + b"}\n", "longer"),
    ],
)
def test_bad_lines_are_remote_errors(data: bytes, match: str) -> None:
    proto = subscribed()
    with pytest.raises(RemoteProtocolError, match=match):
        feed(proto, data)
    assert proto.state is ClientState.CLOSED


def test_eof_reports_pending_requests_and_closes() -> None:
    proto = subscribed()
    request_id, _ = proto.authorize("a.b")
    assert feed(proto, b"") == [ConnectionClosed(pending=(request_id,))]
    assert proto.state is ClientState.CLOSED
    with pytest.raises(LocalProtocolError):
        proto.authorize("a.c")
    with pytest.raises(LocalProtocolError, match="after EOF"):
        proto.receive_data(b"x")


def test_crlf_and_blank_lines_are_accepted() -> None:
    proto = subscribed()
    data = b"\r\n" + line({"id": None, "method": "mining.set_difficulty", "params": [2]}).replace(
        b"\n", b"\r\n"
    )
    assert feed(proto, data) == [NewDifficulty(difficulty=2.0)]


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_any_byte_split_gives_the_same_events(cuts: list[int]) -> None:
    proto = ClientProtocol()
    sub_id, _ = proto.subscribe()
    stream = (
        line({"id": sub_id, "result": [[["mining.notify", "ab"]], "f000000d", 4], "error": None})
        + line({"id": None, "method": "mining.set_difficulty", "params": [0.5]})
        + line({"id": None, "method": "mining.notify", "params": NOTIFY})
        + line({"id": None, "method": "client.show_message", "params": ["hi"]})
    )
    whole = ClientProtocol()
    whole.subscribe()
    expected = feed(whole, stream)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    got: list[Event] = []
    previous = 0
    for point in [*points, len(stream)]:
        if point > previous:  # b"" would mean EOF
            got += feed(proto, stream[previous:point])
        previous = point
    assert got == expected
    assert len(expected) == 4
