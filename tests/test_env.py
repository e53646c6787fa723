"""The conda and pip routes pin the same versions, and the package is importable as installed."""
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _pins_req():
    return {l.split("==")[0].lower(): l.split("==")[1] for l in (ROOT / "requirements.txt").read_text().splitlines()
            if l.strip() and not l.startswith("#")}


def _pins_env():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return {p.split("==")[0].lower(): p.split("==")[1] for p in pip if "==" in p}


def test_environment_and_requirements_agree():
    req, env = _pins_req(), _pins_env()
    assert req == env
    for must in ("tensorflow", "keras", "keras-tuner", "jupyter-book", "papermill", "nbval", "seaborn", "scikit-learn",
                 "jupyterlab"):
        assert must in req
    assert req["jupyter-book"].startswith("1.")  # the Sphinx-based book the commands belong to


def test_installed_versions_match_pins():
    import importlib.metadata as md

    for name, version in _pins_req().items():
        assert md.version(name) == version, f"{name}: installed {md.version(name)}, pinned {version}"
