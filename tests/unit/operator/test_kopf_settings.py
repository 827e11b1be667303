"""The operator's kopf settings: kopf keeps no diff base, since no handler compares one."""

from __future__ import annotations

import kopf
from kubernetes_asyncio import client
from sriov_dra_operator.main import build_registry, kopf_settings


def test_the_registry_has_only_event_handlers_so_no_diff_base_is_needed() -> None:
    registry = build_registry(client.Configuration(), watch_nodes=True)
    # kopf's private registries: a change handler (on.create/update/field) would compare
    # the diff base that kopf_settings no longer builds.
    assert list(registry._changing.get_all_handlers()) == []
    assert len(list(registry._watching.get_all_handlers())) >= 3


def test_the_diff_base_is_built_empty_without_copying_the_claim() -> None:
    body = kopf.Body(
        {
            "metadata": {"name": "c", "labels": {"a": "b"}, "managedFields": [{"manager": "x"}]},
            "spec": {"devices": {"requests": [{"name": "vf"}]}},
            "status": {"allocation": {}},
        }
    )
    storage = kopf_settings().persistence.diffbase_storage
    assert storage.build(body=body) == {}
    # Nothing stored on the claim either: fetch finds no kopf annotation.
    assert storage.fetch(body=body) is None
