"""CEL device selectors with Kubernetes' DRA semantics."""

from __future__ import annotations

from typing import Any

import pytest
from sriov_dra.cel_selectors import compile_selector, rewrite_expression
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
    pytest.param(f'device.attributes["{D}"].driverVersion.major() == 1', True, id="semver-major"),
    pytest.param(
        f'device.attributes["{D}"].driverVersion.isLessThan(semver("1.2.3"))',
        True,
        id="prerelease-before-release",
    ),
    pytest.param(
        f'device.attributes["{D}"].driverVersion == semver("1.2.3-rc.1")',
        True,
        id="semver-equality-ignores-build",
    ),
    pytest.param('semver("1.10.0").isGreaterThan(semver("1.9.0"))', True, id="semver-numeric"),
    pytest.param(
        'semver("v01.2", true).compareTo(semver("1.2.0")) == 0', True, id="semver-normalize"
    ),
    pytest.param('isSemver("1.0") || !isSemver("1.0", true)', False, id="isSemver"),
    pytest.param(
        f'device.capacity["{D}"].memory.compareTo(quantity("1024Mi")) == 0',
        True,
        id="quantity-compare",
    ),
    pytest.param(
        'device.capacity["example.com"].slots.isLessThan(quantity("1"))', True, id="quantity-milli"
    ),
    pytest.param('quantity("1.5k").add(500).asInteger() == 2000', True, id="quantity-add"),
    pytest.param('"abc".upperAscii() == "ABC"', True, id="stdlib-strings"),
    pytest.param('find("ens1f0", "f[0-9]") == "f0"', True, id="regex-find"),
    pytest.param("[1, 2, 3].isSorted()", True, id="isSorted"),
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
        f'device.attributes["{D}"].driverVersion < semver("2.0.0")',
        "cel.expression: device 0000-08-00-2: CEL runtime error: No such overload: the "
        "operation is not defined for the given operand types; fix: compare values of the "
        "same type",
        id="semver-less-than-operator",
    ),
    pytest.param(
        'semver("one") == semver("1.0.0")',
        "cel.expression: device 0000-08-00-2: CEL runtime error: semver('one'): not a "
        "semantic version (want e.g. 1.2.3); fix: pass the function a value of the right "
        "type and format",
        id="semver-bad",
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


COMPILE_ERRORS = [
    pytest.param(
        'ip("10.0.0.1") == ip("10.0.0.1")',
        "cel.expression: CEL function ip() is not supported by this operator's evaluator; "
        "fix: select on attributes with ==, in, has(), startsWith(), matches(), semver() or "
        "quantity() instead",
        id="ip-unsupported",
    ),
    pytest.param(
        "cel.bind(x, 1) == 1",
        "cel.expression: cel.bind needs three arguments: a variable name, a value and an "
        "expression; fix: write cel.bind(name, value, expression), e.g. cel.bind(d, "
        'device.attributes["dra.net"], d.numaNode == 0)',
        id="bind-two-args",
    ),
]


@pytest.mark.parametrize(("expression", "message"), COMPILE_ERRORS)
def test_compile_errors(expression: str, message: str) -> None:
    with pytest.raises(SelectorError) as info:
        compile_selector(expression)
    assert str(info.value) == message


def test_syntax_error_shows_caret() -> None:
    with pytest.raises(SelectorError) as info:
        compile_selector("device.driver ==")
    text = str(info.value)
    assert text.startswith("cel.expression: CEL syntax error: Failed to parse expression")
    assert "^" in text
    assert text.endswith("fix: correct the CEL expression (see the caret in the message)")


REWRITES = [
    pytest.param(
        '"device.attributes[\\"x\\"]" == s',
        '"device.attributes[\\"x\\"]" == s',
        id="string-untouched",
    ),
    pytest.param("foo.device.attributes['x']", "foo.device.attributes['x']", id="not-root"),
    pytest.param(
        "device.capacity['a.b'].x",
        "(('a.b') in device.capacity ? device.capacity['a.b'] : {}).x",
        id="capacity",
    ),
    pytest.param(
        "device.attributes.foo.bar",
        '("foo" in device.attributes ? device.attributes.foo : {}).bar',
        id="select-form",
    ),
    pytest.param("cel.bind(a, 1, a)", "[1].map(a, a)[0]", id="bind"),
    pytest.param(
        "r'''x[''' + device.attributes[\"d\"]",
        "r'''x[''' + ((\"d\") in device.attributes ? device.attributes[\"d\"] : {})",
        id="raw-triple-quoted",
    ),
]


@pytest.mark.parametrize(("expression", "expected"), REWRITES)
def test_rewrite(expression: str, expected: str) -> None:
    assert rewrite_expression(expression) == expected


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
