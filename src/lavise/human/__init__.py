"""Human evaluation: a rating page of a run's explanations (``build_study``) and its scores (``score_ratings``)."""
from .rate import Study, build_study
from .score import RatingScores, krippendorff_alpha, read_ratings, score_ratings
from .study import LabelSource, StudyError, load_key, plan_study, read_labels, run_labels

__all__ = ["LabelSource", "RatingScores", "Study", "StudyError", "build_study", "krippendorff_alpha", "load_key",
           "plan_study", "read_labels", "read_ratings", "run_labels", "score_ratings"]
