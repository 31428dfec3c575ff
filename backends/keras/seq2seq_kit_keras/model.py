"""The Keras model behind the backend contract: :class:`KerasModel`, and the encoder-decoder
(Sutskever et al. 2014) it runs, :class:`Seq2Seq`, built from Keras layers.

Every weight is a Keras layer's own variable, in the canonical layout of
:mod:`seq2seq_kit.weights` without any transposition or gate reordering:

=========================================  =============================================
canonical name                             Keras variable
=========================================  =============================================
``{side}.embedding`` [V, E]                ``Embedding.embeddings``
``{side}.rnn.{l}.*``                       the LSTM / GRU cell's (:mod:`.lstm`, :mod:`.gru`)
``encoder.rnn_reverse.{l}.*``              ``Bidirectional.backward_layer``'s cell's
``decoder.attention.*``                    :class:`.attention.Attention`'s
``decoder.output.kernel`` / ``.bias``      ``Dense.kernel`` / ``Dense.bias``
=========================================  =============================================

Training, loss, gradients, log-probabilities, encoding, decoding steps and reordering each
run as one compiled ``tf.function`` whose input signature leaves batch and sequence lengths
open (``None``), so batches of any shape share a single trace. Arrays cross the boundary as
NumPy: ids int32, everything else float32.
"""

from __future__ import annotations

from . import configure_environment

# Must run before the first import of Keras / TensorFlow in the process.
configure_environment()

from typing import NamedTuple  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers, ops  # noqa: E402

from seq2seq_kit.backend import attention_at_width  # noqa: E402
from seq2seq_kit.batching import Batch  # noqa: E402
from seq2seq_kit.spec import ModelSpec, OptimizerSpec  # noqa: E402
from seq2seq_kit.weights import (  # noqa: E402
    check_optimizer_state,
    check_weights,
    initial_weights,
)

from . import gru, lstm  # noqa: E402
from .attention import Attention  # noqa: E402
from .optimizer import make_optimizer  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        f"the seq2seq-kit keras backend needs Keras' TensorFlow backend, but Keras runs on "
        f"{keras.backend.backend()!r}; set KERAS_BACKEND=tensorflow before Keras is imported"
    )

#: The recurrent cell modules, by ``ModelSpec.cell``; they share one interface.
CELLS = {"lstm": lstm, "gru": gru}

_IDS_2D = tf.TensorSpec([None, None], tf.int32)
_IDS_1D = tf.TensorSpec([None], tf.int32)
_FLOATS_2D = tf.TensorSpec([None, None], tf.float32)

#: Per decoder layer, bottom first, its state: ``(h, c)`` (LSTM) or ``(h,)`` (GRU), [B, H].
Layers = tuple[tuple[tf.Tensor, ...], ...]


class DecoderState(NamedTuple):
    """The decoder state handed out by :meth:`KerasModel.encode` and :meth:`KerasModel.step`
    (tensors are immutable: no call changes a state it was given).

    Attributes:
        layers: per decoder layer, bottom first, ``(h, c)`` or ``(h,)``, float32 [B, H].
        memory: the attention memory (:meth:`.attention.Attention.memory`: ``values``
            [B, S', H], ``mask`` bool [B, S'], ``keys`` for "bahdanau"); ``{}`` without
            attention. S' is the longest source length (at least 1).
        weights: float32 [B, S'] attention weights of the step that produced this state;
            None from ``encode`` or without attention.
        source_width: S, the width of the ``src_ids`` encoded (``attention`` pads to it).
    """

    layers: Layers
    memory: dict[str, tf.Tensor]
    weights: tf.Tensor | None
    source_width: int


class _Dropout:
    """Inverted dropout (Srivastava et al. 2014) with masks from stateless random ops: the
    ``k``-th mask drawn while tracing uses the seed ``fold_in(seed, k)``. The sites are
    drawn in a fixed order, so one ``seed`` = (build seed, updates taken) fixes every mask
    of a training step, and a resumed run draws the same ones."""

    def __init__(self, rate: float, seed):
        self.rate, self.seed, self.count = rate, seed, 0

    def __call__(self, x):
        self.count += 1
        seed = tf.random.experimental.stateless_fold_in(self.seed, self.count)
        return tf.nn.experimental.stateless_dropout(x, self.rate, seed=seed)


class _Side(layers.Layer):
    """The input layer (Embedding, or one-hot for ``embedding_size == 0``) and the stacked
    recurrent layers of one side of the model."""

    def __init__(self, spec: ModelSpec, vocab_size: int, **kwargs):
        super().__init__(**kwargs)
        self.cell_module = CELLS[spec.cell]
        self.vocab_size = vocab_size
        self.hidden_size = spec.hidden_size
        self.embedding_size = spec.embedding_size
        self.embedding = (
            layers.Embedding(vocab_size, spec.embedding_size, name="embedding")
            if spec.embedding_size
            else None
        )
        self.rnns = []

    def build(self, ids_shape=None):
        width = self.embedding_size or self.vocab_size
        if self.embedding is not None:
            self.embedding.build((None, None))
        for rnn in self.rnns:
            rnn.build((None, None, width))
            width = self.hidden_size
        self.built = True

    def inputs(self, ids, dropout: _Dropout | None):
        """int32 ids of any shape -> float32 [..., E] embeddings (after dropout), or
        [..., V] one-hot vectors (their product with ``kernel`` is a row of it, as the
        canonical model's gather; no dropout there, as the reference)."""
        if self.embedding is None:
            return ops.one_hot(ids, self.vocab_size, dtype="float32")
        x = self.embedding(ids)
        return x if dropout is None else dropout(x)

    def variables_by_name(self, side: str) -> dict[str, keras.Variable]:
        """Canonical name -> this side's Keras variable, in the canonical order."""
        out = {}
        if self.embedding is not None:
            out[f"{side}.embedding"] = self.embedding.embeddings
        directions = {"rnn": self.rnns}
        if self.rnns and isinstance(self.rnns[0], layers.Bidirectional):
            directions = {
                "rnn": [rnn.forward_layer for rnn in self.rnns],
                "rnn_reverse": [rnn.backward_layer for rnn in self.rnns],
            }
        for direction, rnns in directions.items():
            for layer, rnn in enumerate(rnns):
                for name, variable in self.cell_module.variables(rnn).items():
                    out[f"{side}.{direction}.{layer}.{name}"] = variable
        return out


class Encoder(_Side):
    """Source ids -> the decoder's initial layer states and the attention memory."""

    def __init__(self, spec: ModelSpec, **kwargs):
        super().__init__(spec, spec.src_vocab_size, **kwargs)
        top = spec.num_layers - 1
        for layer in range(spec.num_layers):
            # The top layer's outputs are only needed as attention memory.
            sequences = layer < top or spec.attention != "none"
            self.rnns.append(self._layer(spec, sequences, f"rnn_{layer}"))

    def _layer(self, spec: ModelSpec, sequences: bool, name: str):
        if not spec.bidirectional:
            return self.cell_module.layer(spec.hidden_size, return_sequences=sequences, name=name)
        units = spec.hidden_size // 2
        return layers.Bidirectional(
            self.cell_module.layer(units, return_sequences=sequences, name=name),
            backward_layer=self.cell_module.layer(
                units, return_sequences=sequences, go_backwards=True, name=f"{name}_reverse"
            ),
            merge_mode="concat",
            name=name,
        )

    def call(self, ids, lengths, dropout: _Dropout | None = None):
        """int32 [B, S] ids and int32 [B] lengths -> (per layer its state after
        ``lengths[b]`` tokens, the top layer's outputs [B, S, H] (its last output without
        attention), the bool [B, S] mask of real positions).

        The mask makes Keras carry the state unchanged through padding, so the final state
        is the one after the last real token; a length-0 row never updates and keeps the
        zero initial state. A backward layer reverses the whole padded row and so meets
        the padding first, which the mask skips: it reads each row's real tokens from the
        last to the first, and ``Bidirectional`` flips its outputs back to source positions.
        Requires ``S >= 1``.
        """
        mask = ops.arange(ops.shape(ids)[1])[None, :] < lengths[:, None]
        x = self.inputs(ids, dropout)
        states = []
        for layer, rnn in enumerate(self.rnns):
            if layer > 0 and dropout is not None:
                x = dropout(x)
            x, *state = rnn(x, mask=mask)
            if isinstance(rnn, layers.Bidirectional):  # forward states, then backward ones
                forward, backward = state[: len(state) // 2], state[len(state) // 2 :]
                state = [ops.concatenate(p, -1) for p in zip(forward, backward, strict=True)]
            states.append(tuple(state))
        return tuple(states), x, mask


class Decoder(_Side):
    """Previous target ids, layer states and memory -> next-token logits (teacher-forced
    or one step)."""

    def __init__(self, spec: ModelSpec, **kwargs):
        super().__init__(spec, spec.tgt_vocab_size, **kwargs)
        self.rnns = [
            self.cell_module.layer(spec.hidden_size, return_sequences=True, name=f"rnn_{layer}")
            for layer in range(spec.num_layers)
        ]
        self.attention = (
            Attention(spec.attention, spec.hidden_size, name="attention")
            if spec.attention != "none"
            else None
        )
        self.output_layer = layers.Dense(spec.tgt_vocab_size, name="output")

    def build(self, ids_shape=None):
        super().build(ids_shape)
        if self.attention is not None:
            self.attention.build()
        self.output_layer.build((None, self.hidden_size))

    def call(self, ids, states: Layers, memory: dict, dropout: _Dropout | None = None):
        """int32 [B, T] inputs (``BOS y_1 ..``), no mask: every position is run, padding
        included (the loss masks it) -> float32 [B, T, V] logits."""
        x = self.inputs(ids, dropout)
        for layer, (rnn, state) in enumerate(zip(self.rnns, states, strict=True)):
            if layer > 0 and dropout is not None:
                x = dropout(x)
            x, *_ = rnn(x, initial_state=list(state))
        return self._output(x, memory, dropout)[0]

    def step(self, ids, states: Layers, memory: dict):
        """int32 [B] ids -> (float32 [B, V] logits, new layer states, [B, S] attention
        weights or None). Calls the very cells the recurrent layers loop over, and the
        attention at T = 1, so step-by-step decoding reproduces :meth:`call`."""
        x = self.inputs(ids, None)
        new_states = []
        for rnn, state in zip(self.rnns, states, strict=True):
            x, state = rnn.cell(x, list(state))
            new_states.append(tuple(state))
        logits, weights = self._output(x[:, None, :], memory, None)
        return logits[:, 0], tuple(new_states), None if weights is None else weights[:, 0]

    def _output(self, x, memory: dict, dropout: _Dropout | None):
        """Top outputs [B, T, H] -> (logits [B, T, V], attention weights [B, T, S] or
        None), through dropout and attention."""
        if dropout is not None:
            x = dropout(x)
        weights = None
        if self.attention is not None:
            x, weights = self.attention(x, memory)
        return self.output_layer(x), weights

    def variables_by_name(self, side: str = "decoder") -> dict[str, keras.Variable]:
        out = super().variables_by_name(side)
        if self.attention is not None:
            out.update(self.attention.variables_by_name("decoder.attention."))
        out["decoder.output.kernel"] = self.output_layer.kernel
        out["decoder.output.bias"] = self.output_layer.bias
        return out


class Seq2Seq(keras.Model):
    """Encoder and decoder; ``call((src_ids, src_lengths, tgt_in))`` -> [B, T, V] logits,
    with dropout at ``spec.dropout`` when given ``dropout_seed`` (int64 [2])."""

    def __init__(self, spec: ModelSpec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.encoder = Encoder(spec, name="encoder")
        self.decoder = Decoder(spec, name="decoder")
        self.encoder.build()
        self.decoder.build()
        self.built = True

    def call(self, inputs, dropout_seed=None):
        src_ids, src_lengths, tgt_in = inputs
        dropout = None
        if dropout_seed is not None and self.spec.dropout > 0:
            dropout = _Dropout(self.spec.dropout, dropout_seed)
        states, memory = self.encode(src_ids, src_lengths, dropout)
        return self.decoder(tgt_in, states, memory, dropout=dropout)

    def encode(self, src_ids, src_lengths, dropout: _Dropout | None = None):
        """-> (the decoder's initial layer states, the attention memory or ``{}``)."""
        states, top, mask = self.encoder(src_ids, src_lengths, dropout=dropout)
        attention = self.decoder.attention
        return states, {} if attention is None else attention.memory(top, mask)

    def variables_by_name(self) -> dict[str, keras.Variable]:
        """Every weight under its canonical name, in :func:`seq2seq_kit.weights.weight_shapes`
        order."""
        return {
            **self.encoder.variables_by_name("encoder"),
            **self.decoder.variables_by_name("decoder"),
        }


class _Compiled:
    """``fn`` traced once, on its first call, as a TensorFlow graph for every batch shape
    (the ``None`` dims of ``signature``).

    Tracing lazily keeps building a model cheap (tracing every function up front took 1-2 s
    a model, more with attention). The bodies branch on Python values only, so AutoGraph is
    off (it cost ~10% of the tracing time). Calling the concrete function skips
    ``tf.function``'s per-call argument binding, which cuts a decoding step from about 0.55
    to 0.3 ms (measured, H=32). XLA (``jit_compile``) is not used: it compiles once per
    distinct batch shape, and digit training took ~5x longer with it than with the plain
    graph.
    """

    def __init__(self, fn, signature):
        self._function = tf.function(fn, input_signature=signature, autograph=False)
        self._concrete = None

    def __call__(self, *args):
        if self._concrete is None:
            self._concrete = self._function.get_concrete_function()
        return self._concrete(*args)


class KerasModel:
    """RNN encoder-decoder implementing :class:`seq2seq_kit.backend.Model` with Keras 3 on
    TensorFlow: LSTM or GRU cells, an optional bidirectional encoder, optional attention and
    dropout, as the :class:`ModelSpec` says.

    Args:
        spec: the architecture.
        seed: seeds :func:`seq2seq_kit.weights.initial_weights` (the starting weights, the
            same for every backend) and, with the update count, the dropout masks. Keras'
            own random state is neither used nor reseeded (the initial values its
            initializers draw are overwritten at once).
        optimizer: Adam settings for :meth:`train_step` (default ``OptimizerSpec()``).

    Attributes:
        spec: the :class:`ModelSpec`.
        network: the :class:`Seq2Seq` Keras model.
        optimizer: the Keras optimizer (:class:`~seq2seq_kit_keras.optimizer.Adam`).

    The decoder state handed out by :meth:`encode` and :meth:`step` is a
    :class:`DecoderState`. Arguments are not checked here: ``Backend.create`` returns the
    model inside :class:`seq2seq_kit.validation.CheckedModel`, which does it for every
    backend.
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        seed: int = 0,
        optimizer: OptimizerSpec | None = None,
    ):
        self.spec = spec
        self.optimizer_spec = optimizer or OptimizerSpec()
        self.network = Seq2Seq(spec)
        self._variables = self.network.variables_by_name()
        self._trainable = list(self._variables.values())
        self.optimizer = make_optimizer(self.optimizer_spec)
        # Build the moments now: a tf.function must not create variables on a later call.
        self.optimizer.build(self._trainable)
        # A variable, not a constant of the traces: restoring a saved seed retraces nothing.
        self._seed = tf.Variable(seed, dtype=tf.int64, trainable=False, name="dropout_seed")
        self.set_weights(initial_weights(spec, seed))

        batch = (_IDS_2D, _IDS_1D, _IDS_2D, _IDS_2D, _FLOATS_2D)
        hidden = tf.TensorSpec([None, spec.hidden_size], tf.float32)
        cell = CELLS[spec.cell]
        layer_states = tuple((hidden,) * cell.NUM_STATES for _ in range(spec.num_layers))
        attention = self.network.decoder.attention
        memory = {} if attention is None else attention.memory_signature()
        self._train_fn = _Compiled(self._train, batch)
        self._loss_fn = _Compiled(self._loss, batch)
        self._gradients_fn = _Compiled(self._gradients, batch)
        self._log_probs_fn = _Compiled(self._log_probs, batch[:3])
        self._encode_fn = _Compiled(self._encode, (_IDS_2D, _IDS_1D))
        self._step_fn = _Compiled(self._step, (_IDS_1D, layer_states, memory))
        self._reorder_fn = _Compiled(
            self._reorder, ((layer_states, memory), tf.TensorSpec([None], tf.int64))
        )
        self._take_fn = _Compiled(self._reorder, (_FLOATS_2D, tf.TensorSpec([None], tf.int64)))

    # ------------------------------------------------------------------ Model protocol

    def train_step(self, batches: list[Batch]) -> float:
        (batch,) = batches if isinstance(batches, list) else [batches]  # TODO accumulate
        """One Adam step on ``batch`` (with dropout if ``spec.dropout`` > 0, masks drawn
        from (seed, updates so far)); returns the loss (nats per target token, with those
        masks) before it."""
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

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> DecoderState:
        """Encoder over int32 [B, S] ids with int32 [B] lengths -> the decoder's initial
        :class:`DecoderState`: per layer the encoder's state after ``src_lengths[b]``
        tokens (zero for length 0; forward and reverse halves concatenated when
        bidirectional), and the attention memory."""
        states, memory = self._encode_fn(*_trim_sources(src_ids, src_lengths))
        return DecoderState(states, memory, None, src_ids.shape[1])

    def step(self, prev_ids: np.ndarray, state: DecoderState) -> tuple[np.ndarray, DecoderState]:
        """One decoder step: int32 [B] previous ids and the state -> (float32 [B, V]
        log-probabilities of the next token, new state)."""
        log_probs, layers_, weights = self._step_fn(prev_ids, state.layers, state.memory)
        return log_probs.numpy(), state._replace(layers=layers_, weights=weights)

    def reorder(self, state: DecoderState, index: np.ndarray) -> DecoderState:
        """Rows ``index`` (int64 [B']) of every tensor in ``state``, as a new state."""
        index = np.asarray(index, dtype=np.int64)
        layers_, memory = self._reorder_fn((state.layers, state.memory), index)
        weights = None if state.weights is None else self._take_fn(state.weights, index)
        return state._replace(layers=layers_, memory=memory, weights=weights)

    def attention(self, state: DecoderState) -> np.ndarray | None:
        """Float32 [B, S] attention weights of the step that returned ``state`` (S the
        width of the encoded ``src_ids``; 0 past each source's length, rows summing to 1,
        or all 0 for an empty source); None for an ``encode`` state or without attention."""
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
        every canonical weight NAME (copies)."""
        state = self.optimizer.get_state(self._variables)
        state["seed"] = np.array(int(self._seed.numpy()), dtype=np.int64)
        return state

    def set_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`optimizer_state` (the dropout seed too, so masks continue as in
        the saved run); ``ValueError`` naming every missing, unexpected or mis-shaped
        entry, before changing anything."""
        arrays = {key: np.asarray(value) for key, value in state.items()}
        check_optimizer_state(self.spec, arrays)
        self._seed.assign(int(arrays.pop("seed")))
        self.optimizer.set_state(self._variables, arrays)

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

    def _loss(self, *batch):
        return self._masked_loss(batch, None)

    def _masked_loss(self, batch, dropout_seed):
        src_ids, src_lengths, tgt_in, tgt_out, tgt_mask = batch
        logits = self.network((src_ids, src_lengths, tgt_in), dropout_seed=dropout_seed)
        nll = ops.sparse_categorical_crossentropy(tgt_out, logits, from_logits=True)
        # A batch without target tokens has loss 0 and zero gradients, not 0 / 0.
        return ops.sum(nll * tgt_mask) / ops.maximum(ops.sum(tgt_mask), 1.0)

    def _loss_and_gradients(self, batch, dropout_seed=None):
        with tf.GradientTape() as tape:
            loss = self._masked_loss(batch, dropout_seed)
        grads = tape.gradient(loss, self._trainable)
        # Embedding lookups give sparse (IndexedSlices) gradients; densify so that Adam
        # decays the moments of every row, as a dense Adam does.
        return loss, [tf.convert_to_tensor(g) for g in grads]

    def _train(self, *batch):
        # Dropout masks from (seed, updates taken so far): a resumed run draws the same.
        seed = tf.stack([self._seed, tf.cast(self.optimizer.iterations, tf.int64)])
        loss, grads = self._loss_and_gradients(batch, seed)
        self.optimizer.apply(grads, self._trainable)
        return loss

    def _gradients(self, *batch):
        return self._loss_and_gradients(batch)[1]

    def _log_probs(self, src_ids, src_lengths, tgt_in):
        return ops.log_softmax(self.network((src_ids, src_lengths, tgt_in)), axis=-1)

    def _encode(self, src_ids, src_lengths):
        return self.network.encode(src_ids, src_lengths)

    def _step(self, prev_ids, states, memory):
        logits, states, weights = self.network.decoder.step(prev_ids, states, memory)
        return ops.log_softmax(logits, axis=-1), states, weights

    def _reorder(self, tensors, index):
        return tf.nest.map_structure(lambda t: ops.take(t, index, axis=0), tensors)

    # ------------------------------------------------------------------ batches

    def _batch_arrays(self, batch: Batch) -> tuple[np.ndarray, ...]:
        """The arrays of ``batch`` the compiled functions take."""
        src_ids, src_lengths = _trim_sources(batch.src_ids, batch.src_lengths)
        tgt_in = np.asarray(batch.tgt_in, dtype=np.int32)
        tgt_out = np.asarray(batch.tgt_out, dtype=np.int32)
        tgt_mask = np.asarray(batch.tgt_mask, dtype=np.float32)
        return src_ids, src_lengths, tgt_in, tgt_out, tgt_mask


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
