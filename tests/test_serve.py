"""``seq2seq-kit serve``: the HTTP API against in-process decoding of the same model."""

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

import seq2seq_kit  # noqa: E402
from seq2seq_kit.config import Config, ServeConfig  # noqa: E402
from seq2seq_kit.datasets import digits  # noqa: E402
from seq2seq_kit.serving.app import create_app  # noqa: E402
from seq2seq_kit.source_examples import EXAMPLES  # noqa: E402

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2 beside httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _train(out, attention, epochs):
    config = Config()
    config.train.progress = False
    config.model.attention = attention
    config.train.epochs = epochs
    seq2seq_kit.train(config, out=out)
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """digits with Luong attention: 150 epochs (about a second) translate all nine."""
    return _train(tmp_path_factory.mktemp("serve") / "digits", "general", 150)


@pytest.fixture(scope="module")
def plain_dir(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("serve") / "plain", "none", 2)


@pytest.fixture(scope="module")
def models(model_dir, plain_dir):
    return {"default": seq2seq_kit.load(model_dir), "plain": seq2seq_kit.load(plain_dir)}


@pytest.fixture(scope="module")
def client(models):
    with TestClient(create_app(models, ServeConfig())) as client:
        yield client


def translate(client, **body):
    return client.post("/v1/translate", json=body)


def test_healthz_and_page(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>seq2seq-kit</title>" in page.text


def test_models_listing(client, models):
    listing = client.get("/v1/models").json()
    assert [m["name"] for m in listing["models"]] == ["default", "plain"]
    first = listing["models"][0]
    translator = models["default"]
    assert first["backend"] == "numpy" and first["architecture"] == "rnn"
    assert first["has_attention"] is True and listing["models"][1]["has_attention"] is False
    assert first["spec"] == translator.model.spec.to_dict()
    assert first["source_vocab_size"] == len(translator.source_vocab)
    assert first["target_vocab_size"] == len(translator.target_vocab)
    assert first["max_length"] == translator.max_length
    assert first["decode"]["beam"] == 1 and first["decode"]["max_length"] == translator.max_length
    assert first["training"]["epochs"] == 150 and first["training"]["dataset"] == "digits"
    assert first["training"]["updates"] > 0
    # what the model reads, and inputs to try it with: digits has no validation pairs
    alphabet = sorted({c for source, _ in digits().pairs for c in source})
    assert first["source"] == {"tokenizer": "char", "pieces": len(alphabet), "alphabet": alphabet}
    assert first["examples"] == translator.examples and len(first["examples"]) == EXAMPLES
    assert set(first["examples"]) <= {source for source, _ in digits().pairs}
    assert listing["limits"] == {
        "max_texts": 64,
        "max_text_chars": 1000,
        "max_beam": 16,
        "max_n_best": 16,
        "max_num_samples": 16,
        "max_max_length": 512,
        "max_constraints": 16,
    }


def test_the_listing_names_the_tokenizer_and_the_examples_the_server_takes(tmp_path):
    """A word model lists no alphabet; an example longer than ``max_text_chars`` is left
    out of the listing, as the server would refuse it."""
    numbers = [(str(n), " ".join(str(n))) for n in range(5, 400, 3)]
    config = Config()
    config.train.epochs, config.train.progress = 1, False
    config.data.valid_fraction, config.data.source_tokenizer = 0.25, "word"
    translator = seq2seq_kit.train(config, out=tmp_path / "words", data=numbers)
    examples = translator.examples
    assert len(examples) == EXAMPLES
    assert any(len(e) > 2 for e in examples) and any(len(e) <= 2 for e in examples)
    settings = ServeConfig(max_text_chars=2, max_texts=1, max_queue=1)
    with TestClient(create_app({"words": translator}, settings)) as client:
        (listed,) = client.get("/v1/models").json()["models"]
    assert listed["source"] == {
        "tokenizer": "word",
        "pieces": len(translator.source_vocab.tokens),
        "alphabet": None,
    }
    assert listed["examples"] == [e for e in examples if len(e) <= 2] != []


def test_the_listing_gives_the_served_weights_validation(model_dir, tmp_path):
    """``kept_validation``: the validation the served weights are of and the metric that
    chose them; ``best_valid_loss``: the lowest validation loss, which under chrF is not
    theirs."""
    valid = tmp_path / "valid.tsv"
    valid.write_text("".join(f"{s}\t{t}\n" for s, t in digits().pairs))
    config = Config()
    config.data.valid, config.train.learning_rate, config.train.progress = str(valid), 0.02, False
    config.train.valid_metrics, config.train.early_stopping_metric = ["chrf"], "chrf"
    config.train.patience, config.train.valid_every = 5, 3
    seq2seq_kit.train(config, out=tmp_path / "chrf")
    models = {"chrf": seq2seq_kit.load(tmp_path / "chrf"), "digits": seq2seq_kit.load(model_dir)}
    with TestClient(create_app(models, ServeConfig())) as client:
        chrf, plain = (m["training"] for m in client.get("/v1/models").json()["models"])
    meta = models["chrf"].meta
    kept = meta["trainer"]["best_validation"]
    assert chrf["kept_validation"] == kept and kept["metric"] == "chrf"
    assert kept["valid_chrf"] == max(v["valid_chrf"] for v in meta["validations"])
    lowest = min(v["valid_loss"] for v in meta["validations"] if not v["at_stop"])
    assert chrf["best_valid_loss"] == lowest < kept["valid_loss"]
    # no validation pairs: no validation loss; the last weights, scored on the training pairs
    assert plain["best_valid_loss"] is None
    assert plain["kept_validation"]["evaluated_on"] == "train"
    assert plain["kept_validation"]["update"] == plain["updates"]


def test_greedy_translation_equals_in_process(client, models):
    texts = ["3", "12", "", "987", "5"]
    reply = translate(client, texts=texts)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == "default" and len(body["translations"]) == len(texts)
    expected = models["default"].hypotheses(texts)
    for text, got, hyps in zip(texts, body["translations"], expected, strict=True):
        assert got["source_tokens"] == list(text)
        [hyp] = got["hypotheses"]
        assert hyp["text"] == hyps[0].text and hyp["score"] == pytest.approx(hyps[0].score)
        assert "".join(hyp["tokens"]) == hyps[0].text
        assert hyp["truncated"] is hyps[0].truncated and hyp["attention"] is None
    assert body["translations"][0]["hypotheses"][0]["text"] == "three"


@pytest.mark.parametrize("rule", [True, False, "never", 2.5])
def test_early_stopping_equal_in_process(client, models, rule):
    texts = ["7", "41", "1234"]
    options = {"beam": 3, "n_best": 2, "length_penalty": 1.0, "early_stopping": rule}
    reply = translate(client, texts=texts, **options)
    assert reply.status_code == 200, reply.text
    expected = models["default"].hypotheses(texts, **options)
    for got, hyps in zip(reply.json()["translations"], expected, strict=True):
        assert [h["text"] for h in got["hypotheses"]] == [h.text for h in hyps]
        assert [h["score"] for h in got["hypotheses"]] == pytest.approx([h.score for h in hyps])


def test_beam_n_best_equal_in_process(client, models):
    texts = ["7", "41"]
    reply = translate(client, texts=texts, beam=4, n_best=3, length_penalty=0.5, max_length=9)
    assert reply.status_code == 200, reply.text
    expected = models["default"].hypotheses(
        texts, beam=4, n_best=3, length_penalty=0.5, max_length=9
    )
    for got, hyps in zip(reply.json()["translations"], expected, strict=True):
        assert len(got["hypotheses"]) == 3
        assert [h["text"] for h in got["hypotheses"]] == [h.text for h in hyps]
        assert [h["score"] for h in got["hypotheses"]] == pytest.approx([h.score for h in hyps])
        assert [h["truncated"] for h in got["hypotheses"]] == [h.truncated for h in hyps]


def test_sampling_and_output_controls_equal_in_process(client, models):
    texts = ["7", "41", ""]
    options = {"sampling": True, "num_samples": 3, "seed": 4, "temperature": 1.5, "top_p": 0.9}
    controls = {"min_length": 2, "no_repeat_ngram_size": 2, "banned_tokens": ["x"]}
    for asked in (options, controls, {**options, **controls}):
        reply = translate(client, texts=texts, **asked)
        assert reply.status_code == 200, reply.text
        expected = models["default"].hypotheses(texts, **asked)
        for got, hyps in zip(reply.json()["translations"], expected, strict=True):
            assert [h["text"] for h in got["hypotheses"]] == [h.text for h in hyps]
            assert [h["score"] for h in got["hypotheses"]] == pytest.approx([h.score for h in hyps])
    # a seed answers the same whatever else the server decodes beside the request
    alone = translate(client, texts=["41"], **options).json()["translations"][0]["hypotheses"]
    among = translate(client, texts=texts, **options).json()["translations"][1]["hypotheses"]
    assert [h["text"] for h in alone] == [h["text"] for h in among]
    assert [h["score"] for h in alone] == pytest.approx([h["score"] for h in among], abs=1e-5)


def test_prefixes_equal_in_process_and_batch_with_other_requests(client, models):
    from seq2seq_kit.serving.decode import translate_requests
    from seq2seq_kit.serving.requests import parse_body, prepare

    texts, prefix = ["3", "12", "", "8"], ["th", "", "", "e"]
    reply = translate(client, texts=texts, prefix=prefix, beam=2, n_best=2, attention=True)
    assert reply.status_code == 200, reply.text
    expected = models["default"].hypotheses(texts, prefix=prefix, beam=2, n_best=2)
    for got, hyps, text, start in zip(
        reply.json()["translations"], expected, texts, prefix, strict=True
    ):
        assert [h["text"] for h in got["hypotheses"]] == [h.text for h in hyps]
        assert all(h["text"].startswith(start) for h in got["hypotheses"])
        for h in got["hypotheses"] if text else ():  # a blank text has no weights
            assert len(h["attention"]) == len(h["tokens"]) + (not h["truncated"])
    # requests with and without prefixes share one decoding call
    limits = ServeConfig()
    bodies = [{"texts": ["3", "8"], "prefix": ["th", ""]}, {"texts": ["12"]}]
    requests = [
        prepare(parse_body(json.dumps(b).encode()), models, limits, "default") for b in bodies
    ]
    together = translate_requests(models["default"], requests)
    for body, got in zip(bodies, together, strict=True):
        alone = models["default"].hypotheses(body["texts"], prefix=body.get("prefix"))
        assert [t["hypotheses"][0]["text"] for t in got] == [h[0].text for h in alone]


def test_attention_per_hypothesis(client, models):
    reply = translate(client, texts=["12", "4"], beam=3, n_best=2, attention=True)
    assert reply.status_code == 200, reply.text
    for translation in reply.json()["translations"]:
        columns = len(translation["source_tokens"])
        for hyp in translation["hypotheses"]:
            weights = np.array(hyp["attention"])
            rows = len(hyp["tokens"]) + (0 if hyp["truncated"] else 1)
            assert weights.shape == (rows, columns)
            np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    # greedy: the weights the CLI's heatmap shows
    greedy = translate(client, texts=["12"], attention=True).json()["translations"][0]
    source, output, weights = models["default"].attention("12")
    assert greedy["source_tokens"] == source
    assert greedy["hypotheses"][0]["tokens"] + ["</s>"] == output
    np.testing.assert_allclose(greedy["hypotheses"][0]["attention"], weights, atol=1e-6)


def test_second_model_by_name(client, models):
    reply = translate(client, texts=["3"], model="plain")
    assert reply.status_code == 200 and reply.json()["model"] == "plain"
    assert (
        reply.json()["translations"][0]["hypotheses"][0]["text"]
        == (models["plain"].translate(["3"])[0])
    )


def test_a_transformer_with_attention_and_its_length_limit():
    from seq2seq_kit.api import Translator
    from seq2seq_kit.plugins import get_backend
    from seq2seq_kit.spec import TransformerSpec
    from seq2seq_kit.vocab import Vocabulary

    if "transformer" not in get_backend("numpy").capabilities:
        pytest.skip("the numpy backend builds no Transformer")
    vocab = Vocabulary(tuple("0123456789"))
    spec = TransformerSpec(
        len(vocab), len(vocab), d_model=8, num_heads=2, ff_size=16, max_positions=4
    )
    translator = Translator(
        get_backend("numpy").create(spec, seed=1), vocab, vocab, backend="numpy", max_length=3
    )
    with TestClient(create_app({"t": translator})) as client:
        reply = translate(client, texts=["123", "4"], beam=2, n_best=2, attention=True)
        assert reply.status_code == 200, reply.text
        for text, translation in zip(["123", "4"], reply.json()["translations"], strict=True):
            expected = translator.hypotheses([text], beam=2, n_best=2)[0]
            assert [h["text"] for h in translation["hypotheses"]] == [h.text for h in expected]
            for hyp in translation["hypotheses"]:
                weights = np.array(hyp["attention"])
                rows = len(hyp["tokens"]) + (0 if hyp["truncated"] else 1)
                assert weights.shape == (rows, len(text))
                np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
        reply = translate(client, texts=["1", "12345"])
        assert reply.status_code == 422 and reply.json()["error"]["field"] == "texts[1]"
        message = reply.json()["error"]["message"]
        assert "texts[1] has 5 source tokens but the model takes at most 4" in message


BAD = [
    # (body as bytes, status, field, words the message must hold)
    (b'{"texts": ["3"', 400, None, ["not JSON", "line 1, column 15"]),
    (b'{\n  "texts": [3,]\n}', 400, None, ["line 2, column 15"]),
    (b'["3"]', 400, None, ["array", "not an object"]),
    (b"\xff\xfe\x00", 400, None, []),
    (b'{"texts": "3"}', 422, "texts", ["valid list", "string"]),
    (b'{"texts": ["3", "4", 5]}', 422, "texts[2]", ["valid string", "number 5"]),
    (b"{}", 422, "texts", ["missing"]),
    (b'{"beam": 2}', 422, "texts", ["missing"]),
    (b'{"texts": []}', 422, "texts", ["empty"]),
    (b'{"texts": ["3"], "bean": 2}', 422, "bean", ["unknown key", "beam"]),
    (b'{"text": ["3"]}', 422, "text", ["unknown key"]),
    (b'{"texts": ["3"], "beam": 0}', 422, "beam", ["greater than or equal to 1"]),
    (b'{"texts": ["3"], "beam": "2"}', 422, "beam", ["valid integer"]),
    (b'{"texts": ["3"], "beam": 17}', 422, "beam", ["at most 16", "max_beam"]),
    (b'{"texts": ["3"], "n_best": 0}', 422, "n_best", ["greater than or equal to 1"]),
    (b'{"texts": ["3"], "n_best": 17}', 422, "n_best", ["at most 16"]),
    (b'{"texts": ["3"], "max_length": 0}', 422, "max_length", ["greater than or equal"]),
    (b'{"texts": ["3"], "max_length": 513}', 422, "max_length", ["at most 512"]),
    (b'{"texts": ["3"], "length_penalty": NaN}', 422, "length_penalty", ["finite"]),
    (b'{"texts": ["3"], "length_penalty": -1}', 422, "length_penalty", ["greater than"]),
    (b'{"texts": ["3"], "length_penalty": 50}', 422, "length_penalty", ["less than or equal"]),
    (b'{"texts": ["3"], "early_stopping": "true"}', 422, "early_stopping", ["'never'", '"true"']),
    (b'{"texts": ["3"], "early_stopping": 0}', 422, "early_stopping", ["above 0", "number 0"]),
    (b'{"texts": ["3"], "early_stopping": 101}', 422, "early_stopping", ["at most 100"]),
    (b'{"texts": ["3"], "beam": 1' + b"0" * 5000 + b"}", 400, None, ["digits"]),
    (b'{"texts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, None, ["nests too deeply"]),
    (b'{"texts": ["3"], "sampling": "yes"}', 422, "sampling", ["boolean"]),
    (b'{"texts": ["3"], "sampling": true, "temperature": 0}', 422, "temperature", ["greater"]),
    (b'{"texts": ["3"], "sampling": true, "top_p": 1.5}', 422, "top_p", ["less than or"]),
    (b'{"texts": ["3"], "sampling": true, "top_k": -1}', 422, "top_k", ["greater than or"]),
    (b'{"texts": ["3"], "sampling": true, "seed": "3"}', 422, "seed", ["valid integer"]),
    (b'{"texts": ["3"], "sampling": true, "seed": -1}', 422, "seed", ["greater than or"]),
    (
        b'{"texts": ["3"], "sampling": true, "num_samples": 17}',
        422,
        "num_samples",
        ["at most 16", "serve.max_num_samples"],
    ),
    (b'{"texts": ["3"], "temperature": 0.5}', 422, "temperature", ["sampling only"]),
    (b'{"texts": ["3"], "seed": 1}', 422, "seed", ["sampling only"]),
    (b'{"texts": ["3"], "sampling": true, "beam": 2}', 422, "sampling", ["set beam to 1"]),
    (b'{"texts": ["3"], "min_length": 513}', 422, "min_length", ["above the length cap"]),
    (b'{"texts": ["3"], "no_repeat_ngram_size": -2}', 422, "no_repeat_ngram_size", ["greater"]),
    (b'{"texts": ["3"], "banned_tokens": "e"}', 422, "banned_tokens", ["valid list"]),
    (b'{"texts": ["3"], "banned_tokens": ["e", ""]}', 422, "banned_tokens[1]", ["at least 1"]),
    (b'{"texts": ["3"], "banned_tokens": ["zz"]}', 422, "banned_tokens[0]", ["'zz'", "not a"]),
    (b'{"texts": ["3"], "banned_tokens": ["</s>"]}', 422, "banned_tokens[0]", ["special"]),
    (b'{"texts": ["3", "4"], "prefix": ["th"]}', 422, "prefix", ["1 strings for 2 texts"]),
    (b'{"texts": ["3"], "prefix": [3]}', 422, "prefix[0]", ["valid string"]),
    (b'{"texts": ["3"], "prefix": "th"}', 422, "prefix", ["valid list"]),
    (b'{"texts": ["3", "4"], "prefix": ["", "tq"]}', 422, "prefix[1]", ["'q'", "target vocab"]),
    (b'{"texts": ["3", " "], "prefix": ["", "t"]}', 422, "prefix[1]", ["blank"]),
    (
        b'{"texts": ["3"], "max_length": 2, "prefix": ["thr"]}',
        422,
        "prefix[0]",
        ["3 tokens", "length cap of 2"],
    ),
    (
        b'{"texts": ["3"], "banned_tokens": ["h"], "prefix": ["th"]}',
        422,
        "prefix[0]",
        ["'h'", "banned"],
    ),
    (b'{"texts": ["3"], "attention": 1}', 422, "attention", ["boolean"]),
    (b'{"texts": ["3"], "model": 1}', 422, "model", ["string"]),
    (
        b'{"texts": ["3", "12", "4x5"]}',
        422,
        "texts[2]",
        ["texts[2]", "character 2", "'x'", "U+0078", "never seen"],
    ),
    (b'{"texts": ["3"], "model": "nope"}', 404, "model", ["'nope'", "'default', 'plain'"]),
    (b'{"texts": ["3"], "model": "plain", "attention": true}', 422, "attention", ["plain"]),
    (json.dumps({"texts": ["1"] * 65}).encode(), 413, "texts", ["65", "at most 64"]),
    (json.dumps({"texts": ["1", "2" * 1001]}).encode(), 413, "texts[1]", ["1001", "1000"]),
    (json.dumps({"texts": ["1"], "prefix": ["t" * 1001]}).encode(), 413, "prefix[0]", ["1001"]),
    (json.dumps({"texts": ["1" * (1 << 20)]}).encode(), 413, None, ["at most 1048576"]),
]


@pytest.mark.parametrize(("raw", "status", "field", "words"), BAD, ids=lambda v: str(v)[:30])
def test_bad_requests_are_refused_naming_the_field(client, raw, status, field, words):
    reply = client.post("/v1/translate", content=raw, headers={"content-type": "application/json"})
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["field"] == field
    for word in words:
        assert word in error["message"], error["message"]
    # the server keeps serving
    assert translate(client, texts=["3"]).status_code == 200


def test_body_over_the_limit_without_a_length_header(models):
    # a chunked body: refused as soon as it passes the limit
    settings = ServeConfig(max_body_bytes=64)
    with TestClient(create_app(models, settings)) as client:
        chunks = iter([b'{"texts": ["', b"1" * 100, b'"]}'])
        reply = client.post(
            "/v1/translate", content=chunks, headers={"content-type": "application/json"}
        )
        assert reply.status_code == 413 and "at most 64" in reply.json()["error"]["message"]


@pytest.mark.parametrize(
    "media_type",
    [
        "text/plain",  # what a cross-origin fetch or form may send without a preflight
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
        None,
    ],
)
def test_only_json_bodies_are_accepted(client, media_type):
    headers = {} if media_type is None else {"content-type": media_type}
    reply = client.post("/v1/translate", content=b'{"texts": ["3"]}', headers=headers)
    assert reply.status_code == 415, reply.text
    error = reply.json()["error"]
    assert error["field"] is None and "Content-Type: application/json" in error["message"]
    # a browser asks before a cross-origin JSON post, and is not allowed
    preflight = client.options(
        "/v1/translate",
        headers={"origin": "https://elsewhere.example", "access-control-request-method": "POST"},
    )
    assert preflight.status_code == 405
    assert not [h for h in preflight.headers if h.startswith("access-control-")]


@pytest.mark.parametrize("media_type", ["application/json; charset=utf-8", "Application/JSON"])
def test_json_media_types_with_parameters_or_capitals_are_accepted(client, media_type):
    reply = client.post(
        "/v1/translate", content=b'{"texts": ["3"]}', headers={"content-type": media_type}
    )
    assert reply.status_code == 200, reply.text


def test_a_client_gone_mid_body_is_no_internal_error(models, caplog):
    # the server's view of a client that closes its connection after part of the body
    app = create_app(models, ServeConfig())
    events = iter(
        [
            {"type": "http.request", "body": b'{"texts": ["', "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent = []

    async def receive():
        return next(events)

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/translate",
        "raw_path": b"/v1/translate",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
    }
    with caplog.at_level("DEBUG"):
        asyncio.run(app(scope, receive, send))  # raised ClientDisconnect before
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert sent and sent[0]["status"] != 500


def test_unknown_path_and_wrong_method(client):
    reply = client.get("/v1/translate")
    assert reply.status_code == 405 and reply.headers["allow"] == "POST"
    assert "GET is not allowed" in reply.json()["error"]["message"]
    assert client.post("/healthz").status_code == 405
    reply = client.get("/v2/nothing")
    assert reply.status_code == 404 and reply.json()["error"]["field"] is None
    # no redirect to the slash-less path (Starlette would build it from the Host header)
    reply = client.post("/v1/translate/", json={"texts": ["3"]}, follow_redirects=False)
    assert reply.status_code == 404 and "location" not in reply.headers


def test_attention_replies_are_bounded_before_decoding(models):
    # texts x n_best x (max_length + 1) x source tokens: "12" and "3" are 3 source tokens
    settings = ServeConfig(max_attention_weights=3 * 2 * 11)
    with TestClient(create_app(models, settings)) as client:
        body = {"texts": ["12", "3"], "beam": 2, "n_best": 2, "attention": True}
        assert translate(client, **body, max_length=10).status_code == 200
        reply = translate(client, **body, max_length=11)
        assert reply.status_code == 422 and reply.json()["error"]["field"] == "attention"
        assert "72" in reply.json()["error"]["message"]
        assert translate(client, **{**body, "attention": False}, max_length=11).status_code == 200


def test_a_decoding_error_fails_only_its_request(client, models, monkeypatch):
    model = models["default"].model
    model = getattr(model, "__wrapped__", model)  # the backend's model, under its checks
    step, calls = model.step, []

    def broken_once(prev, state):
        calls.append(1)
        if len(calls) == 1:
            raise FloatingPointError("injected fault")
        return step(prev, state)

    monkeypatch.setattr(model, "step", broken_once)
    reply = translate(client, texts=["3"])
    assert reply.status_code == 500
    assert reply.json()["error"] == {
        "field": None,
        "message": "decoding failed: FloatingPointError: injected fault",
    }
    reply = translate(client, texts=["3"])
    assert reply.status_code == 200 and reply.json()["translations"][0]["hypotheses"][0][
        "text"
    ] == ("three")


def test_a_fault_outside_decoding_is_a_json_500(models, monkeypatch):
    from seq2seq_kit.serving import app

    def broken(*args, **kwargs):
        raise KeyError("injected")

    # as a server answers: the test client would re-raise the fault instead
    with TestClient(create_app(models), raise_server_exceptions=False) as client:
        monkeypatch.setattr(app, "prepare", broken)
        reply = translate(client, texts=["3"])
        assert reply.status_code == 500
        assert reply.headers["content-type"] == "application/json"
        assert reply.json()["error"] == {
            "field": None,
            "message": "internal error: KeyError: 'injected'",
        }
        monkeypatch.undo()
        assert translate(client, texts=["3"]).status_code == 200


def test_a_failed_batch_is_decoded_again_in_parts_down_to_single_requests(models, monkeypatch):
    translator = models["default"]
    decode_ids, nine = translator.decode_ids, translator.source_vocab.encode("9")

    def refuse_nine(rows, **options):  # a fault that only one request's text triggers
        if nine in rows:
            raise RuntimeError("cannot decode 9")
        return decode_ids(rows, **options)

    monkeypatch.setattr(translator, "decode_ids", refuse_nine)
    settings = ServeConfig(batch_window_ms=300)
    with TestClient(create_app({"default": translator}, settings)) as client:
        replies = {}

        def send(text):
            replies[text] = translate(client, texts=[text])

        threads = [threading.Thread(target=send, args=(t,)) for t in "389"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert replies["9"].status_code == 500
    assert "cannot decode 9" in replies["9"].json()["error"]["message"]
    assert replies["3"].json()["translations"][0]["hypotheses"][0]["text"] == "three"
    assert replies["8"].json()["translations"][0]["hypotheses"][0]["text"] == "eight"


def test_concurrent_requests_are_batched(models, monkeypatch):
    translator = models["default"]
    hypotheses, decode_ids, calls = translator.hypotheses, translator.decode_ids, []

    def counted(rows, **options):
        calls.append(len(rows))
        return decode_ids(rows, **options)

    texts = [*"123456789", "11", "12", "13", "14", "15", "16", "17", "25", "3"]
    expected = {t: hyps[0].text for t, hyps in zip(texts, hypotheses(texts), strict=True)}
    monkeypatch.setattr(translator, "decode_ids", counted)
    settings = ServeConfig(batch_window_ms=300)
    with TestClient(create_app({"default": translator}, settings)) as client:
        replies = {}

        def send(text, beam):
            replies[(text, beam)] = translate(client, texts=[text], beam=beam)

        threads = [threading.Thread(target=send, args=(t, 1)) for t in texts[:16]]
        threads += [threading.Thread(target=send, args=(t, 2)) for t in texts[16:]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = client.get("/v1/stats").json()["models"]["default"]
    assert len(replies) == 18
    # the server's counters say how it batched: every text decoded once, in len(calls) calls
    assert stats == {
        "decode_calls": len(calls),
        "decoded_texts": 18,
        "mean_batch_texts": 18 / len(calls),
        "failed_calls": 0,
        "pending_texts": 0,
    }
    for (text, _), reply in replies.items():
        assert reply.status_code == 200, reply.text
        assert reply.json()["translations"][0]["source_tokens"] == list(text)
        if _ == 1:
            assert reply.json()["translations"][0]["hypotheses"][0]["text"] == expected[text]
    # 18 requests in two option groups (beam 1, beam 2): a few calls, not one per request
    assert len(calls) < 8, calls
    assert max(calls) > 1


def test_a_lone_client_waits_for_no_company(models):
    # the first round waits the window for a batch; once rounds take one text, a client
    # sending one request at a time is decoded at once, not after the window
    settings = ServeConfig(batch_window_ms=1000)
    with TestClient(create_app({"default": models["default"]}, settings)) as client:
        begin = time.perf_counter()
        assert translate(client, texts=["3"]).status_code == 200
        first = time.perf_counter() - begin
        begin = time.perf_counter()
        for text in "456":
            reply = translate(client, texts=[text])
            assert reply.status_code == 200, reply.text
        after = (time.perf_counter() - begin) / 3
        stats = client.get("/v1/stats").json()["models"]["default"]
    assert first >= 1.0
    assert after < 0.5, after
    assert stats["decode_calls"] == 4 and stats["mean_batch_texts"] == 1


def test_clients_answered_together_rejoin_those_that_arrived_meanwhile():
    # two clients, then two more while the first pair decodes: when the pair is answered,
    # the next round waits (up to the window, from the end of the last round) for it to
    # come back, instead of decoding the late pair alone and alternating pairs forever
    from seq2seq_kit.serving.batcher import Batcher

    sizes = []

    def decode(items):
        sizes.append(len(items))
        time.sleep(0.1)
        return items

    async def run():
        batcher = Batcher(decode, key=lambda item: 0, window_s=0.05, max_batch=4, max_queue=8)
        batcher.start()

        async def client(delay):
            await asyncio.sleep(delay)
            for _ in range(4):
                assert await batcher.submit("x", 1) == "x"

        await asyncio.gather(client(0), client(0), client(0.08), client(0.08))
        await batcher.close()
        return batcher.stats()

    stats = asyncio.run(run())
    assert sizes == [2, 4, 4, 4, 2], sizes
    assert stats["decode_calls"] == 5 and stats["decoded_texts"] == 16


def test_a_full_queue_answers_503(models, monkeypatch):
    translator = models["default"]
    decode_ids = translator.decode_ids
    entered, release = threading.Event(), threading.Event()

    def blocked(rows, **options):
        entered.set()
        release.wait(10)
        return decode_ids(rows, **options)

    monkeypatch.setattr(translator, "decode_ids", blocked)
    settings = ServeConfig(batch_window_ms=0, max_texts=2, max_queue=2)
    with TestClient(create_app({"default": translator}, settings)) as client:
        first = {}
        worker = threading.Thread(
            target=lambda: first.setdefault("reply", translate(client, texts=["1", "2"]))
        )
        worker.start()
        try:
            assert entered.wait(10)
            assert client.get("/healthz").status_code == 200  # the loop is free meanwhile
            reply = translate(client, texts=["3"])
            assert reply.status_code == 503 and reply.headers["retry-after"] == "1"
            assert "max_queue = 2" in reply.json()["error"]["message"]
        finally:
            release.set()
            worker.join()
        assert first["reply"].status_code == 200
        assert translate(client, texts=["3"]).status_code == 200


def test_serve_config_refuses_a_queue_smaller_than_a_request():
    with pytest.raises(ValueError, match="max_queue = 4 is below max_texts = 8"):
        ServeConfig(max_queue=4, max_texts=8)


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}


def test_importing_the_serving_package_loads_no_framework():
    code = (
        "import sys, seq2seq_kit.serving, seq2seq_kit.serving.requests, "
        "seq2seq_kit.serving.batcher, seq2seq_kit.serving.decode, "
        "seq2seq_kit.serving.memory, seq2seq_kit.serving.models\n"
        "print(sorted(m for m in ('torch', 'tensorflow', 'starlette', 'uvicorn') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    assert out.stdout.strip() == "[]", out.stderr


def test_serve_without_starlette_says_what_to_install(model_dir):
    code = (
        "import sys; sys.modules['starlette'] = None\n"
        "from seq2seq_kit.cli import main\n"
        f"sys.exit(main(['serve', '--model', {str(model_dir)!r}]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and "pip install 'seq2seq-kit[serve]'" in out.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--port", "70000"], ["--port", "less than or equal to 65535"]),
        (["--max-texts", "0"], ["--max-texts"]),
        (["--max-queue", "2"], ["max_queue = 2 is below max_texts = 64"]),
        (["--model", "a=x", "--model", "y"], ["name each"]),
        (["--model", "a=x", "--model", "a=y"], ["'a' is given twice"]),
    ],
)
def test_serve_refuses_bad_options(model_dir, args, words):
    argv = ["serve", *args]
    if "--model" not in args:
        argv += ["--model", str(model_dir)]
    proc = subprocess.run(
        [sys.executable, "-m", "seq2seq_kit", *argv], capture_output=True, text=True, env=_env()
    )
    assert proc.returncode == 2, proc.stderr
    for word in words:
        assert word in proc.stderr


def test_serve_refuses_a_port_in_use(model_dir):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["serve", "--model", str(model_dir), "--port", str(port)]
        proc = subprocess.run(
            [sys.executable, "-m", "seq2seq_kit", *argv],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=60,
        )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: "), proc.stderr


def test_serve_config_file_and_flags(model_dir, tmp_path, monkeypatch):
    # the [serve] table of a config file, under the flags, reaches the application
    from seq2seq_kit import cli

    config = tmp_path / "serve.toml"
    config.write_text("[serve]\nmax_texts = 3\nmax_beam = 4\n\n[decode]\nbeam = 1\n")
    seen = {}

    def fake_app(models, settings, **options):
        seen["models"], seen["settings"], seen["options"] = models, settings, options
        raise SystemExit(0)

    monkeypatch.setattr("seq2seq_kit.serving.app.create_app", fake_app)
    with pytest.raises(SystemExit):
        cli.main(
            ["serve", "--model", f"digits={model_dir}", "--config", str(config), "--max-beam", "5"]
        )
    assert list(seen["models"]) == ["digits"]
    # the directory each model came from, for a reload (SIGHUP, POST .../reload)
    assert seen["options"]["sources"] == {"digits": str(model_dir)}
    settings = seen["settings"]
    assert (settings.max_texts, settings.max_beam, settings.max_text_chars) == (3, 5, 1000)


def _read_line(stream, timeout):
    """The next line of ``stream``, or "" after ``timeout`` seconds."""
    box = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0] if box else ""


def test_the_real_server_translates_and_stops_on_sigterm(model_dir):
    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "seq2seq_kit", "serve", "--model", str(model_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        line = _read_line(proc.stdout, 60)
        found = re.search(r"on http://127\.0\.0\.1:(\d+) ", line)
        assert found, (line, proc.poll())
        url = f"http://127.0.0.1:{found.group(1)}"
        for _ in range(100):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        reply = httpx.post(f"{url}/v1/translate", json={"texts": ["3", "42"]})
        assert reply.status_code == 200
        texts = [t["hypotheses"][0]["text"] for t in reply.json()["translations"]]
        assert texts == seq2seq_kit.load(model_dir).translate(["3", "42"])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_closing_the_batcher_answers_what_is_queued_and_refuses_the_rest():
    import asyncio

    from seq2seq_kit.serving.batcher import Batcher
    from seq2seq_kit.serving.errors import RequestError

    calls = []

    def decode(items):
        calls.append(list(items))
        time.sleep(0.05)
        return [item * 10 for item in items]

    async def scenario():
        batcher = Batcher(
            decode, key=lambda item: item % 2, window_s=0.05, max_batch=4, max_queue=8
        )
        batcher.start()
        waiting = [asyncio.ensure_future(batcher.submit(n, 1)) for n in range(6)]
        await asyncio.sleep(0)  # every request is queued before the server stops
        await batcher.close()
        with pytest.raises(RequestError) as refused:
            await batcher.submit(9, 1)
        return await asyncio.gather(*waiting), refused.value

    results, refused = asyncio.run(scenario())
    assert results == [0, 10, 20, 30, 40, 50]
    assert refused.status == 503 and refused.headers["Retry-After"] == "1"
    # 4 texts per round at most, each round split by key (odd, even): 4 calls, not 6
    assert sorted(map(sorted, calls)) == [[0, 2], [1, 3], [4], [5]]


def test_alignments_per_hypothesis_equal_in_process(client, models):
    texts = ["3", "", "12"]
    reply = translate(client, texts=texts, beam=2, n_best=2, alignments=True)
    assert reply.status_code == 200, reply.text
    expected = models["default"].hypotheses(texts, beam=2, n_best=2, alignments=True)
    for got, hyps in zip(reply.json()["translations"], expected, strict=True):
        for hyp, h in zip(got["hypotheses"], hyps, strict=True):
            assert hyp["alignment"] == [[i, j] for i, j in h.alignment]
            assert len(hyp["alignment"]) == len(hyp["tokens"])
    unasked = translate(client, texts=["3"]).json()["translations"][0]["hypotheses"][0]
    assert unasked["alignment"] is None
    for field in ("alignments", "replace_unk"):
        refused = translate(client, texts=["3"], model="plain", **{field: True})
        assert refused.status_code == 422 and refused.json()["error"]["field"] == field
        assert "no attention" in refused.json()["error"]["message"]
        wrong = translate(client, texts=["3"], **{field: 1})
        assert wrong.status_code == 422 and wrong.json()["error"]["field"] == field


def test_refusals_name_the_request_fields_within_the_command(models):
    """``seq2seq-kit serve`` runs the server within the command line's context, where the
    core names options by their flags; a reply names the request's JSON fields."""
    from seq2seq_kit.cli.options import _flag_of
    from seq2seq_kit.errors import flags
    from seq2seq_kit.serving.errors import RequestError
    from seq2seq_kit.serving.requests import parse_body, prepare

    asked = [
        ({"model": "plain", "alignments": True}, "alignments", "no attention"),
        ({"model": "plain", "replace_unk": True}, "replace_unk", "no attention"),
        ({"banned_tokens": ["<unk>"]}, "banned_tokens[0]", "unless replace_unk is on"),
        ({"banned_tokens": ["</s>"]}, "banned_tokens[0]", "set min_length"),
    ]
    with flags(_flag_of):
        for body, field, reason in asked:
            raw = json.dumps({"texts": ["3"], **body}).encode()
            with pytest.raises(RequestError) as info:
                prepare(parse_body(raw), models, ServeConfig(), "default")
            assert info.value.status == 422 and info.value.field == field
            assert reason in info.value.message and "--" not in info.value.message


@pytest.fixture(scope="module")
def tabled(tmp_path_factory):
    """The name-copying model (tests/aligned_tasks.py) saved with replace_unk and a phrase
    table, and the table's file it was trained with."""
    from aligned_tasks import train_named

    folder = tmp_path_factory.mktemp("tabled")
    table = folder / "names.tsv"
    table.write_text("Zed1\tZoe\n", encoding="utf-8")
    model = train_named(folder, unknown="replace", replace_unk=True, replace_unk_table=str(table))
    return model, table


def test_replace_unk_from_the_models_settings_and_per_request(tabled, monkeypatch):
    from aligned_tasks import named_pairs

    folder, table = tabled
    named = seq2seq_kit.load(folder)
    texts = [source for source, _ in named_pairs(1, 6, "Zed")]
    with TestClient(create_app({"named": named}, ServeConfig())) as client:
        # the table was read with the model: no request reads a file (a large table would
        # stall the event loop)
        monkeypatch.setattr("seq2seq_kit.phrase_table.read_phrase_table", _no_reading)
        monkeypatch.setattr("seq2seq_kit.decoding.load_phrase_table", _no_reading)
        reply = translate(client, texts=texts)
        assert reply.status_code == 200, reply.text
        got = [t["hypotheses"][0] for t in reply.json()["translations"]]
        assert [h["text"] for h in got] == named.translate(texts)
        assert any("Zoe" in h["text"] for h in got) and any("<unk>" in h["tokens"] for h in got)
        # off in a request: the model's table goes with it, the names do not come through
        off = translate(client, texts=texts, replace_unk=False).json()["translations"]
        assert [t["hypotheses"][0]["text"] for t in off] == named.translate(
            texts, replace_unk=False
        )
        assert not any("Zed" in t["hypotheses"][0]["text"] for t in off)
        # the model holds its own copy of the table: the file it was trained with, broken
        # since, changes nothing
        table.write_text("Zed1 Zoe\n", encoding="utf-8")
        again = translate(client, texts=texts)
        assert again.status_code == 200 and again.json() == reply.json()
        # the listing names the table's file, not where the server keeps it
        decode = client.get("/v1/models").json()["models"][0]["decode"]
        assert decode["replace_unk"] and decode["replace_unk_table"] == "replace-unk-table.tsv"


def _no_reading(*args, **kwargs):
    raise AssertionError("a phrase table was read while serving a request")


def test_a_broken_phrase_table_is_the_servers_fault(tabled, tmp_path):
    """A model's table is checked when the model is loaded: one that does not load keeps
    the server from starting, or the old model serving on reload; a table that fails
    later is the server's fault (500), not the request's (422)."""
    from aligned_tasks import named_pairs

    from seq2seq_kit.errors import DataError
    from seq2seq_kit.serving.errors import RequestError
    from seq2seq_kit.serving.requests import parse_body, prepare

    folder, _ = tabled
    copy = tmp_path / "named"
    shutil.copytree(folder, copy)
    texts = [source for source, _ in named_pairs(1, 6, "Zed")]
    settings = ServeConfig(allow_reload=True)
    app = create_app({"named": seq2seq_kit.load(copy)}, settings, sources={"named": copy})
    with TestClient(app) as client:
        before = translate(client, texts=texts).json()
        (copy / "replace-unk-table.tsv").write_text("Zed1 Zoe\n", encoding="utf-8")
        reload = client.post("/v1/models/named/reload", json={})
        assert reload.status_code == 409, reload.text
        assert "replace-unk-table.tsv: corrupted" in reload.json()["error"]["message"]
        assert translate(client, texts=texts).json() == before  # the old model serves on
    # a model saved before model directories held their table names it by a path
    broken = tmp_path / "broken.tsv"
    broken.write_text("Zed1\n", encoding="utf-8")
    legacy = seq2seq_kit.load(folder)
    legacy.phrase_table = None
    config = legacy.meta["config"]
    legacy.meta = {**legacy.meta, "config": {**config, "decode": {**config["decode"]}}}
    legacy.meta["config"]["decode"]["replace_unk_table"] = str(broken)
    with pytest.raises(DataError, match="model 'old' cannot be served") as refused:
        create_app({"old": legacy}, ServeConfig())
    assert f"{broken}:1: 0 TABs" in str(refused.value)
    # read by no load (given to prepare as it is), the table fails at the request
    with pytest.raises(RequestError) as info:
        prepare(parse_body(b'{"texts": ["3 Zed1"]}'), {"old": legacy}, ServeConfig(), "old")
    assert info.value.status == 500 and info.value.field is None
    assert "broken.tsv:1: 0 TABs" in info.value.message
    assert str(tmp_path) not in info.value.message
