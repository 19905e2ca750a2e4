"""Accuracy of the kernels' vectorised exp / cos / sin (metafast/_kernels/_vecmath.h) vs numpy."""

import numpy as np
import pytest

from metafast._kernels import _vecmath


def _ulp_error(got, want, dtype):
    """|got - want| in units of the spacing of want (in dtype), want computed in float64."""
    want_t = want.astype(dtype)
    spacing = np.spacing(np.abs(want_t)).astype(np.float64)
    return np.abs(got.astype(np.float64) - want) / spacing


def _run(fn, x):
    out = np.empty_like(x)
    fn(x, out)
    return out


@pytest.mark.parametrize(
    "dtype, lo, hi, max_ulp",
    [
        (np.float64, -745.5, 709.9, 2.0),
        (np.float32, -104.5, 88.8, 2.0),
    ],
)
def test_exp_accuracy_over_whole_range(dtype, lo, hi, max_ulp):
    rng = np.random.default_rng(1)
    x = np.concatenate([np.linspace(lo, hi, 200_001), rng.uniform(-1, 1, 10_001), [0.0, -0.0, 1e-30, -1e-30]]).astype(
        dtype
    )
    got = _run(_vecmath.vexp, x)
    with np.errstate(over="ignore"):
        want = np.exp(x.astype(np.float64))
        finite = np.isfinite(want.astype(dtype)) & (want.astype(dtype) != 0)
    assert np.max(_ulp_error(got[finite], want[finite], dtype)) <= max_ulp
    assert not np.any(np.isnan(got))


@pytest.mark.parametrize("dtype, under, over", [(np.float64, -745.2, 709.8), (np.float32, -103.98, 88.73)])
def test_exp_underflows_to_exact_zero_and_overflows_to_inf(dtype, under, over):
    x = np.array(
        [under - 1e-3, -800, -1e4, -1e300 if dtype == np.float64 else -3e38, -np.inf, over + 0.01, 1e4, np.inf],
        dtype=dtype,
    )
    got = _run(_vecmath.vexp, x)
    np.testing.assert_array_equal(got[:5], 0.0)
    assert np.all(np.isposinf(got[5:]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exp_subnormal_results_match_numpy(dtype):
    tiny = np.finfo(dtype).tiny
    lo = np.log(np.float64(np.finfo(dtype).smallest_subnormal)) + 0.5
    x = np.linspace(lo, np.log(tiny), 5001).astype(dtype)
    got = _run(_vecmath.vexp, x)
    want = np.exp(x.astype(np.float64)).astype(dtype)
    sub = np.finfo(dtype).smallest_subnormal
    assert np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))) <= 1.0 * sub


@pytest.mark.parametrize("name", ["vcos", "vsin"])
@pytest.mark.parametrize("dtype, limit", [(np.float64, 2.0**20), (np.float32, 4096.0)])
def test_trig_accuracy(name, dtype, limit):
    rng = np.random.default_rng(2)
    x = np.concatenate(
        [
            np.linspace(-10, 10, 100_001),
            rng.uniform(-limit, limit, 100_000),
            (np.arange(-2000, 2000) * (np.pi / 2)),  # near the zeros and extrema
            rng.uniform(-1e9, 1e9, 1000),
            [1e22, -1e22, 3e38],  # beyond the limit: libm fallback
            [0.0, -0.0, 1e-20],
        ]
    ).astype(dtype)
    got = _run(getattr(_vecmath, name), x)
    want = getattr(np, name[1:])(x.astype(np.float64))
    eps = np.finfo(dtype).eps
    assert np.all(np.isfinite(got))
    assert np.max(np.abs(got - want)) <= 2 * eps  # absolute: near the zeros
    big = np.abs(want) >= 0.01
    assert np.max(_ulp_error(got[big], want[big], dtype)) <= 4.0


@pytest.mark.parametrize("fn", ["vexp", "vcos", "vsin"])
@pytest.mark.parametrize("n", [0, 1, 7, 33])
def test_small_sizes(fn, n):
    x = np.linspace(-3, 3, n)
    got = _run(getattr(_vecmath, fn), x)
    np.testing.assert_allclose(got, getattr(np, fn[1:])(x), rtol=1e-14, atol=1e-15)
