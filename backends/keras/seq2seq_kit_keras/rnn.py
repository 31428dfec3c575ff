"""The RNN encoder-decoder (Sutskever et al. 2014) as Keras layers: :class:`Seq2Seq`.

Every weight is a Keras layer's own variable, in the canonical layout of
:mod:`seq2seq_kit.weights` without any transposition or gate reordering; :mod:`.layout`
names them.

The decoder state this network hands to :meth:`Seq2Seq.step` is the pair ``(layers,
memory)``: per decoder layer, bottom first, ``(h, c)`` (LSTM) or ``(h,)`` (GRU), float32
[B, H]; and the attention memory (:meth:`.attention.Attention.memory`), ``{}`` without
attention.
"""

from __future__ import annotations

import tensorflow as tf
from keras import layers, ops

from seq2seq_kit.spec import ModelSpec

from . import gru, lstm
from .attention import Attention
from .dropout import Dropout

#: The recurrent cell modules, by ``ModelSpec.cell``; they share one interface.
CELLS = {"lstm": lstm, "gru": gru}

#: Per decoder layer, bottom first, its state: ``(h, c)`` (LSTM) or ``(h,)`` (GRU), [B, H].
Layers = tuple[tuple[tf.Tensor, ...], ...]


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

    def inputs(self, ids, dropout: Dropout | None):
        """int32 ids of any shape -> float32 [..., E] embeddings (after dropout), or
        [..., V] one-hot vectors (their product with ``kernel`` is a row of it, as the
        canonical model's gather; no dropout there, as the reference)."""
        if self.embedding is None:
            return ops.one_hot(ids, self.vocab_size, dtype="float32")
        x = self.embedding(ids)
        return x if dropout is None else dropout(x)


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

    def call(self, ids, lengths, dropout: Dropout | None = None):
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

    def call(self, ids, states: Layers, memory: dict, dropout: Dropout | None = None):
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

    def _output(self, x, memory: dict, dropout: Dropout | None):
        """Top outputs [B, T, H] -> (logits [B, T, V], attention weights [B, T, S] or
        None), through dropout and attention."""
        if dropout is not None:
            x = dropout(x)
        weights = None
        if self.attention is not None:
            x, weights = self.attention(x, memory)
        return self.output_layer(x), weights


class Seq2Seq(layers.Layer):
    """Encoder and decoder behind the interface :class:`..model.KerasModel` drives (shared
    with :class:`.transformer.Transformer`): ``call``, ``encode``, ``step`` and
    ``state_signature``."""

    def __init__(self, spec: ModelSpec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.encoder = Encoder(spec, name="encoder")
        self.decoder = Decoder(spec, name="decoder")
        self.encoder.build()
        self.decoder.build()
        self.built = True

    def call(self, src_ids, src_lengths, tgt_in, dropout_seed=None):
        """int32 [B, S] ids (S >= 1), [B] lengths and [B, T] decoder inputs -> float32
        [B, T, V] logits; dropout at ``spec.dropout`` when given ``dropout_seed`` (int64
        [2])."""
        dropout = None
        if dropout_seed is not None and self.spec.dropout > 0:
            dropout = Dropout(self.spec.dropout, dropout_seed)
        states, memory = self.encode(src_ids, src_lengths, dropout)
        return self.decoder(tgt_in, states, memory, dropout=dropout)

    def encode(self, src_ids, src_lengths, dropout: Dropout | None = None):
        """-> the decoder state ``(layers, memory)``: the encoder's final state per layer,
        and the attention memory or ``{}``."""
        states, top, mask = self.encoder(src_ids, src_lengths, dropout=dropout)
        attention = self.decoder.attention
        return states, {} if attention is None else attention.memory(top, mask)

    def step(self, prev_ids, state):
        """int32 [B] ids and a state -> (float32 [B, V] logits, the next state, float32
        [B, S] attention weights or None)."""
        states, memory = state
        logits, states, weights = self.decoder.step(prev_ids, states, memory)
        return logits, (states, memory), weights

    def state_signature(self):
        """The ``tf.TensorSpec`` structure of the decoder state (batch and length open)."""
        hidden = tf.TensorSpec([None, self.spec.hidden_size], tf.float32)
        cell = CELLS[self.spec.cell]
        layer_states = tuple((hidden,) * cell.NUM_STATES for _ in range(self.spec.num_layers))
        attention = self.decoder.attention
        return layer_states, {} if attention is None else attention.memory_signature()
