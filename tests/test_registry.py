import pytest

from gemfactory.errors import DuplicateComponent, PluginError, UnknownComponent
from gemfactory.registry import CONNECTORS, ECG_ENCODERS, LLMS, TEMPLATES, VISION_TOWERS, Registry


def test_builtins_are_found_by_exact_name():
    assert LLMS.get("vicuna").model_type == "llama"
    assert LLMS.get("phi").model_type == "phi"
    assert "clip" in VISION_TOWERS.names()
    assert "vit1d" in ECG_ENCODERS.names()
    assert {"linear", "mlp{N}x_gelu"} <= set(CONNECTORS.names())
    assert CONNECTORS.get("mlp2x_gelu")(4, 8)[0].in_features == 4
    assert {"vicuna_v1", "plain"} <= set(TEMPLATES.names())


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownComponent) as err:
        LLMS.get("vicuna2")
    msg = str(err.value)
    assert "unknown LLM 'vicuna2'" in msg and "did you mean 'vicuna'" in msg


def test_lookup_is_exact_not_case_folded():
    with pytest.raises(UnknownComponent):
        CONNECTORS.get("Linear")


def test_duplicate_name_is_refused():
    reg = Registry("widget", "connector", "gemfactory.test_widgets")

    @reg.register("a")
    class A:
        pass

    with pytest.raises(DuplicateComponent, match="'a' is already registered"):
        @reg.register("a")
        class B:
            pass


class _FakeDist:
    name, version = "broken-plugin", "0.1"


class _FakeEP:
    def __init__(self, name, value, obj=None, exc=None):
        self.name, self.value, self._obj, self._exc, self.dist = name, value, obj, exc, _FakeDist()

    def load(self):
        if self._exc:
            raise self._exc
        return self._obj


def _fresh_plugins(monkeypatch, reg, eps):
    """The real registry, with its plugin state replaced by these entry points for one test."""
    monkeypatch.setattr(reg, "_plugins", {})
    monkeypatch.setattr(reg, "_plugin_errors", {})
    monkeypatch.setattr(reg, "_loaded_plugins", False)
    monkeypatch.setattr("importlib_metadata.entry_points", lambda group: eps)
    return reg


def test_broken_plugin_names_distribution_and_spares_other_lookups(monkeypatch):

    class Good:
        """a good plugin connector"""

    eps = [_FakeEP("bad", "broken_pkg.mod:Thing", exc=ImportError("No module named 'broken_pkg'")),
           _FakeEP("good", "ok_pkg:Good", obj=Good)]
    reg = _fresh_plugins(monkeypatch, CONNECTORS, eps)
    assert reg.get("good") is Good
    assert reg.get("linear").__name__ == "Linear"
    with pytest.raises(PluginError) as err:
        reg.get("bad")
    msg = str(err.value)
    assert "broken-plugin" in msg and "broken_pkg.mod:Thing" in msg and "No module named" in msg


def test_plugin_clashing_with_builtin_needs_full_name(monkeypatch):
    class Mine:
        pass

    reg = _fresh_plugins(monkeypatch, CONNECTORS, [_FakeEP("linear", "x:Mine", obj=Mine)])
    with pytest.raises(DuplicateComponent, match="name it fully"):
        reg.get("linear")
    assert reg.get("broken-plugin:linear") is Mine
    assert reg.get("gemfactory:linear").__name__ == "Linear"


def test_pattern_names_build_exact_components():
    mlp3 = CONNECTORS.get("mlp3x_gelu")
    layer = mlp3(8, 16)
    assert sum(isinstance(m, __import__("torch").nn.Linear) for m in layer) == 3
    assert CONNECTORS.get("mlp3x_gelu") is mlp3  # cached under its exact name
    assert "mlp{N}x_gelu" in CONNECTORS.names()
    with pytest.raises(UnknownComponent):
        CONNECTORS.get("mlpx_gelu")


def test_list_read_from_source_equals_the_imported_registries():
    """`gemfactory list` reads decorators and docstrings from source (no torch import); what it
    shows must be exactly what importing every component shows (built-ins and installed plugins)."""
    from gemfactory.cli import imported_rows, source_rows
    from gemfactory.registry import REGISTRIES

    for kind, reg in REGISTRIES.items():
        rows, errors = source_rows(reg)
        assert errors == {}
        imported = [r for r in imported_rows(reg)  # minus names an earlier lookup made from a pattern
                    if not any(regex.fullmatch(r[0]) for regex, _, _ in reg._patterns)]
        assert rows == imported, kind
        assert all(summary for _, _, summary in rows), kind  # every component says what it is


def test_list_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys; from gemfactory.cli import main; main(['-q', 'list']); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "vit1d" in proc.stdout and "pooled_linear" in proc.stdout and "mlp{N}x_gelu" in proc.stdout


def test_list_filters_by_kind_alias_and_wildcard(capsys):
    from gemfactory.cli import main

    assert main(["-q", "list", "vision", "clip*"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "vision_towers:" and [line.split()[0] for line in out[1:]] == ["clip"]
    assert main(["-q", "list", "*net1d"]) == 0  # a wildcard alone searches every kind
    out = capsys.readouterr().out.splitlines()
    assert out == [out[0], out[1]] and out[0] == "ecg_encoders:" and out[1].split()[0] == "resnet1d"


def test_list_without_a_match_or_with_extra_words_is_one_error(capsys):
    from gemfactory.cli import main

    assert main(["-q", "list", "connector", "zzz*"]) == 2
    assert capsys.readouterr().err == ("error: list: no connectors name matches 'zzz*'; see gemfactory list\n")
    assert main(["-q", "list", "vision", "clip*", "extra"]) == 2
    assert "expected [KIND] [PATTERN], got 'vision clip* extra'" in capsys.readouterr().err


def test_registry_list_matches_wildcards_exactly():
    from gemfactory.registry import CONNECTORS, VISION_TOWERS

    assert VISION_TOWERS.list("clip") == ["clip"]
    assert VISION_TOWERS.list("CLIP") == []  # names are exact and lower-case
    assert "mlp{N}x_gelu" in CONNECTORS.list("mlp*") and CONNECTORS.list("*") == CONNECTORS.names()


def test_a_registration_the_index_cannot_read_is_refused_on_load(tmp_path, monkeypatch):
    """The decorators are the one source of names: `list` reads them from source and loading checks
    that importing the package registers exactly those, so a name registered any other way fails."""
    import importlib
    import sys

    import gemfactory
    from gemfactory import registry_index
    from gemfactory.errors import GemError

    pkg = tmp_path / "fakekind"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('from gemfactory.registry import Registry\n'
                                     'FAKES = Registry("fake", "fakekind", "gemfactory.fakes")\n')
    (pkg / "good.py").write_text('"""Good ones."""\nfrom . import FAKES\n\n\n@FAKES.register("good")\n'
                                 'class Good:\n    """A good one."""\n')
    monkeypatch.setattr(registry_index, "PACKAGE_ROOT", tmp_path)
    monkeypatch.setattr(gemfactory, "__path__", [*gemfactory.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "gemfactory.fakekind", raising=False)
    fakes = importlib.import_module("gemfactory.fakekind").FAKES
    assert fakes.names() == ["good"] and fakes.index().exact["good"].summary == "A good one."

    (pkg / "sneaky.py").write_text('from . import FAKES\n\n\nclass Sneaky:\n    pass\n\n\n'
                                   'FAKES.register("sneaky")(Sneaky)\n')
    for name in [m for m in sys.modules if m.startswith("gemfactory.fakekind")]:
        monkeypatch.delitem(sys.modules, name)
    fakes = importlib.import_module("gemfactory.fakekind").FAKES
    with pytest.raises(GemError, match=r"fake 'sneaky': registered in gemfactory/fakekind/ other than by a "
                                       r"top-level @REGISTRY\.register\(\"literal name\"\) decorator"):
        fakes.names()


def test_recipe_names_are_checked_without_importing_the_components():
    """Loading a recipe checks its tune types by name from the index and the entry points: no torch
    import, and the same verdict a lookup gives."""
    import subprocess
    import sys

    code = ("import sys; from gemfactory.config import load_recipe; load_recipe('recipes/tiny-gem.yaml'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=str(__import__("pathlib").Path(__file__).parent.parent))
    assert proc.returncode == 0, proc.stderr[-2000:]

    from gemfactory.registry import CONNECTORS, TUNE_TYPES

    for reg, name in ((TUNE_TYPES, "full"), (TUNE_TYPES, "gemfactory:lora"), (CONNECTORS, "mlp3x_gelu"),
                      (TUNE_TYPES, "ful"), (TUNE_TYPES, "nobody:full"), (CONNECTORS, "mlpx_gelu")):
        try:
            reg.check_name(name)
            by_name = True
        except UnknownComponent:
            by_name = False
        assert by_name == (name in reg), name
