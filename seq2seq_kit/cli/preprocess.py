"""``seq2seq-kit preprocess``: tokenize the ``[data]`` once into a corpus folder."""

from __future__ import annotations

import argparse

from .options import _add_config_flags, _file_and_flags, _validated


def add_preprocess(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(run=run_preprocess)


def run_preprocess(args: argparse.Namespace) -> int:
    from ..corpus import open_corpus, preprocess
    from ..errors import ConfigError

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
