"""Fail early, with instructions, when the compiled kernels are missing."""

try:
    from metafast._kernels import _info  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by hand on an unbuilt checkout
    raise ImportError(
        "metafast's compiled kernels are not built (could not import "
        f"metafast._kernels._info: {exc}).\n"
        "If you are working in a source checkout, build them with one of:\n"
        "    pip install -e . --no-build-isolation     (after: pip install 'cython>=3' 'numpy>=2' scipy setuptools)\n"
        "    python setup.py build_ext --inplace\n"
        "then import metafast again. An installed metafast (pip install .) needs no extra step."
    ) from exc
