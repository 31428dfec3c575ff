"""What a backend builds: the model architecture and the optimizer, as plain dataclasses.

A spec holds no tensors and imports no framework; it is saved inside every checkpoint
(``model.json``) so that any backend can rebuild the same model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

CELLS = ("lstm", "gru")
ATTENTION = ("none", "dot", "general", "bahdanau")


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of an RNN encoder-decoder (Sutskever et al. 2014, "Sequence to Sequence
    Learning with Neural Networks"; the seed's Keras model is ``ModelSpec(V_src, V_tgt)``).

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

    def __post_init__(self) -> None:
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
    def gates(self) -> int:
        """Gate blocks per recurrent weight matrix: 4 for LSTM, 3 for GRU."""
        return 4 if self.cell == "lstm" else 3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
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
    """

    learning_rate: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-7
    clip_norm: float = 5.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
