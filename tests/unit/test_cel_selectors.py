"""CEL device selectors with Kubernetes' DRA semantics."""

from __future__ import annotations

from typing import Any

import pytest
from sriov_dra.cel_selectors import compile_selector
from sriov_dra.errors import SelectorError

D = "sriovnetwork.k8snetworkplumbingwg.io"
DEVICE: dict[str, Any] = {
    "name": "0000-08-00-2",
    "attributes": {
        "PFName": {"string": "ens1f0"},
        "vfID": {"int": 2},
        "rdmaCapable": {"bool": False},
        "driverVersion": {"version": "1.2.3-rc.1+build5"},
        f"{D}/vendor": {"string": "8086"},
        "dra.net/numaNode": {"int": 0},
        "resource.kubernetes.io/pcieRoot": {"string": "pci0000:00"},
    },
    "capacity": {"memory": {"value": "1Gi"}, "example.com/slots": {"value": "500m"}},
}

MATCHES = [
    pytest.param(f'device.driver == "{D}"', True, id="driver"),
    pytest.param(f'device.attributes["{D}"].PFName == "ens1f0"', True, id="unqualified-name"),
    pytest.param(f'device.attributes["{D}"].vendor == "8086"', True, id="qualified-name"),
    pytest.param(f"device.attributes['{D}'].vfID >= 2", True, id="int-single-quotes"),
    pytest.param(f'device.attributes["{D}"].rdmaCapable', False, id="bool-result"),
    pytest.param('device.attributes["dra.net"].numaNode == 0', True, id="numa"),
    pytest.param(
        'device.attributes["gpu.example.com"].size() == 0', True, id="unknown-domain-empty-map"
    ),
    pytest.param(
        'has(device.attributes["gpu.example.com"].model)', False, id="has-in-unknown-domain"
    ),
    pytest.param('"gpu.example.com" in device.attributes', False, id="in-sees-real-domains"),
    pytest.param('"dra.net" in device.attributes', True, id="in-real-domain"),
    pytest.param("has(device.attributes.foo)", False, id="has-domain-select-kept"),
    pytest.param(
        f'"model" in device.attributes["{D}"] && device.attributes["{D}"].model == 1',
        False,
        id="guarded-missing",
    ),
    pytest.param(
        'false && device.attributes["dra.net"].missing == 1', False, id="short-circuit-error"
    ),
    pytest.param(f'device.attributes["{D}"].PFName.startsWith("ens1")', True, id="startsWith"),
    pytest.param(f'device.attributes["{D}"].PFName.matches("^ens[0-9]f0$")', True, id="matches"),
    pytest.param(
        'cel.bind(dra, device.attributes["dra.net"], dra.numaNode == 0 && dra.numaNode < 1)',
        True,
        id="cel-bind",
    ),
    pytest.param("cel.bind(x, cel.bind(y, 2, y * y), x + 1) == 5", True, id="nested-bind"),
    pytest.param('"abc".upperAscii() == "ABC"', True, id="stdlib-strings"),
]


@pytest.mark.parametrize(("expression", "expected"), MATCHES)
def test_matches(expression: str, expected: bool) -> None:
    assert compile_selector(expression).matches(DEVICE, driver=D) is expected


ERRORS = [
    pytest.param(
        'device.attributes["dra.net"].missing == 1',
        "cel.expression: device 0000-08-00-2: CEL runtime error: no such key: 'missing'; "
        'fix: guard lookups that may be missing, e.g. "name" in device.attributes["domain"] '
        "&& ...",
        id="unknown-attribute-is-error",
    ),
    pytest.param(
        'device.attributes["gpu.example.com"].model == "a100"',
        "cel.expression: device 0000-08-00-2: CEL runtime error: no such key: 'model'; "
        'fix: guard lookups that may be missing, e.g. "name" in device.attributes["domain"] '
        "&& ...",
        id="attribute-in-unknown-domain",
    ),
    pytest.param(
        'device.attributes["dra.net"].numaNode',
        "cel.expression: device 0000-08-00-2: must evaluate to bool, got int 0; fix: make "
        "the expression a condition, e.g. compare with ==",
        id="non-bool",
    ),
    pytest.param(
        "lookup(device) == 1",
        "cel.expression: device 0000-08-00-2: CEL runtime error: 'lookup' is not defined or "
        "not supported by this evaluator; fix: use only the variable device and the "
        "functions of Kubernetes' CEL environment listed in sriov_dra.cel_selectors",
        id="undefined-function",
    ),
]


@pytest.mark.parametrize(("expression", "message"), ERRORS)
def test_runtime_errors(expression: str, message: str) -> None:
    selector = compile_selector(expression)
    with pytest.raises(SelectorError) as info:
        selector.matches(DEVICE, driver=D)
    assert str(info.value) == message
    assert info.value.reason == "InvalidSelector"


def test_syntax_error_shows_caret() -> None:
    with pytest.raises(SelectorError) as info:
        compile_selector("device.driver ==")
    text = str(info.value)
    assert text.startswith("cel.expression: CEL syntax error: Failed to parse expression")
    assert "^" in text
    assert text.endswith("fix: correct the CEL expression (see the caret in the message)")


def test_compiled_selectors_are_cached() -> None:
    assert compile_selector(f'device.driver == "{D}"') is compile_selector(
        f'device.driver == "{D}"'
    )


def test_bad_version_attribute() -> None:
    device = {"name": "vf", "attributes": {"v": {"version": "1.2"}}}
    with pytest.raises(SelectorError) as info:
        compile_selector("true").matches(device, driver=D)
    assert str(info.value) == (
        "attributes[v].version: device vf: attribute v has version '1.2', not a semantic "
        "version; fix: publish a semantic version such as 1.2.3"
    )
