"""The ``seq2seq-kit`` command line: train, preprocess, translate, evaluate, plot, info,
serve, export, backends.

Imports stay inside the commands so that ``--help`` and ``backends`` load no framework and
little else.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

#: Config keys whose flag is not ``--KEY``: the dataset is ``--data``; the progress bar's
#: switch keeps its familiar ``--no-progress`` spelling (``--progress`` turns it on).
_FLAG_NAMES = {("data", "source"): "data"}
#: Config keys with no flag: dicts of options belong in a config file.
_NO_FLAG = {
    ("data", "options"),
    ("data", "tokenizer_options"),
    ("data", "source_tokenizer_options"),
    ("data", "target_tokenizer_options"),
}


_METAVARS: dict[Any, str] = {int: "N", int | None: "N", float: "X", float | None: "X"}


def _flag(section: str, key: str) -> str:
    return "--" + _FLAG_NAMES.get((section, key), key).replace("_", "-")


def _flag_of(name: str) -> str:
    """The flag of an option an error advises (:func:`seq2seq_kit.errors.option`): a
    config key's (``train.epochs``: ``--epochs``) or an argument's (``resume``:
    ``--resume``)."""
    section, _, key = name.rpartition(".")
    return _flag(section, key)


def _field_checker(field: Any, key: str) -> Callable[[str], Any]:
    """argparse ``type=``: the value as the config field would accept it, or an
    ``ArgumentTypeError`` with pydantic's reason (so a flag obeys the config file's rules).
    The field alone is checked: rules across keys (num_heads divides d_model) wait for the
    whole config, where the flags' values meet."""
    from typing import Annotated

    from pydantic import TypeAdapter, ValidationError

    from .config import Config

    adapter = TypeAdapter(Annotated[field.annotation, field], config=Config.model_config)

    def check(text: str) -> Any:
        try:
            return adapter.validate_strings(text)
        except ValidationError as exc:
            reasons = "; ".join(err["msg"] for err in exc.errors())
            raise argparse.ArgumentTypeError(f"{text!r}: {reasons}") from None

    check.__name__ = key  # argparse names the type in some messages
    return check


def _add_config_flags(
    p: argparse.ArgumentParser, section: str, only: Sequence[str] | None = None
) -> None:
    """One flag per key of the ``[section]`` config model (or those in ``only``), with the
    key's description, choices and checks; ``dest`` is ``"section.key"``. A flag left out is
    ``None``: the config file's value, or the default, stands.

    ``[model]`` has one model per architecture: a key they share (``architecture``,
    ``dropout``) is one flag, listed with its default for each; the others are listed in a
    group of their architecture's."""
    from typing import Literal, get_origin

    from .config import section_models

    models = section_models(section)
    groups: dict[str, Any] = {}
    seen: set[str] = set()
    for model in models:
        for key, field in model.model_fields.items():
            if (section, key) in _NO_FLAG or (only is not None and key not in only) or key in seen:
                continue
            seen.add(key)
            owners = [m for m in models if key in m.model_fields]
            defaults = [m.model_fields[key].get_default(call_default_factory=True) for m in owners]
            # architecture's default is the config's (rnn), not each class's own name
            if key == "architecture" or len(set(map(repr, defaults))) == 1:
                default = repr(defaults[0])
            else:
                default = ", ".join(
                    f"{d!r} ({_architecture(m)})" for m, d in zip(owners, defaults, strict=True)
                )
            kwargs: dict[str, Any] = {
                "dest": f"{section}.{key}",
                "default": None,
                "help": f"{field.description} (config {section}.{key}; default {default})",
            }
            choices = [c for m in owners for c in _literal(m.model_fields[key].annotation)]
            if field.annotation is bool:
                kwargs["action"] = _OnceBool
            elif get_origin(field.annotation) is Literal:
                kwargs["choices"] = list(dict.fromkeys(choices))
            else:
                kwargs["type"] = _field_checker(field, key)
                kwargs["metavar"] = _METAVARS.get(field.annotation, "VALUE")
            target = p
            if len(owners) < len(models):  # one architecture's key
                name = _architecture(owners[0])
                if name not in groups:
                    groups[name] = p.add_argument_group(
                        f"[model] options of architecture {name}",
                        f"only with --architecture {name} (config model.architecture)"
                        + (", the default" if owners[0] is models[0] else ""),
                    )
                target = groups[name]
            target.add_argument(_flag(section, key), **kwargs)


def _literal(annotation: Any) -> tuple[Any, ...]:
    from typing import Literal, get_args, get_origin

    return get_args(annotation) if get_origin(annotation) is Literal else ()


def _architecture(model: type[Any]) -> str:
    """The architecture a ``[model]`` config class describes."""
    return model.model_fields["architecture"].default


def _add_train(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(run=_train)


def _add_preprocess(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "preprocess",
        help="tokenize the [data] once into memory-mapped id arrays to train from",
        description="Reads the data a training run with this config would read, splits it "
        "(by --seed), trains the tokenizers, builds the vocabularies and writes them with the "
        "ids to --out; train from it with [data] source = OUT (--data OUT). Every flag but "
        "--config and --out sets the config key it names.",
    )
    p.add_argument("--config", help="TOML config file (its [data] and train.seed are read)")
    p.add_argument("--out", required=True, metavar="DIR", help="corpus directory to write")
    _add_config_flags(p, "data")
    _add_config_flags(p, "train", ["seed", "overwrite"])
    p.set_defaults(run=_preprocess)


def _add_translate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "translate",
        help="translate TEXT arguments, or stdin line by line",
        description="One output line per input (n-best > 1: N lines 'input number<TAB>rank<TAB>"
        "score<TAB>text' per input). Empty input lines give empty output lines. Decoding "
        "flags default to the model's saved [decode] settings.",
    )
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--backend", help="backend to run the model with")
    _add_config_flags(p, "decode")
    _add_config_flags(p, "data", ["max_line_bytes"])
    p.add_argument("text", nargs="*", help="inputs; none: read stdin")
    p.set_defaults(run=_translate)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="exact match, CER, token error rate, chrF and BLEU on a TSV file",
        description="Decoding flags default to the model's saved [decode] settings.",
    )
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--data", required=True, help="PATH.tsv or dataset name")
    _add_config_flags(p, "data", ["limit", "max_line_bytes"])
    p.add_argument("--backend", help="backend to run the model with")
    _add_config_flags(p, "decode", [k for k in _decode_keys() if k != "n_best"])
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.set_defaults(run=_evaluate)


def _decode_keys() -> list[str]:
    from .config import DecodeConfig

    return list(DecodeConfig.model_fields)


def _add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot", help="training curves, and an attention heatmap for an input, as PNG"
    )
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument(
        "--input",
        help="text whose attention to plot: an RNN's (model.attention not none), or a "
        "Transformer's top decoder layer's cross-attention averaged over heads",
    )
    p.add_argument("--backend", help="backend to run the model with")
    p.add_argument("--out-dir", help="where to write the PNGs (default: the model directory)")
    p.set_defaults(run=_plot)


def _attention_kind(spec: Any) -> str:
    """What an attention heatmap of ``spec``'s model shows, in a few words."""
    if spec.architecture == "transformer":
        return "transformer cross-attention, top decoder layer, mean over heads"
    return f"rnn {spec.attention} attention"


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="what a model directory holds: architecture, sizes, vocabularies, training",
        description="Reads model.json and checks the weights file; loads no backend.",
    )
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--json", action="store_true", help="print it as JSON")
    p.set_defaults(run=_info)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve models over HTTP: a JSON translation API and a web page",
        description="Loads each model once and serves GET /healthz, GET /v1/models, "
        "POST /v1/translate and a web page at /, until SIGTERM or Ctrl-C (exit 0). Every "
        "flag but --model, --backend and --config sets the [serve] key it names. Needs the "
        "serve extra: pip install 'seq2seq-kit[serve]'.",
    )
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="[NAME=]DIR",
        help="model directory; repeat as NAME=DIR to serve several (one plain DIR is named "
        "'default'); a request without \"model\" gets the first",
    )
    p.add_argument("--backend", help="backend to run the models with")
    p.add_argument("--config", help="TOML config file; its [serve] table is read")
    _add_config_flags(p, "serve")
    p.set_defaults(run=_serve)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a model directory in another format (e.g. onnx) through an export plugin",
        description="Checks the model (integrity, finite weights), writes the export in a "
        "staging folder inside --out and moves its files into place, manifest.json last; "
        "prints the files written.",
    )
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--format", required=True, help="export format (see: seq2seq-kit backends)")
    p.add_argument("--out", required=True, help="directory to write (new, empty, or an export)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace the export at --out (only an export)"
    )
    p.set_defaults(run=_export)


def _add_backends(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backends", help="list installed backends and plugin load errors")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_backends)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="seq2seq-kit", description="Pluggable sequence-to-sequence toolkit.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True)
    for add in (
        _add_train,
        _add_preprocess,
        _add_translate,
        _add_evaluate,
        _add_plot,
        _add_info,
        _add_serve,
        _add_export,
        _add_backends,
    ):
        add(sub)
    return p


def _version() -> str:
    from .version import __version__

    return f"seq2seq-kit {__version__}"


def _flag_values(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The config keys given as flags, nested by section: ``{"train": {"epochs": 5}}``."""
    given: dict[str, dict[str, Any]] = {}
    for dest, value in vars(args).items():
        if "." in dest and value is not None:
            section, key = dest.split(".", 1)
            given.setdefault(section, {})[key] = value
    return given


def _file_and_flags(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The keys the ``--config`` file sets with the command's flags over them, by section,
    and the flags alone (to name them in errors)."""
    from .config import explicit_keys, load_config

    data = explicit_keys(load_config(args.config))
    flags = _flag_values(args)
    for section, values in flags.items():
        data.setdefault(section, {}).update(values)
    return data, flags


def _validated(data: dict[str, Any], flags: dict[str, dict[str, Any]], path: str | None) -> Any:
    """``data`` as a :class:`~seq2seq_kit.config.Config`.

    Raises:
        ConfigError: a rule broken, naming the flag that set the key, or the key of the
            config file ``path``.
    """
    from pydantic import ValidationError

    from .config import Config, describe_errors
    from .errors import ConfigError

    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        names = {(s, k): _flag(s, k) for s, values in flags.items() for k in values}
        where = f"{path}: " if path else ""
        raise ConfigError(where + describe_errors(exc, names)) from None


def _train(args: argparse.Namespace) -> int:
    from .api import train
    from .errors import ConfigError

    if args.out is None and args.resume is None:
        raise ConfigError("train needs --out DIR (or --resume DIR)")
    for flag, value in (("--out", args.out), ("--resume", args.resume)):
        if value is not None and not value.strip():
            raise ConfigError(f"{flag}: empty path")
    # Keys set in the file or by a flag stay "set" (model_fields_set): a resumed run checks
    # exactly those against the saved run.
    data, flags = _file_and_flags(args)
    if args.resume is not None and data.get("model") and "architecture" not in data["model"]:
        # [model] keys given on resume are the saved architecture's (then compared with
        # the saved run), not the default's
        from .checkpoint import load_checkpoint

        data["model"]["architecture"] = load_checkpoint(args.resume).spec.architecture
    _check_architecture_flags(flags.get("model", {}), data.get("model", {}))
    cfg = _validated(data, flags, args.config)
    translator = train(cfg, out=args.out, resume=args.resume, backend=args.backend)
    if translator.rank != 0:  # rank 0 of the data-parallel run reports and saves
        return 0
    _report(translator)
    print(f"saved model to {args.out or args.resume}")
    return 0


def _preprocess(args: argparse.Namespace) -> int:
    from .corpus import open_corpus, preprocess
    from .errors import ConfigError

    if not args.out.strip():
        raise ConfigError("--out: empty path")
    out = preprocess(_validated(*_file_and_flags(args), args.config), args.out)
    corpus = open_corpus(out)
    counts, doc = corpus.doc["counts"], corpus.doc
    print(
        f"wrote {out}: {counts['train']} training and {counts['valid']} validation pairs"
        + (f" ({doc['skipped_too_long']} too long skipped)" if doc["skipped_too_long"] else "")
        + f"; vocabularies {len(corpus.vocabs[0])} / {len(corpus.vocabs[1])} ids"
    )
    print(f"train from it with: seq2seq-kit train --data {out} --out MODEL_DIR")
    return 0


def _check_architecture_flags(flags: dict[str, Any], model: dict[str, Any]) -> None:
    """A ``[model]`` flag of another architecture than the one chosen (by --architecture,
    else the config file, else the default rnn) is refused naming the flag.

    Raises:
        ConfigError: naming the flag, its architecture and the model's.
    """
    from .config import MODEL_CONFIGS
    from .errors import ConfigError

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
    """Print the last epoch's figures (or, for a run stopped within its first epoch, its
    updates) and a sample of translations with exact matches."""
    from .metrics import group_references
    from .trainer import epoch_records

    meta = translator.meta
    epochs = epoch_records(meta["history"])
    if epochs:
        last = epochs[-1]
        print(
            f"backend {translator.backend}, {translator.architecture} model: {last['epoch']} "
            f"epochs in {meta['seconds']:.2f} s; "
            f"training loss {last['train_loss']:.4f}; on the {last['evaluated_on']} pairs: "
            f"loss {last['valid_loss']:.4f}, token accuracy {last['valid_accuracy']:.3f}"
        )
    else:
        trainer = meta["trainer"]
        print(
            f"backend {translator.backend}, {translator.architecture} model: "
            f"{trainer['updates']} updates in {meta['seconds']:.2f} s, stopped by "
            f"{trainer['stopped']} within the first epoch"
        )
    if "corpus" in meta:
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
    outputs = translator.translate(sources, unknown="replace")
    exact = 0
    for i, (src, refs, out) in enumerate(zip(sources, references, outputs, strict=True)):
        ok = out in refs
        exact += ok
        if i < 10:
            print(f"{src} -> {out}" + ("" if ok else f"   (expected {refs[0]})"))
    where = "validation" if held_out else "training"
    print(f"exact match on {len(sources)} {where} sources: {exact}/{len(sources)}")


def _read_inputs(texts: Sequence[str], max_line_bytes: int | None) -> list[str]:
    from .config import DEFAULT_MAX_LINE_BYTES
    from .data import read_text_lines
    from .errors import ConfigError, DataError

    if texts:
        for number, text in enumerate(texts, start=1):
            _check_utf8(text, f"TEXT argument {number}")
        return list(texts)
    if sys.stdin is None:
        raise ConfigError("no TEXT arguments and no standard input to read")
    # The bytes, not the locale's decoding: stdin follows the data files' UTF-8 and line rules.
    try:
        return read_text_lines(
            sys.stdin.buffer, "<stdin>", max_line_bytes or DEFAULT_MAX_LINE_BYTES
        )
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror}", "<stdin>") from None


def _check_utf8(text: str, what: str) -> None:
    """Arguments reach Python with undecodable bytes as surrogates: refuse them as the
    stdin and file readers refuse invalid UTF-8."""
    from .data import surrogate_at
    from .errors import DataError

    at = surrogate_at(text)
    if at is not None:
        raise DataError(f"{what} is not valid UTF-8 (character {at})")


def _translate(args: argparse.Namespace) -> int:
    from .api import load

    translator = load(args.model, backend=args.backend)
    options = translator.decode_config(**_flag_values(args).get("decode", {}))
    texts = _read_inputs(args.text, getattr(args, "data.max_line_bytes"))
    results = translator.hypotheses(texts, **options.model_dump())
    out = sys.stdout
    for line_no, hyps in enumerate(results, start=1):
        if any(h.truncated for h in hyps):
            print(
                f"warning: input line {line_no}: output truncated at "
                f"{translator.decoding_limit(options.max_length)} tokens (no end of sequence)",
                file=sys.stderr,
            )
        if options.n_best == 1:
            out.write(hyps[0].text + "\n")
        else:
            for rank, h in enumerate(hyps, start=1):
                out.write(f"{line_no}\t{rank}\t{h.score:.4f}\t{h.text}\n")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .api import load
    from .config import DEFAULT_MAX_LINE_BYTES
    from .data import load_dataset
    from .errors import DataError, InputTooLongError, UnknownTokenError, describe_token
    from .metrics import group_references, score

    translator = load(args.model, backend=args.backend)
    options = translator.decode_config(**_flag_values(args).get("decode", {}), n_best=1)
    dataset = load_dataset(
        args.data,
        getattr(args, "data.limit"),
        max_line_bytes=getattr(args, "data.max_line_bytes") or DEFAULT_MAX_LINE_BYTES,
    )
    sources, references = group_references(dataset.pairs)
    try:
        outputs = translator.translate(sources, **options.model_dump())
    except (UnknownTokenError, InputTooLongError) as exc:
        # Name the data file's line, not the position among the distinct sources.
        source = sources[exc.line - 1]
        lines = dataset.lines or range(1, len(dataset.pairs) + 1)  # datasets: pair number
        line = next(
            (n for (s, _), n in zip(dataset.pairs, lines, strict=True) if s == source), None
        )
        if isinstance(exc, InputTooLongError):
            why = (
                f"source has {exc.length} tokens but the model takes at most {exc.limit} "
                f"(model.max_positions)"
            )
        else:
            why = (
                f"source {describe_token(exc.token, exc.position, exc.kind)} was never seen "
                f"in training; --unknown replace maps it to <unk>"
            )
        raise DataError(why, dataset.path or dataset.name, line) from None
    scores = score(outputs, references)
    if args.json:
        print(json.dumps(scores, indent=2))
        return 0
    n = scores["sentences"]
    print(f"sentences:   {n} ({len(dataset.pairs)} pairs; all references of a source count)")
    print(f"exact match: {scores['exact_match']:.4f} ({round(scores['exact_match'] * n)}/{n})")
    print(f"CER:         {scores['cer']:.4f}")
    print(f"token error rate: {scores['token_error_rate']:.4f}  (WER over whitespace tokens)")
    print(f"chrF:        {scores['chrf']:.2f}  ({scores['chrf_signature']})")
    print(f"BLEU:        {scores['bleu']:.2f}  ({scores['bleu_signature']})")
    if scores["bleu_note"]:
        print(f"             {scores['bleu_note']}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .api import load
    from .errors import ConfigError
    from .plots import plot_attention, plot_history
    from .trainer import epoch_records

    translator = load(args.model, backend=args.backend)
    # Every refusal comes before anything is written: a half-done plot run is no success.
    attention = None
    if args.input is not None:
        _check_utf8(args.input, "--input")
        if not args.input.strip():
            raise ConfigError("--input: empty; give the text whose attention to plot")
        if not translator.model.spec.has_attention:
            raise ConfigError(
                f"--input: {args.model} has no attention (model.attention = none), so there is "
                f"no heatmap to plot; leave out --input to plot the training curves alone"
            )
        attention = translator.attention(args.input)
    epochs = epoch_records(translator.history)  # a stop within an epoch is no epoch
    if attention is None and not epochs:
        raise ConfigError(
            f"{args.model}: no epoch has ended, so there are no training curves to plot; "
            "give --input to plot an attention heatmap"
        )
    if args.out_dir == "":
        raise ConfigError("--out-dir: empty path")
    out_dir = Path(args.out_dir or args.model)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out-dir: {out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    if epochs:
        print(f"wrote {plot_history(translator.history, out_dir / 'curves.png')}")
    else:  # stopped inside its first epoch (max_updates, max_time, an interrupt)
        print("no training curves: no epoch has ended")
    if attention is not None:
        source, output, weights = attention
        what = _attention_kind(translator.model.spec)
        path = plot_attention(source, output, weights, out_dir / "attention.png", title=what)
        print(f"wrote {path} ({what}: {len(output)} output x {len(source)} source tokens)")
    return 0


def _info(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint
    from .trainer import epoch_records

    ckpt = load_checkpoint(args.model)
    spec = ckpt.spec.to_dict()
    history = ckpt.meta.get("history") or []
    if all(isinstance(record, dict) for record in history):
        history = epoch_records(history)
    summary = {
        "architecture": spec.pop("architecture"),
        "spec": spec,
        "parameters": sum(int(w.size) for w in ckpt.weights.values()),
        "source_vocab_size": len(ckpt.source_vocab),
        "target_vocab_size": len(ckpt.target_vocab),
        "source_tokenizer": ckpt.source_vocab.tokenizer.name,
        "target_tokenizer": ckpt.target_vocab.tokenizer.name,
        "max_length": ckpt.max_length,
        "backend": ckpt.meta.get("backend"),
        "epochs": history[-1].get("epoch") if history and isinstance(history[-1], dict) else 0,
        "updates": (ckpt.meta.get("trainer") or {}).get("updates"),
        "stopped": (ckpt.meta.get("trainer") or {}).get("stopped"),
        "distributed": ckpt.meta.get("distributed"),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    sizes = ", ".join(
        f"{k} {v}" for k, v in spec.items() if k not in ("src_vocab_size", "tgt_vocab_size")
    )
    print(f"architecture: {summary['architecture']} ({sizes})")
    print(f"parameters:   {summary['parameters']}")
    for side in ("source", "target"):
        print(
            f"{side}:       {summary[f'{side}_vocab_size']} ids, "
            f"{summary[f'{side}_tokenizer']} tokenizer"
        )
    print(f"max length:   {summary['max_length']} output tokens")
    if summary["backend"] is not None:
        done = f"{summary['epochs']} epochs"
        if summary["updates"] is not None:
            done += f" ({summary['updates']} updates)"
        if summary["stopped"] not in (None, "epochs"):
            done += f", stopped by {summary['stopped']}"
        parallel = summary["distributed"]
        if isinstance(parallel, dict) and parallel.get("world_size", 1) > 1:
            done += (
                f" on {parallel['world_size']} processes ({parallel.get('launcher')}, batch "
                f"{parallel.get('batch_size_per_rank')} per rank)"
            )
        print(f"trained:      {done} with backend {summary['backend']}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_model

    for path in export_model(args.model, args.format, args.out, overwrite=args.overwrite):
        print(path)
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
            "inference_only": "train" not in b.capabilities,
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
            "export_formats": sorted(reg.exporters),
        }
        print(json.dumps(listing, indent=2))
        return 0
    widths = {"name": 10, "version": 10, "distribution": 22}
    widths = {key: max([least, *(len(row[key]) for row in rows)]) for key, least in widths.items()}
    for row in rows:
        only = " (inference only: no train)" if row["inference_only"] else ""
        columns = " ".join(f"{row[key]:<{width}}" for key, width in widths.items())
        print(f"{columns} {', '.join(row['capabilities'])}{only}")
    if not rows and note:
        print(f"no backends loaded: {note}")
    elif not rows:
        print(f"no backends installed; try: {install_hint('numpy')}")
    elif note:
        print(f"note: {note}")
    if reg.exporters:
        print(f"export formats: {', '.join(sorted(reg.exporters))}")
    for name, reason in reg.failures.items():
        print(f"error: plugin {name}: {reason}")
    return 0


def _model_dirs(values: Sequence[str]) -> dict[str, str]:
    """``--model`` values as name -> directory: ``NAME=DIR``, or one plain ``DIR`` named
    ``default``.

    Raises:
        ConfigError: a name given twice, or several directories not all named.
    """
    import os
    import re

    from .errors import ConfigError

    named: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or os.path.isdir(value):
            if len(values) > 1:
                raise ConfigError(
                    f"--model {value}: with several models, name each: --model NAME=DIR"
                )
            name, path = "default", value
        if not path.strip():
            raise ConfigError(f"--model {value}: empty directory")
        if name in named:
            raise ConfigError(f"--model {value}: the name {name!r} is given twice")
        named[name] = path
    return named


def _serve(args: argparse.Namespace) -> int:
    from .errors import ConfigError

    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"serve needs Starlette and uvicorn ({exc}): pip install 'seq2seq-kit[serve]'"
        ) from None
    settings = _validated(*_file_and_flags(args), args.config).serve
    from .api import load
    from .serving.runtime import run

    models = {
        name: load(path, backend=args.backend) for name, path in _model_dirs(args.model).items()
    }
    return run(models, settings)


class _Once(argparse._StoreAction):
    """A value flag given twice is an error: which one was meant is a guess."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        if getattr(namespace, self.dest, None) is not None:
            parser.error(f"argument {option_string}: given more than once")
        super().__call__(parser, namespace, values, option_string)


class _OnceBool(argparse.BooleanOptionalAction):
    """``--x --no-x`` (or ``--x --x``) is an error, as for value flags."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        if getattr(namespace, self.dest, None) is not None:
            parser.error(f"argument {option_string}: {self.dest} given more than once")
        super().__call__(parser, namespace, values, option_string)


class _Parser(argparse.ArgumentParser):
    """Unknown or mistyped flags are reported with the usage of the subcommand they were
    given to, not the top-level one; a value flag may be given once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", None, _Once)
        self.register("action", "store", _Once)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            sub = next(a for a in self._actions if isinstance(a, argparse._SubParsersAction))
            command = sub.choices.get(getattr(parsed, "command", None), self)
            command.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


class _Terminated(BaseException):
    """SIGTERM outside training (which handles it itself): unwinds like Ctrl-C."""


#: Whether a SIGTERM is unwinding the command: a second one must not interrupt the report
#: of the first (or of an error being printed when it came) with a traceback.
_terminating = False


def _terminate(signum: int, frame: object) -> None:
    global _terminating
    if not _terminating:
        _terminating = True
        raise _Terminated


def _interrupted(exc: BaseException) -> int:
    name, code = ("SIGINT", 130) if isinstance(exc, KeyboardInterrupt) else ("SIGTERM", 143)
    print(
        f"interrupted by {name}: nothing new was saved; a model directory keeps its last "
        f"complete checkpoint, a corpus folder its last complete version",
        file=sys.stderr,
    )
    return code


def main(argv: Sequence[str] | None = None) -> int:
    import signal

    global _terminating
    _terminating = False
    installed = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    if installed:
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return _main(argv)
    except (KeyboardInterrupt, _Terminated) as exc:  # while an error was being reported
        return _interrupted(exc)
    finally:
        if installed:  # a SIGTERM after the command's end ends the process, as by default
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _main(argv: Sequence[str] | None) -> int:
    from .errors import Seq2SeqError, TrainingInterrupted, flags, out_of_memory

    try:
        args = parser().parse_args(argv)
        with flags(_flag_of):  # what an error advises, it advises as flags
            return args.run(args)
    except TrainingInterrupted as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except Seq2SeqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # e.g. piped into head
        return 0
    except (KeyboardInterrupt, _Terminated) as exc:
        return _interrupted(exc)
    except Exception as exc:
        # out of memory where no caller named the settings that asked for it
        error = out_of_memory(exc, "the sizes this command was given")
        if error is not None:
            print(f"error: {error}", file=sys.stderr)
            return error.exit_code
        if not isinstance(exc, OSError):
            raise
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
