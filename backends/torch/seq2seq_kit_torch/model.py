"""The PyTorch model: a network of :mod:`.rnn` or :mod:`.transformer` behind the
:class:`seq2seq_kit.backend.Model` protocol, trained with autograd and
:class:`optimizer.ClippedAdam`; :mod:`.layout` maps its parameters to the canonical layout.

Both networks have one interface: ``net(src_ids, src_lengths, tgt_in, positions=None)``
(teacher-forced logits, at the given flat positions only if any), ``net.encode``,
``net.step``, ``net.reorder``, ``net.attention`` (the attention weights of a state's last
step, or None) and ``net.generator`` (the dropout masks' source); their decoder states
carry ``source_width``. So this adapter does not depend on the architecture.

NumPy arrays cross the boundary (int32 ids in, float32 log-probabilities and weights out);
inside, ids are int64 tensors on the model's device (:mod:`.placement`), and the forward
passes run in its precision (autocast for bf16/fp16; parameters stay in the model's dtype).
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seq2seq_kit.backend import attention_at_width
from seq2seq_kit.batching import Batch, make_batch
from seq2seq_kit.runtime import Runtime
from seq2seq_kit.spec import OptimizerSpec, Spec, TransformerSpec
from seq2seq_kit.weights import check_optimizer_state, check_weights, initial_weights

from .ema import Ema
from .layout import Layout
from .loss import smoothed_cross_entropy
from .optimizer import ClippedAdam
from .placement import Placement
from .rnn import Seq2Seq
from .transformer import Transformer

_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def network(spec: Spec) -> nn.Module:
    """The untrained network of ``spec``: a :class:`.transformer.Transformer` or an RNN
    :class:`.rnn.Seq2Seq`."""
    return Transformer(spec) if isinstance(spec, TransformerSpec) else Seq2Seq(spec)


class TorchModel:
    """An RNN or Transformer encoder-decoder implementing :class:`seq2seq_kit.backend.Model`
    in PyTorch.

    Args:
        spec: the architecture (``ModelSpec`` or ``TransformerSpec``).
        seed: seeds :func:`seq2seq_kit.weights.initial_weights` (the weights every backend
            starts from) and, with the update count, the dropout masks.
        optimizer: Adam settings and label smoothing (default ``OptimizerSpec()``).
        dtype: compute dtype, float32 (default) or float64 (for gradient checks), as a
            NumPy or torch dtype. Weights cross the API as float32 either way.
        runtime: the device and precision (:class:`.placement.Placement`; default the CPU
            in fp32); with a ``group`` of more than one process (joined by
            :func:`.distributed.join`), :meth:`train_step` trains through
            ``DistributedDataParallel`` and sums the gradients over the ranks. Threads are
            set by the backend's ``build``.

    Raises:
        ValueError: ``dtype`` is neither float32 nor float64.
        seq2seq_kit.errors.BackendError: a device that is not there.

    Attributes:
        spec, optimizer_spec, seed: as given (``seed`` is restored by
            :meth:`set_optimizer_state`).
        net: the :func:`network`, in eval mode outside :meth:`train_step`.
        layout: its :class:`.layout.Layout`.
        optimizer: the :class:`optimizer.ClippedAdam` over ``net``'s trained parameters.
        ema: the :class:`.ema.Ema` of ``net``'s parameters (empty without ``ema_decay``).
        placement: the :class:`.placement.Placement`: device, precision, fp16 scaler.
        world_size: the processes of a data-parallel run (1 alone).

    The decoder state handed out by :meth:`encode` and :meth:`step` is the network's
    (:class:`.rnn.DecoderState` or :class:`.transformer.TransformerState`). Arguments are
    not checked here: ``Backend.create`` returns the model inside
    :class:`seq2seq_kit.validation.CheckedModel`, which does it for every backend.
    """

    def __init__(
        self,
        spec: Spec,
        *,
        seed: int = 0,
        optimizer: OptimizerSpec | None = None,
        dtype=torch.float32,
        runtime: Runtime | None = None,
    ):
        self.spec = spec
        self.seed = int(seed)
        self.optimizer_spec = optimizer or OptimizerSpec()
        self.dtype = dtype if isinstance(dtype, torch.dtype) else _DTYPES.get(np.dtype(dtype))
        if self.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        self.placement = Placement(runtime or Runtime())
        self._ids = self.placement.ids
        self.net = network(spec).to(self.placement.device, self.dtype).eval()
        self.layout = Layout(spec)
        self._params = dict(self.net.named_parameters())
        self._dropout = spec.dropout > 0.0 or getattr(spec, "attention_dropout", 0.0) > 0.0
        masks = self._frozen_masks()
        self.optimizer = ClippedAdam(self.net.parameters(), self.optimizer_spec, masks)
        self.ema = Ema(self._params, self.optimizer_spec.ema_decay, masks)
        self.set_weights(initial_weights(spec, seed))
        group = None if runtime is None else runtime.group
        self.world_size = 1 if group is None else group.world_size
        self._data_parallel = None
        if self.world_size > 1:
            from .distributed import data_parallel

            # Wraps self.net (sharing its parameters) for training only: inference,
            # loss and gradients go through self.net, with no collectives.
            self._data_parallel = data_parallel(self.net)

    # ------------------------------------------------------------------ Model protocol

    def train_step(self, batches: list[Batch], total_tokens: int | None = None) -> float:
        """One clipped Adam step on the gradient of the batches' concatenation (the sum of
        every batch's token losses over the non-pad tokens of all of them; fairseq's
        ``--update-freq``), with dropout if the spec asks for it, the masks of batch ``i``
        drawn from a generator seeded by ``(seed, updates so far, i)``; returns that loss
        (nats per target token, with those masks) before the update.

        Data-parallel (built with a group, given ``total_tokens``): this rank's batches,
        possibly none, and the update's target tokens over all ranks; the gradient is that
        of the sum of every rank's token losses over ``total_tokens``; returns this rank's
        share of that loss. With an ``ema_decay``, the moving average takes in the updated
        weights (:mod:`.ema`)."""
        if self._data_parallel is not None and total_tokens is not None:
            losses = self._distributed_loss_and_gradients
            losses = functools.partial(losses, total_tokens=total_tokens)
        else:
            losses = self._loss_and_gradients
        if not self._dropout:
            # Training mode only switches dropout on; Module.train() + eval() walk every
            # submodule (~45 us, 3-4% of a step of the seed's model), so skip them here.
            loss = losses(batches)
        else:
            self.net.train()
            try:
                loss = losses(batches, reseed=True)
            finally:
                self.net.eval()
        steps = self.optimizer.steps
        self.optimizer.step(self.placement.scaler)
        if self.optimizer.steps > steps:  # fp16 skips an update whose gradient overflows
            self.ema.update(self.optimizer.steps)
        return loss

    def loss(self, batch: Batch) -> float:
        """Mean cross-entropy in nats over the positions where ``batch.tgt_mask`` is 1, with
        the optimizer spec's label smoothing (no dropout)."""
        with torch.inference_mode():
            return self._loss_and_gradients([batch], backward=False)

    def gradients(self, batch: Batch) -> dict[str, np.ndarray]:
        """d :meth:`loss` / d weight for every canonical name, canonical shapes (no
        dropout). Arrays have the model's dtype. Nothing is updated."""
        self._loss_and_gradients([batch])
        grads = self.layout.to_canonical(
            {n: torch.zeros_like(p) if p.grad is None else p.grad for n, p in self._params.items()}
        )
        grads = {name: self._to_numpy(self.placement.unscale(g)) for name, g in grads.items()}
        self.optimizer.zero_grad()
        return grads

    def log_probs(self, batch: Batch) -> np.ndarray:
        """Teacher-forced log-probabilities, float32 [B, T, V], for every ``tgt_in``
        position (padding included; no label smoothing)."""
        with torch.inference_mode():
            logits = self._net(
                self._ids(batch.src_ids), self._ids(batch.src_lengths), self._ids(batch.tgt_in)
            )
            return self._to_numpy(F.log_softmax(logits, dim=-1), np.float32)

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray):
        """Encoder over int32 [B, S] ids with int32 [B] lengths -> the decoder's initial
        state (the RNN's: per layer the encoder's state after ``src_lengths[b]`` tokens and
        the attention memory; the Transformer's: empty self-attention caches and each
        layer's cross-attention keys and values)."""
        with torch.inference_mode(), self.placement.autocast():
            return self.net.encode(self._ids(src_ids), self._ids(src_lengths))

    def step(self, prev_ids: np.ndarray, state):
        """One decoder step: int32 [B] previous ids and the state -> (float32 [B, V]
        log-probabilities of the next token, new state). ``state`` is not modified."""
        with torch.inference_mode():
            with self.placement.autocast():  # the log-softmax outside it, in float32
                logits, state = self.net.step(self._ids(prev_ids), state)
            return self._to_numpy(F.log_softmax(logits.to(self.dtype), dim=-1), np.float32), state

    def reorder(self, state, index: np.ndarray):
        """Rows ``index`` (int64 [B']) of every tensor in ``state``, as a new state."""
        with torch.inference_mode():
            return self.net.reorder(state, self._ids(index))

    def attention(self, state) -> np.ndarray | None:
        """Float32 [B, S] attention weights of the step that returned ``state`` (S the
        width of the encoded ``src_ids``; 0 past each source's length, rows summing to 1,
        or all 0 for an empty source; a Transformer's top decoder layer's cross-attention
        averaged over heads); None for an ``encode`` state or without attention."""
        with torch.inference_mode():
            weights = self.net.attention(state)
        if weights is None:
            return None
        return attention_at_width(self._to_numpy(weights, np.float32), state.source_width)

    def set_learning_rate(self, learning_rate: float) -> None:
        """Adam's step size from the next :meth:`train_step` on."""
        self.optimizer.set_learning_rate(learning_rate)

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """Adam's state: ``step`` (int64 scalar), ``learning_rate`` (float64 scalar),
        ``seed`` (int64 scalar: the dropout seed) and float32 ``m/NAME``, ``v/NAME`` for
        every canonical weight NAME (copies; the moments map to the canonical layout as the
        weights do); with an ``ema_decay``, the moving average as ``ema/NAME`` too."""
        state = {
            "step": np.array(self.optimizer.steps, dtype=np.int64),
            "learning_rate": np.array(self.optimizer.learning_rate, dtype=np.float64),
            "seed": np.array(self.seed, dtype=np.int64),
        }
        moments = {n: self.optimizer.moments(p) for n, p in self._params.items()}
        for key, index in (("m", 0), ("v", 1)):
            canonical = self.layout.to_canonical({n: mv[index] for n, mv in moments.items()})
            for name, value in canonical.items():
                state[f"{key}/{name}"] = self._to_numpy(value, np.float32)
        if self.ema.decay:
            state.update({f"ema/{n}": w for n, w in self.ema_weights().items()})
        return state

    def set_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`optimizer_state` (the dropout seed too, so masks continue as in
        the saved run); ``ValueError`` naming every missing, unexpected or mis-shaped entry
        (or a bad step, seed, learning rate or moment), before changing anything."""
        arrays = {key: np.asarray(value) for key, value in state.items()}
        check_optimizer_state(self.spec, arrays, ema=bool(self.ema.decay))
        names = self.layout.shapes
        m, v = (
            self.layout.from_canonical({n: torch.tensor(arrays[f"{key}/{n}"]) for n in names})
            for key in "mv"
        )
        self.optimizer.load({self._params[n]: (m[n], v[n]) for n in m}, int(arrays["step"]))
        self.optimizer.set_learning_rate(float(arrays["learning_rate"]))
        self.seed = int(arrays["seed"])
        if self.ema.decay:
            canonical = {n: torch.tensor(arrays[f"ema/{n}"]) for n in names}
            self.ema.load(self.layout.from_canonical(canonical))

    def ema_weights(self) -> dict[str, np.ndarray]:
        """Float32 copies of the moving average of the weights, canonical names and shapes
        (:class:`seq2seq_kit.backend.EmaModel`); the weights before the first update or
        without an ``ema_decay``."""
        if not self.ema.decay or not self.optimizer.steps:
            return self.get_weights()
        with torch.no_grad():
            weights = self.layout.to_canonical(self.ema.shadows)
            return {name: self._to_numpy(w, np.float32) for name, w in weights.items()}

    def get_weights(self) -> dict[str, np.ndarray]:
        """Float32 copies of all weights, canonical names and shapes."""
        with torch.no_grad():
            weights = self.layout.to_canonical({n: p.detach() for n, p in self._params.items()})
            return {name: self._to_numpy(w, np.float32) for name, w in weights.items()}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Replace all weights (cast to the model's dtype). Raises ``ValueError`` naming any
        missing, unexpected or mis-shaped weight, before changing anything."""
        weights = {name: np.asarray(w) for name, w in weights.items()}
        check_weights(self.spec, weights)
        params = self.layout.from_canonical({n: torch.tensor(w) for n, w in weights.items()})
        with torch.no_grad():
            for name, value in params.items():
                self._params[name].copy_(value)

    # ------------------------------------------------------------------ internals

    def _loss_and_gradients(
        self, batches: list[Batch], backward: bool = True, reseed: bool = False
    ) -> float:
        """The loss of the batches' concatenation: the sum of their masked token losses
        over their total mask. With ``backward``, leaves d loss / d parameter in each
        parameter's ``.grad`` (batch by batch, so only one batch's graph is alive at a
        time); with ``reseed``, seeds the dropout generator before each batch."""
        if backward:
            self.optimizer.zero_grad()
        masks = [np.asarray(batch.tgt_mask) for batch in batches]
        total = sum(float(mask.sum(dtype=np.float64)) for mask in masks)
        if total == 0.0:
            return 0.0
        summed = torch.zeros((), dtype=self.dtype, device=self.placement.device)
        for index, (batch, mask) in enumerate(zip(batches, masks, strict=True)):
            if not mask.any():
                continue
            if reseed:
                self._seed_dropout(index)
            batch_loss = self._summed_loss(self.net, batch, mask)
            if backward:
                self.placement.backward(batch_loss / total)
            summed += batch_loss.detach()
        return summed.item() / total

    def _distributed_loss_and_gradients(
        self, batches: list[Batch], total_tokens: int, reseed: bool = False
    ) -> float:
        """This rank's share of the update's loss, the sum of its batches' token losses
        over ``total_tokens`` (the update's non-pad target tokens on all ranks), leaving in
        each parameter's ``.grad`` d (the sum over the ranks of those shares) / d parameter.

        Each batch's backward runs through the ``DistributedDataParallel`` wrapper, which
        averages the gradients over the ranks: scaling the loss by ``world_size`` makes that
        average the sum. Only the last backward all-reduces (``no_sync`` before it, so
        accumulated batches cost one all-reduce). A rank without batches runs a one-token
        dummy batch with its loss times 0: every rank must join each update's all-reduce.
        """
        self.optimizer.zero_grad()
        ddp = self._data_parallel
        assert ddp is not None
        scale = self.world_size / float(total_tokens)
        summed = 0.0
        work = [(batch, np.asarray(batch.tgt_mask), 1.0) for batch in batches]
        if not work:
            dummy = make_batch([[]], [[]])  # BOS -> EOS, an empty source
            work = [(dummy, np.asarray(dummy.tgt_mask), 0.0)]
        for index, (batch, mask, weight) in enumerate(work):
            if reseed:
                self._seed_dropout(index)
            last = index == len(work) - 1
            with contextlib.nullcontext() if last else ddp.no_sync():
                batch_loss = self._summed_loss(ddp, batch, mask)
                self.placement.backward(batch_loss * (scale * weight))
            summed = summed + weight * batch_loss.detach()  # one device sync, at the end
        return float(summed) / float(total_tokens)

    def _summed_loss(self, forward: nn.Module, batch: Batch, mask: np.ndarray) -> torch.Tensor:
        """The sum of ``batch``'s token losses (weighted by ``mask``, label-smoothed) with
        the network called as ``forward`` (``self.net`` or its data-parallel wrapper);
        logits only where the mask is nonzero (the decoder is causal: positions after the
        last one change nothing; weighting by the mask, not ``ignore_index=PAD``, follows
        the contract: the mask decides what counts). Through the wrapper, every trained
        parameter is in the graph."""
        steps = int(np.flatnonzero(mask.any(axis=0))[-1]) + 1 if mask.any() else 1
        flat_mask = mask[:, :steps].reshape(-1)
        positions = np.flatnonzero(flat_mask)
        logits = self._net(
            self._ids(batch.src_ids),
            self._ids(batch.src_lengths),
            self._ids(batch.tgt_in[:, :steps]),
            self._ids(positions),
            forward=forward,
        )
        loss = smoothed_cross_entropy(
            logits,
            self._ids(batch.tgt_out[:, :steps].reshape(-1)[positions]),
            torch.tensor(flat_mask[positions], dtype=self.dtype, device=self.placement.device),
            self.optimizer_spec.label_smoothing,
        )
        skipped_encoder = isinstance(self.net, Seq2Seq) and not batch.src_lengths.any()
        if forward is not self.net and skipped_encoder:
            # every source empty: the RNN encoder did not run, yet each rank must give
            # each parameter a gradient (see .distributed.data_parallel)
            loss = loss + 0.0 * sum(p.sum() for p in self.optimizer.gradients)
        return loss

    def _frozen_masks(self) -> dict[nn.Parameter, torch.Tensor]:
        """Per parameter holding a weight of ``optimizer_spec.frozen``: a boolean mask, True
        on the elements of frozen weights (mapped as the weights are, :class:`Layout`)."""
        frozen = set(self.optimizer_spec.frozen)
        if not frozen:
            return {}
        flags = self.layout.from_canonical(
            {n: torch.full(shape, float(n in frozen)) for n, shape in self.layout.shapes.items()}
        )
        masks = {}
        for name, flag in flags.items():
            param = self._params[name]
            if param.requires_grad and bool((flag > 0.5).any()):
                masks[param] = (flag > 0.5).to(param.device)
        return masks

    def _net(self, *inputs: torch.Tensor, forward: nn.Module | None = None) -> torch.Tensor:
        """``self.net(*inputs)`` (or ``forward``, its data-parallel wrapper) in the model's
        precision; the logits in the model's dtype (the loss and log-probabilities are
        computed in float32 even under autocast)."""
        with self.placement.autocast():
            logits = (forward or self.net)(*inputs)
        return logits.to(self.dtype)

    def _seed_dropout(self, index: int) -> None:
        """Seed the dropout generator for batch ``index`` of this update from ``(seed,
        updates so far, index)``: masks depend on nothing else, so a resumed run draws the
        masks the uninterrupted one would have."""
        entropy = np.random.SeedSequence((self.seed, self.optimizer.steps, index))
        self.net.generator.manual_seed(int(entropy.generate_state(1, np.uint64)[0]))

    @staticmethod
    def _to_numpy(tensor: torch.Tensor, dtype=None) -> np.ndarray:
        """A C-contiguous copy (``tensor.numpy()`` would share the parameter's memory, and
        be transposed for a ``.T`` view). NumPy has no bfloat16: such tensors come out as
        float32 unless ``dtype`` says otherwise."""
        tensor = tensor.detach().cpu()
        array = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
        return np.array(array, dtype=dtype or array.dtype, order="C", copy=True)
