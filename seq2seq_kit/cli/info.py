"""``seq2seq-kit info``: what a model directory holds, without loading a backend."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="what a model directory holds: architecture, sizes, vocabularies, training, "
        "example inputs; or an export: its format, quantization and file sizes",
        description="Reads model.json and checks the weights file (of an export: checks "
        "its files against manifest.json); loads no backend.",
    )
    p.add_argument("--model", required=True, help="model directory, or an export's")
    p.add_argument("--json", action="store_true", help="print it as JSON")
    p.set_defaults(run=run_info)


def run_info(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..checkpoint import MODEL_FILE, load_checkpoint
    from ..export import MANIFEST
    from ..run_record import RunRecord

    folder = Path(args.model)
    if (folder / MANIFEST).is_file() and not (folder / MODEL_FILE).exists():
        return _export_info(folder, args.json)
    ckpt = load_checkpoint(args.model)
    record = RunRecord.from_dict(ckpt.meta)
    summary = _model_summary(ckpt, record)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    _print_model(summary)
    trained = _trained(summary)
    if trained is not None:
        print(f"trained:      {trained} with backend {summary['backend']}")
    imported = summary["imported"]
    if isinstance(imported, dict):
        print(f"imported:     {imported.get('format')} model from {imported.get('from')}")
    _print_lineage(summary["init_from"])
    _print_kept(summary, record)
    _print_checkpoints(summary)
    _print_examples(summary["examples"])
    return 0


def _model_summary(ckpt: Any, record: Any) -> dict[str, Any]:
    """What ``info --json`` prints of a model directory: checkpoint ``ckpt``'s architecture,
    sizes and vocabularies, and its run record ``record``'s training, lineage and kept
    checkpoints."""
    from ..trainer import epoch_records

    spec = ckpt.spec.to_dict()
    history = record.history or []
    # the epochs count those completed, not a stop within one
    if all(isinstance(entry, dict) for entry in history):
        history = epoch_records(history)
    return {
        "architecture": spec.pop("architecture"),
        "spec": spec,
        "parameters": sum(int(w.size) for w in ckpt.weights.values()),
        "source_vocab_size": len(ckpt.source_vocab),
        "target_vocab_size": len(ckpt.target_vocab),
        "source_tokenizer": ckpt.source_vocab.tokenizer.name,
        "target_tokenizer": ckpt.target_vocab.tokenizer.name,
        "max_length": ckpt.max_length,
        "examples": record.examples,
        "backend": record.backend,
        "epochs": history[-1].get("epoch") if history and isinstance(history[-1], dict) else 0,
        "updates": record.updates,
        "stopped": record.stopped,
        "distributed": record.distributed,
        "imported": ckpt.meta.get("imported"),
        "init_from": record.init_from,
        "validations": len(record.validations) if isinstance(record.validations, list) else None,
        "kept_validation": record.kept_validation,
        "checkpoints": record.checkpoints,
        "checkpoint": record.checkpoint,
        "averaged": ckpt.meta.get("averaged"),
    }


def _print_model(summary: dict[str, Any]) -> None:
    """The architecture with its sizes, the parameter count, both vocabularies and the
    output length cap, a line each."""
    sizes = ", ".join(
        f"{k} {v}"
        for k, v in summary["spec"].items()
        if k not in ("src_vocab_size", "tgt_vocab_size")
    )
    print(f"architecture: {summary['architecture']} ({sizes})")
    print(f"parameters:   {summary['parameters']}")
    for side in ("source", "target"):
        print(
            f"{side}:       {summary[f'{side}_vocab_size']} ids, "
            f"{summary[f'{side}_tokenizer']} tokenizer"
        )
    print(f"max length:   {summary['max_length']} output tokens")


def _trained(summary: dict[str, Any]) -> str | None:
    """How long the model was trained (epochs, updates, validations), what stopped it and
    on how many processes, in words; None for a model no run of ours trained."""
    if summary["backend"] is None:
        return None
    done = f"{summary['epochs']} epoch{'s' if summary['epochs'] != 1 else ''}"
    counts = [f"{summary['updates']} updates"] if summary["updates"] is not None else []
    if summary["validations"] is not None:
        n = summary["validations"]
        counts.append(f"{n} validation{'s' if n != 1 else ''}")
    if counts:
        done += f" ({', '.join(counts)})"
    if summary["stopped"] not in (None, "epochs"):
        done += f", stopped by {summary['stopped']}"
    parallel = summary["distributed"]
    if isinstance(parallel, dict) and parallel.get("world_size", 1) > 1:
        done += (
            f" on {parallel['world_size']} processes ({parallel.get('launcher')}, batch "
            f"{parallel.get('batch_size_per_rank')} per rank)"
        )
    return done


def _print_examples(examples: list[str] | None) -> None:
    """The source texts to try the model with (``meta.examples``), one a line, quoted as
    JSON strings so that spaces at an end show; nothing for a model without them."""
    if examples:
        print(f"examples:     {len(examples)} to try the model with")
        for text in examples:
            print(f"  {json.dumps(text, ensure_ascii=False)}")


def _export_info(folder: Any, as_json: bool) -> int:
    """An export's format, quantization scheme and file sizes
    (:func:`seq2seq_kit.export.export_summary`)."""
    from ..export import export_summary

    summary = export_summary(folder)
    if as_json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"export:       {summary['format']} (written by {summary['producer']})")
    print(f"quantization: {summary['quantization'] or 'none (float32)'}")
    width = max(len(name) for name in summary["files"])
    print(f"files:        {len(summary['files'])}, {_size(summary['bytes'])} in all")
    for name, size in summary["files"].items():
        print(f"  {name:<{width}}  {_size(size):>9}  ({size} bytes)")
    return 0


def _size(count: int) -> str:
    """A byte count in kB or MB (powers of 1,000), or bytes below a kilobyte."""
    if count >= 1_000_000:
        return f"{count / 1_000_000:.2f} MB"
    return f"{count / 1_000:.1f} kB" if count >= 1_000 else f"{count} B"


def _print_kept(summary: dict[str, Any], record: Any) -> None:
    """Which validation a run's directory keeps the weights of, by which metric, with its
    figures, as the end of training reports it (:func:`seq2seq_kit.cli.train.kept_line`).
    Nothing for a model no run trained (imported), an average of checkpoints, which no one
    validation scored, or a kept checkpoint (:func:`_print_checkpoints` gives its own)."""
    from .train import kept_line

    if record.trainer is None or summary["averaged"] is not None:
        return
    if summary["checkpoint"] is None:
        print(f"weights:      {kept_line(summary['kept_validation'], record)}")


def _print_checkpoints(summary: dict[str, Any]) -> None:
    """The checkpoints the directory keeps, the validation it is a checkpoint of, or the
    checkpoints it averages, as ``model.json`` records them."""
    from ..trainer.log import decoded_figures

    kept, of, averaged = summary["checkpoints"], summary["checkpoint"], summary["averaged"]
    if isinstance(kept, list) and kept and all(isinstance(e, dict) for e in kept):
        print(f"checkpoints:  {len(kept)} kept (train.keep_last, keep_best)")
        for e in kept:
            print(
                f"  {e.get('path')}: update {e.get('update')}, epoch {e.get('epoch')} step "
                f"{e.get('step')}, {_score(e.get('metric'), e.get('score'))}"
            )
    if isinstance(of, dict):
        print(
            f"checkpoint:   kept at update {of.get('update')} (epoch {of.get('epoch')} step "
            f"{of.get('step')}), {_score(of.get('metric'), of.get('score'))}"
        )
        figures = summary["kept_validation"]
        if figures is not None:  # the validation of these weights, as recorded
            pairs = _PAIRS.get(figures.get("evaluated_on"), "validation")
            print(
                f"              on the {pairs} pairs: loss "
                f"{figures['valid_loss']:.4f}, token accuracy {figures['valid_accuracy']:.3f}"
                f"{decoded_figures(figures)}"
            )
    if isinstance(averaged, dict) and isinstance(averaged.get("checkpoints"), list):
        print(f"averaged:     {len(averaged['checkpoints'])} checkpoints ({averaged.get('by')})")
        for entry in averaged["checkpoints"]:
            if isinstance(entry, dict):
                print(f"  {entry.get('path')} (weights SHA-256 {entry.get('weights_sha256')})")


#: The pairs a validation was of, by its ``evaluated_on``.
_PAIRS = {"valid": "validation", "train": "training"}


def _print_lineage(lineage: object) -> None:
    """The model a fine-tuned model started from (``meta.init_from``), if any."""
    if isinstance(lineage, dict):
        print(
            f"fine-tuned:   from {lineage.get('path')} (weights SHA-256 "
            f"{lineage.get('weights_sha256')})"
        )


def _score(metric: object, score: object) -> str:
    """The validation figure a checkpoint was ranked by, as its metric reads (``chrF
    68.5231``, ``loss 0.2742``): ``score`` is the trainer's lower-is-better score, minus the
    figure where higher is better (accuracy, chrF, BLEU, exact match)."""
    from ..metrics import LABELS, LOWER_IS_BETTER

    if not isinstance(score, float) or not isinstance(metric, str):
        return f"{metric} score {score}"
    if metric == "loss":
        return f"loss {score:.4f}"
    label = "token accuracy" if metric == "accuracy" else LABELS.get(metric, metric)
    return f"{label} {score if metric in LOWER_IS_BETTER else -score:.4f}"
