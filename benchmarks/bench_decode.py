"""Decoding: batched greedy throughput and beam-search cost, per backend.

Figures (each the median of timed calls after one untimed warm-up call):

- ``digits greedy, batch B`` (B = 1, 64, 4,096): sequences per second of
  ``Translator.translate(texts, batch_size=B)`` on the fixture digits model (the seed
  configuration trained with NumPy, loaded into each backend), ``texts`` B inputs drawn
  uniformly from the nine digits; text in, text out, as the seed loop. Reference: the seed
  notebook's loop, sequences per second (one ``decode_sequence`` per sequence). Target:
  >= 10,000x at the batched size (4,096); batch 1 and 64 are context.
- ``beam 5 / greedy``: seconds of one ``translate(texts, beam=5, batch_size=64)`` against
  the greedy call on the same 64 inputs; on the digits model and on the num2words model
  (with that benchmark's length cap). Target: <= 3x.
- ``num2words greedy``: sequences per second of ``seq2seq_kit.decoding.greedy`` on the
  first B num2words sources (B = 4,096; 256 with ``--quick``) with the fixture num2words
  model (LSTM 256, embedding 64, initial random weights, so most outputs run to the length
  cap: the same number of steps for both sides). Reference: reference_torch.py's greedy
  loop on the same weights and inputs. Target: >= 2x. The notes give the share of
  outputs identical to the reference's (a check that both did the same work).
"""

from __future__ import annotations

import json
from typing import Any

from _common import WORK, ratio_of, template, timed

DIGITS_BATCHES = (1, 64, 4096)
BEAM = 5
BEAM_BATCH = 64


def measure(backend: str, sizes: dict[str, Any]) -> dict[str, Any]:
    """Runs in the backend's worker process."""
    import fixtures
    import numpy as np

    import seq2seq_kit
    from seq2seq_kit.decoding import beam_search, greedy

    min_time, min_repeats = sizes["decode_min_time"], sizes["decode_min_repeats"]
    result: dict[str, Any] = {"digits": {}}
    digits = seq2seq_kit.load(fixtures.DIGITS_MODEL, backend=backend)
    words = dict(zip(fixtures.NINE, digits.translate(fixtures.NINE), strict=True))
    rng = np.random.default_rng(0)
    for batch in DIGITS_BATCHES:
        texts = [str(t) for t in rng.choice(fixtures.NINE, size=batch)]
        timing = timed(
            lambda t=texts, b=batch: digits.translate(t, batch_size=b),
            min_time=min_time,
            min_repeats=min_repeats,
        )
        outputs = digits.translate(texts, batch_size=batch)
        result["digits"][str(batch)] = {
            **timing,
            "sequences_per_second": batch / timing["median"],
            "consistent": all(o == words[t] for o, t in zip(outputs, texts, strict=True)),
        }

    texts = [str(t) for t in rng.choice(fixtures.NINE, size=BEAM_BATCH)]
    result["digits_beam"] = _beam_vs_greedy(
        lambda beam: digits.translate(texts, beam=beam, batch_size=BEAM_BATCH),
        min_time,
        min_repeats,
    )

    n2w = seq2seq_kit.load(fixtures.NUM2WORDS_MODEL_DIR, backend=backend)
    batch, max_length = sizes["n2w_decode_batch"], sizes["n2w_max_length"]
    src, lengths = fixtures.num2words_sources(batch)

    def run():
        return greedy(n2w.model, src, lengths, n2w.target_vocab, max_length)

    timing = timed(run, min_time=min_time, min_repeats=min_repeats)
    hyps = run()
    agreement = None
    reference = WORK / "reference-torch-greedy.json"
    if reference.exists():
        ref_ids = [tuple(i) for i in json.loads(reference.read_text())]
        if len(ref_ids) == len(hyps):
            agreement = sum(h.ids == r for h, r in zip(hyps, ref_ids, strict=True)) / len(hyps)
    result["num2words"] = {
        **timing,
        "batch": batch,
        "max_length": max_length,
        "sequences_per_second": batch / timing["median"],
        "mean_output_tokens": float(np.mean([len(h.ids) for h in hyps])),
        "agreement_with_reference": agreement,
    }
    n2w_src, n2w_len = src[:BEAM_BATCH], lengths[:BEAM_BATCH]

    def n2w_decode(beam: int):
        if beam == 1:
            return greedy(n2w.model, n2w_src, n2w_len, n2w.target_vocab, max_length)
        return beam_search(n2w.model, n2w_src, n2w_len, n2w.target_vocab, max_length, beam)

    result["num2words_beam"] = _beam_vs_greedy(n2w_decode, min_time, min_repeats)
    return result


def _beam_vs_greedy(decode, min_time: float, min_repeats: int) -> dict[str, Any]:
    greedy_t = timed(lambda: decode(1), min_time=min_time, min_repeats=min_repeats)
    beam_t = timed(lambda: decode(BEAM), min_time=min_time, min_repeats=min_repeats)
    return {
        "greedy_seconds": greedy_t["median"],
        "beam_seconds": beam_t["median"],
        "ratio": beam_t["median"] / greedy_t["median"],
        "repeats": [greedy_t["repeats"], beam_t["repeats"]],
    }


def rows(
    measured: dict[str, Any], refs: dict[str, Any], sizes: dict[str, Any]
) -> list[dict[str, Any]]:
    seed = refs.get("seed_keras") or {}
    seed_rate = seed.get("sequences_per_second")
    torch_ref = refs.get("torch") or {}
    torch_rate = torch_ref.get("decode_sequences_per_second")
    out = []
    for batch in DIGITS_BATCHES:
        batched = batch == DIGITS_BATCHES[-1]
        target = ">= 10,000x" if batched else "n/a (context)"
        add = template(
            f"digits greedy, batch {batch:,}", "seq/s", "seed notebook decode_sequence", target
        )
        for backend, m in measured.items():
            if "error" in m:
                out.append(
                    add(backend, None, seed_rate, None, False if batched else None, m["error"])
                )
                continue
            d = m["digits"][str(batch)]
            ratio = ratio_of(d["sequences_per_second"], seed_rate)
            met = (ratio is not None and ratio >= 10_000 and d["consistent"]) if batched else None
            notes = f"median of {d['repeats']} calls"
            if not d["consistent"]:
                notes += "; outputs differ from the model's own translation of each digit"
            out.append(add(backend, d["sequences_per_second"], seed_rate, ratio, met, notes))

    for key, label in (("digits_beam", "digits"), ("num2words_beam", "num2words")):
        # The num2words model has random weights: no sentence ends before the length cap,
        # so neither search can stop early; its row shows the per-step cost only.
        target = "<= 3x" if label == "digits" else "n/a (context)"
        name = f"beam {BEAM} vs greedy, {label}, batch {BEAM_BATCH}"
        add = template(name, "s", "greedy, same inputs", target)
        for backend, m in measured.items():
            if "error" in m:
                out.append(add(backend, None, None, None, False, m["error"]))
                continue
            b = m[key]
            met = b["ratio"] <= 3 if label == "digits" else None
            notes = ""
            if label == "num2words":
                notes = f"random weights, every output runs to the cap {sizes['n2w_max_length']}"
            out.append(add(backend, b["beam_seconds"], b["greedy_seconds"], b["ratio"], met, notes))

    name = f"num2words greedy, batch {sizes['n2w_decode_batch']:,}"
    add = template(name, "seq/s", "plain PyTorch greedy loop, same weights", ">= 2x")
    for backend, m in measured.items():
        if "error" in m:
            out.append(add(backend, None, torch_rate, None, False, m["error"]))
            continue
        n = m["num2words"]
        ratio = ratio_of(n["sequences_per_second"], torch_rate)
        notes = f"cap {n['max_length']}, mean output {n['mean_output_tokens']:.1f} tokens"
        if n["agreement_with_reference"] is not None:
            notes += f", {100 * n['agreement_with_reference']:.0f}% outputs = reference's"
        if torch_rate is None:
            notes += "; reference failed: " + str(torch_ref.get("error", "not run"))
        met = ratio is not None and ratio >= 2
        out.append(add(backend, n["sequences_per_second"], torch_rate, ratio, met, notes))
    return out
