"""One walk over a claim's requests: alternatives, their paths and DeviceClasses."""

from __future__ import annotations

from typing import Any

import pytest
from sriov_dra.claim_requests import (
    alternatives,
    claim_requests,
    listed,
    parent_request,
    request_classes,
)


def claim(*requests: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "c"}, "spec": {"devices": {"requests": list(requests)}}}


MIXED = claim(
    {"name": "a", "exactly": {"deviceClassName": "vf"}},
    {
        "name": "b",
        "firstAvailable": [
            {"name": "x", "deviceClassName": "plain"},
            {"name": "y", "deviceClassName": "vf"},
        ],
    },
)


def test_request_classes_cover_subrequests() -> None:
    assert request_classes(MIXED) == {"a": "vf", "b/x": "plain", "b/y": "vf"}


def test_requests_keep_spec_order_index_and_paths() -> None:
    assert [
        (r.name, r.index, [(a.name, a.path) for a in r.alternatives]) for r in claim_requests(MIXED)
    ] == [
        ("a", 0, [("a", "spec.devices.requests[0].exactly")]),
        (
            "b",
            1,
            [
                ("b/x", "spec.devices.requests[1].firstAvailable[0]"),
                ("b/y", "spec.devices.requests[1].firstAvailable[1]"),
            ],
        ),
    ]


def test_a_request_without_exactly_or_first_available_names_no_class() -> None:
    # The apiserver refuses such a request; the walk still yields it, so a consumer
    # reports it (DeviceClass '' does not exist) instead of skipping it.
    assert [(a.name, a.path, a.class_name) for a in alternatives(claim({"name": "odd"}))] == [
        ("odd", "spec.devices.requests[0].exactly", "")
    ]


def test_no_spec_no_requests() -> None:
    assert claim_requests({"metadata": {"name": "c"}}) == []


@pytest.mark.parametrize(
    ("requests", "name", "covered"),
    [
        ((), "net", True),
        ((), "net/fast", True),
        (("net",), "net", True),
        (("net",), "net/fast", True),
        (("net/fast",), "net/fast", True),
        (("net/fast",), "net/slow", False),
        (("net/fast",), "net", False),
        (("other",), "net/fast", False),
        (("net",), "network", False),
    ],
)
def test_listed_reads_requests_as_kubernetes_does(
    requests: tuple[str, ...], name: str, covered: bool
) -> None:
    assert listed(requests, name) is covered


def test_parent_request_of_a_subrequest_and_of_a_request() -> None:
    assert (parent_request("net/fast"), parent_request("net")) == ("net", "net")
