"""MetaGrad's outer loop (issue 25): validation, early stopping with the best parameters kept,
the step-size schedule, history_, the default learned network basis and the stable inner rate."""

import numpy as np
import pytest

import metafast as mf
from metafast.learners.grad import _training
from metafast.learners.grad._scales import stable_inner_lr, target_scale


@pytest.fixture(scope="module")
def tasks():
    return mf.tasks.load("sinusoid", n_tasks=120, n_support=5, n_query=5, seed=0)


def _rbf(**kw):
    return mf.MetaGrad(basis=mf.basis.make("rbf", n_basis=10), random_state=0, n_jobs=1, **kw)


def test_history_records_training_and_validation_loss(tasks):
    model = _rbf(n_iter=300).fit(tasks)
    h = model.history_
    assert h["iteration"] == list(range(50, 301, 50))
    assert all(len(h[k]) == 6 for k in ("train_loss", "val_loss", "meta_lr", "seconds"))
    assert np.all(np.isfinite(h["val_loss"])) and h["val_loss"][-1] < h["val_loss"][0]
    assert h["meta_lr"][0] == pytest.approx(0.003 * 0.5)  # 50th iteration of a 100-iteration warm-up
    assert np.all(np.diff(h["seconds"]) >= 0)


def test_the_kept_parameters_are_the_best_on_validation(tasks, monkeypatch):
    # a validation loss that is best at the 2nd measurement: the model must end with those parameters
    seen = []
    real = _training.ValidationSet.loss

    def loss(self, *args):
        value = real(self, *args)
        seen.append((args[4].copy(), value))
        return 0.5 if len(seen) == 2 else 1.0 + len(seen)

    monkeypatch.setattr(_training.ValidationSet, "loss", loss)
    model = _rbf(n_iter=400).fit(tasks)
    assert model.best_val_loss_ == pytest.approx(0.5 * model._y_scale**2)
    w0_kernel_units = model.init_coef_ / model._y_scale
    np.testing.assert_allclose(w0_kernel_units, seen[1][0])


def test_early_stopping_stops_on_a_plateau_and_halves_the_step(tasks, monkeypatch):
    monkeypatch.setattr(_training.ValidationSet, "loss", lambda self, *a: 1.0)
    model = _rbf(n_iter=10**6, patience=8, max_time=None).fit(tasks)
    assert model.stop_reason_ == "converged"
    assert model.n_iter_ == 9 * _training.EVAL_EVERY  # 1 best, then 8 without improvement
    lrs = model.history_["meta_lr"]
    assert lrs[-1] == pytest.approx(lrs[2] / 8)  # halved after the 2nd, 4th, 6th measurement without gain


def test_max_time_and_n_iter_stop(tasks):
    assert _rbf(n_iter=120).fit(tasks).stop_reason_ == "n_iter"
    model = _rbf(n_iter=10**7, max_time=0.3, patience=10**6).fit(tasks)
    assert model.stop_reason_ == "max_time" and 0 < model.n_iter_ < 10**7


def test_no_validation_when_disabled_or_too_few_tasks(tasks):
    model = _rbf(n_iter=60, validation_fraction=None).fit(tasks)
    assert model.history_["iteration"] == [] and model.n_iter_ == 60
    assert _rbf(n_iter=60).fit(tasks.subset(np.arange(5))).history_["iteration"] == []


def test_default_basis_is_a_learned_network(tasks):
    model = mf.MetaGrad(n_iter=5, random_state=0).fit(tasks)
    assert type(model.basis_).__name__ == "MLP" and model.learn_basis_
    assert model.basis_.hidden_layers == 2 and model.basis_.n_basis == 40
    assert not mf.MetaGrad(method="reptile", n_iter=5, random_state=0).fit(tasks).learn_basis_
    assert not _rbf(n_iter=5).fit(tasks).learn_basis_  # a given basis stays fixed unless asked


@pytest.mark.parametrize(
    "param, value",
    [
        ("validation_fraction", 1.0),
        ("validation_fraction", -0.1),
        ("validation_fraction", "half"),
        ("patience", 0),
        ("learn_basis", "yes"),
        ("inner_steps", 5000),
    ],
)
def test_bad_training_parameters_name_themselves(tasks, param, value):
    with pytest.raises((ValueError, TypeError), match=param):
        _rbf(**{param: value}).fit(tasks)


def test_stable_inner_lr_is_one_over_the_largest_eigenvalue(tasks):
    basis = mf.basis.make("rbf", n_basis=7).fit_tasks(tasks)
    lr = stable_inner_lr(basis, tasks, np.random.default_rng(0), fallback=-1.0)
    top = 0.0
    for t in range(len(tasks)):
        P = basis.design(tasks[t].X_support)
        top = max(top, np.linalg.eigvalsh(P.T @ P / P.shape[0])[-1])  # brute force, m x m side
    assert lr == pytest.approx(1.0 / top, rel=1e-10)


@pytest.mark.parametrize("scale", [1e-300, 1.0, 1e300])
def test_target_scale_is_the_rms_without_overflow(scale):
    y = np.array([3.0, -4.0, 0.0, 5.0])
    assert target_scale(y * scale) == pytest.approx(np.sqrt(np.mean(y**2)) * scale, rel=1e-12)
    assert target_scale(np.zeros(3)) == 1.0 and target_scale(np.zeros(0)) == 1.0


def test_imaml_learns_its_proximal_strength(tasks):
    model = mf.MetaGrad(basis=mf.basis.make("rbf", n_basis=10), method="imaml", n_iter=200, random_state=0).fit(tasks)
    assert model.inner_reg_ != pytest.approx(model._reg0)
    fixed = mf.MetaGrad(
        basis=mf.basis.make("rbf", n_basis=10), method="imaml", inner_reg=0.5, n_iter=50, random_state=0
    ).fit(tasks)
    assert fixed.inner_reg_ == 0.5
