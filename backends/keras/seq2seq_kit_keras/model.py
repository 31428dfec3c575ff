"""The Keras model behind the backend contract: :class:`KerasModel`.

The network is :class:`seq2seq_kit_keras.lstm.Seq2Seq` (Keras layers); training, loss,
gradients, log-probabilities, encoding and decoding steps each run as one compiled
``tf.function`` whose input signature leaves batch and sequence lengths open (``None``),
so batches of any shape share a single trace. Arrays cross the boundary as NumPy: ids
int32, everything else float32.
"""

from __future__ import annotations

from . import configure_environment

# Must run before the first import of Keras / TensorFlow in the process.
configure_environment()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

from seq2seq_kit.batching import Batch  # noqa: E402
from seq2seq_kit.errors import BackendError  # noqa: E402
from seq2seq_kit.spec import ModelSpec, OptimizerSpec  # noqa: E402
from seq2seq_kit.weights import check_weights, initial_weights  # noqa: E402

from .lstm import Seq2Seq, State  # noqa: E402
from .optimizer import make_optimizer  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        f"the seq2seq-kit keras backend needs Keras' TensorFlow backend, but Keras runs on "
        f"{keras.backend.backend()!r}; set KERAS_BACKEND=tensorflow before Keras is imported"
    )

_IDS_2D = tf.TensorSpec([None, None], tf.int32)
_IDS_1D = tf.TensorSpec([None], tf.int32)
_MASK = tf.TensorSpec([None, None], tf.float32)


class _Compiled:
    """``fn`` traced once, on its first call, as a TensorFlow graph for every batch shape
    (the ``None`` dims of ``signature``).

    Tracing lazily keeps building a model cheap (tracing all seven functions up front took
    1-2 s a model). Calling the concrete function skips ``tf.function``'s per-call argument
    binding, which cuts a decoding step from about 0.55 to 0.3 ms (measured, H=32). XLA
    (``jit_compile``) is not used: it compiles once per distinct batch shape, and digit
    training took ~5x longer with it than with the plain graph.
    """

    def __init__(self, fn, signature):
        self._function = tf.function(fn, input_signature=signature)
        self._concrete = None

    def __call__(self, *args):
        if self._concrete is None:
            self._concrete = self._function.get_concrete_function()
        return self._concrete(*args)


class KerasModel:
    """LSTM encoder-decoder implementing :class:`seq2seq_kit.backend.Model` with Keras 3 on
    TensorFlow.

    Args:
        spec: the architecture.
        seed: seeds :func:`seq2seq_kit.weights.initial_weights` (the starting weights, the
            same for every backend) and, through ``keras.utils.set_random_seed``, Keras'
            random state -- which also reseeds Python's ``random`` and NumPy's global RNG.
        optimizer: Adam settings for :meth:`train_step` (default ``OptimizerSpec()``).

    Attributes:
        spec: the :class:`ModelSpec`.
        network: the :class:`~seq2seq_kit_keras.lstm.Seq2Seq` Keras model.
        optimizer: the Keras optimizer (:class:`~seq2seq_kit_keras.optimizer.Adam`).

    The decoder state handed out by :meth:`encode` and :meth:`step` is a tuple with one
    ``(h, c)`` pair of float32 [B, H] tensors per layer, bottom layer first; tensors are
    immutable, so no call ever changes a state it was given.

    Builds unidirectional LSTMs without attention or dropout; other specs raise
    :class:`~seq2seq_kit.errors.BackendError`.
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        seed: int = 0,
        optimizer: OptimizerSpec | None = None,
    ):
        _check_supported(spec)
        keras.utils.set_random_seed(seed)
        self.spec = spec
        self.optimizer_spec = optimizer or OptimizerSpec()
        self.network = Seq2Seq(spec)
        self._variables = self.network.variables_by_name()
        self._trainable = list(self._variables.values())
        self.optimizer = make_optimizer(self.optimizer_spec)
        # Build the moments now: a tf.function must not create variables on a later call.
        self.optimizer.build(self._trainable)
        self.set_weights(initial_weights(spec, seed))

        batch = (_IDS_2D, _IDS_1D, _IDS_2D, _IDS_2D, _MASK)
        hidden = tf.TensorSpec([None, spec.hidden_size], tf.float32)
        state = tuple((hidden, hidden) for _ in range(spec.num_layers))
        self._train_fn = _Compiled(self._train, batch)
        self._loss_fn = _Compiled(self._loss, batch)
        self._gradients_fn = _Compiled(self._gradients, batch)
        self._log_probs_fn = _Compiled(self._log_probs, batch[:3])
        self._encode_fn = _Compiled(self.network.encoder, (_IDS_2D, _IDS_1D))
        self._step_fn = _Compiled(self._step, (_IDS_1D, state))
        self._reorder_fn = _Compiled(self._reorder, (state, tf.TensorSpec([None], tf.int64)))

    # ------------------------------------------------------------------ Model protocol

    def train_step(self, batch: Batch) -> float:
        """One Adam step on ``batch``; returns the loss (nats per target token) before it."""
        return float(self._train_fn(*self._batch_arrays(batch)))

    def loss(self, batch: Batch) -> float:
        """Mean cross-entropy in nats over the positions where ``batch.tgt_mask`` is 1."""
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

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> State:
        """Encoder over int32 [B, S] ids with int32 [B] lengths -> decoder initial state:
        per layer ``(h, c)``, [B, H] each, the state after ``src_lengths[b]`` tokens (zero
        for length 0)."""
        src_ids = np.asarray(src_ids)
        src_lengths = np.asarray(src_lengths)
        _check_ids("src_ids", src_ids, self.spec.src_vocab_size, ndim=2)
        _check_lengths(src_ids, src_lengths)
        return self._encode_fn(*_trim_sources(src_ids, src_lengths))

    def step(self, prev_ids: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """One decoder step: int32 [B] previous ids and the state -> (float32 [B, V]
        log-probabilities of the next token, new state)."""
        prev_ids = np.asarray(prev_ids)
        _check_ids("prev_ids", prev_ids, self.spec.tgt_vocab_size, ndim=1)
        log_probs, state = self._step_fn(prev_ids.astype(np.int32, copy=False), state)
        return log_probs.numpy(), state

    def reorder(self, state: State, index: np.ndarray) -> State:
        """Rows ``index`` (int64 [B']) of every tensor in ``state``, as a new state."""
        return self._reorder_fn(state, np.asarray(index, dtype=np.int64))

    def attention(self, state: State) -> None:
        """Always ``None``: this backend builds no attention models."""
        return None

    def set_learning_rate(self, learning_rate: float) -> None:
        """Adam's step size from the next :meth:`train_step` on (a variable the compiled
        step reads, so changing it retraces nothing)."""
        self.optimizer.set_learning_rate(learning_rate)

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """Adam's state: ``step`` (int64 scalar), ``learning_rate`` (float64 scalar) and
        float32 ``m/NAME``, ``v/NAME`` for every canonical weight NAME (copies)."""
        return self.optimizer.get_state(self._variables)

    def set_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`optimizer_state`; ``ValueError`` naming every missing, unexpected
        or mis-shaped entry, before changing anything."""
        self.optimizer.set_state(self._variables, state)

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

    # ------------------------------------------------------------------ compiled bodies

    def _loss(self, src_ids, src_lengths, tgt_in, tgt_out, tgt_mask):
        logits = self.network((src_ids, src_lengths, tgt_in))
        nll = ops.sparse_categorical_crossentropy(tgt_out, logits, from_logits=True)
        # A batch without target tokens has loss 0 and zero gradients, not 0 / 0.
        return ops.sum(nll * tgt_mask) / ops.maximum(ops.sum(tgt_mask), 1.0)

    def _loss_and_gradients(self, *batch):
        with tf.GradientTape() as tape:
            loss = self._loss(*batch)
        grads = tape.gradient(loss, self._trainable)
        # Embedding lookups give sparse (IndexedSlices) gradients; densify so that Adam
        # decays the moments of every row, as a dense Adam does.
        return loss, [tf.convert_to_tensor(g) for g in grads]

    def _train(self, *batch):
        loss, grads = self._loss_and_gradients(*batch)
        self.optimizer.apply(grads, self._trainable)
        return loss

    def _gradients(self, *batch):
        return self._loss_and_gradients(*batch)[1]

    def _log_probs(self, src_ids, src_lengths, tgt_in):
        return ops.log_softmax(self.network((src_ids, src_lengths, tgt_in)), axis=-1)

    def _step(self, prev_ids, state):
        logits, state = self.network.decoder.step(prev_ids, state)
        return ops.log_softmax(logits, axis=-1), state

    def _reorder(self, state, index):
        return tuple((ops.take(h, index, axis=0), ops.take(c, index, axis=0)) for h, c in state)

    # ------------------------------------------------------------------ input checks

    def _batch_arrays(self, batch: Batch) -> tuple[np.ndarray, ...]:
        """Check ``batch`` and return the arrays the compiled functions take."""
        spec = self.spec
        _check_ids("src_ids", batch.src_ids, spec.src_vocab_size, ndim=2)
        _check_lengths(batch.src_ids, batch.src_lengths)
        _check_ids("tgt_in", batch.tgt_in, spec.tgt_vocab_size, ndim=2)
        _check_ids("tgt_out", batch.tgt_out, spec.tgt_vocab_size, ndim=2)
        src_ids, src_lengths = _trim_sources(batch.src_ids, batch.src_lengths)
        tgt_in = np.asarray(batch.tgt_in, dtype=np.int32)
        tgt_out = np.asarray(batch.tgt_out, dtype=np.int32)
        tgt_mask = np.asarray(batch.tgt_mask, dtype=np.float32)
        return src_ids, src_lengths, tgt_in, tgt_out, tgt_mask


def _check_supported(spec: ModelSpec) -> None:
    """Refuse, naming them, the spec features this backend does not build (rather than
    silently building a different model)."""
    unsupported = []
    if spec.cell != "lstm":
        unsupported.append(f"cell={spec.cell!r}")
    if spec.bidirectional:
        unsupported.append("bidirectional=True")
    if spec.attention != "none":
        unsupported.append(f"attention={spec.attention!r}")
    if spec.dropout:
        unsupported.append(f"dropout={spec.dropout}")
    if unsupported:
        raise BackendError(
            f"the keras backend builds unidirectional LSTM models without attention or "
            f"dropout; this spec asks for {', '.join(unsupported)} (the numpy backend "
            f"builds them)"
        )


def _trim_sources(src_ids: np.ndarray, src_lengths: np.ndarray) -> tuple[np.ndarray, ...]:
    """Drop source columns past the longest length (no row's final state can depend on
    them) but keep at least one, adding a PAD column to a [B, 0] array: Keras' RNN loop
    needs a time step, and a column masked in every row leaves every state at zero, which
    is the answer for length 0."""
    steps = max(int(src_lengths.max(initial=0)), 1)
    src_ids = np.asarray(src_ids, dtype=np.int32)
    if src_ids.shape[1] < steps:
        src_ids = np.zeros((src_ids.shape[0], steps), dtype=np.int32)
    return src_ids[:, :steps], np.asarray(src_lengths, dtype=np.int32)


def _check_ids(what: str, ids: np.ndarray, vocab: int, ndim: int) -> None:
    ids = np.asarray(ids)
    if ids.ndim != ndim or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{what} must be an integer array of rank {ndim}, got {ids.dtype}")
    # One-hot turns an out-of-range id into a zero vector and Embedding fails deep inside
    # TensorFlow; report it here instead.
    if ids.size and (ids.min() < 0 or ids.max() >= vocab):
        raise ValueError(f"{what} holds ids outside [0, {vocab})")


def _check_lengths(src_ids: np.ndarray, src_lengths: np.ndarray) -> None:
    src_lengths = np.asarray(src_lengths)
    if src_lengths.shape != np.shape(src_ids)[:1]:
        raise ValueError(
            f"src_lengths has shape {src_lengths.shape}, expected ({np.shape(src_ids)[0]},)"
        )
    if src_lengths.size and (src_lengths.min() < 0 or src_lengths.max() > src_ids.shape[1]):
        raise ValueError(f"src_lengths must lie in [0, {src_ids.shape[1]}]")
