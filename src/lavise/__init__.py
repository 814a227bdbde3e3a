"""lavise: explain, in words, what each convolutional filter of a CNN has learned.

Typical use::

    import lavise
    model = lavise.load_model("efficientnet-lite0")
    ref = lavise.load_dataset("builtin:scenes?size=1500")
    lavise.train_explainer(model, ref, "glove-6b-50d", out="runs/demo")
    run = lavise.Run.open("runs/demo")
    ex = run.explain(lavise.load_dataset("builtin:scenes?split=test&size=500"))
    print(ex[0].top_words)
"""
__version__ = "0.1.0"

_OPTIONS = {"ExtractOptions", "TrainOptions", "ExplainOptions", "EvalOptions", "CompareOptions"}
_API = {"load_model", "load_dataset", "load_embeddings", "list_models", "list_datasets", "list_embeddings",
        "train_explainer", "explain_filters", "evaluate_run", "compare_groups", "compare_models", "build_report",
        "build_study", "score_ratings",
        "extract_features", "extract_layers", "train_layers", "LayeredRun", "wrap_model", "Run", "FeatureExtractor", "FeatureCache", "TargetModel",
        "TrainedExplainer", "Explanations", "FilterExplanation"} | _OPTIONS


def __getattr__(name):  # lazy, so `lavise --help` does not import torch
    if name in _OPTIONS:  # torch-free
        from . import options

        return getattr(options, name)
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(name)


__all__ = sorted(_API)
