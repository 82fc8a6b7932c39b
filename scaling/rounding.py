"""Channel, depth and resolution rounding rules (Tan & Le 2019; torchvision; pycls)."""

from __future__ import annotations


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None,
                   round_limit: float = 0.9) -> int:
    """Round ``v`` to the nearest multiple of ``divisor``, never going below ``round_limit * v``.

    ``n = max(min_value or divisor, int(v + divisor / 2) // divisor * divisor)``; if
    ``n < round_limit * v`` then ``n += divisor``. E.g. 16 * 1.2 = 19.2 -> 24. EfficientNetV2 uses
    ``round_limit=0``.
    """
    min_value = divisor if min_value is None else min_value
    n = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if n < round_limit * v:
        n += divisor
    return n
