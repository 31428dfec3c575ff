"""The server's ``constraints`` field: decoded as ``Translator.hypotheses`` decodes them,
validated and bounded as the other fields are, and each hypothesis's ``constraints_met``."""

import json
import warnings

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from seq2seq_kit.api import Translator  # noqa: E402
from seq2seq_kit.config import ServeConfig  # noqa: E402
from seq2seq_kit.plugins import get_backend  # noqa: E402
from seq2seq_kit.serving.app import create_app  # noqa: E402
from seq2seq_kit.spec import ModelSpec  # noqa: E402
from seq2seq_kit.vocab import Vocabulary  # noqa: E402

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2 beside httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def translator():
    vocab = Vocabulary(tuple("abcdefgh"))
    model = get_backend("numpy").create(ModelSpec(len(vocab), len(vocab), hidden_size=8), seed=5)
    return Translator(model, vocab, vocab, backend="numpy", max_length=8)


@pytest.fixture(scope="module")
def client(translator):
    limits = ServeConfig(max_constraints=3, max_text_chars=20)
    with TestClient(create_app({"default": translator}, limits)) as client:
        yield client


def translate(client, **body):
    return client.post("/v1/translate", json=body)


def test_replies_hold_the_constraints_as_in_process(client, translator):
    texts, constraints = ["abc", "h", "", "gg"], [["gh", "a"], [], [], ["ccc"]]
    reply = translate(client, texts=texts, constraints=constraints, beam=3, n_best=2)
    assert reply.status_code == 200, reply.text
    expected = translator.hypotheses(texts, constraints=constraints, beam=3, n_best=2)
    for got, hyps in zip(reply.json()["translations"], expected, strict=True):
        assert [h["text"] for h in got["hypotheses"]] == [h.text for h in hyps]
        assert [h["score"] for h in got["hypotheses"]] == pytest.approx([h.score for h in hyps])
        assert [h["constraints_met"] for h in got["hypotheses"]] == [
            h.constraints_met for h in hyps
        ]
    best = [t["hypotheses"][0] for t in reply.json()["translations"]]
    assert "gh" in best[0]["text"] and "a" in best[0]["text"] and "ccc" in best[3]["text"]
    # the length cap before the phrase: flagged
    reply = translate(client, texts=["abc"], constraints=[["abcdefgh"]], max_length=4)
    assert reply.json()["translations"][0]["hypotheses"][0]["constraints_met"] is False
    plain = translate(client, texts=["abc"]).json()["translations"][0]["hypotheses"][0]
    assert plain["constraints_met"] is True


def test_requests_with_and_without_constraints_decode_together(translator):
    from seq2seq_kit.serving.decode import translate_requests
    from seq2seq_kit.serving.requests import parse_body, prepare

    limits = ServeConfig()
    models = {"default": translator}
    for options in ({}, {"beam": 2, "length_penalty": 1.0}):
        bodies = [
            {"texts": ["abc", "d"], "constraints": [["ee"], []], **options},
            {"texts": ["hg"], **options},
        ]
        requests = [
            prepare(parse_body(json.dumps(b).encode()), models, limits, "default") for b in bodies
        ]
        together = translate_requests(translator, requests)
        for body, got in zip(bodies, together, strict=True):
            alone = translator.hypotheses(
                body["texts"], constraints=body.get("constraints"), **options
            )
            assert [t["hypotheses"][0]["text"] for t in got] == [h[0].text for h in alone]


@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [
        ({"texts": ["a", "b"], "constraints": [["a"]]}, 422, "constraints", ["1 lists for 2"]),
        ({"texts": ["a"], "constraints": [["a", "b", "c", "d"]]}, 422, "constraints[0]",
         ["4 phrases", "serve.max_constraints"]),
        ({"texts": ["a"], "constraints": [["a", "b" * 21]]}, 413, "constraints[0][1]",
         ["21 characters"]),
        ({"texts": ["a", "b"], "constraints": [[], ["a", "az"]]}, 422, "constraints[1][1]",
         ["'az'", "character 2: 'z'"]),
        ({"texts": ["a"], "constraints": [[""]]}, 422, "constraints[0][0]", ["no target token"]),
        ({"texts": [" "], "constraints": [["a"]]}, 422, "constraints[0]", ["blank"]),
        ({"texts": ["a", "b"], "constraints": [[], ["a"]], "sampling": True}, 422, "sampling",
         ["texts[1] has lexical constraints (constraints[1])", "but sampling draws",
          '"sampling": false']),  # the request's fields, not an input line or a flag
        ({"texts": ["a"], "constraints": ["a"]}, 422, "constraints[0]", ["list"]),
    ],
)  # fmt: skip
def test_bad_constraints_are_refused_naming_the_field(client, body, status, field, words):
    reply = translate(client, **body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["field"] == field
    for word in words:
        assert word in error["message"]
    assert "input line" not in error["message"] and "--" not in error["message"]


class Engine(Translator):
    """A translator whose backend says it decodes with its own search and declares no
    ``constraints`` capability, as ``ctranslate2`` does (its model cannot search: a request
    with constraints is refused before it decodes)."""

    @property
    def capabilities(self):
        return super().capabilities | {"search"}


def test_an_engine_without_the_capability_refuses_naming_the_text(translator):
    vocab = translator.target_vocab
    engine = Engine(translator.model, vocab, vocab, backend="numpy", max_length=8)
    with TestClient(create_app({"default": engine}, ServeConfig())) as client:
        reply = translate(client, texts=["a", "b", "c"], constraints=[[], ["a"], ["b"]])
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["field"] == "constraints[1]"
    assert error["message"].startswith("constraints[1]: texts[1] has lexical constraints")
    assert "'constraints' capability" in error["message"]
    assert "input line" not in error["message"] and "--" not in error["message"]


def test_the_listing_gives_the_constraints_limit(client):
    assert client.get("/v1/models").json()["limits"]["max_constraints"] == 3
