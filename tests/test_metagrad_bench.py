"""The ``gradient`` benchmark suite: its cases, one tiny case run end to end, the learning curves."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from metafast import bench
from metafast.bench import suites
from metafast.bench.runner import run_suite


def test_gradient_suite_cases():
    full = suites.get_suite("gradient")
    labels = {c.learner.label for c in full.cases}
    expected = (
        {f"MetaGrad ({m})" for m in suites.DEFAULT_METHODS}
        | {f"MetaGrad ({m}, learned family basis)" for m in suites.LEARNED_BASIS_METHODS}
        | {"MetaBayes", "MetaRidge"}
    )
    assert labels == expected
    assert {c.family for c in full.cases} == set(suites.GRADIENT_FAMILIES)
    assert {c.shots for c in full.cases} == {5, 10, 20}
    assert all(c.basis == suites.GRADIENT_BASES.get(c.family, suites.DEFAULT_BASIS) for c in full.cases)
    assert {c.n_train for c in full.cases if c.family == "sinusoid"} == {4000}
    assert "gradient" in bench.available_suites()


def _tiny(labels, family="friedman"):
    quick = suites.gradient_suite(quick=True)
    cases = [
        replace(c, n_train=40, n_test=20)
        for c in quick.cases
        if c.family == family and c.shots == 5 and c.learner.label in labels
    ]
    assert len(cases) == len(labels)
    return run_suite(suites.Suite("t", cases), verbose=0)


def test_gradient_suite_runs_a_tiny_case():
    results = _tiny(("MetaGrad (imaml, learned family basis)", "MetaRidge"))
    rows = results.rows
    assert [r["status"] for r in rows] == ["ok", "ok"], [r["error"] for r in rows]
    assert all(np.isfinite(r["mse"]) for r in rows)
    assert rows[0]["history"]["iteration"] and "history" not in rows[1]


def test_default_metagrad_ignores_the_family_basis():
    results = run_suite(
        suites.Suite(
            "t",
            [
                replace(c, n_train=40, n_test=10)
                for c in suites.gradient_suite(quick=True).cases
                if c.family == "sinusoid" and c.shots == 5 and c.learner.label == "MetaGrad (maml)"
            ],
        ),
        verbose=0,
        keep_models=True,
    )
    model = next(iter(results.models.values()))
    assert type(model.basis_).__name__ == "MLP" and model.learn_basis_


def test_learning_curves_plot(tmp_path):
    pytest.importorskip("matplotlib")
    from metafast.bench.report import write_results

    results = _tiny(("MetaGrad (fomaml, learned family basis)",))
    written = write_results(results, tmp_path)["written"]
    curves = [Path(p) for p in written if str(p).endswith("_learning_curves.png")]
    assert curves and curves[0].stat().st_size > 1000
