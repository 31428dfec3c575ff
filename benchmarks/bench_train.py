"""Training throughput on num2words, per backend: target tokens/s and effective GFLOP/s.

Configuration: the fixture num2words model (LSTM, hidden H = 256, embedding E = 64, one
layer each side, no attention, V = target vocabulary incl. specials), batch size 64, the
toolkit's Adam (lr 1e-3, clip 5), loaded into each backend from the same initial weights.
Batches: the first (warm-up + steps) x 64 num2words pairs, shuffled (seed 0) and bucketed
by length, the same for every backend and for the plain PyTorch reference. Timed: ``steps``
calls of ``model.train_step`` after untimed warm-up ones (``warmup`` other batches, then one
of each padded shape among the timed ones, so that compiling per shape is not timed; see
``fixtures.warmup_and_timed``): 50 steps after 5 (3 after 1 with ``--quick``), wall clock
around the whole loop.

Figures:
- tokens/s: target tokens (the real ``tgt_out`` positions, EOS included) per second.
- effective GFLOP/s: the matmul FLOPs the step needs, counted from the spec on real
  (non-pad) tokens only, divided by the time::

      per source token  (encoder LSTM):        F_enc = 2 * (E + H) * 4H
      per target token  (decoder LSTM + output): F_dec = 2 * (E + H) * 4H + 2 * H * V
      per step: FLOPs = 3 * (N_src * F_enc + N_tgt * F_dec)

  (forward: input and recurrent matmuls of the four gates, and the output projection;
  backward: two matmuls of the same size per forward matmul, hence x3. Element-wise
  gate math, softmax, embeddings and the optimizer are not counted; padding is not
  counted either, so work a backend spends on padded positions lowers its figure.)
  Compared to the NumPy sgemm peak (reference_sgemm.py); target: the fastest backend
  >= 50% of it.

Targets: NumPy tokens/s >= 0.8x the torch backend's; the fastest backend's effective
GFLOP/s >= 0.5x the sgemm peak. Also reported: every backend against reference_torch.py's
plain PyTorch training loop on the same batches (context, no target).
"""

from __future__ import annotations

import time
from typing import Any

from _common import ratio_of, template


def step_flops(spec: dict[str, Any], source_tokens: int, target_tokens: int) -> float:
    """Matmul FLOPs of forward + backward over the given real token counts (see above)."""
    hidden, emb = spec["hidden_size"], spec["embedding_size"] or spec["src_vocab_size"]
    temb = spec["embedding_size"] or spec["tgt_vocab_size"]
    f_enc = 2 * (emb + hidden) * 4 * hidden
    f_dec = 2 * (temb + hidden) * 4 * hidden + 2 * hidden * spec["tgt_vocab_size"]
    return 3.0 * (source_tokens * f_enc + target_tokens * f_dec)


def measure(backend: str, sizes: dict[str, Any]) -> dict[str, Any]:
    """Runs in the backend's worker process."""
    import fixtures

    import seq2seq_kit

    warmup, steps = sizes["train_warmup"], sizes["train_steps"]
    translator = seq2seq_kit.load(fixtures.NUM2WORDS_MODEL_DIR, backend=backend)
    model = translator.model
    warm, timed_batches = fixtures.warmup_and_timed(warmup, steps)
    losses = [model.train_step(b) for b in warm]
    start = time.perf_counter()
    for batch in timed_batches:
        losses.append(model.train_step(batch))
    seconds = time.perf_counter() - start
    return {
        "steps": len(timed_batches),
        "seconds": seconds,
        "target_tokens": sum(b.num_target_tokens for b in timed_batches),
        "source_tokens": int(sum(b.src_lengths.sum() for b in timed_batches)),
        "padded_target_positions": sum(b.tgt_in.size for b in timed_batches),
        "tokens_per_second": sum(b.num_target_tokens for b in timed_batches) / seconds,
        "warmup_steps": len(warm),
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "spec": model.spec.to_dict(),
    }


def _gflops(m: dict[str, Any], seconds_key: str, src_key: str, tgt_key: str) -> float:
    return step_flops(m["spec"], m[src_key], m[tgt_key]) / m[seconds_key] / 1e9


def rows(measured: dict[str, Any], refs: dict[str, Any]) -> list[dict[str, Any]]:
    peak = (refs.get("sgemm") or {}).get("gflops")
    torch_ref = refs.get("torch") or {}
    ok = {b: m for b, m in measured.items() if "error" not in m}
    gflops = {b: _gflops(m, "seconds", "source_tokens", "target_tokens") for b, m in ok.items()}
    fastest = max(gflops, key=gflops.get) if gflops else None
    out = []

    if "numpy" in measured:
        name = "train num2words tokens/s, numpy vs torch backend"
        add = template(name, "tok/s", "torch backend", ">= 0.8x")
        torch_rate = ok.get("torch", {}).get("tokens_per_second")
        m = measured["numpy"]
        if "error" in m:
            out.append(add("numpy", None, torch_rate, None, False, m["error"]))
        else:
            ratio = ratio_of(m["tokens_per_second"], torch_rate)
            met = None if ratio is None else ratio >= 0.8
            notes = "" if torch_rate else "torch backend not measured"
            out.append(add("numpy", m["tokens_per_second"], torch_rate, ratio, met, notes))

    name = "train num2words effective GFLOP/s"
    add = template(name, "GFLOP/s", "NumPy sgemm peak", ">= 0.5x (fastest backend)")
    for backend, m in measured.items():
        if "error" in m:
            out.append(add(backend, None, peak, None, False, m["error"]))
            continue
        ratio = ratio_of(gflops[backend], peak)
        met = (ratio is not None and ratio >= 0.5) if backend == fastest else None
        notes = (
            f"{m['tokens_per_second']:,.0f} tok/s, {m['steps']} steps, "
            f"loss {m['first_loss']:.3f} -> {m['last_loss']:.3f}"
        )
        if backend == fastest:
            notes += "; fastest backend"
        out.append(add(backend, gflops[backend], peak, ratio, met, notes))
    if "train_tokens_per_second" in torch_ref:
        g = _gflops(torch_ref, "train_seconds", "train_source_tokens", "train_target_tokens")
        add = template(name, "GFLOP/s", "NumPy sgemm peak", "n/a (context)")
        notes = f"{torch_ref['train_tokens_per_second']:,.0f} tok/s"
        out.append(add("plain PyTorch (reference)", g, peak, ratio_of(g, peak), None, notes))

    name = "train num2words tokens/s vs plain PyTorch"
    add = template(name, "tok/s", "reference_torch.py training loop", "n/a (context)")
    ref_rate = torch_ref.get("train_tokens_per_second")
    for backend, m in ok.items():
        rate = m["tokens_per_second"]
        out.append(add(backend, rate, ref_rate, ratio_of(rate, ref_rate), None))
    return out
