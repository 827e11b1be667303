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


def claim(
    *requests: dict[str, Any],
    owners: list[dict[str, Any]] | None = None,
    config: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    devices: dict[str, Any] = {"requests": list(requests)}
    if config:
        devices["config"] = config
    return {
        "metadata": {"name": "c", "namespace": "ns", "ownerReferences": owners or []},
        "spec": {"devices": devices},
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


SHIPPED = "kubectl apply -f manifests/base/deviceclass.yaml"
LATER = "the claim is allocated as soon as the class exists"
OURS = [{"requests": ["vf"], "opaque": {"driver": DRIVER, "parameters": {}}}]
THEIRS = [{"opaque": {"driver": "gpu.example.com", "parameters": {}}}]
NOT_SHIPPED = {name: body for name, body in CLASSES.items() if name != DRIVER}
"""The classes of a cluster where manifests/base/deviceclass.yaml was not applied."""


def fix_for(name: str) -> str:
    return (
        f"fix: create DeviceClass '{name}' with a selector for driver {DRIVER}, or correct the "
        f"name (the class this project ships is '{DRIVER}': {SHIPPED}); {LATER}"
    )


@pytest.mark.parametrize(
    ("body", "classes", "expected"),
    [
        (
            claim(exactly("vf", DRIVER), exactly("vf2", "typo"), config=OURS),
            CLASSES,
            "spec.devices.requests[1].exactly.deviceClassName: DeviceClass 'typo' does not "
            f"exist; {fix_for('typo')}",
        ),
        (
            claim(
                {
                    "name": "vf",
                    "firstAvailable": [
                        {"name": "fast", "deviceClassName": "vf-fast"},
                        {"name": "slow", "deviceClassName": "vf-slow"},
                    ],
                },
                config=OURS,
            ),
            CLASSES,
            "spec.devices.requests[0].firstAvailable[1].deviceClassName: DeviceClass "
            f"'vf-slow' does not exist; {fix_for('vf-slow')}",
        ),
        (
            claim(exactly("gpu", "gpu"), exactly("vf", DRIVER)),
            NOT_SHIPPED,
            f"spec.devices.requests[1].exactly.deviceClassName: DeviceClass '{DRIVER}' does not "
            f"exist; fix: create it ({SHIPPED}); {LATER}",
        ),
        (claim(exactly("vf", DRIVER), exactly("gpu", "gpu-missing")), CLASSES, None),
        (claim(exactly("gpu", "gpu-missing"), config=THEIRS), CLASSES, None),
        (claim(exactly("vf", DRIVER), config=OURS), CLASSES, None),
    ],
    ids=[
        "our-config-names-the-claim-ours",
        "our-config-first-available-subrequest",
        "missing-class-named-like-the-driver",
        "other-class-missing-without-our-config",
        "other-drivers-config-only",
        "all-exist",
    ],
)
def test_missing_class_is_told_only_to_claims_meant_for_us(
    body: dict[str, Any], classes: dict[str, dict[str, Any]], expected: str | None
) -> None:
    error = class_not_found(body, classes, DRIVER)
    assert (error.describe() if error else None) == expected
    if error is not None:
        assert error.reason == "DeviceClassNotFound"
