"""Built-in datasets, registered through the same hook as plugin datasets."""

from __future__ import annotations

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
        ValueError: an empty range, more numbers than the range holds, or a language
            num2words does not know.
    """
    from num2words import num2words

    if high <= low:
        raise ValueError(f"num2words range is empty: low={low}, high={high}")
    if not 0 < count <= high - low:
        raise ValueError(f"num2words count must be in 1..{high - low}, got {count}")
    numbers = np.random.default_rng(seed).choice(high - low, size=count, replace=False) + low
    try:
        pairs = tuple((str(n), num2words(int(n), lang=lang)) for n in numbers)
    except NotImplementedError:
        raise ValueError(f"num2words has no language {lang!r}") from None
    return Dataset(pairs, f"num2words-{lang}")


@hookimpl
def register_datasets(register):
    register("digits", digits)
    register("num2words", number_words)
