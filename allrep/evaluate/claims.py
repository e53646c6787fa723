"""The paper's claims against ours, and the verdict rule, fixed before the registered run.

**The rule** (settings: the profile's ``verdict`` section; the book quotes them). Our accuracy on a
claim is the pooled k/n over every outer split's test part. Two one-sided tests, each at level
``alpha``, against the paper's figure ``p0`` and a margin ``delta``:

* *reproduced*: our accuracy is shown to be no worse than ``p0 - delta`` (non-inferiority: the
  one-sided lower bound exceeds ``p0 - delta``);
* *not reproduced*: otherwise, when our accuracy is shown to be below the paper's figure itself (the
  one-sided upper bound is below ``p0``). Testing against ``p0``, not ``p0 - delta``, is what gives
  this side its power at ``p0 - delta`` (a pure non-inferiority test would say it only ``alpha`` of
  the time there);
* *inconclusive*: neither.

**Uncertainty at the level of photograph groups.** Test images of one photograph group are not
independent, and one image tested in several outer splits is not several images. The bounds are
Clopper-Pearson bounds at an *effective* number of independent images: the distinct test images
divided by the design effect ``1 + (m - 1) * icc`` (Kish), where ``m`` is the size-weighted mean
group size of those images and ``icc`` the pre-registered intra-group correlation of correctness
(development estimates scatter around 0 to 0.1 with few errors; 0.1 is the cautious end). Repeated
testing of an image adds nothing to the effective size, which is cautious too; the simulation
(:func:`operating_characteristics`) shows what that costs.

**The paper's figure is the claim under test**, taken as stated. Its own binomial uncertainty (51 of
52, say) is the paper's to report; adding it would turn the question into whether the paper's
*unknown true* accuracy differs from ours, which 22 to 74 test images cannot answer at any margin that
matters (:func:`design_table` gives the Clopper-Pearson interval of the paper's own figure).

Monotone by construction: the bounds increase with k (a fixed design), so more correct predictions
never move a verdict towards *not reproduced*. Each verdict has a **margin**: how many test
predictions would have to change to flip it (:func:`margin`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from allrep.evaluate.metrics import clopper_pearson, corrected_repeats, fraction

PAPER_CLAIMS = {"IDB1": 100.0, "IDB2": 98.07, "combined": 98.64}  # the abstract's accuracies (%)
FUSED = "sum fusion, all backbones"
VERDICTS = ("reproduced", "inconclusive", "not reproduced")


# ----------------------------------------------------------------------------- the rule
def design_effect(group_sizes, icc: float) -> float:
    """Kish's design effect ``1 + (m - 1) icc`` with ``m`` the size-weighted mean group size."""
    m = np.asarray(group_sizes, dtype=float)
    return float(1 + ((m ** 2).sum() / m.sum() - 1) * icc)


def effective_n(test_rows: pd.DataFrame, icc: float) -> float:
    """The effective number of independent test images of a design: distinct test images (columns
    ``id``, ``group``; one image in several splits counts once) over their :func:`design_effect`."""
    distinct = test_rows.drop_duplicates("id")
    return len(distinct) / design_effect(distinct.groupby("group").size(), icc)


def bounds(k, n, n_eff, alpha: float):
    """One-sided Clopper-Pearson bounds (each at level ``alpha``) for accuracy ``k / n`` at the effective
    size ``n_eff``: Beta quantiles at ``k_eff = n_eff k / n`` successes (scipy's Beta is continuous in
    its parameters, so a fractional k_eff is exact). Vectorised over k."""
    ke = np.asarray(k, dtype=float) / np.asarray(n, dtype=float) * n_eff
    with np.errstate(invalid="ignore"):
        lo = np.where(ke > 0, stats.beta.ppf(alpha, np.maximum(ke, 1e-12), n_eff - ke + 1), 0.0)
        hi = np.where(ke < n_eff, stats.beta.ppf(1 - alpha, ke + 1, np.maximum(n_eff - ke, 1e-12)), 1.0)
    return lo, hi


def verdicts(k, n, n_eff, paper_pct: float, delta: float, alpha: float) -> np.ndarray:
    """The rule (module doc) for every k of an array: an array of verdict strings."""
    p0 = paper_pct / 100
    lo, hi = bounds(k, n, n_eff, alpha)
    return np.where(lo > p0 - delta + 1e-12, VERDICTS[0], np.where(hi < p0 - 1e-12, VERDICTS[2], VERDICTS[1]))


def verdict(k: int, n: int, n_eff: float, paper_pct: float, delta: float, alpha: float) -> str:
    """The verdict on ``k`` correct of ``n`` test predictions (module doc)."""
    return str(verdicts(np.array([k]), n, n_eff, paper_pct, delta, alpha)[0])


def margin(k: int, n: int, n_eff: float, paper_pct: float, delta: float, alpha: float) -> int | None:
    """How many of the ``n`` test predictions would have to change (right to wrong or wrong to right) to
    flip the verdict: exact, since the rule depends on the pooled k only. None: no change flips it."""
    every = verdicts(np.arange(n + 1), n, n_eff, paper_pct, delta, alpha)
    flips = np.flatnonzero(every != every[k])
    return int(np.abs(flips - k).min()) if len(flips) else None


# ----------------------------------------------------------------------------- operating characteristics
def simulate_correct(tests, group_of, true_acc: float, icc: float, repeat_correlation: float, n_sim: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Correct test predictions of ``n_sim`` simulated runs of a design. ``tests``: per outer split, the
    indices of its test images; ``group_of``: each image's group index. A group's accuracy is drawn from
    a Beta of mean ``true_acc`` and intra-class correlation ``icc``, each image's from a Beta around its
    group's with correlation ``repeat_correlation`` (how much an image's difficulty persists across
    splits), and each (split, image) prediction is correct with its image's probability."""
    group_of = np.asarray(group_of)
    if true_acc >= 1:
        return np.full(n_sim, sum(len(t) for t in tests))

    def beta(mean, rho):
        if rho <= 0:
            return np.broadcast_to(mean, np.shape(mean)).astype(float)
        c = 1 / rho - 1
        mean = np.clip(mean, 1e-9, 1 - 1e-9)
        return rng.beta(mean * c, (1 - mean) * c)

    a = beta(np.full((n_sim, group_of.max() + 1), true_acc), icc)
    b = beta(a[:, group_of], repeat_correlation)
    return sum((rng.random((n_sim, len(t))) < b[:, t]).sum(axis=1) for t in tests)


def _design(split: pd.DataFrame):
    """(test image indices per outer split, group index per image, n test predictions) of a split file."""
    test = split[split["role"] == "test"]
    ids = pd.Index(sorted(test["id"].unique()))
    groups = test.drop_duplicates("id").set_index("id").loc[ids, "group"]
    group_of = pd.factorize(groups)[0]
    tests = [ids.get_indexer(g["id"]) for _, g in test.groupby("repeat", sort=True)]
    return tests, group_of, len(test)


def operating_characteristics(split: pd.DataFrame, paper_pct: float, rule, seed: int, grid=None) -> pd.DataFrame:
    """P(each verdict) against the true accuracy, by simulation of the design in ``split`` (its outer
    splits, test sizes and photograph groups; :func:`simulate_correct`) under the rule's settings
    (``rule``: the profile's ``verdict`` section). Columns: true_accuracy, p_reproduced,
    p_inconclusive, p_not_reproduced."""
    p0 = paper_pct / 100
    tests, group_of, n = _design(split)
    n_eff = effective_n(split[split["role"] == "test"], rule.icc)
    if grid is None:
        grid = np.round(np.arange(0.90, 1.0 + 1e-9, 0.005), 4)
    grid = np.unique(np.concatenate([grid, [round(p0, 6), round(p0 - rule.delta, 6)]]))
    rows = []
    for i, acc in enumerate(grid):
        rng = np.random.default_rng([seed, 7, i])
        k = simulate_correct(tests, group_of, float(acc), rule.icc, rule.repeat_correlation, rule.simulations, rng)
        v = verdicts(k, n, n_eff, paper_pct, rule.delta, rule.alpha)
        rows.append(dict(true_accuracy=float(acc), **{f"p_{x.replace(' ', '_')}": float((v == x).mean()) for x in VERDICTS}))
    return pd.DataFrame(rows)


def power_at(split: pd.DataFrame, paper_pct: float, rule, delta: float, seed: int) -> tuple[float, float]:
    """(P(reproduced) at the paper's figure, P(not reproduced) at ``delta`` below it) at margin ``delta``."""
    p0 = paper_pct / 100
    tests, group_of, n = _design(split)
    n_eff = effective_n(split[split["role"] == "test"], rule.icc)
    out = []
    for j, (acc, want) in enumerate(((p0, VERDICTS[0]), (p0 - delta, VERDICTS[2]))):
        rng = np.random.default_rng([seed, 8, j, int(round(delta * 1e4))])
        k = simulate_correct(tests, group_of, acc, rule.icc, rule.repeat_correlation, rule.simulations, rng)
        out.append(float((verdicts(k, n, n_eff, paper_pct, delta, rule.alpha) == want).mean()))
    return out[0], out[1]


def design_table(splits: dict, rule, seed: int, target: float = 0.8) -> pd.DataFrame:
    """Per dataset (``splits``: dataset -> grouped split file): the design (outer splits, test
    predictions, distinct images, groups, design effect, effective n), the power at the rule's margin on
    both sides, the smallest margin on a 0.5-point grid at which both reach ``target``, and the paper's
    own figure as k/n at our paper-protocol test size with its Clopper-Pearson interval."""
    rows = []
    for ds, split in splits.items():
        test = split[split["role"] == "test"]
        distinct = test.drop_duplicates("id")
        p0 = PAPER_CLAIMS[ds]
        rep, nrep = power_at(split, p0, rule, rule.delta, seed)
        smallest = None
        for d in np.round(np.arange(0.01, 0.1001, 0.005), 3):
            a, b = power_at(split, p0, rule, float(d), seed)
            if a >= target and b >= target:
                smallest = float(d)
                break
        n_paper = int(round(0.2 * split["id"].nunique()))  # the paper's 80/20 test size: a fifth of the dataset
        k_paper = int(round(p0 / 100 * n_paper))
        lo, hi = clopper_pearson(k_paper, n_paper)
        rows.append(dict(dataset=ds, outer_splits=int(test["repeat"].nunique()), test_predictions=len(test),
                         images=len(distinct), groups=int(distinct["group"].nunique()),
                         design_effect=design_effect(distinct.groupby("group").size(), rule.icc),
                         effective_n=effective_n(test, rule.icc), paper_accuracy=p0, delta=rule.delta,
                         alpha=rule.alpha, icc=rule.icc, p_reproduced_at_paper=rep,
                         p_not_reproduced_at_delta_below=nrep, meets=bool(rep >= target and nrep >= target),
                         smallest_delta=smallest, paper_k=k_paper, paper_n=n_paper, paper_ci_low=lo, paper_ci_high=hi))
    return pd.DataFrame(rows)


def verdict_design(grouped: dict, rule, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rule's operating characteristics (:func:`operating_characteristics`, columns dataset,
    true_accuracy, p_reproduced, p_inconclusive, p_not_reproduced) and the design table
    (:func:`design_table`) of a grouped design (``grouped``: dataset -> split file), both rounded to 6
    decimals as written. They depend on the splits and the rule only: no model is needed."""
    oc = pd.concat([operating_characteristics(sp, PAPER_CLAIMS[ds], rule, seed).assign(dataset=ds)
                    for ds, sp in grouped.items()], ignore_index=True)
    oc = oc[["dataset", "true_accuracy", "p_reproduced", "p_inconclusive", "p_not_reproduced"]]
    return oc.round(6), design_table(grouped, rule, seed).round(6)


# ----------------------------------------------------------------------------- the claims table
def split_facts(splits: pd.DataFrame, icc: float) -> dict:
    """Per (dataset, protocol): mean training-part size, the share of test images whose group also has
    training images (pooled over the outer splits) and the design's effective n (:func:`effective_n`)."""
    from allrep.data.splits import leakage

    out = {}
    for (ds, protocol), g in splits.groupby(["dataset", "protocol"]):
        n_train, k, n = [], 0, 0
        for _, s in g.groupby("repeat"):
            n_train.append(int((s["role"] != "test").sum()))
            lk = leakage(s)
            k, n = k + lk["n_test_group_in_train"], n + lk["n_test"]
        out[(ds, protocol)] = dict(n_train=sum(n_train) / len(n_train), leaked=k, n_test=n,
                                   n_eff=effective_n(g[g["role"] == "test"], icc))
    return out


def model_sets(scores: pd.DataFrame, random_bb=()) -> dict:
    """The fused models every claim gets a row for: name -> (scores model, backbones named, random ones
    marked). The three-backbone fusion always; the pretrained backbones alone when some were random."""
    backbones = sorted({m[: -len(" ensemble")] for m in scores["model"] if m.endswith(" ensemble")})
    name = lambda bbs: " + ".join(f"{b} (random)" if b in random_bb else b for b in bbs)  # noqa: E731
    out = {"all backbones": (FUSED, name(backbones))}
    pretrained = [b for b in backbones if b not in random_bb]
    model = f"sum fusion, without {', '.join(sorted(random_bb))} (random init)"
    if random_bb and model in set(scores["model"]):
        out["pretrained only"] = (model, name(pretrained))
    return out


def claims(scores: pd.DataFrame, rule, random_bb=(), facts: dict | None = None) -> pd.DataFrame:
    """One row per paper claim, protocol and fused model (:func:`model_sets`): pooled k/n, the rule's
    bounds and verdict (module doc), its margin, the mean over outer splits with the corrected resampled
    t interval (Nadeau and Bengio 2003) for reading, the leakage share, and the plain heads' sum rule."""
    from allrep.evaluate.scores import PLAIN_FUSION

    rows = []
    plain = scores[scores["model"] == PLAIN_FUSION]
    sets = model_sets(scores, random_bb)
    for ds, paper in PAPER_CLAIMS.items():
        for set_name, (model, models) in sets.items():
            part = scores[(scores["model"] == model) & (scores["dataset"] == ds)]
            for protocol, pp in part.groupby("protocol", sort=False):
                pp = pp.sort_values("repeat")
                k, n = int(pp["n_correct"].sum()), int(pp["n"].sum())
                fact = (facts or {})[(ds, protocol)]
                f = fraction(k, n)
                lo, hi = bounds(k, n, fact["n_eff"], rule.alpha)
                r = corrected_repeats(pp["accuracy"], n / len(pp), fact["n_train"]) if len(pp) > 1 else {}
                row = dict(dataset=ds, protocol=protocol, models=models, model_set=set_name, score_model=model, repeats=len(pp),
                           n_test=n, n_correct=k, accuracy=k / n, acc_pct_truncated=f["pct_truncated"],
                           acc_pct_rounded=f["pct_rounded"], paper_accuracy=paper,
                           reach_paper=int(sum(a >= paper / 100 - 1e-12 for a in pp["accuracy"])),
                           effective_n=fact["n_eff"], bound_low=float(lo), bound_high=float(hi),
                           mean_over_repeats=r.get("mean", float("nan")), sd_over_repeats=r.get("sd", float("nan")),
                           mean_ci_low=r.get("ci_low", float("nan")), mean_ci_high=r.get("ci_high", float("nan")),
                           delta=rule.delta, alpha=rule.alpha,
                           verdict=verdict(k, n, fact["n_eff"], paper, rule.delta, rule.alpha),
                           margin=margin(k, n, fact["n_eff"], paper, rule.delta, rule.alpha),
                           leakage=fact["leaked"] / fact["n_test"],
                           random_init_backbones=", ".join(sorted(b for b in random_bb if b in models)) or "none")
                pl = plain[(plain["dataset"] == ds) & (plain["protocol"] == protocol)]
                if len(pl) and set_name == "all backbones":
                    row.update(plain_n_correct=int(pl["n_correct"].sum()), plain_mean_over_repeats=float(pl["accuracy"].mean()))
                rows.append(row)
    return pd.DataFrame(rows)
