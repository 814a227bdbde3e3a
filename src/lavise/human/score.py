"""``lavise rate-score``: the paper's Precision-H and preference shares from raters' files, with bootstrap
intervals, inter-rater agreement and attention-check exclusion.

Definitions (the paper's §4.4, made exact):

* A word's rating is the median over the kept raters of their yes (1) / no (0) answers (0.5 on an even split).
* Precision-H@1 of a source: the mean over filters of its top word's rating; Precision-H@k: the mean over filters
  of the mean rating of its first k words (fewer where the source gives fewer). A filter counts where the words
  have at least one kept rating.
* Preference: the share of kept raters' judgements of the run's list against another source's in which the run's
  list was chosen, the other's, or neither ("about the same").
* Intervals: 95% percentile bootstrap over filters (every source resampled with the same filters).
* Agreement: Krippendorff's alpha, nominal, over the kept raters (words: yes / no per word; pairs: A / B / same).
* A rater is excluded when the share of attention checks passed is below ``min_pass`` (or no check was answered).
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..io import write_json, write_text
from .study import StudyError, load_key, norm

ANSWERS = {"words": {"yes", "no"}, "pair": {"A", "B", "same"}}
SCORES_FILE = "scores"


def read_ratings(paths: list[str | Path], study: str) -> list[dict]:
    """Every judgement of the ratings files (JSON as the page downloads it, or its CSV), latest answer per
    (rater, item, option).

    Args:
        paths: ratings files.
        study: the study id they must belong to.

    Returns:
        rows ``{"rater", "item", "option", "answer", "time", "ms", "file"}``.
    """
    latest: dict[tuple, dict] = {}
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise StudyError(f"ratings file not found: {p}")
        try:
            if p.suffix.lower() == ".csv":
                with p.open(newline="", encoding="utf-8-sig") as fh:
                    rows = list(csv.DictReader(fh))
                file_study = {r.get("study") for r in rows} - {None, ""}
            else:
                d = json.loads(p.read_text(encoding="utf-8"))
                rows = d["rows"] if isinstance(d, dict) else d
                file_study = {d.get("study")} if isinstance(d, dict) else {r.get("study") for r in rows}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, csv.Error) as e:
            raise StudyError(f"{p} is not a ratings file downloaded from a lavise rating page ({e})") from None
        if file_study - {study}:
            raise StudyError(f"{p} holds ratings of study {', '.join(sorted(map(str, file_study - {study})))}, not of "
                             f"this study ({study}); score it with that study's folder")
        for i, r in enumerate(rows):
            if not isinstance(r, dict) or not all(k in r for k in ("rater", "item", "option", "answer")):
                raise StudyError(f"{p} row {i + 1} lacks rater, item, option or answer")
            row = {"rater": str(r["rater"]), "item": str(r["item"]), "option": str(r["option"] or ""),
                   "answer": str(r["answer"]), "time": str(r.get("time", "")), "ms": r.get("ms"),
                   "page": r.get("page"), "file": p.name}
            k = (row["rater"], row["item"], row["option"])
            if k not in latest or row["time"] >= latest[k]["time"]:
                latest[k] = row
    return list(latest.values())


def krippendorff_alpha(units: list[list[str]]) -> float:
    """Krippendorff's alpha for nominal data.

    Args:
        units: for each unit, the values the raters gave it (units with fewer than two values are not pairable).

    Returns:
        alpha (nan when fewer than two pairable values or only one value is ever used).
    """
    units = [u for u in units if len(u) >= 2]
    cats = sorted({v for u in units for v in u})
    if not units or len(cats) < 2:
        return float("nan")
    idx = {c: i for i, c in enumerate(cats)}
    o = np.zeros((len(cats), len(cats)))
    for u in units:
        counts = np.bincount([idx[v] for v in u], minlength=len(cats)).astype(float)
        o += (np.outer(counts, counts) - np.diag(counts)) / (len(u) - 1)
    n_c = o.sum(1)
    n = n_c.sum()
    disagree = o.sum() - np.trace(o)
    expected = (n_c.sum() ** 2 - (n_c ** 2).sum())
    return float(1 - (n - 1) * disagree / expected)


def _ci(boot: np.ndarray) -> list[float]:
    return [float(np.nanpercentile(boot, 2.5)), float(np.nanpercentile(boot, 97.5))] if boot.size else [np.nan, np.nan]


@dataclass(frozen=True)
class RatingScores:
    """The scores of a rating study."""

    study: str
    k: int
    run_source: str
    control: list[str]
    precision: list[dict]
    preference: list[dict]
    agreement: dict
    raters: list[dict]
    settings: dict = field(default_factory=dict)
    per_filter: list[dict] = field(default_factory=list)  # {"unit", "stratum", "source", "P@1", "P@k"}

    def table(self) -> str:
        """Markdown: Precision-H per source, preference per pair, raters, agreement."""
        k = self.k

        def f(v, ci=None):
            if v is None or (isinstance(v, float) and np.isnan(v)):
                return "-"
            return f"{v:.3f}" + (f" ({ci[0]:.3f}–{ci[1]:.3f})" if ci is not None and not np.isnan(ci[0]) else "")

        lines = [f"| source | Precision-H@1 (95% CI) | Precision-H@{k} (95% CI) | filters | words rated |",
                 "|---|---|---|---|---|"]
        for r in self.precision:
            name = r["source"] + (" (control)" if r["source"] in self.control else "")
            lines.append(f"| {name} | {f(r['P@1'], r['P@1_ci'])} | {f(r['P@k'], r['P@k_ci'])} | {r['filters']} | "
                         f"{r['words']} |")
        if self.preference:
            lines += ["", f"| {self.run_source} against | {self.run_source} better (95% CI) | about the same | "
                          "other better (95% CI) | judgements | filters |", "|---|---|---|---|---|---|"]
            for r in self.preference:
                name = r["other"] + (" (control)" if r["other"] in self.control else "")
                lines.append(f"| {name} | {f(r['run'], r['run_ci'])} | {f(r['same'])} | {f(r['other_share'], r['other_ci'])}"
                             f" | {r['judgements']} | {r['filters']} |")
        strata = sorted({r["stratum"] for r in self.per_filter if r["stratum"] is not None})
        if len(strata) > 1:  # does the run's own confidence (or vote share) sort its filters as raters do?
            by = [[r["P@1"] for r in self.per_filter if r["source"] == self.run_source and r["stratum"] == g
                   and r["P@1"] is not None] for g in strata]
            lines += ["", f"{self.run_source}'s Precision-H@1 by the sampling stratum, weakest to strongest "
                          f"({self.settings.get('strata_by', 'confidence')}): "
                          + " / ".join(f"{np.mean(b):.3f} ({len(b)})" if b else "-" for b in by) + "."]
        kept = [r for r in self.raters if r["kept"]]
        out = [r for r in self.raters if not r["kept"]]
        lines += ["", f"Raters: {len(kept)} kept of {len(self.raters)}"
                  + (f"; excluded (attention checks passed below {self.settings.get('min_pass')}): "
                     + ", ".join(f"{r['rater']} ({r['checks_passed']} of {r['checks']})" for r in out) if out else "")
                  + ".",
                  f"Agreement (Krippendorff's alpha, nominal, kept raters): words {f(self.agreement.get('words'))} over "
                  f"{self.agreement.get('word_units', 0)} words rated twice or more; pairs {f(self.agreement.get('pairs'))} "
                  f"over {self.agreement.get('pair_units', 0)} pairs."]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return asdict(self)

    def per_filter_csv(self) -> str:
        """One row per (filter, source): its Precision-H@1 and @k (empty where unrated)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["unit", "stratum", "source", "precision_h_at_1", f"precision_h_at_{self.k}"])
        for r in self.per_filter:
            w.writerow([r["unit"], r["stratum"], r["source"],
                        *("" if v is None else f"{v:.4g}" for v in (r["P@1"], r["P@k"]))])
        return buf.getvalue()

    def save(self, out: str | Path) -> Path:
        """Write ``scores.json``, ``scores.md``, ``scores.png`` and ``scores-per-filter.csv`` into ``out``;
        returns the JSON path."""
        import matplotlib.pyplot as plt

        from ..plots import plot_preference, plot_ratings, save_figure

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / f"{SCORES_FILE}.json", json.loads(json.dumps(self.to_dict(), default=float).replace("NaN", "null")))
        write_text(out / f"{SCORES_FILE}-per-filter.csv", self.per_filter_csv())
        write_text(out / f"{SCORES_FILE}.md", f"# Human ratings of study {self.study}\n\n{self.table()}\n")
        fig, axes = plt.subplots(1, 2 if self.preference else 1, figsize=(10 if self.preference else 5.5, 3.6),
                                 layout="constrained", squeeze=False)
        plot_ratings(self, ax=axes[0, 0])
        if self.preference:
            plot_preference(self, ax=axes[0, 1])
        save_figure(fig, out / f"{SCORES_FILE}.png")
        return out / f"{SCORES_FILE}.json"


def score_ratings(study: str | Path, ratings: list[str | Path], min_pass: float = 0.75, bootstrap: int = 2000,
                  seed: int = 0) -> RatingScores:
    """Score raters' files against a study's answer key.

    Args:
        study: the study folder (from ``lavise rate``) or its ``key.json``.
        ratings: the raters' downloaded files (JSON or CSV).
        min_pass: the share of attention checks a rater must pass to be kept.
        bootstrap: bootstrap resamples of the filters for the intervals (0: none).
        seed: bootstrap seed.

    Returns:
        ``RatingScores``.
    """
    if not ratings:
        raise StudyError("give at least one ratings file (downloaded from the study's page)")
    if not 0 <= min_pass <= 1:
        raise StudyError(f"min_pass is a share of checks, between 0 and 1 (got {min_pass})")
    key = load_key(study)
    items = key["items"]
    rows = read_ratings(ratings, key["study"])
    for r in rows:
        it = items.get(r["item"])
        if it is None:
            raise StudyError(f"{r['file']}: item {r['item']!r} is not in this study; were the ratings made on "
                             "another version of the page?")
        if r["answer"] not in ANSWERS[it["kind"]]:
            raise StudyError(f"{r['file']}: answer {r['answer']!r} to item {r['item']} is not one of "
                             f"{', '.join(sorted(ANSWERS[it['kind']]))}")

    raters = _check_raters(rows, items, min_pass)
    kept = {r["rater"] for r in raters if r["kept"]}
    use = [r for r in rows if r["rater"] in kept and not items[r["item"]].get("check")]
    # the kept raters' answers per rated unit: (item, word) on words pages, the item on list pages
    word_units: dict[tuple, list[str]] = {}
    pair_units: dict[str, list[str]] = {}
    for r in use:
        if items[r["item"]]["kind"] == "words":
            word_units.setdefault((r["item"], norm(r["option"])), []).append(r["answer"])
        else:
            pair_units.setdefault(r["item"], []).append(r["answer"])
    k = int(key["words"])
    sources = key["sources"]
    # per filter and source: the ratings of its ranked words
    per_filter: dict[int, dict[str, dict[int, float]]] = {}
    for iid, it in items.items():
        if it["kind"] != "words" or it.get("check"):
            continue
        for word, by in it["words"].items():
            got = word_units.get((iid, norm(word)))
            if not got:
                continue
            rating = float(np.median([a == "yes" for a in got]))
            for s, rank in by.items():
                per_filter.setdefault(it["unit"], {}).setdefault(s, {})[int(rank)] = rating
    units = sorted(per_filter)
    p1 = np.full((len(sources), len(units)), np.nan)
    pk = np.full((len(sources), len(units)), np.nan)
    for j, u in enumerate(units):
        for i, s in enumerate(sources):
            ranks = per_filter[u].get(s, {})
            if 1 in ranks:
                p1[i, j] = ranks[1]
            top = [v for r, v in ranks.items() if r <= k]
            if top:
                pk[i, j] = float(np.mean(top))
    rng = np.random.default_rng(seed)
    boots = [rng.integers(0, len(units), len(units)) for _ in range(bootstrap)] if units else []

    def mean_ci(vals: np.ndarray) -> tuple[float, list[float]]:
        if not np.isfinite(vals).any():
            return float("nan"), [float("nan")] * 2
        b = np.array([np.nanmean(vals[ix]) if np.isfinite(vals[ix]).any() else np.nan for ix in boots])
        return float(np.nanmean(vals)), _ci(b)

    precision = []
    for i, s in enumerate(sources):
        m1, c1 = mean_ci(p1[i])
        mk, ck = mean_ci(pk[i])
        precision.append({"source": s, "P@1": m1, "P@1_ci": c1, "P@k": mk, "P@k_ci": ck,
                          "filters": int(np.isfinite(pk[i]).sum()),
                          "words": int(sum(len(per_filter[u].get(s, {})) for u in units))})

    preference = []
    run = key["run_source"]
    for other in sources:
        if other == run:
            continue
        by_unit: dict[int, list[str]] = {}
        for r in use:
            it = items[r["item"]]
            if it["kind"] == "pair" and {it["A"], it["B"]} == {run, other}:
                by_unit.setdefault(it["unit"], []).append("same" if r["answer"] == "same" else
                                                          ("run" if it[r["answer"]] == run else "other"))
        pu = sorted(by_unit)
        if not pu:
            continue
        counts = np.array([[by_unit[u].count(c) for c in ("run", "same", "other")] for u in pu], dtype=float)
        share = counts.sum(0) / counts.sum()
        pb = [rng.integers(0, len(pu), len(pu)) for _ in range(bootstrap)]
        bs = np.array([counts[ix].sum(0) / counts[ix].sum() for ix in pb]) if pb else np.zeros((0, 3))
        preference.append({"other": other, "run": float(share[0]), "same": float(share[1]),
                           "other_share": float(share[2]), "run_ci": _ci(bs[:, 0]), "other_ci": _ci(bs[:, 2]),
                           "judgements": int(counts.sum()), "filters": len(pu)})

    agreement = {"words": krippendorff_alpha(list(word_units.values())),
                 "word_units": sum(len(v) >= 2 for v in word_units.values()),
                 "pairs": krippendorff_alpha(list(pair_units.values())),
                 "pair_units": sum(len(v) >= 2 for v in pair_units.values())}
    strata = {it["unit"]: it.get("stratum") for it in items.values() if it["kind"] == "words" and not it.get("check")}
    rows_out = [{"unit": u, "stratum": strata.get(u), "source": s,
                 "P@1": None if np.isnan(p1[i, j]) else float(p1[i, j]),
                 "P@k": None if np.isnan(pk[i, j]) else float(pk[i, j])}
                for j, u in enumerate(units) for i, s in enumerate(sources)]
    return RatingScores(key["study"], k, run, list(key.get("control", [])), precision, preference, agreement, raters,
                        {"min_pass": min_pass, "bootstrap": bootstrap, "seed": seed,
                         "strata_by": key.get("strata_by", "confidence"),
                         "files": [str(p) for p in ratings], "judgements": len(rows)}, rows_out)


def _check_raters(rows: list[dict], items: dict, min_pass: float) -> list[dict]:
    """Per rater: attention checks answered and passed, judgements, kept or not."""
    any_checks = any(it.get("check") for it in items.values())
    answers: dict[str, dict[tuple, str]] = {}
    for r in rows:
        answers.setdefault(r["rater"], {})[(r["item"], r["option"])] = r["answer"]
    out = []
    for rater in sorted(answers):
        got = answers[rater]
        seen = sorted({i for i, _ in got if items[i].get("check")})
        passed = 0
        for i in seen:
            it = items[i]
            if it["kind"] == "pair":
                passed += got.get((i, "")) == it["expect"]
            else:
                passed += all(got.get((i, w)) == a for w, a in it["expect"].items())
        share = passed / len(seen) if seen else None
        kept = (not any_checks) or (share is not None and share >= min_pass)
        out.append({"rater": rater, "judgements": sum(not items[i].get("check") for i, _ in got),
                    "checks": len(seen), "checks_passed": passed, "kept": bool(kept)})
    return out
