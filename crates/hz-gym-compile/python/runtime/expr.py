"""CEL expressions and Jinja templates, with the semantics of the Rust runtime.

CEL is parsed and evaluated by `cel-python` (celpy). The Rust runtime uses the
`cel-interpreter` crate, whose operators are more lenient than the CEL spec; the
overrides below make celpy behave the same way:

- `==`, `!=`, `in`: values of different numeric types compare by value, other mixed
  types are simply unequal (celpy raises "no such overload");
- `||`, `&&`, `!`, `? :` use truthiness (empty string/list/map, 0 and null are false);
- `m[k]` with a missing key or index gives null instead of an error;
- `string(64.0)` is `"64"` (Rust's float formatting).

Templates use Jinja2 configured like minijinja: missing names render empty, dictionary
keys win over Python attributes (`x.items` is the key `items`), floats print as Rust
prints them, and the `trim` and `join` filters follow minijinja.
"""

import math
import re

import celpy
import jinja2
from celpy import celtypes

from .jsontext import float_debug, float_display, rust_debug as _rust_debug_str, rust_trim, I64_MIN, I64_MAX


class ExprError(Exception):
    """An expression or template failed; the message is shown in the error of the step."""


# ----------------------------------------------------------------------------- JSON <-> CEL


def to_cel(v):
    """JSON → CEL. Integers become `int` (so `task.n == 3` holds), others `double`."""
    if v is None:
        return None
    if isinstance(v, bool):
        return celtypes.BoolType(v)
    if isinstance(v, int):
        if I64_MIN <= v <= I64_MAX:
            return celtypes.IntType(v)
        return celtypes.DoubleType(float(v))
    if isinstance(v, float):
        return celtypes.DoubleType(v)
    if isinstance(v, str):
        return celtypes.StringType(v)
    if isinstance(v, list):
        return celtypes.ListType([to_cel(x) for x in v])
    if isinstance(v, dict):
        return celtypes.MapType({celtypes.StringType(k): to_cel(x) for k, x in v.items()})
    raise ExprError(f"cannot give {type(v).__name__} to CEL")


def from_cel(v):
    """CEL → JSON, with map keys sorted so output never depends on hash order."""
    if v is None or isinstance(v, celtypes.NullType):
        return None
    if isinstance(v, celtypes.BoolType):
        return bool(v)
    if isinstance(v, (celtypes.IntType, celtypes.UintType)):
        return int(v)
    if isinstance(v, celtypes.DoubleType):
        f = float(v)
        if not math.isfinite(f):
            raise ExprError("expression gave a non-finite number")
        return f
    if isinstance(v, celtypes.StringType):
        return str(v)
    if isinstance(v, celtypes.BytesType):
        return bytes(v).decode("utf-8", "replace")
    if isinstance(v, (list, celtypes.ListType)):
        return [from_cel(x) for x in v]
    if isinstance(v, (dict, celtypes.MapType)):
        entries = []
        for k, x in v.items():
            if isinstance(k, celtypes.BoolType):
                key = "true" if k else "false"
            else:
                key = str(k)
            entries.append((key, from_cel(x)))
        entries.sort(key=lambda e: e[0])
        return dict(entries)
    raise ExprError(f"expression gave an unsupported value ({type(v).__name__})")


def type_name(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    return "map"


# ----------------------------------------------------------------------------- CEL functions


def _err(message):
    return celpy.CELEvalError(message, TypeError, None)


def _is_err(v):
    return isinstance(v, celpy.CELEvalError)


def _truthy(v):
    """cel-interpreter's `to_bool`."""
    if v is None or isinstance(v, celtypes.NullType):
        return False
    if isinstance(v, celtypes.BoolType):
        return bool(v)
    if isinstance(v, (int, float)):
        return v != 0
    if isinstance(v, (str, bytes, list, dict)):
        return len(v) > 0
    return False


def _num(v):
    if isinstance(v, celtypes.BoolType):
        return None
    if isinstance(v, (celtypes.IntType, celtypes.UintType)):
        return float(v)
    if isinstance(v, celtypes.DoubleType) and math.isfinite(v):
        return float(v)
    return None


def _kind(v):
    if v is None or isinstance(v, celtypes.NullType):
        return "null"
    if isinstance(v, celtypes.BoolType):
        return "bool"
    if isinstance(v, celtypes.IntType):
        return "int"
    if isinstance(v, celtypes.UintType):
        return "uint"
    if isinstance(v, celtypes.DoubleType):
        return "double"
    if isinstance(v, celtypes.StringType):
        return "string"
    if isinstance(v, celtypes.BytesType):
        return "bytes"
    if isinstance(v, (list, celtypes.ListType)):
        return "list"
    if isinstance(v, (dict, celtypes.MapType)):
        return "map"
    return "other"


def rust_eq(a, b):
    """cel-interpreter's `PartialEq`: numbers compare across types, other mixes are unequal."""
    ka, kb = _kind(a), _kind(b)
    numeric = ("int", "uint", "double")
    if ka in numeric and kb in numeric:
        if ka == kb or "double" in (ka, kb):
            return float(a) == float(b) if "double" in (ka, kb) else int(a) == int(b)
        return int(a) == int(b)
    if ka != kb:
        return False
    if ka == "null":
        return True
    if ka == "list":
        return len(a) == len(b) and all(rust_eq(x, y) for x, y in zip(a, b))
    if ka == "map":
        if len(a) != len(b):
            return False
        for k, x in a.items():
            if k not in b or not rust_eq(x, b[k]):
                return False
        return True
    return a == b


def _eq(a, b):
    if _is_err(a):
        return a
    if _is_err(b):
        return b
    return celtypes.BoolType(rust_eq(a, b))


def _ne(a, b):
    r = _eq(a, b)
    return r if _is_err(r) else celtypes.BoolType(not r)


def _map_key(v):
    """A CEL value as a map key, or None when it cannot be one."""
    if _kind(v) in ("string", "int", "uint", "bool"):
        return v
    return None


def _in(item, container):
    if _is_err(item):
        return item
    if _is_err(container):
        return container
    ki, kc = _kind(item), _kind(container)
    if ki == "string" and kc == "string":
        return celtypes.BoolType(str(item) in str(container))
    if kc == "list":
        return celtypes.BoolType(any(rust_eq(item, x) for x in container))
    if kc == "map":
        key = _map_key(item)
        if key is None:
            return celtypes.BoolType(False)
        return celtypes.BoolType(any(_kind(k) == ki and k == key for k in container))
    return _err(f"{ki} and {kc} are not comparable")


def _index(container, index):
    if _is_err(container):
        return container
    if _is_err(index):
        return index
    kc, ki = _kind(container), _kind(index)
    if kc == "list" and ki == "int":
        i = int(index)
        return container[i] if 0 <= i < len(container) else None
    if kc == "string" and ki == "int":
        # Rust slices bytes: a non-character boundary or out of range gives null.
        data = str(container).encode("utf-8")
        i = int(index)
        if i < 0 or i + 1 > len(data):
            return None
        try:
            return celtypes.StringType(data[i : i + 1].decode("utf-8"))
        except UnicodeDecodeError:
            return None
    if kc == "map" and ki in ("string", "bool", "int", "uint"):
        for k, x in container.items():
            if _kind(k) == ki and k == index:
                return x
        return None
    return _err(f"unsupported index {ki} on {kc}")


def _or(a, b):
    if _is_err(a):
        return a
    return a if _truthy(a) else b


def _and(a, b):
    if _is_err(a):
        return a
    if not _truthy(a):
        return celtypes.BoolType(False)
    if _is_err(b):
        return b
    return celtypes.BoolType(_truthy(b))


def _not(a):
    return a if _is_err(a) else celtypes.BoolType(not _truthy(a))


def _cond(c, a, b):
    if _is_err(c):
        return c
    return a if _truthy(c) else b


def _string(v):
    k = _kind(v)
    if k == "string":
        return v
    if k in ("int", "uint"):
        return celtypes.StringType(str(int(v)))
    if k == "double":
        return celtypes.StringType(float_display(float(v)))
    if k == "bytes":
        return celtypes.StringType(bytes(v).decode("utf-8", "replace"))
    return _err(f"cannot convert {k} to string")


def _need_string(name, s):
    if _kind(s) != "string":
        return _err(f"{name} expects a string")
    return None


def _lower(s):
    return _need_string("lower", s) or celtypes.StringType(str(s).lower())


def _upper(s):
    return _need_string("upper", s) or celtypes.StringType(str(s).upper())


def _trim(s):
    return _need_string("trim", s) or celtypes.StringType(rust_trim(str(s)))


_RUST_FLOAT = re.compile(
    r"[+-]?(?:inf|infinity|nan|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\Z", re.IGNORECASE
)


def parse_number(s):
    """Lenient number parsing for answers: `"1,234.5"`, `"$12"`, `"45%"`, `" 3 "`."""
    cleaned = "".join(c for c in rust_trim(s) if c not in ",$% ")
    if not _RUST_FLOAT.match(cleaned):
        return math.nan
    return float(cleaned)


def _to_number(v):
    k = _kind(v)
    if k in ("int", "uint", "double"):
        return celtypes.DoubleType(float(v))
    if k == "string":
        return celtypes.DoubleType(parse_number(str(v)))
    return celtypes.DoubleType(math.nan)


def _approx(a, b, tol):
    a, b, t = _num(a), _num(b), _num(tol)
    if a is None or b is None or t is None:
        return celtypes.BoolType(False)
    return celtypes.BoolType(abs(a - b) <= abs(t))


FUNCTIONS = {
    "_==_": _eq,
    "_!=_": _ne,
    "_in_": _in,
    "_[_]": _index,
    "_||_": _or,
    "_&&_": _and,
    "!_": _not,
    "_?_:_": _cond,
    "string": _string,
    "lower": _lower,
    "upper": _upper,
    "trim": _trim,
    "to_number": _to_number,
    "approx": _approx,
}

_CEL_ENV = celpy.Environment()


class Expr:
    """A compiled CEL expression with its source (kept for messages)."""

    def __init__(self, source):
        self.source = source
        try:
            self._program = _CEL_ENV.program(_CEL_ENV.compile(source), functions=FUNCTIONS)
        except Exception as e:  # celpy raises several error types on bad syntax
            raise ExprError(f"CEL syntax error: {e}") from e

    def eval(self, scope):
        activation = {k: to_cel(v) for k, v in scope.items()}
        try:
            out = self._program.evaluate(activation)
        except Exception as e:
            raise ExprError(f"CEL error in `{self.source}`: {e}") from e
        if _is_err(out):
            raise ExprError(f"CEL error in `{self.source}`: {out}")
        return from_cel(out)

    def eval_bool(self, scope):
        v = self.eval(scope)
        if not isinstance(v, bool):
            raise ExprError(f"`{self.source}` must give a bool, gave {type_name(v)}")
        return v

    def eval_number(self, scope):
        v = self.eval(scope)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ExprError(f"`{self.source}` must give a number, gave {type_name(v)}")
        f = float(v)
        if not math.isfinite(f):
            raise ExprError(f"`{self.source}` gave a non-finite number")
        return f


# ----------------------------------------------------------------------------- templates


def _debug(v):
    """minijinja's Debug form of a value (used inside printed lists and maps)."""
    if isinstance(v, jinja2.Undefined):
        return "undefined"
    if v is None:
        return "None"
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return float_debug(v)
    if isinstance(v, str):
        return _rust_debug_str(v)
    return display(v)


def display(v):
    """How minijinja prints a value: `{{ x }}`, `join`, `~`."""
    if isinstance(v, jinja2.Undefined):
        return ""
    if v is None:
        return "None"
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "-inf" if v < 0 else "inf"
        s = float_display(v)
        return s if "." in s else s + ".0"
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_debug(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_debug(k)}: {_debug(x)}" for k, x in v.items()) + "}"
    return str(v)


def _finalize(v):
    if isinstance(v, jinja2.Undefined):
        return ""
    return display(v)


def _filter_trim(value, chars=None):
    s = "" if isinstance(value, jinja2.Undefined) else display(value)
    if chars is None:
        return rust_trim(s)
    return s.strip(chars)


def _filter_join(value, joiner=""):
    if isinstance(value, jinja2.Undefined):
        return ""
    if isinstance(value, str):
        value = list(value)
    return joiner.join(display(x) for x in value)


class MiniJinjaEnvironment(jinja2.Environment):
    """Jinja2 with minijinja's lookup rule: a mapping's keys, never Python attributes."""

    def getattr(self, obj, attribute):
        if isinstance(obj, dict):
            if attribute in obj:
                return obj[attribute]
            return self.undefined(obj=obj, name=attribute)
        if isinstance(obj, (list, str, int, float, bool)) or obj is None:
            return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj, argument):
        if isinstance(obj, dict):
            if isinstance(argument, str) and argument in obj:
                return obj[argument]
            return self.undefined(obj=obj, name=argument)
        if isinstance(obj, (list, str)) and isinstance(argument, int) and not isinstance(argument, bool):
            if -len(obj) <= argument < len(obj):
                return obj[argument]
            return self.undefined(obj=obj, name=argument)
        return super().getitem(obj, argument)


class Templates:
    """Every template of one gym, compiled once, keyed `node-id/field`."""

    def __init__(self):
        self.env = MiniJinjaEnvironment(
            undefined=jinja2.Undefined,
            autoescape=False,
            keep_trailing_newline=False,
            finalize=_finalize,
        )
        self.env.filters["trim"] = _filter_trim
        self.env.filters["join"] = _filter_join
        self._compiled = {}

    def add(self, key, source):
        try:
            self._compiled[key] = self.env.from_string(source)
        except jinja2.TemplateSyntaxError as e:
            raise ExprError(f"Jinja syntax error: {e.message} (line {e.lineno})") from e

    def has(self, key):
        return key in self._compiled

    def render(self, key, scope):
        try:
            return self._compiled[key].render(scope)
        except KeyError:
            raise ExprError(f"template not found: {key}")
        except Exception as e:
            raise ExprError(f"template error: {e}") from e
