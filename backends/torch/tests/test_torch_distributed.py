"""Data-parallel training in the torch backend: torchrun starts real processes on the
loopback interface (gloo on the CPU), which must train the weights one process trains on
the ranks' batches together, stop with an error naming a rank that dies, and leave a
model directory that loads."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch.distributed.run")
if not torch.distributed.is_available():
    pytest.skip("torch built without torch.distributed", allow_module_level=True)

from safetensors.numpy import load_file  # noqa: E402

import seq2seq_kit  # noqa: E402
from seq2seq_kit import cli  # noqa: E402
from seq2seq_kit.spec import OptimizerSpec  # noqa: E402

#: a small attention RNN on num2words pairs, no validation split
MODEL = [
    "--data", "num2words", "--valid-fraction", "0", "--backend", "torch",
    "--hidden-size", "32", "--embedding-size", "16", "--attention", "dot",
    "--threads", "1", "--no-progress", "--epochs", "100",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(args: list[str], nproc: int = 2) -> subprocess.Popen:
    """``python -m torch.distributed.run ... -m seq2seq_kit train ARGS`` on loopback."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "TF_CONFIG"):
        env.pop(name, None)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
        "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
        "-m", "seq2seq_kit", "train", *args,
    ]  # fmt: skip
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"torchrun did not finish in {timeout} s:\n{out}\n{err}")
    return process.returncode, out + err


def max_difference(a: Path, b: Path) -> float:
    """The largest absolute difference between the tensors of two safetensors files
    holding the same names."""
    left, right = load_file(a), load_file(b)
    assert sorted(left) == sorted(right)
    return max(float(np.abs(left[k] - right[k]).max()) for k in left)


@pytest.mark.parametrize(
    "pairs, accumulate",
    [
        (40, 1),  # batches of 8 = 4 + 4 pairs
        # 33 pairs: each epoch's fifth batch holds one pair, so rank 1 has none for it and
        # joins the update's all-reduce with nothing; with accumulate 2 that update is the
        # third, and the first two accumulate two batches on each rank
        (33, 2),
    ],
)
def test_two_ranks_train_the_weights_of_one_process(tmp_path, capsys, pairs, accumulate):
    data = [*MODEL, "--limit", str(pairs), "--accumulate", str(accumulate), "--max-updates", "6"]
    code, output = finish(torchrun([*data, "--batch-size", "4", "--out", str(tmp_path / "two")]))
    assert code == 0, output
    assert cli.main(["train", *data, "--batch-size", "8", "--out", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    for name in ("weights.safetensors", "last.safetensors", "optimizer.safetensors"):
        difference = max_difference(tmp_path / "one" / name, tmp_path / "two" / name)
        assert difference <= 1e-5, f"{name}: {difference}"
    meta = json.loads((tmp_path / "two" / "model.json").read_text())["meta"]
    assert meta["distributed"] == {
        "launcher": "torchrun",
        "world_size": 2,
        "batch_size_per_rank": 4,
        "global_batch_size": 8,
    }
    assert meta["trainer"]["updates"] == 6
    single = json.loads((tmp_path / "one" / "model.json").read_text())["meta"]
    assert single["distributed"]["world_size"] == 1
    # every rank's loss share summed, and the evaluation's sums over the ranks' pairs:
    # the same figures as one process
    for key in ("train_loss", "valid_loss", "valid_accuracy"):
        assert meta["history"][-1][key] == pytest.approx(single["history"][-1][key], rel=1e-5)


#: per update, each rank's batches (pairs of source and target ids): rank 0's first batch
#: has only empty sources (the RNN encoder does not run); rank 1 has no batch in the
#: second update and accumulates two in the third
UPDATES = [
    ([[([], [3, 4]), ([], [5])]], [[([3, 5], [5]), ([4], [6, 7, 8])]]),
    ([[([3], [4])], [([4, 4, 5], [3])]], []),
    ([[([5, 6], [7, 7])]], [[([3], [4])], [([6], [8, 3])]]),
]


def spec():
    from seq2seq_kit.spec import ModelSpec

    return ModelSpec(
        src_vocab_size=8, tgt_vocab_size=9, hidden_size=6, embedding_size=4, attention="general"
    )


#: The optimizer of the ranks and of the one process: Adam's defaults and an average.
AVERAGED = OptimizerSpec(ema_decay=0.5)


def batches_of(pairs_lists):
    from seq2seq_kit.batching import make_batch

    return [make_batch([s for s, _ in pairs], [t for _, t in pairs]) for pairs in pairs_lists]


def train_rank(rank: int, port: int, out: str) -> None:
    """One rank of :func:`test_train_step_sums_the_gradients_of_the_ranks` (spawned)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from seq2seq_kit_torch import build, join

    from seq2seq_kit.runtime import Launch, Runtime

    group = join(Launch("torchrun", rank, 2), Runtime())
    model = build(spec(), seed=3, optimizer=AVERAGED, runtime=Runtime(group=group))
    shares = []
    for update in UPDATES:
        total = sum(b.num_target_tokens for part in update for b in batches_of(part))
        shares.append(model.train_step(batches_of(update[rank]), total_tokens=total))
    average = {f"ema:{name}": w for name, w in model.ema_weights().items()}
    np.savez(Path(out) / f"rank{rank}.npz", shares=shares, **model.get_weights(), **average)
    group.close()


def test_train_step_sums_the_gradients_of_the_ranks(tmp_path):
    """The contract of ``train_step(batches, total_tokens)``: the ranks' update is that of
    their batches accumulated in one process, also when a rank's batch skips the encoder
    or a rank has no batch at all; the returned shares sum to the one process's loss. Each
    rank keeps the moving average of the weights the one process keeps."""
    from seq2seq_kit_torch import build

    torch.multiprocessing.spawn(train_rank, args=(free_port(), str(tmp_path)), nprocs=2)
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    single = build(spec(), seed=3, optimizer=AVERAGED)
    losses = [single.train_step(batches_of(update[0] + update[1])) for update in UPDATES]
    np.testing.assert_allclose(ranks[0]["shares"] + ranks[1]["shares"], losses, rtol=1e-6)
    weights, average = single.get_weights(), single.ema_weights()
    for name, weight in weights.items():
        assert not np.array_equal(average[name], weight), name
        for rank in ranks:
            np.testing.assert_allclose(rank[name], weight, atol=1e-6, err_msg=name)
            np.testing.assert_allclose(rank[f"ema:{name}"], average[name], atol=1e-6)


def decoded_validation():
    """A decoded validation of seven sources against one or two references each, for the
    model of :func:`spec` (outputs of at most 6 of the characters a to e, two sources a
    batch: the ranks decode different numbers of batches)."""
    from seq2seq_kit.decoded_validation import DecodedValidation
    from seq2seq_kit.decoding import Search
    from seq2seq_kit.metrics import METRICS
    from seq2seq_kit.vocab import Vocabulary

    rng = np.random.default_rng(0)
    sources = [rng.integers(4, 8, size=n).tolist() for n in (1, 2, 3, 4, 5, 2, 3)]
    references = [["ab", "abc"], ["c"], ["de"], ["a b"], ["e"], ["dd", "d"], ["eeb"]]
    search = Search(beam=1, n_best=1, length_penalty=0.0, max_length=6, batch_size=2, engine=False)
    return DecodedValidation(sources, references, Vocabulary.build(["abcde"]), search, METRICS)


def decode_rank(rank: int, port: int, out: str) -> None:
    """One rank of :func:`test_decoded_validation_sums_the_ranks_counts` (spawned)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from seq2seq_kit_torch import build, join

    from seq2seq_kit.runtime import Launch, Runtime

    group = join(Launch("torchrun", rank, 2), Runtime())
    model = build(spec(), seed=3, optimizer=None, runtime=Runtime(group=group))
    scores = decoded_validation()(model, group)
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(scores))
    group.close()


def test_decoded_validation_sums_the_ranks_counts(tmp_path):
    """Each rank decodes every second source and the metrics' counts are all-reduced: both
    ranks get the scores of one process decoding them all, the model's network never
    called through its DistributedDataParallel wrapper (which would wait for the other
    rank at every batch)."""
    from seq2seq_kit_torch import build

    from seq2seq_kit.runtime import SingleProcess

    torch.multiprocessing.spawn(decode_rank, args=(free_port(), str(tmp_path)), nprocs=2)
    single = decoded_validation()(build(spec(), seed=3, optimizer=None), SingleProcess())
    assert 0 < single["chrf"] < 100 and single["cer"] > 0
    for rank in range(2):
        scores = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert scores.keys() == single.keys()
        for name, value in single.items():
            assert scores[name] == pytest.approx(value, rel=1e-12, abs=1e-12), (rank, name)


def group_on(store, rank: int, world_size: int):
    """A :class:`TorchGroup` on ``store`` without a process group (failed_ranks uses the
    store alone)."""
    from seq2seq_kit_torch.distributed import TorchGroup

    group = TorchGroup.__new__(TorchGroup)
    group.rank, group.world_size, group.launcher = rank, world_size, "torchrun"
    group._store, group._keys = store, "seq2seq-kit/0"
    return group


GLOO_ERROR = RuntimeError("[gloo/transport/tcp/pair.cc:553] Connection closed by peer")


def test_failed_ranks_are_the_silent_and_the_self_declared(monkeypatch):
    import seq2seq_kit_torch.distributed as distributed

    monkeypatch.setattr(distributed, "CHECK_IN_SECONDS", 0.3)
    store = torch.distributed.HashStore()
    # rank 2 fails on its own (not in a collective): it names itself and tells the others
    assert group_on(store, 2, 4).failed_ranks(ValueError("bad batch")) == [2]
    store.set("seq2seq-kit/0/alive/3", "1")
    start = time.monotonic()
    # rank 0's collective failed: 3 checked in, 2 declared itself, 1 says nothing
    assert group_on(store, 0, 4).failed_ranks(GLOO_ERROR) == [1, 2]
    assert 0.3 <= time.monotonic() - start < 2.0  # waited for rank 1, then gave up
    store.set("seq2seq-kit/0/alive/1", "1")
    start = time.monotonic()
    assert group_on(store, 0, 4).failed_ranks(GLOO_ERROR) == [2]
    assert time.monotonic() - start < 0.3  # everyone accounted for: no wait


class GoneStore:
    """A store whose host process has died."""

    def set(self, key, value):
        raise RuntimeError("Connection reset by peer")

    check = set


def test_failed_ranks_without_the_store(monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    # rank 0's process hosted the store: when it is unreachable, rank 0 is gone
    assert group_on(GoneStore(), 1, 2).failed_ranks(GLOO_ERROR) == [0]
    assert group_on(GoneStore(), 0, 2).failed_ranks(GLOO_ERROR) == []
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")  # torchrun's agent held it
    assert group_on(GoneStore(), 1, 2).failed_ranks(GLOO_ERROR) == []


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # the parent pid follows the ")" that ends the command name
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def rank_of(pid: int) -> int | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    ranks = [v[len(b"RANK=") :] for v in environ if v.startswith(b"RANK=")]
    return int(ranks[0]) if ranks else None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the ranks in /proc")
def test_a_killed_rank_stops_the_run_with_its_number_and_the_directory_loads(tmp_path):
    out = tmp_path / "model"
    args = [*MODEL, "--limit", "40", "--batch-size", "4", "--save-every", "2"]
    process = torchrun([*args, "--max-updates", "1000000", "--out", str(out)])
    try:
        deadline = time.monotonic() + 45
        while not (out / "model.json").exists():
            assert process.poll() is None, finish(process)[1]
            assert time.monotonic() < deadline, "no checkpoint within 45 s"
            time.sleep(0.1)
        workers = {rank_of(pid): pid for pid in children(process.pid)}
        assert set(workers) == {0, 1}, workers
        os.kill(workers[1], signal.SIGKILL)
        code, output = finish(process, timeout=45)
    finally:
        if process.poll() is None:
            process.kill()
    assert code != 0, output
    assert "error: rank 0: rank 1 of 2 (torchrun) failed or stopped" in output, output
    assert "training stopped" in output, output
    translator = seq2seq_kit.load(out)
    assert translator.translate(["12"])[0]  # a usable model


def test_a_backend_without_the_capability_is_refused_under_torchrun(tmp_path, monkeypatch, capsys):
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    code = cli.main(["train", "--backend", "numpy", "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "rank 1 of 2 by torchrun" in err and "'distributed'" in err, err
    assert "torch" in err  # names the backend that can
    assert not (tmp_path / "m").exists()


def test_a_rank_without_a_rendezvous_address_is_refused(tmp_path, monkeypatch, capsys):
    for name, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    for name in ("MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE"):
        monkeypatch.delenv(name, raising=False)
    args = ["train", *MODEL, "--limit", "8", "--max-updates", "1", "--out", str(tmp_path / "m")]
    code = cli.main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "error: rank 0 of 2 cannot join the torch.distributed group" in err, err
    assert "MASTER_ADDR=(not set)" in err, err
    assert not (tmp_path / "m").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal of a missing GPU")
def test_a_missing_gpu_is_refused_by_name_before_the_rendezvous(tmp_path, monkeypatch, capsys):
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    args = ["train", *MODEL, "--device", "cuda", "--out", str(tmp_path / "m")]
    code = cli.main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "error: device 'cuda' -> cuda:1 (LOCAL_RANK=1): torch sees no GPU" in err, err


def test_a_tf_config_launch_is_refused_naming_torchrun(tmp_path, monkeypatch, capsys):
    workers = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    config = {"cluster": workers, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    code = cli.main(["train", *MODEL, "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "trains data-parallel under torchrun" in err and "--backend keras" in err, err


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs (NCCL, one each)")
def test_two_gpu_ranks_train_the_weights_of_one(tmp_path, capsys):
    data = [*MODEL, "--limit", "40", "--max-updates", "6", "--device", "cuda"]
    code, output = finish(torchrun([*data, "--batch-size", "4", "--out", str(tmp_path / "two")]))
    assert code == 0, output
    assert cli.main(["train", *data, "--batch-size", "8", "--out", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    # GPU kernels sum in their own orders: equal up to float32 rounding over 6 updates
    names = [tmp_path / run / "last.safetensors" for run in ("one", "two")]
    assert max_difference(*names) <= 1e-4
