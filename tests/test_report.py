"""Honest reporting of the registered run (allrep.book.report), recomputed from its sealed files."""
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from allrep.book import report
from allrep.evaluate.claims import verdict
from allrep.profile import load_profile


@pytest.fixture(scope="module")
def cfg():
    return load_profile("confirmatory")


def test_verdict_zones_agree_with_the_rule_at_their_edges(cfg):
    z = report.verdict_zones(cfg).set_index(["claim", "protocol"])
    cl = pd.read_csv(ROOT / "results/confirmatory/claims.csv")
    cl = cl[cl["model_set"] == "all backbones"]
    for _, r in cl.iterrows():
        row = z.loc[(f"{report.DATASET_NAMES[r['dataset']]} ({r['paper_accuracy']:g}%)", r["protocol"])]
        assert row["observed"] == f"{r['n_correct']}/{r['n_test']}, {r['verdict']}"
        for col, name in (("not reproduced at k", "not reproduced"), ("reproduced at k", "reproduced")):
            if row[col] != "none":
                lo, hi = (int(x) for x in (row[col].split(" to ") * 2)[:2])
                for k in (lo, hi):
                    assert verdict(k, r["n_test"], r["effective_n"], r["paper_accuracy"], cfg.verdict.delta,
                                   cfg.verdict.alpha) == name
    # the 100% claim and the combined claim have no inconclusive zone on the grouped design
    assert z.loc[("ALL-IDB1 (100%)", "grouped"), "inconclusive at k"] == "none"
    assert z.loc[("ALL-IDB1 + ALL-IDB2 (98.64%)", "grouped"), "not reproduced at k"] == "0 to 714"
    assert z.loc[("ALL-IDB1 (100%)", "grouped"), "if true accuracy is 1 point lower: P(not reproduced)"] == "0.58"


def test_the_registered_correlation_gives_the_registered_verdicts(cfg):
    t = report.icc_sensitivity(cfg)
    cl = pd.read_csv(ROOT / "results/confirmatory/claims.csv")
    grouped = cl[(cl["model_set"] == "all backbones") & (cl["protocol"] == "grouped")]
    registered = [c for c in t.columns if "(registered)" in c]
    assert registered == ["ICC 0.1 (registered)"]
    for (_, r), (_, c) in zip(t.iterrows(), grouped.iterrows()):
        v, n_eff = r[registered[0]].split(" (n eff ")
        assert v == c["verdict"] and np.isclose(float(n_eff.rstrip(")")), c["effective_n"], atol=0.5)
    assert t.set_index("claim").loc["ALL-IDB2 (98.07%)", "ICC 0"].startswith("reproduced")


def test_targets_report_the_registered_outcomes(cfg):
    t = report.targets(cfg)
    assert list(t["met"]) == ["no", "no", "no"]
    assert t["outcome"].tolist()[:2] == ["503/520 = 96.73%", "on 5 of 10 outer splits (492 against 501 correct in all)"]
    assert t["outcome"].iloc[2].startswith("141.6 minutes")


def test_amendments_list_their_code(cfg):
    a = report.amendment_code_changes()
    assert a["amendment"].tolist() == ["Amendment 1", "Amendment 2"]
    assert "`allrep/places.py`" in a.set_index("amendment").loc["Amendment 2", "code changed"]


def test_development_looks_are_counted_up_to_the_registered_scoring(tmp_path, monkeypatch):
    """The book's "scored up to N times per model while the recipe, the margin and the intra-group correlation were
    chosen" counts the development looks before the registered run's first ledger row; a later re-execution of the
    development run (one more look at each of its test parts) chose nothing and does not move N. A made-up ledger:
    split 0 of the development seed looked at three times by one model before the registered scoring, once by
    another, and twice more after it; another seed's rows do not count."""
    import pandas as pd

    from allrep.book import report
    from allrep.profile import load_profile
    from allrep.record import ledger

    cfg, dev = load_profile("confirmatory"), load_profile("paper")

    def row(seed, repeat, models, date, look="new"):
        return dict(dataset="IDB2", protocol="grouped", split_seed=seed, split_set="s", repeat=repeat, models=models,
                    commit="c", date=date, k=1, n=2, look=look, digest="d")

    rows = [row(dev.seed, 0, "fused", f"2025-01-0{d}T00:00:00+00:00") for d in (1, 2, 3)]
    rows += [row(dev.seed, 0, "mobilenetv2", "2025-01-02T00:00:00+00:00"),
             row(dev.seed, 0, "fused", "2025-01-03T00:00:00+00:00", look="repeat"),
             row(cfg.seed, 0, "fused", "2025-02-01T00:00:00+00:00"),  # the registered scoring
             row(cfg.seed, 0, "fused", "2025-02-02T00:00:00+00:00"),
             row(dev.seed + 1, 0, "fused", "2025-01-01T00:00:00+00:00"),
             row(dev.seed + 1, 0, "fused", "2025-01-02T00:00:00+00:00"),
             row(dev.seed + 1, 0, "fused", "2025-01-03T00:00:00+00:00"),
             row(dev.seed + 1, 0, "fused", "2025-01-04T00:00:00+00:00")]
    rows += [row(dev.seed, 0, "fused", f"2025-03-0{d}T00:00:00+00:00") for d in (1, 2)]
    path = tmp_path / "ledger.csv"
    pd.DataFrame(rows, columns=ledger.COLUMNS).to_csv(path, index=False)
    monkeypatch.setattr(report.places, "ledger_path", lambda profile: path)
    assert report.shared_with_development(cfg, dev)["most_development_looks"] == 3
    pd.DataFrame(rows[:5], columns=ledger.COLUMNS).to_csv(path, index=False)  # no registered scoring yet: every look
    assert report.shared_with_development(cfg, dev)["most_development_looks"] == 3
    pd.DataFrame(rows[:5] + rows[-2:], columns=ledger.COLUMNS).to_csv(path, index=False)
    assert report.shared_with_development(cfg, dev)["most_development_looks"] == 5
