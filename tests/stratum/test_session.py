"""The sans-I/O session: transitions, ordering of outcomes, pipeline edge cases, fuzzing."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratum.config import StratumConfig
from stratum.core.errors import StratumError, StratumErrorCode
from stratum.core.handshake import parse_username, password_difficulty
from stratum.core.jobs import Job
from stratum.core.messages import Method, recover_id
from stratum.core.registries import ExtranonceAllocator, SubmittedShares
from stratum.core.session import ServerSession
from stratum.core.session_types import Outcome
from stratum.core.states import TRANSITIONS, CloseReason, RefusedInState, SessionState

from .helpers import find_nonce

NOW = 1_800_000_000_000
JOB = Job(
    source="s",
    seq=1,
    height=10,
    prevhash="ab" * 32,
    coinb1="01" * 42,
    coinb2="02" * 50,
    merkle_branch=("d1" * 32,),
    version="20000000",
    nbits="1d00ffff",
    ntime=f"{NOW // 1000:08x}",
    clean_jobs=True,
)


def make_session(**overrides: Any) -> ServerSession:
    config = StratumConfig(
        start_difficulty=1e-6, min_difficulty=1e-9, max_difficulty=1.0, vardiff=False, **overrides
    ).session_config()
    return ServerSession(conn_id=1, config=config, extranonces=ExtranonceAllocator(), now_ms=NOW)


def feed(session: ServerSession, method: str, params: Any, request_id: Any = 1) -> Outcome:
    line = msgspec.json.encode({"id": request_id, "method": method, "params": params})
    session.receive_data(line + b"\n")
    outcome = session.next_outcome(NOW)
    assert outcome is not None
    assert session.next_outcome(NOW) is None
    return outcome


def decode(data: bytes) -> list[dict[str, Any]]:
    return [msgspec.json.decode(line) for line in data.splitlines()]


def logged_in(**overrides: Any) -> tuple[ServerSession, str]:
    session = make_session(**overrides)
    feed(session, "mining.subscribe", [])
    assert feed(session, "mining.authorize", ["a.w", ""]).start_work
    (notify,) = [m for m in decode(session.send_job(JOB, NOW)) if m["method"] == "mining.notify"]
    return session, notify["params"][0]


def test_transition_table_covers_every_state_and_method() -> None:
    assert set(TRANSITIONS) == set(SessionState)
    assert TRANSITIONS[SessionState.CLOSED] == {}
    # submit is only ever allowed once authorized
    assert [s for s, methods in TRANSITIONS.items() if Method.SUBMIT in methods] == [
        SessionState.AUTHORIZED
    ]


def test_states_follow_the_table() -> None:
    session = make_session()
    assert session.state is SessionState.CONNECTED
    feed(session, "mining.configure", [[], {}])
    assert session.state is SessionState.CONNECTED
    outcome = feed(session, "mining.authorize", ["a.w", "x"])
    assert isinstance(outcome.error, RefusedInState)
    assert outcome.error.code is StratumErrorCode.NOT_SUBSCRIBED
    feed(session, "mining.subscribe", ["ua"])
    assert session.state is SessionState.SUBSCRIBED
    outcome = feed(session, "mining.subscribe", ["ua"])
    assert decode(outcome.reply)[0]["error"] == [20, "Already subscribed", None]
    outcome = feed(session, "mining.authorize", ["bad..name", "x"])
    assert session.state is SessionState.SUBSCRIBED
    assert outcome.error is not None
    outcome = feed(session, "mining.authorize", ["a.w", "x"])
    assert session.state is SessionState.AUTHORIZED
    assert outcome.start_work
    # A second worker does not restart work.
    assert not feed(session, "mining.authorize", ["a.w2", "x"]).start_work
    session.receive_data(b"")
    outcome = session.next_outcome(NOW)
    assert outcome is not None
    assert outcome.close is CloseReason.PEER_CLOSED
    assert session.state is SessionState.CLOSED
    assert session.next_outcome(NOW) is None


VALID_PARAMS: dict[Method, list[Any]] = {
    Method.SUBSCRIBE: ["ua"],
    Method.AUTHORIZE: ["a.w", "x"],
    Method.EXTRANONCE_SUBSCRIBE: [],
    Method.CONFIGURE: [[], {}],
    Method.SUGGEST_DIFFICULTY: [1e-6],
    Method.SUBMIT: ["a.w", "nope", "00000000", "00000000", "00000000"],
}


def session_in(state: SessionState) -> ServerSession:
    session = make_session()
    if state is not SessionState.CONNECTED:
        feed(session, "mining.subscribe", [])
    if state is SessionState.AUTHORIZED:
        feed(session, "mining.authorize", ["a.w", ""])
    assert session.state is state
    return session


@pytest.mark.parametrize("state", [s for s in SessionState if s is not SessionState.CLOSED])
@pytest.mark.parametrize("method", list(VALID_PARAMS))
def test_the_table_decides_every_request(state: SessionState, method: Method) -> None:
    session = session_in(state)
    outcome = feed(session, method.value, VALID_PARAMS[method])
    target = TRANSITIONS[state].get(method)
    if target is None:
        assert isinstance(outcome.error, RefusedInState)
        assert session.state is state
    else:
        assert not isinstance(outcome.error, RefusedInState)
        assert session.state is target


def test_first_job_sets_difficulty_before_notify_and_ids_are_new() -> None:
    session, first = logged_in()
    lines = decode(session.send_job(JOB, NOW))
    assert [m["method"] for m in lines] == ["mining.notify"]  # difficulty unchanged: not resent
    assert lines[0]["params"][0] != first


def test_clean_jobs_makes_older_jobs_stale_after_grace() -> None:
    session, first = logged_in(stale_grace_s=2.0)
    session.send_job(msgspec.structs.replace(JOB, seq=2, clean_jobs=True), NOW)
    assert session.jobs[first].stale_at_ms == NOW + 2000
    session.send_job(msgspec.structs.replace(JOB, seq=3, clean_jobs=False), NOW + 2500)
    assert first not in session.jobs  # pruned once stale


def test_job_table_is_bounded() -> None:
    session, _ = logged_in(max_jobs_per_connection=4)
    for seq in range(20):
        session.send_job(msgspec.structs.replace(JOB, seq=seq, clean_jobs=False), NOW)
    assert len(session.jobs) == 4


def test_too_many_rejects_in_a_row_closes_with_a_message() -> None:
    session, _job_id = logged_in(max_consecutive_rejects=3)
    for i in range(3):
        outcome = feed(
            session, "mining.submit", ["a.w", "nope", "00000000", "00000000", f"{i:08x}"]
        )
        assert outcome.close is None
        assert outcome.share is not None
        assert outcome.share.reason == "stale"
    outcome = feed(session, "mining.submit", ["a.w", "nope", "00000000", "00000000", "ffffffff"])
    assert outcome.close is CloseReason.TOO_MANY_REJECTS
    (message,) = decode(outcome.followups)
    assert message["method"] == "client.show_message"
    assert "4 in a row" in message["params"][0]


def test_an_accepted_share_resets_the_reject_streak() -> None:
    session, job_id = logged_in(max_consecutive_rejects=2)
    for _ in range(2):
        feed(session, "mining.submit", ["a.w", "nope", "00000000", "00000000", "00000000"])
    nonce = find_nonce(
        algorithm=session.config.algorithm,
        notify=[
            job_id,
            JOB.prevhash,
            JOB.coinb1,
            JOB.coinb2,
            list(JOB.merkle_branch),
            JOB.version,
            JOB.nbits,
            JOB.ntime,
            True,
        ],
        extranonce1=session.extranonce1 or b"",
        extranonce2=bytes(4),
        difficulty=1e-6,
    )
    outcome = feed(session, "mining.submit", ["a.w", job_id, "00000000", JOB.ntime, nonce])
    assert outcome.share is not None
    assert outcome.share.accepted
    assert session.consecutive_rejects == 0
    # An accepted share carries the submission as made, for a source that forwards it.
    share = outcome.share
    assert (share.job_seq, share.extranonce1, share.extranonce2) == (
        JOB.seq,
        (session.extranonce1 or b"").hex(),
        "00000000",
    )
    assert (share.ntime, share.nonce, share.version_bits) == (JOB.ntime, nonce, None)


def valid_nonce(session: ServerSession, job_id: str) -> str:
    notify = [job_id, JOB.prevhash, JOB.coinb1, JOB.coinb2, list(JOB.merkle_branch)]
    notify += [JOB.version, JOB.nbits, JOB.ntime, True]
    return find_nonce(
        algorithm=session.config.algorithm,
        notify=notify,
        extranonce1=session.extranonce1 or b"",
        extranonce2=bytes(4),
        difficulty=1e-6,
    )


def submit(session: ServerSession, job_id: str, nonce: str, *bits: str) -> list[Any] | None:
    outcome = feed(session, "mining.submit", ["a.w", job_id, "00000000", JOB.ntime, nonce, *bits])
    answer = decode(outcome.reply)[0]
    return None if answer["error"] is None else answer["error"][:2]


def test_a_share_is_one_duplicate_whatever_form_its_version_takes() -> None:
    session, job_id = logged_in()
    feed(session, "mining.configure", [["version-rolling"], {"version-rolling.mask": "1fffe000"}])
    nonce = valid_nonce(session, job_id)
    assert submit(session, job_id, nonce) is None
    # No version bits and bits "00000000" make the same header: paid once.
    assert submit(session, job_id, nonce, "00000000") == [22, "Duplicate share"]


def test_a_share_is_one_duplicate_under_every_id_its_template_was_sent_with() -> None:
    session, job_id = logged_in()
    nonce = valid_nonce(session, job_id)
    assert submit(session, job_id, nonce) is None
    # A difficulty change re-sends the same template under a new id (not clean).
    followups = feed(session, "mining.suggest_difficulty", [2e-6]).followups
    (notify,) = [m for m in decode(followups) if m["method"] == "mining.notify"]
    resent = notify["params"][0]
    assert resent != job_id
    assert submit(session, resent, nonce) == [22, "Duplicate share"]


def test_a_new_difficulty_comes_with_a_job_whose_header_differs() -> None:
    session, job_id = logged_in()
    nonce = valid_nonce(session, job_id)
    lines = decode(feed(session, "mining.suggest_difficulty", [2e-6]).followups)
    assert [m["method"] for m in lines] == ["mining.set_difficulty", "mining.notify"]
    assert lines[0]["params"] == [2e-6]
    params = lines[1]["params"]
    template = [JOB.prevhash, JOB.coinb1, JOB.coinb2, list(JOB.merkle_branch)]
    assert params[1:7] == [*template, JOB.version, JOB.nbits]
    # Same template, not clean, new id, and ntime one second on: the header changed.
    assert (params[0] != job_id, params[8]) == (True, False)
    assert int(params[7], 16) == int(JOB.ntime, 16) + 1
    # The earlier job's shares still count, at the difficulty it was sent with.
    outcome = feed(session, "mining.submit", ["a.w", job_id, "00000000", JOB.ntime, nonce])
    assert outcome.share is not None
    assert (outcome.share.accepted, outcome.share.difficulty) == (True, 1e-6)
    assert session.jobs[params[0]].difficulty == 2e-6


def test_difficulty_changes_never_move_ntime_past_the_window() -> None:
    session, _ = logged_in(ntime_future_s=2)
    ntimes = []
    for difficulty in (2e-6, 3e-6, 4e-6, 5e-6):
        (notify,) = decode(feed(session, "mining.suggest_difficulty", [difficulty]).followups)[1:]
        ntimes.append(int(notify["params"][7], 16))
    now_s = NOW // 1000
    assert ntimes == [now_s + 1, now_s + 2, now_s + 2, now_s + 2]


def test_submits_refused_by_the_state_are_counted_but_are_no_shares() -> None:
    session = make_session()
    params = ["a.w", "1", "00000000", "00000000", "00000000"]
    outcome = feed(session, "mining.submit", params)
    assert decode(outcome.reply)[0]["error"] == [25, "Not subscribed", None]
    assert (outcome.share, outcome.refused_submit) == (None, "not_subscribed")
    feed(session, "mining.subscribe", [])
    outcome = feed(session, "mining.submit", params)
    assert decode(outcome.reply)[0]["error"] == [24, "Unauthorized worker", None]
    assert (outcome.share, outcome.refused_submit) == (None, "unauthorized")
    assert session.rejected == {"not_subscribed": 1, "unauthorized": 1}
    assert session.state is SessionState.SUBSCRIBED


def test_a_rejected_share_without_a_valid_name_is_the_connections_first_worker() -> None:
    session, job_id = logged_in()
    outcome = feed(session, "mining.submit", ["bad name", job_id, "00", "00000000", "00000000"])
    assert outcome.share is not None
    assert (outcome.share.account, outcome.share.worker) == ("a", "w")
    # The name is checked before the extranonce2 size (which needs the job's layout).
    assert outcome.share.reason == "unauthorized"
    outcome = feed(session, "mining.submit", ["a.w", job_id, "zz", "00000000", "00000000"])
    assert outcome.share is not None
    assert (outcome.share.account, outcome.share.reason) == ("a", "other")


def test_a_resumed_session_cannot_submit_its_shares_again() -> None:
    config = make_session().config
    extranonces, submitted = ExtranonceAllocator(), SubmittedShares()

    def session_on(extranonce1: str | None) -> tuple[ServerSession, str]:
        session = ServerSession(
            conn_id=1, config=config, extranonces=extranonces, now_ms=NOW, submitted=submitted
        )
        feed(session, "mining.subscribe", ["ua", *([extranonce1] if extranonce1 else [])])
        feed(session, "mining.authorize", ["a.w", ""])
        (notify,) = [
            m for m in decode(session.send_job(JOB, NOW)) if m["method"] == "mining.notify"
        ]
        return session, notify["params"][0]

    first, job_id = session_on(None)
    nonce = valid_nonce(first, job_id)
    assert submit(first, job_id, nonce) is None
    first.close(CloseReason.PEER_GONE)
    assert first.extranonce1 is not None
    # Same extranonce1 back, same template from the order's stream: the same header.
    second, job_id = session_on(first.extranonce1.hex())
    assert second.extranonce1 == first.extranonce1
    assert submit(second, job_id, nonce) == [22, "Duplicate share"]
    assert len(submitted) == 0  # taken over from the parked sets


def test_parked_shares_are_kept_for_a_while_and_bounded() -> None:
    submitted = SubmittedShares(retention_ms=1000, max_parked=2)
    for n in range(3):
        submitted.park(bytes([n]), {b"share"}, now_ms=NOW)
    assert len(submitted) == 2  # the oldest went first
    assert submitted.claim(bytes([0]), now_ms=NOW) == set()
    assert submitted.claim(bytes([2]), now_ms=NOW + 999) == {b"share"}
    assert submitted.claim(bytes([1]), now_ms=NOW + 1000) == set()  # expired


def test_requests_before_subscribe_do_not_postpone_the_subscribe_timeout() -> None:
    session = make_session(subscribe_timeout_s=30)
    configure = msgspec.json.encode({"id": 1, "method": "mining.configure", "params": [[], {}]})
    session.receive_data(configure + b"\n")
    assert session.next_outcome(NOW + 20_000) is not None
    outcome = session.tick(NOW + 30_000)
    assert outcome is not None
    assert outcome.close is CloseReason.SUBSCRIBE_TIMEOUT


@pytest.mark.parametrize("session_id", ["zz-not-hex", "abc", ""])
def test_a_session_id_that_cannot_be_resumed_is_ignored(session_id: str) -> None:
    session = make_session()
    outcome = feed(session, "mining.subscribe", ["cgminer/4.10", session_id])
    result = decode(outcome.reply)[0]["result"]
    assert len(bytes.fromhex(result[1])) == 4
    assert session.state is SessionState.SUBSCRIBED


def test_idle_and_subscribe_timeouts() -> None:
    session = make_session(subscribe_timeout_s=30, idle_timeout_s=600)
    assert session.next_deadline_ms() == NOW + 30_000
    assert session.tick(NOW + 29_999) is None
    outcome = session.tick(NOW + 30_000)
    assert outcome is not None
    assert outcome.close is CloseReason.SUBSCRIBE_TIMEOUT
    session = make_session(subscribe_timeout_s=30, idle_timeout_s=600)
    feed(session, "mining.subscribe", [])
    assert session.next_deadline_ms() == NOW + 600_000
    # Junk keeps nobody alive: unknown methods are not useful.
    session.receive_data(b'{"id":1,"method":"x.y","params":[]}\n')
    assert session.next_outcome(NOW + 500_000) is not None
    outcome = session.tick(NOW + 600_000)
    assert outcome is not None
    assert outcome.close is CloseReason.IDLE_TIMEOUT


def test_responses_from_the_client_are_ignored() -> None:
    session = make_session()
    session.receive_data(b'{"id":9,"result":"cpuminer/2.5.1","error":null}\n')
    outcome = session.next_outcome(NOW)
    assert outcome is not None
    assert outcome.reply == b""
    assert outcome.close is None


def test_notifications_get_no_error_reply() -> None:
    session = make_session()
    outcome = feed(session, "nope", [], request_id=None)
    assert outcome.reply == b""
    assert outcome.error is not None


@pytest.mark.parametrize(
    ("line", "expected_id"),
    [
        (b'{"id": 17, "method": "mining.subscribe", "params": [}', 17),
        (b'{"id":"abc","method":', "abc"),
        (b"\xff\xfe garbage", None),
        (b"[1, 2, 3]", None),
        (b'{"id": [1], "method": "mining.subscribe"}', None),
    ],
)
def test_unparsable_lines_close_with_an_error_reply_when_the_id_is_recoverable(
    line: bytes, expected_id: Any
) -> None:
    session = make_session()
    session.receive_data(line + b"\n")
    outcome = session.next_outcome(NOW)
    assert outcome is not None
    assert outcome.close is CloseReason.BAD_JSON
    if expected_id is None:
        assert outcome.reply == b""
    else:
        (reply,) = decode(outcome.reply)
        assert reply["id"] == expected_id
        assert reply["error"][0] == 20


def test_oversize_line_gets_an_error_with_its_id() -> None:
    session = make_session()
    session.receive_data(b'{"id": 5, "method": "mining.subscribe", "params": ["' + b"a" * 20000)
    outcome = session.next_outcome(NOW)
    assert outcome is not None
    assert outcome.close is CloseReason.LINE_TOO_LONG
    (reply,) = decode(outcome.reply)
    assert reply["id"] == 5
    assert "too long" in reply["error"][1]


def test_username_and_password_rules() -> None:
    assert parse_username("acct").worker == "default"
    assert parse_username("a-b_c.W_1").account == "a-b_c"
    for bad in ("", "a.", ".w", "a.b.c", "a" * 65, "a." + "w" * 33, "a b", "á"):
        with pytest.raises(StratumError) as info:
            parse_username(bad)
        assert info.value.code is StratumErrorCode.UNAUTHORIZED
    assert password_difficulty("x,d=0.5") == 0.5
    assert password_difficulty("d=2, foo=bar") == 2.0
    assert password_difficulty("d=abc") is None
    assert password_difficulty("d=-1") is None
    assert password_difficulty("x") is None
    assert recover_id(b'junk "id" : -3 junk') == -3


def test_extranonce_allocator_uniqueness_and_resume() -> None:
    allocator = ExtranonceAllocator(size=1, start=254)
    values = [allocator.allocate() for _ in range(256)]
    assert len(set(values)) == 256
    with pytest.raises(RuntimeError):
        allocator.allocate()
    allocator.release(values[10])
    assert allocator.allocate(values[10]) == values[10]
    allocator.release(b"\x07")
    assert allocator.allocate(b"\x08") == b"\x07"  # requested value taken: a fresh one


REQUESTS = st.builds(
    lambda i, m, p: msgspec.json.encode({"id": i, "method": m, "params": p}) + b"\n",
    st.one_of(st.none(), st.integers(), st.text(max_size=5)),
    st.sampled_from([m.value for m in Method] + ["client.get_version", "x"]),
    st.lists(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(),
            st.text(max_size=10),
            st.sampled_from(["a.w", "00000000", "1", "ffffffff"]),
        ),
        max_size=7,
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=64), REQUESTS), max_size=25))
def test_session_never_crashes_on_arbitrary_input(chunks: list[bytes]) -> None:
    session = make_session()
    for chunk in chunks:
        if not chunk:
            continue
        session.receive_data(chunk)
        for _ in range(1000):
            outcome = session.next_outcome(NOW)
            if outcome is None:
                break
            for line in (outcome.reply + outcome.followups).splitlines():
                msgspec.json.decode(line)  # everything we send is valid JSON
            if outcome.start_work:
                session.send_job(JOB, NOW)
        session.tick(NOW + 1)


def test_a_jump_of_the_clock_is_no_silence_of_the_peer() -> None:
    config = StratumConfig(
        start_difficulty=1e-6, min_difficulty=1e-9, max_difficulty=1.0, vardiff_retarget_s=30
    ).session_config()
    session = ServerSession(conn_id=1, config=config, extranonces=ExtranonceAllocator(), now_ms=NOW)
    feed(session, "mining.subscribe", [])
    feed(session, "mining.authorize", ["a.w", ""])
    session.send_job(JOB, NOW)
    vardiff_tick = session.next_deadline_ms()
    assert vardiff_tick == NOW + 30_000  # vardiff's retarget comes before the idle timeout
    day = 86_400_000
    session.clock_jumped(day)
    assert session.next_deadline_ms() == vardiff_tick + day
    # A day of market time later the peer has been silent for as long as before the jump.
    assert session.tick(NOW + day + 29_999) is None
    assert session.difficulty == 1e-6
    outcome = session.tick(NOW + day + 600_000)
    assert outcome is not None
    assert outcome.close is CloseReason.IDLE_TIMEOUT
