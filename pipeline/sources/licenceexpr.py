"""SPDX license expressions, parsed: `MIT OR Apache-2.0`, `GPL-2.0+ WITH Classpath-exception-2.0`.

A value with an upper-case AND, OR or WITH in it (or an id with `+`, or parentheses around one word)
is an SPDX license expression (SPDX spec, annex "SPDX license expressions": operators are upper case,
ids any case; `+` binds tightest, then WITH, AND, OR; parentheses group). `expression` parses it into
a tree of Leaf (one licence, its `+` and exception) and Op (AND, OR), or gives None for a value that is
not one; a malformed one raises ExpressionError, whose message says where it breaks the grammar (the
registry's and sidecar check's one-line refusal: `expression_error`). This module knows no licence:
what each part allows, and how the parts combine, is licences.py's (`standing`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


class ExpressionError(ValueError):
    """A licence value that reads as an SPDX expression but breaks its grammar (the message says
    where, for the registry's and sidecar check's one-line refusal)."""


@dataclass(frozen=True)
class Leaf:
    """One licence of an expression: its id as written (without `+`), and the exception, if any."""

    name: str
    plus: bool = False
    exception: str = ""


@dataclass(frozen=True)
class Op:
    """AND (every part applies) or OR (the recipient chooses one alternative)."""

    op: str
    parts: tuple[Leaf | Op, ...]


Expr = Leaf | Op

_OPERATORS = ("AND", "OR", "WITH")
# Parentheses nest at most this deep: the parser recurses per level, and a sidecar's `licence:` of
# a million "(" must be refused in one line, not end in a RecursionError.
MAX_NESTING = 32
# A token: a parenthesis, or a run of anything else up to a space or parenthesis.
_TOKEN = re.compile(r"\(|\)|[^\s()]+")
# SPDX: idstring = 1*(ALPHA / DIGIT / "-" / "."); an id, a LicenseRef-x, DocumentRef-x:LicenseRef-y.
_IDSTRING = r"[A-Za-z0-9.\-]+"
_LICENCE_ID = re.compile(rf"(?:DocumentRef-{_IDSTRING}:)?{_IDSTRING}(\+)?", re.IGNORECASE)
_EXCEPTION_ID = re.compile(rf"(?:DocumentRef-{_IDSTRING}:)?{_IDSTRING}", re.IGNORECASE)


def _tokens(licence: str) -> list[str]:
    return _TOKEN.findall(licence)


def _quoted(token: str) -> str:
    """A token for a message: quoted and escaped (a control character stays inert), and cut short
    (a sidecar's field can be a megabyte long)."""
    return repr(token if len(token) <= 40 else token[:40] + "...")


def is_expression(licence: str) -> bool:
    """True when the value is meant as an SPDX expression: an upper-case operator word in it, an
    id with `+` ("GPL-2.0+"), or parentheses around one word or none, balanced or not ("(MIT)",
    "(MIT", "()"). Free text ("research use only", "CC BY 4.0 (attribution)") is not: it reads as
    one name."""
    tokens = _tokens(licence)
    if any(t in _OPERATORS for t in tokens):
        return True
    words = [t for t in tokens if t not in "()"]
    if len(words) > 1:
        return False
    if len(tokens) > len(words):  # parentheses around one word or none
        return True
    if not words:
        return False
    match = _LICENCE_ID.fullmatch(words[0])
    return match is not None and match.group(1) is not None


class _Parser:
    """Recursive descent over the grammar, lowest precedence first:
    or := and ("OR" and)* ; and := term ("AND" term)* ; term := "(" or ")" | id["+"] ["WITH" exception]
    """

    def __init__(self, licence: str) -> None:
        self.tokens = _tokens(licence)
        self.at = 0
        self.depth = 0

    def parse(self) -> Expr:
        if not self.tokens:
            raise ExpressionError("the expression is empty")
        expr = self._or()
        if self.at < len(self.tokens):
            raise ExpressionError(
                f"expected AND, OR or the end after {self._previous()}, found {self._next()}"
            )
        return expr

    def _next(self) -> str:
        return _quoted(self.tokens[self.at]) if self.at < len(self.tokens) else "the end"

    def _previous(self) -> str:
        return _quoted(self.tokens[self.at - 1]) if self.at else "the start"

    def _take(self, token: str) -> bool:
        if self.at < len(self.tokens) and self.tokens[self.at] == token:
            self.at += 1
            return True
        return False

    def _joined(self, op: str, part: Callable[[], Expr]) -> Expr:
        parts = [part()]
        while self._take(op):
            parts.append(part())
        return parts[0] if len(parts) == 1 else Op(op, tuple(parts))

    def _or(self) -> Expr:
        return self._joined("OR", self._and)

    def _and(self) -> Expr:
        return self._joined("AND", self._term)

    def _term(self) -> Expr:
        if self._take("("):
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise ExpressionError(f"parentheses nest deeper than {MAX_NESTING} levels")
            expr = self._or()
            self.depth -= 1
            if not self._take(")"):
                raise ExpressionError(
                    f"'(' is not closed: expected ')' after {self._previous()}, found {self._next()}"
                )
            return expr
        if self.at >= len(self.tokens) or self.tokens[self.at] in (*_OPERATORS, ")"):
            raise ExpressionError(f"expected a licence id after {self._previous()}, found {self._next()}")
        word = self.tokens[self.at]
        match = _LICENCE_ID.fullmatch(word)
        if match is None:
            raise ExpressionError(
                f"{_quoted(word)} is not an SPDX licence id (letters, digits, '-' and '.'; "
                "LicenseRef-... for others)"
            )
        self.at += 1
        leaf = Leaf(name=word.removesuffix("+"), plus=match.group(1) is not None)
        if not self._take("WITH"):
            return leaf
        if self.at >= len(self.tokens) or _EXCEPTION_ID.fullmatch(self.tokens[self.at]) is None:
            raise ExpressionError(f"expected an exception id after 'WITH', found {self._next()}")
        if self.tokens[self.at] in _OPERATORS:
            raise ExpressionError(f"expected an exception id after 'WITH', found {self._next()}")
        self.at += 1
        return Leaf(leaf.name, leaf.plus, self.tokens[self.at - 1])


@functools.lru_cache(maxsize=256)
def expression(licence: str) -> Expr | None:
    """The parsed SPDX expression, or None when the value is not one (then it reads as one name, as
    it always has). Raises ExpressionError when it is meant as one and breaks the grammar."""
    name = licence.strip()
    if not is_expression(name):
        return None
    return _Parser(name).parse()


def expression_error(licence: str) -> str | None:
    """Why the value, meant as an SPDX expression, is not a valid one (None when it is, or is not
    an expression at all): the registry and the sidecar check refuse it with this reason."""
    try:
        expression(licence)
    except ExpressionError as error:
        return str(error)
    return None


def operator_case_hint(licence: str) -> str:
    """A hint for a value that would be an SPDX expression with its operators in upper case (`MIT
    and CC-BY-4.0` reads as one unlisted name, per the spec's case rule): "" when there is none."""
    tokens = _tokens(licence)
    if not any(t in ("and", "or", "with", "And", "Or", "With") for t in tokens):
        return ""
    upper = " ".join(t.upper() if t.upper() in _OPERATORS else t for t in tokens)
    if expression_error(upper) is not None:
        return ""
    return f" (SPDX operators are upper case: `{upper}` is read part by part, as an expression)"


def _leaves(expr: Expr) -> list[Leaf]:
    """The licences of an expression, left to right (licences.py reads each)."""
    return [expr] if isinstance(expr, Leaf) else [leaf for part in expr.parts for leaf in _leaves(part)]
