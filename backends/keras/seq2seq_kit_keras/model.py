"""The Keras model behind the backend contract: :class:`KerasModel`, driving either
network (:class:`.rnn.Seq2Seq` or :class:`.transformer.Transformer`, which share one
interface) and training it with the clipped Adam of :mod:`.optimizer`.

Training (one batch or several accumulated), loss, gradients, log-probabilities, encoding,
decoding steps and reordering each run as one compiled ``tf.function`` whose input
signature leaves batch and sequence lengths open (``None``), so batches of any shape, and a
Transformer's growing key/value caches, share a single trace. Arrays cross the boundary as
NumPy: ids int32, everything else float32.
"""

from __future__ import annotations

from . import configure_environment

# Must run before the first import of Keras / TensorFlow in the process.
configure_environment()

import functools  # noqa: E402
import threading  # noqa: E402
import weakref  # noqa: E402
from typing import Any, NamedTuple  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

from seq2seq_kit.backend import attention_at_width  # noqa: E402
from seq2seq_kit.batching import Batch  # noqa: E402
from seq2seq_kit.runtime import Runtime  # noqa: E402
from seq2seq_kit.spec import OptimizerSpec, Spec, TransformerSpec  # noqa: E402
from seq2seq_kit.weights import (  # noqa: E402
    check_optimizer_state,
    check_weights,
    initial_weights,
)

from .dropout import step_seed  # noqa: E402
from .ema import Ema  # noqa: E402
from .layout import variables_by_name  # noqa: E402
from .optimizer import make_optimizer  # noqa: E402
from .placement import placement  # noqa: E402
from .rnn import Seq2Seq  # noqa: E402
from .transformer import Transformer  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        f"the seq2seq-kit keras backend needs Keras' TensorFlow backend, but Keras runs on "
        f"{keras.backend.backend()!r}; set KERAS_BACKEND=tensorflow before Keras is imported"
    )

_IDS_2D = tf.TensorSpec([None, None], tf.int32)
_IDS_1D = tf.TensorSpec([None], tf.int32)
_FLOATS_2D = tf.TensorSpec([None, None], tf.float32)
_INT_SCALAR = tf.TensorSpec([], tf.int32)
_FLOAT_SCALAR = tf.TensorSpec([], tf.float32)
_BATCH = (_IDS_2D, _IDS_1D, _IDS_2D, _IDS_2D, _FLOATS_2D)


class DecoderState(NamedTuple):
    """The decoder state handed out by :meth:`KerasModel.encode` and :meth:`KerasModel.step`
    (tensors are immutable: no call changes a state it was given).

    Attributes:
        tensors: the network's own state: ``(layers, memory)`` for the RNN (see
            :mod:`.rnn`), a :class:`.transformer.Cache` for the Transformer. Source-wide
            tensors are S' wide, the longest source length (at least 1).
        weights: float32 [B, S'] attention weights of the step that produced this state;
            None from ``encode`` or without attention.
        source_width: S, the width of the ``src_ids`` encoded (``attention`` pads to it).
    """

    tensors: Any
    weights: tf.Tensor | None
    source_width: int


class _Compiled:
    """``fn`` traced once, on its first call, as a TensorFlow graph for every batch shape
    (the ``None`` dims of ``signature``).

    Tracing lazily keeps building a model cheap (tracing every function up front took 1-2 s
    a model, more with attention). The bodies branch on Python values only, so AutoGraph is
    off (it cost ~10% of the tracing time). Calling the concrete function skips
    ``tf.function``'s per-call argument binding, which cuts a decoding step from about 0.55
    to 0.3 ms (measured, H=32). XLA (``jit_compile``) is not used: it compiles once per
    distinct batch shape, and digit training took ~5x longer with it than with the plain
    graph. A Transformer's decoding step takes its key/value caches with an open length,
    so the caches growing by one position a step never retrace it (measured: one trace for
    256 steps; a step's time grows from 1.9 to 2.9 ms of CPU over those 256 positions, B=8,
    d_model 64, as the caches are copied one position longer).
    """

    def __init__(self, fn, signature, device: str | None = None):
        self._function = tf.function(fn, input_signature=signature, autograph=False)
        self._concrete = None
        self._device = device

    def __call__(self, *args):
        if self._concrete is None:
            # ops take the device scope they are traced in (the model's device: otherwise
            # TensorFlow would put them on a GPU whenever there is one)
            with tf.device(self._device):
                self._concrete = self._function.get_concrete_function()
        return self._concrete(*args)


class _Core:
    """What the compiled functions of a model bind: the network, its variables, the
    optimizer, the dropout seed, and the functions themselves.

    A graph captures the variables it was traced with, so a model's traces serve that
    model's variables only. Tracing is most of the cost of a model's first calls (seconds
    for a Transformer's training step), so a core outlives its model: :class:`_Pool` keeps
    it when the model is dropped and hands it, reset, to the next model built with the same
    spec, optimizer settings, device and precision, which then traces nothing.
    """

    def __init__(self, spec: Spec, optimizer_spec: OptimizerSpec, placement: Any):
        self.optimizer_spec = optimizer_spec
        self.label_smoothing = optimizer_spec.label_smoothing
        self.placement = placement
        with placement.building():
            self.network = Transformer(spec) if isinstance(spec, TransformerSpec) else Seq2Seq(spec)
            self.variables = variables_by_name(self.network)
            self.trainable = list(self.variables.values())
            # Adam steps these (OptimizerSpec.frozen left out); its moments are built for
            # every weight, so a frozen weight's stay as they are (zero)
            frozen = set(optimizer_spec.frozen)
            self.updated = [i for i, name in enumerate(self.variables) if name not in frozen]
            self.optimizer = make_optimizer(optimizer_spec)
            # fp16: Keras' dynamic loss scaling around Adam (it skips an update whose
            # gradient overflows and halves the scale; unscales before Adam clips)
            self.scaler = None
            if placement.precision == "fp16":
                self.scaler = keras.optimizers.LossScaleOptimizer(self.optimizer)
            # Build the moments now: a tf.function must not create variables later.
            (self.scaler or self.optimizer).build(self.trainable)
            # A variable, not a constant of the traces: restoring a seed retraces nothing.
            self.seed = tf.Variable(0, dtype=tf.int64, trainable=False, name="dropout_seed")
            self.ema = Ema(self.variables, optimizer_spec.ema_decay, frozen)
        # Every variable but the weights (which set_weights replaces) as first built: the
        # optimizer's step, learning rate and moments, a loss scale and its counter, the
        # moving average.
        seen = {id(v) for v in self.trainable}
        self._fresh = []
        shadows = self.ema.shadows.values()
        for v in (*self.network.variables, *self.optimizer.variables, *self._scaling(), *shadows):
            if id(v) not in seen:
                seen.add(id(v))
                self._fresh.append((v, v.numpy()))

        state = self.network.state_signature()
        device = None if placement.strategy is not None else placement.device
        compiled = functools.partial(_Compiled, device=device)
        gradients = [tf.TensorSpec(v.shape, tf.float32) for v in self.trainable]
        index = tf.TensorSpec([None], tf.int64)
        self.train_fn = compiled(self._train, (*_BATCH, _FLOAT_SCALAR))
        self.accumulate_fn = compiled(self._accumulate, (*_BATCH, _INT_SCALAR, _FLOAT_SCALAR))
        self.apply_fn = compiled(self._apply, (gradients,))
        if placement.strategy is not None:
            self.sum_apply_fn = compiled(self._sum_and_apply, (gradients,))
        self.loss_fn = compiled(self._loss, _BATCH)
        self.gradients_fn = compiled(self._gradients, _BATCH)
        self.log_probs_fn = compiled(self._log_probs, _BATCH[:3])
        self.encode_fn = compiled(self._encode, (_IDS_2D, _IDS_1D))
        self.step_fn = compiled(self._step, (_IDS_1D, state))
        self.reorder_fn = compiled(self._reorder, (state, index))
        self.take_fn = compiled(self._reorder, (_FLOATS_2D, index))

    def reset(self, seed: int) -> None:
        """Back to the state of a core just built for a model of ``seed`` (the weights
        excepted: the model sets them)."""
        for variable, value in self._fresh:
            variable.assign(value)
        self.optimizer.exact_learning_rate = float(self.optimizer_spec.learning_rate)
        self.seed.assign(seed)

    def _scaling(self) -> list:
        return [] if self.scaler is None else list(self.scaler.variables)

    @property
    def size(self) -> int:
        """Bytes of the weights and of every other variable (the optimizer's moments)."""
        weights = sum(4 * int(np.prod(v.shape)) for v in self.trainable)
        return weights + sum(value.nbytes for _, value in self._fresh)

    # ------------------------------------------------------------------ compiled bodies

    def _token_losses(self, logits, tgt_out):
        """float32 [B, T] loss of each position: cross-entropy, or with label smoothing
        ``eps`` (Szegedy et al. 2016, section 7) ``(1 - eps) * -log p(y) + eps *
        mean_v(-log p(v))``, as :class:`~seq2seq_kit.spec.OptimizerSpec` defines it."""
        eps = self.label_smoothing
        if not eps:
            return ops.sparse_categorical_crossentropy(tgt_out, logits, from_logits=True)
        log_p = ops.log_softmax(logits, axis=-1)
        nll = -ops.take_along_axis(log_p, tgt_out[..., None], axis=-1)[..., 0]
        return (1.0 - eps) * nll - eps * ops.mean(log_p, axis=-1)

    def _summed_loss(self, batch, dropout_seed):
        """Sum over the non-pad positions of ``batch`` of the token losses."""
        src_ids, src_lengths, tgt_in, tgt_out, tgt_mask = batch
        logits = self.network(src_ids, src_lengths, tgt_in, dropout_seed=dropout_seed)
        logits = ops.cast(logits, "float32")  # the loss in float32 under mixed precision
        return ops.sum(self._token_losses(logits, tgt_out) * tgt_mask)

    def _loss_and_gradients(self, batch, total, dropout_seed=None, scaled=False):
        """(summed loss / total, its gradients, dense) with ``total`` the token count the
        mean is over; a count of 0 gives loss 0 and zero gradients, not 0 / 0. ``scaled``:
        under fp16, the gradients of the loss times the loss scale (for :meth:`_apply`)."""
        with tf.GradientTape() as tape:
            loss = self._summed_loss(batch, dropout_seed) / ops.maximum(total, 1.0)
            target = loss if self.scaler is None or not scaled else self.scaler.scale_loss(loss)
        grads = tape.gradient(target, self.trainable)
        # Embedding lookups give sparse (IndexedSlices) gradients; densify so that Adam
        # decays the moments of every row, as a dense Adam does. A weight no gradient
        # reaches (the Transformer's key biases) gets zeros, not None.
        return loss, [
            ops.zeros(v.shape, "float32") if g is None else tf.convert_to_tensor(g)
            for g, v in zip(grads, self.trainable, strict=True)
        ]

    def _accumulate(self, *arguments):
        """The loss part and gradients of the batch at ``position`` of an update whose
        batches hold ``total`` target tokens, with that batch's dropout masks."""
        *batch, position, total = arguments
        seed = step_seed(self.seed, self.optimizer.iterations, position)
        return self._loss_and_gradients(batch, total, seed, scaled=True)

    def _apply(self, grads):
        # the update count before the step (an update the fp16 loss scale skips leaves it,
        # and the average, as they are); the explicit dependency orders the read before
        # Adam's increment, which a traced graph did not (the average then never moved)
        before = tf.identity(self.optimizer.iterations.value)
        # the frozen weights' gradients stay out: no step, and no part in the clipping norm
        grads = [grads[i] for i in self.updated]
        variables = [self.trainable[i] for i in self.updated]
        with tf.control_dependencies([before]):
            self._adam(grads, variables)
        self.ema.update(before, self.optimizer.iterations)
        return self.optimizer.iterations

    def _adam(self, grads, variables):
        if self.scaler is None:
            self.optimizer.apply(grads, variables)  # clips the summed gradient first
        else:
            # LossScaleOptimizer.apply's own path for TensorFlow's default strategy, and
            # for a mirrored one too: the gradients are already summed, so every worker
            # takes the same decision on overflow (apply() refuses cross-replica context)
            self.scaler._common_apply(grads, variables)

    def _sum_and_apply(self, grads):
        """Sum ``grads`` over the workers (the strategy's all-reduce, in replica context),
        then clip and apply them as :meth:`_apply` does, on every worker alike."""

        def replica(grads):
            context = tf.distribute.get_replica_context()
            # identity: a tensor on the replica's device (an argument has none to send from)
            return context.all_reduce(tf.distribute.ReduceOp.SUM, [tf.identity(g) for g in grads])

        return self._apply(self.placement.strategy.run(replica, args=(grads,)))

    def _train(self, *arguments):
        *batch, total = arguments
        loss, grads = self._accumulate(*batch, tf.constant(0, tf.int32), total)
        self._apply(grads)
        return loss

    def _loss(self, *batch):
        return self._summed_loss(batch, None) / ops.maximum(ops.sum(batch[4]), 1.0)

    def _gradients(self, *batch):
        return self._loss_and_gradients(batch, ops.sum(batch[4]))[1]

    def _log_probs(self, src_ids, src_lengths, tgt_in):
        logits = self.network(src_ids, src_lengths, tgt_in)
        return ops.log_softmax(ops.cast(logits, "float32"), axis=-1)

    def _encode(self, src_ids, src_lengths):
        return _float32(self.network.encode(src_ids, src_lengths))

    def _step(self, prev_ids, tensors):
        logits, tensors, weights = _float32(self.network.step(prev_ids, tensors))
        return ops.log_softmax(logits, axis=-1), tensors, weights

    def _reorder(self, tensors, index):
        return tf.nest.map_structure(lambda t: ops.take(t, index, axis=0), tensors)


class _Pool:
    """The cores of dropped models, for reuse by the next model of the same key (spec,
    optimizer settings, device, precision), most recently dropped first.

    Only a dropped model's core comes here (a finalizer on the model), so two live models
    never share variables. Idle cores are kept up to ``limit`` bytes of variables in all,
    the oldest dropped first when more come. A test suite building hundreds of small models
    then traces each spec's functions about once (more where several of a spec live at
    once).
    """

    def __init__(self, limit: int):
        self.limit = limit
        self._idle: list[tuple[Any, _Core]] = []
        # re-entrant: a garbage collection inside a locked section can drop a model, and
        # its finalizer gives from the same thread
        self._lock = threading.RLock()

    def take(self, key: Any) -> _Core | None:
        with self._lock:
            for i in range(len(self._idle) - 1, -1, -1):
                if self._idle[i][0] == key:
                    return self._idle.pop(i)[1]
        return None

    def give(self, key: Any, core: _Core) -> None:
        size = core.size
        if size > self.limit:
            return
        with self._lock:
            self._idle.append((key, core))
            total = sum(c.size for _, c in self._idle)
            while total > self.limit:
                total -= self._idle.pop(0)[1].size


# Idle cores of at most 64 MiB of variables: the suite's models take a few MiB in all,
# while a large dropped model (a server that loaded another) is not held on to.
_POOL = _Pool(64 << 20)


class KerasModel:
    """An encoder-decoder implementing :class:`seq2seq_kit.backend.Model` with Keras 3 on
    TensorFlow: the RNN of a :class:`~seq2seq_kit.spec.ModelSpec` (LSTM or GRU cells, an
    optional bidirectional encoder, attention and dropout) or the Transformer of a
    :class:`~seq2seq_kit.spec.TransformerSpec`.

    Args:
        spec: the architecture.
        seed: seeds :func:`seq2seq_kit.weights.initial_weights` (the starting weights, the
            same for every backend) and, with the update count and the batch's position in
            the accumulation list, the dropout masks. Keras' own random state is neither
            used nor reseeded (the initial values its initializers draw are overwritten at
            once).
        optimizer: Adam settings and label smoothing for :meth:`train_step` (default
            ``OptimizerSpec()``).
        runtime: threads, device, precision and data-parallel group
            (:func:`.placement.placement`); default one CPU thread-pool setting, the CPU,
            float32, one process. With ``bf16`` the layers compute in bfloat16 (Keras'
            ``mixed_bfloat16`` policy) while weights, Adam's moments, the loss and every
            returned array stay float32. With a group (:mod:`.distributed`) the variables
            are mirrored by its strategy and :meth:`train_step` sums the gradients over
            the workers.

    Attributes:
        spec: the spec.
        network: the :class:`.rnn.Seq2Seq` or :class:`.transformer.Transformer` layer.
        optimizer: the Keras optimizer (:class:`~seq2seq_kit_keras.optimizer.Adam`).
        ema: the :class:`.ema.Ema` of the weights (no shadows without ``ema_decay``).

    The decoder state handed out by :meth:`encode` and :meth:`step` is a
    :class:`DecoderState`. Arguments are not checked here: ``Backend.create`` returns the
    model inside :class:`seq2seq_kit.validation.CheckedModel`, which does it for every
    backend.
    """

    def __init__(
        self,
        spec: Spec,
        *,
        seed: int = 0,
        optimizer: OptimizerSpec | None = None,
        runtime: Runtime | None = None,
    ):
        self.spec = spec
        self.optimizer_spec = optimizer or OptimizerSpec()
        self.label_smoothing = self.optimizer_spec.label_smoothing
        self.placement = placement(runtime)
        # a strategy's mirrored variables belong to its group: such a core is never shared
        key = None
        if self.placement.strategy is None:
            key = (spec, self.optimizer_spec, self.placement.device, self.placement.precision)
        core = (_POOL.take(key) if key is not None else None) or _Core(
            spec, self.optimizer_spec, self.placement
        )
        core.reset(seed)
        if key is not None:
            # the core must not refer to this model, or the model would never be dropped
            weakref.finalize(self, _POOL.give, key, core).atexit = False
        self.network, self.optimizer, self.ema = core.network, core.optimizer, core.ema
        self._variables, self._trainable, self._seed = core.variables, core.trainable, core.seed
        self._train_fn, self._accumulate_fn = core.train_fn, core.accumulate_fn
        self._apply_fn, self._sum_apply_fn = core.apply_fn, getattr(core, "sum_apply_fn", None)
        self._loss_fn, self._gradients_fn = core.loss_fn, core.gradients_fn
        self._log_probs_fn, self._encode_fn = core.log_probs_fn, core.encode_fn
        self._step_fn, self._reorder_fn, self._take_fn = core.step_fn, core.reorder_fn, core.take_fn
        self.set_weights(initial_weights(spec, seed))

    # ------------------------------------------------------------------ Model protocol

    def train_step(self, batches: list[Batch], total_tokens: int | None = None) -> float:
        """One Adam step on the concatenation of ``batches`` (a non-empty list): the
        gradient of (sum of token losses) / (non-pad target tokens of all batches), summed
        batch by batch, then clipped and applied once. Dropout (if the spec asks) draws its
        masks from (seed, updates so far, position in ``batches``). Returns that mean loss
        (nats per target token, label-smoothed if asked, with those masks) before the
        step.

        Data-parallel (built with a group): ``batches`` are this worker's share (possibly
        none) and ``total_tokens`` the target tokens of the whole update; the gradient of
        (this worker's token losses) / ``total_tokens`` is summed over the workers by the
        strategy's all-reduce before clipping, every worker applies that same update, and
        the return value is this worker's share of the loss. With an ``ema_decay``, the
        moving average takes in the updated weights (:mod:`.ema`)."""
        arrays = [self._batch_arrays(batch) for batch in batches]
        total = np.float32(sum(float(a[4].sum()) for a in arrays))
        if self.placement.strategy is not None:
            return self._train_shared(arrays, np.float32(total_tokens or total))
        if len(arrays) == 1:  # one fused graph: no gradients cross back to Python
            return float(self._train_fn(*arrays[0], total))
        loss, summed = self._accumulated(arrays, total)
        self._apply_fn(summed)
        return loss

    def _train_shared(self, arrays: list[tuple[np.ndarray, ...]], total: np.float32) -> float:
        """This worker's part of a data-parallel update (:meth:`train_step`): its batches'
        loss and gradient (zeros without batches: it still joins the all-reduce)."""
        loss, summed = self._accumulated(arrays, total)
        if summed is None:
            summed = [np.zeros(v.shape, np.float32) for v in self._trainable]
        self._sum_apply_fn(summed)
        return loss

    def _accumulated(self, arrays: list[tuple[np.ndarray, ...]], total: np.float32) -> tuple:
        """The summed loss and gradients of ``arrays`` (batch by batch, each over ``total``
        target tokens); gradients None without batches."""
        loss, summed = 0.0, None
        for position, batch in enumerate(arrays):
            part, grads = self._accumulate_fn(*batch, np.int32(position), total)
            loss += float(part)
            summed = (
                grads if summed is None else [a + g for a, g in zip(summed, grads, strict=True)]
            )
        return loss, summed

    def loss(self, batch: Batch) -> float:
        """Mean cross-entropy in nats over the positions where ``batch.tgt_mask`` is 1
        (label-smoothed if the optimizer spec asks)."""
        return float(self._loss_fn(*self._batch_arrays(batch)))

    def gradients(self, batch: Batch) -> dict[str, np.ndarray]:
        """d :meth:`loss` / d weight, float32, for every canonical name and shape. Nothing
        is updated."""
        grads = self._gradients_fn(*self._batch_arrays(batch))
        return {name: g.numpy() for name, g in zip(self._variables, grads, strict=True)}

    def log_probs(self, batch: Batch) -> np.ndarray:
        """Teacher-forced log-probabilities, float32 [B, T, V], for every ``tgt_in``
        position (padding included)."""
        src_ids, src_lengths, tgt_in, _, _ = self._batch_arrays(batch)
        return self._log_probs_fn(src_ids, src_lengths, tgt_in).numpy()

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> DecoderState:
        """Encoder over int32 [B, S] ids with int32 [B] lengths -> the decoder's initial
        :class:`DecoderState`. RNN: per layer the encoder's state after ``src_lengths[b]``
        tokens (zero for length 0; forward and reverse halves concatenated when
        bidirectional), and the attention memory. Transformer: empty self-attention caches,
        the cross-attention keys and values of every decoder layer, the source mask."""
        tensors = self._encode_fn(*_trim_sources(src_ids, src_lengths))
        return DecoderState(tensors, None, src_ids.shape[1])

    def step(self, prev_ids: np.ndarray, state: DecoderState) -> tuple[np.ndarray, DecoderState]:
        """One decoder step: int32 [B] previous ids and the state -> (float32 [B, V]
        log-probabilities of the next token, new state)."""
        log_probs, tensors, weights = self._step_fn(prev_ids, state.tensors)
        return log_probs.numpy(), state._replace(tensors=tensors, weights=weights)

    def reorder(self, state: DecoderState, index: np.ndarray) -> DecoderState:
        """Rows ``index`` (int64 [B']) of every tensor in ``state``, as a new state."""
        index = np.asarray(index, dtype=np.int64)
        tensors = self._reorder_fn(state.tensors, index)
        weights = None if state.weights is None else self._take_fn(state.weights, index)
        return state._replace(tensors=tensors, weights=weights)

    def attention(self, state: DecoderState) -> np.ndarray | None:
        """Float32 [B, S] attention weights of the step that returned ``state`` (S the
        width of the encoded ``src_ids``; 0 past each source's length, rows summing to 1,
        or all 0 for an empty source); for a Transformer the top decoder layer's
        cross-attention averaged over heads. None for an ``encode`` state or without
        attention."""
        if state.weights is None:
            return None
        return attention_at_width(state.weights.numpy(), state.source_width)

    def set_learning_rate(self, learning_rate: float) -> None:
        """Adam's step size from the next :meth:`train_step` on (a variable the compiled
        step reads, so changing it retraces nothing)."""
        self.optimizer.set_learning_rate(learning_rate)

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """Adam's state: ``step`` (int64 scalar), ``learning_rate`` (float64 scalar),
        ``seed`` (int64 scalar: the dropout seed) and float32 ``m/NAME``, ``v/NAME`` for
        every canonical weight NAME (copies); with an ``ema_decay``, the moving average as
        ``ema/NAME`` too."""
        state = self.optimizer.get_state(self._variables)
        state["seed"] = np.array(int(self._seed.numpy()), dtype=np.int64)
        if self.ema.decay:
            state.update({f"ema/{name}": w for name, w in self.ema_weights().items()})
        return state

    def set_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`optimizer_state` (the dropout seed too, so masks continue as in
        the saved run); ``ValueError`` naming every missing, unexpected or mis-shaped
        entry, before changing anything."""
        arrays = {key: np.asarray(value) for key, value in state.items()}
        check_optimizer_state(self.spec, arrays, ema=bool(self.ema.decay))
        self._seed.assign(int(arrays.pop("seed")))
        self.optimizer.set_state(self._variables, arrays)
        if self.ema.decay:
            self.ema.load({name: arrays[f"ema/{name}"] for name in self._variables})

    def ema_weights(self) -> dict[str, np.ndarray]:
        """Float32 copies of the moving average of the weights, canonical names and shapes
        (:class:`seq2seq_kit.backend.EmaModel`); the weights before the first update or
        without an ``ema_decay``."""
        if not self.ema.decay or not int(self.optimizer.iterations.numpy()):
            return self.get_weights()
        return self.ema.weights()

    def get_weights(self) -> dict[str, np.ndarray]:
        """Float32 copies of all weights, canonical names and shapes."""
        return {
            name: np.array(var.numpy(), dtype=np.float32, copy=True)
            for name, var in self._variables.items()
        }

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Replace all weights. Raises ``ValueError`` naming any missing, unexpected or
        mis-shaped weight, before changing anything."""
        check_weights(self.spec, {name: np.asarray(w) for name, w in weights.items()})
        for name, var in self._variables.items():
            var.assign(np.asarray(weights[name], dtype=np.float32))

    # ------------------------------------------------------------------ batches

    def _batch_arrays(self, batch: Batch) -> tuple[np.ndarray, ...]:
        """The arrays of ``batch`` the compiled functions take."""
        src_ids, src_lengths = _trim_sources(batch.src_ids, batch.src_lengths)
        tgt_in = np.asarray(batch.tgt_in, dtype=np.int32)
        tgt_out = np.asarray(batch.tgt_out, dtype=np.int32)
        tgt_mask = np.asarray(batch.tgt_mask, dtype=np.float32)
        return src_ids, src_lengths, tgt_in, tgt_out, tgt_mask


def _float32(tensors):
    """``tensors`` (a nest) with every floating tensor float32: decoder states and logits
    computed in bfloat16 under mixed precision cross the boundary as float32 (the traces'
    signatures, and the contract, say float32); a no-op in float32."""
    return tf.nest.map_structure(
        lambda t: ops.cast(t, "float32") if t is not None and t.dtype.is_floating else t,
        tensors,
    )


def _trim_sources(src_ids: np.ndarray, src_lengths: np.ndarray) -> tuple[np.ndarray, ...]:
    """Drop source columns past the longest length (no row's final state or real memory
    position can depend on them) but keep at least one, adding a PAD column to a [B, 0]
    array: Keras' RNN loop needs a time step, and a column masked in every row leaves every
    state at zero, which is the answer for length 0 (and attention over it gives zero
    weights and a zero context)."""
    steps = max(int(src_lengths.max(initial=0)), 1)
    src_ids = np.asarray(src_ids, dtype=np.int32)
    if src_ids.shape[1] < steps:
        src_ids = np.zeros((src_ids.shape[0], steps), dtype=np.int32)
    return src_ids[:, :steps], np.asarray(src_lengths, dtype=np.int32)
