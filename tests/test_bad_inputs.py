"""A catalogue of bad inputs, one row each: the user gets one ``error: ...`` line saying what is wrong,
where and what was expected, exit code 2, and never a traceback.

Rows run ``gemfactory.cli.main`` in-process; the Python entry points the app and the trainer call
(the upload reader, the dataset) are checked for the same one-line :class:`GemError`; two rows
also run as real processes. Cases already in tests/test_cli.py (misspelt key or component, missing
data file, missing ECG record, MIT-BIH's two leads, --dtype / --device) are not repeated here.
"""
import json
import shutil
import struct
import subprocess
import sys
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from conftest import tiny_recipe
from gemfactory.cli import main
from gemfactory.errors import GemError

LEADS12 = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG file that declares a huge image (a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b""))


def conv(question, answer="Sinus rhythm."):
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


@pytest.fixture(scope="module")
def w(tiny_built, tiny_data, tmp_path_factory):
    """Everything the rows point at: a checkpoint, a recipe, good and broken files."""
    from gemfactory.data.ecg_io import write_ecg
    from gemfactory.model.checkpoint import save_checkpoint

    t = tmp_path_factory.mktemp("bad")
    recipe, tok, model, _ = tiny_built
    ckpt = save_checkpoint(model, tok, t / "ckpt", recipe.to_dict())
    rec_yaml = t / "tiny.yaml"
    rec_yaml.write_text(yaml.safe_dump(tiny_recipe(tiny_data, t / "run")))

    def text(name, content):
        p = t / name
        (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
        return str(p)

    # WFDB records: a good one to break in different ways, and whole records that are wrong
    rng = np.random.default_rng(0)
    write_ecg(t / "ok", rng.normal(size=(12, 2000)), 500, LEADS12)
    hea, dat = (t / "ok.hea").read_text(), (t / "ok.dat").read_bytes()

    def record(name, header=None, data=dat):
        (t / f"{name}.hea").write_text((header or hea).replace("ok", name))
        if data is not None:
            (t / f"{name}.dat").write_bytes(data)
        return str(t / name)

    record("trunc", data=dat[:1001])
    record("nodat", data=None)
    record("longhdr", header=hea.replace("ok 12 500 2000", "ok 12 500 9000"))
    record("fs0", header=hea.replace("ok 12 500 2000", "ok 12 0 2000"))
    record("units", header=hea.replace("/mV", "/mmHg"))
    text("garbage.hea", "this is not a WFDB header\n")
    write_ecg(t / "flat", np.zeros((12, 1000)), 500, LEADS12)
    write_ecg(t / "nan", np.full((12, 1000), np.nan), 500, LEADS12)
    write_ecg(t / "twolead", rng.normal(size=(2, 1000)), 360, ["MLII", "V5"])  # like MIT-BIH 100 (upload)

    # checkpoints with broken files
    for name in ("ckpt_badweights", "ckpt_badconfig", "ckpt_noweights"):
        shutil.copytree(ckpt, t / name)
    (t / "ckpt_badweights" / "model.safetensors").write_bytes((ckpt / "model.safetensors").read_bytes()[:500])
    (t / "ckpt_badconfig" / "config.json").write_text('{"model_type": "gem", ')
    (t / "ckpt_noweights" / "model.safetensors").unlink()
    (t / "run_dangling").mkdir()
    (t / "run_dangling" / "latest").write_text("stage/model\n")

    image = next((tiny_data / "images").iterdir())
    test_items = json.loads((tiny_data / "test.json").read_text())
    eval_item = next(i for i in test_items if i.get("ecg") and not i.get("image"))
    return SimpleNamespace(t=t, ckpt=str(ckpt), recipe=str(rec_yaml), data=tiny_data, text=text,
                           image=str(image), eval_item=eval_item)


# (id, argv built from the fixture, expected text of the error line; {t} is the fixture's folder)
CLI_CASES = [
    # recipe loader
    ("yaml-malformed", lambda w: ["train", w.text("m.yaml", "model: [1, 2\n")],
     "{t}/m.yaml: line 2, column 1: malformed YAML: expected ',' or ']'"),
    ("yaml-not-mapping", lambda w: ["train", w.text("l.yaml", "- a\n- b\n")],
     "{t}/l.yaml: expected a mapping at the top level, got list"),
    ("yaml-empty", lambda w: ["train", w.text("e.yaml", "")], "{t}/e.yaml: the recipe is empty"),
    ("yaml-not-utf8", lambda w: ["train", w.text("u.yaml", b"model: \xff\xfe\n")],
     "{t}/u.yaml: not UTF-8 text"),
    ("recipe-missing", lambda w: ["train", str(w.t / "nope.yaml")], "recipe not found: {t}/nope.yaml"),
    ("base-missing", lambda w: ["train", w.text("b.yaml", "base: there.yaml\n")],
     "recipe not found: {t}/there.yaml"),
    ("base-loop", lambda w: ["train", w.text("loop.yaml", "base: loop.yaml\n")],
     "{t}/loop.yaml: 'base:' inheritance loops back to itself"),
    ("wrong-type-int", lambda w: ["train", w.recipe, "stages.finetune.batch_size=abc"],
     "{t}/tiny.yaml: stages.finetune.batch_size: expected int, got str 'abc'"),
    ("wrong-type-bool", lambda w: ["train", w.recipe, "training.bf16=maybe"],
     "training.bf16: expected bool, got str 'maybe'"),
    ("wrong-literal", lambda w: ["train", w.recipe, "data.on_bad_sample=skp"],
     "data.on_bad_sample: 'skp' is not one of ['skip', 'error'] (did you mean 'skip'?)"),
    ("bad-range", lambda w: ["train", w.recipe, "data.max_bad_fraction=2"],
     "data.max_bad_fraction: must be within [0, 1]"),
    ("bad-lr", lambda w: ["train", w.recipe, "stages.finetune.lr=-1"],
     "stages.finetune.lr: must be > 0, got -1.0"),
    ("unknown-tune", lambda w: ["train", w.recipe, "stages.finetune.tune.llm=half"],
     "tiny.yaml: stages.finetune.tune.llm: unknown tune type 'half' (registered: frozen, full, lora, "),
    ("unknown-template", lambda w: ["train", w.recipe, "model.template=vicuna_v9"],
     "unknown template 'vicuna_v9'; did you mean 'vicuna_v1'?"),
    ("unknown-ecg-encoder", lambda w: ["train", w.recipe, "model.ecg.name=vit9", "--dry-run"],
     "unknown ECG encoder 'vit9'; did you mean 'vit1d'?"),
    ("override-no-equals", lambda w: ["train", w.recipe, "training.seed"],
     "override 'training.seed': expected KEY=VALUE, e.g. training.seed=1"),
    ("override-empty-part", lambda w: ["train", w.recipe, "training..seed=1"],
     "override 'training..seed=1': empty part in key 'training..seed'"),
    ("override-no-stage", lambda w: ["train", w.recipe, "stages.nosuch.lr=1"],
     "override 'stages.nosuch.lr=1': no stage named 'nosuch' (stages: ['finetune'])"),
    ("override-not-section", lambda w: ["train", w.recipe, "training.seed.x=1"],
     "override 'training.seed.x=1': training.seed is not a section"),
    ("template-check-bad-yaml", lambda w: ["template", "check", w.text("m2.yaml", "a: [\n")], "malformed YAML"),
    ("plugin-unknown", lambda w: ["plugin", "check", "nosuchcomp"], "no component named 'nosuchcomp'"),
    # training data files (read before any model is built)
    ("data-empty", lambda w: ["train", w.recipe, "data.train=" + w.text("empty.json", "")],
     "{t}/empty.json: the file is empty (expected a JSON list of samples)"),
    ("data-empty-list", lambda w: ["train", w.recipe, "data.train=" + w.text("el.json", "[]")],
     "{t}/el.json: the list of samples is empty"),
    ("data-not-list", lambda w: ["train", w.recipe, "data.train=" + w.text("d.json", '{"a": 1}')],
     "{t}/d.json: expected a JSON list of samples, got dict"),
    ("data-bad-json", lambda w: ["train", w.recipe, "data.train=" + w.text("bj.json", '[{"id": 1,')],
     "{t}/bj.json: invalid JSON at line 1, column 11"),
    ("data-not-utf8", lambda w: ["train", w.recipe, "data.train=" + w.text("nu.json", b'[{"id": "\xff"}]')],
     "{t}/nu.json: not UTF-8 text (byte 9)"),
    ("data-no-conversations", lambda w: ["train", w.recipe,
                                         "data.train=" + w.text("nc.json", '[{"id": "x1", "ecg": "a"}]')],
     "{t}/nc.json: item 0 (id 'x1') has no 'conversations' field"),
    ("data-item-not-object", lambda w: ["train", w.recipe, "data.train=" + w.text("ni.json", '[[1, 2]]')],
     "{t}/ni.json: item 0 is a list, expected an object"),
    ("convert-malformed-item", lambda w: ["data", "convert", "--from", "llava", "--on-bad", "error",
                                          w.text("cv.json", '[{"id": "q", "conversations": "x"}]'),
                                          str(w.t / "cv_out.json")],
     "{t}/cv.json: 1 of 1 items malformed: q; first: sample q: 'conversations' must be a non-empty list"),
    # checkpoints (chat, eval, export)
    ("chat-no-checkpoint", lambda w: ["chat", str(w.t / "nockpt"), "hi"], "checkpoint not found: {t}/nockpt"),
    ("chat-not-a-checkpoint", lambda w: ["chat", str(w.data), "hi"],
     "not a gemfactory checkpoint (no config.json and no 'latest' file)"),
    ("chat-dangling-latest", lambda w: ["chat", str(w.t / "run_dangling"), "hi"],
     "{t}/run_dangling/latest points at {t}/run_dangling/stage/model, which holds no config.json"),
    ("chat-truncated-weights", lambda w: ["chat", str(w.t / "ckpt_badweights"), "hi"],
     "cannot load checkpoint {t}/ckpt_badweights: SafetensorError"),
    ("chat-broken-config", lambda w: ["chat", str(w.t / "ckpt_badconfig"), "hi"],
     "cannot load checkpoint {t}/ckpt_badconfig: OSError"),
    ("chat-no-weights", lambda w: ["chat", str(w.t / "ckpt_noweights"), "hi"],
     "cannot load checkpoint {t}/ckpt_noweights: OSError"),
    ("chat-bad-bbox", lambda w: ["chat", w.ckpt, "--image", w.image, "--bbox", "1,2,3", "hi"],
     "--bbox '1,2,3': expected x1,y1,x2,y2 (4 comma-separated pixel coordinates)"),
    ("chat-bad-colour", lambda w: ["chat", w.ckpt, "--image", w.image, "--point", "3,4", "--prompt-color",
                                   "mauvish", "hi"], "--prompt-color 'mauvish': expected #rrggbb or one of red"),
    ("chat-prompt-without-image", lambda w: ["chat", w.ckpt, "--point", "3,4", "hi"],
     "--point draws on an image: give --image too"),
    ("eval-unknown-task", lambda w: ["eval", w.ckpt, "--task", "nosuch", "--data", str(w.data / "test.json")],
     "unknown eval task 'nosuch' (registered:"),
    ("eval-data-missing", lambda w: ["eval", w.ckpt, "--task", "synthetic", "--data", str(w.t / "no.json")],
     "data file not found: {t}/no.json"),
    ("eval-item-without-answer", lambda w: ["eval", w.ckpt, "--task", "synthetic", "--data", w.text(
        "ev.json", json.dumps([{**w.eval_item, "conversations": conv("<ecg>\nRate?")[:1]}]))],
     "expected a question and a reference answer"),
    ("export-onto-itself", lambda w: ["export", w.ckpt, w.ckpt], "OUT {t}/ckpt is the checkpoint itself"),
    ("export-adapter-without-merge", lambda w: ["export", w.ckpt, str(w.t / "o1"), "--adapter", str(w.t)],
     "export: --adapter is applied with --merge"),
    ("export-merge-without-adapter", lambda w: ["export", w.ckpt, str(w.t / "o2"), "--merge"],
     "export --merge: {t}/ckpt has no adapter/ folder"),
    ("export-truncated-weights", lambda w: ["export", str(w.t / "ckpt_badweights"), str(w.t / "o3")],
     "cannot load checkpoint {t}/ckpt_badweights: SafetensorError: Error while deserializing header"),
    # WFDB records given to chat --ecg
    ("ecg-truncated-dat", lambda w: ["chat", w.ckpt, "--ecg", str(w.t / "trunc"), "hi"],
     "ECG record {t}/trunc: signal file(s) ['trunc.dat'] missing, truncated or corrupt"),
    ("ecg-dat-missing", lambda w: ["chat", w.ckpt, "--ecg", str(w.t / "nodat"), "hi"],
     "ECG record {t}/nodat: signal file(s) ['nodat.dat'] missing, truncated or corrupt (FileNotFoundError"),
    ("ecg-header-longer-than-data", lambda w: ["chat", w.ckpt, "--ecg", str(w.t / "longhdr"), "hi"],
     "expected 9000 samples x 12 leads"),
    ("ecg-garbage-header", lambda w: ["chat", w.ckpt, "--ecg", str(w.t / "garbage"), "hi"],
     "ECG record {t}/garbage: cannot parse header {t}/garbage.hea"),
    ("ecg-zero-sampling-rate", lambda w: ["chat", w.ckpt, "--ecg", str(w.t / "fs0"), "hi"],
     "ECG record {t}/fs0: sampling frequency 0 in {t}/fs0.hea; expected a positive number of Hz"),
    ("ecg-unknown-units", lambda w: ["chat", w.ckpt, "--ecg", str(w.t / "units"), "hi"],
     "lead I has unknown units 'mmHg'; expected one of mV, uV"),
    ("ecg-flat", lambda w: ["chat", w.ckpt, "--ecg", str(w.t / "flat"), "hi"],
     "are flat-line (constant); expected a measured ECG"),
    ("ecg-all-nan", lambda w: ["chat", w.ckpt, "--ecg", str(w.t / "nan"), "hi"],
     "contain no finite samples (all NaN/missing); expected a measured signal"),
    # images given to chat --image
    ("image-missing", lambda w: ["chat", w.ckpt, "--image", str(w.t / "no.png"), "hi"],
     "image not found: {t}/no.png"),
    ("image-corrupt", lambda w: ["chat", w.ckpt, "--image", w.text("c.png", b"\x89PNG\r\n\x1a\nxxxx"), "hi"],
     "image {t}/c.png: not a readable image (UnidentifiedImageError"),
    ("image-over-our-limit", lambda w: ["chat", w.ckpt, "--image", w.text("big.png", png_header_only(9000, 9000)),
                                        "hi"], "image {t}/big.png: 9000x9000 pixels is over the limit of"),
    ("image-decompression-bomb", lambda w: ["chat", w.ckpt, "--image",
                                            w.text("bomb.png", png_header_only(30000, 30000)), "hi"],
     "image {t}/bomb.png: over the limit of 64000000 pixels (Image size (900000000 pixels) exceeds"),
]


@pytest.mark.parametrize("argv, expected", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_gives_one_clear_line(w, capsys, argv, expected):
    code = main(["-q", *argv(w)])
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert code == 2, out.err
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "Traceback" not in out.err + out.out
    assert expected.format(t=w.t) in lines[0]


def test_catalogue_is_large_and_ids_unique():
    ids = [c[0] for c in CLI_CASES + SAMPLE_CASES + UPLOAD_CASES]
    assert len(ids) == len(set(ids)) >= 30


# samples the trainer reads with data.on_bad_sample=error: the dataset names the file and sample
SAMPLE_CASES = [
    ("sample-no-placeholder", {"ecg": "{ecg}", "conversations": conv("What is the rhythm?")},
     "sample s1: the text has 0 <ecg> placeholder(s) but the sample has one ecg input (expected 1)"),
    ("sample-more-placeholders-than-inputs", {"ecg": "{ecg}", "conversations": conv("<ecg>\n<ecg>\nCompare.")},
     "sample s1: the text has 2 <ecg> placeholder(s) but the sample has one ecg input (expected 1)"),
    ("sample-placeholder-without-input", {"conversations": conv("<image>\nWhat is shown?")},
     "sample s1: the text has 1 <image> placeholder(s) but the sample has no image input (expected 0)"),
    ("sample-placeholder-in-reply", {"conversations": conv("Rate?", "<ecg> 60")},
     "sample s1: placeholders may only appear in user turns"),
    ("sample-unknown-role", {"conversations": [{"from": "doctor", "value": "x"}]},
     "sample s1: conversations[0].from: 'doctor' is not one of human/gpt/user/assistant/system"),
    ("sample-no-reply", {"conversations": conv("Rate?")[:1]},
     "sample s1: no supervised token (no assistant reply to learn)"),
    ("sample-ecg-not-a-path", {"ecg": 3, "conversations": conv("<ecg>\nRate?")},
     "sample s1: 'ecg' must be a path string, got int"),
    ("sample-ecg-record-missing", {"ecg": "nowhere/r1", "conversations": conv("<ecg>\nRate?")},
     "sample s1: ECG record not found:"),
    ("sample-longer-than-max-length", {"ecg": "{ecg}", "conversations": conv("word " * 300 + "<ecg>")},
     "tokens exceed max_length 64 and cutting would drop ECG/image tokens"),
]


@pytest.mark.parametrize("item, expected", [c[1:] for c in SAMPLE_CASES], ids=[c[0] for c in SAMPLE_CASES])
def test_bad_sample_is_named_by_file_and_id(tiny_built, w, item, expected):
    from gemfactory.data.dataset import GemDataset
    from gemfactory.data.processor import Processor
    from gemfactory.errors import DataError

    _, tok, model, template = tiny_built
    item = json.loads(json.dumps({"id": "s1", **item}).replace("{ecg}", w.eval_item["ecg"]))
    path = w.text("sample.json", json.dumps([item]))
    processor = Processor.from_model(model, tok, template, max_length=64)
    strict = GemDataset(path, processor, w.data / "images", w.data / "ecg", on_bad_sample="error")
    with pytest.raises(DataError) as exc:
        strict[0]
    message = str(exc.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message
    # with on_bad_sample=skip the same sample becomes a skip marker carrying the reason
    skipped = GemDataset(path, processor, w.data / "images", w.data / "ecg", on_bad_sample="skip")[0]
    assert skipped["id"] == "s1" and expected in skipped["skip"]


# the app's upload reader: (id, files in the fixture folder, max bytes, expected)
UPLOAD_CASES = [
    ("upload-nothing", [], 10**7, "no file uploaded; expected a WFDB record: NAME.hea with its NAME.dat"),
    ("upload-not-a-record", ["m.yaml"], 10**7, "m.yaml: not a WFDB record file; expected a WFDB record"),
    ("upload-header-alone", ["ok.hea"], 10**7, "ok.hea needs ok.dat, which was not uploaded"),
    ("upload-too-large", ["ok.hea", "ok.dat"], 1000, "ok.dat is 0.0458 MB, over the upload limit of"),
    ("upload-bad-zip", ["bad.zip"], 10**7, "bad.zip: not a readable .zip archive"),
    ("upload-truncated", ["trunc.hea", "trunc.dat"], 10**7,
     "ECG record trunc: signal file(s) ['trunc.dat'] missing, truncated or corrupt"),
    ("upload-unmappable", ["twolead.hea", "twolead.dat"], 10**7, "ECG record twolead: missing leads"),
    ("upload-zero-rate", ["fs0.hea", "fs0.dat"], 10**7, "ECG record fs0: sampling frequency 0 in fs0.hea"),
]


@pytest.mark.parametrize("files, limit, expected", [c[1:] for c in UPLOAD_CASES],
                         ids=[c[0] for c in UPLOAD_CASES])
def test_app_upload_refuses_with_one_line(w, tiny_built, files, limit, expected, tmp_path):
    from gemfactory.app.uploads import load_record

    (w.t / "bad.zip").write_bytes(b"PK\x03\x04 not really a zip")
    spec = tiny_built[2].ecg_encoder.signal_spec
    with pytest.raises(GemError) as exc:
        load_record([w.t / f for f in files], spec, limit, workdir=tmp_path)
    assert expected in str(exc.value) and "\n" not in str(exc.value)
    assert str(tmp_path) not in str(exc.value)  # names the upload, not the staging folder
    assert list(tmp_path.iterdir()) == []  # the staging folder is removed


@pytest.mark.parametrize("argv, expected", [
    (lambda w: ["train", w.text("p.yaml", "model:\n  llm: {name: vicuna\n")], "malformed YAML"),
    (lambda w: ["chat", w.ckpt, "--ecg", str(w.t / "trunc"), "hi"], "missing, truncated or corrupt"),
], ids=["recipe", "ecg"])
def test_real_process_exits_2_without_traceback(w, argv, expected):
    proc = subprocess.run([sys.executable, "-m", "gemfactory.cli", "-q", *argv(w)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and expected.format(t=w.t) in last
