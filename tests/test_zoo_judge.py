"""``gemfactory zoo`` tables (content, best marks) and the judges (offline; OpenAI against a local fake)."""
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from gemfactory.cli import main
from gemfactory.errors import GemError
from gemfactory.eval.judge import JUDGE_PROMPT, OfflineJudge, OpenAIJudge, get_judge
from gemfactory.eval.zoo import load_records, table


def record(ecg, task, **metrics):
    return {"task": task, "metrics": {"n": 10, "unparsed": 0, **metrics},
            "model": {"components": {"llm": "vicuna", "vision": "clip", "ecg": ecg,
                                     "connector": "ecg:mlp2x_gelu", "recipe": f"tiny-{ecg}"}}}


@pytest.fixture
def records(tmp_path):
    recs = [record("vit1d", "synthetic", accuracy=0.5), record("resnet1d", "synthetic", accuracy=0.75),
            record("vit1d", "multilabel", accuracy=0.2, hamming_loss=0.1),
            record("resnet1d", "multilabel", accuracy=0.2, hamming_loss=0.3)]
    paths = []
    for i, r in enumerate(recs):
        paths.append(tmp_path / f"r{i}.json")
        paths[-1].write_text(json.dumps(r))
    return paths


def test_markdown_table_marks_the_best_per_column(records):
    md = table(load_records(records), "md").splitlines()
    assert md[0] == ("| llm | vision | ecg | connector | recipe | multilabel/accuracy | multilabel/hamming_loss "
                     "| synthetic/accuracy |")
    assert md[2] == "| vicuna | clip | resnet1d | ecg:mlp2x_gelu | tiny-resnet1d | **0.200** | 0.300 | **0.750** |"
    assert md[3] == "| vicuna | clip | vit1d | ecg:mlp2x_gelu | tiny-vit1d | **0.200** | **0.100** | 0.500 |"


def test_csv_table_and_cli(records, tmp_path, capsys):
    assert main(["-q", "zoo", *map(str, records), "--format", "csv", "--plot", str(tmp_path / "z.png")]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[1] == "vicuna,clip,resnet1d,ecg:mlp2x_gelu,tiny-resnet1d,0.200*,0.300,0.750*"
    assert rows[2] == "vicuna,clip,vit1d,ecg:mlp2x_gelu,tiny-vit1d,0.200*,0.100*,0.500"
    assert (tmp_path / "z.png").read_bytes()[:4] == b"\x89PNG"


def test_not_a_record_is_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    assert main(["-q", "zoo", str(bad)]) == 2
    assert "is not an eval record" in capsys.readouterr().err


def test_offline_judge():
    ref = "Sinus rhythm. Left bundle branch block."
    assert OfflineJudge().score(ref, ref) == {"score": 1.0, "finding_f1": 1.0, "rouge_l": 1.0}
    assert get_judge().score("Atrial fibrillation.", ref)["finding_f1"] == 0.0


def test_openai_judge_against_a_local_fake_server(monkeypatch):
    seen = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            seen["path"] = self.path
            seen["auth"] = self.headers.get("Authorization")
            seen["body"] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            reply = {"choices": [{"message": {"content": "Omits LBBB.\nSCORE: 7"}}]}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("GEMFACTORY_JUDGE_URL", f"http://127.0.0.1:{server.server_port}/v1")
        monkeypatch.setenv("GEMFACTORY_JUDGE_MODEL", "judge-model")
        monkeypatch.setenv("GEMFACTORY_JUDGE_KEY", "k")
        result = OpenAIJudge().score("Sinus rhythm.", "Sinus rhythm, LBBB.")
    finally:
        server.shutdown()
    assert result["score"] == 0.7
    assert seen["path"] == "/v1/chat/completions" and seen["auth"] == "Bearer k"
    assert seen["body"]["model"] == "judge-model"
    assert seen["body"]["messages"][0]["content"] == JUDGE_PROMPT.format(reference="Sinus rhythm, LBBB.",
                                                                         candidate="Sinus rhythm.")


def test_openai_judge_needs_its_settings(monkeypatch):
    monkeypatch.delenv("GEMFACTORY_JUDGE_URL", raising=False)
    with pytest.raises(GemError, match="set GEMFACTORY_JUDGE_URL"):
        OpenAIJudge()
