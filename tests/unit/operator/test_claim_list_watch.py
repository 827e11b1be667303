"""The operator's own claim and slice list -> watch: a relist forgets what went unseen."""

from __future__ import annotations

import gc
import json
from typing import Any

import pytest
from kubernetes_asyncio import client
from sriov_dra_operator import controller as controller_module
from sriov_dra_operator.controller import Controller
from sriov_dra_operator.metrics import OperatorMetrics
from sriov_dra_operator.settings import OperatorSettings


def claim(uid: str, version: str) -> dict[str, Any]:
    return {
        "metadata": {"uid": uid, "name": uid, "namespace": "ns", "resourceVersion": version},
        "spec": {"devices": {"requests": []}},
    }


async def test_a_relist_records_what_it_finds_and_forgets_claims_deleted_unseen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with client.ApiClient() as api:
        controller = Controller(OperatorSettings(), api, OperatorMetrics())
        watch = controller.claim_list_watch()
        watch.on_event("ADDED", claim("gone", "5"))
        watch.on_event("ADDED", claim("kept", "6"))
        controller.reconciler.waiting.for_devices.add("gone")
        listed = [claim("kept", "9"), claim("new", "8")]

        async def list_all(*_: Any, **__: Any) -> tuple[list[dict[str, Any]], str]:
            return listed, "42"

        monkeypatch.setattr(controller_module, "_list_all", list_all)
        assert await watch.relist() == "42"
        assert sorted(controller.cache.claim_uids()) == ["kept", "new"]
        assert controller.cache.claims["kept"]["metadata"]["resourceVersion"] == "9"
        # Deleted while no watch ran: forgotten as a DELETED event would have it.
        assert "gone" not in controller.reconciler.waiting.for_devices
        # A watch event older than what the relist found changes nothing.
        watch.on_event("MODIFIED", claim("kept", "7"))
        assert controller.cache.claims["kept"]["metadata"]["resourceVersion"] == "9"


class Page:
    """A raw (``_preload_content=False``) answer of the API server."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.reason, self._raw = status, "reason", json.dumps(body).encode()

    async def read(self) -> bytes:
        return self._raw

    def release(self) -> None:
        pass


async def test_the_claim_list_is_read_page_by_page() -> None:
    pages = [
        {"metadata": {"resourceVersion": "10", "continue": "t1"}, "items": [claim("a", "9")]},
        {"metadata": {"resourceVersion": "10"}, "items": [claim("b", "10")]},
    ]
    calls: list[dict[str, Any]] = []

    async def lister(*_: Any, **kwargs: Any) -> Page:
        calls.append(kwargs)
        return Page(200, pages[len(calls) - 1])

    items, version = await controller_module._list_all(lister)
    assert version == "10"
    assert [i["metadata"]["uid"] for i in items] == ["a", "b"]
    assert [c.get("_continue") for c in calls] == [None, "t1"]


async def test_an_error_page_is_an_api_exception_not_an_empty_list() -> None:
    async def lister(*_: Any, **__: Any) -> Page:
        return Page(500, {"message": "etcd unavailable"})

    with pytest.raises(client.ApiException) as caught:
        await controller_module._list_all(lister)
    assert caught.value.status == 500


def slice_body(name: str, version: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": f"u-{name}", "resourceVersion": version},
        "spec": {"driver": "sriov.example.com", "nodeName": name, "devices": []},
    }


async def test_a_slice_relist_fills_the_cache_a_page_at_a_time_and_forgets_unlisted_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pages = [
        {"metadata": {"resourceVersion": "20", "continue": "t1"}, "items": [slice_body("a", "19")]},
        {"metadata": {"resourceVersion": "20"}, "items": [slice_body("b", "20")]},
    ]
    async with client.ApiClient() as api:
        controller = Controller(OperatorSettings(), api, OperatorMetrics())
        controller.on_slice("ADDED", slice_body("gone", "5"))
        controller.reconciler.waiting.for_devices.add("waiting-claim")
        cached_when_listed: list[list[str]] = []
        calls: list[dict[str, Any]] = []

        async def lister(*_: Any, **kwargs: Any) -> Page:
            calls.append(kwargs)
            cached_when_listed.append(sorted(controller.cache.slices))
            return Page(200, pages[len(calls) - 1])

        monkeypatch.setattr(client.CustomObjectsApi, "list_cluster_custom_object", lister)
        kicked: list[str] = []
        monkeypatch.setattr(controller.queue, "add", kicked.append)
        assert await controller.slice_list_watch().relist() == "20"
        # Page one is in the cache before page two is asked for: never the whole list at once.
        assert cached_when_listed == [["gone"], ["a", "gone"]]
        assert all(c["limit"] == controller_module.SLICE_PAGE for c in calls)
        assert sorted(controller.cache.slices) == ["a", "b"]
        assert "waiting-claim" in kicked


async def test_prime_lists_with_the_cyclic_collector_paused_and_resumes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with client.ApiClient() as api:
        controller = Controller(OperatorSettings(), api, OperatorMetrics())
        seen: list[bool] = []

        async def listing() -> None:
            seen.append(gc.isenabled())
            raise RuntimeError("the API server went away")

        monkeypatch.setattr(controller, "_prime", listing)
        assert gc.isenabled()
        with pytest.raises(RuntimeError):
            await controller.prime()
        assert seen == [False]
        assert gc.isenabled(), "resumed also when the listing fails"
