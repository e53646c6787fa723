import numpy as np
import pytest
from conftest import starts_backend

from allrep.errors import AllrepError
from allrep.profile import Head
from allrep.train import backbones as models
from allrep.train.backbones import Weights, build_hybrid, resolve_weights


@pytest.mark.slow  # builds and runs three whole networks
@pytest.mark.parametrize("backbone,size", [("inceptionv3", 75), ("efficientnetb3", 64), ("mobilenetv2", 64)])
def test_each_hybrid_builds_with_two_class_output(backbone, size):
    w = resolve_weights(backbone, "none", input_size=size, seed=1)
    m = build_hybrid(w, Head(projection=16, gru_units=8, dense_units=8))
    assert m.output_shape == (None, 2)
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    p = np.asarray(m.predict(models.preprocess(x, w.preprocess), verbose=0))
    assert p.shape == (2, 2) and np.allclose(p.sum(1), 1, atol=1e-5)


@pytest.mark.slow  # builds two whole backbones
def test_native_feature_maps():
    assert feature_shape("inceptionv3", 299) == (8, 8, 2048)
    assert feature_shape("mobilenetv2", 224) == (7, 7, 1280)


def test_offline_manifest_resolution(weights_dir, monkeypatch):
    mb = resolve_weights("mobilenetv2", "imagenet", str(weights_dir))
    assert (mb.kind, mb.preprocess, mb.input_size) == ("imagenet-file", "torch", 225) and len(mb.sha256) == 64
    inc = resolve_weights("inceptionv3", "imagenet", str(weights_dir))
    assert (inc.kind, inc.preprocess, inc.input_size) == ("imagenet-file", "tf", 299)
    with pytest.raises(AllrepError, match="no ImageNet file for efficientnetb3.*random_if_unavailable: true"):
        resolve_weights("efficientnetb3", "imagenet", str(weights_dir), seed=7)  # no silent fallback
    eff = resolve_weights("efficientnetb3", "imagenet", str(weights_dir), seed=7, random_if_unavailable=True)
    assert eff.kind == "random" and "no offline ImageNet file" in eff.source and eff.key == "random-s7"
    monkeypatch.delenv("ALLREP_WEIGHTS_DIR", raising=False)
    official = resolve_weights("efficientnetb3", "imagenet", weights_dir=None)
    assert official.kind == "imagenet-official"


@pytest.mark.slow  # builds and runs two backbones
def test_loaded_imagenet_file_changes_features(weights_dir, data_root):
    from allrep.data.dataset import load_images, manifest

    w_img = resolve_weights("mobilenetv2", "imagenet", str(weights_dir), input_size=97)
    w_rnd = resolve_weights("mobilenetv2", "none", input_size=97, seed=0)
    x = load_images(manifest("IDB2")[:4], 97, data_root)
    f_img = np.asarray(models.build_backbone(w_img).predict(models.preprocess(x, "torch"), verbose=0))
    f_rnd = np.asarray(models.build_backbone(w_rnd).predict(models.preprocess(x, "torch"), verbose=0))
    assert f_img.shape == f_rnd.shape == (4, 4, 4, 1280)
    assert not np.allclose(f_img, f_rnd)
    # ImageNet features are sparse ReLU6 activations with structure; random ones are not the same scale
    assert abs(np.corrcoef(f_img.ravel(), f_rnd.ravel())[0, 1]) < 0.5


@starts_backend
def test_official_download_failure_says_what_to_do(monkeypatch):
    import keras

    def boom(**kw):
        raise OSError("URL fetch failure")

    monkeypatch.setattr(keras.applications, "MobileNetV2", boom)
    w = Weights("mobilenetv2", "imagenet-official", "imagenet", "tf", 224, "official")
    with pytest.raises(AllrepError, match="ALLREP_WEIGHTS_DIR"):
        models.build_backbone(w)


def test_preprocessing_modes():
    x = np.array([[[0, 127.5, 255]]], dtype=np.float32)
    assert np.allclose(models.preprocess(x, "tf"), [[[-1, 0, 1]]])
    t = models.preprocess(x, "torch")
    assert t[0, 0, 0] == pytest.approx((0 - 0.485) / 0.229)
    assert np.array_equal(models.preprocess(x, "raw"), x)


def test_unknown_backbone_and_weights():
    with pytest.raises(AllrepError, match="unknown backbone 'resnet50'"):
        resolve_weights("resnet50")
    with pytest.raises(AllrepError, match="unknown weights"):
        resolve_weights("mobilenetv2", "imagenet21k")


def feature_shape(backbone: str, input_size: int) -> tuple[int, int, int]:
    """(h, w, c) of the backbone's last feature map at ``input_size``."""
    import keras

    cls = getattr(keras.applications, models.BACKBONES[models.check_backbone(backbone)][0])
    m = cls(include_top=False, weights=None, input_shape=(input_size, input_size, 3))
    return tuple(int(d) for d in m.output_shape[1:])
