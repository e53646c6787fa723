import numpy as np
import pytest
from scipy import stats

from allrep.evaluate import fusion
from allrep.evaluate import metrics as M
from allrep.evaluate import uncertainty as U


def test_paper_percentages_truncated_and_rounded():
    assert M.truncate_pct(51, 52) == 98.07 and M.round_pct(51, 52) == 98.08
    assert M.truncate_pct(73, 74) == 98.64 and M.round_pct(73, 74) == 98.65
    assert M.truncate_pct(22, 22) == 100.0
    assert M.truncate_pct(2, 3) == 66.66 and M.round_pct(2, 3) == 66.67


def test_clopper_pearson_is_exact():
    lo, hi = M.clopper_pearson(51, 52)
    assert stats.binom.sf(50, 52, lo) == pytest.approx(0.025, abs=1e-9)  # P(X >= 51 | lo)
    assert stats.binom.cdf(51, 52, hi) == pytest.approx(0.025, abs=1e-9)  # P(X <= 51 | hi)
    assert round(lo, 4) == 0.8974 and round(hi, 4) == 0.9995
    assert M.clopper_pearson(22, 22)[1] == 1.0 and round(M.clopper_pearson(22, 22)[0], 4) == 0.8456
    assert M.clopper_pearson(0, 10)[0] == 0.0


def test_binary_metrics_from_argmax():
    y = [1, 1, 1, 0, 0, 0, 0]
    p = [0.9, 0.6, 0.4, 0.1, 0.5, 0.7, 0.2]  # 0.5 is healthy
    m = M.binary_metrics(y, p)
    assert (m["tp"], m["fn"], m["tn"], m["fp"]) == (2, 1, 3, 1)
    assert m["n_correct"] == 5 and m["n"] == 7
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(3 / 4)
    assert m["precision"] == pytest.approx(2 / 3) and m["f1"] == pytest.approx(2 / 3)
    assert m["auc"] == pytest.approx(9 / 12)  # 9 of 12 positive-negative pairs ordered


def test_repeat_summary():
    s = M.summarize_repeats([0.9, 0.8, 1.0])
    assert s["mean"] == pytest.approx(0.9) and s["sd"] == pytest.approx(0.1)
    half = stats.t.ppf(0.975, 2) * 0.1 / np.sqrt(3)
    assert s["ci_low"] == pytest.approx(0.9 - half)


def test_uncertainty_bounds_and_identities():
    P = np.tile([0.1, 0.5, 0.99], (5, 1))  # identical members
    d = U.decompose(P)
    assert np.allclose(d["mutual_information"], 0) and np.allclose(d["spread"], 0)
    assert d["predictive_entropy"][1] == pytest.approx(np.log(2))
    P2 = np.array([[0.0, 1.0], [1.0, 0.0]])  # total disagreement, confident members
    d2 = U.decompose(P2)
    assert d2["mutual_information"] == pytest.approx([np.log(2)] * 2, abs=1e-6)
    rng = np.random.default_rng(0)
    R = rng.uniform(size=(5, 100))
    d3 = U.decompose(R)
    assert (d3["mutual_information"] >= 0).all() and (d3["predictive_entropy"] <= np.log(2) + 1e-12).all()


def test_calibration_by_hand():
    y = np.array([1, 0, 1, 0])
    p = np.array([0.8, 0.4, 0.3, 0.1])
    assert M.brier(y, p) == pytest.approx((0.04 + 0.16 + 0.49 + 0.01) / 4)
    from sklearn.metrics import brier_score_loss

    assert M.brier(y, p) == pytest.approx(brier_score_loss(y, p))
    rows = np.stack([p, p[::-1]])
    assert np.allclose(M.nll(y, rows, axis=-1), [M.nll(y, p), M.nll(y, p[::-1])])  # the bootstrap's batched call
    assert np.allclose(M.brier(y, rows, axis=-1), [M.brier(y, p), M.brier(y, p[::-1])])
    assert M.nll(y, p) == pytest.approx(-np.mean(np.log([0.8, 0.6, 0.3, 0.9])))
    assert M.nll([1, 0], [1.0, 0.0]) == pytest.approx(-np.log(1 - M.EPS))  # rounded 0/1 clipped at 1e-6
    assert M.nll([0], [1.0]) == pytest.approx(-np.log(M.EPS))
    # 2 equal-mass bins of confidence: {0.6 (ok), 0.7 (wrong)} and {0.8 (ok), 0.9 (ok)}
    assert M.ece_equal_mass(y, p, bins=2) == pytest.approx(0.5 * abs(0.5 - 0.65) + 0.5 * abs(1.0 - 0.85))
    # 2 equal-width bins on [0.5, 1]: [0.5, 0.75) holds 0.6 (ok) and 0.7 (wrong); [0.75, 1] holds 0.8, 0.9 (ok)
    assert M.ece_equal_width(y, p, bins=2) == pytest.approx(0.5 * abs(0.5 - 0.65) + 0.5 * abs(1.0 - 0.85))
    # 5 equal-width bins: 0.6 | 0.7 | 0.8 | 0.9 alone in four bins -> mean |acc - conf| over the four
    assert M.ece_equal_width(y, p, bins=5) == pytest.approx((0.4 + 0.7 + 0.2 + 0.1) / 4)
    rc = U.rejection_curve(y, p, uncertainty=[0.1, 0.3, 0.9, 0.2])
    assert rc["accuracy"][-1] == pytest.approx(0.75) and rc["accuracy"][2] == pytest.approx(1.0)
    assert U.accuracy_at_coverage(y, p, [0.1, 0.3, 0.9, 0.2], 0.75) == 1.0
    assert U.error_detection_auroc(y, p, [0.1, 0.3, 0.9, 0.2]) == 1.0


def test_fusion_rules_and_ties():
    S = np.array([[0.9, 0.6, 0.2, 0.7],
                  [0.4, 0.4, 0.8, 0.3]])
    assert np.allclose(fusion.fuse(S, "sum"), [0.65, 0.5, 0.5, 0.5])
    assert M.predict_label(fusion.fuse(S, "sum")).tolist() == [1, 0, 0, 0]  # ties -> healthy
    prod = fusion.fuse(S, "product")
    assert prod[0] == pytest.approx(0.36 / (0.36 + 0.06))
    mx = fusion.fuse(S, "max")
    assert mx[0] == pytest.approx(0.9) and mx[2] == 0.5 and mx[3] == pytest.approx(0.5)
    assert fusion.fuse(S, "vote").tolist() == [0.5, 0.5, 0.5, 0.5]
    S3 = np.array([[0.9, 0.2], [0.8, 0.3], [0.1, 0.6]])
    assert fusion.fuse(S3, "vote").tolist() == pytest.approx([2 / 3, 1 / 3])
    with pytest.raises(Exception, match="unknown fusion rule"):
        fusion.fuse(S, "median")


def test_repeat_interval_is_clipped():
    s = M.summarize_repeats([1.0, 0.9])
    assert s["ci_high"] == 1.0 and s["ci_low"] >= 0.0
    assert M.summarize_repeats([1.0, 0.9], clip=None)["ci_high"] > 1.0


def test_binned_calibration_errors_equal_their_reliability_tables():
    """Each ECE is its reliability table's weighted |accuracy - confidence|, also row by row (the bootstrap's call)."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 57)
    p = np.clip(0.5 * y + rng.uniform(0, 0.6, 57), 0, 1)
    for ece, rel in ((M.ece_equal_width, M.reliability_equal_width), (M.ece_equal_mass, M.reliability_equal_mass)):
        r = rel(y, p, 7)
        assert ece(y, p, 7) == pytest.approx(np.sum(r["count"] / r["count"].sum() * np.abs(r["accuracy"] - r["confidence"])))
        rows = np.stack([p, p[::-1], np.full(57, 0.9)])
        Y = np.broadcast_to(y, rows.shape)
        assert np.allclose(ece(Y, rows, 7, axis=-1), [ece(y, q, 7) for q in rows])


def test_a_calibration_map_improves_the_nll_only_beyond_rounding():
    """Where every split chose no map, after and before are one sum in two orders: a difference in the 16th digit
    is no improvement (it flipped with the CPU), a real decrease is."""
    from allrep.evaluate.calibration import NLL_TIE, improved

    before = 0.13136311841
    assert not improved(before, before)
    assert not improved(before, before - 2.8e-17) and not improved(before, before + 2.8e-17)
    assert not improved(before, before - NLL_TIE / 2)
    assert improved(before, before - 10 * NLL_TIE) and improved(0.0386, 0.0179)
    assert not improved(0.0179, 0.0386)
