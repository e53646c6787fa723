"""Calibration done on validation only: a map chosen per split, and its effect on test.

For every split and model (each backbone's ensemble mean, and the sum-rule fusion of the backbones,
the paper's final model) a calibration map is chosen on that split's *validation* part among
:data:`MAPS`: none (T = 1), temperature scaling (the T minimising the cross-entropy of
``sigmoid(logit(p) / T)``, Guo et al. 2017, for two classes) and a regularised temperature (the same
with a normal prior on log T centred on 1, a MAP estimate). The choice is cross-fitted: each map is fitted
on all but one grouped fold of the validation part and scored (NLL) on the held-out fold, and the map with
the lowest held-out NLL wins (ties to the simpler map). The same validation part also early-stopped and
tuned the members, so its predictions are optimistic; cross-fitting keeps the *map's* own fit from being
scored on the images it was fitted on, and "none" is always a candidate. An unregularised temperature whose
fit is degenerate (:func:`degenerate`) is never chosen. The winner is refitted on the whole validation part
and applied to the test part. Nothing is fitted on a test image.

Calibration is measured on test predictions pooled over the grouped repeats (each repeat's test part
is small): ECE with equal-width confidence bins (Guo et al.), NLL and Brier score (:mod:`allrep.evaluate.metrics`), each
with a BCa bootstrap interval (:func:`allrep.evaluate.metrics.bootstrap_interval`). Images are resampled as
pooled (image, repeat) predictions.
"""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from scipy import optimize

from allrep.evaluate.metrics import (
    EPS,
    bootstrap_interval,
    brier,
    confidence,
    ece_equal_mass,
    ece_equal_width,
    nll,
    predict_label,
)
from allrep.evaluate.scores import ensemble_means
from allrep.evaluate.uncertainty import binary_entropy, error_detection_auroc, rejection_curve

FUSED = "sum fusion"
T_BOUNDS = (0.05, 20.0)  # the temperature search's bounds (fit_temperature)
MAPS = ("none", "regularised", "temperature")  # simplest first: a tie in held-out NLL goes to the earlier map


def _logit(p):
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def scale(p, T: float) -> np.ndarray:
    """p(ALL) after temperature T: sigmoid(logit(p) / T)."""
    return 1 / (1 + np.exp(-_logit(p) / T))


NLL_TIE = 1e-9  # nats: below this, two mean NLLs differ by the summation's rounding, not by a map


def improved(nll_before: float, nll_after: float) -> bool:
    """Whether a calibration map lowered the test NLL by more than rounding (:data:`NLL_TIE`). Where every split
    chose no map the two NLLs are the same sum in another order, and a bare ``after < before`` flips with the
    CPU's arithmetic (measured: equal to the 16th digit, "improved" on one CPU and not on another)."""
    return bool(nll_after < nll_before - NLL_TIE)


def fit_temperature(y_val, p_val, prior_sd: float | None = None) -> float:
    """The T in :data:`T_BOUNDS` that minimises the validation cross-entropy (bounded scalar search on log T).
    With ``prior_sd``, the posterior mode under log T ~ N(0, prior_sd^2): the summed cross-entropy plus
    (log T)^2 / (2 prior_sd^2), which keeps T finite where the validation part is separated."""
    z, y = _logit(p_val), np.asarray(y_val, dtype=int)
    pen = 0.0 if prior_sd is None else 1 / (2 * prior_sd ** 2 * max(len(y), 1))  # per image, as nll is a mean
    res = optimize.minimize_scalar(lambda t: nll(y, 1 / (1 + np.exp(-z / np.exp(t)))) + pen * t * t,
                                   bounds=tuple(np.log(T_BOUNDS)), method="bounded")
    return float(np.exp(res.x))


def fit_map(kind: str, y_val, p_val, prior_sd: float) -> float:
    """The temperature of calibration map ``kind`` (:data:`MAPS`) fitted on (y_val, p_val); none is T = 1."""
    if kind == "none":
        return 1.0
    if kind == "temperature":
        return fit_temperature(y_val, p_val)
    if kind == "regularised":
        return fit_temperature(y_val, p_val, prior_sd)
    raise ValueError(f"unknown calibration map {kind!r}: choose from {', '.join(MAPS)}")


def _folds(y, groups, folds: int, seed: int) -> list[np.ndarray]:
    """Held-out index sets of a grouped stratified k-fold of the validation part (k at most its groups per
    class, at least 2); empty when the part has one class or a single group."""
    from sklearn.model_selection import StratifiedGroupKFold

    y, groups = np.asarray(y, dtype=int), np.asarray(groups)
    per_class = min((len(set(groups[y == c])) for c in (0, 1)), default=0)
    k = min(int(folds), per_class)
    if k < 2:
        return []
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [held for _, held in cv.split(np.zeros(len(y)), y, groups)]


def cross_fitted_nll(kind: str, y_val, p_val, groups, folds: int, seed: int, prior_sd: float) -> float:
    """Mean NLL of map ``kind`` on held-out grouped folds of the validation part, each fold scaled by the map
    fitted on the other folds (nan when the part cannot be folded)."""
    y, p = np.asarray(y_val, dtype=int), np.asarray(p_val, dtype=float)
    held = _folds(y, groups, folds, seed)
    if not held:
        return float("nan")
    scaled = np.empty(len(y))
    for h in held:
        rest = np.setdiff1d(np.arange(len(y)), h)
        scaled[h] = scale(p[h], fit_map(kind, y[rest], p[rest], prior_sd))
    return nll(y, scaled)


def choose_map(y_val, p_val, groups, folds: int, seed: int, prior_sd: float) -> dict:
    """The map for one split and model: lowest cross-fitted NLL among :data:`MAPS` (ties to the simpler), an
    unregularised temperature excluded when its fit is degenerate, "none" when the part cannot be folded.
    Returns map, T (the winner refitted on the whole part), degenerate, T_temperature (plain temperature
    scaling's T, for comparison) and each map's held-out NLL."""
    y, p = np.asarray(y_val, dtype=int), np.asarray(p_val, dtype=float)
    cv = {k: cross_fitted_nll(k, y, p, groups, folds, seed, prior_sd) for k in MAPS}
    deg = degenerate(y, p)
    allowed = [k for k in MAPS if not np.isnan(cv[k]) and not (k == "temperature" and deg)]
    best = min(allowed, key=lambda k: (round(cv[k], 12), MAPS.index(k))) if allowed else "none"
    return dict(map=best, T=fit_map(best, y, p, prior_sd), degenerate=deg, T_temperature=fit_temperature(y, p),
                **{f"cv_nll_{k}": cv[k] for k in MAPS})


def model_probabilities(probs: pd.DataFrame, backbones) -> pd.DataFrame:
    """Per split and image: each backbone's ensemble mean p(ALL) (:func:`allrep.evaluate.scores.ensemble_means`) and
    the sum-rule fusion of ``backbones`` (their mean: for two classes the sum rule's decision). Long:
    protocol, repeat, dataset, model, id, label, p."""
    keys = ["protocol", "repeat", "dataset", "id", "label"]
    ens = ensemble_means(probs).set_index(keys + ["backbone"])["p_all"].unstack("backbone")
    fused = ens[list(backbones)].mean(axis=1).rename(FUSED)
    wide = pd.concat([ens, fused], axis=1)
    wide.columns.name = None
    return wide.reset_index().melt(id_vars=keys, var_name="model", value_name="p")


def calibrate(test: pd.DataFrame, val: pd.DataFrame, groups: dict | None = None, folds: int = 5, seed: int = 0,
              prior_sd: float = 0.5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Choose and fit a map per (dataset, protocol, repeat, model) on ``val`` (:func:`model_probabilities`
    of the validation parts; :func:`choose_map`, folds grouped by ``groups``, image id -> photograph group,
    each image its own group when None) and scale ``test``'s p by it. Returns (test with ``p_scaled``, the
    maps: T, map, degenerate, each map's cross-fitted NLL)."""
    split = ["dataset", "protocol", "repeat", "model"]
    grp = (lambda ids: [groups[i] for i in ids]) if groups is not None else (lambda ids: list(ids))  # noqa: E731
    temps = pd.DataFrame([dict(zip(split, k), **choose_map(g["label"], g["p"], grp(g["id"]), folds, seed, prior_sd))
                          for k, g in val.groupby(split, sort=True)])
    out = test.merge(temps, on=split, how="left", validate="many_to_one")
    if out["T"].isna().any():
        raise ValueError("a test split has no validation predictions to fit its temperature on")
    out["p_scaled"] = scale(out["p"].to_numpy(), out["T"].to_numpy())
    out["p_temperature"] = scale(out["p"].to_numpy(), out["T_temperature"].to_numpy())  # had T been fitted everywhere
    return out, temps


def at_bound(T) -> np.ndarray:
    """A temperature at the search's bound."""
    T = np.asarray(T, dtype=float)
    return (T <= T_BOUNDS[0] * 1.001) | (T >= T_BOUNDS[1] * 0.999)


def degenerate(y_val, p_val) -> bool:
    """A degenerate temperature fit: the validation part is separated by the model (every prediction on its
    correct side), so its cross-entropy falls for ever as T falls and the fitted T is wherever the search
    or the probability clip (:data:`allrep.evaluate.metrics.EPS`) stopped it, not an estimate; or T sits at a bound."""
    y = np.asarray(y_val, dtype=int)
    return bool((predict_label(p_val) == y).all() or at_bound(fit_temperature(y, p_val)))


def calibration_table(scaled: pd.DataFrame, bins: int = 10, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per (dataset, protocol, model), on test predictions pooled over the outer splits, before and after
    the chosen map (:func:`calibrate`): NLL, Brier, ECE with equal-width and with equal-mass bins (each
    with a BCa interval) and the AUROC of the predictive entropy for telling errors from correct calls.
    Beside them: how many splits chose each map (``map_none``, ...), the test NLL had plain temperature
    scaling been applied on every split (``nll_temperature_only``), ``T_degenerate`` (splits whose
    temperature fit is degenerate, :func:`degenerate`), ``nll_improved`` (test NLL after < before; the book
    calls a map an improvement only then, :func:`improved`) and the share of predictions with confidence above 0.99."""
    rows = []
    for (ds, protocol, model), g in scaled.groupby(["dataset", "protocol", "model"], sort=True):
        y = g["label"].to_numpy()
        T = g.groupby("repeat")[["T", "degenerate", "map"]].first()
        row = dict(dataset=ds, protocol=protocol, model=model, n=len(g), repeats=g["repeat"].nunique(),
                   errors=int((predict_label(g["p"]) != y).sum()), T_median=float(T["T"].median()),
                   T_degenerate=int(T["degenerate"].sum()),
                   **{f"map_{k}": int((T["map"] == k).sum()) for k in MAPS})
        for tag, col in (("before", "p"), ("after", "p_scaled")):
            p = g[col].to_numpy()
            for name, fn in (("nll", nll), ("brier", brier), ("ece", functools.partial(ece_equal_width, bins=bins)),
                             ("ece_mass", functools.partial(ece_equal_mass, bins=bins))):
                est, lo, hi = bootstrap_interval(fn, y, p, n_boot, seed)
                row.update({f"{name}_{tag}": est, f"{name}_{tag}_low": lo, f"{name}_{tag}_high": hi})
            row[f"auroc_errors_{tag}"] = error_detection_auroc(y, p, binary_entropy(p))
            row[f"confident_{tag}"] = float((confidence(p) > 0.99).mean())
        row["nll_temperature_only"] = nll(y, g["p_temperature"].to_numpy())
        row["nll_improved"] = improved(row["nll_before"], row["nll_after"])
        rows.append(row)
    return pd.DataFrame(rows)


def log_odds_confidence(p, T=1.0) -> np.ndarray:
    """|logit(p)| / T: confidence in log-odds after temperature T. Monotone in the scaled confidence but
    with no ties at a rounded 0 or 1 except between equal unscaled p (the committed 6 decimals)."""
    return np.abs(_logit(p)) / np.asarray(T, dtype=float)


def referral_threshold(p_val, T: float, coverage: float) -> float:
    """The log-odds confidence (:func:`log_odds_confidence`) that keeps ``coverage`` of the validation
    predictions ``p_val`` (scaled by T): a prediction below it is referred, one at or above it kept."""
    return float(np.quantile(log_odds_confidence(p_val, T), 1 - coverage, method="lower"))


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
    thr = {k: referral_threshold(g["p"], g["T"].iloc[0], coverage) for k, g in v.groupby(["dataset", "repeat"])}
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
    (:func:`allrep.evaluate.uncertainty.rejection_curve`): a description of the test predictions at every coverage,
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
