"""gemfactory.data.convert and `gemfactory data convert`; LLaVA-Graph context in the prompt."""
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from gemfactory.cli import main
from gemfactory.data.context import apply_context, context_block
from gemfactory.data.convert import PTBXL_CLASS_QUESTION, convert, dumps_items, split_path
from gemfactory.data.ecg_io import read_ecg, write_ecg
from gemfactory.data.processor import Processor
from gemfactory.ecg.spec import STANDARD_LEADS, SignalSpec
from gemfactory.errors import DataError
from gemfactory.llm.tokenizer import train_bpe_tokenizer
from gemfactory.registry import TEMPLATES
from gemfactory.template.base import IGNORE_INDEX, Turn


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def write_json(path, items):
    path.write_text(json.dumps(items, indent=2))
    return path


# --- LLaVA / GEM / PULSE ------------------------------------------------------------------
def test_llava_converts_and_round_trips_the_shared_fixtures(shared_data, tmp_path, capsys):
    gem, pulse = shared_data / "gem_style_items_synthetic.json", shared_data / "pulse_style_items_synthetic.json"
    for name, src in (("gem", gem), ("pulse", pulse)):
        a, b = tmp_path / f"{name}_a.json", tmp_path / f"{name}_b.json"
        assert main(["-q", "data", "convert", "--from", "llava", str(src), str(a),
                     "--ecg-folder", str(shared_data), "--image-folder", str(shared_data)]) == 0
        assert main(["-q", "data", "convert", "--from", "llava", str(a), str(b)]) == 0
        assert a.read_bytes() == b.read_bytes()  # canonical in, same bytes out
        assert not list(tmp_path.glob(".*.tmp"))
    out = capsys.readouterr()
    assert "wrote 3 items to" in out.out and "wrote 1 items to" in out.out and out.err == ""

    items = {i["id"]: i for i in json.loads((tmp_path / "gem_a.json").read_text())}
    ecg_item = items["synthetic-gem-JS00001-0"]
    assert list(ecg_item) == ["id", "ecg", "image", "conversations"]
    # GEM's lone <image> (ECG then image tokens) is written out explicitly
    assert ecg_item["conversations"][0]["value"].startswith("<ecg><image>\nInterpret")
    assert items["synthetic-bench-mc-JS00001-0"]["conversations"][0]["value"].startswith("<image>\nWhich")
    assert "<" not in items["synthetic-text-only-0"]["conversations"][0]["value"]

    (p,) = json.loads((tmp_path / "pulse_a.json").read_text())
    assert "conversation" not in p and [t["from"] for t in p["conversations"]] == ["human", "gpt"]
    # PULSE has no placeholder: it is added in front of the question, as GEM's eval does
    assert p["conversations"][0]["value"] == (
        "<image>\nWhich lead is shown as the long rhythm strip at the bottom of this ECG image?")
    assert p["conversations"][1]["value"] == "Lead II."


def test_ecginstruct_keeps_gem_fields_and_checks_records(shared_data, tmp_path, capsys):
    items = json.loads((shared_data / "gem_style_items_synthetic.json").read_text())
    items[0] = {**items[0], "machine_measurements": {"rr_interval": 600}, "report": "sinus rhythm"}
    items.append({"id": "gone", "ecg": "records/nope.hea", "conversations": [
        {"from": "human", "value": "<image>\nRhythm?"}, {"from": "gpt", "value": "Sinus."}]})
    src, out = write_json(tmp_path / "in.json", items), tmp_path / "out.json"
    assert main(["-q", "data", "convert", "--from", "ecginstruct", str(src), str(out),
                 "--ecg-folder", str(shared_data)]) == 0
    err = capsys.readouterr().err.strip()
    assert err == (f"skipped 1 of 4 items malformed: gone; first: sample gone: ECG record "
                   f"'records/nope' not found (no header {shared_data / 'records/nope.hea'})")
    got = json.loads(out.read_text())
    assert [i["id"] for i in got] == [i["id"] for i in items[:3]]
    assert got[0]["machine_measurements"] == {"rr_interval": 600} and got[0]["report"] == "sinus rhythm"
    assert list(got[0])[:4] == ["id", "ecg", "image", "conversations"]
    # round trip: canonical in, the same bytes out
    again = tmp_path / "again.json"
    assert main(["-q", "data", "convert", "--from", "ecginstruct", str(out), str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()
    # without --ecg-folder the record is not looked up; the suffix is dropped
    assert main(["-q", "data", "convert", "--from", "ecginstruct", str(src), str(again)]) == 0
    assert json.loads(again.read_text())[-1]["ecg"] == "records/nope"


def test_ecginstruct_checks_placeholders_instead_of_adding_them(shared_data, tmp_path, capsys):
    src = shared_data / "pulse_style_items_synthetic.json"
    assert main(["-q", "data", "convert", "--from", "ecginstruct", str(src), str(tmp_path / "o.json")]) == 2
    line = one_error_line(capsys)
    assert line == (f"error: {src}: no usable items to write; 1 of 1 items malformed: "
                    "synthetic-pulse-report-JS00001-0; first: sample synthetic-pulse-report-JS00001-0: "
                    "the first human turn lacks the <image> placeholder for the item's input "
                    "(use --from llava to add missing placeholders)")
    assert not (tmp_path / "o.json").exists()


def turn(q="<image>\nWhat is shown?", a="A graph."):
    return [{"from": "human", "value": q}, {"from": "gpt", "value": a}]


BAD_ITEMS = [
    {"id": "ok-1", "image": "a.png", "conversations": turn()},
    {"image": "a.png", "conversations": turn()},  # #1: no id
    {"id": "conv-type", "conversations": "hello"},
    {"id": "value-type", "conversations": [{"from": "human", "value": 3}, {"from": "gpt", "value": "x"}]},
    {"id": "image-type", "image": ["a.png"], "conversations": turn()},
    {"id": "vp-no-type", "image": "a.png", "conversations": turn(), "visual_prompts": [{"bbox": [1, 2]}]},
    {"id": "ctx-type", "image": "a.png", "conversations": turn(), "context": {"caption": 7}},
    {"id": "gpt-placeholder", "conversations": turn("Hi", "<image> here")},
    {"id": "two-images", "image": "a.png", "conversations": turn("<image><image>\nQ")},
    {"id": "ok-1", "conversations": turn("Q")},  # duplicate id
    {"id": "ok-2", "image": "a.png", "conversations": turn(), "context": {"caption": "Fig. 1", "ocr": "x y"},
     "visual_prompts": [{"type": "bbox", "bbox": [1, 2, 3, 4], "color": "red"}]},
]
BAD_IDS = ["#1", "conv-type", "value-type", "image-type", "vp-no-type", "ctx-type", "gpt-placeholder",
           "two-images", "ok-1"]


def test_malformed_items_skipped_with_ids(tmp_path, capsys):
    src, out = write_json(tmp_path / "bad.json", BAD_ITEMS), tmp_path / "out.json"
    assert main(["-q", "data", "convert", "--from", "llava", str(src), str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == f"wrote 2 items to {out}"
    err = captured.err.strip().splitlines()
    assert err == [f"skipped 9 of 11 items malformed: {', '.join(BAD_IDS)}; first: sample #1: missing 'id'"]
    got = json.loads(out.read_text())
    assert [i["id"] for i in got] == ["ok-1", "ok-2"]
    assert list(got[1]) == ["id", "image", "conversations", "context", "visual_prompts"]
    assert got[1]["context"] == BAD_ITEMS[-1]["context"]
    assert got[1]["visual_prompts"] == BAD_ITEMS[-1]["visual_prompts"]


@pytest.mark.parametrize("item, reason", [
    (BAD_ITEMS[2], "'conversations' must be a non-empty list of turns, got str"),
    (BAD_ITEMS[3], "conversations[0]: the text must be a string, got int"),
    (BAD_ITEMS[4], "'image' must be a non-empty path string, got ['a.png']"),
    (BAD_ITEMS[5], "visual_prompts[0] has no 'type' (expected e.g. 'bbox', 'arrow')"),
    (BAD_ITEMS[6], "context.caption must be text, got int"),
    (BAD_ITEMS[7], "placeholders (<image>, <ecg>) may only appear in user turns"),
    (BAD_ITEMS[8], "the text has 2 <image> placeholder(s) but the item has one image input"),
    ({"id": "vp-list", "conversations": turn("Q"), "visual_prompts": {"type": "bbox"}},
     "visual_prompts must be a list of objects, got dict"),
    ({"id": "vp-no-image", "conversations": turn("Q"), "visual_prompts": [{"type": "point", "point": [1, 1]}]},
     "has visual_prompts but no image to draw them on"),
    ({"id": "order", "conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]},
     "turn 0 is gpt, expected human (turns alternate, human first)"),
    ({"id": "no-reply", "conversations": [{"from": "human", "value": "q"}]},
     "no assistant reply (nothing to learn or score)"),
    ({"id": "ctx-key", "conversations": turn("Q"), "context": {"title": "x"}},
     "context has unknown keys ['title']; expected some of ['caption', 'ocr']"),
])
def test_error_mode_refuses_with_one_line(tmp_path, capsys, item, reason):
    src, out = write_json(tmp_path / "bad.json", [BAD_ITEMS[0], item]), tmp_path / "out.json"
    out.write_text("previous\n")
    assert main(["-q", "data", "convert", "--from", "llava", str(src), str(out), "--on-bad", "error"]) == 2
    line = one_error_line(capsys)
    assert line == (f"error: {src}: 1 of 2 items malformed: {item['id']}; first: sample {item['id']}: "
                    f"{reason}; nothing written (--on-bad skip drops them)")
    assert out.read_text() == "previous\n"  # untouched
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_usage_errors(tmp_path, capsys, shared_data):
    with pytest.raises(SystemExit) as e:
        main(["data", "convert", "--from", "csv", "a", "b"])
    assert e.value.code == 2
    capsys.readouterr()
    assert main(["-q", "data", "convert", "--from", "llava", str(tmp_path / "none.json"), "o.json"]) == 2
    assert one_error_line(capsys) == f"error: input file not found: {tmp_path / 'none.json'}"
    (tmp_path / "obj.json").write_text('{"id": 1}')
    assert main(["-q", "data", "convert", "--from", "llava", str(tmp_path / "obj.json"), "o.json"]) == 2
    assert one_error_line(capsys) == f"error: {tmp_path / 'obj.json'}: expected a JSON list of items, got dict"
    src = shared_data / "gem_style_items_synthetic.json"
    assert main(["-q", "data", "convert", "--from", "llava", str(src), str(tmp_path / "o.json"), "--split"]) == 2
    assert "--split is only for --from ptbxl" in one_error_line(capsys)
    assert main(["-q", "data", "convert", "--from", "llava", str(src), str(tmp_path / "o.json"),
                 "--ecg-folder", str(tmp_path / "nowhere")]) == 2
    assert one_error_line(capsys) == f"error: ecg folder not found: {tmp_path / 'nowhere'}"
    assert not (tmp_path / "o.json").exists()


# --- PTB-XL -------------------------------------------------------------------------------
SCP = [  # code, diagnostic, diagnostic_class
    ("NORM", "1.0", "NORM"), ("IMI", "1.0", "MI"), ("ISC_", "1.0", "STTC"), ("CLBBB", "1.0", "CD"),
    ("LVH", "1.0", "HYP"), ("SR", "", ""), ("AFIB", "", ""),
]
PTBXL_ROWS = [  # ecg_id, scp_codes, report, strat_fold
    ("1", "{'NORM': 100.0, 'SR': 0.0}", "sinus rhythm. normal ecg.", "3"),
    ("2", "{'ISC_': 50.0, 'IMI': 80.0, 'SR': 0.0}", "inferior myocardial infarction", "1"),
    ("3", "{'CLBBB': 100.0, 'AFIB': 0.0}", "", "10"),
    ("4", "{'AFIB': 100.0}", "atrial fibrillation", "10"),
    ("5", "{'NORM': 100.0", "broken codes", "2"),  # malformed scp_codes
    ("6", "{'LVH': 100.0}", "lvh", "eleven"),  # malformed fold
    ("7", "{'AFIB': 100.0}", "", "4"),  # nothing to ask
]


@pytest.fixture(scope="module")
def fake_ptbxl(tmp_path_factory):
    """A made-up PTB-XL folder: the two CSV tables and 500/100 Hz WFDB records (1 s each)."""
    root = tmp_path_factory.mktemp("ptbxl")
    with open(root / "scp_statements.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["", "description", "diagnostic", "form", "rhythm", "diagnostic_class"])
        for code, diag, cls in SCP:
            w.writerow([code, f"{code} statement", diag, "", "" if diag else "1.0", cls])
    rng = np.random.default_rng(0)
    with open(root / "ptbxl_database.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ecg_id", "patient_id", "age", "scp_codes", "report", "strat_fold",
                     "filename_lr", "filename_hr"])
        for ecg_id, codes, report, fold in PTBXL_ROWS:
            lr, hr = f"records100/00000/{int(ecg_id):05d}_lr", f"records500/00000/{int(ecg_id):05d}_hr"
            w.writerow([ecg_id, "100.0", "60.0", codes, report, fold, lr, hr])
            if ecg_id != "2":  # record 2 is missing on disk
                for path, fs in ((hr, 500), (lr, 100)):
                    write_ecg(root / path, rng.normal(0, 0.3, (12, fs)), fs, [n.upper() for n in STANDARD_LEADS])
    return root


def test_ptbxl_split_and_round_trip(fake_ptbxl, tmp_path, capsys):
    out = tmp_path / "ptbxl.json"
    assert main(["-q", "data", "convert", "--from", "ptbxl", str(fake_ptbxl), str(out), "--split"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == f"wrote 4 items to {out} and 2 test items to {tmp_path / 'ptbxl_test.json'}"
    assert captured.err.strip() == (
        "skipped 3 of 7 rows malformed: ptbxl-00005, ptbxl-00006, ptbxl-00007; first: sample ptbxl-00005: "
        "scp_codes is not a dict literal: \"{'NORM': 100.0\"")
    train = json.loads(out.read_text())
    test = json.loads(split_path(out).read_text())
    assert [i["id"] for i in train] == ["ptbxl-00001-superclass", "ptbxl-00001-report",
                                        "ptbxl-00002-superclass", "ptbxl-00002-report"]
    assert [i["id"] for i in test] == ["ptbxl-00003-superclass", "ptbxl-00004-report"]
    by_id = {i["id"]: i for i in train + test}
    assert by_id["ptbxl-00002-superclass"]["conversations"] == [
        {"from": "human", "value": PTBXL_CLASS_QUESTION}, {"from": "gpt", "value": "MI, STTC"}]
    assert by_id["ptbxl-00001-report"]["conversations"][1]["value"] == "sinus rhythm. normal ecg."
    assert by_id["ptbxl-00003-superclass"]["ecg"] == "records500/00000/00003_hr"
    assert {i["strat_fold"] for i in test} == {10}
    # the output is canonical: the llava converter leaves it byte for byte
    again = tmp_path / "again.json"
    assert main(["-q", "data", "convert", "--from", "llava", str(out), str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()
    # the records load through the ECG reader (upper-case AVR/AVL/AVF names)
    x = read_ecg(fake_ptbxl / by_id["ptbxl-00003-superclass"]["ecg"], SignalSpec(n_samples=500))
    assert x.shape == (12, 500)


def test_ptbxl_rate_and_record_check(fake_ptbxl, tmp_path, capsys):
    csv_path = fake_ptbxl / "ptbxl_database.csv"
    out = tmp_path / "lr.json"
    assert main(["-q", "data", "convert", "--from", "ptbxl", str(csv_path), str(out), "--rate", "100",
                 "--ecg-folder", str(fake_ptbxl)]) == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("skipped 4 of 7 rows malformed: ptbxl-00002, ptbxl-00005, ptbxl-00006, "
                          "ptbxl-00007; first: sample ptbxl-00002: ECG record 'records100/00000/00002_lr' "
                          "not found")
    items = json.loads(out.read_text())
    assert {i["ecg"] for i in items} == {"records100/00000/00001_lr", "records100/00000/00003_lr",
                                         "records100/00000/00004_lr"}
    assert main(["-q", "data", "convert", "--from", "ptbxl", str(fake_ptbxl), str(out), "--on-bad", "error"]) == 2
    assert one_error_line(capsys).startswith(f"error: {fake_ptbxl}: 3 of 7 rows malformed: ptbxl-00005, ")
    assert main(["-q", "data", "convert", "--from", "ptbxl", str(tmp_path), str(out)]) == 2
    assert one_error_line(capsys) == f"error: PTB-XL database table not found: {tmp_path / 'ptbxl_database.csv'}"


# --- LLaVA-Graph context ------------------------------------------------------------------
PARAGRAPH = "Figure 2 shows that accuracy rises with the number of training samples."
CONTEXT = {"caption": "Accuracy versus training set size.", "ocr": "accuracy samples 0.5 0.9"}


def test_context_block_layout():
    assert context_block(CONTEXT) == ("Caption: Accuracy versus training set size.\n"
                                      "OCR: accuracy samples 0.5 0.9\n")
    assert context_block({"ocr": "x"}) == "OCR: x\n" and context_block({"caption": " "}) == ""
    turns = [Turn("system", "sys"), Turn("user", "<image>\nExplain the figure."), Turn("assistant", "A.")]
    got = apply_context(turns, CONTEXT, "g1")
    assert got[1].text == ("<image>\nCaption: Accuracy versus training set size.\n"
                           "OCR: accuracy samples 0.5 0.9\nExplain the figure.")
    assert got[0] == turns[0] and got[2] == turns[2]
    # a placeholder at the end stays there; one that opens the turn gets its own line
    tail = apply_context([Turn("user", "Explain.\n<image>")], {"caption": "C"})
    assert tail[0].text == "Caption: C\nExplain.\n<image>"
    inline = apply_context([Turn("user", "<ecg><image> Q")], {"caption": "C"})
    assert inline[0].text == "<ecg><image>\nCaption: C\nQ"
    assert apply_context(turns, None) is turns and apply_context(turns, {}) is turns


@pytest.mark.parametrize("context, message", [
    ("a caption", "sample g7: 'context' must be an object with 'caption' and/or 'ocr' text, got str"),
    ({"caption": ["x"]}, "sample g7: context.caption must be text, got list"),
    ({"ocr": "see <image>"}, "sample g7: context.ocr must not contain the placeholders ['<image>', '<ecg>']"),
    ({"paragraph": "x"}, "sample g7: context has unknown keys ['paragraph']; expected some of ['caption', 'ocr']"),
])
def test_context_type_errors_name_the_sample(context, message):
    with pytest.raises(DataError) as e:
        apply_context([Turn("user", "Q"), Turn("assistant", "A")], context, "g7")
    assert str(e.value) == message


class _Views:
    """Stand-in image processor: one 3x8x8 view per image."""

    def views(self, image):
        return torch.zeros(1, 3, 8, 8)


def test_processor_puts_context_in_prompt_and_supervises_only_the_paragraph(tmp_path):
    template = TEMPLATES.get("vicuna_v1")()
    texts = [PARAGRAPH, *CONTEXT.values(), "Caption: OCR: Explain this figure.", template.system,
             "USER: ASSISTANT:"]
    tok = train_bpe_tokenizer(texts * 3, 300, ["<unk>", "<s>", "</s>", "<pad>"])
    tok.add_special_tokens({"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"})
    Image.new("RGB", (16, 12), "white").save(tmp_path / "fig.png")
    proc = Processor(tokenizer=tok, template=template, modality_tokens={}, image_processor=_Views())
    item = {"id": "graph-1", "image": "fig.png", "context": CONTEXT,
            "conversations": turn("<image>\nExplain this figure.", PARAGRAPH)}
    feats = proc.sample(item, image_folder=tmp_path)
    ids, labels = feats["input_ids"].tolist(), feats["labels"].tolist()
    text = tok.decode(ids)
    assert ("USER: <image>\nCaption: Accuracy versus training set size.\nOCR: accuracy samples 0.5 0.9\n"
            "Explain this figure. ASSISTANT:") in text
    supervised = tok.decode([i for i, label in zip(ids, labels) if label != IGNORE_INDEX])
    assert supervised.strip() == PARAGRAPH + "</s>"
    assert feats["pixel_values"].shape == (1, 3, 8, 8)
    with pytest.raises(DataError, match=r"^sample graph-2: context.caption must be text, got int$"):
        proc.sample({**item, "id": "graph-2", "context": {"caption": 1}}, image_folder=tmp_path)


def test_dumps_items_is_stable():
    items = [{"id": "a", "conversations": turn("Q é")}]
    assert dumps_items(items) == dumps_items(json.loads(dumps_items(items)))
    assert "é" in dumps_items(items) and dumps_items(items).endswith("]\n")
    with pytest.raises(DataError, match="unknown source"):
        convert("csv", "a", "b")


def test_jsonl_in_and_out(shared_data, tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    convert("llava", shared_data / "gem_style_items_synthetic.json", a)
    lines = a.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["id"] == "synthetic-gem-JS00001-0"
    convert("llava", a, b)
    assert a.read_bytes() == b.read_bytes()
    from gemfactory.data.dataset import load_items

    assert [i["id"] for i in load_items(b)] == [json.loads(line)["id"] for line in lines]
