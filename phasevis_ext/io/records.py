"""Settings as JSON, and content digests: how runs record what made their images."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn


def jsonable(value):
    """A JSON value for a setting. Small tensors become lists; larger ones (a custom magnitude,
    say) their shape and content digest; dtypes and callables their names."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, torch.Tensor):
        if value.numel() <= 16:
            return value.tolist()
        return {"tensor": list(value.shape), "sha256": tensor_digest(value)}
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if isinstance(value, torch.device):
        return str(value)
    return getattr(value, "__qualname__", None) or repr(value)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def tensor_digest(t: torch.Tensor) -> str:
    t = t.detach().cpu().contiguous().reshape(-1)
    return digest(f"{t.dtype}".encode() + t.view(torch.uint8).numpy().tobytes())


def state_digest(model: nn.Module) -> str:
    """Digest of the state dict, so that other weights under the same model name are told apart."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}:".encode())
        h.update(tensor_digest(t).encode())
    return h.hexdigest()[:16]


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(Path(path), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
