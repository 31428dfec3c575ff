"""A trained model ready to translate: :class:`Translator`, and :func:`load` reading one from
a model directory with any backend."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from .backend import Model
from .checkpoint import (
    Checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from .config import (
    Config,
    DecodeConfig,
    describe_errors,
    resolve_backend,
)
from .data import Pair
from .decoding import Hypothesis, beam_search, greedy, search
from .errors import (
    BackendError,
    ConfigError,
    InputTooLongError,
    Seq2SeqError,
    allocating,
    option,
)
from .plugins import get_backend
from .runtime import (
    Runtime,
    resolve_threads,
)
from .spec import (
    decoding_cap,
    max_source_tokens,
    model_sizes,
)
from .vocab import Vocabulary, pad

log = logging.getLogger(__name__)


class Translator:
    """A trained model with its vocabularies, ready to translate text.

    Attributes:
        model: the backend model (see :class:`seq2seq_kit.backend.Model`); its ``spec`` is
            a :class:`~seq2seq_kit.spec.ModelSpec` (RNN) or a
            :class:`~seq2seq_kit.spec.TransformerSpec` (:attr:`architecture` says which).
        backend: name of the backend running it.
        history: per-epoch training records (empty for a model loaded without them), and
            one marked ``"at_stop": True`` for each stop by ``max_updates`` or ``max_time``
            within an epoch (:func:`seq2seq_kit.trainer.epoch_records` drops those).
    """

    def __init__(
        self,
        model: Model,
        source_vocab: Vocabulary,
        target_vocab: Vocabulary,
        *,
        backend: str,
        max_length: int,
        meta: dict[str, Any] | None = None,
    ):
        self.model = model
        self.source_vocab = source_vocab
        self.target_vocab = target_vocab
        self.backend = backend
        self.max_length = max_length
        self.meta = meta or {}
        #: the (source, target) pairs it was trained and validated on, when just trained
        #: (from a corpus: decoded from its ids when read)
        self.train_pairs: Sequence[Pair] = []
        self.valid_pairs: Sequence[Pair] = []
        #: this process's rank in the data-parallel run that trained the model (0 alone);
        #: only rank 0 writes the model directory
        self.rank = 0

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.meta.get("history", [])

    def translate(self, texts: Sequence[str], **options: Any) -> list[str]:
        """Best translation of each text, in order; an empty or blank text gives ``""``.
        ``options`` are those of :meth:`hypotheses`."""
        return [hyps[0].text for hyps in self.hypotheses(texts, **options)]

    def decode_config(self, **options: Any) -> DecodeConfig:
        """The decoding settings: ``options`` that are not ``None``, over the ``[decode]``
        table the model was trained with, over the built-in defaults.

        Raises:
            ConfigError: an option breaks the ``[decode]`` rules, naming it.
        """
        saved = self.meta.get("config", {}).get("decode", {})
        given = {k: v for k, v in options.items() if v is not None}
        try:
            return DecodeConfig.model_validate({**saved, **given})
        except ValidationError as exc:
            raise ConfigError(describe_errors(exc)) from None

    def hypotheses(
        self,
        texts: Sequence[str],
        *,
        beam: int | None = None,
        n_best: int | None = None,
        length_penalty: float | None = None,
        max_length: int | None = None,
        unknown: str | None = None,
        batch_size: int | None = None,
    ) -> list[list[Hypothesis]]:
        """Decode every text: greedy for ``beam == 1 and n_best == 1``, else beam search
        (``n_best`` above ``beam`` widens the beam). Returns, per text, its n-best list (one
        entry for greedy). Options left ``None`` take the model's saved ``[decode]``
        settings (:meth:`decode_config`); ``max_length`` then defaults to the cap saved
        with the model, and is lowered to what the model can decode (a Transformer's
        ``max_positions - 1``: :meth:`decoding_limit`).

        Raises:
            UnknownTokenError: a token not in the source vocabulary, naming it, its position
                and the 1-based input line, unless ``unknown="replace"`` maps it to UNK.
            InputTooLongError: a text with more source tokens than the model can encode (a
                Transformer's ``max_positions``), naming its line and both lengths.
            ConfigError: an option out of range (``beam=0``, ``length_penalty=nan``...).
            BackendError: beam search asked of a backend without the ``beam`` capability.
            OutOfMemory: decoding ran out of memory, naming the decode settings.
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        texts = list(texts)
        for number, text in enumerate(texts, start=1):
            if not isinstance(text, str):
                raise TypeError(f"texts[{number - 1}] is a {type(text).__name__}, not a string")
        options = self.decode_config(
            beam=beam,
            n_best=n_best,
            length_penalty=length_penalty,
            max_length=max_length,
            unknown=unknown,
            batch_size=batch_size,
        )
        rows: list[list[int] | None] = []
        for number, text in enumerate(texts, start=1):
            if not text.strip():  # blank lines stay blank
                rows.append(None)
                continue
            rows.append(self.source_vocab.encode(text, unknown=options.unknown, line=number))
            self._check_source_length(rows[-1], number)
        return self.decode_ids(
            rows,
            beam=options.beam,
            n_best=options.n_best,
            length_penalty=options.length_penalty,
            max_length=options.max_length,
            batch_size=options.batch_size,
        )

    def decode_ids(
        self,
        rows: Sequence[Sequence[int] | None],
        *,
        beam: int,
        n_best: int,
        length_penalty: float,
        max_length: int | None,
        batch_size: int,
    ) -> list[list[Hypothesis]]:
        """Decode sources already encoded and checked (:meth:`hypotheses` after its checks;
        a server that encoded its requests' texts when they arrived): ``None`` for a blank
        text, which gets one empty hypothesis. Options as :meth:`hypotheses`, already
        validated; ``max_length`` is lowered to what the model can decode.

        Raises:
            BackendError: beam search asked of a backend without the ``beam`` capability.
            OutOfMemory: decoding ran out of memory (in any backend), naming
                ``decode.batch_size``, ``beam``, ``n_best`` and ``max_length``.
        """
        max_length = self.decoding_limit(max_length)
        searching = beam > 1 or n_best > 1
        capabilities = get_backend(self.backend).capabilities
        if searching and "beam" not in capabilities:
            raise BackendError(
                f"backend {self.backend!r} does not declare the 'beam' capability: decode "
                f"greedily (beam 1, n-best 1) or choose another backend"
            )
        ids = {i: row for i, row in enumerate(rows) if row is not None}
        todo = sorted(ids, key=lambda i: len(ids[i]))  # similar lengths: less padding
        results: list[list[Hypothesis]] = [[Hypothesis("", (), 0.0, False)] for _ in rows]
        with allocating(
            lambda: (
                f"decode.batch_size = {batch_size}, decode.beam = {beam}, decode.n_best = "
                f"{n_best}, decode.max_length = {max_length} or the inputs' length (up to "
                f"{len(ids[todo[-1]])} tokens)"
            )
        ):
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                src = pad([ids[i] for i in chunk])
                lengths = np.array([len(ids[i]) for i in chunk], dtype=np.int32)
                # an engine's own search (backend.SearchModel) does greedy decoding too
                engine = "search" in capabilities
                if not searching and not engine:
                    hyps = greedy(self.model, src, lengths, self.target_vocab, max_length)
                    decoded = [[h] for h in hyps]
                else:
                    decoded = (search if engine else beam_search)(
                        self.model,
                        src,
                        lengths,
                        self.target_vocab,
                        max_length,
                        beam,
                        n_best,
                        length_penalty,
                    )
                for i, hyps in zip(chunk, decoded, strict=True):
                    results[i] = hyps
        return results

    @property
    def has_attention(self) -> bool:
        """Whether attention weights can be read: the model has attention and its backend
        steps the decoder (one decoding with its own ``search`` capability returns none)."""
        return bool(self.model.spec.has_attention) and (
            "search" not in get_backend(self.backend).capabilities
        )

    @property
    def architecture(self) -> str:
        """The model's architecture: ``"rnn"`` or ``"transformer"``."""
        return self.model.spec.architecture

    def decoding_limit(self, max_length: int | None = None) -> int:
        """The most tokens a hypothesis may hold: ``max_length``, else the cap saved with
        the model, lowered to what the model can decode (:func:`decoding_cap`)."""
        return decoding_cap(self.model.spec, max_length or self.max_length)

    def _check_source_length(self, ids: Sequence[int], line: int) -> None:
        """Refuse a source longer than the model can encode (a Transformer's
        ``max_positions``), as OpenNMT refuses one over ``-src_seq_length``: cutting it
        would translate another sentence than the one given."""
        limit = max_source_tokens(self.model.spec)
        if limit is not None and len(ids) > limit:
            raise InputTooLongError(len(ids), limit, line)

    def attention(
        self, text: str, max_length: int | None = None
    ) -> tuple[list[str], list[str], np.ndarray]:
        """Greedy translation of ``text`` with its attention: ``(source tokens, output
        tokens with "</s>" last unless truncated, float32 weights [outputs, sources])``.

        Raises:
            Seq2SeqError: the model has no attention, or its backend decodes only with its
                own search (the ``search`` capability), which returns no attention.
            UnknownTokenError: as translate.
            InputTooLongError: ``text`` is longer than the model can encode.
        """
        if not self.model.spec.has_attention:
            raise Seq2SeqError("this model has no attention (model.attention = none)")
        if "search" in get_backend(self.backend).capabilities:
            raise Seq2SeqError(
                f"backend {self.backend!r} decodes with its own search (capability 'search') "
                f"and returns no attention weights; load the model with another backend "
                f"(e.g. {option('backend', 'numpy')}) to see them"
            )
        ids = self.source_vocab.encode(text, line=1)
        self._check_source_length(ids, 1)
        src, lengths = pad([ids]), np.array([len(ids)], dtype=np.int32)
        hyp = greedy(
            self.model, src, lengths, self.target_vocab, self.decoding_limit(max_length), True
        )[0]
        output = [self.target_vocab.token(i) for i in hyp.ids]
        if not hyp.truncated:
            output.append(self.target_vocab.token(self.target_vocab.eos_id))
        source = [self.source_vocab.token(i) for i in ids]
        return source, output, hyp.attention[: len(output), : len(ids)]

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(
            self.model.spec,
            self.source_vocab,
            self.target_vocab,
            self.model.get_weights(),
            self.max_length,
            self.meta,
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model directory atomically (see :mod:`seq2seq_kit.checkpoint`)."""
        return save_checkpoint(self.checkpoint(), path)


def load(path: str | os.PathLike[str], backend: str | None = None) -> Translator:
    """Load a model directory into ``backend`` (default: resolved as for training, so
    ``$SEQ2SEQ_KIT_BACKEND`` applies; any backend loads any model).

    Raises:
        CheckpointError: missing, truncated or corrupted files, or a newer format.
        BackendError: the backend is not installed.
        OutOfMemory: the backend ran out of memory building the model, naming its sizes.
    """
    ckpt = load_checkpoint(path, finite=True)
    name = resolve_backend(backend, Config())
    chosen = get_backend(name)
    with allocating(
        f"the model's sizes ({model_sizes(ckpt.spec)}; saved in {path}: train a smaller "
        f"model, or run it where there is more memory)"
    ):
        model = chosen.create(
            ckpt.spec, seed=0, runtime=Runtime(threads=resolve_threads(0), device="auto")
        )
        model.set_weights(ckpt.weights)
    return Translator(
        model,
        ckpt.source_vocab,
        ckpt.target_vocab,
        backend=name,
        max_length=ckpt.max_length,
        meta=ckpt.meta,
    )


def default_max_length(targets: Sequence[Sequence[int]]) -> int:
    """Decoding cap saved with a model: twice the longest training target, at least +10
    (read from the targets' ``lengths`` array when they carry one: a corpus)."""
    lengths = getattr(targets, "lengths", None)
    if lengths is not None:
        longest = int(np.max(lengths, initial=0))
    else:
        longest = max((len(t) for t in targets), default=0)
    return max(2 * longest, longest + 10)
