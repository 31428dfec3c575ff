"""The Keras backend's Transformer against a literal NumPy transcription of the canonical
maths (``seq2seq_kit.weights``), and its decoding, gradient accumulation and label
smoothing, which hold whatever the reference backend does."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seq2seq_kit.batching import Batch, make_batch
from seq2seq_kit.plugins import registry
from seq2seq_kit.spec import ModelSpec, OptimizerSpec, TransformerSpec
from seq2seq_kit.weights import LAYER_NORM_EPSILON, sinusoidal_positions

if "keras" not in registry().backends:
    pytest.skip("the keras backend is not installed", allow_module_level=True)

# Mixed source lengths including 0, targets of different lengths (so padded positions).
SOURCES = [[4, 5, 6], [], [6, 4, 7, 8], [5]]
TARGETS = [[4, 5], [6, 7, 4, 5], [], [7]]

VARIANTS = {
    "pre relu sinusoidal": {},
    "post gelu learned tied shared": dict(
        layer_norm="post",
        activation="gelu",
        positions="learned",
        tie_output_embeddings=True,
        share_embeddings=True,
    ),
    "pre tied": dict(tie_output_embeddings=True, encoder_layers=1, decoder_layers=3),
}


def small_spec(**overrides) -> TransformerSpec:
    settings = dict(d_model=16, num_heads=4, ff_size=24, max_positions=12, dropout=0.0)
    return TransformerSpec(11, 11, **{**settings, **overrides})


def create(spec: TransformerSpec, seed: int = 3, **optimizer):
    return (
        registry().backends["keras"].create(spec, seed=seed, optimizer=OptimizerSpec(**optimizer))
    )


# ------------------------------------------------------------------ a literal reference


def _norm(w, name, x):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LAYER_NORM_EPSILON) * w[f"{name}.scale"] + w[f"{name}.bias"]


def _attention(w, name, heads, x, m, visible):
    """One row: x [T, D], m [S, D], visible bool [T, S] -> [T, D]."""

    def proj(part, y):
        return y @ w[f"{name}.{part}.kernel"] + w[f"{name}.{part}.bias"]

    q, k, v = proj("query", x), proj("key", m), proj("value", m)
    d = q.shape[1] // heads
    out = []
    for n in range(heads):
        cols = slice(n * d, (n + 1) * d)
        scores = q[:, cols] @ k[:, cols].T / math.sqrt(d)
        a = np.zeros_like(scores)
        for t in range(scores.shape[0]):
            seen = visible[t]
            if seen.any():  # a query with no visible key: zero weights, zero context
                e = np.exp(scores[t, seen] - scores[t, seen].max())
                a[t, seen] = e / e.sum()
        out.append(a @ v[:, cols])
    return proj("output", np.concatenate(out, axis=1))


def _feed_forward(w, name, x, activation):
    h = x @ w[f"{name}.inner.kernel"] + w[f"{name}.inner.bias"]
    if activation == "relu":
        h = np.maximum(h, 0.0)
    else:
        h = 0.5 * h * (1.0 + np.vectorize(math.erf, otypes=[float])(h / math.sqrt(2.0)))
    return h @ w[f"{name}.outer.kernel"] + w[f"{name}.outer.bias"]


def _before(spec, w, norm, x):
    """The input of a sub-layer: normed first with pre-norm."""
    return _norm(w, norm, x) if spec.layer_norm == "pre" else x


def _after(spec, w, norm, x, y):
    """The residual sum of input ``x`` and sub-layer output ``y``: normed after with
    post-norm."""
    return x + y if spec.layer_norm == "pre" else _norm(w, norm, x + y)


def _encoder(spec, w, embed, src):
    m = embed("encoder", w["encoder.embedding"], src)
    seen = np.ones((len(src), len(src)), dtype=bool)
    for layer in range(spec.encoder_layers):
        p = f"encoder.layers.{layer}"
        h = _before(spec, w, f"{p}.self_attention_norm", m)
        y = _attention(w, f"{p}.self_attention", spec.num_heads, h, h, seen)
        m = _after(spec, w, f"{p}.self_attention_norm", m, y)
        h = _before(spec, w, f"{p}.feed_forward_norm", m)
        y = _feed_forward(w, f"{p}.feed_forward", h, spec.activation)
        m = _after(spec, w, f"{p}.feed_forward_norm", m, y)
    return _norm(w, "encoder.final_norm", m) if spec.layer_norm == "pre" else m


def _decoder(spec, w, x, m):
    causal = np.tril(np.ones((len(x), len(x)), dtype=bool))
    cross = np.ones((len(x), len(m)), dtype=bool)
    for layer in range(spec.decoder_layers):
        p = f"decoder.layers.{layer}"
        h = _before(spec, w, f"{p}.self_attention_norm", x)
        y = _attention(w, f"{p}.self_attention", spec.num_heads, h, h, causal)
        x = _after(spec, w, f"{p}.self_attention_norm", x, y)
        h = _before(spec, w, f"{p}.cross_attention_norm", x)
        y = _attention(w, f"{p}.cross_attention", spec.num_heads, h, m, cross)
        x = _after(spec, w, f"{p}.cross_attention_norm", x, y)
        h = _before(spec, w, f"{p}.feed_forward_norm", x)
        y = _feed_forward(w, f"{p}.feed_forward", h, spec.activation)
        x = _after(spec, w, f"{p}.feed_forward_norm", x, y)
    return _norm(w, "decoder.final_norm", x) if spec.layer_norm == "pre" else x


def reference_log_probs(spec: TransformerSpec, weights: dict, batch: Batch) -> np.ndarray:
    """float64 [B, T, V], one row at a time, from the canonical weights."""
    w = {name: value.astype(np.float64) for name, value in weights.items()}
    target_table = w["encoder.embedding"] if spec.share_embeddings else w["decoder.embedding"]

    def embed(side, table, ids):
        positions = (
            w[f"{side}.positions"]
            if spec.positions == "learned"
            else sinusoidal_positions(spec.max_positions, spec.d_model)
        )
        return table[ids] * math.sqrt(spec.d_model) + positions[: len(ids)]

    out = []
    for b in range(len(batch)):
        m = _encoder(spec, w, embed, batch.src_ids[b, : batch.src_lengths[b]])
        x = _decoder(spec, w, embed("decoder", target_table, batch.tgt_in[b]), m)
        kernel = target_table.T if spec.tie_output_embeddings else w["decoder.output.kernel"]
        logits = x @ kernel + w["decoder.output.bias"]
        logits -= logits.max(-1, keepdims=True)
        out.append(logits - np.log(np.exp(logits).sum(-1, keepdims=True)))
    return np.stack(out)


def perturbed(model, seed: int = 7) -> dict[str, np.ndarray]:
    """The model's weights with noise on every one (zero biases and unit scales would hide
    a misplaced bias or scale)."""
    rng = np.random.default_rng(seed)
    weights = {
        name: (value + rng.normal(0.0, 0.2, value.shape)).astype(np.float32)
        for name, value in model.get_weights().items()
    }
    model.set_weights(weights)
    return weights


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("variant", VARIANTS)
def test_log_probs_match_the_canonical_maths(variant):
    spec = small_spec(**VARIANTS[variant])
    model = create(spec)
    weights = perturbed(model)
    batch = make_batch(SOURCES, TARGETS)
    expected = reference_log_probs(spec, weights, batch)
    np.testing.assert_allclose(model.log_probs(batch), expected, atol=2e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_incremental_decoding_reproduces_teacher_forcing(variant):
    model = create(small_spec(**VARIANTS[variant]))
    perturbed(model)
    batch = make_batch(SOURCES, TARGETS)
    expected = model.log_probs(batch)
    state = model.encode(batch.src_ids, batch.src_lengths)
    assert model.attention(state) is None
    for t in range(batch.tgt_in.shape[1]):
        log_probs, state = model.step(batch.tgt_in[:, t], state)
        np.testing.assert_allclose(log_probs, expected[:, t], atol=1e-5)
        weights = model.attention(state)
        assert weights.shape == batch.src_ids.shape
        np.testing.assert_allclose(weights.sum(1), batch.src_lengths > 0, atol=1e-6)
        assert not weights[
            np.arange(batch.src_ids.shape[1])[None] >= batch.src_lengths[:, None]
        ].any()


def test_step_and_reorder_leave_their_state_unchanged():
    model = create(small_spec())
    perturbed(model)
    batch = make_batch(SOURCES, TARGETS)
    state = model.encode(batch.src_ids, batch.src_lengths)
    _, state = model.step(batch.tgt_in[:, 0], state)
    first, after = model.step(batch.tgt_in[:, 1], state)
    index = np.array([3, 3, 0], dtype=np.int64)
    picked = model.reorder(state, index)
    again, _ = model.step(batch.tgt_in[:, 1], state)
    np.testing.assert_array_equal(first, again)
    from_picked, _ = model.step(batch.tgt_in[index, 1], picked)
    np.testing.assert_allclose(from_picked, first[index], atol=1e-6)
    np.testing.assert_array_equal(
        model.attention(model.reorder(after, index)), model.attention(after)[index]
    )


def test_an_empty_source_gives_finite_results_and_zero_attention():
    model = create(small_spec())
    batch = make_batch([[], []], [[4, 5], [6]])
    assert np.isfinite(model.log_probs(batch)).all()
    assert all(np.isfinite(g).all() for g in model.gradients(batch).values())
    state = model.encode(batch.src_ids, batch.src_lengths)
    _, state = model.step(batch.tgt_in[:, 0], state)
    np.testing.assert_array_equal(model.attention(state), np.zeros((2, 0), dtype=np.float32))


def _concatenated(first: Batch, second: Batch) -> Batch:
    sources = [
        list(r[:n]) for b in (first, second) for r, n in zip(b.src_ids, b.src_lengths, strict=True)
    ]
    targets = [
        list(r[1:n]) for b in (first, second) for r, n in zip(b.tgt_in, b.tgt_lengths, strict=True)
    ]
    return make_batch(sources, targets)


def _same_update(split, joined, atol):
    """The first Adam moment is (1 - beta1) times the clipped gradient of the update: the
    two models took the same one. (Weights are not compared: a weight whose gradient is
    zero up to rounding, such as an attention key bias, moves by Adam's normalised noise.)"""
    split_state, joined_state = split.optimizer_state(), joined.optimizer_state()
    for key, value in joined_state.items():
        if key.startswith("m/"):
            np.testing.assert_allclose(split_state[key], value, atol=atol, err_msg=key)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_accumulated_batches_update_as_their_concatenation(label_smoothing):
    first, second = make_batch(SOURCES[:2], TARGETS[:2]), make_batch(SOURCES[2:], TARGETS[2:])
    whole = _concatenated(first, second)
    split, joined = (create(small_spec(), label_smoothing=label_smoothing) for _ in range(2))
    # The loss before the update: the mean over both batches' tokens.
    expected = split.loss(whole)
    assert split.train_step([first, second]) == pytest.approx(expected, abs=1e-6)
    assert joined.train_step([whole]) == pytest.approx(expected, abs=1e-6)
    _same_update(split, joined, atol=1e-7)


def test_rnn_accumulation_matches_concatenation_too():
    spec = ModelSpec(11, 11, hidden_size=8, embedding_size=4, attention="general")
    backend = registry().backends["keras"]
    first, second = make_batch(SOURCES[:2], TARGETS[:2]), make_batch(SOURCES[2:], TARGETS[2:])
    split, joined = (backend.create(spec, seed=2) for _ in range(2))
    assert split.train_step([first, second]) == pytest.approx(
        joined.train_step([_concatenated(first, second)]), abs=1e-6
    )
    _same_update(split, joined, atol=1e-7)


def test_label_smoothing_is_the_documented_mixture():
    eps = 0.2
    model = create(small_spec(), label_smoothing=eps)
    perturbed(model)
    batch = make_batch(SOURCES, TARGETS)
    log_probs = model.log_probs(batch).astype(np.float64)
    nll = -np.take_along_axis(log_probs, batch.tgt_out[..., None], -1)[..., 0]
    per_token = (1 - eps) * nll + eps * -log_probs.mean(-1)
    expected = (per_token * batch.tgt_mask).sum() / batch.tgt_mask.sum()
    assert model.loss(batch) == pytest.approx(expected, abs=1e-5)
    assert model.train_step(batch) == pytest.approx(expected, abs=1e-5)


def test_dropout_masks_follow_seed_update_and_position():
    spec = small_spec(dropout=0.3, attention_dropout=0.2)
    batch = make_batch(SOURCES, TARGETS)
    one, two = create(spec, seed=5), create(spec, seed=5)
    assert one.train_step(batch) == two.train_step(batch)  # same seed, same masks
    clean = create(small_spec(), seed=5).loss(batch)
    first = create(spec, seed=5).train_step(batch)
    assert first != pytest.approx(clean, abs=1e-4)  # dropout is on in train_step
    assert create(spec, seed=5).loss(batch) == pytest.approx(clean, abs=1e-6)  # not in loss
    # The second batch of an update draws other masks than the first.
    twice = create(spec, seed=5).train_step([batch, batch])
    assert twice != pytest.approx(first, abs=1e-5)
