"""Source rewrites that give the ``cel`` package Kubernetes' DRA semantics.

Token-level, before compiling (see :mod:`sriov_dra.cel_selectors` for why):

- ``device.attributes[D]`` and ``device.capacity[D]`` (also the
  ``device.attributes.D`` select form) become ``(D in device.attributes ?
  device.attributes[D] : {})``, so a missing domain reads as an empty map while
  ``in``, ``has()`` and ``size()`` still see only the real domains
  (``has(device.attributes.D)`` is kept: it tests the domain itself);
- ``cel.bind(name, value, body)`` becomes ``[value].map(name, body)[0]``.

Strings (also raw and triple-quoted) are never rewritten; nor is a ``device``
that is not the root of its expression (``foo.device``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from sriov_dra.errors import SelectorError

FIX_SYNTAX: Final = "correct the CEL expression (see the caret in the message)"


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
        raise SelectorError("unbalanced brackets", field="cel.expression", fix=FIX_SYNTAX)

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


def _plain_string(token: _Token) -> str | None:
    """The value of a quoted string token without prefix, escapes or triple quotes."""
    text = token.text
    if (
        token.kind != "string"
        or len(text) < 2
        or text[0] not in "'\""
        or text[-1] != text[0]
        or text.startswith(text[0] * 3)
        or "\\" in text
    ):
        return None
    return text[1:-1]


def attribute_reads(expression: str) -> tuple[tuple[str, str], ...] | None:
    """The ``(domain, name)`` attributes ``expression`` reads, or None when unsure.

    Known only when the variable ``device`` appears solely as ``device.driver`` or
    ``device.attributes["<domain>"].<name>`` (or ``["<name>"]``) with plain string
    literals: the result is then a function of the driver and those attributes'
    values, so devices that agree on them get the same result. Any other use (the
    whole map, ``capacity``, a macro binding a variable named ``device``) is None.
    """
    tokens = [t for t in _tokenize(expression) if t.kind != "space"]
    reads: list[tuple[str, str]] = []
    for i, token in enumerate(tokens):
        if token.kind != "ident" or token.text != "device":
            continue
        if i > 0 and tokens[i - 1].text == ".":
            continue  # a field of something else, not the variable
        rest = [t.text for t in tokens[i + 1 : i + 9]] + [""] * 8
        if i > 0 and tokens[i - 1].text in ("(", ",") and rest[0] == ",":
            return None  # a macro binding its own ``device``
        if rest[0] == "." and rest[1] == "driver":
            continue
        if rest[:3] != [".", "attributes", "["] or rest[4] != "]":
            return None
        domain = _plain_string(tokens[i + 4])
        if domain is None:
            return None
        if (
            rest[5] == "."
            and i + 7 < len(tokens)
            and tokens[i + 7].kind == "ident"
            and rest[7] != "("
        ):
            reads.append((domain, rest[6]))
        elif rest[5] == "[" and rest[7] == "]" and (name := _plain_string(tokens[i + 7])):
            reads.append((domain, name))
        else:
            return None
    return tuple(sorted(set(reads)))
