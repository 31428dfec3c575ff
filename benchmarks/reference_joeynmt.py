"""Peer reference: JoeyNMT 2.3's Transformer against ours, same data, budget and threads.

Both toolkits train side by side, one thread each, for the same wall-clock budget on the
Tatoeba English -> French split of ``tokenizer_accuracy.py`` (imported, not copied: 2,000
test sources, 1,000 validation sources, the rest training, all references of each), with
one SentencePiece unigram model of 8,000 pieces shared by both sides and one vocabulary
(the pieces it gives the training pairs, as ``seq2seq-kit train`` builds it), the same
model size (layers, d_model, heads, feed-forward width, dropout on attention weights too,
as JoeyNMT has it), pre-norm, scaled and tied embeddings, label smoothing, Adam, learning
rate warm-up and inverse square-root decay, gradient-norm clipping and batch size. Each
then translates the test sources, greedy and beam 5, at one thread, timed, and one call of
``seq2seq_kit.metrics.score`` (sacrebleu chrF2 and BLEU against every reference of a
source, as ``seq2seq-kit evaluate`` scores) scores both. A Markdown table of training
throughput, updates, scores, decoding time and their ratios ends the output.

JoeyNMT runs in its own virtual environment (it is not a dependency of this project and not
part of the test suite); create it once with the project's pins (joeynmt 2.3.0 imports
``importlib_metadata`` without declaring it, and calls ``SetVocabulary``, which
sentencepiece 0.2.3 no longer has):

    python -m venv .venv-joeynmt
    .venv-joeynmt/bin/pip install -c constraints.txt joeynmt==2.3.0 sacrebleu \
        sentencepiece==0.2.0 importlib_metadata

then, from the repository root:

    python benchmarks/reference_joeynmt.py --budget-minutes 20 [--backend torch]
        [--joeynmt-python .venv-joeynmt/bin/python]    # or $JOEYNMT_PYTHON
        [--architecture transformer] [--out models/joeynmt-reference]

A quick run of every code path (validation, JoeyNMT's best checkpoint, both decoders):
``--budget-minutes 1.5 --limit 2000 --valid-limit 5 --test-limit 40 --valid-every 2
--vocab-size 1000 --architecture rnn``. Where our config does not know a training key yet
(label smoothing, the schedule, Adam's betas...), the key is left out and the summary says
the run is not comparable.

Stopping. JoeyNMT has no time limit: it gets SIGINT once the budget has passed since both
started, which ends its current step and saves the last weights (``training.py`` catches
``KeyboardInterrupt``). Ours stops by ``[train] max_time`` where the config knows that key,
else by SIGINT at the same moment (as ``tokenizer_accuracy.py`` does). JoeyNMT's
validation (every ``--valid-every`` updates, as ours) decodes the validation set greedily
besides its loss; that time counts against its budget, as the toolkit is built.

Known differences. JoeyNMT restricts SentencePiece to the vocabulary's pieces
(``SetVocabulary``), so a test word whose best segmentation uses a piece never seen in
training is split into seen pieces, where ours maps that piece to ``<unk>``; training
segmentations are identical. JoeyNMT's first update runs at the rate of its second (set to
the schedule's first), and it strips outputs. JoeyNMT's token batches close once they reach
``batch_size`` padded tokens, ours before they pass it; with ``--batch-type sentences``
(the default) both take the same number of pairs.

Figures. Training target tokens per second (EOS included, padding excluded) over the
training steps alone: JoeyNMT's own ``Tokens per Sec`` log figures, averaged; ours, the
target tokens of the steps taken over the seconds ``model.json`` records for them. Also the
tokens per second of budget, validation and start-up included. Decoding seconds: the whole
``translate`` process of each, start-up and model loading included, one thread.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tokenizer_accuracy import ROOT, split  # noqa: E402  (the benchmark split, shared)

sys.path.insert(0, str(ROOT))
from seq2seq_kit.data import read_tsv  # noqa: E402
from seq2seq_kit.metrics import group_references, score  # noqa: E402
from seq2seq_kit.tokenizers import make_tokenizer  # noqa: E402
from seq2seq_kit.vocab import Vocabulary, normalize  # noqa: E402

SOURCE_LANG, TARGET_LANG = "en", "fr"
SENTENCEPIECE_FILE = "sentencepiece.model"
# [train] keys that change when and how often things happen, not what is learned
NOT_TRAINING = {"max_time", "save_every", "log_every"}  # what our tokenizer's save() names it
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
}
# JoeyNMT has no thread option: this sets torch's pools before its entry point runs, and
# says what torch then uses, so the log shows it was one.
JOEYNMT_MAIN = (
    "import sys, torch; torch.set_num_threads(1); torch.set_num_interop_threads(1); "
    "print(f'torch threads: {torch.get_num_threads()}', file=sys.stderr, flush=True); "
    "sys.argv = ['joeynmt', *sys.argv[1:]]; "
    "from joeynmt.__main__ import main; main()"
)
VENV_HINT = (
    "python -m venv .venv-joeynmt && .venv-joeynmt/bin/pip install -c constraints.txt "
    "joeynmt==2.3.0 sacrebleu sentencepiece==0.2.0 importlib_metadata"
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget-minutes", type=float, default=20.0)
    p.add_argument("--backend", default="torch", help="our backend")
    p.add_argument(
        "--architecture",
        choices=["transformer", "rnn"],
        default="transformer",
        help="our model (rnn: the attention LSTM of tokenizer_accuracy.py, to exercise the "
        "script before our Transformer exists); JoeyNMT always trains its Transformer",
    )
    p.add_argument(
        "--joeynmt-python",
        default=os.environ.get("JOEYNMT_PYTHON", str(ROOT / ".venv-joeynmt" / "bin" / "python")),
        help="python of a virtual environment with joeynmt 2.3.0 (default $JOEYNMT_PYTHON, "
        f"else .venv-joeynmt); create it with: {VENV_HINT}",
    )
    p.add_argument("--out", default=str(ROOT / "models" / "joeynmt-reference"))
    p.add_argument("--limit", type=int, help="train on the first N training pairs only")
    p.add_argument("--valid-limit", type=int, help="validate on the first N pairs only")
    p.add_argument("--test-limit", type=int, help="score the first N test pairs only")
    p.add_argument(
        "--vocab-size", type=int, default=8000, help="SentencePiece pieces (fewer for --limit)"
    )
    p.add_argument("--layers", type=int, default=3, help="encoder and decoder layers each")
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ff-size", type=int, default=1024)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--learning-rate", type=float, default=1e-3, help="peak, after warm-up")
    p.add_argument("--warmup", type=int, default=500, help="warm-up updates")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--batch-type",
        choices=["sentences", "tokens"],
        default="sentences",
        help="sentences: the same batches by the same rule in both; tokens: both bound the "
        "padded tokens of a batch, JoeyNMT counting a batch closed once it reaches the bound, "
        "ours before it passes it",
    )
    p.add_argument("--valid-every", type=int, default=500, help="updates between validations")
    p.add_argument(
        "--joeynmt-valid-every",
        type=int,
        help="JoeyNMT's validation_freq when it should differ from --valid-every; 0: never "
        "(its validation decodes the validation set greedily, which an early model's "
        "100-token outputs make take minutes of the budget; it then uses its last weights)",
    )
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--length-penalty", type=float, default=0.0, help="GNMT alpha, both")
    p.add_argument(
        "--joeynmt-checkpoint",
        choices=["best", "latest"],
        default="best",
        help="best: by validation loss, as ours keeps (latest when no validation has run)",
    )
    return p.parse_args()


def prepare_data(out: Path, limits: dict[str, int | None], vocab_size: int) -> dict[str, Any]:
    """The split as TSV (ours) and plain-text parallel files (JoeyNMT's), NFC as our
    vocabulary reads text, plus the shared SentencePiece model and vocabulary file;
    ``limits`` keeps the first N pairs of a part (``{"train": N, "valid": N, "test": N}``)."""
    paths = split(out)
    for name, limit in limits.items():
        if limit is not None:
            part = read_tsv(paths[name])[:limit]
            paths[name].write_text("".join(f"{s}\t{t}\n" for s, t in part), encoding="utf-8")
            print(f"{name}: first {len(part)} pairs kept", flush=True)
    joey = out / "joeynmt" / "data"
    joey.mkdir(parents=True, exist_ok=True)
    pairs = {name: read_tsv(paths[name]) for name in ("train", "valid", "test")}
    for name, part in pairs.items():
        for i, lang in enumerate((SOURCE_LANG, TARGET_LANG)):
            text = "".join(normalize(pair[i]) + "\n" for pair in part)
            (joey / f"{name}.{lang}").write_text(text, encoding="utf-8")
    # The test sources once each, in first-appearance order: what both translate.
    sources, references = group_references(pairs["test"])
    (joey / "test-sources.txt").write_text("".join(s + "\n" for s in sources), encoding="utf-8")
    # One SentencePiece model trained as `seq2seq-kit train` trains its shared one (same
    # options, same texts in the same order: NFC sources then targets of the training pairs),
    # and the vocabulary it builds from it; JoeyNMT reads both files.
    texts = [normalize(s) for s, _ in pairs["train"]] + [normalize(t) for _, t in pairs["train"]]
    tokenizer = make_tokenizer("sentencepiece", {"model_type": "unigram", "vocab_size": vocab_size})
    tokenizer.train(texts)
    tokenizer.save(joey, "")
    vocab = Vocabulary.build(texts, tokenizer)
    (joey / "vocab.txt").write_text("".join(t + "\n" for t in vocab.tokens), encoding="utf-8")
    target_tokens = sum(len(vocab.encode(t, unknown="replace")) + 1 for _, t in pairs["train"])
    return {
        "tsv": paths,
        "joey": joey,
        "sentencepiece": joey / SENTENCEPIECE_FILE,
        "sources": sources,
        "references": references,
        "train_pairs": len(pairs["train"]),
        "train_target_tokens": target_tokens,  # per epoch, EOS included
        "vocab": len(vocab.tokens),
    }


def our_config(
    args: argparse.Namespace, data: dict[str, Any], budget: float
) -> tuple[str, list[str]]:
    """Our TOML config and the ``[train]`` keys left out of it: those this version of the
    config does not know yet, so the script runs before and after they land (without
    ``max_time`` it is stopped by SIGINT)."""
    from seq2seq_kit.config import TrainConfig

    known, left_out = set(TrainConfig.model_fields), []
    lines = [
        "[data]",
        f'source = "{data["tsv"]["train"]}"',
        f'valid = "{data["tsv"]["valid"]}"',
        'tokenizer = "sentencepiece"',
        f'tokenizer_options = {{ model_type = "unigram", vocab_size = {args.vocab_size} }}',
        "shared_vocabulary = true",
        "",
        "[model]",
    ]
    if args.architecture == "transformer":
        lines += [
            'architecture = "transformer"',
            f"encoder_layers = {args.layers}",
            f"decoder_layers = {args.layers}",
            f"d_model = {args.d_model}",
            f"num_heads = {args.heads}",
            f"ff_size = {args.ff_size}",
            f"dropout = {args.dropout}",
            # JoeyNMT applies its one dropout rate to the attention weights too
            f"attention_dropout = {args.dropout}",
            'activation = "relu"',
            'layer_norm = "pre"',
            'positions = "sinusoidal"',
            "max_positions = 256",
            "tie_output_embeddings = true",
            "share_embeddings = true",
        ]
    else:  # tokenizer_accuracy.py's model, to run every path before the Transformer lands
        lines += [
            "hidden_size = 256",
            "embedding_size = 128",
            "bidirectional = true",
            'attention = "general"',
            "dropout = 0.2",
        ]
    lines += [
        "",
        "[train]",
        "epochs = 1000",
        f"batch_size = {args.batch_size}",
        f'batch_type = "{args.batch_type}"',
        f"learning_rate = {args.learning_rate}",
        "clip_norm = 1.0",
        "save_seconds = 60",
        "progress = false",
    ]
    optional = {
        "label_smoothing": args.label_smoothing,
        "adam_beta1": 0.9,
        "adam_beta2": 0.98,
        "adam_epsilon": 1e-8,  # torch.optim.Adam's, which JoeyNMT uses
        "lr_schedule": '"inverse_sqrt"',
        "warmup_steps": args.warmup,
        "valid_every": args.valid_every,
        "save_every": args.valid_every,
        "log_every": 100,
        "max_time": round(budget),
    }
    for key, value in optional.items():
        if key in known:
            lines.append(f"{key} = {value}")
        else:
            left_out.append(key)
            print(f"ours: [train] {key} is not a config key yet; left out", flush=True)
    lines += ["", "[decode]", "batch_size = 256", ""]
    return "\n".join(lines), left_out


def joeynmt_config(args: argparse.Namespace, data: dict[str, Any], model_dir: Path) -> dict:
    """JoeyNMT 2.3's config (read as YAML; written as JSON, which YAML reads) for the same
    model and training: keys from ``joeynmt/config.py``, ``builders.py`` and ``model.py``."""
    joey = data["joey"]

    def side(lang: str) -> dict[str, Any]:
        return {
            "lang": lang,
            "level": "bpe",
            "tokenizer_type": "sentencepiece",
            "tokenizer_cfg": {"model_file": str(data["sentencepiece"])},
            "voc_file": str(joey / "vocab.txt"),
            "lowercase": False,
            "normalize": False,
            "max_length": 255,
        }

    def stack() -> dict[str, Any]:
        return {
            "type": "transformer",
            "num_layers": args.layers,
            "num_heads": args.heads,
            "hidden_size": args.d_model,
            "ff_size": args.ff_size,
            "dropout": args.dropout,
            "layer_norm": "pre",  # JoeyNMT's decoder defaults to post
            "activation": "relu",
            "embeddings": {"embedding_dim": args.d_model, "scale": True, "dropout": args.dropout},
        }

    warmup, peak = args.warmup, args.learning_rate
    return {
        "name": "tatoeba-eng-fra-reference",
        "joeynmt_version": "2.3.0",
        "model_dir": str(model_dir),
        "use_cuda": False,
        "fp16": False,
        "random_seed": 0,
        "data": {
            "train": str(joey / "train"),
            "dev": str(joey / "valid"),
            "test": str(joey / "test"),
            "dataset_type": "plain",
            "src": side(SOURCE_LANG),
            "trg": side(TARGET_LANG),
        },
        "training": {
            "optimizer": "adam",
            "adam_betas": [0.9, 0.98],
            # Noam's rate (Vaswani et al. 2017, eq. 3) with this factor is fairseq's
            # inverse_sqrt, ours: linear warm-up to `peak` at `warmup`, then
            # peak * sqrt(warmup / update). (JoeyNMT's "warmupinversesquareroot" would do,
            # but 2.3 hands it the parsed training args, which drop its learning_rate_peak.)
            "scheduling": "noam",
            "learning_rate_factor": peak * math.sqrt(args.d_model * warmup),
            "learning_rate_warmup": warmup,
            # its first update runs at `learning_rate`, before the scheduler's first step
            "learning_rate": peak / warmup,
            "learning_rate_min": 1e-9,  # below it JoeyNMT stops training
            "weight_decay": 0.0,
            "clip_grad_norm": 1.0,
            "label_smoothing": args.label_smoothing,
            "loss": "crossentropy",
            "normalization": "tokens",
            "batch_size": args.batch_size,
            "batch_type": "sentence" if args.batch_type == "sentences" else "token",
            "batch_multiplier": 1,
            "epochs": 1000,
            "validation_freq": joeynmt_valid_every(args),
            # often enough for a tokens/s figure in a short run; must divide validation_freq
            "logging_freq": 10 if joeynmt_valid_every(args) % 10 == 0 else 1,
            "early_stopping_metric": "loss",
            "eval_metrics": [],
            "keep_best_ckpts": 1,
            "shuffle": True,
            "overwrite": True,
            "print_valid_sents": [],
            "num_workers": 0,
        },
        "testing": {
            "beam_size": 1,
            "beam_alpha": -1,
            "batch_size": 256,
            "batch_type": "sentence",
            "max_output_length": 100,
            "n_best": 1,
            "eval_metrics": [],
            "sacrebleu_cfg": {"tokenize": "13a"},
        },
        "model": {
            "initializer": "xavier_uniform",
            "embed_initializer": "xavier_uniform",
            "bias_initializer": "zeros",
            "tied_embeddings": True,
            "tied_softmax": True,
            "encoder": stack(),
            "decoder": stack(),
        },
    }


def yaml_text(config: dict[str, Any]) -> str:
    """``config`` as YAML that PyYAML reads back: JSON, but for exponent floats without a
    point (``1e-06``), which YAML 1.1 reads as strings, written ``1.0e-06``."""
    text = json.dumps(config, indent=2)
    return re.sub(r"(?<=[\s\[:])(-?\d+)e([-+]\d+)", r"\1.0e\2", text)


def cpu_seconds(stat: Path) -> float:
    """User plus system CPU seconds in a ``/proc/.../stat`` file (fields 14 and 15)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_threads(pid: int) -> int:
    """Threads of a running process that did a tenth or more of its CPU work: 1 when it
    computes on one thread, whatever else (loggers, I/O) it starts."""
    tasks = [cpu_seconds(t / "stat") for t in Path(f"/proc/{pid}/task").iterdir()]
    return sum(seconds >= 0.1 * sum(tasks) for seconds in tasks)


def joeynmt_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return env | ONE_THREAD


def train_both(
    args: argparse.Namespace, out: Path, data: dict[str, Any], budget: float
) -> dict[str, Any]:
    """Start both trainings at once, stop both at the budget; for each, CPU over wall time
    (at most 1 for one thread) and the threads that did its work, measured just before."""
    toml, left_out = our_config(args, data, budget)
    stops_itself = "max_time" not in left_out
    (out / "ours.toml").write_text(toml)
    ours_dir = out / "ours"
    ours_cmd = [sys.executable, "-m", "seq2seq_kit", "train", "--config", str(out / "ours.toml")]
    ours_cmd += ["--backend", args.backend, "--out", str(ours_dir), "--overwrite"]
    joey_dir = out / "joeynmt" / "model"
    joey_config = out / "joeynmt" / "config.yaml"
    joey_config.write_text(yaml_text(joeynmt_config(args, data, joey_dir)))
    joey_cmd = [args.joeynmt_python, "-c", JOEYNMT_MAIN, "train", str(joey_config), "-t"]
    env = os.environ | ONE_THREAD
    logs = {"ours": (out / "ours.log").open("w"), "joeynmt": (out / "joeynmt.log").open("w")}
    start = time.perf_counter()
    runs = {
        "ours": subprocess.Popen(ours_cmd, stdout=logs["ours"], stderr=logs["ours"], env=env),
        "joeynmt": subprocess.Popen(
            joey_cmd, stdout=logs["joeynmt"], stderr=logs["joeynmt"], env=joeynmt_env()
        ),
    }
    print(f"training both for {budget / 60:g} minutes (logs: {out}/ours.log, joeynmt.log)")
    while time.perf_counter() - start < budget and all(r.poll() is None for r in runs.values()):
        time.sleep(1.0)
    for name, run in runs.items():
        if run.poll() is not None and run.returncode != 0:  # died early: stop the other too
            for other in runs.values():
                if other.poll() is None:
                    other.send_signal(signal.SIGINT)
                    other.wait()
            raise SystemExit(f"{name} training failed ({run.returncode}); see {out}/{name}.log")
    load = {}
    for name, run in runs.items():
        if run.poll() is None:
            cpu = cpu_seconds(Path(f"/proc/{run.pid}/stat"))
            load[name] = (cpu / (time.perf_counter() - start), busy_threads(run.pid))
    runs["joeynmt"].send_signal(signal.SIGINT)
    if not stops_itself and runs["ours"].poll() is None:
        runs["ours"].send_signal(signal.SIGINT)
    wall = {}
    saved = {"ours": ours_dir / "model.json", "joeynmt": joey_dir / "latest.ckpt"}
    for name, run in runs.items():
        try:
            # max_time counts from our first step, after the SentencePiece training
            run.wait(timeout=900 if name == "ours" and stops_itself else 300)
        except subprocess.TimeoutExpired:
            print(f"{name}: still running; SIGINT", flush=True)
            run.send_signal(signal.SIGINT)
            run.wait(timeout=300)
        wall[name] = time.perf_counter() - start
        logs[name].close()
        # 130: our CLI's exit status after SIGINT, once the checkpoint is written
        if run.returncode not in (0, 130) or not saved[name].exists():
            raise SystemExit(f"{name} training failed ({run.returncode}); see {out}/{name}.log")
    return {"ours_dir": ours_dir, "joey_dir": joey_dir, "joey_config": joey_config,
            "cpu_per_wall": load, "wall": wall, "left_out": left_out}  # fmt: skip


def our_training(model_dir: Path, data: dict[str, Any], args: argparse.Namespace) -> dict:
    """Updates and target tokens per second from our ``model.json``: completed epochs
    times the training targets' tokens, plus the tokens of the current epoch's steps, over
    the seconds recorded for the steps."""
    doc = json.loads((model_dir / "model.json").read_text())
    trainer, history = doc["meta"].get("trainer", {}), doc["meta"].get("history", [])
    epochs = trainer.get("epoch", 0)
    tokens = epochs * data["train_target_tokens"] + trainer.get("epoch_tokens", 0.0)
    seconds = sum(r.get("seconds", 0.0) for r in history) + trainer.get("epoch_seconds", 0.0)
    updates = trainer.get("updates", trainer.get("update"))
    if updates is None and args.batch_type == "sentences":
        per_epoch = math.ceil(data["train_pairs"] / args.batch_size)
        updates = epochs * per_epoch + trainer.get("step", 0)
    return {
        "updates": updates,
        "epochs": tokens / data["train_target_tokens"],
        "tokens": tokens,
        "tokens_per_second": tokens / seconds if seconds else float("nan"),
        # both sides' files of our shared vocabulary hold the one model
        "same_sentencepiece": all(
            (model_dir / f"{side}-{SENTENCEPIECE_FILE}").is_file()
            and (model_dir / f"{side}-{SENTENCEPIECE_FILE}").read_bytes()
            == data["sentencepiece"].read_bytes()
            for side in ("source", "target")
        ),
        "max_length": doc.get("max_length"),
    }


def joeynmt_training(model_dir: Path, python: str, data: dict[str, Any]) -> dict[str, Any]:
    """Updates, target tokens and tokens per second from JoeyNMT's train.log and its last
    checkpoint's statistics (epochs: target tokens over the training targets' tokens)."""
    log = (model_dir / "train.log").read_text(encoding="utf-8")
    rates = [float(line.split("Tokens per Sec:")[1].split(",")[0]) for line in log.splitlines()
             if "Tokens per Sec:" in line]  # fmt: skip
    stats = subprocess.run(
        [python, "-c", "import json, sys, torch; s = torch.load(sys.argv[1], "
         "map_location='cpu', weights_only=False)['stats_state']; print(json.dumps(s))",
         str(model_dir / "latest.ckpt")],
        capture_output=True, text=True, check=True, env=joeynmt_env(),
    )  # fmt: skip
    state = json.loads(stats.stdout)
    return {
        "updates": state["steps"],
        "epochs": state["total_tokens"] / data["train_target_tokens"],
        "tokens": state["total_tokens"],
        "tokens_per_second": sum(rates) / len(rates) if rates else float("nan"),
        "validated": (model_dir / "best.ckpt").exists(),
        "torch_threads": "torch threads: 1" in log
        or "torch threads: 1" in (model_dir.parent.parent / "joeynmt.log").read_text(),
    }


def timed(command: list[str], stdin: Path, env: dict[str, str]) -> tuple[list[str], float]:
    start = time.perf_counter()
    with stdin.open() as f:
        run = subprocess.run(command, stdin=f, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed:\n{run.stderr[-3000:]}")
    return run.stdout.splitlines(), seconds


def decode_all(
    args: argparse.Namespace,
    out: Path,
    data: dict[str, Any],
    trained: dict[str, Any],
    max_length: int | None,
) -> dict[tuple[str, int], dict[str, Any]]:
    """Translate the test sources with both, greedy and beam, one at a time, one thread;
    JoeyNMT's output is bounded by our model's saved ``max_length`` (100 without one)."""
    sources = data["joey"] / "test-sources.txt"
    results = {}
    joey_dir = trained["joey_dir"]
    ckpt = joey_dir / f"{args.joeynmt_checkpoint}.ckpt"
    if not ckpt.exists():
        ckpt = joey_dir / "latest.ckpt"
    config = json.loads(trained["joey_config"].read_text())
    for beam in (1, args.beam):
        ours_cmd = [sys.executable, "-m", "seq2seq_kit", "translate"]
        ours_cmd += ["--model", str(trained["ours_dir"]), "--backend", args.backend]
        ours_cmd += ["--beam", str(beam), "--length-penalty", str(args.length_penalty)]
        ours_cmd += ["--unknown", "replace", "--batch-size", "256"]
        config["testing"] |= {
            "beam_size": beam,
            "beam_alpha": args.length_penalty if args.length_penalty > 0 else -1,
            "load_model": str(ckpt),
            "max_output_length": max_length or 100,
        }
        decode_config = out / "joeynmt" / f"decode-beam{beam}.yaml"
        decode_config.write_text(yaml_text(config))
        joey_cmd = [args.joeynmt_python, "-c", JOEYNMT_MAIN, "translate", str(decode_config)]
        for name, command, env in (
            ("ours", ours_cmd, os.environ | ONE_THREAD),
            ("joeynmt", joey_cmd, joeynmt_env()),
        ):
            hypotheses, seconds = timed(command, sources, env)
            if len(hypotheses) != len(data["sources"]):
                raise SystemExit(
                    f"{name} beam {beam}: {len(hypotheses)} lines for "
                    f"{len(data['sources'])} sources"
                )
            (out / f"{name}-beam{beam}.txt").write_text("\n".join(hypotheses) + "\n")
            scores = score(hypotheses, data["references"])
            results[name, beam] = scores | {"seconds": seconds}
            print(
                f"{name} beam {beam}: chrF {scores['chrf']:.1f} BLEU {scores['bleu']:.1f} "
                f"in {seconds:.1f} s",
                flush=True,
            )
    return results


def table(
    args: argparse.Namespace,
    figures: dict[str, dict[str, Any]],
    scores: dict[tuple[str, int], dict[str, Any]],
    budget: float,
) -> str:
    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}" if a and b and not math.isnan(a) and not math.isnan(b) else "n/a"

    def num(x: float | None, fmt: str = ",.0f") -> str:
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)

    o, j = figures["ours"], figures["joeynmt"]
    rows = [
        ("training target tokens/s (steps only)", o["tokens_per_second"], j["tokens_per_second"],
         ",.0f"),
        ("target tokens per budget second", o["tokens"] / budget, j["tokens"] / budget, ",.0f"),
        ("updates", o["updates"], j["updates"], ",.0f"),
        ("epochs", o["epochs"], j["epochs"], ".2f"),
    ]  # fmt: skip
    for beam in (1, args.beam):
        kind = "greedy" if beam == 1 else f"beam {beam}"
        a, b = scores["ours", beam], scores["joeynmt", beam]
        rows += [
            (f"chrF, {kind}", a["chrf"], b["chrf"], ".1f"),
            (f"BLEU, {kind}", a["bleu"], b["bleu"], ".1f"),
            (f"decoding seconds, {kind}", a["seconds"], b["seconds"], ".1f"),
        ]
    lines = ["| | ours | JoeyNMT 2.3 | ours / JoeyNMT |", "|---|---|---|---|"]
    for label, a, b, fmt in rows:
        lines.append(f"| {label} | {num(a, fmt)} | {num(b, fmt)} | {ratio(a, b)} |")
    return "\n".join(lines)


def joeynmt_valid_every(args: argparse.Namespace) -> int:
    """JoeyNMT's validation_freq: --joeynmt-valid-every (0: past any budget), else ours."""
    every = args.valid_every if args.joeynmt_valid_every is None else args.joeynmt_valid_every
    return every or 10**9


def main() -> int:
    args = parse_args()
    if not Path(args.joeynmt_python).is_file():
        raise SystemExit(
            f"no JoeyNMT python at {args.joeynmt_python}; create the environment with:\n"
            f"  {VENV_HINT}\nand pass --joeynmt-python (or set $JOEYNMT_PYTHON)"
        )
    budget = args.budget_minutes * 60
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(
        out,
        {"train": args.limit, "valid": args.valid_limit, "test": args.test_limit},
        args.vocab_size,
    )
    trained = train_both(args, out, data, budget)
    figures = {
        "ours": our_training(trained["ours_dir"], data, args),
        "joeynmt": joeynmt_training(trained["joey_dir"], args.joeynmt_python, data),
    }
    scores = decode_all(args, out, data, trained, figures["ours"]["max_length"])
    summary = {"figures": figures, "cpu_per_wall": trained["cpu_per_wall"],
               "wall": trained["wall"],
               "scores": {f"{n} beam {b}": s for (n, b), s in scores.items()}}  # fmt: skip
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=str))
    model = (
        f"Transformer {args.layers}+{args.layers} layers, d_model {args.d_model}, "
        f"{args.heads} heads, ff {args.ff_size}"
        if args.architecture == "transformer"
        else "ours: the attention LSTM of tokenizer_accuracy.py; JoeyNMT: Transformer "
        f"{args.layers}+{args.layers}, d_model {args.d_model}, {args.heads} heads, "
        f"ff {args.ff_size}"
    )
    print()
    print(
        f"{model}; ours on {args.backend}; {args.budget_minutes:g} minutes each, side by side, "
        "one thread each (CPU/wall, busy threads while training: "
        + ", ".join(f"{k} {v[0]:.2f}, {v[1]}" for k, v in trained["cpu_per_wall"].items())
        + f"); {data['train_pairs']:,} training pairs, {len(data['sources']):,} test sources; "
        f"one SentencePiece model (same file in both: {figures['ours']['same_sentencepiece']}), "
        f"{data['vocab']:,} pieces + specials; JoeyNMT torch threads 1: "
        f"{figures['joeynmt']['torch_threads']}; JoeyNMT scored from its "
        f"{args.joeynmt_checkpoint if figures['joeynmt']['validated'] else 'latest'} checkpoint"
        + (
            f"; NOT COMPARABLE: our config lacks {', '.join(unmatched)}"
            if (unmatched := [k for k in trained["left_out"] if k not in NOT_TRAINING])
            else ""
        )
    )
    print()
    print(table(args, figures, scores, budget))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
