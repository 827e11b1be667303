"""The Event of a refused write says what the apiserver said and how the retries go."""

from __future__ import annotations

import pytest
from sriov_dra_operator.status_writer import rejection_message


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
