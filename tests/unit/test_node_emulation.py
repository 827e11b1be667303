"""Pure parts of the node emulation: claims of a pod, CDI IDs per container, CDI resolution."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sriov_dra_devcluster.cdi_runtime import CdiError, parse_qualified_name, resolve
from sriov_dra_devcluster.emulated_pod import (
    PrepareFailed,
    check_reserved,
    container_cdi_ids,
    pod_claims,
)
from sriov_dra_devcluster.kubelet_plugins import PreparedDevice, choose_version
from sriov_dra_devcluster.pod_sandbox import pod_netns_name

KIND = "sriovnetwork.k8snetworkplumbingwg.io/vf"


@pytest.mark.parametrize(
    ("advertised", "chosen"),
    [
        (["v1.DRAPlugin", "v1beta1.DRAPlugin"], "v1.DRAPlugin"),
        (["v1beta1.DRAPlugin", "v1.DRAPlugin"], "v1beta1.DRAPlugin"),
        (["v1alpha4.DRAPlugin", "v1beta1.DRAPlugin"], "v1beta1.DRAPlugin"),
        (["v1alpha1.DRAResourceHealth"], None),
    ],
    ids=["v1-first", "plugin-order-wins", "skips-unknown", "none-supported"],
)
def test_service_version_is_the_first_advertised_one_the_kubelet_supports(
    advertised: list[str], chosen: str | None
) -> None:
    assert choose_version(advertised) == chosen


def test_pod_claims_resolve_static_and_template_claims() -> None:
    pod = {
        "spec": {
            "resourceClaims": [
                {"name": "vf", "resourceClaimName": "static-vf-claim"},
                {"name": "peer", "resourceClaimTemplateName": "peer-vf"},
            ]
        },
        "status": {"resourceClaimStatuses": [{"name": "peer", "resourceClaimName": "pod-peer-x1"}]},
    }
    assert [(c.pod_claim_name, c.claim_name) for c in pod_claims(pod)] == [
        ("vf", "static-vf-claim"),
        ("peer", "pod-peer-x1"),
    ]


def test_a_template_claim_not_created_yet_is_a_prepare_failure() -> None:
    pod = {"spec": {"resourceClaims": [{"name": "peer", "resourceClaimTemplateName": "t"}]}}
    with pytest.raises(PrepareFailed) as err:
        pod_claims(pod)
    assert err.value.describe() == (
        "status.resourceClaimStatuses: waiting for the ResourceClaim of pod claim 'peer' "
        "(from its ResourceClaimTemplate) to be created"
    )


def _claim(reserved: list[str], allocated: bool = True) -> dict[str, Any]:
    status: dict[str, Any] = {"reservedFor": [{"resource": "pods", "uid": u} for u in reserved]}
    if allocated:
        status["allocation"] = {"devices": {"results": []}}
    return {"metadata": {"name": "c", "uid": "cu"}, "status": status}


@pytest.mark.parametrize(
    ("claim", "message"),
    [
        (_claim(["pu"]), None),
        (_claim(["other"]), "pod p (pu) is not allowed to use ResourceClaim c (cu)"),
        (_claim([], allocated=False), "pod p (pu) is not allowed to use ResourceClaim c (cu)"),
        (_claim(["pu"], allocated=False), "ResourceClaim c (cu) is not allocated"),
    ],
    ids=["reserved", "reserved-for-another-pod", "unallocated", "torn-read"],
)
def test_the_kubelets_checks_before_prepare(claim: dict[str, Any], message: str | None) -> None:
    pod = {"metadata": {"name": "p", "uid": "pu"}}
    if message is None:
        check_reserved(pod, claim)
        return
    with pytest.raises(PrepareFailed) as err:
        check_reserved(pod, claim)
    assert err.value.describe() == message


DEVICES = {
    "vf": [
        PreparedDevice((), "n1", "d0", (f"{KIND}=u-d0",)),
        PreparedDevice(("a",), "n1", "d1", (f"{KIND}=u-d1",)),
        PreparedDevice(("b",), "n1", "d2", (f"{KIND}=u-d2",)),
    ]
}


@pytest.mark.parametrize(
    ("claims", "ids"),
    [
        ([{"name": "vf"}], [f"{KIND}=u-d0", f"{KIND}=u-d1", f"{KIND}=u-d2"]),
        ([{"name": "vf", "request": "a"}], [f"{KIND}=u-d0", f"{KIND}=u-d1"]),
        ([{"name": "other"}], []),
        ([], []),
    ],
    ids=["whole-claim", "one-request-plus-shared-device", "unknown-claim", "no-claims"],
)
def test_a_container_gets_the_cdi_ids_of_the_claims_it_lists(
    claims: list[dict[str, str]], ids: list[str]
) -> None:
    container = {"name": "c", "resources": {"claims": claims}}
    assert container_cdi_ids(container, DEVICES) == ids


SPECS: list[tuple[Path, dict[str, Any]]] = [
    (
        Path("a.json"),
        {
            "cdiVersion": "0.5.0",
            "kind": KIND,
            "containerEdits": {"hooks": [{"hookName": "createRuntime", "path": "/bin/hook"}]},
            "devices": [
                {"name": "u-d0", "containerEdits": {"env": ["A=0"]}},
                {"name": "u-d1", "containerEdits": {"env": ["A=1"]}},
            ],
        },
    )
]


def test_resolution_applies_spec_edits_once_and_device_edits_per_device() -> None:
    edits = resolve([f"{KIND}=u-d0", f"{KIND}=u-d1"], SPECS)
    assert edits.env == ["A=0", "A=1"]
    assert [h["path"] for h in edits.hooks_named("createRuntime")] == ["/bin/hook"]


@pytest.mark.parametrize(
    ("device_ids", "message"),
    [
        ([f"{KIND}=u-d9"], f"unresolvable CDI devices {KIND}=u-d9"),
        (["vendor.com/vf"], "invalid CDI device name 'vendor.com/vf' (want vendor.com/class=name)"),
    ],
    ids=["unknown-device", "not-qualified"],
)
def test_bad_cdi_ids_are_refused_with_the_runtimes_words(
    device_ids: list[str], message: str
) -> None:
    with pytest.raises(CdiError) as err:
        resolve(device_ids, SPECS)
    assert str(err.value) == message


def test_qualified_name_splits_kind_and_name() -> None:
    name = parse_qualified_name(f"{KIND}=3e1a520e-0000-3b-02-0")
    assert (name.kind, name.name) == (KIND, "3e1a520e-0000-3b-02-0")


@pytest.mark.parametrize(
    ("namespace", "name", "expected"),
    [
        ("vf-resourceclaim-test", "pod0", "pod-vf-resourceclaim-test-pod0"),
        ("ns", "a" * 250, "pod-ns-" + "a" * 182 + "-"),
    ],
    ids=["seed-pod", "long-name-shortened"],
)
def test_pod_netns_names_are_predictable_and_bounded(
    namespace: str, name: str, expected: str
) -> None:
    netns = pod_netns_name(namespace, name)
    assert netns.startswith(expected)
    assert len(netns) <= 200
