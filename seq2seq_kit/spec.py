"""What a backend builds: the model architecture and the optimizer, as plain dataclasses.

A spec holds no tensors and imports no framework; it is saved inside every checkpoint
(``model.json``) so that any backend can rebuild the same model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

CELLS = ("lstm", "gru")
ATTENTION = ("none", "dot", "general", "bahdanau")
ARCHITECTURES = ("rnn", "transformer")
ACTIVATIONS = ("relu", "gelu")
LAYER_NORMS = ("pre", "post")
POSITIONS = ("sinusoidal", "learned")


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of an RNN encoder-decoder (Sutskever et al. 2014, "Sequence to Sequence
    Learning with Neural Networks"; the seed's Keras model is ``ModelSpec(V_src, V_tgt)``).

    ``architecture`` is ``"rnn"`` (a class constant, saved by :meth:`to_dict`).

    Attributes:
        src_vocab_size: number of source ids, specials included.
        tgt_vocab_size: number of target ids, specials included.
        hidden_size: units of every recurrent layer (the seed's ``latent_dim``: 32).
        embedding_size: 0 feeds one-hot vectors of the vocabulary size into the first
            layer (as the seed does); > 0 looks ids up in a learned embedding table.
        num_layers: stacked recurrent layers on each side; layer ``l`` of the encoder
            hands its final state to layer ``l`` of the decoder.
        cell: recurrent cell; ``"lstm"`` (Hochreiter & Schmidhuber 1997, with a forget gate)
            or ``"gru"`` (Cho et al. 2014, reset gate applied after the recurrent matmul, as
            Keras' ``reset_after=True`` and PyTorch's ``nn.GRU``).
        bidirectional: the encoder reads the source both ways, each direction with
            ``hidden_size // 2`` units; their outputs and final states are concatenated
            (forward first) to ``hidden_size``, as OpenNMT's ``brnn`` encoder.
        attention: ``"none"``; or global attention over the top encoder outputs after the
            top decoder layer (Luong et al. 2015), scored ``"dot"``, ``"general"`` (bilinear)
            or ``"bahdanau"`` (additive, Bahdanau et al. 2015; OpenNMT's ``mlp``).
        dropout: inverted-dropout rate during ``train_step`` only, on embeddings, between
            stacked layers and on the top decoder output (Zaremba et al. 2014); 0 disables.
    """

    src_vocab_size: int
    tgt_vocab_size: int
    hidden_size: int = 32
    embedding_size: int = 0
    num_layers: int = 1
    cell: str = "lstm"
    bidirectional: bool = False
    attention: str = "none"
    dropout: float = 0.0

    architecture: ClassVar[str] = "rnn"

    def __post_init__(self) -> None:
        _check_types(self)
        for name in ("src_vocab_size", "tgt_vocab_size", "hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"ModelSpec.{name} must be >= 1, got {getattr(self, name)}")
        if self.embedding_size < 0:
            raise ValueError(f"ModelSpec.embedding_size must be >= 0, got {self.embedding_size}")
        if self.cell not in CELLS:
            raise ValueError(f"ModelSpec.cell must be one of {CELLS}, got {self.cell!r}")
        if self.attention not in ATTENTION:
            raise ValueError(
                f"ModelSpec.attention must be one of {ATTENTION}, got {self.attention!r}"
            )
        if self.bidirectional and self.hidden_size % 2:
            raise ValueError(
                f"ModelSpec.hidden_size must be even with a bidirectional encoder "
                f"(each direction has hidden_size // 2 units), got {self.hidden_size}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelSpec.dropout must be in [0, 1), got {self.dropout}")

    @property
    def has_attention(self) -> bool:
        """Whether ``Model.attention`` returns weights (an attention model)."""
        return self.attention != "none"

    @property
    def gates(self) -> int:
        """Gate blocks per recurrent weight matrix: 4 for LSTM, 3 for GRU."""
        return 4 if self.cell == "lstm" else 3

    def to_dict(self) -> dict[str, Any]:
        return {"architecture": self.architecture, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class TransformerSpec:
    """Architecture of a Transformer encoder-decoder (Vaswani et al. 2017, "Attention Is All
    You Need"; ``architecture`` is ``"transformer"``). ``D`` is ``d_model``.

    Inputs are ``embedding[id] * sqrt(D) + position[t]`` (section 3.4), positions counted
    from 0 on each side. Every attention is scaled dot-product multi-head attention
    (section 3.2) with ``num_heads`` heads of ``D // num_heads`` units. A query that may see
    no key (a source of length 0) gets zero weights and a zero context.

    Attributes:
        src_vocab_size: number of source ids, specials included.
        tgt_vocab_size: number of target ids, specials included.
        encoder_layers: encoder layers (self-attention, feed-forward).
        decoder_layers: decoder layers (causal self-attention, cross-attention over the
            encoder output, feed-forward).
        d_model: width of every layer's input and output (and of the embeddings).
        num_heads: attention heads; must divide ``d_model``.
        ff_size: inner width of each position-wise feed-forward block.
        dropout: inverted-dropout rate during ``train_step`` only: on the embedded inputs and
            on each sub-layer's output before the residual sum (section 5.4).
        attention_dropout: dropout rate on attention weights during ``train_step`` only.
        activation: feed-forward non-linearity, ``"relu"`` (the paper's) or ``"gelu"``
            (Hendrycks & Gimpel 2016, the exact erf form).
        layer_norm: ``"pre"``: ``x + sublayer(norm(x))`` with a final norm on each side
            (Wang et al. 2019; fairseq's ``--encoder-normalize-before``); ``"post"``:
            ``norm(x + sublayer(x))``, the paper's. Norms use epsilon 1e-5.
        positions: ``"sinusoidal"`` (section 3.5, sine on even and cosine on odd
            features) or ``"learned"`` (a trained table per side).
        max_positions: the longest sequence a side may have (the target counted with its
            BOS); decoding stops there.
        tie_output_embeddings: the output projection's kernel is the transposed target
            embedding (Press & Wolf 2017); no ``decoder.output.kernel`` is stored.
        share_embeddings: the source and target use one embedding table (needs equal
            vocabularies, i.e. a shared vocabulary); no ``decoder.embedding`` is stored.
    """

    src_vocab_size: int
    tgt_vocab_size: int
    encoder_layers: int = 2
    decoder_layers: int = 2
    d_model: int = 64
    num_heads: int = 4
    ff_size: int = 256
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation: str = "relu"
    layer_norm: str = "pre"
    positions: str = "sinusoidal"
    max_positions: int = 512
    tie_output_embeddings: bool = False
    share_embeddings: bool = False

    architecture: ClassVar[str] = "transformer"

    def __post_init__(self) -> None:
        _check_types(self)
        for name in (
            "src_vocab_size",
            "tgt_vocab_size",
            "encoder_layers",
            "decoder_layers",
            "d_model",
            "num_heads",
            "ff_size",
            "max_positions",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"TransformerSpec.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_positions < 2:
            raise ValueError(
                "TransformerSpec.max_positions must be >= 2 (the target's BOS and one token), "
                f"got {self.max_positions}"
            )
        if self.d_model % self.num_heads:
            raise ValueError(
                f"TransformerSpec.num_heads ({self.num_heads}) must divide d_model ({self.d_model})"
            )
        for name in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(
                    f"TransformerSpec.{name} must be in [0, 1), got {getattr(self, name)}"
                )
        for name, allowed in (
            ("activation", ACTIVATIONS),
            ("layer_norm", LAYER_NORMS),
            ("positions", POSITIONS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"TransformerSpec.{name} must be one of {allowed}, got {getattr(self, name)!r}"
                )
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                "TransformerSpec.share_embeddings needs one vocabulary for both sides "
                f"(set [data] shared_vocabulary = true); the source has {self.src_vocab_size} "
                f"ids and the target {self.tgt_vocab_size}"
            )

    @property
    def has_attention(self) -> bool:
        """Always: ``Model.attention`` returns the top decoder layer's cross-attention."""
        return True

    @property
    def head_size(self) -> int:
        """Units of one attention head: ``d_model // num_heads``."""
        return self.d_model // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        return {"architecture": self.architecture, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TransformerSpec:
        return _from_dict(cls, data)


#: Any architecture's spec.
Spec = ModelSpec | TransformerSpec

_SPECS: dict[str, type] = {"rnn": ModelSpec, "transformer": TransformerSpec}


def spec_from_dict(data: dict[str, Any]) -> Spec:
    """Rebuild a spec saved by ``to_dict``; a dict without ``architecture`` (saved before
    there was a choice) is an RNN.

    Raises:
        ValueError: an unknown architecture, an unknown key, or a value the spec refuses.
    """
    if not isinstance(data, dict):
        raise ValueError(f"a model spec must be a mapping of keys to values, got {data!r:.80}")
    name = data.get("architecture", "rnn")
    if not isinstance(name, str) or name not in _SPECS:
        raise ValueError(f"unknown model architecture {name!r}; known: {list(_SPECS)}")
    return _SPECS[name].from_dict(data)


def max_target_tokens(spec: Spec) -> int | None:
    """The most target tokens a model can be trained on or decode (EOS not counted): a
    Transformer's ``max_positions - 1``, since the decoder input starts with BOS; None (no
    limit) for an RNN."""
    return spec.max_positions - 1 if isinstance(spec, TransformerSpec) else None


def max_source_tokens(spec: Spec) -> int | None:
    """The longest source a model can encode: a Transformer's ``max_positions``; None (no
    limit) for an RNN."""
    return spec.max_positions if isinstance(spec, TransformerSpec) else None


_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def _check_types(spec: Any) -> None:
    """Refuse a field whose value is not of its annotated type (a spec read from a hand-edited
    ``model.json`` or built in Python): ints are ints (not bools or floats), floats are
    finite numbers, flags are bools and choices are strings."""
    for f in fields(spec):
        value, expected = getattr(spec, f.name), _TYPES[f.type]
        if expected is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            ok = ok and math.isfinite(value)
        elif expected is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, expected)
        if not ok:
            kind = {"int": "an integer", "float": "a finite number", "bool": "true or false"}
            raise ValueError(
                f"{type(spec).__name__}.{f.name} must be {kind.get(f.type, 'a string')}, "
                f"got {value!r:.40}"
            )


def _from_dict(cls: type, data: dict[str, Any]):
    data = dict(data)
    architecture = data.pop("architecture", cls.architecture)
    if architecture != cls.architecture:
        raise ValueError(f"a {cls.__name__} cannot hold architecture {architecture!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown model spec keys {unknown}; known: {sorted(known)}")
    return cls(**data)


@dataclass(frozen=True)
class OptimizerSpec:
    """Adam (Kingma & Ba 2015, Algorithm 1, bias-corrected) with global gradient-norm
    clipping (Pascanu et al. 2013): gradients are scaled by ``min(1, clip_norm / ||g||_2)``
    over all parameters together before the update.

    The reference form adds ``epsilon`` to ``sqrt(v_hat)`` (the paper's and PyTorch's);
    Keras adds it before bias correction. Backends may use their framework's Adam: the
    forms differ by far less than training noise, and the suite compares gradients, not
    optimizer trajectories.

    Attributes:
        learning_rate: step size alpha (the seed's Keras Adam default: 0.001).
        beta1, beta2: moment decay rates (paper defaults 0.9, 0.999).
        epsilon: numerical-stability term; 1e-7, Keras' default.
        clip_norm: maximum global L2 norm of the gradient; 0 disables clipping.
        label_smoothing: epsilon of label smoothing (Szegedy et al. 2016, section 7): the
            training objective at each non-pad target position is
            ``(1 - epsilon) * -log p(y) + epsilon * mean_v(-log p(v))`` over all ``V`` ids,
            i.e. cross-entropy against ``(1 - epsilon) * one_hot(y) + epsilon / V``
            (PyTorch's ``CrossEntropyLoss(label_smoothing=)``, Keras' ``label_smoothing``).
            ``train_step``, ``loss`` and ``gradients`` all use it; ``log_probs`` does not.
    """

    learning_rate: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-7
    clip_norm: float = 5.0
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(
                f"OptimizerSpec.label_smoothing must be in [0, 1), got {self.label_smoothing}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_SIZE_KEYS = {
    "rnn": ("hidden_size", "embedding_size", "num_layers"),
    "transformer": ("d_model", "ff_size", "encoder_layers", "decoder_layers", "max_positions"),
}


def model_sizes(spec: Spec) -> str:
    """The settings that decide the memory of ``spec``'s model, for messages:
    ``model.hidden_size = 32, model.embedding_size = 0, model.num_layers = 1 or the
    vocabularies (...)``."""
    keys = ", ".join(f"model.{k} = {getattr(spec, k)}" for k in _SIZE_KEYS[spec.architecture])
    return (
        f"{keys} or the vocabularies ({spec.src_vocab_size} source, {spec.tgt_vocab_size} "
        f"target ids; data.tokenizer_options max_size or vocab_size bound them)"
    )


def decoding_cap(spec: Spec, max_length: int) -> int:
    """``max_length`` within what the model can decode: a Transformer's decoder has
    ``max_positions`` positions, BOS in the first, so at most ``max_positions - 1`` tokens
    (a hypothesis stopped there is truncated, as at any ``max_length``)."""
    limit = max_target_tokens(spec)
    return max_length if limit is None else min(max_length, limit)
