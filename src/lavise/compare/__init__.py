"""Unsupervised comparisons (paper §4.6): image groups (dataset bias) and models.

* ``groups``: which filters fire on a larger share of one group's images than another's
  (``compare_run`` on a ``Run``, ``compare_groups`` on a run folder; ``GroupComparison`` results).
* ``stats``: the tests, vectorised over filters (two-proportion z, chi-square, p-value correction).
* ``models``: the concepts two models' filters express, shared and unique (``compare_models``).
* ``files``: result file names and their record in the run's manifest.

Which images qualify for a filter is ``lavise.stats.Thresholds.qualified`` (the one rule, shared with the
activation masks).
"""
from ..options import CORRECTIONS, RANK_BY
from .files import GROUP_FILE, MODEL_FILE, record_result
from .groups import (
                     FilterDifference,
                     GroupComparison,
                     compare_groups,
                     compare_run,
                     image_groups,
                     read_groups_csv,
                     run_explanations,
                     select_groups,
)
from .models import ModelComparison, ModelConcepts, compare_models, model_concepts
from .stats import adjust_pvalues, chi_square, two_proportion_z

__all__ = ["CORRECTIONS", "GROUP_FILE", "MODEL_FILE", "RANK_BY", "FilterDifference", "GroupComparison",
           "ModelComparison", "ModelConcepts", "adjust_pvalues", "chi_square", "compare_groups", "compare_models",
           "compare_run", "image_groups", "model_concepts", "read_groups_csv", "record_result", "run_explanations",
           "select_groups", "two_proportion_z"]
