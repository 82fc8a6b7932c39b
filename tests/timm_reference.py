"""What the tests that compare with timm share (the ``compare`` extra): the names both libraries
have, and a file of timm's own model to load."""

from __future__ import annotations

import torch

from scaling.zoo import list_models
from scaling.zoo.weights import save_file


def shared_names() -> list[str]:
    """Our names that timm also has; one placeholder id where timm is absent (its tests skip)."""
    try:
        import timm
    except ImportError:
        return ["(timm absent)"]
    theirs = set(timm.list_models())
    return [n for n in list_models("*") if n in theirs]


def timm_file(timm, name: str, path) -> torch.nn.Module:
    """timm's model ``name`` (random init and BN statistics, eval mode), saved at ``path``."""
    torch.manual_seed(0)
    ref = timm.create_model(name, pretrained=False)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.05)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.4 + 0.8)
    save_file(ref.state_dict(), path)
    return ref.eval()
