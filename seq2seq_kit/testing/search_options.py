"""Sampling, target prefixes, output controls and lexical constraints, through the backend:
the core's searches for a backend that steps the decoder, the engine's own for one declaring
``search`` (each check skipped where the engine lacks the option's capability, and the
refusal of constraints checked there)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from ..config import DecodeConfig
from ..decoding import (
    SEARCH_OPTION_CAPABILITIES,
    Hypothesis,
    decode,
    encode_constraints,
    encode_prefixes,
    plan,
)
from ..errors import CapabilityError
from ..searches import holds_phrases
from ..vocab import Vocabulary
from .base import (
    BackendTestBase,
    assert_same_hypotheses,
    family_specs,
    perturbed_weights,
    without_dropout,
)

#: The suite's target vocabulary: ids 4..12 are "a".."i" (the specs' 13 target ids).
VOCAB = Vocabulary(tuple("abcdefghi"))
#: Sources of lengths 1 to 9.
ROWS = [[4 + (i * j) % 7 for j in range(n)] for i, n in enumerate([1, 9, 3, 1, 6, 2])]


def chi_square_sf(statistic: float, df: int) -> float:
    """P(X >= ``statistic``) for X chi-square with ``df`` degrees of freedom, from the closed
    forms for integer ``df`` (Abramowitz and Stegun 26.4.4 and 26.4.5: a Poisson sum for
    even ``df``, the normal tail plus one for odd)."""
    x = statistic / 2.0
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for i in range(1, df // 2):
            term *= x / i
            total += term
        return math.exp(-x) * total
    total = math.erfc(math.sqrt(x))
    term = math.sqrt(x) / math.gamma(1.5)  # x^(1/2) / Gamma(3/2)
    for i in range(1, (df + 1) // 2):
        total += math.exp(-x) * term
        term *= x / (i + 0.5)
    return total


def chi_square_p(counts: np.ndarray, expected: np.ndarray) -> float:
    """Pearson's goodness-of-fit p-value of ``counts`` against ``expected`` counts; the
    categories expected fewer than 5 times are pooled into one (the usual rule), and those
    expected never must never occur."""
    assert counts[expected == 0].sum() == 0, "a token of probability 0 was drawn"
    small = (expected > 0) & (expected < 5)
    observed = np.append(counts[expected >= 5], counts[small].sum())
    wanted = np.append(expected[expected >= 5], expected[small].sum())
    keep = wanted > 0
    observed, wanted = observed[keep], wanted[keep]
    statistic = float(((observed - wanted) ** 2 / wanted).sum())
    return chi_square_sf(statistic, len(wanted) - 1)


def shaped(probs: np.ndarray, temperature: float, top_k: int, top_p: float) -> np.ndarray:
    """What sampling should draw from, written out plainly: ``probs`` (float64 [V], 0 for
    tokens ruled out) raised to ``1 / temperature``, cut to the ``top_k`` most likely and
    to the nucleus of ``top_p`` (Holtzman et al. 2020), renormalised."""
    q = probs ** (1.0 / temperature)
    q /= q.sum()
    order = sorted(range(len(q)), key=lambda i: -q[i])
    if top_k:
        for i in order[top_k:]:
            q[i] = 0.0
        q /= q.sum()
    mass = 0.0
    for i in order:
        if mass >= top_p:
            q[i] = 0.0
        mass += q[i]
    return q / q.sum()


class SearchOptionTests(BackendTestBase):
    def _needs(self, *options: str) -> None:
        """Skip unless the backend's searches take ``options`` (a backend that steps the
        decoder takes them all; an engine with its own search, those it declares)."""
        capabilities = self.backend().capabilities
        if "search" not in capabilities:
            return
        missing = [o for o in options if SEARCH_OPTION_CAPABILITIES[o] not in capabilities]
        if missing:
            pytest.skip(f"backend {self.backend_name!r}'s own search lacks {missing}")

    def _models(self, seed: int, eos_bias: float = 0.0, sharpness: float = 1.0):
        """One model of each architecture the backend builds, with random weights (EOS
        made ``eos_bias`` likelier in log-odds, the output kernel scaled by ``sharpness``:
        above 1, distributions further from uniform)."""
        for spec in family_specs(self.backend()):
            spec = without_dropout(spec)
            weights = perturbed_weights(spec, seed)
            weights["decoder.output.bias"][2] += eos_bias
            weights["decoder.output.kernel"] *= sharpness
            model = self.build(spec)
            model.set_weights(weights)
            yield spec, weights, model

    def _decode(
        self,
        model: Any,
        rows: list[list[int]] = ROWS,
        prefix: list[str] | None = None,
        max_length: int = 12,
        constraints: list[list[str]] | None = None,
        **options: Any,
    ) -> list[list[Hypothesis]]:
        """Decode ``rows`` as ``translate`` does: options checked by ``plan``, prefixes by
        ``encode_prefixes``, constraints by ``encode_constraints``."""
        search = plan(
            DecodeConfig(**options),
            max_length,
            self.backend().capabilities,
            self.backend_name,
            VOCAB,
        )
        prefixes = encode_prefixes(prefix, rows, VOCAB, search)
        held = encode_constraints(constraints, rows, VOCAB, search)
        return decode(model, rows, VOCAB, search, prefixes, constraints=held)

    def test_sampling_towards_its_limits_is_greedy_decoding(self):
        self._needs("sampling")
        for spec, _, model in self._models(31):
            greedy = [hyps[0] for hyps in self._decode(model)]
            for limit in ({"temperature": 1e-4}, {"top_k": 1}, {"top_p": 1e-6}):
                drawn = self._decode(model, sampling=True, num_samples=2, seed=7, **limit)
                for best, samples in zip(greedy, drawn, strict=True):
                    assert len(samples) == 2
                    for h in samples:
                        assert (h.ids, h.truncated) == (best.ids, best.truncated), (spec, limit)
                        assert abs(h.score - best.score) < 1e-4

    def test_sampling_with_a_seed_is_reproducible(self):
        self._needs("sampling")
        for _, _, model in self._models(32):
            options = {"sampling": True, "num_samples": 4, "temperature": 1.5}
            first = self._decode(model, seed=11, **options)
            assert self._decode(model, seed=11, **options) == first
            other = self._decode(model, seed=12, **options)
            assert [[h.ids for h in hyps] for hyps in other] != [
                [h.ids for h in hyps] for hyps in first
            ]

    def test_sampled_tokens_follow_the_models_distribution(self):
        # the first token of 1,000 samples of one source, against the model's first-step
        # distribution (specials left out, renormalised) shaped as the options say: a
        # chi-square test at a fixed seed, so the check is deterministic
        self._needs("sampling")
        shapes = [
            {},
            {"temperature": 0.7, "top_k": 5},
            {"temperature": 1.3, "top_p": 0.8},
        ]
        for spec, weights, model in self._models(33, eos_bias=1.0, sharpness=3.0):
            reference = self.reference(spec)
            reference.set_weights(weights)
            src, lengths = np.array([[5, 8, 6]], np.int32), np.array([3], np.int32)
            state = reference.encode(src, lengths)
            log_probs, _ = reference.step(np.array([VOCAB.bos_id], np.int32), state)
            probs = np.exp(np.asarray(log_probs[0], np.float64))
            probs[[VOCAB.pad_id, VOCAB.bos_id, VOCAB.unk_id]] = 0.0
            probs /= probs.sum()
            for options in shapes:
                expected = shaped(
                    probs,
                    options.get("temperature", 1.0),
                    options.get("top_k", 0),
                    options.get("top_p", 1.0),
                )
                hyps = self._decode(
                    model, [[5, 8, 6]], max_length=1, sampling=True, num_samples=1000, seed=5,
                    **options,
                )[0]  # fmt: skip
                first = [h.ids[0] if h.ids else VOCAB.eos_id for h in hyps]
                counts = np.bincount(first, minlength=len(probs)).astype(np.float64)
                p = chi_square_p(counts, 1000 * expected)
                assert p > 1e-3, (spec, options, counts, 1000 * expected, p)

    def test_every_output_starts_with_its_prefix(self):
        self._needs("prefix")
        prefix = ["ab", "", "c", "iii", "a", "hgfedcba"]
        searches = [{}, {"sampling": True, "num_samples": 2, "seed": 1}]
        if "beam" in self.backend().capabilities:
            searches.append({"beam": 3, "n_best": 2})
        for _, _, model in self._models(34):
            for options in searches:
                found = self._decode(model, prefix=prefix, **options)
                for text, hyps in zip(prefix, found, strict=True):
                    forced = tuple(VOCAB.encode(text))
                    for h in hyps:
                        assert h.ids[: len(forced)] == forced, (options, text, h)
                        assert h.text.startswith(text)

    def test_a_prefix_of_greedys_own_start_gives_greedys_output(self):
        self._needs("prefix")
        for _, _, model in self._models(35):
            greedy = [hyps[0] for hyps in self._decode(model)]
            prefix = [VOCAB.decode(h.ids[:2]) for h in greedy]
            forced = [hyps[0] for hyps in self._decode(model, prefix=prefix)]
            for free, fixed in zip(greedy, forced, strict=True):
                assert (fixed.ids, fixed.truncated) == (free.ids, free.truncated)
                assert abs(fixed.score - free.score) < 1e-4  # scores include the prefix

    def test_output_controls_hold_in_every_search(self):
        self._needs("min_length", "no_repeat_ngram_size", "banned_tokens")
        searches = [{}, {"sampling": True, "num_samples": 3, "seed": 2}]
        if "beam" in self.backend().capabilities:
            searches.append({"beam": 3, "n_best": 3})
        banned = {VOCAB.token_id("a"), VOCAB.token_id("e")}
        for _, _, model in self._models(36, eos_bias=0.5):
            for options in searches:
                for controls in (
                    {"no_repeat_ngram_size": 1},
                    {"no_repeat_ngram_size": 2, "min_length": 4},
                    {"min_length": 6, "banned_tokens": ["a", "e"]},
                ):
                    found = self._decode(model, max_length=10, **options, **controls)
                    for hyps in found:
                        for h in hyps:
                            self._check_controls(h, controls, banned, options)

    @staticmethod
    def _check_controls(h: Hypothesis, controls: dict, banned: set[int], options: dict) -> None:
        n = controls.get("no_repeat_ngram_size", 0)
        if n:
            grams = [h.ids[i : i + n] for i in range(len(h.ids) - n + 1)]
            assert len(grams) == len(set(grams)), (options, controls, h.ids)
        if not h.truncated:
            assert len(h.ids) >= controls.get("min_length", 0), (options, controls, h.ids)
        if controls.get("banned_tokens"):
            assert not banned & set(h.ids), (options, controls, h.ids)

    def _constrained_searches(self) -> list[dict[str, Any]]:
        searches: list[dict[str, Any]] = [{}]  # beam 1: the constrained search, one beam
        if "beam" in self.backend().capabilities:
            searches.append({"beam": 3, "n_best": 3, "length_penalty": 1.0})
        return searches

    def test_every_output_holds_its_constraints(self):
        # within the length cap (12 tokens), the best output holds every phrase; any other
        # output holds them or is flagged, after those that do
        self._needs("constraints")
        constraints = [["ab"], [], ["c", "hi"], ["iii"], ["ba", "ab", "e"], ["gf"]]
        encoded = [[tuple(VOCAB.encode(p)) for p in phrases] for phrases in constraints]
        for spec, _, model in self._models(37, eos_bias=1.0):
            for options in self._constrained_searches():
                found = self._decode(model, constraints=constraints, **options)
                for phrases, wanted, hyps in zip(constraints, encoded, found, strict=True):
                    assert hyps[0].constraints_met, (spec, options, phrases, hyps[0])
                    met = [h.constraints_met for h in hyps]
                    assert met == sorted(met, reverse=True), (options, phrases, met)
                    for h in hyps:
                        assert h.constraints_met == holds_phrases(h.ids, wanted), (options, h)
                        if h.constraints_met:
                            assert all(p in h.text for p in phrases), (options, phrases, h)

    def test_without_constraints_the_search_is_the_plain_one(self):
        # the inputs without constraints, decoded beside constrained ones, get what they get
        # with no constraint at all
        self._needs("constraints")
        constraints = [["ab"], [], ["c"], [], ["ba", "e"], []]
        for _, _, model in self._models(38, eos_bias=0.5):
            for options in self._constrained_searches():
                plain = self._decode(model, **options)
                mixed = self._decode(model, constraints=constraints, **options)
                free = [i for i, phrases in enumerate(constraints) if not phrases]
                assert_same_hypotheses([mixed[i] for i in free], [plain[i] for i in free])
                nothing = self._decode(model, constraints=[[] for _ in ROWS], **options)
                assert_same_hypotheses(nothing, plain)

    def test_an_engine_without_the_capability_refuses_constraints(self):
        capabilities = self.backend().capabilities
        if "search" not in capabilities or "constraints" in capabilities:
            pytest.skip(f"backend {self.backend_name!r} holds constraints")
        search = plan(DecodeConfig(), 12, capabilities, self.backend_name, VOCAB)
        with pytest.raises(CapabilityError) as exc:
            encode_constraints([["ab"], []], ROWS[:2], VOCAB, search)
        assert exc.value.option == "constraints" and "'constraints' capability" in str(exc.value)
