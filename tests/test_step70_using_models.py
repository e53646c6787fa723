"""Step 70: the committed held-out predictions are of whole held-out photograph groups, read by file, and
the groups are nested: no recipe decision, tuning, calibration or threshold saw them."""

import pandas as pd
import pytest
from conftest import ROOT

from allrep.data.dataset import manifest
from allrep.profile import load_profile
from allrep.steps import step70_using_models as step


@pytest.mark.parametrize("dataset", step.DATASETS)
def test_held_out_predictions_cover_exactly_the_nested_held_out_groups(dataset):
    cfg = load_profile("paper")
    split = pd.read_csv(ROOT / "results" / "splits" / f"{dataset}_grouped.csv")
    groups = step.held_out_groups(split, cfg.recipe_study.repeat, cfg.seed)
    assert groups == step.held_out_groups(split, cfg.recipe_study.repeat, cfg.seed) and len(groups) == 4
    r0 = split[split["repeat"] == cfg.recipe_study.repeat]
    # nested: the groups lie in the test part of the repeat whose training part the recipe study folded
    assert set(groups) <= set(r0.loc[r0["role"] == "test", "group"])
    assert not set(groups) & set(r0.loc[r0["role"] != "test", "group"])
    images = r0.drop_duplicates("id")
    assert set(images.loc[images["group"].isin(groups), "label"]) == {0, 1}  # two groups of each class
    pred = pd.read_csv(ROOT / "results" / "using" / f"{dataset}_held_out.csv")
    from allrep.data.splits import items_frame

    df = items_frame(dataset)
    assert sorted(pred["id"]) == sorted(df.loc[df["group"].isin(groups), "id"])
    labels = {it.id: ("ALL" if it.label else "healthy") for it in manifest(dataset)}
    assert (pred["label"] == pred["id"].map(labels)).all()
    assert pred["p_all_fused"].between(0, 1).all() and set(pred["predicted"]) <= {"ALL", "healthy"}
    assert ((pred["p_all_fused"] > 0.5) == (pred["predicted"] == "ALL")).all()
    assert (pred["mutual_information"] <= pred["entropy"] + 1e-6).all()
    assert "image" not in pred  # by id: no machine path in a committed file


def test_the_final_models_validation_part_never_holds_a_held_out_image():
    from allrep.train.final import final_split

    cfg = load_profile("paper")
    split = pd.read_csv(ROOT / "results" / "splits" / "IDB1_grouped.csv")
    groups = step.held_out_groups(split, cfg.recipe_study.repeat, cfg.seed)
    fs = final_split("IDB1", cfg, groups)
    assert set(fs.loc[fs["role"] == "test", "group"]) == set(groups)
    assert not set(fs.loc[fs["role"] != "test", "group"]) & set(groups)  # tuning, stopping, maps, threshold
    assert (fs["role"] == "val").sum() > 0


def test_the_final_models_reuse_the_decisions_of_the_outer_split_holding_the_held_out_groups():
    """Per backbone: the head the split's own search chose and its recipe's training section (confirmatory: the
    recipe chosen inside that split), read from step 20's table of the split the held-out groups come from."""
    from types import SimpleNamespace

    from allrep.train.recipe import candidate_settings

    cfg = load_profile("confirmatory")
    out = ROOT / "results" / "confirmatory" / "tuning"
    ctx = SimpleNamespace(cfg=cfg, read_csv=lambda name, backbone, dataset: pd.read_csv(out / f"best_{backbone}_{dataset}.csv"))
    repeat = cfg.recipe_study.repeat
    got = step.decided(ctx, "IDB2", repeat)
    assert sorted(got) == sorted(cfg.use_backbones)
    for bb, (head, ts, recipe, where) in got.items():
        row = pd.read_csv(out / f"best_{bb}_IDB2.csv").query("protocol == 'grouped' and repeat == @repeat").iloc[0]
        assert (head.learning_rate, head.weight_decay, head.dropout) == (row["learning_rate"], row["weight_decay"], row["dropout"])
        assert recipe == row["recipe"] and ts == candidate_settings(cfg)[recipe][1]
        assert f"outer split {repeat}" in where
    assert {r for *_, r, _ in got.values()} >= {"development"}
