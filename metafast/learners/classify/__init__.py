"""MetaClassifier: few-shot classification with a meta-learned head over a basis.

``estimator`` holds the public class; the heads are ``_logistic`` (Laplace-EM prior),
``_ridge_head`` (one-hot ridge with an EM prior) and ``_prototype`` (class means and a metric);
``_labels`` handles label settings, ``_task`` the per-task classifier, ``_basis`` learn_basis
and ``_chunks`` the per-chunk passes shared by the in-process and Dask routes.
"""

from metafast.learners.classify._task import BasisClassifier
from metafast.learners.classify.estimator import MetaClassifier

__all__ = ["MetaClassifier", "BasisClassifier"]
