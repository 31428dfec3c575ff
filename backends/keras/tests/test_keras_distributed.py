"""The Keras backend's runtime: TensorFlow's thread pools, devices, mixed bfloat16, and
data-parallel training with ``tf.distribute.MultiWorkerMirroredStrategy``: two CPU worker
processes started with ``TF_CONFIG`` on loopback, against one process with their combined
batch, and a worker killed in the middle of a run."""

from __future__ import annotations

import functools
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

from seq2seq_kit.batching import make_batch
from seq2seq_kit.errors import BackendError
from seq2seq_kit.plugins import registry
from seq2seq_kit.runtime import Runtime
from seq2seq_kit.spec import ModelSpec, TransformerSpec

if "keras" not in registry().backends:
    pytest.skip("the keras backend is not installed", allow_module_level=True)
safetensors = pytest.importorskip("safetensors.numpy")

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
LAUNCH_VARIABLES = ("TF_CONFIG", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def write_pairs(path: Path, numbers: range) -> Path:
    """Numbers spelled digit by digit: ``12\tone two``."""
    lines = [f"{n}\t{' '.join(WORDS[int(d)] for d in str(n))}" for n in numbers]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def environment(worker: int | None = None, ports: list[int] | None = None) -> dict[str, str]:
    """This process's environment without launcher variables, plus ``TF_CONFIG`` for
    ``worker`` of a cluster on ``ports``."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
    env["OMP_NUM_THREADS"] = "1"
    if worker is not None:
        cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
        env["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": worker}}
        )
    return env


def train_command(out: Path, *options: str) -> list[str]:
    common = ["--backend", "keras", "--no-progress", "--threads", "1", "--seed", "3"]
    return [sys.executable, "-m", "seq2seq_kit", "train", "--out", str(out), *common, *options]


def start_workers(out: Path, *options: str) -> list[subprocess.Popen]:
    ports = free_ports(2)
    return [
        subprocess.Popen(
            train_command(out, *options),
            env=environment(worker, ports),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in (1, 0)
    ][::-1]


def finish(process: subprocess.Popen, timeout: float) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"the process did not end within {timeout} s; stderr:\n{err[-3000:]}")
    return process.returncode, err


def tensors(directory: Path, name: str) -> dict[str, np.ndarray]:
    return safetensors.load_file(str(directory / name))


def test_two_workers_take_the_updates_of_one_process_with_their_combined_batch(tmp_path):
    # 41 pairs in batches of 8: 6 updates, the last of one pair (worker 1 trains nothing
    # in it but still joins the all-reduce); the moving average of the weights, mirrored
    # like them, is validated and saved (weights.safetensors, ema/ of optimizer.safetensors)
    train = write_pairs(tmp_path / "train.tsv", range(100, 141))
    valid = write_pairs(tmp_path / "valid.tsv", range(500, 508))
    options = ["--data", str(train), "--valid", str(valid), "--hidden-size", "16"]
    options += ["--attention", "general", "--epochs", "1", "--no-bucket", "--ema-decay", "0.5"]
    workers = start_workers(tmp_path / "two", *options, "--batch-size", "4")
    one = subprocess.run(
        train_command(tmp_path / "one", *options, "--batch-size", "8"),
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    for worker in workers:
        code, err = finish(worker, 120)
        assert code == 0, err[-3000:]

    one_meta = json.loads((tmp_path / "one" / "model.json").read_text())["meta"]
    two_meta = json.loads((tmp_path / "two" / "model.json").read_text())["meta"]
    assert one_meta["distributed"] == {
        "launcher": "none",
        "world_size": 1,
        "batch_size_per_rank": 8,
        "global_batch_size": 8,
    }
    assert two_meta["distributed"] == {
        "launcher": "tf_config",
        "world_size": 2,
        "batch_size_per_rank": 4,
        "global_batch_size": 8,
    }
    assert two_meta["trainer"]["updates"] == one_meta["trainer"]["updates"] == 6
    # the workers' loss shares add up to the one process's loss
    np.testing.assert_allclose(
        two_meta["history"][0]["train_loss"], one_meta["history"][0]["train_loss"], atol=1e-5
    )
    for name in ("last.safetensors", "weights.safetensors", "optimizer.safetensors"):
        expected, got = tensors(tmp_path / "one", name), tensors(tmp_path / "two", name)
        assert expected.keys() == got.keys()
        for key in expected:
            np.testing.assert_allclose(got[key], expected[key], atol=1e-5, err_msg=f"{name} {key}")
    start = tensors(tmp_path / "one", "last.safetensors")
    assert any(np.abs(w).max() > 0 for w in start.values())
    averaged = tensors(tmp_path / "two", "weights.safetensors")
    assert all(not np.array_equal(averaged[key], value) for key, value in start.items())


def test_a_killed_worker_stops_the_other_naming_it_and_the_model_still_loads(tmp_path):
    out = tmp_path / "run"
    options = ["--data", "num2words", "--limit", "1000", "--hidden-size", "16"]
    options += ["--epochs", "30", "--batch-size", "8", "--save-every", "10"]
    lead, other = start_workers(out, *options)
    deadline = time.monotonic() + 90
    while not (out / "model.json").exists():  # the first checkpoint
        assert lead.poll() is None and other.poll() is None, finish(lead, 5)[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 90 s"
        time.sleep(0.2)
    other.send_signal(signal.SIGKILL)
    other.wait()
    killed = time.monotonic()
    code, err = finish(lead, 90)
    # TensorFlow's coordination service misses the worker's heartbeats (about 10 s)
    assert time.monotonic() - killed < 60
    assert code == 2, err[-3000:]
    assert "rank 0: rank 1 of 2 (tf_config) failed or stopped" in err
    assert "keeps the checkpoint written at epoch" in err

    from seq2seq_kit.api import load

    translator = load(out)
    assert translator.meta["distributed"]["world_size"] == 2
    assert len(translator.translate(["12"])) == 1


def test_threads_are_applied_on_the_first_build_and_a_later_count_warns():
    code = """
import warnings
import tensorflow as tf
from seq2seq_kit.plugins import registry
from seq2seq_kit.runtime import Runtime
from seq2seq_kit.spec import ModelSpec
keras = registry().backends["keras"]
keras.create(ModelSpec(7, 7, hidden_size=4), runtime=Runtime(threads=2))
print(tf.config.threading.get_intra_op_parallelism_threads(),
      tf.config.threading.get_inter_op_parallelism_threads())
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    keras.create(ModelSpec(7, 7, hidden_size=4), runtime=Runtime(threads=2))
    print(len(caught))
    keras.create(ModelSpec(7, 7, hidden_size=4), runtime=Runtime(threads=3))
    print(len(caught), caught[-1].message)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], env=environment(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "2 2"
    assert lines[1] == "0"  # the same count again: nothing to say
    assert lines[2].startswith("1 TensorFlow already runs with 2 thread(s)")
    assert "3 cannot apply until the process restarts" in lines[2]


SPECS = {
    "rnn": ModelSpec(11, 11, hidden_size=16, embedding_size=8, attention="general"),
    "transformer": TransformerSpec(
        11, 11, d_model=16, num_heads=4, ff_size=24, max_positions=12, dropout=0.0
    ),
}


def mixed_batch():
    # an empty source: its fully masked attention row stays finite in float16 too
    return make_batch([[4, 5, 6], [], [6, 4, 7, 8]], [[4, 5], [6, 7, 4, 5], [8]])


@functools.cache
def float32_losses(kind: str) -> list[float]:
    model = registry().backends["keras"].create(SPECS[kind], seed=3, runtime=Runtime())
    return [model.train_step([mixed_batch()]) for _ in range(4)]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("kind", SPECS)
def test_mixed_precision_computes_in_16_bits_and_keeps_float32_weights_state_and_outputs(
    kind, precision
):
    batch = mixed_batch()
    model = (
        registry()
        .backends["keras"]
        .create(SPECS[kind], seed=3, runtime=Runtime(precision=precision))
    )
    losses = [model.train_step([batch]) for _ in range(4)]
    assert losses[-1] < losses[0]  # it trains
    # 8 (bfloat16) or 11 (float16) bits of mantissa: the same maths, visibly rounded
    np.testing.assert_allclose(losses, float32_losses(kind), rtol=2e-2)
    assert losses != float32_losses(kind)
    assert {w.dtype for w in model.get_weights().values()} == {np.dtype(np.float32)}
    moments = {k: v for k, v in model.optimizer_state().items() if k[:2] in ("m/", "v/")}
    assert {m.dtype for m in moments.values()} == {np.dtype(np.float32)}
    assert model.log_probs(batch).dtype == np.float32
    state = model.encode(batch.src_ids, batch.src_lengths)
    log_probs, state = model.step(np.array([1, 1, 1], np.int32), state)
    log_probs, state = model.step(np.array([4, 6, 8], np.int32), state)
    assert log_probs.dtype == np.float32 and model.attention(state).dtype == np.float32
    np.testing.assert_allclose(np.exp(log_probs).sum(axis=1), 1.0, rtol=1e-5)


def gpus() -> int:
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def test_a_device_tensorflow_does_not_see_or_an_unknown_precision_is_refused_by_name():
    backend, spec = registry().backends["keras"], SPECS["rnn"]
    missing = f"cuda:{gpus()}"  # one past the last GPU
    with pytest.raises(BackendError, match=f"device '{missing}': TensorFlow sees"):
        backend.create(spec, runtime=Runtime(device=missing))
    with pytest.raises(BackendError, match="precision 'fp8': expected one of"):
        backend.create(spec, runtime=Runtime(precision="fp8"))


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_a_model_trains_on_the_gpu_and_loads_on_the_cpu(precision):
    if not gpus():
        pytest.skip("no GPU visible to TensorFlow")
    batch = make_batch([[4, 5, 6], [5]], [[4, 5], [6, 7, 4, 5]])
    backend = registry().backends["keras"]
    model = backend.create(
        SPECS["rnn"], seed=3, runtime=Runtime(device="cuda", precision=precision)
    )
    assert "GPU" in model.placement.device
    losses = [model.train_step([batch]) for _ in range(3)]
    assert losses[-1] < losses[0]
    on_cpu = backend.create(SPECS["rnn"], seed=5, runtime=Runtime(device="cpu"))
    on_cpu.set_weights(model.get_weights())
    np.testing.assert_allclose(on_cpu.loss(batch), model.loss(batch), rtol=2e-2)
