"""Peak memory of training from a preprocessed corpus, against the corpus's size.

For each size N (default 100,000, 1,000,000 and 10,000,000 pairs) a synthetic TSV is
written, streaming: a random integer below 10^7 in digits, and the same digits spelled one
word each (``"407" -> "four zero seven"``); a separate file of 1,000 such pairs is the
validation set. ``seq2seq-kit preprocess`` turns it into a corpus (timed, in a child
process whose peak RSS is reported too), then a second child trains from the corpus with
the NumPy backend on one thread: an LSTM of 64 units over 16-wide embeddings, batches of 64
pairs, for ``--updates`` updates (``train.max_updates``), validated at the stop.

Figure: the training child's peak RSS (``VmHWM``, MB = 10^6 bytes) at the largest N.
Target: <= 1,000 MB at 10,000,000 pairs. The ratios to the smallest N show how little of
it grows with the corpus (an epoch's shuffled index, 8 bytes a pair, does).

Usage: python benchmarks/bench_corpus.py [--pairs 100000 1000000 10000000] [--updates 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
VALID_PAIRS = 1_000


def write_tsv(path: Path, pairs: int, seed: int) -> None:
    """``pairs`` lines ``DIGITS<TAB>WORDS``, generated and written in chunks."""
    spelled = [" ".join(WORDS[int(c)] for c in str(n)) for n in range(1000)]
    padded = [" ".join(WORDS[int(c)] for c in f"{n:03d}") for n in range(1000)]
    rng = np.random.default_rng(seed)
    with path.open("w", encoding="utf-8") as fh:
        for start in range(0, pairs, 1_000_000):
            numbers = rng.integers(0, 10**7, size=min(1_000_000, pairs - start)).tolist()
            lines = []
            for n in numbers:
                if n < 1000:
                    words = spelled[n]
                elif n < 1_000_000:
                    words = f"{spelled[n // 1000]} {padded[n % 1000]}"
                else:
                    high = n // 1_000_000
                    words = f"{spelled[high]} {padded[n // 1000 % 1000]} {padded[n % 1000]}"
                lines.append(f"{n}\t{words}\n")
            fh.write("".join(lines))


def _child(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh interpreter on one thread; the JSON it prints last, which
    holds its own peak RSS (``VmHWM`` of ``/proc/self/status``: the high-water mark of the
    child's own address space; ``ru_maxrss`` would also count the parent's resident memory
    at the fork, which Linux carries across ``exec``)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


PEAK = """
def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
"""

PREPROCESS = (
    PEAK
    + """
import json, sys, time
from seq2seq_kit.config import Config
from seq2seq_kit.corpus import preprocess
cfg = Config()
cfg.data.source, cfg.data.valid, cfg.train.seed = sys.argv[1], sys.argv[2], 0
start = time.perf_counter()
preprocess(cfg, sys.argv[3])
print(json.dumps({"seconds": time.perf_counter() - start,
    "self_peak_mb": peak_mb()}))
"""
)

TRAIN = (
    PEAK
    + """
import json, sys, time
import seq2seq_kit
from seq2seq_kit.config import Config
cfg = Config()
cfg.data.source = sys.argv[1]
cfg.model.hidden_size, cfg.model.embedding_size = 64, 16
cfg.train.batch_size, cfg.train.max_updates, cfg.train.epochs = 64, int(sys.argv[2]), 1
cfg.train.bucket = sys.argv[3] == "bucket"
cfg.train.progress, cfg.train.learning_rate = False, 0.003
start = time.perf_counter()
t = seq2seq_kit.train(cfg, backend="numpy")
record = t.history[-1]
print(json.dumps({"seconds": time.perf_counter() - start, "updates": t.meta["trainer"]["updates"],
    "train_pairs": t.meta["train_pairs"], "valid_loss": record["valid_loss"],
    "self_peak_mb": peak_mb()}))
"""
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--bucket", action="store_true", help="bucketed batches (train.bucket)")
    parser.add_argument("--dir", help="work folder (default: a temporary one, removed)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        work = Path(work)
        valid = work / "valid.tsv"
        write_tsv(valid, VALID_PAIRS, seed=1)
        for pairs in sorted(args.pairs):
            tsv, corpus = work / f"train-{pairs}.tsv", work / f"corpus-{pairs}"
            start = time.perf_counter()
            write_tsv(tsv, pairs, seed=0)
            written = time.perf_counter() - start
            made = _child(PREPROCESS, str(tsv), str(valid), str(corpus))
            tsv.unlink()  # the corpus is what training reads
            size = sum(f.stat().st_size for f in corpus.iterdir()) / 1e6
            trained = _child(
                TRAIN, str(corpus), str(args.updates), "bucket" if args.bucket else "plain"
            )
            rows.append(
                {
                    "pairs": pairs,
                    "tsv_seconds": written,
                    "preprocess_seconds": made["seconds"],
                    "preprocess_peak_mb": made["self_peak_mb"],
                    "corpus_mb": size,
                    "train_seconds": trained["seconds"],
                    "updates": trained["updates"],
                    "train_peak_mb": trained["self_peak_mb"],
                    "valid_loss": trained["valid_loss"],
                }
            )
            row = rows[-1]
            print(
                f"{pairs:>11,} pairs: preprocess {row['preprocess_seconds']:.1f} s "
                f"(peak {row['preprocess_peak_mb']:.0f} MB, corpus {size:.0f} MB); training "
                f"{row['updates']} updates in {row['train_seconds']:.1f} s, peak RSS "
                f"{row['train_peak_mb']:.0f} MB",
                flush=True,
            )
            for f in corpus.iterdir():
                f.unlink()
    base = rows[0]
    for row in rows:
        print(
            f"{row['pairs']:>11,} pairs: training peak {row['train_peak_mb']:.0f} MB, "
            f"{row['train_peak_mb'] / base['train_peak_mb']:.2f}x the {base['pairs']:,}-pair "
            f"figure for {row['pairs'] / base['pairs']:.0f}x the pairs"
        )
    largest = rows[-1]
    verdict = "met" if largest["train_peak_mb"] <= 1000 else "NOT met"
    print(
        f"target <= 1,000 MB at {largest['pairs']:,} pairs: {verdict} "
        f"({largest['train_peak_mb']:.0f} MB)"
    )
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
