"""Tatoeba English -> French, all pairs: a shared SentencePiece vocabulary vs characters.

The same attention RNN trains twice for the same wall-clock budget, side by side, one
thread each, on one backend: once over characters, once over one shared 8,000-piece
SentencePiece unigram vocabulary (Kudo 2018) learned from the training pairs. Each run is
stopped at the budget by SIGINT, which ends the current step and writes the checkpoint (the
best weights by validation loss when an epoch has ended, else the last ones); both are then
scored by the same sacrebleu chrF and BLEU (``seq2seq-kit evaluate``) on the held-out test
split, greedy decoding.

Split (fixed, by distinct English source, so no test sentence is trained on): the distinct
sources sorted by code point and shuffled by ``numpy.random.default_rng(2026)``; the first
2,000 are the test split, the next 1,000 validation, the rest training, each with all its
French references.

    python benchmarks/tokenizer_accuracy.py [--budget-minutes 20] [--backend torch]
        [--out models/tokenizers]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "tatoeba-eng-fra.tsv"
TEST_SOURCES, VALID_SOURCES, SEED = 2000, 1000, 2026

CONFIG = """
[data]
source = "{train}"
valid = "{valid}"
{tokenizer}

[model]
hidden_size = 256
embedding_size = 128
bidirectional = true
attention = "general"
dropout = 0.2

[train]
epochs = 1000
batch_size = 64
learning_rate = 0.002
save_seconds = 120
progress = false

[decode]
batch_size = 128
"""

TOKENIZERS = {
    "characters": 'tokenizer = "char"',
    "sentencepiece 8k (shared)": 'tokenizer = "sentencepiece"\n'
    'tokenizer_options = { model_type = "unigram", vocab_size = 8000 }\n'
    "shared_vocabulary = true",
}


def split(folder: Path) -> dict[str, Path]:
    """Write train/valid/test TSV files of the fixed split into ``folder``."""
    sys.path.insert(0, str(ROOT))
    from seq2seq_kit.data import read_tsv

    pairs = read_tsv(DATA)
    sources = sorted({s for s, _ in pairs})
    order = np.random.default_rng(SEED).permutation(len(sources))
    test = {sources[i] for i in order[:TEST_SOURCES]}
    valid = {sources[i] for i in order[TEST_SOURCES : TEST_SOURCES + VALID_SOURCES]}
    parts = {"train": [], "valid": [], "test": []}
    for pair in pairs:
        side = "test" if pair[0] in test else "valid" if pair[0] in valid else "train"
        parts[side].append(pair)
    paths = {}
    for name, part in parts.items():
        paths[name] = folder / f"{name}.tsv"
        paths[name].write_text("".join(f"{s}\t{t}\n" for s, t in part), encoding="utf-8")
        print(f"{name}: {len(part)} pairs", flush=True)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-minutes", type=float, default=20.0)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--out", default=str(ROOT / "models" / "tokenizers"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = split(out)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env |= {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    runs = {}
    for name, tokenizer in TOKENIZERS.items():
        slug = name.split()[0]
        config = out / f"{slug}.toml"
        config.write_text(
            CONFIG.format(train=paths["train"], valid=paths["valid"], tokenizer=tokenizer)
        )
        model = out / slug
        command = [sys.executable, "-m", "seq2seq_kit", "train", "--config", str(config)]
        command += ["--backend", args.backend, "--out", str(model), "--overwrite"]
        log = (out / f"{slug}.log").open("w")
        runs[name] = (model, subprocess.Popen(command, stdout=log, stderr=log, env=env))
    time.sleep(args.budget_minutes * 60)
    for _, process in runs.values():
        process.send_signal(signal.SIGINT)
    rows = []
    for name, (model, process) in runs.items():
        process.wait()
        doc = json.loads((model / "model.json").read_text())
        trainer = doc["meta"]["trainer"]
        scores = subprocess.run(
            [sys.executable, "-m", "seq2seq_kit", "evaluate", "--model", str(model)]
            + ["--data", str(paths["test"]), "--backend", args.backend, "--json"]
            + ["--unknown", "replace"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        result = json.loads(scores.stdout)
        vocab = len(doc["source_vocab"]["tokens"]) + 4, len(doc["target_vocab"]["tokens"]) + 4
        rows.append(
            f"| {name} | {vocab[0]:,} / {vocab[1]:,} | {trainer['epoch']} epochs + "
            f"{trainer.get('step', 0)} steps | {result['chrf']:.1f} | {result['bleu']:.1f} | "
            f"{result['exact_match']:.3f} |"
        )
    print(f"{args.backend}, {args.budget_minutes:g} minutes each, one thread each, side by side")
    print("| vocabulary | ids (source / target) | trained | chrF | BLEU | exact match |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
