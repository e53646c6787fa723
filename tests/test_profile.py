"""The typed profile and its strict loader."""
import pytest
import yaml

from allrep.errors import AllrepError
from allrep.profile import Head, Profile, Training, load_profile, load_section


def test_paper_and_smoke_load_typed():
    paper, smoke = load_profile("paper"), load_profile("smoke")
    assert isinstance(paper, Profile) and isinstance(paper.training, Training) and isinstance(paper.head, Head)
    assert paper.datasets == ("IDB1", "IDB2", "combined") and paper.splits.repeats == 5
    assert smoke.splits.repeats == 1 and smoke.splits.test_fraction == paper.splits.test_fraction  # extends paper
    assert smoke.backbones["mobilenetv2"].input_size == 97 and paper.backbones["mobilenetv2"].input_size is None
    assert set(paper.scratch.recipes) == {"naive", "ours"} and paper.scratch.recipes["ours"].augment is True
    assert paper.digest("training") != smoke.digest("training") and paper.digest("datasets") == smoke.digest("datasets")


def _write(tmp_path, monkeypatch, text):
    import allrep.profile as prof

    (tmp_path / "base.yaml").write_text((prof.PROFILES_DIR / "paper.yaml").read_text())
    (tmp_path / "p.yaml").write_text("extends: base\n" + text)
    monkeypatch.setattr(prof, "PROFILES_DIR", tmp_path)
    return load_profile("p")


@pytest.mark.parametrize("text,message", [
    ("fusion: {tie: healthy}\n", "unknown setting fusion.tie"),
    ("trainng: {epochs: 3}\n", "unknown setting trainng"),
    ("scratch: {recipes: {ours: {lr: 0.1}}}\n", "unknown setting scratch.recipes.ours.lr"),
    ("training: {epochs: many}\n", "training.epochs: expected an integer"),
    ("show_images: 1\n", "show_images: expected true or false"),
    ("datasets: [IDB3]\n", "unknown dataset 'IDB3'"),
    ("use_backbones: [resnet50]\n", "unknown backbone 'resnet50'"),
    ("scratch: {recipes: {ours: {schedule: step}}}\n", "schedule"),
])
def test_strict_loader_names_the_bad_key(tmp_path, monkeypatch, text, message):
    with pytest.raises(AllrepError, match=message.replace(".", r"\.").replace("(", r"\(")):
        _write(tmp_path, monkeypatch, text)


def test_a_good_override_loads(tmp_path, monkeypatch):
    paper = load_profile("paper")
    p = _write(tmp_path, monkeypatch, "training: {epochs: 3}\n")
    assert p.training.epochs == 3 and p.training.patience == paper.training.patience


def test_unknown_profile_is_one_line():
    with pytest.raises(AllrepError, match="unknown profile 'nosuch': choose one of confirmatory, paper, smoke"):
        load_profile("nosuch")


def test_every_setting_of_the_paper_profile_is_a_declared_field():
    raw = yaml.safe_load((load_profile.__globals__["PROFILES_DIR"] / "paper.yaml").read_text())
    flat = dict(load_profile("paper").flat())
    for section, value in raw.items():
        if isinstance(value, dict) and section not in ("backbones",):
            for key in value:
                assert any(k.startswith(f"{section}.{key}") for k in flat), f"{section}.{key} not loaded"


def test_load_section_is_the_one_style_for_read_back_values():
    h = load_section(Head, {"projection": 32, "gru_units": 16, "dense_units": 16, "dropout": 0.1,
                            "learning_rate": 0.001, "weight_decay": 0.0001}, "tuned")
    assert h == Head(32, 16, 16, 0.1, 0.001, 0.0001)
    with pytest.raises(AllrepError, match="unknown setting tuned.units"):
        load_section(Head, {"units": 3}, "tuned")
