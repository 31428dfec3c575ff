"""Request bodies of ``POST /v1/translate``: parsed, validated against the server's limits
and the chosen model, and encoded, all before a request is queued, so that a bad request
is refused alone and never fails the batch it would have joined."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config import DecodeConfig
from ..config.decode import EarlyStopping
from ..decoding import Search, encode_constraints, encode_prefixes
from ..decoding import encode as encode_texts
from ..errors import (
    CapabilityError,
    ConfigError,
    ConstraintError,
    DataError,
    InputTooLongError,
    OptionError,
    PrefixError,
    UnknownTokenError,
    describe_token,
    flags,
)
from .errors import RequestError

if TYPE_CHECKING:
    from ..api import Translator
    from ..config import ServeConfig

log = logging.getLogger(__name__)

#: The most resolved option sets ``prepare`` keeps (see its ``resolved``).
RESOLVED_KEPT = 256


def _decode_option(name: str, kind: Any) -> Any:
    """``kind | None`` under the rules of ``DecodeConfig.<name>`` (``length_penalty`` at most
    10, ...), defined there once: a request's option breaking them is refused naming it."""
    return Annotated[(kind, *DecodeConfig.model_fields[name].metadata)] | None


#: The request's keys that are ``[decode]`` options, resolved over the model's settings.
DECODE_KEYS = (
    "beam",
    "n_best",
    "max_length",
    "length_penalty",
    "early_stopping",
    "sampling",
    "temperature",
    "top_k",
    "top_p",
    "num_samples",
    "seed",
    "min_length",
    "no_repeat_ngram_size",
    "banned_tokens",
    "alignments",
    "replace_unk",
)


class TranslateBody(BaseModel):
    """The JSON object a client sends; options left out take the model's saved ``[decode]``
    settings. Strict: ``"beam": "5"`` or ``"beam": true`` is refused, not converted."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    texts: list[str] = Field(min_length=1)
    prefix: list[str] | None = None
    constraints: list[list[str]] | None = None
    beam: _decode_option("beam", int) = None
    n_best: _decode_option("n_best", int) = None
    max_length: _decode_option("max_length", int) = None
    length_penalty: _decode_option("length_penalty", float) = None
    sampling: bool | None = None
    temperature: _decode_option("temperature", float) = None
    top_k: _decode_option("top_k", int) = None
    top_p: _decode_option("top_p", float) = None
    num_samples: _decode_option("num_samples", int) = None
    seed: _decode_option("seed", int) = None
    min_length: _decode_option("min_length", int) = None
    no_repeat_ngram_size: _decode_option("no_repeat_ngram_size", int) = None
    banned_tokens: _decode_option("banned_tokens", list[Annotated[str, Field(min_length=1)]]) = None
    early_stopping: EarlyStopping | None = None
    alignments: bool | None = None
    replace_unk: bool | None = None
    attention: bool = False
    model: str | None = None


class Resolved(NamedTuple):
    """A request's options over its model's saved ``[decode]`` settings (validated), and
    the ``max_length`` they decode to."""

    options: DecodeConfig
    max_length: int


@dataclass(frozen=True)
class TranslateRequest:
    """A validated request: ``source_ids[i]`` are the ids of ``texts[i]`` (None for a
    blank text, which is answered with an empty translation, as ``translate`` does),
    decoded with ``search``, each output starting with ``prefix_ids[i]`` (None: no
    prefix) and holding the phrases ``constraint_ids[i]`` (None: no constraint), by
    ``translator``: the model named ``model`` when the request arrived, which its ids and
    options were checked against (a reload of the model does not change it)."""

    model: str
    translator: Translator = dataclasses.field(repr=False)
    texts: list[str]
    source_ids: list[list[int] | None]
    search: Search
    attention: bool
    prefix_ids: list[tuple[int, ...]] | None = None
    constraint_ids: list[tuple[tuple[int, ...], ...]] | None = None

    @property
    def options(self) -> tuple[Search, bool]:
        """What the texts are decoded with: requests with equal options are decoded in
        one call."""
        return self.search, self.attention


def field_path(loc: tuple[Any, ...]) -> str | None:
    """``("texts", 2)`` -> ``"texts[2]"``; ``()`` -> None."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or None


def parse_body(raw: bytes) -> TranslateBody:
    """The body as a :class:`TranslateBody`.

    Raises:
        RequestError: 400 for bytes that are not a JSON object (naming the line and column
            of a JSON error); 422 for a wrong type, a missing or empty ``texts``, a value out
            of range or an unknown key, naming the first such field.
    """
    try:
        data = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"the body is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise RequestError(
            400,
            f"the body is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
        ) from None
    except (ValueError, RecursionError) as exc:  # an integer of over 4300 digits, deep nesting
        reason = "it nests too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise RequestError(400, f"the body cannot be read as JSON: {reason}") from None
    if not isinstance(data, dict):
        raise RequestError(
            400,
            f"the body is a JSON {_json_type(data)}, not an object such as "
            f'{{"texts": ["3", "12"]}}',
        )
    try:
        return TranslateBody.model_validate(data)
    except ValidationError as exc:
        # an unknown key first: {"text": [...]} is a misspelt texts, not a missing one
        err = min(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        field = field_path(err["loc"])
        raise RequestError(422, _describe(err, field), field) from None


def _json_type(value: Any) -> str:
    names = {list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _describe(err: Mapping[str, Any], field: str | None) -> str:
    """A sentence for one pydantic error, naming the field and, for a wrong type, what was
    given."""
    kind = err["type"]
    if kind == "missing":
        return f'{field} is missing: the body needs at least {{"texts": [...]}}'
    if kind == "extra_forbidden":
        known = ", ".join(TranslateBody.model_fields)
        return f"unknown key {field!r}; the keys are: {known}"
    if kind == "too_short" and field == "texts":
        return "texts is an empty list: give at least one text"
    message = err["msg"]
    if kind.endswith("_type") or kind.endswith("_parsing"):
        message += f", not the JSON {_json_type(err['input'])} {json.dumps(err['input'])[:40]}"
    return f"{field}: {message}"


def prepare(
    body: TranslateBody,
    models: Mapping[str, Translator],
    limits: ServeConfig,
    default_model: str,
    resolved: dict[tuple[Any, ...], Resolved] | None = None,
) -> TranslateRequest:
    """Check ``body`` against the server's ``limits`` and its model, resolve its decoding
    options and encode its texts, through :func:`seq2seq_kit.decoding.plan` and
    :func:`seq2seq_kit.decoding.encode` as :meth:`Translator.hypotheses` does. ``resolved``,
    kept by the caller across requests, holds the options already resolved (per model and
    options asked for: resolving them validates the model's ``[decode]`` settings again,
    more than half the cost of ``prepare``).

    Raises:
        RequestError: 404 for an unknown model; 413 for too many texts or a text (or
            prefix) over ``max_text_chars``; 422 for an option over its limit or that does
            not fit the model (a sampling option without ``sampling``, a banned token the
            model lacks, ``min_length`` over ``max_length``), attention, alignments or
            replace_unk asked of a model without attention (or of an engine with its own
            search), an option asked of a backend without its capability, a character
            the model never saw (naming the text's index, the character and its position), a
            text longer than the model can encode, a prefix that cannot be forced
            (naming ``prefix[i]``), or a constraint that cannot be held (naming
            ``constraints[i][j]``; ``constraints`` over ``max_constraints`` for a text,
            413 for a phrase over ``max_text_chars``); 500 for a phrase table of the
            model's that cannot be read (the server's fault, not the request's). Options
            are named by their JSON fields (:func:`request_field`).
    """
    name = default_model if body.model is None else body.model
    if name not in models:
        have = ", ".join(repr(n) for n in models)
        raise RequestError(404, f"no model named {name!r}; this server has {have}", "model")
    translator = models[name]
    _check_limits(body, limits)
    # the core's messages name the request's JSON fields, not the command line's flags
    # (a server started by `seq2seq-kit serve` runs within the command's context)
    with flags(request_field):
        options, max_length = _resolve_cached(body, name, translator, limits, resolved)
        if body.attention:
            _check_attention(name, translator)
        search = _plan(options, max_length, translator)
        ids = encode(body.texts, translator, options.unknown)
        prefix_ids = _encode_prefixes(body.prefix, ids, translator, search)
        constraint_ids = _encode_constraints(body.constraints, ids, translator, search)
    if body.attention:
        _check_attention_size(ids, search, limits.max_attention_weights)
    return TranslateRequest(
        name,
        translator,
        list(body.texts),
        ids,
        search,
        body.attention,
        prefix_ids,
        constraint_ids,
    )


def request_field(name: str) -> str:
    """How a reply names option ``name`` (:func:`seq2seq_kit.errors.option`): a
    ``[decode]`` key a request sets as its JSON field (``decode.n_best``: ``n_best``);
    any other as its config key, a setting of the model's or the server's."""
    section, _, key = name.rpartition(".")
    return key if section == "decode" and key in DECODE_KEYS else name


def _check_chars(name: str, strings: list[str], limit: int) -> None:
    """Refuse (413) a string of the field ``name`` over ``limit`` characters
    (``serve.max_text_chars``), naming it by position."""
    for i, text in enumerate(strings):
        if len(text) > limit:
            raise RequestError(
                413,
                f"{name}[{i}] has {len(text)} characters but a text may have at most "
                f"{limit} (serve.max_text_chars)",
                f"{name}[{i}]",
            )


def _check_limits(body: TranslateBody, limits: ServeConfig) -> None:
    """Refuse (413) more texts or a longer text than the server takes, and (422) an option
    over the server's limit."""
    if len(body.texts) > limits.max_texts:
        raise RequestError(
            413,
            f"texts holds {len(body.texts)} texts but a request may hold at most "
            f"{limits.max_texts} (serve.max_texts); split it into several requests",
            "texts",
        )
    _check_chars("texts", body.texts, limits.max_text_chars)
    if body.prefix is not None:
        if len(body.prefix) != len(body.texts):
            raise RequestError(
                422,
                f"prefix holds {len(body.prefix)} strings for {len(body.texts)} texts: give "
                f'one per text ("" for none)',
                "prefix",
            )
        _check_chars("prefix", body.prefix, limits.max_text_chars)
    if body.constraints is not None:
        _check_constraints(body.constraints, len(body.texts), limits)
    for key, limit in (
        ("beam", limits.max_beam),
        ("n_best", limits.max_n_best),
        ("num_samples", limits.max_num_samples),
        ("max_length", limits.max_max_length),
    ):
        value = getattr(body, key)
        if value is not None and value > limit:
            raise RequestError(
                422,
                f"{key} is {value} but this server allows at most {limit} (serve.max_{key})",
                key,
            )


def _check_constraints(constraints: list[list[str]], texts: int, limits: ServeConfig) -> None:
    """Refuse (422) constraints not one list per text or more than
    ``serve.max_constraints`` for a text, and (413) a phrase over ``max_text_chars``."""
    if len(constraints) != texts:
        raise RequestError(
            422,
            f"constraints holds {len(constraints)} lists for {texts} texts: give one list of "
            f"phrases per text ([] for none)",
            "constraints",
        )
    for i, phrases in enumerate(constraints):
        if len(phrases) > limits.max_constraints:
            raise RequestError(
                422,
                f"constraints[{i}] holds {len(phrases)} phrases but a text may have at most "
                f"{limits.max_constraints} (serve.max_constraints)",
                f"constraints[{i}]",
            )
        _check_chars(f"constraints[{i}]", phrases, limits.max_text_chars)


def _resolve_cached(
    body: TranslateBody,
    name: str,
    translator: Translator,
    limits: ServeConfig,
    resolved: dict[tuple[Any, ...], Resolved] | None,
) -> Resolved:
    """:func:`resolve_options`, from ``resolved`` when these options were asked of this
    model before."""
    key = (name, *(_hashable(getattr(body, k)) for k in DECODE_KEYS))
    options = None if resolved is None else resolved.get(key)
    if options is None:
        options = resolve_options(body, translator, limits)
        if resolved is not None:
            if len(resolved) >= RESOLVED_KEPT:  # length_penalty is a float: keep few
                resolved.clear()
            resolved[key] = options
    return options


def _check_attention(name: str, translator: Translator) -> None:
    """Refuse (422) attention asked of a model that gives none."""
    if translator.has_attention:
        return
    reason = (
        "its spec's attention is none"
        if not translator.model.spec.has_attention
        else f"backend {translator.backend!r} decodes with its own search and returns none"
    )
    raise RequestError(
        422,
        f"attention: model {name!r} gives no attention weights ({reason}); leave attention false",
        "attention",
    )


def _plan(options: DecodeConfig, max_length: int, translator: Translator) -> Search:
    """:func:`seq2seq_kit.decoding.plan` for ``translator`` (:meth:`Translator.plan`, with
    the model's phrase table as read when the server loaded it), its refusal a 422 naming
    the option; a phrase table of the model's that cannot be read is the server's fault,
    a 500."""
    try:
        return translator.plan(options, max_length)
    except CapabilityError as exc:
        message = str(exc)
        if exc.option == "beam":
            message = (
                f"backend {translator.backend!r} does not declare the 'beam' capability: "
                f"ask for beam 1 and n_best 1"
            )
        raise RequestError(422, message, exc.option) from None
    except OptionError as exc:
        raise RequestError(422, str(exc), exc.option) from None
    except DataError as exc:  # the model's replace_unk_table: the server's file, not the client's
        log.error("the phrase table of a served model cannot be read: %s", exc)
        raise RequestError(
            500,
            f"the model's phrase table (decode.replace_unk_table) cannot be read on the "
            f"server: {_file_error(exc)}; the request was fine, the server's model is not "
            f"(its operator must fix the file or reload the model)",
        ) from None


def _file_error(exc: DataError) -> str:
    """``exc``'s message with its file named by its name alone, not the server's path."""
    message = str(exc)
    if exc.path is None:
        return message
    where = f"{exc.path}:{exc.line}: " if exc.line is not None else f"{exc.path}: "
    named = Path(exc.path).name + (f":{exc.line}" if exc.line is not None else "")
    return f"{named}: {message.removeprefix(where)}"


def _encode_prefixes(
    prefix: list[str] | None,
    ids: list[list[int] | None],
    translator: Translator,
    search: Search,
) -> list[tuple[int, ...]] | None:
    """:func:`seq2seq_kit.decoding.encode_prefixes` for ``translator``, its refusal a 422
    naming ``prefix[i]``."""
    try:
        return encode_prefixes(prefix, ids, translator.target_vocab, search)
    except PrefixError as exc:
        field = "prefix" if exc.line is None else f"prefix[{exc.line - 1}]"
        raise RequestError(422, f"{field}: {exc.reason}", field) from None


def _encode_constraints(
    constraints: list[list[str]] | None,
    ids: list[list[int] | None],
    translator: Translator,
    search: Search,
) -> list[tuple[tuple[int, ...], ...]] | None:
    """:func:`seq2seq_kit.decoding.encode_constraints` for ``translator``, its refusal a
    422 naming ``constraints[i][j]`` (``constraints[i]``, ``constraints``); constraints
    beside sampling name ``sampling``, and constraints asked of an engine without the
    ``constraints`` capability ``constraints[i]``, ``i`` the first text with any (the
    core's messages name an input line, which a request does not have)."""
    try:
        return encode_constraints(constraints, ids, translator.target_vocab, search)
    except ConstraintError as exc:
        field = "constraints"
        if exc.line is not None:
            field += f"[{exc.line - 1}]"
            if exc.number is not None:
                field += f"[{exc.number - 1}]"
        raise RequestError(422, f"{field}: {exc.reason}", field) from None
    except (OptionError, CapabilityError) as exc:
        # both are raised only once some text has constraints, at the first that has
        i = next(i for i, phrases in enumerate(constraints or ()) if phrases)
        if isinstance(exc, OptionError) and exc.option == "sampling":
            message = (
                f"texts[{i}] has lexical constraints (constraints[{i}]), which need a search, "
                f'but sampling draws its outputs at random: send "sampling": false (a beam '
                f"of 1 or more holds the constraints)"
            )
            raise RequestError(422, message, "sampling") from None
        if isinstance(exc, CapabilityError) and exc.option == "constraints":
            field = f"constraints[{i}]"
            message = (
                f"{field}: texts[{i}] has lexical constraints, but backend "
                f"{translator.backend!r} decodes with its own search, which does not declare "
                f"the 'constraints' capability; send no constraints to this model"
            )
            raise RequestError(422, message, field) from None
        raise RequestError(422, str(exc), exc.option) from None


def _check_attention_size(ids: list[list[int] | None], search: Search, limit: int) -> None:
    """Refuse (422) attention whose reply could hold more than ``limit`` weights: one row per
    output token and EOS, one column per source token, for each hypothesis of each text,
    counted at the longest outputs the options allow (a reply is built whole in memory)."""
    most = sum(len(row or ()) for row in ids) * search.outputs_per_input * (search.max_length + 1)
    if most > limit:
        raise RequestError(
            422,
            f"attention: this request's weights could number {most:,} (source tokens x n_best "
            f"or num_samples x (max_length + 1)) but a reply may hold at most {limit:,} "
            f"(serve.max_attention_weights); ask for fewer texts, n_best, num_samples or "
            f"max_length",
            "attention",
        )


def resolve_options(body: TranslateBody, translator: Translator, limits: ServeConfig) -> Resolved:
    """The request's options over the model's saved ``[decode]`` settings; a ``max_length``
    left out is the model's cap, lowered to ``limits.max_max_length``.

    Raises:
        RequestError: 422 when the request's options break a rule across ``[decode]`` keys
            (a sampling option without ``sampling``; sampling beside a beam), naming the
            field, or when the model's saved settings break the ``[decode]`` rules.
    """
    given = {key: getattr(body, key) for key in DECODE_KEYS}
    try:
        options = translator.decode_config(**given)
    except OptionError as exc:
        # each option passed its own rules in parse_body; one across keys may not have
        if given.get(exc.option) is not None:
            raise RequestError(422, str(exc), exc.option) from None
        raise RequestError(422, f"the model's decoding settings: {exc}") from None
    except ConfigError as exc:
        raise RequestError(422, f"the model's decoding settings: {exc}") from None
    max_length = translator.decoding_limit(options.max_length)
    if body.max_length is None:
        max_length = min(max_length, limits.max_max_length)
    return Resolved(options, max_length)


def _hashable(value: Any) -> Any:
    """``value`` as a key of the resolved options (a list of banned tokens as a tuple)."""
    return tuple(value) if isinstance(value, list) else value


def encode(texts: list[str], translator: Translator, unknown: str) -> list[list[int] | None]:
    """Source ids of each text (None for a blank one) by
    :func:`seq2seq_kit.decoding.encode`, as :meth:`Translator.hypotheses` encodes them.

    Raises:
        RequestError: 422 naming ``texts[i]`` for a token the model never saw (unless the
            model's ``unknown`` setting is ``replace``) or a text longer than the model can
            encode.
    """
    try:
        return encode_texts(texts, translator.source_vocab, translator.model.spec, unknown)
    except UnknownTokenError as exc:
        i = exc.line - 1
        raise RequestError(
            422,
            f"texts[{i}]: {describe_token(exc.token, exc.position, exc.kind)} in "
            f"{texts[i]!r} was never seen in training (it is not in the model's source "
            f"vocabulary)",
            f"texts[{i}]",
        ) from None
    except InputTooLongError as exc:
        i = exc.line - 1
        raise RequestError(
            422,
            f"texts[{i}] has {exc.length} source tokens but the model takes at most "
            f"{exc.limit} (model.max_positions); split it into shorter texts",
            f"texts[{i}]",
        ) from None
