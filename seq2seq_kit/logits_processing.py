"""One step's processing of the log-probabilities, shared by every search the core runs
(greedy decoding, sampling and beam search), so that each output obeys the same rules
whatever searched for it (Hugging Face's ``LogitsProcessor`` list, CTranslate2's
``DecodingOptions``, done once here):

- PAD, BOS and UNK are never output (UNK is, with :attr:`OutputControls.unk`: the
  ``replace_unk`` setting of Luong et al. 2015, whose ``<unk>`` the core replaces);
- :class:`OutputControls`: ``banned_ids`` are never output; EOS cannot end an output of
  fewer than ``min_length`` tokens; no output repeats an n-gram of ``no_repeat_ngram_size``
  tokens (fairseq's and Hugging Face's ``no_repeat_ngram_size``, OpenNMT's
  ``block_ngram_repeat``);
- a target prefix per sentence is forced: while a hypothesis holds fewer tokens than its
  sentence's prefix, the prefix's next token is its only choice.

A token ruled out gets a log-probability of -inf; the others keep the model's own, not
renormalised, so a hypothesis's score stays the sum of the model's log-probabilities of
its tokens (the prefix's included). :class:`StepProcessor` does it for one batch, one call
per decoding step, vectorised over the batch's rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .vocab import Vocabulary

_NEG_INF = -np.inf
#: A forced prefix token the model gives no probability at all (-inf) scores this instead,
#: so that every search still takes it (a -inf hypothesis is no hypothesis to a beam).
_LOWEST = float(np.finfo(np.float32).min)


@dataclass(frozen=True)
class OutputControls:
    """What every output obeys, whatever searched for it.

    Attributes:
        min_length: EOS may end an output only once it holds this many tokens (0: any);
            when nothing else is allowed (every other token banned or blocked), EOS is.
        no_repeat_ngram_size: no output holds the same n-gram of this many tokens twice
            (0: off; 1: no token twice). The prefix's n-grams count.
        banned_ids: target ids never output (data tokens only: EOS is ended by
            ``min_length``, the other specials are never output anyway).
        unk: UNK may be output, as any data token (``[decode] replace_unk``, which
            replaces it by the source token it is aligned to); else it never is.
    """

    min_length: int = 0
    no_repeat_ngram_size: int = 0
    banned_ids: tuple[int, ...] = ()
    unk: bool = False

    @property
    def active(self) -> bool:
        """Whether any control is set (none: the plain searches)."""
        return bool(self.min_length or self.no_repeat_ngram_size or self.banned_ids or self.unk)


#: No control set.
NO_CONTROLS = OutputControls()


class StepProcessor:
    """The step processing of one batch: ``processor(log_probs, t, history, sentences)``
    at each step ``t``.

    Args:
        vocab: the target vocabulary (its special ids).
        controls: the :class:`OutputControls` every output obeys.
        prefixes: per sentence of the batch, the target ids its outputs start with (empty:
            none), or None for no prefix at all. Their checks (ids of data tokens, none
            banned, no longer than the length cap) are the caller's.
    """

    def __init__(
        self,
        vocab: Vocabulary,
        controls: OutputControls = NO_CONTROLS,
        prefixes: Sequence[Sequence[int]] | None = None,
    ):
        self.eos_id = vocab.eos_id
        never = {vocab.pad_id, vocab.bos_id, *controls.banned_ids}
        if not controls.unk:
            never.add(vocab.unk_id)
        self.masked = np.array(sorted(never), dtype=np.int64)
        self.min_length = controls.min_length
        self.ngram = controls.no_repeat_ngram_size
        # int64 [sentences, longest prefix]: the token forced at each step, -1 once free
        self.prefix: np.ndarray | None = None
        longest = max((len(p) for p in prefixes or ()), default=0)
        if longest:
            self.prefix = np.full((len(prefixes), longest), -1, dtype=np.int64)
            for row, ids in enumerate(prefixes):
                self.prefix[row, : len(ids)] = ids

    @property
    def needs_history(self) -> bool:
        """Whether a call needs the tokens each row chose so far (n-gram blocking)."""
        return self.ngram > 0

    def __call__(
        self,
        log_probs: np.ndarray,
        t: int,
        history: np.ndarray | None = None,
        sentences: np.ndarray | None = None,
    ) -> np.ndarray:
        """The processed copy of one step's log-probabilities.

        Args:
            log_probs: float32 [R, V], the model's log-probabilities of each row's next
                token.
            t: the step: each row holds ``t`` tokens after BOS.
            history: int [R, t], the tokens each row chose (no BOS); needed only when
                :attr:`needs_history`.
            sentences: int [R], the sentence (row of ``prefixes``) of each row; needed
                only with prefixes.

        Returns:
            float32 [R, V]: ``log_probs`` with the tokens ruled out at -inf.
        """
        out = np.array(log_probs, dtype=np.float32, copy=True)
        out[:, self.masked] = _NEG_INF
        ending = t < self.min_length
        if ending:
            out[:, self.eos_id] = _NEG_INF
        if self.ngram and t >= self.ngram:
            block_repeated_ngrams(out, np.asarray(history).reshape(len(out), t), self.ngram)
        if ending:
            # nothing left but EOS (every other token banned or blocked): it ends the output
            dead = ~np.isfinite(out).any(axis=1)
            out[dead, self.eos_id] = log_probs[dead, self.eos_id]
        if self.prefix is not None and t < self.prefix.shape[1]:
            forced = self.prefix[np.asarray(sentences), t]
            rows = np.flatnonzero(forced >= 0)
            if rows.size:
                tokens = forced[rows]
                kept = np.maximum(np.asarray(log_probs)[rows, tokens], _LOWEST)
                out[rows] = _NEG_INF
                out[rows, tokens] = kept
        return out


def block_repeated_ngrams(log_probs: np.ndarray, history: np.ndarray, n: int) -> None:
    """Set to -inf, in place, each token of ``log_probs`` (float32 [R, V]) that would end an
    n-gram already in its row of ``history`` (int [R, t]): the tokens that followed an
    earlier occurrence of the row's last ``n - 1`` tokens (every earlier token for
    ``n = 1``). Fairseq's ``NGramRepeatBlock`` and CTranslate2's ``NoRepeatNgram`` block
    the same tokens; here every row at once, in ``n - 1`` comparisons of [R, t - n + 1]."""
    rows, t = history.shape
    starts = t - n + 1  # an earlier n-gram starts at 0 .. t - n
    if starts <= 0:
        return
    match = np.ones((rows, starts), dtype=bool)
    for k in range(n - 1):
        match &= history[:, k : k + starts] == history[:, t - n + 1 + k, None]
    hit_rows, hit_starts = np.nonzero(match)
    log_probs[hit_rows, history[hit_rows, hit_starts + n - 1]] = _NEG_INF
