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

from .metrics import EPS, bootstrap_interval, brier, confidence, ece_equal_mass, ece_equal_width, nll, predict_label
from .scores import ensemble_means
from .uncertainty import binary_entropy, error_detection_auroc, rejection_curve

FUSED = "sum fusion"
T_BOUNDS = (0.05, 20.0)  # the temperature search's bounds (fit_temperature)


def _logit(p):
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def scale(p, T: float) -> np.ndarray:
    """p(ALL) after temperature T: sigmoid(logit(p) / T)."""
    return 1 / (1 + np.exp(-_logit(p) / T))


def fit_temperature(y_val, p_val) -> float:
    """The T in :data:`T_BOUNDS` that minimises the validation cross-entropy (bounded scalar search on log T)."""
    z, y = _logit(p_val), np.asarray(y_val, dtype=int)
    res = optimize.minimize_scalar(lambda t: nll(y, 1 / (1 + np.exp(-z / np.exp(t)))), bounds=tuple(np.log(T_BOUNDS)),
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
    temps = pd.DataFrame([dict(zip(split, k), T=fit_temperature(g["label"], g["p"]),
                               degenerate=degenerate(g["label"], g["p"]))
                          for k, g in val.groupby(split, sort=True)])
    out = test.merge(temps, on=split, how="left", validate="many_to_one")
    if out["T"].isna().any():
        raise ValueError("a test split has no validation predictions to fit its temperature on")
    out["p_scaled"] = scale(out["p"].to_numpy(), out["T"].to_numpy())
    return out, temps


def at_bound(T) -> np.ndarray:
    """A temperature at the search's bound."""
    T = np.asarray(T, dtype=float)
    return (T <= T_BOUNDS[0] * 1.001) | (T >= T_BOUNDS[1] * 0.999)


def degenerate(y_val, p_val) -> bool:
    """A degenerate temperature fit: the validation part is separated by the model (every prediction on its
    correct side), so its cross-entropy falls for ever as T falls and the fitted T is wherever the search
    or the probability clip (:data:`allrep.metrics.EPS`) stopped it, not an estimate; or T sits at a bound."""
    y = np.asarray(y_val, dtype=int)
    return bool((predict_label(p_val) == y).all() or at_bound(fit_temperature(y, p_val)))


def calibration_table(scaled: pd.DataFrame, bins: int = 10, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per (dataset, protocol, model), on test predictions pooled over the outer splits, before and after
    temperature scaling: NLL, Brier, ECE with equal-width and with equal-mass bins (each with a BCa
    interval) and the AUROC of the predictive entropy for telling errors from correct calls. Flags:
    ``T_degenerate`` (splits whose fit is degenerate, :func:`degenerate`), ``nll_improved`` (test NLL
    after < before; the book calls a map an improvement only then), ``sharpened`` (share of scaled
    predictions with confidence above 0.99, beside the same share before)."""
    rows = []
    for (ds, protocol, model), g in scaled.groupby(["dataset", "protocol", "model"], sort=True):
        y = g["label"].to_numpy()
        T = g.groupby("repeat")[["T", "degenerate"]].first()
        row = dict(dataset=ds, protocol=protocol, model=model, n=len(g), repeats=g["repeat"].nunique(),
                   errors=int((predict_label(g["p"]) != y).sum()), T_median=float(T["T"].median()),
                   T_degenerate=int(T["degenerate"].sum()))
        for tag, col in (("before", "p"), ("after", "p_scaled")):
            p = g[col].to_numpy()
            for name, fn in (("nll", nll), ("brier", brier), ("ece", functools.partial(ece_equal_width, bins=bins)),
                             ("ece_mass", functools.partial(ece_equal_mass, bins=bins))):
                est, lo, hi = bootstrap_interval(fn, y, p, n_boot, seed)
                row.update({f"{name}_{tag}": est, f"{name}_{tag}_low": lo, f"{name}_{tag}_high": hi})
            row[f"auroc_errors_{tag}"] = error_detection_auroc(y, p, binary_entropy(p))
            row[f"confident_{tag}"] = float((confidence(p) > 0.99).mean())
        row["nll_improved"] = bool(row["nll_after"] < row["nll_before"])
        rows.append(row)
    return pd.DataFrame(rows)


def log_odds_confidence(p, T=1.0) -> np.ndarray:
    """|logit(p)| / T: confidence in log-odds after temperature T. Monotone in the scaled confidence but
    with no ties at a rounded 0 or 1 except between equal unscaled p (the committed 6 decimals)."""
    return np.abs(_logit(p)) / np.asarray(T, dtype=float)


def referral(test: pd.DataFrame, val: pd.DataFrame, temps: pd.DataFrame, coverage: float, model: str = FUSED,
             protocol: str = "grouped") -> pd.DataFrame:
    """Referral with a threshold fitted on validation: per outer split, the log-odds confidence
    (:func:`log_odds_confidence`) that keeps ``coverage`` of that split's *validation* predictions; a test
    prediction below it is referred, one at or above it kept (ties go the same way, never by row order).
    Pooled per dataset: test predictions, kept, correct among kept, referred, errors among referred,
    the realised test coverage and the thresholds' median."""
    split = ["dataset", "protocol", "repeat", "model"]
    pick = lambda f: f[(f["model"] == model) & (f["protocol"] == protocol)]  # noqa: E731
    t, v = pick(test), pick(val).merge(temps, on=split, how="left", validate="many_to_one")
    thr = {k: float(np.quantile(log_odds_confidence(g["p"], g["T"]), 1 - coverage, method="lower"))
           for k, g in v.groupby(["dataset", "repeat"])}
    rows = []
    for ds, g in t.groupby("dataset"):
        th = np.array([thr[(ds, r)] for r in g["repeat"]])
        keep = log_odds_confidence(g["p"], g["T"]) >= th
        ok = predict_label(g["p"]).astype(int) == g["label"].to_numpy()
        rows.append(dict(dataset=ds, n=len(g), kept=int(keep.sum()), correct=int((ok & keep).sum()),
                         referred=int((~keep).sum()), referred_errors=int((~ok & ~keep).sum()),
                         coverage=float(keep.mean()), threshold_median=float(np.median(list(thr[(ds, r)] for r in g["repeat"].unique())))))
    return pd.DataFrame(rows)


def referral_curve(scaled: pd.DataFrame, model: str = FUSED, protocol: str = "grouped") -> pd.DataFrame:
    """Accuracy against coverage when the least confident test predictions (lowest log-odds confidence after
    scaling, :func:`log_odds_confidence`) are referred, pooled over the outer splits
    (:func:`allrep.uncertainty.rejection_curve`): a description of the test predictions at every coverage,
    not a decision (the decision is :func:`referral`'s validation-fitted threshold). Per dataset: coverage,
    kept, correct, accuracy."""
    rows = []
    for ds, g in scaled[(scaled["model"] == model) & (scaled["protocol"] == protocol)].groupby("dataset"):
        rc = rejection_curve(g["label"].to_numpy(), g["p_scaled"].to_numpy(), -log_odds_confidence(g["p"], g["T"]))
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
