"""The encoder and decoder as ``torch.nn`` modules, in PyTorch's own parameter layout.

Each side is an optional ``nn.Embedding`` feeding a stacked, batch-first ``nn.LSTM``; the
decoder adds an ``nn.Linear`` output projection. Tensors are batch-major (``[B, T, ...]``)
and recurrent states are ``(h, c)``, each ``[num_layers, B, H]``, as ``nn.LSTM`` takes them.

Relation to the canonical layout of :mod:`seq2seq_kit.weights` (``l`` is the layer)::

    {side}.embedding                  = {side}.embedding.weight          (same orientation)
    {side}.rnn.{l}.kernel             = {side}.rnn.weight_ih_l{l}.T
    {side}.rnn.{l}.recurrent_kernel   = {side}.rnn.weight_hh_l{l}.T
    {side}.rnn.{l}.bias               = {side}.rnn.bias_ih_l{l} + {side}.rnn.bias_hh_l{l}
    decoder.output.kernel             = decoder.output.weight.T
    decoder.output.bias               = decoder.output.bias

The gate order ``i, f, g, o`` is PyTorch's too. ``bias_hh_l{l}`` is held at zero and frozen
(``requires_grad=False``): the canonical model has one bias per layer, and training two
copies would give it two Adam updates per step and count its gradient twice in the clipping
norm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

State = tuple[torch.Tensor, torch.Tensor]


class LSTMStack(nn.Module):
    """Token ids -> layer-0 inputs -> ``num_layers`` stacked LSTM layers.

    With ``embedding_size == 0`` layer 0 reads one-hot vectors of width ``vocab_size`` (the
    seed's Keras model); ``one_hot @ kernel`` picks kernel row ``id`` exactly (one product by
    1.0, the rest by 0.0), so this matches the canonical row gather to the last bit.

    Attributes:
        vocab_size, hidden_size, num_layers: from the spec.
        embedding: ``nn.Embedding(vocab_size, embedding_size)``, or None for one-hot inputs.
        rnn: ``nn.LSTM(embedding_size or vocab_size, hidden_size, num_layers,
            batch_first=True)``.
    """

    def __init__(self, vocab_size: int, hidden_size: int, embedding_size: int, num_layers: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.embedding = nn.Embedding(vocab_size, embedding_size) if embedding_size else None
        self.rnn = nn.LSTM(
            embedding_size or vocab_size, hidden_size, num_layers=num_layers, batch_first=True
        )
        with torch.no_grad():
            for layer in range(num_layers):
                bias_hh = getattr(self.rnn, f"bias_hh_l{layer}")
                bias_hh.zero_()
                bias_hh.requires_grad_(False)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """int64 ``[B, T]`` ids -> ``[B, T, embedding_size or vocab_size]`` layer-0 inputs."""
        if self.embedding is not None:
            return self.embedding(ids)
        return F.one_hot(ids, self.vocab_size).to(self.rnn.weight_hh_l0.dtype)

    def zero_state(self, batch_size: int) -> State:
        """The all-zero ``(h, c)``, each ``[num_layers, batch_size, H]``."""
        weight = self.rnn.weight_hh_l0
        h = weight.new_zeros(self.num_layers, batch_size, self.hidden_size)
        return h, torch.zeros_like(h)


class Encoder(LSTMStack):
    """Reads the source; its per-layer final state initialises the decoder's layers."""

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> State:
        """int64 ``[B, S]`` ids (PAD after each row's length) and int64 CPU ``[B]`` lengths
        -> ``(h, c)``, each ``[num_layers, B, H]``: every layer's state after
        ``lengths[b]`` tokens of row ``b``, zero for a row of length 0."""
        batch_size = ids.shape[0]
        longest = int(lengths.max()) if batch_size else 0
        if longest == 0:
            return self.zero_state(batch_size)
        # Positions past the longest source cannot reach any row's final state.
        inputs = self.embed(ids[:, :longest])
        if bool((lengths == longest).all()):
            _, state = self.rnn(inputs)
            return state
        # Packing stops each row at its own length, so h_n / c_n are the states after its
        # last real token (returned in the original row order). pack_padded_sequence rejects
        # length 0: such rows run one PAD step, whose state is then replaced by zeros.
        nonempty = lengths > 0
        packed = pack_padded_sequence(
            inputs, lengths.clamp(min=1), batch_first=True, enforce_sorted=False
        )
        _, (h, c) = self.rnn(packed)
        if not bool(nonempty.all()):
            keep = nonempty.to(h.device)[None, :, None]
            h, c = h.where(keep, 0.0), c.where(keep, 0.0)
        return h, c


class Decoder(LSTMStack):
    """Reads ``BOS y_1 .. y_n`` from the encoder's state and scores the next token.

    Attributes:
        output: ``nn.Linear(hidden_size, vocab_size)`` on the top layer's outputs.
    """

    def __init__(self, vocab_size: int, hidden_size: int, embedding_size: int, num_layers: int):
        super().__init__(vocab_size, hidden_size, embedding_size, num_layers)
        self.output = nn.Linear(hidden_size, vocab_size)

    def forward(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """int64 ``[B, T]`` input ids and the ``(h, c)`` to start from -> (logits
        ``[B, T, V]``, the ``(h, c)`` after the last position). ``state`` is not modified,
        so ``T = 1`` is one decoding step."""
        outputs, state = self.rnn(self.embed(ids), state)
        return self.output(outputs), state


class Seq2Seq(nn.Module):
    """The encoder-decoder (Sutskever et al. 2014) with teacher forcing.

    Parameter names (``encoder.rnn.weight_ih_l0``, ``decoder.output.weight``, ...) follow
    the canonical names, see the module docstring for the mapping.
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        hidden_size: int,
        embedding_size: int,
        num_layers: int,
    ):
        super().__init__()
        self.encoder = Encoder(src_vocab_size, hidden_size, embedding_size, num_layers)
        self.decoder = Decoder(tgt_vocab_size, hidden_size, embedding_size, num_layers)

    def forward(
        self, src_ids: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor
    ) -> torch.Tensor:
        """int64 ``[B, S]`` sources, int64 ``[B]`` lengths, int64 ``[B, T]`` decoder inputs
        -> teacher-forced logits ``[B, T, V_tgt]``."""
        logits, _ = self.decoder(tgt_in, self.encoder(src_ids, src_lengths))
        return logits
