"""Step 30: the deep ensemble of one backbone on one dataset, on the paper split and on every
grouped repeat: the tuned head, one seed per member (initialisation and data order), early
stopping on the split's validation part. Each split's head is the one its own search chose (step 20).
Members are plans of the member engine (:mod:`allrep.train.members`), cached one by one."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pandas as pd

from allrep.evaluate.scores import PROB_COLUMNS, member_frame
from allrep.train import members
from allrep.train.features import for_backbone

if TYPE_CHECKING:  # the runner passes it in; steps sit below the runner
    from allrep.runner.context import Context


def settings(ctx: Context) -> dict:
    """(head, training) of each split by (protocol, repeat): the head its own search chose (step 20) and the
    recipe its own choice adopted (:func:`allrep.train.recipe.split_settings`)."""
    from allrep.train.recipe import split_settings

    return split_settings(ctx.cfg, ctx.read_csv("best"), f"tuning/best_{ctx.backbone}_{ctx.dataset}.csv")


def plans(ctx: Context) -> list[tuple[str, int, pd.DataFrame, int, members.Plan]]:
    """(protocol, repeat, split, member, plan) of every member of every split."""
    cfg, hs = ctx.cfg, settings(ctx)
    out = []
    for protocol, r, split in ctx.each_split():
        for m in range(cfg.ensemble.members):
            seed = members.ensemble_seed(cfg, ctx.dataset, protocol, r, ctx.backbone, m)
            out.append((protocol, r, split, m, members.plan(ctx.backbone, split, *hs[(protocol, r)], seed)))
    return out


def units(ctx: Context) -> list[list[members.Plan]]:
    """The work of this variant for a cluster: one unit per split (its members)."""
    by_split: dict = {}
    for protocol, r, _, _, p in plans(ctx):
        by_split.setdefault((protocol, r), []).append(p)
    return list(by_split.values())


def run_units(cfg, units: list[list[members.Plan]]) -> None:
    """Train the missing members of ``units`` (of any variants) together."""
    members.train(cfg, members.missing(cfg, [p for u in units for p in u]))


def run(ctx: Context) -> dict:
    """Train (or reuse) every member of every split; write probabilities and their record."""
    cfg, backbone, dataset = ctx.cfg, ctx.backbone, ctx.dataset
    t0 = time.perf_counter()
    fc = for_backbone(cfg, backbone)
    todo = plans(ctx)
    trained = len(members.missing(cfg, [p for *_, p in todo]))
    results = members.fetch(cfg, [p for *_, p in todo])
    frames, val_frames, member_meta = [], [], []
    for (protocol, r, split, m, p), res in zip(todo, results):
        test, val = split[split["role"] == "test"], split[split["role"] == "val"]
        frames.append(member_frame(test, res["p_test"], protocol, r, dataset, backbone, m))
        val_frames.append(member_frame(val, res["p_val"], protocol, r, dataset, backbone, m))
        member_meta.append(dict(protocol=protocol, repeat=r, member=m, seed=p.seed,
                                **members.member_record(res, p.training.patience)))
    probs = pd.concat(frames, ignore_index=True)[PROB_COLUMNS]
    ctx.write_csv(probs, "probabilities")
    ctx.write_csv(pd.concat(val_frames, ignore_index=True)[PROB_COLUMNS], "validation")  # for calibration (step 40)
    member_table = pd.DataFrame(member_meta).assign(dataset=dataset, backbone=backbone)
    ctx.write_csv(member_table, "members")
    # the record holds only what the probabilities depend on, so an identical re-execution leaves it
    # byte-identical and re-executes nothing downstream; what this execution did is returned (and shown)
    meta = dict(backbone=backbone, dataset=dataset, weights=fc.w.to_dict(), hp_source="tuned per split (step 20)",
                members_per_split=cfg.ensemble.members)
    ctx.write_json(meta, "meta")
    return dict(probabilities=probs, members=member_table, members_trained=trained,
                members_reused=len(todo) - trained, feature_seconds=fc.seconds,
                seconds=time.perf_counter() - t0, **meta)
