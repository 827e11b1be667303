"""Device selectors in CEL with Kubernetes' DRA semantics, on the ``cel`` package.

Kubernetes evaluates ``spec.selectors[].cel.expression`` against one variable,
``device``: ``{driver, attributes: {domain: {id: value}}, capacity: {domain: {id:
quantity}}}``. The Rust-based ``cel`` package evaluates plain CEL; this module
adds what Kubernetes adds, and refuses (with :class:`SelectorError`) what it
cannot emulate:

- **Unqualified attribute names** go under the driver's domain.
- **Unknown domain = empty map.** ``device.attributes[D]`` and
  ``device.capacity[D]`` (also the ``device.attributes.D`` select form) are
  rewritten to ``(D in device.attributes ? device.attributes[D] : {})`` before
  compiling, so a missing domain reads as ``{}`` while ``in``, ``has()`` and
  ``size()`` still see only the real domains, as in Kubernetes. Lookups through an
  alias of the whole map (``cel.bind(a, device.attributes, a["d"])``) are not
  rewritten and fail for a missing domain.
- **Unknown attribute inside a domain** is a runtime error, as in Kubernetes.
- **Errors are errors**: a runtime error or a non-bool result raises
  :class:`SelectorError`; it is never a silent "no match".
- ``cel.bind(name, value, body)`` is rewritten to ``[value].map(name, body)[0]``.
- **Semver** (``semver(s[, normalize])``, ``isSemver``, ``major/minor/patch``,
  ``isGreaterThan/isLessThan/compareTo``, ``==``) and **Quantity**
  (``quantity``, ``isQuantity``, ``sign``, ``isInteger``, ``asInteger``,
  ``asApproximateFloat``, ``add``, ``sub`` and the comparisons) are implemented;
  version attributes and capacities are values of these types. Internally they are
  tagged lists, so ``<`` on them is an error (as in Kubernetes), and comparing one
  with a plain string is ``false`` (Kubernetes reports "no such overload").
- Also available: the ``cel`` package's extended library (strings, lists, math,
  sets). Not available (SelectorError "not supported"): ``ip``, ``cidr``,
  ``url``, ``format``, ``authz`` and the cost limit.

Compiled programs are cached (:func:`compile_selector`); device inputs are built
once per device (:class:`DeviceInput`) because conversion costs ~20x an evaluation.
The rewrites live in :mod:`sriov_dra.cel_rewrite`, the semver and quantity
functions (and the refused ones) in :mod:`sriov_dra.cel_library`; this module
builds the ``device`` variable, compiles and evaluates.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sriov_dra.cel_library import (
    FUNCTIONS,
    UNSUPPORTED,
    clear_library_error,
    library_error,
    parse_quantity,
    parse_semver,
    quantity_value,
)
from sriov_dra.cel_package import cel
from sriov_dra.cel_rewrite import FIX_SYNTAX, attribute_reads, rewrite_expression
from sriov_dra.errors import SelectorError

_FIX_RUNTIME: Final = (
    'guard lookups that may be missing, e.g. "name" in device.attributes["domain"] && ...'
)


# --- device input -------------------------------------------------------------------


def _split_name(name: str, driver: str) -> tuple[str, str]:
    domain, sep, ident = name.partition("/")
    return (domain, ident) if sep else (driver, name)


def _attribute_value(device_name: str, name: str, attribute: Mapping[str, Any]) -> Any:
    for kind in ("int", "bool", "string"):
        if kind in attribute:
            return attribute[kind]
    if "version" in attribute:
        parsed = parse_semver(str(attribute["version"]))
        if parsed is None:
            raise SelectorError(
                f"device {device_name}: attribute {name} has version "
                f"{attribute['version']!r}, not a semantic version",
                field=f"attributes[{name}].version",
                fix="publish a semantic version such as 1.2.3",
            )
        return parsed
    raise SelectorError(
        f"device {device_name}: attribute {name} has no supported value "
        "(int, bool, string or version)",
        field=f"attributes[{name}]",
        fix="publish exactly one of int, bool, string, version",
    )


def device_variables(device: Mapping[str, Any], *, driver: str) -> dict[str, Any]:
    """The ``device`` variable for a ResourceSlice device dict.

    Unqualified attribute and capacity names go under ``driver``'s domain.
    """
    name = str(device.get("name", ""))
    attributes: dict[str, dict[str, Any]] = {}
    for qualified, attribute in (device.get("attributes") or {}).items():
        domain, ident = _split_name(qualified, driver)
        attributes.setdefault(domain, {})[ident] = _attribute_value(name, qualified, attribute)
    capacity: dict[str, dict[str, Any]] = {}
    for qualified, cap in (device.get("capacity") or {}).items():
        domain, ident = _split_name(qualified, driver)
        raw = cap.get("value") if isinstance(cap, Mapping) else cap
        parsed = parse_quantity(str(raw))
        if parsed is None:
            raise SelectorError(
                f"device {name}: capacity {qualified} is {raw!r}, not a quantity",
                field=f"capacity[{qualified}].value",
                fix="publish a Kubernetes quantity such as 1Gi",
            )
        capacity.setdefault(domain, {})[ident] = quantity_value(parsed)
    return {"device": {"driver": driver, "attributes": attributes, "capacity": capacity}}


_PLAIN_KINDS: Final = frozenset({"int", "bool", "string"})
_PLAIN_TYPES: Final = (str, int, bool)


def _plain_attributes(attributes: Mapping[str, Any]) -> bool:
    for attribute in attributes.values():
        if type(attribute) is not dict:
            return False
        for kind, value in attribute.items():
            if kind not in _PLAIN_KINDS or type(value) not in _PLAIN_TYPES:
                return False
    return True


class DeviceInput:
    """One device's CEL context, built once and reused for every selector."""

    __slots__ = ("_context", "_plain", "device", "driver", "name")

    def __init__(self, device: Mapping[str, Any], *, driver: str) -> None:
        self.device = device
        self.driver = driver
        self.name = str(device.get("name", ""))
        self._context: cel.Context | None = None
        self._plain: bool | None = None

    @property
    def plain(self) -> bool:
        """Its context builds from its attributes alone and cannot fail: every attribute
        is an int, bool or string, and it has no capacity (those are parsed)."""
        if self._plain is None:
            self._plain = not self.device.get("capacity") and _plain_attributes(
                self.device.get("attributes") or {}
            )
        return self._plain

    @property
    def context(self) -> cel.Context:
        """The ``cel.Context`` (variables + library), built on first use."""
        if self._context is None:
            self._context = cel.Context(
                variables=device_variables(self.device, driver=self.driver),
                functions=FUNCTIONS,
            )
        return self._context


# --- compile and evaluate -----------------------------------------------------------


def _runtime_problem(exc: BaseException) -> tuple[str, str]:
    """(message, fix) for an exception raised while evaluating."""
    library_message = library_error()
    if library_message:
        return str(library_message), "pass the function a value of the right type and format"
    if isinstance(exc, KeyError):
        return f"no such key: {exc.args[0]!r}", _FIX_RUNTIME
    text = str(exc)
    undefined = re.match(r"Undefined variable or function: '([^']+)'", text)
    if undefined:
        return (
            f"{undefined.group(1)!r} is not defined or not supported by this evaluator",
            "use only the variable device and the functions of Kubernetes' CEL "
            "environment listed in sriov_dra.cel_selectors",
        )
    return text.split(". CEL does not coerce")[0], "compare values of the same type"


def _shown(value: Any) -> str:
    """``value`` for a message, maps in key order: the ``cel`` package returns them in
    any order, and a message that changes with it would be a new Event on every retry."""
    if isinstance(value, Mapping):
        items = sorted(f"{_shown(k)}: {_shown(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return repr(value)


def _frozen(attribute: Any) -> Hashable:
    if attribute is None:
        return None
    return tuple(sorted(attribute.items()))


@dataclass(frozen=True, eq=False)
class CompiledSelector:
    """A compiled device selector; evaluate with :meth:`matches` or :meth:`evaluate`."""

    expression: str
    rewritten: str
    program: cel.Program
    reads: tuple[tuple[str, str], ...] | None = None
    """The attributes the result depends on (:func:`~sriov_dra.cel_rewrite.attribute_reads`),
    None when it may depend on anything."""
    shared: dict[Hashable, bool] = field(default_factory=dict, repr=False)
    """Results by :meth:`shared_key`: one evaluation serves every device with that key."""

    def shared_key(self, device: DeviceInput) -> Hashable | None:
        """What the result on ``device`` depends on (driver and the attributes read), or
        None when that is not known: devices with equal keys get equal results."""
        if self.reads is None or not device.plain:
            return None
        attributes = device.device.get("attributes") or {}
        key: list[Hashable] = [device.driver]
        for domain, name in self.reads:
            qualified = attributes.get(f"{domain}/{name}")
            bare = attributes.get(name) if domain == device.driver else None
            if qualified is not None and bare is not None:
                return None  # both spellings: which one wins depends on their order
            key.append(_frozen(qualified if qualified is not None else bare))
        return tuple(key)

    def evaluate(self, device: DeviceInput) -> bool:
        """Evaluate against a prepared device; raises SelectorError on any error."""
        clear_library_error()
        try:
            result = self.program.execute(device.context)
        except SelectorError:
            raise
        except Exception as exc:
            message, fix = _runtime_problem(exc)
            raise SelectorError(
                f"device {device.name}: CEL runtime error: {message}",
                field="cel.expression",
                fix=fix,
            ) from exc
        if not isinstance(result, bool):
            raise SelectorError(
                f"device {device.name}: must evaluate to bool, got "
                f"{type(result).__name__} {_shown(result)}",
                field="cel.expression",
                fix="make the expression a condition, e.g. compare with ==",
            )
        return result

    def matches(self, device: Mapping[str, Any], *, driver: str) -> bool:
        """True when ``device`` (a ResourceSlice device dict) is selected."""
        return self.evaluate(DeviceInput(device, driver=driver))


@functools.lru_cache(maxsize=4096)
def compile_selector(expression: str) -> CompiledSelector:
    """Compile (cached) a selector; raises SelectorError for syntax errors."""
    try:
        original = cel.compile(expression)
    except ValueError as exc:
        raise SelectorError(
            f"CEL syntax error: {exc}", field="cel.expression", fix=FIX_SYNTAX
        ) from exc
    unsupported = sorted(set(original.functions()) & UNSUPPORTED)
    if unsupported:
        raise SelectorError(
            f"CEL function {unsupported[0]}() is not supported by this operator's evaluator",
            field="cel.expression",
            fix="select on attributes with ==, in, has(), startsWith(), matches(), semver() "
            "or quantity() instead",
        )
    rewritten = rewrite_expression(expression)
    try:
        program = cel.compile(rewritten)
    except ValueError as exc:
        raise SelectorError(
            f"CEL expression could not be prepared for evaluation: {exc}",
            field="cel.expression",
            fix="simplify the expression",
        ) from exc
    return CompiledSelector(
        expression=expression,
        rewritten=rewritten,
        program=program,
        reads=attribute_reads(expression),
    )
