"""The exploratory robustness analysis (allrep.evaluate.multiverse, allrep.record.robustness)."""
import pandas as pd
import pytest
from conftest import commits_not_after

from allrep.evaluate import multiverse as mvmod
from allrep.profile import PROJECT_ROOT
from allrep.record import robustness, universes
from allrep.record.history import git


def test_the_plan_commit_precedes_every_file_of_the_analysis():
    """The plan was committed (message "Robustness plan") before any file of the analysis: every commit that
    touched results/robustness/ other than the plan descends from the plan commit, and the plan is unchanged."""
    plan = robustness.load_plan()  # refuses a changed or uncommitted plan
    sha = robustness.plan_commit()
    assert sha and git("log", "-1", "--format=%s", sha).startswith("Robustness plan")
    files = [p for p in robustness.FOLDER.iterdir() if p.name != "plan.yaml"]
    assert {p.name for p in files} >= {"multiverse.csv", "what_moves.csv"}
    assert all(commits_not_after(sha, p) == [] for p in files)
    assert plan["registered"]["fusion_rule"] == "sum"


def test_the_registered_universe_is_the_registered_verdict():
    mv = pd.read_csv(robustness.FOLDER / "multiverse.csv")
    reg = mv[mv["registered"]].set_index("dataset")
    cl = pd.read_csv(PROJECT_ROOT / "results" / "confirmatory" / "claims.csv")
    cl = cl[(cl["protocol"] == "grouped") & (cl["model_set"] == "all backbones")].set_index("dataset")
    assert sorted(reg.index) == sorted(cl.index) == ["IDB1", "IDB2", "combined"]
    for ds, r in reg.iterrows():
        c = cl.loc[ds]
        assert (r["k"], r["n"], r["verdict"]) == (c["n_correct"], c["n_test"], c["verdict"]), ds
        assert r["bound_low"] == pytest.approx(c["bound_low"], abs=1e-6) and r["bound_high"] == pytest.approx(c["bound_high"], abs=1e-6)


def test_the_multiverse_file_is_what_the_plan_and_the_registered_predictions_give():
    """Recomputed from the plan and the committed probabilities: the committed table, universe by universe;
    at least 24 universes per claim, per-split k that add up to k."""
    plan, trained = robustness.load_plan(), universes.load_plan()
    cfg, probs, tests = robustness.inputs(plan, trained)
    mv = mvmod.multiverse(mvmod.scorings(probs, plan, trained), tests, plan, cfg.verdict, trained)
    committed = pd.read_csv(robustness.FOLDER / "multiverse.csv")
    assert (mv.groupby("dataset").size() >= 24).all()
    pd.testing.assert_frame_equal(mv[["dataset", "universe", "k", "n", "verdict"]],
                                  committed[["dataset", "universe", "k", "n", "verdict"]])
    splits = mv.filter(like="k_split_")
    assert (splits.sum(axis=1) == mv["k"]).all()


def test_universes_cover_the_plan_and_mark_one_registered():
    """The recombined factors crossed, then each trained universe crossed with every recombined level but tuning;
    the recombined universes keep the names they were first scored under."""
    plan, trained = robustness.load_plan(), universes.load_plan()
    u = mvmod.universes(plan, trained)
    f = plan["recombined"]
    singles = sum(len(s) == 1 for s in f["fusion_set"])
    per = (len(f["fusion_set"]) - singles) * len(f["fusion_rule"]) + singles
    assert len(u) == (len(f["tuning"]) + len(trained["universes"])) * len(f["members"]) * per * len(f["icc"]) * 2
    assert u["registered"].sum() == 1 and u["universe"].is_unique
    pd.testing.assert_frame_equal(u[u["training"] == "registered"].drop(columns="training").reset_index(drop=True),
                                  mvmod.universes(plan).drop(columns="training"))
    for t in trained["universes"]:
        assert set(u.loc[u["training"] == t["name"], "tuning"]) == {t["from"]}


def test_the_null_variant_gives_a_100_percent_claim_an_inconclusive_zone():
    """210 of 216 against 100%: below the claim (not reproduced) by the registered null; against the claim minus
    half the 4-point margin (98%), inconclusive, as its upper bound is above 98%."""
    lo, hi, v = mvmod.verdict_at(210, 216, 104.7, 100.0, 0.04, 0.05, "claim")
    assert v == "not reproduced" and 0.98 < hi < 1.0
    assert mvmod.verdict_at(210, 216, 104.7, 100.0, 0.04, 0.05, "claim_minus_half_margin")[2] == "inconclusive"
    assert mvmod.verdict_at(216, 216, 104.7, 100.0, 0.04, 0.05, "claim")[2] == "reproduced"


@pytest.mark.parametrize("module, old, new", [
    (robustness, "icc: [0.0, 0.1, 0.2, 0.3]", "icc: [0.1]"),
    (universes, "pca: 256, whiten: true}", "pca: 128, whiten: true}"),
])
def test_a_changed_plan_is_refused(tmp_path, monkeypatch, module, old, new):
    """The plan and the trained universes' amendment: a copy that differs from its commit is refused."""
    from allrep.errors import AllrepError

    changed = tmp_path / module.PLAN.name
    assert old in module.PLAN.read_text()
    changed.write_text(module.PLAN.read_text().replace(old, new))
    monkeypatch.setattr(module, "PLAN", changed)
    with pytest.raises(AllrepError, match="differs from the plan committed"):
        module.load_plan()
