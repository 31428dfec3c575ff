import json
import subprocess
import sys

import pytest

from seq2seq_kit.config.train import DecodedMetric
from seq2seq_kit.datasets import nato
from seq2seq_kit.metrics import METRICS, from_statistics, score, statistics, token_error_rate

#: Outputs against one to three references each (Tatoeba lists several translations of many
#: sentences): exact, close, empty, and with a reference missing from the second stream on.
HYPOTHESES = [
    "le chat est sur la table",
    "le chien mange",
    "",
    "Tom est mon ami.",
    "il pleut beaucoup aujourd'hui ici",
    "merci",
    "je ne sais pas",
]
REFERENCES = [
    ["le chat est sur la table"],
    ["le chien mange sa soupe", "un chien mange"],
    ["bonjour"],
    ["Tom est mon ami.", "Tom est un ami.", "C'est mon ami Tom."],
    ["il pleut beaucoup aujourd'hui"],
    ["merci beaucoup", "merci"],
    ["je sais pas", "je ne le sais pas"],
]


@pytest.mark.parametrize(
    ("hypothesis", "reference", "rate"),
    [
        ("Alfa Bravo Charlie", "Alfa Bravo Charlie", 0.0),
        ("Alfa Xray Charlie", "Alfa Bravo Charlie", 1 / 3),  # one substitution
        ("Alfa Bravo Bravo Charlie", "Alfa Bravo Charlie", 1 / 3),  # one insertion
        ("Alfa Charlie", "Alfa Bravo Charlie", 1 / 3),  # one deletion
        ("Xray Charlie", "Alfa Bravo Charlie", 2 / 3),  # a substitution and a deletion
        ("Charlie Alfa", "Alfa Bravo Charlie", 1.0),  # order matters: 3 edits
        ("", "Alfa Bravo Charlie", 1.0),  # empty output: every token deleted
        ("Alfa Bravo Charlie Delta Echo Foxtrot", "Alfa", 5.0),  # insertions pass 1
        ("  Alfa\tBravo  ", "Alfa Bravo", 0.0),  # whitespace runs split like spaces
    ],
)
def test_token_error_rate_counts_token_edits_over_reference_tokens(hypothesis, reference, rate):
    assert token_error_rate([hypothesis], [[reference]]) == pytest.approx(rate)


def test_token_error_rate_sums_edits_and_reference_tokens_over_the_corpus():
    # 1 edit of 3 tokens and 2 edits of 1 token: (1 + 2) / (3 + 1), not the mean of 1/3 and 2
    hyps = ["Alfa Bravo", "Kilo Lima Mike"]
    refs = [["Alfa Bravo Charlie"], ["Kilo"]]
    assert token_error_rate(hyps, refs) == pytest.approx(3 / 4)


def test_token_error_rate_takes_the_closest_reference():
    # "Xray Yankee" needs 2 edits, "Alfa Bravo Charlie" 1: the latter's 3 tokens count
    assert token_error_rate(["Alfa Bravo"], [["Xray Yankee", "Alfa Bravo Charlie"]]) == 1 / 3
    # equally close: the longer reference, as for the CER
    assert token_error_rate(["Alfa"], [["Bravo", "Alfa Bravo"]]) == 1 / 2
    assert token_error_rate([""], [[""]]) == 0.0


def test_token_error_rate_counts_symbols_where_the_cer_counts_characters():
    scores = score(["November Alfa"], [["November Bravo"]])
    assert scores["token_error_rate"] == 0.5
    assert scores["cer"] == pytest.approx(5 / 14)  # "Alfa" -> "Bravo": 5 edits of 14 chars


def test_token_error_rate_needs_a_reference_list_per_hypothesis():
    with pytest.raises(ValueError):
        token_error_rate(["Alfa", "Bravo"], [["Alfa"]])


def test_ter_is_sacrebleus_corpus_ter_against_every_reference():
    from sacrebleu.metrics import TER

    streams = [[refs[k] if k < len(refs) else None for refs in REFERENCES] for k in range(3)]
    expected = TER().corpus_score(HYPOTHESES, streams)
    scores = score(HYPOTHESES, REFERENCES)
    assert scores["ter"] == pytest.approx(expected.score, abs=1e-12)
    assert 0 < scores["ter"] < 100
    assert scores["ter_signature"].startswith("nrefs:var|")


def test_the_counts_of_a_corpus_split_in_parts_add_up_to_its_scores():
    whole = score(HYPOTHESES, REFERENCES)
    for parts in (2, 3, len(HYPOTHESES) + 2):  # the last leaves some parts empty
        summed = [0.0] * len(statistics([], [], METRICS))
        for part in range(parts):  # every parts-th sentence from part on, as ranks share
            mine = range(part, len(HYPOTHESES), parts)
            counts = statistics(
                [HYPOTHESES[i] for i in mine], [REFERENCES[i] for i in mine], METRICS
            )
            summed = [a + b for a, b in zip(summed, counts, strict=True)]
        scores = from_statistics(summed, METRICS)
        for name in METRICS:
            assert scores[name] == pytest.approx(whole[name], abs=1e-12), (parts, name)
    assert 0 < whole["chrf"] < 100 and 0 < whole["bleu"] < 100
    assert 0 < whole["exact_match"] < 1 and 0 < whole["cer"] < 1


def test_statistics_of_some_metrics_score_those_alone():
    counts = statistics(HYPOTHESES, REFERENCES, ["bleu", "exact_match"])
    assert from_statistics(counts, ["bleu", "exact_match"]) == {
        "bleu": score(HYPOTHESES, REFERENCES)["bleu"],
        "exact_match": 3 / 7,  # the first, Tom's and "merci"
    }
    with pytest.raises(ValueError, match="counts"):
        from_statistics(counts, ["chrf"])
    with pytest.raises(ValueError, match="unknown metric 'meteor'"):
        statistics(HYPOTHESES, REFERENCES, ["meteor"])


def test_the_configs_decoded_metrics_are_those_the_metrics_compute():
    from typing import get_args

    assert get_args(DecodedMetric) == METRICS


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "seq2seq_kit", *args], capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def nato_files(tmp_path_factory):
    """A config for 20 NATO pairs of one or two letters and those pairs as a TSV file."""
    root = tmp_path_factory.mktemp("nato")
    config = root / "nato.toml"
    config.write_text(
        "[data]\noptions = { count = 20, min_length = 1, max_length = 2, seed = 0 }\n"
        "valid_fraction = 0.0\n[model]\nhidden_size = 64\n[train]\nlearning_rate = 0.01\n"
    )
    data = root / "nato.tsv"
    data.write_text("".join(f"{s}\t{t}\n" for s, t in nato(20, 1, 2, 0).pairs))
    return root, config, data


def train_nato(root, config, epochs):
    out = root / f"model-{epochs}"
    res = run(
        "train", "--config", str(config), "--data", "nato", "--epochs", str(epochs),
        "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return out


def printed(stdout, label):
    line = next(line for line in stdout.splitlines() if line.startswith(label))
    return float(line.removeprefix(label).split()[0])


def test_evaluate_prints_the_token_error_rate_of_a_nato_model(nato_files):
    root, config, data = nato_files
    # Trained enough (20/20 from seeds 0-3 at 20 epochs), it spells every word back
    model = train_nato(root, config, 30)
    res = run("evaluate", "--model", str(model), "--data", str(data))
    assert res.returncode == 0, res.stderr
    assert printed(res.stdout, "exact match:") >= 0.9
    assert printed(res.stdout, "token error rate:") <= 0.1
    assert "WER over whitespace tokens" in res.stdout
    assert 0 <= printed(res.stdout, "TER:") <= 100
    res = run("evaluate", "--model", str(model), "--data", str(data), "--json")
    assert json.loads(res.stdout)["token_error_rate"] <= 0.1


def test_evaluate_token_error_rate_is_that_of_the_translations(nato_files):
    root, config, data = nato_files
    # Undertrained (0-8/20 right at 10 epochs), its errors show in the rate
    model = train_nato(root, config, 10)
    pairs = nato(20, 1, 2, 0).pairs
    res = run("translate", "--model", str(model), *(s for s, _ in pairs))
    outputs = res.stdout.splitlines()
    expected = token_error_rate(outputs, [[t] for _, t in pairs])
    assert expected > 0.2
    res = run("evaluate", "--model", str(model), "--data", str(data))
    assert res.returncode == 0, res.stderr
    assert printed(res.stdout, "token error rate:") == pytest.approx(expected, abs=5e-5)
