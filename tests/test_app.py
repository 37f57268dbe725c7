"""``gemfactory app``: uploads -> WFDB record -> arrays, the served app driven by gradio_client, and
the page driven end to end in headless Chromium."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from gemfactory.app.uploads import MB, load_record
from gemfactory.cli import main
from gemfactory.ecg.spec import SignalSpec
from gemfactory.errors import GemError

QUESTION = "Does this ECG show bradycardia, a normal rate or tachycardia?"
SPEC = SignalSpec(fs=100, n_samples=1000)  # the tiny model's encoder input
LIMIT = 50 * MB
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synthetic_record(tiny_data) -> list[Path]:
    """The .hea and .dat files of one synthetic test record."""
    item = next(i for i in json.loads((tiny_data / "test.json").read_text()) if i.get("ecg"))
    return [tiny_data / "ecg" / f"{item['ecg']}{ext}" for ext in (".hea", ".dat")]


def zipped(files, archive: Path, inside: str = "") -> Path:
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, inside + Path(f).name)
    return archive


def load_error(files, max_bytes=LIMIT) -> str:
    with pytest.raises(GemError) as info:
        load_record(files, SPEC, max_bytes)
    message = str(info.value)
    assert "\n" not in message
    return message


# uploads ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, suffixes", [("JS00001", (".hea", ".mat")),
                                            ("s0010_re", (".hea", ".dat", ".xyz"))])
def test_real_records_load_as_separate_files_and_as_zip(shared_data, tmp_path, name, suffixes):
    files = [shared_data / f"{name}{s}" for s in suffixes]
    for upload in (files, [zipped(files, tmp_path / f"{name}.zip", inside="record/")]):
        record = load_record(upload, SPEC, LIMIT, workdir=tmp_path)
        assert record.name == name
        assert record.model_signal.shape == (12, 1000)
        assert record.sheet_signal.shape == (12, int(10 * record.fs))  # 10 s of the 12 leads, in mV
        assert 0.1 < abs(record.sheet_signal).max() < 20
        record.discard()
        assert not record.path.parent.exists()


def test_synthetic_record_loads_as_files_and_as_zip(synthetic_record, tmp_path):
    for upload in (synthetic_record, [zipped(synthetic_record, tmp_path / "rec.zip")]):
        record = load_record(upload, SPEC, LIMIT, workdir=tmp_path)
        fs = record.fs  # the generator writes records at 100-1000 Hz; the model reads them at 100 Hz
        assert record.model_signal.shape == (12, 1000) and record.sheet_signal.shape == (12, round(10 * fs))
        assert record.summary() == f"{synthetic_record[0].stem}: 12 leads, {fs:g} Hz, 10.0 s shown"


def test_header_without_its_signal_file_names_the_missing_file(shared_data, synthetic_record, tmp_path):
    hea = synthetic_record[0]
    assert load_error([hea]) == (f"{hea.name} needs {hea.stem}.dat, which was not uploaded; upload the header "
                                 f"together with its signal files (or all in one .zip)")
    assert load_error([zipped([hea], tmp_path / "only_header.zip")]).startswith(f"{hea.name} needs {hea.stem}.dat")
    assert load_error([shared_data / "s0010_re.hea", shared_data / "s0010_re.dat"]).startswith(
        "s0010_re.hea needs s0010_re.xyz, which was not uploaded")
    assert load_error([synthetic_record[1]]).startswith(f"no .hea header among {hea.stem}.dat; expected a WFDB record")


def test_uploads_over_the_limit_are_refused(shared_data, tmp_path):
    files = [shared_data / "JS00001.hea", shared_data / "JS00001.mat"]
    assert load_error(files, max_bytes=100_000) == ("JS00001.mat is 0.114 MB, over the upload limit of 0.0954 MB "
                                                    "(gemfactory app --max-upload-mb)")
    archive = zipped(files, tmp_path / "big.zip")
    packed = archive.stat().st_size  # within the limit; its contents are not
    assert load_error([archive], max_bytes=packed + 1).startswith("big.zip unpacked is 0.115 MB, over the upload limit")


def test_wrong_type_corrupt_header_and_bad_zip_are_named(shared_data, synthetic_record, tmp_path):
    assert load_error([*synthetic_record, shared_data / "ecg00003.png"]).startswith(
        "ecg00003.png: not a WFDB record file; expected a WFDB record: NAME.hea with its NAME.dat or NAME.mat")
    bad = tmp_path / "bad.hea"
    bad.write_text("this is not a header\n")
    assert load_error([bad]).startswith("bad.hea: not a valid WFDB header (")
    not_zip = tmp_path / "record.zip"
    not_zip.write_bytes(b"PK\x03\x04 truncated")
    assert load_error([not_zip]).startswith("record.zip: not a readable .zip archive (")
    assert load_error([*synthetic_record, shared_data / "JS00001.hea", shared_data / "JS00001.mat"]) == (
        f"several records uploaded (JS00001.hea, {synthetic_record[0].name}); expected one record at a time")
    assert load_error([]).startswith("no file uploaded; expected a WFDB record")


def test_record_the_model_cannot_read_is_refused_by_name(shared_data):
    # MIT-BIH 100 has MLII and V5 only: the 12 leads cannot be derived
    message = load_error([shared_data / "100.hea", shared_data / "100.dat", shared_data / "100.atr"])
    assert message.startswith("ECG record 100: missing leads ['I', 'III'")
    assert str(shared_data) not in message and "record-" not in message  # no temporary folder in it


# the served app -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(two_step_run) -> Path:
    """The tiny model trained for a few steps (a run folder)."""
    return two_step_run


@pytest.fixture(scope="module")
def app_url(checkpoint, synthetic_record, tmp_path_factory):
    from gemfactory.app.launch import serve
    from gemfactory.app.ui import build_app
    from gemfactory.infer.load import load_pretrained_model

    examples = tmp_path_factory.mktemp("examples")
    for f in synthetic_record:
        shutil.copy(f, examples / f.name)
    app = build_app(load_pretrained_model(checkpoint), examples, LIMIT, tmp_path_factory.mktemp("uploads"))
    url = serve(app, "127.0.0.1", None, LIMIT, block=False)
    yield url
    app.close()


def test_app_listens_on_localhost_by_default():
    from gemfactory.cli import build_parser

    args = build_parser().parse_args(["app", "ckpt"])
    assert (args.host, args.port, args.max_upload_mb, args.share) == ("127.0.0.1", None, 50, "no")


def message_text(message: dict) -> str:
    """The text of a chat message as Gradio 6 sends it (a list of content blocks)."""
    return "".join(block.get("text", "") for block in message["content"])


def test_client_uploads_a_record_and_gets_a_streamed_answer(app_url, synthetic_record):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    sheet, status, chat = client.predict([handle_file(str(f)) for f in synthetic_record],
                                         api_name="/upload_record")
    assert re.match(rf"Loaded {synthetic_record[0].stem}: 12 leads, \d+ Hz, 10\.0 s shown", status), status
    from PIL import Image

    with Image.open(sheet) as img:
        assert img.size[0] > 600  # the 12-lead sheet
    chat, question, status = client.predict(QUESTION, [], None, "none", "red", None, None, None, None,
                                            0.0, 1.0, 12, api_name="/ask")
    assert status == "" and question == ""
    assert [m["role"] for m in chat] == ["user", "assistant"]
    assert message_text(chat[0]) == QUESTION
    assert message_text(chat[1]).strip(), "no answer was generated"


def test_client_sees_upload_errors_in_the_status_line(app_url, synthetic_record):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    sheet, status, _ = client.predict([handle_file(str(synthetic_record[0]))], api_name="/upload_record")
    assert sheet is None
    assert status.startswith(f"**Error:** {synthetic_record[0].name} needs {synthetic_record[0].stem}.dat")
    _, question, status = client.predict(QUESTION, [], None, "bbox", "red", 1, 1, 5, 5, 0.0, 1.0, 8,
                                         api_name="/ask")
    assert status == "**Error:** the bbox prompt is drawn on an image; upload an image first"
    assert question == QUESTION  # kept, to edit and ask again


def test_client_asks_about_an_image_with_a_drawn_box(app_url, tiny_data):
    from gradio_client import Client, handle_file
    from PIL import Image

    image = sorted((tiny_data / "images").glob("*.png"))[0]
    width, height = Image.open(image).size
    client = Client(app_url, verbose=False)
    chat, _, status = client.predict("What colour is the grid?", [], handle_file(str(image)), "bbox", "blue",
                                     10, 10, 60, 40, 0.0, 1.0, 8, api_name="/ask")
    assert status == "" and message_text(chat[1]).strip()
    client = Client(app_url, verbose=False)  # a new tab: its first question takes the image and the box
    _, _, status = client.predict("What colour is the grid?", [], handle_file(str(image)), "bbox", "blue",
                                  10, 10, width + 50, 40, 0.0, 1.0, 8, api_name="/ask")
    assert status == (f"**Error:** bbox prompt: bbox: x2={width + 50} is outside the {width}x{height} image "
                      f"(expected 0 <= x2 <= {width - 1})")


def test_client_picks_an_example_record(app_url, synthetic_record):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    _, status, _ = client.predict(synthetic_record[0].stem, api_name="/pick_example")
    assert status.startswith(f"Loaded {synthetic_record[0].stem}: 12 leads")


def test_command_serves_the_page_and_its_examples_on_localhost(checkpoint, synthetic_record):
    examples = checkpoint / "examples"  # found next to the checkpoint without --examples
    examples.mkdir(exist_ok=True)
    for f in synthetic_record:
        shutil.copy(f, examples / f.name)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "gemfactory.cli", "-q", "app", str(checkpoint), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        config = None
        for _ in range(240):  # the model loads, then the server starts
            assert proc.poll() is None, proc.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config") as response:
                    config = json.load(response)
                break
            except OSError:
                time.sleep(0.5)
        assert config is not None, "the app did not start serving"
        choices = [c for comp in config["components"] for c in comp["props"].get("choices") or []]
        assert [synthetic_record[0].stem] * 2 in choices
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_client_asks_with_a_caption_and_ocr_rendered_as_in_training(app_url, synthetic_record, monkeypatch):
    from gradio_client import Client, handle_file

    from gemfactory.data.context import apply_context
    from gemfactory.infer import chat
    from gemfactory.template.base import Turn

    seen = []
    real = chat.stream
    monkeypatch.setattr(chat, "stream", lambda loaded, prompt, settings: seen.append(prompt) or real(
        loaded, prompt, settings))  # the app serves from this process: it asks through the spy
    client = Client(app_url, verbose=False)
    client.predict([handle_file(str(f)) for f in synthetic_record], api_name="/upload_record")
    caption, ocr = "Figure 3: resting ECG.", "25 mm/s"
    chat_out, _, status = client.predict(QUESTION, [], None, "none", "red", None, None, None, None, 0.0, 1.0, 4,
                                         caption, ocr, api_name="/ask")
    assert status == "" and message_text(chat_out[0]) == QUESTION
    trained = apply_context([Turn("user", "<ecg>\n" + QUESTION)], {"caption": caption, "ocr": ocr})
    assert [p.turns for p in seen] == [trained]
    assert trained[0].text == f"<ecg>\nCaption: {caption}\nOCR: {ocr}\n{QUESTION}"


def test_clicks_draw_points_boxes_and_arrows():
    import gradio as gr

    from gemfactory.app.ui import click_prompt, draw_by_click

    none = (None, None, None, None)
    assert click_prompt("none", None, none, (12.4, 30.6)) == ("point", None, [12, 31, None, None],
                                                              "Point at (12, 31).")
    kind, first, coords, status = click_prompt("bbox", None, (1, 2, 3, 4), (50, 40))
    assert (kind, first, coords) == ("bbox", [50, 40], [1, 2, 3, 4])  # the typed box stays until the 2nd click
    assert status == "First corner at (50, 40); click the opposite corner."
    assert click_prompt("bbox", first, coords, (10, 60)) == ("bbox", None, [10, 40, 50, 60],
                                                             "Box from (10, 40) to (50, 60).")
    assert click_prompt("arrow", [50, 40], none, (10, 60))[:3] == ("arrow", None, [50, 40, 10, 60])
    event = gr.SelectData(None, {"index": [7, 9], "value": None})
    assert draw_by_click("arrow", None, *none, event) == ("arrow", [7, 9], *none,
                                                          "First end at (7, 9); click the arrow head.")


@pytest.mark.parametrize("flags, message", [
    (["--max-upload-mb", "0"], "error: --max-upload-mb 0: expected a size in MB above 0"),
    (["--examples", "nowhere"], "error: --examples nowhere: folder not found; expected a folder of WFDB records"),
    (["--dtype", "float8"], "error: dtype 'float8': expected one of float32, bfloat16, float16"),
])
def test_bad_app_flags_are_one_line_errors(tmp_path, capsys, flags, message):
    assert main(["-q", "app", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err


# the page in a browser ----------------------------------------------------------------------
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def test_browser_uploads_a_record_sees_the_sheet_and_an_answer(app_url, synthetic_record, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("GEMFACTORY_REQUIRE_BROWSER") == "1":  # set by .ci/run once it installed chromium
            pytest.fail("GEMFACTORY_REQUIRE_BROWSER=1 but no chromium on PATH: the browser test must run")
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium chromium-driver)")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=chromium,
                                                        headless=True, args=CHROMIUM_ARGS,
                                                        viewport={"width": 1400, "height": 1000})
        try:
            page = browser.new_page()
            page.goto(app_url)
            page.locator("#record-upload input[type=file]").set_input_files([str(f) for f in synthetic_record])
            expect(page.locator("#status")).to_contain_text(f"Loaded {synthetic_record[0].stem}: 12 leads",
                                                            timeout=30_000)
            sheet = page.locator("#ecg-sheet img")
            expect(sheet).to_be_visible()
            assert sheet.evaluate("img => img.naturalWidth") > 600
            page.locator("#question textarea").fill(QUESTION)
            page.locator("#ask").click()
            expect(page.locator("#chat .bot")).to_have_text(re.compile(r"\S"), timeout=60_000)
            expect(page.locator("#status")).not_to_contain_text("Generating", timeout=60_000)  # answer complete
            expect(page.locator("#chat .user")).to_have_text(QUESTION)
            shot = tmp_path / "app_screenshot.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("GEMFACTORY_WRITE_SCREENSHOT") == "1":
        shutil.copy(shot, REPO / "docs" / "examples" / "app_screenshot.png")


def test_browser_draws_a_box_by_two_clicks_on_the_image(app_url, tiny_data, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("GEMFACTORY_REQUIRE_BROWSER") == "1":
            pytest.fail("GEMFACTORY_REQUIRE_BROWSER=1 but no chromium on PATH: the browser test must run")
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium chromium-driver)")
    from playwright.sync_api import expect, sync_playwright

    image = min((tiny_data / "images").glob("*.png"))
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=chromium,
                                                        headless=True, args=CHROMIUM_ARGS,
                                                        viewport={"width": 1400, "height": 1000})
        try:
            page = browser.new_page()
            page.goto(app_url)
            page.locator("#image-upload input[type=file]").set_input_files([str(image)])
            page.locator("#prompt-kind label", has_text="bbox").click()
            shown = page.locator("#prompted img")
            expect(shown).to_be_visible(timeout=30_000)  # the plain image, waiting for the clicks
            expect(page.locator("#status")).to_contain_text("two clicks make a box")
            box = shown.bounding_box()
            width, height = shown.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            corners = [(0.7, 0.6), (0.2, 0.3)]  # the second corner above and left of the first
            shown.click(position={"x": box["width"] * corners[0][0], "y": box["height"] * corners[0][1]})
            expect(page.locator("#status")).to_contain_text("First corner at", timeout=30_000)
            shown.click(position={"x": box["width"] * corners[1][0], "y": box["height"] * corners[1][1]})
            fields = [page.locator(f"#prompt-{name} input") for name in ("x1", "y1", "x2", "y2")]
            expect(fields[3]).not_to_have_value(re.compile(r"^0?$"), timeout=30_000)
            got = [float(f.input_value()) for f in fields]
        finally:
            browser.close()
    want = [0.2 * width, 0.3 * height, 0.7 * width, 0.6 * height]  # image pixels, corners sorted
    assert all(abs(g - w) <= 2 for g, w in zip(got, want)), (got, want)
