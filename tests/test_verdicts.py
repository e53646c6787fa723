"""The verdict rule, its margins, the corrected resampled t, and calibration on validation."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from allrep import calibration as cal
from allrep.metrics import bootstrap_interval, corrected_repeats, ece_equal_width, verdict, verdict_margin, verdict_repeats


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


def test_paper_protocol_margins():
    # 51/52 against 98.07: 50/52 still within 2 points, 49/52 is not -> 2 changes flip it
    assert verdict(51, 52, 98.07) == "reproduced"
    assert verdict_margin([51], [52], lambda k: verdict(k[0], 52, 98.07)) == 2
    # 22/22 against 100: one error makes 95.45, more than 2 points away
    assert verdict_margin([22], [22], lambda k: verdict(k[0], 22, 100.0)) == 1


def test_grouped_verdict_sets_one_split_against_the_paper():
    ns = [22] * 10
    assert verdict_repeats([22] * 5 + [21] * 5, ns, 86, 100.0) == "inconclusive"  # inside the PI, mean 2.3 points off
    half_perfect = [22] * 6 + [21] * 4  # six of ten splits reach 100%, mean 98.2%
    assert verdict_repeats(half_perfect, ns, 86, 100.0) == "reproduced"
    worse = [19] * 10  # every split at 86%: 100% is outside any interval for one split
    assert verdict_repeats(worse, ns, 86, 100.0) == "not reproduced"
    m = verdict_margin(half_perfect, ns, lambda k: verdict_repeats(k, ns, 86, 100.0))
    assert m is not None and m >= 1
    sure = [22] * 10  # every split perfect: the figure is deep inside, more changes are needed
    assert verdict_margin(sure, ns, lambda k: verdict_repeats(k, ns, 86, 100.0)) >= m


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
