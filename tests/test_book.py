"""The book a reader meets (allrep.book.pages): page titles, executed pages shaped for reading, the scratch book's
pages, the compact claims table, the overview tables and sentences, computed from small frames."""
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from allrep.book import pages as book
from allrep.profile import load_profile
from allrep.runner.registry import STEPS, executed_path, get_step

ROOT = Path(__file__).resolve().parent.parent


def test_page_titles_name_the_variant_and_the_run():
    assert book.page_title(get_step("30"), {"backbone": "mobilenetv2", "dataset": "IDB2"}) == \
        "Ensemble: MobileNetV2 on ALL-IDB2"
    assert book.page_title(get_step("20"), {"backbone": "inceptionv3", "dataset": "combined"}, development=True) == \
        "Tuning: InceptionV3 on ALL-IDB1 + ALL-IDB2 (development)"
    assert book.page_title(get_step("60"), {}) == "Results"


def test_every_committed_executed_page_has_a_distinct_title_matching_its_variant():
    """The sidebar and Previous / Next show each page's first heading: all of them differ, and each is the
    title its variant gets (so the committed notebooks are presented)."""
    titles = []
    for run in book.runs(load_profile("paper")):
        for step in STEPS:
            for v in step.variants(run.cfg):
                nb = nbformat.read(executed_path(run.cfg, step, v), as_version=4)
                title = nb.cells[0].source.splitlines()[0]
                assert title == "# " + book.page_title(step, v, run.development)
                titles.append(title)
    assert len(titles) == 66 and len(set(titles)) == len(titles)


def test_present_is_idempotent_hides_the_default_cell_and_injects_one_binding_line(tmp_path):
    src = get_step("30").notebook
    nb = nbformat.read(src, as_version=4)
    injected = nbformat.v4.new_code_cell('# Parameters\nprofile = "confirmatory"\nbackbone = "mobilenetv2"\n'
                                         'dataset = "IDB2"\n', metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(2, injected)
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    params = {"backbone": "mobilenetv2", "dataset": "IDB2"}
    assert book.present(path, get_step("30"), params, "confirmatory") is True
    text = path.read_text()
    assert book.present(path, get_step("30"), params, "confirmatory") is False  # idempotent
    assert path.read_text() == text
    out = nbformat.read(path, as_version=4)
    assert out.cells[0].source.startswith("# Ensemble: MobileNetV2 on ALL-IDB2\n")
    default = next(c for c in out.cells if "parameters" in c.metadata.get("tags", []))
    assert "remove-cell" in default.metadata["tags"]
    line = next(c for c in out.cells if "injected-parameters" in c.metadata.get("tags", [])).source
    assert line.count("\n") == 1
    bound = {}
    exec(line, {}, bound)  # the one line binds the same names to the same values
    assert bound == {"profile": "confirmatory", **params}


def test_present_turns_nbval_comments_into_tags_and_takes_glued_tables_off_the_page(tmp_path):
    src = get_step("60").notebook
    nb = nbformat.read(src, as_version=4)
    marked = [i for i, c in enumerate(nb.cells) if c.source.startswith("# NBVAL_CHECK_OUTPUT")]
    assert marked
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert book.present(path, get_step("60"), {}, "smoke") is True
    assert book.present(path, get_step("60"), {}, "smoke") is False  # idempotent
    out = nbformat.read(path, as_version=4)
    for i in marked:
        c = out.cells[i]
        assert "NBVAL" not in c.source and c.source == nb.cells[i].source.split("\n", 1)[1]
        assert c.metadata["tags"].count("nbval-check-output") == 1
        assert ("remove-output" in c.metadata["tags"]) == ("glue_values(" in c.source)


def test_a_scratch_book_points_the_headline_paths_at_its_one_run():
    page = ("{glue:text}`confirmatory/60_results__all.ipynb::claim_k_IDB2_grouped:s` and "
            "```{include} _generated/confirmatory/claims_compact.md\n```\n:doc: confirmatory/60_results__all.ipynb\n"
            "the confirmatory run ({doc}`preregistration`), results/confirmatory/ stays")
    out = book.scratch_page(page)
    assert "executed/60_results__all.ipynb::claim_k_IDB2_grouped" in out
    assert "_generated/claims_compact.md" in out and ":doc: executed/60_results__all.ipynb" in out
    assert "the confirmatory run" in out and "results/confirmatory/" in out  # prose and other paths untouched
    assert "confirmatory/60" not in out


def _claims_row(**kw):
    row = dict(dataset="IDB2", protocol="grouped", model_set="all backbones", random_init_backbones="efficientnetb3",
               paper_accuracy=98.07, n_correct=503, n_test=520, accuracy=503 / 520, bound_low=0.9371,
               bound_high=0.9849, verdict="inconclusive", margin=2.0, plain_n_correct=504.0)
    return {**row, **kw}


def test_compact_claims_table_has_seven_short_columns_and_exact_counts():
    cl = pd.DataFrame([_claims_row(), _claims_row(model_set="pretrained only", random_init_backbones=float("nan"),
                                                  n_correct=502, accuracy=502 / 520, margin=float("nan"))])
    t = book.compact_claims(cl)
    assert list(t.columns) == ["claim", "protocol", "fused", "ours", "bounds %", "verdict", "margin (images)"]
    assert t.loc[0].to_dict() == {"claim": "ALL-IDB2 (98.07%)", "protocol": "grouped",
                                  "fused": "all three (EfficientNetB3 random)", "ours": "503/520 (96.73%)",
                                  "bounds %": "93.71 to 98.49", "verdict": "inconclusive", "margin (images)": "2"}
    assert t.loc[1, "fused"] == "pretrained only" and t.loc[1, "margin (images)"] == ""


@pytest.fixture
def two_split_run(tmp_path, monkeypatch):
    """A results folder with scores and claims for one dataset, two grouped splits and the paper split."""
    from allrep.record import places

    rows = []
    # split 0: ensemble 9/10, plain 10/10; split 1: ensemble 10/10, plain 8/10; paper: 5/5 and 4/5
    for protocol, rep, ens, pl, n in (("grouped", 0, 9, 10, 10), ("grouped", 1, 10, 8, 10), ("paper", 0, 5, 4, 5)):
        rows += [dict(protocol=protocol, repeat=rep, dataset="IDB2", model="mobilenetv2 ensemble", n=n, n_correct=ens),
                 dict(protocol=protocol, repeat=rep, dataset="IDB2", model="mobilenetv2 plain head", n=n, n_correct=pl),
                 dict(protocol=protocol, repeat=rep, dataset="IDB2", model="sum fusion, all backbones", n=n,
                      n_correct=ens)]
    (tmp_path / "fusion").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "fusion" / "scores.csv", index=False)
    pd.DataFrame([_claims_row(n_correct=19, n_test=20, plain_n_correct=18.0)]).to_csv(tmp_path / "claims.csv",
                                                                                       index=False)
    monkeypatch.setattr(places, "output_dir", lambda cfg: tmp_path)
    import dataclasses

    return dataclasses.replace(load_profile("smoke"), datasets=("IDB2",), use_backbones=("mobilenetv2",))


def test_overview_tables_pool_and_compare_split_by_split(two_split_run):
    cfg = two_split_run
    mo = book.members_overview(cfg)
    assert mo.loc[0].to_dict() == {"dataset": "ALL-IDB2", "backbone": "MobileNetV2", "ensemble, grouped": "19/20",
                                   "plain, grouped": "18/20", "splits ensemble >= plain": "1 of 2",
                                   "ensemble, paper split": "5/5", "plain, paper split": "4/5"}
    ps = book.per_split(cfg, "IDB2", "ensemble")
    assert ps.to_dict("records") == [{"split": 0, "MobileNetV2": "9/10", "sum rule": "9/10"},
                                     {"split": 1, "MobileNetV2": "10/10", "sum rule": "10/10"}]
    sentence = book.tuning_sentence(cfg)
    assert sentence == ("- ALL-IDB2, grouped, tuned vs plain: sum rule 19 tuned vs 18 plain of 20; MobileNetV2 19 vs 18 "
                        "of 20 (tuned at least as good on 1 of 2 splits).\n")


def test_ledger_sentence_counts_the_runs_looks(tmp_path, monkeypatch):
    from allrep.runner import registry

    lg = pd.DataFrame([dict(dataset="IDB2", protocol="grouped", split_seed=7, repeat=r, models="m", look=look,
                            commit="abc", digest=str(r)) for r, look in ((0, "new"), (1, "new"), (0, "repeat"))] +
                      [dict(dataset="IDB2", protocol="grouped", split_seed=1, repeat=0, models="m", look="new",
                            commit="x", digest="y")] * 3)
    path = tmp_path / "ledger.csv"
    lg.to_csv(path, index=False)
    monkeypatch.setattr(registry, "other_output", lambda name, cfg: path)

    class Cfg:
        seed = 7

    text = book.ledger_sentence(Cfg())
    assert "3 rows for this run's split seed (7): 2 new looks and 1 byte-identical" in text
    assert "over 2 test parts" in text and "scored once per model" in text


def test_committed_book_toc_lists_both_runs_development_labelled():
    toc = (ROOT / "book" / "_toc.yml").read_text()
    assert toc.index("caption: Confirmatory run") < toc.index("caption: Development run")
    dev = toc[toc.index("caption: Development run"):]
    assert "file: development" in dev and "executed/30_ensemble__mobilenetv2_IDB2" in dev
    assert "overview/confirmatory_30_ensemble" in toc and "overview/executed_20_tuning" in toc
    for name in ("confirmatory_20_tuning", "confirmatory_30_ensemble", "executed_32_plain"):
        text = (ROOT / "book" / "overview" / f"{name}.md").read_text()
        assert text == book.overview_page(*_run_and_step(name)), f"book/overview/{name}.md is stale: run `allrep book`"


def _run_and_step(name):
    folder, step = name.split("_", 1)
    run = next(r for r in book.runs(load_profile("paper")) if r.folder == folder)
    return run, get_step(step)


def test_intro_quotes_the_confirmatory_run_and_development_page_the_development_run():
    intro = (ROOT / "book" / "intro.md").read_text()
    dev = (ROOT / "book" / "development.md").read_text()
    head = intro[: intro.index("## The verdict rule")]
    assert "`confirmatory/60_results__all.ipynb::claim_k_IDB2_grouped" in head and "executed/" not in head
    assert "`executed/60_results__all.ipynb::claim_k_IDB2_grouped" in dev and "confirmatory/" not in dev.replace(
        "confirmatory verdicts", "").replace("the confirmatory seed", "")
    assert head.count("{glue:text}`confirmatory/60_results__all.ipynb::claim_") >= 30


def test_timings_table_has_one_row_per_run_and_one_short_column_per_step(tmp_path):
    """However many runs are recorded, the per-step table grows downwards (one row per run), so it fits the page;
    the per-notebook table gives each notebook's latest, median and largest seconds over the runs that ran it."""
    import json

    from allrep.book.tables import timings_markdown

    def run(started, commit, variants):
        return dict(started=started, commit=commit, machine="2 CPUs", total_seconds=sum(variants.values()) + 1,
                    variants=variants, cache_at_start={"features": 0})

    runs = [run("2026-01-01 10:00", "aaaaaaaaaaaa", {"10_data__all": 10.0, "20_tuning__m_IDB1": 100.0}),
            run("2026-01-02 10:00", "bbbbbbbbbbbb", {"20_tuning__m_IDB1": 40.0}),
            run("2026-01-03 10:00", "cccccccccccc", {"20_tuning__m_IDB1": 70.0, "20_tuning__m_IDB2": 5.0})]
    path = tmp_path / "runs.json"
    path.write_text(json.dumps(runs))
    text = timings_markdown(path)
    steps = text.split("Seconds per step")[1].split("Seconds per executed notebook")[0]
    header = [c.strip() for c in steps.splitlines()[2].strip("|").split("|")]
    assert header == ["run", "started", "commit", "10", "20", "total"]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in steps.splitlines()[4:7]]
    assert rows[0][2:] == ["aaaaaaa", "10", "100", "111"] and rows[1][3:] == ["", "40", "41"] and rows[2][4] == "75"
    per = {line.split("|")[1].strip(): [c.strip() for c in line.strip().strip("|").split("|")[1:]]
           for line in text.split("Seconds per executed notebook")[1].splitlines() if line.startswith("| 20_")}
    assert per["20_tuning__m_IDB1"] == ["3", "70", "70", "100"]  # runs, latest, median, largest
    assert per["20_tuning__m_IDB2"] == ["1", "5", "5", "5"]


def test_errata_are_applied_to_the_sealed_pages_and_name_prose_the_notebooks_still_have():
    """Each erratum's wrong sentence is in the source notebook as executed (so it is not stale), and the committed
    sealed page shows the corrected one instead."""
    for (profile, step_name), fixes in book.ERRATA.items():
        step = get_step(step_name)
        run = next(r for r in book.runs(load_profile("paper")) if r.cfg.name == profile)
        page = "".join(c.source for c in nbformat.read(executed_path(run.cfg, step, {}), as_version=4).cells
                       if c.cell_type == "markdown")
        source = "".join(c.source for c in nbformat.read(step.notebook, as_version=4).cells if c.cell_type == "markdown")
        for wrong, right in fixes:
            assert wrong in source and wrong not in page and right in page, (profile, step_name, wrong)


def test_a_stopped_run_is_shown_as_stopped_never_as_the_cost_of_a_run(tmp_path):
    import json

    from allrep.book.tables import timings_markdown

    path = tmp_path / "runs.json"
    path.write_text(json.dumps([dict(started="2026-01-01 10:00", commit="aaaaaaaaaaaa", machine="2 CPUs",
                                     total_seconds=30.0, variants={"20_tuning__stopped": 29.0},
                                     cache_at_start={"features": 0}, interrupted=True)]))
    line = timings_markdown(path).splitlines()[0]
    assert "stopped part-way" in line and "within" not in line and "over the" not in line
