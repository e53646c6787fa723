"""A list of head tasks trained in one pool (:func:`allrep.train.heads.run_pool` over a list, in order): the form
the benchmarks (``scripts/benchmark.py``, ``scripts/bench_heads.py``) and the engine's tests use. The pipeline
itself trains through the member engine (:mod:`allrep.train.members`)."""
from allrep.train.heads import SLOTS, Tasks, run_pool


def train_heads(tasks, epochs: int, patience: int, batch_size: int, min_delta: float = 0.0, reuse: bool = True,
                slots: int = SLOTS, keep_weights: bool = False) -> list[dict]:
    """One result per task, in order (:func:`run_pool` over a list)."""
    src = Tasks(tasks)
    if len(src):
        run_pool(src, epochs, patience, batch_size, min_delta, keep_weights, slots=slots, reuse=reuse)
    return src.results
