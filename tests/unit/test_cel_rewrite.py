"""The source rewrites behind Kubernetes' domain lookups and cel.bind."""

from __future__ import annotations

import pytest
from sriov_dra.cel_rewrite import rewrite_expression
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
