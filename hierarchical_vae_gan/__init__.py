"""Hierarchical VAE-GAN: latents at several scales with self-attention and per-level bit allocation."""
