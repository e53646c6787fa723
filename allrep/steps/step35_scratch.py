"""Step 35: the scratch backbone's hybrid trained end to end from random weights under every
recipe of ``scratch.recipes``, on the ensembles' own splits (the paper split, then the first
grouped repeats), and the paired fusion comparison with the ensembles of the same splits."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from allrep.cache import folder
from allrep.data.dataset import load_images, manifest
from allrep.evaluate.scores import (
    notes_by_model,
    random_weight_backbones,
    scratch_fusion_table,
    scratch_glue,
    summarize,
)
from allrep.repro import seed_for
from allrep.train.backbones import resolve_weights
from allrep.train.members import MemberStore, cache_key
from allrep.train.scratch import train_member

if TYPE_CHECKING:  # the runner passes it in; steps sit below the runner
    from allrep.runner.context import Context

PROB_COLUMNS = ["recipe", "protocol", "repeat", "dataset", "backbone", "member", "id", "label", "p_all"]


def scratch_splits(ctx: Context, dataset: str) -> list[tuple[str, int, pd.DataFrame]]:
    """(protocol, repeat, split): the paper split, then the first ``scratch.repeats`` grouped repeats."""
    out = [("paper", 0, ctx.read_csv("splits", scratch_dataset=dataset, protocol="paper"))]
    g = ctx.read_csv("splits", scratch_dataset=dataset, protocol="grouped")
    out += [("grouped", int(r), g[g["repeat"] == r]) for r in sorted(g["repeat"].unique())[: ctx.cfg.scratch.repeats]]
    return out


def train(ctx: Context, dataset: str) -> dict:
    """Train (or reuse) every member of every recipe on ``dataset``; write its probabilities and members."""
    cfg, sc = ctx.cfg, ctx.cfg.scratch
    t0 = time.perf_counter()
    bb, size, hp = sc.backbone, sc.input_size, cfg.head
    by_id = {it.id: it for it in manifest(dataset)}
    images: dict = {}
    store = MemberStore(folder("scratch", f"{bb}-{dataset}"))
    frames, members, curves, trained = [], [], [], 0
    for protocol, r, split in scratch_splits(ctx, dataset):
        parts = {role: split[split["role"] == role] for role in ("train", "val", "test")}
        for name, rec in sc.recipes.items():
            for m in range(sc.members):
                seed = seed_for(cfg.seed, "scratch", dataset, protocol, r, bb, name, m)
                w = resolve_weights(bb, "none", input_size=size, seed=seed)
                key = cache_key("scratch-1", w=w.to_dict(), hp=hp.to_dict(), recipe=rec.to_dict(),
                                split=split[["id", "role"]].values.tolist())
                if not store.has(key):
                    if not images:
                        images.update(zip(by_id, load_images(list(by_id.values()), size)))
                    X = {role: np.stack([images[i] for i in p["id"]]) for role, p in parts.items()}
                    res = train_member(w, hp, rec, X["train"], parts["train"]["label"].to_numpy(), X["val"],
                                       parts["val"]["label"].to_numpy(), X["test"], seed)
                    store.save(key, res, dict(recipe=name, seed=seed, weights=w.to_dict(), hp=hp.to_dict(),
                                              test_ids=list(parts["test"]["id"])))
                    trained += 1
                mem = store.load(key)
                test = parts["test"]
                if list(test["id"]) != mem["test_ids"]:
                    raise RuntimeError(f"scratch member cache {key} does not match the split")
                frames.append(pd.DataFrame(dict(recipe=name, protocol=protocol, repeat=r, dataset=dataset,
                                                backbone=bb, member=m, id=test["id"].to_numpy(),
                                                label=test["label"].to_numpy(), p_all=np.round(mem["p_test"], 6))))
                members.append(dict(recipe=name, protocol=protocol, repeat=r, member=m, seed=seed,
                                    epochs_run=mem["epochs_run"], best_epoch=mem["best_epoch"],
                                    final_train_accuracy=round(mem["final_train_accuracy"], 4),
                                    train_seconds=round(mem["train_seconds"], 1)))
                h = pd.DataFrame(mem["history"])
                curves.append(h.assign(recipe=name, protocol=protocol, repeat=r, member=m,
                                       epoch=np.arange(1, len(h) + 1)))
    probs = pd.concat(frames, ignore_index=True)[PROB_COLUMNS]
    members = pd.DataFrame(members)
    ctx.write_csv(probs, "probabilities", scratch_dataset=dataset)
    ctx.write_csv(members, "members", scratch_dataset=dataset)
    return dict(probabilities=probs, members=members, curves=pd.concat(curves, ignore_index=True),
                members_trained=trained, backbone=bb, input_size=size, seconds=time.perf_counter() - t0)


def comparison(ctx: Context, runs: dict) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Each recipe alone and the sum rule with and without the scratch backbone, paired by split.
    Writes the summary; returns (per split, summary, glue values)."""
    probs = ctx.read_all_csv("probabilities")
    random_bb = random_weight_backbones(ctx.read_all_json("meta"))
    table = pd.concat([scratch_fusion_table(ds, probs, runs[ds]["probabilities"], random_bb) for ds in runs],
                      ignore_index=True)
    summary = summarize(table)
    summary = summary.assign(note=notes_by_model(table).reindex(
        pd.MultiIndex.from_frame(summary[["dataset", "protocol", "model"]])).fillna("").to_numpy())
    ctx.write_csv(summary, "summary")
    return table, summary, scratch_glue(table)
