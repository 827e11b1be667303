"""At most 32 results per claim: firstAvailable alternatives chosen jointly under the limit."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from allocator_inputs import D, claim, request, run, slice_, vf
from sriov_dra.constants import MAX_ALLOCATION_RESULTS
from sriov_dra.errors import NoDeviceAvailable

BIG_NODE = slice_(
    "node-a",
    [
        {**vf(0, 0), "name": f"0000-3b-{slot:02x}-{function}"}
        for slot in range(6)
        for function in range(8)
    ],
)
"""48 VFs (PCI functions 0-7 of six slots): room for every first alternative below,
were it not for the limit."""


def first_available(name: str, *counts: int, mode: str = "ExactCount") -> dict[str, Any]:
    """A request whose subrequests ``n<count>`` ask for ``counts`` VFs in order."""
    subrequests = []
    for count in counts:
        sub: dict[str, Any] = {"name": f"n{count}", "deviceClassName": D}
        if count:
            sub["count"] = count
        else:
            sub["allocationMode"] = "All"
        subrequests.append(sub)
    return {"name": name, "firstAvailable": subrequests}


def chosen(allocation: Any) -> Counter[str]:
    """How many results each alternative got."""
    return Counter(str(r["request"]) for r in allocation.results)


def test_two_first_alternatives_of_20_cannot_both_be_taken() -> None:
    allocation = run(claim(first_available("a", 20, 2), first_available("b", 20, 2)), [BIG_NODE])
    assert chosen(allocation) == {"a/n20": 20, "b/n2": 2}


def test_an_earlier_request_falls_back_for_a_later_exact_one() -> None:
    """a/n20 fits alone but leaves 12 for b's 16: a takes its smaller alternative."""
    allocation = run(claim(first_available("a", 20, 10), request("b", count=16)), [BIG_NODE])
    assert chosen(allocation) == {"a/n10": 10, "b": 16}
    assert len({r["device"] for r in allocation.results}) == 26


def test_exactly_the_limit_is_allocated() -> None:
    allocation = run(claim(first_available("a", 30, 1), request("b", count=2)), [BIG_NODE])
    assert chosen(allocation) == {"a/n30": 30, "b": 2}
    assert len(allocation.results) == MAX_ALLOCATION_RESULTS


def test_all_mode_over_the_limit_falls_back() -> None:
    """All on a node of 48 VFs would give 48 results; the count-of-3 alternative is taken."""
    allocation = run(claim(first_available("a", 0, 3)), [BIG_NODE])
    assert chosen(allocation) == {"a/n3": 3}


@pytest.mark.parametrize(
    "requests",
    [
        [request("a", count=33)],
        [request("a", count=20), first_available("b", 20, 13)],
    ],
    ids=["one-request-of-33", "smallest-alternatives-total-33"],
)
def test_a_claim_over_the_limit_even_at_its_smallest_is_refused(
    requests: list[dict[str, Any]],
) -> None:
    with pytest.raises(NoDeviceAvailable) as caught:
        run(claim(*requests), [BIG_NODE])
    assert caught.value.field == "spec.devices.requests"
    assert "at least 33 devices" in caught.value.message
    assert "at most 32" in caught.value.message
    assert "split the requests over several claims" in caught.value.fix


def test_all_over_the_limit_without_a_smaller_alternative_says_it_is_the_limit() -> None:
    with pytest.raises(NoDeviceAvailable) as caught:
        run(claim(first_available("a", 0)), [BIG_NODE])
    assert caught.value.field == "spec.devices.requests"
    assert caught.value.message.startswith(
        "every node that could satisfy the claim would give it at least 48 results, "
        "and a claim gets at most 32"
    )
    assert "firstAvailable alternative with a count" in caught.value.fix
