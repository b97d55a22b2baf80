"""A safe, vectorised evaluator for expression rules (``intrusion_alarm and intrusion_armed``).

The expression is parsed with :mod:`ast` and compiled into a tree of numpy closures; nothing is ever
passed to ``eval``. Allowed: numbers, ``True``/``False``, tag names of the rule's template, quoted enum
labels compared with an enum tag (``mode == "override"``), ``and or not``, comparisons (chained too),
``+ - * /``, unary minus, and the bitwise ``& |`` on integers (``short_alarm_status & 128``)::

    "intrusion_alarm and intrusion_armed"
        BoolOp(And) ─► logical_and(truth(col["intrusion_alarm"]), truth(col["intrusion_armed"]))

Each name becomes one column: an array with the value of that tag for every alarm of the rule (one alarm
per equipment), so one call evaluates the rule for every equipment in the batch. Division by zero and NaN
never raise: they make the comparison false.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
Columns = Mapping[str, F64]
Node = Callable[[Columns], F64]


class ExpressionError(ValueError):
    """The expression uses something outside the safe subset (the message says what)."""


_CMP: dict[type[ast.cmpop], Callable[[F64, F64], npt.NDArray[np.bool_]]] = {
    ast.Eq: np.equal, ast.NotEq: np.not_equal, ast.Lt: np.less, ast.LtE: np.less_equal,
    ast.Gt: np.greater, ast.GtE: np.greater_equal,
}
_ARITH: dict[type[ast.operator], Callable[[F64, F64], F64]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}


def _truth(a: F64) -> npt.NDArray[np.bool_]:
    return np.asarray((a != 0) & ~np.isnan(a))


def _as_f(a: npt.NDArray[np.bool_] | npt.NDArray[np.int64] | F64) -> F64:
    return np.asarray(a, dtype=np.float64)


def _int(a: F64) -> npt.NDArray[np.int64]:
    return np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0).astype(np.int64)


class Expression:
    """A compiled expression: ``names`` it reads, and ``__call__(columns) -> bool array``."""

    def __init__(self, text: str, enums: Mapping[str, Mapping[int, str] | None] | None = None,
                 allowed: set[str] | None = None) -> None:
        self.text = text
        self._enums = dict(enums or {})
        self._allowed = allowed
        self.names: list[str] = []
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(f"not a valid expression ({exc.msg}): {text!r}") from None
        self._root = self._compile(tree.body)

    def __call__(self, columns: Columns) -> npt.NDArray[np.bool_]:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return _truth(self._root(columns))

    # ------------------------------------------------------------------ compiler
    def _compile(self, node: ast.expr) -> Node:
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool) or isinstance(v, (int, float)):
                c = float(v)
                return lambda cols: np.asarray(c, dtype=np.float64)
            raise ExpressionError(f"only numbers and True/False may appear as constants, got {v!r} in {self.text!r}"
                                  " (a quoted enum label must be compared with an enum tag)")
        if isinstance(node, ast.Name):
            name = node.id
            if self._allowed is not None and name not in self._allowed:
                raise ExpressionError(f"unknown tag {name!r} in {self.text!r}")
            if name not in self.names:
                self.names.append(name)
            return lambda cols: cols[name]
        if isinstance(node, ast.BoolOp):
            parts = [self._compile(v) for v in node.values]
            if isinstance(node.op, ast.And):
                def and_(cols: Columns) -> F64:
                    out = _truth(parts[0](cols))
                    for p in parts[1:]:
                        out = out & _truth(p(cols))
                    return _as_f(out)
                return and_

            def or_(cols: Columns) -> F64:
                out = _truth(parts[0](cols))
                for p in parts[1:]:
                    out = out | _truth(p(cols))
                return _as_f(out)
            return or_
        if isinstance(node, ast.UnaryOp):
            inner = self._compile(node.operand)
            if isinstance(node.op, ast.Not):
                return lambda cols: _as_f(~_truth(inner(cols)))
            if isinstance(node.op, ast.USub):
                return lambda cols: -inner(cols)
            if isinstance(node.op, ast.UAdd):
                return inner
        if isinstance(node, ast.BinOp):
            left, right = self._compile(node.left), self._compile(node.right)
            if isinstance(node.op, ast.BitAnd):
                return lambda cols: _as_f(_int(left(cols)) & _int(right(cols)))
            if isinstance(node.op, ast.BitOr):
                return lambda cols: _as_f(_int(left(cols)) | _int(right(cols)))
            op = _ARITH.get(type(node.op))
            if op is not None:
                return lambda cols: op(left(cols), right(cols))
        if isinstance(node, ast.Compare):
            return self._compare(node)
        raise ExpressionError(f"only comparisons, and/or/not, + - * / & | and tag names are allowed, "
                              f"got {type(node).__name__} in {self.text!r}")

    def _compare(self, node: ast.Compare) -> Node:
        operands = [node.left, *node.comparators]
        compiled: list[Node] = []
        for i, operand in enumerate(operands):
            if isinstance(operand, ast.Constant) and isinstance(operand.value, str):
                compiled.append(self._label(operand.value, operands, i))
            else:
                compiled.append(self._compile(operand))
        ops = []
        for op in node.ops:
            fn = _CMP.get(type(op))
            if fn is None:
                raise ExpressionError(f"comparison {type(op).__name__} is not allowed in {self.text!r}")
            ops.append(fn)

        def compare(cols: Columns) -> F64:
            vals = [c(cols) for c in compiled]
            out = ops[0](vals[0], vals[1])  # Python's grammar: a comparison has at least one operator
            for k in range(1, len(ops)):
                out = out & ops[k](vals[k], vals[k + 1])
            return _as_f(out)
        return compare

    def _label(self, label: str, operands: list[ast.expr], i: int) -> Node:
        """A quoted enum label: resolved through the enum map of the tag it is compared with."""
        neighbours = [operands[j] for j in (i - 1, i + 1) if 0 <= j < len(operands)]
        for nb in neighbours:
            if isinstance(nb, ast.Name) and self._enums.get(nb.id):
                mapping = self._enums[nb.id] or {}
                for code, text in mapping.items():
                    if text == label:
                        c = float(code)
                        return lambda cols: np.asarray(c, dtype=np.float64)
                raise ExpressionError(f"{label!r} is not a label of {nb.id} ({', '.join(mapping.values())}) "
                                      f"in {self.text!r}")
        raise ExpressionError(f"the string {label!r} must be compared with an enum tag in {self.text!r}")
