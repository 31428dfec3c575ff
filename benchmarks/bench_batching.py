"""Training throughput with token batching against sentence batching, at equal memory.

Data: every pair of the Tatoeba English -> French file (``../shared/data/tatoeba-eng-fra.tsv``
from the repository root: 76,036 pairs of 1 to 76 characters a side), character level, as
``seq2seq_kit.train`` encodes it. Model: the NumPy backend, one LSTM layer of 256 units each
side, embedding 64, general attention, no dropout, seed 0. Each run is a fresh subprocess
(``_common.call``) with OpenMP, OpenBLAS and MKL pinned to one thread, whatever ``--threads``
says, so that the two runs compare batch shapes rather than thread scheduling.

Both runs draw bucketed, shuffled batches (``bucket = true``, seed 0) from
``seq2seq_kit.batching.batches``, as the trainer does:

- sentences: ``batch_type = "sentences"``, ``batch_size = 32`` pairs;
- tokens: ``batch_type = "tokens"`` with ``batch_size`` set for equal memory: half the
  largest padded batch of the sentence run over one epoch, counted as the elements of its
  two id arrays, ``src_ids`` and ``tgt_in``: rows x (source width + target width + 1),
  3,296 = 32 x (30 + 73) on this file, so 1,648 tokens. A token batch holds rows x
  max(source width, target width + 1) <= ``batch_size`` (what token batching bounds), so
  its two arrays hold at most twice that: never more elements than the sentence run's
  largest batch. Every activation, gradient and logit array of a step grows with those
  arrays' rows x widths (attention scores with rows x source x target width, which is
  smaller too), so the token run needs at most the sentence run's memory; the RSS row
  checks it.

Each run first takes one untimed step on its largest batch, so that its peak RSS includes
its worst case, which a time-limited run might not draw otherwise. Then it trains for
``seconds`` of wall-clock time (60; 5 with ``--quick``) on its epoch's batches in order (a
new epoch if one ends), batch making included, and counts real target tokens (characters
and EOS, padding excluded) of the steps it finished.

Rows: target tokens/s of the token run against the sentence run (ratio tokens / sentences;
target > 1: the point of token batching is more tokens a second at the same memory), and
the peak RSS of the two children (``ru_maxrss``, see ``_common.Outcome``; target within
10% of each other). The notes give steps, mean rows a batch and the padded share.

    python benchmarks/bench_batching.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    THREAD_VARIABLES,
    call,
    markdown,
    ratio_of,
    template,
    thread_env,
    write,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "tatoeba-eng-fra.tsv"
SENTENCES = 32
MODEL = {
    "hidden_size": 256,
    "embedding_size": 64,
    "cell": "lstm",
    "attention": "general",
    "dropout": 0.0,
}
SEED = 0


def _encoded(path: str) -> tuple[list[list[int]], list[list[int]], int, int]:
    """Source and target ids of every pair of ``path``, and the two vocabulary sizes."""
    from seq2seq_kit.data import read_tsv
    from seq2seq_kit.vocab import Vocabulary

    pairs = read_tsv(path)
    source_vocab = Vocabulary.build(s for s, _ in pairs)
    target_vocab = Vocabulary.build(t for _, t in pairs)
    src = [source_vocab.encode(s) for s, _ in pairs]
    tgt = [target_vocab.encode(t) for _, t in pairs]
    return src, tgt, len(source_vocab), len(target_vocab)


def padded_size(batch: Any) -> int:
    """Elements of the batch's two id arrays, ``src_ids`` and ``tgt_in``."""
    return int(batch.src_ids.size + batch.tgt_in.size)


def equal_memory_budget(path: str) -> int:
    """The token ``batch_size`` whose batches are never larger than the largest 32-pair
    sentence batch: half its :func:`padded_size` (see the module docstring)."""
    import numpy as np

    from seq2seq_kit.batching import batches

    src, tgt, _, _ = _encoded(path)
    rng = np.random.default_rng(SEED)
    return max(padded_size(b) for b in batches(src, tgt, SENTENCES, rng=rng, bucket=True)) // 2


def child(path: str, batch_type: str, batch_size: int, seconds: float) -> dict[str, Any]:
    """Runs in its own process; see the module docstring."""
    import resource

    import numpy as np

    from seq2seq_kit.batching import batches
    from seq2seq_kit.plugins import get_backend
    from seq2seq_kit.spec import ModelSpec

    src, tgt, src_vocab, tgt_vocab = _encoded(path)
    model = get_backend("numpy").create(ModelSpec(src_vocab, tgt_vocab, **MODEL), seed=SEED)
    rng = np.random.default_rng(SEED)

    def epoch() -> Any:
        return batches(src, tgt, batch_size, rng=rng, bucket=True, batch_type=batch_type)

    largest = max(epoch(), key=padded_size)
    model.train_step(largest)  # untimed: the worst case counts in the peak RSS
    steps = rows = tokens = padded = 0
    losses = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for batch in epoch():
            losses.append(model.train_step(batch))
            steps += 1
            rows += len(batch)
            tokens += batch.num_target_tokens
            padded += batch.tgt_in.size
            if time.perf_counter() - start >= seconds:
                break
    elapsed = time.perf_counter() - start
    return {
        "batch_type": batch_type,
        "batch_size": batch_size,
        "pairs": len(src),
        "largest_batch": {
            "rows": len(largest),
            "src_width": int(largest.src_ids.shape[1]),
            "tgt_width": int(largest.tgt_in.shape[1]),
            "padded_size": padded_size(largest),
        },
        "seconds": elapsed,
        "steps": steps,
        "rows": rows,
        "target_tokens": tokens,
        "padded_target_positions": padded,
        "tokens_per_second": tokens / elapsed,
        "train_loss": [losses[0], losses[-1]],
        "self_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6,
    }


def run(sizes: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """The budget, then one child per batch type; results by batch type, or ``{"error": ...}``."""
    env = {**env, **{name: "1" for name in THREAD_VARIABLES if not name.startswith("TF_")}}
    timeout = sizes["timeout"]
    if not DATA.exists():
        return {"error": f"no data file {DATA}"}
    outcome = call(
        "bench_batching", "equal_memory_budget", env=env, timeout=timeout, path=str(DATA)
    )
    if outcome.error:
        return {"error": outcome.error}
    budget = outcome.value["result"]
    measured: dict[str, Any] = {"token_budget": budget}
    for batch_type, batch_size in (("sentences", SENTENCES), ("tokens", budget)):
        outcome = call(
            "bench_batching",
            "child",
            env=env,
            timeout=timeout,
            tag=batch_type,
            path=str(DATA),
            batch_type=batch_type,
            batch_size=batch_size,
            seconds=sizes["batching_seconds"],
        )
        if outcome.error:
            return {"error": outcome.error}
        measured[batch_type] = {
            **outcome.value["result"],
            "peak_mb": outcome.peak_rss_mb,
            "threads": outcome.value["threads"],
        }
        result = measured[batch_type]
        print(
            f"  batching {batch_type} {batch_size}: {result['tokens_per_second']:,.0f} tok/s, "
            f"peak {outcome.peak_rss_mb:.0f} MB",
            flush=True,
        )
    return measured


def _notes(m: dict[str, Any]) -> str:
    big = m["largest_batch"]
    return (
        f"{m['steps']} steps in {m['seconds']:.0f} s, {m['rows'] / m['steps']:.1f} rows a batch, "
        f"{1 - m['target_tokens'] / m['padded_target_positions']:.0%} target padding; largest "
        f"{big['rows']} x ({big['src_width']} + {big['tgt_width']}) = {big['padded_size']}"
    )


def rows(m: dict[str, Any]) -> list[dict[str, Any]]:
    who = "numpy, 1 thread"
    speed = template(
        "train Tatoeba tokens/s, batch_type tokens vs sentences (equal largest batch)",
        "tok/s",
        f"batch_type sentences, {SENTENCES} pairs",
        "> 1x",
    )
    memory = template(
        "peak RSS training Tatoeba, batch_type tokens vs sentences",
        "MB",
        f"batch_type sentences, {SENTENCES} pairs",
        "<= 1.1x",
    )
    if "error" in m:
        return [speed(who, None, None, None, False, m["error"])]
    sent, tok = m["sentences"], m["tokens"]
    speed_ratio = ratio_of(tok["tokens_per_second"], sent["tokens_per_second"])
    memory_ratio = ratio_of(tok["peak_mb"], sent["peak_mb"])
    return [
        speed(
            who,
            tok["tokens_per_second"],
            sent["tokens_per_second"],
            speed_ratio,
            speed_ratio is not None and speed_ratio > 1,
            f"batch_size {m['token_budget']} tokens: {_notes(tok)}; sentences: {_notes(sent)}",
        ),
        memory(
            who,
            tok["peak_mb"],
            sent["peak_mb"],
            memory_ratio,
            memory_ratio is not None and memory_ratio <= 1.1,
            f"{tok['pairs']:,} pairs encoded in each child",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="timed training per run")
    args = parser.parse_args()
    measured = run({"batching_seconds": args.seconds, "timeout": 3600}, thread_env(1))
    table = rows(measured)
    write("batching", table, {"measured": measured})
    print(markdown(table))


if __name__ == "__main__":
    main()
