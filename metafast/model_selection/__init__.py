"""Model selection over tasks: split a TaskSet by task, cross-validate, search hyperparameters.

    from metafast.model_selection import TaskKFold, TaskGridSearchCV, cross_validate_tasks

    search = TaskGridSearchCV(mf.MetaBayes(basis=mf.basis.make("rbf")),
                              {"basis__n_basis": [10, 20, 40], "covariance": ["full", "diag"]},
                              cv=TaskKFold(5, shuffle=True, random_state=0), scoring="nll")
    search.fit(tasks).best_params_

Folds never split a task, scores come from the learner's own ``evaluate`` on the held-out tasks
(greater is better: losses such as mse and nll are negated), see docs/model-selection.md.
"""

from metafast.model_selection._scoring import get_scorer
from metafast.model_selection._search import TaskGridSearchCV, TaskRandomizedSearchCV
from metafast.model_selection._split import TaskKFold, task_splits
from metafast.model_selection._validation import cross_validate_tasks

__all__ = [
    "TaskKFold",
    "TaskGridSearchCV",
    "TaskRandomizedSearchCV",
    "cross_validate_tasks",
    "get_scorer",
    "task_splits",
]
