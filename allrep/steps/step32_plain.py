"""Step 32: the plain reference of one backbone on one dataset, on every split.

Untuned heads (the profile's ``plain:`` settings, fixed and documented, never tuned; with
``plain.use_head`` the profile's ``head:``/``training:`` themselves, the tuner's starting values),
``plain.members`` per split averaged like an ensemble, trained on the same cached features and split as
the tuned ensemble, until early stopping on the split's validation part ends each (the epoch cap is set
far above where that happens). If the tuned ensemble does not beat it, tuning bought nothing, and the
book says so.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from allrep.evaluate.scores import PROB_COLUMNS, member_frame
from allrep.train import members
from allrep.train.features import for_backbone
from allrep.train.recipe import plain_settings

if TYPE_CHECKING:  # the runner passes it in; steps sit below the runner
    from allrep.runner.context import Context


def plans(ctx: Context) -> list[tuple[str, int, int, pd.DataFrame, members.Plan]]:
    """(protocol, repeat, member, split, plan) of every plain head of every split."""
    cfg = ctx.cfg
    head, ts = plain_settings(cfg)
    return [(protocol, r, m, split, members.plan(ctx.backbone, split, head, ts,
                                                 members.plain_seed(cfg, ctx.dataset, protocol, r, ctx.backbone, m)))
            for protocol, r, split in ctx.each_split() for m in range(cfg.plain.members)]


def units(ctx: Context) -> list[list[members.Plan]]:
    """One unit per split (its plain heads)."""
    out: dict = {}
    for protocol, r, _m, _split, p in plans(ctx):
        out.setdefault((protocol, r), []).append(p)
    return list(out.values())


def run_units(cfg, units: list[list[members.Plan]]) -> None:
    """Train the missing plain heads of ``units`` (of any variants) together."""
    members.train(cfg, members.missing(cfg, [p for u in units for p in u]))


def run(ctx: Context) -> dict:
    cfg, backbone, dataset = ctx.cfg, ctx.backbone, ctx.dataset
    fc = for_backbone(cfg, backbone)
    todo = plans(ctx)
    trained = len(members.missing(cfg, [p for *_, p in todo]))
    frames, rows = [], []
    for (protocol, r, m, split, p), res in zip(todo, members.fetch(cfg, [p for *_, p in todo])):
        frames.append(member_frame(split[split["role"] == "test"], res["p_test"], protocol, r, dataset, backbone, m))
        rows.append(dict(protocol=protocol, repeat=r, member=m, seed=p.seed,
                         **members.member_record(res, p.training.patience),
                         dataset=dataset, backbone=backbone))
    probs = pd.concat(frames, ignore_index=True)[PROB_COLUMNS]
    ctx.write_csv(probs, "probabilities")
    table = pd.DataFrame(rows)
    ctx.write_csv(table, "members")
    return dict(probabilities=probs, members=table, trained=trained, weights=fc.w)
