"""The trained universes of the robustness analysis (allrep.record.universes): each is the registered pipeline, or
its plain reference, with exactly its one change; the amendment is committed before any of their files."""
from dataclasses import asdict, replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import commits_not_after

from allrep.profile import load_profile
from allrep.record import places, universes
from allrep.record.history import git

CFG = load_profile("confirmatory")


def _registered_plans(backbone: str, dataset: str, step):
    """The registered run's own plans of a step (30 or 32) for the grouped splits, from its committed files."""
    out = places.output_dir(CFG)
    split = pd.read_csv(out / "splits" / f"{dataset}_grouped.csv")
    best = pd.read_csv(out / "tuning" / f"best_{backbone}_{dataset}.csv")
    ctx = SimpleNamespace(cfg=CFG, backbone=backbone, dataset=dataset,
                          each_split=lambda: [("grouped", int(r), g) for r, g in split.groupby("repeat", sort=True)],
                          read_csv=lambda name, **_: best)
    return [row[-1] for row in step.plans(ctx)]


def _plans(name: str, backbone="mobilenetv2", dataset="IDB2"):
    u = universes.universe(universes.load_plan(), name)
    return [p for *_, p in universes.plans(universes.profile_for(CFG, u), u, dataset, backbone, "grouped")]


def test_the_retrained_universe_is_the_registered_ensembles_plans():
    """No change: every plan (rows, head, training, seed) is the registered step 30's plan of the same member."""
    from allrep.steps import step30_ensemble

    for bb in ("mobilenetv2", "efficientnetb3"):
        mine, theirs = _plans("retrained", bb), _registered_plans(bb, "IDB2", step30_ensemble)
        assert len(mine) == 50 and mine == theirs


def test_an_untuned_universe_is_the_plain_reference_with_its_change():
    from allrep.steps import step32_plain

    ref = _registered_plans("inceptionv3", "IDB2", step32_plain)
    mine = _plans("pca_256_whitened_untuned", "inceptionv3")
    assert len(mine) == len(ref) == 50
    for a, b in zip(mine, ref):
        assert (a.rows, a.head, a.seed) == (b.rows, b.head, b.seed)
        assert a.training == replace(b.training, pca=256, whiten=True) != b.training


@pytest.mark.parametrize("name, head, training", [
    ("sequence_4x4_all_channels", {"projection": 64}, {"pool": 1, "pca": -1}),
    ("pca_256_whitened", {}, {"pca": 256, "whiten": True}),
    ("no_reduction", {}, {"pca": -1}),
])
def test_a_trained_universe_changes_only_its_change(name, head, training):
    base, mine = _plans("retrained"), _plans(name)
    for a, b in zip(mine, base):
        assert (a.rows, a.seed, a.backbone) == (b.rows, b.seed, b.backbone)
        assert a.head == replace(b.head, **head) and a.training == replace(b.training, **training)


def test_seed_replicates_and_one_view():
    """Replicates: new seeds (none shared with the registered members or each other), the same settings; one view:
    the same plans under a profile with one training view, so a different cache key."""
    from allrep.train import members

    base = _plans("retrained")
    reps = [_plans(f"seed_{k}") for k in (1, 2, 3)]
    seeds = [{p.seed for p in r} for r in reps] + [{p.seed for p in base}]
    assert all(len(s) == 50 for s in seeds) and len(set().union(*seeds)) == 200
    assert all((a.rows, a.head, a.training) == (b.rows, b.head, b.training) for r in reps for a, b in zip(r, base))
    one = universes.universe(universes.load_plan(), "one_view")
    cfg1 = universes.profile_for(CFG, one)
    assert cfg1.features.views == 1 and CFG.features.views == 8
    assert asdict(cfg1.features) != asdict(CFG.features)
    assert _plans("one_view") == base and members.cache_key("x", f=asdict(cfg1.features)) != members.cache_key(
        "x", f=asdict(CFG.features))


def test_the_amendment_was_committed_before_every_trained_file():
    """Every commit that touched a trained universe's file descends from the amendment in force, whose every
    change was itself committed as a plan amendment."""
    sha = universes.plan_commit()
    assert sha and git("log", "-1", "--format=%s", sha).startswith("Robustness plan")
    trained = sorted(universes.TRAINED.glob("*.csv"))
    assert trained and all(commits_not_after(sha, p) == [] for p in trained + [universes.TIMINGS] if p.exists())


def test_every_universe_a_claim_is_given_is_planned_and_the_cut_is_not_given():
    plan = universes.load_plan()
    names = {u["name"] for u in plan["universes"]}
    cut = {c["name"] for c in plan["cut"]}
    assert not names & cut
    for ds, listed in plan["claims"].items():
        assert listed[0] == "retrained" and set(listed) <= names, ds
    assert len(plan["claims"]["IDB2"]) - 4 >= 8  # besides retrained and the three seed replicates
    assert min(len(v) for k, v in plan["claims"].items() if k != "IDB2") - 1 >= 4


def test_the_standardised_reduction_centres_and_scales_every_channel():
    from allrep.train.heads import STANDARDISED, Reduction

    rng = np.random.default_rng(0)
    X = rng.normal(3.0, [0.5, 2.0, 7.0], size=(40, 4, 3)).astype(np.float32)
    red = Reduction.fit(X, 1, STANDARDISED)
    Z = red(X).reshape(-1, 3)
    assert Z.shape == (160, 3) and np.allclose(Z.mean(0), 0, atol=1e-5) and np.allclose(Z.std(0), 1, atol=1e-4)
    again = Reduction.from_state(red.state())
    assert np.array_equal(again(X), red(X)) and red.sha256() == again.sha256()
    assert Reduction.from_state(Reduction.fit(X, 1, 0).state()).mean is None  # raw channels stay raw


def _row(training, tuning, k, splits, **kw):
    base = dict(dataset="IDB2", training=training, tuning=tuning, members=5,
                fusion_set="efficientnetb3 + inceptionv3 + mobilenetv2", fusion_rule="sum", icc=0.1,
                not_reproduced_below="claim", k=k, n=520, accuracy=k / 520, bound_low=0.9, bound_high=0.99,
                verdict="inconclusive", k_split_0=splits[0], k_split_1=splits[1])
    return {**base, **kw}


def test_trained_summary_compares_each_universe_with_its_own_base():
    """A tuned universe against `retrained`, an untuned one against the registered plain reference; rows off the
    registered recombined levels are left out."""
    from allrep.evaluate.multiverse import trained_summary
    from allrep.record import robustness

    mv = pd.DataFrame([_row("registered", "search", 503, (250, 253)), _row("registered", "untuned", 490, (240, 250)),
                       _row("retrained", "search", 505, (252, 253)), _row("sequence_4x4_all_channels", "search", 498, (240, 258)),
                       _row("sequence_4x4_untuned", "untuned", 480, (230, 250)),
                       _row("retrained", "search", 400, (200, 200), members=1)])
    t = trained_summary(mv, robustness.load_plan()).set_index("training")
    assert len(t) == 5 and pd.isna(t.loc["registered", "k_minus_base"]).all()
    assert t.loc["retrained", "k_minus_base"] == 0 and t.loc["sequence_4x4_all_channels", "k_minus_base"] == -7
    assert t.loc["sequence_4x4_untuned", "k_minus_base"] == -10
    assert t.loc["sequence_4x4_untuned", "base"] == "registered untuned"
    assert t.loc["sequence_4x4_all_channels", "split_k_range"] == "240-258"


def test_a_claim_scores_only_the_trained_universes_it_is_given_and_has():
    from allrep.evaluate import multiverse as mvmod
    from allrep.record import robustness

    plan, trained = robustness.load_plan(), universes.load_plan()
    uni = mvmod.universes(plan, trained)
    available = {("IDB1", "seed_1"), ("IDB1", "seed_2"), ("IDB2", "seed_2")}
    idb1 = mvmod.for_claim(uni, "IDB1", trained, available)
    assert set(idb1["training"]) == {"registered", "seed_1"}  # seed_2 exists for IDB1 but the plan does not give it
    assert set(mvmod.for_claim(uni, "IDB2", trained, available)["training"]) == {"registered", "seed_2"}
    probs = {("IDB2", "registered", "search"): None, ("IDB2", "seed_2", "search"): None}
    m = robustness.missing(plan, trained, probs)
    assert "seed_2" not in set(m.loc[m["dataset"] == "IDB2", "universe"])
    assert set(m.loc[m["dataset"] == "IDB1", "universe"]) == set(trained["claims"]["IDB1"])
    assert "sequence_8x8_all_channels" in set(m["universe"])


def test_bad_universe_input_is_one_line(monkeypatch, tmp_path):
    from allrep.errors import AllrepError

    with pytest.raises(AllrepError, match="unknown claim"):
        universes.train_all("grouped", ["IDB3"])
    with pytest.raises(AllrepError, match="unknown trained universe"):
        universes.train_all("grouped", ["IDB2"], names=["sequence_16x16"])
    with pytest.raises(AllrepError, match="unknown trained universe"):
        universes.universe(universes.load_plan(), "nope")
    from allrep.train.heads import Reduction

    with pytest.raises(ValueError, match="training.pca must be"):
        Reduction.fit(np.zeros((4, 4, 8), np.float32), 1, -2)


def test_a_constant_channel_keeps_scale_one():
    from allrep.train.heads import STANDARDISED, Reduction

    X = np.random.default_rng(1).normal(size=(20, 4, 3)).astype(np.float32)
    X[..., 1] = 0.0
    red = Reduction.fit(X, 1, STANDARDISED)
    assert red.scale[1] == 1.0
    Y = X.copy()
    Y[..., 1] = 0.5
    assert np.allclose(red(Y)[..., 1], 0.5)


def test_a_universe_s_timing_record_adds_a_resumed_run_and_keeps_an_interrupted_one():
    """A run from nothing cached replaces the record; one that resumes adds its seconds and heads; an interrupted
    one is recorded with the heads it finished, and the run that resumes after it adds to that."""
    fresh = universes.heads_entry({"seconds": 99.0, "heads_trained": 150}, 10.04, 150, 150, 150, {})
    assert (fresh["seconds"], fresh["heads_trained"], "runs" in fresh, "interrupted" in fresh) == (10.0, 150, False, False)
    cut = universes.heads_entry(None, 40.0, 150, 150, 60, {}, interrupted=True)
    assert (cut["seconds"], cut["heads_trained"], cut["interrupted"]) == (40.0, 60, True)
    resumed = universes.heads_entry(cut, 50.0, 150, 90, 90, {})
    assert (resumed["seconds"], resumed["heads_trained"], resumed["runs"], "interrupted" in resumed) == (90.0, 150, 2, False)
