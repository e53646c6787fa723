import numpy as np

from allrep.training import TrainSettings
from allrep.tuning import tune


def _data(seed=0, n=96):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 4, 8)).astype(np.float32)
    X[:, :, 0] += 2.0 * (y[:, None] - 0.5)  # separable through channel 0
    return X, y


def test_search_completes_and_resumes(tmp_path):
    X, y = _data()
    Xv, yv = _data(1, 48)
    ts = TrainSettings(epochs=3, batch_size=32, patience=2)
    a = tune(X, y, Xv, yv, ts, trials=2, initial_points=2, seed=0, directory=tmp_path, project="p")
    assert len(a["trials"]) == 2 and all(t["status"] == "COMPLETED" for t in a["trials"])
    assert all(np.isfinite(t["val_loss"]) for t in a["trials"])
    assert a["best"]["gru_units"] in (16, 32, 64) and 1e-4 <= a["best"]["learning_rate"] <= 3e-3
    best_loss = min(t["val_loss"] for t in a["trials"])
    # same directory and project: resumes, runs nothing new, same answer
    b = tune(X, y, Xv, yv, ts, trials=2, initial_points=2, seed=0, directory=tmp_path, project="p")
    assert b["best"] == a["best"] and len(b["trials"]) == 2
    # more trials: only the missing one runs
    c = tune(X, y, Xv, yv, ts, trials=3, initial_points=2, seed=0, directory=tmp_path, project="p")
    assert len(c["trials"]) == 3 and min(t["val_loss"] for t in c["trials"]) <= best_loss
