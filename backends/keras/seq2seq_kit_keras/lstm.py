"""The LSTM layer of the Keras backend and its weights in the canonical layout.

Keras' LSTM cell computes ``z = x @ kernel + h @ recurrent_kernel + bias`` with the gates
in the order i, f, c, o, applies ``recurrent_activation`` (sigmoid) to i, f, o and
``activation`` (tanh) to c and to the output: exactly the canonical cell of
:mod:`seq2seq_kit.weights`, whose ``kernel`` [In, 4H], ``recurrent_kernel`` [H, 4H] and
``bias`` [4H] are the cell's own variables, with no transposition or gate reordering. The
activations are passed explicitly so a change of Keras defaults cannot change the model.
"""

from __future__ import annotations

import keras
from keras import layers

#: Arrays in the recurrent state: ``(h, c)``.
NUM_STATES = 2


def layer(units: int, *, return_sequences: bool, go_backwards: bool = False, name: str):
    """A Keras LSTM returning its final ``(h, c)`` after its output."""
    return layers.LSTM(
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        return_sequences=return_sequences,
        return_state=True,
        go_backwards=go_backwards,
        # On a GPU build of TensorFlow, "auto" would switch to cuDNN's fused kernel, which
        # fails a runtime assert on a fully masked row (a length-0 source, which the
        # contract allows) and sums in another order than the cell that ``step`` runs.
        # tensorflow-cpu never takes that path; this keeps every install on the one
        # that was verified.
        use_cudnn=False,
        name=name,
    )


def variables(rnn: layers.LSTM) -> dict[str, keras.Variable]:
    """The canonical ``kernel``, ``recurrent_kernel``, ``bias`` of ``rnn``: its cell's
    variables as they are."""
    cell = rnn.cell
    return {"kernel": cell.kernel, "recurrent_kernel": cell.recurrent_kernel, "bias": cell.bias}
