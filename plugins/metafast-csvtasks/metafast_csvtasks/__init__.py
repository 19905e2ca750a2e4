"""metafast-csvtasks: task loaders for CSV data (an example metafast plugin, numpy only).

Installed, it registers three loaders through the ``metafast`` entry point ``csvtasks``:

    import metafast as mf
    tasks = mf.tasks.load("csv-dir", path="my_curves/", target="y", n_support=5)   # file per task
    tasks = mf.tasks.load("csv-long", path="sales.csv", group="store", n_support=8)  # long table
    tasks = mf.tasks.load("stations", n_support=10, n_query=10)                    # bundled demo
"""

from __future__ import annotations

import metafast
from metafast_csvtasks._loaders import DATA_DIR, load_csv_dir, load_csv_long, load_stations

__version__ = "0.1.0"
__all__ = ["DATA_DIR", "load_csv_dir", "load_csv_long", "load_stations", "metafast_task_loaders"]


@metafast.hookimpl
def metafast_task_loaders(register):
    register("csv-dir", load_csv_dir)
    register("csv-long", load_csv_long)
    register("stations", load_stations)
