"""VfConfig (opaque claim and class config) fuzzed: only InvalidVfConfig escapes, and what is
accepted is valid, round-trips and yields distinct, valid pod interface names."""

from __future__ import annotations

import re
from typing import Any

from fuzz_strategies import JSON, OBJECTS, with_keys
from hypothesis import example, given
from hypothesis import strategies as st
from sriov_dra.constants import DRIVER_NAME, VFCONFIG_API_VERSION, VFCONFIG_KIND
from sriov_dra.errors import InvalidVfConfig
from sriov_dra.vfconfig import (
    RESERVED_IF_NAMES,
    VF_DRIVERS,
    VfConfig,
    assign_interface_names,
    effective_vfconfig,
    if_name_problem,
    nad_reference,
    parse_vfconfig,
)

HEADER = {"apiVersion": VFCONFIG_API_VERSION, "kind": VFCONFIG_KIND}
FIELDS = ["driver", "ifName", "netAttachDefName", "netAttachDefNamespace", "addVhostMount"]
# Kubernetes' own validation (apimachinery validation.IsDNS1123Subdomain/Label).
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

NAMES = st.text(max_size=20) | st.from_regex(r"[a-z0-9][-a-z0-9.]{0,20}", fullmatch=True)
"""Strings, and strings that look like names (the validator's hard cases)."""
FIELD_VALUES: st.SearchStrategy[Any] = NAMES | st.sampled_from(VF_DRIVERS) | st.booleans() | JSON
PARAMETERS = (
    OBJECTS
    | with_keys(["apiVersion", "kind", *FIELDS], FIELD_VALUES)
    | with_keys(FIELDS, FIELD_VALUES).map(lambda fields: {**HEADER, **fields})
)
"""Any object; objects with known keys; well-headed VfConfigs with any field values."""


def _valid_if_name(name: str) -> bool:
    return if_name_problem(name) == "" and name not in RESERVED_IF_NAMES


@given(PARAMETERS | JSON)
@example({**HEADER, "netAttachDefName": "net\n"})
@example({**HEADER, "netAttachDefNamespace": "ns\n"})
def test_parse_raises_only_invalid_vfconfig_and_accepts_only_valid_configs(raw: Any) -> None:
    try:
        cfg = parse_vfconfig(raw, field="p")
    except InvalidVfConfig as error:
        assert error.field.startswith("p") and error.fix
        return
    assert cfg.driver in VF_DRIVERS
    assert cfg.if_name == "" or _valid_if_name(cfg.if_name)
    assert cfg.net_attach_def_name == "" or (
        DNS_SUBDOMAIN.fullmatch(cfg.net_attach_def_name) and len(cfg.net_attach_def_name) <= 253
    )
    assert cfg.net_attach_def_namespace == "" or (
        DNS_LABEL.fullmatch(cfg.net_attach_def_namespace)
        and len(cfg.net_attach_def_namespace) <= 63
    )
    # What was accepted, written back, is accepted as the same config.
    assert parse_vfconfig({**HEADER, **cfg.model_dump(by_alias=True)}, field="p") == cfg


ENTRIES = st.lists(
    st.fixed_dictionaries(
        {
            "opaque": st.fixed_dictionaries(
                {"driver": st.just(DRIVER_NAME), "parameters": PARAMETERS}
            )
        },
        optional={
            "source": st.sampled_from(["FromClass", "FromClaim"]),
            "requests": st.lists(st.sampled_from(["a", "b", "a/x"]), max_size=2),
        },
    ),
    max_size=4,
)
"""``status.allocation.devices.config`` as the apiserver admits it, parameters fuzzed."""


@given(ENTRIES, st.sampled_from(["a", "b", "a/x"]), st.sampled_from(["ns", "other"]))
def test_merge_and_nad_reference_raise_only_invalid_vfconfig(
    entries: list[dict[str, Any]], request: str, namespace: str
) -> None:
    try:
        cfg = effective_vfconfig(entries, request, driver=DRIVER_NAME)
        ref = nad_reference(cfg, claim_namespace=namespace, allowed_namespaces=frozenset({"ns"}))
    except InvalidVfConfig as error:
        assert error.fix
        return
    if ref is not None:
        assert ref[1] == cfg.net_attach_def_name
        assert ref[0] in ("ns", namespace)


VALID_IF_NAMES = st.from_regex(r"[!-~]{1,15}", fullmatch=True).filter(_valid_if_name)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]), st.sampled_from(["", *RESERVED_IF_NAMES]) | VALID_IF_NAMES
        ).filter(lambda pair: pair[1] not in RESERVED_IF_NAMES),
        max_size=12,
    )
)
@example([("a", "9" * 15), ("b", "9" * 15)])
@example([("a", "."), ("b", ".")])
def test_interface_names_are_distinct_and_valid(pairs: list[tuple[str, str]]) -> None:
    devices = [
        (request, VfConfig(ifName=name) if _valid_if_name(name) else VfConfig())
        for request, name in pairs
    ]
    names = assign_interface_names(devices)
    assert len(names) == len(devices)
    assert len(set(names)) == len(names)
    assert all(_valid_if_name(name) for name in names)
    # A name asked for explicitly is given to the first device that asked for it.
    asked = [cfg.if_name for _, cfg in devices]
    for index, name in enumerate(names):
        if asked[index] and asked[index] not in asked[:index]:
            assert name == asked[index]
