"""The public functions and classes, gathered in one place (also re-exported, lazily, by ``lavise``)."""
from __future__ import annotations

from .compare import compare_groups, compare_models
from .data import list_datasets, load_dataset
from .embeddings import list_embeddings, load_embeddings
from .evaluate import evaluate_run
from .explain import Explanations, FilterExplanation, explain_filters
from .features import FeatureCache, FeatureExtractor, extract_features, extract_layers
from .human import build_study, score_ratings
from .models import TargetModel, list_models, load_model, wrap_model
from .multilayer import LayeredRun, train_layers
from .options import CompareOptions, EvalOptions, ExplainOptions, ExtractOptions, TrainOptions
from .report import build_report
from .run import Run
from .train import TrainedExplainer, train_explainer

__all__ = ["load_model", "load_dataset", "load_embeddings", "list_models", "list_datasets", "list_embeddings",
           "train_explainer", "explain_filters", "evaluate_run", "compare_groups", "compare_models", "build_report",
           "build_study", "score_ratings",
           "extract_features", "extract_layers", "train_layers", "LayeredRun", "wrap_model", "Run", "FeatureExtractor", "FeatureCache", "TargetModel",
           "TrainedExplainer", "Explanations", "FilterExplanation", "ExtractOptions", "TrainOptions",
           "ExplainOptions", "EvalOptions", "CompareOptions"]
