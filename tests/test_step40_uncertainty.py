"""Step 40: the uncertainty summary recomputed from committed probabilities."""
import pandas as pd
from conftest import ROOT, paper_context

from allrep.steps import step40_uncertainty as step


def test_summary_equals_the_committed_one(results_copy):
    res = step.run(paper_context("40_uncertainty"))
    committed = pd.read_csv(ROOT / "results" / "uncertainty" / "summary.csv")
    pd.testing.assert_frame_equal(pd.read_csv(results_copy / "uncertainty" / "summary.csv"), committed)
    assert len(res["summary"]) == 3 * 3 * 11  # datasets x backbones x (paper + 10 grouped)
    assert (res["summary"]["ece_ci_low"] <= res["summary"]["ece_ci_high"]).all()
