"""Reproducibility set-up: one call at the top of every notebook and script."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path


def setup(seed: int = 0, threads: int | None = None) -> dict:
    """Deterministic kernels and seeds; returns the environment facts the book reports.

    Must run before keras is imported for the environment variables to apply. Keras is seeded
    (``keras.utils.set_random_seed``) as soon as it is imported, not here: a notebook that only reads cached
    heads never starts the backend (about 5 s of CPU each). wrapt's post-import hook (a declared dependency) calls
    it at once when keras is already imported. The returned facts name no accelerator ("not started"): a script
    that reports one calls :func:`environment` once its backend has started.
    """
    import random

    import numpy as np
    import wrapt

    pin_numerics()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    random.seed(int(seed))
    np.random.seed(int(seed))
    wrapt.register_post_import_hook(lambda keras: keras.utils.set_random_seed(int(seed)), "keras")
    return environment(start_backend=False)


def seed_for(seed: int, *parts) -> int:
    """A stable 31-bit seed derived from the profile seed and names (no ``random()``)."""
    h = hashlib.sha256(json.dumps([int(seed), *map(str, parts)]).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def digest(obj) -> str:
    """A short, stable hash of a JSON-able object (cache keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def accelerator() -> str:
    """The accelerator Keras' backend sees, in words ("none" on a CPU-only machine)."""
    import keras

    try:
        if keras.backend.backend() == "jax":
            import jax

            gpus = [d for d in jax.devices() if d.platform != "cpu"]
            return ", ".join(sorted({d.device_kind for d in gpus})) or "none"
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            return ", ".join(d.name for d in tf.config.list_physical_devices("GPU")) or "none"
    except Exception:  # noqa: BLE001 - a provenance field must never stop a run
        return "unknown"
    return "unknown"


CODE_PATHS = ("allrep", "profiles", "notebooks")  # what "+dirty" looks at: the code, the settings, the notebooks


def git_commit(root=None) -> str:
    """The one commit recorder: HEAD's 12-character hash, with ``+dirty`` when the code, the profiles or the
    notebooks differ from it; "unknown" outside git. Results, ledger rows and executed notebooks carry it."""
    from allrep.profile import PROJECT_ROOT

    def git(*args):
        return subprocess.run(["git", "-C", str(root or PROJECT_ROOT), *args], capture_output=True, text=True,
                              timeout=30, check=True).stdout.strip()

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--", *CODE_PATHS)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if head and dirty else "")


def configured_backend() -> str:
    """The Keras backend's name, without starting it. Once keras is imported, keras' own answer; before, its rule
    (``keras/src/backend/config.py``, read here because keras exposes the name only once imported): a non-empty
    ``KERAS_BACKEND``, else the "backend" of ``keras.json`` in ``KERAS_HOME`` (when set at all), or in ``.keras``
    under the home folder (``/tmp`` when that is not writable), else tensorflow."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    if "KERAS_HOME" in os.environ:
        home = os.environ["KERAS_HOME"]
    else:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    try:
        return json.loads(Path(os.path.expanduser(os.path.join(home, "keras.json"))).read_text()).get("backend",
                                                                                                     "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"


def environment(start_backend: bool = True) -> dict:
    """Versions and hardware, for provenance: what matters (OS, architecture, CPU count, accelerator),
    never a host name or a path. ``start_backend=False``: the accelerator is "not started" unless keras is
    already imported (what :func:`setup` returns for a notebook's set-up line; the runner, and a script once its
    backend has started, record the full provenance with the default)."""
    import importlib.metadata as md

    import numpy as np

    started = start_backend or "keras" in sys.modules
    info = dict(python=sys.version.split()[0], os=platform.system(), machine=platform.machine(),
                cpus=os.cpu_count(), accelerator=accelerator() if started else "not started",
                keras=md.version("keras"), backend=configured_backend(), numpy=np.__version__, commit=git_commit())
    for pkg in ("tensorflow", "jax", "keras-tuner", "scikit-learn", "papermill"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return info


@contextlib.contextmanager
def quiet_stderr():
    """Silence file descriptor 2 (TensorFlow's C++ start-up lines, which ignore TF_CPP_MIN_LOG_LEVEL)
    while the backend is imported, so nothing comes between the progress bar's lines."""
    try:
        fd = os.dup(2)
    except OSError:  # no stderr to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)


# The numeric settings of every process that extracts features, trains or predicts, whatever its caller's
# environment holds. TensorFlow's op determinism changes the arithmetic of the compiled training step (measured: a
# head trained with and without it ends with other weights, bit for bit), so a serial run started from a shell
# without it and Dask workers started from an environment with it would not write the same files.
NUMERICS = {"TF_DETERMINISTIC_OPS": "1"}


def pin_numerics() -> None:
    """Set :data:`NUMERICS` in this process's environment, which its children (notebook kernels, Dask workers of a
    LocalCluster) inherit. Must come before the backend starts: a process whose TensorFlow already started with
    other settings is refused with a message, since its arithmetic would differ from every other process's."""
    from allrep.errors import AllrepError

    wrong = {k: os.environ.get(k) for k, v in NUMERICS.items() if os.environ.get(k) != v}
    if not wrong:
        return
    if "tensorflow" in sys.modules:
        shown = ", ".join(f"{k}={v}" for k, v in NUMERICS.items())
        raise AllrepError(f"TensorFlow started in this process with {wrong}; allrep computes with {shown}: set them "
                          "in the environment of this process (or of the Dask workers) before it starts")
    os.environ.update(NUMERICS)


def quiet_backend() -> None:
    """Import the Keras backend, with the pinned numerics (:func:`pin_numerics`) and file descriptor 2 silenced
    (:func:`quiet_stderr`)."""
    pin_numerics()
    with quiet_stderr():
        import keras  # noqa: F401


def cpu() -> dict:
    """The CPU model and instruction-set flags of the CPU this runs on (Linux /proc/cpuinfo; else the platform's word)."""
    info = dict(machine=platform.machine(), model=platform.processor() or "unknown", flags=[])
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and info["model"] in ("unknown", platform.machine()):
                info["model"] = value.strip()
            elif key.strip() == "flags" and not info["flags"]:
                info["flags"] = sorted(f for f in value.split() if f.startswith(("avx", "sse", "fma", "amx")))
    except OSError:
        pass
    return info
