"""Train / validation / test splits, written as files the book publishes.

Two protocols per dataset:

* ``paper``: one stratified 80/20 hold-out (test sizes 22, 52, 74), as the paper
  describes. Only byte-identical files are kept together; crops of one slide
  and a slide with its crops *can* straddle train and test, as they almost
  certainly did in the paper. The leakage is measured and reported.
* ``grouped``: stratified splits in which no group (slide with its crops,
  overlapping photographs, duplicate files, crops sharing cells) straddles train
  and test: ``repeats`` random hold-outs of ``test_fraction``, or with ``folds``
  k > 0 a grouped stratified k-fold (``sklearn.model_selection.StratifiedGroupKFold``)
  repeated ``repeats`` times with fresh shuffles, so that every image is tested
  exactly ``repeats`` times. Outer split ``repeat = repetition * folds + fold``.

In both, the validation set used for early stopping and tuning is carved from
the training part only, grouped the same way; the test part is never looked at
before evaluation.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from allrep.data.dataset import check_dataset, manifest
from allrep.data.provenance import groups as committed_groups
from allrep.errors import AllrepError

PROTOCOLS = ("paper", "grouped")
COLUMNS = ["protocol", "repeat", "id", "db", "label", "group", "role"]


def items_frame(dataset: str) -> pd.DataFrame:
    """id, db, label, sha256 and group of every image of ``dataset``."""
    check_dataset(dataset)
    g = committed_groups()
    rows = [dict(id=it.id, db=it.db, label=it.label, sha256=it.sha256, group=g[it.id]) for it in manifest(dataset)]
    return pd.DataFrame(rows)


def grouped_pick(df: pd.DataFrame, units: str, fraction: float, rng: np.random.Generator) -> set:
    """Ids of whole ``units`` drawn per class until ``ceil(fraction * n_class)`` images: units in a
    seeded random order, a unit that would overshoot the target skipped while smaller ones remain;
    if the target is still not reached, the skipped units are added smallest first. A class never
    gets fewer than its target, and never more than its target plus its largest unit minus one."""
    picked = set()
    for label, part in df.groupby("label", sort=True):
        target = math.ceil(fraction * len(part))
        sizes = part.groupby(units, sort=True).size()
        order = rng.permutation(sizes.index.to_numpy())
        n = 0
        chosen = []
        skipped = []
        for u in order:
            if n >= target:
                break
            if n + sizes[u] > target and n > 0 and sizes[u] > 1:
                skipped.append(u)  # a big group would overshoot: try smaller ones first
                continue
            chosen.append(u)
            n += sizes[u]
        for u in sorted(skipped, key=lambda u: sizes[u]):  # still short: the smallest skipped groups, in turn
            if n >= target:
                break
            chosen.append(u)
            n += sizes[u]
        picked |= set(part.loc[part[units].isin(chosen), "id"])
    return picked


def paper_split(dataset: str, seed: int, test_fraction: float = 0.2) -> set:
    """Test ids of the paper protocol: exact-size stratified hold-out, duplicates together."""
    from sklearn.model_selection import train_test_split

    df = items_frame(dataset)
    _, test_ids = train_test_split(df["id"].to_numpy(), test_size=test_fraction, stratify=df["label"].to_numpy(),
                                   random_state=seed)
    test = set(test_ids)
    # keep byte-identical files on one side without changing the test size: a duplicate
    # pair split across sides is moved wholly to train, swapped with a same-label test image
    rng = np.random.default_rng(seed)
    for _, dup in df.groupby("sha256"):
        ids = list(dup["id"])
        if len(ids) > 1 and 0 < len(test & set(ids)) < len(ids):
            label = int(dup["label"].iloc[0])
            out = test & set(ids)
            test -= out
            singles = df[(df["label"] == label) & ~df["id"].isin(test) & ~df["id"].isin(ids)
                         & (df.groupby("sha256")["id"].transform("size") == 1)]
            test |= set(rng.choice(singles["id"].to_numpy(), size=len(out), replace=False))
    return test


def grouped_folds(df: pd.DataFrame, seed: int, folds: int, repeats: int) -> list[set]:
    """Test ids of each outer split of a grouped stratified ``folds``-fold repeated ``repeats`` times
    (sklearn's ``StratifiedGroupKFold``, one seeded shuffle per repetition)."""
    from sklearn.model_selection import StratifiedGroupKFold

    ids, y, g = df["id"].to_numpy(), df["label"].to_numpy(), df["group"].to_numpy()
    out = []
    for rep in range(repeats):
        state = int(np.random.default_rng([seed, 3, rep]).integers(2**31 - 1))
        cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=state)
        out += [set(ids[test]) for _, test in cv.split(ids, y, g)]
    return out


def make_splits(dataset: str, protocol: str, seed: int, test_fraction: float = 0.2, val_fraction: float = 0.2,
                repeats: int = 1, folds: int = 0) -> pd.DataFrame:
    """One row per (outer split ``repeat``, image): role in {"train", "val", "test"}."""
    if protocol not in PROTOCOLS:
        raise AllrepError(f"unknown protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    df = items_frame(dataset)
    if protocol == "paper":
        tests = [paper_split(dataset, seed, test_fraction)]
    elif folds:
        tests = grouped_folds(df, seed, int(folds), int(repeats))
    else:
        tests = [grouped_pick(df, "group", test_fraction, np.random.default_rng([seed, 1, r])) for r in range(int(repeats))]
    frames = []
    for r, test in enumerate(tests):
        train = df[~df["id"].isin(test)]
        val = grouped_pick(train, "group", val_fraction, np.random.default_rng([seed, 2, r]))
        role = np.where(df["id"].isin(test), "test", np.where(df["id"].isin(val), "val", "train"))
        frames.append(df.assign(protocol=protocol, repeat=r, role=role)[COLUMNS])
    return pd.concat(frames, ignore_index=True)


def leakage(split: pd.DataFrame) -> dict:
    """How many test images share a group (slide, cell, duplicate) with a training image."""
    train_groups = set(split.loc[split["role"] != "test", "group"])
    test = split[split["role"] == "test"]
    k = int(test["group"].isin(train_groups).sum())
    return dict(n_test=len(test), n_test_group_in_train=k, fraction=k / max(len(test), 1))
