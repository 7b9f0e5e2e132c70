"""Weight initialisation helpers."""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0, probe_size: Tuple[int, int] = (64, 64)) -> nn.Module:
    """Random weights *and* random BatchNorm parameters and statistics, in place; returns ``model``.

    With PyTorch's default BN init a fresh PSPNet's logits are nearly constant, so parity tests
    would pass even with a wrong dilation or channel order (sssegmentation-pspnet.md, section 3).
    Here convs get He-normal weights, BN affine parameters are random, and BN running statistics
    are those its input really has on a random probe batch (set in forward order), perturbed by noise, so activations stay at a trained model's
    scale through any depth (pure random statistics blow R-101's logits up to ~1e5). Deterministic
    for a seed; the model's train/eval mode is preserved.
    """
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.5)
    for m in norms:
        m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
        m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)

    def set_stats(bn: nn.Module, args: Tuple[torch.Tensor, ...]) -> None:
        # statistics of the input this BN really sees (upstream BNs already set), perturbed
        x = args[0].transpose(0, 1).flatten(1)
        mean, var = x.mean(1), x.var(1)
        var = var.clamp(min=0.1 * float(var.median()) + 1e-6)  # PPM bin 1 sees one value per image
        bn.running_mean.copy_(mean + torch.randn(bn.num_features, generator=g) * 0.2 * var.sqrt())
        bn.running_var.copy_(var * (0.7 + 0.6 * torch.rand(bn.num_features, generator=g)) + bn.eps)
        bn.num_batches_tracked.fill_(1)

    hooks = [m.register_forward_pre_hook(set_stats) for m in norms]
    was_training = model.training
    try:
        model.eval()  # BN uses the running statistics each hook has just set
        model(torch.randn(8, 3, *probe_size, generator=g))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return model
