"""Shared code for the three VAE-GAN families: entropy coding, file format, training, metrics."""
