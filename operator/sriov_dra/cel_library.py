"""Kubernetes' CEL library functions the ``cel`` package lacks, and those refused.

Semver (``semver(s[, normalize])``, ``isSemver``, ``major/minor/patch``,
``isGreaterThan/isLessThan/compareTo``), Quantity (``quantity``, ``isQuantity``,
``sign``, ``isInteger``, ``asInteger``, ``asApproximateFloat``, ``add``, ``sub``
and the comparisons), ``find``/``findAll`` and ``isSorted``. Semver and Quantity
values are tagged lists (``[SEMVER_TAG, major, minor, patch, pre]``,
``[QUANTITY_TAG, numerator, denominator]``), so ``==`` works on them and ``<`` is
an error, as in Kubernetes. :data:`UNSUPPORTED` lists the functions of Kubernetes'
environment this evaluator refuses at compile time.

``find``/``findAll`` run on RE2, as Kubernetes' do: linear in the text, so no
pattern in a claim can stall the allocator (Python's backtracking ``re`` took 15 s
for ``(a+)+$`` on 26 characters, and doubled with each more).
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable
from fractions import Fraction
from typing import Any, Final

import re2

from sriov_dra.cel_package import cel

SEMVER_TAG: Final = "@kubernetes.Semver"
QUANTITY_TAG: Final = "@kubernetes.Quantity"

_SEMVER: Final = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?",
    re.ASCII,
)
_QUANTITY: Final = re.compile(
    r"([+-]?)(\d+(?:\.\d*)?|\.\d+)"
    r"(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?",
    re.ASCII,
)
_BINARY: Final = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL: Final = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


class _LibraryError(Exception):
    """Raised inside library functions; the message reaches the SelectorError."""


_state = threading.local()
"""The message of the library error raised last in this thread: the ``cel`` package turns
exceptions from Python functions into its own, and the message would be lost."""


def _fail(message: str) -> _LibraryError:
    _state.message = message
    return _LibraryError(message)


def clear_library_error() -> None:
    """Forget the last library error (before an evaluation)."""
    _state.message = None


def library_error() -> str | None:
    """The message of the library error the last evaluation raised, if any."""
    message: str | None = getattr(_state, "message", None)
    return message


# --- semver -------------------------------------------------------------------------


def _strip_zeros(part: str) -> str:
    """Kubernetes' normalization: drop leading zeros, keep a digit in front."""
    if len(part) > 1:
        part = part.lstrip("0")
        if not part or not part[0].isdigit():
            part = "0" + part
    return part


def parse_semver(text: str, normalize: bool = False) -> list[Any] | None:
    """A semver value for ``text``, None when it is not a semantic version."""
    if normalize:
        text = text.removeprefix("v")
        parts = [_strip_zeros(p) for p in text.split(".", 2)]
        if len(parts) < 3:
            if any(c in parts[-1] for c in "+-"):
                return None
            parts += ["0"] * (3 - len(parts))
        text = ".".join(parts)
    match = _SEMVER.fullmatch(text)
    if not match:
        return None
    major, minor, patch, pre, _build = match.groups()
    return [SEMVER_TAG, int(major), int(minor), int(patch), pre or ""]


def _semver(text: Any, normalize: Any = False) -> list[Any]:
    if not isinstance(text, str):
        raise _fail(f"semver() wants a string, got {type(text).__name__}")
    parsed = parse_semver(text, bool(normalize))
    if parsed is None:
        raise _fail(f"semver({text!r}): not a semantic version (want e.g. 1.2.3)")
    return parsed


def _is_semver(text: Any, normalize: Any = False) -> bool:
    return isinstance(text, str) and parse_semver(text, bool(normalize)) is not None


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


_MAX_EXPONENT: Final = 1000
"""Largest ``e<N>`` exponent read (beyond, 10**N alone takes seconds: ``1e10000000`` 23 s).
Kubernetes clamps quantities to int64 anyway; no device publishes such a value."""
_MAX_DIGITS: Final = 1000
"""Longest number read (Python refuses integers of more than 4300 digits)."""


def parse_quantity(text: str) -> Fraction | None:
    """The exact value of a Kubernetes quantity (``1Gi``, ``500m``), None when not one.

    Also None for exponents beyond :data:`_MAX_EXPONENT` and numbers of more than
    :data:`_MAX_DIGITS` digits, which no device publishes and which would stall the
    evaluator.
    """
    match = _QUANTITY.fullmatch(text)
    if not match:
        return None
    sign, number, suffix = match.groups()
    digits = suffix[1:].lstrip("+-").lstrip("0") if suffix and suffix[0] in "eE" else ""
    if len(number) > _MAX_DIGITS or len(digits) > len(str(_MAX_EXPONENT)):
        return None
    exponent = int(suffix[1:]) if digits else 0
    if abs(exponent) > _MAX_EXPONENT:
        return None
    value = Fraction(number)
    if suffix in _BINARY:
        value *= 2 ** _BINARY[suffix]
    elif suffix in _DECIMAL:
        value *= Fraction(10) ** _DECIMAL[suffix]
    elif exponent:
        value *= Fraction(10) ** exponent
    return -value if sign == "-" else value


def quantity_value(value: Fraction) -> list[Any]:
    """The CEL value of a quantity."""
    return [QUANTITY_TAG, value.numerator, value.denominator]


def _quantity(text: Any) -> list[Any]:
    if not isinstance(text, str):
        raise _fail(f"quantity() wants a string, got {type(text).__name__}")
    parsed = parse_quantity(text)
    if parsed is None:
        raise _fail(f"quantity({text!r}): not a Kubernetes quantity (want e.g. 1Gi, 500m)")
    return quantity_value(parsed)


def _is_quantity(text: Any) -> bool:
    return isinstance(text, str) and parse_quantity(text) is not None


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


_RE2_OPTIONS: Final = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is the claim's error, not a line on stderr


def _find_all(text: Any, pattern: Any, limit: Any = -1) -> list[str]:
    if not isinstance(text, str) or not isinstance(pattern, str):
        raise _fail("findAll() wants a string and a regular expression")
    try:
        compiled = re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else ""
        detail = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        raise _fail(f"findAll(): {pattern!r} is not an RE2 regular expression: {detail}") from exc
    found: list[str] = [str(m.group(0)) for m in compiled.finditer(text)]
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
    "add": lambda q, o: quantity_value(_fraction(q, "add") + _operand(o, "add")),
    "sub": lambda q, o: quantity_value(_fraction(q, "sub") - _operand(o, "sub")),
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


FUNCTIONS: Final = _library()
"""The ``cel`` package's extended library plus :data:`LIBRARY`, for every device context."""
