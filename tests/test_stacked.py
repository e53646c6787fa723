"""Stacked heads: a head trained in a stack is the head trained alone, and a saved head computes the same."""
from dataclasses import replace

import numpy as np

from allrep.profile import Head
from allrep.training import train_heads

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


def test_a_head_in_a_stack_is_the_head_alone():
    tasks = [_task(replace(HP, learning_rate=lr, dropout=d), seed=s, data_seed=s)
             for s, (lr, d) in enumerate([(3e-3, 0.3), (1e-2, 0.0), (1e-3, 0.5)], start=1)]
    together = train_heads(tasks, 6, 3, 32, reuse=False)
    for t, a in zip(tasks, together):
        alone = train_heads([t], 6, 3, 32, reuse=False)[0]
        assert a["history"] == alone["history"] and np.array_equal(a["p_test"], alone["p_test"])
    assert together[0]["history"] != together[1]["history"]  # own data, seed and rates


def test_a_saved_head_predicts_what_the_stack_predicted():
    from allrep.stacked import to_head

    hp = replace(HP, projection=5)
    t = _task(hp, seed=7)
    r = train_heads([t], 4, 3, 32, reuse=False, keep_weights=True)[0]
    head = to_head(r["weights"], hp, 4, 6)
    p = np.asarray(head.predict_on_batch(t["X_test"]))[:, 1]
    assert np.allclose(p, r["p_test"], atol=1e-5), np.abs(p - r["p_test"]).max()
