"""Model files: format 2 (JSON description + npz, no pickle) against a plain pickle of the same
model, in one run.  Prints the save and load time ratios and the size ratio (format 2 / pickle).

    PYTHONPATH=. python benchmarks/bench_model_file.py
"""

from __future__ import annotations

import pickle
import tempfile
import time
import warnings
from pathlib import Path

import metafast as mf
from metafast.model_file import load_model, save_model


def _best(fn, repeat=5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    warnings.simplefilter("ignore")
    tasks = mf.tasks.load("sinusoid", n_tasks=500, n_support=10, n_query=10, seed=0)
    models = {
        "MetaBayes rbf m=40": mf.MetaBayes(basis=mf.basis.make("rbf", n_basis=40), max_iter=20).fit(tasks),
        "MetaBayes mixture C=3": mf.MetaBayes(
            basis=mf.basis.make("rbf", n_basis=40), n_components=3, max_iter=20, random_state=0
        ).fit(tasks),
        "MetaRidge fourier m=64": mf.MetaRidge(basis=mf.basis.make("fourier", n_basis=64)).fit(tasks),
    }
    print(f"{'model':24s} {'save x':>8s} {'load x':>8s} {'size x':>8s}  (format 2 / pickle)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.mf"
        for name, model in models.items():
            save2 = _best(lambda: save_model(model, path))
            load2 = _best(lambda: load_model(path))
            blob = pickle.dumps(model)
            save1 = _best(lambda: pickle.dumps(model))
            load1 = _best(lambda: pickle.loads(blob))
            print(f"{name:24s} {save2 / save1:8.2f} {load2 / load1:8.2f} {path.stat().st_size / len(blob):8.2f}")


if __name__ == "__main__":
    main()
