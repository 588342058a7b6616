"""Numeric summary aggregates: AVG, STDDEV_SAMP, STDDEV_SAMPLE and CORRELATION.

All four keep running sums (not the rows), so each is undoable (ksqlDB's TableUdaf) and merges
for session windows by adding the sums. They follow ksqlDB's arithmetic exactly: INTEGER and
BIGINT sums wrap as Java's do, AVG of an empty group is 0.0, STDDEV of fewer than two rows is
0.0, and CORRELATION divides as doubles (NaN for a constant column). One ksqlDB quirk is kept
on purpose because its tests expect it: `STDDEV_SAMP` returns the sample *variance* (no square
root), while `STDDEV_SAMPLE` returns the deviation. ksqlDB's STDDEV_SAMP also merges integer
sessions with truncated (long-divided) means; here both merge exactly, so that a merged session
equals the session that saw both sides' rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.ksql_server.functions.agg_values import (
    int_bits,
    java_fdiv,
    java_sqrt,
    reject,
    require,
    wrap,
)
from services.ksql_server.functions.aggregates import (
    AggregateFunction,
    AggregateSpec,
    register_aggregate,
)
from services.ksql_server.types import DOUBLE, SqlType

NUMBERS = ("INTEGER", "BIGINT", "DOUBLE")


class _Summed(AggregateFunction):
    """Base of the sum-keeping aggregates: the input's Java overflow width."""

    undoable = True
    complex_state = True  # a STRUCT accumulator (not DELIMITED-able)

    def __init__(self, arg_types: Sequence[SqlType | None], literals: Sequence[Any]) -> None:
        super().__init__(arg_types, literals)
        self.bits = int_bits(require(self.name, arg_types, NUMBERS))

    def _plus(self, a: Any, b: Any) -> Any:
        return wrap(a + b, self.bits) if self.bits else a + b

    @property
    def return_type(self) -> SqlType:
        return DOUBLE


class Avg(_Summed):
    """AVG: accumulator [sum, count]; nulls are not counted."""

    name = "AVG"

    def initial(self) -> Any:
        return [0 if self.bits else 0.0, 0]

    def add(self, acc: Any, args: tuple[Any, ...]) -> Any:
        if args[0] is None:
            return acc
        return [self._plus(acc[0], args[0]), acc[1] + 1]

    def undo(self, acc: Any, args: tuple[Any, ...]) -> Any:
        if args[0] is None:
            return acc
        return [self._plus(acc[0], -args[0]), acc[1] - 1]

    def merge(self, a: Any, b: Any) -> Any:
        return [self._plus(a[0], b[0]), a[1] + b[1]]

    def result(self, acc: Any) -> Any:
        return 0.0 if acc[1] == 0 else java_fdiv(float(acc[0]), float(acc[1]))


class StddevSample(_Summed):
    """STDDEV_SAMPLE: Welford-style accumulator [sum, count, m2]; the deviation."""

    name = "STDDEV_SAMPLE"
    square_root = True  # STDDEV_SAMP (ksqlDB) returns the variance

    def initial(self) -> Any:
        return [0 if self.bits else 0.0, 0, 0.0]

    def _delta(self, acc: Any, value: Any) -> float:
        """ksqlDB's `value * (count + 1) - (sum + value)` with Java's overflow."""
        if not self.bits:
            return float(value * (acc[1] + 1) - (acc[0] + value))
        return float(wrap(value * (acc[1] + 1) - self._plus(acc[0], value), 64))

    def add(self, acc: Any, args: tuple[Any, ...]) -> Any:
        value = args[0]
        if value is None:
            return acc
        count = acc[1] + 1
        m2 = 0.0
        if count > 1:
            delta = self._delta(acc, value)
            m2 = delta * delta / (count * (count - 1))
        return [self._plus(acc[0], value), count, m2 + acc[2]]

    def undo(self, acc: Any, args: tuple[Any, ...]) -> Any:
        value = args[0]
        if value is None:
            return acc
        count = acc[1] - 1
        m2 = 0.0
        if count > 0:
            delta = self._delta(acc, value)
            m2 = delta * delta / (count * (count + 1))
        return [self._plus(acc[0], -value), count, acc[2] - m2]

    def _mean_gap(self, a: Any, b: Any) -> float:
        return a[0] / a[1] - b[0] / b[1]

    def merge(self, a: Any, b: Any) -> Any:
        count = a[1] + b[1]
        m2 = a[2] + b[2]
        if a[1] and b[1]:
            gap = self._mean_gap(a, b)
            m2 += a[1] * b[1] * gap * gap / count
        return [self._plus(a[0], b[0]), count, m2]

    def result(self, acc: Any) -> Any:
        if acc[1] < 2:
            return 0.0
        variance = acc[2] / (acc[1] - 1)
        return java_sqrt(variance) if self.square_root else variance


class StddevSamp(StddevSample):
    name = "STDDEV_SAMP"
    square_root = False


class Correlation(AggregateFunction):
    """CORRELATION(x, y): Pearson's r from [Σx, Σy, Σx², Σy², Σxy, n]; rows with a null skipped."""

    name = "CORRELATION"
    undoable = True
    complex_state = True

    def __init__(self, arg_types: Sequence[SqlType | None], literals: Sequence[Any]) -> None:
        super().__init__(arg_types, literals)
        if len(arg_types) != 2 or any(t is None or t.base not in NUMBERS for t in arg_types):
            raise reject(self.name, arg_types)

    @property
    def return_type(self) -> SqlType:
        return DOUBLE

    def initial(self) -> Any:
        return [0.0, 0.0, 0.0, 0.0, 0.0, 0]

    def _fold(self, acc: Any, args: tuple[Any, ...], sign: int) -> Any:
        if args[0] is None or args[1] is None:
            return acc
        x, y = float(args[0]), float(args[1])
        terms = (x, y, x * x, y * y, x * y)
        return [s + sign * t for s, t in zip(acc[:5], terms, strict=True)] + [acc[5] + sign]

    def add(self, acc: Any, args: tuple[Any, ...]) -> Any:
        return self._fold(acc, args, 1)

    def undo(self, acc: Any, args: tuple[Any, ...]) -> Any:
        return self._fold(acc, args, -1)

    def merge(self, a: Any, b: Any) -> Any:
        return [p + q for p, q in zip(a, b, strict=True)]

    def result(self, acc: Any) -> Any:
        sx, sy, sxx, syy, sxy, n = acc
        numerator = n * sxy - sx * sy
        denominator = java_sqrt((n * sxx - sx * sx) * (n * syy - sy * sy))
        return java_fdiv(numerator, denominator)


for _cls, _n in ((Avg, 1), (StddevSamp, 1), (StddevSample, 1), (Correlation, 2)):
    register_aggregate(AggregateSpec(_cls.name, _cls, _n, _n))
