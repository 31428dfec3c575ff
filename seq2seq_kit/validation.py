"""Input checks for every backend's model, in one place.

:meth:`seq2seq_kit.backend.Backend.create` returns the backend's model inside a
:class:`CheckedModel`, which checks the arguments of ``encode``, ``step``, ``reorder`` and of
every method taking a :class:`~seq2seq_kit.batching.Batch` before the backend sees them. So
every backend, ours or a third party's, rejects the same bad input with the same
:class:`ModelInputError`, and a backend may assume what the checks guarantee:

- id arrays are C-contiguous ``int32`` of the documented rank, every id inside the
  vocabulary (source ids in ``[0, src_vocab_size)``, target ids in ``[0, tgt_vocab_size)``);
- ``src_lengths`` is C-contiguous ``int32`` [B], one per row of ``src_ids``, in ``[0, S]``;
- in a batch, ``tgt_in``, ``tgt_out`` and ``tgt_mask`` share one shape [B, T] with the same
  B as ``src_ids``; ``tgt_lengths`` is ``int32`` [B] in ``[0, T]``; ``tgt_mask`` is
  C-contiguous ``float32``, 1.0 on the first ``tgt_lengths[b]`` positions of row b and 0.0
  after;
- ``step`` gets as many ``prev_ids`` as the state has rows; ``reorder`` gets a C-contiguous
  ``int64`` [B'] index of rows that the state has;
- for a Transformer, no source or target is wider than ``max_positions`` and ``step`` is never
  called for a position at or past it;
- ``train_step`` gets a non-empty list of batches (one, or several to accumulate), or,
  with ``total_tokens`` (data-parallel training), a possibly empty one.

Any integer dtype is accepted for ids, lengths and indices (and any real or boolean dtype for
the mask); the checked values are then converted, which cannot change them. Arrays that
already have the guaranteed form are passed on as they are, without a copy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .batch import Batch
from .errors import Seq2SeqError
from .spec import Spec, max_source_tokens


class ModelInputError(Seq2SeqError, ValueError):
    """An array handed to a model has the wrong dtype, shape or values.

    Attributes:
        argument: the offending argument, as the message names it (``"src_ids"``,
            ``"batch.tgt_mask"``, ...).
    """

    def __init__(self, argument: str, message: str):
        super().__init__(f"{argument} {message}")
        self.argument = argument


def _integers(name: str, value: Any, layout: str) -> np.ndarray:
    """``value`` as an integer array of the rank ``layout`` spells (``"[B, S]"``)."""
    array = np.asarray(value)
    if array.dtype.kind not in "iu":
        raise ModelInputError(name, f"must be an integer array, got dtype {array.dtype}")
    ndim = layout.count(",") + 1
    if array.ndim != ndim:
        raise ModelInputError(name, f"must be {ndim}-D {layout}, got shape {array.shape}")
    return array


def _same_shape(name: str, array: np.ndarray, shape: tuple[int, ...], reason: str) -> None:
    if array.shape != shape:
        raise ModelInputError(name, f"has shape {array.shape}, expected {shape} ({reason})")


def _within(name: str, array: np.ndarray, low: int, high: int, what: str) -> None:
    """Every value in ``[low, high)``; the message names the first one outside."""
    if not array.size or (array.min() >= low and array.max() < high):
        return
    index = tuple(int(i) for i in np.argwhere((array < low) | (array >= high))[0])
    at = ", ".join(map(str, index))
    raise ModelInputError(f"{name}[{at}]", f"= {array[index]} is outside {what}")


def _ids(name: str, value: Any, vocab_size: int, side: str, layout: str) -> np.ndarray:
    array = _integers(name, value, layout)
    _within(name, array, 0, vocab_size, f"the {side} vocabulary [0, {vocab_size})")
    return array


def _lengths(name: str, value: Any, rows: int, width: int, of: str) -> np.ndarray:
    array = _integers(name, value, "[B]")
    _same_shape(name, array, (rows,), f"one per row of {of}")
    _within(name, array, 0, width + 1, f"[0, {width}] (the width of {of})")
    return array


def _int32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.int32)


def _positions(spec: Spec, name: str, array: np.ndarray, side: str) -> None:
    """A Transformer has positions 0 .. max_positions - 1 on each side."""
    positions = max_source_tokens(spec)
    if positions is not None and array.shape[1] > positions:
        raise ModelInputError(
            name,
            f"has {array.shape[1]} {side} positions but the model has max_positions {positions}",
        )


def _source(spec: Spec, src_ids: Any, src_lengths: Any, prefix: str = ""):
    ids_name = prefix + "src_ids"
    ids = _ids(ids_name, src_ids, spec.src_vocab_size, "source", "[B, S]")
    lengths = _lengths(prefix + "src_lengths", src_lengths, *ids.shape, of=ids_name)
    _positions(spec, ids_name, ids, "source")
    return _int32(ids), _int32(lengths)


def check_source(spec: Spec, src_ids: Any, src_lengths: Any) -> tuple[np.ndarray, ...]:
    """The arguments of ``encode``: ids [B, S] and lengths [B], as C-contiguous int32.

    Raises:
        ModelInputError: an argument is not an integer array, has the wrong rank or shape,
            holds an id outside the source vocabulary or a length outside ``[0, S]``.
    """
    return _source(spec, src_ids, src_lengths)


def check_prev_ids(spec: Spec, prev_ids: Any, rows: int | None) -> np.ndarray:
    """The ids given to ``step``: int32 [B] inside the target vocabulary, B = ``rows`` (the
    state's rows; None: unknown).

    Raises:
        ModelInputError: as :func:`check_source`, or B differs from the state's rows.
    """
    ids = _ids("prev_ids", prev_ids, spec.tgt_vocab_size, "target", "[B]")
    if rows is not None and ids.shape[0] != rows:
        raise ModelInputError("prev_ids", f"has {ids.shape[0]} rows but the state has {rows}")
    return _int32(ids)


def check_index(index: Any, rows: int | None) -> np.ndarray:
    """The rows given to ``reorder``: int64 [B'], each in ``[0, rows)`` (``rows`` None:
    unknown, only negative rows are refused).

    Raises:
        ModelInputError: not a 1-D integer array, or a row the state does not have.
    """
    array = _integers("index", index, "[B']")
    if rows is None:
        _within("index", array, 0, np.iinfo(np.int64).max, "the state's rows")
    else:
        _within("index", array, 0, rows, f"the state's rows [0, {rows})")
    return np.ascontiguousarray(array, dtype=np.int64)


def _mask(value: Any, lengths: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    name = "batch.tgt_mask"
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise ModelInputError(name, f"must be a float array, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ModelInputError(name, f"must be 2-D [B, T], got shape {array.shape}")
    _same_shape(name, array, shape, "the shape of batch.tgt_in")
    expected = np.arange(shape[1])[None, :] < lengths[:, None]
    wrong = np.flatnonzero((array != expected).any(axis=1))
    if wrong.size:
        b = int(wrong[0])
        raise ModelInputError(
            f"{name}[{b}]",
            f"must be 1.0 on the first batch.tgt_lengths[{b}] = {lengths[b]} positions and "
            f"0.0 after, got {array[b].tolist()}",
        )
    return np.ascontiguousarray(array, dtype=np.float32)


def check_batch(spec: Spec, batch: Any) -> Batch:
    """A :class:`Batch` whose arrays have the form the module docstring lists: ``batch``
    itself when they already have it, else a converted copy.

    Raises:
        ModelInputError: ``batch`` is not a Batch, or an array has the wrong dtype, rank or
            shape, an id outside its vocabulary, a length outside its range, or a mask that
            differs from its lengths.
    """
    if not isinstance(batch, Batch):
        raise ModelInputError("batch", f"must be a seq2seq_kit.batching.Batch, got {type(batch)}")
    src_ids, src_lengths = _source(spec, batch.src_ids, batch.src_lengths, "batch.")
    tgt = "batch.tgt_in"
    tgt_in = _ids(tgt, batch.tgt_in, spec.tgt_vocab_size, "target", "[B, T]")
    expected = (src_ids.shape[0], tgt_in.shape[1])
    _same_shape(tgt, tgt_in, expected, "one row per row of batch.src_ids")
    _positions(spec, tgt, tgt_in, "target")
    tgt_out = _ids("batch.tgt_out", batch.tgt_out, spec.tgt_vocab_size, "target", "[B, T]")
    _same_shape("batch.tgt_out", tgt_out, tgt_in.shape, "the shape of batch.tgt_in")
    tgt_lengths = _lengths("batch.tgt_lengths", batch.tgt_lengths, *tgt_in.shape, of=tgt)
    checked = {
        "src_ids": src_ids,
        "src_lengths": src_lengths,
        "tgt_in": _int32(tgt_in),
        "tgt_out": _int32(tgt_out),
        "tgt_lengths": _int32(tgt_lengths),
        "tgt_mask": _mask(batch.tgt_mask, tgt_lengths, tgt_in.shape),
    }
    changed = {k: v for k, v in checked.items() if v is not getattr(batch, k)}
    return replace(batch, **changed) if changed else batch


def check_batches(spec: Spec, batches: Any) -> list[Batch]:
    """The argument of ``train_step``: one :class:`Batch`, or a non-empty sequence of them
    (gradient accumulation), as a list of checked batches.

    Raises:
        ModelInputError: an empty sequence, or any batch :func:`check_batch` refuses (named
            by its position).
    """
    if isinstance(batch := batches, Batch):
        return [check_batch(spec, batch)]
    if not isinstance(batches, list | tuple) or not batches:
        raise ModelInputError(
            "batches", f"must be a Batch or a non-empty list of Batch, got {batches!r:.80}"
        )
    checked = []
    for i, batch in enumerate(batches):
        try:
            checked.append(check_batch(spec, batch))
        except ModelInputError as error:
            raise ModelInputError(f"batches[{i}]", str(error)) from None
    return checked


@dataclass(frozen=True)
class CheckedState:
    """A decoder state handed out by :class:`CheckedModel`: the backend's own state and its
    number of rows, so that ``step`` and ``reorder`` can check their arguments against it.
    Opaque to the core, as every state is."""

    inner: Any
    rows: int
    position: int = 0


def _unwrap(state: Any) -> tuple[Any, int | None]:
    """A backend state and its rows (None for a state that did not pass through a
    :class:`CheckedModel`: only what needs no row count is checked then)."""
    if isinstance(state, CheckedState):
        return state.inner, state.rows
    return state, None


class CheckedModel:
    """What :meth:`seq2seq_kit.backend.Backend.create` returns: the backend's model, with
    the arguments of ``encode``, ``step``, ``reorder``, ``train_step``, ``loss``,
    ``gradients`` and ``log_probs`` checked (and converted, see the module docstring) before
    they reach it. ``__wrapped__`` is the backend's model (as :func:`inspect.unwrap` expects);
    every other attribute is the wrapped model's, read and written through.

    Raises:
        ModelInputError: from each checked method, for a bad argument, before the model
            sees it (so a refused ``train_step`` changes nothing).
    """

    __slots__ = ("__wrapped__",)

    def __init__(self, model: Any):
        object.__setattr__(self, "__wrapped__", model)

    def __getattr__(self, name: str) -> Any:
        if name == "__wrapped__":  # not yet set (copying): no wrapped model to ask
            raise AttributeError(name)
        return getattr(self.__wrapped__, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "__wrapped__":
            object.__setattr__(self, name, value)
        else:
            setattr(self.__wrapped__, name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(dir(self.__wrapped__)))

    def __repr__(self) -> str:
        return f"CheckedModel({self.__wrapped__!r})"

    def train_step(self, batches: Batch | list[Batch], total_tokens: int | None = None) -> float:
        """The wrapped model's ``train_step`` on the checked batches: one :class:`Batch`,
        or a list of them whose gradients are accumulated into one update; with
        ``total_tokens`` (data-parallel training), the list may be empty and
        ``total_tokens`` must be at least its batches' target tokens."""
        model = self.__wrapped__
        if total_tokens is None:
            return model.train_step(check_batches(model.spec, batches))
        checked = check_batches(model.spec, batches) if batches else []
        own = sum(batch.num_target_tokens for batch in checked)
        if isinstance(total_tokens, bool) or not isinstance(total_tokens, int | np.integer):
            raise ModelInputError("total_tokens", f"must be an int, got {total_tokens!r:.80}")
        if total_tokens < max(own, 1):
            raise ModelInputError(
                "total_tokens",
                f"must be >= 1 and >= this rank's {own} target tokens, got {total_tokens}",
            )
        return model.train_step(checked, total_tokens=int(total_tokens))

    def loss(self, batch: Batch) -> float:
        """The wrapped model's ``loss`` on the checked ``batch``."""
        return self.__wrapped__.loss(check_batch(self.__wrapped__.spec, batch))

    def gradients(self, batch: Batch) -> dict[str, np.ndarray]:
        """The wrapped model's ``gradients`` on the checked ``batch``."""
        return self.__wrapped__.gradients(check_batch(self.__wrapped__.spec, batch))

    def log_probs(self, batch: Batch) -> np.ndarray:
        """The wrapped model's ``log_probs`` on the checked ``batch``: float32 [B, T, V]."""
        return self.__wrapped__.log_probs(check_batch(self.__wrapped__.spec, batch))

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> CheckedState:
        """The wrapped model's ``encode`` of int [B, S] ids with int [B] lengths."""
        ids, lengths = check_source(self.__wrapped__.spec, src_ids, src_lengths)
        return CheckedState(self.__wrapped__.encode(ids, lengths), ids.shape[0])

    def step(self, prev_ids: np.ndarray, state: Any) -> tuple[np.ndarray, CheckedState]:
        """The wrapped model's ``step``: int [B] ids -> (float32 [B, V], new state)."""
        inner, rows = _unwrap(state)
        spec = self.__wrapped__.spec
        ids = check_prev_ids(spec, prev_ids, rows)
        position = state.position if isinstance(state, CheckedState) else 0
        positions = max_source_tokens(spec)
        if positions is not None and position >= positions:
            raise ModelInputError(
                "prev_ids",
                f"would be target position {position} but the model has max_positions {positions}",
            )
        log_probs, new = self.__wrapped__.step(ids, inner)
        return log_probs, CheckedState(new, ids.shape[0], position + 1)

    def reorder(self, state: Any, index: np.ndarray) -> CheckedState:
        """The wrapped model's ``reorder`` by int [B'] ``index``."""
        inner, rows = _unwrap(state)
        index = check_index(index, rows)
        position = state.position if isinstance(state, CheckedState) else 0
        return CheckedState(self.__wrapped__.reorder(inner, index), index.shape[0], position)

    def search(self, src_ids: np.ndarray, src_lengths: np.ndarray, **options: Any) -> Any:
        """The wrapped model's own ``search`` (capability ``search``) of int [B, S] ids with
        int [B] lengths, checked as ``encode``'s."""
        ids, lengths = check_source(self.__wrapped__.spec, src_ids, src_lengths)
        return self.__wrapped__.search(ids, lengths, **options)

    def attention(self, state: Any) -> np.ndarray | None:
        """The wrapped model's ``attention`` of ``state``: float32 [B, S] or None."""
        return self.__wrapped__.attention(_unwrap(state)[0])


def checked(model: Any) -> CheckedModel:
    """``model`` inside a :class:`CheckedModel` (once: a checked model is returned as is)."""
    return model if isinstance(model, CheckedModel) else CheckedModel(model)
