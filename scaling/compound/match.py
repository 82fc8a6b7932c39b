"""MAC matching: the multiplier that makes the *realised*, rounded model cost a target.

Tan & Le (2019, eq. 3) constrain FLOPs: scaling by ``(alpha**phi, beta**phi, gamma**phi)`` with
``alpha * beta**2 * gamma**2 = 2`` should multiply the MACs by ``2**phi``. At small widths the
rounding of channels (``make_divisible``), repeats (``ceil``) and pixels moves the realised ratio
far from it (a 2x candidate of a 2.85M-MAC net realised 3.7x). Everything here measures the
realised spec with :func:`scaling.cost.complexity`, and every result carries the exact knob that
built it (no rounding after the search: a rounded width can cross a channel-rounding jump).

- :func:`fit_knob`: bisection of any monotone knob ``make(x) -> spec`` to a MAC target;
- :func:`fit_width`, :func:`fit_depth`, :func:`fit_resolution`: one dimension of :func:`scale`,
  the others fixed (width falls back to finer channel divisors when divisor 8 cannot land
  within ``tol``: at 8-16 channels one divisor step is 50-100% of a layer);
- :func:`fit_compound`: compound scaling whose width is refitted so the MACs land on
  ``ratio`` x the base (depth and resolution as the rule gives them);
- :func:`matched_candidates`: the grid of step 1 kept only where the realised ratio is within
  ``mac_tol`` of ``target**phi`` (refitting the width where it is not).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

from scaling.compound.rule import coefficients, scale
from scaling.cost import complexity
from scaling.ir import NetworkSpec
from scaling.ir.base import is_number
from scaling.ir.rounding import round_resolution

DIVISORS = (8, 4, 2, 1)


def macs_of(spec: NetworkSpec) -> int:
    """Analytic conv + linear multiply-accumulates of ``spec``."""
    return int(complexity(spec).macs)


@dataclasses.dataclass(frozen=True)
class Fit:
    """A spec fitted to ``target`` MACs: ``knob`` built it exactly; ``macs`` is realised."""

    spec: NetworkSpec
    knob: float
    macs: int
    target: float
    divisor: int = 8
    rounding: str = "each"  #: the channel rounding of :func:`scale` that built it

    @property
    def ratio(self) -> float:
        """Realised MACs / target (1.0 is a perfect fit)."""
        return self.macs / self.target

    def within(self, tol: float) -> bool:
        """Whether the realised MACs lie within ``+-tol`` (relative) of the target."""
        return abs(self.ratio - 1.0) <= tol + 1e-12


def _check_target(target: float, tol: float | None) -> None:
    if not is_number(target) or not target > 0:
        raise ValueError(f"target={target!r} is not allowed; expected a MAC count > 0")
    if tol is not None and (not is_number(tol) or not 0 <= tol < 1):
        raise ValueError(f"tol={tol!r} is not allowed; expected a fraction in [0, 1)")


def _short(x: float, make: Callable[[float], NetworkSpec], spec: NetworkSpec
           ) -> tuple[float, NetworkSpec]:
    """The shortest decimal of ``x`` that builds the same layout as ``spec`` (= ``make(x)``),
    and the spec it builds."""
    ref = spec.replace(name="").to_dict()
    for digits in range(3, 10):
        y = float(f"{x:.{digits}g}")
        try:
            short = make(y)
        except ValueError:
            continue
        if short.replace(name="").to_dict() == ref:
            return y, short
    return x, spec


def fit_knob(make: Callable[[float], NetworkSpec], target: float, lo: float, hi: float,
             iters: int = 40) -> tuple[float, NetworkSpec, int]:
    """``(x, make(x), MACs)`` for the ``x`` in ``[lo, hi]`` whose realised MACs are closest to
    ``target`` (in log ratio), for a knob along which MACs do not decrease.

    Bisection on a log scale finds the jump of the step function that straddles the target; the
    better side is kept and ``x`` is shortened only where the spec stays the same.
    """
    _check_target(target, None)
    if not 0 < lo < hi:
        raise ValueError(f"knob range [{lo!r}, {hi!r}] is not allowed; expected 0 < lo < hi")
    if macs_of(make(lo)) > target:
        hi = lo
    elif macs_of(make(hi)) <= target:
        lo = hi
    else:
        for _ in range(iters):
            mid = math.sqrt(lo * hi)
            if macs_of(make(mid)) <= target:
                lo = mid
            else:
                hi = mid
    sides = [(x, spec, macs_of(spec)) for x in sorted({lo, hi}) for spec in [make(x)]]
    x, spec, macs = min(sides, key=lambda side: abs(math.log(side[2] / target)))
    x, spec = _short(x, make, spec)
    return x, spec, macs


def fit_width(base: NetworkSpec, target: float, *, depth: float = 1.0, resolution: float = 1.0,
              image_size: int | None = None, tol: float | None = 0.05,
              divisors: Sequence[int] = DIVISORS, lo: float = 0.02, hi: float = 8.0,
              diffuse: bool = False, name: str | None = None) -> Fit:
    """``base`` scaled by ``(depth, w, resolution)`` with the width ``w`` fitted to ``target``.

    Tries the channel ``divisors`` in order, then (``diffuse``) the finest with error-diffused
    channel rounding (``scale(..., channel_rounding='diffuse')``: a net whose layers all have 8
    channels otherwise jumps 27% at once), and returns the first fit within ``tol`` (all of them
    when ``tol`` is None: the closest); raises ValueError when none lands within ``tol``.
    """
    _check_target(target, tol)
    fits = []
    tries = [(div, "each") for div in divisors] + [(min(divisors), "diffuse")] * diffuse
    for div, rounding in tries:
        def make(w: float, div: int = div, rounding: str = rounding) -> NetworkSpec:
            return scale(base, depth=depth, width=w, resolution=resolution,
                         image_size=image_size, divisor=div, channel_rounding=rounding,
                         name=name)

        try:
            w, spec, macs = fit_knob(make, target, lo, hi)
        except ValueError:  # this divisor breaks a channel constraint (e.g. depthwise in = out)
            continue
        fit = Fit(spec, w, macs, float(target), div, rounding)
        if tol is not None and fit.within(tol):
            return fit
        fits.append(fit)
    if not fits:
        raise ValueError(f"no channel divisor of {list(divisors)} gives a valid width scaling of "
                         f"{base.name or 'the spec'}")
    best = min(fits, key=lambda f: abs(math.log(f.ratio)))
    if tol is None:
        return best
    raise ValueError(f"no width multiplier of {base.name or 'the spec'} lands within "
                     f"+-{100 * tol:g}% of {target / 1e6:.4g}M MACs (depth x{depth:g}, resolution "
                     f"x{resolution:g}, divisors {list(divisors)}"
                     f"{', then diffused rounding' if diffuse else ''}); "
                     f"closest: x{best.knob:g} divisor {best.divisor} ({best.rounding} rounding) "
                     f"at {best.macs / 1e6:.4g}M MACs")


def fit_depth(base: NetworkSpec, target: float, *, tol: float | None = 0.05,
              max_factor: float = 64.0, name: str | None = None) -> Fit:
    """``base`` deepened only, one block at a time, to the MACs closest to ``target``.

    ``ceil(repeats * d)`` adds a block to every stage at once just above ``d = 1`` (a 7-stage
    net of one block per stage jumps to 2x), too coarse to match MACs; here each step adds one
    block to the stage that has grown least (``repeats / base repeats``; ties: the cheapest
    block), so stages grow in proportion, as under a depth multiplier. ``Fit.knob`` is the
    realised depth factor (blocks / base blocks); ValueError when outside ``tol``."""
    _check_target(target, tol)
    base_reps = [s.repeats for s in base.stages]
    reps = list(base_reps)

    def make(r: list[int]) -> NetworkSpec:
        stages = tuple(s.replace(repeats=n) for s, n in zip(base.stages, r))
        return base.replace(stages=stages, name=base.name if name is None else name)

    spec = make(reps)
    best = Fit(spec, 1.0, macs_of(spec), float(target))
    macs = best.macs
    while macs < target and sum(reps) < max_factor * sum(base_reps):
        growth = [n / b for n, b in zip(reps, base_reps)]
        low = min(growth)
        options = []
        for i, g in enumerate(growth):
            if g == low:
                trial = reps[:i] + [reps[i] + 1] + reps[i + 1:]
                spec = make(trial)
                options.append((macs_of(spec), i, trial, spec))
        macs, _, reps, spec = min(options, key=lambda o: o[:2])
        fit = Fit(spec, sum(reps) / sum(base_reps), macs, float(target))
        if abs(math.log(fit.ratio)) <= abs(math.log(best.ratio)):
            best = fit
    return _checked(best, tol, "depth", base)


def fit_resolution(base: NetworkSpec, target: float, *, tol: float | None = 0.05,
                   name: str | None = None) -> Fit:
    """``base`` at the integer input resolution whose MACs are closest to ``target``."""
    _check_target(target, tol)
    r0 = base.resolution
    guess = max(1, round(r0 * math.sqrt(target / macs_of(base))))
    best = None
    for size in range(max(1, guess - 8), guess + 9):
        try:
            spec = scale(base, image_size=size, name=name)
        except ValueError:
            continue
        fit = Fit(spec, size / r0, macs_of(spec), float(target))
        if best is None or abs(math.log(fit.ratio)) < abs(math.log(best.ratio)):
            best = fit
    if best is None:
        raise ValueError(f"no resolution near {guess} px is valid for {base.name or 'the spec'}")
    return _checked(best, tol, "resolution", base)


def _checked(fit: Fit, tol: float | None, what: str, base: NetworkSpec) -> Fit:
    if tol is None or fit.within(tol):
        return fit
    raise ValueError(f"no {what} multiplier of {base.name or 'the spec'} lands within "
                     f"+-{100 * tol:g}% of {fit.target / 1e6:.4g}M MACs; closest: x{fit.knob:g} at "
                     f"{fit.macs / 1e6:.4g}M MACs ({fit.ratio:.3f}x the target)")


def fit_compound(base: NetworkSpec, phi: float, alpha: float, beta: float, gamma: float, *,
                 ratio: float | None = None, tol: float | None = 0.05, divisor: int = 8,
                 name: str | None = None) -> Fit:
    """Compound scaling at ``phi`` with the MACs held to ``ratio`` x the base (default
    ``(alpha * beta**2 * gamma**2)**phi``): depth ``alpha**phi`` and resolution ``gamma**phi`` as
    the rule gives them, the width refitted around ``beta**phi`` to land on the target; where
    no width lands within ``tol`` (all channels of a narrow net jump together), the resolution
    moves by 1, 2, 3, then 4 pixels, and then error-diffused channel rounding is tried at
    those sizes (a channel node tied to 8-multiples, e.g. a depthwise stage that keeps its
    stem's width, can jump 8 -> 16 and double the MACs of every layer after it).
    ``tol=None``: the closest fit of all those tries.
    ``Fit.knob`` is the width used. ``divisor``: the channel divisor ``base`` was built with
    (only it and finer ones are tried: a coarser one would round its channels up at width 1)."""
    d, _, r = coefficients(phi, alpha, beta, gamma)
    ratio = (alpha * beta ** 2 * gamma ** 2) ** phi if ratio is None else ratio
    target = ratio * macs_of(base)
    size = round_resolution(base.resolution * r)
    steps = (0, 1, -1, 2, -2, 3, -3, 4, -4)  # a narrow net's width jumps: let pixels help
    fits, errors = [], []
    for diffuse in (False, True):
        for step in steps:
            try:
                fit = fit_width(base, target, depth=d, image_size=size + step, tol=tol,
                                name=name, divisors=finer(divisor), diffuse=diffuse)
            except ValueError as exc:
                errors.append(exc)
                continue
            if tol is not None:
                return fit
            fits.append(fit)
    if fits:
        return min(fits, key=lambda f: abs(math.log(f.ratio)))  # stable: the earliest try
    raise errors[0]


def finer(divisor: int) -> tuple[int, ...]:
    """The divisors of :data:`DIVISORS` that divide ``divisor`` (it and the finer ones)."""
    out = tuple(d for d in DIVISORS if divisor % d == 0)
    if not out:
        raise ValueError(f"divisor={divisor!r} is not allowed; expected one of {DIVISORS}")
    return out


def matched_candidates(base: NetworkSpec, grid_points: Sequence[tuple[float, float, float]],
                       phi: float = 1.0, target: float = 2.0, mac_tol: float = 0.10,
                       refit: bool = True, divisor: int = 8) -> list[dict[str, object]]:
    """The grid points whose scaled model realises ``target**phi`` x the base's MACs within
    ``+-mac_tol``: as the rule scales them, or (``refit``) with the width refitted; the rest are
    dropped; ``divisor``: the channel divisor ``base`` was built with. Rows: alpha, beta,
    gamma, product, d, w (the width used), r, macs, mac_ratio
    (realised / base), refit (whether the width was refitted), spec."""
    from scaling.compound.rule import compound

    m0 = macs_of(base)
    goal = target ** phi
    rows = []
    for a, b, g in grid_points:
        spec = compound(base, phi, a, b, g, divisor=divisor)
        macs, w, refitted, div = macs_of(spec), b ** phi, False, divisor
        if abs(macs / m0 / goal - 1) > mac_tol:
            if not refit:
                continue
            fit = None
            for tol in (mac_tol / 2, mac_tol):  # the closer fit first
                try:
                    fit = fit_compound(base, phi, a, b, g, ratio=goal, tol=tol, divisor=divisor)
                    break
                except ValueError:
                    continue
            if fit is None:
                continue
            spec, macs, w, refitted, div = fit.spec, fit.macs, fit.knob, True, fit.divisor
        rows.append({"alpha": a, "beta": b, "gamma": g, "product": round(a * b * b * g * g, 6),
                     "d": a ** phi, "w": w, "r": g ** phi, "divisor": div,
                     "resolution": spec.resolution, "macs": macs, "mac_ratio": macs / m0,
                     "refit": refitted, "spec": spec})
    return rows
