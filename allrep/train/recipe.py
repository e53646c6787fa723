"""How the head's training recipe was chosen: a study on inner grouped folds, never on a test image.

The recipe (feature pooling, channel reduction, projection and head size, epochs, patience,
optimiser settings, batch size) is a decision; it is made on validation evidence only. For each
dataset of the study, the *training part* (train and validation roles) of one grouped repeat is cut
into ``folds`` inner folds by photograph group (``StratifiedGroupKFold``); for each inner fold, a
head trains on the rest (early stopping on a grouped validation part carved from that rest) and
is scored on the held-out inner fold: cross-entropy (NLL) and accuracy. The repeat's own test images
take no part. Each candidate changes some settings of ``base`` (one factor at a time); all candidates
see the same folds and seeds, so their differences are paired.

What the study cannot avoid, and the book says: any recipe shared by all grouped repeats is chosen on
images that other repeats hold out as test images (repeat 0's training part is most of the data).
The decision is a handful of discrete settings, each compared on paired folds; the verdicts rest on
per-repeat tuning and test parts that nothing else touches.
"""
from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pandas as pd

from allrep.evaluate.metrics import per_image_nll
from allrep.profile import Candidate, Head, Profile, Training, load_section
from allrep.progress import bar
from allrep.repro import seed_for
from allrep.train.heads import ended_by

HEAD_FIELDS = {f.name for f in fields(Head)}
TRAINING_FIELDS = {f.name for f in fields(Training)}


def apply(head: Head, training: Training, *cands: Candidate) -> tuple[Head, Training]:
    """``head`` and ``training`` with each candidate's changes applied in turn."""
    for c in cands:
        ch = c.changes()
        head = replace(head, **{k: v for k, v in ch.items() if k in HEAD_FIELDS})
        training = replace(training, **{k: v for k, v in ch.items() if k in TRAINING_FIELDS})
    return head, training


def study_settings(cfg: Profile, cand: Candidate) -> tuple[Head, Training]:
    """A candidate's full settings: the library defaults, the study's ``base``, then the candidate. The
    study never starts from the profile's ``head:``/``training:`` (they are its outcome)."""
    return apply(Head(), Training(), cfg.recipe_study.base, cand)


def inner_folds(part: pd.DataFrame, folds: int, val_fraction: float, seed: int) -> list[pd.DataFrame]:
    """The inner folds of a training part (rows with roles train/val): per fold a frame whose roles are
    train, val (carved by group from the rest, for early stopping) and test (the held-out inner fold)."""
    from sklearn.model_selection import StratifiedGroupKFold

    from allrep.data.splits import grouped_pick

    part = part.reset_index(drop=True)
    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed % (2**32))
    out = []
    for f, (rest, held) in enumerate(cv.split(part, part["label"], part["group"])):
        rest_df = part.iloc[rest]
        val = grouped_pick(rest_df, "group", val_fraction, np.random.default_rng([seed, 3, f]))
        role = np.where(part.index.isin(held), "test", np.where(part["id"].isin(val), "val", "train"))
        out.append(part.assign(role=role))
    return out


def study(cfg: Profile, splits: dict[str, pd.DataFrame], backbones=None) -> pd.DataFrame:
    """One row per (candidate, backbone, dataset, inner fold): held-out NLL and accuracy, epochs,
    what ended training. ``splits``: each study dataset's grouped split frame. Every head is a plan of
    the member engine (:mod:`allrep.train.members`), cached."""
    from allrep.evaluate.metrics import nll
    from allrep.train import members

    rs = cfg.recipe_study
    cands = {"base": Candidate(), **rs.candidates}
    todo = []
    for backbone in backbones or cfg.use_backbones:
        for ds in rs.datasets:
            sp = splits[ds]
            part = sp[(sp["repeat"] == rs.repeat) & (sp["role"] != "test")]
            for f, fr in enumerate(inner_folds(part, rs.folds, cfg.splits.val_fraction, seed_for(cfg.seed, "inner", ds))):
                for name, cand in cands.items():
                    head, ts = study_settings(cfg, cand)
                    todo.append((name, backbone, ds, f, members.plan(backbone, fr, head, ts,
                                                                      seed_for(cfg.seed, "recipe", ds, f, backbone))))
    rows = []
    for (name, backbone, ds, f, p), r in zip(todo, members.fetch(cfg, bar([t[-1] for t in todo], desc="recipe heads"))):
        y = np.array([lab for _, role, lab in p.rows if role == "test"])
        rows.append(dict(candidate=name, backbone=backbone, dataset=ds, fold=f, nll=nll(y, r["p_test"]),
                         correct=int(((r["p_test"] > 0.5) == (y == 1)).sum()), n=int(len(y)),
                         epochs_run=r["epochs_run"], best_epoch=r["best_epoch"],
                         ended_by=ended_by(r["epochs_run"], r["best_epoch"], p.training.patience),
                         seconds=round(r["train_seconds"], 2)))
    order = {n: i for i, n in enumerate(cands)}
    return pd.DataFrame(rows).sort_values(["backbone", "candidate"], key=lambda c: c.map(order) if c.name == "candidate"
                                          else c.map({b: i for i, b in enumerate(backbones or cfg.use_backbones)}),
                                          kind="stable").reset_index(drop=True)


def summary(results: pd.DataFrame, cfg: Profile) -> pd.DataFrame:
    """Per candidate: what it changes, mean held-out NLL and its paired difference from ``base``
    (mean and standard error over the backbone x dataset x fold cells), pooled accuracy k/n,
    heads ended by the epoch cap, seconds per head."""
    cands = {"base": Candidate(), **cfg.recipe_study.candidates}
    key = ["backbone", "dataset", "fold"]
    base = results[results["candidate"] == "base"].set_index(key)["nll"]
    rows = []
    for name, g in results.groupby("candidate", sort=False):
        d = g.set_index(key)["nll"] - base.reindex(g.set_index(key).index)
        rows.append(dict(candidate=name, changes=", ".join(f"{k}={v}" for k, v in cands[name].changes().items()) or "",
                         nll=g["nll"].mean(), d_nll=d.mean(), se_d_nll=d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0.0,
                         correct=int(g["correct"].sum()), n=int(g["n"].sum()),
                         capped=int((g["ended_by"] == "epoch cap").sum()), heads=len(g),
                         seconds_per_head=g["seconds"].mean()))
    return pd.DataFrame(rows)


STOPPING = {"epochs", "patience", "min_delta"}
CONFIRM = "chosen"  # the candidate that re-scores the decided recipe on the same folds (not itself a choice)


def decide(summ: pd.DataFrame, cfg: Profile) -> dict:
    """The decision rule, applied to :func:`summary`: a candidate's changes are adopted when its paired
    held-out NLL beats the base by more than one standard error, or, when it is cheaper (under 80% of
    the base's seconds per head), when it is not worse by more than one standard error (the one-SE
    rule, in favour of the cheaper recipe). A candidate that changes the stopping rule (epochs, patience,
    min_delta) is eligible only if the epoch cap ended none of its heads: members must converge (this
    clause was added after the study's table had been seen, and the book says so). Two adopted
    candidates that change the same setting: the lower NLL wins. Returns the merged changes (setting ->
    value) on top of ``base``."""
    cands = cfg.recipe_study.candidates
    base_sec = float(summ.loc[summ["candidate"] == "base", "seconds_per_head"].iloc[0])
    adopted = []
    for r in summ.itertuples():
        if r.candidate in ("base", CONFIRM):
            continue
        if set(cands[r.candidate].changes()) & STOPPING and r.capped > 0:
            continue  # members must converge: a stopping rule under which the cap ends a head is not eligible
        cheaper = r.seconds_per_head < 0.8 * base_sec
        if r.d_nll + r.se_d_nll < 0 or (cheaper and r.d_nll < r.se_d_nll):
            adopted.append((r.d_nll, r.candidate))
    changes, owner = {}, {}
    for _, name in sorted(adopted):  # best first: a later candidate cannot override its setting
        for k, v in cands[name].changes().items():
            if k not in changes:
                changes[k], owner[k] = v, name
    return dict(changes=changes, adopted=[n for _, n in sorted(adopted)])


# ----------------------------------------------------------------------------- the choice inside each split
def paired_choice(nll_per_image: dict[str, np.ndarray]) -> dict:
    """The recipe rule inside one outer split: the first candidate (the development recipe) is kept unless
    another has a mean validation NLL lower by more than one paired standard error (over the validation
    images, each image's NLL under the other candidate minus under the first); among those that beat it,
    the lowest mean wins. Returns recipe, and per candidate its mean NLL and paired difference (mean, se)."""
    names = list(nll_per_image)
    first = np.asarray(nll_per_image[names[0]], dtype=float)
    out, best = {}, (0.0, names[0])
    for n in names:
        x = np.asarray(nll_per_image[n], dtype=float)
        d = x - first
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
        out[n] = dict(nll=float(x.mean()), d_nll=float(d.mean()), se_d_nll=se)
        if n != names[0] and d.mean() + se < 0 and d.mean() < best[0]:
            best = (float(d.mean()), n)
    return dict(recipe=best[1], candidates=out)


def candidate_settings(cfg: Profile) -> dict[str, tuple[Head, Training]]:
    """Each nested candidate's (head, training): the profile's ``head:``/``training:`` with its changes."""
    return {n: apply(cfg.head, cfg.training, c) for n, c in cfg.recipe_choice.candidates.items()}


def plain_settings(cfg: Profile) -> tuple[Head, Training]:
    """(head, training) of the plain reference (step 32): with ``plain.use_head`` the profile's ``head:`` and
    ``training:`` themselves (the values the tuner starts from), otherwise ``plain:``'s fixed settings."""
    if cfg.plain.use_head:
        return cfg.head, cfg.training
    return cfg.plain.head, replace(cfg.plain.training, min_delta=cfg.plain.min_delta)


def split_settings(cfg: Profile, best: pd.DataFrame, where: str) -> dict[tuple[str, int], tuple[Head, Training]]:
    """Each split's ensemble settings from its search's best row (step 20's ``best`` table, read from ``where``),
    by (protocol, repeat): the head its own search chose, and the training section of the recipe its own choice
    adopted (the ``recipe`` column, with ``recipe_choice.enabled``), else the profile's ``training:``."""
    settings = candidate_settings(cfg) if "recipe" in best else {}
    head_fields = list(Head().to_dict())
    return {(row["protocol"], int(row["repeat"])):
            (load_section(Head, {k: row[k] for k in head_fields}, where),
             settings[row["recipe"]][1] if settings else cfg.training)
            for row in best.to_dict("records")}


def choice_plans(cfg: Profile, backbone: str, split: pd.DataFrame, seed: int) -> dict:
    """One head per candidate on the split's training part, early-stopped and scored on its validation part;
    the split's test rows are dropped before any plan is made (``test=False``)."""
    from allrep.train import members

    return {n: members.plan(backbone, split, h, t, seed, test=False) for n, (h, t) in candidate_settings(cfg).items()}


def choose_in_split(cfg: Profile, backbone: str, split: pd.DataFrame, seed: int, results: dict | None = None) -> dict:
    """:func:`paired_choice` on one outer split (``results``: candidate -> the member engine's result of its
    :func:`choice_plans` plan, fetched when None). Returns recipe, head, training and the evidence."""
    from allrep.train import members

    plans = choice_plans(cfg, backbone, split, seed)
    if results is None:
        results = dict(zip(plans, members.fetch(cfg, list(plans.values()))))
    y = np.array([lab for _, role, lab in next(iter(plans.values())).rows if role == "val"])
    got = paired_choice({n: per_image_nll(y, results[n]["p_val"]) for n in plans})
    head, training = candidate_settings(cfg)[got["recipe"]]
    return dict(got, head=head, training=training)
