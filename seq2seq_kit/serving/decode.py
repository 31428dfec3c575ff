"""Hypotheses into the JSON of ``POST /v1/translate``, and the model listing of
``GET /v1/models``. Runs in a model's worker thread; imports no web framework."""

from __future__ import annotations

import math
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import numpy as np

from ..alignment import source_texts
from ..decoding import Hypothesis, forced_attention
from ..ensemble import Ensemble
from ..run_record import RunRecord
from ..vocab import Vocabulary, pad

if TYPE_CHECKING:
    from ..api import Translator
    from .requests import TranslateRequest


def translate_requests(
    translator: Translator, requests: list[TranslateRequest]
) -> list[list[dict[str, Any]]]:
    """Decode the texts of ``requests`` (which share their options) in one
    :meth:`Translator.decode_ids` call, from the ids encoded and checked when each request
    arrived; per request, one translation per text, in order.

    A translation is ``{"source_tokens", "hypotheses": [{"text", "tokens", "score",
    "truncated", "constraints_met", "alignment", "attention"}]}``, hypotheses best first (a
    target prefix's tokens included; ``constraints_met`` false for an output the length
    cap kept from holding its text's constraints); ``alignment`` is None unless the options
    ask for it, then ``[i, j]`` pairs, one per output token ``j``, ``i`` the source token it
    attends to most (:mod:`seq2seq_kit.alignment`); ``attention`` is None unless the
    options ask for it, then rows = output tokens and ``"</s>"`` (unless truncated) by
    columns = source tokens, each hypothesis's own weights (:func:`forced_attention`).
    With ``replace_unk`` the text has each ``<unk>`` replaced, and ``tokens`` are still
    the model's (``"<unk>"`` included).
    """
    ids = [row for r in requests for row in r.source_ids]
    prefixes = None
    if any(r.prefix_ids is not None for r in requests):
        prefixes = [
            prefix
            for r in requests
            for prefix in (r.prefix_ids if r.prefix_ids is not None else [()] * len(r.texts))
        ]
    search = requests[0].search
    sources = None
    if search.replace_unk:
        texts = [text for r in requests for text in r.texts]
        vocab = translator.source_vocab
        sources = [
            source_texts(text, vocab) if row else None for text, row in zip(texts, ids, strict=True)
        ]
    constraints = None
    if any(r.constraint_ids is not None for r in requests):
        constraints = [
            phrases
            for r in requests
            for phrases in (
                r.constraint_ids if r.constraint_ids is not None else [()] * len(r.texts)
            )
        ]
    results = translator.decode_ids(
        ids, search=search, prefixes=prefixes, sources=sources, constraints=constraints
    )
    weights = _attention(translator, ids, results) if requests[0].attention else None
    source, target = translator.source_vocab, translator.target_vocab
    translations = []
    for i, (row, hyps) in enumerate(zip(ids, results, strict=True)):
        listed = []
        for j, h in enumerate(hyps):
            listed.append(
                {
                    "text": h.text,
                    "tokens": [target.token(t) for t in h.ids],
                    "score": _finite(h.score),
                    "truncated": h.truncated,
                    "constraints_met": h.constraints_met,
                    "alignment": None if h.alignment is None else [list(p) for p in h.alignment],
                    "attention": None if weights is None else weights[i][j].tolist(),
                }
            )
        tokens = [source.token(t) for t in row or ()]
        translations.append({"source_tokens": tokens, "hypotheses": listed})
    out, start = [], 0
    for r in requests:
        out.append(translations[start : start + len(r.texts)])
        start += len(r.texts)
    return out


def _attention(
    translator: Translator, ids: list[list[int] | None], results: list[list[Hypothesis]]
) -> list[list[np.ndarray]]:
    """Per text, per hypothesis, float32 [output tokens (+ EOS), source tokens]: every
    hypothesis of every text forced through the decoder in one batch. A blank text's
    (nothing decoded) is [0, 0]."""
    rows = [(i, j) for i, hyps in enumerate(results) for j in range(len(hyps)) if ids[i]]
    out = [[np.zeros((0, 0), np.float32) for _ in hyps] for hyps in results]
    if not rows:
        return out
    src = pad([ids[i] for i, _ in rows])
    lengths = np.array([len(ids[i]) for i, _ in rows], dtype=np.int32)
    hyps = [results[i][j] for i, j in rows]
    forced = forced_attention(translator.model, src, lengths, hyps, translator.target_vocab.bos_id)
    for (i, j), weights in zip(rows, forced, strict=True):
        out[i][j] = weights[:, : len(ids[i])]
    return out


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as None and tuples as lists (JSON has neither)."""
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def describe_model(
    name: str, translator: Translator, max_text_chars: int | None = None
) -> dict[str, Any]:
    """One entry of ``GET /v1/models``: what the model is, what it reads (``source``:
    :func:`describe_source`), a few ``examples`` to try it with
    (:attr:`Translator.examples`, those of at most ``max_text_chars`` characters, which
    the server takes), its decoding defaults (``replace_unk_table`` by its file's name
    alone, not the server's path) and ``training``, a summary of its training run
    (:func:`describe_training`), None for an :class:`~seq2seq_kit.ensemble.Ensemble`,
    which was not trained as one model."""
    spec = translator.model.spec.to_dict()
    decode = translator.decode_config().model_dump()
    decode["max_length"] = translator.decoding_limit(decode["max_length"])
    if decode["replace_unk_table"] is not None:  # the file's name: its path is the server's
        decode["replace_unk_table"] = PurePath(decode["replace_unk_table"]).name
    # an ensemble's members were trained, each with its own record; summing them up as one
    # run would be all nulls beside a made-up epoch count
    training = None if isinstance(translator, Ensemble) else describe_training(translator)
    return json_safe(
        {
            "name": name,
            "backend": translator.backend,
            "quantization": translator.quantization,
            "architecture": translator.architecture,
            "has_attention": translator.has_attention,
            "spec": spec,
            "source_vocab_size": len(translator.source_vocab),
            "target_vocab_size": len(translator.target_vocab),
            "source": describe_source(translator.source_vocab),
            "examples": [
                text
                for text in translator.examples
                if max_text_chars is None or len(text) <= max_text_chars
            ],
            "max_length": translator.max_length,
            "decode": decode,
            "training": training,
        }
    )


def describe_training(translator: Translator) -> dict[str, Any]:
    """The ``training`` of a ``GET /v1/models`` entry: a summary of the run that trained
    the model, from ``model.json``'s ``meta``. Among it ``kept_validation``, the
    validation the served weights are of with its figures and the metric that chose them
    (:attr:`Translator.best_validation`, None where no one validation scored them), and
    ``best_valid_loss``, the lowest validation loss of the run (:func:`_lowest_valid_loss`),
    which is the served weights' only where the loss chose them."""
    from ..trainer import epoch_records

    record = RunRecord.from_dict(translator.meta)
    history = record.history or []
    if isinstance(history, list) and all(isinstance(r, dict) for r in history):
        history = epoch_records(history)
    else:
        history = []
    return {
        "dataset": record.data,
        "backend": record.backend,
        "epochs": history[-1].get("epoch") if history else 0,
        "updates": record.updates,
        "stopped": record.stopped,
        "best_valid_loss": _lowest_valid_loss(record, history),
        "kept_validation": translator.best_validation,
        "train_pairs": record.train_pairs,
        "valid_pairs": record.valid_pairs,
        "seconds": record.seconds,
        "seq2seq_kit_version": record.seq2seq_kit_version,
    }


def describe_source(vocab: Vocabulary) -> dict[str, Any]:
    """What a model reads, for ``GET /v1/models``: ``{"tokenizer"`` (its name: ``char``,
    ``word``, ``sentencepiece``...), ``"pieces"`` (the data pieces of the vocabulary, the
    specials not counted), ``"alphabet"}``: for the ``char`` tokenizer every character
    the model knows, in id order (code-point order, :class:`Vocabulary`), so a client can
    name an unknown character before it sends a text; None for other tokenizers."""
    char = vocab.tokenizer_name == "char"
    return {
        "tokenizer": vocab.tokenizer_name,
        "pieces": len(vocab.tokens),
        "alphabet": list(vocab.tokens) if char else None,
    }


def _lowest_valid_loss(record: RunRecord, epochs: list[dict[str, Any]]) -> float | None:
    """The lowest teacher-forced loss on the validation pairs of the validations that
    counted (``meta.validations``, within epochs too; not those made only at a stop), or of
    the ``epochs``' records for a run saved before validations were recorded; None without
    validation pairs."""
    validations = record.validations
    if isinstance(validations, list) and all(isinstance(v, dict) for v in validations):
        scored = [v for v in validations if not v.get("at_stop")]
    else:
        scored = epochs
    losses = [
        r["valid_loss"]
        for r in scored
        if r.get("evaluated_on", "valid") == "valid"
        and isinstance(r.get("valid_loss"), (int, float))
        and math.isfinite(r["valid_loss"])
    ]
    return min(losses) if losses else None
