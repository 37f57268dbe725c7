"""Eval task metrics on fixtures: parity with scikit-learn, exact values, parsing rules."""
import pytest
from sklearn.metrics import f1_score, hamming_loss, precision_score, recall_score, roc_auc_score

from gemfactory.eval import metrics
from gemfactory.eval.base import Scored
from gemfactory.eval.report_score import findings, lcs, rouge_l
from gemfactory.registry import EVAL_TASKS

LABELS = ["CD", "HYP", "MI", "NORM", "STTC"]


def scored(task, item, prediction, **kw):
    parsed, ref = task.parse(item, prediction), task.reference(item)
    return Scored(str(item.get("id")), "", prediction, ref, parsed, parsed == ref, **kw)


def test_multilabel_matches_sklearn():
    task = EVAL_TASKS.get("multilabel")()
    gold = [["MI"], ["NORM"], ["MI", "STTC"], ["CD", "HYP"], ["NORM"], ["STTC"]]
    answers = ["MI", "Normal ECG.", "MI and CD", "hypertrophy (HYP)", "I cannot tell.", "STTC, NORM"]
    probs = [{"CD": .1, "HYP": .2, "MI": .9, "NORM": .1, "STTC": .3}, {"CD": .2, "HYP": .1, "MI": .2, "NORM": .8, "STTC": .1},
             {"CD": .6, "HYP": .1, "MI": .7, "NORM": .2, "STTC": .4}, {"CD": .5, "HYP": .7, "MI": .1, "NORM": .3, "STTC": .2},
             {"CD": .3, "HYP": .4, "MI": .3, "NORM": .6, "STTC": .1}, {"CD": .4, "HYP": .3, "MI": .2, "NORM": .5, "STTC": .6}]
    items = [{"id": str(i), "labels": g} for i, g in enumerate(gold)]
    rows = [scored(task, it, a, scores=p) for it, a, p in zip(items, answers, probs)]
    pred = [["MI"], ["NORM"], ["CD", "MI"], ["HYP"], [], ["NORM", "STTC"]]
    assert [sorted((r.parsed or "").split(",")) if r.parsed else [] for r in rows] == pred
    y_true, y_pred = metrics.binarize(gold, LABELS), metrics.binarize(pred, LABELS)
    y_score = [[p[lab] for lab in LABELS] for p in probs]
    m = task.score(rows)
    assert m["n"] == 6 and m["unparsed"] == 1 and m["accuracy"] == pytest.approx(2 / 6)
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert m["hamming_loss"] == pytest.approx(hamming_loss(y_true, y_pred)) == pytest.approx(5 / 30)
    assert m["auc_source"] == "yes_probability"
    assert m["macro_auc"] == pytest.approx(roc_auc_score(y_true, y_score, average="macro"))
    binary = task.score([scored(task, it, a) for it, a in zip(items, answers)])  # no probes: from predictions
    assert binary["auc_source"] == "binary"
    assert binary["macro_auc"] == pytest.approx(roc_auc_score(y_true, y_pred, average="macro"))


def test_multilabel_label_set_per_item_and_option():
    item = {"id": "x", "labels": ["AFIB"], "label_set": "AFIB, SR"}
    task = EVAL_TASKS.get("multilabel")()
    task.check(item)
    assert task.parse(item, "afib with sr") == "AFIB,SR"
    assert EVAL_TASKS.get("multilabel")(labels="A,B").label_set({"id": "y"}) == ["A", "B"]


def test_multiple_choice_never_guesses():
    task = EVAL_TASKS.get("multiple_choice")()
    item = {"id": "q", "label": "B", "options": ["Sinus rhythm", "Atrial fibrillation", "Atrial flutter"]}
    cases = {"B": "B", "b.": "B", "(C)": "C", "The answer is (A).": "A", "Answer: B": "B", "C) flutter": "C",
             "Atrial fibrillation": "B", "A or B": None, "It could be anything": None, "D": None}
    assert {a: task.parse(item, a) for a in cases} == cases
    rows = [scored(task, item, a) for a in ("B", "A or B", "nothing", "(C)")]
    assert task.score(rows) == {"n": 4, "accuracy": 0.25, "unparsed": 2}


def test_pope_matches_sklearn():
    task = EVAL_TASKS.get("pope")()
    gold = ["yes", "yes", "no", "no", "yes", "no", "yes"]
    answers = ["Yes, it does.", "no", "No.", "yes", "I am not sure", "No, there is none", "YES"]
    rows = [scored(task, {"id": str(i), "label": g}, a) for i, (g, a) in enumerate(zip(gold, answers))]
    y_true = [g == "yes" for g in gold]
    y_pred = [r.parsed == "yes" for r in rows]
    assert y_pred == [True, False, False, True, False, False, True]
    m = task.score(rows)
    assert m["unparsed"] == 1 and m["accuracy"] == pytest.approx(4 / 7)
    assert m["precision"] == pytest.approx(precision_score(y_true, y_pred)) == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(recall_score(y_true, y_pred)) == pytest.approx(2 / 4)
    assert m["f1"] == pytest.approx(f1_score(y_true, y_pred))
    assert m["yes_ratio"] == pytest.approx(3 / 7)


def test_vqa_normalised_exact_match():
    task = EVAL_TASKS.get("vqa")()
    item = {"id": "r", "label": "72 bpm"}
    assert task.parse(item, "72 BPM.") == task.reference(item) == "72 bpm"
    assert task.parse(item, "about 72 bpm") != "72 bpm"
    many = {"id": "l", "answers": ["V1", "lead V1"]}
    assert task.parse(many, "The lead V1") == task.reference(many) == "v1"
    assert task.parse({"id": "q", "label": "0.12 s"}, "0.12 s.") == "0.12 s"


def test_report_findings_rouge_and_prf():
    assert findings("Atrial fibrillation. ST depression in V5. No signs of infarction.") == \
        {"atrial fibrillation", "st depression"}
    assert findings("LBBB without ST elevation") == {"left bundle branch block"}
    assert lcs("a b c d e".split(), "a c e f".split()) == 3
    # P = 5/6, R = 5/5, F(beta=1.2) = (1 + 1.44) P R / (R + 1.44 P)
    assert rouge_l("the cat sat on the mat", "the cat on the mat") == pytest.approx(2.44 * (5 / 6) / (1 + 1.44 * 5 / 6))
    assert rouge_l("", "x") == 0.0
    task = EVAL_TASKS.get("report")()
    conv = lambda text: {"id": "r", "conversations": [{"from": "human", "value": "Report?"},
                                                         {"from": "gpt", "value": text}]}
    items = [conv("Sinus rhythm. Left ventricular hypertrophy."), conv("Atrial fibrillation, RBBB.")]
    answers = ["Sinus rhythm with LVH.", "Atrial flutter, RBBB and a PVC."]
    rows = [scored(task, it, a, answer=it["conversations"][1]["value"]) for it, a in zip(items, answers)]
    m = task.score(rows)
    # findings: {sr, lvh} vs {sr, lvh}; {afib, rbbb} vs {flutter, rbbb, pvc} -> tp 3, fp 2, fn 1
    assert (m["accuracy"], m["finding_precision"], m["finding_recall"]) == (0.5, 3 / 5, 3 / 4)
    assert m["finding_f1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert m["rouge_l"] == pytest.approx(sum(rouge_l(a, s.answer) for a, s in zip(answers, rows)) / 2)


def test_unknown_task_option_is_one_clear_error():
    from gemfactory.errors import GemError

    with pytest.raises(GemError, match="eval task 'pope': unknown option 'labels'"):
        EVAL_TASKS.get("pope")(labels="x")
