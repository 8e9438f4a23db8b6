"""The loss terms, and :class:`GeneratorLoss`, which weighs them: apart from the loop
(common/training.py) and from evaluation, which measures rates with the same :func:`rate_bpp`.

Rates are bits per pixel, ``-log2`` of the likelihoods summed; distortion is ``255^2 * MSE`` or
``1 - MS-SSIM``; the adversarial terms are the hinge loss, VQGAN's adaptive weight and
pix2pixHD's feature matching.
"""

from __future__ import annotations

from typing import NamedTuple

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


# --------------------------------------------------------------------------------------------------
# The generator loss: the terms above, weighed


def perceptual_backend(cfg, device: torch.device, say=print) -> tuple[torch.nn.Module | None, str]:
    """(LPIPS network or None, backend): "none", "lpips-alex" or "disc-feature-matching".

    ``--perceptual auto`` takes LPIPS when its AlexNet weights can be had offline, else says so
    once and falls back to feature matching on the discriminator, which needs no ImageNet weights.
    """
    from common.errors import VAEGANError

    if cfg.lambda_perceptual <= 0:
        return None, "none"
    if cfg.perceptual in ("lpips", "auto"):
        from common.metrics import MetricError, load_lpips

        try:
            return load_lpips(device, net="alex", on_missing="raise"), "lpips-alex"
        except MetricError as exc:
            if cfg.perceptual == "lpips":
                raise
            say(f"perceptual loss: LPIPS unavailable, using discriminator feature matching instead ({exc})")
    if cfg.lambda_adv <= 0:
        raise VAEGANError(
            "discriminator feature matching needs a trained discriminator: set --lambda_adv > 0, "
            "or provide the LPIPS weights, or set --lambda_perceptual 0"
        )
    return None, "disc-feature-matching"


class Critique(NamedTuple):
    """What the discriminator said about one batch, for the generator loss: its logits on x_hat, and
    for feature matching its activations on x_hat and (without gradient) on x."""

    fake_logits: torch.Tensor
    fake_features: list[torch.Tensor] | None = None
    real_features: list[torch.Tensor] | None = None


class GeneratorLoss:
    """L_G of common/training.py's docstring, for one model's outputs.

    The loop calls it on each batch (with the discriminator's :class:`Critique` once the adversarial
    term is on: the discriminator belongs to the loop, not to the loss); validation calls
    :meth:`validation_row` on each crop, so the validation loss weighs its terms exactly as
    training does. ``adversarial_weight(loss, g_adv)`` is the loop's (VQGAN's balance,
    data-parallel aware; None for the plain weight).
    """

    def __init__(self, cfg, perceptual_net, backend: str, adversarial_weight):
        self.cfg, self.net, self.backend = cfg, perceptual_net, backend
        self.adversarial_weight = adversarial_weight

    def rate_distortion(
        self, x: torch.Tensor, out, rate_weights: dict[str, float], clamp: bool = False
    ) -> tuple[torch.Tensor, dict]:
        """lambda_d * (D + sum_j v_j D_j) + beta * sum_k w_k R_k, and its terms (detached).

        A variable-rate output (``out.rate_scale``) gives each image its own beta and its own weight
        in the batch. ``clamp`` scores reconstructions clipped to [0, 1], as a decoded file is."""
        cfg = self.cfg
        pixels = x.shape[-2] * x.shape[-1]
        likelihoods = {k: v.float() for k, v in out.likelihoods.items()}
        rates = rate_bpp(likelihoods, pixels)
        x_hat = out.x_hat.float().clamp(0, 1) if clamp else out.x_hat.float()
        if out.rate_scale is None:
            rate = sum(rate_weights.get(k, 1.0) * r for k, r in rates.items())
            dist = distortion(x, x_hat, cfg.distortion)
            loss = cfg.lambda_d * dist + cfg.beta * rate
        else:
            per_image = rate_bpp(likelihoods, pixels, per_image=True)
            rate = sum(rate_weights.get(k, 1.0) * out.rate_scale * r for k, r in per_image.items())
            dists = distortion(x, x_hat, cfg.distortion, per_image=True)
            image_weight = torch.ones_like(dists) if out.image_weight is None else out.image_weight
            loss = (image_weight * (cfg.lambda_d * dists + cfg.beta * rate)).mean()
            dist = dists.mean()
        logs = {
            "bpp": sum(rates.values()).detach(),
            "distortion": dist.detach(),
            **{f"bpp_{k}": v.detach() for k, v in rates.items()},
        }
        for name, (x_other, weight) in out.extra_reconstructions.items():
            x_other = x_other.float().clamp(0, 1) if clamp else x_other.float()
            d_other = distortion(x, x_other, cfg.distortion)
            loss = loss + weight * cfg.lambda_d * d_other
            logs[f"distortion_{name}"] = d_other.detach()
        with torch.no_grad():
            mse = F.mse_loss(x_hat.clamp(0, 1), x)
            logs["psnr"] = 10 * torch.log10(1.0 / mse.clamp_min(1e-10))
        return loss, logs

    def __call__(
        self, x: torch.Tensor, out, rate_weights: dict[str, float], critique: Critique | None = None
    ):
        """The training loss and its terms as detached 0-d tensors (no host sync)."""
        cfg = self.cfg
        loss, logs = self.rate_distortion(x, out, rate_weights)
        for name, term in out.extra_losses.items():
            loss = loss + term.float()
            logs[name] = term.detach().float()
        if critique is not None:
            g_adv = per_image_mean(-critique.fake_logits.float(), out.realism)
            weight = self.adversarial_weight(loss, g_adv)
            if weight is not None:
                logs["adv_weight"] = weight
            loss = loss + cfg.lambda_adv * (1.0 if weight is None else weight) * g_adv
            logs["g_adv"] = g_adv.detach()
        perc = self.perceptual(x, out, critique)
        if perc is not None:
            loss = loss + cfg.lambda_perceptual * perc.float()
            logs["perceptual"] = perc.detach().float()
        logs["loss"] = loss.detach()
        return loss, logs

    @torch.no_grad()
    def validation_row(
        self, x: torch.Tensor, out, rate_weights: dict[str, float]
    ) -> tuple[dict, torch.Tensor]:
        """One image's validation numbers and its reconstruction: the training loss's terms on the
        clamped reconstruction (LPIPS included when it trains), without the family's extra losses."""
        loss, logs = self.rate_distortion(x, out, rate_weights, clamp=True)
        x_hat = out.x_hat.clamp(0, 1)
        row = {k: float(v) for k, v in logs.items() if k == "psnr" or k.startswith("bpp")}
        row["loss"] = float(loss)
        if self.backend == "lpips-alex":
            per_image = self.lpips(x, x_hat)
            row["loss"] += self.cfg.lambda_perceptual * float(per_image_mean(per_image, out.realism))
            row["lpips"] = float(per_image.mean())
        return row, x_hat

    def lpips(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """LPIPS per image, x and x_hat in [0, 1]."""
        return self.net(x_hat.float() * 2 - 1, x * 2 - 1)

    def perceptual(self, x: torch.Tensor, out, critique: Critique | None):
        """LPIPS(x_hat, x) (each image weighted by its ``out.realism``); or, while the discriminator
        trains, L1 between its features of x and x_hat; or None."""
        if self.backend == "lpips-alex":
            return per_image_mean(self.lpips(x, out.x_hat), out.realism)
        if self.backend == "disc-feature-matching" and critique is not None:
            real, fake = critique.real_features[:-1], critique.fake_features[:-1]
            return feature_matching_loss([f.float() for f in real], [f.float() for f in fake], out.realism)
        return None
