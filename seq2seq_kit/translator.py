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

from .alignment import source_texts
from .backend import Model
from .checkpoint import (
    MODEL_FILE,
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
from .config.decode import SAMPLING_DEFAULTS
from .data import Pair
from .decoding import (
    Hypothesis,
    Search,
    decode,
    encode,
    encode_constraints,
    encode_prefixes,
    encode_text,
    greedy,
    plan,
)
from .errors import (
    CheckpointError,
    ConfigError,
    ConstraintError,
    OptionError,
    PrefixError,
    Seq2SeqError,
    allocating,
    option,
)
from .phrase_table import PhraseTable, load_phrase_table
from .plugins import get_backend
from .quantization import check_scheme
from .run_record import RunRecord
from .runtime import (
    Runtime,
    resolve_threads,
)
from .spec import (
    decoding_cap,
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
        #: the SHA-256 of the weights file it was loaded from (hex), as ``model.json``
        #: records it and the load checked it; None for a model not loaded by :func:`load`
        self.weights_sha256: str | None = None
        #: the quantization scheme the backend runs the model in (:func:`load`'s); None:
        #: float32
        self.quantization: str | None = None
        #: the phrase table of the saved ``[decode] replace_unk_table``, read: the model
        #: directory's copy (:data:`seq2seq_kit.checkpoint.PHRASE_TABLE_FILE`) for a model
        #: loaded by :func:`load`, the file the config named for one just trained; None
        #: for none (or one saved as a path before models held their table, read by
        #: :meth:`saved_phrase_table`)
        self.phrase_table: PhraseTable | None = None

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.meta.get("history", [])

    @property
    def validations(self) -> list[dict[str, Any]] | None:
        """Every validation the training run made, in order, within epochs too
        (:attr:`seq2seq_kit.run_record.RunRecord.validations`); None for a model saved
        before they were recorded, or without a training run."""
        validations = self.meta.get("validations")
        return validations if isinstance(validations, list) else None

    @property
    def best_validation(self) -> dict[str, Any] | None:
        """The validation figures of the weights this model holds, as training chose them
        (``meta.trainer.best_validation``; for a kept checkpoint, its own validation's:
        :attr:`seq2seq_kit.run_record.RunRecord.kept_validation`): ``{"metric"``
        (``train.early_stopping_metric``), ``"update", "epoch", "step"`` (where that
        validation was made; the epoch counted from 1), ``"valid_loss",
        "valid_accuracy"``, ``"valid_<metric>"`` for each of ``train.valid_metrics``,
        ``"evaluated_on"}``. Without validation pairs (``evaluated_on`` is ``"train"``) the
        last weights are kept and this is the latest validation, on the training pairs.
        None when no validation was made, for an average of checkpoints, or for a model
        saved before this was recorded."""
        return RunRecord.from_dict(self.meta).kept_validation

    @property
    def examples(self) -> list[str]:
        """A few source texts to try the model with, chosen when it was trained from its
        validation sources, topped up from its training sources when fewer qualify
        (:attr:`seq2seq_kit.run_record.RunRecord.examples`); empty for a model saved
        before they were recorded, or imported."""
        examples = self.meta.get("examples")
        return list(examples) if isinstance(examples, list) else []

    def translate(self, texts: Sequence[str], **options: Any) -> list[str]:
        """Best translation of each text, in order; an empty or blank text gives ``""``.
        ``options`` are those of :meth:`hypotheses`."""
        return [hyps[0].text for hyps in self.hypotheses(texts, **options)]

    def decode_config(self, **options: Any) -> DecodeConfig:
        """The decoding settings: ``options`` that are not ``None``, over the ``[decode]``
        table the model was trained with, over the built-in defaults. ``replace_unk=False``
        also drops a saved ``replace_unk_table``, which serves replace_unk alone, and
        ``sampling=False`` the saved sampling keys (``temperature``, ``top_k``, ``top_p``,
        ``num_samples``, ``seed``), which serve sampling alone. A saved
        ``replace_unk_table`` is the path of :attr:`phrase_table` (the model directory's
        copy), where the model holds one.

        Raises:
            ConfigError: an option breaks the ``[decode]`` rules, naming it: an
                :class:`OptionError` whose ``option`` is the key to change, where one is.
        """
        saved = (self.meta.get("config") or {}).get("decode") or {}
        given = {k: v for k, v in options.items() if v is not None}
        if given.get("sampling") is False:
            saved = {k: v for k, v in saved.items() if k not in SAMPLING_DEFAULTS or k in given}
        if given.get("replace_unk") is False and "replace_unk_table" not in given:
            saved = {k: v for k, v in saved.items() if k != "replace_unk_table"}
        elif saved.get("replace_unk_table") is not None and self.phrase_table is not None:
            saved = {**saved, "replace_unk_table": self.phrase_table.path}
        try:
            return DecodeConfig.model_validate({**saved, **given})
        except ValidationError as exc:
            key = _option_of(exc.errors()[0])
            message = describe_errors(exc)
            raise (OptionError(message, key) if key else ConfigError(message)) from None

    def hypotheses(
        self,
        texts: Sequence[str],
        *,
        prefix: Sequence[str] | None = None,
        constraints: Sequence[Sequence[str]] | None = None,
        beam: int | None = None,
        n_best: int | None = None,
        length_penalty: float | None = None,
        early_stopping: bool | str | float | None = None,
        max_length: int | None = None,
        unknown: str | None = None,
        batch_size: int | None = None,
        sampling: bool | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        num_samples: int | None = None,
        seed: int | None = None,
        min_length: int | None = None,
        no_repeat_ngram_size: int | None = None,
        banned_tokens: Sequence[str] | None = None,
        alignments: bool | None = None,
        replace_unk: bool | None = None,
        replace_unk_table: str | os.PathLike[str] | None = None,
    ) -> list[list[Hypothesis]]:
        """Decode every text: greedy for ``beam == 1 and n_best == 1``, else beam search
        (``n_best`` above ``beam`` widens the beam; ``early_stopping`` says when it stops:
        :func:`seq2seq_kit.decoding.beam_search`), or, with ``sampling``, ``num_samples``
        outputs drawn per text (:func:`seq2seq_kit.decoding.sample`). Returns, per text, its
        n-best list (one entry for greedy; the samples, best first, for sampling). Options
        left ``None`` take the model's saved ``[decode]`` settings (:meth:`decode_config`,
        whose keys they are); ``max_length`` then defaults to the cap saved with the model,
        and is lowered to what the model can decode (a Transformer's ``max_positions - 1``:
        :meth:`decoding_limit`).

        ``prefix``, one string per text (``""`` for none), is the start every output of
        that text is forced to (its target tokens, tokenized alone); decoding goes on after
        it, and the hypotheses' ids, text and score include it
        (:func:`seq2seq_kit.decoding.encode_prefixes`).

        ``alignments`` gives each hypothesis its ``alignment``: per output token, the
        source position it attends to most. ``replace_unk`` lets the model output
        ``<unk>`` and replaces each in the text by the source token it is aligned to, or
        that token's entry in the phrase table ``replace_unk_table``
        (:mod:`seq2seq_kit.alignment`); with ``unknown="replace"`` a source word the model
        never saw can come through. Both need a model with attention.

        ``constraints``, one list of strings per text (``[]`` for none), are target phrases
        every output of that text must hold, in any order (lexically constrained beam
        search, :func:`seq2seq_kit.decoding.beam_search`; with ``beam`` 1 too, which then
        keeps one hypothesis). An output that the length cap kept from holding them all is
        flagged ``constraints_met=False`` and ranked after those that hold them
        (:func:`seq2seq_kit.decoding.encode_constraints`).

        Raises:
            UnknownTokenError: a token not in the source vocabulary, naming it, its position
                and the 1-based input line, unless ``unknown="replace"`` maps it to UNK.
            InputTooLongError: a text with more source tokens than the model can encode (a
                Transformer's ``max_positions``), naming its line and both lengths.
            ConfigError: an option out of range (``beam=0``, ``length_penalty=nan``...),
                a sampling option without ``sampling``, or (:class:`OptionError`) one
                that does not fit the model (a banned token it lacks...).
            PrefixError: a prefix that cannot be forced, naming its line.
            ConstraintError: a constraint that cannot be searched for (a piece the target
                vocabulary lacks...), naming its line and number; :class:`OptionError` for
                constraints with ``sampling``.
            BackendError: beam search asked of a backend without the ``beam`` capability,
                or (:class:`CapabilityError`) an option an engine's own search lacks
                (constraints included).
            DataError: a ``replace_unk_table`` that cannot be read or breaks the phrase
                table format, naming the file and line.
            OutOfMemory: decoding ran out of memory, naming the decode settings.
        """
        texts = _text_list(texts)
        options = self.decode_config(
            beam=beam,
            n_best=n_best,
            length_penalty=length_penalty,
            early_stopping=early_stopping,
            max_length=max_length,
            unknown=unknown,
            batch_size=batch_size,
            sampling=sampling,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            num_samples=num_samples,
            seed=seed,
            min_length=min_length,
            no_repeat_ngram_size=no_repeat_ngram_size,
            banned_tokens=None if banned_tokens is None else list(banned_tokens),
            alignments=alignments,
            replace_unk=replace_unk,
            replace_unk_table=None if replace_unk_table is None else os.fspath(replace_unk_table),
        )
        return self._decode(
            texts,
            options,
            _prefix_list(prefix, len(texts)),
            _constraint_lists(constraints, len(texts)),
        )

    def decode_texts(
        self,
        texts: Sequence[str],
        options: DecodeConfig,
        prefix: Sequence[str] | None = None,
        constraints: Sequence[Sequence[str]] | None = None,
    ) -> list[list[Hypothesis]]:
        """:meth:`hypotheses` with every option given by ``options``, as
        :meth:`decode_config` resolved them (a command that also reads them to write its
        output resolves them once).

        Raises:
            As :meth:`hypotheses`, except the ``ConfigError`` of an option out of range
            (``options`` are validated).
        """
        texts = _text_list(texts)
        return self._decode(
            texts,
            options,
            _prefix_list(prefix, len(texts)),
            _constraint_lists(constraints, len(texts)),
        )

    def _decode(
        self,
        texts: list[str],
        options: DecodeConfig,
        prefix: list[str] | None,
        constraints: list[list[str]] | None = None,
    ) -> list[list[Hypothesis]]:
        rows = encode(texts, self.source_vocab, self.model.spec, options.unknown)
        search = self.plan(options)
        prefixes = encode_prefixes(prefix, rows, self.target_vocab, search)
        sources = None
        if search.replace_unk:
            sources = [source_texts(text, self.source_vocab) if row else None
                       for text, row in zip(texts, rows, strict=True)]  # fmt: skip
        held = encode_constraints(constraints, rows, self.target_vocab, search)
        return self.decode_ids(
            rows, search=search, prefixes=prefixes, sources=sources, constraints=held
        )

    def plan(self, options: DecodeConfig, max_length: int | None = None) -> Search:
        """``options`` checked against this model's backend and length cap
        (:func:`seq2seq_kit.decoding.plan`), for outputs of at most ``max_length`` tokens
        (None: :meth:`decoding_limit` of ``options.max_length``). The model's own phrase
        table is used as read (:meth:`phrase_table_of`); another is read from its file.

        Raises:
            CapabilityError, OptionError, DataError: as :func:`~seq2seq_kit.decoding.plan`.
        """
        return plan(
            options,
            self.decoding_limit(options.max_length) if max_length is None else max_length,
            self.capabilities,
            self.backend,
            self.target_vocab,
            attention=bool(self.model.spec.has_attention),
            phrase_table=self.phrase_table_of(options),
        )

    def phrase_table_of(self, options: DecodeConfig) -> PhraseTable | None:
        """:attr:`phrase_table` when ``options.replace_unk_table`` names it (the saved
        setting, :meth:`decode_config`), else None: a table given as an option is read
        from its file."""
        table = self.phrase_table
        if table is not None and options.replace_unk_table == table.path:
            return table
        return None

    def saved_phrase_table(self) -> PhraseTable | None:
        """The phrase table of the saved ``[decode] replace_unk_table``, read now if it was
        not (a model saved before model directories held their table: a path, relative to
        the working directory), and kept as :attr:`phrase_table`; None for none. A server
        calls this as it loads a model, so that no request reads the file.

        Raises:
            DataError: the saved path cannot be read or breaks the phrase table format,
                naming the file and line.
        """
        if self.phrase_table is None:
            saved = (self.meta.get("config") or {}).get("decode") or {}
            named = saved.get("replace_unk_table") if isinstance(saved, dict) else None
            if isinstance(named, str) and named:
                self.phrase_table = load_phrase_table(named)
        return self.phrase_table

    def decode_ids(
        self,
        rows: Sequence[Sequence[int] | None],
        *,
        search: Search,
        prefixes: Sequence[Sequence[int]] | None = None,
        sources: Sequence[Sequence[str] | None] | None = None,
        constraints: Sequence[Sequence[Sequence[int]]] | None = None,
    ) -> list[list[Hypothesis]]:
        """Decode sources already encoded and checked (:func:`seq2seq_kit.decoding.encode`:
        ``None`` for a blank text, which gets one empty hypothesis) with options already
        checked (:func:`seq2seq_kit.decoding.plan`), each output starting with its row's
        target ids in ``prefixes`` (:func:`seq2seq_kit.decoding.encode_prefixes`) and
        holding its row's phrases in ``constraints``
        (:func:`seq2seq_kit.decoding.encode_constraints`):
        :meth:`hypotheses` after its checks, or a server that checked and encoded its
        requests when they arrived. ``sources``, needed with ``search.replace_unk`` only,
        are the texts of each row's source tokens
        (:func:`seq2seq_kit.alignment.source_texts`). Returns, per row, its n-best list
        (:func:`seq2seq_kit.decoding.decode`).

        Raises:
            OutOfMemory: decoding ran out of memory (in any backend), naming
                ``decode.batch_size``, ``beam``, ``n_best`` and ``max_length``.
        """
        return decode(
            self.model, rows, self.target_vocab, search, prefixes,
            sources=sources, constraints=constraints,
        )  # fmt: skip

    @property
    def capabilities(self) -> frozenset[str]:
        """The capabilities of the backend running the model
        (:mod:`seq2seq_kit.capabilities`)."""
        return get_backend(self.backend).capabilities

    @property
    def has_attention(self) -> bool:
        """Whether attention weights can be read: the model has attention and its backend
        steps the decoder (one decoding with its own ``search`` capability returns none)."""
        return bool(self.model.spec.has_attention) and "search" not in self.capabilities

    @property
    def architecture(self) -> str:
        """The model's architecture: ``"rnn"`` or ``"transformer"``."""
        return self.model.spec.architecture

    def decoding_limit(self, max_length: int | None = None) -> int:
        """The most tokens a hypothesis may hold: ``max_length``, else the cap saved with
        the model, lowered to what the model can decode (:func:`decoding_cap`)."""
        return decoding_cap(self.model.spec, max_length or self.max_length)

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
        if "search" in self.capabilities:
            raise Seq2SeqError(
                f"backend {self.backend!r} decodes with its own search (capability 'search') "
                f"and returns no attention weights; load the model with another backend "
                f"(e.g. {option('backend', 'numpy')}) to see them"
            )
        ids = encode_text(text, self.source_vocab, self.model.spec, line=1)
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
            phrase_table=self.phrase_table,
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model directory atomically (see :mod:`seq2seq_kit.checkpoint`)."""
        return save_checkpoint(self.checkpoint(), path)


def load(
    path: str | os.PathLike[str], backend: str | None = None, *, quantization: str | None = None
) -> Translator:
    """Load a model directory into ``backend`` (default: resolved as for training, so
    ``$SEQ2SEQ_KIT_BACKEND`` applies; any backend loads any model). With ``quantization``
    (a scheme of :data:`seq2seq_kit.quantization.SCHEMES`) the backend runs the model in
    that scheme, quantized from its float32 weights as it loads them.

    Raises:
        CheckpointError: missing, truncated or corrupted files, or a newer format; an
            export instead of a model directory (naming how to run it).
        BackendError: the backend is not installed, does not run ``quantization`` (it
            lacks the scheme's capability) or not on this device.
        ConfigError: ``quantization`` is no scheme.
        OutOfMemory: the backend ran out of memory building the model, naming its sizes.
    """
    if quantization is not None:
        try:
            check_scheme(quantization)
        except ValueError as exc:
            raise ConfigError(f"{option('quantization', quantization)}: {exc}") from None
    _refuse_an_export(Path(path))
    ckpt = load_checkpoint(path, finite=True)
    name = resolve_backend(backend, Config())
    chosen = get_backend(name)
    runtime = Runtime(threads=resolve_threads(0), device="auto", quantization=quantization)
    with allocating(
        f"the model's sizes ({model_sizes(ckpt.spec)}; saved in {path}: train a smaller "
        f"model, or run it where there is more memory)"
    ):
        model = chosen.create(ckpt.spec, seed=0, runtime=runtime)
        model.set_weights(ckpt.weights)
    translator = Translator(
        model,
        ckpt.source_vocab,
        ckpt.target_vocab,
        backend=name,
        max_length=ckpt.max_length,
        meta=ckpt.meta,
    )
    translator.weights_sha256 = ckpt.weights_sha256
    translator.quantization = quantization
    translator.phrase_table = ckpt.phrase_table
    return translator


def _refuse_an_export(path: Path) -> None:
    """Say so when ``path`` is an export, not a model directory: the backend of its format
    reads it (``seq2seq_kit_onnx.export.load``, ``seq2seq_kit_ctranslate2.export.load``).

    Raises:
        CheckpointError: ``path`` holds an export's ``manifest.json`` and no ``model.json``.
    """
    from .integrity import read_json

    manifest = path / "manifest.json"
    if (path / MODEL_FILE).exists() or not manifest.is_file():
        return
    try:
        kind = read_json(manifest).get("export_format")
    except (OSError, ValueError, AttributeError):
        return
    if not isinstance(kind, str):
        return
    reader = (
        f"seq2seq_kit_{kind}.export.load({str(path)!r}).translator()"
        if kind in ("onnx", "ctranslate2")
        else "the plugin that wrote it"
    )
    raise CheckpointError(
        f"{path}: is an export ({kind}), not a model directory; run the model directory it "
        f"was exported from, or the export in Python with {reader}"
    )


def _text_list(texts: Sequence[str]) -> list[str]:
    """``texts`` as a list, refused unless every one is a string.

    Raises:
        TypeError: ``texts`` is one string (not a list of them), or holds a non-string.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string")
    texts = list(texts)
    for number, text in enumerate(texts, start=1):
        if not isinstance(text, str):
            raise TypeError(f"texts[{number - 1}] is a {type(text).__name__}, not a string")
    return texts


def _option_of(error: Any) -> str | None:
    """The ``[decode]`` key a pydantic error of a :class:`DecodeConfig` is about: its
    location (``banned_tokens[1]`` for a list's item), else the key a rule across keys
    names (``DecodeRuleError.option``)."""
    if error["loc"]:
        key = ""
        for part in error["loc"]:
            key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
        return key
    return getattr((error.get("ctx") or {}).get("error"), "option", None)


def _prefix_list(prefix: Sequence[str] | None, count: int) -> list[str] | None:
    """``prefix`` as a list of ``count`` strings, or None.

    Raises:
        TypeError: ``prefix`` is one string (not a list of them), or holds a non-string.
        PrefixError: not one prefix per text.
    """
    if prefix is None:
        return None
    if isinstance(prefix, str):
        raise TypeError("prefix must be a sequence of strings (one per text), not one string")
    prefix = list(prefix)
    for number, text in enumerate(prefix):
        if not isinstance(text, str):
            raise TypeError(f"prefix[{number}] is a {type(text).__name__}, not a string")
    if len(prefix) != count:
        raise PrefixError(
            f'{len(prefix)} prefixes for {count} texts: give one per text ("" for none)', None
        )
    return prefix


def _constraint_lists(
    constraints: Sequence[Sequence[str]] | None, count: int
) -> list[list[str]] | None:
    """``constraints`` as ``count`` lists of strings, or None.

    Raises:
        TypeError: ``constraints`` or one of its lists is one string (not a list of them),
            or a phrase is not a string.
        ConstraintError: not one list per text.
    """
    if constraints is None:
        return None
    if isinstance(constraints, str):
        raise TypeError(
            "constraints must be a sequence of lists of strings (one list per text), not one string"
        )
    out = []
    for i, phrases in enumerate(constraints):
        if isinstance(phrases, str):
            raise TypeError(
                f"constraints[{i}] is one string, not a list of phrases (write [{phrases!r}])"
            )
        phrases = list(phrases)
        for j, text in enumerate(phrases):
            if not isinstance(text, str):
                raise TypeError(f"constraints[{i}][{j}] is a {type(text).__name__}, not a string")
        out.append(phrases)
    if len(out) != count:
        raise ConstraintError(
            f"{len(out)} lists for {count} texts: give one list of phrases per text ([] for none)",
            None,
        )
    return out


def default_max_length(targets: Sequence[Sequence[int]]) -> int:
    """Decoding cap saved with a model: twice the longest training target, at least +10
    (read from the targets' ``lengths`` array when they carry one: a corpus)."""
    lengths = getattr(targets, "lengths", None)
    if lengths is not None:
        longest = int(np.max(lengths, initial=0))
    else:
        longest = max((len(t) for t in targets), default=0)
    return max(2 * longest, longest + 10)
