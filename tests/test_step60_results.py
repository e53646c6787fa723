"""Step 60: claims.csv recomputed from the committed scores (themselves guarded by step 50's test)."""
from conftest import ROOT, paper_context, same_bytes

from allrep.steps import step60_results as step


def test_claims_equal_the_committed_ones(results_copy):
    (results_copy / "claims.csv").unlink()
    res = step.run(paper_context("60_results"))
    assert same_bytes(results_copy / "claims.csv", ROOT / "results" / "claims.csv")
    cl = res["claims"].set_index(["dataset", "protocol"])
    assert cl.loc[("IDB2", "paper"), "n_test"] == 52 and cl.loc[("combined", "paper"), "n_test"] == 74
    glue = step.claims_glue(res["claims"])
    assert glue["claim_n_IDB1_paper"] == 22 and set(res["weights"]["weights"]) <= {"imagenet-file", "random",
                                                                                   "imagenet-official"}
