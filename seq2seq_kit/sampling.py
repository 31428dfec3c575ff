"""The numerics of sampling (:func:`seq2seq_kit.decoding.sample`): the distribution a token
is drawn from, the draw, and the random numbers of each output.

The distribution of a step is the model's, after the step processing of
:mod:`.logits_processing` (the tokens it rules out have probability 0), shaped as Hugging
Face's ``TemperatureLogitsWarper``, ``TopKLogitsWarper`` and ``TopPLogitsWarper`` shape it,
in that order (CTranslate2's ``RandomSampler`` takes the top k before the temperature; the
two commute): log-probabilities divided by the temperature, all but the ``top_k`` most
likely tokens dropped, then all but the nucleus (Holtzman et al. 2020, "The Curious Case of
Neural Text Degeneration": the smallest set of most likely tokens whose probability reaches
``top_p``), and renormalised.

A token is drawn by inverting the cumulative distribution at one uniform number per step.
Each output has its own stream of them, keyed by the run's seed, the output's sample
number and its input (source ids and prefix ids): an output is the same in any batch, at
any position and in any request, and the samples of one input differ from each other.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sampling:
    """How outputs are drawn (the ``[decode]`` keys of the same names).

    Attributes:
        temperature: > 0; log-probabilities are divided by it (below 1: sharper; towards
            0: greedy decoding).
        top_k: draw among the ``top_k`` most likely tokens (ties at the k-th kept); 0: all.
        top_p: in (0, 1]; draw from the nucleus of this probability; 1: all.
        num_samples: outputs drawn per input.
        seed: the run's seed (an integer in [0, 2**64)); None: fresh entropy at each call.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    num_samples: int = 1
    seed: int | None = None


#: Columns per block of :func:`draw`'s two-level inverse of the cumulative distribution.
_BLOCK = 128
#: The most likely tokens :func:`_nucleus` looks for the nucleus among first.
_NUCLEUS_CANDIDATES = 64


def sampling_weights(log_probs: np.ndarray, sampling: Sampling) -> np.ndarray:
    """The unnormalised probabilities each row's next token is drawn with: float32 [R, V]
    from processed log-probabilities float32 [R, V] (-inf: ruled out; at least one finite
    per row), shaped by temperature, top-k and top-p as the module docstring says. Ties at
    the k-th value, and at the nucleus's last, are kept."""
    scores = np.asarray(log_probs, dtype=np.float32)
    # the row's best token at 0 first: exp never overflows nor underflows every token, and
    # dividing by a temperature near 0 sends every other token to -inf rather than to nan
    scores = scores - scores.max(axis=1, keepdims=True)
    if sampling.temperature != 1.0:
        scores /= np.float32(sampling.temperature)
    vocab_size = scores.shape[1]
    if 0 < sampling.top_k < vocab_size:
        kth = np.partition(scores, vocab_size - sampling.top_k, axis=1)[
            :, vocab_size - sampling.top_k, None
        ]
        scores[scores < kth] = -np.inf
    weights = np.exp(scores, out=scores)
    if sampling.top_p < 1.0:
        weights[weights < _nucleus(weights, sampling.top_p)[:, None]] = 0.0
    return weights


def _nucleus(weights: np.ndarray, top_p: float) -> np.ndarray:
    """float32 [R]: each row's smallest weight in its nucleus, the most likely tokens whose
    probability first reaches ``top_p`` (Holtzman et al. 2020), looked for among the
    :data:`_NUCLEUS_CANDIDATES` largest weights first (found with a partition), the whole
    row sorted only where those fall short."""
    rows, vocab_size = weights.shape
    target = top_p * weights.sum(axis=1, dtype=np.float64)
    count = min(vocab_size, _NUCLEUS_CANDIDATES)
    top = np.partition(weights, vocab_size - count, axis=1)[:, vocab_size - count :]
    smallest, reached = _last_kept(top, target)
    short = np.flatnonzero(~reached)
    if short.size:
        smallest[short], _ = _last_kept(weights[short], target[short])
    return smallest


def _last_kept(candidates: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows of ``candidates`` sorted descending: the last value whose predecessors'
    mass falls short of ``target`` (float32 [R]), and whether the candidates reach it."""
    ranked = -np.sort(-candidates, axis=1)
    before = np.cumsum(ranked, axis=1, dtype=np.float64) - ranked
    kept = (before < target[:, None]).sum(axis=1)
    reached = before[:, -1] + ranked[:, -1] >= target
    return ranked[np.arange(len(ranked)), kept - 1], reached


def draw(weights: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """int32 [R]: for each row of ``weights`` (float [R, V], >= 0, a positive sum), the
    token whose interval of the cumulative distribution holds ``uniforms`` (float64 [R] in
    [0, 1)). A token of weight 0 is never drawn.

    Over more than a few blocks of :data:`_BLOCK` tokens, the cumulative distribution is
    inverted in two levels, so that no pass over [R, V] is a running sum (slow along rows):
    the sums of the blocks give the block, the running sum within that block the token."""
    rows, vocab_size = weights.shape
    if vocab_size <= 4 * _BLOCK:  # a few blocks: one running sum costs less than two levels
        cdf = np.cumsum(weights, axis=1, dtype=np.float64)
        tokens = (cdf <= (uniforms * cdf[:, -1])[:, None]).sum(axis=1)
        return np.minimum(tokens, _last_positive(weights)).astype(np.int32)
    index = np.arange(rows)
    full = vocab_size // _BLOCK
    # a block's sum in float32 (128 terms, pairwise), the running sums over blocks in float64
    sums = weights[:, : full * _BLOCK].reshape(rows, full, _BLOCK).sum(axis=2)
    if full * _BLOCK < vocab_size:
        tail = weights[:, full * _BLOCK :].sum(axis=1)
        sums = np.concatenate([sums, tail[:, None]], axis=1)
    sums = sums.astype(np.float64)
    cdf = np.cumsum(sums, axis=1)
    point = uniforms * cdf[:, -1]
    block = (cdf <= point[:, None]).sum(axis=1)
    over = block >= sums.shape[1]  # point rounded up to the total (u within 2**-53 of 1)
    if over.any():
        block[over] = _last_positive(sums[over])
        point[over] = np.nextafter(cdf[over, block[over]], 0.0)
    rest = point - np.where(block > 0, cdf[index, block - 1], 0.0)
    columns = block[:, None] * _BLOCK + np.arange(_BLOCK)
    inside = np.where(
        columns < vocab_size,
        np.take_along_axis(weights, np.minimum(columns, vocab_size - 1), axis=1),
        0.0,
    )
    within = np.cumsum(inside, axis=1, dtype=np.float64)
    tokens = (within <= rest[:, None]).sum(axis=1)
    # the block's own running sum may round below its sum: its last token of weight > 0
    tokens = np.minimum(tokens, _last_positive(inside))
    return (block * _BLOCK + tokens).astype(np.int32)


def _last_positive(weights: np.ndarray) -> np.ndarray:
    """int [R]: each row's last column of weight > 0 (a draw whose point rounded up to
    the row's total takes it)."""
    return weights.shape[1] - 1 - np.argmax(weights[:, ::-1] > 0, axis=1)


def fresh_seed() -> int:
    """A 64-bit seed from the operating system's entropy, for a run asked for no seed."""
    return secrets.randbits(64)


def output_uniforms(
    seed: int,
    sources: Sequence[Sequence[int]],
    prefixes: Sequence[Sequence[int]],
    samples: Sequence[int],
    steps: int,
) -> np.ndarray:
    """float64 [R, steps]: the uniform numbers in [0, 1) of R outputs, one per step; row
    ``r`` is the stream of sample number ``samples[r]`` of the input whose source ids are
    ``sources[r]`` and prefix ids ``prefixes[r]``, under ``seed`` (< 2**64). The stream is
    numpy's Philox (a counter-based generator, Salmon et al. 2011, whose keys give
    independent streams) keyed by the BLAKE2b hash of all four; its 64-bit words become
    doubles by their top 53 bits."""
    out = np.empty((len(sources), steps), dtype=np.float64)
    for row, (source, prefix, sample) in enumerate(zip(sources, prefixes, samples, strict=True)):
        words = np.array([seed, sample, len(source), *source, len(prefix), *prefix], np.uint64)
        key = hashlib.blake2b(words.tobytes(), digest_size=16).digest()
        raw = np.random.Philox(key=int.from_bytes(key, "little")).random_raw(steps)
        out[row] = (raw >> np.uint64(11)) * 2.0**-53
    return out
