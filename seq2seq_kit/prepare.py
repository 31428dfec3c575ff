"""Text made ready for training, the same way whether a run reads pairs or
``preprocess`` writes a corpus: each side's tokenizer made and trained, the length caps and
the pairs over them, and the vocabulary check that refuses a run that could learn nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .architectures import max_source_tokens
from .config import Config
from .data import Pair
from .errors import ConfigError, DataError, allocating
from .tokenizers import Tokenizer, make_tokenizer
from .vocab import Vocabulary, normalize


def length_caps(cfg: Config) -> tuple[tuple[int | None, str], tuple[int | None, str]]:
    """Per side (source, target), the most tokens a training pair may have and the keys
    that set it, e.g. ``(20, "data.max_source_length = 20")``; ``(None, "")``: no limit.

    The data keys are the user's choice; a Transformer adds ``model.max_positions``, which
    the source may fill and the target fills with its BOS, so a target gets one token less.
    Where both apply the smaller wins.
    """
    positions = max_source_tokens(cfg.model)
    caps = []
    for key, bos in (("max_source_length", 0), ("max_target_length", 1)):
        limits: dict[str, int] = {}
        value = getattr(cfg.data, key)
        if value is not None:
            limits[f"data.{key} = {value}"] = value
        if positions is not None:
            name = "model.max_positions - 1" if bos else "model.max_positions"
            limits[f"{name} = {positions - bos}"] = positions - bos
        cap = min(limits.values(), default=None)
        caps.append((cap, " / ".join(k for k, v in limits.items() if v == cap)))
    return caps[0], caps[1]


def over_caps(
    pairs: Sequence[Pair],
    caps: tuple[tuple[int | None, str], tuple[int | None, str]],
    tokenizers: tuple[Tokenizer, Tokenizer],
) -> list[bool]:
    """Per pair, whether a side has more pieces than its cap (:func:`length_caps`), as
    its side's tokenizer splits it."""
    limits = (caps[0][0], caps[1][0])
    if limits == (None, None):
        return [False] * len(pairs)
    return [
        any(
            cap is not None and len(tokenizer.encode(normalize(text))) > cap
            for text, cap, tokenizer in zip(pair, limits, tokenizers, strict=True)
        )
        for pair in pairs
    ]


def train_tokenizers(
    cfg: Config, train_pairs: Sequence[Pair], kept: tuple[Vocabulary, Vocabulary] | None
) -> tuple[Tokenizer, Tokenizer]:
    """Each side's tokenizer: those of the vocabularies ``kept`` (a resumed or fine-tuned
    run's), or made from ``cfg.data`` and trained on the training pairs alone (one tokenizer
    over both sides with ``shared_vocabulary``).

    Raises:
        ConfigError: an unknown tokenizer or a bad option, naming the side's key.
        DataError: the tokenizer cannot learn from these texts (e.g. too few for its
            ``vocab_size``).
    """
    if kept is not None:
        return kept[0].tokenizer, kept[1].tokenizer
    sides = ("source", "target")
    made = make_tokenizers(cfg)
    texts = [[normalize(pair[i]) for pair in train_pairs] for i in range(2)]
    if cfg.data.shared_vocabulary:
        made, texts = [made[0]], [texts[0] + texts[1]]
    for side, tokenizer, side_texts in zip(sides, made, texts, strict=False):
        try:
            with allocating(f"data.tokenizer_options {cfg.data.side(side)[1]}"):
                tokenizer.train(side_texts)
        except ValueError as exc:
            which = "shared" if cfg.data.shared_vocabulary else side
            raise DataError(
                f"training the {which} tokenizer ({tokenizer.name}, data.tokenizer_options): {exc}"
            ) from None
    return (made[0], made[0]) if cfg.data.shared_vocabulary else (made[0], made[1])


#: The largest share of the training pieces a vocabulary may map to ``<unk>``. Past it a
#: model mostly reads and writes ``<unk>``, which decodes to nothing: the run reports a
#: token accuracy (``<unk>`` predicted for ``<unk>``) and translates everything to empty
#: lines. A cut-off of rare words drops far less: in natural text the rare words are many
#: but make a small share of the running words (Zipf's law).
MAX_UNKNOWN_SHARE = 0.5


def check_vocabulary(cfg: Config, side: str, vocab: Vocabulary, counts: Mapping[str, int]) -> None:
    """Refuse, before training, a vocabulary a model cannot learn from: one with no piece
    but the specials, or one that maps more than :data:`MAX_UNKNOWN_SHARE` of the training
    pieces (``counts``, :func:`~seq2seq_kit.vocab.count_pieces`) to ``<unk>``. ``side``:
    ``"source"``, ``"target"`` or ``"shared"``.

    Raises:
        ConfigError: naming the side, its tokenizer, the options that dropped the pieces
            (``min_frequency``, ``max_size``) and the share of the training pieces that
            would be ``<unk>``.
    """
    counts = {piece: n for piece, n in counts.items() if n > 0}  # a corpus counts unseen ones
    total = sum(counts.values())
    unknown = vocab.count_unknown(counts)
    if vocab.tokens and unknown <= MAX_UNKNOWN_SHARE * total:
        return
    keyed = "source" if side == "shared" else side  # a shared vocabulary has one tokenizer
    name, _ = cfg.data.side(keyed)
    tokenizer_key = (
        f"data.{keyed}_tokenizer" if getattr(cfg.data, f"{keyed}_tokenizer") else "data.tokenizer"
    )
    vocabulary = f"the {side} vocabulary ({tokenizer_key} = {name!r})"
    texts = "both sides of the training pairs" if side == "shared" else f"the training {side}s"
    if not total:
        raise ConfigError(f"{vocabulary} finds no piece in {texts}")
    side_options = getattr(cfg.data, f"{keyed}_tokenizer_options")

    def key(option: str) -> str:
        table = f"{keyed}_tokenizer_options" if option in side_options else "tokenizer_options"
        return f"data.{table}.{option}"

    min_frequency = getattr(vocab.tokenizer, "min_frequency", 1)
    max_size = getattr(vocab.tokenizer, "max_size", None)
    frequent = sum(1 for n in counts.values() if n >= min_frequency)
    causes = []
    if frequent < len(counts):
        causes.append(
            f"{key('min_frequency')} = {min_frequency} drops every piece seen fewer times "
            f"(the most frequent is seen {_times(max(counts.values()))}): lower it"
        )
    if max_size is not None and frequent > max_size:
        causes.append(
            f"{key('max_size')} = {max_size} keeps only the {max_size} most frequent of "
            f"{frequent} pieces: raise it"
        )
    held = "holds no piece but the specials" if not vocab.tokens else "is too small"
    raise ConfigError(
        f"{vocabulary} {held}: it maps {unknown} of the {total} pieces of {texts} "
        f"({unknown / total:.1%}) to <unk>, more than the {MAX_UNKNOWN_SHARE:.0%} a model "
        f"can learn from (<unk> decodes to nothing: it would translate to empty lines); "
        + ("; ".join(causes) or "the tokenizer dropped them")
    )


def make_tokenizers(cfg: Config) -> list[Tokenizer]:
    """Each side's tokenizer as ``cfg.data`` names it, untrained.

    Raises:
        ConfigError: an unknown tokenizer or a bad option, naming the side's key.
    """
    made = []
    for side in ("source", "target"):
        name, options = cfg.data.side(side)
        key = (
            f"data.{side}_tokenizer" if getattr(cfg.data, f"{side}_tokenizer") else "data.tokenizer"
        )
        try:
            made.append(make_tokenizer(name, options))
        except ValueError as exc:
            given = f" with options {options} (data.tokenizer_options, {side}_tokenizer_options)"
            raise ConfigError(f"{key} = {name!r}{given if options else ''}: {exc}") from None
    return made


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"
