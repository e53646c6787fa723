"""Profiles: every setting of a run lives in ``profiles/<name>.yaml``.

A profile may ``extends:`` another and override any key. Notebooks and the
runner take only a profile name (and a variant: dataset, backbone), never
settings of their own. ``Config.slice(*keys)`` is the part of a profile a step
depends on; the runner hashes it to decide what to re-run.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import yaml

from .errors import AllrepError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROFILES_DIR = Path(os.environ.get("ALLREP_PROFILES", PROJECT_ROOT / "profiles"))


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
                          f"(files in {PROFILES_DIR})")
    if name in seen:
        raise AllrepError(f"profile {name!r} extends itself")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise AllrepError(f"profile {path} is not valid YAML: {e}") from None
    parent = raw.pop("extends", None)
    return _merge(_load_raw(parent, seen + (name,)), raw) if parent else raw


class Config(dict):
    """A loaded profile: a dict with helpers."""

    @property
    def name(self) -> str:
        return self["name"]

    def get_path(self, dotted: str):
        cur = self
        for k in dotted.split("."):
            if not isinstance(cur, dict) or k not in cur:
                raise AllrepError(f"profile {self.get('name')!r} has no setting {dotted!r}")
            cur = cur[k]
        return cur

    def slice(self, *keys: str) -> dict:
        return {k: self.get_path(k) for k in keys}

    def digest(self, *keys: str) -> str:
        blob = json.dumps(self.slice(*keys) if keys else dict(self), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def backbone(self, name: str) -> dict:
        from .models import check_backbone

        check_backbone(name)
        return self["backbones"][name]


def load_profile(name: str) -> Config:
    raw = _load_raw(name)
    raw.setdefault("name", Path(name).stem)
    return Config(raw)
