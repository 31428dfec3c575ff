"""The ONNX Runtime model: the :class:`seq2seq_kit.backend.Model` adapter around the two
graphs of :mod:`.rnn` or :mod:`.transformer` (one convention), for inference only.

The decoder state is a :class:`State`: the step graph's inputs, as NumPy arrays or, for a
Transformer's self-attention keys and values, as :class:`.cache.Cache` buffers the model
owns. A step feeds them all with ``prev_ids``; each input ``NAME`` the graph also returns as
``next_NAME`` is replaced by it, each one it returns as ``new_NAME`` (one position) is
appended to its cache, the others (the attention memory, the source mask, a Transformer's
cross-attention keys and values) are carried unchanged. ``reorder`` is a NumPy ``take``
along the batch axis of every array with one (not of the scalar ``position``) and of every
cache; the arrays carried unchanged are taken from the encoder's rows, and only when the
rows they stand for change: beam search reorders at every step, but within each sentence's
rows, which read the same source.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from seq2seq_kit.backend import attention_at_width
from seq2seq_kit.batching import Batch
from seq2seq_kit.errors import BackendError
from seq2seq_kit.spec import OptimizerSpec, Spec, TransformerSpec
from seq2seq_kit.vocab import PAD
from seq2seq_kit.weights import check_weights, initial_weights

from . import rnn
from .cache import Cache

# The sessions built last in this process, by (spec and weights digest, threads): loading
# the same model again (a server's reload, a second Translator) reuses them. Bounded, so
# that a process building many models does not keep every one.
_SESSIONS: OrderedDict[tuple, tuple[Any, Any]] = OrderedDict()
_KEEP = 8
_LOCK = threading.Lock()


@dataclass(frozen=True)
class State:
    """The decoder state.

    Attributes:
        tensors: the step graph's state inputs by name, arrays or caches (never modified:
            steps make new ones).
        weights: [B, S'] attention of the step that made this state; None from ``encode``.
        source_width: S, the width of the ``src_ids`` encoded.
        sources: int64 [B], the encoder's row of each row (what the arrays carried
            unchanged in ``tensors`` were taken by).
        encoded: the arrays carried unchanged, as ``encode`` made them (a row per source).
    """

    tensors: dict[str, np.ndarray | Cache]
    weights: np.ndarray | None
    source_width: int
    sources: np.ndarray
    encoded: dict[str, np.ndarray]


def graphs(spec: Spec, weights: dict[str, np.ndarray], quantization: str | None = None):
    """``(encoder, decoder step)`` ONNX models of ``spec`` over canonical ``weights``, in
    float32 or, with ``quantization``, in that scheme (:mod:`.quantize`)."""
    if isinstance(spec, TransformerSpec):
        from . import transformer as module
    else:
        module = rnn
    encoder, step = module.encoder_graph(spec, weights), module.step_graph(spec, weights)
    if quantization is not None:
        from .quantize import quantize

        encoder, step = quantize(encoder, quantization), quantize(step, quantization)
    return encoder, step


def _digest(spec: Spec, weights: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(repr(spec).encode())
    for name in sorted(weights):
        h.update(name.encode())
        h.update(np.ascontiguousarray(weights[name], dtype=np.float32).tobytes())
    return h.hexdigest()


def session(model, threads: int):
    """An onnxruntime CPU ``InferenceSession`` of ``model`` running on ``threads`` threads
    (one inter-op thread: the graphs are sequential)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


class OnnxModel:
    """Encoder-decoder implementing the decoding half of :class:`seq2seq_kit.backend.Model`
    on onnxruntime. ``loss`` comes from ``log_probs``; ``train_step``, ``gradients`` and
    the optimizer methods raise ``BackendError`` (the backend declares no ``train``).

    Args:
        spec: a ``ModelSpec`` (RNN) or a ``TransformerSpec``.
        seed: seeds :func:`seq2seq_kit.weights.initial_weights`, the weights until
            :meth:`set_weights`.
        threads: onnxruntime's intra-op threads.
        quantization: None (float32) or ``"int8"``: the graphs are quantized from the
            weights (:mod:`.quantize`), as ``export --quantization int8`` writes them.
    """

    def __init__(
        self, spec: Spec, *, seed: int = 0, threads: int = 1, quantization: str | None = None
    ):
        self.spec = spec
        self.threads = max(1, int(threads))
        self.quantization = quantization
        self._weights: dict[str, np.ndarray] = {}
        self.set_weights(initial_weights(spec, seed))

    @classmethod
    def from_sessions(cls, spec: Spec, encoder, step, quantization: str | None = None) -> OnnxModel:
        """A model over two ready sessions (an exported directory's, whose graphs are in
        ``quantization``): it decodes, but holds no weights (``get_weights`` is empty and
        ``set_weights`` builds new sessions, in the same scheme)."""
        model = cls.__new__(cls)
        model.spec, model.threads, model._weights = spec, 1, {}
        model.quantization = quantization
        model._use(encoder, step)
        return model

    def _use(self, encoder, step) -> None:
        self._encoder, self._step = encoder, step
        self._encoder_outputs = [o.name for o in encoder.get_outputs()]
        self._outputs = [o.name for o in step.get_outputs()]
        self._inputs = [i.name for i in step.get_inputs() if i.name != "prev_ids"]
        # inputs the graph returns one position of, to append: {input: output}
        self._appended = {
            name[len("new_") :]: name
            for name in self._outputs
            if name.startswith("new_") and name[len("new_") :] in self._inputs
        }

    # ------------------------------------------------------------------ weights

    def get_weights(self) -> dict[str, np.ndarray]:
        """Float32 copies of all weights, canonical names and shapes."""
        return {name: w.copy() for name, w in self._weights.items()}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Replace all weights and build the two sessions from them (or reuse those built
        for the same spec, weights and threads in this process). ``ValueError`` naming any
        missing, unexpected or mis-shaped weight, before changing anything."""
        check_weights(self.spec, {name: np.asarray(w) for name, w in weights.items()})
        copied = {name: np.array(w, dtype=np.float32) for name, w in weights.items()}
        key = (_digest(self.spec, copied), self.threads, self.quantization)
        with _LOCK:
            sessions = _SESSIONS.get(key)
            if sessions is None:
                encoder, step = graphs(self.spec, copied, self.quantization)
                sessions = (session(encoder, self.threads), session(step, self.threads))
                _SESSIONS[key] = sessions
                while len(_SESSIONS) > _KEEP:
                    _SESSIONS.popitem(last=False)
            _SESSIONS.move_to_end(key)
        self._weights = copied
        self._use(*sessions)

    # ------------------------------------------------------------------ decoding

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> State:
        """Run the encoder graph on int32 [B, S] ids with int32 [B] lengths -> the initial
        :class:`State`. The source is cut to its longest length (at least 1: an all-empty
        batch encodes one hidden PAD position), as the reference does; the result does not
        depend on padding."""
        lengths = np.asarray(src_lengths, dtype=np.int64)
        batch_size = src_ids.shape[0]
        width = max(1, int(lengths.max()) if lengths.size else 0)
        ids = np.full((batch_size, width), PAD, dtype=np.int64)
        cut = min(width, src_ids.shape[1])
        ids[:, :cut] = src_ids[:, :cut]
        values = self._encoder.run(None, {"src_ids": ids, "src_lengths": lengths})
        tensors: dict[str, np.ndarray | Cache] = dict(
            zip(self._encoder_outputs, values, strict=True)
        )
        limit = getattr(self.spec, "max_positions", 0)
        for name in self._appended:
            tensors[name] = Cache.empty(tensors[name], limit)
        carried = {
            name: value
            for name, value in tensors.items()
            if name not in self._appended and f"next_{name}" not in self._outputs
        }
        return State(tensors, None, src_ids.shape[1], np.arange(batch_size), carried)

    def step(self, prev_ids: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """One decoder-step graph run: int32 [B] previous ids -> (float32 [B, V]
        log-probabilities, new state). ``state`` is not modified.

        Raises:
            ValueError: a Transformer already at ``spec.max_positions``.
        """
        tensors = state.tensors
        if "position" in tensors:
            position = int(tensors["position"])
            if position >= self.spec.max_positions:
                raise ValueError(
                    f"the decoder is at position {position}: the model has no position "
                    f"beyond max_positions - 1 = {self.spec.max_positions - 1}"
                )
        feed = {name: _fed(tensors[name]) for name in self._inputs}
        feed["prev_ids"] = np.asarray(prev_ids, dtype=np.int64)
        results = dict(zip(self._outputs, self._step.run(None, feed), strict=True))
        new = {}
        for name, value in tensors.items():
            if name in self._appended:
                new[name] = value.append(results[self._appended[name]])
            else:
                new[name] = results.get(f"next_{name}", value)
        return results["log_probs"], replace(state, tensors=new, weights=results.get("attention"))

    def reorder(self, state: State, index: np.ndarray) -> State:
        """Rows ``index`` (int64 [B']) of every batched array of ``state``, as a new state."""
        sources = state.sources[index]
        same = np.array_equal(sources, state.sources)
        tensors = {
            name: (value if same else _take(state.encoded[name], sources))
            if name in state.encoded
            else _take(value, index)
            for name, value in state.tensors.items()
        }
        weights = None if state.weights is None else state.weights[index]
        return replace(state, tensors=tensors, weights=weights, sources=sources)

    def attention(self, state: State) -> np.ndarray | None:
        """Float32 [B, S] attention of the step that returned ``state`` (see the
        contract); None for an ``encode`` state or a model without attention."""
        if state.weights is None:
            return None
        return attention_at_width(state.weights, state.source_width)

    def log_probs(self, batch: Batch) -> np.ndarray:
        """Teacher-forced log-probabilities, float32 [B, T, V]: the step graph run over
        ``batch.tgt_in`` one position at a time (padding included)."""
        state = self.encode(batch.src_ids, batch.src_lengths)
        steps = []
        for t in range(batch.tgt_in.shape[1]):
            logp, state = self.step(batch.tgt_in[:, t], state)
            steps.append(logp)
        if not steps:
            return np.zeros((batch.tgt_in.shape[0], 0, self.spec.tgt_vocab_size), dtype=np.float32)
        return np.ascontiguousarray(np.stack(steps, axis=1), dtype=np.float32)

    def loss(self, batch: Batch) -> float:
        """Mean cross-entropy in nats over the non-pad target positions, from
        :meth:`log_probs` (no label smoothing: there is no optimizer here)."""
        logp = self.log_probs(batch).astype(np.float64)
        picked = np.take_along_axis(logp, batch.tgt_out[..., None].astype(np.int64), axis=-1)
        mask = batch.tgt_mask.astype(np.float64)
        return float(-(picked[..., 0] * mask).sum() / max(mask.sum(), 1.0))

    # ------------------------------------------------------------------ no training

    def _no_training(self, *args: Any, **kwargs: Any):
        raise BackendError(
            "backend 'onnx' is inference-only (it declares no 'train' capability): train "
            "with another backend, then load the model directory with --backend onnx"
        )

    train_step = gradients = set_learning_rate = _no_training
    optimizer_state = set_optimizer_state = _no_training


def _fed(value: np.ndarray | Cache) -> np.ndarray:
    """What the step graph is fed for a state entry: a cache's whole buffer (its input
    ``position`` says how much of it to read)."""
    return value.buffer if isinstance(value, Cache) else value


def _take(value: np.ndarray | Cache, index: np.ndarray) -> np.ndarray | Cache:
    if isinstance(value, Cache):
        return value.take(index)
    return value if value.ndim == 0 else np.take(value, index, axis=0)


def build(spec: Spec, *, seed: int, optimizer: OptimizerSpec, runtime=None) -> OnnxModel:
    """The backend's ``build``: ``optimizer`` is unused (no training)."""
    if runtime is None:
        return OnnxModel(spec, seed=seed)
    return OnnxModel(spec, seed=seed, threads=runtime.threads, quantization=runtime.quantization)
