"""The operator's inventory routes over real HTTP (aiohttp's test server), from a stub cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sriov_dra.device_pools import Pool, pools_from_slices
from sriov_dra_operator.cache import ClusterCache
from sriov_dra_operator.http_server import OperatorHttp
from sriov_dra_operator.metrics import OperatorMetrics
from sriov_dra_operator.settings import OperatorSettings
from unit.allocator_inputs import CLASSES, D, node_vfs

HOSTILE = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'


@dataclass
class StubEvents:
    said: dict[str, tuple[str, str]] = field(default_factory=dict)

    def last(self, uid: str) -> tuple[str, str] | None:
        return self.said.get(uid)


@dataclass
class StubReconciler:
    pool_list: list[Pool]
    settings: OperatorSettings = field(default_factory=OperatorSettings)
    events: StubEvents = field(default_factory=StubEvents)

    def pools(self) -> tuple[list[Pool], dict[Any, Any]]:
        return self.pool_list, {}


@dataclass
class StubController:
    cache: ClusterCache
    reconciler: StubReconciler
    primed: bool = True


def waiting_claim(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": "1"},
        "spec": {"devices": {"requests": [{"name": "vf", "exactly": {"deviceClassName": D}}]}},
    }


def controller(nodes: int = 2) -> StubController:
    cache = ClusterCache()
    cache.classes.update(CLASSES)
    cache.upsert_claim(waiting_claim("static-vf-claim"))
    slices = [node_vfs(f"node-{i}") for i in range(nodes)]
    reconciler = StubReconciler(pools_from_slices(slices, driver=D))
    reconciler.events.said["uid-static-vf-claim"] = ("InvalidVfConfig", HOSTILE)
    return StubController(cache, reconciler)


@pytest.fixture
async def served() -> AsyncIterator[tuple[TestClient[Any, Any], OperatorHttp]]:
    http = OperatorHttp(OperatorMetrics(), address="127.0.0.1", port=0)
    http.owner = controller()
    async with TestClient(TestServer(http.app())) as client:
        yield client, http


async def test_the_page_escapes_what_users_wrote(served: Any) -> None:
    client, _ = served
    response = await client.get("/")
    text = await response.text()
    assert response.status == 200
    assert "<script>alert" not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(" in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "ns/static-vf-claim" in text
    assert text.count('class="node"') == 2


async def test_the_json_is_the_same_data_unpaged(served: Any) -> None:
    client, _ = served
    response = await client.get("/inventory.json")
    body = await response.json()
    assert response.status == 200
    assert [n["name"] for n in body["nodes"]] == ["node-0", "node-1"]
    assert body["waiting"][0]["message"] == HOSTILE
    assert body["summary"]["vfs"] == 8


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/?page=abc", 400, "page"),
        ("/inventory.json?page=9", 400, "use a page from 1 to 1"),
        ("/inventory.json?drop=1", 400, "unknown query parameter"),
        ("/?node=%3Cb%3Enode%3C%2Fb%3E", 404, "has no Node object"),
        ("/inventory.json?node=nope", 404, "has no Node object"),
    ],
)
async def test_bad_queries_get_a_clear_4xx_and_no_traceback(
    served: Any, path: str, status: int, words: str
) -> None:
    client, _ = served
    response = await client.get(path)
    text = await response.text()
    assert response.status == status
    assert words in text
    assert "Traceback" not in text and "<b>node" not in text


async def test_only_get_is_served(served: Any) -> None:
    client, _ = served
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = await client.request(method, "/")
        assert response.status == 405


async def test_before_the_cache_is_listed_the_page_says_so(served: Any) -> None:
    client, http = served
    http.owner = None
    response = await client.get("/")
    assert response.status == 503
    assert "has not listed the cluster yet" in await response.text()


async def test_a_failure_while_building_is_a_short_500_without_traceback(served: Any) -> None:
    client, http = served
    http.owner.cache.claims["broken"] = {"metadata": None, "status": {"allocation": 7}}
    response = await client.get("/inventory.json")
    body = await response.json()
    assert response.status == 500
    assert "could not be built" in body["message"] and "Traceback" not in body["message"]


async def test_metrics_are_served_beside_the_page(served: Any) -> None:
    client, _ = served
    response = await client.get("/metrics")
    assert response.status == 200
    assert "sriov_dra_operator_queue_depth" in await response.text()
