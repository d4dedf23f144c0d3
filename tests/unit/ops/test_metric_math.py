"""The metric math subset: + - * /, parentheses, FILL."""

from __future__ import annotations

import pytest

from alarms.definitions import FIVE_XX_RATIO_EXPRESSION
from ops.metric_math import MetricMathError, evaluate, parse, references


def test_precedence_and_parentheses() -> None:
    assert evaluate(parse("1 + 2 * 3"), {}) == 7
    assert evaluate(parse("(1 + 2) * 3"), {}) == 9
    assert evaluate(parse("-m1 / 4"), {"m1": 2.0}) == -0.5


def test_missing_operand_makes_a_missing_result_and_fill_replaces_it() -> None:
    assert evaluate(parse("m1 + m2"), {"m1": 1.0, "m2": None}) is None
    assert evaluate(parse("m1 + FILL(m2, 0)"), {"m1": 1.0, "m2": None}) == 1.0
    assert evaluate(parse("FILL(m2, -1)"), {"m2": None}) == -1.0


def test_the_5xx_ratio() -> None:
    tree = parse(FIVE_XX_RATIO_EXPRESSION)
    assert references(tree) == {"m2xx", "m4xx", "m5xx"}
    assert evaluate(tree, {"m2xx": 990.0, "m4xx": None, "m5xx": 10.0}) == 1.0
    assert evaluate(tree, {"m2xx": 1000.0, "m4xx": None, "m5xx": None}) == 0.0
    # No response at all: 0 / 0 gives no datapoint, not an error and not 0 %.
    assert evaluate(tree, {"m2xx": None, "m4xx": None, "m5xx": None}) is None


@pytest.mark.parametrize("text", ["RATE(m1)", "m1 +", "FILL(m1)", "m1 ) + 1", "m1 % 2"])
def test_outside_the_subset_fails_loudly(text: str) -> None:
    with pytest.raises(MetricMathError):
        parse(text)
