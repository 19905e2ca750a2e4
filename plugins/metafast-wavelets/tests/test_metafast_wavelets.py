"""Tests of the metafast-wavelets plugin, as installed (found through its entry point)."""

import numpy as np
import pytest

import metafast as mf
from metafast.plugins import plugin_report
from metafast.testing import check_basis_family

wavelets = pytest.importorskip(
    "metafast_wavelets", reason="plugin not installed: pip install ./plugins/metafast-wavelets"
)
from metafast_wavelets import MexicanHat, Morlet, dyadic_grid  # noqa: E402


def test_found_through_the_installed_entry_point():
    report = {r["name"]: r for r in plugin_report()}
    assert "wavelets" in report, "entry point 'wavelets' of group 'metafast' not found"
    r = report["wavelets"]
    assert r["status"] == "loaded", r["error"]
    assert r["distribution"] == "metafast-wavelets" and r["version"] == wavelets.__version__
    assert r["provides"] == {
        "basis family": ["mexican-hat", "morlet"],
        "model type": ["metafast_wavelets.MexicanHat", "metafast_wavelets.Morlet"],
    }
    assert isinstance(mf.basis.make("mexican-hat", n_basis=5), MexicanHat)
    assert isinstance(mf.basis.make("morlet", n_basis=5, omega0=4.0), Morlet)


@pytest.mark.parametrize("family", [MexicanHat(n_basis=9), Morlet(n_basis=12, width=0.7, omega0=4.0)])
def test_conformance(family):
    check_basis_family(family)


def test_dyadic_grid_is_coarse_to_fine_and_spread():
    feature, level, centre = dyadic_grid(7, 1)
    np.testing.assert_array_equal(level, [0, 1, 1, 2, 2, 2, 2])
    np.testing.assert_allclose(centre, [0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875])
    assert set(feature) == {0}
    # a partial level is spread over the domain (bit-reversed), not bunched on the left
    _, level, centre = dyadic_grid(5, 1)
    np.testing.assert_allclose(centre[3:], [0.125, 0.625])
    feature, _, _ = dyadic_grid(6, 2)
    np.testing.assert_array_equal(feature, [0, 1, 0, 1, 0, 1])


def test_design_matches_the_formulas():
    X = np.array([[0.0], [0.3], [1.0], [2.0]])
    hat = mf.basis.make("mexican-hat", n_basis=3, width=0.5).fit(X)
    morlet = mf.basis.make("morlet", n_basis=3, width=0.5, omega0=5.0).fit(X)
    u = X[:, 0] / 2.0
    centres, scales = np.array([0.5, 0.25, 0.75]), np.array([0.5, 0.25, 0.25])
    t = (u[:, None] - centres) / scales
    np.testing.assert_allclose(hat.design(X), (1 - t**2) * np.exp(-(t**2) / 2), rtol=1e-12)
    np.testing.assert_allclose(morlet.design(X), np.cos(5 * t) * np.exp(-(t**2) / 2), rtol=1e-12)


def test_constant_feature_gives_finite_design():
    X = np.ones((5, 2))
    Phi = MexicanHat(n_basis=6).fit(X).design(X)
    assert np.all(np.isfinite(Phi))


def test_width_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    X = rng.uniform(-1, 3, size=(20, 2))
    for fam in (MexicanHat(n_basis=10, width=0.6), Morlet(n_basis=10, width=0.6)):
        fam.fit(X)
        G = rng.standard_normal((20, 10))
        (lw,) = fam.learnable_params()["log_width"]
        eps = 1e-6
        f = lambda v: np.sum(G * fam.with_params(log_width=np.array([v])).design(X))  # noqa: E731
        numeric = (f(lw + eps) - f(lw - eps)) / (2 * eps)
        np.testing.assert_allclose(fam.design_vjp(X, G)["log_width"][0], numeric, rtol=1e-6)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_basis": 0}, "n_basis"),
        ({"n_basis": 2.5}, "n_basis"),
        ({"width": -1.0}, "width"),
        ({"width": float("nan")}, "width"),
        ({"omega0": -2.0}, "omega0"),
    ],
)
def test_bad_parameters_are_named(params, match):
    with pytest.raises(ValueError, match=match):
        mf.basis.make("morlet", **params).fit(np.zeros((3, 1)))


def test_unknown_parameter_lists_the_accepted_ones():
    with pytest.raises(TypeError, match="omega0"):
        mf.basis.make("mexican-hat", omega0=5.0)
