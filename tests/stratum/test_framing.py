"""Line framing: every byte split, CRLF, the 16 KiB bound, EOF; never crashes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stratum.core.framing import NEED_DATA, EndOfStream, LineSplitter, LineTooLong


def drain(splitter: LineSplitter) -> list[object]:
    events: list[object] = []
    for _ in range(10_000):
        event = splitter.next_line()
        if event is NEED_DATA:
            return events
        events.append(event)
        if isinstance(event, LineTooLong | EndOfStream):
            return events
    raise AssertionError("too many events")


STREAM = b'{"id":1,"method":"a"}\r\n\n{"id":2}\nthird\r\n'
LINES = [b'{"id":1,"method":"a"}', b'{"id":2}', b"third"]


def test_every_split_point_gives_the_same_lines() -> None:
    for i in range(len(STREAM) + 1):
        for j in range(i, len(STREAM) + 1):
            splitter = LineSplitter()
            out: list[object] = []
            for part in (STREAM[:i], STREAM[i:j], STREAM[j:]):
                if part:  # b"" means EOF
                    splitter.receive_data(part)
                out += drain(splitter)
            splitter.receive_data(b"")
            out += drain(splitter)
            assert out == [*LINES, EndOfStream(b"")], (i, j)


def test_byte_at_a_time() -> None:
    splitter = LineSplitter()
    out: list[object] = []
    for byte in STREAM:
        splitter.receive_data(bytes([byte]))
        out += drain(splitter)
    assert out == LINES


def test_partial_line_at_eof() -> None:
    splitter = LineSplitter()
    splitter.receive_data(b"one\ntwo")
    splitter.receive_data(b"")
    assert drain(splitter) == [b"one", EndOfStream(b"two")]
    assert splitter.next_line() == EndOfStream(b"two")  # terminal


def test_line_at_the_limit_is_fine_one_more_byte_is_not() -> None:
    splitter = LineSplitter(max_line=16)
    splitter.receive_data(b"x" * 16 + b"\r\n")
    assert drain(splitter) == [b"x" * 16]
    splitter.receive_data(b"y" * 16 + b"\r")  # the \r may still be half of \r\n
    assert drain(splitter) == []
    splitter.receive_data(b"\n")
    assert drain(splitter) == [b"y" * 16]
    splitter.receive_data(b"z" * 17)
    event = splitter.next_line()
    assert isinstance(event, LineTooLong)
    assert event.limit == 16
    assert splitter.buffered == 0


def test_oversize_without_newline_is_reported_without_buffering_more() -> None:
    splitter = LineSplitter()
    chunk = b'{"id": 7, "method": "' + b"a" * 4096
    events: list[object] = []
    for _ in range(300):  # 1.2 MB offered in total
        splitter.receive_data(chunk)
        events += drain(splitter)
        assert splitter.buffered <= 16 * 1024 + len(chunk)
        if events:
            break
    assert len(events) == 1
    assert isinstance(events[0], LineTooLong)
    assert events[0].prefix.startswith(b'{"id": 7')
    splitter.receive_data(chunk)  # ignored after the terminal event
    assert splitter.buffered == 0
    assert isinstance(splitter.next_line(), LineTooLong)


def test_oversize_line_with_newline_in_one_chunk() -> None:
    splitter = LineSplitter(max_line=8)
    splitter.receive_data(b"ok\n" + b"x" * 9 + b"\nlater\n")
    events = drain(splitter)
    assert events[0] == b"ok"
    assert isinstance(events[1], LineTooLong)


@given(st.lists(st.binary(max_size=200), max_size=30), st.integers(4, 64))
def test_never_crashes_and_respects_the_bound(chunks: list[bytes], limit: int) -> None:
    splitter = LineSplitter(max_line=limit)
    for chunk in [*(c for c in chunks if c), b""]:
        splitter.receive_data(chunk)
        for event in drain(splitter):
            if isinstance(event, bytes):
                assert 0 < len(event) <= limit
                assert b"\n" not in event
        assert splitter.buffered <= limit + 1 + 200


LINE = st.binary(min_size=1, max_size=20).filter(lambda b: b"\n" not in b and not b.endswith(b"\r"))


@given(st.lists(LINE, max_size=20), st.data())
def test_lines_round_trip_under_any_split(lines: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    splitter = LineSplitter()
    out: list[object] = []
    previous = 0
    for cut in [*cuts, len(stream)]:
        if cut > previous:
            splitter.receive_data(stream[previous:cut])
        previous = cut
        out += drain(splitter)
    assert out == lines
