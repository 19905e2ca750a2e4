"""The metafast command, run as users run it: ``python -m metafast ...`` in a subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import metafast

ROOT = Path(__file__).resolve().parent.parent
# where the metafast under test lives: the checkout (built in place) or site-packages (CI tests
# the installed package, and an unbuilt checkout on the path must not shadow it)
PKG_ROOT = Path(metafast.__file__).resolve().parent.parent


def run(*args, cwd=PKG_ROOT, env=None, code=None):
    """Run metafast (``python -m metafast`` or ``python -c code``) as the tests import it; not a TTY."""
    cmd = [sys.executable] + (["-c", code] if code else ["-m", "metafast"]) + list(args)
    full_env = {**os.environ, "PYTHONPATH": str(PKG_ROOT), **(env or {})}
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300)


def test_help_and_version():
    p = run("--help")
    assert p.returncode == 0
    for cmd in ("demo", "bench", "plugins", "basis", "tasks"):
        assert cmd in p.stdout


def test_version_in_process(capsys):
    from metafast.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("metafast ")


@pytest.mark.parametrize(
    "args, expect",
    [
        (("frobnicate",), "invalid choice: 'frobnicate'"),
        (("bench", "regresion"), "Did you mean 'regression'"),
        (("basis", "rbff"), "'rbf'?"),
    ],
)
def test_bad_arguments_exit_2_with_the_valid_choices(args, expect):
    p = run(*args)
    assert p.returncode == 2, p.stderr
    assert expect in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize(
    "args, expect",
    [
        ((), "required"),
        (("bench",), "SUITE"),
        (("bench", "nonsense-suite"), ("Valid choices: classification, ", "regression, selection, speed, all")),
        (("bench", "regression", "--seed", "x"), "invalid int value"),
        (("bench", "regression", "--frob"), "unrecognized arguments"),
        (("demo", "--quick", "extra"), "unrecognized arguments"),
        (("tasks", "sinusiod"), "Did you mean 'sinusoid'"),
        (("tasks", "zzzz"), ("Valid choices: ", "sinusoid")),
        (("basis", "a", "b"), "unrecognized arguments"),
    ],
)
def test_more_bad_arguments_in_process(args, expect, capsys):
    """The same parser in-process (a subprocess per case would cost seconds each)."""
    from metafast.cli import main

    with pytest.raises(SystemExit) as exc:
        main(list(args))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    for part in (expect,) if isinstance(expect, str) else expect:
        assert part in err


def test_basis_lists_families_with_parameters_and_description():
    p = run("basis")
    assert p.returncode == 0
    lines = p.stdout.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("rbf(n_basis="))  # parameters
    assert lines[i + 1].startswith("    ") and lines[i + 1].strip()  # the one-line description


def test_basis_one_family_in_process(capsys):
    from metafast.cli import main

    assert main(["basis", "rbf"]) == 0
    assert capsys.readouterr().out.startswith("rbf(")


def test_tasks_lists_loaders_with_parameters_and_description():
    p = run("tasks")
    assert p.returncode == 0
    lines = p.stdout.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("sinusoid(") and "n_tasks=" in line)
    assert lines[i + 1].startswith("    ") and lines[i + 1].strip()


def test_plugins_lists_what_is_installed():
    p = run("plugins")
    assert p.returncode == 0
    assert "rbf" in p.stdout and "sinusoid" in p.stdout


def test_bench_regression_quick_writes_table_json_markdown_and_plots(tmp_path):
    out = tmp_path / "bench"
    p = run("bench", "regression", "--quick", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert "per-task ridge" in p.stdout and "MSE (95% CI)" in p.stdout
    data = json.loads((out / "results.json").read_text())
    assert data["suite"] == "regression"
    ok = [r for r in data["rows"] if r["status"] == "ok"]
    assert {r["shots"] for r in ok} == {5, 10} and all(r["mse"] >= 0 for r in ok)
    assert "| family | K | learner |" in (out / "results.md").read_text()
    assert (out / "regression_mse_vs_shots.png").read_bytes()[:4] == b"\x89PNG"
    assert "\r" not in p.stderr  # no progress bar when stderr is not a terminal


def test_bench_quiet_prints_only_the_table(capsys):
    from metafast.cli import main

    assert main(["bench", "demo", "--quick", "-q"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("family") and "metafast bench" not in out


@pytest.mark.slow
def test_bench_speed_quick_writes_the_fit_time_plot(tmp_path):
    p = run("bench", "speed", "--quick", "--out", str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "speed_fit_time_vs_tasks.png").exists()


def test_demo_quick_prints_the_table_and_writes_the_plot(tmp_path):
    p = run("demo", "--quick", cwd=tmp_path)  # default PNG name, in the working directory
    assert p.returncode == 0, p.stderr
    assert "metafast demo: meta-training on" in p.stdout
    assert "per-task ridge" in p.stdout and "oracle" in p.stdout
    assert (tmp_path / "metafast-demo.png").read_bytes()[:4] == b"\x89PNG"
    assert "MetaClassifier (logistic)" in p.stdout  # the classification part, its own plot
    assert (tmp_path / "metafast-demo_classification.png").read_bytes()[:4] == b"\x89PNG"
    assert "\r" not in p.stderr  # no progress bar when stderr is not a terminal


def test_demo_without_matplotlib_says_how_to_get_the_plot_and_exits_0(tmp_path):
    code = "import sys; sys.modules['matplotlib'] = None\nfrom metafast.cli import main\nsys.exit(main(sys.argv[1:]))"
    p = run("demo", "--quick", "--out", str(tmp_path / "d.png"), code=code)
    assert p.returncode == 0, p.stderr
    assert "per-task ridge" in p.stdout
    assert 'pip install "metafast[plot]"' in p.stderr
    assert not (tmp_path / "d.png").exists()


def test_bench_all_writes_one_folder_per_suite(tmp_path, monkeypatch, capsys):
    """'all' runs every suite but the demo; tiny stand-ins keep this fast."""
    from metafast.bench import Case, LearnerSpec, PerTaskRidge, Suite, suites
    from metafast.cli import main

    def tiny(name):
        def factory(quick=False, seed=0):
            spec = LearnerSpec("ridge", lambda basis, case: PerTaskRidge(basis=basis), "baseline")
            return Suite(name, [Case("sinusoid", k, spec, n_train=20, n_test=10, seed=seed) for k in (3, 6)])

        return factory

    stubbed = sorted(name for name in suites.BUILTIN_SUITES if name != "demo")
    for name in stubbed:
        monkeypatch.setitem(suites.BUILTIN_SUITES, name, tiny(name))
    assert main(["bench", "all", "-q", "--out", str(tmp_path)]) == 0
    assert {"classification", "regression", "speed"} <= set(stubbed)
    assert sorted(p.name for p in tmp_path.iterdir()) == stubbed
    assert (tmp_path / "speed" / "results.md").exists()
    assert "demo" not in capsys.readouterr().out


def test_bench_exits_1_when_a_case_failed(monkeypatch, capsys):
    from metafast.bench import Case, LearnerSpec, Suite, suites
    from metafast.cli import main

    def broken(basis, case):
        raise RuntimeError("kaput")

    monkeypatch.setitem(
        suites.BUILTIN_SUITES,
        "speed",
        lambda quick=False, seed=0: Suite("speed", [Case("sinusoid", 3, LearnerSpec("b", broken))]),
    )
    assert main(["bench", "speed", "-q"]) == 1
    assert "RuntimeError: kaput" in capsys.readouterr().out


@pytest.mark.slow
def test_benchmarks_run_all_writes_machine_summary_and_results(tmp_path):
    out = tmp_path / "RESULTS.md"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "run_all.py"),
        "--quick",
        "--only",
        "bench_regression.py",
        "--output",
        str(out),
    ]
    p = subprocess.run(
        cmd, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(PKG_ROOT)}, capture_output=True, text=True, timeout=600
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("Machine\n- CPU:")  # the machine summary comes first
    text = out.read_text()
    assert "## Machine" in text and "BLAS" in text and "| family | K | learner |" in text
    assert text.count("- CPU:") == 1  # printed once, not again by each script


def test_a_broken_suite_is_reported_and_the_others_run(monkeypatch, capsys):
    from metafast.bench import Case, LearnerSpec, PerTaskRidge, Suite, suites
    from metafast.cli import main

    def broken(quick=False):  # also: takes no seed, which get_suite must not pass
        raise RuntimeError("suite factory bug")

    def fine(quick=False):
        spec = LearnerSpec("ridge", lambda basis, case: PerTaskRidge(basis=basis), "baseline")
        return Suite("speed", [Case("sinusoid", 3, spec, n_train=10, n_test=5)])

    others = [name for name in suites.BUILTIN_SUITES if name not in ("demo", "classification")]
    for name in others:  # every other built-in suite: a tiny stand-in
        monkeypatch.setitem(suites.BUILTIN_SUITES, name, fine)
    monkeypatch.setitem(suites.BUILTIN_SUITES, "classification", broken)
    assert main(["bench", "all", "-q"]) == 1
    captured = capsys.readouterr()
    assert "RuntimeError: suite factory bug" in captured.err
    assert captured.out.count("ridge") == len(others)


def test_demo_creates_the_folder_of_its_plot(tmp_path, capsys):
    from metafast.cli import main

    assert main(["demo", "--quick", "-q", "--out", str(tmp_path / "new" / "d.png")]) == 0
    assert (tmp_path / "new" / "d.png").exists()
    assert capsys.readouterr().out.startswith("family")  # -q: no heading


def test_demo_reports_the_png_it_really_writes(tmp_path):
    from metafast.bench.plots import _save

    Figure = pytest.importorskip("matplotlib.figure").Figure

    written = _save(Figure(), tmp_path / "fits")
    assert written == tmp_path / "fits.png" and written.exists()
