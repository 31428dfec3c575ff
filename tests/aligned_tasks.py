"""Two small tasks with attention whose alignments are known, for the tests of
``[decode] alignments`` and ``replace_unk``:

- two digits -> their words, character level (``"25"`` -> ``"two five"``): every letter of
  the first word comes from source position 0, of the second from position 1;
- digit words with a name copied through (``"3 w17 5"`` -> ``"three w17 five"``), word level,
  every name seen once in training, so that a vocabulary of ``min_frequency`` 2 maps each to
  ``<unk>`` on both sides: the model learns to output ``<unk>`` where the source has one.
"""

import itertools
import random

import seq2seq_kit
from seq2seq_kit.config import Config
from seq2seq_kit.datasets import DIGITS

WORDS = dict(DIGITS)


def two_digit_pairs() -> list[tuple[str, str]]:
    """Every two-digit source of the digits 1-9 with its two words."""
    return [(a + b, f"{WORDS[a]} {WORDS[b]}") for a, b in itertools.product("123456789", repeat=2)]


def named_pairs(seed: int, count: int, prefix: str) -> list[tuple[str, str]]:
    """``count`` pairs of two or three digit words with a name ``{prefix}{k}`` at a random
    place, drawn by ``seed``."""
    rng = random.Random(seed)
    pairs = []
    for k in range(count):
        digits = [rng.choice("123456789") for _ in range(rng.randint(2, 3))]
        at = rng.randrange(len(digits) + 1)
        source = [*digits[:at], f"{prefix}{k}", *digits[at:]]
        target = [WORDS[d] for d in digits[:at]] + [f"{prefix}{k}"]
        target += [WORDS[d] for d in digits[at:]]
        pairs.append((" ".join(source), " ".join(target)))
    return pairs


def _write(path, pairs):
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    return str(path)


def train_two_digits(folder):
    """The model directory of the two-digit task with Luong (general) attention: 30
    epochs, a second or two, every output right."""
    config = Config()
    config.train.progress = False
    config.data.source = _write(folder / "two-digits.tsv", two_digit_pairs())
    config.data.valid_fraction = 0.0
    config.model.attention = "general"
    config.train.epochs = 30
    seq2seq_kit.train(config, out=folder / "two-digits")
    return folder / "two-digits"


def train_named(folder, **decode):
    """The model directory of the name-copying task, word level with names as ``<unk>``:
    25 epochs, a few seconds; ``decode`` its saved ``[decode]`` settings."""
    config = Config()
    for key, value in decode.items():
        setattr(config.decode, key, value)
    config.train.progress = False
    config.data.source = _write(folder / "named.tsv", named_pairs(0, 150, "w"))
    config.data.valid_fraction = 0.0
    config.data.tokenizer = "word"
    config.data.tokenizer_options = {"min_frequency": 2}
    config.model.attention = "general"
    config.model.embedding_size = 16
    config.train.learning_rate = 0.01
    config.train.epochs = 25
    seq2seq_kit.train(config, out=folder / "named")
    return folder / "named"
