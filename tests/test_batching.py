import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from seq2seq_kit.batching import batches, make_batch, token_cost
from seq2seq_kit.checkpoint import load_checkpoint
from seq2seq_kit.cli import main
from seq2seq_kit.config import TrainConfig
from seq2seq_kit.vocab import BOS, EOS, PAD

ids = st.lists(st.integers(4, 30), max_size=8)


def test_teacher_forcing_shift():
    batch = make_batch([[4, 5], [6]], [[7, 8, 9], [10]])
    assert batch.tgt_in.tolist() == [[BOS, 7, 8, 9], [BOS, 10, PAD, PAD]]
    assert batch.tgt_out.tolist() == [[7, 8, 9, EOS], [10, EOS, PAD, PAD]]
    assert batch.tgt_mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch.src_lengths.tolist() == [2, 1]
    assert batch.num_target_tokens == 6


@given(st.lists(st.tuples(ids, ids), min_size=1, max_size=10))
def test_shapes_dtypes_and_masks(pairs):
    src, tgt = zip(*pairs, strict=True)
    batch = make_batch(src, tgt)
    n = len(pairs)
    assert batch.src_ids.shape == (n, max(len(s) for s in src))
    assert batch.tgt_in.shape == batch.tgt_out.shape == batch.tgt_mask.shape
    for arr in (batch.src_ids, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_lengths):
        assert arr.dtype == np.int32
    assert batch.tgt_mask.dtype == np.float32
    # the mask covers exactly the real target positions, and padding is PAD
    assert (batch.tgt_mask.sum(axis=1) == batch.tgt_lengths).all()
    assert (batch.tgt_out[batch.tgt_mask == 0] == PAD).all()
    positions = np.arange(batch.src_ids.shape[1])[None, :]
    assert (batch.src_ids[positions >= batch.src_lengths[:, None]] == PAD).all()


def test_batches_cover_every_pair_once_and_shuffle_by_seed():
    src = [[4 + i % 5] * (1 + i % 4) for i in range(23)]
    tgt = [[4 + i] for i in range(23)]

    def firsts(seed, bucket=False):
        rng = np.random.default_rng(seed)
        out = []
        for b in batches(src, tgt, 5, rng=rng, bucket=bucket):
            out += b.tgt_in[:, 1].tolist()
        return out

    assert sorted(firsts(0)) == [4 + i for i in range(23)]
    assert firsts(0) == firsts(0)
    assert firsts(0) != firsts(1)
    assert sorted(firsts(0, bucket=True)) == [4 + i for i in range(23)]


def test_bucketing_reduces_padding():
    rng = np.random.default_rng(0)
    src = [[5] * int(n) for n in rng.integers(1, 40, 200)]
    tgt = [[6] for _ in src]

    def padding(bucket):
        return sum(
            b.src_ids.size - int(b.src_lengths.sum())
            for b in batches(src, tgt, 16, rng=np.random.default_rng(1), bucket=bucket)
        )

    assert padding(True) < padding(False) / 4


# Token batching: batch_size counts padded tokens, rows x max(source, target + BOS) widths.


def _varied_pairs(count=300, seed=0):
    rng = np.random.default_rng(seed)
    src = [[4 + int(k) % 20] * int(n) for k, n in enumerate(rng.integers(0, 40, count))]
    tgt = [[4 + k % 50] + [5] * int(n) for k, n in enumerate(rng.integers(0, 30, count))]
    return src, tgt


def _token_batches(src, tgt, budget, seed=1, bucket=True):
    rng = None if seed is None else np.random.default_rng(seed)
    return list(batches(src, tgt, budget, rng=rng, bucket=bucket, batch_type="tokens"))


def _pair_ids(batch_list):
    """(first target id, source length, target length) per row: one identity per pair."""
    return [
        (int(row[1]), int(s), int(t) - 1)
        for b in batch_list
        for row, s, t in zip(b.tgt_in, b.src_lengths, b.tgt_lengths, strict=True)
    ]


@pytest.mark.parametrize("bucket", [True, False])
@pytest.mark.parametrize("budget", [1, 37, 200, 5000])
def test_token_batches_hold_every_pair_once_within_the_budget(bucket, budget):
    src, tgt = _varied_pairs()
    got = _token_batches(src, tgt, budget, bucket=bucket)
    expected = [(t[0], len(s), len(t)) for s, t in zip(src, tgt, strict=True)]
    assert sorted(_pair_ids(got)) == sorted(expected)
    for b in got:
        padded = len(b) * max(b.src_ids.shape[1], b.tgt_in.shape[1])
        # only a pair over the budget on its own may exceed it
        assert padded <= budget or len(b) == 1
        assert b.tgt_in.size <= max(budget, padded)


def test_a_pair_over_the_token_budget_is_a_batch_of_its_own():
    src, tgt = [[4] * 3, [4] * 50, [4] * 2], [[5] * 2, [5] * 2, [5] * 60]
    got = _token_batches(src, tgt, 20, seed=None, bucket=False)
    assert [len(b) for b in got] == [1, 1, 1]
    assert [token_cost(s, t) for s, t in zip(src, tgt, strict=True)] == [3, 50, 61]


def test_token_batches_fill_the_budget_greedily_by_padded_width():
    # costs max(len(src), len(tgt) + 1): 4, 4, 4, 6, 6; budget 12 takes 3 x 4 then 2 x 6
    src = [[4] * 4, [4] * 2, [4] * 3, [4] * 6, [4]]
    tgt = [[5], [5] * 3, [5], [5], [5] * 5]
    got = _token_batches(src, tgt, 12, seed=None, bucket=True)
    assert [b.src_ids.shape for b in got] == [(3, 4), (2, 6)]
    assert [b.tgt_in.shape for b in got] == [(3, 4), (2, 6)]


def test_token_batches_adapt_rows_to_length():
    src, tgt = _varied_pairs()
    got = _token_batches(src, tgt, 400)
    rows = {max(b.src_ids.shape[1], b.tgt_in.shape[1]): len(b) for b in got}
    assert rows[min(rows)] > 4 * rows[max(rows)]  # short pairs: many rows, long: few


def test_token_batches_are_deterministic_per_seed_and_shuffled_between_seeds():
    src, tgt = _varied_pairs()

    def ids(seed, bucket=True):
        return _pair_ids(_token_batches(src, tgt, 300, seed=seed, bucket=bucket))

    assert ids(3) == ids(3)
    assert ids(3) != ids(4)
    assert ids(3, bucket=False) == ids(3, bucket=False) != ids(4, bucket=False)


def test_token_bucketing_reduces_padding():
    # padding as the budget counts it: rows x width less each pair's own width
    src, tgt = _varied_pairs()

    def padding(bucket):
        total = 0
        for b in _token_batches(src, tgt, 400, bucket=bucket):
            widths = np.maximum(b.src_lengths, b.tgt_lengths)
            total += len(b) * max(b.src_ids.shape[1], b.tgt_in.shape[1]) - int(widths.sum())
        return total

    assert padding(True) < padding(False) / 4


def test_every_rng_draw_happens_before_the_first_batch():
    # the trainer replays an epoch's order from the rng state at its start, then sets the
    # rng to its interrupted state after skipping the steps already taken
    src, tgt = _varied_pairs()
    for batch_type in ("sentences", "tokens"):
        rng = np.random.default_rng(5)
        it = batches(src, tgt, 64, rng=rng, bucket=True, batch_type=batch_type)
        next(it)
        after_first = rng.bit_generator.state
        list(it)
        assert rng.bit_generator.state == after_first


def test_sentence_batches_keep_their_order_for_a_seed():
    # checkpoints written before token batching resume with the same batches
    src, tgt = _varied_pairs(40)
    rng = np.random.default_rng(2)
    order = rng.permutation(40)
    lengths = np.array([len(src[i]) + len(tgt[i]) for i in order])
    order = order[np.argsort(lengths, kind="stable")]
    chunks = [order[a : a + 8] for a in range(0, 40, 8)]
    chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    got = batches(src, tgt, 8, rng=np.random.default_rng(2), bucket=True)
    for chunk, b in zip(chunks, got, strict=True):
        assert b.src_lengths.tolist() == [len(src[i]) for i in chunk]
        assert b.tgt_in[:, 1].tolist() == [tgt[i][0] for i in chunk]


def test_unknown_batch_type_is_refused():
    with pytest.raises(ValueError, match="batch_type must be one of sentences, tokens"):
        list(batches([[4]], [[5]], 2, batch_type="words"))


def test_batch_type_config_and_flag(tmp_path, capsys):
    assert TrainConfig(batch_type="tokens").batch_type == "tokens"
    with pytest.raises(ValidationError, match="batch_type"):
        TrainConfig(batch_type="words")
    out = tmp_path / "m"
    code = main(
        ["train", "--out", str(out), "--epochs", "1", "--no-progress"]
        + ["--batch-type", "tokens", "--batch-size", "40", "--bucket"]
    )
    assert code == 0
    assert load_checkpoint(out).meta["config"]["train"]["batch_type"] == "tokens"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["train", "--out", str(tmp_path / "n"), "--batch-type", "words"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --batch-type: invalid choice: 'words'" in err
    assert not (tmp_path / "n").exists()
    config = tmp_path / "c.toml"
    config.write_text('[train]\nbatch_type = "words"\n')
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "n")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "train.batch_type" in err and "c.toml" in err, err
