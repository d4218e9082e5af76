"""`calculator`: exact arithmetic for a model that is bad at it, evaluated over a whitelisted AST.

Never `eval`: the expression comes from a model that may be relaying a hostile user. Only number
literals, arithmetic operators, a few math functions and constants are understood; everything else is
refused. Integer results are capped so `9**9**9` fails instantly instead of eating the CPU.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from core.tools.base import Tool, ToolContext, ToolError

Number = int | float

# ~1200 decimal digits: far beyond any useful answer, far below anything slow to compute or print.
MAX_INT_BITS = 4096
_MAX_ROUND_DIGITS = 100  # round(x, -10**50) would build 10**(10**50) internally

_CONSTANTS: dict[str, Number] = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _round(x: Number, ndigits: int | None = None) -> Number:
    if ndigits is None:
        return round(x)
    if not isinstance(ndigits, int) or abs(ndigits) > _MAX_ROUND_DIGITS:
        limit = _MAX_ROUND_DIGITS
        raise ToolError(f"round() digits must be an integer between -{limit} and {limit}")
    return round(x, ndigits)


_FUNCTIONS: dict[str, Callable[..., Number]] = {
    "sqrt": math.sqrt,
    "log": math.log,  # log(x) or log(x, base)
    "log10": math.log10,
    "log2": math.log2,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "floor": math.floor,
    "ceil": math.ceil,
    "abs": abs,
    "round": _round,
    "min": min,
    "max": max,
}

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}

_DESCRIPTION = (
    "Evaluate an arithmetic expression exactly. Use it for any non-trivial arithmetic instead of "
    "computing in your head. Supports numbers, + - * / // % ** and parentheses, the functions "
    + ", ".join(_FUNCTIONS)
    + " and the constants "
    + ", ".join(_CONSTANTS)
    + '. Example: "sqrt(2) * (3 + 4) ** 2". No variables, strings or other Python.'
)

_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "expression": {
            "type": "string",
            "description": 'The expression to evaluate, e.g. "(1250 * 1.19) / 12" or "log(1000, 10)".',
            "minLength": 1,
            "maxLength": 500,
        },
    },
    "required": ["expression"],
    "additionalProperties": False,
}


def _unsupported(node: ast.AST) -> ToolError:
    return ToolError(f"unsupported expression: {ast.unparse(node)[:80]}")


def _check_size(value: Any) -> Number:
    # bool is an int subclass and complex sneaks in via (-8) ** (1/3); neither is a calculator answer.
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, complex):
            raise ToolError("the result is not a real number")
        raise ToolError(f"unsupported value of type {type(value).__name__}")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolError("result too large")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("result too large" if math.isinf(value) else "result is not a number")
    return value


def _guard_binary(op: ast.operator, left: Number, right: Number) -> None:
    """Refuse integer operations whose result would blow the size cap, before computing them."""
    if not (isinstance(left, int) and isinstance(right, int)):
        return  # float arithmetic is bounded; overflow surfaces as OverflowError or inf
    if isinstance(op, ast.Mult) and left.bit_length() + right.bit_length() > MAX_INT_BITS + 1:
        raise ToolError("result too large")
    # bit_length(left ** right) is about right * log2(|left|) >= right * (bit_length(left) - 1).
    if (
        isinstance(op, ast.Pow)
        and right > 0
        and abs(left) > 1
        and (right > MAX_INT_BITS or right * (left.bit_length() - 1) > MAX_INT_BITS)
    ):
        raise ToolError("result too large")


def _evaluate(node: ast.AST) -> Number:
    match node:
        case ast.Expression(body=body):
            return _evaluate(body)
        case ast.Constant(value=value) if isinstance(value, int | float) and not isinstance(value, bool):
            return _check_size(value)
        case ast.Name(id=name) if name in _CONSTANTS:
            return _CONSTANTS[name]
        case ast.UnaryOp(op=ast.UAdd(), operand=operand):
            return _evaluate(operand)
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            return -_evaluate(operand)
        case ast.BinOp(left=left_node, op=op, right=right_node) if type(op) in _BINARY:
            left, right = _evaluate(left_node), _evaluate(right_node)
            _guard_binary(op, left, right)
            return _check_size(_BINARY[type(op)](left, right))
        case ast.Call(func=ast.Name(id=name), args=args, keywords=[]) if name in _FUNCTIONS:
            if any(isinstance(arg, ast.Starred) for arg in args):
                raise _unsupported(node)
            values = [_evaluate(arg) for arg in args]
            try:
                return _check_size(_FUNCTIONS[name](*values))
            except TypeError:
                raise ToolError(f"wrong number or type of arguments for {name}()") from None
        case _:
            raise _unsupported(node)


def evaluate(expression: str) -> Number:
    """Evaluate `expression` or raise ToolError saying why not."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ToolError(f"could not parse expression: {expression[:80]!r}") from None
    try:
        return _evaluate(tree)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except OverflowError:
        raise ToolError("result too large") from None
    except ValueError as exc:  # math domain errors: sqrt(-1), log(0), ...
        raise ToolError(f"math error: {exc}") from None
    except RecursionError:
        raise ToolError("expression is nested too deeply") from None


def format_number(value: Number) -> str:
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    # 15 significant digits hides binary noise (0.1 + 0.2 -> 0.3) without losing real precision.
    return format(value, ".15g")


async def _handler(args: dict[str, Any], ctx: ToolContext) -> str:
    return format_number(evaluate(args["expression"]))


def calculator_tool() -> Tool:
    return Tool(
        name="calculator",
        description=_DESCRIPTION,
        input_schema=_SCHEMA,
        handler=_handler,
        timeout_s=5.0,
        read_only=True,
    )
