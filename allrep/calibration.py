"""Calibration done on validation only: temperature scaling per split, and its effect on test.

For every split and model (each backbone's ensemble mean, and the sum-rule fusion of the backbones,
the paper's final model) one temperature T is fitted on that split's *validation* part by minimising
the cross-entropy of ``sigmoid(logit(p) / T)`` (Guo et al. 2017, for two classes); test predictions
are then scaled by it. Nothing is fitted on a test image.

Calibration is measured on test predictions pooled over the grouped repeats (each repeat's test part
is small): ECE with equal-width confidence bins (Guo et al.), NLL and Brier score (:mod:`allrep.metrics`), each
with a BCa bootstrap interval (:func:`allrep.metrics.bootstrap_interval`). Images are resampled as
pooled (image, repeat) predictions.
"""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from scipy import optimize

from .metrics import EPS, bootstrap_interval, brier, ece_equal_width, nll, predict_label
from .scores import ensemble_means
from .uncertainty import binary_entropy, error_detection_auroc, rejection_curve

FUSED = "sum fusion"


def _logit(p):
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def scale(p, T: float) -> np.ndarray:
    """p(ALL) after temperature T: sigmoid(logit(p) / T)."""
    return 1 / (1 + np.exp(-_logit(p) / T))


def fit_temperature(y_val, p_val) -> float:
    """The T in [0.05, 20] that minimises the validation cross-entropy (bounded scalar search on log T)."""
    z, y = _logit(p_val), np.asarray(y_val, dtype=int)
    res = optimize.minimize_scalar(lambda t: nll(y, 1 / (1 + np.exp(-z / np.exp(t)))), bounds=(np.log(0.05), np.log(20)),
                                   method="bounded")
    return float(np.exp(res.x))


def model_probabilities(probs: pd.DataFrame, backbones) -> pd.DataFrame:
    """Per split and image: each backbone's ensemble mean p(ALL) (:func:`allrep.scores.ensemble_means`) and
    the sum-rule fusion of ``backbones`` (their mean: for two classes the sum rule's decision). Long:
    protocol, repeat, dataset, model, id, label, p."""
    keys = ["protocol", "repeat", "dataset", "id", "label"]
    ens = ensemble_means(probs).set_index(keys + ["backbone"])["p_all"].unstack("backbone")
    fused = ens[list(backbones)].mean(axis=1).rename(FUSED)
    wide = pd.concat([ens, fused], axis=1)
    wide.columns.name = None
    return wide.reset_index().melt(id_vars=keys, var_name="model", value_name="p")


def calibrate(test: pd.DataFrame, val: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit T per (dataset, protocol, repeat, model) on ``val`` (:func:`model_probabilities` of the
    validation parts) and scale ``test``'s p by it. Returns (test with ``p_scaled``, temperatures)."""
    split = ["dataset", "protocol", "repeat", "model"]
    temps = pd.DataFrame([dict(zip(split, k), T=fit_temperature(g["label"], g["p"]))
                          for k, g in val.groupby(split, sort=True)])
    out = test.merge(temps, on=split, how="left", validate="many_to_one")
    if out["T"].isna().any():
        raise ValueError("a test split has no validation predictions to fit its temperature on")
    out["p_scaled"] = scale(out["p"].to_numpy(), out["T"].to_numpy())
    return out, temps


def calibration_table(scaled: pd.DataFrame, bins: int = 10, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per (dataset, protocol, model), on test predictions pooled over the repeats: ECE, NLL and Brier
    before and after temperature scaling with BCa intervals, the temperatures' median, and the AUROC of
    the scaled predictive entropy for telling errors from correct calls."""
    rows = []
    for (ds, protocol, model), g in scaled.groupby(["dataset", "protocol", "model"], sort=True):
        y = g["label"].to_numpy()
        row = dict(dataset=ds, protocol=protocol, model=model, n=len(g), repeats=g["repeat"].nunique(),
                   errors=int((predict_label(g["p"]) != y).sum()), T_median=float(g.groupby("repeat")["T"].first().median()))
        for tag, col in (("before", "p"), ("after", "p_scaled")):
            p = g[col].to_numpy()
            ece = functools.partial(ece_equal_width, bins=bins)
            for name, fn in (("ece", ece), ("nll", nll), ("brier", brier)):
                est, lo, hi = bootstrap_interval(fn, y, p, n_boot, seed)
                row.update({f"{name}_{tag}": est, f"{name}_{tag}_low": lo, f"{name}_{tag}_high": hi})
        row["auroc_errors"] = error_detection_auroc(y, g["p_scaled"], binary_entropy(g["p_scaled"]))
        rows.append(row)
    return pd.DataFrame(rows)


def referral_curve(scaled: pd.DataFrame, model: str = FUSED, protocol: str = "grouped") -> pd.DataFrame:
    """Accuracy against coverage when the least confident predictions (scaled p nearest 0.5) are referred,
    on predictions pooled over the repeats (:func:`allrep.uncertainty.rejection_curve`): coverage, kept,
    correct, accuracy, per dataset."""
    rows = []
    for ds, g in scaled[(scaled["model"] == model) & (scaled["protocol"] == protocol)].groupby("dataset"):
        p = g["p_scaled"].to_numpy()
        rc = rejection_curve(g["label"].to_numpy(), p, -np.abs(p - 0.5))
        rows.append(pd.DataFrame(dict(dataset=ds, **rc)))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def diversity(probs: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, protocol, backbone): mean mutual information between members (epistemic part of the
    entropy, nats) and the share of test images on which the members' decisions disagree."""
    keys = ["dataset", "protocol", "repeat", "backbone", "id"]
    g = probs.groupby(keys)["p_all"]
    p_mean = g.mean()
    mi = binary_entropy(p_mean.to_numpy()) - g.apply(lambda s: float(np.mean(binary_entropy(s.to_numpy())))).to_numpy()
    votes = probs.assign(v=predict_label(probs["p_all"])).groupby(keys)["v"].agg(lambda s: s.nunique() > 1)
    f = pd.DataFrame(dict(mi=mi, disagree=votes.to_numpy()), index=p_mean.index).reset_index()
    return (f.groupby(["dataset", "protocol", "backbone"]).agg(mutual_information=("mi", "mean"),
                                                               members_disagree=("disagree", "mean"),
                                                               images=("mi", "size")).reset_index())
