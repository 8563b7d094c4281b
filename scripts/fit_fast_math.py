"""Fit the rational approximations that the fused CPU kernel uses for erf (Derf) and tanh (DyT).

Both functions are odd, so we fit f(x) ~= x * P(x^2) / Q(x^2) on [0, clamp] and clamp |x| beyond it,
where float32 f(x) has already rounded to +-1. The fit minimises the maximum relative error:
Sanathanan-Koerner linearisation plus Lawson's re-weighting, in float64 on a rescaled variable
(x / clamp)^2 for conditioning. The report then evaluates the float32 coefficients the way the C
kernel does (Horner with fused multiply-add, one division) and prints the worst error in float32 ulps.

    python scripts/fit_fast_math.py

The printed constants are pasted into derf_zoo/norms/kernels/cpu_kernel.c; nothing is fitted at run time.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf


def fit_odd_rational(f, clamp: float, p_deg: int, q_deg: int, iters: int = 200) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(1e-4, clamp, 60_000)
    fx = f(x)
    t = (x / clamp) ** 2
    num_terms = np.stack([x * t**k for k in range(p_deg + 1)], 1)
    den_terms = np.stack([t**k for k in range(1, q_deg + 1)], 1)  # Q(0) = 1 fixes the scale
    den_prev, weights = np.ones_like(x), np.full_like(x, 1 / len(x))
    best = (np.inf, None, None)
    for it in range(iters):
        # x P(t) - f Q(t) = 0, scaled to a relative error and by the previous denominator (SK iteration).
        scale = np.sqrt(weights) / (np.abs(fx) * den_prev)
        a = np.concatenate([num_terms, -fx[:, None] * den_terms], 1) * scale[:, None]
        sol, *_ = np.linalg.lstsq(a, fx * scale, rcond=None)
        p, q = sol[: p_deg + 1], np.concatenate([[1.0], sol[p_deg + 1 :]])
        den_prev = np.polyval(q[::-1], t)
        rel = np.abs((x * np.polyval(p[::-1], t) / den_prev - fx) / fx)
        if rel.max() < best[0]:
            best = (rel.max(), p, q)
        if it >= 10:  # Lawson: move weight to where the error is largest, towards the minimax solution
            weights = weights * (rel + 1e-30)
            weights /= weights.sum()
    _, p, q = best
    unscale_p = clamp ** (2.0 * np.arange(p_deg + 1))
    unscale_q = clamp ** (2.0 * np.arange(q_deg + 1))
    return p / unscale_p, q / unscale_q


def _f32(a):
    return np.asarray(a, np.float64).astype(np.float32).astype(np.float64)


def eval_like_kernel(p: np.ndarray, q: np.ndarray, clamp: float, x: np.ndarray) -> np.ndarray:
    """float32 Horner with FMA (each step rounded once), then x * P / Q."""
    x = np.clip(x, -np.float32(clamp), np.float32(clamp))
    t = _f32(x * x)
    num, den = np.full_like(x, _f32(p[-1])), np.full_like(x, _f32(q[-1]))
    for c in _f32(p)[-2::-1]:
        num = _f32(num * t + c)
    for c in _f32(q)[-2::-1]:
        den = _f32(den * t + c)
    return _f32(_f32(x * num) / den)


def report(name: str, f, clamp: float, p_deg: int, q_deg: int) -> None:
    p, q = fit_odd_rational(f, clamp, p_deg, q_deg)
    xs = np.concatenate([np.linspace(-12, 12, 2_000_001), np.geomspace(1e-30, 1, 10_000)])
    xs = _f32(xs)
    ref = f(xs)
    err = np.abs(eval_like_kernel(p, q, clamp, xs) - ref)
    ulps = err / np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    print(f"{name}: clamp {clamp}; max abs error {err.max():.2e}; max {ulps.max():.2f} float32 ulp")
    print(f"  P = {{{', '.join(f'{c:.9e}f' for c in _f32(p))}}}")
    print(f"  Q = {{{', '.join(f'{c:.9e}f' for c in _f32(q))}}}")


if __name__ == "__main__":
    report("erf", erf, 3.925, 6, 4)
    report("tanh", np.tanh, 7.9, 6, 3)
