"""The architectures a model may have, and every question whose answer depends on one.

Each architecture module defines its ``[model]`` keys once (a pydantic table), derives its
spec from them and states its weight layout, capabilities and length rule in an
:class:`~.base.Architecture`; this registry is the one place that picks among them. A third
architecture is a module beside :mod:`.rnn` and :mod:`.transformer` and one entry in
:data:`ARCHITECTURES`; a new key of one is a field of its table (and the backends that
compute with it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal, Union, get_args

import numpy as np
from pydantic import Discriminator, Tag

from . import rnn, transformer
from .base import Architecture, Keys, spec_of
from .rnn import ModelSpec, RNNConfig
from .transformer import TransformerConfig, TransformerSpec, sinusoidal_positions

__all__ = [
    "ARCHITECTURES",
    "FREEZE_GROUPS",
    "Architecture",
    "FreezeGroup",
    "ModelConfig",
    "ModelSpec",
    "RNNConfig",
    "Spec",
    "TransformerConfig",
    "TransformerSpec",
    "architecture_of",
    "decoding_cap",
    "frozen_weights",
    "initial_weights",
    "max_source_tokens",
    "max_target_tokens",
    "model_sizes",
    "model_width",
    "required_capabilities",
    "sinusoidal_positions",
    "spec_for",
    "spec_from_dict",
    "spec_of",
    "weight_shapes",
]

#: Every architecture by its name; the first is the default (``model.architecture`` absent).
ARCHITECTURES: dict[str, Architecture] = {
    a.name: a for a in (rnn.ARCHITECTURE, transformer.ARCHITECTURE)
}

#: Any architecture's spec.
Spec = ModelSpec | TransformerSpec


def architecture_of(keys: Keys | str) -> Architecture:
    """The architecture of a spec, of a ``[model]`` table, or of that name.

    Raises:
        ValueError: an architecture no module defines.
    """
    name = keys if isinstance(keys, str) else getattr(keys, "architecture", keys)
    try:
        return ARCHITECTURES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown model architecture {name!r}; known: {list(ARCHITECTURES)}"
        ) from None


def _tag(data: Any) -> str | None:
    """The tag of a ``[model]`` table: its ``architecture``, the default when absent."""
    default = next(iter(ARCHITECTURES))
    if isinstance(data, dict):
        name = data.get("architecture", default)
        return name if isinstance(name, str) else None
    return getattr(data, "architecture", default)


#: ``[model]``: one architecture's table, chosen by its ``architecture`` key.
ModelConfig = Annotated[
    Union[tuple(Annotated[a.config, Tag(name)] for name, a in ARCHITECTURES.items())],  # noqa: UP007
    Discriminator(
        _tag,
        custom_error_type="architecture",
        custom_error_message=f"architecture must be one of {list(ARCHITECTURES)}",
    ),
]


def spec_from_dict(data: dict[str, Any]) -> Spec:
    """Rebuild a spec saved by ``to_dict``; a dict without ``architecture`` (saved before
    there was a choice) is an RNN.

    Raises:
        ValueError: an unknown architecture, an unknown key, or a value the spec refuses.
    """
    if not isinstance(data, dict):
        raise ValueError(f"a model spec must be a mapping of keys to values, got {data!r:.80}")
    return architecture_of(data.get("architecture", "rnn")).spec.from_dict(data)


def spec_for(model: Keys, src_vocab_size: int, tgt_vocab_size: int) -> Spec:
    """The spec a ``[model]`` table describes, for vocabularies of these sizes.

    Raises:
        ValueError: a value the spec refuses (e.g. ``share_embeddings`` with vocabularies of
            different sizes).
    """
    keys = {k: v for k, v in model.model_dump().items() if k != "architecture"}
    return architecture_of(model).spec(
        src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size, **keys
    )


def weight_shapes(spec: Spec) -> dict[str, tuple[int, ...]]:
    """Return the canonical ``name -> shape`` map of ``spec``, in a fixed order."""
    return architecture_of(spec).shapes(spec)


def initial_weights(spec: Spec, seed: int) -> dict[str, np.ndarray]:
    """Seeded float32 initial weights in ``spec``'s canonical layout (each architecture's
    ``initial_weights``: Keras' defaults for the RNN, fairseq's for the Transformer)."""
    return architecture_of(spec).initial_weights(spec, seed)


def required_capabilities(spec: Spec) -> set[str]:
    """The capabilities a backend must declare to build ``spec``."""
    return architecture_of(spec).capabilities(spec)


def model_width(spec: Keys) -> int:
    """The ``d_model`` of the noam schedule: a Transformer's ``d_model``, an RNN's
    ``hidden_size``."""
    return getattr(spec, architecture_of(spec).width)


def max_source_tokens(model: Keys) -> int | None:
    """The longest source a model (a spec or a ``[model]`` table) can encode: a
    Transformer's ``max_positions``; None (no limit) for an RNN."""
    key = architecture_of(model).positions
    return None if key is None else getattr(model, key)


def max_target_tokens(model: Keys) -> int | None:
    """The most target tokens a model can be trained on or decode (EOS not counted): a
    Transformer's ``max_positions - 1``, since the decoder input starts with BOS; None (no
    limit) for an RNN."""
    positions = max_source_tokens(model)
    return None if positions is None else positions - 1


def decoding_cap(spec: Spec, max_length: int) -> int:
    """``max_length`` within what the model can decode: a Transformer's decoder has
    ``max_positions`` positions, BOS in the first, so at most ``max_positions - 1`` tokens
    (a hypothesis stopped there is truncated, as at any ``max_length``)."""
    limit = max_target_tokens(spec)
    return max_length if limit is None else min(max_length, limit)


def model_sizes(spec: Spec) -> str:
    """The settings that decide the memory of ``spec``'s model, for messages:
    ``model.hidden_size = 32, model.embedding_size = 0, model.num_layers = 1 or the
    vocabularies (...)``."""
    keys = architecture_of(spec).size_keys
    listed = ", ".join(f"model.{k} = {getattr(spec, k)}" for k in keys)
    return (
        f"{listed} or the vocabularies ({spec.src_vocab_size} source, {spec.tgt_vocab_size} "
        f"target ids; data.tokenizer_options max_size or vocab_size bound them)"
    )


#: A group of weights ``[train] freeze`` may name.
FreezeGroup = Literal["encoder", "decoder", "embeddings", "positions", "output"]

#: Which canonical names (:mod:`seq2seq_kit.weights`) each :data:`FreezeGroup` covers, by
#: the layout's naming, the same in every architecture: ``encoder``: every ``encoder.*``
#: weight (with ``share_embeddings`` the one table both sides use); ``decoder``: every
#: ``decoder.*`` weight, the output projection included; ``embeddings``: each side's
#: ``embedding`` (with ``tie_output_embeddings`` the output kernel too, being that table);
#: ``positions``: a Transformer's ``{side}.positions`` (``"learned"`` or ``"table"``);
#: ``output``: ``decoder.output.*``.
FREEZE_GROUPS: dict[str, Callable[[str], bool]] = {
    "encoder": lambda name: name.startswith("encoder."),
    "decoder": lambda name: name.startswith("decoder."),
    "embeddings": lambda name: name.endswith(".embedding"),
    "positions": lambda name: name.endswith(".positions"),
    "output": lambda name: name.startswith("decoder.output."),
}
assert set(FREEZE_GROUPS) == set(get_args(FreezeGroup))


def frozen_weights(spec: Spec, groups: Iterable[str] = ()) -> tuple[str, ...]:
    """The canonical names training keeps fixed (:attr:`OptimizerSpec.frozen
    <seq2seq_kit.spec.OptimizerSpec>`): those of ``groups`` (:data:`FREEZE_GROUPS`) and
    those no run trains (a Transformer's position ``"table"``), sorted.

    Raises:
        ValueError: a group that is not one of :data:`FREEZE_GROUPS`, or that names no
            weight of ``spec`` (``positions`` of an RNN or of sinusoidal positions); groups
            that freeze every weight.
    """
    names = set(architecture_of(spec).fixed(spec))
    layout = weight_shapes(spec)
    for group in groups:
        if group not in FREEZE_GROUPS:
            raise ValueError(f"unknown weight group {group!r}; known: {list(FREEZE_GROUPS)}")
        matched = {name for name in layout if FREEZE_GROUPS[group](name)}
        if not matched:
            raise ValueError(
                f"weight group {group!r} names no weight of this {spec.architecture} model: "
                f"{_none_in(spec, group)}"
            )
        names |= matched
    if groups and names == set(layout):
        raise ValueError(
            f"weight groups {list(groups)} cover every weight of the model: nothing would train"
        )
    return tuple(sorted(names))


def _none_in(spec: Spec, group: str) -> str:
    """Why ``spec`` has no weight of ``group``, for :func:`frozen_weights`' message."""
    if group == "positions" and getattr(spec, "positions", None) == "sinusoidal":
        return "its positions are sinusoidal, computed rather than stored"
    if group == "embeddings" and getattr(spec, "embedding_size", None) == 0:
        return "its inputs are one-hot (embedding_size = 0)"
    return f"it has no {group} weights"
