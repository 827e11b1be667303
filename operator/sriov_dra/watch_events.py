"""Decoding a Kubernetes watch stream: one JSON event per line.

A watch answer (``?watch=true``) is a stream of lines, each
``{"type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR", "object": {...}}``;
blank lines are keep-alives. An ``ERROR`` event carries a ``Status`` and ends
the watch (410 Gone: the resourceVersion is too old, list again). Every watch
of ours (agent claims and NADs, node-emulator pods) reads its stream here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Final, NamedTuple

from sriov_dra.errors import WatchFailed

RELIST: Final = "list again and start a new watch from the list's resourceVersion"


class WatchEvent(NamedTuple):
    """One event of a watch: its type and the object as the apiserver sent it."""

    type: str
    object: dict[str, Any]


def decode_watch_line(line: bytes | str) -> WatchEvent | None:
    """The event on one line of a watch stream; None for a keep-alive (blank) line.

    Raises WatchFailed for an ERROR event (``status`` = the Status' code, 500
    when it has none) and for a line that is not a watch event (``status`` None).
    """
    if not line.strip():
        return None
    try:
        event = json.loads(line)
        kind, obj = event["type"], event["object"]
    except (ValueError, TypeError, KeyError) as exc:
        text = line.decode(errors="replace") if isinstance(line, bytes) else line
        raise WatchFailed(f"not a watch event: {text[:200]!r} ({exc!r})", fix=RELIST) from exc
    if not isinstance(kind, str) or not isinstance(obj, dict):
        raise WatchFailed(f"not a watch event: {event!r:.200}", fix=RELIST)
    if kind == "ERROR":
        code = obj.get("code")
        raise WatchFailed(
            str(obj.get("message") or obj.get("reason") or "watch ended with an error"),
            status=code if isinstance(code, int) else 500,
            fix=RELIST,
        )
    return WatchEvent(kind, obj)


async def decode_watch_stream(lines: AsyncIterable[bytes]) -> AsyncIterator[WatchEvent]:
    """The events of a watch stream's lines, keep-alives skipped; WatchFailed as above."""
    async for line in lines:
        event = decode_watch_line(line)
        if event is not None:
            yield event
