"""Which claims the operator allocates."""

from __future__ import annotations

from typing import Any

import pytest
from sriov_dra_operator.ownership import Verdict, class_not_found, verdict

DRIVER = "sriovnetwork.k8snetworkplumbingwg.io"
CLASSES: dict[str, dict[str, Any]] = {
    DRIVER: {"metadata": {"name": DRIVER}},
    "vf-fast": {
        "metadata": {"name": "vf-fast"},
        "spec": {"selectors": [{"cel": {"expression": f"device.driver == '{DRIVER}'"}}]},
    },
    "gpu": {
        "metadata": {"name": "gpu"},
        "spec": {"selectors": [{"cel": {"expression": "device.driver == 'gpu.example.com'"}}]},
    },
}


def claim(*requests: dict[str, Any], owners: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "c", "namespace": "ns", "ownerReferences": owners or []},
        "spec": {"devices": {"requests": list(requests)}},
    }


def exactly(name: str, cls: str) -> dict[str, Any]:
    return {"name": name, "exactly": {"deviceClassName": cls}}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (claim(exactly("vf", DRIVER)), Verdict.OURS),
        (claim(exactly("vf", "vf-fast")), Verdict.OURS),
        (
            claim(
                {
                    "name": "vf",
                    "firstAvailable": [
                        {"name": "fast", "deviceClassName": "vf-fast"},
                        {"name": "any", "deviceClassName": DRIVER},
                    ],
                }
            ),
            Verdict.OURS,
        ),
        (claim(exactly("vf", DRIVER), exactly("gpu", "gpu")), Verdict.NOT_OURS),
        (claim(exactly("vf", "not-yet-created")), Verdict.CLASS_MISSING),
        (claim(), Verdict.NOT_OURS),
        (
            claim(exactly("vf", DRIVER), owners=[{"kind": "Pod", "controller": True}]),
            Verdict.NOT_OURS,
        ),
        (
            claim(exactly("vf", DRIVER), owners=[{"kind": "ConfigMap", "controller": False}]),
            Verdict.OURS,
        ),
    ],
    ids=[
        "class-named-like-driver",
        "class-selector-names-driver",
        "first-available-all-ours",
        "mixed-with-other-driver",
        "class-missing",
        "no-requests",
        "template-claim",
        "non-pod-owner",
    ],
)
def test_verdict(body: dict[str, Any], expected: Verdict) -> None:
    assert verdict(body, CLASSES, DRIVER) is expected


FIX = (
    f"fix: create the DeviceClass (the one of driver {DRIVER}: kubectl apply -f "
    "manifests/deviceclass.yaml) or correct the name; the claim is allocated as soon as the "
    "class exists"
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            claim(exactly("vf", DRIVER), exactly("vf2", "typo")),
            "spec.devices.requests[1].exactly.deviceClassName: DeviceClass 'typo' does not "
            f"exist; {FIX}",
        ),
        (
            claim(
                {
                    "name": "vf",
                    "firstAvailable": [
                        {"name": "fast", "deviceClassName": "vf-fast"},
                        {"name": "slow", "deviceClassName": "vf-slow"},
                    ],
                }
            ),
            "spec.devices.requests[0].firstAvailable[1].deviceClassName: DeviceClass "
            f"'vf-slow' does not exist; {FIX}",
        ),
        (claim(exactly("vf", DRIVER)), None),
    ],
    ids=["exactly-request", "first-available-subrequest", "all-exist"],
)
def test_missing_class_names_its_field_and_the_fix(
    body: dict[str, Any], expected: str | None
) -> None:
    error = class_not_found(body, CLASSES, DRIVER)
    assert (error.describe() if error else None) == expected
    if error is not None:
        assert (error.reason, error.retryable) == ("DeviceClassNotFound", True)
