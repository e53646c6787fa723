"""Step 32: the plain reference head of one backbone on one dataset, on every split.

One untuned head (the profile's ``plain:`` settings, fixed and documented, never tuned), one
member per split, trained on the same cached features and split as the tuned ensemble, until early
stopping on the split's validation part ends it (the epoch cap is set far above where that happens).
If the tuned ensemble does not beat it, tuning and ensembling bought nothing, and the book says so.
"""
from __future__ import annotations

from dataclasses import replace

import pandas as pd

from .. import members
from ..features import for_backbone
from ..registry import Context
from ..repro import seed_for
from ..scores import PROB_COLUMNS, member_frame


def plans(ctx: Context) -> list[tuple[str, int, pd.DataFrame, members.Plan]]:
    """(protocol, repeat, split, plan) of the plain head of every split."""
    cfg = ctx.cfg
    ts = replace(cfg.plain.training, min_delta=cfg.plain.min_delta)
    return [(protocol, r, split, members.plan(ctx.backbone, split, cfg.plain.head, ts,
                                              seed_for(cfg.seed, "plain", ctx.dataset, protocol, r, ctx.backbone)))
            for protocol, r, split in ctx.each_split()]


def units(ctx: Context) -> list[list[members.Plan]]:
    """One unit per split (its one plain head)."""
    return [[p] for *_, p in plans(ctx)]


def run_units(cfg, units: list[list[members.Plan]]) -> None:
    """Train the missing plain heads of ``units`` (of any variants) together."""
    members.train(cfg, members.missing(cfg, [p for u in units for p in u]))


def run(ctx: Context) -> dict:
    cfg, backbone, dataset = ctx.cfg, ctx.backbone, ctx.dataset
    fc = for_backbone(cfg, backbone)
    todo = plans(ctx)
    trained = len(members.missing(cfg, [p for *_, p in todo]))
    frames, rows = [], []
    for (protocol, r, split, p), res in zip(todo, members.fetch(cfg, [p for *_, p in todo])):
        frames.append(member_frame(split[split["role"] == "test"], res["p_test"], protocol, r, dataset, backbone, 0))
        rows.append(dict(protocol=protocol, repeat=r, seed=p.seed, **members.member_record(res, p.training.patience),
                         dataset=dataset, backbone=backbone))
    probs = pd.concat(frames, ignore_index=True)[PROB_COLUMNS]
    ctx.write_csv(probs, "probabilities")
    table = pd.DataFrame(rows)
    ctx.write_csv(table, "members")
    return dict(probabilities=probs, members=table, trained=trained, weights=fc.w)
