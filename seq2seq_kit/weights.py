"""The canonical weight layouts shared by every backend, and their seeded initialisation.

Every backend's ``get_weights()`` returns, and ``set_weights()`` accepts, a ``dict[str,
numpy.ndarray]`` with exactly the names and shapes of :func:`weight_shapes`, float32. A model
trained by one backend therefore loads into any other. There is one layout per
architecture: the RNN's (``ModelSpec``) and the Transformer's (``TransformerSpec``).

RNN layout. ``H`` is ``hidden_size``; ``h`` the units of one encoder direction (``H`` or, with
a bidirectional encoder, ``H // 2``); ``G`` the gate count (4 for LSTM, 3 for GRU); ``In``
the input width of a layer: ``embedding_size`` (or the vocabulary size, with one-hot
inputs) for layer 0, the output width of the layer below otherwise (``H`` on both sides)::

    encoder.embedding                   [V_src, E]   only when embedding_size > 0
    encoder.rnn.{l}.kernel              [In, G*h]    input -> gates
    encoder.rnn.{l}.recurrent_kernel    [h, G*h]     previous hidden -> gates
    encoder.rnn.{l}.bias                [G*h]        LSTM: one bias (PyTorch's b_ih + b_hh)
                                        [2, G*h]     GRU: input bias, recurrent bias
    encoder.rnn_reverse.{l}.*           as encoder.rnn.{l}.*; bidirectional encoders only
    decoder.embedding                   [V_tgt, E]   only when embedding_size > 0
    decoder.rnn.{l}.kernel / recurrent_kernel / bias    as the encoder's, with h = H
    decoder.attention.kernel            [H, H]       "general": score = (h_t @ kernel) . m_s
    decoder.attention.query_kernel      [H, H]       "bahdanau": score =
    decoder.attention.memory_kernel     [H, H]         v . tanh(h_t @ query_kernel
    decoder.attention.v                 [H]                     + m_s @ memory_kernel)
    decoder.attention.output_kernel     [2H, H]      any attention: h~ = tanh([c_t, h_t] @ it)
    decoder.output.kernel               [H, V_tgt]   logits = h~ @ kernel + bias (h~ = h_t
    decoder.output.bias                 [V_tgt]        without attention)

Matrices act on row vectors (``x @ kernel``), as in Keras; PyTorch's ``weight_ih_l{l}`` is
``kernel.T``. The LSTM's gates are concatenated in the order input, forget, cell
candidate, output (``i, f, g, o``; Keras' and PyTorch's order)::

    z = x_t @ kernel + h_{t-1} @ recurrent_kernel + bias
    i, f, g, o = sigmoid(z_i), sigmoid(z_f), tanh(z_g), sigmoid(z_o)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

The GRU's in the order update, reset, candidate (``z, r, n``; Keras' order; PyTorch's is
``r, z, n``), with the reset gate applied after the recurrent matmul (Keras
``reset_after=True``, PyTorch ``nn.GRU``)::

    x = x_t @ kernel + bias[0];  u = h_{t-1} @ recurrent_kernel + bias[1]
    z = sigmoid(x_z + u_z);  r = sigmoid(x_r + u_r);  n = tanh(x_n + r * u_n)
    h_t = z * h_{t-1} + (1 - z) * n

Attention (Luong et al. 2015, global, after the top decoder layer, no input feeding): the
memory ``m_s`` is the top encoder layer's output at each source position (both directions
concatenated, forward first), positions at or past the source length are masked, and
``a = softmax(scores)``, ``c_t = sum_s a_s m_s``. A source of length 0 gives ``c_t = 0``.

A one-hot input of id ``k`` multiplies ``kernel`` to its row ``k``, so one-hot and embedding
models share one code path in a backend: a row gather.

Transformer layout. ``D`` is ``d_model``, ``F`` ``ff_size``, ``P`` ``max_positions``, ``N``
``num_heads``, ``d = D // N``; ``{l}`` counts layers from 0 at the bottom::

    encoder.embedding                        [V_src, D]
    encoder.positions                        [P, D]   positions = "learned" or "table"
    encoder.layers.{l}.self_attention.{query,key,value,output}.kernel   [D, D]
    encoder.layers.{l}.self_attention.{query,key,value,output}.bias     [D]
    encoder.layers.{l}.self_attention_norm.{scale,bias}                 [D]
    encoder.layers.{l}.feed_forward.inner.kernel [D, F], .bias [F]
    encoder.layers.{l}.feed_forward.outer.kernel [F, D], .bias [D]
    encoder.layers.{l}.feed_forward_norm.{scale,bias}                   [D]
    encoder.final_norm.{scale,bias}          [D]      layer_norm = "pre" only
    decoder.embedding                        [V_tgt, D]  not with share_embeddings
    decoder.positions                        [P, D]   positions = "learned" or "table"
    decoder.layers.{l}.self_attention.*, self_attention_norm.*          as the encoder's
    decoder.layers.{l}.cross_attention.*, cross_attention_norm.*        as self_attention
    decoder.layers.{l}.feed_forward.*, feed_forward_norm.*              as the encoder's
    decoder.final_norm.{scale,bias}          [D]      layer_norm = "pre" only
    decoder.output.kernel                    [D, V_tgt]  not with tie_output_embeddings
    decoder.output.bias                      [V_tgt]

With ``share_embeddings`` the decoder looks its ids up in ``encoder.embedding``; with
``tie_output_embeddings`` the logits are ``h @ E.T + bias``, ``E`` the target embedding
(``decoder.embedding``, or ``encoder.embedding`` when shared).

Kernels act on row vectors, as the RNN's. In an attention block with query input ``x``
[T, D] and key/value input ``m`` [S, D] (``m = x`` for self-attention)::

    q = x @ query.kernel + query.bias;  k = m @ key.kernel + key.bias;  v = m @ value.kernel + ...
    head n uses feature columns [n*d, (n+1)*d) of q, k and v
    a_n = softmax(q_n @ k_n.T / sqrt(d) + mask)      [T, S]  (Vaswani et al. 2017, eq. 1)
    out = concat_n(a_n @ v_n) @ output.kernel + output.bias

The mask hides source positions at or past the source length (encoder self-attention and
cross-attention) and, in decoder self-attention, every later target position (causal). A
query that sees no key gets zero weights and a zero context. PyTorch's
``nn.MultiheadAttention`` packs ``in_proj_weight = concat(query, key, value).kernel.T``.
The feed-forward block is ``act(x @ inner.kernel + inner.bias) @ outer.kernel + outer.bias``
and a norm is ``(x - mean) / sqrt(var + 1e-5) * scale + bias`` over the last axis (biased
variance). With ``layer_norm = "pre"`` each sub-layer is ``x + drop(sublayer(norm(x)))`` and
the stack's output passes ``final_norm``; with ``"post"`` it is ``norm(x + drop(sublayer(x)))``.
Logits are ``y @ decoder.output.kernel + decoder.output.bias`` on the top decoder output ``y``.
"""

from __future__ import annotations

import numpy as np

from .architectures import Spec, initial_weights, sinusoidal_positions, weight_shapes
from .architectures.rnn import initial_weights as rnn_initial_weights
from .architectures.transformer import initial_weights as transformer_initial_weights
from .ema import PREFIX as EMA_PREFIX

__all__ = [
    "LAYER_NORM_EPSILON",
    "check_optimizer_state",
    "check_weights",
    "initial_weights",
    "rnn_initial_weights",
    "sinusoidal_positions",
    "transformer_initial_weights",
    "weight_shapes",
]

#: Layer-norm epsilon of the Transformer layout (PyTorch's and fairseq's default).
LAYER_NORM_EPSILON = 1e-5


def check_weights(spec: Spec, weights: dict[str, np.ndarray]) -> None:
    """Raise ``ValueError`` naming every missing, unexpected or mis-shaped weight."""
    expected = weight_shapes(spec)
    problems = [
        f"missing {name} {shape}" for name, shape in expected.items() if name not in weights
    ]
    problems += [f"unexpected {name}" for name in weights if name not in expected]
    problems += [
        f"{name} has shape {tuple(weights[name].shape)}, expected {shape}"
        for name, shape in expected.items()
        if name in weights and tuple(weights[name].shape) != shape
    ]
    if problems:
        raise ValueError("weights do not match the model spec: " + "; ".join(problems))


def check_optimizer_state(spec: Spec, state: dict[str, np.ndarray], *, ema: bool = False) -> None:
    """Raise ``ValueError`` naming every missing, unexpected or mis-shaped entry of an
    optimizer state of a ``spec`` model (see ``Model.optimizer_state``: ``step``, ``learning_rate``,
    ``seed``, ``m/NAME``, ``v/NAME``; with ``ema``, the moving average ``ema/NAME`` of
    :mod:`seq2seq_kit.ema` too), and every bad value: a negative or non-integer step,
    a non-integer seed, a negative or non-finite learning rate, non-finite or
    non-floating moments or averages, negative second moments."""
    arrays = {key: np.asarray(value) for key, value in state.items()}
    expected: dict[str, tuple[int, ...]] = {"step": (), "learning_rate": (), "seed": ()}
    prefixes = ("m/", "v/", EMA_PREFIX) if ema else ("m/", "v/")
    for name, shape in weight_shapes(spec).items():
        for prefix in prefixes:
            expected[f"{prefix}{name}"] = shape
    problems = [f"missing {key} {shape}" for key, shape in expected.items() if key not in arrays]
    problems += [f"unexpected {key}" for key in arrays if key not in expected]
    problems += [
        f"{key} has shape {arrays[key].shape}, expected {shape}"
        for key, shape in expected.items()
        if key in arrays and arrays[key].shape != shape
    ]

    def scalar(key: str) -> np.ndarray | None:
        value = arrays.get(key)
        return value if value is not None and value.shape == () else None

    step, seed, rate = scalar("step"), scalar("seed"), scalar("learning_rate")
    if step is not None and (not np.issubdtype(step.dtype, np.integer) or int(step) < 0):
        problems.append(f"step must be a non-negative integer, got {step!r}")
    if seed is not None and not np.issubdtype(seed.dtype, np.integer):
        problems.append(f"seed must be an integer, got {seed!r}")
    if rate is not None and (
        not np.issubdtype(rate.dtype, np.floating) or not (np.isfinite(rate) and float(rate) >= 0.0)
    ):
        problems.append(f"learning_rate must be a finite float >= 0, got {rate!r}")
    for key, value in arrays.items():
        if key.startswith(prefixes) and key in expected:
            if not np.issubdtype(value.dtype, np.floating):
                problems.append(f"{key} has dtype {value.dtype}, expected float32")
            elif not np.all(np.isfinite(value)):
                problems.append(f"{key} holds non-finite values")
            elif key.startswith("v/") and value.size and value.min() < 0:
                problems.append(f"{key} holds negative values")
    if problems:
        raise ValueError("optimizer state does not match the model: " + "; ".join(problems))
