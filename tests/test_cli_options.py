"""Every command-line value obeys the config file's rules (one definition: the pydantic
models), and the hints the CLI prints are true."""

import argparse
import json

import pytest
from pydantic import ValidationError

from seq2seq_kit.cli import main, parser
from seq2seq_kit.config import Config

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
    model = type(Config.model_fields[section].default_factory())
    try:
        model.model_validate_strings({key: value})
    except ValidationError:
        return False
    return True


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("opts") / "digits"
    assert main(["train", "--out", str(out), "--no-progress"]) == 0
    return out


def _required_args(command: str, model_dir) -> list[str]:
    return {
        "train": ["--out", str(model_dir.parent / "never")],
        "translate": ["--model", str(model_dir)],
        "evaluate": ["--model", str(model_dir), "--data", "digits"],
    }[command]


def test_every_option_of_every_command_comes_from_the_config():
    flags = list(_config_flags())
    commands = {command for command, *_ in flags}
    assert {"train", "translate", "evaluate"} <= commands
    train = {(s, k) for c, _, s, k in flags if c == "train"}
    # every scalar key of [data], [model] and [train] has a train flag
    for section in ("data", "model", "train"):
        model = type(Config.model_fields[section].default_factory())
        for key, field in model.model_fields.items():
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
