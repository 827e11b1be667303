"""Which VFs a node advertises under SriovResourcePolicy and DeviceAttributes."""

from __future__ import annotations

from typing import Any

import pytest
from sriov_dra.advertisement import (
    NoPolicyMode,
    VfCandidate,
    decide,
    parse_policy,
    qualified_name,
)
from sriov_dra.errors import InvalidDeviceAttributes, InvalidResourcePolicy
from sriov_dra.label_selectors import parse_label_selector, parse_node_selector

DRIVER = "sriovnetwork.k8snetworkplumbingwg.io"
RESERVED = frozenset({f"{DRIVER}/vendor", f"{DRIVER}/pciAddress", "k8s.cni.cncf.io/deviceID"})


def vf(pf: str, index: int, **changes: Any) -> VfCandidate:
    pf_pci = {"eth0": "0000:08:00.0", "eth1": "0000:09:00.0"}[pf]
    pci = f"{pf_pci[:-1]}{index + 2}"
    fields: dict[str, Any] = {
        "device": pci.replace(":", "-").replace(".", "-"),
        "pci_address": pci,
        "vendor": "8086",
        "device_id": "154c",
        "pf_name": pf,
        "pf_pci_address": pf_pci,
        "driver": "iavf",
        "link_type": "ethernet",
    }
    fields.update(changes)
    return VfCandidate(**fields)


VFS = [vf("eth0", 0), vf("eth0", 1), vf("eth1", 0), vf("eth1", 1, driver="vfio-pci")]


def policy(name: str, *configs: dict[str, Any], node_selector: Any = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"configs": list(configs)}
    if node_selector is not None:
        spec["nodeSelector"] = node_selector
    return {
        "metadata": {"name": name, "namespace": "sriov-dra", "uid": f"uid-{name}"},
        "spec": spec,
    }


def attrs(name: str, labels: dict[str, str], attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "sriov-dra", "labels": labels, "uid": f"u-{name}"},
        "spec": {"attributes": attributes},
    }


def run(
    policies: list[dict[str, Any]],
    device_attributes: list[dict[str, Any]] | None = None,
    *,
    labels: dict[str, str] | None = None,
    no_policy: NoPolicyMode = NoPolicyMode.ALL,
    vfs: list[VfCandidate] = VFS,
) -> Any:
    return decide(
        node="node-1",
        node_labels=labels or {"kubernetes.io/hostname": "node-1"},
        vfs=vfs,
        policies=policies,
        device_attributes=device_attributes or [],
        no_policy=no_policy,
        driver=DRIVER,
        reserved=RESERVED,
    )


def names(*vfs: VfCandidate) -> set[str]:
    return {v.device for v in vfs}


def test_without_policy_the_setting_decides() -> None:
    assert set(run([]).devices) == names(*VFS)
    assert all(extra == {} for extra in run([]).devices.values())
    assert run([], no_policy=NoPolicyMode.NONE).devices == {}


def test_one_policy_makes_it_opt_in() -> None:
    result = run([policy("p", {"resourceFilters": [{"pfNames": ["eth1"]}]})])
    assert set(result.devices) == names(VFS[2], VFS[3])
    assert result.problems == ()


def test_a_policy_for_another_node_publishes_nothing_here() -> None:
    selector = {
        "nodeSelectorTerms": [
            {
                "matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["x"]}
                ]
            }
        ]
    }
    assert run([policy("p", {}, node_selector=selector)]).devices == {}
    assert set(run([policy("p", {})]).devices) == names(*VFS)


def test_empty_filter_list_and_empty_filter_select_every_vf() -> None:
    assert set(run([policy("p", {"resourceFilters": []})]).devices) == names(*VFS)
    assert set(run([policy("p", {"resourceFilters": [{}]})]).devices) == names(*VFS)


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"vendors": ["0x8086"]}, [0, 1, 2, 3]),
        ({"vendors": ["15b3"]}, []),
        ({"devices": ["154C"]}, [0, 1, 2, 3]),
        ({"pciAddresses": ["0000:08:00.3"]}, [1]),
        ({"pfPciAddresses": ["0000:09:00.0"]}, [2, 3]),
        ({"drivers": ["vfio-pci"]}, [3]),
        ({"linkType": "ETH"}, [0, 1, 2, 3]),
        ({"linkType": "ib"}, []),
        ({"pfNames": ["eth0"], "pciAddresses": ["0000:09:00.2"]}, []),
    ],
)
def test_each_filter_field(flt: dict[str, Any], expected: list[int]) -> None:
    result = run([policy("p", {"resourceFilters": [flt]})])
    assert set(result.devices) == names(*(VFS[i] for i in expected))


def test_filters_of_a_config_are_ored() -> None:
    flt = [{"pciAddresses": ["0000:08:00.2"]}, {"pciAddresses": ["0000:09:00.3"]}]
    assert set(run([policy("p", {"resourceFilters": flt})]).devices) == names(VFS[0], VFS[3])


def test_attributes_of_every_selected_object_are_merged_last_name_wins() -> None:
    objects = [
        attrs(
            "b",
            {"pool": "x"},
            {"resourceName": {"string": "from-b"}, "k8s.cni.cncf.io/resourceName": {"string": "n"}},
        ),
        attrs("a", {"pool": "x"}, {"resourceName": {"string": "from-a"}, "tier": {"int": 2}}),
        attrs("c", {"pool": "y"}, {"other": {"bool": True}}),
    ]
    config = {"deviceAttributesSelector": {"matchLabels": {"pool": "x"}}}
    result = run([policy("p", config)], objects)
    assert result.devices[VFS[0].device] == {
        f"{DRIVER}/resourceName": {"string": "from-b"},
        f"{DRIVER}/tier": {"int": 2},
        "k8s.cni.cncf.io/resourceName": {"string": "n"},
    }


def test_no_selector_means_no_extra_attributes() -> None:
    objects = [attrs("a", {}, {"resourceName": {"string": "r"}})]
    assert run([policy("p", {})], objects).devices[VFS[0].device] == {}


def test_built_in_names_cannot_be_overridden() -> None:
    objects = [
        attrs(
            "a",
            {"p": "1"},
            {
                "vendor": {"string": "evil"},
                "k8s.cni.cncf.io/deviceID": {"string": "x"},
                "ok": {"int": 1},
            },
        )
    ]
    result = run([policy("p", {"deviceAttributesSelector": {"matchLabels": {"p": "1"}}})], objects)
    assert result.devices[VFS[0].device] == {f"{DRIVER}/ok": {"int": 1}}
    fields = sorted(p.error.field for p in result.problems)
    assert fields == ["spec.attributes[k8s.cni.cncf.io/deviceID]", "spec.attributes[vendor]"]
    assert all(isinstance(p.error, InvalidDeviceAttributes) for p in result.problems)
    assert {p.subject.name for p in result.problems} == {"a"}


@pytest.mark.parametrize(
    "value",
    [
        {"string": "x" * 65},
        {"int": "1"},
        {"string": "a", "int": 1},
        {"version": "1.2"},
        {"float": 1.0},
    ],
)
def test_malformed_attribute_values_are_dropped(value: dict[str, Any]) -> None:
    objects = [attrs("a", {}, {"bad": value, "good": {"version": "1.2.3"}})]
    result = run([policy("p", {"deviceAttributesSelector": {}})], objects)
    assert result.devices[VFS[0].device] == {f"{DRIVER}/good": {"version": "1.2.3"}}
    assert [p.error.field for p in result.problems] == ["spec.attributes[bad]"]


def test_first_config_by_policy_name_decides_attributes() -> None:
    objects = [
        attrs("one", {"n": "1"}, {"r": {"string": "one"}}),
        attrs("two", {"n": "2"}, {"r": {"string": "two"}}),
    ]
    later = policy("b", {"deviceAttributesSelector": {"matchLabels": {"n": "2"}}})
    earlier = policy(
        "a",
        {
            "deviceAttributesSelector": {"matchLabels": {"n": "1"}},
            "resourceFilters": [{"pfNames": ["eth0"]}],
        },
    )
    result = run([later, earlier], objects)
    assert result.devices[VFS[0].device] == {f"{DRIVER}/r": {"string": "one"}}
    assert result.devices[VFS[2].device] == {f"{DRIVER}/r": {"string": "two"}}


def test_unknown_link_type_is_reported_and_other_policies_apply() -> None:
    bad = policy("bad", {"resourceFilters": [{"linkType": "token-ring"}]})
    good = policy("good", {"resourceFilters": [{"pfNames": ["eth0"]}]})
    result = run([bad, good])
    assert set(result.devices) == names(VFS[0], VFS[1])
    (problem,) = result.problems
    assert problem.subject.name == "bad"
    assert problem.subject.kind == "SriovResourcePolicy"
    assert isinstance(problem.error, InvalidResourcePolicy)
    assert problem.error.field == "spec.configs[0].resourceFilters[0].linkType"
    assert "token-ring" in problem.error.describe()
    assert "fix:" in problem.error.describe()


def test_only_invalid_policies_still_mean_opt_in() -> None:
    bad = policy(
        "bad", {"deviceAttributesSelector": {"matchExpressions": [{"key": "a", "operator": "Has"}]}}
    )
    result = run([bad])
    assert result.devices == {}
    assert (
        result.problems[0].error.field
        == "spec.configs[0].deviceAttributesSelector.matchExpressions[0].operator"
    )


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"configs": "x"}, "spec.configs"),
        (
            {"configs": [{"resourceFilters": [{"vendors": "8086"}]}]},
            "spec.configs[0].resourceFilters[0].vendors",
        ),
        ({"configs": [{"resourceFilters": {}}]}, "spec.configs[0].resourceFilters"),
        (
            {
                "configs": [
                    {
                        "deviceAttributesSelector": {
                            "matchExpressions": [{"key": "a", "operator": "In"}]
                        }
                    }
                ]
            },
            "spec.configs[0].deviceAttributesSelector.matchExpressions[0].values",
        ),
        (
            {
                "nodeSelector": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["x"]}]}
                    ]
                }
            },
            "spec.nodeSelector.nodeSelectorTerms[0].matchExpressions[0].values",
        ),
        (
            {
                "nodeSelector": {
                    "nodeSelectorTerms": [
                        {"matchFields": [{"key": "spec.x", "operator": "In", "values": ["a"]}]}
                    ]
                }
            },
            "spec.nodeSelector.nodeSelectorTerms[0].matchFields[0].key",
        ),
    ],
)
def test_invalid_policies_name_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidResourcePolicy) as caught:
        parse_policy({"metadata": {"name": "p"}, "spec": spec})
    assert caught.value.field == field


def test_too_many_extra_attributes_are_capped_and_reported() -> None:
    many = {f"a{i:02d}": {"int": i} for i in range(40)}
    result = run([policy("p", {"deviceAttributesSelector": {}})], [attrs("x", {}, many)])
    kept = result.devices[VFS[0].device]
    # One slot is left for the resourceName the agent's --resource-name may add.
    assert len(kept) == 32 - len(RESERVED) - 1
    assert result.problems[0].error.field == "spec.configs[0].deviceAttributesSelector"


def test_label_selector_operators() -> None:
    selector = parse_label_selector(
        {
            "matchLabels": {"a": "1"},
            "matchExpressions": [
                {"key": "b", "operator": "NotIn", "values": ["x"]},
                {"key": "c", "operator": "Exists"},
                {"key": "d", "operator": "DoesNotExist"},
            ],
        },
        "s",
    )
    assert selector.matches({"a": "1", "c": ""})
    assert not selector.matches({"a": "1", "c": "", "b": "x"})
    assert not selector.matches({"a": "1", "c": "", "d": "1"})
    assert not selector.matches({"a": "2", "c": ""})
    assert parse_label_selector({}, "s").matches({})


def test_node_selector_terms_are_ored_and_fields_name_nodes() -> None:
    selector = parse_node_selector(
        {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "cpus", "operator": "Gt", "values": ["8"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-2"]}]},
            ]
        },
        "n",
    )
    assert selector.matches("node-1", {"cpus": "16"})
    assert not selector.matches("node-1", {"cpus": "4"})
    assert selector.matches("node-2", {})
    assert not parse_node_selector({"nodeSelectorTerms": [{}]}, "n").matches("node-1", {})
    assert parse_node_selector(None, "n").matches("node-1", {})
    assert parse_node_selector({"nodeSelectorTerms": []}, "n").matches("node-1", {})


def test_unqualified_names_live_in_the_driver_domain() -> None:
    assert qualified_name("resourceName", DRIVER) == f"{DRIVER}/resourceName"
    assert qualified_name("k8s.cni.cncf.io/resourceName", DRIVER) == "k8s.cni.cncf.io/resourceName"
