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
    encoder.positions                        [P, D]   positions = "learned" only
    encoder.layers.{l}.self_attention.{query,key,value,output}.kernel   [D, D]
    encoder.layers.{l}.self_attention.{query,key,value,output}.bias     [D]
    encoder.layers.{l}.self_attention_norm.{scale,bias}                 [D]
    encoder.layers.{l}.feed_forward.inner.kernel [D, F], .bias [F]
    encoder.layers.{l}.feed_forward.outer.kernel [F, D], .bias [D]
    encoder.layers.{l}.feed_forward_norm.{scale,bias}                   [D]
    encoder.final_norm.{scale,bias}          [D]      layer_norm = "pre" only
    decoder.embedding                        [V_tgt, D]  not with share_embeddings
    decoder.positions                        [P, D]   positions = "learned" only
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

from .spec import ModelSpec, Spec, TransformerSpec

#: Layer-norm epsilon of the Transformer layout (PyTorch's and fairseq's default).
LAYER_NORM_EPSILON = 1e-5


def weight_shapes(spec: Spec) -> dict[str, tuple[int, ...]]:
    """Return the canonical ``name -> shape`` map of ``spec``, in a fixed order."""
    if isinstance(spec, TransformerSpec):
        return _transformer_shapes(spec)
    hidden, emb, gates = spec.hidden_size, spec.embedding_size, spec.gates
    shapes: dict[str, tuple[int, ...]] = {}

    def rnn(prefix: str, width: int, units: int) -> None:
        shapes[f"{prefix}.kernel"] = (width, gates * units)
        shapes[f"{prefix}.recurrent_kernel"] = (units, gates * units)
        shapes[f"{prefix}.bias"] = (gates * units,) if spec.cell == "lstm" else (2, gates * units)

    for side, vocab in (("encoder", spec.src_vocab_size), ("decoder", spec.tgt_vocab_size)):
        directions = (
            ("rnn", "rnn_reverse") if side == "encoder" and spec.bidirectional else ("rnn",)
        )
        units = hidden // len(directions)
        if emb:
            shapes[f"{side}.embedding"] = (vocab, emb)
        for direction in directions:
            for layer in range(spec.num_layers):
                width = (emb or vocab) if layer == 0 else hidden
                rnn(f"{side}.{direction}.{layer}", width, units)
    if spec.attention == "general":
        shapes["decoder.attention.kernel"] = (hidden, hidden)
    elif spec.attention == "bahdanau":
        shapes["decoder.attention.query_kernel"] = (hidden, hidden)
        shapes["decoder.attention.memory_kernel"] = (hidden, hidden)
        shapes["decoder.attention.v"] = (hidden,)
    if spec.attention != "none":
        shapes["decoder.attention.output_kernel"] = (2 * hidden, hidden)
    shapes["decoder.output.kernel"] = (hidden, spec.tgt_vocab_size)
    shapes["decoder.output.bias"] = (spec.tgt_vocab_size,)
    return shapes


def _transformer_shapes(spec: TransformerSpec) -> dict[str, tuple[int, ...]]:
    d, ff, shapes = spec.d_model, spec.ff_size, {}

    def norm(prefix: str) -> None:
        shapes[f"{prefix}.scale"] = shapes[f"{prefix}.bias"] = (d,)

    def attention(prefix: str) -> None:
        for part in ("query", "key", "value", "output"):
            shapes[f"{prefix}.{part}.kernel"] = (d, d)
            shapes[f"{prefix}.{part}.bias"] = (d,)
        norm(f"{prefix}_norm")

    for side, vocab, layers in (
        ("encoder", spec.src_vocab_size, spec.encoder_layers),
        ("decoder", spec.tgt_vocab_size, spec.decoder_layers),
    ):
        if side == "encoder" or not spec.share_embeddings:
            shapes[f"{side}.embedding"] = (vocab, d)
        if spec.positions == "learned":
            shapes[f"{side}.positions"] = (spec.max_positions, d)
        for layer in range(layers):
            prefix = f"{side}.layers.{layer}"
            attention(f"{prefix}.self_attention")
            if side == "decoder":
                attention(f"{prefix}.cross_attention")
            shapes[f"{prefix}.feed_forward.inner.kernel"] = (d, ff)
            shapes[f"{prefix}.feed_forward.inner.bias"] = (ff,)
            shapes[f"{prefix}.feed_forward.outer.kernel"] = (ff, d)
            shapes[f"{prefix}.feed_forward.outer.bias"] = (d,)
            norm(f"{prefix}.feed_forward_norm")
        if spec.layer_norm == "pre":
            norm(f"{side}.final_norm")
    if not spec.tie_output_embeddings:
        shapes["decoder.output.kernel"] = (d, spec.tgt_vocab_size)
    shapes["decoder.output.bias"] = (spec.tgt_vocab_size,)
    return shapes


def sinusoidal_positions(count: int, width: int) -> np.ndarray:
    """float32 [count, width] position encodings of Vaswani et al. 2017, section 3.5:
    ``PE[t, 2i] = sin(t / 10000^(2i / width))``, ``PE[t, 2i+1] = cos(t / 10000^(2i / width))``
    (for an odd ``width`` the last feature is a sine)."""
    positions = np.arange(count, dtype=np.float64)[:, None]
    rates = 10000.0 ** (-(np.arange(width) // 2 * 2) / width)
    angles = positions * rates[None, :]
    table = np.where(np.arange(width) % 2 == 0, np.sin(angles), np.cos(angles))
    return table.astype(np.float32)


def initial_weights(spec: Spec, seed: int) -> dict[str, np.ndarray]:
    """Seeded float32 initial weights in ``spec``'s canonical layout. See
    :func:`rnn_initial_weights` and :func:`transformer_initial_weights`."""
    if isinstance(spec, TransformerSpec):
        return transformer_initial_weights(spec, seed)
    return rnn_initial_weights(spec, seed)


def transformer_initial_weights(spec: TransformerSpec, seed: int) -> dict[str, np.ndarray]:
    """fairseq's Transformer initialisation: embeddings and learned positions normal with
    standard deviation ``d_model ** -0.5`` (they are scaled by ``sqrt(d_model)`` in the
    forward pass), Glorot-uniform kernels, zero biases, norms with scale 1 and bias 0."""
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for name, shape in weight_shapes(spec).items():
        if name.endswith(("embedding", "positions")):
            value = rng.normal(0.0, spec.d_model**-0.5, shape)
        elif name.endswith("kernel"):
            limit = np.sqrt(6.0 / (shape[0] + shape[1]))
            value = rng.uniform(-limit, limit, shape)
        elif name.endswith("scale"):
            value = np.ones(shape)
        else:
            value = np.zeros(shape)
        weights[name] = value.astype(np.float32)
    return weights


def rnn_initial_weights(spec: ModelSpec, seed: int) -> dict[str, np.ndarray]:
    """Seeded float32 initial weights in the canonical layout, Keras' defaults for LSTM and
    Dense: Glorot-uniform kernels (Glorot & Bengio 2010), orthogonal recurrent kernels
    (Saxe et al. 2014), zero biases with the LSTM forget-gate bias set to 1 (Jozefowicz et
    al. 2015, Keras ``unit_forget_bias``), embeddings uniform in [-0.05, 0.05], the additive
    attention vector Glorot-uniform as a [H, 1] matrix.

    Backends start from these so that one seed gives one model whatever the framework.
    """
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for name, shape in weight_shapes(spec).items():
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


def check_optimizer_state(spec: Spec, state: dict[str, np.ndarray]) -> None:
    """Raise ``ValueError`` naming every missing, unexpected or mis-shaped entry of an
    optimizer state of a ``spec`` model (see ``Model.optimizer_state``: ``step``, ``learning_rate``,
    ``seed``, ``m/NAME``, ``v/NAME``), and every bad value: a negative or non-integer step,
    a non-integer seed, a negative or non-finite learning rate, non-finite or
    non-floating moments, negative second moments."""
    arrays = {key: np.asarray(value) for key, value in state.items()}
    expected: dict[str, tuple[int, ...]] = {"step": (), "learning_rate": (), "seed": ()}
    for name, shape in weight_shapes(spec).items():
        expected[f"m/{name}"] = expected[f"v/{name}"] = shape
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
        if key.startswith(("m/", "v/")) and key in expected:
            if not np.issubdtype(value.dtype, np.floating):
                problems.append(f"{key} has dtype {value.dtype}, expected float32")
            elif not np.all(np.isfinite(value)):
                problems.append(f"{key} holds non-finite values")
            elif key.startswith("v/") and value.size and value.min() < 0:
                problems.append(f"{key} holds negative values")
    if problems:
        raise ValueError("optimizer state does not match the model: " + "; ".join(problems))


def _orthogonal_gates(rng: np.random.Generator, hidden: int, gates: int) -> np.ndarray:
    # Keras' Orthogonal initializer on the [H, G*H] matrix: QR of a Gaussian, sign-fixed.
    a = rng.normal(size=(gates * hidden, hidden))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    return q.T
