"""How good are the explanations? Objective metrics against IoU ground truth (paper §4.4).

Ground truth (``dissect.compute_ground_truth``): for filter u, the annotated
concepts whose IoU with u's thresholded, upsampled activation map exceeds 0.04,
accumulated over all images of the evaluated dataset (NetDissect's convention).
A looser *present-only* convention (sums over the images containing the
concept) is computed beside it and always labelled.

Metrics, per filter with a non-empty ground truth G_u, averaged over those filters;
W_u is the filter's ranked word list:

    P@k  = |W_u[:k] ∩ G_u| / k           (k fixed: a list shorter than k is not rewarded)
    R@k  = |W_u[:k] ∩ G_u| / |G_u|
    F1@k = 2 |W_u[:k] ∩ G_u| / (|W_u[:k]| + |G_u|)   (set F1 of the truncated list: long lists lose
                                                     precision, short lists lose recall; neither games it)

Matching is exact (lower-cased, whitespace-normalised names). The optional
synonym-aware match (a word matches a concept when the cosine similarity of
their embeddings is at least a threshold) is reported in separate ``syn_``
fields, never mixed into the exact ones.

Rows of a comparison (Table 2 of the paper): the explainer's input methods
(``attention``, ``activation``, ``image``, ``original``), the NetDissect
baseline (labels from the run's *reference* set: the concepts with IoU > 0.04
there, best first; on the evaluated set itself it would be its own ground
truth), and random words from the same vocabulary.

Novel concepts: concepts of the evaluated dataset that the explainer was not
trained on. ``discovered`` counts the distinct novel concepts that appear both
in a filter's top-x words and in that filter's ground truth; ``novel_R@k`` is
recall restricted to novel ground-truth concepts.
"""
from ..options import BASELINES, KS
from .baselines import dissection_as_explanations, netdissect_lists, random_words
from .core import evaluate_explanations, evaluate_run
from .metrics import norm, novel_scores, score_lists, score_row, synonym_scores
from .results import DEFAULT_COLUMNS, Evaluation, format_table

__all__ = ["BASELINES", "DEFAULT_COLUMNS", "KS", "Evaluation", "dissection_as_explanations", "evaluate_explanations",
           "evaluate_run", "format_table", "netdissect_lists", "norm", "novel_scores", "random_words", "score_lists",
           "score_row", "synonym_scores"]
