"""scikit-learn transformers and Pipelines as bases (metafast.basis.SklearnBasis / as_basis)."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.kernel_approximation import Nystroem
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    PolynomialFeatures,
    SplineTransformer,
    StandardScaler,
)

import metafast as mf
from metafast.basis import SklearnBasis, as_basis
from metafast.basis.sklearn_wrapper import SparseDensifiedWarning
from metafast.testing import check_basis_family

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _rbf_pipeline(**rbf):
    return Pipeline([("scale", StandardScaler()), ("rbf", mf.basis.make("rbf", random_state=0, n_jobs=1, **rbf))])


TRANSFORMERS = [
    SplineTransformer(n_knots=6),
    PolynomialFeatures(3),
    Nystroem(n_components=10, random_state=0),
    make_pipeline(StandardScaler(), SplineTransformer(n_knots=5)),
    _rbf_pipeline(n_basis=9),
    _rbf_pipeline(n_basis=8, per_center=True),
    Pipeline([("scale", StandardScaler()), ("skip", "passthrough"), ("four", mf.basis.make("fourier", n_basis=7))]),
    FeatureUnion([("spline", SplineTransformer(n_knots=4)), ("poly", PolynomialFeatures(2))]),
]


@pytest.mark.parametrize("transformer", TRANSFORMERS, ids=lambda t: type(t).__name__ + str(id(t) % 97))
def test_wrapped_transformers_pass_the_conformance_checks(transformer):
    check_basis_family(SklearnBasis(transformer))


@pytest.fixture(scope="module")
def tasks():
    return mf.tasks.load("sinusoid", n_tasks=80, n_support=10, n_query=10, seed=0)


@pytest.fixture(scope="module")
def test_tasks():
    return mf.tasks.load("sinusoid", n_tasks=40, n_support=10, n_query=10, seed=1)


@pytest.mark.parametrize("learner", [mf.MetaBayes, mf.MetaRidge])
@pytest.mark.parametrize(
    "transformer",
    [SplineTransformer(n_knots=12), Nystroem(n_components=20, random_state=0), _rbf_pipeline(n_basis=20)],
    ids=["spline", "nystroem", "pipeline"],
)
def test_learners_accept_a_transformer_and_fit_it_on_every_training_row(tasks, test_tasks, learner, transformer):
    model = learner(n_jobs=1, basis=transformer, max_iter=20).fit(tasks)
    assert isinstance(model.basis_, SklearnBasis)
    assert model.basis is transformer  # the user's object is untouched
    X_all = tasks.all_rows().X_support  # every labelled row, task by task (support, then query)
    expected = clone(transformer).fit(X_all).transform(X_all[:50])
    assert np.allclose(model.basis_.design(X_all[:50]), expected)
    assert np.isfinite(model.evaluate(test_tasks)["mse"])
    t = test_tasks[0]
    assert model.adapt(t.X_support, t.y_support).predict(t.X_query).shape == (t.n_query,)


def test_transformer_basis_matches_the_same_family_passed_directly(tasks, test_tasks):
    """An RBF family inside a one-step Pipeline gives the same model as the family itself."""
    fam = mf.basis.make("rbf", n_basis=15)
    direct = mf.MetaBayes(n_jobs=1, basis=fam, max_iter=20).fit(tasks)
    wrapped = mf.MetaBayes(n_jobs=1, basis=Pipeline([("rbf", fam)]), max_iter=20).fit(tasks)
    assert np.allclose(direct.mean_, wrapped.mean_) and np.allclose(direct.covariance_, wrapped.covariance_)
    assert direct.evaluate(test_tasks)["nll"] == pytest.approx(wrapped.evaluate(test_tasks)["nll"])


def test_a_fitted_transformer_is_used_as_it_is(tasks):
    X = np.linspace(-10, 10, 50)[:, None]  # a wider domain than the tasks'
    spline = SplineTransformer(n_knots=7).fit(X)
    model = mf.MetaRidge(n_jobs=1, basis=spline).fit(tasks)
    assert np.array_equal(model.basis_.design(X), spline.transform(X))
    assert model.basis_.n_basis == spline.transform(X[:1]).shape[1]


def test_fitted_transformer_with_another_feature_count_is_refused(tasks):
    spline = SplineTransformer().fit(np.random.default_rng(0).normal(size=(20, 2)))
    with pytest.raises(ValueError, match="2 features"):
        mf.MetaBayes(n_jobs=1, basis=spline).fit(tasks)


def test_pipeline_ending_in_a_family_uses_its_kernels(rng):
    X = rng.uniform(-3, 3, size=(300, 2)).astype(np.float32)
    B = SklearnBasis(_rbf_pipeline(n_basis=16)).fit(X)
    scaler, rbf = B.transformer_.named_steps["scale"], B.transformer_.named_steps["rbf"]
    Z = scaler.transform(X.astype(np.float64)).astype(np.float32)
    w = rng.normal(size=16).astype(np.float32)
    out = B.weighted_sum(X, w)
    assert out.dtype == np.float32 and np.array_equal(out, rbf.weighted_sum(Z, w))
    off = np.array([0, 100, 300])
    W = rng.normal(size=(2, 16))
    assert np.array_equal(B.weighted_sum_tasks(X, off, W), rbf.weighted_sum_tasks(Z, off, W))
    names = B.get_feature_names_out()
    assert len(names) == 16


def test_design_vjp_of_a_pipeline_matches_finite_differences(rng):
    X = rng.uniform(-3, 3, size=(40, 1))
    B = SklearnBasis(_rbf_pipeline(n_basis=6)).fit(X)
    params = B.learnable_params()
    assert set(params) == {"rbf__centers", "rbf__log_length_scale"}
    G = rng.normal(size=(40, 6))
    grad = B.design_vjp(X, G)["rbf__log_length_scale"]
    eps = 1e-6
    ll = params["rbf__log_length_scale"]
    f = [np.sum(G * B.with_params(rbf__log_length_scale=ll + s * eps).design(X)) for s in (1, -1)]
    assert grad[0] == pytest.approx((f[0] - f[1]) / (2 * eps), rel=1e-5)
    assert B.learnable_params()["rbf__log_length_scale"] == pytest.approx(ll)  # with_params copies


def test_learn_basis_through_a_pipeline(tasks, test_tasks):
    model = mf.MetaBayes(n_jobs=1, basis=_rbf_pipeline(n_basis=12), learn_basis=True, basis_rounds=2, max_iter=20).fit(
        tasks
    )
    fixed = mf.MetaBayes(n_jobs=1, basis=_rbf_pipeline(n_basis=12), max_iter=20).fit(tasks)
    learned_ll = model.basis_.learnable_params()["rbf__log_length_scale"]
    assert not np.allclose(learned_ll, fixed.basis_.learnable_params()["rbf__log_length_scale"])
    assert model.log_evidence_[-1] >= fixed.log_evidence_[-1] - 1e-6 * abs(fixed.log_evidence_[-1])


@pytest.mark.parametrize(
    "transformer, step",
    [
        (SplineTransformer(), "SplineTransformer"),
        (make_pipeline(mf.basis.make("rbf", n_basis=5), StandardScaler()), "StandardScaler"),
        (Pipeline([("inner", mf.basis.make("rbf", n_basis=5)), ("outer", mf.basis.make("rbf", n_basis=4))]), "'inner'"),
    ],
)
def test_learn_basis_without_a_differentiable_last_step_names_the_step(tasks, transformer, step):
    with pytest.raises(ValueError, match=step):
        mf.MetaBayes(n_jobs=1, basis=transformer, learn_basis=True, max_iter=5).fit(tasks)
    B = SklearnBasis(transformer).fit(tasks.X_support)
    assert B.learnable_params() == {}
    with pytest.raises(ValueError, match=step):
        B.design_vjp(tasks.X_support, np.zeros((tasks.X_support.shape[0], B.n_basis)))


def test_params_reach_inside_the_pipeline(tasks):
    model = mf.MetaBayes(n_jobs=1, basis=_rbf_pipeline(n_basis=20))
    assert model.get_params()["basis__rbf__n_basis"] == 20
    other = clone(model).set_params(basis__rbf__n_basis=7)
    assert model.get_params()["basis__rbf__n_basis"] == 20  # clone copied the pipeline
    assert other.fit(tasks).basis_.n_basis == 7
    B = SklearnBasis(_rbf_pipeline(n_basis=5)).set_params(transformer__rbf__n_basis=6)
    assert B.fit(tasks.X_support).n_basis == 6


def test_pickled_model_with_a_transformer_basis_predicts_the_same(tasks, test_tasks):
    model = mf.MetaBayes(n_jobs=1, basis=SplineTransformer(n_knots=8)).fit(tasks)
    back = pickle.loads(pickle.dumps(model))
    assert back.evaluate(test_tasks) == model.evaluate(test_tasks)


# ---------------------------------------------------------------------------- bad input
def test_not_a_transformer_is_a_clear_type_error(tasks):
    with pytest.raises(TypeError, match="parameter 'basis'.*scikit-learn transformer.*got int"):
        mf.MetaBayes(n_jobs=1, basis=3).fit(tasks)
    with pytest.raises(TypeError, match="parameter 'basis'.*got Ridge"):
        from sklearn.linear_model import Ridge

        mf.MetaRidge(n_jobs=1, basis=Ridge()).fit(tasks)


def test_a_transformer_that_changes_the_row_count_is_refused(rng):
    drop = FunctionTransformer(lambda X: X[::2])
    with pytest.raises(ValueError, match="FunctionTransformer changed the number of rows: 10 rows in, 5 out"):
        SklearnBasis(drop).fit(rng.normal(size=(10, 1)))
    pipe = Pipeline([("scale", StandardScaler()), ("drop", drop), ("rbf", mf.basis.make("rbf", n_basis=3))])
    with pytest.raises(ValueError, match="step 'drop'.*changed the number of rows"):
        SklearnBasis(pipe).fit(rng.normal(size=(10, 1)))


def test_nan_output_names_the_step_and_the_row(rng):
    B = SklearnBasis(Pipeline([("log", FunctionTransformer(np.log)), ("spline", SplineTransformer())]))
    B.fit(rng.uniform(1, 2, size=(20, 1)))
    X = np.array([[1.5], [-1.0], [1.2]])
    with np.errstate(invalid="ignore"):
        with pytest.raises(ValueError, match=r"step 'log'.*NaN or inf \(first at row 1, column 0\)"):
            B.design(X)
        with pytest.raises(ValueError, match="step 'log'"):
            B.weighted_sum(X, np.ones(B.n_basis))


def test_sparse_output_is_densified_with_a_warning_only_when_large(rng, monkeypatch):
    X = rng.integers(0, 4, size=(30, 2)).astype(np.float64)
    B = SklearnBasis(OneHotEncoder(sparse_output=True)).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Phi = B.design(X)
    assert isinstance(Phi, np.ndarray) and Phi.shape == (30, 8)
    assert np.array_equal(Phi, OneHotEncoder(sparse_output=False).fit(X).transform(X))
    monkeypatch.setattr("metafast.basis.sklearn_wrapper.SPARSE_WARN_BYTES", 100)
    with pytest.warns(SparseDensifiedWarning, match="OneHotEncoder returned a sparse 30x8 matrix"):
        B.design(X)


def test_as_basis_of_a_fitted_transformer_needs_rows():
    spline = SplineTransformer().fit(np.linspace(0, 1, 10)[:, None])
    with pytest.raises(ValueError, match="needs example rows X"):
        as_basis(spline)
    assert as_basis(spline, X=np.zeros((1, 1))).n_basis == spline.transform(np.zeros((1, 1))).shape[1]


def test_unfitted_wrapper_has_no_n_basis():
    B = SklearnBasis(SplineTransformer())
    assert not hasattr(B, "n_basis")
    with pytest.raises(TypeError, match="parameter 'transformer'"):
        SklearnBasis("spline").fit(np.zeros((3, 1)))


def test_generic_sums_are_exact_across_blocks(rng, monkeypatch):
    monkeypatch.setattr("metafast.basis.sklearn_wrapper.BLOCK_ELEMENTS", 7)  # 1,024-row blocks
    X = rng.uniform(-2, 2, size=(2 * 1024 + 5, 2))
    B = SklearnBasis(PolynomialFeatures(2)).fit(X)
    Phi = PolynomialFeatures(2).fit(X).transform(X)
    W = rng.normal(size=(B.n_basis, 3))
    assert np.allclose(B.weighted_sum(X, W), Phi @ W)
    off = np.array([0, 1000, 1030, X.shape[0]])
    Wt = rng.normal(size=(3, B.n_basis))
    ref = np.concatenate([Phi[a:b] @ Wt[t] for t, (a, b) in enumerate(zip(off[:-1], off[1:]))])
    assert np.allclose(B.weighted_sum_tasks(X, off, Wt), ref)
