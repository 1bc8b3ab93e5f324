"""The numeric format's constants, defined once (DESIGN.md s3).

Bit-widths are a property of a kernel family, not a global: the bit-packed
CPU kernels (C library, firmware, CFU, NumPy reference, fake-quant) take
{1, 2, 4, 8}; an accelerator family may take others (BitFusion: 2..8 where
its bricks allow).  ``BITS`` is the bit-packed family's set, the default
almost everywhere; ``SPEC_BITS`` is the union over families, which is what a
`KernelSpec` may carry (a target then says which of those it runs).

This module sits at the bottom of the dependency arrows (kernels/), so its
errors are plain ``ValueError``s; callers above may pass their own error
class (harness passes its library error, which the CLI maps to exit 2).
"""

from __future__ import annotations

from typing import Iterable

#: bit-widths of the bit-packed kernel library (C, firmware, CFU, reference, fake-quant)
BITS: tuple[int, ...] = (1, 2, 4, 8)

#: bit-widths per kernel family; a new family adds its entry here
FAMILY_BITS: dict[str, tuple[int, ...]] = {
    "bitpacked": BITS,
    # BitFusion runs every width 1..8 on the bricks of its container (2, 4 or 8 bits)
    "bitfusion": tuple(range(1, 9)),
}

#: every bit-width some family runs: what a kernel spec may name
SPEC_BITS: tuple[int, ...] = tuple(sorted(set().union(*FAMILY_BITS.values())))

#: (qa, qw) pairs of the bit-packed family, qa-major (the order of the HELLO pair mask)
PAIRS: tuple[tuple[int, int], ...] = tuple((a, w) for a in BITS for w in BITS)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def family_bits(family: str) -> tuple[int, ...]:
    """The bit-widths of kernel family `family`."""
    try:
        return FAMILY_BITS[family]
    except KeyError:
        raise ValueError(f"unknown kernel family {family!r}; known: {', '.join(sorted(FAMILY_BITS))}.") from None


def check_bits(name: str, b, allowed: Iterable[int] = BITS, error: type[Exception] = ValueError) -> int:
    """`b` as an int if it is one of `allowed`, else `error` with one sentence naming `name`."""
    allowed = tuple(allowed)
    if isinstance(b, bool) or not isinstance(b, int) or b not in allowed:
        try:
            ok = not isinstance(b, bool) and float(b) == int(b) and int(b) in allowed
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            raise error(f"{name}={b} is not a supported bit-width; use one of {', '.join(map(str, allowed))}.")
    return int(b)


def value_range(b: int, signed: bool = True) -> tuple[int, int]:
    """(lowest, highest) value of a b-bit code.

    b = 1 codes mean -1 / +1 whatever `signed` says; b >= 2 signed codes are
    two's complement, unsigned ones (post-ReLU activations) span [0, 2^b - 1].
    """
    b = check_bits("bit-width", b, SPEC_BITS)
    if b == 1:
        return -1, 1
    if not signed:
        return 0, (1 << b) - 1
    return -(1 << (b - 1)), (1 << (b - 1)) - 1
