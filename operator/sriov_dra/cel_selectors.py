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
"""

from __future__ import annotations

import functools
import itertools
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final

import cel
import cel.stdlib

from sriov_dra.errors import SelectorError

SEMVER_TAG: Final = "@kubernetes.Semver"
QUANTITY_TAG: Final = "@kubernetes.Quantity"
_FIX_RUNTIME: Final = (
    'guard lookups that may be missing, e.g. "name" in device.attributes["domain"] && ...'
)
_FIX_SYNTAX: Final = "correct the CEL expression (see the caret in the message)"

_SEMVER: Final = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
_QUANTITY: Final = re.compile(
    r"^([+-]?)(\d+(?:\.\d*)?|\.\d+)"
    r"(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$"
)
_BINARY: Final = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL: Final = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


class _LibraryError(Exception):
    """Raised inside library functions; the message reaches the SelectorError."""


_state = threading.local()


def _fail(message: str) -> _LibraryError:
    _state.message = message
    return _LibraryError(message)


# --- semver -------------------------------------------------------------------------


def _strip_zeros(part: str) -> str:
    """Kubernetes' normalization: drop leading zeros, keep a digit in front."""
    if len(part) > 1:
        part = part.lstrip("0")
        if not part or not part[0].isdigit():
            part = "0" + part
    return part


def _parse_semver(text: str, normalize: bool = False) -> list[Any] | None:
    if normalize:
        text = text.removeprefix("v")
        parts = [_strip_zeros(p) for p in text.split(".", 2)]
        if len(parts) < 3:
            if any(c in parts[-1] for c in "+-"):
                return None
            parts += ["0"] * (3 - len(parts))
        text = ".".join(parts)
    match = _SEMVER.match(text)
    if not match:
        return None
    major, minor, patch, pre, _build = match.groups()
    return [SEMVER_TAG, int(major), int(minor), int(patch), pre or ""]


def _semver(text: Any, normalize: Any = False) -> list[Any]:
    if not isinstance(text, str):
        raise _fail(f"semver() wants a string, got {type(text).__name__}")
    parsed = _parse_semver(text, bool(normalize))
    if parsed is None:
        raise _fail(f"semver({text!r}): not a semantic version (want e.g. 1.2.3)")
    return parsed


def _is_semver(text: Any, normalize: Any = False) -> bool:
    return isinstance(text, str) and _parse_semver(text, bool(normalize)) is not None


def _prerelease_key(pre: str) -> tuple[Any, ...]:
    if not pre:
        return ((2,),)  # a release sorts after all its pre-releases
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))


def _is_tagged(value: Any, tag: str) -> bool:
    return isinstance(value, list) and len(value) >= 1 and value[0] == tag


def _semver_part(index: int, name: str) -> Callable[[Any], int]:
    def part(value: Any) -> int:
        if not _is_tagged(value, SEMVER_TAG):
            raise _fail(f"{name}() is defined on semver values only")
        return int(value[index])

    return part


# --- quantity -----------------------------------------------------------------------


def _parse_quantity(text: str) -> Fraction | None:
    match = _QUANTITY.match(text)
    if not match:
        return None
    sign, number, suffix = match.groups()
    value = Fraction(number)
    if suffix in _BINARY:
        value *= 2 ** _BINARY[suffix]
    elif suffix in _DECIMAL:
        value *= Fraction(10) ** _DECIMAL[suffix]
    elif suffix:
        value *= Fraction(10) ** int(suffix[1:])
    return -value if sign == "-" else value


def _quantity_value(value: Fraction) -> list[Any]:
    return [QUANTITY_TAG, value.numerator, value.denominator]


def _quantity(text: Any) -> list[Any]:
    if not isinstance(text, str):
        raise _fail(f"quantity() wants a string, got {type(text).__name__}")
    parsed = _parse_quantity(text)
    if parsed is None:
        raise _fail(f"quantity({text!r}): not a Kubernetes quantity (want e.g. 1Gi, 500m)")
    return _quantity_value(parsed)


def _is_quantity(text: Any) -> bool:
    return isinstance(text, str) and _parse_quantity(text) is not None


def _fraction(value: Any, name: str) -> Fraction:
    if _is_tagged(value, QUANTITY_TAG):
        return Fraction(int(value[1]), int(value[2]))
    raise _fail(f"{name}() is defined on quantity values only")


def _operand(value: Any, name: str) -> Fraction:
    if isinstance(value, int) and not isinstance(value, bool):
        return Fraction(value)
    return _fraction(value, name)


def _compare(left: Any, right: Any, name: str) -> int:
    if _is_tagged(left, SEMVER_TAG) and _is_tagged(right, SEMVER_TAG):
        a = (left[1], left[2], left[3], _prerelease_key(left[4]))
        b = (right[1], right[2], right[3], _prerelease_key(right[4]))
    elif _is_tagged(left, QUANTITY_TAG) and _is_tagged(right, QUANTITY_TAG):
        a, b = _fraction(left, name), _fraction(right, name)  # type: ignore[assignment]
    else:
        raise _fail(f"{name}() compares two semver or two quantity values")
    return (a > b) - (a < b)


def _as_integer(value: Any) -> int:
    number = _fraction(value, "asInteger")
    if number.denominator != 1 or not -(2**63) <= number.numerator < 2**63:
        raise _fail(f"asInteger(): {float(number)} is not an int64")
    return number.numerator


def _find_all(text: Any, pattern: Any, limit: Any = -1) -> list[str]:
    if not isinstance(text, str) or not isinstance(pattern, str):
        raise _fail("findAll() wants a string and a regular expression")
    found = [m.group(0) for m in re.finditer(pattern, text)]
    return found if limit < 0 else found[:limit]


def _is_sorted(items: Any) -> bool:
    if not isinstance(items, list):
        raise _fail("isSorted() is defined on lists only")
    try:
        return all(a <= b for a, b in itertools.pairwise(items))
    except TypeError as exc:
        raise _fail(f"isSorted(): elements are not comparable: {exc}") from exc


LIBRARY: Final[dict[str, Callable[..., Any]]] = {
    "semver": _semver,
    "isSemver": _is_semver,
    "major": _semver_part(1, "major"),
    "minor": _semver_part(2, "minor"),
    "patch": _semver_part(3, "patch"),
    "compareTo": lambda a, b: _compare(a, b, "compareTo"),
    "isGreaterThan": lambda a, b: _compare(a, b, "isGreaterThan") > 0,
    "isLessThan": lambda a, b: _compare(a, b, "isLessThan") < 0,
    "quantity": _quantity,
    "isQuantity": _is_quantity,
    "sign": lambda q: (lambda f: (f > 0) - (f < 0))(_fraction(q, "sign")),
    "isInteger": lambda q: _fraction(q, "isInteger").denominator == 1,
    "asInteger": _as_integer,
    "asApproximateFloat": lambda q: float(_fraction(q, "asApproximateFloat")),
    "add": lambda q, o: _quantity_value(_fraction(q, "add") + _operand(o, "add")),
    "sub": lambda q, o: _quantity_value(_fraction(q, "sub") - _operand(o, "sub")),
    "find": lambda text, pattern: (_find_all(text, pattern, 1) or [""])[0],
    "findAll": _find_all,
    "isSorted": _is_sorted,
}
"""Kubernetes' semver, quantity, regex (find) and list (isSorted) libraries."""

UNSUPPORTED: Final = frozenset(
    {
        "ip",
        "isIP",
        "cidr",
        "isCIDR",
        "url",
        "isURL",
        "format",
        "strings.format",
        "getScheme",
        "getHost",
        "getHostname",
        "getPort",
        "getEscapedPath",
        "getQuery",
        "family",
        "isUnspecified",
        "isLoopback",
        "isGlobalUnicast",
        "isLinkLocalMulticast",
        "isLinkLocalUnicast",
        "containsIP",
        "containsCIDR",
        "prefixLength",
        "masked",
        "authorizer",
        "serviceAccount",
        "path",
        "group",
        "resource",
        "subresource",
        "namespace",
        "name",
        "check",
        "allowed",
        "reason",
        "errored",
        "error",
        "fieldSelector",
        "labelSelector",
    }
)
"""Kubernetes CEL library functions this evaluator refuses at compile time."""


def _library() -> dict[str, Callable[..., Any]]:
    scratch = cel.Context()
    cel.stdlib.add_stdlib_to_context(scratch)
    return {**scratch.functions, **LIBRARY}


_FUNCTIONS: Final = _library()


# --- rewriting ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # "ident", "string", "space", "punct", "other"
    text: str


_STRING_START: Final = re.compile(r"(?:[rR][bB]?|[bB][rR]?)?(\"\"\"|'''|\"|')")
_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPACE: Final = re.compile(r"\s+")
_NUMBER: Final = re.compile(r"(?:0[xX][0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)[uU]?")


def _tokenize(expression: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(expression):
        if match := _STRING_START.match(expression, pos):
            quote = match.group(1)
            raw = "r" in match.group(0)[: match.start(1) - pos].lower()
            end = match.end()
            while end < len(expression) and not expression.startswith(quote, end):
                if expression[end] == "\\" and not raw:
                    end += 1
                elif expression[end] == "\n" and len(quote) == 1:
                    break
                end += 1
            end = min(end + len(quote), len(expression))
            tokens.append(_Token("string", expression[pos:end]))
            pos = end
        elif match := _IDENT.match(expression, pos):
            tokens.append(_Token("ident", match.group(0)))
            pos = match.end()
        elif match := _SPACE.match(expression, pos):
            tokens.append(_Token("space", match.group(0)))
            pos = match.end()
        elif match := _NUMBER.match(expression, pos):
            tokens.append(_Token("other", match.group(0)))
            pos = match.end()
        else:
            char = expression[pos]
            tokens.append(_Token("punct" if char in ".,()[]{}" else "other", char))
            pos += 1
    return tokens


_OPEN: Final = {"(": ")", "[": "]", "{": "}"}


class _Rewriter:
    """Token-level rewrites of ``cel.bind`` and domain lookups (see module doc)."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens = _tokenize(expression)

    def _next(self, index: int, end: int) -> int:
        """Index of the next non-space token at or after ``index`` (``end`` if none)."""
        while index < end and self.tokens[index].kind == "space":
            index += 1
        return index

    def _prev(self, index: int, start: int) -> int:
        index -= 1
        while index >= start and self.tokens[index].kind == "space":
            index -= 1
        return index

    def _is(self, index: int, end: int, text: str) -> bool:
        return index < end and self.tokens[index].text == text

    def _close(self, index: int, end: int) -> int:
        """Index of the bracket closing the one at ``index``."""
        stack = [_OPEN[self.tokens[index].text]]
        cursor = index + 1
        while cursor < end:
            text = self.tokens[cursor].text
            if self.tokens[cursor].kind == "punct":
                if text in _OPEN:
                    stack.append(_OPEN[text])
                elif text == stack[-1]:
                    stack.pop()
                    if not stack:
                        return cursor
            cursor += 1
        raise SelectorError("unbalanced brackets", field="cel.expression", fix=_FIX_SYNTAX)

    def _split_args(self, start: int, end: int) -> list[tuple[int, int]]:
        args: list[tuple[int, int]] = []
        cursor = begin = start
        while cursor < end:
            token = self.tokens[cursor]
            if token.kind == "punct" and token.text in _OPEN:
                cursor = self._close(cursor, end) + 1
                continue
            if token.kind == "punct" and token.text == ",":
                args.append((begin, cursor))
                begin = cursor + 1
            cursor += 1
        args.append((begin, end))
        return args

    def rewrite(self, start: int = 0, end: int | None = None) -> str:
        end = len(self.tokens) if end is None else end
        out: list[str] = []
        index = start
        while index < end:
            token = self.tokens[index]
            before = self._prev(index, start)
            rooted = token.kind == "ident" and not self._is(before, end, ".")
            if rooted and token.text == "cel":
                dot = self._next(index + 1, end)
                bind = self._next(dot + 1, end)
                paren = self._next(bind + 1, end)
                if (
                    self._is(dot, end, ".")
                    and self._is(bind, end, "bind")
                    and self._is(paren, end, "(")
                ):
                    close = self._close(paren, end)
                    out.append(self._bind(paren + 1, close))
                    index = close + 1
                    continue
            if rooted and token.text == "device":
                replaced = self._domain_lookup(index, start, end)
                if replaced is not None:
                    text, index = replaced
                    out.append(text)
                    continue
            out.append(token.text)
            index += 1
        return "".join(out)

    def _bind(self, start: int, end: int) -> str:
        args = self._split_args(start, end)
        name = "".join(t.text for t in self.tokens[args[0][0] : args[0][1]]).strip()
        if len(args) != 3 or not _IDENT.fullmatch(name):
            raise SelectorError(
                "cel.bind needs three arguments: a variable name, a value and an expression",
                field="cel.expression",
                fix="write cel.bind(name, value, expression), e.g. cel.bind(d, "
                'device.attributes["dra.net"], d.numaNode == 0)',
            )
        value = self.rewrite(*args[1]).strip()
        body = self.rewrite(*args[2]).strip()
        return f"[{value}].map({name}, {body})[0]"

    def _domain_lookup(self, index: int, start: int, end: int) -> tuple[str, int] | None:
        dot = self._next(index + 1, end)
        field = self._next(dot + 1, end)
        if not (
            self._is(dot, end, ".")
            and field < end
            and self.tokens[field].text in ("attributes", "capacity")
        ):
            return None
        base = f"device.{self.tokens[field].text}"
        after = self._next(field + 1, end)
        if self._is(after, end, "["):
            close = self._close(after, end)
            key = self.rewrite(after + 1, close).strip()
            return f"(({key}) in {base} ? {base}[{key}] : {{}})", close + 1
        select = self._next(after + 1, end)
        if self._is(after, end, ".") and select < end and self.tokens[select].kind == "ident":
            # has(device.attributes.x) tests presence of the domain itself: keep it.
            opener = self._prev(index, start)
            has = self._prev(opener, start)
            closer = self._next(select + 1, end)
            if (
                self._is(opener, end, "(")
                and has >= start
                and self.tokens[has].text == "has"
                and self._is(closer, end, ")")
            ):
                return None
            domain = self.tokens[select].text
            return f'("{domain}" in {base} ? {base}.{domain} : {{}})', select + 1
        return None


def rewrite_expression(expression: str) -> str:
    """The expression as the ``cel`` package evaluates it (see the module doc)."""
    return _Rewriter(expression).rewrite()


# --- device input -------------------------------------------------------------------


def _split_name(name: str, driver: str) -> tuple[str, str]:
    domain, sep, ident = name.partition("/")
    return (domain, ident) if sep else (driver, name)


def _attribute_value(device_name: str, name: str, attribute: Mapping[str, Any]) -> Any:
    for kind in ("int", "bool", "string"):
        if kind in attribute:
            return attribute[kind]
    if "version" in attribute:
        parsed = _parse_semver(str(attribute["version"]))
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
        parsed = _parse_quantity(str(raw))
        if parsed is None:
            raise SelectorError(
                f"device {name}: capacity {qualified} is {raw!r}, not a quantity",
                field=f"capacity[{qualified}].value",
                fix="publish a Kubernetes quantity such as 1Gi",
            )
        capacity.setdefault(domain, {})[ident] = _quantity_value(parsed)
    return {"device": {"driver": driver, "attributes": attributes, "capacity": capacity}}


class DeviceInput:
    """One device's CEL context, built once and reused for every selector."""

    __slots__ = ("_context", "device", "driver", "name")

    def __init__(self, device: Mapping[str, Any], *, driver: str) -> None:
        self.device = device
        self.driver = driver
        self.name = str(device.get("name", ""))
        self._context: cel.Context | None = None

    @property
    def context(self) -> cel.Context:
        """The ``cel.Context`` (variables + library), built on first use."""
        if self._context is None:
            self._context = cel.Context(
                variables=device_variables(self.device, driver=self.driver),
                functions=_FUNCTIONS,
            )
        return self._context


# --- compile and evaluate -----------------------------------------------------------


def _runtime_problem(exc: BaseException) -> tuple[str, str]:
    """(message, fix) for an exception raised while evaluating."""
    library_message = getattr(_state, "message", None)
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


@dataclass(frozen=True, eq=False)
class CompiledSelector:
    """A compiled device selector; evaluate with :meth:`matches` or :meth:`evaluate`."""

    expression: str
    rewritten: str
    program: cel.Program

    def evaluate(self, device: DeviceInput) -> bool:
        """Evaluate against a prepared device; raises SelectorError on any error."""
        _state.message = None
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
                f"{type(result).__name__} {result!r}",
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
            f"CEL syntax error: {exc}", field="cel.expression", fix=_FIX_SYNTAX
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
    return CompiledSelector(expression=expression, rewritten=rewritten, program=program)
