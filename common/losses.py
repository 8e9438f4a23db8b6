"""The loss terms, apart from the loop that weighs them (common/training.py) and from evaluation,
which measures rates with the same :func:`rate_bpp`.

Rates are bits per pixel, ``-log2`` of the likelihoods summed; distortion is ``255^2 * MSE`` or
``1 - MS-SSIM``; the adversarial terms are the hinge loss, VQGAN's adaptive weight and
pix2pixHD's feature matching.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rate_bpp(
    likelihoods: dict[str, torch.Tensor], num_pixels: int, per_image: bool = False
) -> dict[str, torch.Tensor]:
    """Bits per pixel of each latent, averaged over the batch (or one per image, shape (B,))."""
    if per_image:
        return {k: -torch.log2(v).flatten(1).sum(1) / num_pixels for k, v in likelihoods.items()}
    batch = next(iter(likelihoods.values())).shape[0]
    return {k: -torch.log2(v).sum() / (batch * num_pixels) for k, v in likelihoods.items()}


def distortion(x: torch.Tensor, x_hat: torch.Tensor, kind: str, per_image: bool = False) -> torch.Tensor:
    """255^2 * MSE or 1 - MS-SSIM, averaged over the batch (or one per image, shape (B,))."""
    if kind == "mse":
        if per_image:
            return (x_hat - x).pow(2).flatten(1).mean(1) * 255.0**2
        return F.mse_loss(x_hat, x) * 255.0**2
    from pytorch_msssim import ms_ssim

    return 1.0 - ms_ssim(x_hat, x, data_range=1.0, size_average=not per_image)


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def adaptive_weight(
    nll_loss: torch.Tensor,
    g_loss: torch.Tensor,
    last_layer: torch.Tensor,
    max_weight: float = 1e4,
    reduce=None,
) -> torch.Tensor:
    """VQGAN's adversarial weight (Esser et al. 2021, eq. 7): |grad nll| / (|grad g| + 1e-4) at ``last_layer``.

    Both gradients are taken at the decoder's last layer, so the adversarial term starts at the
    scale of the reconstruction term whatever their magnitudes; the weight itself is a constant.
    ``reduce`` (data-parallel: the mean over ranks) turns each rank's gradients into the global
    batch's before the norms, so every rank uses the weight one process would compute.
    """
    nll_grad = torch.autograd.grad(nll_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    if reduce is not None:
        nll_grad, g_grad = reduce(nll_grad), reduce(g_grad)
    return (nll_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, max_weight).detach()


def feature_matching_loss(
    real: list[torch.Tensor], fake: list[torch.Tensor], weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over layers of the L1 distance between discriminator activations of x and x_hat.

    The perceptual term of pix2pixHD (Wang et al. 2018), used by HiFiC-style training when no
    ImageNet network is available. ``real`` are targets: no gradient flows into them. ``weights``
    (B,) weigh each image (a realism-conditioned decoder's realism); None: the plain mean.
    """
    if weights is None:
        return sum(F.l1_loss(f, r.detach()) for r, f in zip(real, fake)) / len(real)
    per_image = sum((f - r.detach()).abs().flatten(1).mean(1) for r, f in zip(real, fake)) / len(real)
    return per_image_mean(per_image, weights)


def per_image_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` (B, ...) with image b weighted by ``weights[b]`` (None: plain mean)."""
    if weights is None:
        return values.mean()
    return (values.reshape(len(values), -1).mean(1) * weights.to(values.dtype)).mean()
