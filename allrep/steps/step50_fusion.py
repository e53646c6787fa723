"""Step 50: the score of every member, backbone ensemble and fusion rule on every split, and the
shortcut baselines beside them."""
from __future__ import annotations

from ..registry import Context
from ..scores import random_weight_backbones, score_table, summarize, tuned_vs_plain


def run(ctx: Context) -> dict:
    probs = ctx.read_all_csv("probabilities")
    random_bb = random_weight_backbones(ctx.read_all_json("meta"))
    scores = score_table(probs, ctx.cfg.fusion.rules, random_bb, plain=ctx.read_all_csv("plain"))
    ctx.write_csv(scores, "scores")
    summary = summarize(scores)
    ctx.write_csv(summary, "summary")
    baselines = summarize(ctx.read_csv("shortcuts"))
    ctx.write_csv(baselines, "baselines")
    return dict(scores=scores, summary=summary, baselines=baselines, random_backbones=random_bb,
                tuned_vs_plain=tuned_vs_plain(summary))
