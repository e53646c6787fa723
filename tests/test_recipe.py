"""The recipe study: inner grouped folds, the decision rule, and the profile following the evidence."""
import numpy as np
import pandas as pd
from conftest import ROOT

from allrep.data.splits import make_splits
from allrep.profile import Candidate, load_profile
from allrep.train import recipe

RECIPE_SETTINGS = ("pool", "pca", "whiten", "patience", "min_delta", "batch_size", "projection", "gru_units",
                   "dense_units")  # and the epoch cap, which may only be raised above the study's


def test_inner_folds_are_grouped_and_never_touch_the_test_part():
    sp = make_splits("IDB2", "grouped", 20241018, repeats=1)
    part = sp[sp["role"] != "test"]
    folds = recipe.inner_folds(part, 3, 0.2, seed=5)
    held = [set(f.loc[f["role"] == "test", "id"]) for f in folds]
    assert set().union(*held) == set(part["id"]) and sum(map(len, held)) == len(part)  # each image held out once
    for f in folds:
        roles = f.groupby("group")["role"].agg(lambda r: set(r) & {"test"} and set(r) != {"test"})
        assert not roles.any()  # no photograph group on both sides of a held-out fold
        assert {"train", "val", "test"} == set(f["role"])
    assert not set(part["id"]) & set(sp.loc[sp["role"] == "test", "id"])


def _summary(rows):
    return pd.DataFrame(rows, columns=["candidate", "d_nll", "se_d_nll", "seconds_per_head"])


def test_decision_rule():
    cfg = load_profile("paper")
    cfg = type(cfg)(**{**cfg.__dict__, "recipe_study": type(cfg.recipe_study)(
        candidates={"better": Candidate(pca=64), "cheap_same": Candidate(pool=2), "worse": Candidate(batch_size=32),
                    "slow_same": Candidate(whiten=False), "also_pca": Candidate(pca=32)})})
    s = _summary([("base", 0, 0, 10), ("better", -0.05, 0.01, 10), ("cheap_same", 0.005, 0.01, 3),
                  ("worse", 0.04, 0.01, 10), ("slow_same", -0.005, 0.01, 10), ("also_pca", -0.03, 0.01, 10)])
    d = recipe.decide(s, cfg)
    assert d["adopted"] == ["better", "also_pca", "cheap_same"]
    assert d["changes"] == {"pca": 64, "pool": 2}  # the lower NLL wins the shared setting


def test_the_profile_uses_the_recipe_the_committed_evidence_chooses():
    cfg = load_profile("paper")
    res = pd.read_csv(ROOT / "results" / "recipe" / "study.csv")
    d = recipe.decide(recipe.summary(res, cfg), cfg)
    want_head, want_ts = recipe.study_settings(cfg, Candidate(**d["changes"]))
    have = {**cfg.head.to_dict(), **cfg.training.__dict__}
    want = {**want_head.to_dict(), **want_ts.__dict__}
    assert {k: have[k] for k in RECIPE_SETTINGS} == {k: want[k] for k in RECIPE_SETTINGS}
    assert have["epochs"] >= want["epochs"]
    assert set(res["candidate"]) == {"base", *cfg.recipe_study.candidates}  # every candidate was scored
    assert (res.groupby("candidate").size() == res.groupby("candidate").size().iloc[0]).all()  # paired cells


def test_the_choice_inside_a_split_keeps_the_development_recipe_unless_beaten_by_one_se():
    from allrep.evaluate.metrics import per_image_nll
    from allrep.train.recipe import paired_choice

    rng = np.random.default_rng(3)
    dev = rng.uniform(0.05, 0.6, 40)
    same = paired_choice({"development": dev, "base": dev + rng.normal(0, 0.01, 40)})
    assert same["recipe"] == "development"  # no difference beyond noise: the registered default stays
    better = paired_choice({"development": dev, "base": dev - 0.1 + rng.normal(0, 0.01, 40)})
    assert better["recipe"] == "base" and better["candidates"]["base"]["d_nll"] < 0
    slightly = dev - 0.02 + rng.normal(0, 0.2, 40)  # lower on average, but within one paired SE
    got = paired_choice({"development": dev, "base": slightly})
    c = got["candidates"]["base"]
    assert (got["recipe"] == "base") == (c["d_nll"] + c["se_d_nll"] < 0)
    three = paired_choice({"development": dev, "a": dev - 0.05, "b": dev - 0.1})
    assert three["recipe"] == "b"  # among those that beat it, the lowest mean
    y, p = np.array([1, 0, 1]), np.array([0.9, 0.2, 0.4])
    from allrep.evaluate.metrics import nll

    assert np.isclose(per_image_nll(y, p).mean(), nll(y, p))


def test_choice_plans_never_hold_a_test_row():
    from allrep.profile import load_profile
    from allrep.train.recipe import choice_plans

    cfg = load_profile("confirmatory")
    split = pd.read_csv(ROOT / "preregistration" / "splits" / "IDB2_grouped.csv")
    s0 = split[split["repeat"] == 0]
    plans = choice_plans(cfg, "mobilenetv2", s0, 1)
    assert set(plans) == set(cfg.recipe_choice.candidates) and len(plans) >= 2
    test_ids = set(s0.loc[s0["role"] == "test", "id"])
    for p in plans.values():
        assert not {i for i, _, _ in p.rows} & test_ids and {r for _, r, _ in p.rows} == {"train", "val"}
