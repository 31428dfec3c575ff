"""The ``onnx`` export format: a directory that plain onnxruntime runs without seq2seq-kit.

``export(checkpoint, out)`` writes into ``out`` (a directory it creates):

- ``encoder.onnx`` and ``decoder_step.onnx``: the graphs of :mod:`.rnn` or
  :mod:`.transformer` (ONNX opset 17, IR version 8), weights inside; with
  ``quantization="int8"``, quantized by :mod:`.quantize` (ONNX Runtime's integer
  operators, some of its ``com.microsoft`` domain);
- ``export.json``: ``format`` (``"seq2seq-kit-onnx"``), ``quantization`` (the scheme, null
  for float32), ``opset``, ``ir_version``, each
  graph's inputs and outputs (``name``, ``dtype``, ``shape`` with named symbolic
  dimensions), ``state`` (the decoder state names: ``carried``, step inputs ``NAME`` that come
  back whole as output ``next_NAME``; ``appended``, step inputs ``NAME`` (a Transformer's
  self-attention caches) whose output ``new_NAME`` is this position alone, to concatenate
  to ``NAME`` along axis 2; ``constant``, inputs that pass unchanged), the special ids
  (``pad``, ``bos``, ``eos``, ``unk``), ``max_length`` (the decoding cap saved with the
  model), the model ``spec``, both vocabularies (pieces and tokenizer, as in ``model.json``)
  and ``examples``, a few source texts to try it with (``meta.examples`` of the model
  directory; empty for a model without them);
- the tokenizers' files, if any (``source-*`` / ``target-*``, as in the model directory).

Decoding with plain onnxruntime (greedy)::

    enc = ort.InferenceSession("encoder.onnx"); dec = ort.InferenceSession("decoder_step.onnx")
    state = dict(zip([o.name for o in enc.get_outputs()], enc.run(None, {"src_ids": ids,
                 "src_lengths": lengths})))
    prev = np.full(len(ids), bos)
    loop: out = dict(zip(names, dec.run(None, {"prev_ids": prev, **inputs of state})))
          prev = out["log_probs"].argmax(-1); stop at eos
          state[NAME] = out["next_" + NAME] for NAME in carried
          state[NAME] = np.concatenate([state[NAME], out["new_" + NAME]], axis=2) for appended

:func:`load` reads such a directory back into this backend's model and the vocabularies.
"""

from __future__ import annotations

import json
from pathlib import Path

from seq2seq_kit import __version__ as core_version
from seq2seq_kit.checkpoint import Checkpoint
from seq2seq_kit.errors import ExportError
from seq2seq_kit.export import Exported, model_fields, open_export, read_model_fields
from seq2seq_kit.vocab import BOS, EOS, PAD, UNK

from .graph import IR_VERSION, OPSET, describe

FORMAT = "seq2seq-kit-onnx"
#: 2: a Transformer's step returns this position's keys and values (``state.appended``)
#: instead of the whole concatenated caches.
FORMAT_VERSION = 2
ENCODER_FILE, STEP_FILE, META_FILE = "encoder.onnx", "decoder_step.onnx", "export.json"


def export(checkpoint: Checkpoint, out: Path, quantization: str | None = None) -> list[Path]:
    """Write ``checkpoint`` as ONNX graphs in the new directory ``out``, in float32 or
    ``quantization`` (``"int8"``, :mod:`.quantize`); returns the files written.

    Raises:
        ExportError: ``out`` exists, or the graphs cannot be built (naming why).
    """
    from .model import graphs

    out = Path(out)
    try:
        out.mkdir(parents=True)
    except FileExistsError:
        raise ExportError(f"{out}: already exists; export writes a new directory") from None
    try:
        encoder, step = graphs(checkpoint.spec, checkpoint.weights, quantization)
    except (ValueError, KeyError) as exc:
        raise ExportError(f"cannot express this model in ONNX: {exc}") from exc
    written = []
    for model, name in ((encoder, ENCODER_FILE), (step, STEP_FILE)):
        (out / name).write_bytes(model.SerializeToString())
        written.append(out / name)
    fields = model_fields(checkpoint, out)
    step_inputs = {i.name for i in step.graph.input}
    outputs = [o.name for o in step.graph.output]
    carried = sorted(name[len("next_") :] for name in outputs if name.startswith("next_"))
    appended = sorted(
        name[len("new_") :]
        for name in outputs
        if name.startswith("new_") and name[len("new_") :] in step_inputs
    )
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "producer": f"seq2seq-kit {core_version}",
        "quantization": quantization,
        "opset": OPSET,
        "ir_version": IR_VERSION,
        "encoder": {
            "file": ENCODER_FILE,
            "inputs": describe(encoder.graph.input),
            "outputs": describe(encoder.graph.output),
        },
        "decoder_step": {
            "file": STEP_FILE,
            "inputs": describe(step.graph.input),
            "outputs": describe(step.graph.output),
        },
        "state": {
            "carried": carried,
            "appended": appended,
            "constant": sorted(step_inputs - set(carried) - set(appended) - {"prev_ids"}),
        },
        "special_ids": {"pad": PAD, "bos": BOS, "eos": EOS, "unk": UNK},
        **fields,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    written.append(out / META_FILE)
    written += [out / name for name in fields["tokenizer_files"]]
    return written


def load(directory: str | Path, threads: int = 1) -> Exported:
    """Read an ``onnx`` export: its two graphs into onnxruntime sessions (the weights are
    not needed) and its vocabularies, once every file is checked against the export's
    manifest (:func:`seq2seq_kit.export.open_export`). A quantized export runs as written
    (its ``quantization`` on the model).

    Raises:
        ExportError: naming the file: not an export of this format, a file missing,
            truncated or altered, ``export.json`` naming a graph that is not a file of the
            export, or a graph onnx cannot parse.
    """
    import onnx
    from google.protobuf.message import DecodeError

    from .model import OnnxModel, session

    directory = Path(directory)
    files = open_export(directory, "onnx")
    meta_file = directory / META_FILE
    if META_FILE not in files:
        raise ExportError(f"{meta_file}: not listed in the export's manifest")
    try:
        meta = json.loads(files[META_FILE].read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{meta_file}: cannot read it ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ExportError(f"{meta_file}: not a {FORMAT} export")
    graphs = []
    for key in ("encoder", "decoder_step"):
        name = meta.get(key, {}).get("file") if isinstance(meta.get(key), dict) else None
        if name not in files or not str(name).endswith(".onnx"):
            raise ExportError(f"{meta_file}: {key}.file {name!r} is not a graph of this export")
        try:
            graphs.append(onnx.load(files[name]))
        except (OSError, DecodeError, ValueError) as exc:
            raise ExportError(f"{files[name]}: not a readable ONNX graph ({exc})") from None
    spec, source, target, max_length = read_model_fields(meta, directory, meta_file)
    encoder, step = session(graphs[0], threads), session(graphs[1], threads)
    model = OnnxModel.from_sessions(spec, encoder, step, meta.get("quantization"))
    return Exported(model, source, target, max_length, meta, "onnx")
