"""The CTranslate2 model: canonical Transformer weights run by ``ctranslate2.Translator``,
which decodes with its own greedy and beam search (the ``search`` capability,
:class:`seq2seq_kit.backend.SearchModel`). Inference only.

Where CTranslate2's search differs from the core's, :meth:`CTranslate2Model.search` makes up
the difference:

- Scores. CTranslate2 first decodes with nothing masked: its scores are then the sums of
  the full softmax's log-probabilities, EOS included, as the core's (its length penalty,
  ``score / length ** alpha`` with EOS counted, is undone). Where it chose PAD, BOS or UNK
  (the core never emits them), that row is searched again with them removed
  (``suppress_sequences``, ``disable_unk``); CTranslate2 removes them before its softmax,
  renormalising over the other tokens, so those hypotheses are rescored with
  ``score_batch`` (one teacher-forced pass), as is every hypothesis cut at ``max_length``.
- Stopping. With a length penalty CTranslate2 stops a sentence once ``beam * patience``
  hypotheses have finished: the core's ``early_stopping`` True (patience 1) or a patience.
  The core's bounds (False, its default, and ``"never"``) have no counterpart; a larger
  patience (:data:`LENGTH_PENALTY_PATIENCE`) stands for them. Without a penalty
  CTranslate2 stops once its best candidate of a step is EOS and ``n_best`` hypotheses
  have finished: for the best hypothesis, the outcome of the core's bounds, which are one
  exact rule without a penalty; it searches so for them.
- Ranking. CTranslate2's length penalty is not GNMT's ``((5 + length) / 6) ** alpha``, and
  it applies only when choosing the hypotheses it returns, which the backend ranks again
  by GNMT's. Where CTranslate2 must count finished hypotheses it is given a negligible
  penalty (:data:`COUNTING_PENALTY`: any penalty selects its count), which leaves its
  choice that of the raw scores. Then an empty hypothesis (EOS first, which the core's
  search finishes when EOS is among the beam's best first tokens) is left out only below
  ``beam`` others by raw score, hence by GNMT's rank too (a penalty of at least 1 divides a
  score of at most 0): never one the core would return. (Its own penalty, ``length **
  alpha``, favours long hypotheses far more than GNMT's and could leave out that one.)
- ``max_decoding_length`` counts EOS as a token; the core allows ``max_length`` tokens and
  then EOS. It decodes ``max_length + 1`` positions and cuts a hypothesis that did not end
  to ``max_length`` tokens, flagged truncated.

The core's other decoding options map onto CTranslate2's own (the capabilities
:data:`seq2seq_kit.capabilities.SEARCH_OPTIONS`): sampling onto ``sampling_temperature``,
``sampling_topk`` and ``sampling_topp`` (the same distribution: CTranslate2 takes the top k,
divides by the temperature, then keeps the nucleus), one source row per sample, a seed
through a new engine whose random generator starts from it (``_translate``); a target
prefix onto ``target_prefix`` (kept in the output, counted in the lengths, as the core's);
``min_length`` onto ``min_decoding_length``; ``no_repeat_ngram_size`` onto its namesake;
banned tokens onto ``suppress_sequences``. With any of them the search masks PAD, BOS and
UNK from the start, and every hypothesis is rescored with ``score_batch`` (CTranslate2 scores
a forced prefix token 0 and renormalises over the tokens it allows; the core's score is the
model's full log-probabilities, the prefix's included). The engine draws its samples from
one random stream per call, so a seed reproduces a call (loading the model again, in tens
of milliseconds for a mid-sized Transformer), not each output whatever its batch as the
core's sampling does.

Greedy output is so the core's exactly (greedy decoding is searched without a penalty, so
that CTranslate2's scores are the sums of log-probabilities as they are); a beam search
keeps CTranslate2's choice of hypotheses and stopping rule, so its n-best lists may differ
from the core's below the best hypothesis, and the best hypothesis too where candidates
are close. Without masking, a hypothesis through PAD, BOS or UNK may take a beam slot
before it is dropped, where the core's masked search would keep another.
"""

from __future__ import annotations

import math
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from seq2seq_kit.beam import patience_of
from seq2seq_kit.decoding import Hypothesis
from seq2seq_kit.decoding import length_penalty as gnmt_penalty
from seq2seq_kit.errors import BackendError, ExportError
from seq2seq_kit.runtime import Runtime
from seq2seq_kit.sampling import Sampling
from seq2seq_kit.spec import Spec, TransformerSpec
from seq2seq_kit.vocab import BOS, EOS, PAD, SPECIALS, UNK
from seq2seq_kit.weights import check_weights, initial_weights

from .convert import check_convertible, id_tokens, to_ctranslate2

_PAD, _BOS, _EOS = SPECIALS[:3]
_SPECIAL_IDS = frozenset({PAD, BOS, UNK})

#: CTranslate2's beam-search patience (Kasai et al. 2022: it stops after ``beam * patience``
#: finished hypotheses) for the core's bounds (``early_stopping`` False or ``"never"``)
#: with a length penalty. Its search then keeps looking for the longer hypotheses that
#: GNMT's penalty may rank first: on a small num2words model, beam 4 and alpha 1, its best
#: hypothesis was the core's exact search's for 9 of 14 inputs at patience 1, 14 of 14 at
#: 4.
LENGTH_PENALTY_PATIENCE = 4.0

#: The length penalty CTranslate2 gets where it must stop by its count of finished
#: hypotheses: not 0 (which selects its other rule), small enough that dividing a float32
#: score by ``length ** COUNTING_PENALTY`` leaves it as it is, so that the hypotheses it
#: returns are those of the highest raw scores.
COUNTING_PENALTY = 1e-9


#: CTranslate2's "no seed set" (its generators then start from ``std::random_device``); a
#: seed is taken modulo this value.
_UNSET_SEED = 2**32 - 1
#: Held while an engine may draw: ``set_random_seed`` sets one process-wide seed.
_RANDOM = threading.Lock()


def counted(width: int, patience: float) -> dict[str, float | int]:
    """CTranslate2's ``patience`` and ``num_hypotheses`` for the core's count of
    ``max(1, round(width * patience))`` finished hypotheses
    (:func:`seq2seq_kit.beam.patience_of`): CTranslate2 stops at
    ``round(beam_size * patience)`` and refuses more hypotheses than
    ``beam_size * patience``, so a patience under ``1 / width`` is raised to it (one
    hypothesis: the core's least), and the hypotheses asked for are at most those the
    count allows (the core returns those it found, fewer than ``n_best``
    then too)."""
    # CTranslate2 holds the patience as a float32, and compares in float32: a margin keeps
    # 1 / width above 1 once multiplied, and the count below what it computes
    patience = max(patience, (1.0 + 1e-6) / width)
    allowed = float(np.float32(width) * np.float32(patience))
    count = max(1, min(width, math.floor(allowed + 1e-6)))
    if count > allowed:
        count -= 1
    return {"patience": patience, "num_hypotheses": max(1, count)}


def device_of(runtime: Runtime) -> tuple[str, int]:
    """CTranslate2's ``(device, device_index)`` for ``runtime.device``: ``auto`` is the
    first GPU when CTranslate2 finds one, else the CPU."""
    import ctranslate2

    name = runtime.device
    if name == "auto":
        name = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if name.startswith("cuda"):
        return "cuda", int(name.partition(":")[2] or 0)
    return "cpu", 0


def check_compute_type(scheme: str, runtime: Runtime) -> None:
    """Refuse a quantization scheme that CTranslate2 cannot run on ``runtime``'s device
    (float16 and bfloat16 on a CPU, int16 on a CPU without Intel MKL): asked for by name,
    it is never swapped for another.

    Raises:
        BackendError: naming the device and the compute types it runs.
    """
    import ctranslate2

    device, _ = device_of(runtime)
    supported = ctranslate2.get_supported_compute_types(device)
    if scheme not in supported:
        raise BackendError(
            f"backend 'ctranslate2': quantization {scheme!r} does not run on {device} with "
            f"this CTranslate2 build (it runs {', '.join(sorted(supported))} there)"
        )


class CTranslate2Model:
    """A Transformer run by CTranslate2: the canonical weights converted by
    :func:`.convert.to_ctranslate2`, in float32 or in ``runtime.quantization`` (CTranslate2's
    compute type of that name); the engine is made on the first :meth:`search` after the
    weights are set.

    Raises:
        BackendError: ``spec`` is not a Transformer, or CTranslate2 cannot run
            ``runtime.quantization`` on the device (:func:`check_compute_type`).
    """

    def __init__(self, spec: Spec, *, seed: int = 0, runtime: Runtime | None = None):
        try:
            self.spec: TransformerSpec = check_convertible(spec)
        except ExportError as exc:
            raise BackendError(f"backend 'ctranslate2': {exc}") from None
        self.runtime = runtime or Runtime()
        if self.runtime.quantization is not None:
            check_compute_type(self.runtime.quantization, self.runtime)
        self._weights = initial_weights(spec, seed)
        self._engine: Any = None
        self._files: dict[str, bytes] | None = None
        self._use_tokens(id_tokens(spec.src_vocab_size), id_tokens(spec.tgt_vocab_size))

    @classmethod
    def from_files(
        cls,
        spec: TransformerSpec,
        files: dict[str, bytes],
        source_tokens: list[str],
        target_tokens: list[str],
        runtime: Runtime | None = None,
    ) -> CTranslate2Model:
        """A model over a converted model's files (an export's ``model.bin``,
        ``config.json`` and vocabularies) whose vocabularies are ``source_tokens`` and
        ``target_tokens`` (id order). It runs in ``runtime.quantization`` when given (a
        scheme the device runs, else :class:`BackendError`), else in what the files hold,
        or the nearest type the device runs (CTranslate2's ``compute_type="default"``:
        float16 and bfloat16 run as float32 on a CPU, int16 as int8_float32 without Intel
        MKL). It holds no float32 weights: ``get_weights`` is empty, and ``set_weights``
        replaces the files with the weights converted."""
        model = cls.__new__(cls)
        model.spec = check_convertible(spec)
        model.runtime = runtime or Runtime()
        if model.runtime.quantization is not None:
            check_compute_type(model.runtime.quantization, model.runtime)
        model._weights, model._engine, model._files = {}, None, dict(files)
        model._use_tokens(list(source_tokens), list(target_tokens))
        return model

    def _use_tokens(self, source: list[str], target: list[str]) -> None:
        self._source_tokens, self._target_tokens = source, target
        self._target_ids = {t: i for i, t in enumerate(target)}

    @property
    def compute_type(self) -> str:
        """The compute type CTranslate2 runs the model in (``float32``, ``int8_float32``,
        ...): what the device made of the one asked for (an ``int8`` model runs as
        ``int8_float32`` on a CPU)."""
        return str(self.engine().compute_type)

    # ------------------------------------------------------------------ weights

    def get_weights(self) -> dict[str, np.ndarray]:
        return {name: value.copy() for name, value in self._weights.items()}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        check_weights(self.spec, weights)
        self._weights = {k: np.array(v, dtype=np.float32) for k, v in weights.items()}
        self._engine = self._files = None
        self._use_tokens(id_tokens(self.spec.src_vocab_size), id_tokens(self.spec.tgt_vocab_size))

    def engine(self) -> Any:
        """The ``ctranslate2.Translator`` of the current weights (made on first use)."""
        if self._engine is None:
            self._engine = self._new_engine()
        return self._engine

    def _new_engine(self) -> Any:
        """A new ``ctranslate2.Translator`` of the current weights, from the converted
        model's files (written to a temporary directory once, then kept in memory)."""
        import ctranslate2

        scheme = self.runtime.quantization
        if self._files is None:
            with tempfile.TemporaryDirectory(prefix="seq2seq-kit-ct2-") as folder:
                to_ctranslate2(self.spec, self._weights, quantization=scheme).save(folder)
                self._files = {p.name: p.read_bytes() for p in Path(folder).iterdir()}
        device, index = device_of(self.runtime)
        return ctranslate2.Translator(
            "seq2seq-kit",
            device=device,
            device_index=index,
            # the weights' own type when none is asked for: float32 from a model directory,
            # the scheme of an export (or the nearest the device runs)
            compute_type=scheme or "default",
            inter_threads=1,
            intra_threads=self.runtime.threads,
            files=self._files,
        )

    # ------------------------------------------------------------------ decoding

    def search(
        self,
        src_ids: np.ndarray,
        src_lengths: np.ndarray,
        *,
        max_length: int,
        beam: int,
        n_best: int,
        length_penalty: float,
        sampling: Sampling | None = None,
        prefixes: list[tuple[int, ...]] | None = None,
        min_length: int = 0,
        no_repeat_ngram_size: int = 0,
        banned_ids: tuple[int, ...] = (),
        early_stopping: bool | str | float = False,
    ) -> list[list[Hypothesis]]:
        """See :class:`seq2seq_kit.backend.SearchModel` and the module docstring."""
        empty = np.flatnonzero(src_lengths == 0)
        if empty.size:
            raise ValueError(
                f"src_lengths[{int(empty[0])}] = 0: CTranslate2 cannot decode an empty source "
                f"(it returns an empty output without scoring EOS)"
            )
        tokens = self._source_tokens
        sources = [
            [tokens[i] for i in row[:n]]
            for row, n in zip(src_ids.tolist(), src_lengths.tolist(), strict=True)
        ]
        if sampling or prefixes or min_length or no_repeat_ngram_size or banned_ids:
            return self._search_with_options(
                sources,
                max_length=max_length,
                width=max(beam, n_best),
                n_best=n_best,
                alpha=length_penalty,
                sampling=sampling,
                prefixes=prefixes or [()] * len(sources),
                min_length=min_length,
                no_repeat_ngram_size=no_repeat_ngram_size,
                banned_ids=banned_ids,
                early_stopping=early_stopping,
            )
        width = max(beam, n_best)
        patience = patience_of(early_stopping)
        # greedy decoding, or the core's bounds without a penalty: CTranslate2's rule without
        # one; else its count of finished hypotheses (see the module docstring)
        counting = width > 1 and (length_penalty != 0 or patience is not None)
        engine_penalty = COUNTING_PENALTY if counting else 0.0
        options = {
            "beam_size": width,
            **counted(width, LENGTH_PENALTY_PATIENCE if patience is None else patience),
            "length_penalty": engine_penalty,
            "max_decoding_length": max_length + 1,
            "min_decoding_length": 0,
            "max_input_length": 0,
            "return_end_token": True,
            "return_scores": True,
        }
        # unmasked first: its scores are the full softmax's, as the core's
        results = self.engine().translate_batch(sources, **options)
        candidates = [self._candidates(r, max_length, engine_penalty) for r in results]
        special = [row for row, found in enumerate(candidates) if found is None]
        if special:  # the engine chose PAD, BOS or UNK somewhere: search again without them
            masked = self.engine().translate_batch(
                [sources[row] for row in special],
                disable_unk=True,
                suppress_sequences=[[_PAD], [_BOS]],
                **options,
            )
            for row, result in zip(special, masked, strict=True):
                # renormalised over the other tokens: rescored below
                found = self._candidates(result, max_length, engine_penalty)
                candidates[row] = {ids: (done, None) for ids, (done, _) in found.items()}
            if length_penalty != 0 and width > 1:
                # the masked search's scores, renormalised, do not order them as the
                # rescored ones: the empty hypothesis may have been left out for others
                for row in self._eos_first([sources[r] for r in special], width):
                    candidates[special[row]].setdefault((), (True, None))
        flat = [
            (row, ids, done, score)
            for row, found in enumerate(candidates)
            for ids, (done, score) in found.items()
        ]
        missing = [i for i, (_, _, _, score) in enumerate(flat) if score is None]
        rescored = self._rescore(sources, [flat[i][:3] for i in missing])
        scores = [score for _, _, _, score in flat]
        for i, score in zip(missing, rescored, strict=True):
            scores[i] = score
        per_row: list[list[Hypothesis]] = [[] for _ in sources]
        for (row, ids, done, _), score in zip(flat, scores, strict=True):
            per_row[row].append(Hypothesis("", ids, score, not done))
        return [self._ranked(hyps, n_best, length_penalty) for hyps in per_row]

    def _search_with_options(
        self,
        sources: list[list[str]],
        *,
        max_length: int,
        width: int,
        n_best: int,
        alpha: float,
        sampling: Sampling | None,
        prefixes: list[tuple[int, ...]],
        min_length: int,
        no_repeat_ngram_size: int,
        banned_ids: tuple[int, ...],
        early_stopping: bool | str | float,
    ) -> list[list[Hypothesis]]:
        """:meth:`search` with the options CTranslate2 maps (module docstring), every
        hypothesis rescored by the core's rule."""
        names = self._target_tokens
        patience = patience_of(early_stopping)
        # a count rule needs a penalty (any selects it); the hypotheses are rescored anyway
        counting_penalty = COUNTING_PENALTY if width > 1 and patience is not None else 0.0
        if patience is None:
            patience = 1.0 if alpha == 0 else LENGTH_PENALTY_PATIENCE
        options: dict[str, Any] = {
            "beam_size": width,
            **counted(width, patience),
            "length_penalty": alpha or counting_penalty,
            "max_decoding_length": max_length + 1,
            "min_decoding_length": min_length,
            "no_repeat_ngram_size": no_repeat_ngram_size,
            "max_input_length": 0,
            "return_end_token": True,
            "disable_unk": True,
            "suppress_sequences": [[_PAD], [_BOS], *([names[i]] for i in banned_ids)],
        }
        copies = 1
        if sampling is not None:
            copies = sampling.num_samples
            vocab_size = len(names)
            options.update(
                beam_size=1,
                num_hypotheses=1,
                length_penalty=0.0,
                patience=1.0,
                sampling_temperature=sampling.temperature,
                # CTranslate2 refuses a k over the vocabulary's size; 0 is every token
                sampling_topk=sampling.top_k if sampling.top_k < vocab_size else 0,
                sampling_topp=sampling.top_p,
            )
        rows = [row for row in range(len(sources)) for _ in range(copies)]
        results = self._translate(
            [sources[row] for row in rows],
            [[names[i] for i in prefixes[row]] for row in rows],
            options,
            None if sampling is None else sampling.seed,
        )
        found: list[list[tuple[tuple[int, ...], bool]]] = [[] for _ in sources]
        for row, result in zip(rows, results, strict=True):
            for tokens in result.hypotheses:
                done = bool(tokens) and tokens[-1] == _EOS
                ids = tuple(self._target_ids[t] for t in (tokens[:-1] if done else tokens))
                cut = len(ids) > max_length
                ids = ids[:max_length]
                if sampling is not None or all(ids != kept for kept, _ in found[row]):
                    found[row].append((ids, done and not cut))
        if sampling is None and width > 1:
            # the prefix alone, which the core's beam search finishes (see _eos_first)
            free = [row for row in range(len(sources)) if len(prefixes[row]) >= min_length]
            chosen = self._eos_first(
                [sources[row] for row in free],
                width,
                banned_ids,
                [prefixes[row] for row in free],
            )
            for row in (free[i] for i in chosen):
                if all(prefixes[row] != ids for ids, _ in found[row]):
                    found[row].append((prefixes[row], True))
        flat = [(row, ids, done) for row, entries in enumerate(found) for ids, done in entries]
        scores = iter(self._rescore(sources, flat))
        per_row: list[list[Hypothesis]] = [[] for _ in sources]
        for row, ids, done in flat:
            per_row[row].append(Hypothesis("", ids, next(scores), not done))
        keep = copies if sampling is not None else n_best
        return [self._ranked(hyps, keep, alpha) for hyps in per_row]

    def _translate(
        self,
        sources: list[list[str]],
        prefixes: list[list[str]],
        options: dict[str, Any],
        seed: int | None,
    ) -> list[Any]:
        """``translate_batch`` of the engine; with a ``seed``, of a new engine whose random
        generator starts from it. CTranslate2 seeds a thread's generator when the thread
        first draws (``set_random_seed`` sets the seed of generators yet to be made), and an
        engine draws in its own worker thread: a new engine's first call draws from the
        seed. The seed is unset again after the call, so that an unseeded engine still
        draws from fresh entropy."""
        import ctranslate2

        if "sampling_topk" not in options:
            return self.engine().translate_batch(sources, target_prefix=prefixes, **options)
        with _RANDOM:
            try:
                if seed is None:
                    engine = self.engine()
                else:
                    ctranslate2.set_random_seed(seed % _UNSET_SEED)
                    engine = self._new_engine()
                return engine.translate_batch(sources, target_prefix=prefixes, **options)
            finally:
                ctranslate2.set_random_seed(_UNSET_SEED)

    def _candidates(
        self, result: Any, max_length: int, alpha: float
    ) -> dict[tuple[int, ...], tuple[bool, float | None]] | None:
        """Distinct ``ids -> (finished, score)`` of a CTranslate2 result: ``</s>`` dropped
        from a finished hypothesis, an unfinished one cut to ``max_length`` tokens. The
        score is the sum of log-probabilities, undoing CTranslate2's length penalty (its
        score is that sum over ``length ** alpha``, EOS counted), or None where it must be
        recomputed (a cut hypothesis: the engine scored one token more). None for a result
        holding PAD, BOS or UNK."""
        found: dict[tuple[int, ...], tuple[bool, float | None]] = {}
        for tokens, score in zip(result.hypotheses, result.scores, strict=True):
            done = bool(tokens) and tokens[-1] == _EOS
            ids = [self._target_ids[t] for t in (tokens[:-1] if done else tokens)]
            if any(i in _SPECIAL_IDS for i in ids):
                return None
            cut = len(ids) > max_length
            raw = None if cut else float(score) * float(len(tokens)) ** alpha
            found.setdefault(tuple(ids[:max_length]), (done and not cut, raw))
        return found

    def _eos_first(
        self,
        sources: list[list[str]],
        width: int,
        banned_ids: tuple[int, ...] = (),
        prefixes: list[tuple[int, ...]] | None = None,
    ) -> list[int]:
        """The rows whose EOS is among the ``width`` best first tokens after their prefix
        (specials and ``banned_ids`` masked, ties to the lower id): the core's beam search
        then finishes the hypothesis of the prefix alone (empty without a prefix) at that
        step. CTranslate2's length penalty (``length ** alpha``) favours long hypotheses
        far more than GNMT's and may drop that one from its n-best list; with a target
        prefix, CTranslate2 keeps EOS right after it only on its best beam."""
        if not sources:
            return []
        names = self._target_tokens
        prefixes = prefixes or [()] * len(sources)
        results = self.engine().translate_batch(
            sources,
            target_prefix=[[names[i] for i in p] for p in prefixes],
            beam_size=1,
            max_decoding_length=max(len(p) for p in prefixes) + 1,
            min_decoding_length=0,
            max_input_length=0,
            return_logits_vocab=True,
        )
        rows = []
        masked = sorted(_SPECIAL_IDS | set(banned_ids))
        for row, result in enumerate(results):
            # the best hypothesis's logits, one row per step: the step after the prefix
            logits = np.array(np.asarray(result.logits[0])[len(prefixes[row])], np.float64)
            logits[masked] = -np.inf
            better = np.sum(logits > logits[EOS]) + np.sum(logits[:EOS] == logits[EOS])
            if better < width:
                rows.append(row)
        return rows

    def _rescore(self, sources: list[list[str]], flat: list[tuple]) -> list[float]:
        """The core's score of each ``(row, ids, finished)``: the sum of the full softmax's
        log-probabilities of its tokens and, when finished, of EOS (``score_batch`` always
        scores an EOS after the target: it is left out of an unfinished one)."""
        if not flat:
            return []
        names = self._target_tokens
        scored = self.engine().score_batch(
            [sources[row] for row, _, _ in flat],
            [[names[i] for i in ids] for _, ids, _ in flat],
            max_input_length=0,
        )
        return [
            float(np.sum(np.asarray(s.log_probs, dtype=np.float64)[: None if done else -1]))
            for s, (_, _, done) in zip(scored, flat, strict=True)
        ]

    @staticmethod
    def _ranked(hyps: list[Hypothesis], n_best: int, alpha: float) -> list[Hypothesis]:
        """The ``n_best`` best by GNMT rank (Wu et al. 2016; |Y| counts EOS when reached)."""

        def rank(h: Hypothesis) -> float:
            return h.score / float(gnmt_penalty(len(h.ids) + (0 if h.truncated else 1), alpha))

        return sorted(hyps, key=rank, reverse=True)[:n_best]

    # ------------------------------------------------------------------ not provided

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> Any:
        raise NotImplementedError(_NO_STEP)

    def step(self, prev_ids: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        raise NotImplementedError(_NO_STEP)

    def reorder(self, state: Any, index: np.ndarray) -> Any:
        raise NotImplementedError(_NO_STEP)

    def attention(self, state: Any) -> np.ndarray | None:
        raise NotImplementedError(_NO_STEP)

    def _no_training(self, *args: Any, **kwargs: Any):
        raise BackendError(_INFERENCE_ONLY)

    train_step = loss = gradients = log_probs = set_learning_rate = _no_training
    optimizer_state = set_optimizer_state = _no_training


_NO_STEP = (
    "backend 'ctranslate2' decodes with CTranslate2's own search (capability 'search', "
    "Model.search): it has no step-by-step decoder state"
)
_INFERENCE_ONLY = (
    "backend 'ctranslate2' is inference-only (no 'train' capability): train with another "
    "backend (e.g. numpy or torch) and load the model with --backend ctranslate2"
)
