"""Kubernetes resource quantities (`500m`, `1Gi`, `1e3`): parsing, comparison and canonical form.

Validation needs them to compare requests with limits, and defaulting to store them the way Kubernetes does:
the API server re-serializes every quantity canonically (`1000m` comes back as `"1"`, `1.5Gi` as `1536Mi`), and
rounds resource lists up to milli precision. Exact decimal arithmetic keeps comparisons exact.
"""
from __future__ import annotations

import dataclasses
import re
from decimal import ROUND_CEILING, Decimal, localcontext
from typing import Any

QUANTITY_REGEX = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
PARSE_ERROR = f"quantities must match the regular expression '{QUANTITY_REGEX}'"

_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {exp: s for s, exp in _DECIMAL.items()}
_BINARY_SUFFIX = {bits: s for s, bits in _BINARY.items()}

BINARY_SI = "BinarySI"
DECIMAL_SI = "DecimalSI"
DECIMAL_EXPONENT = "DecimalExponent"


class QuantityError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Quantity:
    value: Decimal
    format: str

    def __str__(self) -> str:
        return canonical(self)

    def __lt__(self, other: "Quantity") -> bool:
        return self.value < other.value


def parse(raw: Any) -> Quantity:
    """Parse a JSON quantity (string or number) as Kubernetes does; raises QuantityError."""
    if isinstance(raw, bool):
        raise QuantityError(PARSE_ERROR)
    if isinstance(raw, int):
        return Quantity(Decimal(raw), DECIMAL_SI)
    if isinstance(raw, float):
        raw = repr(raw)
    if not isinstance(raw, str) or not raw:
        raise QuantityError(PARSE_ERROR)
    m = _NUMBER_RE.match(raw)
    if m is None:
        raise QuantityError(PARSE_ERROR)
    number, suffix = m.group(0), raw[m.end():]
    with localcontext() as ctx:
        ctx.prec = 80
        base = Decimal(number)
        if suffix in _BINARY:
            return Quantity(base * (Decimal(2) ** _BINARY[suffix]), BINARY_SI)
        if suffix in _DECIMAL:
            return Quantity(base.scaleb(_DECIMAL[suffix]), DECIMAL_SI)
        if suffix[:1] in ("e", "E"):
            exp = suffix[1:]
            if re.fullmatch(r"[+-]?[0-9]+", exp):
                return Quantity(base.scaleb(int(exp)), DECIMAL_EXPONENT)
    raise QuantityError(PARSE_ERROR)


def round_up_milli(q: Quantity) -> Quantity:
    """Kubernetes rounds resource-list quantities up to milli precision (SetDefaults_ResourceList)."""
    scaled = q.value.scaleb(3)
    with localcontext() as ctx:
        ctx.prec = 80
        rounded = scaled.to_integral_value(rounding=ROUND_CEILING)
    if rounded == scaled:
        return q
    return Quantity(rounded.scaleb(-3), q.format)


def _decimal_parts(value: Decimal) -> tuple[int, int]:
    """(mantissa, exponent) with the exponent a multiple of 3 and the mantissa as short as possible."""
    sign, digits, exponent = value.normalize().as_tuple()
    mantissa = int("".join(map(str, digits)) or "0")
    if mantissa == 0:
        return 0, 0
    exp = int(exponent)
    while exp % 3 != 0:
        mantissa *= 10
        exp -= 1
    return (-mantissa if sign else mantissa), exp


def canonical(q: Quantity) -> str:
    """The string Kubernetes serializes a quantity as."""
    value, fmt = q.value, q.format
    if fmt == BINARY_SI:
        if -1024 < value < 1024 or value != value.to_integral_value():
            fmt = DECIMAL_SI
        else:
            n = int(value)
            bits = 0
            while bits < 60 and n % 1024 == 0 and n != 0:
                n //= 1024
                bits += 10
            return f"{n}{_BINARY_SUFFIX.get(bits, '')}"
    mantissa, exp = _decimal_parts(value)
    if fmt == DECIMAL_EXPONENT:
        return f"{mantissa}e{exp}" if exp else str(mantissa)
    while exp < -9:
        # Below nano Kubernetes rounds up; resource lists never get here after round_up_milli.
        mantissa = -((-mantissa) // 10)
        exp += 1
        while exp % 3 != 0:
            exp += 1
            mantissa = -((-mantissa) // 10)
    while exp > 18:
        mantissa *= 1000
        exp -= 3
    return f"{mantissa}{_DECIMAL_SUFFIX[exp]}"


def canonicalize(raw: Any, *, round_milli: bool = True) -> Any:
    """The canonical string for a raw quantity, or the raw value unchanged when it does not parse."""
    try:
        q = parse(raw)
    except QuantityError:
        return raw
    return canonical(round_up_milli(q) if round_milli else q)
