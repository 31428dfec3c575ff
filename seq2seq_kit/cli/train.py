"""``seq2seq-kit train``: train a model from a config file and flags, and report on it."""

from __future__ import annotations

import argparse
from typing import Any

from .options import _add_config_flags, _file_and_flags, _flag, _validated


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model and save it to a directory",
        description="Every flag but --config, --out and --resume sets the config key it names "
        "and is checked by the same rules as the config file.",
    )
    p.add_argument("--config", help="TOML config file (see README: Configuration)")
    p.add_argument("--out", help="model directory to write (required unless --resume)")
    p.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the training saved in DIR (--out defaults to it); only the keys of "
        "the configuration reference marked resumable may change",
    )
    p.add_argument("--backend", help="backend name (beats $SEQ2SEQ_KIT_BACKEND and config)")
    for section in ("data", "model", "train"):
        _add_config_flags(p, section)
    _add_config_flags(p, "decode", ["unknown"])  # a fine-tuned run's unseen pieces
    p.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    from ..api import train
    from ..errors import ConfigError

    if args.out is None and args.resume is None:
        raise ConfigError("train needs --out DIR (or --resume DIR)")
    init_from = getattr(args, "train.init_from")
    for flag, value in (("--out", args.out), ("--resume", args.resume), ("--init-from", init_from)):
        if value is not None and not value.strip():
            raise ConfigError(f"{flag}: empty path")
    # Keys set in the file or by a flag stay "set" (model_fields_set): a resumed run checks
    # exactly those against the saved run.
    data, flags = _file_and_flags(args)
    if data.get("model") and "architecture" not in data["model"]:
        _saved_architecture(data, args.resume)
    _check_architecture_flags(flags.get("model", {}), data.get("model", {}))
    if args.resume is not None:
        _saved_metrics(data, flags, args.resume)
    cfg = _validated(data, flags, args.config)
    translator = train(cfg, out=args.out, resume=args.resume, backend=args.backend)
    if translator.rank != 0:  # rank 0 of the data-parallel run reports and saves
        return 0
    _report(translator)
    print(f"saved model to {args.out or args.resume}")
    return 0


def _saved_architecture(data: dict[str, Any], resume: str | None) -> None:
    """Give the ``[model]`` keys of ``data`` the architecture of the run resumed or the
    model fine-tuned from (``train.init_from``), if any: they are then compared with that
    model's, not the default architecture's."""
    import contextlib

    from ..checkpoint import load_checkpoint
    from ..errors import CheckpointError

    if resume is not None:
        data["model"]["architecture"] = load_checkpoint(resume).spec.architecture
        return
    init_from = data.get("train", {}).get("init_from")
    # a model that does not load is refused by train, naming train.init_from
    with contextlib.suppress(CheckpointError):
        if init_from is not None:
            data["model"]["architecture"] = load_checkpoint(init_from).spec.architecture


def _saved_metrics(data: dict[str, Any], flags: dict[str, Any], resume: str) -> None:
    """An ``early_stopping_metric`` given on resume without ``valid_metrics`` is checked
    against the resumed run's decoded metrics, not the default none: give ``data`` the
    saved ``valid_metrics`` (the resumed run then compares both with its own)."""
    from ..checkpoint import load_checkpoint

    given = {**data.get("train", {}), **flags.get("train", {})}
    if "early_stopping_metric" not in given or "valid_metrics" in given:
        return
    saved = load_checkpoint(resume).meta.get("config", {}).get("train", {})
    if isinstance(saved, dict) and isinstance(saved.get("valid_metrics"), list):
        data.setdefault("train", {})["valid_metrics"] = saved["valid_metrics"]


def _check_architecture_flags(flags: dict[str, Any], model: dict[str, Any]) -> None:
    """A ``[model]`` flag of another architecture than the one chosen (by --architecture,
    else the config file, else the default rnn) is refused naming the flag.

    Raises:
        ConfigError: naming the flag, its architecture and the model's.
    """
    from ..config import MODEL_CONFIGS
    from ..errors import ConfigError

    chosen = model.get("architecture", "rnn")
    if chosen not in MODEL_CONFIGS:
        return  # the config's own check names the unknown architecture
    for key in flags:
        if key in MODEL_CONFIGS[chosen].model_fields:
            continue
        owner = next(name for name, m in MODEL_CONFIGS.items() if key in m.model_fields)
        how = "--architecture" if "architecture" in flags else "the config file or the default"
        raise ConfigError(
            f"{_flag('model', key)}: an option of architecture {owner}, but the model's "
            f"architecture is {chosen} (from {how}); add --architecture {owner} or leave "
            f"out {_flag('model', key)}"
        )


def _report(translator: Any) -> None:
    """Print how long the run trained, which weights it kept and their validation figures
    (:func:`kept_line`), and a sample of translations with exact matches."""
    from ..metrics import group_references
    from ..run_record import RunRecord
    from ..trainer import epoch_records

    record = RunRecord.from_dict(translator.meta)
    epochs = epoch_records(record.history)
    if epochs:
        last = epochs[-1]
        print(
            f"backend {translator.backend}, {translator.architecture} model: "
            f"{last['epoch']} epoch{'s' if last['epoch'] != 1 else ''} in {record.seconds:.2f} s; "
            f"training loss {last['train_loss']:.4f} (last epoch)"
        )
    else:
        print(
            f"backend {translator.backend}, {translator.architecture} model: "
            f"{record.updates} updates in {record.seconds:.2f} s, stopped by "
            f"{record.stopped} within the first epoch"
        )
    print(kept_line(translator.best_validation, record))
    if record.corpus is not None:
        # its pairs are ids: decoded, a piece that became <unk> is lost from the text, so
        # sources and references would not be the data's
        print(
            "exact match: not measured for a model trained from a corpus, which holds ids, "
            "not the text; score it with seq2seq-kit evaluate --model DIR --data FILE.tsv"
        )
        return
    held_out = bool(translator.valid_pairs)
    pairs = (translator.valid_pairs or translator.train_pairs)[:1000]
    if not pairs:
        return
    sources, references = group_references(pairs)
    # a search, as a decoded validation's, even where the saved [decode] samples: this
    # line measures the model, not one draw of it
    outputs = translator.translate(sources, unknown="replace", sampling=False)
    exact = 0
    for i, (src, refs, out) in enumerate(zip(sources, references, outputs, strict=True)):
        ok = out in refs
        exact += ok
        if i < 10:
            print(f"{src} -> {out}" + ("" if ok else f"   (expected {refs[0]})"))
    where = "validation" if held_out else "training"
    print(f"exact match on {len(sources)} {where} sources: {exact}/{len(sources)}")


def kept_line(best: dict[str, Any] | None, record: Any) -> str:
    """Which weights a run kept in ``weights.safetensors`` and their validation figures:
    ``best``, the validation that chose them (``Translator.best_validation``), and
    ``record``, the run's :class:`~seq2seq_kit.run_record.RunRecord`; e.g. ``kept the
    weights of epoch 6 (update 72), the best by validation chrF: loss 0.8084, token accuracy
    0.753; chrF 46.14``."""
    from ..metrics import LABELS
    from ..trainer import epoch_records
    from ..trainer.log import decoded_figures

    decay = ((record.config or {}).get("train") or {}).get("ema_decay")
    # with train.ema_decay, what is kept is the weights' moving average, not the weights
    average = f"moving average (train.ema_decay = {decay}) of the weights"
    weights = f"the {average}" if decay else "the weights"
    last = f"the last {average}" if decay else "the last weights"
    score = record.trainer_state.get("best_score")
    if best is None and isinstance(score, (int, float)):  # saved before it was recorded
        metric = ((record.config or {}).get("train") or {}).get("early_stopping_metric", "loss")
        return (
            f"kept {weights} of the best validation by {metric} (score {score:.4f}, lower "
            f"is better; which validation it was is not recorded in this run's model.json)"
        )
    if best is None:
        return (
            f"kept {last} (update {record.updates}): the run stopped before any "
            f"validation could choose weights"
        )
    figures = (
        f"loss {best['valid_loss']:.4f}, token accuracy {best['valid_accuracy']:.3f}"
        f"{decoded_figures(best)}"
    )
    if best.get("evaluated_on") != "valid":
        return (
            f"kept {last} (update {record.updates}; no validation pairs to choose "
            f"by); on the training pairs at update {best['update']}: {figures}"
        )
    # a validation at an epoch's end is the one of that epoch's record
    ended = any(r.get("updates") == best["update"] for r in epoch_records(record.history or []))
    where = (
        f"epoch {best['epoch']} (update {best['update']})"
        if ended
        else f"update {best['update']} (epoch {best['epoch']} step {best['step']})"
    )
    metric = best.get("metric", "loss")
    by = {"loss": "loss", "accuracy": "token accuracy"}.get(metric) or LABELS.get(metric, metric)
    return f"kept {weights} of {where}, the best by validation {by}: {figures}"
