"""The family kernel modules are generated from one Tempita template at build time: every module
it renders is git-ignored (never committed) and built, with the entry points its row promises."""

import importlib
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "metafast" / "_kernels" / "_families.pyx.tp"


@pytest.fixture(scope="module")
def rendered():
    tempita = pytest.importorskip("Cython.Tempita")
    if not TEMPLATE.exists():
        pytest.skip("not run from a source checkout")
    return tempita.Template(TEMPLATE.read_text(encoding="utf-8"), name=str(TEMPLATE)).substitute()


def test_every_generated_module_is_git_ignored(rendered):
    modules = re.findall(r"^#@module (\S+)$", rendered, flags=re.M)
    assert len(modules) >= 5
    ignored = set((ROOT / ".gitignore").read_text(encoding="utf-8").split())
    assert [m for m in modules if f"metafast/_kernels/{m}" not in ignored] == []


def test_every_generated_module_is_built_with_its_entry_points(rendered):
    for section in rendered.split("#@module ")[1:]:
        name = section.split("\n", 1)[0].removesuffix(".pyx")
        module = importlib.import_module(f"metafast._kernels.{name}")
        defined = re.findall(r"^def (\w+)\(", section, flags=re.M)
        assert any(d.endswith("_design") for d in defined)
        assert any(d.endswith("_weighted_sum_tasks") for d in defined)
        assert [d for d in defined if not callable(getattr(module, d, None))] == []
