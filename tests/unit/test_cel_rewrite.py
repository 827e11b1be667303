"""The source rewrites behind Kubernetes' domain lookups and cel.bind."""

from __future__ import annotations

import pytest
from sriov_dra.cel_rewrite import attribute_reads, rewrite_expression
from sriov_dra.errors import SelectorError

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


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (
            "cel.bind(x, 1) == 1",
            "cel.expression: cel.bind needs three arguments: a variable name, a value and an "
            "expression; fix: write cel.bind(name, value, expression), e.g. cel.bind(d, "
            'device.attributes["dra.net"], d.numaNode == 0)',
        ),
        (
            "device.attributes[(1]",
            "cel.expression: unbalanced brackets; fix: correct the CEL expression (see the "
            "caret in the message)",
        ),
    ],
    ids=["bind-two-args", "unbalanced"],
)
def test_rewrite_errors(expression: str, message: str) -> None:
    with pytest.raises(SelectorError) as info:
        rewrite_expression(expression)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("expression", "reads"),
    [
        ('device.driver == "d"', ()),
        (
            'device.attributes["d"].PFName == "a" && device.attributes["e"]["x"] > 1',
            (("d", "PFName"), ("e", "x")),
        ),
        ('has(device.attributes["d"].x)', (("d", "x"),)),
        ('device.attributes["d"].x.startsWith("a")', (("d", "x"),)),
        ('"x" in device.attributes["d"]', None),
        ('device.attributes["d"].exists(k, k == "x")', None),
        ('device.attributes["d"]["x"] == device.attributes["d"]', None),
        ('device.capacity["d"].m > quantity("1")', None),
        ("device.attributes.d.x == 1", None),
        ('cel.bind(a, device.attributes, a["d"].x == 1)', None),
        ("[1].all(device, device > 0)", None),
        (r'device.attributes["d\x41"].x == 1', None),
        ('"device.attributes" == "x"', ()),
    ],
)
def test_attribute_reads(expression: str, reads: tuple[tuple[str, str], ...] | None) -> None:
    """Known only when device is read as driver or named attributes with plain literals."""
    assert attribute_reads(expression) == reads
