"""The GRU layer of the Keras backend and its weights in the canonical layout.

Keras' GRU with ``reset_after=True`` (its default, and cuDNN's and PyTorch's form) is the
canonical cell of :mod:`seq2seq_kit.weights`, gates in the order z, r, h::

    x = x_t @ kernel + bias[0];  u = h_{t-1} @ recurrent_kernel + bias[1]
    z = sigmoid(x_z + u_z);  r = sigmoid(x_r + u_r);  n = tanh(x_n + r * u_n)
    h_t = z * h_{t-1} + (1 - z) * n

so ``kernel`` [In, 3H], ``recurrent_kernel`` [H, 3H] and the [2, 3H] ``bias`` (input row,
recurrent row) are the cell's own variables, with no transposition or gate reordering.
"""

from __future__ import annotations

import keras
from keras import layers

#: Arrays in the recurrent state: ``(h,)``.
NUM_STATES = 1


def layer(units: int, *, return_sequences: bool, go_backwards: bool = False, name: str):
    """A Keras GRU returning its final ``h`` after its output."""
    return layers.GRU(
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        reset_after=True,
        return_sequences=return_sequences,
        return_state=True,
        go_backwards=go_backwards,
        use_cudnn=False,  # as the LSTM's (see lstm.layer)
        name=name,
    )


def variables(rnn: layers.GRU) -> dict[str, keras.Variable]:
    """The canonical ``kernel``, ``recurrent_kernel``, ``bias`` of ``rnn``: its cell's
    variables as they are."""
    cell = rnn.cell
    return {"kernel": cell.kernel, "recurrent_kernel": cell.recurrent_kernel, "bias": cell.bias}
