"""The PyTorch backend's runtime: threads, devices and mixed precision (``[train] threads``,
``device``, ``precision``). CUDA tests run only where torch sees a GPU."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from safetensors.numpy import load_file  # noqa: E402
from seq2seq_kit_torch.placement import resolve_device  # noqa: E402

from seq2seq_kit.batching import make_batch  # noqa: E402
from seq2seq_kit.checkpoint import load_checkpoint  # noqa: E402
from seq2seq_kit.cli import main  # noqa: E402
from seq2seq_kit.datasets import DIGITS  # noqa: E402
from seq2seq_kit.errors import BackendError  # noqa: E402
from seq2seq_kit.plugins import get_backend  # noqa: E402
from seq2seq_kit.runtime import Runtime  # noqa: E402
from seq2seq_kit.spec import ModelSpec, TransformerSpec  # noqa: E402

GPU = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not GPU, reason="torch sees no GPU")

# The digits task as ids: source characters and target characters from 4 on (0-3 are the
# special tokens).
_SOURCES, _TARGETS = zip(*DIGITS, strict=True)
_CHARS = sorted(set("".join(_SOURCES + _TARGETS)))
BATCH = make_batch(
    [[4 + _CHARS.index(c) for c in s] for s in _SOURCES],
    [[4 + _CHARS.index(c) for c in t] for t in _TARGETS],
)
VOCAB = 4 + len(_CHARS)
SPECS = {
    "rnn": ModelSpec(VOCAB, VOCAB, hidden_size=32, attention="general"),
    "transformer": TransformerSpec(
        VOCAB, VOCAB, encoder_layers=1, decoder_layers=1, d_model=32, num_heads=2, ff_size=64
    ),
}


@pytest.fixture
def threads():
    """Restore torch's process-wide thread count after the test."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def build(spec="rnn", **runtime):
    return get_backend("torch").create(SPECS[spec], seed=0, runtime=Runtime(**runtime))


@pytest.mark.parametrize("count", [1, 2])
def test_build_applies_the_runtime_threads(threads, count):
    torch.set_num_threads(3 - count)  # the other value, so the build must change it
    build(threads=count)
    assert torch.get_num_threads() == count


@pytest.mark.skipif(GPU, reason="a GPU is present")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(BackendError, match=r"device 'cuda'.*no GPU.*--device cpu"):
        build(device="cuda")


def test_cuda_index_past_the_count_names_it():
    index = torch.cuda.device_count() + 2
    with pytest.raises(BackendError, match=rf"device 'cuda:{index}'"):
        build(device=f"cuda:{index}")


def test_cuda_under_a_launcher_is_the_local_rank():
    index = torch.cuda.device_count() + 1
    with pytest.raises(BackendError, match=rf"cuda:{index} \(LOCAL_RANK={index}\)"):
        resolve_device("cuda", {"LOCAL_RANK": str(index)})
    if GPU:
        assert resolve_device("cuda", {"LOCAL_RANK": "0"}) == torch.device("cuda", 0)


def test_auto_is_a_gpu_when_there_is_one_else_the_cpu():
    model = build(device="auto").__wrapped__
    assert model.placement.device.type == ("cuda" if GPU else "cpu")
    log_probs = model.log_probs(BATCH)
    assert log_probs.dtype == np.float32 and np.isfinite(log_probs).all()


def train(model, updates=40):
    model.set_learning_rate(0.01)
    return [model.train_step([BATCH]) for _ in range(updates)]


def assert_float32(model):
    assert all(p.dtype == torch.float32 for p in model.__wrapped__.net.parameters())
    assert all(w.dtype == np.float32 for w in model.get_weights().values())
    state = model.optimizer_state()
    assert all(v.dtype == np.float32 for k, v in state.items() if k[:2] in ("m/", "v/"))
    assert model.log_probs(BATCH).dtype == np.float32
    logits, _ = model.step(np.array([4]), model.encode(np.array([[4, 5]]), np.array([2])))
    assert logits.dtype == np.float32


@pytest.mark.parametrize("spec", sorted(SPECS))
def test_bf16_trains_on_the_cpu_in_float32_weights(spec):
    model = build(spec, device="cpu", precision="bf16")
    losses = train(model)
    assert losses[-1] < 0.5 * losses[0]
    assert_float32(model)


@pytest.mark.parametrize("spec", sorted(SPECS))
def test_bf16_is_close_to_fp32_but_not_the_same(spec):
    exact = build(spec, device="cpu").log_probs(BATCH)
    mixed = build(spec, device="cpu", precision="bf16").log_probs(BATCH)
    mask = BATCH.tgt_mask.astype(bool)
    assert not np.array_equal(mixed[mask], exact[mask])  # autocast is in force
    np.testing.assert_allclose(mixed[mask], exact[mask], atol=0.05)


def test_fp16_on_the_cpu_is_refused():
    with pytest.raises(BackendError, match=r"fp16 needs a GPU.*bf16"):
        build(device="cpu", precision="fp16")


@needs_gpu
@pytest.mark.parametrize("spec", sorted(SPECS))
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_trains_and_its_weights_load_on_the_cpu(spec, precision):
    model = build(spec, device="cuda", precision=precision)
    assert model.__wrapped__.placement.device.type == "cuda"
    losses = train(model)
    assert losses[-1] < 0.5 * losses[0]
    assert_float32(model)
    on_cpu = build(spec, device="cpu")
    on_cpu.set_weights(model.get_weights())
    on_cpu.set_optimizer_state(model.optimizer_state())
    fp32_on_gpu = build(spec, device="cuda")
    fp32_on_gpu.set_weights(model.get_weights())
    np.testing.assert_allclose(on_cpu.log_probs(BATCH), fp32_on_gpu.log_probs(BATCH), atol=1e-4)
    back = build(spec, device="cuda")
    back.set_weights(on_cpu.get_weights())
    back.set_optimizer_state(on_cpu.optimizer_state())
    for name, value in model.get_weights().items():
        np.testing.assert_array_equal(back.get_weights()[name], value)
    # Adam continues on the GPU from the state that crossed through the CPU.
    assert np.isfinite(back.train_step([BATCH]))


def cli_train(tmp_path, *flags):
    out = tmp_path / "model"
    code = main(["train", "--out", str(out), "--epochs", "30", "--no-progress", *flags])
    return code, out


def test_cli_bf16_torch_writes_float32_weights(tmp_path, threads):
    code, out = cli_train(tmp_path, "--backend", "torch", "--precision", "bf16")
    assert code == 0
    stored = load_file(out / "weights.safetensors")
    assert {w.dtype for w in stored.values()} == {np.dtype(np.float32)}
    assert load_checkpoint(out).meta  # and the directory loads


def test_cli_bf16_numpy_is_refused(tmp_path, capsys):
    code, out = cli_train(tmp_path, "--backend", "numpy", "--precision", "bf16")
    assert code == 2
    error = capsys.readouterr().err
    assert "numpy" in error and "mixed_precision" in error
    assert not (out / "weights.safetensors").exists()
