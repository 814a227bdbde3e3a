"""Inference: explain every filter of the layer in words, all filters at once.

Stages (public, so benchmarks and tests run the same code): ``top_pairs`` → ``filter_inputs`` /
``head_outputs`` → ``top_words`` (with ``calibration_penalty`` / ``hub_scores``) → ``rank_words``;
``explain_cache`` runs them on a cache, ``explain_filters`` / ``Run.explain`` on a dataset.
"""
from ..embeddings.search import top_words
from ..options import METHODS
from .core import check_units, compute_thresholds, explain_cache, explain_filters, explain_run, head_outputs
from .inputs import ImageRerun, TopPairs, default_batch_pairs, filter_inputs, pair_products, top_images, top_pairs
from .results import Explanations, FilterExplanation
from .words import HUB_NEIGHBOURS, calibration_penalty, hub_scores, rank_words, vocabulary_tensor

__all__ = ["METHODS", "HUB_NEIGHBOURS", "Explanations", "FilterExplanation", "ImageRerun", "TopPairs",
           "calibration_penalty", "check_units", "compute_thresholds", "default_batch_pairs", "explain_cache",
           "explain_filters", "explain_run", "filter_inputs", "head_outputs", "hub_scores", "pair_products",
           "rank_words", "top_images", "top_pairs", "top_words", "vocabulary_tensor"]
