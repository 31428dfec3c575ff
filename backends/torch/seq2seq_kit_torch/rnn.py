"""The RNN encoder-decoder (Sutskever et al. 2014) as ``torch.nn`` modules, with LSTM or GRU
cells, an optional bidirectional encoder, optional global attention (Luong et al. 2015) and
dropout.

Each side is an optional ``nn.Embedding`` feeding ``num_layers`` recurrent layers, one
batch-first ``nn.LSTM`` or ``nn.GRU`` per layer (both directions in one module for a
bidirectional encoder) so that dropout can act between them; the decoder adds the optional
:class:`attention.Attention` and an ``nn.Linear`` output projection. The recurrent cell is
a module (:mod:`.lstm` or :mod:`.gru`, one interface) chosen by ``spec.cell``. Tensors are
batch-major (``[B, T, ...]``); a layer's recurrent state is ``(h, c)`` or ``(h,)``, each
``[1, B, H]`` as ``nn.LSTM`` / ``nn.GRU`` take it. :mod:`.layout` maps the parameters to
the canonical layout.

:class:`Seq2Seq` has the interface :mod:`.model` drives (shared with
:class:`.transformer.Transformer`): ``forward`` (teacher-forced logits), ``encode``,
``step``, ``reorder``, ``attention`` and a ``generator`` for the dropout masks.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq_kit.spec import ModelSpec

from . import gru, lstm
from .attention import Attention, Memory
from .dropout import Dropout, optional

#: The recurrent cell modules, by ``ModelSpec.cell``; they share one interface.
CELLS = {"lstm": lstm, "gru": gru}

#: One layer's recurrent state: ``(h, c)`` (LSTM) or ``(h,)`` (GRU), each ``[1, B, H]``, as
#: ``nn.LSTM`` / ``nn.GRU`` take it.
LayerState = tuple[torch.Tensor, ...]


class DecoderState(NamedTuple):
    """The decoder state handed out by :meth:`Seq2Seq.encode` and :meth:`Seq2Seq.step`.

    Attributes:
        layers: one :data:`LayerState` per decoder layer, bottom first.
        memory: the attention :class:`attention.Memory`, None without attention.
        weights: ``[B, S']`` attention weights of the step that produced this state, over
            the memory's ``S'`` positions; None from ``encode`` or without attention.
        source_width: ``S``, the width of the ``src_ids`` encoded (``attention`` pads to it).
    """

    layers: tuple[LayerState, ...]
    memory: Memory | None
    weights: torch.Tensor | None
    source_width: int


class RNNStack(nn.Module):
    """Token ids -> layer-0 inputs -> ``num_layers`` recurrent layers, with dropout on the
    layer-0 inputs (embeddings only) and between layers.

    With ``embedding_size == 0`` layer 0 reads one-hot vectors of width ``vocab_size`` (the
    seed's Keras model); ``one_hot @ kernel`` picks kernel row ``id`` exactly (one product by
    1.0, the rest by 0.0), so this matches the canonical row gather to the last bit.

    Attributes:
        cell: :mod:`.lstm` or :mod:`.gru`.
        embedding: ``nn.Embedding(vocab_size, embedding_size)``, or None for one-hot inputs.
        rnn: ``nn.ModuleList`` of one-layer ``nn.LSTM`` / ``nn.GRU``, bottom first.
        dropout: the :class:`Dropout` of every site, or None without dropout.
    """

    def __init__(
        self, spec: ModelSpec, vocab_size: int, bidirectional: bool, dropout: Dropout | None
    ):
        super().__init__()
        self.cell = CELLS[spec.cell]
        self.vocab_size = vocab_size
        self.hidden_size = spec.hidden_size
        units = spec.hidden_size // 2 if bidirectional else spec.hidden_size
        width = spec.embedding_size or vocab_size
        self.embedding = (
            nn.Embedding(vocab_size, spec.embedding_size) if spec.embedding_size else None
        )
        self.rnn = nn.ModuleList(
            self.cell.layer(width if layer == 0 else spec.hidden_size, units, bidirectional)
            for layer in range(spec.num_layers)
        )
        self.dropout = dropout

    def drop(self, x):
        """``x`` through :attr:`dropout` (a no-op outside training), if there is one."""
        return x if self.dropout is None else self.dropout(x)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """int64 ``[B, T]`` ids -> ``[B, T, embedding_size or vocab_size]`` layer-0 inputs
        (embeddings after dropout)."""
        if self.embedding is not None:
            return self.drop(self.embedding(ids))
        return F.one_hot(ids, self.vocab_size).to(self.rnn[0].weight_hh_l0.dtype)

    def zero_state(self, batch_size: int) -> tuple[LayerState, ...]:
        """The all-zero state of every layer."""
        weight = self.rnn[0].weight_hh_l0
        shape = (1, batch_size, self.hidden_size)
        return tuple(
            tuple(weight.new_zeros(shape) for _ in range(self.cell.NUM_STATES)) for _ in self.rnn
        )


class Encoder(RNNStack):
    """Reads the source; its per-layer final state initialises the decoder's layers, its top
    layer's outputs are the attention memory.

    Attributes:
        with_outputs: whether :meth:`forward` returns the top layer's outputs (attention).
    """

    def __init__(self, spec: ModelSpec, dropout: Dropout | None):
        super().__init__(spec, spec.src_vocab_size, spec.bidirectional, dropout)
        self.with_outputs = spec.attention != "none"

    def forward(
        self, ids: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[tuple[LayerState, ...], torch.Tensor | None]:
        """int64 ``[B, S]`` ids (PAD after each row's length) and int64 CPU ``[B]`` lengths
        -> (per layer, the state after ``lengths[b]`` tokens of row ``b``, zero for a row
        of length 0, both directions concatenated forward first; the top layer's outputs
        ``[B, max(lengths), H]``, zero past each length, or None when every row is empty
        or without :attr:`with_outputs`)."""
        batch_size = ids.shape[0]
        longest = int(lengths.max()) if batch_size else 0
        if longest == 0:
            return self.zero_state(batch_size), None
        # Positions past the longest source cannot reach any row's final state.
        x = self.embed(ids[:, :longest])
        packed = not bool((lengths == longest).all())
        if packed:
            # Packing stops each row at its own length (and the reverse direction starts
            # there), so h_n / c_n are the states after its last real token, in the
            # original row order. pack_padded_sequence rejects length 0: such rows run one
            # PAD step, whose state is then replaced by zeros (and output masked).
            x = pack_padded_sequence(
                x, lengths.clamp(min=1), batch_first=True, enforce_sorted=False
            )
        layers = []
        for layer, rnn in enumerate(self.rnn):
            if layer > 0:
                x = self.drop(x)
            x, state = self.cell.run(rnn, x, None)
            # [directions, B, h] -> [1, B, directions * h], forward first
            layers.append(
                tuple(s if s.shape[0] == 1 else torch.cat(s.unbind(0), dim=-1)[None] for s in state)
            )
        if packed:
            nonempty = lengths > 0
            if not bool(nonempty.all()):
                keep = nonempty[None, :, None]
                layers = [tuple(s.where(keep, 0.0) for s in state) for state in layers]
            if self.with_outputs:
                x = pad_packed_sequence(x, batch_first=True, total_length=longest)[0]
        return tuple(layers), x if self.with_outputs else None


class Decoder(RNNStack):
    """Reads ``BOS y_1 .. y_n`` from the encoder's state and scores the next token.

    Attributes:
        attention: the :class:`attention.Attention` after the top layer, or None.
        output: ``nn.Linear(hidden_size, vocab_size)`` on the top layer's outputs (after
            dropout and attention).
    """

    def __init__(self, spec: ModelSpec, dropout: Dropout | None):
        super().__init__(spec, spec.tgt_vocab_size, False, dropout)
        self.attention = None
        if spec.attention != "none":
            self.attention = Attention(spec.attention, spec.hidden_size)
        self.output = nn.Linear(spec.hidden_size, spec.tgt_vocab_size)

    def forward(
        self, ids: torch.Tensor, state: DecoderState, positions: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, DecoderState]:
        """int64 ``[B, T]`` input ids and the state to start from -> (logits ``[B, T, V]``,
        or ``[K, V]`` at the int64 ``[K]`` flat ``positions`` of ``[B, T]`` only; the state
        after the last position, with that position's attention weights). ``state`` is not
        modified, so ``T = 1`` is one decoding step."""
        x = self.embed(ids)
        layers = []
        for layer, rnn in enumerate(self.rnn):
            if layer > 0:
                x = self.drop(x)
            x, layer_state = self.cell.run(rnn, x, state.layers[layer])
            layers.append(layer_state)
        x = self.drop(x)
        weights = None
        if self.attention is not None:
            x, weights = self.attention(x, state.memory)
            weights = weights[:, -1]
        if positions is not None:
            x = x.flatten(0, 1).index_select(0, positions)
        return self.output(x), state._replace(layers=tuple(layers), weights=weights)


class Seq2Seq(nn.Module):
    """The encoder-decoder with teacher forcing.

    Attributes:
        encoder, decoder: the :class:`Encoder` and :class:`Decoder`.
        generator: the ``torch.Generator`` every dropout mask comes from (re-seeded before
            each training step).
    """

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.generator = torch.Generator()
        dropout = optional(spec.dropout, self.generator)
        self.encoder = Encoder(spec, dropout)
        self.decoder = Decoder(spec, dropout)

    def encode(self, src_ids: torch.Tensor, src_lengths: torch.Tensor) -> DecoderState:
        """int64 ``[B, S]`` sources and int64 ``[B]`` lengths -> the decoder's initial
        :class:`DecoderState`."""
        layers, outputs = self.encoder(src_ids, src_lengths)
        memory = None
        attention = self.decoder.attention
        if attention is not None:
            if outputs is None:  # every source empty: one all-masked position, c_t = 0
                h = layers[-1][0]
                outputs = h.new_zeros(h.shape[1], 1, h.shape[2])
            memory = attention.memory(outputs, src_lengths)
        return DecoderState(layers, memory, None, src_ids.shape[1])

    def forward(
        self,
        src_ids: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt_in: torch.Tensor,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """int64 ``[B, S]`` sources, int64 ``[B]`` lengths, int64 ``[B, T]`` decoder inputs
        -> teacher-forced logits ``[B, T, V_tgt]``, or ``[K, V_tgt]`` at the int64 ``[K]``
        flat ``positions`` of ``[B, T]`` only (the loss skips padding's output layer)."""
        logits, _ = self.decoder(tgt_in, self.encode(src_ids, src_lengths), positions)
        return logits

    def step(
        self, prev_ids: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, DecoderState]:
        """int64 ``[B]`` previous ids -> (logits ``[B, V_tgt]`` of the next token, the new
        state); ``state`` is not modified."""
        logits, state = self.decoder(prev_ids[:, None], state)
        return logits[:, 0], state

    @staticmethod
    def attention(state: DecoderState) -> torch.Tensor | None:
        """``[B, S']`` attention weights of the step that produced ``state`` (``S'`` the
        memory's width); None from ``encode`` or without attention."""
        return state.weights

    @staticmethod
    def reorder(state: DecoderState, index: torch.Tensor) -> DecoderState:
        """Rows ``index`` (int64 ``[B']``) of every tensor in ``state``, as a new state."""
        return DecoderState(
            tuple(tuple(s.index_select(1, index) for s in layer) for layer in state.layers),
            None if state.memory is None else state.memory.take(index),
            None if state.weights is None else state.weights.index_select(0, index),
            state.source_width,
        )
