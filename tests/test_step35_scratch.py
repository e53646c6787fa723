"""Step 35: the paired from-scratch comparison recomputed from committed probabilities."""
import pandas as pd
from conftest import ROOT, paper_context, same_bytes

from allrep.steps import step35_scratch as step


def test_comparison_equals_the_committed_summary(results_copy):
    ctx = paper_context("35_scratch")
    runs = {ds: {"probabilities": pd.read_csv(p)} for (ds, _), p in ctx.paths("probabilities", "outputs").items()}
    (results_copy / "fusion" / "scratch_summary.csv").unlink()
    table, summary, glue = step.comparison(ctx, runs)
    assert same_bytes(results_copy / "fusion" / "scratch_summary.csv", ROOT / "results" / "fusion" / "scratch_summary.csv")
    assert table.groupby(["protocol", "repeat"])["n"].nunique().eq(1).all()  # paired: same images in every row
    assert glue["scratch_naive_IDB2_paper_n"] == 52
