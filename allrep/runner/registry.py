"""The step registry: every notebook step, its variants, and every file it reads and writes.

One registry (:data:`STEPS`) is shared by the runner (:mod:`allrep.runner.pipeline`), the book's table
of contents, the notebooks (through :class:`allrep.runner.context.Context`) and the tests. A step declares

* ``sections``: the parts of the profile it depends on;
* ``inputs`` and ``outputs``: named path templates relative to the run's results folder
  (:func:`allrep.record.places.output_dir`). A placeholder a variant fixes (``{dataset}``, ``{backbone}``)
  takes the variant's value; any other expands over the profile (``{protocol}``: both protocols;
  ``{scratch_dataset}``...);
* ``module``: the :mod:`allrep.steps` module that does its work (``30_ensemble`` ->
  ``allrep.steps.step30_ensemble``, tested in ``tests/test_step30_ensemble.py``).

While the runner executes a notebook, an audit hook (:mod:`allrep.notebook`) logs every results file the
kernel opens or replaces; the runner fails the step when one was not declared. What a variant's executed
copy depends on is its stamp (:mod:`allrep.runner.stamps`).
"""
from __future__ import annotations

import itertools
import json
import string
from dataclasses import dataclass, field
from pathlib import Path

from allrep.data.splits import PROTOCOLS
from allrep.errors import AllrepError
from allrep.profile import PROJECT_ROOT, Profile
from allrep.record import places
from allrep.record.seal import FILE as SEAL_FILE
from allrep.train import FINAL_SECTIONS

NOTEBOOKS = PROJECT_ROOT / "notebooks"


@dataclass(frozen=True)
class Step:
    name: str  # notebook stem, e.g. "30_ensemble"
    title: str
    sections: tuple  # profile sections (or top-level settings) the step depends on
    inputs: dict = field(default_factory=dict)  # name -> template under the results folder
    outputs: dict = field(default_factory=dict)
    per: tuple = ()  # variant axes: "backbone", "dataset"

    @property
    def notebook(self) -> Path:
        return NOTEBOOKS / f"{self.name}.ipynb"

    @property
    def module(self) -> str:
        num, rest = self.name.split("_", 1)
        return f"allrep.steps.step{num}_{rest}"

    def variants(self, cfg: Profile) -> list[dict]:
        out = [{}]
        for axis in self.per:
            values = cfg.use_backbones if axis == "backbone" else cfg.datasets
            out = [dict(v, **{axis: x}) for v in out for x in values]
        return out

    def declaration(self) -> str:
        return json.dumps(dict(sections=self.sections, inputs=self.inputs, outputs=self.outputs, per=self.per),
                          sort_keys=True)


_SPLITS = "splits/{dataset}_{protocol}.csv"
_PROBS = "probabilities/{dataset}_{backbone}.csv"
_META = "probabilities/{dataset}_{backbone}.json"
_VALPROBS = "probabilities/{dataset}_{backbone}_val.csv"  # the same members on each split's validation part
_BEST = "tuning/best_{backbone}_{dataset}.csv"
_SHORTCUTS = "data/shortcut_baselines.csv"
_PLAIN = "probabilities/{dataset}_{backbone}_plain.csv"

STEPS = (
    Step("10_data_exploration", "Data exploration, shortcut audit and the verdict design",
         ("seed", "datasets", "splits", "show_images", "verdict"),
         outputs=dict(splits=_SPLITS, shortcuts=_SHORTCUTS, operating_characteristics="verdict/operating_characteristics.csv",
                      design="verdict/design.csv")),
    Step("20_tuning", "Bayesian tuning", ("seed", "backbones", "weights_dir", "features", "head", "training", "tuning",
                                          "recipe_choice"),
         inputs=dict(splits=_SPLITS),
         outputs=dict(best=_BEST, trials="tuning/trials_{backbone}_{dataset}.csv"), per=("backbone", "dataset")),
    Step("30_ensemble", "Deep-ensemble training",
         ("seed", "backbones", "weights_dir", "features", "head", "training", "ensemble", "recipe_choice"),
         inputs=dict(splits=_SPLITS, best=_BEST),
         outputs=dict(probabilities=_PROBS, validation=_VALPROBS, meta=_META,
                      members="probabilities/{dataset}_{backbone}_members.csv"),
         per=("backbone", "dataset")),
    Step("32_plain", "Plain reference head", ("seed", "backbones", "weights_dir", "features", "plain", "head",
                                              "training"),
         inputs=dict(splits=_SPLITS),
         outputs=dict(probabilities=_PLAIN, members="probabilities/{dataset}_{backbone}_plain_members.csv"),
         per=("backbone", "dataset")),
    Step("35_scratch", "EfficientNetB3 from scratch", ("seed", "scratch", "head", "use_backbones"),
         inputs=dict(splits="splits/{scratch_dataset}_{protocol}.csv",
                     probabilities="probabilities/{scratch_dataset}_{backbone}.csv",
                     meta="probabilities/{scratch_dataset}_{backbone}.json"),
         outputs=dict(probabilities="scratch/{scratch_dataset}_{scratch_backbone}.csv",
                      members="scratch/{scratch_dataset}_{scratch_backbone}_members.csv",
                      summary="fusion/scratch_summary.csv")),
    Step("40_uncertainty", "Uncertainty and calibration", ("seed", "datasets", "use_backbones", "uncertainty"),
         inputs=dict(probabilities=_PROBS, validation=_VALPROBS),
         outputs=dict(summary="uncertainty/summary.csv", calibration="uncertainty/calibration.csv",
                      temperatures="uncertainty/temperatures.csv", referral="uncertainty/referral.csv",
                      referral_fitted="uncertainty/referral_fitted.csv",
                      diversity="uncertainty/diversity.csv")),
    Step("50_fusion", "Sum-rule fusion and ablations", ("datasets", "use_backbones", "fusion"),
         inputs=dict(probabilities=_PROBS, meta=_META, plain=_PLAIN, shortcuts=_SHORTCUTS),
         outputs=dict(scores="fusion/scores.csv", summary="fusion/summary.csv", baselines="fusion/baselines.csv",
                      camera="fusion/camera.csv", camera_test="fusion/camera_test.csv")),
    Step("60_results", "Results: claims, protocols, baselines", ("datasets", "use_backbones", "verdict"),
         inputs=dict(scores="fusion/scores.csv", summary="fusion/summary.csv", meta=_META, best=_BEST, splits=_SPLITS),
         outputs=dict(claims="claims.csv")),
    Step("70_using_models", "Using the models", (*FINAL_SECTIONS, "recipe_study"),
         inputs=dict(splits="splits/{dataset}_grouped.csv", best=_BEST),
         outputs=dict(predictions_IDB1="using/IDB1_held_out.csv", predictions_IDB2="using/IDB2_held_out.csv")),
)
STEP_NAMES = tuple(s.name for s in STEPS)

# results files no notebook step writes: name -> (template under the results folder, its writer)
def _results(path: Path) -> str:
    return path.relative_to(PROJECT_ROOT / "results").as_posix()


OTHER_OUTPUTS = {
    "timings": ("timings/runs.json", "the runner (allrep run): one entry per run that executed something"),
    "recipe_study": ("recipe/study.csv", "scripts/recipe_study.py (the recipe study's evidence)"),
    "benchmark": ("benchmark.json", "scripts/benchmark.py (speed only, no accuracy)"),
    "ledger": ("ledger.csv", "the runner (allrep run): a row per scoring of a test part (allrep.record.ledger.record)"),
    "seal": (SEAL_FILE, "allrep seal: the checksummed record of a finished run (allrep.record.seal)"),
    # the project's, beside the development run's files: the exploratory robustness analysis of the registered
    # run (allrep.record.robustness) and the smoke run's per-stage digests per CPU (allrep.record.digests)
    "robustness_plan": (_results(places.ROBUSTNESS / "plan.yaml"), "the robustness plan, committed before any universe was scored"),
    "multiverse": (_results(places.ROBUSTNESS / "multiverse.csv"), "allrep robustness: every universe, scored"),
    "what_moves": (_results(places.ROBUSTNESS / "what_moves.csv"), "allrep robustness: verdict changes per factor"),
    "digests": (_results(places.DIGESTS / "smoke.json"), "allrep digests --profile smoke --record: per-stage digests per CPU"),
    "robustness_trained_plan": (_results(places.ROBUSTNESS / "plan_trained.yaml"),
                                "the trained universes' amendment of the plan, committed before any was trained"),
    "robustness_missing": (_results(places.ROBUSTNESS / "missing.csv"), "allrep robustness: planned universes not scored"),
    "robustness_timings": (_results(places.ROBUSTNESS / "trained_timings.json"),
                           "allrep robustness --train: what each trained universe cost"),
}
PROJECT_OUTPUTS = ("robustness_plan", "multiverse", "what_moves", "digests", "robustness_trained_plan",
                   "robustness_missing", "robustness_timings")  # under results/ only, whatever the profile


def other_output(name: str, cfg: Profile) -> Path:
    """The path of a declared results file that no step writes (:data:`OTHER_OUTPUTS`); the ledger is one file
    for both committed profiles (:func:`allrep.record.places.ledger_path`)."""
    if name == "ledger":
        return places.ledger_path(cfg)
    if name in PROJECT_OUTPUTS:
        return PROJECT_ROOT / "results" / OTHER_OUTPUTS[name][0]
    return places.output_dir(cfg) / OTHER_OUTPUTS[name][0]


def all_outputs(cfg: Profile) -> set[Path]:
    """Every results file the registry declares for ``cfg``: each step variant's outputs, :data:`OTHER_OUTPUTS` and
    the trained universes' files that exist (:func:`allrep.record.places.trained_universe_files`: one family, of which the
    universes not yet trained are reported missing by the analysis, not declared)."""
    out = {other_output(n, cfg) for n in OTHER_OUTPUTS} | set(places.trained_universe_files())
    for s in STEPS:
        for v in s.variants(cfg):
            out |= set(declared(cfg, s, v, "outputs"))
    return out


def get_step(name: str) -> Step:
    for s in STEPS:
        if name in (s.name, s.name.split("_", 1)[1], s.name[:2]):
            return s
    raise AllrepError(f"unknown step {name!r}: choose from {', '.join(STEP_NAMES)}")


def variant_id(params: dict) -> str:
    return "_".join(str(params[k]) for k in ("backbone", "dataset") if k in params) or "all"


def executed_path(cfg: Profile, step: Step, params: dict) -> Path:
    return places.executed_dir(cfg) / f"{step.name}__{variant_id(params)}.ipynb"


# ----------------------------------------------------------------------------- templates
def _axis_values(cfg: Profile, params: dict, key: str) -> tuple:
    if key in params:
        return (params[key],)
    table = dict(dataset=cfg.datasets, backbone=cfg.use_backbones, protocol=PROTOCOLS,
                 scratch_dataset=cfg.scratch.datasets, scratch_backbone=(cfg.scratch.backbone,))
    if key not in table:
        raise AllrepError(f"unknown placeholder {{{key}}} in a step's path template")
    return tuple(table[key])


def expand(cfg: Profile, params: dict, template: str) -> dict[tuple, Path]:
    """Every file a template names for this variant: {(value, ...): path}, keys in placeholder order."""
    keys = [f for _, f, _, _ in string.Formatter().parse(template) if f]
    out = {}
    for combo in itertools.product(*(_axis_values(cfg, params, k) for k in keys)):
        out[combo] = places.output_dir(cfg) / template.format(**dict(zip(keys, combo)))
    return out


def declared(cfg: Profile, step: Step, params: dict, kind: str) -> list[Path]:
    templates = step.inputs if kind == "inputs" else step.outputs
    return sorted({p for t in templates.values() for p in expand(cfg, params, t).values()})
