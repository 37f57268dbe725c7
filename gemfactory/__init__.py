"""gemfactory: small multimodal LLMs that read ECG signals, ECG/medical images and text.

``import gemfactory`` makes ``AutoConfig`` / ``AutoModelForCausalLM`` know gemfactory checkpoints
without importing torch or transformers itself (the command line must start fast): the
registration runs as soon as transformers is imported, or right away if it already is.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

__version__ = "0.1.0"


def _register_auto_classes() -> None:
    if "gemfactory.model" not in sys.modules:  # importing it registers the classes
        import gemfactory.model  # noqa: F401


class _AfterTransformersImport(importlib.abc.MetaPathFinder):
    """Runs the registration once the ``transformers`` package has finished importing."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "transformers":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        real_exec = spec.loader.exec_module

        def exec_module(module):
            real_exec(module)
            _register_auto_classes()

        spec.loader.exec_module = exec_module
        return spec


if "transformers" in sys.modules:
    _register_auto_classes()
elif not any(isinstance(f, _AfterTransformersImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _AfterTransformersImport())
