"""``seq2seq-kit backends``: the installed backends (a header row, then one row each:
name, version, distribution, capabilities), the export and import formats, and plugin
errors."""

from __future__ import annotations

import argparse
import json


def add_backends(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backends", help="list installed backends and plugin load errors")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run_backends)


def run_backends(args: argparse.Namespace) -> int:
    from ..plugins import install_hint, registry

    reg = registry()
    rows = [
        {
            "name": b.name,
            "version": b.version,
            "distribution": b.distribution,
            "capabilities": sorted(b.capabilities),
            "inference_only": "train" not in b.capabilities,
        }
        for b in sorted(reg.backends.values(), key=lambda b: b.name)
    ]
    note = reg.filter_note()
    if args.json:
        listing = {
            "backends": rows,
            "errors": reg.failures,
            "excluded": sorted(reg.excluded),  # by SEQ2SEQ_KIT_PLUGINS
            "unmatched": sorted(reg.unmatched),  # its names that no plugin has
            "export_formats": sorted(reg.exporters),
            # the quantization schemes each format writes (``export --quantization``)
            "export_quantization": {
                name: sorted(reg.export_schemes.get(name, ())) for name in sorted(reg.exporters)
            },
            "import_formats": sorted(reg.importers),
        }
        print(json.dumps(listing, indent=2))
        return 0
    widths = {"name": 10, "version": 10, "distribution": 22}
    widths = {key: max([least, *(len(row[key]) for row in rows)]) for key, least in widths.items()}
    if rows:
        print(" ".join(f"{key:<{width}}" for key, width in widths.items()), "capabilities")
    for row in rows:
        only = " (inference only: no train)" if row["inference_only"] else ""
        columns = " ".join(f"{row[key]:<{width}}" for key, width in widths.items())
        print(f"{columns} {', '.join(row['capabilities'])}{only}")
    if not rows and note:
        print(f"no backends loaded: {note}")
    elif not rows:
        print(f"no backends installed; try: {install_hint('numpy')}")
    elif note:
        print(f"note: {note}")
    # both lines always, so that "none" says a format is missing, not the line
    formats = [_with_schemes(name, reg.export_schemes.get(name)) for name in reg.exporters]
    exporters = ", ".join(sorted(formats)) or "none (the onnx and ctranslate2 backends add theirs)"
    print(f"export formats: {exporters}")
    print(f"import formats: {', '.join(sorted(reg.importers)) or 'none'}")
    for name, reason in reg.failures.items():
        print(f"error: plugin {name}: {reason}")
    return 0


def _with_schemes(name: str, schemes: frozenset[str] | None) -> str:
    """An export format as listed: its name, and the quantization schemes it writes."""
    from ..quantization import SCHEMES

    if not schemes:
        return name
    return f"{name} (--quantization {'|'.join(s for s in SCHEMES if s in schemes)})"
