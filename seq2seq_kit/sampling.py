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
Each output has its own stream of them, seeded by the run's seed, the output's sample
number and its input (source ids and prefix ids): an output is the same in any batch, at
any position and in any request, and the samples of one input differ from each other.
"""

from __future__ import annotations

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
        seed: the run's seed (any integer >= 0); None: fresh entropy at each call.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    num_samples: int = 1
    seed: int | None = None


def sampling_weights(log_probs: np.ndarray, sampling: Sampling) -> np.ndarray:
    """The unnormalised probabilities each row's next token is drawn with: float64 [R, V]
    from processed log-probabilities float32 [R, V] (-inf: ruled out; at least one finite
    per row), shaped by temperature, top-k and top-p as the module docstring says."""
    scores = np.asarray(log_probs, dtype=np.float64)
    # the row's best token at 0 first: exp never overflows, and dividing by a temperature
    # near 0 sends every other token to -inf rather than to nan
    scores = scores - scores.max(axis=1, keepdims=True)
    if sampling.temperature != 1.0:
        scores = scores / sampling.temperature
    vocab_size = scores.shape[1]
    if 0 < sampling.top_k < vocab_size:
        kth = np.partition(scores, vocab_size - sampling.top_k, axis=1)[
            :, vocab_size - sampling.top_k, None
        ]
        scores = np.where(scores < kth, -np.inf, scores)
    weights = np.exp(scores)
    if sampling.top_p < 1.0:
        order = np.argsort(-weights, axis=1, kind="stable")
        ranked = np.take_along_axis(weights, order, axis=1)
        before = np.cumsum(ranked, axis=1) - ranked  # the mass of the more likely tokens
        outside = before >= sampling.top_p * ranked.sum(axis=1, keepdims=True)
        np.put_along_axis(weights, order, np.where(outside, 0.0, ranked), axis=1)
    return weights


def draw(weights: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """int32 [R]: for each row of ``weights`` (float64 [R, V], >= 0, a positive sum), the
    token whose interval of the cumulative distribution holds ``uniforms`` (float64 [R] in
    [0, 1)). A token of weight 0 is never drawn."""
    cdf = np.cumsum(weights, axis=1)
    point = uniforms * cdf[:, -1]
    tokens = (cdf <= point[:, None]).sum(axis=1)
    over = tokens >= weights.shape[1]  # point rounded up to the total (u within 2**-53 of 1)
    if over.any():
        last = weights.shape[1] - 1 - np.argmax(weights[over, ::-1] > 0, axis=1)
        tokens[over] = last
    return tokens.astype(np.int32)


def fresh_seed() -> int:
    """A seed from the operating system's entropy, for a run asked for no seed."""
    return int(np.random.SeedSequence().entropy)


def output_uniforms(
    seed: int,
    sources: Sequence[Sequence[int]],
    prefixes: Sequence[Sequence[int]],
    samples: Sequence[int],
    steps: int,
) -> np.ndarray:
    """float64 [R, steps]: the uniform numbers in [0, 1) of R outputs, one per step; row
    ``r`` is the stream of sample number ``samples[r]`` of the input whose source ids are
    ``sources[r]`` and prefix ids ``prefixes[r]``, under ``seed`` (numpy's ``SeedSequence``
    hashes them together; each stream is a PCG64 generator of its own)."""
    out = np.empty((len(sources), steps), dtype=np.float64)
    for row, (source, prefix, sample) in enumerate(zip(sources, prefixes, samples, strict=True)):
        entropy = [seed, sample, len(source), *source, len(prefix), *prefix]
        out[row] = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy))).random(
            steps
        )
    return out
