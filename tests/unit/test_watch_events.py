"""Decoding watch streams: events, keep-alives, ERROR events and lines that are no event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sriov_dra.errors import WatchFailed
from sriov_dra.watch_events import WatchEvent, decode_watch_line, decode_watch_stream

POD = {"kind": "Pod", "metadata": {"name": "p", "resourceVersion": "7"}}
RELIST = "fix: list again and start a new watch from the list's resourceVersion"


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b'{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"p","resourceVersion":"7"}}}\n',
         WatchEvent("ADDED", POD)),
        ('{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}',
         WatchEvent("BOOKMARK", {"metadata": {"resourceVersion": "9"}})),
        (b"\n", None),
        (b"   \r\n", None),
        ("", None),
    ],
    ids=["added-bytes", "bookmark-str", "keep-alive", "whitespace", "empty"],
)  # fmt: skip
def test_lines_decode_to_events(line: bytes | str, event: WatchEvent | None) -> None:
    assert decode_watch_line(line) == event


def test_an_event_unpacks_as_type_and_object() -> None:
    kind, obj = decode_watch_line(b'{"type":"DELETED","object":{"a":1}}') or ("", {})
    assert (kind, obj) == ("DELETED", {"a": 1})


@pytest.mark.parametrize(
    ("line", "status", "message"),
    [
        (
            b'{"type":"ERROR","object":{"kind":"Status","status":"Failure",'
            b'"message":"too old resource version: 5 (9)","reason":"Expired","code":410}}',
            410,
            f"too old resource version: 5 (9); {RELIST}",
        ),
        (
            b'{"type":"ERROR","object":{"kind":"Status","reason":"InternalError"}}',
            500,
            f"InternalError; {RELIST}",
        ),
        (
            b'{"type":"ERROR","object":{}}',
            500,
            f"watch ended with an error; {RELIST}",
        ),
        (
            b"not json",
            None,
            "not a watch event: 'not json' (JSONDecodeError('Expecting value: line 1 column 1 "
            f"(char 0)')); {RELIST}",
        ),
        (
            b'{"object":{}}',
            None,
            f"""not a watch event: '{{"object":{{}}}}' (KeyError('type')); {RELIST}""",
        ),
        (
            b'{"type":"ADDED","object":[1]}',
            None,
            f"not a watch event: {{'type': 'ADDED', 'object': [1]}}; {RELIST}",
        ),
        (
            b"[1, 2]",
            None,
            "not a watch event: '[1, 2]' (TypeError('list indices must be integers or slices, "
            f"not str')); {RELIST}",
        ),
    ],
    ids=[
        "expired-410",
        "status-without-code-or-message",
        "empty-status",
        "not-json",
        "no-type",
        "object-not-a-mapping",
        "json-array",
    ],
)
def test_errors_and_garbage_raise_watch_failed(
    line: bytes, status: int | None, message: str
) -> None:
    with pytest.raises(WatchFailed) as caught:
        decode_watch_line(line)
    assert caught.value.status == status
    assert str(caught.value) == message


async def lines(*items: bytes) -> AsyncIterator[bytes]:
    for item in items:
        yield item


async def test_a_stream_yields_its_events_in_order_without_keep_alives() -> None:
    events = [
        event
        async for event in decode_watch_stream(
            lines(
                b'{"type":"ADDED","object":{"n":1}}\n',
                b"\n",
                b'{"type":"MODIFIED","object":{"n":2}}\n',
                b'{"type":"BOOKMARK","object":{"n":3}}\n',
            )
        )
    ]
    assert events == [
        WatchEvent("ADDED", {"n": 1}),
        WatchEvent("MODIFIED", {"n": 2}),
        WatchEvent("BOOKMARK", {"n": 3}),
    ]


async def test_a_stream_delivers_what_came_before_an_error_then_raises() -> None:
    seen: list[dict[str, Any]] = []
    with pytest.raises(WatchFailed) as caught:
        async for _, obj in decode_watch_stream(
            lines(
                b'{"type":"ADDED","object":{"n":1}}\n',
                b'{"type":"ERROR","object":{"code":410,"message":"gone"}}\n',
                b'{"type":"ADDED","object":{"n":2}}\n',
            )
        ):
            seen.append(obj)
    assert seen == [{"n": 1}]
    assert caught.value.status == 410
