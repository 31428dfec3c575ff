"""The PyTorch model: an RNN encoder-decoder (Sutskever et al. 2014) as ``torch.nn`` modules,
with LSTM or GRU cells, an optional bidirectional encoder, optional global attention (Luong
et al. 2015) and dropout, behind the :class:`seq2seq_kit.backend.Model` protocol; trained
with autograd and :class:`optimizer.ClippedAdam`.

Each side is an optional ``nn.Embedding`` feeding ``num_layers`` recurrent layers, one
batch-first ``nn.LSTM`` or ``nn.GRU`` per layer (both directions in one module for a
bidirectional encoder) so that dropout can act between them; the decoder adds the optional
:class:`attention.Attention` and an ``nn.Linear`` output projection. The recurrent cell is
a module (:mod:`.lstm` or :mod:`.gru`, one interface) chosen by ``spec.cell``. Tensors are
batch-major (``[B, T, ...]``); a layer's recurrent state is ``(h, c)`` or ``(h,)``, each
``[1, B, H]`` as ``nn.LSTM`` / ``nn.GRU`` take it.

Relation to the canonical layout of :mod:`seq2seq_kit.weights` (``l`` is the layer)::

    {side}.embedding                  = {side}.embedding.weight
    {side}.rnn.{l}.*                  from {side}.rnn.{l}.*_l0          (see .lstm, .gru)
    encoder.rnn_reverse.{l}.*         from encoder.rnn.{l}.*_l0_reverse
    decoder.attention.*               from decoder.attention.*          (see .attention)
    decoder.output.kernel             = decoder.output.weight.T
    decoder.output.bias               = decoder.output.bias

NumPy arrays cross the boundary (int32 ids in, float32 log-probabilities and weights out);
inside, ids are int64 tensors and everything runs on the CPU in the model's dtype.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seq2seq_kit.backend import attention_at_width
from seq2seq_kit.batching import Batch
from seq2seq_kit.spec import ModelSpec, OptimizerSpec
from seq2seq_kit.weights import (
    check_optimizer_state,
    check_weights,
    initial_weights,
    weight_shapes,
)

from . import gru, lstm
from .attention import Attention, Memory
from .optimizer import ClippedAdam

#: The recurrent cell modules, by ``ModelSpec.cell``; they share one interface.
CELLS = {"lstm": lstm, "gru": gru}

#: Per direction of a recurrent layer, the parameters the cell modules map.
RNN_PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}

#: One layer's recurrent state: ``(h, c)`` (LSTM) or ``(h,)`` (GRU), each ``[1, B, H]``, as
#: ``nn.LSTM`` / ``nn.GRU`` take it.
LayerState = tuple[torch.Tensor, ...]


class DecoderState(NamedTuple):
    """The decoder state handed out by :meth:`TorchModel.encode` and :meth:`TorchModel.step`.

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


class Dropout(nn.Module):
    """Inverted dropout (Srivastava et al. 2014) in training mode, with masks drawn from
    ``generator`` rather than torch's global one, so that re-seeding it fixes them all (the
    forward pass draws them in a fixed order). Accepts a ``PackedSequence`` (the mask covers
    its real positions)."""

    def __init__(self, rate: float, generator: torch.Generator):
        super().__init__()
        self.rate = rate
        self.generator = generator

    def forward(self, x):
        if not self.training:
            return x
        if isinstance(x, PackedSequence):
            return x._replace(data=self(x.data))
        # Uniforms compared to the rate: twice as fast as bernoulli_ on the CPU.
        draws = torch.rand(x.shape, generator=self.generator, dtype=x.dtype, device=x.device)
        return x * (draws >= self.rate).to(x.dtype).div_(1.0 - self.rate)


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

    def forward(self, ids: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """int64 ``[B, T]`` input ids and the state to start from -> (logits ``[B, T, V]``,
        the state after the last position, with that position's attention weights).
        ``state`` is not modified, so ``T = 1`` is one decoding step."""
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
        dropout = Dropout(spec.dropout, self.generator) if spec.dropout > 0.0 else None
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
        self, src_ids: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor
    ) -> torch.Tensor:
        """int64 ``[B, S]`` sources, int64 ``[B]`` lengths, int64 ``[B, T]`` decoder inputs
        -> teacher-forced logits ``[B, T, V_tgt]``."""
        logits, _ = self.decoder(tgt_in, self.encode(src_ids, src_lengths))
        return logits


class TorchModel:
    """RNN encoder-decoder implementing :class:`seq2seq_kit.backend.Model` in PyTorch.

    Args:
        spec: the architecture.
        seed: seeds :func:`seq2seq_kit.weights.initial_weights` (the weights every backend
            starts from) and, with the update count, the dropout masks.
        optimizer: Adam settings for :meth:`train_step` (default ``OptimizerSpec()``).
        dtype: compute dtype, float32 (default) or float64 (for gradient checks), as a
            NumPy or torch dtype. Weights cross the API as float32 either way.

    Attributes:
        spec, optimizer_spec, seed: as given (``seed`` is restored by
            :meth:`set_optimizer_state`).
        net: the :class:`Seq2Seq` module, in eval mode outside :meth:`train_step`.
        optimizer: the :class:`optimizer.ClippedAdam` over ``net``'s trained parameters.

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
        dtype=torch.float32,
    ):
        self.spec = spec
        self.seed = int(seed)
        self.optimizer_spec = optimizer or OptimizerSpec()
        self.dtype = dtype if isinstance(dtype, torch.dtype) else _DTYPES.get(np.dtype(dtype))
        if self.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        self.cell = CELLS[spec.cell]
        self.net = Seq2Seq(spec).to(self.dtype).eval()
        self._params = dict(self.net.named_parameters())
        self._shapes = weight_shapes(spec)
        self._plain, self._directions = _plain_map(spec), _direction_map(spec)
        self.optimizer = ClippedAdam(self.net.parameters(), self.optimizer_spec)
        self.set_weights(initial_weights(spec, seed))

    # ------------------------------------------------------------------ Model protocol

    def train_step(self, batches: list[Batch]) -> float:
        (batch,) = batches if isinstance(batches, list) else [batches]  # TODO accumulate
        """One clipped Adam step on ``batch`` (with dropout if ``spec.dropout`` > 0, masks
        drawn from a generator seeded by ``(seed, updates so far)``); returns the loss
        (nats per target token, with those masks) before it."""
        if self.spec.dropout == 0.0:
            # Training mode only switches dropout on; Module.train() + eval() walk every
            # submodule (~45 us, 3-4% of a step of the seed's model), so skip them here.
            loss = self._loss_and_gradients(batch)
        else:
            entropy = np.random.SeedSequence((self.seed, self.optimizer.steps))
            self.net.generator.manual_seed(int(entropy.generate_state(1, np.uint64)[0]))
            self.net.train()
            try:
                loss = self._loss_and_gradients(batch)
            finally:
                self.net.eval()
        self.optimizer.step()
        return loss

    def loss(self, batch: Batch) -> float:
        """Mean cross-entropy in nats over the positions where ``batch.tgt_mask`` is 1
        (no dropout)."""
        with torch.inference_mode():
            return self._loss_and_gradients(batch, backward=False)

    def gradients(self, batch: Batch) -> dict[str, np.ndarray]:
        """d :meth:`loss` / d weight for every canonical name, canonical shapes (no
        dropout). Arrays have the model's dtype. Nothing is updated."""
        self._loss_and_gradients(batch)
        grads = self._to_canonical(
            {n: torch.zeros_like(p) if p.grad is None else p.grad for n, p in self._params.items()}
        )
        self.optimizer.zero_grad()
        return {name: self._to_numpy(g) for name, g in grads.items()}

    def log_probs(self, batch: Batch) -> np.ndarray:
        """Teacher-forced log-probabilities, float32 [B, T, V], for every ``tgt_in``
        position (padding included)."""
        with torch.inference_mode():
            logits = self.net(_ids(batch.src_ids), _ids(batch.src_lengths), _ids(batch.tgt_in))
            return self._to_numpy(F.log_softmax(logits, dim=-1), np.float32)

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> DecoderState:
        """Encoder over int32 [B, S] ids with int32 [B] lengths -> the decoder's initial
        :class:`DecoderState`: per layer the encoder's state after ``src_lengths[b]`` tokens
        (zero for length 0; forward and reverse halves concatenated when bidirectional),
        and the attention memory."""
        with torch.inference_mode():
            return self.net.encode(_ids(src_ids), _ids(src_lengths))

    def step(self, prev_ids: np.ndarray, state: DecoderState) -> tuple[np.ndarray, DecoderState]:
        """One decoder step: int32 [B] previous ids and the state -> (float32 [B, V]
        log-probabilities of the next token, new state). ``state`` is not modified."""
        with torch.inference_mode():
            logits, state = self.net.decoder(_ids(prev_ids)[:, None], state)
            return self._to_numpy(F.log_softmax(logits[:, 0], dim=-1), np.float32), state

    def reorder(self, state: DecoderState, index: np.ndarray) -> DecoderState:
        """Rows ``index`` (int64 [B']) of every tensor in ``state``, as a new state."""
        with torch.inference_mode():
            index = _ids(index)
            return DecoderState(
                tuple(tuple(s.index_select(1, index) for s in layer) for layer in state.layers),
                None if state.memory is None else state.memory.take(index),
                None if state.weights is None else state.weights.index_select(0, index),
                state.source_width,
            )

    def attention(self, state: DecoderState) -> np.ndarray | None:
        """Float32 [B, S] attention weights of the step that returned ``state`` (S the
        width of the encoded ``src_ids``; 0 past each source's length, rows summing to 1,
        or all 0 for an empty source); None for an ``encode`` state or without attention."""
        if state.weights is None:
            return None
        weights = self._to_numpy(state.weights, np.float32)
        return attention_at_width(weights, state.source_width)

    def set_learning_rate(self, learning_rate: float) -> None:
        """Adam's step size from the next :meth:`train_step` on."""
        self.optimizer.set_learning_rate(learning_rate)

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """Adam's state: ``step`` (int64 scalar), ``learning_rate`` (float64 scalar),
        ``seed`` (int64 scalar: the dropout seed) and float32 ``m/NAME``, ``v/NAME`` for
        every canonical weight NAME (copies; the moments map to the canonical layout as the
        weights do)."""
        state = {
            "step": np.array(self.optimizer.steps, dtype=np.int64),
            "learning_rate": np.array(self.optimizer.learning_rate, dtype=np.float64),
            "seed": np.array(self.seed, dtype=np.int64),
        }
        moments = {n: self.optimizer.moments(p) for n, p in self._params.items()}
        for key, index in (("m", 0), ("v", 1)):
            canonical = self._to_canonical({n: mv[index] for n, mv in moments.items()})
            for name, value in canonical.items():
                state[f"{key}/{name}"] = self._to_numpy(value, np.float32)
        return state

    def set_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`optimizer_state` (the dropout seed too, so masks continue as in
        the saved run); ``ValueError`` naming every missing, unexpected or mis-shaped entry
        (or a bad step, seed, learning rate or moment), before changing anything."""
        arrays = {key: np.asarray(value) for key, value in state.items()}
        check_optimizer_state(self.spec, arrays)
        m, v = (
            self._from_canonical({n: torch.tensor(arrays[f"{key}/{n}"]) for n in self._shapes})
            for key in "mv"
        )
        self.optimizer.load({self._params[n]: (m[n], v[n]) for n in m}, int(arrays["step"]))
        self.optimizer.set_learning_rate(float(arrays["learning_rate"]))
        self.seed = int(arrays["seed"])

    def get_weights(self) -> dict[str, np.ndarray]:
        """Float32 copies of all weights, canonical names and shapes."""
        with torch.no_grad():
            weights = self._to_canonical({n: p.detach() for n, p in self._params.items()})
            return {name: self._to_numpy(w, np.float32) for name, w in weights.items()}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Replace all weights (cast to the model's dtype). Raises ``ValueError`` naming any
        missing, unexpected or mis-shaped weight, before changing anything."""
        weights = {name: np.asarray(w) for name, w in weights.items()}
        check_weights(self.spec, weights)
        params = self._from_canonical({n: torch.tensor(w) for n, w in weights.items()})
        with torch.no_grad():
            for name, value in params.items():
                self._params[name].copy_(value)

    # ------------------------------------------------------------------ canonical layout

    def _to_canonical(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-parameter tensors (the parameters, their gradients or Adam moments, by
        parameter name) -> canonical name -> tensor, in :func:`weight_shapes` order."""
        out = {name: tensors[p].T if t else tensors[p] for name, p, t in self._plain}
        for canonical, prefix, suffix in self._directions:
            parts = {k: tensors[f"{prefix}{k}{suffix}"] for k in RNN_PARAMS}
            for key, value in self.cell.to_canonical(parts).items():
                out[canonical + key] = value
        return {name: out[name] for name in self._shapes}

    def _from_canonical(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The inverse of :meth:`_to_canonical`: canonical name -> tensor, to parameter
        name -> tensor (for every parameter, the frozen LSTM ``bias_hh`` included)."""
        out = {p: tensors[name].T if t else tensors[name] for name, p, t in self._plain}
        for canonical, prefix, suffix in self._directions:
            parts = {k: tensors[canonical + k] for k in ("kernel", "recurrent_kernel", "bias")}
            for key, value in self.cell.from_canonical(parts).items():
                out[f"{prefix}{key}{suffix}"] = value
        return out

    # ------------------------------------------------------------------ internals

    def _loss_and_gradients(self, batch: Batch, backward: bool = True) -> float:
        """The masked mean cross-entropy; with ``backward``, leaves d loss / d parameter in
        each parameter's ``.grad`` (unused parameters: None)."""
        if backward:
            self.optimizer.zero_grad()
        mask = np.asarray(batch.tgt_mask)
        used = np.flatnonzero(mask.any(axis=0))
        total = float(mask.sum(dtype=np.float64))
        if not used.size or total == 0.0:
            return 0.0
        # The decoder is causal: positions after the last unmasked one change nothing.
        steps = int(used[-1]) + 1
        logits = self.net(
            _ids(batch.src_ids), _ids(batch.src_lengths), _ids(batch.tgt_in[:, :steps])
        )
        # Weighting by the mask, not ignore_index=PAD, follows the contract to the letter:
        # the mask decides which positions count.
        nll = F.cross_entropy(
            logits.flatten(0, 1), _ids(batch.tgt_out[:, :steps]).flatten(), reduction="none"
        )
        weights = torch.tensor(mask[:, :steps], dtype=self.dtype).flatten()
        loss = torch.dot(nll, weights) / total
        if backward:
            loss.backward()
        return loss.item()

    @staticmethod
    def _to_numpy(tensor: torch.Tensor, dtype=None) -> np.ndarray:
        """A C-contiguous copy (``tensor.numpy()`` would share the parameter's memory, and
        be transposed for a ``.T`` view)."""
        array = tensor.detach().cpu().numpy()
        return np.array(array, dtype=dtype or array.dtype, order="C", copy=True)


def _plain_map(spec: ModelSpec) -> list[tuple[str, str, bool]]:
    """``(canonical name, parameter name, transposed)`` of every weight outside the
    recurrent layers."""
    entries = [
        (f"{side}.embedding", f"{side}.embedding.weight", False)
        for side in ("encoder", "decoder")
        if spec.embedding_size
    ]
    att = "decoder.attention."
    if spec.attention == "general":
        entries.append((att + "kernel", att + "linear_in.weight", True))
    elif spec.attention == "bahdanau":
        entries += [
            (att + "query_kernel", att + "linear_query.weight", True),
            (att + "memory_kernel", att + "linear_context.weight", True),
            (att + "v", att + "v", False),
        ]
    if spec.attention != "none":
        entries.append((att + "output_kernel", att + "linear_out.weight", True))
    entries += [
        ("decoder.output.kernel", "decoder.output.weight", True),
        ("decoder.output.bias", "decoder.output.bias", False),
    ]
    return entries


def _direction_map(spec: ModelSpec) -> list[tuple[str, str, str]]:
    """``(canonical prefix, parameter prefix, parameter suffix)`` of every direction of
    every recurrent layer."""
    out = []
    for side in ("encoder", "decoder"):
        directions = [("rnn", "_l0")]
        if side == "encoder" and spec.bidirectional:
            directions.append(("rnn_reverse", "_l0_reverse"))
        for layer in range(spec.num_layers):
            for direction, suffix in directions:
                out.append((f"{side}.{direction}.{layer}.", f"{side}.rnn.{layer}.", suffix))
    return out


def _ids(array: np.ndarray) -> torch.Tensor:
    """Integer array -> int64 CPU tensor (one-hot and packing want int64). Copies unless
    the array is already writable int64 (torch warns on read-only arrays)."""
    array = np.asarray(array)
    if array.dtype != np.int64 or not array.flags.writeable:
        array = array.astype(np.int64)
    return torch.from_numpy(array)
