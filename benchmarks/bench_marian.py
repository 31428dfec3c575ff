"""Importing and decoding a Marian model of OPUS-MT base size, against Hugging Face
transformers on the same weights.

Targets: the import in under 30 s and 2 GB peak RSS; greedy decoding at batch 32 on one
thread, our torch backend at least 1.5x the sentences per second of transformers'
``generate``, the CTranslate2 export at least 3x, every output identical.

The model is built here, without a network (kept under ``results/work/marian-base/`` for
later runs): a ``MarianMTModel`` with the config of OPUS-MT base (opus-mt-en-de: 58,101
pieces, d_model 512, 6 + 6 layers, 8 heads, feed-forward 2048, swish, embeddings scaled,
shared and tied to the output, 512 positions, pad = decoder start = the last id, EOS = 0
forced at the length cap), random weights (``torch.manual_seed(--seed)``, transformers'
initialisation), saved by ``save_pretrained`` (safetensors). SentencePiece models of
58,101 pieces cannot be trained on a small corpus: ``source.spm`` and ``target.spm`` are
trained on the Tatoeba sample (``--tatoeba``; ``--spm-pieces`` each, at most), and ``vocab.json``
holds their pieces and then filler pieces up to 58,101, which no text produces. The
import's cost scales with the tensors (every row of the 58,101 x 512 embedding is read,
permuted and written), not with the SentencePiece models.

Random weights give degenerate outputs: no output ends before the cap, and each repeats
one token (often a filler piece), chosen by the source. They are still compared token for
token; a decoding that differs in one id of one step differs from then on. Scaling the
initialisation (``init_std`` 0.05, 0.1) did not make the outputs vary more, and training a
model of this size for long enough is too slow for a benchmark, so the weights stay random.

Measured, each in its own process (``_common.call``), every numeric library pinned to one
thread (``OMP_NUM_THREADS=1`` and the other variables of ``_common.thread_env``;
``torch.set_num_threads(1)``; CTranslate2 ``intra_threads=1``, ``inter_threads=1``):

1. Import: ``python -m seq2seq_kit import --format marian`` (the CLI), ``--repeats`` runs,
   each a fresh process; wall seconds of the whole process (start-up included) and its
   peak RSS (``os.wait4``'s ``ru_maxrss``).
2. Export: ``python -m seq2seq_kit export --format ctranslate2`` of the import, once.
3. Greedy decoding of ``--sentences`` English Tatoeba sentences (a seeded sample, sorted
   by token count so that every engine gets the same batches of ``--batch``), text in and
   ids out, at most ``--max-steps`` decoder steps a sentence on every side:

   - ``transformers generate``: ``MarianTokenizer`` and ``generate(num_beams=1,
     do_sample=False, max_new_tokens=STEPS, bad_words_ids=[[pad], [unk]])`` (the core
     never outputs its PAD, BOS (Marian's pad) or UNK), under ``torch.inference_mode``;
   - ``torch backend``: ``seq2seq_kit.load(MODEL, backend="torch").hypotheses(texts,
     beam=1, batch_size=BATCH, max_length=STEPS - 1)`` (the core takes ``max_length``
     tokens and then one step for EOS: STEPS steps);
   - ``ctranslate2 backend``: the same on ``load(MODEL, backend="ctranslate2")``;
   - ``ctranslate2 export``: plain ``ctranslate2.Translator`` on the export directory,
     ``translate_batch(max_batch_size=BATCH, beam_size=1, max_decoding_length=STEPS,
     disable_unk=True, suppress_sequences=[["<s>"]])`` on the source tokens of the model's
     tokenizer (tokenizing included in the time).

   Outputs are compared as Marian ids, each cut at its first EOS and at STEPS - 1 tokens
   (``generate`` forces EOS at its last step; the core flags a hypothesis cut there
   truncated). Each of ``--repeats`` rounds runs every engine once, in turn, in a fresh
   process that first decodes one untimed batch; the figure is the median of the rounds,
   the ratio that median over ``generate``'s. Interleaving the rounds spreads a change of
   the machine's load over every engine alike.

Run (the frameworks may live in different environments; each must import seq2seq_kit, and
``--ct2-python``'s the ctranslate2 backend):

    OMP_NUM_THREADS=1 python benchmarks/bench_marian.py \\
        [--python PYTHON_WITH_TORCH_AND_TRANSFORMERS] [--ct2-python PYTHON_WITH_CTRANSLATE2]

Writes ``results/marian.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import WORK, call, markdown, template, thread_env, write  # noqa: E402

TATOEBA = Path(__file__).resolve().parent.parent / "tests" / "data" / "tatoeba-eng-fra-3000.tsv"
VOCAB_SIZE = 58101
#: OPUS-MT base (Helsinki-NLP/opus-mt-en-de's config.json), for MarianConfig.
CONFIG = {
    "vocab_size": VOCAB_SIZE,
    "decoder_vocab_size": VOCAB_SIZE,
    "d_model": 512,
    "encoder_layers": 6,
    "decoder_layers": 6,
    "encoder_attention_heads": 8,
    "decoder_attention_heads": 8,
    "encoder_ffn_dim": 2048,
    "decoder_ffn_dim": 2048,
    "max_position_embeddings": 512,
    "activation_function": "swish",
    "scale_embedding": True,
    "share_encoder_decoder_embeddings": True,
    "tie_word_embeddings": True,
    "dropout": 0.1,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "pad_token_id": VOCAB_SIZE - 1,
    "decoder_start_token_id": VOCAB_SIZE - 1,
    "bos_token_id": 0,
    "eos_token_id": 0,
    "forced_eos_token_id": 0,
}
ENGINES = ("transformers generate", "torch backend", "ctranslate2 backend", "ctranslate2 export")
TARGETS = {"torch backend": 1.5, "ctranslate2 backend": 3.0, "ctranslate2 export": 3.0}
IMPORT_SECONDS, IMPORT_MB = 30.0, 2000.0


# ----------------------------------------------------------------------------- the model


def build(folder: str, tatoeba: str, spm_pieces: int, seed: int) -> dict[str, Any]:
    """Write the MarianMTModel directory ``folder`` (see the module docstring); kept when
    ``folder/build.json`` records the same settings."""
    settings = {"tatoeba": str(Path(tatoeba).resolve()), "spm_pieces": spm_pieces, "seed": seed}
    settings["config"] = CONFIG
    out = Path(folder)
    record = out / "build.json"
    if record.exists() and json.loads(record.read_text())["settings"] == settings:
        return json.loads(record.read_text())
    import sentencepiece as spm
    import torch
    import transformers

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    pairs = read_pairs(Path(tatoeba))
    pieces: set[str] = set()
    for side, column in (("source", 0), ("target", 1)):
        model = io.BytesIO()
        spm.SentencePieceTrainer.Train(
            sentence_iterator=iter([pair[column] for pair in pairs]),
            model_writer=model,
            vocab_size=spm_pieces,
            hard_vocab_limit=False,  # fewer where the corpus has fewer
            character_coverage=1.0,
            num_threads=1,
            minloglevel=2,
        )  # Marian's own: unigram, nmt_nfkc normalisation, <unk> <s> </s>
        (out / f"{side}.spm").write_bytes(model.getvalue())
        sp = spm.SentencePieceProcessor()
        sp.LoadFromSerializedProto(model.getvalue())
        pieces |= {sp.IdToPiece(i) for i in range(sp.GetPieceSize()) if not sp.IsControl(i)}
    pieces -= {"<unk>"}
    real = ["</s>", "<unk>", *sorted(pieces)]
    fillers = [f"<filler{i:05d}>" for i in range(VOCAB_SIZE - len(real) - 1)]
    vocab = {piece: i for i, piece in enumerate([*real, *fillers, "<pad>"])}
    assert len(vocab) == VOCAB_SIZE and vocab["<pad>"] == CONFIG["pad_token_id"]
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    torch.manual_seed(seed)
    model = transformers.MarianMTModel(transformers.MarianConfig(**CONFIG)).eval()
    model.save_pretrained(out)  # safetensors
    info = {
        "settings": settings,
        "parameters": sum(p.numel() for p in model.parameters()),
        "spm_pieces_in_vocab": len(real),
        "safetensors_mb": round((out / "model.safetensors").stat().st_size / 1e6, 1),
        "build_seconds": round(time.perf_counter() - start, 1),
    }
    record.write_text(json.dumps(info, indent=2) + "\n")
    return info


def read_pairs(path: Path) -> list[tuple[str, str]]:
    rows = path.read_text(encoding="utf-8").splitlines()
    return [(row.split("\t")[0], row.split("\t")[1]) for row in rows if "\t" in row]


def sources(folder: str, tatoeba: str, count: int, seed: int) -> list[str]:
    """``count`` English sentences of ``tatoeba`` (a seeded sample, each once), sorted by
    their token count under the model's tokenizer (stable: ties keep the sample's order)."""
    import random

    texts = sorted({source for source, _ in read_pairs(Path(tatoeba))})
    texts = random.Random(seed).sample(texts, min(count, len(texts)))
    ids = hf_tokenizer(folder)(texts)["input_ids"]
    return [texts[i] for i in sorted(range(len(texts)), key=lambda i: len(ids[i]))]


def hf_tokenizer(folder: str):
    import warnings

    import transformers

    with warnings.catch_warnings():  # the advice to install sacremoses: never applied here
        warnings.simplefilter("ignore")
        return transformers.MarianTokenizer(
            source_spm=f"{folder}/source.spm",
            target_spm=f"{folder}/target.spm",
            vocab=f"{folder}/vocab.json",
        )


# ----------------------------------------------------------------------------- decoding


def _cut(ids: list[int], eos: int, steps: int) -> list[int]:
    """An output as the core gives it: up to its first EOS, at most ``steps - 1`` tokens."""
    return (ids[: ids.index(eos)] if eos in ids else ids)[: steps - 1]


def _batches(texts: list[str], batch: int) -> list[list[str]]:
    return [texts[i : i + batch] for i in range(0, len(texts), batch)]


def decode_generate(folder: str, texts: list[str], batch: int, steps: int) -> dict[str, Any]:
    """transformers' greedy ``generate``, one thread: one untimed batch, then all texts."""
    import torch
    import transformers

    torch.set_num_threads(1)
    tokenizer = hf_tokenizer(folder)
    model = transformers.MarianMTModel.from_pretrained(folder).eval()
    pad, unk = CONFIG["pad_token_id"], tokenizer.unk_token_id

    def run(chunk: list[str]) -> list[list[int]]:
        enc = tokenizer(chunk, padding=True, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(
                **enc,
                num_beams=1,
                do_sample=False,
                max_new_tokens=steps,
                bad_words_ids=[[pad], [unk]],
            )
        return [_cut(row[1:], 0, steps) for row in out.tolist()]  # row[0]: decoder start

    run(texts[:batch])
    start = time.perf_counter()
    ids = [row for chunk in _batches(texts, batch) for row in run(chunk)]
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "ids": ids,
        "attention": model.config._attn_implementation,
    }


def _to_marian(model: str, folder: str) -> list[int]:
    """Marian's id of each of our target ids (our PAD: -1; the source end: Marian's EOS)."""
    from seq2seq_kit.checkpoint import load_checkpoint

    vocab = json.loads(Path(folder, "vocab.json").read_text(encoding="utf-8"))
    ours = load_checkpoint(model).target_vocab
    ids = [-1] + [vocab[name] for name in ("<pad>", "</s>", "<unk>")]
    return ids + [vocab.get(token, vocab["</s>"]) for token in ours.tokens]


def decode_ours(
    backend: str, model: str, folder: str, texts: list[str], batch: int, steps: int
) -> dict[str, Any]:
    """``seq2seq_kit.load(model, backend).hypotheses``, greedy: one untimed batch, then
    all texts."""
    import seq2seq_kit

    translator = seq2seq_kit.load(model, backend=backend)
    options = {"beam": 1, "n_best": 1, "batch_size": batch, "max_length": steps - 1}
    translator.hypotheses(texts[:batch], **options)
    start = time.perf_counter()
    found = translator.hypotheses(texts, **options)
    seconds = time.perf_counter() - start
    to_marian = _to_marian(model, folder)
    return {
        "seconds": seconds,
        "ids": [[to_marian[i] for i in hyps[0].ids] for hyps in found],
    }


def decode_export(
    export: str, model: str, folder: str, texts: list[str], batch: int, steps: int
) -> dict[str, Any]:
    """Plain ``ctranslate2.Translator`` on the export, one thread, source tokens from the
    model's tokenizer: one untimed batch, then all texts."""
    import ctranslate2

    from seq2seq_kit.checkpoint import load_checkpoint

    vocab = load_checkpoint(model).source_vocab
    engine = ctranslate2.Translator(
        export, device="cpu", compute_type="float32", inter_threads=1, intra_threads=1
    )

    def run(chunk: list[str]) -> list[list[str]]:
        tokens = [[vocab.token(i) for i in vocab.encode(text)] for text in chunk]
        results = engine.translate_batch(
            tokens,
            max_batch_size=batch,
            beam_size=1,
            max_decoding_length=steps,
            min_decoding_length=0,
            max_input_length=0,
            disable_unk=True,
            suppress_sequences=[["<s>"]],  # our BOS, Marian's pad: never an output
        )
        return [r.hypotheses[0] for r in results]

    run(texts[:batch])
    start = time.perf_counter()
    found = run(texts)
    seconds = time.perf_counter() - start
    marian = json.loads(Path(folder, "vocab.json").read_text(encoding="utf-8"))
    ids = [[marian[t] for t in _cut(hyp, "</s>", steps)] for hyp in found]
    return {"seconds": seconds, "ids": ids, "ctranslate2": ctranslate2.__version__}


# ----------------------------------------------------------------------------- the driver


def cli(python: str, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """``python -m seq2seq_kit ARGS`` in a subprocess: wall seconds, peak RSS in MB (10^6
    bytes, ``os.wait4``'s ``ru_maxrss``), exit status and output."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [python, "-m", "seq2seq_kit", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"seq2seq_kit {' '.join(args)}: exit status {code}\n{output}")
    return {"seconds": seconds, "peak_mb": usage.ru_maxrss * 1024 / 1e6, "output": output}


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter with torch and transformers (build, import, generate, torch backend)",
    )
    parser.add_argument(
        "--ct2-python",
        default=sys.executable,
        help="interpreter with ctranslate2 and its seq2seq-kit backend (export and decoding)",
    )
    parser.add_argument("--tatoeba", default=str(TATOEBA), help="English<TAB>French pairs")
    parser.add_argument("--spm-pieces", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sentences", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-steps", type=int, default=64, help="decoder steps a sentence")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="64 sentences, 16 steps, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.sentences, args.max_steps, args.repeats = 64, 16, 1
    env = thread_env(1)
    python = {
        "transformers generate": args.python,
        "torch backend": args.python,
        "ctranslate2 backend": args.ct2_python,
        "ctranslate2 export": args.ct2_python,
    }
    folder, model, export = (WORK / f"marian-base{tail}" for tail in ("", "-import", "-ct2"))
    loads = {"start": load_average()}
    threads: dict[str, Any] = {}

    def child(function: str, tag: str = "", **kwargs: Any) -> Any:
        outcome = call(
            "bench_marian", function, env=env, python=kwargs.pop("python"), tag=tag, **kwargs
        )
        if outcome.error:
            raise RuntimeError(f"{function} {tag}: {outcome.error} (log {outcome.log})")
        threads[tag or function] = outcome.value["threads"]
        return outcome.value["result"]

    built = child(
        "build",
        python=args.python,
        folder=str(folder),
        tatoeba=args.tatoeba,
        spm_pieces=args.spm_pieces,
        seed=args.seed,
    )
    print(f"model: {built['parameters']:,} parameters, {built['safetensors_mb']} MB", flush=True)

    imports = []
    for _ in range(args.repeats):
        command = ["import", "--format", "marian", "--from", str(folder), "--out", str(model)]
        imports.append(cli(args.python, [*command, "--overwrite"], env))
        last = imports[-1]
        print(f"import: {last['seconds']:.1f} s, {last['peak_mb']:.0f} MB", flush=True)
    if export.exists():
        import shutil

        shutil.rmtree(export)
    exported = cli(
        args.ct2_python,
        ["export", "--model", str(model), "--format", "ctranslate2", "--out", str(export)],
        env,
    )
    print(f"export: {exported['seconds']:.1f} s, {exported['peak_mb']:.0f} MB", flush=True)

    texts = child(
        "sources",
        python=args.python,
        folder=str(folder),
        tatoeba=args.tatoeba,
        count=args.sentences,
        seed=args.seed,
    )
    common = {"folder": str(folder), "texts": texts, "batch": args.batch, "steps": args.max_steps}
    jobs = {
        "transformers generate": ("decode_generate", {}),
        "torch backend": ("decode_ours", {"backend": "torch", "model": str(model)}),
        "ctranslate2 backend": ("decode_ours", {"backend": "ctranslate2", "model": str(model)}),
        "ctranslate2 export": ("decode_export", {"export": str(export), "model": str(model)}),
    }
    rounds: dict[str, list[dict[str, Any]]] = {engine: [] for engine in ENGINES}
    for number in range(args.repeats):
        loads[f"round {number + 1}"] = load_average()
        for engine in ENGINES:
            function, kwargs = jobs[engine]
            tag = engine.replace(" ", "-")
            rounds[engine].append(child(function, tag, python=python[engine], **kwargs, **common))
            print(f"round {number + 1} {engine}: {rounds[engine][-1]['seconds']:.2f} s", flush=True)
    loads["end"] = load_average()

    rows = report(args, built, imports, rounds)
    raw = {
        "built": built,
        "imports": [{k: v for k, v in i.items() if k != "output"} for i in imports],
        "export_seconds": exported["seconds"],
        "seconds": {engine: [r["seconds"] for r in rounds[engine]] for engine in ENGINES},
        "load_average": loads,
        "sentences": len(texts),
        "batch": args.batch,
        "max_steps": args.max_steps,
        "threads": threads,
    }
    write("marian", rows, raw)
    print(f"load average (1 min): {loads}")
    print(markdown(rows))


def _agreeing(a: list[int], b: list[int]) -> int:
    """How many tokens ``a`` and ``b`` share before their first difference."""
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def report(args, built, imports, rounds) -> list[dict[str, Any]]:
    """The result rows: import time and memory, then each engine's sentences per second
    against generate's."""
    seconds = statistics.median(i["seconds"] for i in imports)
    peak = max(i["peak_mb"] for i in imports)
    where = f"{built['parameters']:,} parameters, {built['safetensors_mb']} MB safetensors"
    runs = f"median of {len(imports)} runs" if len(imports) > 1 else "one run"
    rows = [
        template("Marian base import, CLI", "s", "", f"< {IMPORT_SECONDS:.0f} s")(
            "numpy (importer)",
            seconds,
            None,
            None,
            seconds < IMPORT_SECONDS,
            f"{runs}, whole process; {where}",
        ),
        template("Marian base import, peak RSS", "MB", "", f"< {IMPORT_MB:.0f} MB")(
            "numpy (importer)",
            peak,
            None,
            None,
            peak < IMPORT_MB,
            f"largest of {len(imports)} runs",
        ),
    ]
    count = len(rounds["transformers generate"][0]["ids"])
    speed = {e: count / statistics.median(r["seconds"] for r in rounds[e]) for e in ENGINES}
    reference = rounds["transformers generate"][-1]["ids"]
    steps = args.max_steps
    capped = sum(len(ids) == steps - 1 for ids in reference)
    distinct = len({tuple(ids) for ids in reference})
    for engine in ENGINES:
        ids = rounds[engine][-1]["ids"]
        same = sum(a == b for a, b in zip(ids, reference, strict=True))
        tokens = sum(_agreeing(a, b) for a, b in zip(ids, reference, strict=True))
        ratio = speed[engine] / speed["transformers generate"]
        target = TARGETS.get(engine)
        make = template(
            f"Marian base greedy, batch {args.batch}, 1 thread",
            "sent/s",
            "transformers generate",
            f">= {target}x, outputs identical" if target else "n/a (reference)",
        )
        notes = f"{same}/{count} outputs identical to generate's"
        if same < count:
            notes += f" ({tokens} of {sum(map(len, reference))} tokens before the first difference)"
        if engine == "transformers generate":
            notes = (
                f"{count} sentences, {steps} decoder steps at most, {capped} outputs at the "
                f"cap, {distinct} distinct outputs (random weights)"
            )
        met = None if target is None else (ratio >= target and same == count)
        rows.append(make(engine, speed[engine], speed["transformers generate"], ratio, met, notes))
    return rows


if __name__ == "__main__":
    main()
