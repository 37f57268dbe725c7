"""Reading a seed repository's own code from a bare git mirror (the fetch tool's copy), for the
scripts that make golden fixtures by running that code: a file at a commit, one function's source,
and a seed module imported as it is."""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path


def git_show(mirror: str, commit: str, path: str) -> str:
    """The text of ``path`` at ``commit`` in the bare git dir ``mirror``."""
    return subprocess.run(["git", f"--git-dir={mirror}", "show", f"{commit}:{path}"],
                          check=True, capture_output=True, text=True).stdout


def function_source(module_text: str, name: str) -> str:
    """The source of the top-level function ``name`` in ``module_text``."""
    tree = ast.parse(module_text)
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    return ast.get_source_segment(module_text, node)


def import_seed_file(mirror: str, commit: str, path: str, module_name: str):
    """The seed's file ``path`` written unchanged to a temporary folder and imported as ``module_name``."""
    folder = Path(tempfile.mkdtemp(prefix=f"{module_name}_"))
    (folder / f"{module_name}.py").write_text(git_show(mirror, commit, path))
    sys.path.insert(0, str(folder))
    return importlib.import_module(module_name)


def seed_constants(mirror: str, commit: str) -> dict:
    """The names LLaVA-family seeds define in ``llava/constants.py``."""
    constants: dict = {}
    exec(git_show(mirror, commit, "llava/constants.py"), constants)
    return constants
