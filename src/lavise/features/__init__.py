"""Features at a layer, computed once per dataset and cached on disk.

``FeatureExtractor`` (extractor.py) owns forward hooks on one or several layers (their outputs read as maps by
layout.py); ``extract_features`` (extract.py) streams a dataset through it (``extract_layers``: several layers in
one pass), with images decoded by ``ImageLoader`` (loader.py), into part files written
with checkpoints and merged in dataset order (parts.py); the result is a ``FeatureCache`` (cache.py), whose
maps are read with ``RowFile`` (rowfile.py).
"""
from .cache import CACHE_FORMAT, EVAL_MASK_SIZE, FeatureCache, cache_key
from .extract import extract_features, extract_layers
from .extractor import FeatureExtractor
from .rowfile import RowFile

__all__ = ["CACHE_FORMAT", "EVAL_MASK_SIZE", "FeatureCache", "FeatureExtractor", "RowFile", "cache_key",
           "extract_features", "extract_layers"]
