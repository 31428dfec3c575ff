"""num2words English: train on 20,000 random numbers in [0, 10^6), test on 1,000 others.

Target: exact match >= 98% with an attention model, on each backend, within 20 minutes of
CPU training. Prints a table and writes results/num2words_accuracy.json.

    python benchmarks/num2words_accuracy.py [--backend numpy] [--config examples/num2words.toml]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import backends_arg, chosen_backends, table, write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    backends_arg(parser)
    parser.add_argument("--config", default=str(ROOT / "examples" / "num2words.toml"))
    parser.add_argument("--epochs", type=int)
    args = parser.parse_args()

    import seq2seq_kit
    from seq2seq_kit.config import load_config

    rows = []
    for backend in chosen_backends(args):
        config = load_config(args.config)
        config.train.progress = False
        if args.epochs:
            config.train.epochs = args.epochs
        start = time.perf_counter()
        cpu = time.process_time()
        translator = seq2seq_kit.train(config, backend=backend)
        train_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu
        test = translator.valid_pairs
        outputs = translator.translate([s for s, _ in test])
        exact = sum(o == t for o, (_, t) in zip(outputs, test, strict=True)) / len(test)
        wrong = [(s, o, t) for o, (s, t) in zip(outputs, test, strict=True) if o != t][:3]
        rows.append(
            {
                "backend": backend,
                "train pairs": len(translator.train_pairs),
                "test pairs": len(test),
                "epochs": len(translator.history),
                "train minutes (wall)": train_s / 60,
                "train minutes (CPU)": cpu_s / 60,
                "exact match %": 100 * exact,
                "target": ">= 98 % in <= 20 min",
                "met": exact >= 0.98 and train_s <= 20 * 60,
                "examples of errors": wrong,
            }
        )
        print(table(rows[-1:], list(rows[-1])[:-1]), flush=True)
    columns = [c for c in rows[0] if c != "examples of errors"]
    print(table(rows, columns))
    print(f"wrote {write('num2words_accuracy', rows, {'config': args.config}, merge_on='backend')}")


if __name__ == "__main__":
    main()
