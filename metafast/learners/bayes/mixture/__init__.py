"""The mixture-of-Gaussians weight prior behind ``MetaBayes(n_components=C)``.

``prior`` holds ``MixturePrior``; ``_em`` its checks, parameters and E/M steps, ``_task`` the
per-task regressor, ``_dask`` the same EM with chunks on Dask workers and ``_heldout`` the
held-out split that ``n_components="auto"`` scores on.
"""

from metafast.learners.bayes.mixture._task import MixtureTaskRegressor
from metafast.learners.bayes.mixture.prior import MixturePrior

__all__ = ["MixturePrior", "MixtureTaskRegressor"]
