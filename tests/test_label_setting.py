"""TaskSet.label_setting: which classification setting a TaskSet is in, and that it survives."""

import numpy as np
import pytest

import metafast as mf
from metafast.tasks import Task, TaskSet


def _shared(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return TaskSet.from_list(
        [
            Task(rng.normal(size=(4, 2)), rng.integers(0, 2, 4), rng.normal(size=(3, 2)), rng.integers(0, 2, 3))
            for _ in range(n)
        ]
    )


def test_defaults():
    assert _shared().label_setting == "shared"
    assert mf.tasks.load("sinusoid", n_tasks=2).label_setting is None
    X, y = np.random.default_rng(0).normal(size=(60, 3)), np.repeat(np.arange(3), 20)
    assert mf.tasks.episodes(X, y, n_way=2, k_shot=1, n_query=2, n_tasks=3, seed=0).label_setting == "episodic"
    assert mf.tasks.load("digits", n_tasks=2).label_setting == "episodic"


def test_kept_by_every_operation(tmp_path):
    ep = mf.tasks.load("digits", n_tasks=4, seed=1)
    for derived in (
        ep.subset([0, 2]),
        ep[1:],
        ep.all_rows(),
        ep.astype(np.float32),
        TaskSet.concatenate([ep, ep]),
        *ep.split((0.5, 0.5), seed=0),
    ):
        assert derived.label_setting == "episodic"
    ep.save(tmp_path / "e.npz")
    back = TaskSet.load(tmp_path / "e.npz")
    assert back.label_setting == "episodic" and back.equals(ep)
    sh = _shared()
    relabelled = TaskSet(
        sh.X_support,
        sh.y_support,
        sh.support_offsets,
        sh.X_query,
        sh.y_query,
        sh.query_offsets,
        info=sh.info,
        label_setting="episodic",
    )
    assert not sh.equals(relabelled) and relabelled.label_setting == "episodic"


def test_bad_settings():
    ep, sh = mf.tasks.load("digits", n_tasks=2), _shared()
    with pytest.raises(ValueError, match="mixes label settings"):
        TaskSet.concatenate([ep.subset([0]), TaskSet.from_list(list(ep), label_setting="shared")])
    with pytest.raises(ValueError, match="label_setting"):
        TaskSet.from_list(list(sh), label_setting="relabelled")
    reg = mf.tasks.load("sinusoid", n_tasks=2)
    with pytest.raises(ValueError, match="not integer class labels"):
        TaskSet.from_list(list(reg), label_setting="episodic")


def test_digits_class_split():
    train = mf.tasks.load("digits", n_tasks=50, n_way=5, k_shot=1, train_classes=range(5), seed=0)
    test = mf.tasks.load("digits", n_tasks=50, n_way=5, k_shot=1, split="test", train_classes=range(5), seed=0)
    seen_train = {c for d in train.info for c in d["classes"]}
    seen_test = {c for d in test.info for c in d["classes"]}
    assert seen_train == {0, 1, 2, 3, 4} and seen_test == {5, 6, 7, 8, 9}
    with pytest.raises(ValueError, match="n_way=5"):  # the default split has only 4 test digits
        mf.tasks.load("digits", n_tasks=2, n_way=5, split="test")
    with pytest.raises(ValueError, match="train_classes"):
        mf.tasks.load("digits", n_tasks=2, train_classes=range(10))
    with pytest.raises(TypeError, match="train_classes"):
        mf.tasks.load("digits", n_tasks=2, train_classes="abc")
