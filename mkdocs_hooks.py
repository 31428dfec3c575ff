"""MkDocs hooks: pages generated from the code, so the reference cannot drift from it, and
checks that turn two silent publishing faults into warnings (errors under ``--strict``).

``{{ config_reference }}`` becomes a table of every configuration key, its default and its
description, read from the pydantic models in ``seq2seq_kit.config``; ``{{ cli_reference }}``
becomes the ``--help`` text of every command.

Checks: a ``<word>`` outside code in a page's final Markdown (it would pass through as an
HTML tag and vanish from the page, as ``<unk>`` did), and a file under ``docs/`` that is
neither a page nor an image (MkDocs copies every such file to the site).
"""

from __future__ import annotations

import io
import logging
import os
import re
from contextlib import redirect_stdout
from typing import Any

log = logging.getLogger("mkdocs.hooks.seq2seq_kit")

#: Where files other than pages may live in ``docs/``: everything else stays off the site.
ASSET_FOLDERS = ("images/",)

_FENCE = re.compile(r"^ *(```|~~~).*?^ *\1", re.S | re.M)
_CODE_SPAN = re.compile(r"(`+).+?\1", re.S)
_TAG = re.compile(r"<[^<>\s][^<>\n]*>")
_AUTOLINK = re.compile(r"<(https?://|mailto:)[^<>\s]+>")


def in_code(text: str) -> str:
    """``text`` in an inline code span, backticks inside it kept."""
    ticks = "``" if "`" in text else "`"
    return f"{ticks}{text}{ticks}"


def table_cell(text: str) -> str:
    """``text`` safe in a Markdown table cell: ``<word>`` tokens in code, pipes escaped."""
    return _TAG.sub(lambda m: in_code(m.group()), text).replace("|", "\\|")


def stray_tags(markdown: str) -> list[str]:
    """The ``<...>`` tokens of ``markdown`` outside fenced blocks, code spans and autolinks:
    Markdown passes each through as raw HTML, so a word such as ``<unk>`` disappears."""
    text = _CODE_SPAN.sub("", _FENCE.sub("", markdown))
    return _TAG.findall(_AUTOLINK.sub("", text))


def config_reference() -> str:
    from seq2seq_kit.config import RESUMABLE, Config, section_models

    out = ["| key | default | on resume | meaning |", "| --- | --- | --- | --- |"]
    backend = Config.model_fields["backend"]
    out.append(
        f"| `backend` | {in_code(repr(backend.default))} | may change | "
        f"{table_cell(backend.description)} |"
    )
    for section in ("data", "model", "train", "decode", "serve"):
        models = section_models(section)
        done = set()
        for model in models:
            # [model]: each architecture's keys, its name first ("rnn: units of..."); a key
            # both have alike (architecture) is listed once
            owner = f"{model.model_fields['architecture'].default}: " if len(models) > 1 else ""
            for name, field in model.model_fields.items():
                default = field.get_default(call_default_factory=True)
                if name == "architecture":  # each class's own name; the config's default
                    default = Config().model.architecture
                if (name, repr(default), field.description) in done:
                    continue
                done.add((name, repr(default), field.description))
                resume = "may change" if f"{section}.{name}" in RESUMABLE else "fixed"
                meaning = field.description or ""
                if owner and name != "architecture":
                    meaning = owner + meaning
                out.append(
                    f"| `{section}.{name}` | {in_code(repr(default))} | {resume} | "
                    f"{table_cell(meaning)} |"
                )
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


def render(markdown: str) -> str:
    """A page's Markdown with the generated references in place."""
    return markdown.replace("{{ config_reference }}", config_reference()).replace(
        "{{ cli_reference }}", cli_reference()
    )


def unpublishable(paths: list[str]) -> list[str]:
    """Of ``paths`` (relative to ``docs/``, ``/``-separated), the files that are neither
    Markdown pages nor under :data:`ASSET_FOLDERS`."""
    return sorted(p for p in paths if not p.endswith(".md") and not p.startswith(ASSET_FOLDERS))


def on_files(files: Any, config: Any) -> Any:
    docs_dir = os.path.normpath(config["docs_dir"])
    ours = [f.src_uri for f in files if f.src_dir and os.path.normpath(f.src_dir) == docs_dir]
    for path in unpublishable(ours):
        log.warning(
            f"docs/{path} would be published to the site: keep only pages and "
            f"{', '.join(ASSET_FOLDERS)} in docs/"
        )
    return files


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    markdown = render(markdown)
    for tag in stray_tags(markdown):
        log.warning(
            f"{page.file.src_uri}: {tag} outside code is passed through as an HTML tag and "
            "disappears from the page; put it in backticks"
        )
    return markdown
