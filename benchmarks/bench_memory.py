"""Peak memory of training on 100,000 num2words pairs, per backend, against 10,000 pairs.

Each measurement is a fresh subprocess (``_common.call``) that imports seq2seq_kit and the
backend's framework, reads the first N pairs of the fixture num2words file, builds the
vocabularies and encodes every pair to ids (as ``seq2seq_kit.train`` does), builds the
num2words model (LSTM 256, embedding 64, from the fixture's initial weights) and trains it
for a fixed number of steps on shuffled, bucketed batches of 64 drawn from all N pairs
(``seq2seq_kit.batching.batches``), then evaluates the teacher-forced loss on the last 10%
of the pairs (``seq2seq_kit.trainer.evaluate``, as each epoch does). A few hundred steps
reach the steady state: Adam's moments and the framework's buffers exist after the first.

Figure: the child's peak RSS (``ru_maxrss`` of that child, see ``_common.Outcome``) in MB
(10^6 bytes) with N = 100,000. Reference: the same with N = 10,000. The child also
reports its resident memory just before and after reading and encoding the pairs
(``data MB``): what the dataset itself holds (strings and id lists).

Target: peak <= 1,000 MB at 100,000 pairs, and independent of dataset size beyond the
data: (peak_100k - peak_10k) - (data_100k - data_10k) <= max(25 MB, 5% of peak_10k).
"""

from __future__ import annotations

import resource
from typing import Any

from _common import call, ratio_of, template

BENCHMARK = "peak RSS training num2words, 100k vs 10k pairs"
PAIRS = (100_000, 10_000)


def _rss_mb() -> float:
    """Current resident set size in MB (``/proc/self/statm``)."""
    import os

    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def child(backend: str, pairs: int, steps: int) -> dict[str, Any]:
    """Runs in its own process; see the module docstring."""
    import fixtures
    import numpy as np

    from seq2seq_kit.batching import batches
    from seq2seq_kit.checkpoint import load_checkpoint
    from seq2seq_kit.plugins import get_backend
    from seq2seq_kit.spec import ModelSpec
    from seq2seq_kit.trainer import evaluate
    from seq2seq_kit.vocab import Vocabulary

    chosen = get_backend(backend)
    chosen.create(ModelSpec(13, 20), seed=0)  # import the framework
    before_data = _rss_mb()
    data = fixtures.num2words_pairs(pairs)
    source_vocab = Vocabulary.build(s for s, _ in data)
    target_vocab = Vocabulary.build(t for _, t in data)
    src = [source_vocab.encode(s) for s, _ in data]
    tgt = [target_vocab.encode(t) for _, t in data]
    after_data = _rss_mb()

    ckpt = load_checkpoint(fixtures.NUM2WORDS_MODEL_DIR)
    if len(source_vocab) != ckpt.spec.src_vocab_size or len(target_vocab) != len(ckpt.target_vocab):
        raise RuntimeError("the first pairs do not cover the model's vocabulary")
    model = chosen.create(ckpt.spec, seed=0)
    model.set_weights(ckpt.weights)
    cut = len(src) - len(src) // 10
    rng = np.random.default_rng(0)
    done = 0
    losses = []
    while done < steps:
        for batch in batches(src[:cut], tgt[:cut], fixtures.BATCH_SIZE, rng=rng, bucket=True):
            losses.append(model.train_step(batch))
            done += 1
            if done == steps:
                break
    valid_loss, _ = evaluate(model, src[cut:], tgt[cut:])
    return {
        "pairs": pairs,
        "steps": steps,
        "rss_before_data_mb": before_data,
        "rss_after_data_mb": after_data,
        "data_mb": after_data - before_data,
        "self_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6,
        "train_loss": [losses[0], losses[-1]],
        "valid_loss": valid_loss,
    }


def run(backends: list[str], sizes: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Two children per backend (100k then 10k pairs); returns their results by backend."""
    measured: dict[str, Any] = {}
    for backend in backends:
        measured[backend] = {}
        for pairs in PAIRS:
            outcome = call(
                "bench_memory",
                "child",
                env=env,
                timeout=sizes["timeout"],
                tag=f"{backend}-{pairs}",
                backend=backend,
                pairs=pairs,
                steps=sizes["memory_steps"],
            )
            if outcome.error:
                measured[backend] = {"error": outcome.error}
                break
            measured[backend][str(pairs)] = {
                **outcome.value["result"],
                "peak_mb": outcome.peak_rss_mb,
                "threads": outcome.value["threads"],
            }
            print(
                f"  memory {backend} {pairs:,} pairs: peak {outcome.peak_rss_mb:.0f} MB", flush=True
            )
    return measured


def rows(measured: dict[str, Any]) -> list[dict[str, Any]]:
    target = "<= 1,000 MB; growth <= data growth + max(25 MB, 5%)"
    add = template(BENCHMARK, "MB", "same, 10,000 pairs", target)
    out = []
    for backend, m in measured.items():
        if "error" in m:
            out.append(add(backend, None, None, None, False, m["error"]))
            continue
        big, small = m[str(PAIRS[0])], m[str(PAIRS[1])]
        growth = big["peak_mb"] - small["peak_mb"]
        data_growth = big["data_mb"] - small["data_mb"]
        excess = growth - data_growth
        allowed = max(25.0, 0.05 * small["peak_mb"])
        met = big["peak_mb"] <= 1000 and excess <= allowed
        notes = (
            f"growth {growth:.0f} MB, of which data (pairs + ids) {data_growth:.0f} MB; "
            f"excess {excess:.0f} MB (allowed {allowed:.0f}); {big['steps']} steps"
        )
        ratio = ratio_of(big["peak_mb"], small["peak_mb"])
        out.append(add(backend, big["peak_mb"], small["peak_mb"], ratio, met, notes))
    return out
