"""The verdict rule, its monotonicity, margins and operating characteristics, the corrected resampled t, and calibration on validation."""
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from allrep.data.splits import make_splits
from allrep.evaluate import calibration as cal
from allrep.evaluate import claims as C
from allrep.evaluate.metrics import bootstrap_interval, clopper_pearson, corrected_repeats, ece_equal_width
from allrep.profile import Verdict


def test_corrected_t_matches_nadeau_bengio_by_hand():
    v = [0.9, 1.0, 0.95, 0.85]
    r = corrected_repeats(v, n_test=20, n_train=80, clip=None)
    s2 = np.var(v, ddof=1)
    half = stats.t.ppf(0.975, 3) * math.sqrt((1 / 4 + 20 / 80) * s2)
    assert r["ci_low"] == pytest.approx(np.mean(v) - half) and r["ci_high"] == pytest.approx(np.mean(v) + half)
    naive = stats.t.ppf(0.975, 3) * math.sqrt(s2 / 4)
    assert r["ci_high"] - r["ci_low"] > 2 * naive  # wider than the naive t: the training sets overlap
    pi = stats.t.ppf(0.975, 3) * math.sqrt(s2 + (1 / 4 + 20 / 80) * s2)
    assert r["pi_high"] == pytest.approx(np.mean(v) + pi)


RANK = {"not reproduced": 0, "inconclusive": 1, "reproduced": 2}
RULE = Verdict(delta=0.04, alpha=0.05, icc=0.1, repeat_correlation=0.5, simulations=1000)


def test_bounds_are_clopper_pearson_at_an_integer_effective_n():
    lo, hi = C.bounds(np.array([45, 52]), 52, 52, 0.05)
    cp = clopper_pearson(45, 52, alpha=0.10)  # one-sided 5% each = the two-sided 90% interval
    assert lo[0] == pytest.approx(cp[0]) and hi[0] == pytest.approx(cp[1])
    assert hi[1] == 1.0 and lo[1] == pytest.approx(0.05 ** (1 / 52))  # k = n: the exact one-sided bound


def test_design_effect_and_effective_n_by_hand():
    assert C.design_effect([1, 1, 2], 0.1) == pytest.approx(1 + (6 / 4 - 1) * 0.1)
    rows = pd.DataFrame(dict(id=["a", "b", "c", "a"], group=["g", "g", "h", "g"]))  # "a" tested twice counts once
    assert C.effective_n(rows, 0.5) == pytest.approx(3 / (1 + (5 / 3 - 1) * 0.5))


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 600), frac=st.floats(0.05, 1.0), paper=st.floats(80.0, 100.0), data=st.data())
def test_more_correct_predictions_never_move_towards_not_reproduced(n, frac, paper, data):
    n_eff = max(frac * n, 1.0)
    k1 = data.draw(st.integers(0, n))
    k2 = data.draw(st.integers(k1, n))
    v1, v2 = (C.verdict(k, n, n_eff, paper, 0.04, 0.05) for k in (k1, k2))
    assert RANK[v2] >= RANK[v1]


def _confirmatory(ds):
    return make_splits(ds, "grouped", 1234, repeats=2, folds=5)


@pytest.mark.parametrize("dataset", ["IDB1", "IDB2"])
def test_every_split_at_the_papers_figure_is_reproduced_sd_zero_included(dataset):
    sp = _confirmatory(dataset)
    test = sp[sp["role"] == "test"]
    p0 = C.PAPER_CLAIMS[dataset]
    ns = test.groupby("repeat").size().to_numpy()
    ks = np.ceil(p0 / 100 * ns - 1e-9).astype(int)  # each split reaches the figure (IDB1: every split 100%)
    n_eff = C.effective_n(test, RULE.icc)
    assert C.verdict(int(ks.sum()), int(ns.sum()), n_eff, p0, RULE.delta, RULE.alpha) == "reproduced"
    # and the old rule's trap is gone: identical splits (sd 0) cannot collapse an interval here
    assert C.margin(int(ks.sum()), int(ns.sum()), n_eff, p0, RULE.delta, RULE.alpha) >= 1


def test_margin_is_exact():
    n, n_eff, p0 = 520, 188.0, 98.07
    every = C.verdicts(np.arange(n + 1), n, n_eff, p0, 0.04, 0.05)
    for k in (480, 500, 505, 515):
        m = C.margin(k, n, n_eff, p0, 0.04, 0.05)
        near = [j for j in range(max(0, k - m + 1), min(n, k + m - 1) + 1)]
        assert all(every[j] == every[k] for j in near)  # nothing closer flips it
        assert every[k - m] != every[k] or every[min(n, k + m)] != every[k]


def test_operating_characteristics_reach_both_powers_at_the_confirmatory_design():
    sp = _confirmatory("IDB2")
    rep, nrep = C.power_at(sp, 98.07, RULE, RULE.delta, seed=3)
    assert rep >= 0.8 and nrep >= 0.8
    oc = C.operating_characteristics(sp, 98.07, RULE, seed=3, grid=np.array([0.90, 0.95, 1.0]))
    assert np.allclose(oc[["p_reproduced", "p_inconclusive", "p_not_reproduced"]].sum(axis=1), 1)
    assert oc["p_reproduced"].is_monotonic_increasing and oc["p_not_reproduced"].is_monotonic_decreasing
    # the development design (5 random hold-outs, each image tested about once) cannot reach them
    dev = make_splits("IDB2", "grouped", 1234, repeats=5)
    assert min(C.power_at(dev, 98.07, RULE, RULE.delta, seed=3)) < 0.8


def test_simulated_accuracy_has_the_true_mean():
    rng = np.random.default_rng(0)
    tests, group_of = [np.arange(100), np.arange(100)], np.repeat(np.arange(25), 4)
    k = C.simulate_correct(tests, group_of, 0.9, 0.1, 0.5, 4000, rng)
    assert k.mean() / 200 == pytest.approx(0.9, abs=0.005)
    k0 = C.simulate_correct(tests, group_of, 0.9, 0.0, 0.0, 4000, rng)  # independent: binomial variance
    assert k0.var() == pytest.approx(200 * 0.9 * 0.1, rel=0.15) and k.var() > 1.5 * k0.var()


def test_temperature_scaling_recovers_an_overconfident_model():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 4000)
    y = (rng.uniform(size=z.size) < 1 / (1 + np.exp(-z))).astype(int)
    p_over = 1 / (1 + np.exp(-2.5 * z))  # logits 2.5x too large
    T = cal.fit_temperature(y, p_over)
    assert T == pytest.approx(2.5, rel=0.1)
    assert ece_equal_width(y, cal.scale(p_over, T)) < ece_equal_width(y, p_over) / 2


def test_bca_interval_contains_its_estimate():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    p = np.clip(y * 0.8 + rng.normal(0.1, 0.15, 300), 0.01, 0.99)
    est, lo, hi = bootstrap_interval(ece_equal_width, y, p, 300, 0)
    assert lo <= est <= hi and hi - lo > 0


def test_calibrate_fits_on_validation_not_test():
    val = pd.DataFrame(dict(dataset="D", protocol="grouped", repeat=0, model="m", id=range(6), label=[0, 1] * 3,
                            p=[0.3, 0.7] * 3))
    test = val.assign(label=[1, 0] * 3)  # labels that a fit on test would have to invert
    scaled, temps = cal.calibrate(test, val)
    assert temps["T"].iloc[0] < 1  # the validation part says: sharpen
    assert ((scaled["p_scaled"] > 0.5) == (scaled["p"] > 0.5)).all()  # scaling never flips a decision


def _frames(p_test, y_test, p_val, y_val, repeat=0):
    mk = lambda p, y: pd.DataFrame(dict(dataset="D", protocol="grouped", repeat=repeat, model=cal.FUSED,  # noqa: E731
                                        id=[f"i{j}" for j in range(len(p))], label=y, p=p))
    return mk(p_test, y_test), mk(p_val, y_val)


def test_referral_threshold_comes_from_validation_and_ties_never_by_row_order():
    rng = np.random.default_rng(0)
    p_test = np.r_[np.ones(30), np.zeros(30), rng.uniform(0.2, 0.8, 20)]  # 60 rounded 0 or 1: ties
    y_test = (p_test > 0.5).astype(int)
    p_val = np.r_[np.ones(10), rng.uniform(0.05, 0.95, 10)]
    y_val = (p_val > 0.5).astype(int)
    test, val = _frames(p_test, y_test, p_val, y_val)
    scaled, temps = cal.calibrate(test, val)
    a = cal.referral(scaled, val, temps, 0.9)
    b = cal.referral(scaled.sample(frac=1, random_state=1), val, temps, 0.9)  # rows reordered
    assert a.equals(b)
    assert a["kept"].iloc[0] >= 60  # every tied 0/1 prediction is kept together
    flipped = scaled.assign(label=1 - scaled["label"])  # test labels cannot move the threshold
    assert cal.referral(flipped, val, temps, 0.9)["kept"].iloc[0] == a["kept"].iloc[0]
    val2 = val.assign(p=np.r_[np.ones(10), np.full(10, 0.999)])  # a more confident validation part refers more
    s2, t2 = cal.calibrate(test, val2)
    assert cal.referral(s2, val2, t2, 0.9)["kept"].iloc[0] <= a["kept"].iloc[0]


def test_calibration_table_flags_a_map_that_worsens_test_nll():
    rng = np.random.default_rng(2)
    p_val = np.r_[np.full(20, 0.8), np.full(20, 0.2)]
    y_val = np.r_[np.ones(20), np.zeros(20)].astype(int)  # separable validation: T runs to its lower bound
    p_test = rng.uniform(0.55, 0.9, 60)
    y_test = (rng.uniform(size=60) < 0.7).astype(int)  # 30% of confident test calls are wrong
    test, val = _frames(p_test, y_test, p_val, y_val)
    scaled, temps = cal.calibrate(test, val)
    assert temps["degenerate"].all()
    row = cal.calibration_table(scaled, n_boot=100).iloc[0]
    assert row["T_degenerate"] == 1 and not row["nll_improved"] and row["nll_after"] > row["nll_before"]
    assert row["confident_after"] > row["confident_before"]
    for m in ("nll", "brier", "ece", "ece_mass"):
        for tag in ("before", "after"):
            assert row[f"{m}_{tag}_low"] - 1e-12 <= row[f"{m}_{tag}"] <= row[f"{m}_{tag}_high"] + 1e-12


def test_ledger_counts_new_looks_and_byte_identical_repeats(tmp_path):
    import subprocess

    from allrep.record import ledger

    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    git("config", "user.email", "t@t")
    git("config", "user.name", "t")
    (tmp_path / "profiles").mkdir()
    (tmp_path / "results" / "probabilities").mkdir(parents=True)
    (tmp_path / "profiles" / "paper.yaml").write_text("seed: 7\n")
    f = tmp_path / "results" / "probabilities" / "IDB2_mobilenetv2.csv"

    def commit(p, msg):
        pd.DataFrame(dict(protocol="grouped", repeat=0, dataset="IDB2", backbone="mobilenetv2", member=0,
                          id=["a", "b", "c"], label=[1, 0, 1], p_all=p)).to_csv(f, index=False)
        git("add", "-A")
        git("commit", "-q", "--allow-empty", "-m", msg)

    commit([0.9, 0.1, 0.2], "first look")
    (tmp_path / "README").write_text("x")
    commit([0.9, 0.1, 0.2], "byte-identical rerun")  # the same predictions again
    commit([0.9, 0.1, 0.7], "second look")
    lg = ledger.looks(tmp_path)
    assert lg["k"].tolist() == [2, 3] and lg["look"].tolist() == ["new", "new"]  # the repeat commit changed no file
    c = ledger.counts(lg)
    assert c["max_looks_per_split_and_model"].iloc[0] == 2 and c["label"].iloc[0] == "confirmatory"
    # the runner's appends (ledger.record) continue the backfill: a byte-identical rewrite is a repeat, a
    # changed prediction a new look, a validation file or a file nobody wrote no row
    path = tmp_path / "results" / "ledger.csv"
    lg.to_csv(path, index=False)
    results = tmp_path / "results"
    val = results / "probabilities" / "IDB2_mobilenetv2_val.csv"
    val.write_text(f.read_text())
    again = ledger.record(path, results, [f, val], 7, root=tmp_path)
    assert again["look"].tolist() == ["repeat"] and again["k"].tolist() == [3]
    assert again["commit"].iloc[0].endswith("+dirty") is False  # profiles, code and notebooks match HEAD
    pd.read_csv(f).assign(p_all=[0.9, 0.6, 0.7]).to_csv(f, index=False)  # a new scoring: b is now wrong
    third = ledger.record(path, results, [f], 7, root=tmp_path)
    assert third["look"].tolist() == ["new"] and third["k"].tolist() == [2]
    full = pd.read_csv(path)
    assert len(full) == 4 and full["look"].tolist() == ["new", "new", "repeat", "new"]
    assert ledger.counts(full)["max_looks_per_split_and_model"].iloc[0] == 3


def test_map_choice_never_takes_a_degenerate_temperature_and_keeps_a_calibrated_model():
    rng = np.random.default_rng(5)
    y_sep = np.r_[np.ones(20), np.zeros(20)].astype(int)
    p_sep = np.r_[np.full(20, 0.8), np.full(20, 0.2)]  # separated: plain temperature runs to its bound
    groups = [f"g{i // 2}" for i in range(40)]  # pairs of images share a photograph
    m = cal.choose_map(y_sep, p_sep, groups, 5, 0, 0.5)
    assert m["degenerate"] and m["map"] != "temperature" and m["T_temperature"] < 0.1  # the clip stops it, not data
    assert not cal.at_bound(cal.fit_map("regularised", y_sep, p_sep, 0.5))  # the prior keeps T finite
    p_cal = rng.uniform(0.02, 0.98, 400)
    y_cal = (rng.uniform(size=400) < p_cal).astype(int)  # calibrated by construction: no map should help
    m = cal.choose_map(y_cal, p_cal, [f"g{i}" for i in range(400)], 5, 0, 0.5)
    assert m["map"] in ("none", "regularised") and abs(np.log(m["T"])) < 0.2
    p_soft = np.where(y_cal == 1, 0.65, 0.35)  # right every time but timid: sharpening pays on held-out folds
    m = cal.choose_map(y_cal, p_soft, [f"g{i}" for i in range(400)], 5, 0, 0.5)
    assert m["map"] != "none" and m["T"] < 1 and m["cv_nll_none"] > min(m["cv_nll_regularised"], m["cv_nll_temperature"])
    with pytest.raises(ValueError, match="unknown calibration map 'platt'"):
        cal.fit_map("platt", y_cal, p_cal, 0.5)


def test_cross_fitting_folds_keep_photograph_groups_whole():
    y = np.r_[np.ones(12), np.zeros(12)].astype(int)
    groups = np.array([f"g{i // 3}" for i in range(24)])  # 8 groups of 3
    held = cal._folds(y, groups, 5, 0)
    assert len(held) == 4  # at most the groups per class
    assert sorted(np.concatenate(held)) == list(range(24))  # each image held out once
    for h in held:
        assert not set(groups[h]) & set(groups[np.setdiff1d(np.arange(24), h)])  # a group on one side only
    assert cal._folds(np.ones(6, dtype=int), [f"g{i}" for i in range(6)], 5, 0) == []  # one class: no folds
    assert cal.choose_map(np.ones(6, dtype=int), np.full(6, 0.7), [f"g{i}" for i in range(6)], 5, 0, 0.5)["map"] == "none"


def test_ledger_rows_per_recipe_and_for_held_out_files_and_amendments_added_once(tmp_path, monkeypatch):
    """A from-scratch frame gives one row per recipe (not their average); step 70's held-out frame one row of its
    fused calls; :func:`ledger.amendments` finds both in the history, marks them recorded after the fact, and a
    second call adds nothing."""
    import subprocess

    from allrep.record import ledger, runs

    scratch = pd.DataFrame(dict(recipe=["naive"] * 3 + ["ours"] * 3, protocol="paper", repeat=0, dataset="IDB2",
                                backbone="b", member=0, id=list("abc") * 2, label=[1, 0, 1] * 2,
                                p_all=[0.4, 0.4, 0.4, 0.9, 0.1, 0.8]))
    rows = ledger.scorings(scratch, "scratch/IDB2_b.csv", 7)
    assert [(r["models"], r["k"], r["n"]) for r in rows] == [("b from scratch (naive)", 1, 3),
                                                             ("b from scratch (ours)", 3, 3)]
    assert rows[0]["split_set"] == rows[1]["split_set"] and rows[0]["digest"] != rows[1]["digest"]
    held = pd.DataFrame(dict(id=["IDB1/x", "IDB1/y"], label=["ALL", "healthy"], p_all_fused=[0.9, 0.8],
                             predicted=["ALL", "ALL"]))
    (r,) = ledger.scorings(held, "using/IDB1_held_out.csv", 7)
    assert (r["dataset"], r["protocol"], r["models"], r["k"], r["n"]) == ("IDB1", "final", "final models, fused", 1, 2)
    assert ledger.is_test_file("using/IDB1_held_out.csv") and not ledger.is_test_file("scratch/IDB2_b_members.csv")

    def git(*a):
        subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@t")
    git("config", "user.name", "t")
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "paper.yaml").write_text("seed: 7\n")
    (tmp_path / "results" / "scratch").mkdir(parents=True)
    (tmp_path / "results" / "using").mkdir()
    scratch.to_csv(tmp_path / "results" / "scratch" / "IDB2_b.csv", index=False)
    held.to_csv(tmp_path / "results" / "using" / "IDB1_held_out.csv", index=False)
    git("add", "-A")
    git("commit", "-q", "-m", "results")
    monkeypatch.setattr(ledger, "committed", lambda: (runs.development(),))
    monkeypatch.setattr(ledger, "MESSAGE_LOOKS", ())
    new = ledger.amendments(pd.DataFrame(columns=ledger.COLUMNS), tmp_path)
    assert sorted(new["models"]) == ["b from scratch (naive)", "b from scratch (ours)", "final models, fused"]
    assert (new["added"] == "backfill").all() and (new["look"] == "new").all() and new["split_seed"].eq(7).all()
    assert len(ledger.amendments(new, tmp_path)) == 0
