"""The ``seq2seq-kit`` command line: train, translate, evaluate, backends.

Imports stay inside the commands so that ``--help`` and ``backends`` load no framework and
little else.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model and save it to a directory")
    p.add_argument("--config", help="TOML config file (see README: Configuration)")
    p.add_argument("--backend", help="backend name (beats $SEQ2SEQ_KIT_BACKEND and config)")
    p.add_argument("--data", help="digits | num2words | PATH.tsv (default: digits)")
    p.add_argument("--limit", type=int, help="use only the first N pairs")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--hidden-size", type=int)
    p.add_argument("--embedding-size", type=int, help="0: one-hot inputs")
    p.add_argument("--num-layers", type=int)
    p.add_argument("--valid-fraction", type=float, help="held-out share of the distinct sources")
    p.add_argument("--valid", help="validation set (PATH.tsv); replaces --valid-fraction")
    p.add_argument("--patience", type=int, help="early stopping after N epochs; 0: off")
    p.add_argument("--cell", choices=["lstm", "gru"])
    p.add_argument("--attention", choices=["none", "dot", "general", "bahdanau"])
    p.add_argument("--bidirectional", action="store_true", default=None)
    p.add_argument("--dropout", type=float)
    p.add_argument("--teacher-forcing", type=float, help="share of reference decoder inputs")
    p.add_argument(
        "--lr-patience",
        type=int,
        help="multiply the LR by lr_factor after N flat epochs; 0: off",
    )
    p.add_argument(
        "--early-stopping-metric",
        choices=["loss", "accuracy"],
        help="validation figure for the best weights, --patience and --lr-patience",
    )
    p.add_argument(
        "--resume", metavar="DIR", help="continue the training saved in DIR (--out defaults to it)"
    )
    p.add_argument("--tokenizer", choices=["char", "word"])
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", help="model directory to write (required unless --resume)")
    p.set_defaults(run=_train)


def _add_translate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "translate",
        help="translate TEXT arguments, or stdin line by line",
        description="One output line per input (n-best > 1: N lines 'input number<TAB>rank<TAB>"
        "score<TAB>text' per input). Empty input lines give empty output lines.",
    )
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--backend", help="backend to run the model with")
    _add_decode_options(p)
    p.add_argument("--n-best", type=int, help="hypotheses per input")
    p.add_argument("text", nargs="*", help="inputs; none: read stdin")
    p.set_defaults(run=_translate)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="exact match, CER, chrF and BLEU on a TSV file")
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--data", required=True, help="PATH.tsv or dataset name")
    p.add_argument("--limit", type=int, help="use only the first N pairs")
    p.add_argument("--backend", help="backend to run the model with")
    _add_decode_options(p)
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.set_defaults(run=_evaluate)


def _add_decode_options(p: argparse.ArgumentParser) -> None:
    # Defaults come from the [decode] table the model was trained with, else the built-ins.
    p.add_argument("--beam", type=int, help="beam size; 1: greedy")
    p.add_argument("--length-penalty", type=float, help="GNMT alpha")
    p.add_argument("--max-length", type=int, help="output cap (default: saved with the model)")
    p.add_argument(
        "--unknown",
        choices=["error", "replace"],
        help="unseen input characters: fail naming them (default), or map them to <unk>",
    )


def _add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot", help="training curves, and an attention heatmap for an input, as PNG"
    )
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--input", help="text whose attention to plot (attention models)")
    p.add_argument("--backend", help="backend to run the model with")
    p.add_argument("--out-dir", help="where to write the PNGs (default: the model directory)")
    p.set_defaults(run=_plot)


def _add_backends(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backends", help="list installed backends and plugin load errors")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_backends)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seq2seq-kit", description="Pluggable sequence-to-sequence toolkit."
    )
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_translate, _add_evaluate, _add_plot, _add_backends):
        add(sub)
    return p


def _version() -> str:
    from . import __version__

    return f"seq2seq-kit {__version__}"


def _train(args: argparse.Namespace) -> int:
    from .api import train
    from .config import load_config
    from .errors import ConfigError

    cfg = load_config(args.config)
    overrides = {
        ("train", "batch_size"): args.batch_size,
        ("train", "learning_rate"): args.learning_rate,
        ("train", "patience"): args.patience,
        ("train", "teacher_forcing"): args.teacher_forcing,
        ("train", "lr_patience"): args.lr_patience,
        ("train", "early_stopping_metric"): args.early_stopping_metric,
        ("model", "cell"): args.cell,
        ("model", "attention"): args.attention,
        ("model", "bidirectional"): args.bidirectional,
        ("model", "dropout"): args.dropout,
        ("model", "hidden_size"): args.hidden_size,
        ("model", "embedding_size"): args.embedding_size,
        ("model", "num_layers"): args.num_layers,
        ("data", "valid_fraction"): args.valid_fraction,
        ("data", "valid"): args.valid,
        ("data", "tokenizer"): args.tokenizer,
    }
    data = cfg.model_dump()
    for (section, key), value in overrides.items():
        if value is not None:
            data[section][key] = value
    if args.no_progress:
        data["train"]["progress"] = False
    cfg = type(cfg).model_validate(data)
    if args.out is None and args.resume is None:
        raise ConfigError("train needs --out DIR (or --resume DIR)")
    translator = train(
        cfg,
        out=args.out,
        resume=args.resume,
        backend=args.backend,
        data=args.data,
        limit=args.limit,
        epochs=args.epochs,
        seed=args.seed,
    )
    _report(translator)
    print(f"saved model to {args.out or args.resume}")
    return 0


def _report(translator: Any) -> None:
    """Print the last epoch's figures and a sample of translations with exact matches."""
    from .metrics import group_references

    meta = translator.meta
    last = meta["history"][-1]
    print(
        f"backend {translator.backend}: {last['epoch']} epochs in {meta['seconds']:.2f} s; "
        f"training loss {last['train_loss']:.4f}; on the {last['evaluated_on']} pairs: "
        f"loss {last['valid_loss']:.4f}, token accuracy {last['valid_accuracy']:.3f}"
    )
    held_out = bool(translator.valid_pairs)
    pairs = (translator.valid_pairs or translator.train_pairs)[:1000]
    if not pairs:
        return
    sources, references = group_references(pairs)
    outputs = translator.translate(sources, unknown="replace")
    exact = 0
    for i, (src, refs, out) in enumerate(zip(sources, references, outputs, strict=True)):
        ok = out in refs
        exact += ok
        if i < 10:
            print(f"{src} -> {out}" + ("" if ok else f"   (expected {refs[0]})"))
    where = "validation" if held_out else "training"
    print(f"exact match on {len(sources)} {where} sources: {exact}/{len(sources)}")


def _read_inputs(texts: Sequence[str]) -> list[str]:
    if texts:
        return list(texts)
    return [line.rstrip("\r\n") for line in sys.stdin]


def _translate(args: argparse.Namespace) -> int:
    from .api import load

    translator = load(args.model, backend=args.backend)
    texts = _read_inputs(args.text)
    options = _decode_options(translator, args)
    results = translator.hypotheses(texts, **options)
    out = sys.stdout
    for line_no, hyps in enumerate(results, start=1):
        if any(h.truncated for h in hyps):
            print(
                f"warning: input line {line_no}: output truncated at "
                f"{options['max_length'] or translator.max_length} tokens (no end of sequence)",
                file=sys.stderr,
            )
        if options["n_best"] == 1:
            out.write(hyps[0].text + "\n")
        else:
            for rank, h in enumerate(hyps, start=1):
                out.write(f"{line_no}\t{rank}\t{h.score:.4f}\t{h.text}\n")
    return 0


def _decode_options(translator: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Flags over the model's saved [decode] settings over the built-in defaults."""
    from .config import DecodeConfig

    saved = translator.meta.get("config", {}).get("decode", {})
    defaults = DecodeConfig.model_validate(saved).model_dump()
    options = {}
    for name in ("beam", "n_best", "length_penalty", "max_length", "unknown"):
        flag = getattr(args, name, None)
        options[name] = defaults[name] if flag is None else flag
    if not hasattr(args, "n_best"):
        options["n_best"] = 1
    options["beam"] = max(options["beam"], options["n_best"])
    return options


def _evaluate(args: argparse.Namespace) -> int:
    from .api import load
    from .data import load_dataset
    from .errors import DataError, UnknownTokenError
    from .metrics import group_references, score

    translator = load(args.model, backend=args.backend)
    dataset = load_dataset(args.data, args.limit)
    sources, references = group_references(dataset.pairs)
    try:
        outputs = translator.translate(sources, **_decode_options(translator, args))
    except UnknownTokenError as exc:
        # Name the data file's line, not the position among the distinct sources.
        source = sources[exc.line - 1]
        line = next(
            (n for (s, _), n in zip(dataset.pairs, dataset.lines, strict=True) if s == source),
            None,
        )
        raise DataError(
            f"source character {exc.position}: {exc.token!r} (U+{ord(exc.token[0]):04X}) was "
            f"never seen in training; --unknown replace maps it to <unk>",
            dataset.path or dataset.name,
            line,
        ) from None
    scores = score(outputs, references)
    if args.json:
        print(json.dumps(scores, indent=2))
        return 0
    n = scores["sentences"]
    print(f"sentences:   {n} ({len(dataset.pairs)} pairs; all references of a source count)")
    print(f"exact match: {scores['exact_match']:.4f} ({round(scores['exact_match'] * n)}/{n})")
    print(f"CER:         {scores['cer']:.4f}")
    print(f"chrF:        {scores['chrf']:.2f}  ({scores['chrf_signature']})")
    print(f"BLEU:        {scores['bleu']:.2f}  ({scores['bleu_signature']})")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .api import load
    from .plots import plot_attention, plot_history

    translator = load(args.model, backend=args.backend)
    out_dir = Path(args.out_dir or args.model)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"wrote {plot_history(translator.history, out_dir / 'curves.png')}")
    if args.input is not None:
        source, output, weights = translator.attention(args.input)
        path = plot_attention(source, output, weights, out_dir / "attention.png")
        print(f"wrote {path} ({len(output)} output x {len(source)} source tokens)")
    return 0


def _backends(args: argparse.Namespace) -> int:
    from .plugins import install_hint, registry

    reg = registry()
    rows = [
        {
            "name": b.name,
            "version": b.version,
            "distribution": b.distribution,
            "capabilities": sorted(b.capabilities),
        }
        for b in sorted(reg.backends.values(), key=lambda b: b.name)
    ]
    note = reg.filter_note()
    if args.json:
        listing = {
            "backends": rows,
            "errors": reg.failures,
            "excluded": sorted(reg.excluded),  # by SEQ2SEQ_KIT_PLUGINS
            "unmatched": sorted(reg.unmatched),  # its names that no plugin has
        }
        print(json.dumps(listing, indent=2))
        return 0
    for row in rows:
        print(
            f"{row['name']:<10} {row['version']:<10} {row['distribution']:<22} "
            f"{', '.join(row['capabilities'])}"
        )
    if not rows and note:
        print(f"no backends loaded: {note}")
    elif not rows:
        print(f"no backends installed; try: {install_hint('numpy')}")
    elif note:
        print(f"note: {note}")
    for name, reason in reg.failures.items():
        print(f"error: plugin {name}: {reason}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from .errors import Seq2SeqError

    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except Seq2SeqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # e.g. piped into head
        return 0
