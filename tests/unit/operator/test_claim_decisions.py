"""The claim reconciler's pure helpers: config per request, annotation records, patches."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from sriov_dra.allocator import DeviceKey
from sriov_dra.constants import (
    ALLOCATION_ANNOTATION,
    ATTR_PCI_ADDRESS,
    ATTR_PF_NAME,
    FINALIZER,
    NODE_LABEL,
    VFCONFIG_API_VERSION,
)
from sriov_dra.errors import InvalidVfConfig
from sriov_dra_operator import settings
from sriov_dra_operator.claims import allocation_records, effective_configs
from sriov_dra_operator.slices import published_devices, vf_counts
from sriov_dra_operator.status_writer import mark_patch, unmark_patch

DRIVER = "sriovnetwork.k8snetworkplumbingwg.io"


def params(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": VFCONFIG_API_VERSION, "kind": "VfConfig", **fields}


def opaque(**fields: Any) -> dict[str, Any]:
    return {"driver": DRIVER, "parameters": params(**fields)}


CLASSES: dict[str, dict[str, Any]] = {
    "vf": {"metadata": {"name": "vf"}, "spec": {"config": [{"opaque": opaque(ifName="cls0")}]}},
    "plain": {"metadata": {"name": "plain"}},
}


def claim(config: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": "c", "namespace": "ns", "uid": "u"},
        "spec": {
            "devices": {
                "requests": [
                    {"name": "a", "exactly": {"deviceClassName": "vf"}},
                    {
                        "name": "b",
                        "firstAvailable": [
                            {"name": "x", "deviceClassName": "plain"},
                            {"name": "y", "deviceClassName": "vf"},
                        ],
                    },
                ],
                "config": config,
            }
        },
    }


def test_class_config_applies_only_to_its_requests_and_claim_config_wins() -> None:
    body = claim(
        [
            {"requests": ["b"], "opaque": opaque(netAttachDefName="net")},
            {"requests": ["a"], "opaque": opaque(ifName="mine")},
            {"opaque": {"driver": "other.example", "parameters": {"anything": 1}}},
        ]
    )
    configs = effective_configs(body, CLASSES, driver=DRIVER)
    assert (configs["a"].if_name, configs["a"].net_attach_def_name) == ("mine", "")
    assert (configs["b/x"].if_name, configs["b/x"].net_attach_def_name) == ("", "net")
    assert (configs["b/y"].if_name, configs["b/y"].net_attach_def_name) == ("cls0", "net")


@pytest.mark.parametrize(
    ("classes", "config", "field"),
    [
        (CLASSES, [{"opaque": opaque(bogus=1)}], "spec.devices.config[0].opaque.parameters"),
        (
            {**CLASSES, "vf": {"spec": {"config": [{"opaque": opaque(ifName="a/b")}]}}},
            [],
            "DeviceClass vf spec.config[0].opaque.parameters",
        ),
    ],
    ids=["claim-entry", "class-entry"],
)
def test_invalid_entries_name_their_path(
    classes: dict[str, dict[str, Any]], config: list[dict[str, Any]], field: str
) -> None:
    with pytest.raises(InvalidVfConfig) as info:
        effective_configs(claim(config), classes, driver=DRIVER)
    assert info.value.field.startswith(field)


def test_records_carry_pf_vf_ifname_and_nad() -> None:
    slices = [
        {
            "spec": {
                "driver": DRIVER,
                "nodeName": "n1",
                "pool": {"name": "n1", "generation": 2, "resourceSliceCount": 1},
                "devices": [
                    {
                        "name": "0000-08-00-2",
                        "attributes": {
                            ATTR_PCI_ADDRESS: {"string": "0000:08:00.2"},
                            ATTR_PF_NAME: {"string": "ens1"},
                            "vfID": {"int": 2},
                        },
                    },
                    {"name": "0000-08-00-3", "attributes": {}},
                ],
            }
        },
        {
            "spec": {
                "driver": DRIVER,
                "nodeName": "n1",
                "pool": {"name": "n1", "generation": 1, "resourceSliceCount": 1},
                "devices": [{"name": "0000-09-00-0", "attributes": {}}],
            }
        },
    ]
    devices = published_devices(slices, driver=DRIVER)
    assert set(devices) == {DeviceKey(DRIVER, "n1", "0000-08-00-2"),
                            DeviceKey(DRIVER, "n1", "0000-08-00-3")}  # fmt: skip
    configs = effective_configs(
        claim([{"opaque": opaque(ifName="net1", netAttachDefName="net")}]), CLASSES, driver=DRIVER
    )
    results = [
        {"request": "a", "driver": DRIVER, "pool": "n1", "device": "0000-08-00-2"},
        {"request": "b/y", "driver": DRIVER, "pool": "n1", "device": "0000-08-00-3"},
    ]
    nads = {"a": ("ns", "net"), "b/y": ("ns", "net")}
    records = allocation_records(results, "n1", configs, devices, nads)
    assert [(r.pf, r.pci_address, r.vf_index, r.if_name, r.nad) for r in records] == [
        ("ens1", "0000:08:00.2", 2, "net1", "ns/net"),
        ("", "0000:08:00.3", 0, "net2", "ns/net"),
    ]
    assert vf_counts(devices, {DeviceKey(DRIVER, "n1", "0000-08-00-3")}) == {"n1": (1, 1)}


def test_patches_keep_other_finalizers_and_carry_the_resource_version() -> None:
    body = {"metadata": {"name": "c", "namespace": "ns", "resourceVersion": "42",
                         "finalizers": ["other/keep", FINALIZER]}}  # fmt: skip
    assert mark_patch(body, node="n1", annotation="[]") == {
        "metadata": {
            "resourceVersion": "42",
            "finalizers": ["other/keep", FINALIZER],
            "labels": {NODE_LABEL: "n1"},
            "annotations": {ALLOCATION_ANNOTATION: "[]"},
        }
    }
    assert unmark_patch(body, drop_finalizer=True)["metadata"]["finalizers"] == ["other/keep"]
    assert "finalizers" not in unmark_patch(body, drop_finalizer=False)["metadata"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers=0"], "--workers must be at least 1, got 0"),
        (["--metrics-port=70000"], "--metrics-port must be 0..65535, got 70000"),
    ],
    ids=["workers", "port"],
)
def test_bad_flags_are_refused(argv: list[str], message: str) -> None:
    parser = argparse.ArgumentParser()
    settings.configure_parser(parser)
    with pytest.raises(ValueError) as info:
        settings.from_args(parser.parse_args(argv))
    assert str(info.value) == message


def test_nad_namespaces_flag_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SRIOV_DRA_OPERATOR_NAD_NAMESPACES", "shared, infra")
    parser = argparse.ArgumentParser()
    settings.configure_parser(parser)
    assert settings.from_args(parser.parse_args([])).nad_namespaces == {"shared", "infra"}
    flagged = settings.from_args(parser.parse_args(["--nad-namespaces=net"]))
    assert flagged.nad_namespaces == {"net"}
