"""Digits: training the seed configuration to 9/9, per backend, against the seed notebook.

Figure: wall seconds of ``seq2seq_kit.train()`` with the default configuration (the seed's:
the nine digits, one-hot characters, LSTM 32 on each side, Adam 1e-3, batch size 2, 300
epochs), the framework already imported (as the reference's ``model.fit`` time excludes
importing TensorFlow), vocabulary and model construction and the per-epoch evaluation
included. Afterwards the nine digits are greedily decoded and must all be exact (9/9).

Also reported (notes, JSON): the first epoch whose teacher-forced token accuracy on the nine
pairs is 1.0 and the training seconds up to it. Teacher-forced accuracy 1.0 on every
position, EOS included, implies that greedy decoding reproduces every target exactly, so
that epoch is when the model first knew all nine.

Reference: the seed notebook's ``model.fit`` for 300 epochs (reference_seed_keras.py), in the
same run. Target: <= 1/10 of it for every backend, and <= 1 s for NumPy.
"""

from __future__ import annotations

import time
from typing import Any

from _common import ratio_of, template

BENCHMARK = "digits: train seed config to 9/9"


def measure(backend: str) -> dict[str, Any]:
    """Runs in the backend's worker process."""
    import seq2seq_kit
    from seq2seq_kit.config import Config
    from seq2seq_kit.data import load_dataset
    from seq2seq_kit.plugins import get_backend
    from seq2seq_kit.spec import ModelSpec

    get_backend(backend).create(ModelSpec(13, 20), seed=0)  # import the framework first
    config = Config()
    config.train.progress = False
    start = time.perf_counter()
    translator = seq2seq_kit.train(config, backend=backend)
    seconds = time.perf_counter() - start
    pairs = load_dataset("digits").pairs
    outputs = translator.translate([s for s, _ in pairs])
    history = translator.history
    first = next((r["epoch"] for r in history if r["valid_accuracy"] >= 1.0), None)
    return {
        "seconds": seconds,
        "loop_seconds": translator.meta["seconds"],
        "epochs": len(history),
        "exact": sum(o == t for o, (_, t) in zip(outputs, pairs, strict=True)),
        "outputs": outputs,
        "first_epoch_9of9": first,
        "seconds_to_first_9of9": (
            None if first is None else sum(r["seconds"] for r in history[:first])
        ),
    }


def rows(measured: dict[str, Any], refs: dict[str, Any]) -> list[dict[str, Any]]:
    seed = refs.get("seed_keras") or {}
    ref = seed.get("train_seconds")
    ref_name = "seed notebook model.fit, 300 epochs"
    if seed.get("extrapolated"):
        ref_name += f", extrapolated from {seed['epochs_run']}"
    out = []
    for backend, m in measured.items():
        target = "<= 0.1x" + (", <= 1 s" if backend == "numpy" else "") + ", 9/9"
        add = template(BENCHMARK, "s", ref_name, target)
        if "error" in m:
            out.append(add(backend, None, ref, None, False, m["error"]))
            continue
        ratio = ratio_of(m["seconds"], ref)
        met = (
            m["exact"] == 9
            and ratio is not None
            and ratio <= 0.1
            and (backend != "numpy" or m["seconds"] <= 1.0)
        )
        first = m["first_epoch_9of9"]
        notes = f"{m['epochs']} epochs, {m['exact']}/9 exact after training"
        if first is not None:
            notes += f"; 9/9 first at epoch {first} ({m['seconds_to_first_9of9']:.3g} s)"
        out.append(add(backend, m["seconds"], ref, ratio, met, notes))
    return out
