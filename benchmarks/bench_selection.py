"""Choosing the model by translation quality: the Tatoeba Transformer kept by chrF instead
of loss, the average of its last checkpoints, and its exponential moving average, each
scored on held-out test sources.

Targets: averaging the last 5 checkpoints, or the EMA weights, gain at least +0.5 chrF over
the last checkpoint (the usual gain in the literature: Vaswani et al. 2017 average the last
5 or 20 checkpoints; Marian's exponential smoothing); decoded validation of 1,000 sources
costs at most 15% of a 20-minute training budget at the default validation interval.

Data: the Tatoeba English -> French split of ``tokenizer_accuracy.py`` (2,000 test sources,
1,000 validation sources, the rest training; every reference of a source). Model and
training: ``examples/tatoeba-eng-fra-transformer.toml`` (3 + 3 layers of 256, an 8,000-piece
shared SentencePiece vocabulary, ``max_time`` 20 minutes), with ``valid_every`` updates
between validations (default 200 rather than the example's 500, so that the last 5
checkpoints span the last fifth of the run, not all of it), each validation decoding the
1,000 validation sources greedily (``valid_metrics = ["chrf", "bleu"]``) and every
validation's checkpoint kept (``keep_last``). Two runs train side by side, one thread each:

- ``chrf``: ``early_stopping_metric = "chrf"``; its directory's model is the chrF-best
  validation's weights;
- ``ema``: the same with ``ema_decay`` (default 0.995: a time constant ``1 / (1 - d)`` of
  200 updates, an eighth of a run of about 1,600 updates on a shared machine; 0.999 would
  still give a third of the weight to the first 600 updates' weights, far from trained, and
  0.9999 mostly to the initial ones), so that
  validation, the kept best and the checkpoints hold the averaged weights.

Scored on the test sources (greedy; ``--beam`` to change it), by ``seq2seq_kit.metrics.score``
(sacrebleu chrF2 and BLEU against every reference, exact match), each of:

- ``last``: the weights the ``chrf`` run ended with;
- ``loss-best``: its checkpoint with the lowest teacher-forced validation loss (what keeping
  by loss keeps; computed here from the checkpoints);
- ``chrF-best``: its directory's model;
- ``average last 5``: ``seq2seq_kit.average(DIR, last=5)``;
- ``EMA run: last weights``, ``last average``, ``chrF-best average``: the weights the
  ``ema`` run ended with, their average then, and its model (the best average by chrF).

The decoded validation's cost is read from the training log (each validation line gives the
seconds its decoding took): the mean of a validation's decoding, times the validations a
20-minute run makes at the example's interval (``valid_every = 500``, plus one per epoch end
and the stop), over the 1,200 s budget.

Run (PyTorch installed; the runs take the budget, then a few minutes of scoring):

    OMP_NUM_THREADS=1 python benchmarks/bench_selection.py [--budget-minutes 20]

(``--train chrf`` then ``--train ema`` trains them one after the other, each followed by an
attempt to score; ``--train ""`` scores what is there.)

Writes ``results/selection.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine, table, thread_env, write  # noqa: E402
from tokenizer_accuracy import split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tatoeba-eng-fra-transformer.toml"
DECODED = re.compile(r"\(decoded in ([0-9.]+) s\)")


def run_config(args: argparse.Namespace, paths: dict[str, Path], ema: bool) -> dict[str, Any]:
    """The example's config, on the split, with the validations, checkpoints and (``ema``)
    averaging this benchmark compares."""
    from seq2seq_kit.config import load_config

    cfg = load_config(EXAMPLE)
    cfg.backend = args.backend
    cfg.data.valid_fraction = None  # the split's validation file replaces the held-out share
    cfg.data.source, cfg.data.valid = str(paths["train"]), str(paths["valid"])
    train = cfg.train
    if args.max_updates:  # a fixed amount of training whatever the machine's load
        train.max_time, train.max_updates = 0.0, args.max_updates
    else:
        train.max_time = args.budget_minutes * 60
    train.valid_every = train.save_every = args.valid_every
    train.valid_metrics = ["chrf", "bleu"]
    train.early_stopping_metric = "chrf"
    train.keep_last = 1000  # every validation's checkpoint
    train.threads, train.overwrite, train.progress = 1, True, False
    if ema:
        train.ema_decay = args.ema_decay
    return cfg.model_dump(mode="json")


def train_one(config_json: str, out: str) -> None:
    """One training run in this process (the benchmark's subprocesses)."""
    import seq2seq_kit
    from seq2seq_kit.config import Config

    seq2seq_kit.train(Config.model_validate(json.loads(config_json)), out=out)


def train_runs(
    args: argparse.Namespace, paths: dict[str, Path], work: Path, names: list[str]
) -> None:
    """Train the runs ``names`` side by side, one thread each, into ``work/NAME``."""
    procs = {}
    for name in names:
        out = work / name
        config = json.dumps(run_config(args, paths, ema=name == "ema"))
        log = (work / f"{name}.log").open("w")
        procs[name] = subprocess.Popen(
            [sys.executable, __file__, "--train-one", config, str(out)],
            env=thread_env(1),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    for name, proc in procs.items():
        if proc.wait() != 0:
            sys.exit(f"the {name} run failed: see {work / (name + '.log')}")


def valid_loss(model: Path, valid: Path) -> float:
    """The teacher-forced loss of ``model`` on the validation pairs, as training computes it."""
    import seq2seq_kit
    from seq2seq_kit.data import read_tsv
    from seq2seq_kit.trainer import evaluate

    translator = seq2seq_kit.load(model)
    pairs = read_tsv(valid)
    sources = [translator.source_vocab.encode(s, unknown="replace") for s, _ in pairs]
    targets = [translator.target_vocab.encode(t, unknown="replace") for _, t in pairs]
    return evaluate(translator.model, sources, targets)[0]


def final_weights(model: Path, average: bool = False) -> dict[str, Any]:
    """The weights a run ended with (``average``: their moving average), which its model
    directory keeps for ``--resume``."""
    from seq2seq_kit.checkpoint import load_checkpoint

    saved = load_checkpoint(model, extra=True)
    if average:
        return {name: saved.extra["optimizer"][f"ema/{name}"] for name in saved.weights}
    return saved.extra["last"]


def candidates(
    runs: dict[str, Path], work: Path, valid: Path
) -> dict[str, tuple[Path, dict[str, Any] | None]]:
    """The models to score, by the name the table gives them: a model directory, and the
    weights to put in its model instead of its own (None: its own)."""
    import seq2seq_kit

    chrf = json.loads((runs["chrf"] / "model.json").read_text())["meta"]
    kept = {entry["update"]: runs["chrf"] / entry["path"] for entry in chrf["checkpoints"]}
    loss_best = min(kept, key=lambda update: valid_loss(kept[update], valid))
    average = seq2seq_kit.average(runs["chrf"], last=5, out=work / "average-last-5", overwrite=True)
    return {
        "last": (runs["chrf"], final_weights(runs["chrf"])),
        "loss-best": (kept[loss_best], None),
        "chrF-best": (runs["chrf"], None),
        "average last 5": (Path(average), None),
        "EMA run: last weights": (runs["ema"], final_weights(runs["ema"])),
        "EMA run: last average": (runs["ema"], final_weights(runs["ema"], average=True)),
        "EMA run: chrF-best average": (runs["ema"], None),
    }


def score_on_test(
    model: Path, weights: dict[str, Any] | None, test: Path, backend: str, beam: int
) -> dict[str, Any]:
    """chrF, BLEU and exact match of the translations of the test sources by ``model``
    (with ``weights`` instead of its own, when given)."""
    import seq2seq_kit
    from seq2seq_kit.data import read_tsv
    from seq2seq_kit.metrics import group_references, score

    sources, references = group_references(read_tsv(test))
    translator = seq2seq_kit.load(model, backend=backend)
    if weights is not None:
        translator.model.set_weights(weights)
    start = time.perf_counter()
    outputs = translator.translate(sources, beam=beam)
    seconds = time.perf_counter() - start
    figures = score(outputs, references)
    return {
        "chrf": figures["chrf"],
        "bleu": figures["bleu"],
        "exact_match": figures["exact_match"],
        "decode_seconds": seconds,
    }


def validation_cost(log: Path, budget: float, example_every: int = 500) -> dict[str, Any]:
    """The decoded validation's share of a ``budget``-second run at the example's interval,
    from the decode times the training log gives."""
    times = [float(m.group(1)) for m in DECODED.finditer(log.read_text())]
    if not times:
        return {"validations": 0}
    meta = json.loads((log.with_suffix("") / "model.json").read_text())["meta"]
    updates = meta["trainer"]["updates"]
    # the example's validations in a run of as many updates: every 500, epoch ends, the stop
    epochs = max(r["epoch"] for r in meta["history"])
    count = updates // example_every + epochs + 1
    mean = statistics.fmean(times)
    return {
        "validations": len(times),
        "decode_seconds_total": sum(times),
        "share_in_this_run": sum(times) / budget,  # at this run's valid_every, epoch ends aside
        "decode_seconds_mean": mean,
        "decode_seconds_max": max(times),
        "example_validations": count,
        "share_of_budget": count * mean / budget,
    }


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--train-one":
        train_one(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-minutes", type=float, default=20.0)
    parser.add_argument("--backend", default="torch")
    parser.add_argument(
        "--max-updates",
        type=int,
        default=0,
        help="train N updates instead of --budget-minutes (2,000 is what 20 minutes hold on an "
        "unloaded machine): the same training for both runs on a shared machine",
    )
    parser.add_argument("--valid-every", type=int, default=200)
    parser.add_argument("--ema-decay", type=float, default=0.995)
    parser.add_argument("--beam", type=int, default=1, help="beam of the test decoding")
    parser.add_argument("--work", default=str(RESULTS / "work" / "selection"))
    parser.add_argument(
        "--train",
        default="chrf,ema",
        help="the runs to train now (comma-separated; none: score the runs trained before)",
    )
    args = parser.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    paths = split(work)
    names = [name for name in args.train.split(",") if name]
    if names:
        train_runs(args, paths, work, names)
    runs = {"chrf": work / "chrf", "ema": work / "ema"}
    rows = []
    for name, (model, weights) in candidates(runs, work, paths["valid"]).items():
        figures = score_on_test(model, weights, paths["test"], args.backend, args.beam)
        rows.append({"model": name, **figures})
        print(f"{name}: {figures}", flush=True)
    last = rows[0]["chrf"]
    for row in rows:
        row["chrf_gain_over_last"] = row["chrf"] - last
    budget = args.budget_minutes * 60
    cost = {name: validation_cost(work / f"{name}.log", budget) for name in runs}
    for name, run in runs.items():
        meta = json.loads((run / "model.json").read_text())["meta"]
        cost[name]["training_seconds"] = meta["seconds"]
        cost[name]["updates"] = meta["trainer"]["updates"]
    write("selection", rows, {"validation_cost": cost, "args": vars(args)})
    print(f"\n{machine()}; {args.backend}, one thread per run, two runs side by side")
    columns = ["model", "chrf", "chrf_gain_over_last", "bleu", "exact_match"]
    print(table(rows, columns))
    for name, figures in cost.items():
        print(f"decoded validation ({name} run): {figures}")


if __name__ == "__main__":
    main()
