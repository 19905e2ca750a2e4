"""Model files hold no executable payload (issue 23, D3), and predict/info/load_model never run
code from a forged file; every learner and basis family round-trips exactly (D3); predict on a
file without table metadata is one line (D7); oversized metadata is refused at save (D18)."""

import hashlib
import io
import json
import os
import pickle
import warnings
import zipfile

import numpy as np
import pytest

import metafast as mf
from metafast.cli import main
from metafast.model_file import (
    FORMAT,
    MAGIC,
    MAX_HEADER_BYTES,
    LegacyModelWarning,
    UntrustedModelError,
    load_model,
    read_header,
    save_model,
)

warnings.filterwarnings("ignore", category=Warning, module="metafast")  # short fits do not converge


def _reg(n_tasks=16, seed=0):
    return mf.tasks.load("sinusoid", n_tasks=n_tasks, n_support=6, n_query=4, seed=seed)


def _cls(n_tasks=16):
    return mf.tasks.load("logistic", n_tasks=n_tasks, n_support=6, n_query=4, seed=0)


class _Boom:
    """Unpickling this runs a shell command that creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Touchy:
    """Rebuilding this (skops calls __setstate__) creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __setstate__(self, state):
        open(state["marker"], "w").close()


# ---------------------------------------------------------------------------------- forging
def _header(payload: bytes, fmt=FORMAT, **extra) -> bytes:
    versions = read_header(_good_file.path)["versions"]
    header = {
        "format": fmt,
        "versions": versions,
        "class": "MetaBayes",
        "metadata": extra.pop("metadata", {}),
        "payload_bytes": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        **extra,
    }
    return MAGIC + json.dumps(header).encode() + b"\n" + payload


def _archive(root, arrays=None, raw=None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("description.json", json.dumps({"root": root}))
        for key, arr in (arrays or {}).items():
            with zf.open(key + ".npy", "w") as fh:
                np.lib.format.write_array(fh, arr, allow_pickle=True)
        for key, data in (raw or {}).items():
            zf.writestr(key, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def _good_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "good.mf"
    model = mf.MetaBayes(basis=mf.basis.make("polynomial", n_basis=3), max_iter=5).fit(_reg())
    save_model(model, path, {"group": ["g"], "features": ["x"], "target": "y", "learner": "MetaBayes"})
    _good_file.path = path
    return path


def _forgeries(marker):
    """name -> file bytes, each of which would create ``marker`` if anything in it ran."""
    boom = pickle.dumps(_Boom(marker))
    meta = {"group": ["g"], "features": ["x"], "target": "y"}
    skops_io = pytest.importorskip("skops.io")
    touchy = np.frombuffer(skops_io.dumps(_Touchy(marker)), dtype=np.uint8)
    obj = {"$": "object", "id": 0, "s": {"$": "dict", "v": {"command": f"touch {marker}"}}}
    return {
        "format-1 pickle, self-consistent header": _header(boom, fmt=1, metadata=meta),
        "format 2, class os.system": _header(_archive(dict(obj, c="os.system")), metadata=meta),
        "format 2, class builtins.eval": _header(_archive(dict(obj, c="builtins.eval")), metadata=meta),
        "format 2, class subprocess.Popen": _header(_archive(dict(obj, c="subprocess.Popen")), metadata=meta),
        "format 2, a class value": _header(_archive({"$": "class", "c": "subprocess.Popen"}), metadata=meta),
        "format 2, a type value": _header(_archive({"$": "type", "v": "posix.system"}), metadata=meta),
        "format 2, a non-allow-listed class": _header(_archive(dict(obj, c=f"{__name__}._Touchy")), metadata=meta),
        "format 2, skops with an unknown type": _header(
            _archive({"$": "foreign", "id": 0, "k": "s0", "type": "x"}, {"s0": touchy}), metadata=meta
        ),
        "format 2, object array in the npz": _header(
            _archive({"$": "array", "id": 0, "k": "a0"}, {"a0": np.array([_Boom(marker)], dtype=object)}), metadata=meta
        ),
        "format 2, pickle as description": _header(_archive(None, raw={"description.json": boom}), metadata=meta),
        "format 2, pickle as archive": _header(boom, metadata=meta),
    }


def test_forged_files_never_run_code(tmp_path, _good_file, capsys):
    marker = tmp_path / "pwned"
    table = tmp_path / "t.csv"
    table.write_text("g,x,y\na,0.5,1.0\na,0.7,\n")
    for name, data in _forgeries(marker).items():
        path = tmp_path / "forged.mf"
        path.write_bytes(data)
        with pytest.raises(ValueError) as err:
            load_model(path)
        assert "forged.mf" in str(err.value), name
        assert main(["predict", str(path), str(table), "-o", str(tmp_path / "o.csv")]) == 2, name
        out = capsys.readouterr()
        assert out.err.startswith("metafast predict: error:") and "Traceback" not in out.err, name
        assert main(["info", str(path)]) == 0, name
        capsys.readouterr()
        assert not marker.exists(), f"{name}: code from the file ran"
        assert not (tmp_path / "o.csv").exists()
    for untrusted in ("format 2, class os.system", "format 2, skops with an unknown type"):
        (tmp_path / "forged.mf").write_bytes(_forgeries(marker)[untrusted])
        with pytest.raises(UntrustedModelError, match="os.system|_Touchy"):
            load_model(tmp_path / "forged.mf")


def test_format_1_needs_trust_and_info_warns(tmp_path, capsys):
    model = mf.MetaRidge(basis=mf.basis.make("rbf", n_basis=5)).fit(_reg())
    payload = pickle.dumps(model)
    path = tmp_path / "old.mf"
    save_model(model, tmp_path / "new.mf")
    header = read_header(tmp_path / "new.mf")
    header.update(format=1, payload_bytes=len(payload), payload_sha256=hashlib.sha256(payload).hexdigest())
    path.write_bytes(MAGIC + json.dumps(header).encode() + b"\n" + payload)
    with pytest.raises(UntrustedModelError, match="format 1.*pickle.*trusted=True"):
        load_model(path)
    with pytest.raises(UntrustedModelError):
        load_model(path, trusted=["sklearn.tree._tree.Tree"])  # naming types is not enough
    with pytest.warns(LegacyModelWarning):
        back = load_model(path, trusted=True)
    np.testing.assert_array_equal(back.prior_mean_, model.prior_mean_)
    assert main(["info", str(path)]) == 0
    assert "format-1" in capsys.readouterr().err


def test_no_pickle_opcodes_in_a_saved_file(tmp_path):
    path = save_model(mf.MetaBayes(basis=mf.basis.make("rbf", n_basis=4), max_iter=3).fit(_reg()), tmp_path / "m")
    raw = path.read_bytes()
    archive = zipfile.ZipFile(io.BytesIO(raw[raw.index(b"\n", len(MAGIC)) + 1 :]))
    assert "description.json" in archive.namelist()
    for member in archive.namelist():
        if member.endswith(".npy"):
            np.lib.format.read_array(archive.open(member), allow_pickle=False)  # raises on object arrays
    description = json.loads(archive.read("description.json"))
    assert description["root"]["c"].endswith("MetaBayes")


# ---------------------------------------------------------------------------------- round trips
def _same(a, b, where="model"):
    """Recursive exact equality of two object trees (arrays bit for bit, dtypes included)."""
    assert type(a) is type(b), where
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        if a.dtype.hasobject:
            for i, (x, y) in enumerate(zip(a.ravel(), b.ravel())):
                _same(x, y, f"{where}[{i}]")
        else:
            assert a.tobytes() == b.tobytes(), where
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, np.random.Generator):
        _same(a.bit_generator.state, b.bit_generator.state, where)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    elif hasattr(a, "__dict__") and type(a).__module__.startswith("metafast"):
        skip = ("_one_task_cache", "_metafast_version")  # a cache, and the tag unpickling keeps too
        _same(
            {k: v for k, v in vars(a).items() if k not in skip},
            {k: v for k, v in vars(b).items() if k not in skip},
            where,
        )
    elif hasattr(a, "get_params"):
        assert repr(a) == repr(b), where
    else:
        assert a == b, where


def _round_trip(obj, tmp_path, trusted=False):
    path = save_model(obj, tmp_path / "rt.mf")
    back = load_model(path, trusted=trusted)
    _same(obj, back)
    return back


def _learners():
    B = lambda: mf.basis.make("rbf", n_basis=5)
    reg, cls = _reg(), _cls()
    out = {
        "MetaBayes": (mf.MetaBayes(basis=B(), max_iter=3).fit(reg), reg),
        "MetaBayes mixture": (mf.MetaBayes(basis=B(), n_components=2, max_iter=3, random_state=0).fit(reg), reg),
        "MetaBayes learned basis": (mf.MetaBayes(basis=B(), max_iter=3, learn_basis=True).fit(reg), reg),
        "MetaRidge": (mf.MetaRidge(basis=B()).fit(reg), reg),
        "MetaGrad": (mf.MetaGrad(basis=B(), n_iter=5, random_state=0).fit(reg), reg),
    }
    for head in ("logistic", "ridge", "prototype"):
        out[f"MetaClassifier {head}"] = (mf.MetaClassifier(basis=B(), head=head, max_iter=3).fit(cls), cls)
    return out


def test_every_learner_round_trips_exactly(tmp_path):
    for name, (model, tasks) in _learners().items():
        back = _round_trip(model, tmp_path)
        assert back.get_params(deep=False).keys() == model.get_params(deep=False).keys(), name
        a, b = model.evaluate(tasks), back.evaluate(tasks)
        assert a == b, name
        t = tasks[1]
        if hasattr(model, "predict_tasks_proba"):
            np.testing.assert_array_equal(
                model.adapt(t.X_support, t.y_support).predict_proba(t.X_query),
                back.adapt(t.X_support, t.y_support).predict_proba(t.X_query),
            )
        else:
            adapted = model.adapt(t.X_support, t.y_support)
            again = _round_trip(adapted, tmp_path)  # the per-task regressor too
            np.testing.assert_array_equal(adapted.predict(t.X_query), again.predict(t.X_query))


def test_basis_selector_round_trips_exactly(tmp_path):
    reg = _reg()
    sel = mf.BasisSelector(mf.basis.make("fourier", n_basis=8)).fit(reg)
    back = _round_trip(sel, tmp_path)
    np.testing.assert_array_equal(sel.selected_basis_.design(reg.X_query), back.selected_basis_.design(reg.X_query))


def _families():
    X = np.random.default_rng(0).uniform(-3, 3, (30, 1))
    out = {}
    for name in mf.basis.available():
        if name in ("union", "task-models"):
            continue
        # the linear family's size is fixed by the inputs: it takes no n_basis
        out[name] = (mf.basis.make(name) if name == "linear" else mf.basis.make(name, n_basis=6)).fit(X)
    out["union"] = mf.basis.union([mf.basis.make("polynomial", n_basis=3), mf.basis.make("rbf", n_basis=4)]).fit(X)
    out["subset"] = mf.basis.restrict(mf.basis.make("fourier", n_basis=6).fit(X), [0, 2, 5])
    out["unfitted rbf"] = mf.basis.make("rbf", n_basis=3)
    return out, X


def test_every_basis_family_round_trips_exactly(tmp_path):
    families, X = _families()
    assert set(mf.basis.available()) <= set(families) | {"task-models"}
    for name, family in families.items():
        back = _round_trip(family, tmp_path)
        assert back.get_params(deep=False).keys() == family.get_params(deep=False).keys(), name
        if family.__sklearn_is_fitted__():
            assert family.design(X).tobytes() == back.design(X).tobytes(), name
        model = mf.MetaRidge(basis=family).fit(_reg(seed=1)) if family.__sklearn_is_fitted__() else None
        if model is not None:
            assert _round_trip(model, tmp_path).evaluate(_reg(seed=2)) == model.evaluate(_reg(seed=2))


def test_pipeline_and_task_models_go_through_skops(tmp_path):
    pytest.importorskip("skops")
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import (
        PolynomialFeatures,
        SplineTransformer,
        StandardScaler,
    )

    reg = _reg()
    model = mf.MetaBayes(basis=make_pipeline(StandardScaler(), PolynomialFeatures(3)), max_iter=3).fit(reg)
    assert _round_trip(model, tmp_path).evaluate(reg) == model.evaluate(reg)
    with_metafast_step = mf.MetaRidge(basis=make_pipeline(StandardScaler(), mf.basis.make("rbf", n_basis=4))).fit(reg)
    assert _round_trip(with_metafast_step, tmp_path).evaluate(reg) == with_metafast_step.evaluate(reg)
    bank = mf.basis.make("task-models", n_basis=3, estimator=Ridge(), random_state=0).fit(reg)
    assert _round_trip(bank, tmp_path).design(reg.X_query).tobytes() == bank.design(reg.X_query).tobytes()
    # types skops does not trust by default (a random forest's Tree, scipy's BSpline) need trust
    for basis in (mf.basis.make("task-models", n_basis=2, random_state=0), make_pipeline(SplineTransformer(n_knots=4))):
        model = mf.MetaRidge(basis=basis).fit(reg)
        path = save_model(model, tmp_path / "trees.mf")
        with pytest.raises(UntrustedModelError, match="skops does not trust") as err:
            load_model(path)
        assert "trees.mf" in str(err.value)
        assert load_model(path, trusted=True).evaluate(reg) == model.evaluate(reg)


def test_plugin_families_declare_themselves(tmp_path):
    from metafast.plugins import PluginHost, using_host

    wavelets = pytest.importorskip("metafast_wavelets")
    if not hasattr(wavelets, "metafast_model_types"):
        pytest.skip("the installed metafast-wavelets predates the metafast_model_types hook")
    with using_host(PluginHost(entry_points=False, plugins=(("wavelets", wavelets),))):
        X = np.linspace(0, 1, 9)[:, None]
        for name in ("morlet", "mexican-hat"):
            family = mf.basis.make(name, n_basis=5).fit(X)
            assert _round_trip(family, tmp_path).design(X).tobytes() == family.design(X).tobytes()
        model = mf.MetaBayes(basis=mf.basis.make("morlet", n_basis=5), max_iter=3).fit(_reg())
        assert _round_trip(model, tmp_path).evaluate(_reg()) == model.evaluate(_reg())


class _Undeclared(mf.basis.BasisFamily):
    """A plugin family that does not declare itself through metafast_model_types."""

    def __init__(self, n_basis=3):
        self.n_basis = n_basis

    def fit(self, X, y=None):
        return self

    def design(self, X):
        return np.column_stack([X[:, 0] ** k for k in range(self.n_basis)])


def test_an_undeclared_family_needs_trust(tmp_path):
    pytest.importorskip("skops")
    model = mf.MetaRidge(basis=_Undeclared()).fit(_reg())
    path = save_model(model, tmp_path / "u.mf")
    with pytest.raises(UntrustedModelError, match="_Undeclared"):
        load_model(path)
    assert load_model(path, trusted=True).evaluate(_reg()) == model.evaluate(_reg())
    assert load_model(path, trusted=[f"{__name__}._Undeclared"]).evaluate(_reg()) == model.evaluate(_reg())


def test_model_type_registrations_are_checked():
    from metafast.plugins import PluginError, PluginHost

    class Plugin:
        @mf.hookimpl
        def metafast_model_types(self, register):
            register("evil", os.system)

    class Stdlib:
        @mf.hookimpl
        def metafast_model_types(self, register):
            register("popen", __import__("subprocess").Popen)

    for plugin in (Plugin(), Stdlib()):
        with pytest.raises(PluginError, match="model type"):
            PluginHost(entry_points=False).register_plugin(plugin, "bad")


def test_odd_values_round_trip(tmp_path):
    from metafast._model_state import decode, encode

    shared = np.arange(3.0)
    value = {
        "t": (1, 2.5, "x"),
        3: "int key",
        (1, 2): None,
        "nan": float("nan"),
        "inf": -float("inf"),
        "f32": np.float32(1.5),
        "i8": np.int8(-3),
        "dt": np.dtype("<f4"),
        "type": np.float32,
        "c": 1 + 2j,
        "b": b"\x00\xff",
        "s": {1, 2},
        "fs": frozenset({"a"}),
        "sl": slice(1, None, 2),
        "obj": np.array(["a", None, 3], dtype=object),
        "a": shared,
        "again": shared,
        "fortran": np.asfortranarray(np.ones((2, 3), dtype=np.float32)),
        "big": 2**80,
    }
    desc, arrays = encode(value, {})
    json.dumps(desc, allow_nan=False)  # strict JSON
    back = decode(json.loads(json.dumps(desc)), {}, arrays.__getitem__)
    assert back["a"] is back["again"] and back["fortran"].flags.f_contiguous
    _same(value, back)


# ---------------------------------------------------------------------------------- D7, D18
def test_predict_without_table_metadata_is_one_line(tmp_path, capsys):
    model = mf.MetaBayes(basis=mf.basis.make("polynomial", n_basis=3), max_iter=3).fit(_reg())
    table = tmp_path / "t.csv"
    table.write_text("g,x,y\na,0.5,1.0\na,0.7,\n")
    cases = {
        "none": None,
        "bad group": {"group": "g", "features": ["x"], "target": "y"},
        "bad target": {"group": ["g"], "features": ["x"], "target": 3},
        "wrong feature count": {"group": ["g"], "features": ["x", "z"], "target": "y"},
    }
    for name, meta in cases.items():
        path = save_model(model, tmp_path / "m.mf", meta)
        assert main(["predict", str(path), str(table), "-o", str(tmp_path / "o.csv")]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("metafast predict: error:") and err.count("\n") == 1, (name, err)
        assert main(["info", str(path)]) == 0
    path = save_model(model, tmp_path / "m.mf", {"group": ["g"], "features": ["x"], "target": "y"})
    assert main(["predict", str(path), str(table), "-o", str(tmp_path / "o.csv")]) == 0
    save_model(mf.basis.make("rbf"), tmp_path / "b.mf", {"group": ["g"], "features": ["x"], "target": "y"})
    assert main(["predict", str(tmp_path / "b.mf"), str(table), "-o", str(tmp_path / "o.csv")]) == 2
    assert "not a meta-learner" in capsys.readouterr().err


@pytest.mark.parametrize(
    "header",
    [
        {"format": 2, "versions": {}, "metadata": []},
        {"format": 2, "versions": {}, "metadata": {}},
        {"format": True, "versions": {}},
        {"format": 2, "versions": {}, "metadata": {}, "payload_bytes": "1", "payload_sha256": "x"},
        {
            "format": 2,
            "versions": {},
            "metadata": {"params": 3, "group": 7},
            "payload_bytes": 0,
            "payload_sha256": hashlib.sha256(b"").hexdigest(),
            "class": 5,
        },
    ],
)
def test_headers_of_unexpected_shape_give_one_line(tmp_path, capsys, header):
    path = tmp_path / "h.mf"
    path.write_bytes(MAGIC + json.dumps(header).encode() + b"\n")
    for argv in (["info", str(path)], ["predict", str(path), str(path), "-o", str(tmp_path / "o.csv")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"metafast {argv[0]}: error:") and "Traceback" not in err


def test_oversized_metadata_is_refused_at_save(tmp_path):
    model = mf.MetaRidge(basis=mf.basis.make("rbf", n_basis=4)).fit(_reg())
    with pytest.raises(ValueError, match="metadata.*1 MiB"):
        save_model(model, tmp_path / "big.mf", {"blob": "x" * MAX_HEADER_BYTES})
    assert not (tmp_path / "big.mf").exists()
    path = save_model(model, tmp_path / "ok.mf", {"blob": "x" * (MAX_HEADER_BYTES - 4096)})
    assert len(read_header(path)["metadata"]["blob"]) == MAX_HEADER_BYTES - 4096  # what is written is readable
    load_model(path)
    with pytest.raises(TypeError, match="metadata"):
        save_model(model, tmp_path / "x.mf", ["not", "a", "dict"])
