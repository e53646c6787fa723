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


def test_camera_check_recomputes_and_adds_up(results_copy):
    import pandas as pd

    for name in ("camera", "camera_test"):
        (results_copy / "fusion" / f"{name}.csv").unlink()
    res = step.run(paper_context("50_fusion"))
    for name in ("camera", "camera_test"):
        assert same_bytes(results_copy / "fusion" / f"{name}.csv", ROOT / "results" / "fusion" / f"{name}.csv"), name
    cam = res["camera"]
    fused = cam[(cam["model"] == "sum fusion") & (cam["dataset"] == "IDB1") & (cam["protocol"] == "grouped")]
    k = sum(int(a.split("/")[0]) for a in fused["accuracy"])
    n = sum(int(a.split("/")[1]) for a in fused["accuracy"])
    summ = res["summary"].set_index(["dataset", "protocol", "model"])
    assert (k, n) == (summ.loc[("IDB1", "grouped", "sum fusion, all backbones"), "k"],
                      summ.loc[("IDB1", "grouped", "sum fusion, all backbones"), "n"])  # cameras partition the test images
    t = res["camera_test"]
    assert set(t["model"]) >= {"sum fusion", "mobilenetv2"} and t["p_value"].between(0, 1).all()
    assert (t["all_only_camera"] == "1712x1368").all()
    committed = pd.read_csv(ROOT / "results" / "fusion" / "camera_test.csv")
    assert len(committed) == len(t) and (committed["n_all_only"] > 0).all() and (committed["n_mixed"] > 0).all()
