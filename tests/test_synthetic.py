"""Each synthetic family draws from its published distribution (KS tests with fixed seeds)."""

import numpy as np
import pytest
from scipy import stats

import metafast as mf
from metafast.tasks import oracle, true_function

N = 2000  # tasks per distribution test
ALPHA = 1e-3


def _col(ts, key):
    return np.asarray([d[key] for d in ts.info])


def _ks_uniform(x, lo, hi):
    return stats.kstest(x, stats.uniform(lo, hi - lo).cdf).pvalue


def test_sinusoid_matches_finn_2017():
    ts = mf.tasks.load("sinusoid", n_tasks=N, n_support=5, n_query=5, seed=11)
    assert _ks_uniform(_col(ts, "amplitude"), 0.1, 5.0) > ALPHA
    assert _ks_uniform(_col(ts, "phase"), 0.0, np.pi) > ALPHA
    assert _ks_uniform(ts.X_support[:, 0], -5.0, 5.0) > ALPHA
    assert np.all(_col(ts, "frequency") == 1.0) and np.all(_col(ts, "noise") == 0.0)
    # the test has power: the phase is not U[0, 2 pi]
    assert _ks_uniform(_col(ts, "phase"), 0.0, 2 * np.pi) < ALPHA
    A, phi = _col(ts, "amplitude"), _col(ts, "phase")
    x = ts.X_query[:, 0].reshape(N, 5)
    np.testing.assert_allclose(ts.y_query.reshape(N, 5), A[:, None] * np.sin(x - phi[:, None]), rtol=1e-12)


def test_sinusoid_options():
    ts = mf.tasks.load(
        "sinusoid", n_tasks=N, n_support=3, n_query=3, seed=2, frequency=(0.5, 2.0), x_range=(0, 1), noise=0.1
    )
    assert _ks_uniform(_col(ts, "frequency"), 0.5, 2.0) > ALPHA
    assert _ks_uniform(ts.X_query[:, 0], 0.0, 1.0) > ALPHA
    resid = ts.y_query - oracle(ts)
    assert stats.kstest(resid / 0.1, "norm").pvalue > ALPHA


def test_harmonic_follows_torchmeta_code():
    ts = mf.tasks.load("harmonic", n_tasks=N, n_support=4, n_query=4, seed=12)
    assert _ks_uniform(_col(ts, "frequency"), 5.0, 7.0) > ALPHA
    for a in ("a1", "a2"):
        assert stats.kstest(_col(ts, a), "norm").pvalue > ALPHA
    for b in ("b1", "b2"):
        assert _ks_uniform(_col(ts, b), 0.0, 2 * np.pi) > ALPHA
    mu = _col(ts, "mu_x")
    assert _ks_uniform(mu, -4.0, 4.0) > ALPHA
    dev = ts.X_support[:, 0] - np.repeat(mu, 4)
    assert stats.kstest(dev, "norm").pvalue > ALPHA
    t = ts[0]
    w, i = t.info["frequency"], t.info
    x = t.X_query[:, 0]
    ref = i["a1"] * np.sin(w * x + i["b1"]) + i["a2"] * np.sin(2 * w * x + i["b2"])
    np.testing.assert_allclose(t.y_query, ref, rtol=1e-12)


def test_sinusoid_line_follows_finn_2018():
    ts = mf.tasks.load("sinusoid-line", n_tasks=N, n_support=3, n_query=3, seed=13)
    kinds = _col(ts, "kind")
    n_sine = int((kinds == "sine").sum())
    assert stats.binomtest(n_sine, N, 0.5).pvalue > ALPHA
    sines = [d for d in ts.info if d["kind"] == "sine"]
    lines = [d for d in ts.info if d["kind"] == "line"]
    assert set(sines[0]) == {"family", "kind", "amplitude", "phase", "noise"}
    assert _ks_uniform([d["amplitude"] for d in sines], 0.1, 5.0) > ALPHA
    assert _ks_uniform([d["phase"] for d in sines], 0.0, np.pi) > ALPHA
    assert _ks_uniform([d["slope"] for d in lines], -3.0, 3.0) > ALPHA
    assert _ks_uniform([d["intercept"] for d in lines], -3.0, 3.0) > ALPHA
    np.testing.assert_allclose(oracle(ts), ts.y_query, rtol=1e-12, atol=1e-12)


def test_multimodal_follows_vuorio_2019():
    ts = mf.tasks.load("multimodal", n_tasks=3000, n_support=3, n_query=3, seed=14)
    modes = _col(ts, "mode")
    names = ["sine", "linear", "quadratic", "tanh", "abs"]
    counts = [int((modes == m).sum()) for m in names]
    assert sum(counts) == 3000 and stats.chisquare(counts).pvalue > ALPHA
    by = {m: [d for d in ts.info if d["mode"] == m] for m in names}
    q = np.asarray([d["scale"] for d in by["quadratic"]])
    assert _ks_uniform(np.abs(q), 0.02, 0.15) > ALPHA
    assert stats.binomtest(int((q > 0).sum()), q.size, 0.5).pvalue > ALPHA
    for m in ("tanh", "abs"):
        for k in ("slope", "center", "bias"):
            assert _ks_uniform([d[k] for d in by[m]], -3.0, 3.0) > ALPHA
    assert _ks_uniform([d["amplitude"] for d in by["sine"]], 0.1, 5.0) > ALPHA
    resid = ts.y_query - oracle(ts)
    assert np.all(_col(ts, "noise") == 0.3)
    assert stats.kstest(resid / 0.3, "norm").pvalue > ALPHA


def test_multimodal_cubic_and_mode_functions():
    ts = mf.tasks.load(
        "multimodal",
        n_tasks=600,
        modes=("cubic", "abs", "tanh", "linear", "quadratic", "sine"),
        noise=0.0,
        n_support=4,
        n_query=4,
        seed=15,
    )
    cubic = [t for t in ts if t.info["mode"] == "cubic"]
    assert cubic and _ks_uniform([abs(t.info["scale"]) for t in cubic], 0.005, 0.03) > ALPHA
    ref = {
        "sine": lambda i, x: i["amplitude"] * np.sin(x - i["phase"]),
        "linear": lambda i, x: i["slope"] * x + i["intercept"],
        "quadratic": lambda i, x: i["scale"] * (x - i["center"]) ** 2 + i["bias"],
        "cubic": lambda i, x: i["scale"] * (x - i["center"]) ** 3 + i["bias"],
        "abs": lambda i, x: i["slope"] * np.abs(x - i["center"]) + i["bias"],
        "tanh": lambda i, x: i["slope"] * np.tanh(x - i["center"]) + i["bias"],
    }
    seen = set()
    for t in ts[:60]:
        seen.add(t.info["mode"])
        np.testing.assert_allclose(t.y_support, ref[t.info["mode"]](t.info, t.X_support[:, 0]), rtol=1e-12)
        np.testing.assert_allclose(true_function(t.info, t.X_query), t.y_query, rtol=1e-12)
    assert seen == set(ref)


def test_friedman_has_d_inputs_and_known_process():
    ts = mf.tasks.load("friedman", n_tasks=N, n_support=2, n_query=2, seed=16, n_features=7)
    assert ts.n_features == 7
    for j in range(7):
        assert _ks_uniform(ts.X_support[:, j], 0.0, 1.0) > ALPHA
    for k, base in zip(("c1", "c2", "c3", "c4"), (10, 20, 10, 5)):
        assert _ks_uniform(_col(ts, k), 0.5 * base, 1.5 * base) > ALPHA
    X = ts.X_query
    c = np.repeat(np.stack([_col(ts, k) for k in ("c1", "c2", "c3", "c4")], 1), 2, axis=0)
    ref = (
        c[:, 0] * np.sin(np.pi * X[:, 0] * X[:, 1])
        + c[:, 1] * (X[:, 2] - 0.5) ** 2
        + c[:, 2] * X[:, 3]
        + c[:, 3] * X[:, 4]
    )
    np.testing.assert_allclose(ts.y_query, ref, rtol=1e-12)


@pytest.mark.parametrize("name", ["sinusoid", "harmonic", "sinusoid-line", "multimodal", "friedman"])
def test_same_seed_same_tasks_and_prefix_property(name):
    a = mf.tasks.load(name, n_tasks=300, n_support=3, n_query=4, seed=5)
    b = mf.tasks.load(name, n_tasks=300, n_support=3, n_query=4, seed=5)
    assert a.equals(b)
    assert mf.tasks.load(name, n_tasks=7, n_support=3, n_query=4, seed=5).equals(a[:7])
    assert not mf.tasks.load(name, n_tasks=7, n_support=3, n_query=4, seed=6).equals(a[:7])
    # the functions depend on the seed only, not on how many points are drawn
    c = mf.tasks.load(name, n_tasks=7, n_support=9, n_query=1, seed=5)
    assert c.info == a.info[:7]
    assert mf.tasks.load(name, n_tasks=3, seed=5, dtype=np.float32).dtype == np.float32


def test_oracle_mixed_families_and_support():
    parts = [
        mf.tasks.load(n, n_tasks=5, n_support=3, n_query=2, seed=1) for n in ("harmonic", "sinusoid", "sinusoid-line")
    ]
    ts = mf.tasks.TaskSet.concatenate(parts)
    np.testing.assert_allclose(oracle(ts), ts.y_query, rtol=1e-12)
    np.testing.assert_allclose(oracle(ts, "support"), ts.y_support, rtol=1e-12)
    with pytest.raises(ValueError, match="family"):
        oracle(mf.tasks.load("digits", n_tasks=2))
    with pytest.raises(ValueError, match="which"):
        oracle(ts, "train")


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(n_support=0), ValueError, "n_support"),
        (dict(n_query=-1), ValueError, "n_query"),
        (dict(n_tasks=0), ValueError, "n_tasks"),
        (dict(n_tasks=2.5), TypeError, "n_tasks"),
        (dict(amplitude=(5, 1)), ValueError, "amplitude"),
        (dict(noise=-0.1), ValueError, "noise"),
        (dict(frequency=(0, 1)), ValueError, "frequency"),
        (dict(dtype=np.int32), ValueError, "dtype"),
        (dict(seed=-3), ValueError, "seed"),
        (dict(seed="a"), TypeError, "seed"),
    ],
)
def test_bad_parameters_are_named(kwargs, err, match):
    with pytest.raises(err, match=match):
        mf.tasks.load("sinusoid", **kwargs)


def test_bad_multimodal_modes():
    with pytest.raises(ValueError, match="unknown mode 'sin'"):
        mf.tasks.load("multimodal", modes=("sin",))
    with pytest.raises(ValueError, match="friedman|n_features"):
        mf.tasks.load("friedman", n_features=3)


def test_golden_values_pin_the_random_streams():
    # the same seed must give the same tasks on every run and every machine
    ts = mf.tasks.load("sinusoid", n_tasks=2, seed=0)
    assert ts.info[0]["amplitude"] == pytest.approx(2.869145651251171, rel=1e-14)
    assert ts.X_support[0, 0] == pytest.approx(-0.46906397451775295, rel=1e-14)
    assert ts.y_query[-1] == pytest.approx(-2.604457628139276, rel=1e-14)
    mm = mf.tasks.load("multimodal", n_tasks=2, seed=0)
    assert mm.info[0]["mode"] == "sine" and mm.y_query[-1] == pytest.approx(2.5918821302297754, rel=1e-14)


def test_noise_free_on_packed_rows_and_pickle():
    import pickle

    ts = mf.tasks.load("harmonic", n_tasks=6, n_support=2, n_query=3, seed=0)
    np.testing.assert_array_equal(mf.tasks.noise_free(ts.info, ts.X_query, ts.query_offsets), oracle(ts))
    with pytest.raises(ValueError, match="offsets"):
        mf.tasks.noise_free(ts.info, ts.X_query, ts.query_offsets[:-1])
    assert pickle.loads(pickle.dumps(ts)).equals(ts)
