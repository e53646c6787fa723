"""The notebook contract, the smoke pipeline (twice), nbval, the book build and a real browser."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import SMOKE_DIGESTS_REPORT, smoke_env

from allrep.book import pages as book
from allrep.profile import load_profile
from allrep.record import places
from allrep.runner.registry import STEP_NAMES, STEPS, executed_path

ROOT = Path(__file__).resolve().parent.parent
N_VARIANTS = sum(len(s.variants(load_profile("smoke"))) for s in STEPS)


# ----------------------------------------------------------------------------- contract (fast)
def test_notebook_contract():
    """One skeleton: title and purpose, tagged and commented parameters, the set-up call, steps, summary;
    no outputs in the source notebooks; each notebook calls its own step module."""
    sources = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert sources == sorted(STEP_NAMES), "notebooks/ and the registry differ"
    assert list(STEP_NAMES) == sorted(STEP_NAMES), "registry order is not the numbering"
    for step in STEPS:
        nb = nbformat.read(step.notebook, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), step.name
        assert "**Purpose.**" in nb.cells[0].source, f"{step.name}: no purpose"
        assert "parameters" in code[0].metadata.get("tags", []), f"{step.name}: first code cell is not parameters"
        names = [line.split(":")[0] for line in code[0].source.splitlines()]
        assert names == ["profile", *step.per], f"{step.name}: parameters {names}"
        assert 'profile: str = "smoke"' in code[0].source, f"{step.name}: parameters default is not smoke"
        assert all("#" in line for line in code[0].source.splitlines()), f"{step.name}: uncommented parameter"
        setup = code[1].source
        assert setup.startswith("import allrep.notebook\nctx = allrep.notebook.setup(" f'"{step.name}", profile'), step.name
        assert f"from allrep.steps import {step.module.rsplit('.', 1)[1]} as step" in setup, step.name
        for c in code:
            assert not c.get("outputs") and c.get("execution_count") is None, f"{step.name}: outputs in source"
            assert "results/" not in c.source and "output_dir" not in c.source, f"{step.name}: builds a path"
        assert nb.cells[-1].source.startswith("## Summary"), step.name


def test_committed_toc_matches_registry():
    cfg = load_profile("paper")
    assert (ROOT / "book" / "_toc.yml").read_text() == book.toc(cfg)


def test_smoke_writes_to_scratch_only(monkeypatch, tmp_path):
    monkeypatch.setenv("ALLREP_SCRATCH", str(tmp_path))
    smoke, paper = load_profile("smoke"), load_profile("paper")
    assert places.executed_dir(smoke) == tmp_path / "smoke" / "book" / "executed"
    assert places.executed_dir(paper) == ROOT / "book" / "executed"


def test_unknown_profile_and_step(capsys, monkeypatch):
    """Each refused before anything runs, with one line and exit status 2 (in-process: the CLI's own main, whose
    runner makes path settings absolute in the environment: restored afterwards)."""
    from allrep import cli

    for var in ("ALLREP_DATA", "ALLREP_WEIGHTS_DIR", "ALLREP_CACHE", "ALLREP_SCRATCH", "TF_CPP_MIN_LOG_LEVEL"):
        if var in os.environ:
            monkeypatch.setenv(var, os.environ[var])
        else:
            monkeypatch.delenv(var, raising=False)

    for argv, line in ((["run", "--profile", "nosuch"], "unknown profile 'nosuch'"),
                       (["run", "--steps", "99_magic"], "unknown step"),
                       (["run", "--backbones", "resnet50"], "unknown backbone 'resnet50'")):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert line in err and err.startswith("allrep: error: ") and "Traceback" not in err, argv


# ----------------------------------------------------------------------------- the smoke pipeline (slow)
# Fixture ``smoke`` (tests/conftest.py): the smoke run, started in the background as the session starts.
writes_into_smoke = pytest.mark.xdist_group("smoke-writes")  # tests that write into its folders: one at a time
@pytest.mark.slow
def test_smoke_pipeline_executes_every_variant_with_provenance(smoke):
    cfg = load_profile("smoke")
    expected = {executed_path(cfg, s, v).name for s in STEPS for v in s.variants(cfg)}
    got = {p.name for p in smoke["executed"].glob("*.ipynb")}
    assert expected == got
    assert len(expected) == 1 + 3 * 3 * 3 + 1 + 4 == N_VARIANTS  # 20, 30 and 32 per backbone and dataset
    nb = nbformat.read(smoke["executed"] / "30_ensemble__mobilenetv2_IDB2.ipynb", as_version=4)
    prov = nb.metadata["allrep"]
    assert prov["profile"] == "smoke" and prov["parameters"] == {"backbone": "mobilenetv2", "dataset": "IDB2"}
    assert prov["environment"]["keras"] and prov["seconds"] > 0 and prov["environment"]["accelerator"] == "none"
    assert nb.metadata["papermill"]["input_path"] == "notebooks/30_ensemble.ipynb"  # relative, never a machine path
    results = smoke["base"] / "scratch" / "smoke" / "results"
    import pandas as pd

    claims = pd.read_csv(results / "claims.csv")
    assert list(claims.columns[:8]) == ["dataset", "protocol", "models", "model_set", "score_model", "repeats", "n_test",
                                       "n_correct"]
    assert set(claims["models"]) == {"efficientnetb3 (random) + inceptionv3 + mobilenetv2", "inceptionv3 + mobilenetv2"}
    assert (claims["bound_low"] <= claims["accuracy"]).all() and (claims["accuracy"] <= claims["bound_high"]).all()
    assert (claims["effective_n"] <= claims["n_test"] + 1e-9).all()  # photograph groups never add information
    assert set(claims["dataset"]) == {"IDB1", "IDB2", "combined"} and set(claims["protocol"]) == {"paper", "grouped"}
    paper = claims[claims["protocol"] == "paper"].groupby("dataset")["n_test"].agg(set).to_dict()
    assert paper == {"IDB1": {22}, "IDB2": {52}, "combined": {74}}  # every fused model's row: the same test part
    assert set(claims["verdict"]) <= {"reproduced", "not reproduced", "inconclusive"}
    random = claims["models"].str.contains("(random)", regex=False)  # smoke: no offline EfficientNetB3 file
    assert (claims.loc[random, "random_init_backbones"] == "efficientnetb3").all()
    assert (claims.loc[~random, "random_init_backbones"] == "none").all() and (~random).sum() == random.sum()
    # the plain heads' sum rule beside ours, on the three-backbone rows (no plain pretrained-only fusion)
    assert claims.loc[random, "plain_n_correct"].between(0, claims.loc[random, "n_test"]).all()
    assert claims.loc[~random, "plain_n_correct"].isna().all()
    summary = pd.read_csv(results / "fusion" / "summary.csv")
    assert {"sum fusion, plain heads", "mobilenetv2 plain head"} <= set(summary["model"])
    probs = pd.read_csv(results / "probabilities" / "IDB2_mobilenetv2.csv")
    assert list(probs.columns) == ["protocol", "repeat", "dataset", "backbone", "member", "id", "label", "p_all"]
    assert sorted(probs["member"].unique()) == [0, 1]
    best = sorted((results / "tuning").glob("best_*.csv"))
    assert len(best) == 9 and len(pd.read_csv(best[0])) == 1 + cfg.splits.repeats  # one search per split
    trials = pd.read_csv(results / "tuning" / "trials_mobilenetv2_IDB2.csv")
    assert len(trials) == cfg.tuning.trials * (1 + cfg.splits.repeats) and trials["val_loss"].notna().all()
    scratch = pd.read_csv(results / "scratch" / f"IDB2_{cfg.scratch.backbone}.csv")  # both recipes, 2 splits
    assert sorted(set(zip(scratch["recipe"], scratch["protocol"]))) == [
        ("naive", "grouped"), ("naive", "paper"), ("ours", "grouped"), ("ours", "paper")]
    assert len(scratch[scratch["protocol"] == "paper"]) == 2 * 52
    comparison = pd.read_csv(results / "fusion" / "scratch_summary.csv")
    assert {"sum fusion, + from scratch (ours)", "from scratch (naive) alone"} <= set(comparison["model"])
    assert comparison.groupby("protocol")["n"].nunique().eq(1).all()  # paired: the same images in every row
    assert (comparison.loc[comparison["protocol"] == "paper", "n"] == 52).all()


@pytest.mark.slow
@writes_into_smoke
def test_second_run_executes_nothing(smoke):
    again = subprocess.run([sys.executable, "-m", "allrep.cli", "run", "--profile", "smoke"], env=smoke["env"],
                           cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"0 executed, {N_VARIANTS} skipped" in again.stdout
    # a forced re-execution writes byte-identical outputs, so nothing downstream re-executes
    forced = subprocess.run([sys.executable, "-m", "allrep.cli", "run", "--profile", "smoke", "--steps", "30",
                             "--datasets", "IDB1", "--backbones", "mobilenetv2", "--force"], env=smoke["env"], cwd=ROOT,
                            capture_output=True, text=True)
    assert forced.returncode == 0 and "1 executed, 0 skipped" in forced.stdout, forced.stderr[-2000:]
    import pandas as pd

    # the ledger: every split of every test-prediction file scored once by the first run, and the forced
    # re-execution's byte-identical predictions are repeats, not new looks
    lg = pd.read_csv(smoke["base"] / "scratch" / "smoke" / "results" / "ledger.csv")
    mine = lg[lg["models"] == "mobilenetv2 ensemble"]
    assert (mine.groupby(["dataset", "split_set", "repeat"])["look"].apply(list).map(lambda v: v[0]) == "new").all()
    splits = 1 + load_profile("smoke").splits.repeats  # the paper split and the grouped repeats
    assert mine[mine["dataset"] == "IDB1"]["look"].tolist() == ["new"] * splits + ["repeat"] * splits
    assert (lg[lg["dataset"] != "IDB1"]["look"] == "new").all()
    after = subprocess.run([sys.executable, "-m", "allrep.cli", "run", "--profile", "smoke"], env=smoke["env"],
                           cwd=ROOT, capture_output=True, text=True)
    assert f"0 executed, {N_VARIANTS} skipped" in after.stdout, after.stdout[-2000:]


@pytest.mark.slow
def test_smoke_stage_digests_equal_the_committed_record_of_this_cpu(smoke, monkeypatch):
    """The smoke run's per-stage digests (allrep.record.digests) equal the committed record of a CPU of the same
    model and instruction set made with the same arithmetic, stage by stage; on a CPU without one the comparison with every record is
    reported as a warning (what CI machines of other CPUs show), and `allrep digests --record` adds one."""
    import warnings

    from allrep.record import digests

    monkeypatch.setenv("ALLREP_SCRATCH", smoke["env"]["ALLREP_SCRATCH"])
    cfg = load_profile("smoke")
    mine = digests.stage_digests(cfg, smoke["base"] / "cache")
    assert all(mine["stages"][s] for s in digests.STAGES), mine  # every stage found something to digest
    recorded = digests.records(cfg)
    same = [r for r in recorded if digests.comparable(r, mine)]
    lines = [f"this run: {mine['cpu'].get('model')} ({len(mine['cpu'].get('flags', []))} ISA flags)",
             *digests.report(mine, recorded)]
    (smoke["base"] / SMOKE_DIGESTS_REPORT).write_text("\n".join(lines) + "\n")  # conftest prints it at the end
    if same:
        assert digests.compare(mine, same[0]) == []
    else:
        warnings.warn("smoke digests on a CPU without a record: " + "; ".join(digests.report(mine, recorded)))


@pytest.mark.slow
def test_nbval_on_executed_notebooks(smoke, tmp_path):
    ex = smoke["executed"]
    chosen = [ex / n for n in ("10_data_exploration__all.ipynb", "20_tuning__mobilenetv2_IDB2.ipynb",
                               "30_ensemble__mobilenetv2_IDB2.ipynb", "35_scratch__all.ipynb", "40_uncertainty__all.ipynb",
                               "50_fusion__all.ipynb", "60_results__all.ipynb")]
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                          "--nbval-current-env", *map(str, chosen)], env=smoke["env"], cwd=ex, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout[-4000:]
    assert " passed" in out.stdout
    # nbval can fail: a glued number that differs from a fresh execution is caught
    tampered = tmp_path / "tampered_60.ipynb"  # outside the run's folder, which other tests read meanwhile
    nb = nbformat.read(ex / "60_results__all.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "glue_values" in c.source)
    for o in cell.outputs:
        if "text/plain" in o.get("data", {}):
            o["data"]["text/plain"] = o["data"]["text/plain"].replace("22", "21")
    nbformat.write(nb, tampered)
    try:
        bad = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                              "--nbval-current-env", str(tampered)], env=smoke["env"], cwd=tmp_path, capture_output=True,
                             text=True)
    finally:
        tampered.unlink()
    assert bad.returncode != 0 and "failed" in bad.stdout


def test_every_number_the_book_quotes_is_compared_by_nbval():
    """Each {glue} key a book page quotes comes from a cell nbval compares (its marker: the comment as the cell's
    first line in a source notebook, the cell tag on a presented page), and its table is off the page."""
    import re

    quoted = set()
    for page in (ROOT / "book").glob("*.md"):
        quoted |= set(re.findall(r"`((?:executed|confirmatory)/[\w.]+\.ipynb)::(\w+)", page.read_text()))
    assert quoted
    for nb_name, key in quoted:
        nb = nbformat.read(ROOT / "book" / nb_name, as_version=4)
        cells = [c for c in nb.cells if c.cell_type == "code" and any(
            "application/papermill.record/text/plain" in o.get("data", {}) and o.get("metadata", {}).get("scrapbook", {}).get(
                "name") == key for o in c.get("outputs", []))]
        assert len(cells) == 1, f"{nb_name}::{key} is glued by {len(cells)} cells"
        tags = cells[0].metadata.get("tags", [])
        marked = "nbval-check-output" in tags or cells[0].source.splitlines()[0] == "# NBVAL_CHECK_OUTPUT"
        assert marked, f"{nb_name}::{key}: not compared by nbval"
        assert "remove-output" in tags, f"{nb_name}::{key}: the glued values' table is on the page"


@pytest.fixture(scope="module")
def smoke_book(smoke):
    out = subprocess.run([sys.executable, "-m", "allrep.cli", "book", "--profile", "smoke"], env=smoke["env"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    html = smoke["base"] / "scratch" / "smoke" / "book" / "_build" / "html"
    assert (html / "intro.html").is_file()
    return html


@pytest.mark.slow
@writes_into_smoke
def test_book_builds_with_warnings_as_errors(smoke_book):
    pages = {p.name for p in smoke_book.glob("*.html")}
    assert {"intro.html", "data.html", "methods.html", "recipe.html", "deviations.html", "reproduce.html"} <= pages
    assert (smoke_book / "executed" / "60_results__all.html").is_file()
    intro = (smoke_book / "intro.html").read_text()
    assert "no results yet" not in intro and "grouped" in intro
    assert "<img" in intro  # the claims figure, glued from the results notebook
    import re

    for page in smoke_book.glob("*.html"):  # the book's own pages and generated tables: no nan anywhere
        text = re.sub(r"<[^>]+>", " ", page.read_text())
        assert not re.search(r"\bnan\b", text, re.I), f"nan in {page.name}"


@pytest.mark.slow
@writes_into_smoke
def test_book_in_a_real_browser(smoke_book, tmp_path):
    """Chromium at 1280 px, every built page (dropdowns open): no table is wider than its column, so nothing
    scrolls sideways; the intro's claims figure loads; every executed and overview page has its own title. A
    control page with a table too wide, and one with a frame the book's script must squeeze, are measured
    too, so the check can fail and the squeeze is seen to work."""
    import browser

    exe = browser.chromium()
    if exe is None:
        pytest.skip("no chromium: `make test` installs Debian's chromium package")
    flags = [*browser.FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    url = (smoke_book / "intro.html").as_uri()
    dom = subprocess.run([exe, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert "What we find" in dom and "The verdict rule" in dom
    assert "<table" in dom and any(v in dom for v in ("not reproduced", "reproduced", "inconclusive"))
    wide_frame = "".join(f"<th>column_number_{i}_of_a_wide_frame</th>" for i in range(30))
    controls = {"_control_wide.html": '<html><body><article style="width:600px"><table style="width:2000px">'
                                      "<tr><td>x</td></tr></table></article></body></html>",
                "_control_frame.html": (smoke_book / "intro.html").read_text().replace(
                    "<article", f'<article><div class="cell_output"><table class="dataframe"><tr>{wide_frame}</tr>'
                    f'<tr>{"<td>0.123</td>" * 30}</tr></table></div></article><article style="display:none"', 1)}
    for name, text in controls.items():
        (smoke_book / name).write_text(text)
    try:
        pages = browser.pages_of(smoke_book)
        res = {r["page"]: r for r in browser.measure(smoke_book, [*controls, *pages], exe, tmp_path / "profile")}
    finally:
        for name in controls:
            (smoke_book / name).unlink()
    assert res["_control_wide.html"]["wide"] and res["_control_wide.html"]["wide"][0]["over"] > 1000
    assert res["_control_frame.html"]["tables"] >= 1 and not res["_control_frame.html"]["wide"], \
        res["_control_frame.html"]
    assert set(res) == {*controls, *pages} and len(pages) >= N_VARIANTS + 6
    wide = {p: r["wide"] for p, r in res.items() if p in pages and r["wide"]}
    assert not wide, wide
    assert sum(r["tables"] for p, r in res.items() if p in pages) > 50  # the check saw the tables
    assert max(res["intro.html"]["images"]) > 300, res["intro.html"]  # the claims figure at its natural size
    titles = {}
    for p in pages:
        if p.startswith(("executed/", "overview/")):
            titles.setdefault(res[p]["title"], []).append(p)
    assert len(titles) >= N_VARIANTS and all(len(v) == 1 for v in titles.values()), \
        {t: v for t, v in titles.items() if len(v) > 1}
    shot = tmp_path / "intro.png"
    subprocess.run([exe, *flags, f"--screenshot={shot}", "--window-size=1280,1400", url], capture_output=True,
                   timeout=120)
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert a.shape == (1400, 1280) and a.std() > 10 and (a < 128).mean() > 0.005, "blank screenshot"
    keep = os.environ.get("ALLREP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


# ----------------------------------------------------------------------------- Dask (slow)
DASK_RUN = ["--steps", "10", "20", "30", "32", "--backbones", "mobilenetv2", "--datasets", "IDB2"]


@pytest.mark.slow
def test_two_dask_workers_one_killed_write_what_the_serial_run_wrote(smoke, data_root, weights_dir, tmp_path,
                                                                     monkeypatch):
    """The steps that train (tuning, ensembles, plain heads) of one backbone and dataset on a 2-worker
    LocalCluster, one worker killed while units run, after the serial smoke run: the run completes (Dask
    re-runs the dead worker's unit, which finds what was cached) and writes the serial run's results files
    byte for byte. It starts from the serial run's features with a quarter of its images' files removed, so
    the workers also compute features, and those equal the serial run's array for array."""
    import shutil
    import signal
    import time

    import numpy as np
    from dask.distributed import Client

    from allrep.runner.dispatch import local_cluster

    env = smoke_env(tmp_path, data_root, weights_dir)
    serial_features = smoke["base"] / "cache" / "features"
    (mine_features,) = [tmp_path / "cache" / "features" / d.name for d in serial_features.iterdir()
                        if d.name.startswith("mobilenetv2")]
    shutil.copytree(serial_features / mine_features.name, mine_features)
    removed = sorted(mine_features.glob("IDB2_*.npz"))[::4]
    for f in removed:
        f.unlink()
    for k in ("ALLREP_SCRATCH", "ALLREP_CACHE", "ALLREP_DATA", "ALLREP_WEIGHTS_DIR"):
        monkeypatch.setenv(k, env[k])  # the workers inherit them
    with local_cluster(2) as cluster, Client(cluster) as client:  # the cluster `--workers 2` starts
        run = subprocess.Popen([sys.executable, "-m", "allrep.cli", "run", "--profile", "smoke", *DASK_RUN,
                                "--scheduler", cluster.scheduler_address], env=env, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        heads = tmp_path / "cache" / "members" / "mobilenetv2"
        deadline = time.time() + 600
        while not any(heads.glob("*.json")) and run.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert run.poll() is None, "the run ended before a worker could be killed"
        victim = sorted(client.run(os.getpid).values())[0]
        os.kill(victim, signal.SIGKILL)  # mid-unit: the first heads are cached, most are not
        out, err = run.communicate(timeout=900)
        assert run.returncode == 0, out[-2000:] + err[-3000:]
        assert victim not in client.run(os.getpid).values()  # the nanny started a new worker
    assert "Traceback" not in err and "oneDNN" not in err  # one progress bar, no kernel or TensorFlow chatter
    for f in removed:  # computed again on a worker
        with np.load(f) as a, np.load(serial_features / mine_features.name / f.name) as b:
            assert np.array_equal(a["features"], b["features"]), f.name
    mine = tmp_path / "scratch" / "smoke" / "results"
    serial = smoke["base"] / "scratch" / "smoke" / "results"
    files = sorted(p.relative_to(mine) for p in mine.rglob("*")
                   if p.is_file() and p.parent.name != "timings" and p.name != "ledger.csv")  # dates differ
    # step 10: 6 split files, the shortcut baselines and the verdict design (2); IDB2: tuning 2, ensemble 4,
    # plain heads 2
    assert len(files) == 9 + 2 + 4 + 2, files
    differ = [str(f) for f in files if (mine / f).read_bytes() != (serial / f).read_bytes()]
    assert differ == []  # a head's arithmetic does not depend on the heads that share its pool


@pytest.mark.slow
def test_one_outer_splits_whole_procedure_reads_no_image_of_its_test_part(smoke, tmp_path, monkeypatch):
    """The recipe choice, the Bayesian search, the members' early stopping, the calibration map and the
    referral threshold of one outer split (smoke, IDB2 grouped repeat 0), computed afresh (empty head caches,
    the smoke run's features), with every feature read recorded: no test image of that split is read before
    the decisions are made, and the members' validation predictions (what every later decision reads) do
    not change when the split's test part is predicted too."""
    import numpy as np
    import pandas as pd

    from allrep.evaluate import calibration
    from allrep.profile import load_profile
    from allrep.repro import seed_for
    from allrep.steps import step20_tuning
    from allrep.train import members
    from allrep.train.features import FeatureCache

    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "features").symlink_to(smoke["base"] / "cache" / "features")
    monkeypatch.setenv("ALLREP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ALLREP_DATA", smoke["env"]["ALLREP_DATA"])
    monkeypatch.setenv("ALLREP_WEIGHTS_DIR", smoke["env"]["ALLREP_WEIGHTS_DIR"])
    cfg = load_profile("smoke")
    assert cfg.recipe_choice.enabled and len(cfg.recipe_choice.candidates) == 2
    sp = pd.read_csv(smoke["base"] / "scratch" / "smoke" / "results" / "splits" / "IDB2_grouped.csv")
    split = sp[sp["repeat"] == 0]
    test_ids = set(split.loc[split["role"] == "test", "id"])
    read: list[str] = []
    real_load = FeatureCache.load

    def recording_load(self, items, views):
        read.extend(it.id for it in items)
        return real_load(self, items, views)

    monkeypatch.setattr(FeatureCache, "load", recording_load)
    found = {"probe": ("mobilenetv2", split, 7)}
    res = step20_tuning.tune(cfg, found)["probe"]  # the recipe choice, then the search
    choice, hp = res["choice"], res["best"]
    assert choice["recipe"] in cfg.recipe_choice.candidates
    seeds = [seed_for(cfg.seed, "probe", m) for m in range(cfg.ensemble.members)]
    blind = members.fetch(cfg, [members.plan("mobilenetv2", split, hp, choice["training"], s, test=False) for s in seeds])
    val = split[split["role"] == "val"]
    p_val = np.mean([r["p_val"] for r in blind], axis=0)
    m = calibration.choose_map(val["label"], p_val, list(val["group"]), cfg.uncertainty.calibration_folds, cfg.seed,
                               cfg.uncertainty.temperature_prior_sd)
    threshold = calibration.referral_threshold(p_val, m["T"], cfg.uncertainty.referral_coverage)
    assert read and not set(read) & test_ids, "a decision read a test image"
    assert set(read) <= set(split.loc[split["role"] != "test", "id"])
    # now score: the same members predicting the test part train exactly as they did without it
    scored = members.fetch(cfg, [members.plan("mobilenetv2", split, hp, choice["training"], s) for s in seeds])
    for a, b in zip(blind, scored):
        assert a["best_epoch"] == b["best_epoch"] and np.array_equal(a["p_val"], b["p_val"])
    assert set(read) & test_ids  # only now are the test images read
    assert np.isfinite(threshold) and m["map"] in calibration.MAPS


# ----------------------------------------------------------------------------- interactive (slow)
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_cells(ws_url: str, sources: list[str]) -> list[list[dict]]:
    """Execute each source on a kernel over its websocket (Jupyter's JSON message protocol); the outputs of each."""
    import json
    import uuid

    import websocket

    ws = websocket.create_connection(ws_url, timeout=600)
    session, outputs = uuid.uuid4().hex, []
    try:
        for src in sources:
            mid = uuid.uuid4().hex
            ws.send(json.dumps({"header": {"msg_id": mid, "username": "test", "session": session, "date": "",
                                           "msg_type": "execute_request", "version": "5.3"},
                                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                                "content": {"code": src, "silent": False, "store_history": True,
                                            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
            got = []
            while True:
                msg = json.loads(ws.recv())
                if msg.get("parent_header", {}).get("msg_id") != mid:
                    continue
                kind = msg["header"]["msg_type"]
                if kind == "error":
                    raise AssertionError(f"cell failed: {msg['content']['ename']}: {msg['content']['evalue']}\n{src}")
                if kind in ("execute_result", "display_data", "stream"):
                    got.append(msg["content"])
                if kind == "status" and msg["content"]["execution_state"] == "idle":
                    break
            outputs.append(got)
    finally:
        ws.close()
    return outputs


@pytest.mark.slow
def test_a_notebook_run_through_a_real_jupyter_server_glues_what_papermill_glued(smoke, tmp_path):
    """A real Jupyter server, headless: the project's kernel ("allrep", as `make lab` registers it) started
    through its REST API runs the source notebook 60_results on the smoke profile cell by cell, as a person
    would; its glued values equal the papermill run's, and its claims file (written to the hand-run folder,
    never the runner's) is byte-identical to the run's."""
    import json
    import time
    import urllib.request

    jdata = tmp_path / "jupyter"
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(jdata), "--name", "allrep",
                    "--display-name", "allrep (test)"], check=True, capture_output=True)
    env = dict(smoke["env"], JUPYTER_PATH=str(jdata / "share" / "jupyter"), JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    env.pop("ALLREP_RUNNER", None)
    port, token = _free_port(), "allrep-test-token"
    server = subprocess.Popen([sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
                               f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
                               f"--ServerApp.root_dir={ROOT / 'notebooks'}"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"token {token}"}
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(urllib.request.Request(f"{base}/api/status", headers=auth), timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        req = urllib.request.Request(f"{base}/api/kernels", data=json.dumps({"name": "allrep"}).encode(),
                                     headers={**auth, "Content-Type": "application/json"}, method="POST")
        kernel = json.load(urllib.request.urlopen(req, timeout=60))
        assert kernel["name"] == "allrep"
        nb = nbformat.read(ROOT / "notebooks" / "60_results.ipynb", as_version=4)
        sources = [c.source for c in nb.cells if c.cell_type == "code"]
        outs = _run_cells(f"ws://127.0.0.1:{port}/api/kernels/{kernel['id']}/channels?token={token}", sources)
    finally:
        server.terminate()
        server.wait(timeout=30)
    glue_at = next(i for i, s in enumerate(sources) if "glue_values" in s)
    mine = next(o["data"]["text/plain"] for o in outs[glue_at] if "data" in o and "text/plain" in o["data"])
    ran = nbformat.read(smoke["executed"] / "60_results__all.ipynb", as_version=4)
    cell = next(c for c in ran.cells if c.cell_type == "code" and "glue_values" in c.source)
    theirs = next(o["data"]["text/plain"] for o in cell.outputs if "text/plain" in o.get("data", {}))
    assert mine == theirs and mine.count("\n") > 50
    setup_text = "".join(o.get("text", "") for o in outs[1])
    assert "hand run: outputs go to" in setup_text
    hand = smoke["base"] / "scratch" / "interactive" / "smoke" / "results" / "claims.csv"
    assert hand.read_bytes() == (smoke["base"] / "scratch" / "smoke" / "results" / "claims.csv").read_bytes()
