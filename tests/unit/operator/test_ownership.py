"""Which claims the operator allocates."""

from __future__ import annotations

from typing import Any

import pytest
from sriov_dra_operator.ownership import Verdict, verdict

DRIVER = "sriovnetwork.k8snetworkplumbingwg.io"
CLASSES = {
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


def claim(*requests: dict[str, Any], owners: list | None = None) -> dict[str, Any]:
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
def test_verdict(body: dict, expected: Verdict) -> None:
    assert verdict(body, CLASSES, DRIVER) is expected
