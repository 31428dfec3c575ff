"""Reference (b): a plain PyTorch LSTM encoder-decoder, written the usual way.

``nn.Embedding`` (or one-hot vectors when the embedding size is 0), an ``nn.LSTM`` encoder
over a packed padded batch whose final (h, c) start an ``nn.LSTM`` decoder, an
``nn.Linear`` output layer; teacher-forced training with ``nn.CrossEntropyLoss``
(``ignore_index`` = padding), ``torch.optim.Adam`` and ``clip_grad_norm_`` (the toolkit's
defaults: lr 1e-3, clip 5); greedy decoding as a Python loop over time steps, batched over
sentences, one single-step ``nn.LSTM`` call per step under ``torch.no_grad()``, until every
sentence has produced EOS or the length cap. No tricks: no fused kernels of our own, no
dropping finished sentences from the batch, no compilation.

It loads the same canonical weights as the toolkit's backends (``seq2seq_kit.weights``:
kernels act on row vectors, so ``weight_ih = kernel.T``; the LSTM's single bias becomes
``bias_ih``, with ``bias_hh`` zero), so on one model it decodes the same outputs; the
special ids PAD, BOS and UNK are excluded from the argmax as the toolkit's decoder does.

Figures (see :func:`measure`): ``decode_sequences_per_second`` (greedy, the given batch of
num2words sources, median of the timed runs after a warm-up) and ``train_tokens_per_second``
(target tokens, EOS included, per second over a fixed number of steps after warm-up).
Threads: PyTorch's default (``torch.get_num_threads()``, reported) unless the suite pins
them through ``OMP_NUM_THREADS``.

    python benchmarks/reference_torch.py   (after benchmarks/fixtures.py)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from seq2seq_kit.vocab import BOS, EOS, PAD, UNK  # noqa: E402


class PlainSeq2Seq(nn.Module):
    """Embedding (or one-hot) -> LSTM encoder -> LSTM decoder -> Linear, one layer each."""

    def __init__(self, src_vocab: int, tgt_vocab: int, hidden: int, embedding: int):
        super().__init__()
        self.src_vocab, self.tgt_vocab, self.embedding = src_vocab, tgt_vocab, embedding
        if embedding:
            self.src_embed = nn.Embedding(src_vocab, embedding)
            self.tgt_embed = nn.Embedding(tgt_vocab, embedding)
        self.encoder = nn.LSTM(embedding or src_vocab, hidden, batch_first=True)
        self.decoder = nn.LSTM(embedding or tgt_vocab, hidden, batch_first=True)
        self.out = nn.Linear(hidden, tgt_vocab)

    def embed_src(self, ids: torch.Tensor) -> torch.Tensor:
        if self.embedding:
            return self.src_embed(ids)
        return nn.functional.one_hot(ids, self.src_vocab).float()

    def embed_tgt(self, ids: torch.Tensor) -> torch.Tensor:
        if self.embedding:
            return self.tgt_embed(ids)
        return nn.functional.one_hot(ids, self.tgt_vocab).float()

    def encode(self, src: torch.Tensor, lengths: torch.Tensor):
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embed_src(src), lengths, batch_first=True, enforce_sorted=False
        )
        _, (h, c) = self.encoder(packed)
        return h, c

    def forward(self, src, lengths, tgt_in):
        h, c = self.encode(src, lengths)
        out, _ = self.decoder(self.embed_tgt(tgt_in), (h, c))
        return self.out(out)

    @torch.no_grad()
    def greedy(self, src: torch.Tensor, lengths: torch.Tensor, max_length: int) -> torch.Tensor:
        """Token ids [B, <= max_length + 1], EOS where a sentence ended (then anything)."""
        h, c = self.encode(src, lengths)
        prev = torch.full((src.shape[0],), BOS, dtype=torch.long)
        finished = torch.zeros(src.shape[0], dtype=torch.bool)
        outputs = []
        for _ in range(max_length + 1):
            out, (h, c) = self.decoder(self.embed_tgt(prev).unsqueeze(1), (h, c))
            logits = self.out(out.squeeze(1))
            logits[:, [PAD, BOS, UNK]] = -float("inf")
            prev = logits.argmax(dim=1)
            outputs.append(prev)
            finished |= prev == EOS
            if finished.all():
                break
        return torch.stack(outputs, dim=1)

    def load_canonical(self, weights: dict[str, np.ndarray]) -> None:
        """Copy weights in the toolkit's canonical layout (one LSTM layer, no attention)."""

        def t(name: str, transpose: bool = False) -> torch.Tensor:
            value = torch.from_numpy(np.asarray(weights[name], dtype=np.float32))
            return value.T.contiguous() if transpose else value

        with torch.no_grad():
            for side, lstm in (("encoder", self.encoder), ("decoder", self.decoder)):
                if self.embedding:
                    embed = self.src_embed if side == "encoder" else self.tgt_embed
                    embed.weight.copy_(t(f"{side}.embedding"))
                lstm.weight_ih_l0.copy_(t(f"{side}.rnn.0.kernel", True))
                lstm.weight_hh_l0.copy_(t(f"{side}.rnn.0.recurrent_kernel", True))
                lstm.bias_ih_l0.copy_(t(f"{side}.rnn.0.bias"))
                lstm.bias_hh_l0.zero_()
            self.out.weight.copy_(t("decoder.output.kernel", True))
            self.out.bias.copy_(t("decoder.output.bias"))


def outputs_to_ids(tokens: torch.Tensor, max_length: int) -> list[tuple[int, ...]]:
    """Per sentence, the ids before its first EOS (at most ``max_length``), as the
    toolkit's ``Hypothesis.ids``."""
    result = []
    for row in tokens.tolist():
        ids = row[: row.index(EOS)] if EOS in row else row[:max_length]
        result.append(tuple(ids))
    return result


def from_checkpoint(path: str) -> tuple[PlainSeq2Seq, Any]:
    from seq2seq_kit.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    spec = ckpt.spec
    if spec.num_layers != 1 or spec.cell != "lstm" or spec.attention != "none":
        raise ValueError("the plain reference is a one-layer LSTM without attention")
    model = PlainSeq2Seq(
        spec.src_vocab_size, spec.tgt_vocab_size, spec.hidden_size, spec.embedding_size
    )
    model.load_canonical(ckpt.weights)
    return model, ckpt


def measure(
    decode_batch: int,
    max_length: int,
    min_time: float,
    min_repeats: int,
    train_warmup: int,
    train_steps: int,
) -> dict[str, Any]:
    """Greedy decoding of the first ``decode_batch`` num2words sources with the fixture
    num2words model, and ``train_steps`` timed training steps (after ``train_warmup``) on
    the suite's num2words batches, from the same initial weights."""
    import fixtures
    from _common import WORK, timed

    model, ckpt = from_checkpoint(str(fixtures.NUM2WORDS_MODEL_DIR))
    model.eval()
    src, lengths = fixtures.num2words_sources(decode_batch)
    src_t = torch.from_numpy(src).long()
    len_t = torch.from_numpy(lengths).long()
    timing = timed(
        lambda: model.greedy(src_t, len_t, max_length), min_time=min_time, min_repeats=min_repeats
    )
    ids = outputs_to_ids(model.greedy(src_t, len_t, max_length), max_length)
    (WORK / "reference-torch-greedy.json").write_text(json.dumps([list(i) for i in ids]))

    model.train()
    warm, timed_batches = fixtures.warmup_and_timed(train_warmup, train_steps)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD)

    def step(batch) -> float:
        logits = model(
            torch.from_numpy(batch.src_ids).long(),
            torch.from_numpy(batch.src_lengths).long(),
            torch.from_numpy(batch.tgt_in).long(),
        )
        loss = loss_fn(
            logits.reshape(-1, logits.shape[-1]), torch.from_numpy(batch.tgt_out).long().reshape(-1)
        )
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        return loss.item()

    for batch in warm:
        step(batch)
    start = time.perf_counter()
    for batch in timed_batches:
        step(batch)
    seconds = time.perf_counter() - start
    return {
        "decode_batch": decode_batch,
        "max_length": max_length,
        "decode_seconds": timing["median"],
        "decode_best_seconds": timing["best"],
        "decode_repeats": timing["repeats"],
        "decode_sequences_per_second": decode_batch / timing["median"],
        "decode_steps": max(len(i) for i in ids) + 1,
        "train_steps": len(timed_batches),
        "train_seconds": seconds,
        "train_target_tokens": sum(b.num_target_tokens for b in timed_batches),
        "train_source_tokens": int(sum(b.src_lengths.sum() for b in timed_batches)),
        "train_tokens_per_second": sum(b.num_target_tokens for b in timed_batches) / seconds,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "spec": ckpt.spec.to_dict(),
    }


if __name__ == "__main__":
    print(json.dumps(measure(256, 30, 0.0, 1, 1, 3), indent=2))
