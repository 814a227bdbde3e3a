"""How good are the explanations? Objective metrics against IoU ground truth (paper §4.4).

Ground truth (``dissect.compute_ground_truth``): for filter u, the annotated
concepts whose IoU with u's thresholded, upsampled activation map exceeds 0.04,
accumulated over the score half of the evaluated images (NetDissect's convention;
explanations come from the other half: ``core``).
A looser *present-only* convention (sums over the images containing the
concept) is computed beside it and always labelled.

Metrics, per filter with a non-empty ground truth G_u, averaged over those filters;
W_u is the filter's ranked word list:

    P@k  = |W_u[:k] ∩ G_u| / k           (k fixed: a list shorter than k is not rewarded)
    R@k  = |W_u[:k] ∩ G_u| / |G_u|
    F1@k = 2 |W_u[:k] ∩ G_u| / (|W_u[:k]| + |G_u|)   (set F1 of the truncated list: long lists lose
                                                     precision, short lists lose recall; neither games it)

Matching is by lemmas (lower-cased, whitespace-normalised, each token lemmatised
as a noun: "cherries" matches "cherry"); exact matches are reported beside them
(``exact_`` fields). The optional synonym-aware match (a word matches a concept
when the cosine similarity of their embeddings is at least a threshold) is
reported in separate ``syn_`` fields, never mixed into the others.

Rows of a comparison (Table 2 of the paper, ``core``): the explainer's input
methods, the NetDissect baseline (labels from the run's *reference* set),
random words from the same vocabulary, controls (a constant list, random
concept names, shuffled explanations, a randomly initialised model) and, with
halves, two ceilings. ``grounded`` adds a score that does not depend on the IoU
threshold: how well a filter's activation separates images with the concept its
top word names from images without it (AUPRC), against random concepts.

Novel concepts: concepts of the evaluated dataset that the explainer was not
trained on. ``discovered`` counts the distinct novel concepts that appear both
in a filter's top-x words and in that filter's ground truth; ``novel_R@k`` is
recall restricted to novel ground-truth concepts.
"""
from ..options import BASELINES, CONTROLS, KS
from .baselines import (
                        constant_words,
                        dissection_as_explanations,
                        names_random_words,
                        netdissect_lists,
                        random_words,
                        shuffled_lists,
)
from .core import evaluate_explanations, evaluate_run, random_init_copy, ranked_by_iou, split_rows
from .grounded import average_precision, grounded_scores, presence
from .metrics import MATCHES, lemma, match_key, norm, novel_scores, score_lists, score_row, synonym_scores
from .results import DEFAULT_COLUMNS, Evaluation, format_table

__all__ = ["BASELINES", "CONTROLS", "DEFAULT_COLUMNS", "KS", "MATCHES", "Evaluation", "average_precision",
           "constant_words", "dissection_as_explanations", "evaluate_explanations", "evaluate_run", "format_table",
           "grounded_scores", "lemma", "match_key", "names_random_words", "netdissect_lists", "norm", "novel_scores",
           "presence", "random_init_copy", "random_words", "ranked_by_iou", "score_lists", "score_row",
           "shuffled_lists", "split_rows", "synonym_scores"]
