"""MAC counts as people write them: ``'10M'`` -> 10,000,000 and back (``7.52M``).

Shared by the search's ``--budget`` and the compound matcher's ``--macs``; torch-free.
"""

from __future__ import annotations

import math
import re
from typing import Any

_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_BUDGET_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:e(\d+))?\s*([kmgt]?)\s*(?:macs?)?\s*$",
                        re.IGNORECASE)


def parse_budget(text: Any) -> int:
    """'10M' -> 10_000_000, '1.5G' -> 1_500_000_000, '400000000' -> 400_000_000 (MACs)."""
    if isinstance(text, bool):
        raise ValueError(f"budget={text!r} is not a MAC count")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = _BUDGET_RE.match(str(text))
        if not m:
            raise ValueError(f"budget={text!r} is not a MAC count; expected e.g. 10M, 1.5G or "
                             "400000000")
        value = float(m.group(1)) * 10 ** int(m.group(2) or 0) * _UNITS[m.group(3).lower()]
    if not math.isfinite(value) or value < 1:
        raise ValueError(f"budget={text!r} is not allowed; expected at least 1 MAC")
    return int(round(value))


def format_macs(macs: float) -> str:
    """A short human form: 7.52M, 1.23G, 950K."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(macs) >= scale:
            return f"{macs / scale:.3g}{unit}"
    return f"{macs:.0f}"
