"""A deliberately broken plugin distribution, installed into a temporary folder on sys.path.

``broken-demo`` 0.3 is a real distribution to importlib.metadata (a .dist-info folder with
entry_points.txt): one connector entry point whose module fails to import, one connector whose
output is one column short (also registered under the built-in name ``linear``), one template that
supervises the prompt too.
"""
import sys

import pytest

from gemfactory.cli import main
from gemfactory.errors import DuplicateComponent, PluginError
from gemfactory.registry import CONNECTORS, REGISTRIES, TEMPLATES
from gemfactory.testing import ConformanceError, assert_conforms, check_component

ENTRY_POINTS = """\
[gemfactory.connectors]
missing_dep = broken_demo.missing:Connector
wrong_shape = broken_demo.wrong_shape:WrongShape
linear = broken_demo.wrong_shape:WrongShape

[gemfactory.templates]
greedy = broken_demo.greedy:Greedy
"""
MODULES = {
    "__init__.py": "",
    "missing.py": "import not_installed_xyz\n",
    "wrong_shape.py": (
        "from torch import nn\n\nfrom gemfactory.connector.base import Connector\n\n\n"
        "class WrongShape(Connector, nn.Linear):\n"
        "    def __init__(self, in_dim, out_dim, **options):\n"
        "        self.check_options(options)\n"
        "        nn.Linear.__init__(self, in_dim, out_dim - 1)\n"
        "        self.set_dims(in_dim, out_dim)\n"
    ),
    "greedy.py": (
        "from gemfactory.template.vicuna_v1 import VicunaV1\n\n\n"
        "class Greedy(VicunaV1):\n"
        "    def segments(self, turns, sp, add_generation_prompt):\n"
        "        for text, _ in super().segments(turns, sp, add_generation_prompt):\n"
        "            yield text, True\n"
    ),
}


@pytest.fixture
def broken_dist(tmp_path, monkeypatch):
    info = tmp_path / "broken_demo-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-demo\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    package = tmp_path / "broken_demo"
    package.mkdir()
    for name, text in MODULES.items():
        (package / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    for reg in REGISTRIES.values():  # plugins are read again, with broken-demo among them
        monkeypatch.setattr(reg, "_plugins", {})
        monkeypatch.setattr(reg, "_plugin_errors", {})
        monkeypatch.setattr(reg, "_loaded_plugins", False)
    yield
    for module in [m for m in sys.modules if m == "broken_demo" or m.startswith("broken_demo.")]:
        del sys.modules[module]


def test_failed_import_names_distribution_and_entry_point_and_spares_other_lookups(broken_dist):
    with pytest.raises(PluginError) as err:
        CONNECTORS.get("missing_dep")
    assert str(err.value) == (
        "plugin connector 'missing_dep' from distribution 'broken-demo' failed to load (entry point "
        "'broken_demo.missing:Connector' in group 'gemfactory.connectors'): "
        "ModuleNotFoundError: No module named 'not_installed_xyz'"
    )
    assert CONNECTORS.get("identity").__name__ == "Identity"
    entry = CONNECTORS.entry("wrong_shape")
    assert (entry.obj.__name__, entry.origin, entry.version) == ("WrongShape", "broken-demo", "0.3")
    assert TEMPLATES.get("vicuna_v1").name == "vicuna_v1"


def test_plugin_sharing_a_builtin_name_needs_the_full_name(broken_dist):
    with pytest.raises(DuplicateComponent, match="name it fully, e.g. 'gemfactory:linear' or 'broken-demo:linear'"):
        CONNECTORS.get("linear")
    assert CONNECTORS.get("gemfactory:linear").__name__ == "Linear"
    assert CONNECTORS.get("broken-demo:linear").__name__ == "WrongShape"


def test_list_plugins_shows_plugin_components_and_one_line_per_load_error(broken_dist, capsys):
    assert main(["-q", "list", "--plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    broken = [line for line in lines if "BROKEN" in line]
    assert len(broken) == 1 and broken[0].split()[0] == "missing_dep"
    assert "'broken-demo'" in broken[0] and "broken_demo.missing:Connector" in broken[0]
    assert [line.split()[:3] for line in lines if "broken_demo" not in line and "broken-demo" in line] == [
        ["broken-demo:linear", "broken-demo", "0.3"], ["wrong_shape", "broken-demo", "0.3"],
        ["greedy", "broken-demo", "0.3"]]
    assert not any(line.split()[0] in ("linear", "vicuna_v1") for line in lines)  # built-ins are not listed


def test_kit_catches_a_wrong_output_shape(broken_dist):
    failed = {f.check: f.detail for f in check_component("connectors", "wrong_shape") if not f.ok}
    assert failed["output"] == "expected shape [batch 2, tokens 5, LLM width 32], got [2, 5, 31]"
    assert set(failed) == {"output", "train step"}  # the tiny model cannot take 31-wide tokens either
    with pytest.raises(ConformanceError, match=r"^connectors 'wrong_shape': 2 of 10 checks failed: output: expected"):
        assert_conforms("connectors", "wrong_shape")


def test_kit_catches_a_template_supervising_the_prompt(broken_dist):
    failed = {f.check: f.detail for f in check_component("templates", "greedy") if not f.ok}
    assert list(failed) == ["label mask", "stop strings"]  # the supervised system prompt holds no stop string
    assert failed["label mask"].startswith("text outside the assistant replies is supervised: ")


def test_plugin_check_prints_findings_and_fails_with_one_error_line(broken_dist, capsys):
    assert main(["-q", "plugin", "check", "wrong_shape"]) == 2
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == "connectors 'wrong_shape' (broken-demo 0.3):"
    assert "  FAIL output: expected shape [batch 2, tokens 5, LLM width 32], got [2, 5, 31]" in captured.out
    assert captured.err.strip().splitlines() == [
        "error: connectors 'wrong_shape': 2 of 10 checks failed; first: output: expected shape "
        "[batch 2, tokens 5, LLM width 32], got [2, 5, 31]"]

    assert main(["-q", "plugin", "check", "missing_dep", "--kind", "connectors"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "from distribution 'broken-demo' failed to load" in err[0]


def test_plugin_check_needs_kind_for_a_name_of_several_kinds(capsys):
    assert main(["-q", "plugin", "check", "phi"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: 'phi' names a component of several kinds (llms, templates); pick one with --kind")
    assert main(["-q", "plugin", "check", "phi", "--kind", "templates"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "ok"


def test_plain_list_reads_plugins_from_source_and_still_reports_load_errors(broken_dist, capsys):
    assert main(["-q", "list", "connectors"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines[1:]]
    assert {"linear", "broken-demo:linear", "wrong_shape", "missing_dep"} <= set(names)
    assert [line for line in lines if "BROKEN" in line][0].split()[0] == "missing_dep"
