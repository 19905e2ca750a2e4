import numpy as np
import pytest

import metafast as mf


def _data(n_classes=8, per=30):
    y = np.repeat(np.arange(n_classes) * 10, per)  # labels 0, 10, 20, ...
    X = np.column_stack([y, np.arange(y.size)]).astype(np.float64)  # (label, row id)
    return X, y


def test_episodes_shapes_relabelling_and_no_overlap():
    X, y = _data()
    ts = mf.tasks.episodes(X, y, n_way=3, k_shot=2, n_query=5, n_tasks=200, seed=0)
    assert len(ts) == 200 and ts.is_classification and ts.y_support.dtype == np.int64
    for t in ts[:50]:
        classes = t.info["classes"]
        assert len(set(classes)) == 3
        np.testing.assert_array_equal(t.y_support, np.repeat(np.arange(3), 2))
        np.testing.assert_array_equal(t.y_query, np.repeat(np.arange(3), 5))
        # new label j is original class classes[j], for support and query rows
        np.testing.assert_array_equal(t.X_support[:, 0], np.asarray(classes)[t.y_support])
        np.testing.assert_array_equal(t.X_query[:, 0], np.asarray(classes)[t.y_query])
        ids = np.concatenate([t.X_support[:, 1], t.X_query[:, 1]])
        assert np.unique(ids).size == ids.size  # no example twice in an episode
    counts = np.bincount(np.concatenate([d["classes"] for d in ts.info]) // 10)
    assert counts.min() > 0.6 * counts.mean()  # every class is used


def test_episodes_reproducible_and_class_restricted():
    X, y = _data()
    a = mf.tasks.episodes(X, y, 2, 1, 3, 50, classes=[0, 10, 20], seed=4)
    assert a.equals(mf.tasks.episodes(X, y, 2, 1, 3, 50, classes=[0, 10, 20], seed=4))
    assert set(np.concatenate([d["classes"] for d in a.info])) <= {0, 10, 20}
    train, test = mf.tasks.split_classes(y, (0.5, 0.5), seed=0)
    assert not set(train) & set(test) and set(train) | set(test) == set(np.unique(y))


def test_string_labels():
    y = np.repeat(np.array(["cat", "dog", "eel"]), 10)
    X = np.arange(30.0).reshape(-1, 1)
    ts = mf.tasks.episodes(X, y, 2, 2, 2, 10, seed=0)
    assert all(set(d["classes"]) <= {"cat", "dog", "eel"} for d in ts.info)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_way=9), "n_way=9 is larger than the number of classes available \\(8\\)"),
        (dict(k_shot=20, n_query=11), "8 classes: 0 \\(30 rows\\), 10"),
        (dict(k_shot=0), "k_shot"),
        (dict(n_query=0), "n_query"),
        (dict(n_tasks=-1), "n_tasks"),
        (dict(n_way=1), "n_way"),
        (dict(classes=[0, 5]), "absent"),
    ],
)
def test_episode_errors(kwargs, match):
    X, y = _data()
    args = dict(n_way=3, k_shot=1, n_query=2, n_tasks=5) | kwargs
    with pytest.raises(ValueError, match=match):
        mf.tasks.episodes(X, y, **args)


def test_episode_input_errors():
    X, y = _data()
    Xn = X.copy()
    Xn[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mf.tasks.episodes(Xn, y, 2, 1, 1, 3)
    with pytest.raises(ValueError, match="one label per row"):
        mf.tasks.episodes(X, y[:-1], 2, 1, 1, 3)


def test_digits_loader_fixed_class_split():
    tr = mf.tasks.load("digits", n_tasks=300, n_support=1, n_query=5, seed=0)
    te = mf.tasks.load("digits", n_tasks=300, n_support=5, n_query=5, seed=0, split="test")
    assert tr.n_features == 64 and 0 <= tr.X_support.min() and tr.X_support.max() <= 1
    assert set(np.concatenate([d["classes"] for d in tr.info])) == set(mf.tasks.DIGITS_TRAIN_CLASSES)
    assert set(np.concatenate([d["classes"] for d in te.info])) == set(mf.tasks.DIGITS_TEST_CLASSES)
    assert len(te[0].y_support) == 4 * 5
    with pytest.raises(ValueError, match="n_way=5"):
        mf.tasks.load("digits", split="test", n_way=5)
    with pytest.raises(ValueError, match="split"):
        mf.tasks.load("digits", split="val")
