"""Nothing lost, nothing deleted that is not ours, nothing altered unnoticed: exports never
replace what they did not write, saves work in a directory that cannot be renamed (a mount
point), and every field of ``model.json`` that changes what a model computes is covered."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import types
from pathlib import Path

import pytest
from forged import forge

import seq2seq_kit
from seq2seq_kit import atomic, hookimpl
from seq2seq_kit import export as export_module
from seq2seq_kit.checkpoint import load_checkpoint
from seq2seq_kit.cli import main
from seq2seq_kit.config import Config
from seq2seq_kit.errors import CheckpointError, ExportError
from seq2seq_kit.integrity import file_sha256
from seq2seq_kit.plugins import build_registry


def quick(epochs: int = 300) -> Config:
    config = Config()
    config.train.epochs, config.train.progress = epochs, False
    return config


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("integrity") / "digits"
    seq2seq_kit.train(quick(), out=out)
    return out


@pytest.fixture
def copy(model_dir, tmp_path):
    """A fresh copy of the trained model, to damage."""
    out = tmp_path / "m"
    shutil.copytree(model_dir, out)
    return out


# ------------------------------------------------------------------ exports


def toy_exporter(checkpoint, out: Path) -> list[Path]:
    """Writes a new folder of two files, as an exporter plugin does."""
    out.mkdir()
    (out / "vocab.txt").write_text("\n".join(checkpoint.target_vocab.tokens) + "\n")
    (out / "model.bin").write_bytes(b"\x01" * 64)
    return [out / "vocab.txt", out / "model.bin"]


@pytest.fixture
def toy_format(monkeypatch):
    plugin = types.ModuleType("toy_exporter")
    plugin.register_exporters = hookimpl(lambda register: register("toy", toy_exporter))
    reg = build_registry(extra_plugins=(plugin,))
    monkeypatch.setattr(export_module, "registry", lambda: reg)
    return "toy"


def export(model, out, *flags):
    return main(["export", "--model", str(model), "--format", "toy", "--out", str(out), *flags])


def test_export_never_replaces_a_folder_of_user_files(model_dir, tmp_path, toy_format, capsys):
    out = tmp_path / "out"
    (out / "photos").mkdir(parents=True)
    (out / "photos" / "a.jpg").write_text("x")
    (out / "thesis.tex").write_text("thesis")
    assert export(model_dir, out, "--overwrite") == 2
    assert "holds no export" in capsys.readouterr().err
    assert (out / "thesis.tex").read_text() == "thesis" and (out / "photos" / "a.jpg").exists()
    assert sorted(p.name for p in out.iterdir()) == ["photos", "thesis.tex"]


def test_export_never_replaces_another_model(model_dir, copy, toy_format, capsys):
    assert export(model_dir, copy, "--overwrite") == 2
    assert "is a model directory" in capsys.readouterr().err
    assert seq2seq_kit.load(copy).translate(["7"]) == ["seven"]


def test_export_replaces_only_the_files_of_its_own_export(model_dir, tmp_path, toy_format):
    out = tmp_path / "out"
    assert export(model_dir, out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.bin", "vocab.txt"]
    (out / "README.txt").write_text("how we deploy this")
    (out / "old-only.bin").write_text("listed by an older export")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["export_format"] == "toy" and set(manifest["files"]) == {
        "model.bin",
        "vocab.txt",
    }
    manifest["files"]["old-only.bin"] = file_sha256(out / "old-only.bin")
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert export(model_dir, out) == 2  # an export is there: --overwrite says to replace it
    assert export(model_dir, out, "--overwrite") == 0
    # the old export's files replaced or removed, the user's note kept
    assert sorted(p.name for p in out.iterdir()) == [
        "README.txt",
        "manifest.json",
        "model.bin",
        "vocab.txt",
    ]
    assert export_module.open_export(out, "toy").keys() == {"model.bin", "vocab.txt"}


def test_export_through_a_symlink_writes_its_target_and_keeps_the_link(
    model_dir, tmp_path, toy_format
):
    target = tmp_path / "volume" / "exports"
    target.mkdir(parents=True)
    link = tmp_path / "current"
    link.symlink_to(target)
    assert export(model_dir, link) == 0
    assert export(model_dir, link, "--overwrite") == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert (target / "manifest.json").is_file()
    export_module.open_export(link, "toy")


def test_an_export_checks_every_file_against_its_manifest(model_dir, tmp_path, toy_format):
    out = tmp_path / "out"
    assert export(model_dir, out) == 0
    (out / "vocab.txt").write_text("nine\n")
    with pytest.raises(ExportError, match=r"vocab.txt: corrupted or truncated"):
        export_module.open_export(out, "toy")
    manifest = json.loads((out / "manifest.json").read_text())
    for name in ("../m/model.json", "/etc/passwd", ".seq2seq-kit-lock", ""):
        manifest["files"] = {name: "0" * 64}
        (out / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(ExportError, match="is not a file name inside"):
            export_module.open_export(out, "toy")
    (out / "manifest.json").write_text("{")
    with pytest.raises(ExportError, match="manifest.json"):
        export_module.open_export(out, "toy")


# ------------------------------------------------------------------ mount points


@contextlib.contextmanager
def mount_point(path: Path):
    """``path`` as a bind mount of itself: renaming it fails with EBUSY, as a container
    volume does. Skips where mounting is not allowed (not root, no CAP_SYS_ADMIN)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("bind mounts need root")
    done = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"mount --bind is not allowed here: {done.stderr.decode().strip()}")
    try:
        with pytest.raises(OSError) as busy:
            os.rename(path, path.with_name(path.name + ".moved"))
        assert busy.value.errno == errno.EBUSY
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_training_into_a_mount_point_saves_the_model(tmp_path, toy_format):
    with mount_point(tmp_path / "volume") as volume:
        assert main(["train", "--out", str(volume), "--epochs", "300", "--no-progress"]) == 0
        assert seq2seq_kit.load(volume).translate(["4"]) == ["four"]
        resume = ["train", "--resume", str(volume), "--epochs", "302", "--no-progress"]
        assert main(resume) == 0
        assert len(load_checkpoint(volume).meta["history"]) == 302
        assert not [p for p in volume.iterdir() if atomic.ours(p.name) and p.is_dir()]
        # exports and corpora are saved the same way
        with mount_point(tmp_path / "exports") as exports:
            assert export(volume, exports) == 0 and export(volume, exports, "--overwrite") == 0
            export_module.open_export(exports, "toy")
        with mount_point(tmp_path / "corpus") as corpus:
            args = ["preprocess", "--data", "digits", "--out", str(corpus), "--overwrite"]
            assert main(args) == 0 and main(args) == 0


def test_a_save_killed_after_its_commit_is_finished_by_the_next_reader(copy):
    """The commit record is written, then the moves are cut short: the old model.json
    with new weights would disagree, so the reader finishes the moves first."""
    ckpt = load_checkpoint(copy, extra=True)
    ckpt.meta["note"] = "second save"
    real_replace = os.replace
    moved = []

    def crash_after_one_move(src, dst):
        if moved and Path(src).parent.name.startswith(atomic.STAGING_PREFIX):
            raise KeyboardInterrupt  # killed between two moves
        moved.append(dst)
        return real_replace(src, dst)

    from seq2seq_kit.checkpoint import save_checkpoint

    os.replace = crash_after_one_move
    try:
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint(ckpt, copy)
    finally:
        os.replace = real_replace
    assert [p for p in copy.iterdir() if p.name.startswith(atomic.STAGING_PREFIX)]
    assert load_checkpoint(copy).meta["note"] == "second save"
    assert not [p for p in copy.iterdir() if p.name.startswith(atomic.STAGING_PREFIX)]


# ------------------------------------------------------------------ model.json fields


def edit(model: Path, change) -> None:
    doc = json.loads((model / "model.json").read_text())
    change(doc)
    (model / "model.json").write_text(json.dumps(doc, indent=2))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["source_vocab"]["tokens"].remove("5"), "source_vocab"),
        (lambda d: d["target_vocab"]["tokens"].reverse(), "target_vocab"),
        (lambda d: d.update(max_length=3), "max_length"),
        (lambda d: d["meta"]["config"]["decode"].update(beam=4), "meta.config"),
        (lambda d: d["spec"].update(dropout=0.5), "spec"),
        (lambda d: d["source_vocab"].update(tokenizer="word"), "source_vocab"),
        (lambda d: d.pop("tokenizer_files"), "tokenizer_files"),
        (lambda d: d.update(extra={}), "extra"),
    ],
)
def test_a_changed_model_json_field_is_refused_naming_it(copy, change, field, capsys):
    edit(copy, change)
    assert main(["translate", "--model", str(copy), "1", "4", "6", "7", "9"]) == 2
    err = capsys.readouterr().err
    assert f"{field} changed after the model was saved" in err, err
    assert "Traceback" not in err
    with pytest.raises(CheckpointError, match=field):
        load_checkpoint(copy)


def test_the_vocabulary_and_the_spec_must_agree_even_when_the_digests_are_forged(copy):
    doc = json.loads((copy / "model.json").read_text())
    doc["source_vocab"]["tokens"].remove("5")
    forge(copy / "model.json", doc)
    with pytest.raises(
        CheckpointError,
        match="source vocabulary has 12 tokens but the model.s spec src_vocab_size is 13",
    ):
        load_checkpoint(copy)


def test_rewriting_model_json_without_changing_a_value_is_fine(copy):
    doc = json.loads((copy / "model.json").read_text())
    (copy / "model.json").write_text(json.dumps(doc, sort_keys=True, ensure_ascii=True))
    assert seq2seq_kit.load(copy).translate(["1", "4", "6"]) == ["one", "four", "six"]


def test_a_huge_model_json_is_refused_before_it_is_read_whole(copy, monkeypatch):
    from seq2seq_kit import integrity

    monkeypatch.setattr(integrity, "MAX_JSON_BYTES", 1000)
    with pytest.raises(CheckpointError, match=r"model.json: not valid JSON \(over 1000 bytes"):
        load_checkpoint(copy)
    (copy / "model.json").unlink()
    (copy / "model.json").symlink_to("/dev/zero")  # endless: never read
    with pytest.raises(CheckpointError, match=r"model.json: .*not a plain file"):
        load_checkpoint(copy)


# ------------------------------------------------------------------ another program's files


def test_another_programs_manifest_is_never_taken_for_an_export(model_dir, tmp_path, toy_format):
    web = tmp_path / "web"
    web.mkdir()
    (web / "manifest.json").write_text('{"name": "my app", "files": ["index.html", "app.js"]}')
    for name in ("index.html", "app.js", "other.txt"):
        (web / name).write_text(name)
    before = {p.name: p.read_text() for p in web.iterdir()}
    for flags in ([], ["--overwrite"]):
        assert export(model_dir, web, *flags) == 2
        assert {p.name: p.read_text() for p in web.iterdir()} == before


def test_another_programs_model_or_corpus_json_is_never_taken_for_ours(tmp_path, capsys):
    folder = tmp_path / "mf"
    folder.mkdir()
    (folder / "model.json").write_text(
        '{"tokenizer_files": {"mydata.csv": "x"}, "extra": {"a": {"file": "thesis.tex"}}}'
    )
    (folder / "mydata.csv").write_text("1,2")
    (folder / "thesis.tex").write_text("thesis")
    args = ["train", "--out", str(folder), "--overwrite", "--no-progress"]
    assert main(args) == 2
    assert "not a seq2seq-kit model file" in capsys.readouterr().err
    (folder / "model.json").unlink()
    (folder / "corpus.json").write_text('{"files": ["mydata.csv"]}')
    assert main(["preprocess", "--data", "digits", "--out", str(folder), "--overwrite"]) == 2
    assert "no corpus" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["corpus.json", "mydata.csv", "thesis.tex"]


def test_a_save_removes_only_listed_files_that_it_vouches_for(copy):
    """A model.json of ours that was edited to list a user's file does not get it removed,
    and neither does one that lists a name no save writes."""
    (copy / "thesis.tex").write_text("thesis")
    doc = json.loads((copy / "model.json").read_text())
    doc["tokenizer_files"]["thesis.tex"] = "0" * 64
    (copy / "model.json").write_text(json.dumps(doc))  # the digests now disagree
    ckpt_doc = dict(doc)
    forge(copy / "model.json", ckpt_doc)
    seq2seq_kit.train(quick(2), out=copy, overwrite=True)
    assert (copy / "thesis.tex").read_text() == "thesis"


def test_a_folder_where_a_file_of_the_model_goes_is_refused_before_training(copy, capsys):
    (copy / "last.safetensors").unlink()
    (copy / "last.safetensors").mkdir()
    assert main(["train", "--out", str(copy), "--overwrite", "--no-progress"]) == 2
    assert "last.safetensors: a folder where a file of the model goes" in capsys.readouterr().err
    assert not [p for p in copy.iterdir() if atomic.ours(p.name)]


@pytest.mark.parametrize("version", [1, 0, -1, True, "2"])
def test_an_older_or_odd_format_version_does_not_turn_off_the_field_check(copy, version):
    doc = json.loads((copy / "model.json").read_text())
    doc["target_vocab"]["tokens"][5:7] = doc["target_vocab"]["tokens"][6:4:-1]
    doc["format_version"] = version
    (copy / "model.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="target_vocab changed|is not a version"):
        load_checkpoint(copy)


@pytest.mark.parametrize("name", ["model.json", "weights.safetensors"])
def test_a_fifo_or_a_device_in_a_model_directory_is_refused_not_read(copy, name):
    (copy / name).unlink()
    os.mkfifo(copy / name)  # opening it to read would block for ever
    with pytest.raises(CheckpointError, match=f"{name}: .*not a plain file"):
        load_checkpoint(copy)
    (copy / name).unlink()
    (copy / name).symlink_to("/dev/zero")  # reading it would never end
    with pytest.raises(CheckpointError, match=f"{name}: .*not a plain file"):
        load_checkpoint(copy)


def test_deeply_nested_json_is_a_clear_error(copy, tmp_path, toy_format, model_dir):
    (copy / "model.json").write_text("[" * 100_000)
    with pytest.raises(CheckpointError, match="nested too deeply"):
        load_checkpoint(copy)
    assert main(["train", "--out", str(copy), "--overwrite", "--no-progress"]) == 2
    out = tmp_path / "e"
    assert export(model_dir, out) == 0
    (out / "manifest.json").write_text("[" * 100_000)
    with pytest.raises(ExportError, match="nested too deeply"):
        export_module.open_export(out, "toy")


def test_a_reader_during_a_save_reads_one_save_or_the_other(copy, monkeypatch):
    """A save replaces the weights between the reader's reading of model.json and of the
    weights: the reader sees the mismatch, sees that a save is under way, reads again."""
    from seq2seq_kit import checkpoint

    ckpt = load_checkpoint(copy, extra=True)
    ckpt.weights = {k: v * 0.5 for k, v in ckpt.weights.items()}
    real_verify, saved = checkpoint._verify, []

    def save_in_between(path, sha, model_file):
        if not saved and path.name == "weights.safetensors":
            saved.append(True)
            checkpoint.save_checkpoint(ckpt, copy)  # another process's save, just now
        return real_verify(path, sha, model_file)

    monkeypatch.setattr(checkpoint, "_verify", save_in_between)
    loaded = load_checkpoint(copy)
    assert saved and all((loaded.weights[k] == ckpt.weights[k]).all() for k in ckpt.weights)


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda d: d["meta"].update(config=None), None),  # null: a model without a record
        (lambda d: d["meta"].update(config=[1]), "meta.config must be an object"),
        (lambda d: d["meta"]["config"].update(decode=[]), "meta.config.decode must be an object"),
        (lambda d: d["meta"].update(history={}), "meta.history must be a list of objects"),
        (lambda d: d["meta"].update(distributed=[]), "meta.distributed must be an object"),
        (
            lambda d: d["meta"]["distributed"].update(world_size="x"),
            "meta.distributed.world_size must be an integer",
        ),
        (lambda d: d["meta"].update(seconds=float("nan")), "meta.seconds must be a finite"),
        (lambda d: d.update(max_length=10**9), "max_length must be in [1, 1048576]"),
    ],
)
def test_a_forged_meta_of_the_wrong_shape_is_named_not_a_traceback(copy, capsys, edit, named):
    # digests re-sealed: the shapes every reader relies on are checked when the model loads
    doc = json.loads((copy / "model.json").read_text())
    edit(doc)
    forge(copy / "model.json", doc)
    if named is None:
        assert main(["translate", "--model", str(copy), "3"]) == 0
        return
    for command in (["translate", "--model", str(copy), "3"], ["info", "--model", str(copy)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert named in err and "Traceback" not in err, err


def test_a_small_json_file_reads_under_a_tight_memory_limit(tmp_path):
    """read_json sets aside what the file holds, not its bound (256 MB): a model.json
    reads in a process whose address space has 64 MB to spare (``ulimit -v``)."""
    import sys
    import textwrap

    path = tmp_path / "small.json"
    path.write_text(json.dumps({"pieces": list(range(1000))}))
    script = textwrap.dedent(
        f"""
        import resource
        from pathlib import Path
        from seq2seq_kit.integrity import read_json

        with open("/proc/self/status") as fh:
            peak = next(int(l.split()[1]) for l in fh if l.startswith("VmSize:")) * 1024
        spare = peak + (64 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (spare, spare))
        print(len(read_json(Path({str(path)!r}))["pieces"]))
        """
    )
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to measure the address space")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "1000"
