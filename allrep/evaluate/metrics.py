"""Classification metrics from predicted classes and probabilities.

Everything is computed from ``p(ALL)`` and its argmax (threshold 0.5, ties to
healthy), never from Keras binary metrics on one-hot outputs. Accuracy is kept
as the exact fraction k/n; the paper's 98.07% is 51/52 *truncated* to two
decimals (rounded it is 98.08%), so both are reported.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats


def predict_label(p_all, threshold: float = 0.5) -> np.ndarray:
    """1 (ALL) where p(ALL) > threshold, else 0: an exact 0.5 goes to healthy."""
    return (np.asarray(p_all, dtype=float) > threshold).astype(int)


def truncate_pct(k: int, n: int, digits: int = 2) -> float:
    """100*k/n truncated (not rounded) to ``digits`` decimals, exactly (integer arithmetic)."""
    scale = 10 ** digits
    return (100 * scale * k // n) / scale


def round_pct(k: int, n: int, digits: int = 2) -> float:
    """100*k/n rounded half-up to ``digits`` decimals, exactly."""
    scale = 10 ** digits
    return math.floor(100 * scale * k / n + 0.5) / scale


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper-Pearson) binomial confidence interval for k successes in n trials."""
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=1 - alpha, method="exact")
    return float(ci.low), float(ci.high)


def fraction(k: int, n: int) -> dict:
    lo, hi = clopper_pearson(k, n)
    return dict(k=int(k), n=int(n), value=k / n if n else float("nan"), ci_low=lo, ci_high=hi,
                pct_truncated=truncate_pct(k, n) if n else float("nan"), pct_rounded=round_pct(k, n) if n else float("nan"))


def binary_metrics(y_true, p_all) -> dict:
    """Accuracy (k/n + CI), sensitivity, specificity, precision, F1 and ROC AUC."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_true, dtype=int)
    p = np.asarray(p_all, dtype=float)
    yhat = predict_label(p)
    tp = int(((yhat == 1) & (y == 1)).sum())
    tn = int(((yhat == 0) & (y == 0)).sum())
    fp = int(((yhat == 1) & (y == 0)).sum())
    fn = int(((yhat == 0) & (y == 1)).sum())
    n = len(y)
    acc = fraction(tp + tn, n)
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    prec = tp / (tp + fp) if tp + fp else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else float("nan")
    auc = float(roc_auc_score(y, p)) if 0 < y.sum() < n else float("nan")
    return dict(n=n, n_correct=acc["k"], accuracy=acc["value"], ci_low=acc["ci_low"], ci_high=acc["ci_high"],
                acc_pct_truncated=acc["pct_truncated"], acc_pct_rounded=acc["pct_rounded"], tp=tp, tn=tn, fp=fp,
                fn=fn, sensitivity=sens, specificity=spec, precision=prec, f1=f1, auc=auc)


def summarize_repeats(values, clip: tuple | None = (0.0, 1.0)) -> dict:
    """Mean, standard deviation and a t-based 95% CI of the mean over repeated splits,
    clipped to [0, 1] (pass ``clip=None`` for unbounded quantities)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    n = len(v)
    if n == 0:
        return dict(n=0, mean=float("nan"), sd=float("nan"), ci_low=float("nan"), ci_high=float("nan"))
    mean = float(v.mean())
    sd = float(v.std(ddof=1)) if n > 1 else 0.0
    half = float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)) if n > 1 else float("nan")
    lo, hi = mean - half, mean + half
    if clip is not None:  # an accuracy cannot leave [0, 1]; the t interval can
        lo, hi = max(lo, clip[0]), min(hi, clip[1])
    return dict(n=n, mean=mean, sd=sd, ci_low=lo, ci_high=hi)


def corrected_repeats(values, n_test: float, n_train: float, clip: tuple | None = (0.0, 1.0)) -> dict:
    """Mean over repeated random splits with the corrected resampled t interval of Nadeau and Bengio
    (2003, Machine Learning 52:239): the training sets of the splits overlap, so the accuracies are
    correlated and the naive variance of the mean, s^2/J, is too small; they use
    (1/J + n_test/n_train) s^2. Also a 95% prediction interval for the accuracy of *one* further split,
    mean +- t * sqrt(s^2 + corrected variance of the mean): what a single split, like the paper's,
    could show. Written here because neither scipy nor sklearn has the correction; scipy supplies t."""
    v = np.asarray(values, dtype=float)
    J = len(v)
    mean = float(v.mean())
    s2 = float(v.var(ddof=1)) if J > 1 else 0.0
    var_mean = (1 / J + n_test / n_train) * s2
    t = float(stats.t.ppf(0.975, J - 1)) if J > 1 else float("nan")
    ci = (mean - t * math.sqrt(var_mean), mean + t * math.sqrt(var_mean))
    pi = (mean - t * math.sqrt(s2 + var_mean), mean + t * math.sqrt(s2 + var_mean))
    if clip is not None:
        ci = (max(ci[0], clip[0]), min(ci[1], clip[1]))
        pi = (max(pi[0], clip[0]), min(pi[1], clip[1]))
    return dict(n=J, mean=mean, sd=math.sqrt(s2), ci_low=ci[0], ci_high=ci[1], pi_low=pi[0], pi_high=pi[1])


# ----------------------------------------------------------------------------- probabilistic scores
EPS = 1e-6  # the committed probabilities have 6 decimals: a p of 0 or 1 is clipped at that resolution


def per_image_nll(y, p) -> np.ndarray:
    """Each image's negative log-likelihood (nats) of its binary label under p(ALL), p clipped to
    [EPS, 1 - EPS]: what :func:`nll` averages (the recipe choice pairs images on it)."""
    y, p = np.asarray(y, dtype=int), np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


def nll(y, p, axis=None):
    """Mean negative log-likelihood (nats) of binary labels under p(ALL), p clipped to [EPS, 1 - EPS].
    Hand-written because sklearn's ``log_loss`` clips at machine epsilon, which makes one rounded 0 or 1
    cost 36 nats. ``axis``: a mean per row (the bootstrap's vectorised call)."""
    out = np.mean(per_image_nll(y, p), axis=axis)
    return float(out) if axis is None else out


def brier(y, p, axis=None):
    """Binary Brier score, mean (p(ALL) - y)^2. Equal to ``sklearn.metrics.brier_score_loss`` (tested) but
    hand-written: sklearn validates its inputs for about 1 ms per call, and a bootstrap interval calls it
    thousands of times. ``axis``: a mean per row (the bootstrap's vectorised call)."""
    out = np.mean((np.asarray(p, dtype=float) - np.asarray(y, dtype=float)) ** 2, axis=axis)
    return float(out) if axis is None else out


def confidence(p) -> np.ndarray:
    """The probability of the predicted class."""
    p = np.asarray(p, dtype=float)
    return np.where(predict_label(p) == 1, p, 1 - p)


def _rows(y, p):
    """y and p as 2-D (rows of resampled images), for the binned calibration errors, and the shape of
    one value per row of the input (``()`` for 1-D input)."""
    y, p = np.broadcast_arrays(np.asarray(y, dtype=int), np.asarray(p, dtype=float))
    return y.reshape(-1, y.shape[-1]), p.reshape(-1, p.shape[-1]), p.shape[:-1]


def reliability_equal_mass(y, p, bins: int = 10) -> dict:
    """Equal-mass bins of confidence: mean confidence, accuracy and count per bin."""
    y = np.asarray(y, dtype=int)
    conf = confidence(p)
    correct = (predict_label(p) == y).astype(float)
    order = np.argsort(conf, kind="stable")
    parts = [b for b in np.array_split(order, min(bins, len(order))) if len(b)]
    return dict(confidence=np.array([conf[b].mean() for b in parts]), accuracy=np.array([correct[b].mean() for b in parts]),
                count=np.array([len(b) for b in parts]))


def ece_equal_mass(y, p, bins: int = 10, axis=None):
    """Expected calibration error over equal-mass confidence bins (those of :func:`reliability_equal_mass`):
    sum over bins of |correct - confidence| summed in the bin, over n. ``axis``: one value per row."""
    Y, P, shape = _rows(y, p)
    n = Y.shape[-1]
    conf, correct = confidence(P), (predict_label(P) == Y).astype(float)
    order = np.argsort(conf, axis=-1, kind="stable")
    gap = np.take_along_axis(correct - conf, order, axis=-1)
    starts = [b[0] for b in np.array_split(np.arange(n), min(bins, n)) if len(b)]
    out = (np.abs(np.add.reduceat(gap, starts, axis=-1)).sum(axis=-1) / n).reshape(shape)
    return float(out) if axis is None else out


def reliability_equal_width(y, p, bins: int = 10) -> dict:
    """Equal-width confidence bins on [0.5, 1] (the non-empty ones): mean confidence, accuracy, count."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    yhat, conf = predict_label(p), confidence(p)
    idx = np.minimum(((conf - 0.5) / 0.5 * bins).astype(int), bins - 1)
    parts = [idx == b for b in range(bins) if (idx == b).any()]
    return dict(confidence=np.array([conf[m].mean() for m in parts]),
                accuracy=np.array([(yhat[m] == y[m]).mean() for m in parts]), count=np.array([m.sum() for m in parts]))


def ece_equal_width(y, p, bins: int = 10, axis=None):
    """Expected calibration error (Guo et al. 2017) over equal-width confidence bins on [0.5, 1] (those of
    :func:`reliability_equal_width`): sum over bins of |correct - confidence| summed in the bin, over n.
    ``axis``: one value per row (the bootstrap's vectorised call)."""
    Y, P, shape = _rows(y, p)
    R, n = Y.shape
    conf, correct = confidence(P), (predict_label(P) == Y).astype(float)
    idx = np.minimum(((conf - 0.5) / 0.5 * bins).astype(int), bins - 1) + bins * np.arange(R)[:, None]
    gap = np.bincount(idx.ravel(), weights=(correct - conf).ravel(), minlength=R * bins).reshape(R, bins)
    out = (np.abs(gap).sum(axis=-1) / n).reshape(shape)
    return float(out) if axis is None else out


def bootstrap_interval(fn, y, p, n_boot: int, seed: int) -> tuple[float, float, float]:
    """``fn(y, p)`` and its BCa bootstrap 95% interval (``scipy.stats.bootstrap``, paired resampling of
    images). ECE is biased upward on small samples and its plain percentile interval can exclude the
    estimate; BCa corrects for the bootstrap distribution's bias. Where BCa is undefined (every resample
    gives the same value, e.g. ECE 0 on a test set without an error) the interval is the bootstrap
    distribution's percentile interval, which is that value."""
    import inspect
    import warnings

    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    est = fn(y, p)
    vectorized = "axis" in inspect.signature(fn).parameters  # the metrics here take an axis: one call per batch
    with warnings.catch_warnings():  # a degenerate distribution is handled below, not printed
        warnings.simplefilter("ignore")
        res = stats.bootstrap((y, p), fn, paired=True, vectorized=vectorized, method="BCa", n_resamples=int(n_boot),
                              random_state=int(seed) % (2**32))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if np.isnan(lo) or np.isnan(hi):
        lo, hi = (float(x) for x in np.percentile(res.bootstrap_distribution, [2.5, 97.5]))
    return est, lo, hi

