"""The canonical weight layout shared by every backend, and its seeded initialisation.

Every backend's ``get_weights()`` returns, and ``set_weights()`` accepts, a ``dict[str,
numpy.ndarray]`` with exactly the names and shapes of :func:`weight_shapes`, float32. A model
trained by one backend therefore loads into any other.

Layout (``In`` is the input width of a layer: ``embedding_size`` or the vocabulary size for
layer 0 with one-hot inputs, ``hidden_size`` above it; ``H`` is ``hidden_size``)::

    encoder.embedding                  [V_src, E]   only when embedding_size > 0
    encoder.rnn.{l}.kernel             [In, 4H]     input -> gates
    encoder.rnn.{l}.recurrent_kernel   [H, 4H]      h_{t-1} -> gates
    encoder.rnn.{l}.bias               [4H]         one bias (PyTorch's b_ih + b_hh summed)
    decoder.embedding                  [V_tgt, E]   only when embedding_size > 0
    decoder.rnn.{l}.kernel / recurrent_kernel / bias   as the encoder's
    decoder.output.kernel              [H, V_tgt]   logits = h_t @ kernel + bias
    decoder.output.bias                [V_tgt]

Gates are concatenated along the last axis in the order input, forget, cell candidate,
output (``i, f, g, o``), the order of both Keras and PyTorch. Matrices act on row vectors
(``x @ kernel``), as in Keras; PyTorch's ``weight_ih_l{l}`` is ``kernel.T``. The LSTM is::

    z = x_t @ kernel + h_{t-1} @ recurrent_kernel + bias
    i, f, g, o = sigmoid(z_i), sigmoid(z_f), tanh(z_g), sigmoid(z_o)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

A one-hot input of id ``k`` multiplies ``kernel`` to its row ``k``, so one-hot and embedding
models share one code path in a backend: a row gather.
"""

from __future__ import annotations

import numpy as np

from .spec import ModelSpec

GATES = ("i", "f", "g", "o")


def weight_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Return the canonical ``name -> shape`` map of ``spec``, in a fixed order."""
    hidden, emb = spec.hidden_size, spec.embedding_size
    shapes: dict[str, tuple[int, ...]] = {}
    for side, vocab in (("encoder", spec.src_vocab_size), ("decoder", spec.tgt_vocab_size)):
        if emb:
            shapes[f"{side}.embedding"] = (vocab, emb)
        for layer in range(spec.num_layers):
            width = (emb or vocab) if layer == 0 else hidden
            shapes[f"{side}.rnn.{layer}.kernel"] = (width, 4 * hidden)
            shapes[f"{side}.rnn.{layer}.recurrent_kernel"] = (hidden, 4 * hidden)
            shapes[f"{side}.rnn.{layer}.bias"] = (4 * hidden,)
    shapes["decoder.output.kernel"] = (hidden, spec.tgt_vocab_size)
    shapes["decoder.output.bias"] = (spec.tgt_vocab_size,)
    return shapes


def initial_weights(spec: ModelSpec, seed: int) -> dict[str, np.ndarray]:
    """Seeded float32 initial weights in the canonical layout, Keras' defaults for LSTM and
    Dense: Glorot-uniform kernels (Glorot & Bengio 2010), orthogonal recurrent kernels
    (Saxe et al. 2014), zero biases with the forget-gate bias set to 1 (Jozefowicz et al.
    2015, Keras ``unit_forget_bias``), embeddings uniform in [-0.05, 0.05].

    Backends start from these so that one seed gives one model whatever the framework.
    """
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for name, shape in weight_shapes(spec).items():
        if name.endswith("embedding"):
            value = rng.uniform(-0.05, 0.05, shape)
        elif name.endswith("recurrent_kernel"):
            value = _orthogonal_gates(rng, shape[0])
        elif name.endswith("kernel"):
            limit = np.sqrt(6.0 / (shape[0] + shape[1]))
            value = rng.uniform(-limit, limit, shape)
        else:
            value = np.zeros(shape)
            if ".rnn." in name:
                hidden = shape[0] // 4
                value[hidden : 2 * hidden] = 1.0
        weights[name] = value.astype(np.float32)
    return weights


def check_weights(spec: ModelSpec, weights: dict[str, np.ndarray]) -> None:
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


def _orthogonal_gates(rng: np.random.Generator, hidden: int) -> np.ndarray:
    # Keras' Orthogonal initializer on the [H, 4H] matrix: QR of a Gaussian, sign-fixed.
    a = rng.normal(size=(4 * hidden, hidden))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    return q.T
