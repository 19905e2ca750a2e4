"""The one exception that turns a benchmark case into a reported skip instead of an error."""


class Unavailable(Exception):
    """A learner, task family, basis family or noise-free target is not available in this install.

    Factories raise it (e.g. ``MetaBayes`` not importable yet, a family no plugin provides); the
    runner records the case as ``status="skipped"`` with this message and runs the rest.
    """
