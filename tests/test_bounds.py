"""Bounded reads and bounded sizes: a line, a config file, every size a flag, a config or
a dataset option sets is refused with exit 2 naming it before memory grows; out of memory
in any backend is exit 2 naming the settings that asked for it; SIGTERM during a read is
exit 143."""

import io
import os
import resource
import signal
import subprocess
import sys
import time
from typing import get_args

import annotated_types
import pytest

import seq2seq_kit
import seq2seq_kit.training
import seq2seq_kit.translator
from seq2seq_kit import cli
from seq2seq_kit.config import Config, section_models
from seq2seq_kit.data import read_lines
from seq2seq_kit.errors import (
    ConfigError,
    DataError,
    OutOfMemory,
    allocating,
    allocation_failure,
    out_of_memory,
)
from seq2seq_kit.tokenizers import SentencePieceOptions, WordOptions

GIB = 1 << 30


def quick(epochs: int = 2) -> Config:
    config = Config()
    config.train.epochs, config.train.progress = epochs, False
    return config


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bounds") / "digits"
    seq2seq_kit.train(quick(), out=out)
    return out


def run_cli(args, *, memory=2 * GIB, stdin=subprocess.DEVNULL, timeout=120, cwd=None):
    """``python -m seq2seq_kit ARGS`` with its address space capped at ``memory`` bytes, so
    that a read or an allocation without bound fails fast instead of taking the machine."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "seq2seq_kit", *args],
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=cap,
        env=env,
        cwd=cwd,
    )


# --------------------------------------------------------------------------------------
# Unbounded reads
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["evaluate", "--model", "{model}", "--data", "/dev/zero"],
        ["train", "--data", "/dev/zero", "--out", "{tmp}/m", "--no-progress"],
        ["preprocess", "--data", "/dev/zero", "--out", "{tmp}/c"],
        ["translate", "--model", "{model}"],
    ],
    ids=["evaluate", "train", "preprocess", "translate"],
)
def test_dev_zero_is_refused_at_its_first_nul_not_read_forever(command, model_dir, tmp_path):
    args = [a.format(model=model_dir, tmp=tmp_path) for a in command]
    with open("/dev/zero", "rb") as zero:
        stdin = zero if command[0] == "translate" else subprocess.DEVNULL
        done = run_cli(args, stdin=stdin)
    name = "<stdin>" if command[0] == "translate" else "/dev/zero"
    assert done.returncode == 2, done.stderr
    assert f"{name}:1: a NUL character (is this a binary file?): U+0000 at column 1" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_config_file_without_end_is_refused_by_its_size(tmp_path):
    done = run_cli(["train", "--config", "/dev/zero", "--out", str(tmp_path / "m")])
    assert done.returncode == 2, done.stderr
    assert "/dev/zero: over 1048576 bytes, too large for a config file" in done.stderr
    assert not (tmp_path / "m").exists()


def test_a_line_over_max_line_bytes_names_the_key_file_and_line(model_dir, tmp_path, capsys):
    data = tmp_path / "long.tsv"
    data.write_bytes(b"1\tone\n" + b"2" * 500 + b"\ttwo\n")
    args = ["evaluate", "--model", str(model_dir), "--data", str(data)]
    assert cli.main([*args, "--max-line-bytes", "100"]) == 2
    err = capsys.readouterr().err
    assert f"{data}:2: longer than data.max_line_bytes = 100 bytes" in err
    assert "raise it (--max-line-bytes N)" in err


def test_translate_caps_its_standard_input_lines(model_dir, monkeypatch, capsys):
    stdin = io.TextIOWrapper(io.BytesIO(b"1\n" + b"2" * 50 + b"\n"))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert cli.main(["translate", "--model", str(model_dir), "--max-line-bytes", "10"]) == 2
    assert "<stdin>:2: longer than data.max_line_bytes = 10 bytes" in capsys.readouterr().err


class Chunks(io.BytesIO):
    """A binary stream that records how much each ``readline`` asked for."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.asked: list[int] = []

    def readline(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        self.asked.append(-1 if size is None else size)
        return super().readline(size)


def test_read_lines_never_asks_for_more_than_the_limit():
    stream = Chunks(b"x" * 10_000)
    with pytest.raises(DataError, match=r"s:1: longer than data.max_line_bytes = 8 bytes"):
        list(read_lines(stream, "s", 8))
    assert stream.asked and all(0 < n <= 10 for n in stream.asked)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"abcd\r\nefgh", [(1, "abcd"), (2, "efgh")]),  # at the limit, CRLF not counted
        (b"abcd\n", [(1, "abcd")]),
    ],
)
def test_lines_at_the_limit_are_read(data, expected):
    assert list(read_lines(io.BytesIO(data), "s", 4)) == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"abcde", r"s:1: longer than data.max_line_bytes = 4"),
        (b"ok\nabcdefgh\n", r"s:2: longer than data.max_line_bytes = 4"),
        # a character cut by the limit is no encoding error of the file
        (b"ab\xc3\xa9\xc3\xa9", r"s:1: longer than data.max_line_bytes = 4"),
        # what was read is checked first: a binary file is named as one
        (b"a\x00" + b"b" * 100, r"s:1: a NUL character .* at column 2"),
        (b"a\xff" + b"b" * 100, r"s:1: not valid UTF-8: byte 0xff at byte 2"),
        # a list of lines (no readline) is held to the limit too
    ],
)
def test_lines_over_the_limit_are_refused(data, message):
    with pytest.raises(DataError, match=message):
        list(read_lines(io.BytesIO(data), "s", 4))


def test_an_iterable_of_lines_is_held_to_the_limit():
    with pytest.raises(DataError, match=r"s:2: longer than data.max_line_bytes = 4"):
        list(read_lines([b"ok\n", b"abcdefgh\n"], "s", 4))


def test_sigterm_while_an_error_is_reported_exits_143(tmp_path, monkeypatch):
    class Stderr(io.StringIO):
        """Receives SIGTERM as the first error message is written (as one arriving while a
        failed read is reported)."""

        signalled = False

        def write(self, text: str) -> int:
            if not self.signalled:
                self.signalled = True
                os.kill(os.getpid(), signal.SIGTERM)
            return super().write(text)

    err = Stderr()
    monkeypatch.setattr(sys, "stderr", err)
    before = signal.getsignal(signal.SIGTERM)
    code = cli.main(["evaluate", "--model", str(tmp_path / "none"), "--data", "digits"])
    assert code == 143
    assert "interrupted by SIGTERM" in err.getvalue()
    assert signal.getsignal(signal.SIGTERM) == before


def _blocked_reading_stdin(pid: int) -> bool:
    """Whether process ``pid`` waits in read(2) on its file descriptor 0."""
    with open(f"/proc/{pid}/syscall") as file:
        fields = file.read().split()
    return fields[:2] == ["0", "0x0"]


def test_sigterm_during_a_read_of_standard_input_exits_143(model_dir):
    if not os.access("/proc/self/syscall", os.R_OK):
        pytest.skip("no /proc/PID/syscall to see the read")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "seq2seq_kit", "translate", "--model", str(model_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"1\n2")  # a line begun, not ended: the read waits for the rest
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        while not _blocked_reading_stdin(proc.pid):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert b"interrupted by SIGTERM" in err and b"Traceback" not in err


# --------------------------------------------------------------------------------------
# Unbounded sizes
# --------------------------------------------------------------------------------------


def _upper_bound(field) -> int | None:
    for meta in field.metadata:
        if isinstance(meta, annotated_types.Le):
            return meta.le
        if isinstance(meta, annotated_types.Lt):
            return meta.lt
    return None


def _integer_fields():
    sections = ("data", "model", "train", "decode", "serve")
    models = [model for section in sections for model in section_models(section)]
    for model in [*models, WordOptions, SentencePieceOptions]:
        for key, field in model.model_fields.items():
            if int in (field.annotation, *get_args(field.annotation)):
                yield f"{model.__name__}.{key}", field


@pytest.mark.parametrize(("key", "field"), list(_integer_fields()), ids=lambda v: str(v))
def test_every_integer_setting_has_an_upper_bound(key, field):
    assert _upper_bound(field) is not None, f"{key} has no upper bound"


def test_a_huge_max_length_is_refused_naming_the_flag(model_dir, capsys):
    args = ["translate", "--model", str(model_dir), "--max-length", "1" + "0" * 23, "1"]
    with pytest.raises(SystemExit) as exit_:
        cli.main(args)
    assert exit_.value.code == 2
    assert "argument --max-length" in capsys.readouterr().err


def test_a_huge_accumulate_is_refused_before_the_output_is_touched(tmp_path, capsys):
    out = tmp_path / "m"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--out", str(out), "--accumulate", str(2**63), "--no-progress"])
    assert exit_.value.code == 2
    assert "argument --accumulate" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no model directory, no lock file


def test_num2words_options_out_of_range_are_named_not_blamed_on_the_model(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(f'[data]\nsource = "num2words"\noptions = {{ high = {10**47} }}\n')
    assert cli.main(["train", "--config", str(config), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert f"dataset 'num2words' with options {{'high': {10**47}}}: num2words high must be" in err
    assert "hidden" not in err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"high": 10**47}, r"num2words high must be in -10{18}\.\.10{18}, got 10{47}"),
        ({"high": 1e47}, r"num2words high must be an integer, got 1e\+47"),
        ({"count": 2.5}, r"num2words count must be an integer"),
        ({"count": 10**9, "high": 10**12}, r"num2words count must be in 1\.\.16777216"),
        ({"seed": -1}, r"num2words seed must be in"),
    ],
)
def test_num2words_options_are_bounded(options, message):
    with pytest.raises(DataError, match=message):
        seq2seq_kit.data.load_dataset("num2words", **options)


def test_nato_count_is_bounded_by_what_memory_holds():
    with pytest.raises(DataError, match=r"nato count must be in 1\.\.16777216, got 10000000000"):
        seq2seq_kit.data.load_dataset("nato", count=10**10, max_length=12)


@pytest.mark.parametrize(
    "options",
    [{"vocab_size": 2**40}, {"seed_sentencepiece_size": 2**40}],
)
def test_sentencepiece_sizes_are_refused_before_reading_data(options, tmp_path, capsys):
    config = quick()
    config.data.tokenizer = "sentencepiece"
    config.data.tokenizer_options = options
    with pytest.raises(seq2seq_kit.errors.ConfigError, match=next(iter(options))):
        seq2seq_kit.train(config, out=tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_torch_hidden_size_beyond_memory_is_exit_2_naming_it(tmp_path):
    pytest.importorskip("seq2seq_kit_torch")
    args = ["train", "--backend", "torch", "--hidden-size", "65536", "--epochs", "1"]
    done = run_cli([*args, "--out", str(tmp_path / "m"), "--no-progress"], memory=8 * GIB)
    assert done.returncode == 2, done.stderr
    assert "out of memory" in done.stderr and "model.hidden_size = 65536" in done.stderr
    assert "Traceback" not in done.stderr


def test_numpy_out_of_memory_names_the_model_sizes(tmp_path):
    # fits the machine (so no refusal up front), not the 2 GiB the process may use
    args = ["train", "--backend", "numpy", "--hidden-size", "8192", "--epochs", "1"]
    done = run_cli([*args, "--out", str(tmp_path / "m"), "--no-progress"], memory=2 * GIB)
    assert done.returncode == 2, done.stderr
    assert "out of memory (MemoryError" in done.stderr
    assert "model.hidden_size = 8192" in done.stderr and "Traceback" not in done.stderr


def test_a_framework_allocation_failure_becomes_out_of_memory():
    torch = pytest.importorskip("torch")
    expected = r"DefaultCPUAllocator.*: lower train.batch_size = 9"
    with pytest.raises(OutOfMemory, match=expected), allocating("train.batch_size = 9"):
        torch.empty(2**60)  # 4 EiB: beyond any address space


def test_a_tensorflow_allocation_failure_becomes_out_of_memory():
    tf = pytest.importorskip("tensorflow")
    expected = r"ResourceExhaustedError: .*OOM when allocating.*: lower decode.beam = 8"
    with pytest.raises(OutOfMemory, match=expected), allocating("decode.beam = 8"):
        tf.zeros((2**60,))  # 4 EiB: beyond any address space


class ResourceExhaustedError(Exception):
    """Named as TensorFlow's, which the core matches without importing TensorFlow."""


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        ResourceExhaustedError("OOM when allocating tensor with shape[65536,262144]"),
        RuntimeError("CUDA out of memory. Tried to allocate 64.00 GiB"),
        ValueError("Maximum allowed dimension exceeded"),
        OverflowError("Python int too large to convert to C ssize_t"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_out_of_memory_errors_of_every_kind_are_recognised(error):
    found = out_of_memory(error, "decode.beam = 1024")
    assert isinstance(found, OutOfMemory) and found.exit_code == 2
    assert str(found).endswith("lower decode.beam = 1024")
    wrapped = RuntimeError("while running the layer")
    wrapped.__cause__ = error  # as Keras wraps TensorFlow's
    assert isinstance(out_of_memory(wrapped, "x"), OutOfMemory)


@pytest.mark.parametrize(
    "error", [ValueError("bad value"), OverflowError("math range error"), KeyError("x")]
)
def test_other_errors_are_not_taken_for_out_of_memory(error):
    assert out_of_memory(error, "x") is None
    with pytest.raises(type(error)), allocating("x"):
        raise error


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        ResourceExhaustedError("OOM when allocating tensor with shape[65536,262144]"),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB"),
        OutOfMemory("decode.beam = 8", "MemoryError"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_the_allocation_failure_behind_an_error_is_found(error):
    """What the server words in a request's terms: the framework's error, found through
    the errors wrapping it (OutOfMemory from decoding, Keras's own)."""
    expected = error.why if isinstance(error, OutOfMemory) else type(error).__name__
    assert allocation_failure(error).startswith(expected)
    for wrapper in (OutOfMemory("decode.beam = 8", ""), RuntimeError("in the layer")):
        wrapper.__cause__ = error
        assert allocation_failure(wrapper).startswith(expected)
    assert allocation_failure(RuntimeError("in the layer")) is None
    assert allocation_failure(ConfigError("out of memory")) is None


def test_out_of_memory_while_decoding_names_the_decode_settings(model_dir, monkeypatch, capsys):
    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(seq2seq_kit.decoding, "greedy", exhausted)
    args = ["translate", "--model", str(model_dir), "--batch-size", "64", "--max-length", "9"]
    assert cli.main([*args, "12"]) == 2
    err = capsys.readouterr().err
    assert "decode.batch_size = 64" in err and "decode.max_length = 9" in err


def test_out_of_memory_while_training_names_the_batch_settings(tmp_path, monkeypatch, capsys):
    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(seq2seq_kit.training, "fit", exhausted)
    args = ["train", "--out", str(tmp_path / "m"), "--batch-size", "7", "--no-progress"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "train.batch_size = 7 (sentences)" in err and "model.hidden_size = 32" in err
