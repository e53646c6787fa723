"""Nested tuning: searches sharing a pool of heads, each the sequential Bayesian optimisation it would be alone."""
import numpy as np
import pytest
from conftest import starts_backend

import allrep.train.heads
from allrep.profile import Head, Training
from allrep.train.tuning import space_table, tune_splits

ARCH = Head(projection=8, gru_units=4, dense_units=4)
TS = Training(epochs=3, batch_size=32, patience=2)


def _data(seed=0, n=96):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 4, 8)).astype(np.float32)
    X[:, :, 0] += 2.0 * (y[:, None] - 0.5)  # separable through channel 0
    return X, y


def _search(seed):
    X, y = _data(seed)
    Xv, yv = _data(seed + 100, 48)
    return dict(X_train=X, y_train=y, X_val=Xv, y_val=yv, seed=seed)


class Memory:
    """A trial engine over in-memory arrays (the pipeline's is :class:`allrep.train.tuning.Trials`, the member engine)."""

    def __init__(self, searches):
        self.s, self.cache = searches, {}

    def cached(self, n, hp):
        return self.cache.get((n, hp))

    def task(self, n, hp):
        return dict(self.s[n], hp=hp)

    def save(self, n, hp, res):
        self.cache[(n, hp)] = res

    def pool(self, n):
        return self.s[n]["X_train"].shape[1:]


def _tune(searches, engine, folder, trials=3):
    return tune_splits({n: s["seed"] for n, s in searches.items()}, ARCH, TS, trials=trials, initial_points=2,
                       folder=folder, engine=engine)


def _same_trials(a, b):
    """Equal proposals and losses, to float round-off: on one machine a head trained beside others equals
    it trained alone bit for bit; across CPUs the stacked kernels may differ in the last bits."""
    assert [t["trial"] for t in a] == [t["trial"] for t in b]
    for x, y in zip(a, b):
        assert x.keys() == y.keys() and (x["best_epoch"], x["epochs_run"]) == (y["best_epoch"], y["epochs_run"])
        assert np.allclose([x[k] for k in sorted(x)], [y[k] for k in sorted(y)], rtol=1e-5, atol=1e-9)


@pytest.mark.slow  # trains heads (the fast loop trains nothing)
def test_pooled_searches_equal_searches_alone_and_resume(tmp_path, monkeypatch):
    searches = {"a": _search(1), "b": _search(2)}  # (keras-tuner takes seed 0 as 1)
    engine = Memory(searches)
    both = _tune(searches, engine, tmp_path / "both")
    alone = _tune({"b": searches["b"]}, Memory(searches), tmp_path / "alone")
    _same_trials(both["b"]["trials"], alone["b"]["trials"])
    assert [t["learning_rate"] for t in both["a"]["trials"]] != [t["learning_rate"] for t in both["b"]["trials"]]
    for out in both.values():
        assert len(out["trials"]) == 3 and all(np.isfinite(t["val_loss"]) for t in out["trials"])
        assert out["best_loss"] == min(t["val_loss"] for t in out["trials"])
        assert 3e-4 <= out["best"].learning_rate <= 3e-2 and out["best"].gru_units == 4  # architecture fixed
    # a rerun replays the seeded proposals and finds every trial cached: nothing trains
    monkeypatch.setattr(allrep.train.heads, "heads_trainer", lambda *a, **k: pytest.fail("a cached trial trained again"))
    again = _tune(searches, engine, tmp_path / "both")
    assert again["a"]["trials"] == both["a"]["trials"] and again["b"]["best"] == both["b"]["best"]


@starts_backend
def test_more_trials_run_only_the_missing_ones(tmp_path):
    s = {"a": _search(0)}
    engine = Memory(s)
    first = _tune(s, engine, tmp_path, trials=2)
    saved = []
    real = engine.save
    engine.save = lambda n, hp, res: saved.append(hp) or real(n, hp, res)
    more = _tune(s, engine, tmp_path, trials=3)
    assert len(saved) == 1 and more["a"]["trials"][:2] == first["a"]["trials"]


def test_space_table_reads_the_space():
    t = space_table().set_index("hyperparameter")
    assert list(t.index) == ["learning_rate", "weight_decay", "dropout"]
    assert t.loc["learning_rate", "values"] == "0.0003 to 0.03" and t.loc["learning_rate", "sampling"] == "log"


@starts_backend
def test_the_space_read_without_keras_tuner_is_keras_tuners_space():
    """The notebooks read the space off :func:`allrep.train.tuning.declared` (no backend start); the searches use
    keras-tuner's HyperParameters built by the same declaration: the two must agree field by field."""
    from allrep.train.tuning import declared, space

    tuner = [{k: h.get_config()[k] for k in ("name", "min_value", "max_value", "step", "sampling")}
             for h in space().space]
    assert declared() == tuner
    assert [d["name"] for d in declared()] == ["learning_rate", "weight_decay", "dropout"]
