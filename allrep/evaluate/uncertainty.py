"""Deep-Ensemble uncertainty and calibration from member probabilities.

``P`` is an array (members, images) of p(ALL). With the mean prediction
p = mean_m P[m] and binary entropy H:

* predictive entropy  H(p)                 (total uncertainty)
* expected entropy    mean_m H(P[m])       (aleatoric)
* mutual information  H(p) - mean_m H(P[m]) (epistemic; 0 when members agree)
* spread              std_m P[m]

Entropies are in nats (at most ln 2). Per ensemble and test set: NLL, Brier score and
the expected calibration error with equal-mass bins, with its BCa interval (all from
:mod:`allrep.evaluate.metrics`); accuracy-rejection curve; AUROC of each uncertainty for
detecting the ensemble's errors.
"""
from __future__ import annotations

import functools

import numpy as np

from allrep.evaluate.metrics import bootstrap_interval, brier, ece_equal_mass, nll, predict_label


def binary_entropy(p) -> np.ndarray:
    """H(p) in nats; p clipped to [1e-12, 1 - 1e-12] (so H(0) = H(1) = 0 up to round-off)."""
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def decompose(P) -> dict:
    """Per-image uncertainty measures of an ensemble (members x images)."""
    P = np.atleast_2d(np.asarray(P, dtype=float))
    p = P.mean(0)
    total = binary_entropy(p)
    aleatoric = binary_entropy(P).mean(0)
    return dict(p_mean=p, predictive_entropy=total, expected_entropy=aleatoric,
                mutual_information=np.maximum(total - aleatoric, 0.0), spread=P.std(0))


def rejection_curve(y, p, uncertainty) -> dict:
    """Accuracy on the retained images when the most uncertain are referred, per coverage.

    Images are referred in order of decreasing uncertainty (ties by index)."""
    y = np.asarray(y, dtype=int)
    correct = (predict_label(p) == y).astype(int)
    order = np.lexsort((np.arange(len(y)), np.asarray(uncertainty, dtype=float)))  # most certain first
    kept = np.arange(1, len(y) + 1)
    ok = np.cumsum(correct[order])
    return dict(coverage=kept / len(y), kept=kept, correct=ok, accuracy=ok / kept)


def accuracy_at_coverage(y, p, uncertainty, coverage: float) -> float:
    """Accuracy on the ceil(coverage * n) most certain images."""
    r = rejection_curve(y, p, uncertainty)
    k = int(np.ceil(coverage * len(r["accuracy"]))) - 1
    return float(r["accuracy"][max(k, 0)])


def error_detection_auroc(y, p, uncertainty) -> float:
    """AUROC of ``uncertainty`` for telling the ensemble's errors from its correct calls."""
    from sklearn.metrics import roc_auc_score

    err = (predict_label(p) != np.asarray(y, dtype=int)).astype(int)
    if err.sum() in (0, len(err)):
        return float("nan")
    return float(roc_auc_score(err, np.asarray(uncertainty, dtype=float)))


def summary(y, P, bins: int = 10, n_boot: int = 1000, seed: int = 0) -> dict:
    """All scalar uncertainty and calibration numbers of one ensemble on one test set."""
    d = decompose(P)
    p = d["p_mean"]
    e, lo, hi = bootstrap_interval(functools.partial(ece_equal_mass, bins=bins), y, p, n_boot, seed)
    out = dict(nll=nll(y, p), brier=brier(y, p), ece_equal_mass=e, ece_equal_mass_low=lo, ece_equal_mass_high=hi,
               acc_at_90=accuracy_at_coverage(y, p, d["predictive_entropy"], 0.9),
               acc_at_80=accuracy_at_coverage(y, p, d["predictive_entropy"], 0.8))
    for k in ("predictive_entropy", "mutual_information", "spread"):
        out[f"mean_{k}"] = float(np.mean(d[k]))
        out[f"auroc_{k}"] = error_detection_auroc(y, p, d[k])
    return out


def ensemble_summaries(probs, bins: int = 10, n_boot: int = 1000, seed: int = 0):
    """:func:`summary` of every ensemble (dataset, protocol, repeat, backbone) on its test images."""
    import pandas as pd

    from allrep.evaluate.scores import ensembles

    rows = []
    for (ds, protocol, r, bb), wide in ensembles(probs).items():
        y = wide.index.get_level_values("label").to_numpy()
        rows.append(dict(dataset=ds, protocol=protocol, repeat=r, backbone=bb,
                         **summary(y, wide.to_numpy().T, bins, n_boot, seed)))
    return pd.DataFrame(rows)


def entropy_frame(probs):
    """Per test image and ensemble: predictive entropy, mutual information, and whether it was right."""
    import pandas as pd

    from allrep.evaluate.scores import ensembles

    rows = []
    for (ds, protocol, r, bb), wide in ensembles(probs).items():
        y = wide.index.get_level_values("label").to_numpy()
        d = decompose(wide.to_numpy().T)
        rows.append(pd.DataFrame(dict(dataset=ds, protocol=protocol, backbone=bb, entropy=d["predictive_entropy"],
                                      mutual_information=d["mutual_information"],
                                      correct=(d["p_mean"] > 0.5) == (y == 1))))
    return pd.concat(rows, ignore_index=True)
