"""CEL device selectors fuzzed: compiling any text and evaluating any expression of the
selector grammar on any device lets only SelectorError escape, and a result is a bool."""

from __future__ import annotations

import json
from typing import Any

from fuzz_strategies import JSON
from hypothesis import example, given
from hypothesis import strategies as st
from sriov_dra.cel_rewrite import rewrite_expression
from sriov_dra.cel_selectors import DeviceInput, compile_selector
from sriov_dra.constants import DRIVER_NAME
from sriov_dra.errors import SelectorError

DOMAINS = ["dra.net", DRIVER_NAME, "example.com"]
IDENTS = ["numaNode", "PFName", "vfID", "version", "mem", "missing"]

LITERALS = (
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str)
    | st.text(max_size=8).map(json.dumps)
    | st.sampled_from(["true", "false", "null", "1.5", "2u", "[]", "{}", "b'x'", "r'\\d'"])
    | st.sampled_from(["1.2.3", "v1", "1.2.3-rc.1", "x"]).map(lambda v: f'semver("{v}")')
    | st.sampled_from(["1Gi", "500m", "1e3", "-2", "x"]).map(lambda v: f'quantity("{v}")')
)
LOOKUPS = st.builds(
    lambda kind, domain, ident, style: (
        f'device.{kind}["{domain}"].{ident}'
        if style
        else f"device.{kind}.{domain.split('.')[0]}.{ident}"
    ),
    st.sampled_from(["attributes", "capacity"]),
    st.sampled_from(DOMAINS),
    st.sampled_from(IDENTS),
    st.booleans(),
) | st.sampled_from(["device.driver", "device.attributes", "device.capacity", "device"])

METHODS = [
    "startsWith",
    "matches",
    "isGreaterThan",
    "compareTo",
    "isLessThan",
    "add",
    "major",
    "asInteger",
    "sign",
    "isSorted",
    "findAll",
    "contains",
    "lowerAscii",
]


def _compose(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return (
        st.builds(
            "{} {} {}".format,
            inner,
            st.sampled_from(["==", "!=", "<", ">=", "&&", "||", "+", "in", "/", "%"]),
            inner,
        )
        | inner.map("!({})".format)
        | inner.map("has({})".format)
        | inner.map("size({})".format)
        | st.builds(
            "{}.{}({})".format,
            inner,
            st.sampled_from(METHODS),
            st.lists(inner, max_size=2).map(", ".join),
        )
        | st.builds("cel.bind(x, {}, x == {})".format, inner, inner)
        | st.builds("[{}, {}].exists(x, x == {})".format, inner, inner, inner)
        | st.builds("({} ? {} : {})".format, inner, inner, inner)
    )


EXPRESSIONS = st.recursive(LITERALS | LOOKUPS, _compose, max_leaves=6)
"""Expressions of the selector grammar, well- and ill-typed."""

VALUES = (
    st.fixed_dictionaries({"int": st.integers(min_value=-(2**63), max_value=2**63 - 1)})
    | st.fixed_dictionaries({"bool": st.booleans()})
    | st.fixed_dictionaries({"string": st.text(max_size=10)})
    | st.fixed_dictionaries({"version": st.sampled_from(["1.2.3", "0.0.1-a.1+b", "1.2", "x"])})
)
QUALIFIED = st.builds(
    lambda domain, ident: f"{domain}/{ident}" if domain else ident,
    st.sampled_from(["", *DOMAINS]),
    st.sampled_from(IDENTS),
)
DEVICES = st.fixed_dictionaries(
    {"name": st.just("0000-08-00-2")},
    optional={
        "attributes": st.dictionaries(QUALIFIED, VALUES, max_size=5),
        "capacity": st.dictionaries(
            QUALIFIED,
            st.fixed_dictionaries(
                {"value": st.sampled_from(["1Gi", "500m", "3", "1.5k", "0", "x", "1e400"])}
            ),
            max_size=2,
        ),
    },
)
"""ResourceSlice devices as the apiserver admits them, with a few values it refuses."""


@given(st.text(max_size=40) | EXPRESSIONS)
@example("cel.bind(x")
@example("device.attributes[")
@example("'''")
def test_compiling_any_text_raises_only_selector_error(text: str) -> None:
    try:
        compile_selector(text)
    except SelectorError as error:
        assert error.field == "cel.expression" and error.fix


@given(EXPRESSIONS, DEVICES)
# A map result was shown in the cel package's order, which varies: a new message (and
# Event) per evaluation.
@example("device", {"name": "0000-08-00-2"})
def test_evaluating_a_selector_raises_only_selector_error_and_returns_a_bool(
    expression: str, device: dict[str, Any]
) -> None:
    try:
        selector = compile_selector(expression)
    except SelectorError:
        return
    outcomes = []
    for _ in range(2):
        try:
            outcomes.append(selector.evaluate(DeviceInput(device, driver=DRIVER_NAME)))
        except SelectorError as error:
            assert error.fix
            outcomes.append(error.message)
    assert isinstance(outcomes[0], (bool, str))
    # Evaluation is a function of the device: the memoized result stands for every evaluation.
    assert outcomes[0] == outcomes[1]


@given(JSON.map(json.dumps) | st.text(max_size=40))
def test_text_without_device_or_bind_is_not_rewritten(text: str) -> None:
    if "device" not in text and "cel" not in text:
        assert rewrite_expression(text) == text


@given(EXPRESSIONS, DEVICES, st.dictionaries(QUALIFIED, VALUES, max_size=3))
def test_devices_with_equal_shared_keys_get_equal_results(
    expression: str, device: dict[str, Any], changes: dict[str, Any]
) -> None:
    """The allocator evaluates a selector once per shared key: two devices with the same
    key (one with some attributes changed or added) must get the same result."""
    try:
        selector = compile_selector(expression)
    except SelectorError:
        return
    other = {**device, "attributes": {**(device.get("attributes") or {}), **changes}}
    first, second = DeviceInput(device, driver=DRIVER_NAME), DeviceInput(other, driver=DRIVER_NAME)
    key = selector.shared_key(first)
    if key is None or key != selector.shared_key(second):
        return

    def outcome(device_input: DeviceInput) -> bool | str:
        try:
            return selector.evaluate(device_input)
        except SelectorError:
            return "error"

    assert outcome(first) == outcome(second)
