"""Perturbed copies of a dataset, the probes of stability: ``NoisyImages`` adds seeded Gaussian pixel noise after
the model's preprocessing, so that explanations can be re-run on images that look the same to a person."""
from __future__ import annotations

import hashlib

import torch

from .base import Annotation, ConceptDataset


class NoisyImages(ConceptDataset):
    """``dataset`` with Gaussian noise of standard deviation ``sigma`` (on [0, 1] pixels) added to every
    preprocessed image and rounded back to 8 bits; masks untouched.

    Image ``i`` draws its noise from a generator seeded by ``(seed, i)``, so the same image gets the same noise
    in any batch, worker or rank. The fingerprint includes ``sigma`` and ``seed``: a noisy copy is cached apart.

    Args:
        dataset: the dataset to perturb.
        sigma: noise standard deviation on [0, 1] pixels (0.02 is about 5 grey levels).
        seed: the noise draw.
    """

    def __init__(self, dataset: ConceptDataset, sigma: float, seed: int = 0):
        if not sigma > 0:
            raise ValueError(f"noise sigma must be positive, not {sigma!r}")
        super().__init__(dataset.root, f"{dataset.spec} + noise(sigma={sigma:g}, seed={seed})")
        self.dataset, self.sigma, self.seed = dataset, float(sigma), int(seed)
        self.items, self.concepts = dataset.items, dataset.concepts
        self.kind, self.has_masks = dataset.kind, dataset.has_masks
        self.segmentation_size = dataset.segmentation_size

    def annotations(self, i: int) -> list[Annotation]:
        return self.dataset.annotations(i)

    def concept_categories(self) -> dict[str, str]:
        return self.dataset.concept_categories()

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.dataset.fingerprint()}|noise|{self.sigma!r}|{self.seed}".encode()).hexdigest()[:16]

    def perturb(self, i: int, x: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(i))
        noise = torch.randn(x.shape, generator=g) * (self.sigma * 255.0)
        return (x.float() + noise).round_().clamp_(0, 255).to(torch.uint8)
