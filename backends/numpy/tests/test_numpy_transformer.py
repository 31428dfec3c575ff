"""The NumPy Transformer: exact gradients of every weight (pre and post norm, ReLU, GELU and
swish, learned and sinusoidal positions, tied and shared embeddings, label smoothing),
step-by-step decoding against teacher forcing, decoder-state rules, empty sources, the
GELU's erf, swish at extreme inputs, and gradient accumulation (Transformer and RNN)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from seq2seq_kit_numpy import CAPABILITIES, activations
from seq2seq_kit_numpy.model import NumpyModel
from seq2seq_kit_numpy.ops import Dropout
from test_numpy_backend import WORDS, digit_data, digit_trainer, greedy, pad_batch

from seq2seq_kit.batching import Batch, make_batch
from seq2seq_kit.spec import ModelSpec, OptimizerSpec, TransformerSpec
from seq2seq_kit.vocab import BOS
from seq2seq_kit.weights import weight_shapes

# Mixed source lengths including 0, targets of different lengths (so padded positions).
SOURCES = [[4, 5, 6], [], [6, 4], [5, 5, 4, 6]]
TARGETS = [[4, 5], [6, 7, 4, 5], [], [7]]
VOCAB = 9


def tiny(**options) -> TransformerSpec:
    base = dict(
        encoder_layers=2,
        decoder_layers=2,
        d_model=8,
        num_heads=2,
        ff_size=12,
        dropout=0.0,
        max_positions=12,
    )
    return TransformerSpec(VOCAB, VOCAB, **(base | options))


# Every option value appears; each activation with both norms; tie and share with both.
GRADIENT_SPECS = [
    tiny(
        layer_norm=norm,
        activation=act,
        positions=pos,
        tie_output_embeddings=tie,
        share_embeddings=share,
    )  # fmt: skip
    for (norm, act), (pos, tie, share) in zip(
        itertools.product(("pre", "post"), ("relu", "gelu", "swish")),
        [
            ("sinusoidal", False, False),
            ("learned", True, True),
            ("sinusoidal", True, False),
            ("learned", False, False),
            ("sinusoidal", True, False),
            ("learned", True, True),
        ],  # fmt: skip
        strict=True,
    )
]


def spec_id(spec: TransformerSpec) -> str:
    flags = [spec.layer_norm, spec.activation, spec.positions]
    flags += ["tied"] * spec.tie_output_embeddings + ["shared"] * spec.share_embeddings
    return "-".join(flags)


def random_weights(spec, seed: int) -> dict[str, np.ndarray]:
    """Kernels and embeddings larger than the initial ones, so that attention is far from
    uniform; small biases, so that no layer's output is the same at every position (which
    leaves attention nothing to choose and its gradients at finite-difference noise)."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in weight_shapes(spec).items():
        if name.endswith("scale"):
            weights[name] = 1.0 + rng.normal(0.0, 0.2, shape)
        elif name.endswith("bias"):
            weights[name] = rng.normal(0.0, 0.1, shape)
        else:
            weights[name] = rng.normal(0.0, 0.5, shape)
    return weights


def finite_difference_check(model, batch, base, eps=1e-5, drop=None):
    """Central differences of every element of every weight against the gradients (with
    ``drop()`` making the same dropout masks at every call, if given). A key bias adds the
    same amount to every score of a query, which softmax ignores: its exact gradient is 0,
    which the backend must return exactly (Adam would turn rounding noise there into
    steps), and the differences must be ~0."""

    def loss():
        return model._loss_and_gradients(batch, backward=False, drop=drop and drop())

    model.set_weights(base)
    model._loss_and_gradients(batch, drop=drop and drop())
    grads = {name: g.copy() for name, g in model._g.items()}
    assert set(grads) == set(base)
    for name, value in base.items():
        assert grads[name].dtype == np.float64 and grads[name].shape == value.shape
        fd = np.empty_like(value)
        for index in np.ndindex(value.shape):
            values = []
            for sign in (1, -1):
                shifted = value.copy()
                shifted[index] += sign * eps
                model.set_weights({**base, name: shifted})
                values.append(loss())
            fd[index] = (values[0] - values[1]) / (2 * eps)
        model.set_weights(base)
        if name.endswith("key.bias"):
            assert np.all(grads[name] == 0) and np.abs(fd).max() < 1e-8, name
            continue
        scale = max((np.abs(grads[name]) + np.abs(fd)).max(), 1e-30)
        error = np.abs(grads[name] - fd).max() / scale
        assert error < 1e-5, f"{name}: relative error {error:.2e}"
    return grads


@pytest.mark.parametrize("spec", GRADIENT_SPECS, ids=spec_id)
def test_gradients_match_finite_differences(spec):
    model = NumpyModel(spec, dtype=np.float64)
    batch = make_batch(SOURCES, TARGETS)
    grads = finite_difference_check(model, batch, random_weights(spec, 1))
    reached = [name for name, g in grads.items() if np.any(g != 0)]
    # Only key biases and learned positions past the longest sequence get no gradient.
    assert set(grads) - set(reached) <= {n for n in grads if n.endswith(("key.bias", "positions"))}


def test_gradients_with_label_smoothing_match_finite_differences():
    spec = tiny(layer_norm="post", activation="gelu", tie_output_embeddings=True)
    model = NumpyModel(spec, dtype=np.float64, optimizer=OptimizerSpec(label_smoothing=0.2))
    finite_difference_check(model, make_batch(SOURCES, TARGETS), random_weights(spec, 2))


def test_gradients_with_dropout_match_finite_differences_for_fixed_masks():
    spec = tiny(encoder_layers=1, decoder_layers=1, dropout=0.3, attention_dropout=0.3)
    model = NumpyModel(spec, dtype=np.float64)
    batch = make_batch(SOURCES, TARGETS)

    def drop():  # the same masks at every call
        return Dropout(np.random.default_rng(7), spec.dropout, model.dtype)

    base = random_weights(spec, 9)
    model.set_weights(base)
    assert model._loss_and_gradients(batch, backward=False, drop=drop()) != model.loss(batch)
    finite_difference_check(model, batch, base, drop=drop)


@pytest.mark.parametrize(
    "spec", [tiny(), ModelSpec(VOCAB, VOCAB, hidden_size=6)], ids=["transformer", "rnn"]
)
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_loss_is_the_smoothed_cross_entropy_of_log_probs(spec, smoothing):
    model = NumpyModel(spec, dtype=np.float64, optimizer=OptimizerSpec(label_smoothing=smoothing))
    model.set_weights(random_weights(spec, 3))
    batch = make_batch(SOURCES, TARGETS)
    logp = model.log_probs(batch).astype(np.float64)
    total = 0.0
    for b, t in zip(*np.nonzero(batch.tgt_mask), strict=True):
        row = logp[b, t]
        total += (1 - smoothing) * -row[batch.tgt_out[b, t]] + smoothing * -row.mean()
    expected = total / batch.tgt_mask.sum()
    assert model.loss(batch) == pytest.approx(expected, rel=1e-6)


def test_padding_changes_nothing():
    spec = tiny(positions="learned")
    model = NumpyModel(spec, dtype=np.float64)
    model.set_weights(random_weights(spec, 4))
    batch = make_batch(SOURCES, TARGETS)
    wide = pad_batch(batch, extra_src=3, extra_tgt=2)
    assert model.loss(wide) == pytest.approx(model.loss(batch), rel=1e-12)
    for name, g in model.gradients(batch).items():
        np.testing.assert_allclose(model.gradients(wide)[name], g, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(
        model.log_probs(wide)[:, : batch.tgt_in.shape[1]], model.log_probs(batch), atol=1e-6
    )


def decode_teacher_forced(model: NumpyModel, batch: Batch):
    state = model.encode(batch.src_ids, batch.src_lengths)
    assert model.attention(state) is None
    steps, attentions = [], []
    for t in range(batch.tgt_in.shape[1]):
        logp, state = model.step(batch.tgt_in[:, t].copy(), state)
        steps.append(logp)
        attentions.append(model.attention(state))
    return np.stack(steps, axis=1), attentions


@pytest.mark.parametrize("spec", GRADIENT_SPECS, ids=spec_id)
@pytest.mark.parametrize("dtype, atol", [(np.float64, 1e-10), (np.float32, 1e-5)])
def test_step_by_step_decoding_equals_teacher_forcing(spec, dtype, atol):
    model = NumpyModel(spec, dtype=dtype)
    model.set_weights(random_weights(spec, 5))
    batch = pad_batch(make_batch(SOURCES, TARGETS), extra_src=2)
    stepped, attentions = decode_teacher_forced(model, batch)
    assert stepped.dtype == np.float32
    np.testing.assert_allclose(stepped, model.log_probs(batch), atol=atol)
    for weights in attentions:
        assert weights.shape == (len(SOURCES), batch.src_ids.shape[1])
        assert weights.dtype == np.float32
        for row, length in enumerate(batch.src_lengths):
            assert np.all(weights[row, length:] == 0)
            assert weights[row].sum() == pytest.approx(1.0 if length else 0.0, abs=1e-5)


def test_attention_is_the_top_cross_attention_averaged_over_heads():
    spec = tiny(decoder_layers=1)
    model = NumpyModel(spec, dtype=np.float64)
    w = random_weights(spec, 6)
    model.set_weights(w)
    src = np.array([[4, 5, 6]], dtype=np.int32)
    state = model.encode(src, np.array([3], dtype=np.int32))
    _, state = model.step(np.array([BOS], dtype=np.int32), state)
    # The literal formula: decoder input -> pre-norm self-attention over itself -> the
    # cross-attention query of its norm; keys from the encoder output.
    memory = model.network._encode(src, np.array([3]), None)[0]
    x = w["decoder.embedding"][BOS] * math.sqrt(8) + np.array([0.0, 1.0] * 4)
    p = "decoder.layers.0."

    def norm(v, name):
        v = (v - v.mean()) / np.sqrt(v.var() + 1e-5)
        return v * w[p + name + ".scale"] + w[p + name + ".bias"]

    h = norm(x, "self_attention_norm")
    value = h @ w[p + "self_attention.value.kernel"] + w[p + "self_attention.value.bias"]
    x = x + value @ w[p + "self_attention.output.kernel"] + w[p + "self_attention.output.bias"]
    h = norm(x, "cross_attention_norm")
    q = h @ w[p + "cross_attention.query.kernel"] + w[p + "cross_attention.query.bias"]
    k = memory @ w[p + "cross_attention.key.kernel"] + w[p + "cross_attention.key.bias"]
    heads = []
    for n in range(2):
        cols = slice(4 * n, 4 * n + 4)
        scores = k[:, cols] @ q[cols] / 2.0
        heads.append(np.exp(scores) / np.exp(scores).sum())
    np.testing.assert_allclose(model.attention(state)[0], np.mean(heads, axis=0), atol=1e-6)


def test_step_and_reorder_leave_the_state_unchanged():
    spec = tiny()
    model = NumpyModel(spec)
    batch = make_batch(SOURCES, TARGETS)
    state = model.encode(batch.src_ids, batch.src_lengths)
    _, state = model.step(batch.tgt_in[:, 0].copy(), state)
    snapshot = [np.copy(a) for a in _arrays(state)]
    first, _ = model.step(batch.tgt_in[:, 1].copy(), state)
    again, _ = model.step(batch.tgt_in[:, 1].copy(), state)
    np.testing.assert_array_equal(first, again)
    index = np.array([3, 3, 0], dtype=np.int64)
    reordered = model.reorder(state, index)
    for before, after in zip(snapshot, _arrays(state), strict=True):
        np.testing.assert_array_equal(before, after)
    logp, _ = model.step(batch.tgt_in[index, 1].copy(), reordered)
    np.testing.assert_array_equal(logp, first[index])
    np.testing.assert_array_equal(model.attention(reordered), model.attention(state)[index])


def test_branches_of_one_state_decode_independently():
    # Two continuations of one state, stepped in turns, each equal teacher forcing on its
    # own path (the key/value cache is shared until the paths part).
    spec = tiny()
    model = NumpyModel(spec, dtype=np.float64)
    model.set_weights(random_weights(spec, 8))
    rows = len(SOURCES)
    paths = {"a": [4, 6, 5], "b": [5, 6, 4]}
    forced = {k: model.log_probs(make_batch(SOURCES, [p] * rows)) for k, p in paths.items()}
    batch = make_batch(SOURCES, TARGETS)
    _, root = model.step(
        np.full(rows, BOS, np.int32), model.encode(batch.src_ids, batch.src_lengths)
    )
    states = dict.fromkeys(paths, root)
    for t in range(3):
        for key, path in paths.items():
            logp, states[key] = model.step(np.full(rows, path[t], np.int32), states[key])
            np.testing.assert_allclose(logp, forced[key][:, t + 1], atol=1e-6, err_msg=key)


def _arrays(state):
    for part in state:
        for item in part if isinstance(part, tuple) else [part]:
            if isinstance(item, np.ndarray):
                yield item
            elif hasattr(item, "keys"):  # a key/value cache
                yield from (item.keys, item.values)


def test_only_empty_sources_give_zero_attention_and_no_nan():
    spec = tiny(layer_norm="post")
    model = NumpyModel(spec, dtype=np.float64)
    model.set_weights(random_weights(spec, 7))
    batch = make_batch([[], []], [[4, 5], [6]])
    assert batch.src_ids.shape[1] == 0
    state = model.encode(batch.src_ids, batch.src_lengths)
    logp, state = model.step(batch.tgt_in[:, 0].copy(), state)
    assert np.all(np.isfinite(logp))
    assert model.attention(state).shape == (2, 0)
    grads = model.gradients(batch)
    assert all(np.all(np.isfinite(g)) for g in grads.values())
    # No source reaches the decoder: every encoder weight and cross-attention key gets 0.
    assert all(np.all(g == 0) for name, g in grads.items() if name.startswith("encoder."))
    assert np.all(grads["decoder.layers.0.cross_attention.key.kernel"] == 0)
    assert np.any(grads["decoder.layers.0.cross_attention.value.bias"] == 0)
    np.testing.assert_allclose(
        decode_teacher_forced(model, batch)[0], model.log_probs(batch), atol=1e-6
    )


def test_step_past_max_positions_is_refused():
    model = NumpyModel(tiny(max_positions=2))
    state = model.encode(np.array([[4]], dtype=np.int32), np.array([1], dtype=np.int32))
    for _ in range(2):
        _, state = model.step(np.array([BOS], dtype=np.int32), state)
    with pytest.raises(ValueError, match="max_positions"):
        model.step(np.array([BOS], dtype=np.int32), state)
    with pytest.raises(ValueError, match="decoder ids are 3 positions wide"):
        model.log_probs(make_batch([[4]], [[5, 6]]))


@pytest.mark.parametrize(
    "spec",
    [tiny(), ModelSpec(VOCAB, VOCAB, hidden_size=6, embedding_size=4, attention="general")],
    ids=["transformer", "rnn"],
)
def test_accumulated_update_equals_one_concatenated_batch(spec):
    first = make_batch(SOURCES[:2], TARGETS[:2])
    second = make_batch(SOURCES[2:], TARGETS[2:])
    both = make_batch(SOURCES, TARGETS)
    split, joined = NumpyModel(spec, seed=3), NumpyModel(spec, seed=3)
    start = joined.get_weights()
    for _ in range(2):  # the second update starts from the first's weights
        loss_split = split.train_step([first, second])
        loss_joined = joined.train_step([both])
        assert loss_split == pytest.approx(loss_joined, rel=1e-5)
    after = joined.get_weights()
    for name, value in split.get_weights().items():
        np.testing.assert_allclose(value, after[name], atol=1e-5, err_msg=name)
    assert any(not np.array_equal(after[name], start[name]) for name in start)


def test_dropout_only_in_train_step_and_masks_follow_the_batch_position():
    spec = tiny(dropout=0.3, attention_dropout=0.3)
    batch = make_batch(SOURCES, TARGETS)
    plain, dropped = NumpyModel(tiny(), seed=1), NumpyModel(spec, seed=1)
    assert dropped.loss(batch) == plain.loss(batch)
    np.testing.assert_array_equal(dropped.log_probs(batch), plain.log_probs(batch))
    assert dropped.train_step([batch]) != plain.train_step([batch])
    # Two copies of one batch in one update draw different masks: the loss differs from
    # the single batch's under the same update count.
    twice, once = NumpyModel(spec, seed=1), NumpyModel(spec, seed=1)
    assert twice.train_step([batch, batch]) != once.train_step([batch])


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_learns_the_digit_words(seed):
    """The seed's task and schedule (9 pairs, batch 2, Adam at 1e-3, 300 epochs) with a
    2 + 2 layer Transformer of d_model 64: every word decodes exactly (measured: 9/9 from
    epoch 100 on for seeds 0-2, full-data loss about 3e-4 at epoch 300)."""
    src_vocab, tgt_vocab, sources, targets = digit_data()
    spec = TransformerSpec(len(src_vocab), len(tgt_vocab), d_model=64, num_heads=4, ff_size=256)
    model, train = digit_trainer(seed, spec=spec)
    seconds = train(300)
    decoded = [tgt_vocab.decode(ids) for ids in greedy(model, sources)]
    loss = model.loss(make_batch(sources, targets))
    print(f"\nseed {seed}: 300 epochs in {seconds:.2f} s, loss {loss:.4f}, {decoded}")
    assert decoded == WORDS
    assert loss < 0.01


def test_gelu_uses_the_exact_erf():
    x = np.linspace(-9.0, 9.0, 20001)
    expected = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(activations.erf(x), expected, rtol=0, atol=4e-16)
    h = np.array([-3.0, -0.5, 0.0, 0.7, 2.5])
    gelu, _ = activations.forward("gelu", h)
    np.testing.assert_allclose(
        gelu, [v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in h], atol=1e-15
    )


def test_swish_and_its_derivative_are_stable_at_every_magnitude():
    h = np.array([-800.0, -40.0, -3.0, -0.5, 0.0, 0.7, 2.5, 40.0, 800.0])

    def sigmoid(v):
        return 1.0 / (1.0 + math.exp(-v)) if v > -700 else 0.0

    expected = [v * sigmoid(v) for v in h]
    slope = [sigmoid(v) * (1.0 + v * (1.0 - sigmoid(v))) for v in h]
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for dtype, rtol in ((np.float64, 1e-15), (np.float32, 1e-6)):
            swish, cache = activations.forward("swish", h.astype(dtype))
            derivative = activations.backward("swish", np.ones_like(swish), cache)
            assert swish.dtype == derivative.dtype == dtype
            normal = np.abs(h) < 80  # swish(-800) underflows: no relative error to speak of
            np.testing.assert_allclose(swish[normal], np.array(expected)[normal], rtol=rtol)
            np.testing.assert_allclose(derivative, slope, rtol=rtol, atol=1e-30)
    x = np.random.default_rng(0).normal(0.0, 3.0, 200)
    difference = (
        activations.forward("swish", x + 1e-6)[0] - activations.forward("swish", x - 1e-6)[0]
    ) / 2e-6
    np.testing.assert_allclose(
        activations.backward("swish", np.ones_like(x), x), difference, atol=1e-8
    )


def test_declares_transformer():
    assert "transformer" in CAPABILITIES
