"""Built-in datasets, registered through the same hook as plugin datasets."""

from __future__ import annotations

import string

import numpy as np

from .data import Dataset
from .hookspecs import hookimpl

#: The seed notebook's task: the digits 1-9 and their English names.
DIGITS = (
    ("1", "one"),
    ("2", "two"),
    ("3", "three"),
    ("4", "four"),
    ("5", "five"),
    ("6", "six"),
    ("7", "seven"),
    ("8", "eight"),
    ("9", "nine"),
)


#: The most pairs a generated dataset (num2words, nato) may have: they are built in memory,
#: at a few hundred bytes a pair.
MAX_GENERATED = 1 << 24
#: The widest num2words range end: NumPy draws the numbers as 64-bit integers.
NUM2WORDS_LIMIT = 10**18


def _check_integer(dataset: str, name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{dataset} {name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{dataset} {name} must be in {low}..{high}, got {value}")
    return value


def digits() -> Dataset:
    """The seed's nine pairs; no validation split (the task is to learn all nine)."""
    return Dataset(DIGITS, "digits", valid_fraction=0.0)


def number_words(
    low: int = 0, high: int = 1000, count: int = 1000, lang: str = "en", seed: int = 0
) -> Dataset:
    """``count`` distinct integers drawn uniformly from ``[low, high)`` by ``seed``, each
    paired with its spelling by the num2words library in language ``lang``
    (e.g. ``"42" -> "forty-two"``).

    Raises:
        TypeError: ``low``, ``high``, ``count`` or ``seed`` is not an integer.
        ValueError: ``low`` or ``high`` beyond ``±10**18``, an empty range, a ``count``
            over the numbers the range holds or over :data:`MAX_GENERATED`, a negative
            ``seed``, or a language num2words does not know.
    """
    from num2words import num2words

    _check_integer("num2words", "low", low, -NUM2WORDS_LIMIT, NUM2WORDS_LIMIT)
    _check_integer("num2words", "high", high, -NUM2WORDS_LIMIT, NUM2WORDS_LIMIT)
    if high <= low:
        raise ValueError(f"num2words range is empty: low={low}, high={high}")
    _check_integer("num2words", "count", count, 1, min(high - low, MAX_GENERATED))
    _check_integer("num2words", "seed", seed, 0, 2**32 - 1)
    numbers = np.random.default_rng(seed).choice(high - low, size=count, replace=False) + low
    try:
        pairs = tuple((str(n), num2words(int(n), lang=lang)) for n in numbers)
    except NotImplementedError:
        raise ValueError(f"num2words has no language {lang!r}") from None
    return Dataset(pairs, f"num2words-{lang}")


#: The ICAO/NATO spelling alphabet, in its official spellings ("Alfa", "Juliett", "X-ray").
NATO_ALPHABET = dict(
    zip(
        string.ascii_lowercase,
        (
            "Alfa",
            "Bravo",
            "Charlie",
            "Delta",
            "Echo",
            "Foxtrot",
            "Golf",
            "Hotel",
            "India",
            "Juliett",
            "Kilo",
            "Lima",
            "Mike",
            "November",
            "Oscar",
            "Papa",
            "Quebec",
            "Romeo",
            "Sierra",
            "Tango",
            "Uniform",
            "Victor",
            "Whiskey",
            "X-ray",
            "Yankee",
            "Zulu",
        ),
        strict=True,
    )
)

#: The longest word :func:`nato` draws: every word of that length is one int64 draw.
NATO_MAX_LENGTH = 12


def _spread(count: int, capacities: list[int]) -> list[int]:
    """Share ``count`` among lengths as evenly as their capacities allow, shortest first;
    what a short length cannot hold (26 one-letter words) goes to the longer ones."""
    shares = []
    for i, capacity in enumerate(capacities):
        share = min(capacity, count // (len(capacities) - i))
        shares.append(share)
        count -= share
    shares[-1] += count  # the floor divisions' remainder; the longest length holds it
    return shares


def nato(count: int = 1000, min_length: int = 1, max_length: int = 5, seed: int = 0) -> Dataset:
    """``count`` distinct lowercase words of ``min_length`` to ``max_length`` random letters,
    each paired with its spelling in the NATO alphabet, one symbol per letter, separated by
    single spaces (``"cab" -> "Charlie Alfa Bravo"``): a characters-to-symbols task, to
    train with ``tokenizer = "char"`` on the source and ``"word"`` on the target.

    The words are drawn by ``seed`` from the 26 letters (nothing is downloaded), the lengths
    as evenly as each length's 26**length words allow, in shuffled order.

    Raises:
        TypeError: an option that is not an integer.
        ValueError: ``min_length`` outside ``1..12``, ``max_length`` outside
            ``min_length..12``, ``count`` outside 1 up to the number of words of those
            lengths (and :data:`MAX_GENERATED`), or a negative ``seed``.
    """
    _check_integer("nato", "min_length", min_length, 1, NATO_MAX_LENGTH)
    _check_integer("nato", "max_length", max_length, min_length, NATO_MAX_LENGTH)
    lengths = range(min_length, max_length + 1)
    capacities = [26**length for length in lengths]
    _check_integer("nato", "count", count, 1, min(sum(capacities), MAX_GENERATED))
    _check_integer("nato", "seed", seed, 0, 2**32 - 1)
    rng = np.random.default_rng(seed)
    words = []
    for length, capacity, share in zip(
        lengths, capacities, _spread(count, capacities), strict=True
    ):
        for index in rng.choice(capacity, size=share, replace=False):
            # the index's base-26 digits, most significant first, are the word's letters
            digits = np.unravel_index(index, (26,) * length)
            words.append("".join(string.ascii_lowercase[d] for d in digits))
    pairs = tuple(
        (words[i], " ".join(NATO_ALPHABET[c] for c in words[i]))
        for i in rng.permutation(len(words))
    )
    return Dataset(pairs, "nato")


@hookimpl
def register_datasets(register):
    register("digits", digits)
    register("num2words", number_words)
    register("nato", nato)
