"""The plugin manager: registration rules, broken plugins, switches, laziness and the report.

In-process plugins (modules built here) cover the rules; fake installed distributions (a
``*.dist-info`` with METADATA and entry_points.txt on PYTHONPATH of a subprocess) cover entry
points, the warning text with distribution and version, and the strict / disable switches.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
import threading
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

import metafast as mf
from metafast import hookspecs
from metafast.cli import format_plugin_report
from metafast.plugins import (
    DEFAULT_PLUGINS,
    MetafastPluginWarning,
    PluginError,
    PluginHost,
    UnknownNameError,
    plugin_report,
    using_host,
)

ROOT = Path(__file__).resolve().parents[1]
METAFAST_PARENT = str(Path(mf.__file__).resolve().parents[1])


class Square(mf.basis.BasisFamily):
    """A tiny valid family: g_j(x) = (x_0 - j)^2."""

    def __init__(self, n_basis=3):
        self.n_basis = n_basis

    def fit(self, X, y=None):
        return self

    def design(self, X):
        return (X[:, :1] - np.arange(self.n_basis, dtype=X.dtype)) ** 2


class NoDesign(mf.basis.BasisFamily):
    def __init__(self, n_basis=3):
        self.n_basis = n_basis


def lines_loader(n_tasks=3, n_support=2, n_query=2, seed=0):
    return mf.tasks.load("sinusoid", n_tasks=n_tasks, n_support=n_support, n_query=n_query, seed=seed)


def make_plugin(name="p", **hooks) -> types.ModuleType:
    """A module whose attributes are the given hook functions, marked with metafast.hookimpl."""
    module = types.ModuleType(name)
    for hook, fn in hooks.items():
        fn.__name__ = hook
        setattr(module, hook, mf.hookimpl(fn))
    return module


def host_with(*plugins, **kwargs) -> PluginHost:
    return PluginHost(entry_points=False, plugins=tuple((p.__name__, p) for p in plugins), **kwargs)


def families(**named):
    def metafast_basis_families(register):
        for name, obj in named.items():
            register(name, obj)

    return metafast_basis_families


def loaders(**named):
    def metafast_task_loaders(register):
        for name, obj in named.items():
            register(name, obj)

    return metafast_task_loaders


# ---------------------------------------------------------------------------------- registries
def test_builtins_register_through_the_same_hooks():
    host = PluginHost(entry_points=False)
    assert not host.loaded
    by_name = {r["name"]: r for r in host.report()}
    basis = by_name["metafast.basis._builtins"]
    assert basis["builtin"] and basis["status"] == "loaded" and basis["distribution"] == "metafast"
    assert "rbf" in basis["provides"]["basis family"]
    assert basis["hooks"] == ["metafast_basis_families"]
    assert "sinusoid" in by_name["metafast.tasks._builtins"]["provides"]["task loader"]


def test_in_process_plugin_provides_family_and_loader():
    plugin = make_plugin(
        "square_plugin",
        metafast_basis_families=families(square=Square),
        metafast_task_loaders=loaders(lines=lines_loader),
    )
    with using_host(host_with(plugin)):
        assert "square" in mf.basis.available() and "lines" in mf.tasks.available()
        B = mf.basis.make("square", n_basis=4).fit(np.zeros((2, 1)))
        np.testing.assert_array_equal(B.design(np.array([[1.0]])), [[1, 0, 1, 4]])
        assert len(mf.tasks.load("lines", n_tasks=5)) == 5
        (record,) = [r for r in plugin_report() if r["name"] == "square_plugin"]
        assert record["provides"] == {"basis family": ["square"], "task loader": ["lines"]}
        assert record["distribution"] is None and not record["builtin"]


def test_hooks_are_called_once_even_from_many_threads():
    calls = []

    def metafast_basis_families(register):
        calls.append(1)
        register("square", Square)

    host = host_with(make_plugin("counted", metafast_basis_families=metafast_basis_families))
    threads = [threading.Thread(target=lambda: host.basis.names()) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    host.basis.names()
    host.loaders.names()
    assert calls == [1]


def _stash(store):
    def metafast_basis_families(register):
        store.append(register)

    return metafast_basis_families


def _swallowing(register):
    try:
        register("rbf", Square)
    except Exception:
        pass


def _raises_after_one(register):
    register("fine", Square)
    raise RuntimeError("boom")


BROKEN = [
    (
        "raises",
        dict(metafast_basis_families=_raises_after_one),
        "raised in metafast_basis_families: RuntimeError: boom",
    ),
    (
        "taken",
        dict(metafast_basis_families=families(rbf=Square)),
        "'rbf', which is already taken (provided built into metafast)",
    ),
    ("swallows", dict(metafast_basis_families=_swallowing), "already taken"),
    (
        "not_family",
        dict(metafast_basis_families=families(bad=dict)),
        "dict is not a subclass of metafast.basis.BasisFamily",
    ),
    ("instance", dict(metafast_basis_families=families(bad=Square())), "register the class (or a factory)"),
    ("abstract", dict(metafast_basis_families=families(bad=NoDesign)), "NoDesign does not implement design(X)"),
    (
        "not_callable",
        dict(metafast_task_loaders=loaders(bad=42)),
        "invalid task loader 'bad': got a int, which is not callable",
    ),
    ("bad_name", dict(metafast_task_loaders=loaders(**{"has space": lines_loader})), "names are non-empty strings"),
    ("unknown_hook", dict(metafast_basis_familys=families(x=Square)), "unknown hook(s) metafast_basis_familys"),
    (
        "bad_signature",
        dict(metafast_basis_families=lambda registr: None),
        "is not a valid metafast plugin: PluginValidationError",
    ),
]


@pytest.mark.parametrize("name, hooks, message", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_plugin_is_reported_and_skipped_as_a_whole(name, hooks, message):
    good = make_plugin("good", metafast_task_loaders=loaders(lines=lines_loader))
    broken = (
        make_plugin(name, metafast_task_loaders=loaders(partial=lines_loader), **hooks)
        if "metafast_task_loaders" not in hooks
        else make_plugin(name, **hooks)
    )
    host = host_with(broken, good)
    with pytest.warns(MetafastPluginWarning) as caught:
        host.load()
    text = str(caught[0].message)
    assert f"plugin {name!r}" in text and message in text, text
    assert "fine" not in host.basis and "partial" not in host.loaders  # nothing of it is kept
    assert "lines" in host.loaders and "rbf" in host.basis  # everything else works
    (record,) = [r for r in host.report() if r["name"] == name]
    assert record["status"] == "failed" and message in record["error"]
    assert record["provides"] == {}


def test_strict_mode_raises_with_the_cause():
    plugin = make_plugin("boom", metafast_basis_families=_raises_after_one)
    host = host_with(plugin, strict=True)
    with pytest.raises(PluginError, match="plugin 'boom'.*RuntimeError: boom") as info:
        host.basis  # noqa: B018 (the attribute access is what raises)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert not host.loaded
    strict_env = host_with(plugin, env={"METAFAST_STRICT_PLUGINS": "1"})
    with pytest.raises(PluginError):
        strict_env.load()
    relaxed = host_with(plugin, env={"METAFAST_STRICT_PLUGINS": "0"})
    with pytest.warns(MetafastPluginWarning):
        relaxed.load()


def test_register_after_the_hook_returned_is_refused():
    stash = []
    host = host_with(make_plugin("stasher", metafast_basis_families=_stash(stash)))
    host.load()
    with pytest.raises(RuntimeError, match="after the hook returned"):
        stash[0]("late", Square)
    assert "late" not in host.basis


def test_register_plugin_in_process_raises_when_broken():
    with using_host(PluginHost(entry_points=False)):
        record = mf.plugins.register_plugin(make_plugin("sq", metafast_basis_families=families(square=Square)))
        assert record["status"] == "loaded" and "square" in mf.basis.available()
        with pytest.raises(PluginError, match="already taken"):
            mf.plugins.register_plugin(make_plugin("sq2", metafast_basis_families=families(square=Square)))


def test_direct_registration_follows_the_same_rules():
    reg = PluginHost(entry_points=False).basis
    reg.register("square", Square)
    assert reg.get("square") is Square and "square" in reg.names()
    with pytest.raises(PluginError, match="already taken"):
        reg.register("rbf", Square)
    with pytest.raises(PluginError, match="not a subclass"):
        reg.register("other", dict)


# ---------------------------------------------------------------------------------- make / load
def test_unknown_names_list_close_matches():
    with pytest.raises(UnknownNameError, match=r"unknown basis family 'RBF'\. Did you mean 'rbf'\?") as info:
        mf.basis.make("RBF")
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    assert str(info.value).startswith("unknown")  # not the quoted KeyError text
    with pytest.raises(UnknownNameError, match="Did you mean 'sinusoid'"):
        mf.tasks.load("sinusoids")
    with pytest.raises(TypeError, match="names are strings"):
        mf.basis.make(3)


def test_wrong_parameters_name_the_family_and_what_it_accepts():
    with pytest.raises(
        TypeError,
        match=r"basis family 'rbf' built into metafast got unknown parameter\(s\) "
        r"'lenght_scale' \(did you mean 'length_scale'\?\); it accepts: n_basis",
    ):
        mf.basis.make("rbf", lenght_scale=1.0)

    def needs_path(path, n_support=5):
        raise ValueError("argument 'path' is not a directory")  # the loader's own error

    with using_host(host_with(make_plugin("p", metafast_task_loaders=loaders(needy=needs_path)))):
        with pytest.raises(TypeError, match="task loader 'needy' from plugin 'p'.*missing a required argument: 'path'"):
            mf.tasks.load("needy")
        with pytest.raises(ValueError, match="argument 'path' is not a directory"):
            mf.tasks.load("needy", path="x")


def test_factories_and_loader_results_are_checked_at_call_time():
    def good_factory(n_basis=2):
        return Square(n_basis=n_basis)

    def chunks(n_chunks=2):
        for i in range(n_chunks):
            yield lines_loader(seed=i)

    def junk_chunks():
        yield lines_loader()
        yield "not a TaskSet"

    plugin = make_plugin(
        "factories",
        metafast_basis_families=families(sq=good_factory, liar=lambda **p: "no family"),
        metafast_task_loaders=loaders(listy=lambda: [1, 2], stream=chunks, junk=junk_chunks),
    )
    with using_host(host_with(plugin)):
        assert isinstance(mf.basis.make("sq", n_basis=5), Square)
        with pytest.raises(TypeError, match="basis family 'liar' from plugin 'factories'.*returned a str, not a"):
            mf.basis.make("liar")
        with pytest.raises(TypeError, match="task loader 'listy'.*returned a list, not a metafast.tasks.TaskSet"):
            mf.tasks.load("listy")
        assert [len(c) for c in mf.tasks.load("stream", n_chunks=3)] == [3, 3, 3]
        with pytest.raises(TypeError, match="yielded a str as chunk 1"):
            list(mf.tasks.load("junk"))


def test_benchmark_suite_hook():
    def metafast_benchmark_suites(register):
        register(name="tiny", obj=lambda: {"tasks": "sinusoid"})  # keywords work too

    with using_host(host_with(make_plugin("suites", metafast_benchmark_suites=metafast_benchmark_suites))):
        assert mf.plugins.suite_registry().names() == ["tiny"]


def test_report_text_lists_loaded_failed_and_disabled():
    report = [
        {
            "name": "metafast.basis._builtins",
            "distribution": "metafast",
            "version": "0.1.0",
            "builtin": True,
            "status": "loaded",
            "provides": {"basis family": ["rbf"]},
            "error": None,
        },
        {
            "name": "wavelets",
            "distribution": "metafast-wavelets",
            "version": "0.1.0",
            "builtin": False,
            "status": "loaded",
            "provides": {"basis family": ["mexican-hat", "morlet"]},
            "error": None,
        },
        {
            "name": "broken",
            "distribution": "metafast-broken",
            "version": "0.3.1",
            "builtin": False,
            "status": "failed",
            "provides": {},
            "error": "failed to import: ImportError: nope",
        },
        {
            "name": "off",
            "distribution": "metafast-off",
            "version": "2.0",
            "builtin": False,
            "status": "disabled",
            "provides": {},
            "error": None,
        },
    ]
    text = format_plugin_report(report)
    assert "built-in metafast.basis._builtins  [metafast 0.1.0]\n      basis families: rbf" in text
    assert "wavelets  [metafast-wavelets 0.1.0]\n      basis families: mexican-hat, morlet" in text
    assert (
        "Failed to load (skipped):\n  broken  [metafast-broken 0.3.1]\n      failed to import: ImportError: nope"
        in text
    )
    assert "Disabled by METAFAST_DISABLE_PLUGINS:\n  off  [metafast-off 2.0]" in text


# ---------------------------------------------------------------------------------- entry points
GOOD_PLUGIN = """
import numpy as np
import metafast

CALLS = []

class Ramp(metafast.basis.BasisFamily):
    def __init__(self, n_basis=2):
        self.n_basis = n_basis
    def fit(self, X, y=None):
        return self
    def design(self, X):
        return X[:, :1] * np.arange(1, self.n_basis + 1, dtype=X.dtype)

@metafast.hookimpl
def metafast_basis_families(register):
    CALLS.append(1)
    register("ramp", Ramp)
"""


def fake_distribution(site: Path, dist: str, version: str, ep_name: str, module: str, code: str) -> None:
    """Install a distribution by hand: a module plus ``<dist>-<version>.dist-info``."""
    (site / f"{module}.py").write_text(textwrap.dedent(code))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[metafast]\n{ep_name} = {module}\n")


@pytest.fixture
def site(tmp_path):
    fake_distribution(tmp_path, "metafast-good", "1.2", "good", "mf_good_plugin", GOOD_PLUGIN)
    fake_distribution(
        tmp_path, "metafast-broken", "0.3.1", "broken", "mf_broken_plugin", "import mf_no_such_module_xyz\n"
    )
    fake_distribution(
        tmp_path,
        "metafast-clash",
        "2.0",
        "clash",
        "mf_clash_plugin",
        """
        import metafast
        @metafast.hookimpl
        def metafast_basis_families(register):
            register("rbf", object)
        """,
    )
    fake_distribution(
        tmp_path,
        "metafast-raiser",
        "0.0.1",
        "raiser",
        "mf_raiser_plugin",
        """
        import metafast
        @metafast.hookimpl
        def metafast_task_loaders(register):
            raise OSError("disk on fire")
        """,
    )
    return tmp_path


PROBE = """
import json, sys, warnings
warnings.simplefilter("always")
import metafast as mf
lazy = mf.plugins._host is None and "mf_good_plugin" not in sys.modules
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    names = mf.basis.available()
    mf.basis.available(); mf.tasks.available()
good = sys.modules.get("mf_good_plugin")
out = {
    "basis": names,
    "warnings": [str(w.message) for w in caught if w.category.__name__ == "MetafastPluginWarning"],
    "report": {r["name"]: r for r in mf.plugins.plugin_report()},
    "calls": len(good.CALLS) if good else 0,
    "lazy": lazy,
    "text": __import__("metafast.cli").cli.format_plugin_report(),
}
if "ramp" in names:
    import numpy as np
    out["ramp"] = mf.basis.make("ramp", n_basis=3).fit(np.ones((2, 1))).weighted_sum(np.array([[2.0]]), np.ones(3)).tolist()
print(json.dumps(out))
"""


def run_probe(site: Path, **env_vars: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAFAST_")}
    env.update(env_vars, PYTHONPATH=os.pathsep.join([str(site), METAFAST_PARENT]))
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, cwd=site)


def test_installed_broken_plugins_are_reported_and_skipped(site):
    proc = run_probe(site)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ramp"] == [12.0]  # the good plugin works: 2 * (1 + 2 + 3)
    assert out["lazy"] and out["calls"] == 1  # not on import metafast; then once
    warnings_by_plugin = {w.split("'")[1]: w for w in out["warnings"]}
    assert sorted(warnings_by_plugin) == ["broken", "clash", "raiser"]
    assert "distribution metafast-broken 0.3.1" in warnings_by_plugin["broken"]
    assert (
        "failed to import: ModuleNotFoundError: No module named 'mf_no_such_module_xyz'" in warnings_by_plugin["broken"]
    )
    assert "distribution metafast-clash 2.0" in warnings_by_plugin["clash"]
    assert "'rbf', which is already taken" in warnings_by_plugin["clash"]
    assert "distribution metafast-raiser 0.0.1" in warnings_by_plugin["raiser"]
    assert "raised in metafast_task_loaders: OSError: disk on fire" in warnings_by_plugin["raiser"]
    assert "METAFAST_DISABLE_PLUGINS=broken" in warnings_by_plugin["broken"]
    report = out["report"]
    assert report["good"]["status"] == "loaded" and report["good"]["version"] == "1.2"
    assert report["good"]["distribution"] == "metafast-good" and report["good"]["module"] == "mf_good_plugin"
    assert report["broken"]["status"] == "failed"
    assert "rbf" in out["basis"] and "ramp" in out["basis"]
    assert "Failed to load (skipped):" in out["text"] and "metafast-broken 0.3.1" in out["text"]


def test_strict_switch_turns_a_broken_plugin_into_an_error(site):
    proc = run_probe(site, METAFAST_STRICT_PLUGINS="1")
    assert proc.returncode != 0
    assert "metafast.plugins.PluginError" in proc.stderr
    assert "distribution metafast-broken 0.3.1" in proc.stderr and "ModuleNotFoundError" in proc.stderr


def test_disable_switch_skips_by_entry_point_or_distribution_name(site):
    # entry-point name, then distribution names spelled with other separators and case
    names = "broken, metafast_clash,METAFAST.RAISER"
    proc = run_probe(site, METAFAST_DISABLE_PLUGINS=names, METAFAST_STRICT_PLUGINS="1")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["warnings"] == []
    assert {out["report"][n]["status"] for n in ("broken", "clash", "raiser")} == {"disabled"}
    assert out["ramp"] == [12.0]
    assert "Disabled by METAFAST_DISABLE_PLUGINS:" in out["text"]


def test_autoload_switch_loads_built_ins_only(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    host = PluginHost(env={"METAFAST_DISABLE_PLUGIN_AUTOLOAD": "1", "METAFAST_STRICT_PLUGINS": "1"})
    assert [r["builtin"] for r in host.report()] == [True] * len(DEFAULT_PLUGINS)
    with pytest.warns(MetafastPluginWarning, match="metafast-broken 0.3.1"):  # in-process too
        loaded = PluginHost(disabled=("clash", "raiser", "wavelets", "csvtasks")).load()
    assert "ramp" in loaded.basis


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(
    not (_installed("metafast-wavelets") and _installed("metafast-csvtasks")),
    reason="example plugins not installed (pip install ./plugins/metafast-wavelets ./plugins/metafast-csvtasks)",
)
def test_installed_example_plugins_are_found_through_entry_points():
    host = PluginHost(disabled=(), strict=False)  # other installed plugins may be broken: not our test
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetafastPluginWarning)
        report = {r["name"]: r for r in host.report()}
    assert report["wavelets"]["distribution"] == "metafast-wavelets"
    assert report["wavelets"]["provides"]["basis family"] == ["mexican-hat", "morlet"]
    assert report["csvtasks"]["provides"] == {"task loader": ["csv-dir", "csv-long", "stations"]}
    with using_host(host):
        B = mf.basis.make("morlet", n_basis=7).fit(np.linspace(0, 1, 9)[:, None])
        assert B.design(np.zeros((2, 1))).shape == (2, 7)
        assert len(mf.tasks.load("stations", n_support=5, n_query=5, n_tasks=4)) == 4


# ---------------------------------------------------------------------------------- docs
def test_every_hook_is_documented_with_its_signature():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    host = PluginHost(entry_points=False).load()
    hooks = [name for name in dir(host.pm.hook) if name.startswith("metafast_")]
    assert sorted(hooks) == sorted(hookspecs.HOOK_KINDS)
    for name in hooks:
        argnames = getattr(host.pm.hook, name).spec.argnames
        assert f"{name}({', '.join(argnames)})" in docs, f"docs/plugins.md lacks {name}"
    for needle in (
        "check_basis_family",
        "check_task_loader",
        "METAFAST_STRICT_PLUGINS",
        "METAFAST_DISABLE_PLUGINS",
        "[project.entry-points.metafast]",
    ):
        assert needle in docs


def test_the_documented_example_plugin_works_and_conforms(monkeypatch):
    from metafast.testing import check_basis_family, check_task_loader

    docs = (ROOT / "docs" / "plugins.md").read_text()
    code = docs.split("`metafast_hermite.py`:\n\n```python\n", 1)[1].split("```", 1)[0]
    module = types.ModuleType("metafast_hermite")
    monkeypatch.setitem(sys.modules, "metafast_hermite", module)  # so that pickling finds it
    exec(compile(code, "docs/plugins.md", "exec"), module.__dict__)
    with using_host(host_with(module, strict=True)):
        B = mf.basis.make("hermite", n_basis=4).fit(np.array([[-1.0], [1.0]]))
        np.testing.assert_allclose(B.design(np.array([[2.0]])), [[1, 2, 3, 2]])  # He_k(2)
        check_basis_family(B)
        check_task_loader("lines", n_tasks=4, n_support=3, n_query=2, seed=0)
