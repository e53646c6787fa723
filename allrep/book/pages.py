"""The book a reader meets: which runs it shows, its table of contents, each executed page's title and
shape, the overview page of every step, and the build.

The committed book shows the committed runs of the same notebooks (:mod:`allrep.record.runs`): the
registered run first (pre-registered splits, each test part scored once, sealed), then the development run,
labelled as such on every page. A scratch profile's book (smoke) has one run, which stands in for both: its
pages are the committed pages with the headline run's paths pointed at its own folder, so CI builds every
page and every glue key the committed book uses.

Book-time only: no step module or notebook imports this module, so editing it re-stamps no variant
(:mod:`allrep.runner.stamps`) and never re-executes a notebook.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from allrep.book.tables import DATASET_NAMES, markdown_table
from allrep.errors import AllrepError
from allrep.io import atomic_write_text
from allrep.profile import PROJECT_ROOT, Profile, load_profile
from allrep.record import places, seal
from allrep.record import runs as runs_
from allrep.runner.pipeline import recorded_runs
from allrep.runner.registry import STEPS, Step, executed_path, variant_id

BOOK = PROJECT_ROOT / "book"
PAGES_BEFORE = ("intro", "data", "methods", "recipe")
PAGES_AFTER = ("robustness", "deviations", "preregistration", "reproduce")
DEVELOPMENT_PAGE = "development"
# a step's short name in page titles ("Ensemble: MobileNetV2 on ALL-IDB2"); the registry's title is the long one
SHORT = {"10_data_exploration": "Data exploration", "20_tuning": "Tuning", "30_ensemble": "Ensemble",
         "32_plain": "Plain reference", "35_scratch": "EfficientNetB3 from scratch", "40_uncertainty": "Uncertainty",
         "50_fusion": "Fusion", "60_results": "Results", "70_using_models": "Using the models"}


@dataclass(frozen=True)
class Run:
    """One run the book shows (:class:`allrep.record.runs.Run`), with its loaded profile."""

    cfg: Profile
    run: runs_.Run

    @property
    def folder(self) -> str:
        """Its executed notebooks' folder, under the book."""
        return self.run.executed

    def __getattr__(self, name):  # caption, development, headline, tables...: the run's own
        return getattr(self.__dict__["run"], name)


def runs(cfg: Profile) -> list[Run]:
    """The runs the book of ``cfg`` shows, headline first."""
    return [Run(load_profile(r.profile), r) for r in runs_.shown_with(cfg)]


def backbone_name(bb: str) -> str:
    from allrep.train.backbones import BACKBONES

    return BACKBONES[bb][0] if bb in BACKBONES else bb


def page_title(step: Step, params: dict, development: bool = False) -> str:
    """"Ensemble: MobileNetV2 on ALL-IDB2", from the step and the variant's parameters."""
    parts = []
    if "backbone" in params:
        parts.append(backbone_name(params["backbone"]))
    if "dataset" in params:
        parts.append(DATASET_NAMES.get(params["dataset"], params["dataset"]))
    title = SHORT.get(step.name, step.title) + (f": {' on '.join(parts)}" if parts else "")
    return title + (" (development)" if development else "")


# ----------------------------------------------------------------------------- executed pages
def _one_line(params: dict) -> str:
    names = ", ".join(params)
    values = ", ".join(repr(v) for v in params.values())
    return f"{names} = {values}  # parameters (injected by the runner)\n"


NBVAL_MARKER, NBVAL_TAG = "# NBVAL_CHECK_OUTPUT", "nbval-check-output"  # one marker, two spellings nbval reads
SEALED_NOTE = "*Sealed record:"  # the line a sealed run's pages carry under their title


def sealed_note(cfg: Profile) -> str | None:
    """The line under the title of each page of a sealed run: the commit that made it (None: not sealed)."""
    rec = seal.record(cfg)
    if rec is None:
        return None
    tree = "a clean tree" if rec["clean"] else "a tree with uncommitted changes"
    return (f"{SEALED_NOTE} executed at commit `{rec['commit'][:12]}` ({tree}); checksummed in "
            f"`{places.relative(places.output_dir(cfg) / 'seal.json')}` and never re-executed "
            f"(`allrep seal --check {cfg.name}`, `allrep replay {cfg.name}`).*")


# Prose of the registered run's pages that its notebooks' markdown states wrongly for that run: (profile, step) ->
# the sentence as executed and as the page shows it. Markdown is presentation (the seal covers code-cell outputs), so
# the record is unchanged; the source notebooks were written for the development profile.
def _errata() -> dict[tuple[str, str], list[tuple[str, str]]]:
    reg, dev = runs_.registered().profile, runs_.development().profile
    return {
        (reg, "50_fusion"): [
            ("does tuning and ensembling beat one plain, untuned head?",
             "does tuning beat the plain reference (five untuned heads per split, with the ensemble's own head)?")],
        (reg, "70_using_models"): [
            (f"allrep train-final --profile {dev}", f"allrep train-final --profile {reg}"),
            (f"allrep predict my_crops/ --profile {dev}", f"allrep predict my_crops/ --profile {reg}"),
            (f'profile="{dev}"', f'profile="{reg}"')],
    }


ERRATA = _errata()


def present(nb_path: Path, step: Step, params: dict, profile: str, development: bool = False,
            note: str | None = None) -> bool:
    """Shape one executed notebook for reading (idempotent; outputs untouched): the variant's title as its
    first heading (and ``note``, a sealed run's line, under it), the source's default parameters cell removed
    from the page (tag ``remove-cell``), the injected parameters as one line that binds the same names, nbval's
    comment marker turned into its cell tag, the glued values' table kept for nbval but off the page
    (tag ``remove-output``), and the run's :data:`ERRATA` applied to its markdown. Returns whether the file changed."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    before = nbformat.writes(nb)
    first = nb.cells[0]
    if first.cell_type == "markdown":
        body = [ln for ln in first.source.splitlines()[1:] if not ln.startswith(SEALED_NOTE)]
        while body and not body[0].strip():
            body.pop(0)
        head = [f"# {page_title(step, params, development)}", ""] + ([note, ""] if note else [])
        first.source = "\n".join(head + body)
    for c in nb.cells:
        tags = c.metadata.get("tags", [])
        if c.cell_type == "markdown":
            for wrong, right in ERRATA.get((profile, step.name), []):
                c.source = c.source.replace(wrong, right)
        if c.cell_type != "code":
            continue
        if "parameters" in tags and "remove-cell" not in tags:
            c.metadata["tags"] = [*tags, "remove-cell"]
        elif "injected-parameters" in tags:
            c.source = _one_line(dict(profile=profile, **params))
        lines = c.source.splitlines()
        if lines and lines[0].strip() == NBVAL_MARKER:  # nbval's comment marker, as the cell tag nbval also reads
            c.source = "\n".join(lines[1:])
            tags = c.metadata["tags"] = [*c.metadata.get("tags", []), NBVAL_TAG]
        if "glue_values(" in c.source and "remove-output" not in tags:  # the glued values: for nbval, not the page
            c.metadata["tags"] = [*tags, "remove-output"]
    after = nbformat.writes(nb)
    if after != before:
        atomic_write_text(nb_path, after)
    return after != before


def present_all(cfg: Profile) -> int:
    """:func:`present` every executed notebook of the book's runs; returns how many changed."""
    changed = 0
    for run in runs(cfg):
        note = sealed_note(run.cfg)
        for step in STEPS:
            for v in step.variants(run.cfg):
                nb = executed_path(run.cfg, step, v)
                if nb.is_file():
                    changed += present(nb, step, v, run.cfg.name, run.development, note)
    return changed


# ----------------------------------------------------------------------------- overview pages
def _scores(cfg: Profile) -> pd.DataFrame:
    p = places.output_dir(cfg) / "fusion" / "scores.csv"
    return pd.read_csv(p) if p.is_file() else pd.DataFrame()


def members_overview(cfg: Profile) -> pd.DataFrame:
    """Per dataset and backbone: the tuned ensemble and the plain reference, correct test predictions pooled
    over the grouped outer splits, on how many splits the ensemble got at least as many right, and the paper
    split's k/n of both."""
    sc = _scores(cfg)
    if not len(sc):
        return pd.DataFrame()
    rows = []
    for ds in cfg.datasets:
        for bb in cfg.use_backbones:
            part = sc[sc["dataset"] == ds]
            tuned, plain = part[part["model"] == f"{bb} ensemble"], part[part["model"] == f"{bb} plain head"]
            row = {"dataset": DATASET_NAMES.get(ds, ds), "backbone": backbone_name(bb)}
            for protocol, label in (("grouped", "grouped"), ("paper", "paper split")):
                t = tuned[tuned["protocol"] == protocol].set_index("repeat")
                p = plain[plain["protocol"] == protocol].set_index("repeat")
                row[f"ensemble, {label}"] = f"{t['n_correct'].sum()}/{t['n'].sum()}" if len(t) else ""
                row[f"plain, {label}"] = f"{p['n_correct'].sum()}/{p['n'].sum()}" if len(p) else ""
                if protocol == "grouped" and len(t) and len(p):
                    both = t["n_correct"].align(p["n_correct"], join="inner")
                    row["splits ensemble >= plain"] = f"{int((both[0] >= both[1]).sum())} of {len(both[0])}"
            rows.append(row)
    return pd.DataFrame(rows)


def per_split(cfg: Profile, dataset: str, kind: str) -> pd.DataFrame:
    """One dataset's grouped outer splits side by side: k/n of each backbone's ``kind`` ("ensemble" or
    "plain head") per split, and of the three-backbone sum rule."""
    sc = _scores(cfg)
    if not len(sc):
        return pd.DataFrame()
    sc = sc[(sc["dataset"] == dataset) & (sc["protocol"] == "grouped")]
    cols = {backbone_name(bb): f"{bb} {kind}" for bb in cfg.use_backbones}
    if kind == "ensemble":
        cols["sum rule"] = "sum fusion, all backbones"
    rows = []
    for r, g in sc.groupby("repeat", sort=True):
        g = g.set_index("model")
        rows.append({"split": int(r), **{c: f"{g.loc[m, 'n_correct']}/{g.loc[m, 'n']}" if m in g.index else ""
                                         for c, m in cols.items()}})
    return pd.DataFrame(rows)


def tuning_overview(cfg: Profile) -> pd.DataFrame:
    """Per backbone and dataset: the nested searches' best validation loss (grouped splits: median and range;
    the paper split's), and which recipe each split chose (when the profile lets a split choose)."""
    rows = []
    for bb in cfg.use_backbones:
        for ds in cfg.datasets:
            p = places.output_dir(cfg) / "tuning" / f"best_{bb}_{ds}.csv"
            if not p.is_file():
                continue
            b = pd.read_csv(p)
            g, paper = b[b["protocol"] == "grouped"], b[b["protocol"] == "paper"]
            row = {"backbone": backbone_name(bb), "dataset": DATASET_NAMES.get(ds, ds), "searches": len(b),
                   "validation loss, grouped: median (range)":
                       f"{g['val_loss'].median():.4f} ({g['val_loss'].min():.4f} to {g['val_loss'].max():.4f})" if len(g) else "",
                   "validation loss, paper split": f"{paper['val_loss'].iloc[0]:.4f}" if len(paper) else ""}
            if "recipe" in b:
                row["recipe chosen (splits)"] = ", ".join(f"{k} {v}" for k, v in b["recipe"].value_counts().sort_index().items())
            rows.append(row)
    return pd.DataFrame(rows)


def _claims(cfg: Profile) -> pd.DataFrame:
    p = places.output_dir(cfg) / "claims.csv"
    return pd.read_csv(p) if p.is_file() else pd.DataFrame()


def compact_claims(cl: pd.DataFrame) -> pd.DataFrame:
    """The claims table in seven short columns, narrow enough for the intro's page (the full table, with the
    effective n and the leakage, is in the results notebook)."""
    rows = []
    for _, r in cl.iterrows():
        random_bbs = r.get("random_init_backbones")
        fused = "all three" + (f" ({backbone_name(random_bbs)} random)" if isinstance(random_bbs, str) and random_bbs
                               else "") if r["model_set"] == "all backbones" else "pretrained only"
        m = "" if pd.isna(r.get("margin")) else f"{int(r['margin'])}"
        rows.append({"claim": f"{DATASET_NAMES.get(r['dataset'], r['dataset'])} ({r['paper_accuracy']:g}%)",
                     "protocol": r["protocol"], "fused": fused,
                     "ours": f"{r['n_correct']}/{r['n_test']} ({r['accuracy']:.2%})",  # as the intro's glue formats it
                     "bounds %": f"{r['bound_low']:.2%} to {r['bound_high']:.2%}".replace("%", ""),
                     "verdict": r["verdict"], "margin (images)": m})
    return pd.DataFrame(rows)


def tuning_sentence(cfg: Profile) -> str:
    """What tuning bought on the grouped splits: per dataset, the tuned fusion and each tuned ensemble against
    its untuned reference with as many heads, pooled k, and on how many splits the tuned one got at least as
    many right (a bullet per dataset)."""
    cl, mo = _claims(cfg), members_overview(cfg)
    if not len(cl) or not len(mo):
        return "*(no results yet)*\n"
    out = []
    for ds in cfg.datasets:
        name = DATASET_NAMES.get(ds, ds)
        row = cl[(cl["dataset"] == ds) & (cl["protocol"] == "grouped") & (cl["model_set"] == "all backbones")]
        parts = []
        if len(row) and not pd.isna(row["plain_n_correct"].iloc[0]):
            r = row.iloc[0]
            parts.append(f"sum rule {r['n_correct']} tuned vs {int(r['plain_n_correct'])} plain of {r['n_test']}")
        for _, m in mo[mo["dataset"] == name].iterrows():
            t, p = m["ensemble, grouped"], m["plain, grouped"]
            if t and p:
                (k, n), k_plain = t.split("/"), p.split("/")[0]
                parts.append(f"{m['backbone']} {k} vs {k_plain} of {n} (tuned at least as good on "
                             f"{m['splits ensemble >= plain']} splits)")
        out.append(f"- {name}, grouped, tuned vs plain: " + "; ".join(parts) + ".")
    return "\n".join(out) + "\n"


OVERVIEW_STEPS = ("20_tuning", "30_ensemble", "32_plain")


def overview_page(run: Run, step: Step) -> str:
    """The chapter page of a step with variants: its variants compared side by side, then (as sections in the
    table of contents) each variant's executed notebook."""
    cfg, dev = run.cfg, run.development
    label = " (development)" if dev else ""
    intro = {"20_tuning": "One Bayesian search per outer split (nested: each split tunes on its own validation "
                          "part). Lower is better; a split's loss is on its validation part, never on test.",
             "30_ensemble": "Each backbone's tuned deep ensemble beside its plain reference (as many heads, untuned "
                            "settings, own seeds), correct test predictions pooled over the grouped outer splits, "
                            "and on how many splits the ensemble got at least as many right.",
             "32_plain": "The plain references (untuned heads on the same features and splits), split by split "
                         "beside one another; the ensembles they are compared with are on the ensemble page."}[step.name]
    out = [f"# {SHORT[step.name]}: every variant{label}", ""]
    if dev:
        out += ["*Development run*: its test parts were scored by several runs while the recipe and the rule were "
                "built; it carries no weight as a confirmation.", ""]
    out += [intro, ""]
    if step.name == "20_tuning":
        out += [markdown_table(tuning_overview(cfg)), ""]
    else:
        out += [markdown_table(members_overview(cfg)), ""]
        kind = "ensemble" if step.name == "30_ensemble" else "plain head"
        for ds in cfg.datasets:
            out += [f"## {DATASET_NAMES.get(ds, ds)}: {kind} test k/n per grouped outer split", "",
                    markdown_table(per_split(cfg, ds, kind)), ""]
    out += ["Each variant's executed notebook follows in the table of contents.", ""]
    return "\n".join(out)


def overview_name(run: Run, step: Step) -> str:
    return f"overview/{run.folder}_{step.name}"


def write_overviews(cfg: Profile) -> None:
    dest = places.book_dir(cfg)
    for run in runs(cfg):
        for step in STEPS:
            if step.name in OVERVIEW_STEPS:
                atomic_write_text(dest / f"{overview_name(run, step)}.md", overview_page(run, step))


# ----------------------------------------------------------------------------- table of contents
def toc(cfg: Profile) -> str:
    """``_toc.yml``: the replication pages, then each run (a step with variants: its overview page with the
    variants as sections), then the honesty pages."""
    lines = ["# Generated by `allrep book` from allrep.runner.registry.STEPS: do not edit.", "format: jb-book", "root: intro",
             "parts:", "- caption: Replication", "  chapters:"]
    lines += [f"  - file: {p}" for p in PAGES_BEFORE[1:]]
    for run in runs(cfg):
        lines += [f"- caption: {run.caption}", "  chapters:"]
        if run.development:
            lines.append(f"  - file: {DEVELOPMENT_PAGE}")
        for step in STEPS:
            files = [f"{run.folder}/{step.name}__{variant_id(v)}" for v in step.variants(run.cfg)]
            if step.name in OVERVIEW_STEPS:
                lines.append(f"  - file: {overview_name(run, step)}")
            else:
                lines.append(f"  - file: {files.pop(0)}")
            if files:
                lines.append("    sections:")
                lines += [f"    - file: {f}" for f in files]
    pages = list(PAGES_AFTER) if places.committed(cfg) else [DEVELOPMENT_PAGE, *PAGES_AFTER]
    lines += ["- caption: Honesty", "  chapters:"] + [f"  - file: {p}" for p in pages]
    return "\n".join(lines) + "\n"


def write_toc(cfg: Profile) -> Path:
    return atomic_write_text(places.book_dir(cfg) / "_toc.yml", toc(cfg))


# ----------------------------------------------------------------------------- tables and pages
def ledger_table(cfg: Profile) -> str:
    """The test-set ledger's counts (:mod:`allrep.record.ledger`, ``results/ledger.csv``), as markdown."""
    from allrep.record import ledger
    from allrep.runner.registry import other_output

    path = other_output("ledger", cfg)
    if not path.is_file():
        return "*(no test part scored yet)*\n"
    book = ledger.counts(ledger.read(path), runs_.development_seeds())
    book = book.assign(added_later=book["recorded_after_the_fact"] + book["exploratory"])
    drop = ["commits", "recorded_after_the_fact", "exploratory"] + ([] if book["benchmark"].any() else ["benchmark"])
    book = book.drop(columns=drop).rename(columns={
        "split_seed": "seed", "outer_splits": "splits", "max_looks_per_split_and_model": "most looks per split and model"})
    return markdown_table(book) + "\n"


def ledger_sentence(cfg: Profile) -> str:
    """One sentence on how often the headline run's test parts were scored, from the ledger."""
    from allrep.record import ledger
    from allrep.runner.registry import other_output

    path = other_output("ledger", cfg)
    if not path.is_file():
        return "No test part has been scored yet.\n"
    lg = ledger.read(path)
    lg = lg[ledger.of_seed(lg, cfg.seed)]
    if not len(lg):
        return "No test part of this run's splits has been scored yet.\n"
    c = ledger.counts(lg)
    parts = int(c["outer_splits"].sum())
    most = int(c["max_looks_per_split_and_model"].max())
    new = int((lg["look"] == "new").sum())
    rep = int((lg["look"] == "repeat").sum())
    times = "once" if most == 1 else f"up to {most} times"
    later = int(lg["added"].eq("backfill").sum()) if "added" in lg.columns else 0
    held_out = ", and the final models' held-out images" if lg["protocol"].eq(ledger.HELD_OUT).any() else ""
    later = (f" {later} of the rows were recorded after the fact from the committed files (from-scratch scorings "
             f"per recipe and the final models' held-out images; `scripts/backfill_ledger.py --amend`)." if later else "")
    expl = int(lg["look"].eq("exploratory").sum())
    expl = (f" {expl} rows are the exploratory robustness analysis's re-scorings of the registered predictions "
            "(look `exploratory`; no new predictions)." if expl else "")
    return (f"The test-set ledger holds {len(lg)} rows for this run's split seed ({cfg.seed}): {new} new looks and "
            f"{rep} byte-identical re-executions, over {parts} test parts (outer splits of the three datasets and "
            f"both protocols{held_out}); each test part was scored {times} per model."
            f"{later}{expl}\n")


def seal_table(cfg: Profile) -> str:
    """The seal of ``cfg``'s run as the pre-registration page shows it, checked as the book is built."""
    rec = seal.record(cfg)
    if rec is None:
        return f"*The {cfg.name} run is not sealed.*\n"
    weights = "; ".join(f"{backbone_name(b)}: " + ("random initialisation" if w == "random" else f"ImageNet file, "
                                                   f"sha256 `{w[:12]}...`") for b, w in sorted(rec["weights"].items()))
    env = rec["environment"]["recorded_by_run"]
    rows = [("commit", f"`{rec['commit'][:12]}` ({'clean tree' if rec['clean'] else 'uncommitted changes'})"),
            ("split seed", str(rec["split_seed"])),
            ("variants (executed notebooks)", str(len(rec["stamps"]))),
            ("files checksummed", f"{sum(not k.endswith('#outputs') for k in rec['files'])} results files and "
                                  f"{sum(k.endswith('#outputs') for k in rec['files'])} notebooks' cell outputs"),
            ("ledger rows of the run", str(rec["ledger"]["rows"])),
            ("weights", weights),
            ("environment", f"Python {env.get('python')}, Keras {env.get('keras')} on {env.get('backend')}, "
                            f"{env.get('cpus')} CPUs, accelerator: {env.get('accelerator')}"),
            ("status when this book was built", str(seal.status(cfg)))]
    return markdown_table(pd.DataFrame(rows, columns=["Sealed record", ""])) + "\n"


def preregistration_markdown(tables: dict | None) -> dict[str, str]:
    """The pre-registration page's generated tables (:func:`allrep.record.preregistration.page_tables`)."""
    names = ("preregistration_settings.md", "preregistration_design.md", "preregistration_oc.md")
    if tables is None:
        return {n: "*(no pre-registration yet: `allrep preregister` writes it)*\n" for n in names}
    return {n: markdown_table(df) + "\n" for n, df in tables.items()}


def report_tables(cfg: Profile) -> dict[str, str]:
    """The honest-reporting tables of a run (:mod:`allrep.book.report`): targets and outcomes, the rule's verdict
    zones and its sensitivity to the intra-group correlation, the margins beside the development run's drift, what
    the run shares with the development run, and the code the amendments changed."""
    from allrep.book import report

    dev = load_profile(runs_.development().profile)
    shared = report.shared_with_development(cfg, dev)
    return {"targets.md": markdown_table(report.targets(cfg)) + "\n",
            "verdict_zones.md": markdown_table(report.verdict_zones(cfg)) + "\n",
            "icc_sensitivity.md": markdown_table(report.icc_sensitivity(cfg)) + "\n",
            "drift.md": markdown_table(report.reexecution_drift(dev, cfg)) + "\n",
            "amendments_code.md": markdown_table(report.amendment_code_changes()) + "\n",
            "shared_with_development.md": (
                f"Of the {shared['images']} images this run's splits use, {shared['tested_in_development']} sat in "
                f"a test part of the development run (any dataset, either protocol), whose test parts were scored "
                f"up to {shared['most_development_looks']} times per model while the recipe, the margin and the "
                f"intra-group correlation were chosen.\n")}


def write_tables(cfg: Profile, folder: Path | None = None) -> Path:
    """Markdown tables generated from results files, included by the book's pages: the headline run's in
    ``_generated/<run>/`` (committed book) and the development run's (or a scratch profile's) in ``_generated/``."""
    from allrep.book.tables import book_tables
    from allrep.record.preregistration import page_tables

    base = folder or places.book_dir(cfg) / "_generated"
    for run in runs(cfg):
        dest = base / Path(run.tables).relative_to("_generated")
        tables = {**book_tables(run.cfg), "ledger_sentence.md": ledger_sentence(run.cfg),
                  "claims_compact.md": markdown_table(compact_claims(_claims(run.cfg))) + "\n",
                  "tuning_sentence.md": tuning_sentence(run.cfg), "seal.md": seal_table(run.cfg)}
        if run.run.headline or not run.run.committed:  # the registered run (a scratch run stands in for it)
            tables |= report_tables(run.cfg)
        if not run.run.headline:  # the development run's page (or a scratch run's, which stands in for it)
            tables |= {"ledger.md": ledger_table(run.cfg), **preregistration_markdown(page_tables())}
        for name, text in tables.items():
            atomic_write_text(dest / name, text)
    from allrep.book.tables import digests_markdown

    atomic_write_text(base / "digests.md", digests_markdown())
    for name, text in robustness_tables(base).items():
        atomic_write_text(base / name, text)
    return base


FACTOR_NAMES = {"training": "trained heads (registered or a trained universe)", "tuning": "heads (tuned or untuned)", "members": "members", "fusion_set": "fusion set",
                "fusion_rule": "fusion rule", "icc": "intra-group correlation",
                "not_reproduced_below": "null of not reproduced"}


def robustness_tables(base: Path) -> dict:
    """The exploratory robustness analysis (allrep.record.robustness) as the book shows it: one sentence per claim
    (``robustness_sentence.md``, for the intro), the page's tables (``robustness.md``), and its specification
    curve written to ``base/robustness_curve.png``."""
    from allrep.evaluate.claims import PAPER_CLAIMS, VERDICTS
    from allrep.evaluate.multiverse import sentence
    from allrep.record import robustness

    path = robustness.FOLDER / robustness.MULTIVERSE
    if not path.is_file():
        none = "*(the robustness analysis has not been run: `allrep robustness`)*\n"
        return {"robustness_sentence.md": none, "robustness.md": none, "robustness_trained.md": none}
    mv = pd.read_csv(path)
    if "training" not in mv:
        raise AllrepError(f"{places.relative(path)} predates the trained universes (no training column): re-score it "
                          "with `allrep robustness`")
    plan = robustness.load_plan()
    order = [d for d in plan["claims"] if d in set(mv["dataset"])]
    said = "; ".join(sentence(mv, d, DATASET_NAMES[d]) for d in order)
    reg = mv[mv["registered"]].set_index("dataset")
    counts = (mv.groupby(["dataset", "verdict"]).size().unstack(fill_value=0).reindex(index=order, columns=list(VERDICTS),
                                                                                       fill_value=0)
              .rename(index=DATASET_NAMES).reset_index().rename(columns={"dataset": "claim"}))
    counts.columns.name = None
    counts.insert(1, "universes", mv.groupby("dataset").size().reindex(order).to_numpy())
    counts.insert(2, "registered", [f"{reg.loc[d, 'k']}/{reg.loc[d, 'n']} {reg.loc[d, 'verdict']}" for d in order])
    moves = pd.read_csv(robustness.FOLDER / robustness.WHAT_MOVES)
    moves["dataset"] = moves["dataset"].map(DATASET_NAMES)
    moves["factor"] = moves["factor"].map(FACTOR_NAMES).fillna(moves["factor"])
    moves = moves.rename(columns={"dataset": "claim", "levels": "other levels", "verdict_changes": "verdict changes",
                                  "changed_by": "levels that change it (verdict)"})
    from allrep.book.plots import specification_curve

    fig = specification_curve(mv, PAPER_CLAIMS, float(load_profile(runs_.registered().profile).verdict.delta))
    fig.savefig(base / "robustness_curve.png", dpi=110, metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    trained = _trained_tables(mv, plan, order)
    sentence_md = (f"**Exploratory robustness** ({{doc}}`robustness`; scored after the registered verdicts, by a plan "
                   f"committed before any universe was scored): {said[0].upper() + said[1:]}.\n")
    return {"robustness_sentence.md": sentence_md,
            "robustness.md": markdown_table(counts) + "\n\n**What moves each verdict**, one factor at a time from the "
            "registered universe (the other factors at its levels):\n\n" + markdown_table(moves) + "\n",
            "robustness_trained.md": trained}


def _trained_tables(mv: pd.DataFrame, plan: dict, order: list[str]) -> str:
    """The trained universes at the registered recombined levels (k/n, verdict, k against the re-trained registered
    settings), the missing and cut cells, and what training them cost."""
    from allrep.evaluate.multiverse import trained_summary
    from allrep.record import robustness, universes

    t = trained_summary(mv, plan)
    t = t.assign(order=t["dataset"].map({d: i for i, d in enumerate(order)})).sort_values("order", kind="stable")
    cells = {}
    for ds, name in zip(t["dataset"], t["training"]):
        meta = universes.probabilities_path(ds, name).with_suffix(".json")
        if meta.is_file():
            m = json.loads(meta.read_text())
            cells[(ds, name)] = f"{m['cells_changed']}/{m['cells']}"
    heads = [f"{n} ({tu})" if n == "registered" else n for n, tu in zip(t["training"], t["tuning"])]
    table = pd.DataFrame({  # names with spaces, so a narrow column wraps them
        "claim": t["dataset"].map(DATASET_NAMES), "heads": [h.replace("_", " ") for h in heads],
        "cells changed": [cells.get((ds, n), "") for ds, n in zip(t["dataset"], t["training"])],
        "correct": [f"{k}/{n} ({100 * k / n:.2f}%)" for k, n in zip(t["k"], t["n"])],
        "bounds": [f"{100 * lo:.1f}-{100 * hi:.1f}%" for lo, hi in zip(t["bound_low"], t["bound_high"])],
        "verdict": t["verdict"],
        "k - base": ["" if pd.isna(x) else f"{int(x):+d} ({b.replace('registered untuned', 'plain')})"
                     for x, b in zip(t["k_minus_base"], t["base"])],
        "per-split k": t["split_k_range"]})
    out = markdown_table(table) + "\n"
    missing = robustness.FOLDER / robustness.MISSING
    if missing.is_file() and len(m := pd.read_csv(missing)):
        m["dataset"] = m["dataset"].map(DATASET_NAMES).fillna(m["dataset"])
        out += "\n**Not in the analysis** (planned, and reported rather than replaced):\n\n" + markdown_table(
            m.rename(columns={"dataset": "claim"})) + "\n"
    if universes.TIMINGS.is_file():
        rec = json.loads(universes.TIMINGS.read_text())
        rows = [dict(work=k, seconds=v["seconds"], heads=v.get("heads", ""), trained=v.get("heads_trained", ""),
                     images=v.get("images", ""), cpus=v.get("cpus", ""), load=v.get("load_average", ""))
                for k, v in rec.items()]
        total = sum(v["seconds"] for v in rec.values())
        out += (f"\n**What they cost**, as recorded when each was trained (features only where they were not cached "
                f"yet): {total / 60:.1f} minutes of wall time in all. *load* is the machine's one-minute load average "
                f"when the work ended (where recorded): above the number of CPUs, it shared them with other work, and "
                f"its seconds overstate its cost.\n\n" + markdown_table(pd.DataFrame(rows)) + "\n")
    return out


# a scratch profile's book: the committed pages, with the headline run's paths pointed at its one run
_HEADLINE = re.compile(rf"(?<![\w/])({re.escape(runs_.headline().executed)}/)(?=[\w.]+\.ipynb|[\w.]+\.md|\d\d_)")
_HEADLINE_TABLES = re.compile(rf"{re.escape(runs_.headline().tables)}/")


def scratch_page(text: str) -> str:
    """A committed page as a scratch profile's book shows it (its one run stands in for both)."""
    text = _HEADLINE_TABLES.sub("_generated/", text)
    return _HEADLINE.sub(f"{runs_.SCRATCH_EXECUTED}/", text)


README = PROJECT_ROOT / "README.md"
FINDINGS_START = "<!-- findings: generated by `allrep book` from the registered run's claims; do not edit -->"
FINDINGS_END = "<!-- /findings -->"


def _k_of_n(r) -> str:
    return f"{r['n_correct']}/{r['n_test']} ({r['n_correct'] / r['n_test']:.2%})"


def readme_findings() -> str:
    """The README's first screen: what the registered run found, one line per claim (generated, so it cannot go
    stale; ``tests/test_book_committed.py`` compares the README with it)."""
    run = runs_.headline()
    cfg = load_profile(run.profile)
    cl = _claims(cfg)
    rec = seal.record(cfg) or {}
    runs = recorded_runs(cfg)
    minutes = sum(r["total_seconds"] for r in runs) / 60 if runs else None
    sealed = f", sealed at commit `{rec['commit'][:12]}`" if rec else ""
    alpha = float(cl["alpha"].iloc[0])
    lines = [FINDINGS_START, "",
             f"**What this replication found** ({run.label} run: pre-registered, each test part scored once{sealed}). "
             "Accuracy of the sum-rule fusion of the three backbones, as exact k/n, pooled over grouped outer splits "
             "(every photograph group, with all crops cut from it, on one side of every split), beside the paper's "
             "single 80/20 hold-out, whose test images share photographs with its training images. The verdict "
             f"compares the paper's figure with one-sided {1 - alpha:.0%} Clopper-Pearson bounds (together a "
             f"{1 - 2 * alpha:.0%} interval) at an effective n over photograph groups, with a pre-registered margin "
             f"of {100 * float(cl['delta'].iloc[0]):.0f} points:", "",
             "| claim (paper) | ours, grouped splits | verdict | ours, paper's hold-out | verdict |",
             "| --- | --- | --- | --- | --- |"]
    allb = cl[cl["model_set"] == "all backbones"]
    for ds in cfg.datasets:
        g = allb[allb["dataset"] == ds].set_index("protocol")
        if not {"grouped", "paper"} <= set(g.index):
            continue
        gr, pa = g.loc["grouped"], g.loc["paper"]
        lines.append(f"| {DATASET_NAMES.get(ds, ds)} ({gr['paper_accuracy']:g}%) | {_k_of_n(gr)} | {gr['verdict']} "
                     f"| {_k_of_n(pa)} | {pa['verdict']} |")
    pre = cl[(cl["model_set"] == "pretrained only") & (cl["protocol"] == "grouped")]
    random_bbs = sorted({b for b in allb["random_init_backbones"].dropna() if b})
    if random_bbs and len(pre):
        lines += ["", f"{', '.join(backbone_name(b) for b in random_bbs)} started from random weights (no ImageNet file); "
                  "the two ImageNet backbones alone, grouped: " + "; ".join(
                      f"{DATASET_NAMES.get(r['dataset'], r['dataset'])} {r['n_correct']}/{r['n_test']} {r['verdict']}"
                      for _, r in pre.iterrows()) + "."]
    if minutes is not None:
        lines += ["", f"The registered run took {minutes:.0f} minutes on {_cpus(runs)} CPU cores from an empty cache; "
                  f"the book (`book/`) has every number, its intervals, the audits and the caveats."]
    return "\n".join(lines + ["", FINDINGS_END])


def _cpus(runs: list[dict]) -> str:
    return str(runs[-1].get("machine", "?").split(" CPUs")[0]) if runs else "?"


def write_readme() -> bool:
    """Replace the README's findings block with :func:`readme_findings`; returns whether it changed."""
    text = README.read_text()
    a, b = text.index(FINDINGS_START), text.index(FINDINGS_END) + len(FINDINGS_END)
    new = text[:a] + readme_findings() + text[b:]
    if new != text:
        atomic_write_text(README, new)
    return new != text


def prepare_book(cfg: Profile) -> Path:
    """Pages, tables, overview pages, toc and executed-page titles of ``cfg``'s book (and, for the committed book,
    the README's findings)."""
    dest = places.book_dir(cfg)
    if dest == BOOK:
        write_readme()
    if dest != BOOK:
        for p in BOOK.glob("*.md"):
            atomic_write_text(dest / p.name, scratch_page(p.read_text()))
        for p in (BOOK / "_static").glob("*"):
            (dest / "_static").mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dest / "_static" / p.name)
    write_tables(cfg)
    write_overviews(cfg)
    write_toc(cfg)
    present_all(cfg)
    return dest


def build_book(cfg: Profile, strict: bool = True) -> Path:
    dest = prepare_book(cfg)
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(dest), "--config",
           str(PROJECT_ROOT / "_config.yml"), "--toc", str(dest / "_toc.yml"), "--path-output", str(dest)]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    r = subprocess.run(cmd, cwd=PROJECT_ROOT)
    if r.returncode:
        raise AllrepError(f"jupyter-book build {dest} failed (exit {r.returncode}); see the log above")
    return dest / "_build" / "html"
