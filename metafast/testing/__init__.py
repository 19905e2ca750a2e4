"""Conformance checks that plugin authors (and metafast itself) run in their tests.

    from metafast.testing import check_basis_family, check_task_loader

    def test_my_family_conforms():
        check_basis_family(MyFamily(n_basis=12))

    def test_my_loader_conforms(tmp_path):
        check_task_loader(load_my_tasks, path=make_some_files(tmp_path), n_support=5, n_query=3)

Each check raises ``AssertionError`` with a message naming the check, the object and what is
wrong; ``basis_family_checks`` / ``task_loader_checks`` list the individual checks (for
``pytest.mark.parametrize``) and ``skip=`` leaves named checks out.  The basis-family checks
live in ``_families``, the task-loader checks in ``_loaders``; these four names are the API.
"""

from metafast.testing._families import basis_family_checks, check_basis_family
from metafast.testing._loaders import check_task_loader, task_loader_checks

__all__ = [
    "check_basis_family",
    "basis_family_checks",
    "check_task_loader",
    "task_loader_checks",
]
