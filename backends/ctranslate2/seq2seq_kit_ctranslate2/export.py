"""``export --format ctranslate2``: a model directory as a CTranslate2 model directory, which
``ctranslate2.Translator(out)`` loads and runs on the model's real tokens (source tokens in,
target tokens out, ``</s>`` ending a finished hypothesis when asked with
``return_end_token``); ``--quantization SCHEME`` writes its weights in that scheme, which
``ctranslate2.Translator`` then runs by default.

Beside CTranslate2's files, ``export.json`` records what seq2seq-kit needs to run the export
(:func:`load`): the scheme (``quantization``, null for float32), the model's spec, both
vocabularies with their tokenizers (the tokenizers' files as ``source-*``, ``target-*``) and
the decoding cap. CTranslate2 reads none of them.
"""

from __future__ import annotations

import json
from pathlib import Path

from seq2seq_kit import __version__ as core_version
from seq2seq_kit.checkpoint import Checkpoint
from seq2seq_kit.errors import BackendError, ExportError
from seq2seq_kit.export import Exported, model_fields, open_export, read_model_fields
from seq2seq_kit.runtime import Runtime
from seq2seq_kit.vocab import Vocabulary

from .convert import check_convertible, to_ctranslate2

FORMAT = "seq2seq-kit-ctranslate2"
FORMAT_VERSION = 1
META_FILE = "export.json"
#: The files of CTranslate2's own that an export may hold (its vocabularies: one shared, or
#: one per side).
ENGINE_FILES = (
    "model.bin",
    "config.json",
    "shared_vocabulary.json",
    "source_vocabulary.json",
    "target_vocabulary.json",
)


def tokens(vocab: Vocabulary) -> list[str]:
    """Every token of ``vocab`` in id order, the specials first."""
    return [vocab.token(i) for i in range(len(vocab))]


def export_checkpoint(
    checkpoint: Checkpoint, out: Path, quantization: str | None = None
) -> list[Path]:
    """Write ``checkpoint``'s Transformer at ``out`` (a new directory) in CTranslate2's
    format: ``model.bin`` (weights in ``quantization``, a scheme of
    :data:`seq2seq_kit.quantization.SCHEMES`; None: float32), ``config.json``, the source
    and target vocabularies (one ``shared_vocabulary.json`` when both sides are the same),
    and ``export.json`` with the tokenizers' files (module docstring). Returns the files
    written.

    Raises:
        ExportError: an RNN model (CTranslate2 runs Transformers only), or ``out`` exists
            and is not an empty directory.
    """
    check_convertible(checkpoint.spec)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out}: exists and is not an empty directory; choose a new path")
    model = to_ctranslate2(
        checkpoint.spec,
        checkpoint.weights,
        tokens(checkpoint.source_vocab),
        tokens(checkpoint.target_vocab),
        quantization=quantization,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "producer": f"seq2seq-kit {core_version}",
        "quantization": quantization,
        **model_fields(checkpoint, out),
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return sorted(path for path in out.iterdir() if path.is_file())


def load(directory: str | Path, runtime: Runtime | None = None) -> Exported:
    """Read a ``ctranslate2`` export into this backend's model, once every file is checked
    against the export's manifest (:func:`seq2seq_kit.export.open_export`). The model runs
    in ``runtime.quantization`` when given, else in the scheme the export holds (or the
    nearest type the device runs: :meth:`.model.CTranslate2Model.from_files`); on
    ``runtime.threads`` intra-op threads and ``runtime.device``.

    Raises:
        ExportError: naming the file: not an export of this format, a file missing,
            truncated or altered, ``export.json`` malformed or of a newer version.
        BackendError: ``runtime.quantization`` is no scheme, or one CTranslate2 does not
            run on the device.
    """
    from .model import CTranslate2Model

    directory = Path(directory)
    files = open_export(directory, "ctranslate2")
    meta_file = directory / META_FILE
    if META_FILE not in files:
        raise ExportError(
            f"{meta_file}: not in the export (an export written before seq2seq-kit recorded "
            f"its model there: export again)"
        )
    try:
        meta = json.loads(files[META_FILE].read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{meta_file}: cannot read it ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ExportError(f"{meta_file}: not a {FORMAT} export")
    version = meta.get("format_version")
    if type(version) is not int or version > FORMAT_VERSION:
        raise ExportError(f"{meta_file}: format version {version!r} is newer than this reads")
    spec, source, target, max_length = read_model_fields(meta, directory, meta_file)
    engine_files = {name: files[name].read_bytes() for name in ENGINE_FILES if name in files}
    runtime = runtime or Runtime()
    if runtime.quantization is not None:
        from seq2seq_kit.backend import runtime_capabilities

        try:
            runtime_capabilities(runtime)
        except ValueError as exc:
            raise BackendError(f"backend 'ctranslate2': {exc}") from None
    model = CTranslate2Model.from_files(spec, engine_files, tokens(source), tokens(target), runtime)
    return Exported(model, source, target, max_length, meta, "ctranslate2")
