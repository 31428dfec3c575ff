"""The LSTM encoder-decoder (Sutskever et al. 2014) built from Keras layers.

Every weight is a Keras layer's own variable, in the canonical layout of
:mod:`seq2seq_kit.weights` without any transposition or gate reordering:

=====================================  =============================================
canonical name                         Keras variable
=====================================  =============================================
``{side}.embedding`` [V, E]            ``Embedding.embeddings``
``{side}.rnn.{l}.kernel`` [In, 4H]     ``LSTM.cell.kernel`` (gates i, f, c, o)
``{side}.rnn.{l}.recurrent_kernel``    ``LSTM.cell.recurrent_kernel`` [H, 4H]
``{side}.rnn.{l}.bias`` [4H]           ``LSTM.cell.bias``
``decoder.output.kernel`` [H, V_tgt]   ``Dense.kernel``
``decoder.output.bias`` [V_tgt]        ``Dense.bias``
=====================================  =============================================

Keras' LSTM cell computes ``z = x @ kernel + h @ recurrent_kernel + bias`` and applies
``recurrent_activation`` (sigmoid) to i, f, o and ``activation`` (tanh) to c and to the
output: exactly the canonical cell. The activations are passed explicitly so a change of
Keras defaults cannot change the model.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from seq2seq_kit.spec import ModelSpec

#: Per layer ``(h, c)``, each float32 [B, H], bottom layer first.
State = tuple[tuple[object, object], ...]


def _lstm(units: int, return_sequences: bool, name: str) -> layers.LSTM:
    return layers.LSTM(
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        return_sequences=return_sequences,
        return_state=True,
        # On a GPU build of TensorFlow, "auto" would switch to cuDNN's fused kernel, which
        # fails a runtime assert on a fully masked row (a length-0 source, which the
        # contract allows) and sums in another order than the cell that ``step`` runs.
        # tensorflow-cpu never takes that path; this keeps every install on the one
        # that was verified.
        use_cudnn=False,
        name=name,
    )


class _Side(layers.Layer):
    """Input layer (Embedding, or one-hot for ``embedding_size == 0``) and stacked LSTMs
    of one side of the model."""

    def __init__(self, vocab_size: int, spec: ModelSpec, top_sequences: bool, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = spec.hidden_size
        self.embedding_size = spec.embedding_size
        self.embedding = (
            layers.Embedding(vocab_size, spec.embedding_size, name="embedding")
            if spec.embedding_size
            else None
        )
        top = spec.num_layers - 1
        self.rnns = [
            _lstm(spec.hidden_size, top_sequences or layer < top, name=f"rnn_{layer}")
            for layer in range(spec.num_layers)
        ]

    def build(self, ids_shape=None):
        width = self.embedding_size or self.vocab_size
        if self.embedding is not None:
            self.embedding.build((None, None))
        for rnn in self.rnns:
            rnn.build((None, None, width))
            width = self.hidden_size
        self.built = True

    def inputs(self, ids):
        """int32 ids of any shape -> float32 [..., E] embeddings, or [..., V] one-hot
        vectors (their product with ``kernel`` is a row of it, as the canonical model)."""
        if self.embedding is not None:
            return self.embedding(ids)
        return ops.one_hot(ids, self.vocab_size, dtype="float32")

    def variables_by_name(self, side: str) -> dict[str, keras.Variable]:
        """Canonical name -> this side's Keras variable (see the module docstring)."""
        out = {}
        if self.embedding is not None:
            out[f"{side}.embedding"] = self.embedding.embeddings
        for layer, rnn in enumerate(self.rnns):
            prefix = f"{side}.rnn.{layer}."
            out[prefix + "kernel"] = rnn.cell.kernel
            out[prefix + "recurrent_kernel"] = rnn.cell.recurrent_kernel
            out[prefix + "bias"] = rnn.cell.bias
        return out


class Encoder(_Side):
    """Source ids -> the decoder's initial state."""

    def __init__(self, spec: ModelSpec, **kwargs):
        super().__init__(spec.src_vocab_size, spec, top_sequences=False, **kwargs)

    def call(self, ids, lengths):
        """int32 [B, S] ids and int32 [B] lengths -> per layer ``(h, c)`` [B, H] after
        ``lengths[b]`` tokens.

        The mask ``position < length`` makes Keras carry the state unchanged through
        padding, so the final state is the one after the last real token; a length-0 row
        never updates and keeps the zero initial state. Requires ``S >= 1``.
        """
        mask = ops.arange(ops.shape(ids)[1])[None, :] < lengths[:, None]
        x = self.inputs(ids)
        state = []
        for rnn in self.rnns:
            if rnn.return_sequences:
                x, h, c = rnn(x, mask=mask)
            else:
                _, h, c = rnn(x, mask=mask)
            state.append((h, c))
        return tuple(state)


class Decoder(_Side):
    """Previous target ids and a state -> next-token logits (teacher-forced or one step)."""

    def __init__(self, spec: ModelSpec, **kwargs):
        super().__init__(spec.tgt_vocab_size, spec, top_sequences=True, **kwargs)
        self.output_layer = layers.Dense(spec.tgt_vocab_size, name="output")

    def build(self, ids_shape=None):
        super().build(ids_shape)
        self.output_layer.build((None, self.hidden_size))

    def call(self, ids, state: State):
        """int32 [B, T] inputs (``BOS y_1 ..``), no mask: every position is run, padding
        included (the loss masks it) -> float32 [B, T, V] logits."""
        x = self.inputs(ids)
        for rnn, (h, c) in zip(self.rnns, state, strict=True):
            x, _, _ = rnn(x, initial_state=[h, c])
        return self.output_layer(x)

    def step(self, ids, state: State):
        """int32 [B] ids -> (float32 [B, V] logits, new state). Calls the very cells the
        LSTM layers loop over, so step-by-step decoding reproduces :meth:`call`."""
        x = self.inputs(ids)
        new_state = []
        for rnn, (h, c) in zip(self.rnns, state, strict=True):
            x, (h, c) = rnn.cell(x, [h, c])
            new_state.append((h, c))
        return self.output_layer(x), tuple(new_state)

    def variables_by_name(self, side: str = "decoder") -> dict[str, keras.Variable]:
        out = super().variables_by_name(side)
        out["decoder.output.kernel"] = self.output_layer.kernel
        out["decoder.output.bias"] = self.output_layer.bias
        return out


class Seq2Seq(keras.Model):
    """Encoder and decoder; ``call((src_ids, src_lengths, tgt_in))`` -> [B, T, V] logits."""

    def __init__(self, spec: ModelSpec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.encoder = Encoder(spec, name="encoder")
        self.decoder = Decoder(spec, name="decoder")
        self.encoder.build()
        self.decoder.build()
        self.built = True

    def call(self, inputs):
        src_ids, src_lengths, tgt_in = inputs
        return self.decoder(tgt_in, self.encoder(src_ids, src_lengths))

    def variables_by_name(self) -> dict[str, keras.Variable]:
        """Every weight under its canonical name, in :func:`seq2seq_kit.weights.weight_shapes`
        order."""
        return {
            **self.encoder.variables_by_name("encoder"),
            **self.decoder.variables_by_name("decoder"),
        }
