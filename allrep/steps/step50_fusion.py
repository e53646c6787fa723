"""Step 50: the score of every member, backbone ensemble and fusion rule on every split, and the
shortcut baselines beside them, and the camera check of every model (:mod:`allrep.evaluate.camera`)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from allrep.evaluate.calibration import model_probabilities
from allrep.evaluate.camera import camera_table, camera_test
from allrep.evaluate.scores import random_weight_backbones, score_table, summarize, tuned_vs_plain

if TYPE_CHECKING:  # the runner passes it in; steps sit below the runner
    from allrep.runner.context import Context


def run(ctx: Context) -> dict:
    probs = ctx.read_all_csv("probabilities")
    random_bb = random_weight_backbones(ctx.read_all_json("meta"))
    scores = score_table(probs, ctx.cfg.fusion.rules, random_bb, plain=ctx.read_all_csv("plain"))
    ctx.write_csv(scores, "scores")
    summary = summarize(scores)
    ctx.write_csv(summary, "summary")
    baselines = summarize(ctx.read_csv("shortcuts"))
    ctx.write_csv(baselines, "baselines")
    models = model_probabilities(probs, ctx.cfg.use_backbones)  # each ensemble and the sum-rule fusion
    cam, cam_test = camera_table(models), camera_test(models)
    ctx.write_csv(cam, "camera")
    ctx.write_csv(cam_test.round(6), "camera_test")
    return dict(scores=scores, summary=summary, baselines=baselines, random_backbones=random_bb, camera=cam,
                camera_test=cam_test,
                tuned_vs_plain=tuned_vs_plain(summary))


def camera_glue(test) -> dict:
    """The camera test's p-values and medians the book quotes (grouped protocol, per dataset and model)."""
    out = {}
    for r in test[test["protocol"] == "grouped"].itertuples() if len(test) else []:
        tag = f"{r.dataset}_{r.model.replace(' ', '_')}"
        out[f"camera_p_{tag}"] = float(f"{r.p_value:.3g}")
        out[f"camera_median_only_{tag}"] = round(r.median_p_all_only, 3)
        out[f"camera_median_mixed_{tag}"] = round(r.median_p_mixed, 3)
    return out
