"""Step 10 recomputes the committed split files and shortcut baselines byte for byte (no images needed)."""
from conftest import ROOT, paper_context, same_bytes

from allrep.steps import step10_data_exploration as step


def test_split_files_and_shortcut_baselines_equal_the_committed_ones(results_copy):
    for p in (results_copy / "splits").glob("*.csv"):
        p.unlink()
    ctx = paper_context("10_data_exploration")
    frames = step.splits(ctx)
    assert len(frames) == 6
    for (d, protocol) in frames:
        name = f"splits/{d}_{protocol}.csv"
        assert same_bytes(results_copy / name, ROOT / "results" / name), f"{name} differs from make_splits"
    (results_copy / "data" / "shortcut_baselines.csv").unlink()
    short, summary = step.shortcut_baselines(ctx, frames)
    assert same_bytes(results_copy / "data" / "shortcut_baselines.csv", ROOT / "results" / "data" / "shortcut_baselines.csv")
    paper = summary[(summary["protocol"] == "paper") & summary["model"].str.startswith("image size")].set_index("dataset")
    assert (paper.loc["IDB1", "k"], paper.loc["IDB1", "n"]) == (19, 22)  # the camera shortcut on ALL-IDB1
    glue = step.shortcut_glue(summary)
    assert glue["short_image_IDB1_paper"] == 19 / 22
