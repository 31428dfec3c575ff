"""``seq2seq-kit evaluate``: score a model on a TSV file or a dataset."""

from __future__ import annotations

import argparse
import json

from .options import _add_config_flags, _add_quantization, _flag_values


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="exact match, CER, token error rate, chrF, BLEU and TER on a TSV file",
        description="Decoding flags default to the model's saved [decode] settings.",
    )
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--data", required=True, help="PATH.tsv or dataset name")
    _add_config_flags(p, "data", ["limit", "max_line_bytes"])
    p.add_argument("--backend", help="backend to run the model with")
    _add_quantization(
        p,
        "run the model quantized to this scheme from its float32 weights (default: "
        "float32), with a backend that runs it (ctranslate2: every scheme its device runs; "
        "onnx: int8; others refuse, exit status 2)",
    )
    _add_config_flags(p, "decode", [k for k in _decode_keys() if k != "n_best"])
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.set_defaults(run=run_evaluate)


def _decode_keys() -> list[str]:
    from ..config import DecodeConfig

    return list(DecodeConfig.model_fields)


def run_evaluate(args: argparse.Namespace) -> int:
    from ..api import load
    from ..config import DEFAULT_MAX_LINE_BYTES
    from ..data import load_dataset
    from ..errors import DataError, InputTooLongError, UnknownTokenError, describe_token
    from ..metrics import group_references, score

    translator = load(args.model, backend=args.backend, quantization=args.quantization)
    options = translator.decode_config(**_flag_values(args).get("decode", {}), n_best=1)
    dataset = load_dataset(
        args.data,
        getattr(args, "data.limit"),
        max_line_bytes=getattr(args, "data.max_line_bytes") or DEFAULT_MAX_LINE_BYTES,
    )
    sources, references = group_references(dataset.pairs)
    try:
        outputs = [hyps[0].text for hyps in translator.decode_texts(sources, options)]
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
    print(f"TER:         {scores['ter']:.2f}  ({scores['ter_signature']}; lower is better)")
    return 0
