"""K GRU heads computed as one stack of tensors: the arithmetic of K separate ``build_head`` models,
in a handful of batched operations instead of K sets of small ones.

On a CPU a small head's cost is the number of operations, not their size (about 5 ms per head per
training step as K separate Keras sub-models); stacking the K heads' weights along a leading axis and
using batched ``keras.ops.einsum`` computes K heads in the operations of one, and compiling the step
with XLA fuses the GRU's many small element-wise operations (about twice as fast again on 2 cores).

The layer computes, for every head k, exactly what ``allrep.train.backbones.build_head`` computes (optional
per-position ReLU projection, a Keras GRU with ``reset_after=True``, dropout, ReLU dense, dropout,
softmax); :func:`to_head` copies head k's slice into a ``build_head`` model, which is what a final
model saves and ``allrep predict`` loads. Each head is initialised from its own seed with the Keras
initialisers a GRU and a Dense layer use (Glorot-uniform kernels, an orthogonal recurrent kernel, zero
biases), and its dropout masks come from its own generator (drawn outside the graph), so a head does not
depend on which other heads share the stack. Only ``keras`` and ``keras.ops``: TensorFlow and JAX both run it.
"""
from __future__ import annotations

import numpy as np

_CLASSES = {}
XLA = True  # compile the stacked training step with XLA (see build)


def _classes():
    if _CLASSES:
        return _CLASSES
    import keras
    from keras import ops

    class StackedHeads(keras.layers.Layer):
        def __init__(self, K, seq_len, channels, projection, units, dense, **kw):
            super().__init__(**kw)
            self.K, self.T, self.C, self.P, self.U, self.D = K, seq_len, channels, projection, units, dense

        def build(self, input_shape):
            K, C, P, U, D = self.K, self.C, self.P, self.U, self.D
            w = lambda name, shape: self.add_weight(shape=(K, *shape), initializer="zeros", name=name)  # noqa: E731
            if P:
                self.wp, self.bp = w("proj_kernel", (C, P)), w("proj_bias", (P,))
            inp = P or C
            self.wx, self.wh, self.b = w("gru_kernel", (inp, 3 * U)), w("gru_recurrent", (U, 3 * U)), w("gru_bias", (2, 3 * U))
            self.w1, self.b1 = w("dense_kernel", (U, D)), w("dense_bias", (D,))
            self.w2, self.b2 = w("probs_kernel", (D, 2)), w("probs_bias", (2,))
            self.rate = self.add_weight(shape=(K,), initializer="zeros", trainable=False, name="dropout_rate")

        def _dropout(self, x, mask, training):
            """Inverted dropout with a 0/1 mask drawn outside the graph from each head's own generator
            (:meth:`allrep.train.heads.HeadsTrainer.step`): no per-head operation, and a head's masks do
            not depend on the others."""
            if not training:
                return x
            keep = ops.reshape(1.0 - ops.cast(self.rate, x.dtype), (self.K, 1, 1))
            return x * ops.transpose(mask, (1, 0, 2)) / keep

        def call(self, inputs, training=False):
            x, m1, m2 = inputs
            x = ops.transpose(x, (1, 0, 2, 3))  # (B, K, T, C) -> (K, B, T, C)
            if self.P:
                x = ops.relu(ops.einsum("kbtc,kcp->kbtp", x, self.wp) + self.bp[:, None, None, :])
            xw = ops.einsum("kbtc,kcg->kbtg", x, self.wx) + self.b[:, 0][:, None, None, :]
            U = self.U
            h = ops.zeros((self.K, ops.shape(x)[1], U), dtype=x.dtype)
            for t in range(self.T):  # the GRU of keras.layers.GRU(reset_after=True), unrolled
                hw = ops.einsum("kbu,kug->kbg", h, self.wh) + self.b[:, 1][:, None, :]
                xt = xw[:, :, t]
                z = ops.sigmoid(xt[..., :U] + hw[..., :U])
                r = ops.sigmoid(xt[..., U:2 * U] + hw[..., U:2 * U])
                hh = ops.tanh(xt[..., 2 * U:] + r * hw[..., 2 * U:])
                h = z * h + (1.0 - z) * hh
            h = self._dropout(h, m1, training)
            d = ops.relu(ops.einsum("kbu,kud->kbd", h, self.w1) + self.b1[:, None, :])
            d = self._dropout(d, m2, training)
            logits = ops.einsum("kbd,kdo->kbo", d, self.w2) + self.b2[:, None, :]
            return ops.transpose(ops.softmax(logits, axis=-1), (1, 0, 2))  # (B, K, 2)

    class HeadwiseAdamW(keras.optimizers.Adam):
        """AdamW whose learning rate, weight decay and step count are per head: every variable is stacked
        along a leading head axis, and ``head_lr``/``head_wd``/``head_t0`` (optimiser variables: new values
        need no new trace) broadcast along it. Per element it does what ``keras.optimizers.AdamW`` does:
        ``w -= w * wd * lr``, then the Adam step at rate ``lr``, with Adam's bias correction counted from
        the step at which the head entered its slot (``head_t0``), so a head that starts in a slot freed
        mid-run trains exactly as one that started with the stack. (keras has no per-head optimiser; only
        ``update_step`` differs from keras' Adam, written out because its step count is per head.)"""

        def __init__(self, K, **kw):
            super().__init__(learning_rate=1.0, **kw)
            self.K = int(K)

        def build(self, variables):
            super().build(variables)
            self.head_lr = self.add_variable((self.K,), initializer="ones", name="head_lr")
            self.head_wd = self.add_variable((self.K,), initializer="zeros", name="head_wd")
            self.head_t0 = self.add_variable((self.K,), initializer="zeros", name="head_t0")

        def update_step(self, gradient, variable, learning_rate):
            dt = variable.dtype
            shape = (self.K,) + (1,) * (len(variable.shape) - 1)
            lr = ops.reshape(ops.cast(self.head_lr, dt), shape) * ops.cast(learning_rate, dt)
            wd = ops.reshape(ops.cast(self.head_wd, dt), shape)
            step = ops.reshape(ops.cast(self.iterations + 1, dt) - ops.cast(self.head_t0, dt), shape)
            self.assign(variable, ops.subtract(variable, ops.multiply(variable, wd * lr)))
            gradient = ops.cast(gradient, dt)
            b1, b2 = ops.cast(self.beta_1, dt), ops.cast(self.beta_2, dt)
            alpha = lr * ops.sqrt(1 - ops.power(b2, step)) / (1 - ops.power(b1, step))
            m = self._momentums[self._get_variable_index(variable)]
            v = self._velocities[self._get_variable_index(variable)]
            self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
            self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
            self.assign_sub(variable, ops.divide(ops.multiply(m, alpha), ops.add(ops.sqrt(v), self.epsilon)))

    _CLASSES.update(StackedHeads=StackedHeads, HeadwiseAdamW=HeadwiseAdamW)
    return _CLASSES


def build(K: int, seq_len: int, channels: int, projection: int, units: int, dense: int):
    """The stacked model: input (batch, K, seq_len, channels), output (batch, K, 2), compiled with the summed
    per-head cross-entropy and the per-head AdamW."""
    import keras
    from keras import ops

    c = _classes()
    inp = keras.Input((K, seq_len, channels), name="features")
    m1, m2 = keras.Input((K, units), name="dropout_mask_gru"), keras.Input((K, dense), name="dropout_mask_dense")
    layer = c["StackedHeads"](K, seq_len, channels, projection, units, dense, name="heads")
    model = keras.Model([inp, m1, m2], layer([inp, m1, m2]), name="stacked_heads")

    def loss(y, p):  # the sum over heads of each head's mean cross-entropy: head k's gradient is exactly
        # that of its own model (mean over its batch), whatever K is
        return ops.sum(ops.mean(keras.losses.sparse_categorical_crossentropy(y, p), axis=0))

    tf_backend = keras.backend.backend() == "tensorflow"
    model.compile(optimizer=c["HeadwiseAdamW"](K), loss=loss, jit_compile=XLA and not tf_backend)
    if XLA and tf_backend:
        # keras turns XLA off whenever TensorFlow's op determinism is on (a guard for GPU kernels); on a CPU
        # the compiled step is deterministic (reruns are tested bit for bit) and twice as fast, because it
        # fuses the GRU's many small element-wise operations
        model._jit_compile = True
    model.optimizer.build(model.trainable_variables)
    return model, layer


def initial_weights(seed: int, channels: int, projection: int, units: int, dense: int) -> dict:
    """One head's initial weights, drawn from its seed with the initialisers build_head's layers use."""
    import keras

    init = keras.initializers
    g = lambda shape, i: np.asarray(init.GlorotUniform(seed=seed * 8 + i)(shape), np.float32)  # noqa: E731
    inp = projection or channels
    out = dict(gru_kernel=g((inp, 3 * units), 1),
               gru_recurrent=np.asarray(init.Orthogonal(seed=seed * 8 + 2)((units, 3 * units)), np.float32),
               gru_bias=np.zeros((2, 3 * units), np.float32), dense_kernel=g((units, dense), 3),
               dense_bias=np.zeros(dense, np.float32), probs_kernel=g((dense, 2), 4), probs_bias=np.zeros(2, np.float32))
    if projection:
        out.update(proj_kernel=g((channels, projection), 0), proj_bias=np.zeros(projection, np.float32))
    return out


def to_head(layer_weights: dict, hp, seq_len: int, channels: int, name: str = "gru_head"):
    """A ``build_head`` model holding one head's weights (a dict as :func:`initial_weights` returns)."""
    from allrep.train.backbones import build_head

    m = build_head(seq_len, channels, hp, name=name)
    w = layer_weights
    if hp.projection:
        m.get_layer("projection").set_weights([w["proj_kernel"], w["proj_bias"]])
    m.get_layer("gru").set_weights([w["gru_kernel"], w["gru_recurrent"], w["gru_bias"]])
    m.get_layer("dense").set_weights([w["dense_kernel"], w["dense_bias"]])
    m.get_layer("probs").set_weights([w["probs_kernel"], w["probs_bias"]])
    for d in ("dropout_1", "dropout_2"):
        m.get_layer(d).set_weights([np.float32(hp.dropout)])
    return m
