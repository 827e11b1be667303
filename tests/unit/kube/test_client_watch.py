"""The watch call every watch of ours goes through: its request, its events, its errors.

The generated ``list_*`` method is replaced by a recorder that answers with a
raw response as kubernetes_asyncio hands one back with ``_preload_content=False``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio.client.exceptions import ApiException
from sriov_dra_kube.client import WatchEvent, watch_events


async def _lines(items: list[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item


class RawResponse:
    def __init__(self, status: int, lines: list[bytes], body: bytes = b"") -> None:
        self.status = status
        self.reason = "Forbidden" if status == 403 else "OK"
        self.content = _lines(lines)
        self.body = body
        self.released = 0

    async def read(self) -> bytes:
        return self.body

    def release(self) -> None:
        self.released += 1


class ListCall:
    def __init__(self, response: RawResponse) -> None:
        self.response = response
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    async def __call__(self, *args: Any, **kwargs: Any) -> RawResponse:
        self.calls.append((args, kwargs))
        return self.response


async def test_the_watch_request_and_its_events() -> None:
    response = RawResponse(
        200,
        [b'{"type":"ADDED","object":{"n":1}}\n', b"\n", b'{"type":"BOOKMARK","object":{"n":2}}\n'],
    )
    call = ListCall(response)
    events = [
        event
        async for event in watch_events(
            call, "g", "v1", resource_version="41", timeout_seconds=60, label_selector="a=b"
        )
    ]
    assert events == [WatchEvent("ADDED", {"n": 1}), WatchEvent("BOOKMARK", {"n": 2})]
    assert call.calls == [
        (
            ("g", "v1"),
            {
                "watch": True,
                "resource_version": "41",
                "timeout_seconds": 60,
                "allow_watch_bookmarks": True,
                "_preload_content": False,
                "_request_timeout": 90,
                "label_selector": "a=b",
            },
        )
    ]
    assert response.released == 1


@pytest.mark.parametrize(
    ("response", "status", "reason"),
    [
        (
            RawResponse(
                200,
                [
                    b'{"type":"ADDED","object":{"n":1}}\n',
                    b'{"type":"ERROR","object":{"kind":"Status","code":410,'
                    b'"message":"too old resource version: 5 (9)"}}\n',
                ],
            ),
            410,
            "too old resource version: 5 (9)",
        ),
        (
            RawResponse(
                403,
                [],
                b'{"kind":"Status","code":403,"message":"resourceclaims.resource.k8s.io is '
                b'forbidden: User \\"x\\" cannot watch resource \\"resourceclaims\\""}',
            ),
            403,
            'resourceclaims.resource.k8s.io is forbidden: User "x" cannot watch resource '
            '"resourceclaims"',
        ),
        (
            RawResponse(200, [b"<html>proxy error</html>\n"]),
            None,
            "not a watch event: '<html>proxy error</html>\\n' "
            "(JSONDecodeError('Expecting value: line 1 column 1 (char 0)'))",
        ),
    ],
    ids=["error-event-410", "refused-403", "garbage-line"],
)
async def test_errors_become_api_exceptions_and_the_response_is_released(
    response: RawResponse, status: int | None, reason: str
) -> None:
    with pytest.raises(ApiException) as caught:
        async for _ in watch_events(ListCall(response), resource_version="1", timeout_seconds=5):
            pass
    assert caught.value.status == status
    assert caught.value.reason == reason
    assert response.released == 1
