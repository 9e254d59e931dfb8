"""Anytime-valid comparison of the new version against stable: a mixture e-process on event splits.

Pure, deterministic and typed: no I/O, no clock, no randomness. Providers call `advance` once
per analysis tick; `bench/detection.py` calls the same array functions on thousands of
simulated streams at once.

The test (after Lindon, Sanden & Shirikian, "Rapid Regression Detection in Software
Deployments through Sequential Testing", KDD 2022, arXiv 2205.14762, section on count data):

- In interval t the stable version served `n_s` requests and the new one `n_c`; `x_s` and
  `x_c` of them were *events* (5xx answers, or answers slower than a latency bound).
- Model events as Poisson given the requests, with rates `r_s` and `r_c` per request. Given
  the interval's total `x = x_s + x_c`, the canary's share of the events is then binomial:
  `x_c ~ Bin(x, p_t(δ))` with `p_t(δ) = n_c·δ / (n_c·δ + n_s)` and `δ = r_c / r_s`.
  Conditioning on each interval's request counts removes the load, so the total traffic may
  vary freely over time and the split may change at every step (the "shared intensity"
  assumption is only that both versions see the same per-request rate within an interval).
- H0 (no regression beyond the tolerance): `δ ≤ δ0 = 1 + tolerance`.
- The likelihood ratio of δ against δ0 over intervals 1..t, with `x = x_s + x_c`, is

      LR_t(δ) = Π_t (δ/δ0)^{x_c} · ((n_c·δ0 + n_s) / (n_c·δ + n_s))^{x}

  For δ > δ0 it is increasing in `x_c`, so under any δ' ≤ δ0 each factor has expectation at
  most 1 (monotone likelihood ratio), and LR_t(δ) is a non-negative supermartingale.
- Mixing over alternatives δ = δ0·m with a fixed prior (here: equal weights on a geometric grid
  `ALTERNATIVES` of m from 1.1 to 50) keeps that property:
  `E_t = Σ_k w_k LR_t(δ0·m_k)` is an e-process. By Ville's inequality
  `P_H0(sup_t E_t ≥ 1/α) ≤ α`, so rejecting the first time `E_t ≥ 1/α` keeps the
  false-rollback probability under α however often, and whenever, the engine looks.
  (A grid stands in for the paper's conjugate prior because `p_t` changes every interval.)
- With binomial rather than Poisson events, the conditional split is hypergeometric, which is
  less spread than the binomial for equal rates, so the test stays valid (conservative).

When stable serves no requests (the post-promotion watch at 100%, blue/green after the switch, a
quiet interval) the split carries no information. Such an interval is compared instead with
stable's rate recorded before, the *baseline*: stable's events and requests over every interval
in which it served requests, carried in the test's state. With `r0` an upper confidence bound
on stable's rate from the baseline (level `alpha / 10`, `rate_upper_bound`), the interval's
factor is the Poisson likelihood ratio of the new version's rate `δ·r0` against `δ0·r0`,

      LR(δ) = (δ/δ0)^{x_c} · exp(-n_c · r0 · (δ - δ0)),

whose expectation is `exp(n_c (δ - δ0)(r_c/δ0 - r0)) ≤ 1` whenever `r_c ≤ δ0·r0` (and smaller
still for binomial events). The product over intervals, of either kind, stays a non-negative
supermartingale under H0, so the guarantee holds with one more assumption, stated wherever the
detail shows it: **stable's error rate (or latency) now is what it was while it served
traffic** (no drift of the traffic mix or of shared dependencies since); and with probability
`alpha / 10` the bound on the recorded rate is too low, so the false-rollback probability of an
analysis that used the baseline is at most `1.1 · alpha`. The bound is taken at each interval;
once stable has stopped serving (the watch) the baseline no longer changes, so one bound
applies to the whole watch.

Latency (after Lindon & Malek, "Anytime-Valid Inference for Multinomial Count Data",
NeurIPS 2022, arXiv 2011.03567): a histogram gives, per version, multinomial counts over
buckets. For every bucket bound `le_j`, "slower than `le_j`" is an event as above, and
H0_j says the new version's share of such requests is at most `1 + tolerance` times
stable's. The e-value of the latency comparison is the average over bounds of their
e-processes, `E_t = (1/J) Σ_j E_t^j`, an e-process for the intersection of the H0_j: the
new version's latency distribution is not stochastically worse than stable's by more than the
tolerance anywhere. Conditioning each bound on its event total removes the unknown stable
distribution, as the multinomial mixture does; averaging over bounds is one-sided, so a
faster canary never rolls back.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike

ALTERNATIVES: FloatArray = np.geomspace(1.1, 50.0, 20)
"""Alternatives as multiples of δ0 = 1 + tolerance; the mixture weighs them equally."""

_LOG_ALTERNATIVES: FloatArray = np.log(ALTERNATIVES)


def split_log_lr(
    canary_events: ArrayLike,
    stable_events: ArrayLike,
    canary_requests: ArrayLike,
    stable_requests: ArrayLike,
    tolerance: float,
) -> FloatArray:
    """Log likelihood ratio of one interval for each alternative: shape `broadcast + (len(ALTERNATIVES),)`.

    An interval where either version served no requests carries no information about the
    ratio and contributes 0 (so does an interval without events).
    """
    delta0 = 1.0 + tolerance
    delta = delta0 * ALTERNATIVES
    x_c = np.asarray(canary_events, dtype=np.float64)[..., None]
    x_s = np.asarray(stable_events, dtype=np.float64)[..., None]
    if np.isscalar(canary_requests) and np.isscalar(stable_requests):
        # One interval's requests (the providers' tick): the same formula, fewer array operations.
        n_c, n_s = float(canary_requests), float(stable_requests)  # type: ignore[arg-type]
        if not (n_c > 0 and n_s > 0):
            return np.zeros(np.broadcast_shapes(x_c.shape, x_s.shape)[:-1] + ALTERNATIVES.shape)
        log_ratio = np.log(n_c * delta + n_s) - math.log(n_c * delta0 + n_s)
        scalar: FloatArray = x_c * _LOG_ALTERNATIVES - (x_c + x_s) * log_ratio
        return scalar
    n_ca = np.asarray(canary_requests, dtype=np.float64)[..., None]
    n_sa = np.asarray(stable_requests, dtype=np.float64)[..., None]
    informative = (n_ca > 0) & (n_sa > 0)
    n_ca = np.where(informative, n_ca, 1.0)
    n_sa = np.where(informative, n_sa, 1.0)
    llr = x_c * _LOG_ALTERNATIVES - (x_c + x_s) * (np.log(n_ca * delta + n_sa) - np.log(n_ca * delta0 + n_sa))
    out: FloatArray = np.where(informative, llr, 0.0)
    return out


def baseline_log_lr(
    canary_events: ArrayLike, canary_requests: float, stable_rate: ArrayLike, tolerance: float
) -> FloatArray:
    """Log likelihood ratio of one interval without stable traffic, against stable's recorded rate.

    `stable_rate` (per event kind) is an upper bound on stable's rate from the baseline; shape
    `(kinds, len(ALTERNATIVES))`. An interval where the new version served nothing contributes 0.
    """
    x_c = np.asarray(canary_events, dtype=np.float64)[..., None]
    r0 = np.asarray(stable_rate, dtype=np.float64)[..., None]
    if not canary_requests > 0:
        return np.zeros(x_c.shape[:-1] + ALTERNATIVES.shape)
    delta0 = 1.0 + tolerance
    out: FloatArray = x_c * _LOG_ALTERNATIVES - canary_requests * r0 * delta0 * (ALTERNATIVES - 1.0)
    return out


def rate_upper_bound(events: float, requests: float, level: float) -> float:
    """An upper confidence bound, at error `level`, on a rate from `events` in `requests`.

    The Poisson score bound with one more event (conservative: at 0 events and level 0.001 it
    gives 9.6 where the exact bound is 6.9), divided by the requests; never above 1.
    """
    z = NormalDist().inv_cdf(1.0 - level)
    x = events + 1.0
    upper = x + z * z / 2.0 + z * math.sqrt(x + z * z / 4.0)
    return min(1.0, upper / requests)


SPREAD_LEVEL = 0.2
"""Error level of the upper confidence bound on the clustering (`dispersion`)."""
MAX_CLUSTER = 20.0
"""The largest clustering assumed before stable's intervals show it (and the factor's cap)."""
_Z_SPREAD = NormalDist().inv_cdf(SPREAD_LEVEL)


def dispersion(
    intervals: ArrayLike, events: ArrayLike, requests: ArrayLike, squares: ArrayLike
) -> FloatArray:
    """An upper bound on how clustered stable's events are: the factor evidence is divided by.

    From per-kind running sums over stable's intervals: their number `T`, `Σx`, `Σn` and
    `Σx²/n`. The Pearson statistic of the intervals' counts under one common rate `r̂ = Σx/Σn`
    with binomial variance, over its `T - 1` degrees of freedom, estimates
    `φ = (Σx²/n - r̂·Σx) / (r̂ (1 - r̂) (T - 1))`: about 1 for independent requests, about the
    cluster size when errors come in clusters (a failing request retried k times: k + 1). The
    factor is its upper confidence bound at level `SPREAD_LEVEL` (`φ·df / χ²_level(df)`, with
    the Wilson-Hilferty quantile, which errs high), never below 1: large while stable has
    served only a few intervals, close to the estimate after a few minutes. It is capped at
    `MAX_CLUSTER`, which is also the factor before stable has served two intervals (nothing is
    known yet): clusters larger than that are assumed away. Without stable events, 1.
    """
    t = np.asarray(intervals, dtype=np.float64)
    x = np.asarray(events, dtype=np.float64)
    n = np.asarray(requests, dtype=np.float64)
    q = np.asarray(squares, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = np.where(n > 0, x / np.where(n > 0, n, 1.0), 0.0)
        df = np.maximum(t - 1.0, 1.0)
        phi = np.maximum((q - r * x) / (r * (1.0 - r) * df), 0.0)
        w = 2.0 / (9.0 * df)
        quantile = df * np.maximum(1.0 - w + _Z_SPREAD * np.sqrt(w), 1e-3) ** 3
        upper = np.maximum(phi * df / quantile, 1.0)
    known = (r > 0) & (r < 1)
    out: FloatArray = np.where(t < 2, MAX_CLUSTER, np.where(known, np.minimum(upper, MAX_CLUSTER), 1.0))
    return out


def log_e_value(log_lr: FloatArray) -> FloatArray:
    """log of the mixture e-value from accumulated log LRs (last axis: alternatives)."""
    return _log_mean_exp(log_lr)


def log_e_value_of_bounds(log_lr: FloatArray) -> FloatArray:
    """log e-value averaged over bounds (axis -2) of per-bound mixtures (axis -1)."""
    return _log_mean_exp(_log_mean_exp(log_lr))


def _log_mean_exp(a: FloatArray) -> FloatArray:
    top = a.max(axis=-1)
    out: FloatArray = top + np.log(np.exp(a - top[..., None]).sum(axis=-1) / a.shape[-1])
    return out


# --- one comparison, tick by tick (what the providers use) ----------------------------------


@dataclass(frozen=True)
class Totals:
    """Counts since the new version's first weight > 0, per version.

    `*_events[j]` are the events of kind j: one kind (5xx) for errors, one per bucket bound
    ("slower than le_j") for latency.
    """

    canary_requests: float
    stable_requests: float
    canary_events: tuple[float, ...]
    stable_events: tuple[float, ...]


@dataclass(frozen=True)
class Evidence:
    """The test's state after a tick: totals seen, accumulated log LRs, the e-value, the decision."""

    totals: Totals
    log_lr: tuple[tuple[float, ...], ...]
    """Per event kind, per alternative: the sum of `split_log_lr` over the intervals so far."""
    log_e: float
    rejected: bool
    reset: bool = False
    """True if a counter went backwards this tick (a restart): the new totals were counted as new."""
    log_e_kinds: tuple[float, ...] = ()
    """Per event kind, the log e-value of its mixture (empty when not computed)."""
    baseline_requests: float = 0.0
    baseline_events: tuple[float, ...] = ()
    """Stable's requests and events (per kind) over every interval in which it served requests."""
    against_baseline: bool = False
    """True if this tick's interval had no stable requests and was compared with the baseline."""
    spread: tuple[tuple[float, float, float, float], ...] = ()
    """Per event kind, stable's interval statistics for `dispersion`: intervals, Σx, Σn, Σx²/n."""
    dispersion: tuple[float, ...] = ()
    """Per event kind, the clustering this tick's interval was corrected for (1: none)."""

    @property
    def e_value(self) -> float:
        """The e-value, capped at 1e300 for display."""
        return math.exp(min(self.log_e, 690.0))


def advance(
    previous: Evidence | None, totals: Totals, *, tolerance: float, alpha: float, clustering: bool = False
) -> Evidence:
    """Fold the interval between `previous.totals` and `totals` into the test.

    The increments are the differences of the totals. If any total went backwards (a counter
    reset, a restarted server) the new totals are taken as the interval's increments, which
    counts what happened since the restart. Events are clipped to the interval's requests.
    Once the e-value has crossed `1/alpha` the test stays rejected (Ville's inequality holds
    for the supremum over time, so a later dip does not undo the evidence). With `clustering`
    each interval's evidence is divided by `dispersion` of stable's intervals so far (their
    statistics are carried either way).
    """
    kinds = len(totals.canary_events)
    if len(totals.stable_events) != kinds or kinds == 0:
        raise ValueError("canary and stable need the same, non-zero number of event kinds")
    before = previous.totals if previous is not None else None
    usable = before is not None and len(before.canary_events) == kinds
    now = _flat(totals)
    if before is not None and usable:
        then = _flat(before)
        reset = any(n < t for n, t in zip(now, then, strict=True))
        base = [0.0] * len(now) if reset else then
    elif before is not None:
        # The event kinds changed (a histogram's bounds did): the evidence starts over from
        # now, with nothing counted this tick; a rejection already reached stays.
        base, reset = now, False
    else:
        base, reset = [0.0] * len(now), False
    inc = [n - b for n, b in zip(now, base, strict=True)]
    if min(inc) < 0:  # a negative count in the input; never a negative interval
        inc = [max(0.0, v) for v in inc]
    n_c, n_s = inc[0], inc[1]
    x_c = np.minimum(np.asarray(inc[2 : 2 + kinds]), n_c)
    x_s = np.minimum(np.asarray(inc[2 + kinds :]), n_s)

    carried = previous is not None and usable and len(previous.baseline_events) == kinds
    base_requests = previous.baseline_requests if previous is not None and carried else 0.0
    base_events = np.asarray(previous.baseline_events if previous is not None and carried else [0.0] * kinds)
    against_baseline = n_s == 0 and n_c > 0 and base_requests > 0
    spread = np.asarray(
        previous.spread
        if previous is not None and usable and len(previous.spread) == kinds
        else [[0.0] * 4] * kinds,
        dtype=np.float64,
    )
    if n_s > 0:  # `spread` is a new array (from the carried tuples): add in place
        spread[:, 0] += 1.0
        spread[:, 1] += x_s
        spread[:, 2] += n_s
        spread[:, 3] += x_s * x_s / n_s
    # Stable's intervals up to this one: its clusters are other requests than the new version's.
    phi = dispersion(spread[:, 0], spread[:, 1], spread[:, 2], spread[:, 3]) if clustering else np.ones(kinds)
    if against_baseline:
        level = alpha / 10.0
        rate = [rate_upper_bound(e, base_requests, level) for e in base_events.tolist()]
        step = baseline_log_lr(x_c, n_c, rate, tolerance)
    else:
        step = split_log_lr(x_c, x_s, n_c, n_s, tolerance)
        base_requests += n_s
        base_events = base_events + x_s
    # Clustered events (retries, sticky users, pods) carry less information than their count:
    # each interval's evidence is divided by an upper bound on the clustering stable shows
    # (see `dispersion`). Dividing by any factor at least the cluster size keeps each factor's
    # expectation under 1 (Jensen), so overestimating it costs only speed.
    if clustering:
        step = step / phi[:, None]
    if (
        previous is not None
        and usable
        and len(previous.log_lr) == kinds
        and all(len(row) == step.shape[-1] for row in previous.log_lr)
    ):
        flat = itertools.chain.from_iterable(previous.log_lr)
        acc = np.fromiter(flat, dtype=np.float64, count=step.size).reshape(step.shape) + step
    else:
        acc = step
    per_kind = _log_mean_exp(acc)
    log_e = float(_log_mean_exp(per_kind))
    # Sticky: Ville's inequality bounds the supremum over time, so a rejection is never undone,
    # not by a later dip, a restart or a change of the histogram's bounds.
    rejected = bool((previous is not None and previous.rejected) or log_e >= -math.log(alpha))
    return Evidence(
        totals=totals,
        log_lr=tuple(map(tuple, acc.tolist())),
        log_e=log_e,
        rejected=rejected,
        reset=reset,
        log_e_kinds=tuple(per_kind.tolist()),
        baseline_requests=base_requests,
        baseline_events=tuple(base_events.tolist()),
        against_baseline=against_baseline,
        spread=tuple((a, b, c, d) for a, b, c, d in spread.tolist()),
        dispersion=tuple(phi.tolist()),
    )


def _flat(t: Totals) -> list[float]:
    return [t.canary_requests, t.stable_requests, *t.canary_events, *t.stable_events]
