"""The zero-cost proxy names a search config chooses from (torch-free, so that the config and
``python -m scaling.search --help`` need no torch; the proxies are in
:mod:`scaling.search.proxies`)."""

from __future__ import annotations

from collections.abc import Iterable

PROXIES = ("synflow", "naswot", "grad_norm", "params")


def check_proxies(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` as a tuple, or a ValueError naming the first unknown proxy."""
    names = tuple(names)
    for n in names:
        if n not in PROXIES:
            raise ValueError(f"proxy={n!r} is not allowed; expected one of {PROXIES}")
    return names


def parse_proxies(text: str) -> tuple[str, ...]:
    """CLI text: 'synflow,params' -> ('synflow', 'params'); 'none' -> ()."""
    if text.strip().lower() == "none":
        return ()
    return check_proxies(s.strip() for s in text.split(",") if s.strip())
