"""The web page at ``/`` driven by headless Chromium: what it shows must be what the Python
API decodes, and an API error must reach the reader.

Needs selenium, ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` (Debian/Ubuntu:
``apt-get install -y chromium chromium-driver``); skipped otherwise.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import seq2seq_kit
from seq2seq_kit.config import Config

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
pytest.importorskip("starlette", reason="the server needs starlette")
pytest.importorskip("uvicorn", reason="the server needs uvicorn")
httpx = pytest.importorskip("httpx", reason="the server check needs httpx")
if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
    pytest.skip(
        f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

WAIT_S = 20


def _train(out: Path, attention: str, beam: int, n_best: int) -> Path:
    """Digits -> words, trained in about a second."""
    config = Config()
    config.train.progress = False
    config.model.attention = attention
    config.decode.beam, config.decode.n_best = beam, n_best
    seq2seq_kit.train(config, out=out)
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """With dot attention; its saved decode settings (beam 3, n-best 2) are the page's
    defaults."""
    return _train(tmp_path_factory.mktemp("browser") / "digits", "dot", 3, 2)


@pytest.fixture(scope="module")
def plain_dir(tmp_path_factory):
    """Without attention, decoding greedily."""
    return _train(tmp_path_factory.mktemp("browser") / "plain", "none", 1, 1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(model_dir, plain_dir, tmp_path_factory, request):
    """``seq2seq-kit serve`` as a user starts it, with two models; returns its base URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "seq2seq_kit", "serve"]
            + ["--model", f"default={model_dir}", "--model", f"plain={plain_dir}"]
            + ["--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def stop():
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    request.addfinalizer(stop)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the server did not answer /healthz within 30 s:\n{log.read_text()}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def browser(tmp_path_factory, request):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1100,1200",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    request.addfinalizer(driver.quit)
    return driver


def _open(driver, url):
    driver.get(url + "/")
    wait = WebDriverWait(driver, WAIT_S)
    wait.until(ec.element_to_be_clickable((By.ID, "translate")))
    return wait


def _set(element, value: str) -> None:
    element.clear()
    element.send_keys(value)


def _forced_attention(translator, text: str, hyp) -> np.ndarray:
    """Attention of ``hyp`` with its ids forced through the decoder: one row per output
    token and EOS (no EOS row when truncated), one column per source token."""
    model = translator.model
    src = translator.source_vocab.encode(text, line=1)
    state = model.encode(np.array([src], np.int32), np.array([len(src)], np.int32))
    inputs = [translator.target_vocab.bos_id, *hyp.ids]
    rows = []
    for token in inputs[: len(hyp.ids) if hyp.truncated else len(hyp.ids) + 1]:
        _, state = model.step(np.array([token], np.int32), state)
        rows.append(model.attention(state)[0, : len(src)])
    return np.array(rows)


def _alpha(color: str) -> float:
    """The opacity of a computed CSS colour, ``rgba(r, g, b, a)`` or ``rgb(r, g, b)``."""
    parts = color[color.index("(") + 1 : color.index(")")].split(",")
    return float(parts[3]) if len(parts) == 4 else 1.0


def test_the_page_shows_what_the_python_api_decodes(server, browser, model_dir, tmp_path):
    wait = _open(browser, server)
    assert browser.find_element(By.ID, "model-name").text == "default"
    assert browser.find_element(By.ID, "model-backend").text == "numpy"
    beam, n_best = browser.find_element(By.ID, "beam"), browser.find_element(By.ID, "n-best")
    # the model's saved [decode] settings
    assert (beam.get_attribute("value"), n_best.get_attribute("value")) == ("3", "2")

    texts = ["12", "3"]
    _set(browser.find_element(By.ID, "source"), "12\n\n3")  # the blank line is no text
    _set(n_best, "3")
    browser.find_element(By.ID, "translate").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .translation")) == 2)

    translator = seq2seq_kit.load(model_dir)
    expected = translator.hypotheses(texts, beam=3, n_best=3)
    cards = browser.find_elements(By.CSS_SELECTOR, "#results .translation")
    for index, (text, card, hyps) in enumerate(zip(texts, cards, expected, strict=True)):
        shown = card.find_elements(By.CSS_SELECTOR, ".hypothesis")
        assert len(shown) == len(hyps) == 3
        for item, hyp in zip(shown, hyps, strict=True):
            assert item.find_element(By.CSS_SELECTOR, ".text").text == hyp.text
            score = item.find_element(By.CSS_SELECTOR, ".score")
            assert score.text == f"{hyp.score:.4f}"
            assert float(score.get_attribute("data-score")) == pytest.approx(hyp.score, abs=1e-9)
            marked = item.find_elements(By.CSS_SELECTOR, ".truncated")
            assert len(marked) == int(hyp.truncated)

        best = hyps[0]
        table = card.find_element(By.ID, f"heatmap-{index}")
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        columns = table.find_elements(By.CSS_SELECTOR, "thead th")
        assert [th.text for th in columns] == list(text)
        assert len(rows) == len(best.ids) + (0 if best.truncated else 1)
        row_labels = [row.find_element(By.TAG_NAME, "th").text for row in rows]
        assert row_labels == list(best.text) + ([] if best.truncated else ["</s>"])
        weights = np.array(
            [
                [
                    float(td.get_attribute("data-weight"))
                    for td in row.find_elements(By.TAG_NAME, "td")
                ]
                for row in rows
            ]
        )
        assert weights.shape == (len(rows), len(text))
        np.testing.assert_allclose(weights, _forced_attention(translator, text, best), atol=1e-6)
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
        cell = rows[0].find_element(By.TAG_NAME, "td")
        assert cell.get_attribute("title").endswith(f"{weights[0, 0]:.4f}")
        shades = np.array(
            [
                [_alpha(td.value_of_css_property("background-color")) for td in row_cells]
                for row_cells in (row.find_elements(By.TAG_NAME, "td") for row in rows)
            ]
        )
        np.testing.assert_allclose(shades, weights, atol=0.002)  # the shade is the weight

    assert not browser.find_element(By.ID, "error").is_displayed()
    shots = [tmp_path / "page.png"]
    if os.environ.get("SEQ2SEQ_KIT_SCREENSHOT"):
        shots.append(Path(os.environ["SEQ2SEQ_KIT_SCREENSHOT"]))
    for shot in shots:
        assert browser.save_screenshot(str(shot))
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000


def test_an_unseen_character_shows_the_api_error(server, browser, model_dir):
    wait = _open(browser, server)
    body = {"texts": ["3", "1x2"], "beam": 3, "n_best": 2, "attention": True, "model": "default"}
    answer = httpx.post(f"{server}/v1/translate", json=body, timeout=30)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["field"] == "texts[1]" and "'x'" in error["message"]

    source = browser.find_element(By.ID, "source")
    _set(source, "3\n\n1x2")
    source.send_keys(Keys.CONTROL, Keys.ENTER)  # submits as the button does
    box = wait.until(ec.visibility_of_element_located((By.ID, "error")))
    assert box.get_attribute("role") == "alert"
    assert box.find_element(By.CSS_SELECTOR, ".error-message").text == error["message"]
    where = box.find_element(By.CSS_SELECTOR, ".error-field").text
    assert error["field"] in where and "line 3 of the box" in where
    assert browser.find_elements(By.CSS_SELECTOR, "#results .translation") == []

    _set(source, "7")  # the alert goes once a request succeeds
    _set(browser.find_element(By.ID, "max-length"), "3")
    browser.find_element(By.ID, "translate").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .translation"))
    assert not browser.find_element(By.ID, "error").is_displayed()
    shown = browser.find_elements(By.CSS_SELECTOR, "#results .hypothesis")
    # the saved beam 3 and n-best 2
    expected = seq2seq_kit.load(model_dir).hypotheses(["7"], max_length=3)[0]
    assert [hyp.truncated for hyp in expected] == [True, True]
    for item, hyp in zip(shown, expected, strict=True):
        assert item.find_element(By.CSS_SELECTOR, ".text").text == hyp.text
        assert item.find_element(By.CSS_SELECTOR, ".truncated").text == "truncated"
    rows = browser.find_elements(By.CSS_SELECTOR, "#heatmap-0 tbody tr")
    assert len(rows) == 3  # no EOS row: the best hypothesis stopped at max_length


def test_a_model_without_attention_is_chosen_from_the_list(server, browser, plain_dir):
    wait = _open(browser, server)
    assert browser.find_element(By.ID, "model-choice").is_displayed()
    Select(browser.find_element(By.ID, "model")).select_by_visible_text("plain")
    assert browser.find_element(By.ID, "model-name").text == "plain"
    assert "without attention" in browser.find_element(By.ID, "model-info").text
    assert browser.find_element(By.ID, "beam").get_attribute("value") == "1"  # its own
    _set(browser.find_element(By.ID, "source"), "4\n8")
    browser.find_element(By.ID, "translate").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .translation")) == 2)
    assert not browser.find_element(By.ID, "error").is_displayed()  # no "attention" asked
    shown = browser.find_elements(By.CSS_SELECTOR, "#results .hypothesis .text")
    expected = seq2seq_kit.load(plain_dir).translate(["4", "8"])
    assert [item.text for item in shown] == expected
    assert browser.find_elements(By.CSS_SELECTOR, "#results table") == []


def test_the_page_shows_what_the_model_knows_and_its_examples(server, browser, model_dir):
    """A first try: the characters the model knows, an unknown one named before sending,
    and an example chip that fills the box and translates."""
    wait = _open(browser, server)
    translator = seq2seq_kit.load(model_dir)
    knows = browser.find_element(By.ID, "model-knows").text
    assert knows == "Characters this model knows: " + " ".join(translator.source_vocab.tokens)
    chips = browser.find_elements(By.CSS_SELECTOR, "#examples button.example")
    assert [chip.text for chip in chips] == translator.examples != []

    source, hint = browser.find_element(By.ID, "source"), browser.find_element(By.ID, "source-hint")
    assert not hint.is_displayed()
    _set(source, "12\n\n4x5")  # named as the server's error names it, before any request
    assert hint.is_displayed()
    assert hint.text.startswith("Line 3, character 2: 'x' (U+0078) is not a character")
    assert "the server will refuse it" in hint.text

    chosen = translator.examples[-1]
    chips[-1].click()
    assert source.get_attribute("value") == chosen and not hint.is_displayed()
    browser.find_element(By.ID, "translate").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .translation")) == 1)
    assert not browser.find_element(By.ID, "error").is_displayed()
    expected = translator.hypotheses([chosen])[0]  # the saved beam 3 and n-best 2
    shown = browser.find_elements(By.CSS_SELECTOR, "#results .hypothesis .text")
    assert [item.text for item in shown] == [hyp.text for hyp in expected]


def test_sampling_and_a_prefix_behind_the_options_disclosure(server, browser, model_dir):
    wait = _open(browser, server)
    prefix, sample = browser.find_element(By.ID, "prefix"), browser.find_element(By.ID, "sampling")
    assert not prefix.is_displayed() and not sample.is_displayed()  # folded away
    browser.find_element(By.CSS_SELECTOR, "#options summary").click()
    assert prefix.is_displayed()
    assert not browser.find_element(By.ID, "temperature").is_enabled()  # sampling only
    sample.click()
    assert not browser.find_element(By.ID, "beam").is_enabled()
    _set(browser.find_element(By.ID, "temperature"), "1.5")
    _set(browser.find_element(By.ID, "num-samples"), "3")
    _set(browser.find_element(By.ID, "seed"), "7")
    _set(prefix, "t")
    _set(browser.find_element(By.ID, "source"), "3\n8")
    browser.find_element(By.ID, "translate").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .translation")) == 2)
    assert not browser.find_element(By.ID, "error").is_displayed()

    expected = seq2seq_kit.load(model_dir).hypotheses(
        ["3", "8"], prefix=["t", "t"], beam=1, n_best=1, sampling=True, temperature=1.5,
        num_samples=3, seed=7,
    )  # fmt: skip
    cards = browser.find_elements(By.CSS_SELECTOR, "#results .translation")
    for card, hyps in zip(cards, expected, strict=True):
        shown = [item.text for item in card.find_elements(By.CSS_SELECTOR, ".hypothesis .text")]
        assert shown == [h.text for h in hyps] and all(t.startswith("t") for t in shown)

    _set(prefix, "tq")  # a prefix the model cannot write: the API's error, naming the line
    browser.find_element(By.ID, "translate").click()
    box = wait.until(ec.visibility_of_element_located((By.ID, "error")))
    assert "'q'" in box.text and "prefix[0]" in box.text and "line 1 of the box" in box.text


def test_constraints_behind_the_options_disclosure(server, browser, model_dir):
    wait = _open(browser, server)
    phrases = browser.find_element(By.ID, "constraints")
    assert not phrases.is_displayed()  # folded away
    browser.find_element(By.CSS_SELECTOR, "#options summary").click()
    _set(phrases, "ee\n\nx")  # one phrase a line; the blank line is none
    _set(browser.find_element(By.ID, "source"), "3\n8")
    browser.find_element(By.ID, "translate").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .translation")) == 2)
    assert not browser.find_element(By.ID, "error").is_displayed()

    expected = seq2seq_kit.load(model_dir).hypotheses(
        ["3", "8"], constraints=[["ee", "x"]] * 2, beam=3, n_best=2
    )
    cards = browser.find_elements(By.CSS_SELECTOR, "#results .translation")
    for card, hyps in zip(cards, expected, strict=True):
        items = card.find_elements(By.CSS_SELECTOR, ".hypothesis")
        assert [i.find_element(By.CSS_SELECTOR, ".text").text for i in items] == [
            h.text for h in hyps
        ]
        assert "ee" in hyps[0].text and "x" in hyps[0].text
        for item, hyp in zip(items, hyps, strict=True):
            assert len(item.find_elements(By.CSS_SELECTOR, ".unmet")) == int(
                not hyp.constraints_met
            )

    _set(phrases, "ee\nxq")  # a piece the model cannot write: the API's error, naming it
    browser.find_element(By.ID, "translate").click()
    box = wait.until(ec.visibility_of_element_located((By.ID, "error")))
    assert "'q'" in box.text and "constraints[0][1]" in box.text
    assert "line 1 of the box" in box.text
    browser.find_element(By.ID, "sampling").click()  # sampling draws: no constraints then
    assert not phrases.is_enabled()
