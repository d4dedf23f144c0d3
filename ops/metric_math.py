"""The subset of CloudWatch metric math the QIS alarms use: + - * /, parentheses, FILL.

Evaluated one period at a time over the values of the referenced queries at that period:
- a missing operand makes the result missing (CloudWatch drops the timestamp);
- `FILL(m, c)` replaces a missing value of `m` with `c` at every period of the range;
- division by zero gives a missing value, so 0 requests give no 5xx ratio at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import msgspec

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|([A-Za-z_][A-Za-z0-9_]*)|(.))")


class MetricMathError(ValueError):
    """An expression outside the supported subset, or malformed."""


class Number(msgspec.Struct, frozen=True):
    """A numeric literal."""

    value: float


class Ref(msgspec.Struct, frozen=True):
    """The value of another query (`m1`, `e1`) at the same period."""

    id: str


class Fill(msgspec.Struct, frozen=True):
    """`FILL(ref, constant)`."""

    ref: Ref
    constant: float


class Negate(msgspec.Struct, frozen=True):
    """Unary minus."""

    operand: Node


class Binary(msgspec.Struct, frozen=True):
    """`left op right` for op in + - * /."""

    op: str
    left: Node
    right: Node


Node = Number | Ref | Fill | Negate | Binary


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        for number, name, other in _TOKEN.findall(text):
            if number:
                self.tokens.append(("number", number))
            elif name:
                self.tokens.append(("name", name))
            elif other.strip():
                self.tokens.append(("op", other))
        self.position = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (expected is not None and token[1] != expected):
            raise MetricMathError(f"{self.text!r}: expected {expected or 'more input'}")
        self.position += 1
        return token

    def expression(self) -> Node:
        node = self.term()
        while (token := self.peek()) is not None and token[1] in "+-":
            self.take()
            node = Binary(token[1], node, self.term())
        return node

    def term(self) -> Node:
        node = self.factor()
        while (token := self.peek()) is not None and token[1] in "*/":
            self.take()
            node = Binary(token[1], node, self.factor())
        return node

    def factor(self) -> Node:
        kind, text = self.take()
        if kind == "number":
            return Number(float(text))
        if text == "-":
            return Negate(self.factor())
        if text == "(":
            node = self.expression()
            self.take(")")
            return node
        if kind != "name":
            raise MetricMathError(f"{self.text!r}: unexpected {text!r}")
        if self.peek() != ("op", "("):
            return Ref(text)
        if text.upper() != "FILL":
            raise MetricMathError(f"{self.text!r}: function {text} is not supported")
        self.take("(")
        ref_kind, ref = self.take()
        self.take(",")
        sign = 1.0
        if self.peek() == ("op", "-"):
            self.take()
            sign = -1.0
        number_kind, number = self.take()
        self.take(")")
        if ref_kind != "name" or number_kind != "number":
            raise MetricMathError(f"{self.text!r}: FILL takes a query id and a number")
        return Fill(Ref(ref), sign * float(number))


def parse(expression: str) -> Node:
    """Parse `expression` into a tree; MetricMathError when outside the subset."""
    parser = _Parser(expression)
    node = parser.expression()
    if parser.peek() is not None:
        raise MetricMathError(f"{expression!r}: unexpected {parser.peek()}")
    return node


def references(node: Node) -> set[str]:
    """The query ids an expression reads."""
    match node:
        case Number():
            return set()
        case Ref(id=ref):
            return {ref}
        case Fill(ref=Ref(id=ref)):
            return {ref}
        case Negate(operand=operand):
            return references(operand)
        case Binary(left=left, right=right):
            return references(left) | references(right)


def evaluate(node: Node, values: Mapping[str, float | None]) -> float | None:
    """The expression's value at one period, given each referenced query's value there."""
    match node:
        case Number(value=value):
            return value
        case Ref(id=ref):
            return values[ref]
        case Fill(ref=Ref(id=ref), constant=constant):
            found = values[ref]
            return constant if found is None else found
        case Negate(operand=operand):
            inner = evaluate(operand, values)
            return None if inner is None else -inner
        case Binary(op=op, left=left, right=right):
            a, b = evaluate(left, values), evaluate(right, values)
            if a is None or b is None:
                return None
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return a * b
            return None if b == 0 else a / b
