"""The README's tour is code users copy: it must run and give what it promises."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.slow
def test_readme_tour_runs_and_meets_its_claims():
    if not README.exists():
        pytest.skip("README.md is not next to the tests (installed-package run)")
    tour = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    namespace: dict = {}
    exec(compile(tour, "README.md tour", "exec"), namespace)
    scores = namespace["model"].evaluate(namespace["test"])
    assert scores["n_tasks"] == 600
    assert scores["mse"] < 0.01
    assert 0.85 <= scores["coverage90"] <= 1.0
    mean, std = namespace["mean"], namespace["std"]
    assert mean.shape == std.shape == (100,) and (std > 0).all()
