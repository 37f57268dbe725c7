"""The layering contract (.importlinter) and the size rules of docs/architecture.md hold."""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gemfactory"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def test_import_contract_is_kept_with_no_ignored_imports():
    config = (ROOT / ".importlinter").read_text()
    assert "ignore_imports" not in config and "unmatched_ignore" not in config
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    proc = subprocess.run([exe, "--config", str(ROOT / ".importlinter")], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "1 kept, 0 broken" in proc.stdout


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def test_no_module_over_the_line_limit():
    long = {str(p.relative_to(ROOT)): n for p in _modules() if (n := p.read_text().count("\n")) > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_over_the_line_limit():
    long = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.name}"] = n
    assert long == {}
