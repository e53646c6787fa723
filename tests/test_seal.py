"""The seal of the registered run (allrep.record.seal): a checksummed record that the runner never re-executes."""
import json
import shutil

import pandas as pd
import pytest
from conftest import ROOT

from allrep import cli
from allrep.errors import AllrepError
from allrep.profile import load_profile
from allrep.record import places, seal


@pytest.fixture(scope="module")
def cfg():
    return load_profile("confirmatory")


@pytest.fixture
def run_copy(tmp_path, monkeypatch, cfg):
    """A copy of the sealed run's files in a project of its own (the committed files stay untouched)."""
    for rel in (places.relative(places.output_dir(cfg)), places.relative(places.executed_dir(cfg))):
        shutil.copytree(ROOT / rel, tmp_path / rel)
    for rel in ("results/ledger.csv", "preregistration/SHA256SUMS"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    monkeypatch.setattr(places, "PROJECT_ROOT", tmp_path)
    monkeypatch.setattr(seal, "PROJECT_ROOT", tmp_path)
    return tmp_path


def _tree(*folders) -> dict:
    return {p: p.read_bytes() for f in folders for p in sorted(f.rglob("*")) if p.is_file()}


def test_the_committed_run_is_sealed_and_its_checksums_match(cfg):
    rec = seal.record(cfg)
    assert rec is not None and rec["profile"] == "confirmatory" and rec["split_seed"] == cfg.seed
    assert seal.check(cfg) == []
    assert str(seal.status(cfg)) == f"sealed at {rec['commit'][:12]} (verified)"
    # the record covers every variant (33), every results file and the weights each backbone used
    assert len(rec["stamps"]) == 33 and sum(k.endswith("#outputs") for k in rec["files"]) == 33
    assert "results/confirmatory/claims.csv" in rec["files"] and "results/confirmatory/seal.json" not in rec["files"]
    assert rec["weights"]["efficientnetb3"] == "random" and len(rec["weights"]["mobilenetv2"]) == 64
    assert rec["environment"]["pinned_packages"]["keras"] == rec["environment"]["recorded_by_run"]["keras"]
    # the commit comes from the evidence: a clean tree, and the notebooks' short hash is its prefix
    assert rec["clean"] and all(rec["commit"].startswith(c) for c in rec["commit_evidence"]["notebooks"])


def test_every_ledger_row_of_the_sealed_seed_carries_the_sealed_commit(cfg):
    rec = seal.record(cfg)
    ledger = pd.read_csv(places.ledger_path(cfg), dtype={"commit": str})
    later = ledger[(ledger["split_seed"] == cfg.seed) & (ledger["added"] == "backfill")]
    # replays of the sealed commit included: they run its code; rows recorded after the fact and the exploratory
    # re-scorings of its predictions (allrep.record.robustness) are not the seal's
    rows = ledger[(ledger["split_seed"] == cfg.seed) & ~ledger["added"].isin(["backfill", "exploratory"])]
    expl = ledger[(ledger["split_seed"] == cfg.seed) & (ledger["added"] == "exploratory")]
    assert (expl["look"] == "exploratory").all() and expl["models"].str.startswith("exploratory: ").all()
    assert len(seal.ledger_rows(cfg)) == rec["ledger"]["rows"] == 200
    # recorded after the fact: the from-scratch file per recipe (2 recipes x 2 splits) and step 70's held-out files
    assert sorted(later["models"].str.replace("efficientnetb3 ", "")) == \
        ["final models, fused"] * 2 + ["from scratch (naive)"] * 2 + ["from scratch (ours)"] * 2
    assert {c.removesuffix("+dirty") for c in rows["commit"]} == {rec["commit"][:12]}
    assert (rows.loc[rows["look"] != "replay", "look"] == "new").all()


def test_the_runner_refuses_a_sealed_run_and_writes_nothing(cfg):
    watched = [places.output_dir(cfg), places.executed_dir(cfg)]
    before, ledger_before = _tree(*watched), places.ledger_path(cfg).read_bytes()
    for argv in (["run", "--profile", "confirmatory", "--force"], ["run", "--profile", "confirmatory", "--steps", "60"]):
        assert cli.main(argv) == 2
    with pytest.raises(AllrepError, match=r"sealed at \w{12} .*allrep replay confirmatory"):
        from allrep.runner.pipeline import run

        run("confirmatory", force=True)
    assert _tree(*watched) == before and places.ledger_path(cfg).read_bytes() == ledger_before


def test_a_hand_run_of_a_sealed_notebook_stops_at_its_set_up_cell():
    from allrep.notebook import setup

    with pytest.raises(AllrepError, match="allrep replay confirmatory") as err:
        setup("30_ensemble", "confirmatory", backbone="mobilenetv2", dataset="IDB2")
    assert err.value._render_traceback_() == [f"AllrepError: {err.value}"]  # one line in Jupyter, no traceback


def test_sealing_twice_is_an_error(cfg):
    with pytest.raises(AllrepError, match="sealed already.*never overwritten"):
        seal.seal(cfg)


def test_a_presentation_edit_passes_and_an_edited_output_fails(run_copy, cfg):
    assert seal.check(cfg) == []
    nb_path = places.executed_dir(cfg) / "30_ensemble__mobilenetv2_IDB2.ipynb"
    nb = json.loads(nb_path.read_text())
    title = next(c for c in nb["cells"] if c["cell_type"] == "markdown")
    title["source"] = "# Ensemble: a new title\n"
    params = next(c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", []))
    params["source"] = 'profile, backbone, dataset = "confirmatory", "mobilenetv2", "IDB2"'
    for c in nb["cells"]:
        c.pop("execution_count", None) if c["cell_type"] == "code" else None
    nb_path.write_text(json.dumps(nb, indent=2))
    assert seal.check(cfg) == []  # titles, parameters cells and formatting are presentation

    out = next(c for c in nb["cells"] if c["cell_type"] == "code" and c.get("outputs")
               and "injected-parameters" not in c["metadata"].get("tags", []))
    out["outputs"].append({"output_type": "stream", "name": "stdout", "text": ["492 of 520\n"]})
    nb_path.write_text(json.dumps(nb))
    claims = places.output_dir(cfg) / "claims.csv"
    claims.write_text(claims.read_text().replace("inconclusive", "reproduced", 1))
    bad = seal.check(cfg)
    assert bad == ["book/confirmatory/30_ensemble__mobilenetv2_IDB2.ipynb#outputs: changed (cell outputs)",
                   "results/confirmatory/claims.csv: changed"]
    assert str(seal.status(cfg)).startswith(f"sealed at {seal.record(cfg)['commit'][:12]} (2 mismatch(es): ")
    assert cli.main(["seal", "--check", "confirmatory"]) == 1


def test_an_edited_ledger_row_or_a_stray_file_fails_the_check(run_copy, cfg):
    path = places.ledger_path(cfg)
    ledger = pd.read_csv(path, dtype=str)
    row = ledger.index[ledger["split_seed"] == str(cfg.seed)][0]
    ledger.loc[row, "k"] = str(int(ledger.loc[row, "k"]) + 1)
    ledger.to_csv(path, index=False)
    (places.output_dir(cfg) / "extra.csv").write_text("x\n1\n")
    assert seal.check(cfg) == ["results/confirmatory/extra.csv: not in the record",
                               "ledger: the run's rows changed (200 rows, 200 sealed)"]


def test_a_code_edit_restamps_the_variants_but_the_seal_still_verifies(cfg, monkeypatch):
    from allrep.runner import registry, stamps
    from allrep.runner.execute import is_current

    step = registry.get_step("30")
    params = dict(backbone="mobilenetv2", dataset="IDB2")
    original = stamps._parsed

    def edited(path):  # as if a docstring of the member engine, in the variant's closure, were rewritten
        tree, dump = original(path)
        return (tree, dump + "edited") if path.name == "members.py" else (tree, dump)

    monkeypatch.setattr(stamps, "_parsed", edited)
    assert "allrep.train.members" in stamps.step_modules(step)
    assert not is_current(cfg, step, params)  # by its stamp the variant is stale...
    assert str(seal.status(cfg)).endswith("(verified)")  # ...and the record is still the record


def test_a_provenance_edit_fails_the_check(run_copy, cfg):
    """The commit an executed notebook names is evidence: pointing it at another commit is not presentation."""
    nb_path = places.executed_dir(cfg) / "60_results__all.ipynb"
    nb = json.loads(nb_path.read_text())
    nb["metadata"]["allrep"]["environment"]["commit"] = "1818a53"
    nb_path.write_text(json.dumps(nb))
    assert [b for b in seal.check(cfg) if b.startswith("commit:")]


def test_compare_sets_files_counts_and_verdicts_beside_the_record(cfg, tmp_path):
    from allrep.record import replay

    rel = "results/confirmatory/splits/IDB2_grouped.csv"
    (tmp_path / rel).parent.mkdir(parents=True)
    shutil.copy(ROOT / rel, tmp_path / rel)
    other = "results/confirmatory/splits/IDB1_grouped.csv"
    (tmp_path / other).write_text("changed\n")
    claims = pd.read_csv(ROOT / "results/confirmatory/claims.csv")
    claims.loc[0, "verdict"] = "inconclusive"
    claims.to_csv(tmp_path / "results/confirmatory/claims.csv", index=False)
    mine = seal.ledger_rows(cfg).iloc[:2].copy()
    mine.loc[mine.index[1], "k"] = int(mine["k"].iloc[1]) - 1
    t = replay.compare(cfg, tmp_path, mine.assign(look="replay"))
    files = t[t["what"] == "file"].set_index("item")["same"]
    assert files[rel] is True and files[other] is False and files.isna().sum() == len(files) - 3
    assert t[t["what"] == "k"]["same"].tolist() == [True, False]
    verdicts = t[t["what"] == "verdict"]
    assert len(verdicts) == len(claims) and verdicts["same"].tolist().count(False) == 1
    assert "k: 1 of 2 replayed match the record" in replay.summary(t)


def test_replay_needs_the_sealed_weights(cfg, monkeypatch):
    from allrep.record import replay

    with pytest.raises(AllrepError, match="allrep weights build DEST"):
        replay.check_weights(seal.record(cfg), None)


@pytest.mark.slow
def test_replay_runs_the_sealed_commit_into_scratch_and_matches_the_record(cfg, data_root, weights_dir, tmp_path,
                                                                           monkeypatch):
    """Replaying step 10 (splits, shortcut baselines, the rule's design) at the sealed commit, in a worktree, from
    an empty cache, writes the sealed files byte for byte; nothing of the project's record changes."""
    from allrep.record import replay

    monkeypatch.setenv("ALLREP_SCRATCH", str(tmp_path))
    before = _tree(places.output_dir(cfg), places.executed_dir(cfg))
    ledger_before = places.ledger_path(cfg).read_bytes()
    try:
        table = replay.replay("confirmatory", steps=["10"], say=lambda *_: None)
        done = table[table["same"].notna()]
        assert set(done["item"]) >= {"results/confirmatory/splits/IDB2_grouped.csv",
                                     "results/confirmatory/verdict/operating_characteristics.csv",
                                     "book/confirmatory/10_data_exploration__all.ipynb#outputs"}
        assert done["same"].astype(bool).all(), done[~done["same"].astype(bool)]
        assert "file: 10 of 10 replayed match the record" in replay.summary(table)
    finally:
        replay.remove(cfg)
    assert _tree(places.output_dir(cfg), places.executed_dir(cfg)) == before
    assert places.ledger_path(cfg).read_bytes() == ledger_before  # step 10 scores no test part: no ledger row
