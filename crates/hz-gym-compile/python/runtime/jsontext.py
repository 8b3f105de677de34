"""JSON text exactly as the Rust runtime (serde_json) writes and reads it.

Python's `json` module differs from serde_json in a few places that show up in observations:
floats (`1e+16` vs `1e16`), very large integers, and NaN literals. Everything that turns a
value into text goes through this module so every face of a gym prints the same bytes.
"""

import json
import math

I64_MIN, I64_MAX, U64_MAX = -(2**63), 2**63 - 1, 2**64 - 1

# Rust's `char::is_whitespace` (Unicode White_Space), used by `str::trim`.
RUST_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def rust_trim(s):
    """`str::trim`: strip Unicode White_Space (Python's `strip` also strips \\x1c-\\x1f)."""
    start, end = 0, len(s)
    while start < end and s[start] in RUST_WHITESPACE:
        start += 1
    while end > start and s[end - 1] in RUST_WHITESPACE:
        end -= 1
    return s[start:end]


def rust_split_whitespace(s):
    """`str::split_whitespace`."""
    words, cur = [], []
    for ch in s:
        if ch in RUST_WHITESPACE:
            if cur:
                words.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if cur:
        words.append("".join(cur))
    return words


def rust_lines(s):
    """`str::lines`: split on \\n, drop one trailing \\r per line, no final empty line."""
    if not s:
        return []
    parts = s.split("\n")
    if parts[-1] == "":
        parts.pop()
    return [p[:-1] if p.endswith("\r") else p for p in parts]


def _shortest_digits(f):
    """Shortest round-trip digits and exponent: f == int(digits) * 10**exp."""
    r = repr(abs(f))
    mantissa, _, exp = r.partition("e")
    exp = int(exp) if exp else 0
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    exp -= len(frac)
    if not digits:
        return "0", 0
    stripped = digits.rstrip("0")
    exp += len(digits) - len(stripped)
    return stripped, exp


def float_json(f):
    """A finite float as serde_json (ryu) writes it: `1.0`, `0.001`, `1e16`, `1.5e-7`."""
    if f == 0:
        return "-0.0" if math.copysign(1.0, f) < 0 else "0.0"
    sign = "-" if f < 0 else ""
    digits, k = _shortest_digits(f)
    n = len(digits)
    kk = n + k
    if 0 <= k and kk <= 16:
        return sign + digits + "0" * k + ".0"
    if 0 < kk <= 16:
        return sign + digits[:kk] + "." + digits[kk:]
    if -5 < kk <= 0:
        return sign + "0." + "0" * (-kk) + digits
    if n == 1:
        return sign + digits + "e" + str(kk - 1)
    return sign + digits[0] + "." + digits[1:] + "e" + str(kk - 1)


def float_display(f):
    """A float as Rust's `Display` writes it: never an exponent, `64` for 64.0."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "-inf" if f < 0 else "inf"
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sign = "-" if f < 0 else ""
    digits, k = _shortest_digits(f)
    if k >= 0:
        return sign + digits + "0" * k
    point = len(digits) + k
    if point > 0:
        return sign + digits[:point] + "." + digits[point:]
    return sign + "0." + "0" * (-point) + digits


def float_debug(f):
    """A float as Rust's `Debug` writes it (exponent outside [1e-4, 1e16))."""
    if math.isnan(f) or math.isinf(f):
        return float_display(f)
    a = abs(f)
    if a != 0 and (a < 1e-4 or a >= 1e16):
        sign = "-" if f < 0 else ""
        digits, k = _shortest_digits(f)
        e = len(digits) - 1 + k
        m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{m}e{e}"
    s = float_display(f)
    return s if "." in s else s + ".0"


def _escape(s):
    return json.dumps(s, ensure_ascii=False)


def dumps(v):
    """Compact JSON text, byte-identical to `serde_json::to_string` (insertion order kept)."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return float_json(v) if math.isfinite(v) else "null"
    if isinstance(v, str):
        return _escape(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(dumps(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(_escape(str(k)) + ":" + dumps(x) for k, x in v.items()) + "}"
    raise TypeError(f"not a JSON value: {type(v).__name__}")


def _parse_int(text):
    n = int(text)
    # serde_json reads integers outside i64/u64 as f64.
    return n if I64_MIN <= n <= U64_MAX else float(n)


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def _has_lone_surrogate(v):
    if isinstance(v, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in v)
    if isinstance(v, list):
        return any(_has_lone_surrogate(x) for x in v)
    if isinstance(v, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(x) for k, x in v.items())
    return False


def loads(text):
    """Parse JSON text as serde_json does; raises ValueError where serde_json fails."""
    v = json.loads(text, parse_int=_parse_int, parse_constant=_no_constant)
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError("number out of range")
    if _has_lone_surrogate(v):
        raise ValueError("lone surrogate")
    return v


def as_text(v):
    """A value as text: strings as they are, null as empty, everything else as compact JSON."""
    if isinstance(v, str):
        return v
    if v is None:
        return ""
    return dumps(v)


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v):
    return (isinstance(v, (int, float))) and not isinstance(v, bool)


def rust_debug(s):
    """A string as Rust's `{:?}` writes it."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\0":
            out.append("\\0")
        elif o < 0x20 or o == 0x7F or 0x80 <= o < 0xA0:
            out.append("\\u{%x}" % o)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
