"""Kubernetes' CEL library on the ``cel`` package: semver, quantity, find, isSorted, refusals."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from sriov_dra.cel_library import SEMVER_TAG, parse_quantity, parse_semver
from sriov_dra.cel_selectors import compile_selector
from sriov_dra.errors import SelectorError

D = "sriovnetwork.k8snetworkplumbingwg.io"
DEVICE: dict[str, Any] = {
    "name": "0000-08-00-2",
    "attributes": {"driverVersion": {"version": "1.2.3-rc.1+build5"}},
    "capacity": {"memory": {"value": "1Gi"}, "example.com/slots": {"value": "500m"}},
}

MATCHES = [
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
    pytest.param('find("ens1f0", "f[0-9]") == "f0"', True, id="regex-find"),
    pytest.param("[1, 2, 3].isSorted()", True, id="isSorted"),
]


@pytest.mark.parametrize(("expression", "expected"), MATCHES)
def test_library_functions(expression: str, expected: bool) -> None:
    assert compile_selector(expression).matches(DEVICE, driver=D) is expected


ERRORS = [
    pytest.param(
        f'device.attributes["{D}"].driverVersion < semver("2.0.0")',
        "cel.expression: device 0000-08-00-2: CEL runtime error: No such overload: the "
        "operation is not defined for the given operand types; fix: compare values of the "
        "same type",
        id="semver-less-than-operator",
    ),
    pytest.param(
        'findAll("ab", "(?<=a)b") == []',
        "cel.expression: device 0000-08-00-2: CEL runtime error: findAll(): '(?<=a)b' is not "
        "an RE2 regular expression: invalid perl operator: (?<=; fix: pass the function a "
        "value of the right type and format",
        id="find-all-lookbehind-is-not-re2",
    ),
    pytest.param(
        'semver("one") == semver("1.0.0")',
        "cel.expression: device 0000-08-00-2: CEL runtime error: semver('one'): not a "
        "semantic version (want e.g. 1.2.3); fix: pass the function a value of the right "
        "type and format",
        id="semver-bad",
    ),
]


@pytest.mark.parametrize(("expression", "message"), ERRORS)
def test_library_errors_reach_the_selector_error(expression: str, message: str) -> None:
    with pytest.raises(SelectorError) as info:
        compile_selector(expression).matches(DEVICE, driver=D)
    assert str(info.value) == message


def test_unsupported_functions_are_refused_at_compile_time() -> None:
    with pytest.raises(SelectorError) as info:
        compile_selector('ip("10.0.0.1") == ip("10.0.0.1")')
    assert str(info.value) == (
        "cel.expression: CEL function ip() is not supported by this operator's evaluator; "
        "fix: select on attributes with ==, in, has(), startsWith(), matches(), semver() or "
        "quantity() instead"
    )


def test_values_are_tagged_and_exact() -> None:
    assert parse_semver("1.2.3-rc.1+build5") == [SEMVER_TAG, 1, 2, 3, "rc.1"]
    assert parse_semver("v1.2", normalize=True) == [SEMVER_TAG, 1, 2, 0, ""]
    assert parse_semver("1.2") is None
    assert parse_quantity("1.5Ki") == Fraction(1536)
    assert parse_quantity("500m") == Fraction(1, 2)
    assert parse_quantity("1e3") == Fraction(1000)
    assert parse_quantity("1GB") is None


def test_no_pattern_or_quantity_in_a_claim_stalls_the_evaluator() -> None:
    """Each took seconds to hours before (the allocator, and every claim, waited): a regex
    that backtracks exponentially on Python's re, and 10**N of a huge exponent."""
    stalls = compile_selector(
        'findAll("' + "a" * 5000 + '!", "(a+)+$") == [] && !isQuantity("1e10000000") '
        '&& !isQuantity("1e' + "9" * 5000 + '") && !isQuantity("' + "1" * 5000 + '")'
    )
    assert stalls.matches(DEVICE, driver=D)


@pytest.mark.parametrize("text", ["1.2.3\n", "\u0661.\u0662.\u0663"])
def test_a_semantic_version_is_the_whole_ascii_string(text: str) -> None:
    assert parse_semver(text) is None


@pytest.mark.parametrize("text", ["1Gi\n", "\u0661Gi", "1e1001"])
def test_a_quantity_is_the_whole_ascii_string_with_a_bounded_exponent(text: str) -> None:
    assert parse_quantity(text) is None
