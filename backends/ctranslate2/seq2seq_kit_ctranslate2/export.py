"""``export --format ctranslate2``: a model directory as a CTranslate2 model directory, which
``ctranslate2.Translator(out)`` loads and runs on the model's real tokens (source tokens in,
target tokens out, ``</s>`` ending a finished hypothesis when asked with
``return_end_token``)."""

from __future__ import annotations

from pathlib import Path

from seq2seq_kit.checkpoint import Checkpoint
from seq2seq_kit.errors import ExportError
from seq2seq_kit.vocab import Vocabulary

from .convert import check_convertible, to_ctranslate2


def tokens(vocab: Vocabulary) -> list[str]:
    """Every token of ``vocab`` in id order, the specials first."""
    return [vocab.token(i) for i in range(len(vocab))]


def export_checkpoint(checkpoint: Checkpoint, out: Path) -> list[Path]:
    """Write ``checkpoint``'s Transformer at ``out`` (a new directory) in CTranslate2's
    format: ``model.bin``, ``config.json`` and the source and target vocabularies (one
    ``shared_vocabulary.json`` when both sides are the same). Returns the files written.

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
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    return sorted(path for path in out.iterdir() if path.is_file())
