"""Flags derived from the config models, and the argparse machinery every command shares:
one flag per config key, checked by the key's own rules, each given at most once."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from typing import Any

#: Config keys whose flag is not ``--KEY``: the dataset is ``--data``; the progress bar's
#: switch keeps its familiar ``--no-progress`` spelling (``--progress`` turns it on).
_FLAG_NAMES = {("data", "source"): "data"}
#: Config keys with no flag: dicts of options belong in a config file.
_NO_FLAG = {
    ("data", "options"),
    ("data", "tokenizer_options"),
    ("data", "source_tokenizer_options"),
    ("data", "target_tokenizer_options"),
}


_METAVARS: dict[Any, str] = {int: "N", int | None: "N", float: "X", float | None: "X"}
#: Config keys whose value is a directory, and those whose value is a file.
_DIRECTORY_KEYS = {("train", "init_from")}
_FILE_KEYS = {("decode", "replace_unk_table")}


def _flag(section: str, key: str) -> str:
    return "--" + _FLAG_NAMES.get((section, key), key).replace("_", "-")


def _flag_of(name: str) -> str:
    """The flag of an option an error advises (:func:`seq2seq_kit.errors.option`): a
    config key's (``train.epochs``: ``--epochs``) or an argument's (``resume``:
    ``--resume``)."""
    section, _, key = name.rpartition(".")
    return _flag(section, key)


def _field_checker(field: Any, key: str) -> Callable[[str], Any]:
    """argparse ``type=``: the value as the config field would accept it, or an
    ``ArgumentTypeError`` with pydantic's reason (so a flag obeys the config file's rules).
    The field alone is checked: rules across keys (num_heads divides d_model) wait for the
    whole config, where the flags' values meet. A list key takes its items separated by
    commas, spaces around each trimmed (``--freeze encoder,embeddings``; ``""`` is the empty
    list; a value with no item left, such as ``" "``, is refused). A key that is a boolean or
    something else (``decode.early_stopping``: true, false, ``never`` or a number) takes the
    values a config file writes: ``true``, ``false``, a number, a word (:func:`_written`),
    not the other spellings pydantic reads as booleans from text (``0``, ``yes``, ``off``)."""
    from typing import Annotated, get_origin

    from pydantic import TypeAdapter, ValidationError

    from ..config import Config

    adapter = TypeAdapter(Annotated[field.annotation, field], config=Config.model_config)
    listed = get_origin(field.annotation) is list
    boolean_or_value = _boolean_or_value(field.annotation)

    def check(text: str) -> Any:
        try:
            if boolean_or_value:
                # strict, as a config file's value: 0 is a number, "yes" a word
                return adapter.validate_python(_written(text))
            if listed:
                items = [p.strip() for p in text.split(",") if p.strip()]
                if text and not items:  # " ": an item the trimming would drop unseen
                    raise argparse.ArgumentTypeError(
                        f'{text!r}: no item once spaces are trimmed ("" is the empty list; '
                        f"an item of spaces or commas belongs in a config file)"
                    )
                return adapter.validate_python(items)
            return adapter.validate_strings(text)
        except ValidationError as exc:
            reasons = "; ".join(err["msg"] for err in exc.errors())
            raise argparse.ArgumentTypeError(f"{text!r}: {reasons}") from None

    check.__name__ = key  # argparse names the type in some messages
    return check


def _boolean_or_value(annotation: Any) -> bool:
    """Whether a key's type is a union of ``bool`` with other types."""
    import types
    from typing import Union, get_args, get_origin

    return get_origin(annotation) in (Union, types.UnionType) and bool in get_args(annotation)


def _written(text: str) -> Any:
    """A flag's text as a config file would hold the value: ``true`` and ``false`` the
    booleans, a number an ``int`` or a ``float`` (``0`` is the number 0, not false), any
    other text a string (``never``; ``yes`` and ``off`` too, which no boolean key takes)."""
    if text in ("true", "false"):
        return text == "true"
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return text


def _add_config_flags(
    p: argparse.ArgumentParser, section: str, only: Sequence[str] | None = None
) -> None:
    """One flag per key of the ``[section]`` config model (or those in ``only``), with the
    key's description, choices and checks; ``dest`` is ``"section.key"``. A flag left out is
    ``None``: the config file's value, or the default, stands.

    ``[model]`` has one model per architecture: a key they share (``architecture``,
    ``dropout``) is one flag, listed with its default for each; the others are listed in a
    group of their architecture's."""
    from typing import Literal, get_origin

    from ..config import section_models

    models = section_models(section)
    groups: dict[str, Any] = {}
    seen: set[str] = set()
    for model in models:
        for key, field in model.model_fields.items():
            if (section, key) in _NO_FLAG or (only is not None and key not in only) or key in seen:
                continue
            seen.add(key)
            owners = [m for m in models if key in m.model_fields]
            defaults = [m.model_fields[key].get_default(call_default_factory=True) for m in owners]
            # architecture's default is the config's (rnn), not each class's own name
            if key == "architecture" or len(set(map(repr, defaults))) == 1:
                default = repr(defaults[0])
            else:
                default = ", ".join(
                    f"{d!r} ({_architecture(m)})" for m, d in zip(owners, defaults, strict=True)
                )
            kwargs: dict[str, Any] = {
                "dest": f"{section}.{key}",
                "default": None,
                "help": f"{field.description} (config {section}.{key}; default {default})",
            }
            choices = [c for m in owners for c in _literal(m.model_fields[key].annotation)]
            if field.annotation is bool:
                kwargs["action"] = _OnceBool
            elif get_origin(field.annotation) is Literal:
                kwargs["choices"] = list(dict.fromkeys(choices))
            else:
                kwargs["type"] = _field_checker(field, key)
                kwargs["metavar"] = _metavar(section, key, field.annotation)
            target = p
            if len(owners) < len(models):  # one architecture's key
                name = _architecture(owners[0])
                if name not in groups:
                    groups[name] = p.add_argument_group(
                        f"[model] options of architecture {name}",
                        f"only with --architecture {name} (config model.architecture)"
                        + (", the default" if owners[0] is models[0] else ""),
                    )
                target = groups[name]
            target.add_argument(_flag(section, key), **kwargs)


def _add_quantization(p: argparse.ArgumentParser, what: str) -> None:
    """``--quantization SCHEME``: one of :data:`seq2seq_kit.quantization.SCHEMES`, each
    explained in the help after ``what`` the flag does."""
    from ..quantization import SCHEMES

    p.add_argument(
        "--quantization",
        choices=list(SCHEMES),
        help=f"{what}. " + "; ".join(f"{name}: {meaning}" for name, meaning in SCHEMES.items()),
    )


def _metavar(section: str, key: str, annotation: Any) -> str:
    """The placeholder of a key's flag in the help: DIR, FILE, N, X, A,B (a list), the forms of a
    boolean that also takes names and numbers ({true,false,never,X}) or VALUE."""
    from typing import Annotated, get_args, get_origin

    if (section, key) in _DIRECTORY_KEYS:
        return "DIR"
    if (section, key) in _FILE_KEYS:
        return "FILE"
    if _boolean_or_value(annotation):
        forms = [get_args(a)[0] if get_origin(a) is Annotated else a for a in get_args(annotation)]
        words = ["true", "false", *(w for a in forms for w in _literal(a))]
        words += ["X"] if float in forms else []
        return "{" + ",".join(words) + "}"
    return "A,B" if get_origin(annotation) is list else _METAVARS.get(annotation, "VALUE")


def _literal(annotation: Any) -> tuple[Any, ...]:
    from typing import Literal, get_args, get_origin

    return get_args(annotation) if get_origin(annotation) is Literal else ()


def _architecture(model: type[Any]) -> str:
    """The architecture a ``[model]`` config class describes."""
    return model.model_fields["architecture"].default


def _flag_values(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The config keys given as flags, nested by section: ``{"train": {"epochs": 5}}``."""
    given: dict[str, dict[str, Any]] = {}
    for dest, value in vars(args).items():
        if "." in dest and value is not None:
            section, key = dest.split(".", 1)
            given.setdefault(section, {})[key] = value
    return given


def _file_and_flags(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The keys the ``--config`` file sets with the command's flags over them, by section,
    and the flags alone (to name them in errors)."""
    from ..config import explicit_keys, load_config

    data = explicit_keys(load_config(args.config))
    flags = _flag_values(args)
    for section, values in flags.items():
        data.setdefault(section, {}).update(values)
    return data, flags


def _validated(data: dict[str, Any], flags: dict[str, dict[str, Any]], path: str | None) -> Any:
    """``data`` as a :class:`~seq2seq_kit.config.Config`.

    Raises:
        ConfigError: a rule broken, naming the flag that set the key, or the key of the
            config file ``path``.
    """
    from pydantic import ValidationError

    from ..config import Config, describe_errors
    from ..errors import ConfigError

    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        names = {(s, k): _flag(s, k) for s, values in flags.items() for k in values}
        where = f"{path}: " if path else ""
        raise ConfigError(where + describe_errors(exc, names)) from None


class _Once(argparse._StoreAction):
    """A value flag given twice is an error: which one was meant is a guess."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        if getattr(namespace, self.dest, None) is not None:
            parser.error(f"argument {option_string}: given more than once")
        super().__call__(parser, namespace, values, option_string)


class _OnceBool(argparse.BooleanOptionalAction):
    """``--x --no-x`` (or ``--x --x``) is an error, as for value flags."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        if getattr(namespace, self.dest, None) is not None:
            parser.error(f"argument {option_string}: {self.dest} given more than once")
        super().__call__(parser, namespace, values, option_string)


class _Parser(argparse.ArgumentParser):
    """Unknown or mistyped flags are reported with the usage of the subcommand they were
    given to, not the top-level one; a value flag may be given once; an argument that
    starts with a minus sign and a digit is a value, not a flag."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", None, _Once)
        self.register("action", "store", _Once)
        # argparse takes only "-1" and "-1.5" for negative numbers, so "--weights -1,2" or
        # "--length-penalty -1e3" ended as "expected one argument" before the flag's own
        # check could name the value; no flag here starts with a digit, so such an argument
        # is a value
        self._negative_number_matcher = re.compile(r"^-\.?\d.*$")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            sub = next(a for a in self._actions if isinstance(a, argparse._SubParsersAction))
            command = sub.choices.get(getattr(parsed, "command", None), self)
            command.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed
