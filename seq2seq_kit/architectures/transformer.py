"""The Transformer encoder-decoder: its ``[model]`` keys, its spec, weight layout and
capabilities."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ..section import Section
from .base import Architecture, spec_of


class TransformerConfig(Section):
    """``[model]`` of a Transformer encoder-decoder (:class:`TransformerSpec`)."""

    architecture: Literal["transformer"] = Field(
        "transformer", description="rnn (recurrent encoder-decoder) or transformer"
    )
    # Upper bounds: as for the RNN, far above what anyone trains here, so a typo is an error.
    encoder_layers: int = Field(2, ge=1, le=128, description="encoder layers")
    decoder_layers: int = Field(2, ge=1, le=128, description="decoder layers")
    d_model: int = Field(
        64, ge=1, le=65536, description="width of every layer and of the embeddings"
    )
    num_heads: int = Field(4, ge=1, le=1024, description="attention heads; must divide d_model")
    ff_size: int = Field(256, ge=1, le=262144, description="inner width of each feed-forward block")
    dropout: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="on embedded inputs and each sub-layer's output, during training only",
    )
    attention_dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="on attention weights, during training only"
    )
    activation: Literal["relu", "gelu", "swish"] = Field(
        "relu", description="feed-forward non-linearity: relu, gelu or swish"
    )
    layer_norm: Literal["pre", "post"] = Field(
        "pre", description="pre: normalise each sub-layer's input; post: its residual sum"
    )
    positions: Literal["sinusoidal", "learned", "table"] = Field(
        "sinusoidal",
        description="position encodings: sinusoidal, learned (a trained table per side) or "
        "table (a stored table per side that training never changes: an imported model's)",
    )
    # 2: a target needs a position for its BOS and one for a token.
    max_positions: int = Field(
        512,
        ge=2,
        le=65536,
        description="longest source, and longest target counted with its BOS: longer "
        "training pairs are skipped, decoding stops there, longer inputs are refused",
    )
    tie_output_embeddings: bool = Field(
        False, description="output projection = transposed target embedding"
    )
    share_embeddings: bool = Field(
        False,
        description="one embedding table for both sides (needs data.shared_vocabulary = true)",
    )

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TransformerConfig:
        if self.d_model % self.num_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must divide d_model ({self.d_model}): each head "
                f"has d_model // num_heads units"
            )
        return self


@spec_of(TransformerConfig)
class TransformerSpec:
    """Architecture of a Transformer encoder-decoder (Vaswani et al. 2017, "Attention Is All
    You Need"; ``architecture`` is ``"transformer"``). ``D`` is ``d_model``. The keys after
    the vocabulary sizes, their defaults and rules are :class:`TransformerConfig`'s.

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
        activation: feed-forward non-linearity, ``"relu"`` (the paper's), ``"gelu"``
            (Hendrycks & Gimpel 2016, the exact erf form) or ``"swish"``
            (``h * sigmoid(h)``, Ramachandran et al. 2017, "Searching for Activation
            Functions"; also called SiLU).
        layer_norm: ``"pre"``: ``x + sublayer(norm(x))`` with a final norm on each side
            (Wang et al. 2019; fairseq's ``--encoder-normalize-before``); ``"post"``:
            ``norm(x + sublayer(x))``, the paper's. Norms use epsilon 1e-5.
        positions: ``"sinusoidal"`` (section 3.5, sine on even and cosine on odd
            features), ``"learned"`` (a trained table per side) or ``"table"`` (a table
            per side given with the weights, e.g. an imported model's other sinusoids:
            the weights and the forward pass of ``"learned"``, but never trained, since
            training adds them to :attr:`~seq2seq_kit.spec.OptimizerSpec.frozen`,
            :func:`fixed_weights`).
        max_positions: the longest sequence a side may have (the target counted with its
            BOS); decoding stops there.
        tie_output_embeddings: the output projection's kernel is the transposed target
            embedding (Press & Wolf 2017); no ``decoder.output.kernel`` is stored.
        share_embeddings: the source and target use one embedding table (needs equal
            vocabularies, i.e. a shared vocabulary); no ``decoder.embedding`` is stored.
    """

    def check(self) -> None:
        """The rule that needs the vocabulary sizes: a shared table needs equal ones."""
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
    def stored_positions(self) -> bool:
        """Whether the positions are weights (``{side}.positions`` [max_positions, D]):
        ``"learned"`` and ``"table"``, which compute alike."""
        return self.positions != "sinusoidal"

    @property
    def head_size(self) -> int:
        """Units of one attention head: ``d_model // num_heads``."""
        return self.d_model // self.num_heads


def shapes(spec: TransformerSpec) -> dict[str, tuple[int, ...]]:
    """The Transformer's canonical ``name -> shape`` layout (:mod:`seq2seq_kit.weights`)."""
    d, ff, out = spec.d_model, spec.ff_size, {}

    def norm(prefix: str) -> None:
        out[f"{prefix}.scale"] = out[f"{prefix}.bias"] = (d,)

    def attention(prefix: str) -> None:
        for part in ("query", "key", "value", "output"):
            out[f"{prefix}.{part}.kernel"] = (d, d)
            out[f"{prefix}.{part}.bias"] = (d,)
        norm(f"{prefix}_norm")

    for side, vocab, layers in (
        ("encoder", spec.src_vocab_size, spec.encoder_layers),
        ("decoder", spec.tgt_vocab_size, spec.decoder_layers),
    ):
        if side == "encoder" or not spec.share_embeddings:
            out[f"{side}.embedding"] = (vocab, d)
        if spec.stored_positions:
            out[f"{side}.positions"] = (spec.max_positions, d)
        for layer in range(layers):
            prefix = f"{side}.layers.{layer}"
            attention(f"{prefix}.self_attention")
            if side == "decoder":
                attention(f"{prefix}.cross_attention")
            out[f"{prefix}.feed_forward.inner.kernel"] = (d, ff)
            out[f"{prefix}.feed_forward.inner.bias"] = (ff,)
            out[f"{prefix}.feed_forward.outer.kernel"] = (ff, d)
            out[f"{prefix}.feed_forward.outer.bias"] = (d,)
            norm(f"{prefix}.feed_forward_norm")
        if spec.layer_norm == "pre":
            norm(f"{side}.final_norm")
    if not spec.tie_output_embeddings:
        out["decoder.output.kernel"] = (d, spec.tgt_vocab_size)
    out["decoder.output.bias"] = (spec.tgt_vocab_size,)
    return out


def sinusoidal_positions(count: int, width: int) -> np.ndarray:
    """float32 [count, width] position encodings of Vaswani et al. 2017, section 3.5:
    ``PE[t, 2i] = sin(t / 10000^(2i / width))``, ``PE[t, 2i+1] = cos(t / 10000^(2i / width))``
    (for an odd ``width`` the last feature is a sine)."""
    positions = np.arange(count, dtype=np.float64)[:, None]
    rates = 10000.0 ** (-(np.arange(width) // 2 * 2) / width)
    angles = positions * rates[None, :]
    table = np.where(np.arange(width) % 2 == 0, np.sin(angles), np.cos(angles))
    return table.astype(np.float32)


def initial_weights(spec: TransformerSpec, seed: int) -> dict[str, np.ndarray]:
    """fairseq's Transformer initialisation: embeddings and learned positions normal with
    standard deviation ``d_model ** -0.5`` (they are scaled by ``sqrt(d_model)`` in the
    forward pass), Glorot-uniform kernels, zero biases, norms with scale 1 and bias 0. A
    position ``"table"`` starts as the sinusoids (:func:`sinusoidal_positions`), since it
    is never trained; the other weights are those of ``"learned"`` for the same seed."""
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for name, shape in shapes(spec).items():
        if name.endswith(("embedding", "positions")):
            value = rng.normal(0.0, spec.d_model**-0.5, shape)
            if name.endswith("positions") and spec.positions == "table":
                value = sinusoidal_positions(*shape)
        elif name.endswith("kernel"):
            limit = np.sqrt(6.0 / (shape[0] + shape[1]))
            value = rng.uniform(-limit, limit, shape)
        elif name.endswith("scale"):
            value = np.ones(shape)
        else:
            value = np.zeros(shape)
        weights[name] = value.astype(np.float32)
    return weights


def fixed_weights(spec: TransformerSpec) -> tuple[str, ...]:
    """The weights no training run changes: both sides' ``positions`` when they are a given
    ``"table"``."""
    if spec.positions != "table":
        return ()
    return ("encoder.positions", "decoder.positions")


def capabilities(spec: TransformerSpec) -> set[str]:
    """The capabilities a backend must declare to build ``spec``."""
    return {"transformer"} | ({"dropout"} if spec.dropout or spec.attention_dropout else set())


ARCHITECTURE = Architecture(
    name="transformer",
    config=TransformerConfig,
    spec=TransformerSpec,
    shapes=shapes,
    initial_weights=initial_weights,
    capabilities=capabilities,
    width="d_model",
    size_keys=("d_model", "ff_size", "encoder_layers", "decoder_layers", "max_positions"),
    positions="max_positions",
    attention=lambda spec: "transformer cross-attention, top decoder layer, mean over heads",
    fixed=fixed_weights,
)
