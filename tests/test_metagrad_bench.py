"""The ``gradient`` benchmark suite: its cases, and one tiny case run end to end."""

from dataclasses import replace

import numpy as np

from metafast import bench
from metafast.bench import suites
from metafast.bench.runner import run_suite


def test_gradient_suite_cases():
    full = suites.get_suite("gradient")
    labels = {c.learner.label for c in full.cases}
    assert {f"MetaGrad ({m})" for m in suites.GRADIENT_METHODS} | {"MetaBayes", "MetaRidge"} == labels
    assert {c.family for c in full.cases} == set(suites.GRADIENT_FAMILIES)
    assert {c.shots for c in full.cases} == {5, 10, 20}
    assert all(c.basis == suites.GRADIENT_BASES.get(c.family, suites.DEFAULT_BASIS) for c in full.cases)
    assert "gradient" in bench.available_suites()


def test_gradient_suite_runs_a_tiny_case():
    quick = suites.gradient_suite(quick=True)
    cases = [replace(c, n_train=40, n_test=20) for c in quick.cases
             if c.family == "friedman" and c.shots == 5 and c.learner.label in ("MetaGrad (imaml)", "MetaRidge")]
    rows = run_suite(suites.Suite("t", cases), verbose=0).rows
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert all(np.isfinite(r["mse"]) for r in rows)
