"""Whole groups as training tasks, group splits, model files and the fit / predict / info commands."""

import json
import pickle
import re

import numpy as np
import pytest

import metafast as mf
from metafast.cli import main
from metafast.model_file import MAGIC, load_model, read_header, save_model

pd = pytest.importorskip("pandas")


def panel(n_groups=40, n_rows=12, seed=0, missing_every=0):
    """Growth curves y = a + b x + c x^2 + noise per group, x in [0, 1]."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        a, b, c = rng.normal([1.0, 2.0, -1.0], [0.5, 0.5, 0.3])
        x = np.sort(rng.uniform(0, 1, n_rows))
        y = a + b * x + c * x**2 + rng.normal(0, 0.05, n_rows)
        rows += [{"site": f"s{g:03d}", "x": xi, "y": yi} for xi, yi in zip(x, y)]
    df = pd.DataFrame(rows)
    if missing_every:
        df.loc[df.index % missing_every == 0, "y"] = np.nan
    return df


# ---------------------------------------------------------------------------------- tasks
def test_from_frame_whole_groups_put_every_row_in_the_support():
    df = panel(n_groups=5, n_rows=7)
    ts = mf.tasks.from_frame(df, group="site", features="x", target="y", n_support=None)
    assert len(ts) == 5 and ts.X_support.shape[0] == 35 and ts.X_query.shape[0] == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([d["support_rows"] for d in ts.info])), np.arange(35))
    with pytest.raises(ValueError, match="n_query"):
        mf.tasks.from_frame(df, group="site", features="x", target="y", n_support=None, n_query=2)


def test_split_groups_is_by_group_reproducible_and_k_shot():
    df = panel(n_groups=30, n_rows=9)
    whole = mf.tasks.from_frame(df, group="site", features="x", target="y", n_support=None)
    train, test = mf.tasks.split_groups(whole, test_size=0.2, n_support=3, seed=1)
    again_train, again_test = mf.tasks.split_groups(whole, test_size=0.2, n_support=3, seed=1)
    assert train.equals(again_train) and test.equals(again_test)
    assert len(train) == 24 and len(test) == 6
    assert {d["group"] for d in train.info}.isdisjoint({d["group"] for d in test.info})
    assert np.all(test.support_sizes == 3) and np.all(test.query_sizes == 6)
    assert train.X_query.shape[0] == 0 and np.all(train.support_sizes == 9)
    for t in range(len(test)):  # rows in info follow the rows of the task
        d = test.info[t]
        np.testing.assert_array_equal(df.x.to_numpy()[d["support_rows"]], test[t].X_support[:, 0])
        np.testing.assert_array_equal(df.y.to_numpy()[d["query_rows"]], test[t].y_query)
    with pytest.raises(ValueError, match="n_support \\+ 1"):
        mf.tasks.split_groups(whole, test_size=3, n_support=9)
    with pytest.raises(ValueError, match="test_size"):
        mf.tasks.split_groups(whole, test_size=30, n_support=2)


def test_whole_groups_train_and_evaluate_refuses_tasks_without_query():
    df = panel(n_groups=60, n_rows=10)
    whole = mf.tasks.from_frame(df, group="site", features="x", target="y", n_support=None)
    train, test = mf.tasks.split_groups(whole, test_size=20, n_support=4, seed=0)
    model = mf.MetaBayes(basis=mf.basis.make("polynomial", n_basis=4)).fit(train)
    assert model.evaluate(test)["mse"] < 0.05
    with pytest.raises(ValueError, match="query"):
        model.evaluate(train)


# ---------------------------------------------------------------------------------- model files
def test_model_file_round_trip_and_refusals(tmp_path):
    train = mf.tasks.load("sinusoid", n_tasks=30, n_support=5, n_query=5, seed=0)
    model = mf.MetaRidge(basis=mf.basis.make("rbf", n_basis=8)).fit(train)
    path = save_model(model, tmp_path / "m.mf", {"note": "hello", "n": np.int64(3)})
    back = load_model(path)
    np.testing.assert_array_equal(back.prior_mean_, model.prior_mean_)
    assert read_header(path)["metadata"] == {"note": "hello", "n": 3}
    raw = path.read_bytes()

    def refused(data, match):
        bad = tmp_path / "bad.mf"
        bad.write_bytes(data)
        with pytest.raises(ValueError, match=match) as info:
            load_model(bad)
        assert "bad.mf" in str(info.value)

    refused(b"random bytes" * 10, "not a metafast model file")
    refused(pickle.dumps(model), "not a metafast model file")
    refused(raw[:-10], "truncated or corrupted")
    flipped = bytearray(raw)
    flipped[-100] ^= 0xFF
    refused(bytes(flipped), "truncated or corrupted")
    refused(MAGIC + b"{not json\n" + b"x", "damaged header")
    refused(MAGIC + b"[1, 2]\n", "damaged header")
    header = json.loads(raw[len(MAGIC) :].split(b"\n", 1)[0])
    payload = raw[len(MAGIC) :].split(b"\n", 1)[1]
    for key, value, match in (("metafast", "0.0.1", "metafast 0.0.1"), ("numpy", "1.26.0", "numpy 1.26.0")):
        h = json.loads(json.dumps(header))
        h["versions"][key] = value
        refused(MAGIC + json.dumps(h).encode() + b"\n" + payload, match)
    h = dict(header, format=99)
    refused(MAGIC + json.dumps(h).encode() + b"\n" + payload, "format 99")
    with pytest.raises(ValueError, match="cannot read"):
        load_model(tmp_path / "missing.mf")


# ---------------------------------------------------------------------------------- commands
def test_fit_predict_info_on_a_table(tmp_path, capsys):
    train = panel(n_groups=50, n_rows=15, seed=0)
    new = panel(n_groups=6, n_rows=15, seed=1)
    truth = new.y.to_numpy().copy()
    hide = np.ones(len(new), dtype=bool)
    hide[new.groupby("site").head(4).index] = False  # 4 labelled rows per new group
    new.loc[hide, "y"] = np.nan
    new.loc[new.site == "s005", "y"] = np.nan  # a group with no labelled row: prior only
    train.to_csv(tmp_path / "train.csv", index=False)
    new.to_csv(tmp_path / "new.csv", index=False)
    model, out = str(tmp_path / "m.mf"), str(tmp_path / "out.csv")
    assert (
        main(
            [
                "fit",
                str(tmp_path / "train.csv"),
                "--group",
                "site",
                "--target",
                "y",
                "--basis",
                "polynomial:n_basis=4",
                "-o",
                model,
            ]
        )
        == 0
    )
    assert main(["info", model]) == 0
    text = capsys.readouterr().out
    assert "MetaBayes" in text and "training groups: 50" in text and "numpy" in text
    assert main(["predict", model, str(tmp_path / "new.csv"), "-o", out]) == 0
    assert "prior alone" in capsys.readouterr().err
    res = pd.read_csv(out)
    assert list(res.columns) == ["site", "x", "y", "y_mean", "y_std", "y_lower90", "y_upper90"]
    predicted = res.y.isna().to_numpy()
    assert np.array_equal(res.y_mean.notna().to_numpy(), predicted)
    err = res.y_mean.to_numpy()[predicted] - truth[predicted]
    seen = predicted & (res.site != "s005").to_numpy()
    assert np.mean((res.y_mean.to_numpy() - truth)[seen] ** 2) < 0.02
    assert np.all(res.y_lower90[predicted] < res.y_upper90[predicted])
    assert np.isfinite(err).all()
    # the same through the library: predictions equal adapt_predict on each group
    fitted = load_model(model)
    g = new[new.site == "s000"]
    lab = g.y.notna().to_numpy()
    expect = fitted.adapt_predict(g.x.to_numpy()[lab, None], g.y.to_numpy()[lab], g.x.to_numpy()[~lab, None])
    np.testing.assert_allclose(res[res.site == "s000"].y_mean.to_numpy()[~lab], expect, rtol=1e-8)


def test_ridge_learner_and_params(tmp_path):
    panel(n_groups=20, n_rows=8).to_csv(tmp_path / "t.csv", index=False)
    model = str(tmp_path / "r.mf")
    assert (
        main(
            [
                "fit",
                str(tmp_path / "t.csv"),
                "--group",
                "site",
                "--target",
                "y",
                "--learner",
                "ridge",
                "--param",
                "alphas=[0.1, 1.0]",
                "-q",
                "-o",
                model,
            ]
        )
        == 0
    )
    assert type(load_model(model)).__name__ == "MetaRidge"


@pytest.mark.parametrize(
    "table, args, message",
    [
        ("", [], "is empty"),
        ("site,x,y\n", [], "no data rows"),
        ("site,x,y\na,1,2\n", ["--target", "z"], "no column 'z'"),
        ("site,x,y\na,1,2\na,hello,3\n", [], "'hello' at row 1"),
        ("site,x,y\na,1,2\nb,2,\n", [], "no labelled row.*'b'"),
        ("site,x,y\na,1,2\na,,3\n", [], "NaN at row 1"),
    ],
)
def test_fit_reports_bad_tables(tmp_path, capsys, table, args, message):
    path = tmp_path / "t.csv"
    path.write_text(table)
    argv = ["fit", str(path), "--group", "site", "--target", "y", "--features", "x", "-o", str(tmp_path / "m")]
    if args:
        argv[argv.index("--target") + 1] = args[1]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("metafast fit: error:") and re.search(message, err), err
    assert not (tmp_path / "m").exists()


def test_predict_reports_bad_inputs(tmp_path, capsys):
    panel(n_groups=10, n_rows=6).to_csv(tmp_path / "t.csv", index=False)
    model = str(tmp_path / "m.mf")
    assert main(["fit", str(tmp_path / "t.csv"), "--group", "site", "--target", "y", "-q", "-o", model]) == 0
    (tmp_path / "new.csv").write_text("site,y\na,1\n")
    assert main(["predict", model, str(tmp_path / "new.csv"), "-o", str(tmp_path / "o.csv")]) == 2
    assert "no column 'x'" in capsys.readouterr().err
    (tmp_path / "junk.mf").write_bytes(b"\x00junk")
    assert main(["predict", str(tmp_path / "junk.mf"), str(tmp_path / "new.csv"), "-o", str(tmp_path / "o.csv")]) == 2
    assert "not a metafast model file" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "junk.mf")]) == 2


def test_classifier_from_a_table(tmp_path):
    """Integer targets pick MetaClassifier; predict writes each unlabelled row's label and probability."""
    rng = np.random.default_rng(0)
    rows = []
    for g in range(40):
        shift = rng.normal(0, 0.5)
        x = rng.uniform(-2, 2, 16)
        y = (x + shift + rng.normal(0, 0.3, 16) > 0).astype(int)
        rows += [{"site": g, "x": xi, "y": yi} for xi, yi in zip(x, y)]
    df = pd.DataFrame(rows)
    train, new = df[df.site < 34], df[df.site >= 34].copy()
    truth = new.y.to_numpy().copy()
    new["y"] = new["y"].astype(float)
    new.loc[new.groupby("site").cumcount() >= 6, "y"] = np.nan
    train.to_csv(tmp_path / "t.csv", index=False)
    new.to_csv(tmp_path / "n.csv", index=False)
    model, out = str(tmp_path / "c.mf"), str(tmp_path / "o.csv")
    assert (
        main(
            [
                "fit",
                str(tmp_path / "t.csv"),
                "--group",
                "site",
                "--target",
                "y",
                "--features",
                "x",
                "--basis",
                "polynomial:n_basis=3",
                "-q",
                "-o",
                model,
            ]
        )
        == 0
    )
    assert type(load_model(model)).__name__ == "MetaClassifier"
    assert main(["predict", model, str(tmp_path / "n.csv"), "-o", out]) == 0
    res = pd.read_csv(out)
    todo = res.y.isna().to_numpy()
    assert set(res.y_pred[todo].astype(int)) <= {0, 1} and res.y_pred[~todo].isna().all()
    assert np.all((res.y_proba[todo] >= 0.5) & (res.y_proba[todo] <= 1))
    assert np.mean(res.y_pred[todo].astype(int).to_numpy() == truth[todo]) > 0.75
