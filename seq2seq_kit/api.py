"""The Python API: ``train`` a model and ``load`` one, each giving a :class:`Translator`."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .backend import Model
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import Config, load_config, resolve_backend
from .data import Dataset, Pair, load_dataset, split
from .decoding import Hypothesis, beam_search, greedy
from .errors import Seq2SeqError
from .plugins import get_backend, registry
from .spec import ModelSpec, OptimizerSpec
from .trainer import TrainerState, fit
from .vocab import EOS, Vocabulary, pad


class Translator:
    """A trained model with its vocabularies, ready to translate text.

    Attributes:
        model: the backend model (see :class:`seq2seq_kit.backend.Model`).
        backend: name of the backend running it.
        history: per-epoch training records (empty for a model loaded without them).
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
        self.train_pairs: list[Pair] = []
        self.valid_pairs: list[Pair] = []

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.meta.get("history", [])

    def translate(self, texts: Sequence[str], beam: int = 1, **options: Any) -> list[str]:
        """Best translation of each text, in order; an empty or blank text gives ``""``.
        ``options`` are those of :meth:`hypotheses`."""
        return [hyps[0].text for hyps in self.hypotheses(texts, beam=beam, **options)]

    def hypotheses(
        self,
        texts: Sequence[str],
        *,
        beam: int = 1,
        n_best: int = 1,
        length_penalty: float = 0.0,
        max_length: int | None = None,
        unknown: str = "error",
        batch_size: int = 256,
    ) -> list[list[Hypothesis]]:
        """Decode every text: greedy for ``beam == 1 and n_best == 1``, else beam search.
        Returns, per text, its n-best list (one entry for greedy).

        Raises:
            UnknownTokenError: a token not in the source vocabulary, naming it, its position
                and the 1-based input line, unless ``unknown="replace"`` maps it to UNK.
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        max_length = max_length or self.max_length
        todo = [i for i, t in enumerate(texts) if t.strip()]  # blank lines stay blank
        ids = {i: self.source_vocab.encode(texts[i], unknown=unknown, line=i + 1) for i in todo}
        results: list[list[Hypothesis]] = [[Hypothesis("", (), 0.0, False)] for _ in texts]
        todo.sort(key=lambda i: len(ids[i]))  # similar lengths share a batch: less padding
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            src = pad([ids[i] for i in chunk])
            lengths = np.array([len(ids[i]) for i in chunk], dtype=np.int32)
            if beam == 1 and n_best == 1:
                decoded = [
                    [h] for h in greedy(self.model, src, lengths, self.target_vocab, max_length)
                ]
            else:
                decoded = beam_search(
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

    def attention(
        self, text: str, max_length: int | None = None
    ) -> tuple[list[str], list[str], np.ndarray]:
        """Greedy translation of ``text`` with its attention: ``(source tokens, output
        tokens with "</s>" last unless truncated, float32 weights [outputs, sources])``.

        Raises:
            Seq2SeqError: the model has no attention. UnknownTokenError: as translate.
        """
        if self.model.spec.attention == "none":
            raise Seq2SeqError("this model has no attention (model.attention = none)")
        ids = self.source_vocab.encode(text, line=1)
        src, lengths = pad([ids]), np.array([len(ids)], dtype=np.int32)
        hyp = greedy(
            self.model, src, lengths, self.target_vocab, max_length or self.max_length, True
        )[0]
        output = [self.target_vocab.token(i) for i in hyp.ids]
        if not hyp.truncated:
            output.append(self.target_vocab.token(EOS))
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
    """
    ckpt = load_checkpoint(path)
    name = resolve_backend(backend, Config())
    model = get_backend(name).create(ckpt.spec, seed=0)
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
    """Decoding cap saved with a model: twice the longest training target, at least +10."""
    longest = max((len(t) for t in targets), default=0)
    return max(2 * longest, longest + 10)


def train(
    config: Config | str | os.PathLike[str] | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    backend: str | None = None,
    data: str | Sequence[Pair] | None = None,
    limit: int | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    resume: str | os.PathLike[str] | None = None,
) -> Translator:
    """Train a model as ``config`` says (a :class:`Config`, a TOML path, or ``None`` for
    the seed notebook's defaults on ``digits``); keyword arguments override it. ``data`` is
    a dataset name, a TSV path, or a list of (source, target) pairs.

    With ``out``, the model directory is written there after every epoch: the best weights
    by ``train.early_stopping_metric`` on the validation pairs (the last weights without
    validation) as ``weights.safetensors``, plus the last weights and the optimizer state
    for ``resume``. ``resume`` continues the training saved in that directory (its config,
    data and vocabularies; ``epochs`` raises the total) and gives the same result as one
    uninterrupted run.

    Raises:
        DataError, ConfigError, BackendError, CheckpointError: by name.
    """
    saved = load_checkpoint(resume, extra=True) if resume is not None else None
    if saved is not None:
        cfg = Config.model_validate(saved.meta["config"])
        backend = backend or saved.meta["backend"]
        out = resume if out is None else out
    else:
        cfg = config if isinstance(config, Config) else load_config(config)
        cfg = cfg.model_copy(deep=True)
    if isinstance(data, str):
        cfg.data.source = data
    if limit is not None:
        cfg.data.limit = limit
    if epochs is not None:
        cfg.train.epochs = epochs
    if seed is not None:
        cfg.train.seed = seed
    backend_name = resolve_backend(backend, cfg)
    chosen = get_backend(backend_name)

    if data is not None and not isinstance(data, str):
        pairs = tuple((str(s), str(t)) for s, t in data)
        dataset = Dataset(pairs[: cfg.data.limit] if cfg.data.limit else pairs, "pairs")
    else:
        dataset = load_dataset(cfg.data.source, cfg.data.limit, **cfg.data.options)
    if cfg.data.valid is not None:
        train_pairs = list(dataset.pairs)
        valid_pairs = list(load_dataset(cfg.data.valid).pairs)
    else:
        fraction = cfg.data.valid_fraction
        fraction = dataset.valid_fraction if fraction is None else fraction
        train_pairs, valid_pairs = split(dataset.pairs, fraction, cfg.train.seed)

    if saved is not None:
        source_vocab, target_vocab = saved.source_vocab, saved.target_vocab
    else:
        tokenizer = cfg.data.tokenizer
        source_vocab = Vocabulary.build((s for s, _ in train_pairs), tokenizer)
        target_vocab = Vocabulary.build((t for _, t in train_pairs), tokenizer)

    def encode(pairs: Sequence[Pair]) -> tuple[list[list[int]], list[list[int]]]:
        # Validation may hold tokens training never saw: they become UNK, as at inference.
        return (
            [source_vocab.encode(s, unknown="replace") for s, _ in pairs],
            [target_vocab.encode(t, unknown="replace") for _, t in pairs],
        )

    train_ids, valid_ids = encode(train_pairs), encode(valid_pairs)
    spec = ModelSpec(len(source_vocab), len(target_vocab), **cfg.model.model_dump())
    optimizer = OptimizerSpec(learning_rate=cfg.train.learning_rate, clip_norm=cfg.train.clip_norm)
    model = chosen.create(spec, seed=cfg.train.seed, optimizer=optimizer)
    state = None
    if saved is not None:
        model.set_weights(saved.extra["last"])
        model.set_optimizer_state(saved.extra["optimizer"])
        state = TrainerState.from_json(saved.meta["trainer"], saved.meta["history"])
        state.best_weights = saved.weights if valid_pairs else None

    meta = {
        "seq2seq_kit_version": __version__,
        "backend": backend_name,
        "backend_version": chosen.version,
        "data": dataset.name,
        "train_pairs": len(train_pairs),
        "valid_pairs": len(valid_pairs),
        "config": cfg.model_dump(mode="json"),
        "seconds": 0.0 if saved is None else saved.meta.get("seconds", 0.0),
    }
    translator = Translator(
        model,
        source_vocab,
        target_vocab,
        backend=backend_name,
        max_length=default_max_length(train_ids[1]),
        meta=meta,
    )
    translator.train_pairs, translator.valid_pairs = list(train_pairs), list(valid_pairs)
    clock = time.perf_counter()

    def save(state: TrainerState) -> None:
        nonlocal clock
        now = time.perf_counter()
        meta["seconds"] += now - clock
        clock = now
        meta["history"], meta["trainer"] = state.history, state.to_json()
        ckpt = translator.checkpoint()
        if state.best_weights is not None:
            ckpt.weights = state.best_weights
        ckpt.extra = {"last": model.get_weights(), "optimizer": model.optimizer_state()}
        save_checkpoint(ckpt, out)

    hook = registry().manager.hook
    state = fit(
        model,
        train_ids,
        valid_ids if valid_pairs else None,
        cfg.train,
        on_epoch_end=lambda record: hook.on_epoch_end(
            record=record, out_dir=None if out is None else str(out)
        ),
        state=state,
        save=None if out is None else save,
        out_dir=None if out is None else str(out),
    )
    meta["seconds"] += time.perf_counter() - clock
    meta["history"], meta["trainer"] = state.history, state.to_json()
    hook.on_train_end(history=state.history, out_dir=None if out is None else str(out))
    return translator
