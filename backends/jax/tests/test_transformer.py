"""The JAX Transformer against its own definitions: incremental decoding against teacher
forcing, autodiff against finite differences in float64, gradient accumulation against one
concatenated batch, label smoothing against its formula, and the masking rules."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from seq2seq_kit.batching import Batch, make_batch
from seq2seq_kit.plugins import get_backend
from seq2seq_kit.spec import OptimizerSpec, TransformerSpec

SPEC = TransformerSpec(
    11, 13, encoder_layers=2, decoder_layers=2, d_model=8, num_heads=2, ff_size=12, dropout=0.0
)

#: Variants covering every option of the layout (each compiles its own functions).
VARIANTS = {
    "pre-relu-sinusoidal": SPEC,
    "post-gelu-learned": dataclasses.replace(
        SPEC, layer_norm="post", activation="gelu", positions="learned", max_positions=24
    ),
    "shared-tied": dataclasses.replace(
        SPEC, src_vocab_size=13, share_embeddings=True, tie_output_embeddings=True
    ),
}


def _batch() -> Batch:
    # the third source is empty: its queries see no key
    return make_batch([[4, 5, 6], [7], [], [8, 9, 10, 4]], [[4, 5], [6, 7, 8], [9], [10, 11]])


def _long_batch() -> Batch:
    # targets longer than the first cache bucket (8 positions), so the cache grows
    rng = np.random.default_rng(0)
    targets = [list(rng.integers(4, 13, size=n)) for n in (11, 3)]
    return make_batch([[4, 5, 6, 7, 8], [9, 10]], targets)


def _model(spec: TransformerSpec = SPEC, seed: int = 1, **optimizer):
    return get_backend("jax").create(spec, seed=seed, optimizer=OptimizerSpec(**optimizer))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_incremental_decoding_matches_teacher_forcing(name):
    spec = VARIANTS[name]
    model = _model(spec)
    for batch in (_batch(), _long_batch()):
        expected = model.log_probs(batch)
        state = model.encode(batch.src_ids, batch.src_lengths)
        assert model.attention(state) is None
        for t in range(batch.tgt_in.shape[1]):
            out, state = model.step(batch.tgt_in[:, t], state)
            real = batch.tgt_mask[:, t] > 0
            np.testing.assert_allclose(out[real], expected[real, t], atol=2e-5, err_msg=f"t={t}")


def test_step_and_reorder_leave_their_state_unchanged():
    model = _model()
    batch = _long_batch()
    state = model.encode(batch.src_ids, batch.src_lengths)
    for t in range(9):  # past the first cache bucket: growing must not touch old states
        _, state = model.step(batch.tgt_in[:, t], state)
    first, after = model.step(batch.tgt_in[:, 9], state)
    again, _ = model.step(batch.tgt_in[:, 9], state)
    np.testing.assert_array_equal(first, again)
    swapped = model.reorder(state, np.array([1, 0]))
    out, _ = model.step(batch.tgt_in[::-1, 9], swapped)
    np.testing.assert_allclose(out, first[::-1], atol=1e-6)
    np.testing.assert_array_equal(model.step(batch.tgt_in[:, 9], state)[0], first)
    assert model.attention(after).shape == (2, batch.src_ids.shape[1])


def test_attention_is_the_top_cross_attention_of_the_step():
    model = _model()
    batch = _batch()
    state = model.encode(batch.src_ids, batch.src_lengths)
    _, state = model.step(batch.tgt_in[:, 0], state)
    weights = model.attention(state)
    assert weights.shape == batch.src_ids.shape
    for row, length in enumerate(batch.src_lengths):
        np.testing.assert_array_equal(weights[row, length:], 0.0)
        assert weights[row].sum() == pytest.approx(1.0 if length else 0.0, abs=1e-6)


def test_empty_source_gives_finite_gradients():
    model = _model()
    batch = make_batch([[], [4]], [[5, 6], [7]])
    grads = model.gradients(batch)
    assert all(np.isfinite(g).all() for g in grads.values())
    # the empty row's cross-attention contributes its output bias only: its key and value
    # kernels get gradient from the second row alone
    alone = model.gradients(make_batch([[4]], [[7]]))
    tokens = batch.tgt_mask.sum()
    name = "decoder.layers.0.cross_attention.key.kernel"
    np.testing.assert_allclose(grads[name] * tokens, alone[name] * 2.0, atol=1e-5)


def test_autodiff_matches_finite_differences_in_float64():
    import jax
    import jax.numpy as jnp
    from seq2seq_kit_jax import transformer
    from seq2seq_kit_jax.loss import summed_loss
    from seq2seq_kit_jax.padding import pad_batch

    from seq2seq_kit.weights import initial_weights

    spec = VARIANTS["post-gelu-learned"]
    arrays = pad_batch(_batch(), trim_target=True)
    with jax.enable_x64(True):
        params = {k: jnp.asarray(v, jnp.float64) for k, v in initial_weights(spec, 2).items()}

        def loss(p):
            logp = transformer.forward(spec, p, arrays)
            return summed_loss(logp, arrays.tgt_out, arrays.tgt_mask, 0.1)

        grads = jax.grad(loss)(params)
        rng = np.random.default_rng(0)
        for name in rng.choice(sorted(params), size=12, replace=False):
            assert np.isfinite(np.asarray(grads[name])).all(), name
            index = tuple(int(rng.integers(n)) for n in params[name].shape)
            eps = 1e-6

            def at(delta, name=name, index=index):
                changed = dict(params)
                changed[name] = params[name].at[index].add(delta)
                return float(loss(changed))

            numeric = (at(eps) - at(-eps)) / (2 * eps)
            assert float(grads[name][index]) == pytest.approx(numeric, rel=1e-5, abs=1e-8), name


def _concatenate(batches: list[Batch]) -> Batch:
    width_src = max(b.src_ids.shape[1] for b in batches)
    width_tgt = max(b.tgt_in.shape[1] for b in batches)

    def stack(arrays, width):
        return np.concatenate(
            [np.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in arrays], axis=0
        )

    return Batch(
        src_ids=stack([b.src_ids for b in batches], width_src),
        src_lengths=np.concatenate([b.src_lengths for b in batches]),
        tgt_in=stack([b.tgt_in for b in batches], width_tgt),
        tgt_out=stack([b.tgt_out for b in batches], width_tgt),
        tgt_lengths=np.concatenate([b.tgt_lengths for b in batches]),
        tgt_mask=stack([b.tgt_mask for b in batches], width_tgt),
    )


@pytest.mark.parametrize("spec", [SPEC, "rnn"], ids=["transformer", "rnn"])
def test_accumulation_equals_one_concatenated_batch(spec):
    from seq2seq_kit.spec import ModelSpec

    if spec == "rnn":
        spec = ModelSpec(11, 13, hidden_size=6, embedding_size=4, attention="dot")
    parts = [_batch(), _long_batch()]  # unequal token counts: a mean of means would differ
    # Adam's first step is lr * g / (|g| + epsilon): a large epsilon and learning rate make
    # the update the clipped gradient itself (rather than its sign, which float32 noise on
    # weights of zero gradient, such as attention key biases, would flip)
    options = {"label_smoothing": 0.1, "clip_norm": 0.5, "learning_rate": 1e4, "epsilon": 1e4}
    split, whole = _model(spec, **options), _model(spec, **options)
    before = split.get_weights()
    losses = [split.train_step(parts), whole.train_step([_concatenate(parts)])]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    after, expected = split.get_weights(), whole.get_weights()
    moved = max(np.abs(expected[name] - before[name]).max() for name in before)
    assert moved > 1e-2  # the update is not vacuous
    for name, value in expected.items():
        np.testing.assert_allclose(after[name], value, atol=2e-5, err_msg=name)


def test_label_smoothing_follows_its_formula():
    eps = 0.2
    model = _model(label_smoothing=eps)
    batch = _batch()
    logp = model.log_probs(batch).astype(np.float64)
    gold = np.take_along_axis(logp, batch.tgt_out[..., None], axis=-1)[..., 0]
    token = -(1 - eps) * gold - eps * logp.mean(axis=-1)
    expected = (token * batch.tgt_mask).sum() / batch.tgt_mask.sum()
    assert model.loss(batch) == pytest.approx(expected, rel=1e-5)
    assert model.train_step([batch]) == pytest.approx(expected, rel=1e-5)
    plain = _model()
    assert plain.loss(batch) != pytest.approx(expected, rel=1e-3)


def test_dropout_masks_differ_per_batch_in_the_accumulation_list():
    spec = dataclasses.replace(SPEC, dropout=0.3, attention_dropout=0.2)
    batch = _batch()
    once = _model(spec).train_step([batch])
    twice = _model(spec).train_step([batch, batch])
    # the same batch twice under one set of masks would give the same mean loss
    assert twice != pytest.approx(once, rel=1e-4)
    assert np.isfinite(twice)
    assert _model(spec).train_step([batch, batch]) == twice  # masks follow the seed
