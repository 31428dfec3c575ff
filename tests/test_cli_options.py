"""Every command-line value obeys the config file's rules (one definition: the pydantic
models), and the hints the CLI prints are true."""

import argparse
import json
from pathlib import Path
from types import UnionType
from typing import Union, get_args, get_origin

import pytest
from pydantic import ValidationError

from seq2seq_kit.cli import main, parser
from seq2seq_kit.config import section_models

BAD_VALUES = ["0", "-1", "1.5", "nan", "inf", "-inf", "x", "1e300"]


def _subcommands():
    root = parser()
    sub = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def _config_flags():
    """(command, flag, section, key) for every flag that sets a config key."""
    for name, command in _subcommands().items():
        for action in command._actions:
            if "." in (action.dest or "") and action.type is not None:
                section, key = action.dest.split(".")
                yield name, action.option_strings[0], section, key


def _config_accepts(section: str, key: str, value: str) -> bool:
    """Whether a config model of ``[section]`` that has ``key`` (each architecture's, for
    ``[model]``) takes ``value`` for it, the other keys at their defaults. A rule across keys
    (an error of the whole table, such as ``seed`` without ``sampling``) is left out: a flag
    checks its own key's rules, the whole config the others. A list key takes the value as
    its one item, as its flag does."""
    for model in section_models(section):
        if key not in model.model_fields:
            continue
        listed = get_origin(model.model_fields[key].annotation) is list  # the flag: A,B
        try:
            model.model_validate_strings({key: [value] if listed else value})
        except ValidationError as exc:
            if all(err["loc"] for err in exc.errors()):
                continue
        return True
    return False


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("opts") / "digits"
    assert main(["train", "--out", str(out), "--no-progress"]) == 0
    return out


def _required_args(command: str, model_dir) -> list[str]:
    return {
        "train": ["--out", str(model_dir.parent / "never")],
        "preprocess": ["--out", str(model_dir.parent / "never-corpus")],
        "translate": ["--model", str(model_dir)],
        "evaluate": ["--model", str(model_dir), "--data", "digits"],
        "serve": ["--model", str(model_dir)],
    }[command]


def test_every_option_of_every_command_comes_from_the_config():
    flags = list(_config_flags())
    commands = {command for command, *_ in flags}
    assert {"train", "translate", "evaluate", "serve"} <= commands
    serve = {k for c, _, s, k in flags if c == "serve" and s == "serve"}
    switches = [  # --allow-reload / --no-allow-reload: a flag without a type
        a for a in _subcommands()["serve"]._actions if isinstance(a, argparse.BooleanOptionalAction)
    ]
    serve |= {a.dest.removeprefix("serve.") for a in switches if a.dest.startswith("serve.")}
    assert serve == set(section_models("serve")[0].model_fields)  # every [serve] key
    train = {(s, k) for c, _, s, k in flags if c == "train"}
    # every scalar key of [data], [model] and [train] has a train flag
    for section in ("data", "model", "train"):
        fields = [f for m in section_models(section) for f in m.model_fields.items()]
        for key, field in fields:
            if field.annotation in (bool,) or key.endswith("options"):  # dicts: files only
                continue
            if "Literal" in str(field.annotation):
                continue
            assert (section, key) in train, f"train has no flag for {section}.{key}"


@pytest.mark.parametrize("value", BAD_VALUES)
def test_a_value_the_config_rejects_is_rejected_as_a_flag(value, model_dir, capsys):
    for command, flag, section, key in _config_flags():
        if _config_accepts(section, key, value):
            continue
        with pytest.raises(SystemExit) as exc:
            main([command, *_required_args(command, model_dir), f"{flag}={value}"])
        err = capsys.readouterr().err
        assert exc.value.code == 2, (command, flag, value)
        assert f"argument {flag}: " in err and "Traceback" not in err, err
        assert f"usage: seq2seq-kit {command}" in err  # the subcommand's usage


WRITTEN = ["true", "false", "never", "1", "2.5", "1e1", "100", "1_0"]
MISWRITTEN = ["0", "0.0", "-1", "101", "nan", "yes", "no", "on", "off", "t", "n", "True", "1 2"]


@pytest.mark.parametrize("text", WRITTEN + MISWRITTEN)
def test_a_boolean_or_value_flag_reads_what_a_config_file_reads(text, capsys):
    """``--early-stopping`` (true, false, never or a number): the flag takes a text exactly
    when the config file takes it written there (as a TOML value, else a TOML string), with
    the same value (``1`` the number, not true), and refuses it otherwise with the config's
    message (``0`` is not false)."""
    import tomllib

    from seq2seq_kit.config import Config

    try:
        written = tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        written = text

    def boolean_or_value(section, key):
        for model in section_models(section):
            annotation = model.model_fields[key].annotation if key in model.model_fields else None
            if get_origin(annotation) in (Union, UnionType) and bool in get_args(annotation):
                return True
        return False

    flags = [(c, f, s, k) for c, f, s, k in _config_flags() if boolean_or_value(s, k)]
    assert ("translate", "--early-stopping", "decode", "early_stopping") in flags
    for command, flag, section, key in flags:
        try:
            expected = getattr(Config.model_validate({section: {key: written}}), section)
        except ValidationError as exc:
            expected, why = None, exc.errors()[0]["msg"]
        args = [command, *_required_args(command, Path("m")), f"{flag}={text}"]
        if expected is None:
            with pytest.raises(SystemExit) as exit_:
                parser().parse_args(args)
            err = capsys.readouterr().err
            assert exit_.value.code == 2 and f"argument {flag}: {text!r}: {why}" in err, err
        else:
            value = vars(parser().parse_args(args))[f"{section}.{key}"]
            assert value == getattr(expected, key) and type(value) is type(getattr(expected, key))
    assert (text in WRITTEN) == (expected is not None)


def test_the_issue_examples_exit_2_naming_the_option(model_dir, capsys):
    for args, flag in [
        (["--beam", "0"], "--beam"),
        (["--n-best", "0"], "--n-best"),
        (["--max-length", "-1"], "--max-length"),
        (["--length-penalty", "nan"], "--length-penalty"),
        (["--batch-size", "0"], "--batch-size"),
    ]:
        with pytest.raises(SystemExit) as exc:
            main(["translate", "--model", str(model_dir), *args, "3"])
        assert exc.value.code == 2 and f"argument {flag}" in capsys.readouterr().err
    for args, flag in [
        (["--epochs", "0"], "--epochs"),
        (["--batch-size", "0"], "--batch-size"),
        (["--dropout", "1.5"], "--dropout"),
        (["--learning-rate", "inf"], "--learning-rate"),
    ]:
        with pytest.raises(SystemExit) as exc:
            main(["train", "--out", str(model_dir.parent / "x"), *args])
        assert exc.value.code == 2 and f"argument {flag}" in capsys.readouterr().err
    assert not (model_dir.parent / "x").exists()


def test_a_rule_across_keys_names_the_flags(tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path / "m"), "--hidden-size", "33", "--bidirectional"])
    err = capsys.readouterr().err
    assert code == 2 and "hidden_size must be even" in err and "Traceback" not in err


def test_mistyped_flag_prints_the_subcommand_usage(model_dir, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["translate", "--model", str(model_dir), "--beem", "3"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "usage: seq2seq-kit translate" in err and "unrecognized arguments: --beem" in err


def test_flag_values_reach_the_config_unchanged(model_dir, capsys):
    code = main(["translate", "--model", str(model_dir), "--batch-size", "1", "--beam", "2", "7"])
    assert code == 0 and capsys.readouterr().out == "seven\n"


def test_evaluate_says_why_bleu_is_zero_on_one_word_outputs(model_dir, capsys):
    assert main(["evaluate", "--model", str(model_dir), "--data", "digits"]) == 0
    out = capsys.readouterr().out
    assert "exact match: 1.0000" in out and "BLEU:        0.00" in out
    assert "no output has 4 words" in out
    assert main(["evaluate", "--model", str(model_dir), "--data", "digits", "--json"]) == 0
    assert "4-gram" in json.loads(capsys.readouterr().out)["bleu_note"]


def test_plot_input_without_attention_is_refused_before_writing(model_dir, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out_dir = tmp_path / "plots"
    code = main(["plot", "--model", str(model_dir), "--input", "3", "--out-dir", str(out_dir)])
    assert code == 2 and "no attention" in capsys.readouterr().err
    assert not out_dir.exists()


def test_architecture_flags_are_defined_once_and_grouped_by_architecture(capsys):
    (train,) = [c for name, c in _subcommands().items() if name == "train"]
    dests = [a.dest for a in train._actions]
    assert len(dests) == len(set(dests))
    assert {"model.architecture", "model.dropout", "model.d_model", "model.cell"} <= set(dests)
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = capsys.readouterr().out
    rnn, transformer = (
        help_text.index("[model] options of architecture rnn"),
        help_text.index("[model] options of architecture transformer"),
    )
    listed = help_text.index("\n  --hidden-size N"), help_text.index("\n  --d-model N")
    assert rnn < listed[0] < transformer < listed[1]
    assert "default 0.0 (rnn), 0.1 (transformer)" in " ".join(help_text.split())


@pytest.mark.parametrize(
    "args, flag, owner, chosen",
    [
        (["--num-heads", "2"], "--num-heads", "transformer", "rnn"),
        (["--architecture", "transformer", "--cell", "gru"], "--cell", "rnn", "transformer"),
        (
            ["--architecture", "rnn", "--max-positions", "9"],
            "--max-positions",
            "transformer",
            "rnn",
        ),
        (
            ["--architecture", "transformer", "--no-bidirectional"],
            "--bidirectional",
            "rnn",
            "transformer",
        ),
    ],
)
def test_a_flag_of_the_other_architecture_exits_2_naming_it(
    tmp_path, capsys, args, flag, owner, chosen
):
    out = tmp_path / "m"
    assert main(["train", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert f"{flag}: an option of architecture {owner}" in err and "Traceback" not in err
    assert f"but the model's architecture is {chosen}" in err
    assert not out.exists()


def test_the_config_files_architecture_decides_which_flags_apply(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('[model]\narchitecture = "transformer"\n')
    out = tmp_path / "m"
    assert main(["train", "--config", str(config), "--out", str(out), "--hidden-size", "8"]) == 2
    err = capsys.readouterr().err
    assert "--hidden-size: an option of architecture rnn" in err
    assert "transformer (from the config file or the default)" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--num-heads", "5"], "num_heads (5) must divide d_model (64)"),
        (["--d-model", "30"], "num_heads (4) must divide d_model (30)"),
        (["--share-embeddings"], "set [data] shared_vocabulary = true (--shared-vocabulary)"),
    ],
)
def test_transformer_rules_across_keys_exit_2(tmp_path, capsys, args, message):
    out = tmp_path / "m"
    assert main(["train", "--out", str(out), "--architecture", "transformer", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_a_rule_across_keys_is_checked_on_the_values_given_together(tmp_path, capsys):
    """--num-heads 3 alone breaks 'divides d_model (64)'; with --d-model 48 it does not: a
    flag is checked alone for its own bounds only."""
    from seq2seq_kit.plugins import get_backend

    args = ["--architecture", "transformer", "--num-heads", "3", "--d-model", "48"]
    code = main(["train", "--out", str(tmp_path / "m"), *args, "--epochs", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert "must divide" not in err
    if "transformer" in get_backend("numpy").capabilities:
        assert code == 0
    else:  # the config passed; the backend is what refuses
        assert code == 2 and "lacks ['transformer']" in err


def test_a_list_flag_with_nothing_but_spaces_is_refused(model_dir, capsys):
    # trimmed to no item, " " would ban nothing while the user meant the space token
    with pytest.raises(SystemExit) as exc:
        main(["translate", "--model", str(model_dir), "--banned-tokens", " ", "3"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "argument --banned-tokens: ' ': no item" in err
    assert main(["translate", "--model", str(model_dir), "--banned-tokens", "", "3"]) == 0
