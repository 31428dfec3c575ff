"""The framework-free side of scaling out: how a launch is read from the environment, how
each rank's share of a batch is dealt, thread defaults, and what a runtime asks of a
backend."""

import json

import numpy as np
import pytest
from forged import forge
from hypothesis import given
from hypothesis import strategies as st

from seq2seq_kit.backend import Backend
from seq2seq_kit.batching import batches, shards
from seq2seq_kit.cli import main
from seq2seq_kit.errors import BackendError
from seq2seq_kit.runtime import (
    Launch,
    LaunchError,
    Runtime,
    SingleProcess,
    launch_environment,
)
from seq2seq_kit.spec import ModelSpec


def pairs(count, seed=0):
    rng = np.random.default_rng(seed)
    sources = [list(rng.integers(4, 9, rng.integers(0, 6))) for _ in range(count)]
    targets = [list(rng.integers(4, 9, rng.integers(1, 7))) for _ in range(count)]
    return sources, targets


def targets_of(batch):
    ends = batch.tgt_lengths - 1  # EOS
    return [list(row[:end]) for row, end in zip(batch.tgt_out, ends, strict=True)]


@given(
    count=st.integers(1, 40),
    batch_size=st.integers(1, 7),
    world=st.integers(1, 4),
    seed=st.integers(0, 3),
    bucket=st.booleans(),
)
def test_the_ranks_shares_make_up_the_batches_of_one_process_with_the_whole_batch(
    count, batch_size, world, seed, bucket
):
    sources, targets = pairs(count, seed)
    whole = list(
        batches(
            sources,
            targets,
            batch_size * world,
            rng=np.random.default_rng(seed),
            bucket=bucket,
        )
    )
    dealt = [
        list(
            shards(
                sources,
                targets,
                batch_size,
                rank=rank,
                world_size=world,
                rng=np.random.default_rng(seed),
                bucket=bucket,
            )
        )
        for rank in range(world)
    ]
    assert all(len(share) == len(whole) for share in dealt)
    for index, batch in enumerate(whole):
        parts = [dealt[rank][index] for rank in range(world)]
        assert {total for _, total in parts} == {batch.num_target_tokens}
        rows = [part for part, _ in parts if part is not None]
        assert sum(len(part) for part in rows) == len(batch)
        # contiguous blocks in rank order: the shares' targets are the batch's, in order
        assert [t for part in rows for t in targets_of(part)] == targets_of(batch)
        sizes = [0 if part is None else len(part) for part, _ in parts]
        assert max(sizes) - min(sizes) <= 1  # near-equal


def test_a_rank_without_pairs_in_a_short_batch_gets_none_and_the_whole_batch_tokens():
    sources, targets = [[4], [5, 6], [7]], [[4, 5], [6], [7, 8, 8]]
    got = [next(shards(sources, targets, 1, rank=r, world_size=4)) for r in range(4)]
    assert [batch is None for batch, _ in got] == [False, False, False, True]
    assert {total for _, total in got} == {3 + 2 + 4}


@pytest.mark.parametrize("rank, world", [(2, 2), (-1, 2), (0, 0)])
def test_shards_refuse_a_rank_outside_the_world(rank, world):
    with pytest.raises(ValueError, match="outside world_size"):
        next(shards([[4]], [[4]], 1, rank=rank, world_size=world))


def test_torchrun_variables_make_a_launch():
    env = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert launch_environment(env) == Launch("torchrun", 1, 4, 1, 2)
    assert launch_environment({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert launch_environment({}) is None


def test_tf_config_makes_a_launch():
    config = {
        "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]},
        "task": {"type": "worker", "index": 2},
    }
    assert launch_environment({"TF_CONFIG": json.dumps(config)}) == Launch("tf_config", 2, 3)


@pytest.mark.parametrize(
    "env, named",
    [
        ({"RANK": "one", "WORLD_SIZE": "2"}, "torchrun's environment"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2 outside WORLD_SIZE=2"),
        ({"TF_CONFIG": "{not json"}, "TF_CONFIG is not"),
        ({"TF_CONFIG": '{"cluster": {"worker": ["a:1"]}}'}, "TF_CONFIG is not"),
        (
            {"TF_CONFIG": '{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}'},
            "is not one of the 1 workers",
        ),
    ],
)
def test_malformed_launch_variables_are_named(env, named):
    with pytest.raises(LaunchError, match=named):
        launch_environment(env)


def test_a_malformed_launch_is_refused_by_the_cli_with_exit_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "x")
    assert main(["train", "--out", str(tmp_path / "m"), "--epochs", "1"]) == 2
    assert "torchrun's environment" in capsys.readouterr().err


def test_a_backend_without_distributed_is_refused_under_a_launcher(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    code = main(["train", "--backend", "numpy", "--out", str(tmp_path / "m"), "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "rank 0 of 2 by torchrun" in err and "'distributed'" in err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "runtime, lacking",
    [
        (Runtime(device="cuda:1"), "devices"),
        (Runtime(precision="bf16"), "mixed_precision"),
        (Runtime(group=SingleProcess(world_size=2)), "distributed"),
    ],
)
def test_a_runtime_needs_the_capability_it_uses(runtime, lacking):
    built = []
    plain = Backend("plain", "1", frozenset({"train"}), lambda spec, **kw: built.append(kw))
    with pytest.raises(BackendError, match=f"lacks \\['{lacking}'\\]"):
        plain.create(ModelSpec(src_vocab_size=5, tgt_vocab_size=5), runtime=runtime)
    assert not built


def test_a_build_written_before_runtimes_is_called_without_one():
    seen = []

    def old_build(spec, *, seed, optimizer):
        seen.append(seed)
        raise RuntimeError("built")

    old = Backend("old", "1", frozenset({"train"}), old_build)
    with pytest.raises(RuntimeError, match="built"):
        old.create(ModelSpec(src_vocab_size=5, tgt_vocab_size=5), seed=3)
    assert seen == [3]


def _claim_world_size(model_dir, world_size):
    """Edit a saved run's record as if it had trained on ``world_size`` processes."""
    path = model_dir / "model.json"
    doc = json.loads(path.read_text())
    doc["meta"]["distributed"]["world_size"] = world_size
    forge(path, doc)


def test_resuming_with_another_world_size_is_a_recorded_change(tmp_path, caplog):
    out = tmp_path / "m"
    base = ["train", "--backend", "numpy", "--hidden-size", "8", "--no-progress"]
    assert main([*base, "--epochs", "2", "--out", str(out)]) == 0
    _claim_world_size(out, 2)
    with caplog.at_level("INFO", logger="seq2seq_kit"):
        assert main(["train", "--resume", str(out), "--epochs", "3", "--no-progress"]) == 0
    assert "distributed.world_size 2 -> 1" in caplog.text
    meta = json.loads((out / "model.json").read_text())["meta"]
    assert meta["resumes"][-1]["changed"]["distributed.world_size"] == [2, 1]
    assert meta["distributed"]["world_size"] == 1


def test_resuming_mid_epoch_with_another_world_size_is_refused(tmp_path, capsys):
    out = tmp_path / "m"
    base = ["train", "--backend", "numpy", "--hidden-size", "8", "--no-progress"]
    assert main([*base, "--max-updates", "3", "--out", str(out)]) == 0
    _claim_world_size(out, 2)
    before = (out / "model.json").read_text()
    assert main(["train", "--resume", str(out), "--max-updates", "6"]) == 2
    assert "resumes only with the world size it ran with" in capsys.readouterr().err
    assert (out / "model.json").read_text() == before


def test_a_malformed_torchrun_variable_is_named():
    with pytest.raises(LaunchError, match="WORLD_SIZE='x' is not a whole number"):
        launch_environment({"WORLD_SIZE": "x", "RANK": "0"})
