"""lavise: explain, in words, what each convolutional filter of a CNN has learned.

Typical use::

    import lavise
    model = lavise.load_model("efficientnet-lite0")
    ref = lavise.load_dataset("builtin:scenes?size=1500")
    run = lavise.train_explainer(model, ref, "glove-6b-50d", out="runs/demo")
    ex = lavise.explain_filters("runs/demo", lavise.load_dataset("builtin:scenes?split=test&size=500"))
    print(ex[0].top_words)
"""
__version__ = "0.1.0"

_API = {"load_model", "load_dataset", "load_embeddings", "train_explainer", "explain_filters", "extract_features",
        "wrap_model", "FeatureExtractor", "FeatureCache", "TargetModel", "TrainedExplainer", "Explanations", "FilterExplanation"}


def __getattr__(name):  # lazy, so `lavise --help` does not import torch
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(name)


__all__ = sorted(_API)
