"""After a restart the de-dup memory is seeded from the Events the operator posted before."""

from __future__ import annotations

from typing import Any

import pytest
from sriov_dra_kube.events import last_posted
from sriov_dra_operator.controller import COMPONENT


def event(
    uid: str, rv: str, reason: str, *, component: str = COMPONENT, kind: str = "ResourceClaim"
) -> dict[str, Any]:
    return {
        "metadata": {"resourceVersion": rv},
        "involvedObject": {"kind": kind, "uid": uid},
        "source": {"component": component},
        "reason": reason,
        "message": f"{reason} of {uid}",
    }


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        (
            [event("a", "5", "NoDeviceAvailable")],
            {"a": ("NoDeviceAvailable", "NoDeviceAvailable of a")},
        ),
        (
            # resourceVersion orders them, not list order; "10" > "9" numerically.
            [event("a", "10", "Allocated"), event("a", "9", "NoDeviceAvailable")],
            {"a": ("Allocated", "Allocated of a")},
        ),
        (
            [
                event("a", "3", "InvalidVfConfig"),
                event("b", "4", "NetworkAttachmentDefinitionNotFound"),
            ],
            {
                "a": ("InvalidVfConfig", "InvalidVfConfig of a"),
                "b": (
                    "NetworkAttachmentDefinitionNotFound",
                    "NetworkAttachmentDefinitionNotFound of b",
                ),
            },
        ),
        ([event("a", "7", "VfAttached", component="sriov-dra-agent")], {}),
        ([event("a", "7", "Scheduled", kind="Pod")], {}),
    ],
    ids=["one", "newest-wins", "per-claim", "other-component", "other-kind"],
)
def test_last_posted(events: list[dict[str, Any]], expected: dict[str, tuple[str, str]]) -> None:
    assert last_posted(events, component=COMPONENT) == expected


def test_reporting_component_counts_when_source_is_empty() -> None:
    body = event("a", "1", "Allocated", component="")
    body["reportingComponent"] = COMPONENT
    assert last_posted([body], component=COMPONENT) == {"a": ("Allocated", "Allocated of a")}
