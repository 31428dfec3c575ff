"""Transformer throughput on num2words, per backend: training target tokens/s and greedy
decoding sequences/s, every backend on the same model from the same initial weights.

Model (:data:`MODEL`): a Transformer of 2 encoder and 2 decoder layers, d_model 256 in 4
heads, feed-forward 1,024, pre-norm, sinusoidal positions, no dropout (so every backend
does the same arithmetic), the num2words vocabularies; initial weights
``seq2seq_kit.weights.initial_weights(spec, 0)``. Adam as the toolkit's default.

- ``train``: target tokens (real ``tgt_out`` positions, EOS included) per second of
  ``model.train_step`` on the num2words training batches of bench_train (64 pairs,
  bucketed), timed after untimed warm-up batches (one of each padded shape, see
  ``fixtures.warmup_and_timed``). Target: NumPy >= 0.5x the torch backend.
- ``greedy``: sequences per second of ``seq2seq_kit.decoding.greedy`` on the first
  ``n2w_decode_batch`` num2words sources (batch 256 with ``--quick``) with the untrained
  weights, capped at the num2words model's length cap: every backend runs the same number of
  steps (the notes give the share of outputs identical to the NumPy backend's).
"""

from __future__ import annotations

from typing import Any

from _common import ratio_of, template

MODEL = {
    "encoder_layers": 2,
    "decoder_layers": 2,
    "d_model": 256,
    "num_heads": 4,
    "ff_size": 1024,
    "dropout": 0.0,
}


def measure(backend: str, sizes: dict[str, Any]) -> dict[str, Any]:
    """Runs in the backend's worker process."""
    import time

    import fixtures
    import numpy as np

    from seq2seq_kit.checkpoint import load_checkpoint
    from seq2seq_kit.decoding import greedy
    from seq2seq_kit.plugins import get_backend
    from seq2seq_kit.spec import TransformerSpec
    from seq2seq_kit.weights import initial_weights

    ckpt = load_checkpoint(fixtures.NUM2WORDS_MODEL_DIR)
    spec = TransformerSpec(len(ckpt.source_vocab), len(ckpt.target_vocab), **MODEL)
    weights = initial_weights(spec, 0)

    def fresh():
        model = get_backend(backend).create(spec, seed=0)
        model.set_weights(weights)
        return model

    model = fresh()
    warm, timed_batches = fixtures.warmup_and_timed(sizes["train_warmup"], sizes["train_steps"])
    losses = [model.train_step(b) for b in warm]
    start = time.perf_counter()
    for batch in timed_batches:
        losses.append(model.train_step(batch))
    seconds = time.perf_counter() - start
    tokens = sum(b.num_target_tokens for b in timed_batches)

    model = fresh()
    src, lengths = fixtures.num2words_sources(sizes["n2w_decode_batch"])
    max_length = sizes["n2w_max_length"]
    greedy(model, src[:8], lengths[:8], ckpt.target_vocab, max_length)  # warm-up
    start = time.perf_counter()
    hyps = greedy(model, src, lengths, ckpt.target_vocab, max_length)
    decode_seconds = time.perf_counter() - start
    return {
        "spec": spec.to_dict(),
        "steps": len(timed_batches),
        "seconds": seconds,
        "target_tokens": tokens,
        "tokens_per_second": tokens / seconds,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "decode_batch": int(src.shape[0]),
        "decode_seconds": decode_seconds,
        "sequences_per_second": src.shape[0] / decode_seconds,
        "mean_output_tokens": float(np.mean([len(h.ids) for h in hyps])),
        "outputs": [list(h.ids) for h in hyps],
    }


def rows(measured: dict[str, Any]) -> list[dict[str, Any]]:
    ok = {b: m for b, m in measured.items() if "error" not in m}
    torch_rate = ok.get("torch", {}).get("tokens_per_second")
    out = []
    name = "train num2words Transformer tokens/s"
    for backend, m in measured.items():
        target = ">= 0.5x (numpy)" if backend == "numpy" else "n/a (context)"
        add = template(name, "tok/s", "torch backend", target)
        if "error" in m:
            out.append(add(backend, None, torch_rate, None, False, m["error"]))
            continue
        ratio = ratio_of(m["tokens_per_second"], torch_rate)
        met = None if backend != "numpy" or ratio is None else ratio >= 0.5
        notes = f"{m['steps']} steps, loss {m['first_loss']:.3f} -> {m['last_loss']:.3f}"
        out.append(add(backend, m["tokens_per_second"], torch_rate, ratio, met, notes))

    name = "num2words Transformer greedy"
    reference = ok.get("numpy", {})
    add = template(name, "seq/s", "numpy backend", "n/a (context)")
    for backend, m in ok.items():
        same = None
        if reference.get("outputs") and len(reference["outputs"]) == len(m["outputs"]):
            pairs = zip(m["outputs"], reference["outputs"], strict=True)
            same = sum(a == b for a, b in pairs) / len(m["outputs"])
        notes = f"batch {m['decode_batch']}, {m['mean_output_tokens']:.1f} tokens each"
        if same is not None:
            notes += f", {same:.1%} identical to numpy's"
        rate = m["sequences_per_second"]
        out.append(
            add(
                backend,
                rate,
                reference.get("sequences_per_second"),
                ratio_of(rate, reference.get("sequences_per_second")),
                None,
                notes,
            )
        )
    return out
