"""Reference (a): the seed notebook's Keras model and decoding loop, as the notebook has them.

A re-implementation of ``shared/seed/keras-digits-notebook.txt`` (not a copy): the nine
pairs "1" -> "one" ... "9" -> "nine", character-level, targets wrapped in "\\t" (start) and
"\\n" (stop), one-hot float32 inputs, an LSTM encoder of 32 units whose final (h, c) start
an LSTM decoder of 32 units, a softmax Dense layer, Adam with Keras' defaults, categorical
cross-entropy (plus the notebook's ``accuracy`` metric), ``model.fit`` with batch size 2 for
300 epochs, ``verbose=0``. Decoding is the usual loop of the Keras character-level example
that the notebook calls (``decode_sequence``): an encoder model and a decoder step model,
one ``predict()`` for the encoder and one per output character, greedy argmax, stopping at
"\\n" or past the longest target. The notebook's ``predict`` calls print progress bars
(Keras' default ``verbose``); so do these, into the log file.

Figures (see :func:`measure`):
- ``train_seconds``: wall time of ``model.fit`` for the 300 epochs (graph tracing in the
  first epoch included, as in the notebook; the TensorFlow import and model construction
  excluded). With ``epochs < 300`` (``--quick``) the time of one epoch plus the rest scaled
  to 299 epochs, flagged ``extrapolated``.
- ``seconds_per_sequence``: mean wall time of ``decode_sequence`` over the sequences decoded
  after one untimed warm-up decode (which pays the tracing of both predict functions), so
  the reference is its fastest steady state; ``sequences_per_second`` is its inverse.

    python benchmarks/reference_seed_keras.py [--epochs 300]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from seq2seq_kit.datasets import DIGITS as PAIRS  # the notebook's nine pairs

LATENT_DIM = 32
SEED_EPOCHS = 300
BATCH_SIZE = 2


class SeedNotebook:
    """The notebook's data, vectorization and model; ``decode_sequence`` its decoding loop."""

    def __init__(self) -> None:
        import numpy as np
        from tensorflow.keras.layers import LSTM, Dense, Input
        from tensorflow.keras.models import Model

        self.np = np
        self.input_texts = [inp for inp, _ in PAIRS]
        self.target_texts = ["\t" + tar + "\n" for _, tar in PAIRS]
        input_chars = sorted(set("".join(self.input_texts)))
        target_chars = sorted(set("".join(self.target_texts)))
        self.num_encoder_tokens = len(input_chars)
        self.num_decoder_tokens = len(target_chars)
        self.max_encoder_seq_length = max(len(t) for t in self.input_texts)
        self.max_decoder_seq_length = max(len(t) for t in self.target_texts)
        self.input_token_index = {c: i for i, c in enumerate(input_chars)}
        self.target_token_index = {c: i for i, c in enumerate(target_chars)}
        self.reverse_target_char_index = {i: c for c, i in self.target_token_index.items()}

        n = len(self.input_texts)
        self.encoder_input_data = np.zeros(
            (n, self.max_encoder_seq_length, self.num_encoder_tokens), dtype="float32"
        )
        self.decoder_input_data = np.zeros(
            (n, self.max_decoder_seq_length, self.num_decoder_tokens), dtype="float32"
        )
        self.decoder_target_data = np.zeros(
            (n, self.max_decoder_seq_length, self.num_decoder_tokens), dtype="float32"
        )
        for i, (input_text, target_text) in enumerate(
            zip(self.input_texts, self.target_texts, strict=True)
        ):
            for t, char in enumerate(input_text):
                self.encoder_input_data[i, t, self.input_token_index[char]] = 1.0
            for t, char in enumerate(target_text):
                self.decoder_input_data[i, t, self.target_token_index[char]] = 1.0
                if t > 0:
                    self.decoder_target_data[i, t - 1, self.target_token_index[char]] = 1.0

        encoder_inputs = Input(shape=(None, self.num_encoder_tokens))
        encoder = LSTM(LATENT_DIM, return_state=True)
        _, state_h, state_c = encoder(encoder_inputs)
        encoder_states = [state_h, state_c]
        decoder_inputs = Input(shape=(None, self.num_decoder_tokens))
        decoder_lstm = LSTM(LATENT_DIM, return_sequences=True, return_state=True)
        decoder_outputs, _, _ = decoder_lstm(decoder_inputs, initial_state=encoder_states)
        decoder_dense = Dense(self.num_decoder_tokens, activation="softmax")
        decoder_outputs = decoder_dense(decoder_outputs)
        self.model = Model([encoder_inputs, decoder_inputs], decoder_outputs)
        self.model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])

        # The inference models of the Keras character-level example, sharing the layers.
        self.encoder_model = Model(encoder_inputs, encoder_states)
        state_input_h = Input(shape=(LATENT_DIM,))
        state_input_c = Input(shape=(LATENT_DIM,))
        states_inputs = [state_input_h, state_input_c]
        outputs, h, c = decoder_lstm(decoder_inputs, initial_state=states_inputs)
        self.decoder_model = Model([decoder_inputs, *states_inputs], [decoder_dense(outputs), h, c])

    def fit(self, epochs: int) -> None:
        self.model.fit(
            [self.encoder_input_data, self.decoder_input_data],
            self.decoder_target_data,
            batch_size=BATCH_SIZE,
            epochs=epochs,
            verbose=0,
        )

    def encode_input(self, input_text: str):
        np = self.np
        input_seq = np.zeros((1, self.max_encoder_seq_length, self.num_encoder_tokens))
        for t, char in enumerate(input_text):
            input_seq[0, t, self.input_token_index[char]] = 1.0
        return input_seq

    def decode_sequence(self, input_seq) -> str:
        np = self.np
        states_value = self.encoder_model.predict(input_seq)
        target_seq = np.zeros((1, 1, self.num_decoder_tokens))
        target_seq[0, 0, self.target_token_index["\t"]] = 1.0
        stop_condition = False
        decoded_sentence = ""
        while not stop_condition:
            output_tokens, h, c = self.decoder_model.predict([target_seq, *states_value])
            sampled_token_index = int(np.argmax(output_tokens[0, -1, :]))
            sampled_char = self.reverse_target_char_index[sampled_token_index]
            decoded_sentence += sampled_char
            if sampled_char == "\n" or len(decoded_sentence) > self.max_decoder_seq_length:
                stop_condition = True
            target_seq = np.zeros((1, 1, self.num_decoder_tokens))
            target_seq[0, 0, sampled_token_index] = 1.0
            states_value = [h, c]
        return decoded_sentence


def measure(epochs: int = SEED_EPOCHS, decode: int = 9) -> dict[str, Any]:
    """Train the seed model for ``epochs`` (timed) and decode the first ``decode`` digits
    with the notebook's loop after one warm-up decode (timed). Returns the figures named
    in the module docstring plus the outputs and 9/9 check."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    nb = SeedNotebook()
    if epochs >= SEED_EPOCHS:
        start = time.perf_counter()
        nb.fit(SEED_EPOCHS)
        train_seconds = time.perf_counter() - start
        extrapolated = False
    else:
        start = time.perf_counter()
        nb.fit(1)
        first = time.perf_counter() - start
        start = time.perf_counter()
        nb.fit(epochs - 1)
        rest = time.perf_counter() - start
        train_seconds = first + rest / (epochs - 1) * (SEED_EPOCHS - 1)
        extrapolated = True

    nb.decode_sequence(nb.encode_input(nb.input_texts[0]))  # warm-up: traces predict()
    texts = nb.input_texts[:decode]
    outputs = []
    start = time.perf_counter()
    for text in texts:
        outputs.append(nb.decode_sequence(nb.encode_input(text)))
    decode_seconds = time.perf_counter() - start
    rest = [nb.decode_sequence(nb.encode_input(t)) for t in nb.input_texts[len(texts) :]]
    all_outputs = outputs + rest
    exact = sum(o == t[1:] for o, t in zip(all_outputs, nb.target_texts, strict=True))
    return {
        "epochs": epochs if not extrapolated else SEED_EPOCHS,
        "epochs_run": epochs,
        "train_seconds": train_seconds,
        "extrapolated": extrapolated,
        "sequences_decoded": len(texts),
        "seconds_per_sequence": decode_seconds / len(texts),
        "sequences_per_second": len(texts) / decode_seconds,
        "mean_output_chars": sum(len(o) for o in outputs) / len(outputs),
        "outputs": outputs,
        "exact": exact,
        "tensorflow": tf.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=SEED_EPOCHS)
    parser.add_argument("--decode", type=int, default=9, help="sequences to time")
    args = parser.parse_args()
    print(json.dumps(measure(args.epochs, args.decode), indent=2))


if __name__ == "__main__":
    main()
