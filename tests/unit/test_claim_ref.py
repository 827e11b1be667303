"""The one ClaimRef: how the kubelet, the records on disk and logs see a claim."""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import pytest
from pydantic import BaseModel, ValidationError
from sriov_dra.claim_ref import ClaimRef


class _Holder(BaseModel):
    claim: ClaimRef


def test_positional_order_is_the_kubelets() -> None:
    ref = ClaimRef("default", "claim-a", "uid-1")
    assert (ref.namespace, ref.name, ref.uid) == ("default", "claim-a", "uid-1")
    assert ref == ClaimRef(uid="uid-1", namespace="default", name="claim-a")


def test_names_for_logs_and_errors() -> None:
    ref = ClaimRef("default", "claim-a", "uid-1")
    assert ref.ref() == "default/claim-a"
    assert str(ref) == "default/claim-a (uid-1)"


def test_frozen_and_hashable() -> None:
    ref = ClaimRef("default", "claim-a", "uid-1")
    assert {ref: 1}[ClaimRef("default", "claim-a", "uid-1")] == 1
    with pytest.raises(FrozenInstanceError):
        ref.uid = "other"  # type: ignore[misc]


def test_json_round_trip_inside_a_model() -> None:
    holder = _Holder(claim=ClaimRef("default", "claim-a", "uid-1"))
    again = _Holder.model_validate_json(holder.model_dump_json())
    assert again.claim == holder.claim


def test_unknown_field_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"claim\.node"):
        _Holder.model_validate({"claim": {"uid": "u", "namespace": "ns", "name": "c", "node": "n"}})
