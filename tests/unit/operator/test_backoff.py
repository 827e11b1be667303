"""Refused writes are retried with a growing, capped, per-claim delay."""

from __future__ import annotations

import pytest
from sriov_dra_operator.backoff import Backoff
from sriov_dra_operator.status_writer import rejection_message


@pytest.mark.parametrize(
    ("failures", "delays"),
    [
        (1, [10.0]),
        (4, [10.0, 20.0, 40.0, 80.0]),
        (9, [10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0, 300.0]),
    ],
    ids=["first-failure", "doubling", "capped-at-5-min"],
)
def test_delays_double_up_to_the_cap(failures: int, delays: list[float]) -> None:
    backoff = Backoff()
    assert [backoff.next_delay("a") for _ in range(failures)] == delays


def test_keys_are_independent_and_success_resets() -> None:
    backoff = Backoff(base=1.0, cap=8.0)
    assert [backoff.next_delay("a") for _ in range(3)] == [1.0, 2.0, 4.0]
    assert backoff.next_delay("b") == 1.0
    backoff.reset("a")
    assert backoff.next_delay("a") == 1.0
    assert backoff.next_delay("b") == 2.0


def test_a_long_failing_key_stays_at_the_cap() -> None:
    backoff = Backoff(base=10.0, cap=300.0)
    delays = [backoff.next_delay("a") for _ in range(2000)]
    assert delays[-1] == 300.0


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
