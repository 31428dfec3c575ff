"""The ``marian`` import's weights: Marian's tensors mapped onto the canonical Transformer
layout (:mod:`seq2seq_kit.weights`), every tensor used once, none missing; the embedding rows,
output bias and an untied output projection permuted into our id order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...architectures.transformer import TransformerSpec
from ...errors import ModelImportError

#: The output bias of our PAD id, which Marian lacks: far below any logit, so its
#: probability underflows to 0 and the other ids keep Marian's log-probabilities.
PAD_BIAS = -1e9
#: Our name of each Marian layer part (HF attribute -> canonical name).
_ATTENTION = {"q_proj": "query", "k_proj": "key", "v_proj": "value", "out_proj": "output"}
_NORMS = {
    "self_attn_layer_norm": "self_attention_norm",
    "encoder_attn_layer_norm": "cross_attention_norm",
    "final_layer_norm": "feed_forward_norm",
}


def position_table(count: int, width: int) -> np.ndarray:
    """float32 [count, width]: Marian's sinusoidal positions
    (``MarianSinusoidalPositionalEmbedding._init_weight`` in modeling_marian.py): angle
    ``t / 10000^(2 * (j // 2) / width)`` for feature ``j``; the sines of the even ``j`` fill
    the first ``ceil(width / 2)`` features, the cosines of the odd ones the rest. Computed
    in float64 and rounded once, as there.

    The one place that says how Marian's positions are stored: as our position
    ``"table"``, which training never changes."""
    j = np.arange(width)
    angles = np.arange(count, dtype=np.float64)[:, None] / np.power(10000, 2 * (j // 2) / width)
    return np.concatenate([np.sin(angles[:, 0::2]), np.cos(angles[:, 1::2])], axis=1).astype(
        np.float32
    )


class _Tensors:
    """Marian's tensors, each taken by name with its expected shape and counted as used."""

    def __init__(self, tensors: dict[str, np.ndarray], file: Path) -> None:
        self.tensors, self.file = tensors, file
        self.used: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def take(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Tensor ``name`` as float32, checked to have ``shape``."""
        if name not in self.tensors:
            raise ModelImportError(f"{self.file}: no tensor {name!r}")
        value = self.tensors[name]
        if tuple(value.shape) != shape:
            raise ModelImportError(
                f"{self.file}: {name} has shape {tuple(value.shape)}, expected {shape}"
            )
        self.used.add(name)
        return np.asarray(value, dtype=np.float32)

    def check_all_used(self) -> None:
        """Refuse a tensor no :meth:`take` asked for."""
        unexpected = sorted(set(self.tensors) - self.used)
        if unexpected:
            raise ModelImportError(
                f"{self.file}: unexpected tensor {unexpected[0]!r} ({len(unexpected)} in all); "
                f"this import does not know where it goes"
            )


def canonical_weights(
    tensors: dict[str, np.ndarray],
    spec: TransformerSpec,
    settings: dict[str, Any],
    order: list[int],
    file: Path,
) -> dict[str, np.ndarray]:
    """The canonical weights: every tensor of ``tensors`` used once (an embedding stored
    under several names must be one table), none missing."""
    marian = _Tensors(tensors, file)
    out = _vocabulary_weights(marian, spec, settings["vocab_size"], order)
    for side, layers in (("encoder", spec.encoder_layers), ("decoder", spec.decoder_layers)):
        stored = f"model.{side}.embed_positions.weight"
        if stored in marian:  # transformers loads a stored table over its computed one
            out[f"{side}.positions"] = marian.take(stored, (spec.max_positions, spec.d_model))
        else:
            out[f"{side}.positions"] = position_table(spec.max_positions, spec.d_model)
        for layer in range(layers):
            out.update(_layer(marian, spec, side, layer))
    marian.check_all_used()
    return out


def _vocabulary_weights(
    marian: _Tensors, spec: TransformerSpec, vocab: int, order: list[int]
) -> dict[str, np.ndarray]:
    """The shared embedding, the output bias and an untied output projection, their rows in
    our id order."""
    d = spec.d_model

    def permuted_rows(table: np.ndarray) -> np.ndarray:
        """Marian rows in our id order, our PAD's a row of zeros first."""
        return np.concatenate([np.zeros((1,) + table.shape[1:], np.float32), table[order]])

    embedding_names = [
        n
        for n in (
            "model.shared.weight",
            "model.encoder.embed_tokens.weight",
            "model.decoder.embed_tokens.weight",
        )
        if n in marian
    ]
    if not embedding_names:
        raise ModelImportError(f"{marian.file}: no embedding (model.shared.weight)")
    embedding = marian.take(embedding_names[0], (vocab, d))
    for name in embedding_names[1:]:
        if not np.array_equal(marian.take(name, (vocab, d)), embedding):
            raise ModelImportError(
                f"{marian.file}: {name} differs from {embedding_names[0]}: not one shared embedding"
            )
    out = {"encoder.embedding": permuted_rows(embedding)}
    bias = np.zeros(vocab, np.float32)
    if "final_logits_bias" in marian:
        bias = marian.take("final_logits_bias", (1, vocab))[0]
    # PAD and the source-end mark are never an output: no probability for either
    bias = np.concatenate([[PAD_BIAS], bias[order]]).astype(np.float32)
    bias[-1] = PAD_BIAS
    out["decoder.output.bias"] = bias
    if spec.tie_output_embeddings:
        marian.used.add("lm_head.weight")  # tied: transformers reads the embedding in its place
    else:
        kernel = marian.take("lm_head.weight", (vocab, d))
        out["decoder.output.kernel"] = permuted_rows(kernel).T.copy()
    return out


def _layer(marian: _Tensors, spec: TransformerSpec, side: str, layer: int) -> dict[str, np.ndarray]:
    """The weights of layer ``layer`` of ``side`` (``encoder`` or ``decoder``)."""
    d, ff = spec.d_model, spec.ff_size
    theirs, ours = f"model.{side}.layers.{layer}", f"{side}.layers.{layer}"
    out: dict[str, np.ndarray] = {}
    parts = [("self_attn", "self_attention")]
    if side == "decoder":
        parts.append(("encoder_attn", "cross_attention"))
    for their_block, our_block in parts:
        for their_part, our_part in _ATTENTION.items():
            name = f"{theirs}.{their_block}.{their_part}"
            # nn.Linear keeps [out, in]; our kernels act on row vectors: [in, out]
            out[f"{ours}.{our_block}.{our_part}.kernel"] = marian.take(
                f"{name}.weight", (d, d)
            ).T.copy()
            out[f"{ours}.{our_block}.{our_part}.bias"] = marian.take(f"{name}.bias", (d,))
    for their_norm, our_norm in _NORMS.items():
        if side == "encoder" and their_norm == "encoder_attn_layer_norm":
            continue
        out[f"{ours}.{our_norm}.scale"] = marian.take(f"{theirs}.{their_norm}.weight", (d,))
        out[f"{ours}.{our_norm}.bias"] = marian.take(f"{theirs}.{their_norm}.bias", (d,))
    for their_fc, our_fc, shape in (("fc1", "inner", (ff, d)), ("fc2", "outer", (d, ff))):
        out[f"{ours}.feed_forward.{our_fc}.kernel"] = marian.take(
            f"{theirs}.{their_fc}.weight", shape
        ).T.copy()
        out[f"{ours}.feed_forward.{our_fc}.bias"] = marian.take(
            f"{theirs}.{their_fc}.bias", (shape[0],)
        )
    return out
