"""seq2seq-kit average: the element-wise mean of checkpoints' weights as a model directory
that every backend loads, and the refusals (N, --out, architectures, vocabularies)."""

import json
import shutil

import numpy as np
import pytest
from test_kept_checkpoints import LOSSES, config

import seq2seq_kit
from seq2seq_kit import trainer
from seq2seq_kit.api import load
from seq2seq_kit.checkpoint import load_checkpoint
from seq2seq_kit.cli import main
from seq2seq_kit.errors import CheckpointError, ConfigError
from seq2seq_kit.kept_checkpoints import checkpoint_path
from seq2seq_kit.plugins import registry


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run keeping its last 3 and best 2 validations (prescribed losses): updates 4,
    10, 12, 14 and 16."""
    tmp = tmp_path_factory.mktemp("average")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            trainer,
            "evaluate",
            lambda model, s, t, group=None: (LOSSES[int(model.optimizer_state()["step"])], 0.5),
        )
        seq2seq_kit.train(config(tmp, keep_last=3, keep_best=2), out=tmp / "run")
    return tmp / "run"


def weights(path):
    return load_checkpoint(path).weights


def mean(*paths):
    """The documented mean: the float64 sum over the checkpoints, divided, as float32."""
    tensors = [weights(path) for path in paths]
    return {
        name: (sum(t[name].astype(np.float64) for t in tensors) / len(tensors)).astype(np.float32)
        for name in tensors[0]
    }


def test_two_checkpoints_average_to_the_mean_of_their_tensors(run, tmp_path):
    out = seq2seq_kit.average(run, last=2, out=tmp_path / "avg")
    a, b = weights(run / checkpoint_path(16)), weights(run / checkpoint_path(14))
    got = weights(out)
    assert got.keys() == a.keys()
    for name, value in got.items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(
            value, mean(run / checkpoint_path(16), run / checkpoint_path(14))[name]
        )
        # the float32 nearest the exact mean: within half an ulp of (a + b) / 2
        exact = (a[name].astype(np.float64) + b[name]) / 2
        assert np.all(np.abs(value - exact) <= np.spacing(np.abs(value)) / 2), name
    assert any(not np.array_equal(got[n], a[n]) and not np.array_equal(got[n], b[n]) for n in a)
    averaged = load_checkpoint(out).meta["averaged"]
    assert averaged["by"] == "last" and averaged["model"] == str(run.resolve())
    assert averaged["checkpoints"] == [
        {
            "path": str((run / checkpoint_path(update)).resolve()),
            "weights_sha256": load_checkpoint(run / checkpoint_path(update)).weights_sha256,
        }
        for update in (16, 14)
    ]


def test_best_and_inputs_choose_the_checkpoints(run, tmp_path):
    # the two lowest losses: updates 10 (0.1) and 4 (0.3)
    best = seq2seq_kit.average(run, best=2, out=tmp_path / "best")
    expected = mean(run / checkpoint_path(10), run / checkpoint_path(4))
    for name, value in weights(best).items():
        np.testing.assert_array_equal(value, expected[name])
    paths = [run / checkpoint_path(u) for u in (4, 12, 16)] + [run]
    named = seq2seq_kit.average(inputs=paths, out=tmp_path / "named")
    expected = mean(*paths)
    for name, value in weights(named).items():
        np.testing.assert_array_equal(value, expected[name])
    assert load_checkpoint(named).meta["averaged"]["by"] == "inputs"


def test_an_average_is_a_model_every_backend_loads(run, tmp_path, capsys):
    out = tmp_path / "avg"
    assert main(["average", "--model", str(run), "--last", "3", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out.resolve())
    texts = ["1", "6", "0123"]
    reference = load(out, backend="numpy").hypotheses(texts)
    for name, backend in sorted(registry().backends.items()):
        if backend.builds("rnn"):
            got = load(out, backend=name).hypotheses(texts)
            assert [h[0].ids for h in got] == [h[0].ids for h in reference], name
    assert main(["evaluate", "--model", str(out), "--data", str(run.parent / "v.tsv")]) == 0
    assert main(["info", "--model", str(out)]) == 0
    assert "averaged:     3 checkpoints (last)" in capsys.readouterr().out
    saved = load_checkpoint(out)
    assert (
        "trainer" not in saved.meta and saved.meta["config"] == load_checkpoint(run).meta["config"]
    )
    # an average is no run to go on with
    with pytest.raises(CheckpointError, match="cannot resume"):
        seq2seq_kit.train(resume=out, out=tmp_path / "more", epochs=9)


@pytest.mark.parametrize(
    "args, said",
    [
        (["--last", "6"], "keeps 5 checkpoints (updates: 4, 10, 12, 14, 16); ask for at most 5"),
        (["--best", "0"], "argument --best: '0': the number of checkpoints must be >= 1"),
        (["--last", "-1"], "argument --last: '-1': the number of checkpoints must be >= 1"),
        (["--last", "1", "--best", "1"], "argument --best: not allowed with argument --last"),
        ([], "one of the arguments --last --best --inputs is required"),
    ],
)
def test_refused_counts(run, tmp_path, capsys, args, said):
    try:
        code = main(["average", "--model", str(run), *args, "--out", str(tmp_path / "a")])
    except SystemExit as exc:  # argparse's refusals
        code = exc.code
    assert code == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_refused_in_python(run, tmp_path):
    out = tmp_path / "a"
    with pytest.raises(ConfigError, match="last=0: the number of checkpoints must be >= 1"):
        seq2seq_kit.average(run, last=0, out=out)
    with pytest.raises(ConfigError, match="needs one of last=N, best=N"):
        seq2seq_kit.average(run, last=1, best=1, out=out)
    with pytest.raises(ConfigError, match="name it with model=DIR"):
        seq2seq_kit.average(last=1, out=out)
    with pytest.raises(ConfigError, match="leave out model="):
        seq2seq_kit.average(run, inputs=[run], out=out)
    with pytest.raises(ConfigError, match="named twice"):
        seq2seq_kit.average(inputs=[run, run / ".." / run.name], out=out)
    assert not out.exists()


def test_a_directory_keeping_no_checkpoints_points_to_inputs(run, tmp_path, capsys):
    averaged = seq2seq_kit.average(run, last=2, out=tmp_path / "avg")
    args = ["average", "--model", str(averaged), "--last", "1", "--out", str(tmp_path / "a")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "keeps no checkpoints" in err and "--inputs DIR" in err and "at most 0" not in err
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("where", ["model", "checkpoint", "parent"])
def test_out_that_is_or_holds_what_is_read_is_refused(run, capsys, where):
    out = {"model": run, "checkpoint": run / checkpoint_path(16), "parent": run / "checkpoints"}
    before = (run / "model.json").read_text()
    code = main(
        ["average", "--model", str(run), "--last", "2", "--out", str(out[where]), "--overwrite"]
    )
    assert code == 2
    assert "which the average reads; write it to another directory" in capsys.readouterr().err
    assert (run / "model.json").read_text() == before
    assert (run / checkpoint_path(16)).exists()


def test_an_existing_model_at_out_needs_overwrite(run, tmp_path, capsys):
    out = tmp_path / "avg"
    seq2seq_kit.average(run, last=1, out=out)
    assert main(["average", "--model", str(run), "--best", "1", "--out", str(out)]) == 2
    assert "already holds a model; replace it with --overwrite" in capsys.readouterr().err
    args = ["average", "--model", str(run), "--best", "1", "--out", str(out), "--overwrite"]
    assert main(args) == 0
    for name, value in weights(out).items():
        np.testing.assert_array_equal(value, weights(run / checkpoint_path(10))[name])


def test_other_architectures_and_vocabularies_are_refused_by_name(run, tmp_path):
    wider = config(tmp_path, epochs=1)
    wider.model.hidden_size = 6
    seq2seq_kit.train(wider, out=tmp_path / "wider")
    with pytest.raises(CheckpointError) as refused:
        seq2seq_kit.average(inputs=[run, tmp_path / "wider"], out=tmp_path / "a")
    said = str(refused.value)
    assert f"{(tmp_path / 'wider').resolve()}: another architecture than {run.resolve()}" in said
    assert "spec hidden_size is 6 there, 4 in the first" in said
    for name, targets, difference in [
        ("more", "abc", "7 pieces there, 6 in the first"),
        ("others", "ac", "id 5 is 'c' there, 'b' in the first"),
    ]:
        other = config(tmp_path, epochs=1)
        data = "".join(f"{i}\t{targets[i % len(targets)]}\n" for i in range(8))
        (tmp_path / f"{name}.tsv").write_text(data)
        other.data.source = str(tmp_path / f"{name}.tsv")
        seq2seq_kit.train(other, out=tmp_path / name)
        with pytest.raises(CheckpointError) as refused:
            seq2seq_kit.average(inputs=[run, tmp_path / name], out=tmp_path / "a")
        assert f"another target vocabulary than {run.resolve()} ({difference})" in str(
            refused.value
        )
    assert not (tmp_path / "a").exists()


def test_a_listed_checkpoint_replaced_since_is_refused(run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    replaced = copy / checkpoint_path(14)
    shutil.rmtree(replaced)
    shutil.copytree(copy / checkpoint_path(12), replaced)  # a whole model, but not update 14
    with pytest.raises(CheckpointError, match="its weights changed since .* listed it"):
        seq2seq_kit.average(copy, last=2, out=tmp_path / "a")
    # a listing edited by hand is refused
    doc = json.loads((copy / "model.json").read_text())
    doc["meta"]["checkpoints"][0]["path"] = "../elsewhere"
    (copy / "model.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="changed after the model was saved"):
        seq2seq_kit.average(copy, last=1, out=tmp_path / "a")
