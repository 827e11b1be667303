"""The operator's claim writes: guarded merge patches, our marks, and the Event of a refused one."""

from __future__ import annotations

import datetime

import pytest
from sriov_dra.constants import (
    ALLOCATED_CONDITION,
    ALLOCATION_ANNOTATION,
    DRIVER_NAME,
    FINALIZER,
    NODE_LABEL,
)
from sriov_dra_operator.status_writer import (
    allocated_entry,
    has_marks,
    mark_patch,
    rejection_message,
    unmark_patch,
)


@pytest.mark.parametrize(
    ("body", "apiserver_says"),
    [
        (
            '{"kind":"Status","status":"Failure","message":"ResourceClaim.resource.k8s.io '
            '\\"c\\" is invalid: status.allocation.devices.results[0].pool: Invalid value: '
            '\\"\\": must not be empty","reason":"Invalid","code":422}',
            'ResourceClaim.resource.k8s.io "c" is invalid: status.allocation.devices.'
            'results[0].pool: Invalid value: "": must not be empty',
        ),
        ("not json", "not json"),
    ],
    ids=["apiserver-status", "raw-body"],
)
def test_rejection_message_carries_the_apiservers_words(body: str, apiserver_says: str) -> None:
    assert rejection_message(422, body, retry_cap=300.0) == (
        f"the apiserver refused the operator's write to this claim (HTTP 422): {apiserver_says}; "
        "retried with a growing back-off (at most every 300 s); fix: if the claim's spec or its "
        "DeviceClass is at fault, correct it (re-create the claim), otherwise report an "
        "sriov-dra bug with `kubectl get resourceclaim -o yaml` and the operator log"
    )


def test_patches_keep_other_finalizers_and_carry_the_resource_version() -> None:
    body = {"metadata": {"name": "c", "namespace": "ns", "resourceVersion": "42",
                         "finalizers": ["other/keep", FINALIZER]}}  # fmt: skip
    assert mark_patch(body, node="n1", annotation="[]") == {
        "metadata": {
            "resourceVersion": "42",
            "finalizers": ["other/keep", FINALIZER],
            "labels": {NODE_LABEL: "n1"},
            "annotations": {ALLOCATION_ANNOTATION: "[]"},
        }
    }
    assert unmark_patch(body, drop_finalizer=True)["metadata"]["finalizers"] == ["other/keep"]
    assert "finalizers" not in unmark_patch(body, drop_finalizer=False)["metadata"]


@pytest.mark.parametrize(
    ("metadata", "marked"),
    [
        ({"finalizers": ["other/keep"]}, False),
        ({"finalizers": [FINALIZER]}, True),
        ({"labels": {NODE_LABEL: "n1"}}, True),
        ({"annotations": {ALLOCATION_ANNOTATION: "[]"}}, True),
    ],
    ids=["none", "finalizer", "label", "annotation"],
)
def test_any_one_mark_counts(metadata: dict[str, object], marked: bool) -> None:
    assert has_marks({"metadata": {"name": "c", **metadata}}) is marked


def test_an_allocated_entry_is_one_condition_on_the_vfs_status_devices_entry() -> None:
    entry = allocated_entry(driver=DRIVER_NAME, pool="n1", device="vf-0", message="allocated VF")
    [condition] = entry.pop("conditions")
    assert entry == {"driver": DRIVER_NAME, "pool": "n1", "device": "vf-0"}
    stamp = condition.pop("lastTransitionTime")
    assert condition == {
        "type": ALLOCATED_CONDITION,
        "status": "True",
        "reason": ALLOCATED_CONDITION,
        "message": "allocated VF",
    }
    # metav1.Condition wants RFC 3339 in UTC, to the second.
    assert datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
