"""Meta-learners: scikit-learn estimators that fit on tasks and adapt to a new task."""
