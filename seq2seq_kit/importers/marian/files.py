"""The files of a ``MarianMTModel`` directory: which hold the weights (``model.safetensors``
or its shards), JSON read, safetensors loaded with NumPy. A pickle is never opened."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ModelImportError


def weight_files(source: Path) -> list[Path]:
    """The weight files of ``source``: ``model.safetensors``, or the shards its index lists."""
    single, index = source / "model.safetensors", source / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        data = read_json(index)
        try:
            names = sorted(set(data["weight_map"].values()))
        except (KeyError, TypeError, AttributeError):
            raise ModelImportError(f"{index}: no weight_map of tensor -> file") from None
        files = []
        for name in names:
            if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
                raise ModelImportError(f"{index}: {name!r} is not a file of the directory")
            if not (source / name).is_file():
                raise ModelImportError(f"{source / name}: missing (listed in {index.name})")
            files.append(source / name)
        return files
    pickled = [n for n in ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack")]
    found = [n for n in pickled if (source / n).exists()]
    if found:
        raise ModelImportError(
            f"{source}: holds {found[0]} but no model.safetensors; a pickle is never loaded "
            f"here (loading one may run code). Get the safetensors weights: download "
            f"model.safetensors where the model's page has it, or convert on a machine with "
            f"transformers: MarianMTModel.from_pretrained(DIR).save_pretrained(NEW_DIR) "
            f"writes model.safetensors"
        )
    raise ModelImportError(
        f"{single}: missing; a MarianMTModel directory holds config.json, model.safetensors, "
        f"source.spm, target.spm and vocab.json"
    )


def read_json(path: Path) -> Any:
    """The JSON value of ``path``."""
    if not path.is_file():
        raise ModelImportError(f"{path}: missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelImportError(f"{path}: not valid JSON ({exc})") from None


def load_tensors(file: Path) -> dict[str, np.ndarray]:
    """The tensors of one safetensors file, by name."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise ModelImportError(
            f"{file}: unreadable safetensors file ({exc}); bfloat16 weights are not read by "
            f"NumPy: save them as float32 (model.float().save_pretrained(...))"
        ) from None
