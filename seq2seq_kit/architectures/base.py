"""What binds an architecture together: its ``[model]`` table, the spec derived from it, its
weight layout, the capabilities a backend needs for it and its length rule.

As fairseq binds a model to its options with ``register_model_architecture``, each
architecture module (:mod:`.rnn`, :mod:`.transformer`) defines its keys once, in the pydantic
table, and :func:`spec_of` derives the frozen dataclass a backend builds from them.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import annotated_types
import numpy as np
from pydantic import ValidationError, create_model

from ..section import Section

#: Either architecture's spec, or its ``[model]`` table: both carry the keys.
Keys = Any

_VOCABULARIES = ("src_vocab_size", "tgt_vocab_size")


@dataclass(frozen=True)
class Architecture:
    """One architecture, as the registry (:mod:`seq2seq_kit.architectures`) knows it.

    Attributes:
        name: the value of ``model.architecture`` (and of a spec's ``architecture``).
        config: the ``[model]`` table: every key's type, default, bounds and rules.
        spec: the frozen dataclass a backend builds: the vocabulary sizes, then ``config``'s
            keys (:func:`spec_of`).
        shapes: the canonical ``name -> shape`` weight layout of a spec
            (:mod:`seq2seq_kit.weights`).
        initial_weights: seeded float32 initial weights of a spec, in that layout.
        capabilities: the capabilities a backend must declare to build a spec.
        width: the key of the model's width (the ``d_model`` of the noam schedule).
        size_keys: the keys that decide a model's memory, for messages.
        attention: what a plot of the model's attention shows, in a few words.
        positions: the key holding the positions each side has (the source's length cap;
            the target's, BOS included); None when a side may have any length.
        fixed: the canonical names of a spec's weights that no training run changes
            (a Transformer's given position ``"table"``).
    """

    name: str
    config: type[Section]
    spec: type
    shapes: Callable[[Any], dict[str, tuple[int, ...]]]
    initial_weights: Callable[[Any, int], dict[str, np.ndarray]]
    capabilities: Callable[[Any], set[str]]
    width: str
    size_keys: tuple[str, ...]
    positions: str | None
    attention: Callable[[Any], str]
    fixed: Callable[[Any], tuple[str, ...]] = lambda spec: ()


def spec_of(config: type[Section]) -> Callable[[type], type]:
    """Class decorator: make the decorated class a frozen dataclass whose fields are
    ``src_vocab_size``, ``tgt_vocab_size`` and then ``config``'s keys (``architecture``
    excepted, a class constant here), with ``config``'s defaults.

    Constructing one validates the keys through ``config`` (types, lower bounds, choices and
    its rules, written once there) and the vocabulary sizes (integers >= 1); a
    ``check(self)`` method of the decorated class adds rules that need the vocabulary sizes.
    Raises ``ValueError`` naming the class and the key. The table's upper bounds (``le``)
    are not applied: they catch a new run's typos, and a saved model may exceed them (an
    older version wrote it, or a sinusoidal Transformer with more positions).
    """

    def derive(cls: type) -> type:
        keys = [name for name in config.model_fields if name != "architecture"]
        fields = [(name, int) for name in _VOCABULARIES]
        fields += [
            (name, _plain(config.model_fields[name].annotation), config.model_fields[name].default)
            for name in keys
        ]
        namespace = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
        namespace["architecture"] = config.model_fields["architecture"].default
        namespace["__post_init__"] = _validator(cls.__name__, _without_upper_bounds(config), keys)
        namespace.setdefault("to_dict", to_dict)
        namespace["from_dict"] = classmethod(from_dict)
        derived = dataclasses.make_dataclass(cls.__name__, fields, namespace=namespace, frozen=True)
        derived.__module__, derived.__qualname__ = cls.__module__, cls.__qualname__
        return derived

    return derive


def _without_upper_bounds(config: type[Section]) -> type[Section]:
    """``config`` with every ``le`` bound of its fields dropped (its rules kept)."""
    fields = {}
    for name, info in config.model_fields.items():
        kept = [m for m in info.metadata if not isinstance(m, annotated_types.Le)]
        if len(kept) != len(info.metadata):
            field = copy.copy(info)
            field.metadata = kept
            fields[name] = (info.annotation, field)
    return create_model(f"Saved{config.__name__}", __base__=config, **fields)


def _plain(annotation: Any) -> type:
    """The Python type of a field: ``str`` for a ``Literal`` of choices."""
    return str if typing.get_origin(annotation) is typing.Literal else annotation


def _validator(name: str, config: type[Section], keys: list[str]) -> Callable[[Any], None]:
    def __post_init__(self: Any) -> None:
        for side in _VOCABULARIES:
            value = getattr(self, side)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}.{side} must be an integer >= 1, got {value!r:.40}")
        try:
            config.model_validate({key: getattr(self, key) for key in keys})
        except ValidationError as exc:
            raise ValueError(_first_problem(name, exc)) from None
        check = getattr(self, "check", None)
        if check is not None:
            check()

    return __post_init__


def _first_problem(name: str, exc: ValidationError) -> str:
    error = exc.errors()[0]
    message = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:  # a rule over several keys: its message names them
        return f"{name}: {message}"
    return f"{name}.{'.'.join(map(str, error['loc']))}: {message}, got {error['input']!r:.40}"


def to_dict(self: Any) -> dict[str, Any]:
    """The spec as saved in ``model.json``: ``architecture`` and every field."""
    return {"architecture": self.architecture, **dataclasses.asdict(self)}


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """The spec saved by :func:`to_dict`.

    Raises:
        ValueError: another architecture, an unknown key, or a value the spec refuses.
    """
    data = dict(data)
    architecture = data.pop("architecture", cls.architecture)
    if architecture != cls.architecture:
        raise ValueError(f"a {cls.__name__} cannot hold architecture {architecture!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown model spec keys {unknown}; known: {sorted(known)}")
    return cls(**data)
