"""Profiles: every setting of a run, typed, in ``profiles/<name>.yaml``.

A profile may ``extends:`` another and override any key. It loads into a frozen
:class:`Profile` of section dataclasses through one strict loader
(:func:`load_section`): a key the dataclass does not declare is an error naming
its dotted path, and so is a value of the wrong type. Every field is read by the
code (a setting nobody reads does not exist), so an unknown key is also an unused
key. Notebooks and the runner take only a profile name and a variant (dataset,
backbone); ``Profile.digest(*sections)`` is the part of a profile a step depends on.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from allrep.errors import AllrepError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROFILES_DIR = Path(os.environ.get("ALLREP_PROFILES", PROJECT_ROOT / "profiles"))
DATASETS = ("IDB1", "IDB2", "combined")
BACKBONE_NAMES = ("inceptionv3", "efficientnetb3", "mobilenetv2")


# ----------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class Splits:
    test_fraction: float = 0.2  # paper: 80/20 hold-out
    val_fraction: float = 0.2  # carved from training only
    repeats: int = 10  # grouped protocol: splits with no group across train/test (with folds: repetitions)
    folds: int = 0  # 0: `repeats` random grouped hold-outs; k: grouped k-fold, repeated `repeats` times


@dataclass(frozen=True)
class Backbone:
    weights: str = "imagenet"  # imagenet | none
    input_size: int | None = None  # None: the weights' own size
    random_if_unavailable: bool = False  # imagenet wanted, but an offline folder lacks the file: random, said


@dataclass(frozen=True)
class Features:
    views: int = 8  # training views per image (dihedral transforms)
    pool: int = 1  # k x k average pooling of the feature map
    batch_size: int = 16  # images x views read and cached per step; each image still goes through the backbone alone


@dataclass(frozen=True)
class Head:
    """The hyperparameters of the GRU head (what tuning searches)."""

    projection: int = 128  # units of the per-position Dense before the GRU (0: none)
    gru_units: int = 64
    dense_units: int = 64
    dropout: float = 0.3
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Training:
    epochs: int = 40
    batch_size: int = 32
    patience: int = 8
    pca: int = 0  # 0: raw channels; k: top-k principal axes of the *training* features; -1: every channel standardised
    whiten: bool = True  # principal axes scaled to unit variance (False: one common scale)
    pool: int = 1  # further k x k average pooling of the cached feature map (1: none)
    min_delta: float = 0.0  # a validation-NLL improvement this small does not reset early stopping


@dataclass(frozen=True)
class Tuning:
    """Nested tuning (:mod:`allrep.train.tuning`): one search per split, on its own validation part."""

    trials: int = 10  # BayesianOptimization trials per search
    initial_points: int = 4  # random trials before the Gaussian process proposes


@dataclass(frozen=True)
class Plain:
    """The plain reference (step 32): fixed, untuned settings, ``members`` heads per split. With ``use_head``
    its settings are the profile's ``head:`` and ``training:`` themselves (the values the tuner starts from,
    and the ensemble's recipe), so the tuned ensemble against it isolates what tuning bought; otherwise
    ``head``/``training``/``min_delta`` below."""

    head: Head = field(default_factory=Head)
    training: Training = field(default_factory=Training)
    min_delta: float = 0.0  # a validation-loss improvement this small does not reset early stopping
    members: int = 1  # heads per split, averaged like an ensemble's members
    use_head: bool = False  # the profile's head:/training: (untuned) instead of the settings above


@dataclass(frozen=True)
class Ensemble:
    members: int = 5


@dataclass(frozen=True)
class Recipe:
    """One way to train a hybrid end to end from random weights (:mod:`allrep.train.scratch`)."""

    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 1e-3  # peak rate (after the warm-up)
    schedule: str = "constant"  # constant | cosine (decays to 0 at the last epoch)
    warmup_epochs: int = 0  # linear warm-up from 10% of the peak
    weight_decay: float = 0.0  # AdamW; 0 is plain Adam
    label_smoothing: float = 0.0
    bn_momentum: float = 0.99  # Keras' default
    augment: bool = False  # a random dihedral view (+ colour jitter) of each image every epoch
    patience: int = 8

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Candidate:
    """One recipe in the recipe study (:mod:`allrep.train.recipe`): the settings it changes (None: as the base)."""

    pool: int | None = None
    pca: int | None = None
    whiten: bool | None = None
    epochs: int | None = None
    patience: int | None = None
    min_delta: float | None = None
    batch_size: int | None = None
    projection: int | None = None
    gru_units: int | None = None
    dense_units: int | None = None
    dropout: float | None = None
    learning_rate: float | None = None
    weight_decay: float | None = None

    def changes(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class RecipeStudy:
    """How the head's training recipe was chosen: candidates scored on inner grouped folds of one
    grouped repeat's training part (never a test image of that repeat)."""

    datasets: tuple[str, ...] = ("IDB1", "IDB2")
    repeat: int = 0
    folds: int = 3
    base: Candidate = field(default_factory=Candidate)
    candidates: dict[str, Candidate] = field(default_factory=dict)


@dataclass(frozen=True)
class RecipeChoice:
    """The recipe decided inside each outer split (:func:`allrep.train.recipe.choose_in_split`): one head per
    candidate (changes on top of ``head:``/``training:``; the first is the default) on the split's training
    part, scored by its validation NLL; another candidate replaces the first only when it is lower by more
    than one paired standard error. Disabled: every split uses ``head:``/``training:`` as they are."""

    enabled: bool = False
    candidates: dict[str, Candidate] = field(default_factory=lambda: {"development": Candidate()})


@dataclass(frozen=True)
class Scratch:
    backbone: str = "efficientnetb3"
    datasets: tuple[str, ...] = ("IDB2",)
    input_size: int = 64
    repeats: int = 1  # grouped repeats (after the paper split) that get from-scratch members
    members: int = 1
    recipes: dict[str, Recipe] = field(default_factory=dict)


@dataclass(frozen=True)
class Fusion:
    rules: tuple[str, ...] = ("sum", "product", "max", "vote")


@dataclass(frozen=True)
class Uncertainty:
    ece_bins: int = 10
    bootstrap: int = 1000
    referral_coverage: float = 0.9  # share of predictions kept; the least confident rest is referred to a human
    calibration_folds: int = 5  # grouped folds of a validation part that cross-fit the map choice (allrep.evaluate.calibration)
    temperature_prior_sd: float = 0.5  # sd of the regularised temperature's normal prior on log T


@dataclass(frozen=True)
class Verdict:
    """The verdict rule's settings (:mod:`allrep.evaluate.claims`), fixed before the registered run."""

    delta: float = 0.04  # margin: a shortfall below the paper's figure that matters to a reader
    alpha: float = 0.05  # one-sided level of each of the two tests (a 90% two-sided interval)
    icc: float = 0.1  # assumed intra-group correlation of correctness (photograph groups): the design effect
    repeat_correlation: float = 0.5  # simulation only: how strongly one image's correctness persists across splits
    simulations: int = 4000  # simulated runs per true accuracy for the operating characteristics


@dataclass(frozen=True)
class Profile:
    name: str
    seed: int
    datasets: tuple[str, ...]
    splits: Splits
    backbones: dict[str, Backbone]
    use_backbones: tuple[str, ...]
    features: Features
    head: Head
    training: Training
    tuning: Tuning
    ensemble: Ensemble
    plain: Plain
    scratch: Scratch
    fusion: Fusion
    uncertainty: Uncertainty
    recipe_study: RecipeStudy = field(default_factory=RecipeStudy)
    verdict: Verdict = field(default_factory=Verdict)
    recipe_choice: RecipeChoice = field(default_factory=RecipeChoice)
    weights_dir: str | None = None  # ALLREP_WEIGHTS_DIR wins
    show_images: bool = False  # thumbnails recreate licensed images: scratch profiles only

    def section(self, name: str):
        if name not in {f.name for f in dataclasses.fields(self)}:
            raise AllrepError(f"profile {self.name!r} has no section {name!r}")
        return getattr(self, name)

    def slice(self, *names: str) -> dict:
        return {n: plain_dict(self.section(n)) for n in names}

    def digest(self, *names: str) -> str:
        """Hash of the named sections (all when none is named)."""
        blob = json.dumps(self.slice(*names) if names else plain_dict(self), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def backbone(self, name: str) -> Backbone:
        if name not in self.backbones:
            raise AllrepError(f"unknown backbone {name!r}: profile {self.name!r} has {', '.join(self.backbones)}")
        return self.backbones[name]

    def flat(self) -> list[tuple[str, object]]:
        """(dotted setting, value) of every setting, for the book's settings table."""
        out = []

        def walk(prefix, v):
            if isinstance(v, dict):
                for k, x in v.items():
                    walk(f"{prefix}.{k}" if prefix else k, x)
            else:
                out.append((prefix, v))

        walk("", plain_dict(self))
        return out


def plain_dict(obj):
    """Dataclasses, tuples and dicts as JSON-ready dicts and lists (the form the YAML had)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: plain_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: plain_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_dict(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------- the strict loader
def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _convert(tp, value, where: str):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, where)
            except AllrepError:
                continue
        raise AllrepError(f"{where}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return load_section(tp, value, where)
    if origin is dict:
        _, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise AllrepError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): _convert(vt, v, f"{where}.{k}") for k, v in value.items()}
    if origin is tuple:
        (et, _) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise AllrepError(f"{where}: expected a list, got {value!r}")
        return tuple(_convert(et, v, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise AllrepError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise AllrepError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AllrepError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise AllrepError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported setting type {tp!r} at {where}")


def load_section(cls, raw, where: str):
    """``cls(**raw)`` with every key checked: unknown keys and wrong types raise one line naming them.
    The single loading style for every section (and for tuned hyperparameters read back)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise AllrepError(f"{where}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise AllrepError(f"unknown setting {', '.join(f'{where}.{k}' if where else k for k in unknown)}: "
                          f"{where or 'a profile'} takes {', '.join(names)}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in raw.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field is missing
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in kwargs
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        raise AllrepError(f"{where or 'profile'}: missing setting(s) {', '.join(missing)}") from e


def _check(p: Profile) -> Profile:
    if not p.recipe_choice.candidates:
        raise AllrepError(f"profile {p.name!r}: recipe_choice.candidates is empty: name at least the default recipe")
    for d in (*p.datasets, *p.scratch.datasets):
        if d not in DATASETS:
            raise AllrepError(f"profile {p.name!r}: unknown dataset {d!r}: choose from {', '.join(DATASETS)}")
    for b in (*p.backbones, *p.use_backbones, p.scratch.backbone):
        if b not in BACKBONE_NAMES:
            raise AllrepError(f"profile {p.name!r}: unknown backbone {b!r}: choose from {', '.join(BACKBONE_NAMES)}")
    for b in p.use_backbones:
        if b not in p.backbones:
            raise AllrepError(f"profile {p.name!r}: use_backbones names {b!r}, which backbones: does not define")
    for b, spec in p.backbones.items():
        if spec.weights not in ("imagenet", "none"):
            raise AllrepError(f"backbones.{b}.weights: {spec.weights!r}: use imagenet or none")
    for name, r in p.scratch.recipes.items():
        if r.schedule not in ("constant", "cosine"):
            raise AllrepError(f"scratch.recipes.{name}.schedule: {r.schedule!r}: choose constant or cosine")
    for rule in p.fusion.rules:
        if rule not in ("sum", "product", "max", "vote"):
            raise AllrepError(f"fusion.rules: unknown rule {rule!r}: choose from sum, product, max, vote")
    return p


# ----------------------------------------------------------------------------- files
def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _load_raw(name: str, seen: tuple = ()) -> dict:
    path = Path(name) if name.endswith(".yaml") else PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise AllrepError(f"unknown profile {name!r}: choose one of {', '.join(available_profiles())} "
                          f"(files in {PROFILES_DIR.name}/)")
    if name in seen:
        raise AllrepError(f"profile {name!r} extends itself")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise AllrepError(f"profile {path.name} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise AllrepError(f"profile {path.name}: expected a mapping of settings")
    parent = raw.pop("extends", None)
    return _merge(_load_raw(parent, seen + (name,)), raw) if parent else raw


def load_profile(name: str) -> Profile:
    """The typed profile ``name`` (or a path to a .yaml file)."""
    raw = _load_raw(name)
    raw.setdefault("name", Path(name).stem)
    return _check(load_section(Profile, raw, ""))
