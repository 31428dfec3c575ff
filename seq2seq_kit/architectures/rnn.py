"""The RNN encoder-decoder: its ``[model]`` keys, its spec, weight layout and capabilities."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ..section import Section
from .base import Architecture, spec_of


class RNNConfig(Section):
    """``[model]`` of an RNN encoder-decoder (:class:`ModelSpec`): the architecture when
    ``architecture`` is absent, so configs and model directories written before there was a
    choice load unchanged."""

    architecture: Literal["rnn"] = Field(
        "rnn", description="rnn (recurrent encoder-decoder) or transformer"
    )
    # Upper bounds far above any RNN anyone trains: a typo gets an error, not a hang or a
    # crash inside the backend.
    hidden_size: int = Field(32, ge=1, le=65536, description="units of each recurrent layer")
    embedding_size: int = Field(0, ge=0, le=65536, description="0: one-hot inputs")
    num_layers: int = Field(1, ge=1, le=128, description="stacked recurrent layers on each side")
    cell: Literal["lstm", "gru"] = Field("lstm", description="recurrent cell: lstm or gru")
    bidirectional: bool = Field(False, description="encoder reads both ways (H/2 units each)")
    attention: Literal["none", "dot", "general", "bahdanau"] = Field(
        "none", description="none, or Luong dot / general, or Bahdanau (additive) attention"
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="during training only")

    @model_validator(mode="after")
    def _even_bidirectional(self) -> RNNConfig:
        if self.bidirectional and self.hidden_size % 2:
            raise ValueError(
                f"hidden_size must be even with bidirectional = true (each direction has "
                f"hidden_size // 2 units), got {self.hidden_size}"
            )
        return self


@spec_of(RNNConfig)
class ModelSpec:
    """Architecture of an RNN encoder-decoder (Sutskever et al. 2014, "Sequence to Sequence
    Learning with Neural Networks"; the seed's Keras model is ``ModelSpec(V_src, V_tgt)``).

    ``architecture`` is ``"rnn"`` (a class constant, saved by ``to_dict``). The keys after
    the vocabulary sizes, their defaults and rules are :class:`RNNConfig`'s.

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

    @property
    def has_attention(self) -> bool:
        """Whether ``Model.attention`` returns weights (an attention model)."""
        return self.attention != "none"

    @property
    def gates(self) -> int:
        """Gate blocks per recurrent weight matrix: 4 for LSTM, 3 for GRU."""
        return 4 if self.cell == "lstm" else 3


def shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """The RNN's canonical ``name -> shape`` layout (:mod:`seq2seq_kit.weights`)."""
    hidden, emb, gates = spec.hidden_size, spec.embedding_size, spec.gates
    out: dict[str, tuple[int, ...]] = {}

    def rnn(prefix: str, width: int, units: int) -> None:
        out[f"{prefix}.kernel"] = (width, gates * units)
        out[f"{prefix}.recurrent_kernel"] = (units, gates * units)
        out[f"{prefix}.bias"] = (gates * units,) if spec.cell == "lstm" else (2, gates * units)

    for side, vocab in (("encoder", spec.src_vocab_size), ("decoder", spec.tgt_vocab_size)):
        directions = (
            ("rnn", "rnn_reverse") if side == "encoder" and spec.bidirectional else ("rnn",)
        )
        units = hidden // len(directions)
        if emb:
            out[f"{side}.embedding"] = (vocab, emb)
        for direction in directions:
            for layer in range(spec.num_layers):
                width = (emb or vocab) if layer == 0 else hidden
                rnn(f"{side}.{direction}.{layer}", width, units)
    if spec.attention == "general":
        out["decoder.attention.kernel"] = (hidden, hidden)
    elif spec.attention == "bahdanau":
        out["decoder.attention.query_kernel"] = (hidden, hidden)
        out["decoder.attention.memory_kernel"] = (hidden, hidden)
        out["decoder.attention.v"] = (hidden,)
    if spec.attention != "none":
        out["decoder.attention.output_kernel"] = (2 * hidden, hidden)
    out["decoder.output.kernel"] = (hidden, spec.tgt_vocab_size)
    out["decoder.output.bias"] = (spec.tgt_vocab_size,)
    return out


def initial_weights(spec: ModelSpec, seed: int) -> dict[str, np.ndarray]:
    """Seeded float32 initial weights in the canonical layout, Keras' defaults for LSTM and
    Dense: Glorot-uniform kernels (Glorot & Bengio 2010), orthogonal recurrent kernels
    (Saxe et al. 2014), zero biases with the LSTM forget-gate bias set to 1 (Jozefowicz et
    al. 2015, Keras ``unit_forget_bias``), embeddings uniform in [-0.05, 0.05], the additive
    attention vector Glorot-uniform as a [H, 1] matrix.

    Backends start from these so that one seed gives one model whatever the framework.
    """
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for name, shape in shapes(spec).items():
        if name.endswith("embedding"):
            value = rng.uniform(-0.05, 0.05, shape)
        elif name.endswith("recurrent_kernel"):
            value = _orthogonal_gates(rng, shape[0], spec.gates)
        elif name.endswith("kernel"):
            limit = np.sqrt(6.0 / (shape[0] + shape[1]))
            value = rng.uniform(-limit, limit, shape)
        elif name.endswith(".v"):
            limit = np.sqrt(6.0 / (shape[0] + 1))
            value = rng.uniform(-limit, limit, shape)
        else:
            value = np.zeros(shape)
            if ".rnn" in name and spec.cell == "lstm":
                units = shape[0] // 4
                value[units : 2 * units] = 1.0
        weights[name] = value.astype(np.float32)
    return weights


def _orthogonal_gates(rng: np.random.Generator, hidden: int, gates: int) -> np.ndarray:
    # Keras' Orthogonal initializer on the [H, G*H] matrix: QR of a Gaussian, sign-fixed.
    a = rng.normal(size=(gates * hidden, hidden))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    return q.T


def capabilities(spec: ModelSpec) -> set[str]:
    """The capabilities a backend must declare to build ``spec``."""
    needed = {
        "embedding": spec.embedding_size > 0,
        "multilayer": spec.num_layers > 1,
        "gru": spec.cell == "gru",
        "bidirectional": spec.bidirectional,
        "attention": spec.attention != "none",
        "dropout": spec.dropout > 0,
    }
    return {name for name, used in needed.items() if used}


ARCHITECTURE = Architecture(
    name="rnn",
    config=RNNConfig,
    spec=ModelSpec,
    shapes=shapes,
    initial_weights=initial_weights,
    capabilities=capabilities,
    width="hidden_size",
    size_keys=("hidden_size", "embedding_size", "num_layers"),
    positions=None,  # a recurrent model reads and writes any length
    attention=lambda spec: f"rnn {spec.attention} attention",
)
