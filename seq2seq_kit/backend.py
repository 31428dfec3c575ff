"""The backend contract: what a plugin implements for the core.

A backend owns only numerics. Everything crosses the line as NumPy arrays: ids are int32,
log-probabilities float32, weights float32 in the canonical layout of
:mod:`seq2seq_kit.weights`. The decoder state is opaque to the core: it is only handed back
to the same model's ``step`` and ``reorder``.

Backends do not check their inputs: :meth:`Backend.create` returns every model inside
:class:`seq2seq_kit.validation.CheckedModel`, which checks and converts the arguments of
``encode``, ``step``, ``reorder`` and of the methods taking a batch, so that each backend
rejects the same bad input with the same :class:`~seq2seq_kit.validation.ModelInputError`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .architectures import required_capabilities, weight_shapes
from .batch import Batch
from .capabilities import MODEL, QUANTIZATION, RUNTIME, SEARCH_OPTIONS, TRAINING
from .errors import BackendError
from .quantization import check_scheme
from .runtime import ProcessGroup, Runtime
from .spec import OptimizerSpec, Spec
from .validation import CheckedModel, checked

State = Any

#: Capabilities a backend may declare; the conformance suite skips checks of undeclared ones.
#: Without ``train`` a backend is inference only (see :class:`Model`). Named subsets a plugin
#: combines: :mod:`seq2seq_kit.capabilities`.
KNOWN_CAPABILITIES = MODEL | TRAINING | RUNTIME | SEARCH_OPTIONS | QUANTIZATION | {"beam", "search"}


def distribution_version(distribution: str) -> str:
    """The version of the installed ``distribution`` (a plugin's ``__version__`` and
    :attr:`Backend.version`), read from its metadata; ``"0.0.0"`` when it is not installed,
    its package imported from a source tree."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "0.0.0"


@runtime_checkable
class Model(Protocol):
    """A built encoder-decoder. ``B`` is the batch size, ``S``/``T`` source/target lengths,
    ``V`` the target vocabulary size.

    Loss everywhere is the mean cross-entropy, in nats, over the non-pad target positions
    of the batch (``batch.tgt_mask``), with label smoothing when the optimizer spec asks for
    it (see :class:`~seq2seq_kit.spec.OptimizerSpec`); pad positions contribute neither loss
    nor gradient.

    Called through :meth:`Backend.create`'s model, every method below receives arguments
    that :mod:`seq2seq_kit.validation` has checked: C-contiguous int32 ids inside the
    vocabulary, lengths in range, a mask matching its lengths, ``step`` and ``reorder``
    arguments matching the state's rows, widths within a Transformer's ``max_positions``.
    A backend need not check them again.

    Decoder states. ``step`` and ``reorder`` return a new state and leave the one they were
    given valid and unchanged (the core may step a state twice, or keep a state while it
    steps a reordered copy): a backend that keeps a key/value cache may grow it in a buffer
    it owns only if older states still see what they saw. A Transformer's state holds each
    decoder layer's self-attention keys and values for the positions so far, the
    cross-attention keys and values of the encoder output, the source mask, and the next
    position; ``reorder`` selects rows of all of them.

    Inference-only backends. A backend that does not declare the ``train`` capability (e.g.
    ONNX Runtime running exported graphs) implements the decoding half: ``encode``,
    ``step``, ``reorder``, ``attention``, ``log_probs``, ``loss`` (which may come from
    ``log_probs``: there is no label smoothing to apply without an optimizer),
    ``get_weights`` and ``set_weights``. Its ``train_step``, ``gradients``,
    ``set_learning_rate``, ``optimizer_state`` and ``set_optimizer_state`` may raise (the
    first-party ones raise ``BackendError`` naming the backend): the core never calls
    them, since ``seq2seq_kit.train`` refuses such a backend before any work, and the
    conformance suite runs every decoding check on it (weights set through
    ``set_weights``) and skips those that train.
    """

    spec: Spec

    def train_step(self, batches: list[Batch], total_tokens: int | None = None) -> float:
        """One optimizer update from a non-empty list of batches, with dropout if the spec
        asks for it; returns the loss before the update. Several batches accumulate their
        gradients into one update (fairseq's ``--update-freq``): the loss and its gradient
        are those of the batches' concatenation, the mean over all their non-pad target
        positions, and clipping applies to that gradient. Dropout masks are drawn from
        (seed, update, batch position in the list).

        Data-parallel training (a model built with ``runtime.group``): each rank passes its
        share of the update's batches (possibly none: an epoch's last batch may hold fewer
        pairs than there are ranks) and ``total_tokens``, the non-pad target positions of
        the whole update over all ranks. The loss is then the sum of this rank's token
        losses divided by ``total_tokens``, its gradient is summed over the ranks before
        clipping and the update (so every rank takes the update of the ranks' batches
        concatenated), and the return value is this rank's share of the loss: the trainer
        sums the shares over the ranks."""

    def loss(self, batch: Batch) -> float:
        """The loss of ``batch`` without updating anything (no dropout: evaluation mode,
        as ``gradients``, ``log_probs``, ``encode`` and ``step``)."""

    def gradients(self, batch: Batch) -> dict[str, np.ndarray]:
        """d loss / d weight for every canonical weight name, without updating; float32
        (a reference backend computing in float64 may return float64)."""

    def log_probs(self, batch: Batch) -> np.ndarray:
        """Teacher-forced log-probabilities, float32 [B, T, V] (log-softmax of the logits
        for each ``batch.tgt_in`` position)."""

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> State:
        """Run the encoder on int32 [B, S] ids with int32 [B] lengths (0 allowed: the
        decoder then starts from the zero state). Returns the decoder's initial state."""

    def step(self, prev_ids: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """Advance the decoder by one token: int32 [B] previous ids -> (float32 [B, V]
        log-probabilities of the next token, new state)."""

    def reorder(self, state: State, index: np.ndarray) -> State:
        """Select rows of ``state`` by int64 [B'] ``index`` (beam search)."""

    def attention(self, state: State) -> np.ndarray | None:
        """Attention weights of the ``step`` that returned ``state``: float32 [B, S], S the
        width of the ``src_ids`` given to ``encode`` (zero past each source's length; rows
        sum to 1, or are all zero for an empty source). For a Transformer, the top decoder
        layer's cross-attention averaged over heads (fairseq's choice). ``None`` for a model
        without attention or a state straight from ``encode``."""

    def set_learning_rate(self, learning_rate: float) -> None:
        """Change the optimizer's step size from the next ``train_step`` on (schedules)."""

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """Adam's state for resuming: ``"step"`` (int64 scalar: updates taken), and
        ``"m/NAME"``, ``"v/NAME"`` (float32, canonical shapes) for every weight NAME;
        ``"learning_rate"`` (float64 scalar); ``"seed"`` (int64 scalar: the build seed);
        with an ``ema_decay`` above 0, ``"ema/NAME"`` too (:meth:`ema_weights`).
        Dropout masks are drawn from (seed, step), so this and the weights make training
        resume exactly in the same backend (masks, and
        so trajectories with dropout, differ between backends)."""

    def set_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`optimizer_state` returned; ``ValueError`` naming any missing,
        unexpected or mis-shaped entry, before changing anything."""

    def get_weights(self) -> dict[str, np.ndarray]:
        """Copies of all weights, canonical names and shapes, float32."""

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Replace all weights; raises ``ValueError`` naming any missing or mis-shaped one."""


@runtime_checkable
class SearchModel(Protocol):
    """The optional piece of a backend declaring ``search``: an engine that runs its own
    search (CTranslate2's ``translate_batch``, say) and has no step-by-step decoder with an
    external state. Such a model may leave ``encode``, ``step``, ``reorder`` and
    ``attention`` raising ``NotImplementedError``; the core then decodes through ``search``
    alone, and refuses what needs a step (``Translator.attention``)."""

    def search(
        self,
        src_ids: np.ndarray,
        src_lengths: np.ndarray,
        *,
        max_length: int,
        beam: int,
        n_best: int,
        length_penalty: float,
        early_stopping: bool | str | float = False,
    ) -> list[list[Any]]:
        """Decode int32 [B, S] sources with int32 [B] lengths (each at least 1): per row,
        up to ``n_best`` distinct :class:`seq2seq_kit.decoding.Hypothesis` best first,
        with the semantics of :func:`seq2seq_kit.decoding.greedy` (``beam == n_best ==
        1``) and :func:`seq2seq_kit.decoding.beam_search` (otherwise; ``n_best`` above
        ``beam`` widens the beam): PAD, BOS and UNK are never emitted, EOS ends a
        hypothesis, ``ids`` holds at most ``max_length`` tokens (EOS excluded) and
        ``truncated`` says the output stopped there without EOS, ``score`` is the sum of
        the log-probabilities in nats of the chosen tokens (of the full softmax, EOS
        included when reached), and hypotheses rank by ``score / length_penalty(|Y|,
        length_penalty)`` (GNMT, :func:`seq2seq_kit.decoding.length_penalty`).
        ``early_stopping`` (True, ``"never"`` or a patience above 0; passed only when not
        False, the default) names the core's stopping rule
        (:func:`seq2seq_kit.decoding.beam_search`), which the engine follows as closely as
        it can. ``text`` may be left empty: the core fills it from the target
        vocabulary. Engines may differ from the core's beam search in which hypotheses they
        keep and when they stop; greedy output must be the core's."""


@runtime_checkable
class EmaModel(Protocol):
    """The optional piece of a backend declaring ``ema``: the exponential moving average
    of the weights (:mod:`seq2seq_kit.ema`) with the decay
    :attr:`OptimizerSpec.ema_decay <seq2seq_kit.spec.OptimizerSpec>` it was built with.
    With a decay above 0, ``train_step`` updates the average after each update on the
    backend's own device (no copy to the host per update), ``optimizer_state`` carries it as
    ``"ema/NAME"`` (float32, canonical shapes, for every weight NAME) and
    ``set_optimizer_state`` restores it, so a resumed run goes on with the same average;
    ``set_weights`` leaves it as it is (the trainer swaps the average in to validate it,
    and the weights back)."""

    def ema_weights(self) -> dict[str, np.ndarray]:
        """Float32 copies of the average, canonical names and shapes: the weights
        themselves before the first update, or with a decay of 0."""


BuildFn = Callable[..., Model]


def attention_at_width(weights: np.ndarray, width: int) -> np.ndarray:
    """What :meth:`Model.attention` returns, from attention weights [B, S'] computed over
    sources padded to a width S' of the backend's own (bucketing, packing): float32
    [B, ``width``], columns past S' zero and columns past ``width`` (padding only) dropped."""
    out = np.zeros((weights.shape[0], width), dtype=np.float32)
    n = min(width, weights.shape[1])
    out[:, :n] = weights[:, :n]
    return out


@dataclass(frozen=True)
class Backend:
    """A registered backend. Creating one must not import its framework: ``build`` does.

    Attributes:
        name: what users select (``--backend NAME``).
        version: the plugin's version.
        capabilities: subset of :data:`KNOWN_CAPABILITIES` (and any the plugin adds).
        build: ``build(spec: Spec, *, seed: int, optimizer: OptimizerSpec, runtime:
            Runtime) -> Model``, with ``spec`` a :class:`~seq2seq_kit.spec.ModelSpec` (RNN)
            or, for a backend declaring ``transformer``, a
            :class:`~seq2seq_kit.spec.TransformerSpec`. ``runtime`` says how many threads
            to use, and where and how to run (a GPU only with ``devices``, ``bf16``/``fp16``
            only with ``mixed_precision``, a process group only with ``distributed``). A
            ``build`` without a ``runtime`` parameter (written for an earlier contract) is
            called without it and runs with its framework's own thread defaults.
        join: for a backend declaring ``distributed``: ``join(launch: Launch, runtime:
            Runtime) -> ProcessGroup`` joins the data-parallel run the launcher started
            (this process's rank in ``launch``), on the framework's own collectives.
        distribution: the distribution that registered it (filled in by the core).
        architectures: the architectures it builds, when not every one its capabilities
            allow (an engine that runs Transformers only: ``frozenset({"transformer"})``);
            None: ``"rnn"``, and ``"transformer"`` with that capability.
    """

    name: str
    version: str
    capabilities: frozenset[str]
    build: BuildFn
    distribution: str = ""
    join: Callable[..., ProcessGroup] | None = None
    architectures: frozenset[str] | None = None

    def builds(self, architecture: str) -> bool:
        """Whether it builds models of ``architecture`` (``"rnn"``, ``"transformer"``)."""
        if self.architectures is not None:
            return architecture in self.architectures
        return architecture == "rnn" or architecture in self.capabilities

    def create(
        self,
        spec: Spec,
        *,
        seed: int = 0,
        optimizer: OptimizerSpec | None = None,
        runtime: Runtime | None = None,
    ) -> CheckedModel:
        """Build a model, importing the framework on first use. The model comes inside a
        :class:`~seq2seq_kit.validation.CheckedModel`, which checks (and converts) every
        array argument before the backend sees it: backends do not check their inputs.

        Raises:
            BackendError: ``spec`` or ``runtime`` needs a capability this backend does not
                declare (``runtime.quantization``: the scheme's own; ``optimizer.frozen``
                names weights: ``freeze``;
                ``optimizer.ema_decay`` is above 0: ``ema``), or ``spec`` is of an
                architecture it does not build.
            ValueError: ``optimizer.frozen`` names a weight ``spec``'s layout lacks, or
                ``runtime.quantization`` is no scheme.
        """
        runtime = runtime or Runtime()
        if self.architectures is not None and spec.architecture not in self.architectures:
            raise BackendError(
                f"backend {self.name!r} builds {' and '.join(sorted(self.architectures))} "
                f"models only; this model's architecture is {spec.architecture!r}"
            )
        optimizer = optimizer or OptimizerSpec()
        needed = required_capabilities(spec) | runtime_capabilities(runtime)
        needed |= {"freeze"} if optimizer.frozen else set()
        needed |= {"ema"} if optimizer.ema_decay else set()
        missing = sorted(needed - self.capabilities)
        if runtime.quantization in missing:
            runs = sorted(QUANTIZATION & self.capabilities)
            raise BackendError(
                f"backend {self.name!r} does not run models quantized to "
                f"{runtime.quantization} (it runs "
                f"{'float32 only' if not runs else 'float32, ' + ', '.join(runs)}); the "
                f"backends that run it declare the capability {runtime.quantization!r}: "
                f"seq2seq-kit backends"
            )
        if missing:
            raise BackendError(
                f"backend {self.name!r} cannot build this model: it lacks {missing} "
                f"(it declares {sorted(self.capabilities)})"
            )
        unknown = sorted(set(optimizer.frozen) - set(weight_shapes(spec)))
        if unknown:
            raise ValueError(
                f"OptimizerSpec.frozen names {unknown}, which this model does not have "
                f"(its weights: seq2seq_kit.weights.weight_shapes)"
            )
        options: dict[str, Any] = {"seed": seed, "optimizer": optimizer}
        if _takes_runtime(self.build):
            options["runtime"] = runtime
        return checked(self.build(spec, **options))


def runtime_capabilities(runtime: Runtime) -> set[str]:
    """The capabilities a backend must declare to run as ``runtime`` says: ``devices`` for
    a GPU (``auto`` falls back to the CPU in a backend without it), ``mixed_precision``
    for bf16/fp16, ``distributed`` for a process group, and a quantization scheme its
    own name (``int8``...).

    Raises:
        ValueError: ``runtime.quantization`` is no scheme of
            :data:`seq2seq_kit.quantization.SCHEMES`.
    """
    needed = {
        "devices": runtime.device.startswith("cuda"),
        "mixed_precision": runtime.precision != "fp32",
        "distributed": runtime.group is not None and runtime.group.world_size > 1,
    }
    if runtime.quantization is not None:
        needed[check_scheme(runtime.quantization)] = True
    return {name for name, used in needed.items() if used}


def _takes_runtime(build: BuildFn) -> bool:
    try:
        parameters = inspect.signature(build).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: assume the current contract
        return True
    return any(p.name == "runtime" or p.kind is p.VAR_KEYWORD for p in parameters)
