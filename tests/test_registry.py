"""The step registry: names, declared files, stamps (what re-executes) and the access check."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from allrep.errors import AllrepError
from allrep.profile import load_profile
from allrep.runner import context, registry, stamps
from allrep.runner.context import Context
from allrep.runner.execute import check_access
from allrep.runner.registry import STEPS, declared, get_step
from allrep.runner.stamps import stamp

ROOT = Path(__file__).resolve().parent.parent


def test_every_step_has_its_module_and_test_by_name():
    for s in STEPS:
        num, rest = s.name.split("_", 1)
        assert (ROOT / "allrep" / "steps" / f"step{num}_{rest}.py").is_file(), s.name
        assert (ROOT / "tests" / f"test_step{num}_{rest}.py").is_file(), s.name
        __import__(s.module)


def test_every_input_is_some_earlier_steps_output():
    cfg = load_profile("paper")
    written = set()
    for s in STEPS:
        for v in s.variants(cfg):
            for p in declared(cfg, s, v, "inputs"):
                assert p in written, f"{s.name} reads {p.name}, which no earlier step writes"
        written |= {p for v in s.variants(cfg) for p in declared(cfg, s, v, "outputs")}


def test_variants_get_their_own_files():
    cfg = load_profile("paper")
    s = get_step("30")
    a = declared(cfg, s, {"backbone": "inceptionv3", "dataset": "IDB1"}, "inputs")
    assert sorted(p.name for p in a) == ["IDB1_grouped.csv", "IDB1_paper.csv", "best_inceptionv3_IDB1.csv"]
    assert len(declared(cfg, get_step("40"), {}, "inputs")) == 18  # every dataset x backbone, test and validation


def test_context_refuses_undeclared_names():
    ctx = Context(get_step("60"), load_profile("paper"), {})
    with pytest.raises(AllrepError, match="declares no input 'probabilities'"):
        ctx.path("probabilities")
    with pytest.raises(AllrepError, match="declares no output 'scores'"):
        ctx.output("scores")


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """Copies of the notebooks and the package that stamps read, so a test can edit them."""
    nbs, pkg = tmp_path / "notebooks", tmp_path / "allrep"
    shutil.copytree(ROOT / "notebooks", nbs)
    shutil.copytree(ROOT / "allrep", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(registry, "NOTEBOOKS", nbs)
    monkeypatch.setattr(stamps, "PACKAGE", pkg)
    return nbs, pkg


def _stamps(cfg):
    return {(s.name, registry.variant_id(v)): stamp(cfg, s, v) for s in STEPS for v in s.variants(cfg)}


def _changed(before, after):
    return sorted({k[0] for k in before if before[k] != after[k]})


def test_a_markdown_edit_restamps_only_its_notebook(tree):
    cfg = load_profile("smoke")
    before = _stamps(cfg)
    path = tree[0] / "30_ensemble.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source += "\n\nEdited in Jupyter."
    nbformat.write(nb, path)
    assert _changed(before, _stamps(cfg)) == ["30_ensemble"]


def test_code_edits_restamp_exactly_the_steps_that_use_the_module(tree):
    cfg = load_profile("smoke")
    before = _stamps(cfg)
    plots = tree[1] / "book" / "plots.py"
    plots.write_text(plots.read_text() + "\n# a comment changes no syntax tree\n")
    assert _changed(before, _stamps(cfg)) == []
    plots.write_text(plots.read_text() + "\n\ndef extra():\n    return 1\n")
    assert _changed(before, _stamps(cfg)) == ["10_data_exploration", "35_scratch", "40_uncertainty", "60_results"]
    claims = tree[1] / "evaluate" / "claims.py"
    claims.write_text(claims.read_text() + "\n\nEXTRA = 1\n")
    assert _changed(before, _stamps(cfg)) == ["10_data_exploration", "35_scratch", "40_uncertainty", "60_results"]
    # a new function in calibration.py re-executes the steps that import it, not all of them (allrep/__init__'s
    # lazy `predict` re-export does not pull every module into every step)
    before = _stamps(cfg)
    cal = tree[1] / "evaluate" / "calibration.py"
    cal.write_text(cal.read_text() + "\n\ndef extra():\n    return 1\n")
    expected = sorted(s.name for s in STEPS if "allrep.evaluate.calibration" in stamps.step_modules(s))
    assert _changed(before, _stamps(cfg)) == expected == ["40_uncertainty", "50_fusion", "70_using_models"]


def test_profile_slices_restamp_only_their_steps():
    from dataclasses import replace

    cfg = load_profile("smoke")
    before = _stamps(cfg)
    other = replace(cfg, uncertainty=replace(cfg.uncertainty, bootstrap=7))
    assert _changed(before, _stamps(other)) == ["40_uncertainty", "70_using_models"]


def test_access_check_fails_on_an_undeclared_read(tmp_path, monkeypatch):
    from allrep.record import places

    monkeypatch.setattr(places, "output_dir", lambda cfg: tmp_path)
    cfg = load_profile("paper")
    step = get_step("60")
    log = tmp_path / "log"
    declared_in = declared(cfg, step, {}, "inputs")[0]
    log.write_text(json.dumps(["read", str(declared_in)]) + "\n"
                   + json.dumps(["write", str(tmp_path / "claims.csv")]) + "\n")
    check_access(cfg, step, {}, log)  # declared: fine
    with log.open("a") as f:
        f.write(json.dumps(["read", str(tmp_path / "data" / "shortcut_baselines.csv")]) + "\n")
    with pytest.raises(AllrepError, match="read data/shortcut_baselines.csv|read shortcut_baselines.csv"):
        check_access(cfg, step, {}, log)


def test_the_audit_hook_logs_reads_and_replaces_under_results(tmp_path):
    """What a kernel opens under the results folder is logged (the runner then checks it)."""
    results = tmp_path / "results"
    (results / "fusion").mkdir(parents=True)
    (results / "fusion" / "scores.csv").write_text("a\n1\n")
    (tmp_path / "elsewhere.txt").write_text("x")
    code = f"""
import sys, pandas as pd
from pathlib import Path
from allrep.notebook import _AccessLog
from allrep.io import atomic_write_text
sys.addaudithook(_AccessLog(Path({str(tmp_path / 'log')!r}), Path({str(results)!r})))
pd.read_csv({str(results / 'fusion' / 'scores.csv')!r})
open({str(tmp_path / 'elsewhere.txt')!r}).read()
atomic_write_text(Path({str(results / 'claims.csv')!r}), "x")
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    lines = [json.loads(x) for x in (tmp_path / "log").read_text().splitlines()]
    assert ["read", str(results / "fusion" / "scores.csv")] in lines
    assert ["write", str(results / "claims.csv")] in lines
    assert not any("elsewhere" in p for _, p in lines) and not any(Path(p).name.startswith(".") for _, p in lines)


def test_a_missing_input_names_the_step_that_writes_it(tmp_path, monkeypatch):
    from allrep.record import places

    monkeypatch.setattr(places, "output_dir", lambda cfg: tmp_path)
    ctx = Context(get_step("60"), load_profile("paper"), {})
    with pytest.raises(AllrepError, match=r"scores.csv does not exist yet: run 50_fusion first \(allrep run --profile paper --steps 50\)"):
        ctx.read_csv("scores")


def test_every_committed_results_file_is_declared():
    """Each file under results/ is a step output or one of the registry's other outputs (timings, recipe
    study, benchmark): an undeclared file is an orphan nobody regenerates."""
    from allrep.runner.registry import all_outputs

    paper, confirmatory = load_profile("paper"), load_profile("confirmatory")
    declared_files = {p.relative_to(ROOT / "results") for p in all_outputs(paper)}
    committed = {p.relative_to(ROOT / "results") for p in (ROOT / "results").rglob("*") if p.is_file()}
    from allrep.runner.registry import other_output

    if (ROOT / "results" / "confirmatory").is_dir():  # the confirmatory run's folder: its steps' outputs and timings
        # (the recipe study and the benchmark are development scripts')
        scripts = {other_output("recipe_study", confirmatory), other_output("benchmark", confirmatory)}
        declared_files |= {p.relative_to(ROOT / "results") for p in all_outputs(confirmatory) - scripts}
    sealed = {p.relative_to(ROOT / "results") for c in (paper, confirmatory)
              if (p := other_output("seal", c)).is_file()}
    assert sealed == {Path("confirmatory/seal.json")}  # a seal exists once a run is sealed: the confirmatory one
    assert committed - declared_files == set(), "undeclared results files"
    assert declared_files - committed == {Path("seal.json")}, "declared results files that are not committed"



def test_no_step_module_imports_another_step():
    """Steps share code through library modules (e.g. allrep.train.members, allrep.evaluate.scores), never through each other."""
    for s in STEPS:
        path = stamps.module_file(s.module)
        others = {m for m in stamps._imports(path, s.module) if m.startswith("allrep.steps.step") and m != s.module}
        assert not others, f"{s.module} imports {sorted(others)}"


def test_one_cache_key_function():
    """Every trained head is keyed by allrep.train.members.key: no other module builds a head or trial key. The one
    other cache is step 35's whole hybrids trained from scratch (images, not features: not heads)."""
    import re

    own_keys = {"members.py": "the member engine", "step35_scratch.py": "whole hybrids from scratch"}
    for path in (ROOT / "allrep").rglob("*.py"):
        if path.name not in own_keys:
            assert not re.search(r"MemberStore\(|\bdigest\(dict\(", path.read_text()), \
                f"{path.relative_to(ROOT)} builds its own cache key"


def test_a_hand_run_writes_its_own_folder_and_reads_inputs_from_there_first(tmp_path, monkeypatch):
    """In a kernel the runner did not start (Jupyter, a bare papermill call, nbval) a variant writes to
    scratch/interactive/<profile>/results and reads what a hand run wrote before the profile's own results;
    the runner's kernels, code outside a kernel and ALLREP_WRITE_RESULTS=1 use the profile's own folder."""
    root = Path(__file__).resolve().parent.parent
    monkeypatch.setenv("ALLREP_SCRATCH", str(tmp_path))
    monkeypatch.delenv("ALLREP_RUNNER", raising=False)
    monkeypatch.delenv("ALLREP_WRITE_RESULTS", raising=False)
    paper, conf = load_profile("paper"), load_profile("confirmatory")
    outside = Context(get_step("60"), paper, {})  # pytest is no kernel
    assert outside.hand is None and outside.output("claims") == root / "results" / "claims.csv"

    monkeypatch.setattr(context, "_in_kernel", lambda: True)
    hand = Context(get_step("60"), paper, {})
    assert hand.output("claims") == tmp_path / "interactive" / "paper" / "results" / "claims.csv"
    assert hand.path("scores") == root / "results" / "fusion" / "scores.csv"  # no hand copy yet: the committed one
    mine = tmp_path / "interactive" / "paper" / "results" / "fusion" / "scores.csv"
    mine.parent.mkdir(parents=True)
    mine.write_text("dataset\n")
    assert hand.path("scores") == mine  # a hand run's own output wins
    assert Context(get_step("60"), conf, {}).output("claims") == \
        tmp_path / "interactive" / "confirmatory" / "results" / "claims.csv"
    monkeypatch.setenv("ALLREP_RUNNER", "1")
    assert Context(get_step("60"), paper, {}).output("claims") == root / "results" / "claims.csv"
    monkeypatch.delenv("ALLREP_RUNNER")
    monkeypatch.setenv("ALLREP_WRITE_RESULTS", "1")
    assert Context(get_step("60"), conf, {}).output("claims") == root / "results" / "confirmatory" / "claims.csv"


def test_the_record_and_the_runner_are_plumbing_no_step_is_stamped_with():
    """Editing the seal, the replay, the ledger, the git helper, the runner or the CLI re-executes nothing: none is
    in any step's hashed closure (the runtime context is, and so are the runs and places it asks)."""
    plumbing = {"allrep.record.seal", "allrep.record.replay", "allrep.record.ledger", "allrep.record.history",
                "allrep.runner.registry", "allrep.runner.stamps", "allrep.runner.execute", "allrep.runner.pipeline",
                "allrep.runner.dispatch", "allrep.cli", "allrep.book.pages", "allrep.book.tables", "allrep.book.report"}
    for s in STEPS:
        mods = set(stamps.step_modules(s))
        assert not mods & plumbing, (s.name, sorted(mods & plumbing))
        assert {"allrep.runner.context", "allrep.record.runs", "allrep.record.places"} <= mods, s.name
