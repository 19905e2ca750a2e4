"""The pickle guard: which metafast objects may be unpickled, and by which metafast.

Rule (the same for meta-learners, the per-task regressors ``adapt`` returns, mixture priors and
basis families):

* pickling stores the metafast version in the state (``_metafast_version``);
* unpickling refuses, with a ValueError naming both versions, a state written by any other
  metafast version (the full version string: fitted attributes and kernel layouts may change in
  any release, so "same major.minor" is not enough);
* a state without the tag (written before the tag existed, or not by metafast) is refused too,
  since nothing says which layout it has.

``copy.deepcopy`` and ``sklearn.clone`` go through the same path and always pass (same process,
same version).  Refit the model with the installed metafast instead of unpickling an old one.
"""

from __future__ import annotations

from metafast._version import __version__

VERSION_KEY = "_metafast_version"


class VersionTagged:
    """Mixin (put it before BaseEstimator) that applies the rule above to ``__getstate__`` /
    ``__setstate__``."""

    def __getstate__(self):
        parent = getattr(super(), "__getstate__", None)
        state = dict((parent() if parent is not None else None) or self.__dict__)
        state[VERSION_KEY] = __version__
        return state

    def __setstate__(self, state):
        check_pickled_version(state, type(self).__name__)
        parent = getattr(super(), "__setstate__", None)
        if parent is not None:
            parent(state)
        else:  # pragma: no cover - every tagged class derives from BaseEstimator
            self.__dict__.update(state)


def check_pickled_version(state: dict, what: str) -> None:
    """Raise ValueError unless ``state`` was pickled by this very metafast version."""
    saved = state.get(VERSION_KEY) if isinstance(state, dict) else None
    if saved is None:
        raise ValueError(
            f"this pickled {what} carries no metafast version tag (it was written by a metafast "
            f"older than the tag, or not by metafast): refit it with metafast {__version__}"
        )
    if str(saved) != __version__:
        raise ValueError(
            f"this {what} was pickled by metafast {saved}, which is not compatible with the "
            f"installed metafast {__version__} (pickles are only read by the version that wrote "
            "them): refit it with this version"
        )
