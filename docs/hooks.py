"""MkDocs hooks: pages generated from the code, so the reference cannot drift from it.

``{{ config_reference }}`` becomes a table of every configuration key, its default and its
description, read from the pydantic models in ``seq2seq_kit.config``; ``{{ cli_reference }}``
becomes the ``--help`` text of every command.
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout


def config_reference() -> str:
    from seq2seq_kit.config import Config

    out = ["| key | default | meaning |", "| --- | --- | --- |"]
    backend = Config.model_fields["backend"]
    out.append(f"| `backend` | `{backend.default!r}` | {backend.description} |")
    for section in ("data", "model", "train", "decode"):
        model = Config.model_fields[section].default_factory()
        for name, field in type(model).model_fields.items():
            out.append(f"| `{section}.{name}` | `{getattr(model, name)!r}` | {field.description} |")
    return "\n".join(out)


def cli_reference() -> str:
    from seq2seq_kit.cli import parser

    root = parser()
    sub = next(a for a in root._actions if a.__class__.__name__ == "_SubParsersAction")
    parts = []
    for name, command in sub.choices.items():
        text = io.StringIO()
        with redirect_stdout(text):
            command.print_help()
        parts.append(f"## `seq2seq-kit {name}`\n\n```text\n{text.getvalue().rstrip()}\n```")
    return "\n\n".join(parts)


def on_page_markdown(markdown: str, **kwargs) -> str:
    return markdown.replace("{{ config_reference }}", config_reference()).replace(
        "{{ cli_reference }}", cli_reference()
    )
