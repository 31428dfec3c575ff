"""The PyTorch model: :class:`lstm.Seq2Seq` behind the :class:`seq2seq_kit.backend.Model`
protocol, trained with autograd and :class:`optimizer.ClippedAdam`.

NumPy arrays cross the boundary (int32 ids in, float32 log-probabilities and weights out);
inside, ids are int64 tensors and everything runs on the CPU in the model's dtype.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from seq2seq_kit.batching import Batch
from seq2seq_kit.errors import BackendError
from seq2seq_kit.spec import ModelSpec, OptimizerSpec
from seq2seq_kit.weights import check_weights, initial_weights, weight_shapes

from .lstm import Seq2Seq
from .optimizer import ClippedAdam

#: The decoder state handed out by :meth:`TorchModel.encode` and :meth:`TorchModel.step`.
State = tuple[torch.Tensor, torch.Tensor]

_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def _canonical_map(spec: ModelSpec) -> list[tuple[str, str, bool]]:
    """``(canonical name, torch parameter name, transposed)`` for every canonical weight,
    in :func:`seq2seq_kit.weights.weight_shapes` order. Biases of recurrent layers map to
    ``bias_ih``; the frozen zero ``bias_hh`` is handled beside them."""
    entries = []
    for side in ("encoder", "decoder"):
        if spec.embedding_size:
            entries.append((f"{side}.embedding", f"{side}.embedding.weight", False))
        for layer in range(spec.num_layers):
            prefix, rnn = f"{side}.rnn.{layer}.", f"{side}.rnn."
            entries += [
                (prefix + "kernel", f"{rnn}weight_ih_l{layer}", True),
                (prefix + "recurrent_kernel", f"{rnn}weight_hh_l{layer}", True),
                (prefix + "bias", f"{rnn}bias_ih_l{layer}", False),
            ]
    entries += [
        ("decoder.output.kernel", "decoder.output.weight", True),
        ("decoder.output.bias", "decoder.output.bias", False),
    ]
    return entries


class TorchModel:
    """LSTM encoder-decoder implementing :class:`seq2seq_kit.backend.Model` in PyTorch.

    Args:
        spec: the architecture.
        seed: seeds :func:`seq2seq_kit.weights.initial_weights` (the weights every backend
            starts from) and ``torch.manual_seed``.
        optimizer: Adam settings for :meth:`train_step` (default ``OptimizerSpec()``).
        dtype: compute dtype, float32 (default) or float64 (for gradient checks), as a
            NumPy or torch dtype. Weights cross the API as float32 either way.

    Attributes:
        spec, optimizer_spec: as given.
        net: the :class:`lstm.Seq2Seq` module.
        optimizer: the :class:`optimizer.ClippedAdam` over ``net``'s trained parameters.

    The decoder state handed out by :meth:`encode` and :meth:`step` is ``(h, c)``, two
    tensors of shape ``[num_layers, B, H]`` (layer 0 first), as ``nn.LSTM`` takes it.
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        seed: int = 0,
        optimizer: OptimizerSpec | None = None,
        dtype=torch.float32,
    ):
        _check_supported(spec)
        self.spec = spec
        self.optimizer_spec = optimizer or OptimizerSpec()
        self.dtype = dtype if isinstance(dtype, torch.dtype) else _DTYPES.get(np.dtype(dtype))
        if self.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        torch.manual_seed(seed)
        self.net = Seq2Seq(
            spec.src_vocab_size,
            spec.tgt_vocab_size,
            spec.hidden_size,
            spec.embedding_size,
            spec.num_layers,
        ).to(self.dtype)
        self._params = dict(self.net.named_parameters())
        self._map = _canonical_map(spec)
        # bias_ih name -> the frozen zero bias_hh beside it (see lstm's docstring).
        self._bias_hh = {
            f"{side}.rnn.bias_ih_l{layer}": self._params[f"{side}.rnn.bias_hh_l{layer}"]
            for side in ("encoder", "decoder")
            for layer in range(spec.num_layers)
        }
        self.optimizer = ClippedAdam(self.net.parameters(), self.optimizer_spec)
        self.set_weights(initial_weights(spec, seed))

    # ------------------------------------------------------------------ Model protocol

    def train_step(self, batch: Batch) -> float:
        """One clipped Adam step on ``batch``; returns the loss (nats per target token)
        before it."""
        loss = self._loss_and_gradients(batch)
        self.optimizer.step()
        return loss

    def loss(self, batch: Batch) -> float:
        """Mean cross-entropy in nats over the positions where ``batch.tgt_mask`` is 1."""
        with torch.inference_mode():
            return self._loss_and_gradients(batch, backward=False)

    def gradients(self, batch: Batch) -> dict[str, np.ndarray]:
        """d :meth:`loss` / d weight for every canonical name, canonical shapes (kernels are
        the transposed ``weight`` gradients; a layer bias gets the ``bias_ih`` gradient,
        which equals that of ``bias_hh``). Arrays have the model's dtype. Nothing is
        updated."""
        self._loss_and_gradients(batch)
        grads = {}
        for name, param_name, transposed in self._map:
            param = self._params[param_name]
            grad = param.grad if param.grad is not None else torch.zeros_like(param)
            grads[name] = self._to_numpy(grad.T if transposed else grad)
        self.optimizer.zero_grad()
        return grads

    def log_probs(self, batch: Batch) -> np.ndarray:
        """Teacher-forced log-probabilities, float32 [B, T, V], for every ``tgt_in``
        position (padding included)."""
        self._check_batch(batch)
        with torch.inference_mode():
            logits = self.net(_ids(batch.src_ids), _ids(batch.src_lengths), _ids(batch.tgt_in))
            return self._to_numpy(F.log_softmax(logits, dim=-1), np.float32)

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> State:
        """Encoder over int32 [B, S] ids with int32 [B] lengths -> decoder initial state
        ``(h, c)``, each [num_layers, B, H]: the state after ``src_lengths[b]`` tokens
        (zero for length 0)."""
        src_ids, src_lengths = np.asarray(src_ids), np.asarray(src_lengths)
        self._check_ids("src_ids", src_ids, self.spec.src_vocab_size, ndim=2)
        self._check_lengths(src_ids, src_lengths)
        with torch.inference_mode():
            return self.net.encoder(_ids(src_ids), _ids(src_lengths))

    def step(self, prev_ids: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """One decoder step: int32 [B] previous ids and the state -> (float32 [B, V]
        log-probabilities of the next token, new state). ``state`` is not modified."""
        prev_ids = np.asarray(prev_ids)
        self._check_ids("prev_ids", prev_ids, self.spec.tgt_vocab_size, ndim=1)
        with torch.inference_mode():
            logits, state = self.net.decoder(_ids(prev_ids)[:, None], state)
            return self._to_numpy(F.log_softmax(logits[:, 0], dim=-1), np.float32), state

    def reorder(self, state: State, index: np.ndarray) -> State:
        """Rows ``index`` (int64 [B']) of ``state``, as a new state."""
        with torch.inference_mode():
            index = _ids(index)
            return tuple(s.index_select(1, index) for s in state)

    def attention(self, state: State) -> None:
        """Always None: this backend builds models without attention."""
        return None

    def set_learning_rate(self, learning_rate: float) -> None:
        """Adam's step size from the next :meth:`train_step` on."""
        self.optimizer.set_learning_rate(learning_rate)

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """Adam's state: ``step`` (int64 scalar), ``learning_rate`` (float64 scalar) and
        float32 ``m/NAME``, ``v/NAME`` for every canonical weight NAME (copies; moments of
        transposed weights are transposed the same way, a layer bias's are ``bias_ih``'s)."""
        state = {
            "step": np.array(self.optimizer.steps, dtype=np.int64),
            "learning_rate": np.array(self.optimizer.learning_rate, dtype=np.float64),
        }
        for name, param_name, transposed in self._map:
            m, v = self.optimizer.moments(self._params[param_name])
            state[f"m/{name}"] = self._to_numpy(m.T if transposed else m, np.float32)
            state[f"v/{name}"] = self._to_numpy(v.T if transposed else v, np.float32)
        return state

    def set_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`optimizer_state`; ``ValueError`` naming every missing, unexpected
        or mis-shaped entry (or a bad step, learning rate or moment), before changing
        anything."""
        arrays = {key: np.asarray(value) for key, value in state.items()}
        _check_optimizer_state(self.spec, arrays)
        moments = {}
        for name, param_name, transposed in self._map:
            m, v = (torch.tensor(arrays[f"{key}/{name}"]) for key in "mv")
            moments[self._params[param_name]] = (m.T, v.T) if transposed else (m, v)
        self.optimizer.load(moments, int(arrays["step"]))
        self.optimizer.set_learning_rate(float(arrays["learning_rate"]))

    def get_weights(self) -> dict[str, np.ndarray]:
        """Float32 copies of all weights, canonical names and shapes."""
        weights = {}
        with torch.no_grad():
            for name, param_name, transposed in self._map:
                value = self._params[param_name]
                if param_name in self._bias_hh:
                    value = value + self._bias_hh[param_name]
                weights[name] = self._to_numpy(value.T if transposed else value, np.float32)
        return weights

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Replace all weights (cast to the model's dtype). Raises ``ValueError`` naming any
        missing, unexpected or mis-shaped weight, before changing anything."""
        weights = {name: np.asarray(w) for name, w in weights.items()}
        check_weights(self.spec, weights)
        with torch.no_grad():
            for name, param_name, transposed in self._map:
                value = torch.tensor(weights[name], dtype=self.dtype)
                self._params[param_name].copy_(value.T if transposed else value)
            for bias_hh in self._bias_hh.values():
                bias_hh.zero_()  # the canonical bias lives in bias_ih alone

    # ------------------------------------------------------------------ internals

    def _loss_and_gradients(self, batch: Batch, backward: bool = True) -> float:
        """The masked mean cross-entropy; with ``backward``, leaves d loss / d parameter in
        each parameter's ``.grad`` (unused parameters: None)."""
        self._check_batch(batch)
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

    def _check_ids(self, what: str, ids: np.ndarray, vocab: int, ndim: int) -> None:
        if ids.ndim != ndim or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"{what} must be an integer array of rank {ndim}, got {ids.dtype}")
        # Out-of-range ids would otherwise fail deep inside torch with an IndexError.
        if ids.size and (ids.min() < 0 or ids.max() >= vocab):
            raise ValueError(f"{what} holds ids outside [0, {vocab})")

    def _check_lengths(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> None:
        if src_lengths.shape != src_ids.shape[:1]:
            raise ValueError(
                f"src_lengths has shape {src_lengths.shape}, expected ({src_ids.shape[0]},)"
            )
        if src_lengths.size and (src_lengths.min() < 0 or src_lengths.max() > src_ids.shape[1]):
            raise ValueError(f"src_lengths must lie in [0, {src_ids.shape[1]}]")

    def _check_batch(self, batch: Batch) -> None:
        self._check_ids("src_ids", np.asarray(batch.src_ids), self.spec.src_vocab_size, ndim=2)
        self._check_lengths(np.asarray(batch.src_ids), np.asarray(batch.src_lengths))
        self._check_ids("tgt_in", np.asarray(batch.tgt_in), self.spec.tgt_vocab_size, ndim=2)
        self._check_ids("tgt_out", np.asarray(batch.tgt_out), self.spec.tgt_vocab_size, ndim=2)


def _check_supported(spec: ModelSpec) -> None:
    """Raise :class:`BackendError` naming every feature of ``spec`` this backend lacks (it
    declares no "gru", "bidirectional", "attention" or "dropout" capability)."""
    missing = []
    if spec.cell != "lstm":
        missing.append(f"cell={spec.cell!r}")
    if spec.bidirectional:
        missing.append("bidirectional=True")
    if spec.attention != "none":
        missing.append(f"attention={spec.attention!r}")
    if spec.dropout:
        missing.append(f"dropout={spec.dropout}")
    if missing:
        raise BackendError(
            f"the torch backend does not support {', '.join(missing)}: it builds "
            "unidirectional LSTM encoder-decoders without attention or dropout"
        )


def _check_optimizer_state(spec: ModelSpec, arrays: dict[str, np.ndarray]) -> None:
    """Raise ``ValueError`` naming every problem of an optimizer state for ``spec``."""
    expected: dict[str, tuple[int, ...]] = {"step": (), "learning_rate": ()}
    for name, shape in weight_shapes(spec).items():
        expected[f"m/{name}"] = expected[f"v/{name}"] = shape
    problems = [f"missing {key} {shape}" for key, shape in expected.items() if key not in arrays]
    problems += [f"unexpected {key}" for key in arrays if key not in expected]
    problems += [
        f"{key} has shape {arrays[key].shape}, expected {shape}"
        for key, shape in expected.items()
        if key in arrays and arrays[key].shape != shape
    ]
    step, rate = arrays.get("step"), arrays.get("learning_rate")
    if (
        step is not None
        and step.shape == ()
        and (not np.issubdtype(step.dtype, np.integer) or int(step) < 0)
    ):
        problems.append(f"step must be a non-negative integer, got {step!r}")
    if (
        rate is not None
        and rate.shape == ()
        and (
            not np.issubdtype(rate.dtype, np.floating)
            or not (np.isfinite(rate) and float(rate) >= 0.0)
        )
    ):
        problems.append(f"learning_rate must be a finite float >= 0, got {rate!r}")
    for key, value in arrays.items():
        if key.startswith(("m/", "v/")) and key in expected:
            if not np.issubdtype(value.dtype, np.floating):
                problems.append(f"{key} has dtype {value.dtype}, expected float32")
            elif not np.all(np.isfinite(value)):
                problems.append(f"{key} holds non-finite values")
            elif key.startswith("v/") and value.size and value.min() < 0:
                problems.append(f"{key} holds negative values")
    if problems:
        raise ValueError("optimizer state does not match the model: " + "; ".join(problems))


def _ids(array: np.ndarray) -> torch.Tensor:
    """Integer array -> int64 CPU tensor (one-hot and packing want int64). Copies unless
    the array is already writable int64 (torch warns on read-only arrays)."""
    array = np.asarray(array)
    if array.dtype != np.int64 or not array.flags.writeable:
        array = array.astype(np.int64)
    return torch.from_numpy(array)
