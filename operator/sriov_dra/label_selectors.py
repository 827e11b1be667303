"""Kubernetes label selectors and node selectors, parsed and matched (pure).

``metav1.LabelSelector`` (``matchLabels`` + ``matchExpressions`` with In, NotIn,
Exists, DoesNotExist) and ``core/v1.NodeSelector`` (terms ORed; in a term,
``matchExpressions`` over the node's labels, adding Gt and Lt, and
``matchFields`` over ``metadata.name``, ANDed), with the API server's rules:
an empty label selector matches everything, an empty node selector every node,
an empty node selector term no node.
A malformed selector raises :class:`~sriov_dra.errors.InvalidResourcePolicy`
naming the field at fault.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sriov_dra.errors import InvalidResourcePolicy

SET_OPERATORS: Final = frozenset({"In", "NotIn"})
EXISTENCE_OPERATORS: Final = frozenset({"Exists", "DoesNotExist"})
NUMERIC_OPERATORS: Final = frozenset({"Gt", "Lt"})


@dataclass(frozen=True)
class Requirement:
    """One ``key operator values`` expression."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when ``labels`` satisfy this expression."""
        present = self.key in labels
        value = labels.get(self.key, "")
        if self.operator == "In":
            return present and value in self.values
        if self.operator == "NotIn":
            return not present or value not in self.values
        if self.operator == "Exists":
            return present
        if self.operator == "DoesNotExist":
            return not present
        if not present or not value.lstrip("-").isdigit():
            return False
        bound = int(self.values[0])
        return int(value) > bound if self.operator == "Gt" else int(value) < bound


@dataclass(frozen=True)
class LabelSelector:
    """All requirements ANDed; no requirement matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when ``labels`` satisfy every requirement."""
        return all(requirement.matches(labels) for requirement in self.requirements)


@dataclass(frozen=True)
class NodeSelectorTerm:
    """Label requirements and the node names ``matchFields`` allows (None: any)."""

    labels: LabelSelector
    names: frozenset[str] | None = None

    def matches(self, node: str, labels: Mapping[str, str]) -> bool:
        """True when both parts match; an empty term matches no node (as the API says)."""
        if not self.labels.requirements and self.names is None:
            return False
        return self.labels.matches(labels) and (self.names is None or node in self.names)


@dataclass(frozen=True)
class NodeSelector:
    """Terms ORed; no term matches every node."""

    terms: tuple[NodeSelectorTerm, ...] = ()

    def matches(self, node: str, labels: Mapping[str, str]) -> bool:
        """True when node ``node`` with ``labels`` satisfies some term."""
        if not self.terms:
            return True
        return any(term.matches(node, labels) for term in self.terms)


def _invalid(field: str, message: str, fix: str) -> InvalidResourcePolicy:
    return InvalidResourcePolicy(message, field=field, fix=fix)


def _list(raw: Any, field: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _invalid(field, f"must be a list, got {type(raw).__name__}", "write a YAML list")
    return raw


def _requirement(raw: Any, field: str, operators: frozenset[str]) -> Requirement:
    if not isinstance(raw, Mapping):
        raise _invalid(field, "must be an object {key, operator, values}", "fix the expression")
    key = raw.get("key")
    operator = raw.get("operator")
    values = _list(raw.get("values"), f"{field}.values")
    if not isinstance(key, str) or not key:
        raise _invalid(f"{field}.key", "is missing or empty", "name the label key")
    if operator not in operators:
        raise _invalid(
            f"{field}.operator",
            f"unknown operator {operator!r}",
            f"use one of {', '.join(sorted(operators))}",
        )
    if not all(isinstance(value, str) for value in values):
        raise _invalid(f"{field}.values", "must be strings", "quote the values")
    if operator in SET_OPERATORS and not values:
        raise _invalid(f"{field}.values", f"{operator} needs at least one value", "add values")
    if operator in EXISTENCE_OPERATORS and values:
        raise _invalid(f"{field}.values", f"{operator} takes no values", "remove the values")
    if operator in NUMERIC_OPERATORS and (len(values) != 1 or not values[0].lstrip("-").isdigit()):
        raise _invalid(
            f"{field}.values", f"{operator} needs exactly one integer", "give one number"
        )
    return Requirement(str(key), str(operator), tuple(values))


def parse_label_selector(raw: Any, field: str) -> LabelSelector:
    """A ``metav1.LabelSelector`` at ``field``; InvalidResourcePolicy when malformed."""
    if not isinstance(raw, Mapping):
        raise _invalid(field, "must be an object {matchLabels, matchExpressions}", "fix it")
    labels = raw.get("matchLabels") or {}
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise _invalid(f"{field}.matchLabels", "must map strings to strings", "quote the values")
    requirements = [Requirement(key, "In", (value,)) for key, value in sorted(labels.items())]
    operators = SET_OPERATORS | EXISTENCE_OPERATORS
    for index, expression in enumerate(
        _list(raw.get("matchExpressions"), f"{field}.matchExpressions")
    ):
        requirements.append(
            _requirement(expression, f"{field}.matchExpressions[{index}]", operators)
        )
    return LabelSelector(tuple(requirements))


def _names(raw: Any, field: str) -> frozenset[str] | None:
    names: frozenset[str] | None = None
    for index, expression in enumerate(_list(raw, field)):
        where = f"{field}[{index}]"
        requirement = _requirement(expression, where, SET_OPERATORS)
        if requirement.key != "metadata.name":
            raise _invalid(
                f"{where}.key", f"unknown field {requirement.key!r}", "use metadata.name"
            )
        allowed = frozenset(requirement.values)
        if requirement.operator == "NotIn":
            raise _invalid(f"{where}.operator", "NotIn on metadata.name is not supported", "use In")
        names = allowed if names is None else names & allowed
    return names


def parse_node_selector(raw: Any, field: str) -> NodeSelector:
    """A ``core/v1.NodeSelector`` at ``field`` (None: every node); InvalidResourcePolicy
    when malformed."""
    if raw is None:
        return NodeSelector()
    if not isinstance(raw, Mapping):
        raise _invalid(field, "must be an object {nodeSelectorTerms: [...]}", "fix it")
    operators = SET_OPERATORS | EXISTENCE_OPERATORS | NUMERIC_OPERATORS
    terms = []
    for index, term in enumerate(_list(raw.get("nodeSelectorTerms"), f"{field}.nodeSelectorTerms")):
        where = f"{field}.nodeSelectorTerms[{index}]"
        if not isinstance(term, Mapping):
            raise _invalid(where, "must be an object {matchExpressions, matchFields}", "fix it")
        expressions = _list(term.get("matchExpressions"), f"{where}.matchExpressions")
        requirements = tuple(
            _requirement(expression, f"{where}.matchExpressions[{i}]", operators)
            for i, expression in enumerate(expressions)
        )
        names = _names(term.get("matchFields"), f"{where}.matchFields")
        terms.append(NodeSelectorTerm(LabelSelector(requirements), names))
    return NodeSelector(tuple(terms))
