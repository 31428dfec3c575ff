import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from seq2seq_kit.batching import batches, make_batch
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
