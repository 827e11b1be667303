"""VfConfig: strict parsing, merge, NAD reference and interface names."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sriov_dra.constants import DRIVER_NAME
from sriov_dra.errors import InvalidVfConfig
from sriov_dra.vfconfig import (
    VfConfig,
    assign_interface_names,
    effective_vfconfig,
    if_name_problem,
    nad_reference,
    parse_vfconfig,
)

API = "sriovnetwork.k8snetworkplumbingwg.io/v1alpha1"
FIELD = "spec.devices.config[0].opaque.parameters"


def params(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "VfConfig", **fields}


GOOD = [
    pytest.param(params(), VfConfig(), id="empty"),
    pytest.param(
        params(ifName="net1", netAttachDefName="vf-test1"),
        VfConfig(ifName="net1", netAttachDefName="vf-test1"),
        id="seed",
    ),
    pytest.param(
        params(
            driver="vfio-pci",
            ifName="a" * 15,
            netAttachDefName="a.b-c",
            netAttachDefNamespace="other-ns",
            addVhostMount=True,
        ),
        VfConfig(
            driver="vfio-pci",
            ifName="a" * 15,
            netAttachDefName="a.b-c",
            netAttachDefNamespace="other-ns",
            addVhostMount=True,
        ),
        id="all-fields",
    ),
    pytest.param(
        params(driver="default", ifName="eth1"),
        VfConfig(driver="default", ifName="eth1"),
        id="eth1-ok",
    ),
    pytest.param(params(ifName="net-1_x.y@z"), VfConfig(ifName="net-1_x.y@z"), id="punctuation"),
]


@pytest.mark.parametrize(("raw", "expected"), GOOD)
def test_parse_good(raw: dict[str, Any], expected: VfConfig) -> None:
    assert parse_vfconfig(raw, field=FIELD) == expected


IFNAME_FIX = (
    "use a Linux interface name of 1-15 characters such as net1, "
    "or leave ifName empty for a generated name"
)

VFIO_RDMA = (
    "driver vfio-pci and rdma: true cannot be combined: a VF bound to vfio-pci leaves the "
    "kernel's RDMA stack and has no RDMA device to give the pod; fix: for the VF in "
    "userspace (DPDK, a VM) keep driver: vfio-pci and drop rdma; for RDMA in the pod drop "
    "driver: vfio-pci (the kernel driver is kept)"
)

BAD = [
    pytest.param(
        ["x"],
        f"{FIELD}: must be an object, got list; fix: write parameters as an object: "
        f"apiVersion: {API}, kind: VfConfig, ifName: net1, netAttachDefName: <nad>",
        id="not-object",
    ),
    pytest.param(
        {"kind": "VfConfig"},
        f"{FIELD}.apiVersion: must be '{API}', it is missing; fix: set apiVersion: {API}",
        id="no-apiversion",
    ),
    pytest.param(
        {"apiVersion": "sriovnetwork.k8snetworkplumbingwg.io/v1", "kind": "VfConfig"},
        f"{FIELD}.apiVersion: must be '{API}', got 'sriovnetwork.k8snetworkplumbingwg.io/v1'; "
        f"fix: set apiVersion: {API}",
        id="wrong-apiversion",
    ),
    pytest.param(
        {"apiVersion": API, "kind": "VFConfig"},
        f"{FIELD}.kind: must be 'VfConfig', got 'VFConfig'; fix: set kind: VfConfig",
        id="wrong-kind",
    ),
    pytest.param(
        params(rdma="true"),
        f"{FIELD}.rdma: must be a boolean, got str 'true'; fix: write rdma: true or "
        "rdma: false (unquoted), or leave it out",
        id="rdma-string",
    ),
    pytest.param(
        params(driver="vfio-pci", rdma=True),
        f"{FIELD}.rdma: {VFIO_RDMA}",
        id="vfio-pci-with-rdma",
    ),
    pytest.param(
        params(ifname="net1"),
        f"{FIELD}.ifname: unknown field 'ifname'; fix: remove it; VfConfig fields are "
        "driver, ifName, netAttachDefName, netAttachDefNamespace, addVhostMount, rdma",
        id="unknown-field",
    ),
    pytest.param(
        params(ifName=1),
        f'{FIELD}.ifName: must be a string, got int 1; fix: quote the value, e.g. ifName: "..."',
        id="ifname-int",
    ),
    pytest.param(
        params(ifName="a" * 16),
        f"{FIELD}.ifName: interface name '{'a' * 16}' is 16 bytes long, the kernel allows at "
        f"most 15; fix: {IFNAME_FIX}",
        id="ifname-16",
    ),
    pytest.param(
        params(ifName="né" * 7 + "x"),
        f"{FIELD}.ifName: interface name '{'né' * 7 + 'x'}' is 22 bytes long, the kernel "
        f"allows at most 15; fix: {IFNAME_FIX}",
        id="ifname-bytes",
    ),
    pytest.param(
        params(ifName="ab/c"),
        f"{FIELD}.ifName: interface name 'ab/c' must not contain '/'; fix: {IFNAME_FIX}",
        id="ifname-slash",
    ),
    pytest.param(
        params(ifName="eth0:1"),
        f"{FIELD}.ifName: interface name 'eth0:1' must not contain ':'; fix: {IFNAME_FIX}",
        id="ifname-colon",
    ),
    pytest.param(
        params(ifName="net 1"),
        f"{FIELD}.ifName: interface name 'net 1' must not contain whitespace; fix: {IFNAME_FIX}",
        id="ifname-space",
    ),
    pytest.param(
        params(ifName="net\t1"),
        f"{FIELD}.ifName: interface name 'net\\t1' must not contain whitespace; fix: {IFNAME_FIX}",
        id="ifname-tab",
    ),
    pytest.param(
        params(ifName=".."),
        f"{FIELD}.ifName: interface name '..' must not be '..'; fix: {IFNAME_FIX}",
        id="ifname-dotdot",
    ),
    pytest.param(
        params(ifName="."),
        f"{FIELD}.ifName: interface name '.' must not be '.'; fix: {IFNAME_FIX}",
        id="ifname-dot",
    ),
    pytest.param(
        params(ifName="net\x01"),
        f"{FIELD}.ifName: interface name 'net\\x01' must be printable ASCII, found '\\x01'; "
        f"fix: {IFNAME_FIX}",
        id="ifname-control",
    ),
    pytest.param(
        params(ifName="eth0"),
        f"{FIELD}.ifName: interface name 'eth0' is already in every pod; fix: {IFNAME_FIX}",
        id="ifname-eth0",
    ),
    pytest.param(
        params(ifName="lo"),
        f"{FIELD}.ifName: interface name 'lo' is already in every pod; fix: {IFNAME_FIX}",
        id="ifname-lo",
    ),
    pytest.param(
        params(netAttachDefName="Vf_Test"),
        f"{FIELD}.netAttachDefName: NetworkAttachmentDefinition name 'Vf_Test' must be a "
        "DNS-1123 subdomain: lower-case letters, digits, '-' and '.', starting and ending with "
        "a letter or digit; fix: use the metadata.name of an existing "
        "NetworkAttachmentDefinition",
        id="nad-name-case",
    ),
    pytest.param(
        params(netAttachDefName="a" * 254),
        f"{FIELD}.netAttachDefName: NetworkAttachmentDefinition name '{'a' * 254}' is 254 "
        "characters long, at most 253 allowed; fix: use the metadata.name of an existing "
        "NetworkAttachmentDefinition",
        id="nad-name-long",
    ),
    pytest.param(
        params(netAttachDefNamespace="a.b"),
        f"{FIELD}.netAttachDefNamespace: namespace 'a.b' must be a DNS-1123 label: lower-case "
        "letters, digits and '-', starting and ending with a letter or digit; fix: use the "
        "NAD's namespace, or leave it empty for the claim's namespace",
        id="nad-namespace-dot",
    ),
    pytest.param(
        params(netAttachDefNamespace="n" * 64),
        f"{FIELD}.netAttachDefNamespace: namespace '{'n' * 64}' is 64 characters long, at most "
        "63 allowed; fix: use the NAD's namespace, or leave it empty for the claim's namespace",
        id="nad-namespace-long",
    ),
    pytest.param(
        params(driver="igb_uio"),
        f"{FIELD}.driver: unsupported VF driver 'igb_uio'; fix: use one of '', 'default', "
        "'vfio-pci', 'iavf', 'i40evf', 'ixgbevf', 'igbvf', 'mlx5_core', 'mlx4_core', "
        "'bnxt_en', 'qede', 'enic'",
        id="driver-unknown",
    ),
    pytest.param(
        params(addVhostMount="true"),
        f"{FIELD}.addVhostMount: must be a boolean, got str 'true'; fix: write addVhostMount: "
        "true or addVhostMount: false (unquoted)",
        id="vhost-string",
    ),
]


@pytest.mark.parametrize(("raw", "message"), BAD)
def test_parse_bad(raw: Any, message: str) -> None:
    with pytest.raises(InvalidVfConfig) as info:
        parse_vfconfig(raw, field=FIELD)
    assert str(info.value) == message
    assert info.value.reason == "InvalidVfConfig"


def entry(source: str, requests: list[str] | None, **fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "source": source,
        "opaque": {"driver": DRIVER_NAME, "parameters": params(**fields)},
    }
    if requests is not None:
        result["requests"] = requests
    return result


MERGE = [
    pytest.param([], "vf", VfConfig(), id="no-config"),
    pytest.param(
        [
            entry("FromClaim", ["vf"], ifName="net1"),
            entry("FromClass", None, ifName="test", netAttachDefName="cls", driver="default"),
        ],
        "vf",
        VfConfig(ifName="net1", netAttachDefName="cls", driver="default"),
        id="class-before-claim-regardless-of-order",
    ),
    pytest.param(
        [
            entry("FromClass", None, netAttachDefNamespace="shared", addVhostMount=True),
            entry("FromClaim", ["vf"], netAttachDefName="n1"),
        ],
        "vf",
        VfConfig(netAttachDefName="n1", netAttachDefNamespace="shared", addVhostMount=True),
        id="namespace-and-vhost-kept",
    ),
    pytest.param(
        [
            entry("FromClass", None, addVhostMount=True),
            entry("FromClaim", [], addVhostMount=False),
        ],
        "vf",
        VfConfig(),
        id="claim-turns-vhost-off",
    ),
    pytest.param(
        [
            entry("FromClaim", ["other"], ifName="wrong"),
            entry("FromClaim", ["vf"], ifName="right"),
        ],
        "vf",
        VfConfig(ifName="right"),
        id="other-request-skipped",
    ),
    pytest.param(
        [
            entry("FromClaim", ["vf"], ifName="parent"),
            entry("FromClaim", ["vf/small"], netAttachDefName="sub"),
            entry("FromClaim", ["vf/big"], netAttachDefName="big"),
        ],
        "vf/small",
        VfConfig(ifName="parent", netAttachDefName="sub"),
        id="subrequest",
    ),
    pytest.param(
        [
            entry("FromClaim", None, ifName="first"),
            entry("FromClaim", None, ifName="second"),
            entry("FromClaim", None, ifName=""),
        ],
        "vf",
        VfConfig(ifName="second"),
        id="later-non-empty-wins",
    ),
    pytest.param(
        [
            {
                "source": "FromClaim",
                "opaque": {"driver": "gpu.example.com", "parameters": {"x": 1}},
            },
            entry("FromClaim", None, ifName="net1"),
        ],
        "vf",
        VfConfig(ifName="net1"),
        id="other-driver-skipped",
    ),
]


@pytest.mark.parametrize(("entries", "request_name", "expected"), MERGE)
def test_effective_vfconfig(
    entries: list[dict[str, Any]], request_name: str, expected: VfConfig
) -> None:
    assert effective_vfconfig(entries, request_name, driver=DRIVER_NAME) == expected


def test_effective_vfconfig_names_entry_index() -> None:
    entries = [
        entry("FromClaim", None, ifName="ok"),
        {"source": "FromClaim", "opaque": {"driver": DRIVER_NAME, "parameters": params(foo=1)}},
    ]
    with pytest.raises(InvalidVfConfig) as info:
        effective_vfconfig(entries, "vf", driver=DRIVER_NAME, field="spec.devices.config")
    assert str(info.value) == (
        "spec.devices.config[1].opaque.parameters.foo: unknown field 'foo'; fix: remove it; "
        "VfConfig fields are driver, ifName, netAttachDefName, netAttachDefNamespace, "
        "addVhostMount, rdma"
    )


NAD_REF_GOOD = [
    pytest.param(VfConfig(), frozenset(), None, id="none"),
    pytest.param(VfConfig(netAttachDefName="n"), frozenset(), ("ns", "n"), id="claim-namespace"),
    pytest.param(
        VfConfig(netAttachDefName="n", netAttachDefNamespace="ns"),
        frozenset(),
        ("ns", "n"),
        id="explicit-same-namespace",
    ),
    pytest.param(
        VfConfig(netAttachDefName="n", netAttachDefNamespace="shared"),
        frozenset({"shared"}),
        ("shared", "n"),
        id="allowed-namespace",
    ),
    pytest.param(
        VfConfig(netAttachDefName="n", netAttachDefNamespace="any"),
        frozenset({"*"}),
        ("any", "n"),
        id="wildcard",
    ),
]


@pytest.mark.parametrize(("cfg", "allowed", "expected"), NAD_REF_GOOD)
def test_nad_reference(
    cfg: VfConfig, allowed: frozenset[str], expected: tuple[str, str] | None
) -> None:
    assert nad_reference(cfg, claim_namespace="ns", allowed_namespaces=allowed) == expected


NAD_REF_BAD = [
    pytest.param(
        VfConfig(netAttachDefName="n", netAttachDefNamespace="shared"),
        frozenset({"other"}),
        "netAttachDefNamespace: NetworkAttachmentDefinition shared/n is outside the claim's "
        "namespace 'ns' and namespace 'shared' is not allowed; fix: create the NAD in "
        "namespace 'ns', or start the operator and every node agent with "
        "--nad-namespaces=shared",
        id="not-allowed",
    ),
    pytest.param(
        VfConfig(netAttachDefNamespace="shared"),
        frozenset({"shared"}),
        "netAttachDefName: netAttachDefNamespace 'shared' is set but netAttachDefName is empty; "
        "fix: set netAttachDefName to the NetworkAttachmentDefinition's name, or remove "
        "netAttachDefNamespace",
        id="namespace-without-name",
    ),
]


@pytest.mark.parametrize(("cfg", "allowed", "message"), NAD_REF_BAD)
def test_nad_reference_bad(cfg: VfConfig, allowed: frozenset[str], message: str) -> None:
    with pytest.raises(InvalidVfConfig) as info:
        nad_reference(cfg, claim_namespace="ns", allowed_namespaces=allowed)
    assert str(info.value) == message


NAMES = [
    pytest.param([], [], id="nothing"),
    pytest.param(["net1"], ["net1"], id="one"),
    pytest.param(["net1", "net1", "net1"], ["net1", "net2", "net3"], id="count-3-same-name"),
    pytest.param(["", "", ""], ["vfnet0", "vfnet1", "vfnet2"], id="generated"),
    pytest.param(["net1", "net1", "net2"], ["net1", "net3", "net2"], id="explicit-reserved-first"),
    pytest.param(["data", "data"], ["data", "data1"], id="no-number"),
    pytest.param(["", "vfnet0"], ["vfnet1", "vfnet0"], id="generated-skips-explicit"),
    pytest.param(
        ["abcdefghijklmn9", "abcdefghijklmn9"],
        ["abcdefghijklmn9", "abcdefghijklm10"],
        id="stays-15-bytes",
    ),
    pytest.param(["eth0"], ["eth1"], id="reserved-never-given"),
]


@pytest.mark.parametrize(("asked", "expected"), NAMES)
def test_assign_interface_names(asked: list[str], expected: list[str]) -> None:
    devices = [("vf", VfConfig(ifName=name)) for name in asked]
    assert assign_interface_names(devices) == expected


@given(st.lists(st.sampled_from(["", "net1", "net2", "x", "a" * 15, "net9"]), max_size=40))
def test_assign_interface_names_distinct_and_valid(asked: list[str]) -> None:
    names = assign_interface_names([("vf", VfConfig(ifName=n)) for n in asked])
    assert len(names) == len(asked)
    assert len(set(names)) == len(names)
    assert all(if_name_problem(n) == "" for n in names)
    for index, want in enumerate(asked):
        if want and asked.index(want) == index:
            assert names[index] == want


def test_vfio_pci_and_rdma_from_different_entries_are_refused_merged() -> None:
    entries = [entry("FromClass", None, driver="vfio-pci"), entry("FromClaim", ["vf"], rdma=True)]
    with pytest.raises(InvalidVfConfig) as info:
        effective_vfconfig(entries, "vf/fast", driver=DRIVER_NAME, field="spec.devices.config")
    assert str(info.value) == f"spec.devices.config (request 'vf/fast', merged).rdma: {VFIO_RDMA}"


@pytest.mark.parametrize(
    ("values", "expected"),
    [((), None), ((True,), True), ((True, False), False), ((False, None), False)],
    ids=["unset", "true", "later-false-wins", "unset-keeps-false"],
)
def test_rdma_merges_like_add_vhost_mount(
    values: tuple[bool | None, ...], expected: bool | None
) -> None:
    entries = [
        entry("FromClaim", None, **({} if value is None else {"rdma": value})) for value in values
    ]
    merged = effective_vfconfig(entries, "vf", driver=DRIVER_NAME)
    assert merged.rdma is expected
    assert merged.driver == ""
