"""Step 50: scores, summaries and baselines recomputed from committed probabilities, byte for byte."""
from conftest import ROOT, paper_context, same_bytes

from allrep.steps import step50_fusion as step


def test_scores_equal_the_committed_ones(results_copy):
    for name in ("scores", "summary", "baselines"):
        (results_copy / "fusion" / f"{name}.csv").unlink()
    res = step.run(paper_context("50_fusion"))
    for name in ("scores", "summary", "baselines"):
        assert same_bytes(results_copy / "fusion" / f"{name}.csv", ROOT / "results" / "fusion" / f"{name}.csv"), name
    assert res["random_backbones"] == ["efficientnetb3"]  # no offline EfficientNetB3 file: said, not hidden
    models = set(res["summary"]["model"])
    assert "sum fusion, all backbones" in models and "sum fusion, without efficientnetb3 (random init)" in models
