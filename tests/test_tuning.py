"""Nested tuning: searches in lockstep, each the sequential Bayesian optimisation it would be alone."""
import numpy as np
import pytest

import allrep.training
from allrep.profile import Head
from allrep.training import TrainSettings
from allrep.tuning import space_table, tune_splits

ARCH = Head(projection=8, gru_units=4, dense_units=4)
TS = TrainSettings(epochs=3, batch_size=32, patience=2)


def _data(seed=0, n=96):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 4, 8)).astype(np.float32)
    X[:, :, 0] += 2.0 * (y[:, None] - 0.5)  # separable through channel 0
    return X, y


def _search(seed, key):
    X, y = _data(seed)
    Xv, yv = _data(seed + 100, 48)
    return dict(X_train=X, y_train=y, X_val=Xv, y_val=yv, seed=seed, key=key)


def test_lockstep_searches_equal_searches_alone_and_resume(tmp_path, monkeypatch):
    searches = {"a": _search(0, "ka"), "b": _search(1, "kb")}
    both = tune_splits(searches, ARCH, TS, trials=3, initial_points=2, folder=tmp_path / "both")
    alone = tune_splits({"b": searches["b"]}, ARCH, TS, trials=3, initial_points=2, folder=tmp_path / "alone")
    assert both["b"]["trials"] == alone["b"]["trials"] and both["b"]["best"] == alone["b"]["best"]
    assert both["a"]["trials"] != both["b"]["trials"]  # each search has its own data and proposals
    for out in both.values():
        assert len(out["trials"]) == 3 and all(np.isfinite(t["val_loss"]) for t in out["trials"])
        assert out["best_loss"] == min(t["val_loss"] for t in out["trials"])
        assert 3e-4 <= out["best"].learning_rate <= 3e-2 and out["best"].gru_units == 4  # architecture fixed
    # a rerun replays the seeded proposals and finds every trial cached: nothing trains
    monkeypatch.setattr(allrep.training, "train_heads", lambda *a, **k: pytest.fail("a cached trial trained again"))
    again = tune_splits(searches, ARCH, TS, trials=3, initial_points=2, folder=tmp_path / "both")
    assert again["a"]["trials"] == both["a"]["trials"] and again["b"]["best"] == both["b"]["best"]


def test_more_trials_run_only_the_missing_ones(tmp_path, monkeypatch):
    s = {"a": _search(0, "ka")}
    first = tune_splits(s, ARCH, TS, trials=2, initial_points=2, folder=tmp_path)
    calls = []
    real = allrep.training.train_heads
    monkeypatch.setattr(allrep.training, "train_heads", lambda tasks, *a, **k: calls.append(len(tasks)) or real(tasks, *a, **k))
    more = tune_splits(s, ARCH, TS, trials=3, initial_points=2, folder=tmp_path)
    assert calls == [1] and more["a"]["trials"][:2] == first["a"]["trials"]


def test_space_table_reads_the_space():
    t = space_table().set_index("hyperparameter")
    assert list(t.index) == ["learning_rate", "weight_decay", "dropout"]
    assert t.loc["learning_rate", "values"] == "0.0003 to 0.03" and t.loc["learning_rate", "sampling"] == "log"
