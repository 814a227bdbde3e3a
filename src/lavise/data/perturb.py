"""Perturbed copies of a dataset: ``NoisyImages`` adds seeded Gaussian pixel noise after the model's preprocessing.

Two uses: the probe of stability (explanations re-run on images that look the same to a person), and smoothing
(``draws`` > 1: the features of several noisy copies of each image averaged at extraction, so that a filter is
described by its response around the image rather than at one exact grid of pixel values)."""
from __future__ import annotations

import hashlib

import torch

from ..defaults import SMOOTH_SEED
from .base import Annotation, ConceptDataset


class NoisyImages(ConceptDataset):
    """``dataset`` with Gaussian noise of standard deviation ``sigma`` (on [0, 1] pixels) added to every
    preprocessed image and rounded back to 8 bits; masks untouched.

    Image ``i`` draws its noise from a generator seeded by ``(seed, i)``, so the same image gets the same noise
    in any batch, worker or rank. The fingerprint includes ``sigma``, ``seed`` and ``draws``: a noisy copy is
    cached apart. Noise is added on top of ``dataset``'s own perturbation, so copies nest (a smoothed run's
    noise probe is a smoothed copy of a noisy copy).

    Args:
        dataset: the dataset to perturb.
        sigma: noise standard deviation on [0, 1] pixels (0.02 is about 5 grey levels).
        seed: the noise draw.
        draws: noisy copies per image; above 1 each image comes as (draws, 3, H, W) and extraction averages
            their features.
    """

    def __init__(self, dataset: ConceptDataset, sigma: float, seed: int = 0, draws: int = 1):
        if not sigma > 0:
            raise ValueError(f"noise sigma must be positive, not {sigma!r}")
        if not (isinstance(draws, int) and draws >= 1):
            raise ValueError(f"noise draws must be a whole number of at least 1, not {draws!r}")
        tail = f", draws={draws}" if draws > 1 else ""
        super().__init__(dataset.root, f"{dataset.spec} + noise(sigma={sigma:g}, seed={seed}{tail})")
        self.dataset, self.sigma, self.seed, self.draws = dataset, float(sigma), int(seed), int(draws)
        self.items, self.concepts = dataset.items, dataset.concepts
        self.kind, self.has_masks = dataset.kind, dataset.has_masks
        self.segmentation_size = dataset.segmentation_size

    def annotations(self, i: int) -> list[Annotation]:
        return self.dataset.annotations(i)

    def concept_categories(self) -> dict[str, str]:
        return self.dataset.concept_categories()

    def fingerprint(self) -> str:
        tail = f"|{self.draws}" if self.draws > 1 else ""  # one draw keeps the fingerprint of earlier caches
        return hashlib.sha256(f"{self.dataset.fingerprint()}|noise|{self.sigma!r}|{self.seed}{tail}".encode()) \
            .hexdigest()[:16]

    def perturb(self, i: int, x: torch.Tensor) -> torch.Tensor:
        x = self.dataset.perturb(i, x)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(i))
        shape = x.shape if self.draws == 1 else (self.draws, *x.shape[-3:])
        noise = torch.randn(shape, generator=g) * (self.sigma * 255.0)
        return (x.float() + noise).round_().clamp_(0, 255).to(torch.uint8)


def smoothed(dataset: ConceptDataset, draws: int, sigma: float) -> ConceptDataset:
    """``dataset`` whose features extraction averages over ``draws`` noisy copies of each image (``draws`` 0:
    ``dataset`` itself). The copies are seeded by ``defaults.SMOOTH_SEED``, apart from the noise probe's draws.

    Args:
        dataset: the images.
        draws: noisy copies per image (0: none, the clean images).
        sigma: their noise standard deviation on [0, 1] pixels.

    Returns:
        The dataset to extract.
    """
    return NoisyImages(dataset, sigma, SMOOTH_SEED, draws) if draws else dataset
