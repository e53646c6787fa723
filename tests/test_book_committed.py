"""The committed paper book: results files present, generated tables in sync, no images committed."""
import subprocess
from pathlib import Path

import pandas as pd

from allrep.book.pages import write_tables
from allrep.profile import load_profile
from allrep.runner.registry import STEPS, executed_path

ROOT = Path(__file__).resolve().parent.parent


def test_claims_file_has_one_row_per_claim_and_protocol():
    cl = pd.read_csv(ROOT / "results" / "claims.csv")
    cols = ["dataset", "protocol", "models", "n_test", "n_correct", "accuracy", "bound_low", "bound_high",
            "paper_accuracy", "verdict"]
    assert set(cols) <= set(cl.columns)
    # every claim and protocol: the three-backbone fusion, and the pretrained backbones alone (one is random here)
    assert sorted(zip(cl["dataset"], cl["protocol"], cl["model_set"])) == sorted(
        (d, p, m) for d in ("IDB1", "IDB2", "combined") for p in ("paper", "grouped")
        for m in ("all backbones", "pretrained only"))
    assert (cl.loc[cl["model_set"] == "all backbones", "models"].str.contains(r"\(random\)")).all()
    assert not cl.loc[cl["model_set"] == "pretrained only", "models"].str.contains("random").any()
    paper = cl[(cl["protocol"] == "paper") & (cl["model_set"] == "all backbones")].set_index("dataset")
    assert paper["n_test"].to_dict() == {"IDB1": 22, "IDB2": 52, "combined": 74}
    assert (cl["accuracy"] == cl["n_correct"] / cl["n_test"]).all()
    assert (cl.loc[cl["protocol"] == "grouped", "repeats"] == load_profile("paper").splits.repeats).all()


def test_every_executed_notebook_of_the_paper_run_is_committed():
    cfg = load_profile("paper")
    for step in STEPS:
        for v in step.variants(cfg):
            nb = executed_path(cfg, step, v)
            assert nb.is_file(), f"missing {nb.relative_to(ROOT)}"


def test_generated_tables_match_results(tmp_path):
    write_tables(load_profile("paper"), tmp_path)
    made = sorted(tmp_path.rglob("*.md"))
    assert {p.relative_to(tmp_path).as_posix() for p in made} >= {"claims.md", "confirmatory/claims_compact.md",
                                                                  "confirmatory/tuning_sentence.md", "ledger.md"}
    for p in made:
        name = p.relative_to(tmp_path).as_posix()
        committed = ROOT / "book" / "_generated" / name
        assert committed.read_text() == p.read_text(), f"book/_generated/{name} is stale: run `allrep book`"


def test_no_image_data_is_tracked():
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True).stdout.split()
    bad = [f for f in files if f.lower().endswith((".jpg", ".jpeg", ".tif", ".tiff", ".npz", ".npy", ".h5", ".keras"))]
    assert not bad, bad
    for nb in (ROOT / "book" / "executed").glob("10_data_exploration*.ipynb"):
        assert "sample grid omitted" in nb.read_text()  # thumbnails of licensed images never committed


def test_no_machine_specific_path_or_host_in_tracked_files():
    """Nothing in git names a machine: no absolute path of any machine, no host name."""
    import re

    roots = "|".join(["/" + d + "/" for d in ("home", "work", "tmp", "Users", "root", "mnt")])
    pattern = re.compile(r"(?<![\w.~-])(" + roots + r")|[A-Z]:\\\\")
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True).stdout.split()
    bad = []
    for f in files:
        path = ROOT / f
        if not path.is_file() or path.suffix in (".png", ".h5"):
            continue
        text = path.read_text(errors="ignore")
        for m in pattern.finditer(text):
            bad.append(f"{f}: ...{text[max(0, m.start() - 30):m.end() + 30]!r}")
        if re.search(r"Linux-\d+\.\d+", text):
            bad.append(f"{f}: a platform string")
    assert not bad, "\n".join(bad[:20])


def test_readme_opens_with_the_registered_findings_generated_from_the_claims():
    """The README's first screen says what was found: each claim's k/n and verdicts, generated from the registered
    run's claims file (``allrep book`` rewrites the block), so it cannot go stale."""
    import pandas as pd

    from allrep.book.pages import FINDINGS_END, FINDINGS_START, readme_findings

    text = (ROOT / "README.md").read_text()
    block = text[text.index(FINDINGS_START):text.index(FINDINGS_END) + len(FINDINGS_END)]
    assert block == readme_findings(), "README findings are stale: run `allrep book`"
    assert text.index(FINDINGS_END) < len("\n".join(text.splitlines()[:30]))  # on the first screen
    cl = pd.read_csv(ROOT / "results" / "confirmatory" / "claims.csv")
    for _, r in cl[cl["model_set"] == "all backbones"].iterrows():
        assert f"{r['n_correct']}/{r['n_test']} ({r['n_correct'] / r['n_test']:.2%}) | {r['verdict']} |" in block
