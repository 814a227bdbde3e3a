"""The public functions, gathered in one place (also re-exported by ``lavise``)."""
from __future__ import annotations

from .data import load_dataset
from .embeddings import load_embeddings
from .explain import Explanations, FilterExplanation, explain_filters
from .features import FeatureCache, FeatureExtractor, extract_features
from .models import TargetModel, load_model, wrap_model
from .train import TrainedExplainer, train_explainer

__all__ = ["load_model", "load_dataset", "load_embeddings", "train_explainer", "explain_filters",
           "extract_features", "wrap_model", "FeatureExtractor", "FeatureCache", "TargetModel", "TrainedExplainer",
           "Explanations", "FilterExplanation"]
