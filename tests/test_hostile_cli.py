"""Issue 23, command side: regression tests for ``metafast fit`` / ``predict`` / ``plugins`` on
hostile tables and output paths (D2, D4, D5, D6, D14, D20)."""

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import metafast
from metafast.cli import main
from metafast.plugins import PluginHost, using_host

# the folder holding the metafast under test (site-packages when installed, else this checkout)
PKG_ROOT = str(Path(metafast.__file__).resolve().parents[1])


def make_tables(folder: Path, groups=None, text_column=True):
    """A training table (every target present) and a table to predict (some targets empty)."""
    rng = np.random.default_rng(0)
    groups = groups or [f"G{g}" for g in range(12)]
    rows = []
    for g in groups:
        slope = rng.normal()
        for _ in range(8):
            x = rng.uniform(-1, 1)
            row = {"g": g, "x": x, "y": slope * x + 0.05 * rng.normal()}
            if text_column:
                row["note"] = "measured by hand"
            rows.append(row)
    train = pd.DataFrame(rows)
    new = train.copy()
    new.loc[new.index % 8 >= 6, "y"] = np.nan
    train_csv, new_csv = folder / "train.csv", folder / "new.csv"
    train.to_csv(train_csv, index=False)
    new.to_csv(new_csv, index=False)
    return train_csv, new_csv


def run_cli(capsys, *args):
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status, err, *needles):
    assert status == 2, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("note:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tables")
    train_csv, new_csv = make_tables(folder)
    model = folder / "model.mf"
    assert (
        main(
            [
                "fit",
                str(train_csv),
                "--group",
                "g",
                "--target",
                "y",
                "--features",
                "x",
                "--learner",
                "ridge",
                "-q",
                "-o",
                str(model),
            ]
        )
        == 0
    )
    return train_csv, new_csv, model


# ---------------------------------------------------------------------------------- D2
def test_d2_pandas_reads_text_columns_with_its_string_dtype(tables):
    dtype = pd.read_csv(tables[0])["note"].dtype
    if int(pd.__version__.split(".")[0]) >= 3:
        assert isinstance(dtype, pd.StringDtype)  # what broke numpy's dtype checks
    else:
        assert dtype is np.dtype(object)


def test_d2_fit_ignores_text_columns_that_are_not_features(tmp_path, capsys):
    train_csv, _ = make_tables(tmp_path)
    status, out, err = run_cli(
        capsys, "fit", train_csv, "--group", "g", "--target", "y", "--learner", "ridge", "-q", "-o", tmp_path / "m.mf"
    )
    assert status == 0, err
    assert "'note'" in err and "not numeric" in err and "Traceback" not in err
    status, out, err = run_cli(capsys, "info", tmp_path / "m.mf")
    assert "features: x" in out


def test_d2_predict_keeps_text_columns_and_predicts(tables, tmp_path, capsys):
    _, new_csv, model = tables
    status, out, err = run_cli(capsys, "predict", model, new_csv, "-o", tmp_path / "out.csv")
    assert status == 0, err
    result = pd.read_csv(tmp_path / "out.csv")
    assert (result["note"] == "measured by hand").all()
    assert result["y_mean"].notna().sum() == pd.read_csv(new_csv)["y"].isna().sum()


@pytest.mark.parametrize("command", ["fit", "predict"])
def test_d2_a_text_cell_in_a_feature_names_column_row_and_cell(tables, tmp_path, capsys, command):
    train_csv, new_csv, model = tables
    df = pd.read_csv(train_csv if command == "fit" else new_csv)
    df["x"] = df["x"].astype(object)
    df.loc[5, "x"] = "n/a?"
    bad = tmp_path / "bad.csv"
    df.to_csv(bad, index=False)
    if command == "fit":
        args = ("fit", bad, "--group", "g", "--target", "y", "--features", "x", "-o", tmp_path / "m.mf")
    else:
        args = ("predict", model, bad, "-o", tmp_path / "out.csv")
    status, out, err = run_cli(capsys, *args)
    assert_one_line_error(status, err, "'x'", "n/a?", "row 5")


def test_d2_a_text_cell_in_the_target_names_it(tables, tmp_path, capsys):
    df = pd.read_csv(tables[0])
    df["y"] = df["y"].astype(object)
    df.loc[3, "y"] = "high"
    bad = tmp_path / "bad.csv"
    df.to_csv(bad, index=False)
    status, out, err = run_cli(
        capsys, "fit", bad, "--group", "g", "--target", "y", "--features", "x", "-o", tmp_path / "m.mf"
    )
    assert_one_line_error(status, err, "'y'", "high", "row 3")


def test_d2_a_text_column_asked_for_as_a_feature_is_refused_by_name(tables, tmp_path, capsys):
    status, out, err = run_cli(
        capsys, "fit", tables[0], "--group", "g", "--target", "y", "--features", "x", "note", "-o", tmp_path / "m.mf"
    )
    assert_one_line_error(status, err, "'note'", "measured by hand")


# ---------------------------------------------------------------------------------- D4
def test_d4_fit_refuses_to_write_the_model_over_its_training_table(tables, tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_bytes(tables[0].read_bytes())
    before = table.read_bytes()
    for output in (table, tmp_path / "." / "t.csv", tmp_path / "link.csv", tmp_path / "hard.csv"):
        if output.name == "link.csv":
            output.symlink_to(table)
        if output.name == "hard.csv":
            os.link(table, output)
        status, out, err = run_cli(capsys, "fit", table, "--group", "g", "--target", "y", "-o", output)
        assert_one_line_error(status, err, "is the input")
        assert table.read_bytes() == before


@pytest.mark.parametrize("which", ["model", "table"])
def test_d4_predict_refuses_to_write_over_its_model_or_table(tables, tmp_path, capsys, which):
    model, table = tmp_path / "m.mf", tmp_path / "new.csv"
    model.write_bytes(tables[2].read_bytes())
    table.write_bytes(tables[1].read_bytes())
    target = model if which == "model" else table
    before = target.read_bytes()
    status, out, err = run_cli(capsys, "predict", model, table, "-o", target)
    assert_one_line_error(status, err, "is the input", str(target))
    assert target.read_bytes() == before


# ---------------------------------------------------------------------------------- D5
def test_d5_predict_into_a_directory_is_one_line_and_status_2(tables, tmp_path, capsys):
    status, out, err = run_cli(capsys, "predict", tables[2], tables[1], "-o", tmp_path)
    assert_one_line_error(status, err, "is a directory")
    status, out, err = run_cli(capsys, "fit", tables[0], "--group", "g", "--target", "y", "-o", tmp_path)
    assert_one_line_error(status, err, "is a directory")


def test_d5_a_full_disk_during_predict_is_one_line_and_keeps_the_old_output(tables, tmp_path, capsys, monkeypatch):
    out_csv = tmp_path / "out.csv"
    out_csv.write_text("the previous predictions\n")

    def no_space(self, fh, *args, **kwargs):
        fh.write("partial,row\n")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", no_space)
    status, out, err = run_cli(capsys, "predict", tables[2], tables[1], "-o", out_csv)
    assert_one_line_error(status, err, "No space left on device", "unchanged")
    assert out_csv.read_text() == "the previous predictions\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # no temporary file left


def test_d5_a_full_disk_while_saving_the_model_is_one_line(tables, tmp_path, capsys, monkeypatch):
    import metafast.model_file

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(metafast.model_file, "save_model", no_space)
    status, out, err = run_cli(
        capsys,
        "fit",
        tables[0],
        "--group",
        "g",
        "--target",
        "y",
        "--features",
        "x",
        "--learner",
        "ridge",
        "-o",
        tmp_path / "m.mf",
    )
    assert_one_line_error(status, err, "No space left on device")


FSIZE_RUN = """
import resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from metafast.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE semantics of Linux")
@pytest.mark.parametrize("command", ["fit", "predict"])
def test_d5_file_too_large_is_one_line_status_2_and_keeps_the_old_output(tables, tmp_path, command):
    """A real EFBIG: the file-size limit is below the output's size (Python ignores SIGXFSZ)."""
    output = tmp_path / ("m.mf" if command == "fit" else "out.csv")
    output.write_text("old\n")
    if command == "fit":
        args = ["fit", str(tables[0]), "--group", "g", "--target", "y", "--features", "x", "--learner", "ridge"]
    else:
        args = ["predict", str(tables[2]), str(tables[1])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([PKG_ROOT, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", FSIZE_RUN, "600", *args, "-q", "-o", str(output)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "too large" in proc.stderr.lower(), proc.stderr
    assert output.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [output.name]


# ---------------------------------------------------------------------------------- D6
def test_d6_output_through_a_symlink_writes_its_target_and_keeps_the_link(tables, tmp_path, capsys):
    real, link = tmp_path / "real.csv", tmp_path / "link.csv"
    real.write_text("old\n")
    os.chmod(real, 0o640)
    link.symlink_to(real)
    status, out, err = run_cli(capsys, "predict", tables[2], tables[1], "-o", link)
    assert status == 0, err
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert "y_mean" in real.read_text()
    assert stat.S_IMODE(real.stat().st_mode) == 0o640  # the replaced file keeps its mode
    model_link, model_real = tmp_path / "model-link.mf", tmp_path / "model.mf"
    model_link.symlink_to(model_real)  # dangling: fit creates the target
    status, out, err = run_cli(
        capsys,
        "fit",
        tables[0],
        "--group",
        "g",
        "--target",
        "y",
        "--features",
        "x",
        "--learner",
        "ridge",
        "-q",
        "-o",
        model_link,
    )
    assert status == 0, err
    assert model_link.is_symlink() and model_real.is_file()


@pytest.mark.parametrize("minor", [7, 3])
def test_d6_a_device_node_is_refused_and_left_alone(tables, tmp_path, capsys, minor):
    """A copy of /dev/full (1, 7) or /dev/null (1, 3) made here: never the real ones, which the old
    code replaced with regular files when run as root."""
    device = tmp_path / "device"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    except (PermissionError, AttributeError, OSError):
        pytest.skip("cannot make a device node here (needs root)")
    status, out, err = run_cli(capsys, "predict", tables[2], tables[1], "-o", device)
    assert_one_line_error(status, err, "not a regular file")
    link = tmp_path / "to-device"
    link.symlink_to(device)
    status, out, err = run_cli(capsys, "fit", tables[0], "--group", "g", "--target", "y", "-o", link)
    assert_one_line_error(status, err, "not a regular file")
    assert stat.S_ISCHR(os.stat(device).st_mode) and os.stat(device).st_rdev == os.makedev(1, minor)


def test_d6_a_fifo_is_refused_without_blocking(tables, tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    status, out, err = run_cli(capsys, "predict", tables[2], tables[1], "-o", fifo)
    assert_one_line_error(status, err, "not a regular file")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_d6_output_helper_units(tmp_path):
    from metafast._output import OutputError, check_output, write_file

    assert check_output(tmp_path / "new.csv") == (tmp_path / "new.csv").resolve()
    with pytest.raises(OutputError, match="does not exist"):
        check_output(tmp_path / "missing" / "new.csv")
    with pytest.raises(OutputError, match="empty"):
        check_output("")
    target = tmp_path / "f.bin"
    write_file(target, lambda fh: fh.write(b"\x00\x01"), binary=True)
    assert target.read_bytes() == b"\x00\x01"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------- D14
class BrokenPlugin:
    import metafast as _mf

    @_mf.hookimpl
    def metafast_task_loaders(self, register):
        raise OSError("disk on fire")


def test_d14_strict_plugins_lists_the_broken_plugin_and_exits_1_in_one_line(capsys, monkeypatch):
    monkeypatch.setenv("METAFAST_STRICT_PLUGINS", "1")
    host = PluginHost(entry_points=False, plugins=(("broken-one", BrokenPlugin()),))
    with using_host(host):
        status, out, err = run_cli(capsys, "plugins")
    assert status == 1
    assert "Failed to load (skipped):" in out and "broken-one" in out and "disk on fire" in out
    assert "rbf" in out  # the working plugins are listed too
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert "broken-one" in err and "METAFAST_STRICT_PLUGINS=1" in err


def test_d14_strict_plugins_with_nothing_broken_exits_0(capsys, monkeypatch):
    monkeypatch.setenv("METAFAST_STRICT_PLUGINS", "1")
    with using_host(PluginHost(entry_points=False)):
        status, out, err = run_cli(capsys, "plugins")
    assert status == 0 and err == ""


# ---------------------------------------------------------------------------------- D20
def test_d20_groups_named_like_missing_values_are_groups(tmp_path, capsys):
    names = ["NA", "None", "NULL", "nan", "N/A", "ZA"]
    train_csv, new_csv = make_tables(tmp_path, groups=names, text_column=False)
    status, out, err = run_cli(
        capsys, "fit", train_csv, "--group", "g", "--target", "y", "--learner", "ridge", "-o", tmp_path / "m.mf"
    )
    assert status == 0, err
    assert f"on {len(names)} groups" in out
    status, out, err = run_cli(capsys, "predict", tmp_path / "m.mf", new_csv, "-o", tmp_path / "out.csv")
    assert status == 0, err
    result = pd.read_csv(tmp_path / "out.csv", keep_default_na=False, na_values={"y_mean": [""], "y": [""]})
    assert sorted(set(result["g"])) == sorted(names)
    assert result.groupby("g")["y_mean"].count().to_dict() == dict.fromkeys(names, 2)


def test_d20_an_empty_group_cell_is_still_reported(tmp_path, capsys):
    train_csv, _ = make_tables(tmp_path, text_column=False)
    df = pd.read_csv(train_csv)
    df.loc[4, "g"] = None
    df.to_csv(train_csv, index=False)
    status, out, err = run_cli(capsys, "fit", train_csv, "--group", "g", "--target", "y", "-o", tmp_path / "m.mf")
    assert_one_line_error(status, err, "row 4")
