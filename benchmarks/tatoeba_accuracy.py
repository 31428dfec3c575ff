"""Tatoeba English -> French under the classic Keras character-level example's protocol.

The example (keras-io ``lstm_seq2seq``) trains on the first 10,000 lines of the file and
validates on the last 20% of them (``validation_split=0.2`` takes the tail, before any
shuffling: the longest sentences). It reports Keras' ``accuracy`` on the validation set
under teacher forcing, on ``max_decoder_seq_length`` positions per pair (the longest
target over all 10,000 lines plus its start and end symbols), padding included -- the
example pads targets with a space after the end token and trains the model to predict it.
Its published run peaks at about 0.877: the best epoch by that validation figure, so the
example config here keeps the best weights by validation accuracy as well
(``early_stopping_metric = "accuracy"``).

This script reports, per backend, on that same split:
- ``keras-way accuracy``: the example's figure. Our models never predict padding (it is
  masked out of the loss), so padding positions count as correct, as the example's model
  gets them right once trained; real positions (characters and the end token) count as
  the model predicts them.
- ``char accuracy``: real positions only, the stricter figure.
- ``chrF``: sacrebleu chrF of greedy translations against every reference of each source.

    python benchmarks/tatoeba_accuracy.py [--backend numpy] [--config examples/tatoeba-eng-fra.toml]
        [--out models/tatoeba]   # keep the models, e.g. for ``seq2seq-kit plot``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import backends_arg, chosen_backends, table, write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "tatoeba-eng-fra.tsv"
KERAS_EXAMPLE_PEAK = 0.877


def keras_way_accuracy(model, sources, targets, positions: int) -> tuple[float, float]:
    """(accuracy over ``positions`` decoder steps per pair, padding counted as the example
    counts it, and accuracy on real positions only), teacher-forced."""

    from seq2seq_kit.trainer import evaluate

    _, accuracy = evaluate(model, sources, targets)
    real = sum(len(t) + 1 for t in targets)  # characters and the end token
    total = positions * len(sources)
    return (accuracy * real + (total - real)) / total, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    backends_arg(parser)
    parser.add_argument("--config", default=str(ROOT / "examples" / "tatoeba-eng-fra.toml"))
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--out", help="keep each backend's model directory under OUT/BACKEND")
    args = parser.parse_args()

    import seq2seq_kit
    from seq2seq_kit.config import load_config
    from seq2seq_kit.data import read_tsv
    from seq2seq_kit.metrics import group_references, score

    pairs = read_tsv(args.data, limit=10_000)
    cut = len(pairs) - len(pairs) // 5
    train_pairs, valid_pairs = pairs[:cut], pairs[cut:]
    # The example's decoder length (``max_decoder_seq_length``): the longest "\t" + target
    # + "\n" over all 10,000 lines; every pair is scored on that many positions.
    positions = max(len(t) for _, t in pairs) + 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, part in (("train", train_pairs), ("valid", valid_pairs)):
            Path(tmp, f"{name}.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in part))
        for backend in chosen_backends(args):
            config = load_config(args.config)
            config.data.valid_fraction = None  # the validation file replaces it
            config.data.source, config.data.valid = f"{tmp}/train.tsv", f"{tmp}/valid.tsv"
            config.data.limit = None
            config.train.progress = False
            if args.epochs:
                config.train.epochs = args.epochs
            start = time.perf_counter()
            out = None if args.out is None else Path(args.out, backend)
            translator = seq2seq_kit.train(config, backend=backend, out=out)
            minutes = (time.perf_counter() - start) / 60
            src = [translator.source_vocab.encode(s, unknown="replace") for s, _ in valid_pairs]
            tgt = [translator.target_vocab.encode(t, unknown="replace") for _, t in valid_pairs]
            keras_way, strict = keras_way_accuracy(translator.model, src, tgt, positions)
            sources, references = group_references(valid_pairs)
            outputs = translator.translate(sources, beam=1, unknown="replace")
            scores = score(outputs, references)
            rows.append(
                {
                    "backend": backend,
                    "epochs": len(translator.history),
                    "train minutes": minutes,
                    "keras-way accuracy": keras_way,
                    "char accuracy": strict,
                    "Keras example peak": KERAS_EXAMPLE_PEAK,
                    "met (>= 0.90)": keras_way >= 0.90,
                    "chrF": scores["chrf"],
                    "exact match": scores["exact_match"],
                    "chrF signature": scores["chrf_signature"],
                }
            )
            print(table(rows[-1:], list(rows[-1])[:-1]), flush=True)
    print(table(rows, [c for c in rows[0] if c != "chrF signature"]))
    print(f"chrF signature: {rows[0]['chrF signature']}")
    print(f"wrote {write('tatoeba_accuracy', rows, {'config': args.config}, merge_on='backend')}")


if __name__ == "__main__":
    main()
