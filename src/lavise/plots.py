"""Figures of comparison results, for the CLI, the HTML report and notebooks.

Every function takes an optional matplotlib ``ax`` and returns ``(fig, ax)``;
without ``ax`` it makes a new figure with pyplot's current backend (the CLI
selects Agg, so it works headless).
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt

from .io import atomic_path

PALETTE = ("#3b6fb6", "#e0793a", "#4f9d5a", "#b54a7a", "#8a6fc1", "#a3863b", "#3aa3a8", "#777777")


def _new(ax, size):
    if ax is None:
        fig, ax = plt.subplots(figsize=size, layout="constrained")
    else:
        fig = ax.figure
    return fig, ax


def _label(unit: int, words: list[str], n: int = 3, width: int = 38) -> str:
    text = f"#{unit}: " + (", ".join(words[:n]) if words else "(no words)")
    return textwrap.shorten(text, width=width, placeholder="…")


def plot_group_comparison(result, top: int = 10, ax=None, groups: list[str] | None = None):
    """Grouped horizontal bars: % of qualified images per group for the top-ranked filters.

    Args:
        result: a ``GroupComparison``.
        top: how many ranked filters to show.
        ax: axes to draw into (default: a new figure).
        groups: groups to show (default all; at most 8 are drawn).

    Returns:
        (fig, ax).
    """
    filters = result.filters[:top]
    groups = list(groups or result.groups)[:len(PALETTE)]
    fig, ax = _new(ax, (8.0, 0.9 + 0.45 * max(len(filters), 1) * max(1, len(groups) / 2)))
    n, g = len(filters), len(groups)
    height = 0.8 / max(g, 1)
    for gi, name in enumerate(groups):
        ys = [i + (gi - (g - 1) / 2) * height for i in range(n)]
        vals = [f.percentages.get(name, 0.0) for f in filters]
        ax.barh(ys, vals, height=height * 0.95, color=PALETTE[gi], label=f"{name} (n={result.sizes.get(name, '?')})")
    ax.set_yticks(range(n))
    ax.set_yticklabels([_label(f.unit, f.words) + ("  *" if f.q_value < result.alpha else "") for f in filters])
    ax.invert_yaxis()
    ax.set_xlabel("qualified images (% of group: max activation > $T_u$)")
    ax.set_title(f"{result.layer}: filters ranked by group difference (* q < {result.alpha:g})", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    if not filters:
        ax.text(0.5, 0.5, "no filters", transform=ax.transAxes, ha="center")
    return fig, ax


def plot_model_comparison(result, ax=None, examples: int = 6):
    """Bars of the concepts only model A expresses, both express, and only model B expresses.

    Args:
        result: a ``ModelComparison``.
        ax: axes to draw into (default: a new figure).
        examples: concept names printed beside each bar.

    Returns:
        (fig, ax).
    """
    fig, ax = _new(ax, (8.0, 3.0))
    a, b = result.a, result.b
    rows = [(f"only {a.label}", result.only_a, a, PALETTE[0]), ("shared", result.shared, None, "#888888"),
            (f"only {b.label}", result.only_b, b, PALETTE[1])]
    counts = [len(r[1]) for r in rows]
    ax.barh(range(3), counts, color=[r[3] for r in rows])
    top = max(counts + [1])
    for i, (_, names, m, _c) in enumerate(rows):
        src = m.concepts if m is not None else {c: a.concepts.get(c, []) + b.concepts.get(c, []) for c in names}
        best = sorted(names, key=lambda c: (-len(src.get(c, [])), c))[:examples]
        text = textwrap.shorten(", ".join(best), width=60, placeholder="…")
        ax.text(counts[i] + top * 0.02, i, f"{counts[i]}  {text}", va="center", fontsize=8)
    ax.set_yticks(range(3))
    ax.set_yticklabels([textwrap.shorten(r[0], 28, placeholder="…") for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, top * 2.4)
    ax.set_xlabel("distinct concepts (top words of interpretable filters)")
    ax.set_title(f"{a.label}: {len(a.concepts)} concepts ({a.interpretable}/{a.filters} filters)  vs  "
                 f"{b.label}: {len(b.concepts)} concepts ({b.interpretable}/{b.filters} filters)", fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def plot_reliability(report: dict, ax=None, label: str = ""):
    """Reliability diagram: share of top words right against their calibrated confidence, per confidence bin.

    Args:
        report: one method's entry of ``Evaluation.confidence`` (``reliability`` bins, ``ECE``).
        ax: axes to draw on (default: a new figure).
        label: the method's name, for the legend.

    Returns:
        ``(fig, ax)``.
    """
    fig, ax = _new(ax, (4.2, 4.0))
    bins = [b for b in report["reliability"] if b["items"]]
    ax.plot([0, 1], [0, 1], ls="--", color="#999999", lw=1, label="perfect calibration")
    ax.bar([(b["low"] + b["high"]) / 2 for b in bins], [b["accuracy"] for b in bins], width=0.09,
           color=PALETTE[0], alpha=0.35, label="share right per bin")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", color=PALETTE[0],
            label=f"{label or 'top word'} (ECE {report['ECE']:.3f})")
    for b in bins:
        ax.annotate(str(b["items"]), ((b["low"] + b["high"]) / 2, b["accuracy"]), textcoords="offset points",
                    xytext=(0, 4), ha="center", fontsize=7, color="#555555")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("calibrated confidence of the top word")
    ax.set_ylabel("share whose top word is in the ground truth")
    ax.legend(fontsize=7, loc="upper left")
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def plot_ratings(scores, ax=None):
    """Precision-H@1 and @k per source with their 95% bootstrap intervals (controls hatched).

    Args:
        scores: a ``RatingScores`` (``lavise rate-score``).
        ax: axes to draw on (default: a new figure).

    Returns:
        ``(fig, ax)``.
    """
    import numpy as np

    fig, ax = _new(ax, (5.5, 3.6))
    rows = scores.precision
    x = np.arange(len(rows))
    for j, (col, label) in enumerate((("P@1", "Precision-H@1"), ("P@k", f"Precision-H@{scores.k}"))):
        vals = np.array([r[col] for r in rows], dtype=float)
        ci = np.array([r[f"{col}_ci"] for r in rows], dtype=float).reshape(len(rows), 2)
        err = np.abs(np.stack([vals - ci[:, 0], ci[:, 1] - vals]))
        bars = ax.bar(x + (j - 0.5) * 0.38, np.nan_to_num(vals), 0.36, yerr=np.nan_to_num(err), capsize=3,
                      color=PALETTE[j], label=label)
        for b, r in zip(bars, rows):
            if r["source"] in scores.control:
                b.set_hatch("//")
                b.set_alpha(0.6)
    ax.set_xticks(x, [r["source"] + (" (control)" if r["source"] in scores.control else "") for r in rows])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of words judged right")
    ax.legend(fontsize=8, loc="upper right")
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def plot_preference(scores, ax=None):
    """Which list raters preferred: the run's, neither, or the other source's, per compared source.

    Args:
        scores: a ``RatingScores`` with preference rows.
        ax: axes to draw on (default: a new figure).

    Returns:
        ``(fig, ax)``.
    """
    fig, ax = _new(ax, (5.5, 0.6 + 0.5 * max(1, len(scores.preference))))
    names = [r["other"] + (" (control)" if r["other"] in scores.control else "") for r in scores.preference]
    left = [0.0] * len(names)
    for col, label, colour in (("run", f"{scores.run_source} better", PALETTE[0]), ("same", "about the same", "#bbbbbb"),
                               ("other_share", "other better", PALETTE[1])):
        vals = [r[col] for r in scores.preference]
        ax.barh(names, vals, left=left, height=0.5, color=colour, label=label)
        left = [a + b for a, b in zip(left, vals)]
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"share of judgements ({scores.run_source} against …)")
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Save a figure atomically as PNG and close it."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return path
