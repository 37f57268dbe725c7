"""Reading weight files safely (safetensors, or torch.load with weights_only=True); the file-I/O layer, so
components and the model both use it."""
from __future__ import annotations

from pathlib import Path

from .errors import CheckpointError


def load_state_file(path: str, key: str = "path") -> dict:
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{key}: weight file not found: {path}")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(p))
        import torch

        state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{key}: cannot read weights from {path}: {type(exc).__name__}: {exc}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise CheckpointError(f"{key}: {path} does not hold a state dict")
    return state
