"""Stacked heads: a head trained in a stack is the head trained alone, and a saved head computes the same."""
from dataclasses import replace

import numpy as np
import pytest

from allrep.profile import Head
from allrep.train.head_lists import train_heads

HP = Head(projection=0, gru_units=8, dense_units=8, dropout=0.3, learning_rate=3e-3, weight_decay=1e-4)


def _data(seed, n=96):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4, 6)).astype(np.float32)
    y = (X[:, 1, 0] + 0.3 * rng.normal(size=n) > 0).astype(int)
    return X, y


def _task(hp, seed, data_seed=0):
    X, y = _data(data_seed)
    Xv, yv = _data(data_seed + 50, 40)
    return dict(X_train=X, y_train=y, X_val=Xv, y_val=yv, X_test=Xv, hp=hp, seed=seed)


def _close(a, b):
    """Same head, other stack: equal to float32 round-off. On one machine the stacked and lone
    computations agree bit for bit; across CPUs (oneDNN kernels chosen per shape) they need not, so the
    comparison allows a relative 1e-6 (the committed probabilities have 6 decimals)."""
    assert len(a["history"]["val_loss"]) == len(b["history"]["val_loss"]) and a["best_epoch"] == b["best_epoch"]
    assert np.allclose(a["history"]["val_loss"], b["history"]["val_loss"], rtol=1e-6, atol=1e-9)
    assert np.allclose(a["p_test"], b["p_test"], rtol=1e-6, atol=1e-9)


@pytest.mark.slow  # trains heads (the fast loop trains nothing)
def test_a_head_in_a_stack_is_the_head_alone():
    sizes = [96, 70, 96, 50, 96]  # different training sets: each head has its own epoch length
    tasks = [dict(_task(replace(HP, learning_rate=lr, dropout=d), seed=s, data_seed=s),
                  **dict(zip(("X_train", "y_train"), (x[:n] for x in _data(s)))))
             for (s, (lr, d)), n in zip(enumerate([(3e-3, 0.3), (1e-2, 0.0), (1e-3, 0.5), (3e-3, 0.1), (2e-2, 0.2)],
                                                  start=1), sizes)]
    together = train_heads(tasks, 8, 2, 32, reuse=False)
    reversed_ = train_heads(tasks[::-1], 8, 2, 32, reuse=False)[::-1]  # other slots, other neighbours
    slotted = train_heads(tasks, 8, 2, 32, reuse=False, slots=2)  # 5 heads through 2 slots, refilled
    for t, a, r, b in zip(tasks, together, reversed_, slotted):
        alone = train_heads([t], 8, 2, 32)[0]  # alone in the cached model, reset per head (reset = fresh: test_training)
        _close(a, alone)
        _close(r, alone)
        _close(b, alone)  # another number of slots: equal to round-off
    assert together[0]["history"] != together[1]["history"]  # own data, seed and rates
    assert len({r["epochs_run"] for r in together}) > 1  # heads stop at different epochs (slots are refilled)


@pytest.mark.slow  # trains heads (the fast loop trains nothing)
def test_a_saved_head_predicts_what_the_stack_predicted():
    from allrep.train.stacked import to_head

    hp = replace(HP, projection=5)
    t = _task(hp, seed=7)
    r = train_heads([t], 4, 3, 32, reuse=False, keep_weights=True)[0]
    head = to_head(r["weights"], hp, 4, 6)
    p = np.asarray(head.predict_on_batch(t["X_test"]))[:, 1]
    assert np.allclose(p, r["p_test"], atol=1e-5), np.abs(p - r["p_test"]).max()


def test_numerics_are_pinned_before_the_backend_starts(monkeypatch):
    """pin_numerics sets allrep's numeric settings over the caller's, and refuses a process whose TensorFlow
    started with other ones (its arithmetic would differ from the other processes')."""
    import os
    import sys

    from allrep.errors import AllrepError
    from allrep.repro import NUMERICS, pin_numerics

    monkeypatch.setenv("TF_DETERMINISTIC_OPS", "0")
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    pin_numerics()
    assert {k: os.environ[k] for k in NUMERICS} == NUMERICS == {"TF_DETERMINISTIC_OPS": "1"}
    monkeypatch.setenv("TF_DETERMINISTIC_OPS", "0")
    monkeypatch.setitem(sys.modules, "tensorflow", object())
    with pytest.raises(AllrepError, match="TF_DETERMINISTIC_OPS=1"):
        pin_numerics()


_TRAIN_ONE = """
from allrep.repro import quiet_backend
quiet_backend()
import numpy as np
from allrep.profile import Head
from allrep.train.head_lists import train_heads
from allrep.train.heads import weights_digest
rng = np.random.default_rng(0)
X, y = rng.standard_normal((300, 4, 64)).astype(np.float32), rng.integers(0, 2, 300)
(r,) = train_heads([dict(X_train=X[:200], y_train=y[:200], X_val=X[200:], y_val=y[200:], hp=Head(projection=0),
                         seed=3)], 3, 3, 128, keep_weights=True)
print(weights_digest(r["weights"]))
"""


@pytest.mark.slow
def test_a_head_is_the_same_whatever_the_callers_numeric_environment():
    """The same head trained in processes started with TF_DETERMINISTIC_OPS 0 (TensorFlow's default, as without
    it) and with 1 ends with the same weights, bit for bit: a serial run from a shell and Dask workers from another
    environment agree (the setting itself changes the arithmetic: allrep.repro.NUMERICS)."""
    import os
    import subprocess
    import sys

    def digest(value):
        env = {k: v for k, v in os.environ.items() if k != "TF_DETERMINISTIC_OPS"}
        env.update({} if value is None else {"TF_DETERMINISTIC_OPS": value})
        out = subprocess.run([sys.executable, "-c", _TRAIN_ONE], env=env, capture_output=True, text=True, check=True)
        return out.stdout.split()[-1]

    # with 0, which is also TensorFlow's default without the setting, and with 1: equal only if 0 is pinned to 1
    assert digest("0") == digest("1")
