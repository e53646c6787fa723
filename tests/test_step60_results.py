"""Step 60: claims.csv recomputed from the committed scores (themselves guarded by step 50's test)."""
from conftest import ROOT, paper_context, same_bytes

from allrep.steps import step60_results as step


def test_claims_equal_the_committed_ones(results_copy):
    (results_copy / "claims.csv").unlink()
    res = step.run(paper_context("60_results"))
    assert same_bytes(results_copy / "claims.csv", ROOT / "results" / "claims.csv")
    cl = res["claims"].set_index(["dataset", "protocol", "model_set"])
    assert cl.loc[("IDB2", "paper", "all backbones"), "n_test"] == 52
    assert cl.loc[("combined", "paper", "pretrained only"), "n_test"] == 74
    glue = step.claims_glue(res["claims"])
    assert glue["claim_n_IDB1_paper"] == 22 and set(res["weights"]["weights"]) <= {"imagenet-file", "random",
                                                                                   "imagenet-official"}


def test_every_claim_has_a_verdict_a_margin_and_its_leakage():
    import pandas as pd

    cl = pd.read_csv(ROOT / "results" / "claims.csv")
    assert set(cl["verdict"]) <= {"reproduced", "not reproduced", "inconclusive"}
    assert cl["margin"].notna().all() and (cl["margin"] >= 1).all()
    paper = cl[cl["protocol"] == "paper"]
    assert (paper["leakage"] > 0.2).all()  # the paper protocol leaks: said beside every verdict
    grouped = cl[cl["protocol"] == "grouped"]
    assert (grouped["leakage"] == 0).all() and grouped["reach_paper"].between(0, grouped["repeats"]).all()
    # every pair of bounds contains its estimate, and the effective n never exceeds the test predictions
    assert ((cl["bound_low"] <= cl["accuracy"]) & (cl["accuracy"] <= cl["bound_high"])).all()
    assert (cl["effective_n"] <= cl["n_test"]).all()
