"""The exploratory multiverse of the verdicts: every pre-specified universe scored with the verdict rule.

A universe is one level of every factor of the committed plan (``results/robustness/plan.yaml`` and its
amendment ``plan_trained.yaml``): which heads were trained (the registered run's, or a trained universe's: one
change of representation, reduction, views or seeds), from which base (the tuned ensemble or the untuned plain
reference), how many members (five, or member 0 alone), which backbones
are fused and by which rule (:func:`allrep.evaluate.fusion.fuse`), the rule's intra-group correlation (its
effective n) and the null of "not reproduced" (the claim, or the claim minus half the margin). Recombined
universes need no training: they re-score the registered run's committed test probabilities; trained universes
(:mod:`allrep.record.universes`) are crossed with the same recombined levels. Computes and
returns; writes nothing (:mod:`allrep.record.robustness` does).
"""
from __future__ import annotations

import itertools

import pandas as pd

from allrep.evaluate.claims import PAPER_CLAIMS, VERDICTS, bounds, effective_n
from allrep.evaluate.fusion import fuse

FACTORS = ("training", "tuning", "members", "fusion_set", "fusion_rule", "icc", "not_reproduced_below")
REGISTERED = "registered"  # the training level of the recombined universes: the registered run's own heads
_PLAN_KEY = {"not_reproduced_below": "null"}  # the plan names the last factor "null"
NULLS = ("claim", "claim_minus_half_margin")
RECOMBINED = FACTORS[1:]  # what the recombined section of the plan varies


def _get(section: dict, factor: str):
    """A factor's entry of a plan section (the plan's key ``null``, which YAML reads as None, for the last)."""
    key = _PLAN_KEY.get(factor, factor)
    return section[key] if key in section else section[None]


def universes(plan: dict, trained: dict | None = None) -> pd.DataFrame:
    """Every universe of the plan, one row each, with ``registered`` marking the plan's registered universe and
    ``universe`` a stable name: first the ``recombined`` factors crossed (training "registered"; a single
    backbone has one rule: sum), then each trained universe of the amendment ``trained``
    (``plan_trained.yaml``; its tuning is the base it starts from) crossed with every recombined level but tuning."""
    f = plan["recombined"]
    levels = {x: _get(f, x) for x in RECOMBINED}
    heads = [(REGISTERED, t) for t in levels["tuning"]] + [(u["name"], u["from"]) for u in (trained or {}).get("universes", [])]
    rows = []
    for (training, tuning), members, fset, rule, icc, null in itertools.product(heads, *(levels[x] for x in RECOMBINED[1:])):
        if len(fset) == 1 and rule != "sum":
            continue
        if null not in NULLS:
            raise ValueError(f"unknown null {null!r}: choose one of {NULLS}")
        rows.append(dict(training=training, tuning=tuning, members=int(members), fusion_set=" + ".join(fset),
                         fusion_rule=rule, icc=float(icc), not_reproduced_below=null))
    df = pd.DataFrame(rows)
    reg = plan["registered"]
    df["registered"] = ((df["training"] == REGISTERED) & (df["tuning"] == reg["tuning"]) & (df["members"] == int(reg["members"]))
                        & (df["fusion_set"] == " + ".join(reg["fusion_set"])) & (df["fusion_rule"] == reg["fusion_rule"])
                        & (df["icc"] == float(reg["icc"])) & (df["not_reproduced_below"] == _get(reg, "not_reproduced_below")))
    df.insert(0, "universe", [f"U{i:03d}" for i in range(len(df))])
    return df


def for_claim(uni: pd.DataFrame, dataset: str, trained: dict | None, available) -> pd.DataFrame:
    """The universes of one claim: the recombined ones, and the trained universes the amendment gives it whose
    heads are trained (``available``: (dataset, training) pairs with probabilities)."""
    given = set((trained or {}).get("claims", {}).get(dataset, []))
    have = uni["training"].map(lambda t: t in given and (dataset, t) in available)
    keep = (uni["training"] == REGISTERED) | have
    return uni[keep]


def member_means(probs: pd.DataFrame, members: int) -> pd.DataFrame:
    """Each backbone's score per test image: the mean of its kept members' probabilities (``members`` 1 keeps
    member 0), wide: index (repeat, id, label), one column per backbone. ``probs``: test probabilities of one
    dataset and protocol (columns repeat, backbone, member, id, label, p_all)."""
    p = probs[probs["member"] == 0] if members == 1 else probs
    if p["p_all"].isna().any():  # else a fusion would take an image whose scores are all NaN for absent
        raise ValueError(f"{int(p['p_all'].isna().sum())} test probabilities are missing (NaN)")
    return p.groupby(["repeat", "id", "label", "backbone"], sort=True)["p_all"].mean().unstack("backbone")


def correct_per_split(means: pd.DataFrame, fusion_set: list[str], rule: str) -> pd.DataFrame:
    """Per outer split (``repeat``): k correct and n test images of the fused decision of the backbones
    ``fusion_set``; ``means``: :func:`member_means` (computed once per set of heads, as every fusion set and
    rule re-scores the same means)."""
    cols = sorted(fusion_set)
    if not set(cols) <= set(means.columns):
        raise ValueError(f"probabilities missing for {sorted(set(cols) - set(means.columns))}")
    wide = means[cols].dropna(how="all")  # an image only another backbone scored is not in this fusion
    if wide.isna().any().any():
        bad = sorted(wide.index[wide.isna().any(axis=1)].get_level_values("repeat").unique())
        raise ValueError(f"split {bad[0]}: probabilities missing for {cols}")
    y = wide.index.get_level_values("label").to_numpy()
    right = (fuse(wide.to_numpy().T, rule) > 0.5) == (y == 1)
    per = pd.DataFrame({"repeat": wide.index.get_level_values("repeat").astype(int), "right": right})
    out = per.groupby("repeat", sort=True)["right"].agg(k="sum", n="size").reset_index()
    return out.astype({"repeat": int, "k": int, "n": int})


def verdict_at(k: int, n: int, n_eff: float, paper_pct: float, delta: float, alpha: float, null: str) -> tuple:
    """(low, high, verdict) of the rule (allrep.evaluate.claims) with "not reproduced" tested against the claim,
    or against the claim minus half the margin (``null``)."""
    lo, hi = (float(x) for x in bounds(k, n, n_eff, alpha))
    p0 = paper_pct / 100
    floor = p0 if null == "claim" else p0 - delta / 2
    v = VERDICTS[0] if lo > p0 - delta + 1e-12 else VERDICTS[2] if hi < floor - 1e-12 else VERDICTS[1]
    return lo, hi, v


SCORING = ["training", "tuning", "members", "fusion_set", "fusion_rule"]  # the factors that change a prediction


def scorings(probs: dict, plan: dict, trained: dict | None = None) -> dict:
    """Every distinct scoring of the plan, computed once: (dataset, training, tuning, members, fusion set, rule)
    -> its :func:`correct_per_split` frame (the rule's ICC and null change no prediction). ``probs``: (dataset,
    training, tuning) -> test probabilities (the registered run's for training "registered")."""
    uni = universes(plan, trained).drop_duplicates(SCORING)
    out, means = {}, {}
    for ds in plan["claims"]:
        for key in for_claim(uni, ds, trained, {(d, t) for d, t, _ in probs})[SCORING].itertuples(index=False, name=None):
            heads = (ds, key[0], key[1], key[2])
            if heads not in means:
                means[heads] = member_means(probs[heads[:3]], key[2])
            out[(ds, *key)] = correct_per_split(means[heads], key[3].split(" + "), key[4])
    return out


def multiverse(scored: dict, test_rows: dict, plan: dict, rule, trained: dict | None = None) -> pd.DataFrame:
    """One row per universe and claim: its factors, pooled k and n, accuracy, the rule's bounds and verdict, and
    the per-split k (``k_split_0``...). ``scored``: :func:`scorings` (the universes a claim has: the recombined
    ones and its trained ones with heads); ``test_rows``: dataset -> the split rows of its test parts (columns id,
    group) for the effective n; ``rule``: the verdict settings (delta, alpha)."""
    uni = universes(plan, trained)
    rows = []
    for ds in plan["claims"]:
        neff = {icc: effective_n(test_rows[ds], icc) for icc in uni["icc"].unique()}
        for u in uni.itertuples(index=False):
            per = scored.get((ds, u.training, u.tuning, u.members, u.fusion_set, u.fusion_rule))
            if per is None:  # a trained universe this claim does not have (or not yet trained)
                continue
            k, n = int(per["k"].sum()), int(per["n"].sum())
            lo, hi, v = verdict_at(k, n, neff[u.icc], PAPER_CLAIMS[ds], rule.delta, rule.alpha, u.not_reproduced_below)
            rows.append(dict(dataset=ds, **u._asdict(), k=k, n=n, accuracy=k / n, effective_n=neff[u.icc],
                             bound_low=lo, bound_high=hi, verdict=v,
                             **{f"k_split_{int(r)}": int(kk) for r, kk in zip(per["repeat"], per["k"])}))
    return pd.DataFrame(rows)


def sentence(mv: pd.DataFrame, dataset: str, name: str) -> str:
    """"across N pre-specified pipelines, <name> accuracy ranges a-b%; reproduced in x, inconclusive in y, not
    reproduced in z" for one claim."""
    d = mv[mv["dataset"] == dataset]
    counts = d["verdict"].value_counts()
    return (f"across {len(d)} pre-specified pipelines, {name} accuracy ranges {100 * d['accuracy'].min():.2f}-"
            f"{100 * d['accuracy'].max():.2f}%; reproduced in {counts.get(VERDICTS[0], 0)}, inconclusive in "
            f"{counts.get(VERDICTS[1], 0)}, not reproduced in {counts.get(VERDICTS[2], 0)}")


def what_moves(mv: pd.DataFrame) -> pd.DataFrame:
    """Per claim and factor: the share of universes whose verdict changes when that factor alone leaves the
    registered level (all other factors at the registered universe's levels), and the levels that change it."""
    reg = mv[mv["registered"]]
    rows = []
    for _, r in reg.iterrows():
        d = mv[mv["dataset"] == r["dataset"]]
        for f in FACTORS:
            others = [g for g in FACTORS if g != f]
            same = d[(d[others] == r[others]).all(axis=1) & (d[f] != r[f])]
            flips = same[same["verdict"] != r["verdict"]]
            rows.append(dict(dataset=r["dataset"], factor=f, levels=len(same), verdict_changes=len(flips),
                             changed_by=", ".join(f"{x} ({v})" for x, v in zip(flips[f].astype(str), flips["verdict"]))
                             or "none"))
    return pd.DataFrame(rows)


def trained_summary(mv: pd.DataFrame, plan: dict, reference: str = "retrained") -> pd.DataFrame:
    """Per claim and heads (the registered run's, each trained universe's): the universe at the registered levels of
    every recombined factor but tuning (each trained universe keeps its own base), with k, n, accuracy, verdict, the
    change in k against its base re-scored here (``reference``, the registered settings re-trained, for a tuned
    universe; the registered plain reference for an untuned one) and the range of its per-split k."""
    reg = plan["registered"]
    at = ((mv["members"] == int(reg["members"])) & (mv["fusion_set"] == " + ".join(reg["fusion_set"]))
          & (mv["fusion_rule"] == reg["fusion_rule"]) & (mv["icc"] == float(reg["icc"]))
          & (mv["not_reproduced_below"] == _get(reg, "not_reproduced_below")))
    d = mv[at].copy()
    base = {(ds, "search"): k for ds, k in zip(d.loc[d["training"] == reference, "dataset"], d.loc[d["training"] == reference, "k"])}
    plain = d[(d["training"] == REGISTERED) & (d["tuning"] != reg["tuning"])]
    base.update({(ds, t): k for ds, t, k in zip(plain["dataset"], plain["tuning"], plain["k"])})
    d["base"] = [("" if t == REGISTERED else reference if tu == reg["tuning"] else f"{REGISTERED} {tu}")
                 for t, tu in zip(d["training"], d["tuning"])]
    d["k_minus_base"] = [pd.NA if t == REGISTERED or (ds, tu) not in base else int(k - base[(ds, tu)])
                         for ds, t, tu, k in zip(d["dataset"], d["training"], d["tuning"], d["k"])]
    splits = d.filter(like="k_split_")
    d["split_k_range"] = [f"{int(lo)}-{int(hi)}" for lo, hi in zip(splits.min(axis=1), splits.max(axis=1))]
    return d[["dataset", "training", "tuning", "k", "n", "accuracy", "bound_low", "bound_high", "verdict", "base",
              "k_minus_base", "split_k_range"]].reset_index(drop=True)
