"""Behaviour of the PyTorch backend that the conformance suite does not reach: its
Transformer against a literal one-row-at-a-time NumPy reference written from the canonical
layout's formulas, finite-difference gradients, incremental decoding against teacher
forcing, states left unchanged by ``step`` and ``reorder``, gradient accumulation against
one concatenated batch, and label smoothing."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from seq2seq_kit_torch.model import TorchModel  # noqa: E402

from seq2seq_kit.batching import Batch, make_batch  # noqa: E402
from seq2seq_kit.spec import ModelSpec, OptimizerSpec, TransformerSpec  # noqa: E402
from seq2seq_kit.weights import sinusoidal_positions  # noqa: E402

# Mixed source lengths including 0, targets of different lengths (so padded positions).
SOURCES = [[4, 5, 6], [], [6, 4, 7, 8], [5]]
TARGETS = [[4, 5], [6, 7, 4, 5], [], [7, 8, 9]]
VOCAB = 11


def transformer(**options) -> TransformerSpec:
    base = dict(
        src_vocab_size=VOCAB,
        tgt_vocab_size=VOCAB,
        encoder_layers=2,
        decoder_layers=2,
        d_model=8,
        num_heads=2,
        ff_size=12,
        dropout=0.0,
        max_positions=16,
    )
    return TransformerSpec(**{**base, **options})


VARIANTS = {
    "pre-sinusoidal-relu": transformer(),
    "post-learned-gelu": transformer(layer_norm="post", positions="learned", activation="gelu"),
    "tied-shared-one-layer-swish": transformer(
        encoder_layers=1,
        decoder_layers=1,
        tie_output_embeddings=True,
        share_embeddings=True,
        activation="swish",
    ),
}


def perturbed(model: TorchModel, seed: int) -> None:
    """Move every weight off its initial value (zero biases, unit norms) so that each one
    matters to the results."""
    rng = np.random.default_rng(seed)
    model.set_weights(
        {n: w + rng.normal(0, 0.3, w.shape).astype(w.dtype) for n, w in model.get_weights().items()}
    )


def batch() -> Batch:
    return make_batch(SOURCES, TARGETS)


# ---------------------------------------------------------------- literal reference


def reference_log_probs(spec: TransformerSpec, w: dict[str, np.ndarray], b: Batch) -> np.ndarray:
    """float64 [B, T, V] log-probabilities, one row at a time, from the formulas of
    ``seq2seq_kit.weights`` (no padding: each row sees only its own tokens)."""
    w = {n: v.astype(np.float64) for n, v in w.items()}
    width, heads = spec.d_model, spec.num_heads
    size = width // heads

    def norm(x, p):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-5) * w[p + ".scale"] + w[p + ".bias"]

    def attention(x, m, p, visible):
        q, k, v = (
            y @ w[f"{p}.{part}.kernel"] + w[f"{p}.{part}.bias"]
            for y, part in ((x, "query"), (m, "key"), (m, "value"))
        )
        heads_out = []
        for n in range(heads):
            cols = slice(n * size, (n + 1) * size)
            scores = np.where(visible, q[:, cols] @ k[:, cols].T / np.sqrt(size), -np.inf)
            a = np.zeros_like(scores)
            seen = visible.any(axis=1)
            if seen.any():
                shifted = np.exp(scores[seen] - scores[seen].max(axis=1, keepdims=True))
                a[seen] = shifted / shifted.sum(axis=1, keepdims=True)
            heads_out.append(a @ v[:, cols])
        return np.concatenate(heads_out, axis=1) @ w[f"{p}.output.kernel"] + w[f"{p}.output.bias"]

    def feed_forward(x, p):
        h = x @ w[p + ".inner.kernel"] + w[p + ".inner.bias"]
        if spec.activation == "relu":
            h = np.maximum(h, 0)
        elif spec.activation == "swish":
            h = h / (1.0 + np.exp(-h))
        else:
            h = gelu(h)
        return h @ w[p + ".outer.kernel"] + w[p + ".outer.bias"]

    def sublayer(x, p, fn, *args):
        if spec.layer_norm == "pre":
            return x + fn(norm(x, p), *args)
        return norm(x + fn(x, *args), p)

    def self_attention(h, p, visible):
        return attention(h, h, p, visible)

    def embed(side, ids):
        shared = side == "decoder" and spec.share_embeddings
        table = w["encoder.embedding" if shared else f"{side}.embedding"]
        if spec.positions == "learned":
            positions = w[f"{side}.positions"]
        else:
            positions = sinusoidal_positions(spec.max_positions, width).astype(np.float64)
        return table[ids] * np.sqrt(width) + positions[: len(ids)]

    out = []
    for row in range(len(b)):
        src = b.src_ids[row, : b.src_lengths[row]]
        m = embed("encoder", src)
        every = np.ones((len(src), len(src)), dtype=bool)
        for layer in range(spec.encoder_layers):
            p = f"encoder.layers.{layer}"
            m = sublayer(
                m, p + ".self_attention_norm", self_attention, p + ".self_attention", every
            )
            m = sublayer(m, p + ".feed_forward_norm", feed_forward, p + ".feed_forward")
        if spec.layer_norm == "pre":
            m = norm(m, "encoder.final_norm")
        y = embed("decoder", b.tgt_in[row])
        steps = len(y)
        causal = np.tril(np.ones((steps, steps), dtype=bool))
        cross = np.ones((steps, len(src)), dtype=bool)
        for layer in range(spec.decoder_layers):
            p = f"decoder.layers.{layer}"
            y = sublayer(
                y, p + ".self_attention_norm", self_attention, p + ".self_attention", causal
            )
            y = sublayer(
                y, p + ".cross_attention_norm", attention, m, p + ".cross_attention", cross
            )
            y = sublayer(y, p + ".feed_forward_norm", feed_forward, p + ".feed_forward")
        if spec.layer_norm == "pre":
            y = norm(y, "decoder.final_norm")
        if spec.tie_output_embeddings:
            table = w["encoder.embedding" if spec.share_embeddings else "decoder.embedding"]
            logits = y @ table.T + w["decoder.output.bias"]
        else:
            logits = y @ w["decoder.output.kernel"] + w["decoder.output.bias"]
        shifted = logits - logits.max(axis=1, keepdims=True)
        out.append(shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)))
    return np.stack(out)


def gelu(x: np.ndarray) -> np.ndarray:
    """The exact GELU, x * Phi(x) (Hendrycks & Gimpel 2016)."""
    from math import erf, sqrt

    return x * 0.5 * (1.0 + np.vectorize(erf, otypes=[np.float64])(x / sqrt(2.0)))


# ---------------------------------------------------------------- Transformer numerics


@pytest.mark.parametrize("name", VARIANTS)
def test_transformer_log_probs_match_the_literal_reference(name):
    spec = VARIANTS[name]
    model = TorchModel(spec, seed=3)
    perturbed(model, 4)
    b = batch()
    expected = reference_log_probs(spec, model.get_weights(), b)
    got = model.log_probs(b)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("name", VARIANTS)
def test_transformer_gradients_match_finite_differences(name):
    spec = VARIANTS[name]
    model = TorchModel(spec, seed=5, optimizer=OptimizerSpec(label_smoothing=0.1), dtype=np.float64)
    perturbed(model, 6)
    b = batch()
    weights = {n: w.astype(np.float64) for n, w in model.get_weights().items()}
    grads = model.gradients(b)
    # Softmax ignores a shift shared by all keys: the key bias's gradient is exactly 0.
    assert not any(grads[n].any() for n in grads if n.endswith("key.bias"))
    rng = np.random.default_rng(7)
    for name_ in sorted(weights):
        index = tuple(rng.integers(0, s) for s in weights[name_].shape)
        values = []
        for delta in (1e-6, -1e-6):
            moved = dict(weights)
            moved[name_] = weights[name_].copy()
            moved[name_][index] += delta
            model.set_weights(moved)
            values.append(model.loss(b))
        model.set_weights(weights)
        numeric = (values[0] - values[1]) / 2e-6
        assert grads[name_][index] == pytest.approx(numeric, abs=1e-7, rel=1e-5), name_


@pytest.mark.parametrize("name", VARIANTS)
def test_transformer_incremental_decoding_matches_teacher_forcing(name):
    model = TorchModel(VARIANTS[name], seed=8)
    perturbed(model, 9)
    b = batch()
    expected = model.log_probs(b)
    state = model.encode(b.src_ids, b.src_lengths)
    assert model.attention(state) is None
    for t in range(b.tgt_in.shape[1]):
        step_log_probs, state = model.step(b.tgt_in[:, t], state)
        np.testing.assert_allclose(step_log_probs, expected[:, t], atol=1e-5)
        weights = model.attention(state)
        assert weights.shape == b.src_ids.shape
        visible = np.arange(b.src_ids.shape[1])[None, :] < b.src_lengths[:, None]
        assert np.all(weights[~visible] == 0.0)
        np.testing.assert_allclose(
            weights.sum(axis=1), (b.src_lengths > 0).astype(float), atol=1e-6
        )


def test_transformer_step_and_reorder_leave_the_state_unchanged():
    model = TorchModel(VARIANTS["pre-sinusoidal-relu"], seed=10)
    perturbed(model, 11)
    b = batch()
    state = model.encode(b.src_ids, b.src_lengths)
    _, state = model.step(b.tgt_in[:, 0], state)
    first, after = model.step(b.tgt_in[:, 1], state)
    again, _ = model.step(b.tgt_in[:, 1], state)  # the same state, stepped twice
    np.testing.assert_array_equal(first, again)
    index = np.array([3, 3, 0, 2], dtype=np.int64)
    reordered = model.reorder(state, index)
    moved, _ = model.step(b.tgt_in[index, 1], reordered)
    np.testing.assert_allclose(moved, first[index], atol=1e-6)
    later, _ = model.step(b.tgt_in[:, 2], after)  # the original line is intact after reorder
    np.testing.assert_allclose(later, model.log_probs(b)[:, 2], atol=1e-5)


# ---------------------------------------------------------------- training


SPECS = {
    "transformer": VARIANTS["pre-sinusoidal-relu"],
    "rnn": ModelSpec(VOCAB, VOCAB, hidden_size=6, embedding_size=5, attention="general"),
}


@pytest.mark.parametrize("name", SPECS)
def test_accumulated_batches_update_as_their_concatenation(name):
    optimizer = OptimizerSpec(label_smoothing=0.1, clip_norm=0.5)
    split, whole = (
        TorchModel(SPECS[name], seed=12, optimizer=optimizer, dtype=np.float64) for _ in range(2)
    )
    parts = [make_batch(SOURCES[:1], TARGETS[:1]), make_batch(SOURCES[1:], TARGETS[1:])]
    for _ in range(2):
        loss_split = split.train_step(parts)
        loss_whole = whole.train_step([batch()])
        assert loss_split == pytest.approx(loss_whole, rel=1e-9)
    for key, value in whole.get_weights().items():
        np.testing.assert_allclose(split.get_weights()[key], value, atol=1e-5, err_msg=key)


def test_accumulation_with_dropout_is_seeded_by_update_and_position():
    spec = transformer(dropout=0.3, attention_dropout=0.2)
    parts = [make_batch(SOURCES[:2], TARGETS[:2]), make_batch(SOURCES[2:], TARGETS[2:])]
    first, second = (TorchModel(spec, seed=13) for _ in range(2))
    assert first.train_step(parts) == second.train_step(parts)
    for key, value in first.get_weights().items():
        np.testing.assert_array_equal(second.get_weights()[key], value)
    # The same batch twice in one update draws two different sets of masks.
    same = [parts[0], parts[0]]
    model = TorchModel(spec, seed=13)
    model.net.train()
    losses = []
    for index in range(2):
        model._seed_dropout(index)
        losses.append(model._loss_and_gradients([parts[0]], backward=False))
    model.net.eval()
    assert losses[0] != losses[1]
    assert TorchModel(spec, seed=13).train_step(same) == pytest.approx(float(np.mean(losses)))


@pytest.mark.parametrize("name", SPECS)
def test_label_smoothing_is_the_documented_mixture(name):
    epsilon = 0.2
    model = TorchModel(SPECS[name], seed=14, optimizer=OptimizerSpec(label_smoothing=epsilon))
    perturbed(model, 15)
    b = batch()
    log_probs = model.log_probs(b).astype(np.float64)
    rows, cols = np.indices(b.tgt_out.shape)
    nll = -log_probs[rows, cols, b.tgt_out]
    uniform = -log_probs.mean(axis=-1)
    per_token = (1 - epsilon) * nll + epsilon * uniform
    expected = (per_token * b.tgt_mask).sum() / b.tgt_mask.sum()
    assert model.loss(b) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("epsilon", [0.0, 0.3])
def test_smoothed_cross_entropy_matches_torch_in_value_and_gradient(epsilon):
    from seq2seq_kit_torch.loss import smoothed_cross_entropy

    generator = torch.Generator().manual_seed(16)
    logits = torch.randn(9, 13, dtype=torch.float64, generator=generator, requires_grad=True)
    targets = torch.randint(0, 13, (9,), generator=generator)
    weights = torch.rand(9, dtype=torch.float64, generator=generator)
    ours = smoothed_cross_entropy(logits, targets, weights, epsilon)
    (ours_grad,) = torch.autograd.grad(ours, logits)
    per_token = torch.nn.functional.cross_entropy(
        logits, targets, reduction="none", label_smoothing=epsilon
    )
    theirs = torch.dot(per_token, weights)
    (theirs_grad,) = torch.autograd.grad(theirs, logits)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-10, atol=1e-12)
