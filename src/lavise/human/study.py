"""A human rating study of a run's explanations: which filters, which descriptions, which items, and the page.

``build_study`` samples filters (stratified by the run's confidence, seeded), gathers every source's top-k words
for them (the run's, any other method's ``unit,word`` CSV, and a shuffled control: another sampled filter's
words), and lays out the paper's two tasks (§4.4): *is this word a description of the highlighted regions*
(yes / no, each word once, sources blind and shuffled) and *which of two lists describes them better* (the run
against each other source, sides at random). Attention checks are mixed in: a confident filter's images shown with
another filter's words, whose expected answers are known. The page (``index.html``) is one self-contained file that
works offline; the answer key (``key.json``: which source gave which word, which side is which) stays beside it,
out of the raters' sight, for ``lavise rate-score``.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LaviseError
from ..io import read_json, write_json, write_text

PAGE_FILE = "index.html"
KEY_FILE = "key.json"
KEY_FORMAT = "lavise-rating-study"
RUN_SOURCE = "lavise"
CONTROL_SOURCE = "shuffled"
WORD_COLUMNS = ("word", "label", "description", "concept")


class StudyError(LaviseError):
    """A rating study or a ratings file cannot be built or read."""


@dataclass(frozen=True)
class LabelSource:
    """Ranked descriptions of filters from one method: ``words[unit]`` best first."""

    name: str
    words: dict[int, list[str]]
    origin: str = ""


def norm(word: str) -> str:
    """The form two sources' words are matched on (one judgement serves both)."""
    return " ".join(str(word).lower().replace("_", " ").split())


def read_labels(path: str | Path, name: str | None = None, layer: str | None = None) -> LabelSource:
    """Another method's descriptions from a CSV file with a ``unit`` column and a word column.

    The word column is the first of ``word``, ``label``, ``description``, ``concept`` present, so lavise's
    ``explanations.csv`` and ``lavise dissect`` CSVs, NetDissect-Lite's ``tally.csv`` and CLIP-Dissect's
    descriptions read as they are. Rows keep file order unless a ``rank`` column orders them; a ``layer`` column
    keeps the rows of ``layer``. Units are lavise's 0-based filter indices, except in a NetDissect-Lite tally
    (header ``unit,category,label,score``), whose 1-based units are shifted.

    Args:
        path: the CSV file.
        name: the source's name in the results (default: the file's stem).
        layer: the run's layer, to pick rows from a file of several layers.

    Returns:
        a ``LabelSource``.
    """
    p = Path(path)
    if not p.is_file():
        raise StudyError(f"labels file not found: {p} (give a CSV with columns unit,word)")
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = [f.strip() for f in (reader.fieldnames or [])]
            rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in reader]
    except (UnicodeDecodeError, csv.Error) as e:
        raise StudyError(f"{p} is not a readable CSV file ({e}); give columns unit,word") from None
    col = next((c for c in WORD_COLUMNS if c in fields), None)
    if "unit" not in fields or col is None:
        raise StudyError(f"{p} has columns {', '.join(fields) or '(none)'}; it needs a 'unit' column and one of "
                         f"{', '.join(WORD_COLUMNS)}")
    tally = fields[:4] == ["unit", "category", "label", "score"]
    if layer is not None and "layer" in fields:
        layers = {r["layer"] for r in rows}
        if layer not in layers:
            raise StudyError(f"{p} has no rows of layer {layer!r} (it has {', '.join(sorted(layers))}); "
                             "give the labels of the run's layer")
        rows = [r for r in rows if r["layer"] == layer]
    words: dict[int, list[tuple[float, int, str]]] = {}
    for i, r in enumerate(rows, 2):
        try:
            unit = int(float(r["unit"])) - (1 if tally else 0)
            rank = float(r["rank"]) if r.get("rank") else float(i)
        except ValueError:
            raise StudyError(f"{p} line {i}: unit {r['unit']!r} or rank is not a number") from None
        if unit < 0:
            raise StudyError(f"{p} line {i}: unit {unit} is negative; units are the layer's 0-based filter indices")
        if r[col] and r.get("interpretable", "1") not in ("0", "False", "false"):
            words.setdefault(unit, []).append((rank, i, r[col]))
    if not words:
        raise StudyError(f"{p} gives no words (every {col!r} cell is empty)")
    ranked = {u: _dedupe([w for *_, w in sorted(v)]) for u, v in words.items()}
    return LabelSource(name or p.stem, ranked, str(p))


def run_labels(explanations, name: str = RUN_SOURCE) -> LabelSource:
    """The run's own words, as a ``LabelSource``."""
    return LabelSource(name, {f.unit: _dedupe(f.top_words) for f in explanations.filters if f.words and not f.dead},
                       "explanations.json")


def _dedupe(words: list[str]) -> list[str]:
    seen, out = set(), []
    for w in words:
        if norm(w) and norm(w) not in seen:
            seen.add(norm(w))
            out.append(w)
    return out


# ----------------------------------------------------------------------------------------------
# sampling and items
# ----------------------------------------------------------------------------------------------

def stratified_sample(units: list[int], strength: np.ndarray, n: int, rng: np.random.Generator,
                      strata: int = 4) -> tuple[list[int], list[int]]:
    """``n`` units, as evenly as possible from each of ``strata`` equal groups by ``strength`` (ties by unit).

    Returns:
        the chosen units (sorted) and each one's stratum (0 = weakest).
    """
    order = sorted(range(len(units)), key=lambda i: (strength[i], units[i]))
    groups = [list(g) for g in np.array_split(np.array(order, dtype=int), min(strata, max(1, len(units))))]
    want = [0] * len(groups)
    left = min(n, len(units))
    while left:  # round robin: a small stratum's share goes to the others
        for g in range(len(groups)):
            if left and want[g] < len(groups[g]):
                want[g] += 1
                left -= 1
    chosen = []
    for g, (idx, k) in enumerate(zip(groups, want)):
        chosen += [(units[i], g) for i in rng.choice(idx, size=k, replace=False)] if k else []
    chosen.sort()
    return [u for u, _ in chosen], [g for _, g in chosen]


def _far_filter(u: int, pool: list[int], words: dict[int, list[str]], images: dict[int, list[str]], k: int,
                rng: np.random.Generator) -> int | None:
    """A filter whose top two words are not among u's top k, nor u's top word among its top k, sharing as few top
    images with u as possible: its words should not describe u's images."""
    mine = {norm(w) for w in words[u][:k]}
    cand = [v for v in pool if v != u and not mine & {norm(w) for w in words[v][:2]}
            and norm(words[u][0]) not in {norm(w) for w in words[v][:k]}]
    if not cand:
        return None
    overlap = np.array([len(set(images[u]) & set(images[v])) for v in cand])
    best = [v for v, o in zip(cand, overlap) if o == overlap.min()]
    return int(rng.choice(best))


@dataclass(frozen=True)
class StudyPlan:
    """What the page shows (``items``: no source names) and the answer key (``key``)."""

    items: list[dict]
    key: dict


def plan_study(sources: list[LabelSource], images: dict[int, list[str]], strength: dict[int, float],
               filters: int = 40, words: int = 5, checks: int = 3, control: bool = True,
               seed: int = 0, strata_by: str = "confidence") -> StudyPlan:
    """Sample filters and lay out the items of both tasks and the attention checks.

    Args:
        sources: the run's words first, then the other methods'.
        images: each filter's image keys (its top images), most active first.
        strength: each filter's stratification value (the run's confidence, else its top word's vote share).
        filters: filters to sample.
        words: top words per source shown (the paper's top-5).
        checks: attention checks per task.
        control: add the ``shuffled`` control source (another sampled filter's run words).
        seed: the sampling and shuffling seed.
        strata_by: what ``strength`` is, for the key (``confidence`` or ``vote share``).

    Returns:
        a ``StudyPlan``.
    """
    rng = np.random.default_rng(seed)
    run = sources[0]
    if len({s.name for s in sources}) != len(sources) or CONTROL_SOURCE in {s.name for s in sources[1:]} and control:
        raise StudyError(f"source names must differ ({', '.join(s.name for s in sources)}); name them with "
                         "--against NAME=FILE")
    eligible = sorted(u for u in run.words if u in images and images[u] and all(s.words.get(u) for s in sources))
    if len(eligible) < 2:
        missing = ", ".join(s.name for s in sources if not set(run.words) & set(s.words))
        raise StudyError(f"{len(eligible)} filter(s) have words from every source and images; a study needs at "
                         "least 2" + (f" (no filter in common with {missing}: check its units)" if missing else ""))
    chosen, strata = stratified_sample(eligible, np.array([strength.get(u, 0.0) for u in eligible]), filters, rng)
    srcs = list(sources)
    if control:
        perm = _derangement(len(chosen), rng)
        srcs.append(LabelSource(CONTROL_SOURCE, {u: run.words[chosen[j]] for u, j in zip(chosen, perm)},
                                "another sampled filter's words"))
    top = {s.name: {u: s.words[u][:words] for u in chosen} for s in srcs}

    word_items, pair_items, key_items = [], [], {}
    for i, u in enumerate(chosen):
        shown: dict[str, dict] = {}
        for s in srcs:
            for r, w in enumerate(top[s.name][u], 1):
                shown.setdefault(norm(w), {"word": w, "sources": {}})["sources"][s.name] = r
        order = rng.permutation(len(shown))
        ws = [list(shown.values())[j] for j in order]
        word_items.append({"id": f"w{i}", "kind": "words", "unit": u, "images": images[u], "words": [w["word"] for w in ws]})
        key_items[f"w{i}"] = {"kind": "words", "unit": u, "stratum": strata[i],
                              "words": {w["word"]: w["sources"] for w in ws}}
        for j, s in enumerate(srcs[1:], 1):
            a, b = (run.name, s.name) if rng.random() < 0.5 else (s.name, run.name)
            if [norm(w) for w in top[a][u]] == [norm(w) for w in top[b][u]]:
                continue  # identical lists: nothing to choose
            pid = f"p{i}_{j}"
            pair_items.append({"id": pid, "kind": "pair", "unit": u, "images": images[u],
                               "lists": {"A": top[a][u], "B": top[b][u]}})
            key_items[pid] = {"kind": "pair", "unit": u, "stratum": strata[i], "A": a, "B": b}

    # attention checks: the most confident filters' images with a far filter's words
    confident = sorted(eligible, key=lambda u: (-strength.get(u, 0.0), u))
    made = {"words": 0, "pair": 0}
    for u in confident:
        if made["words"] >= checks and made["pair"] >= checks:
            break
        v = _far_filter(u, eligible, run.words, images, words, rng)
        if v is None:
            continue
        own, other = run.words[u][:words], run.words[v][:words]
        if made["words"] < checks:
            cid = f"cw{made['words']}"
            ws = own[:2] + other[:2]
            ws = [ws[j] for j in rng.permutation(len(ws))]
            word_items.append({"id": cid, "kind": "words", "unit": u, "images": images[u], "words": ws})
            key_items[cid] = {"kind": "words", "unit": u, "check": True, "other": v,
                              "expect": {w: "no" for w in other[:2]}}
            made["words"] += 1
        elif made["pair"] < checks:
            cid = f"cp{made['pair']}"
            own_side = "A" if rng.random() < 0.5 else "B"
            lists = {own_side: own, ("B" if own_side == "A" else "A"): other}
            pair_items.append({"id": cid, "kind": "pair", "unit": u, "images": images[u], "lists": lists})
            key_items[cid] = {"kind": "pair", "unit": u, "check": True, "other": v, "expect": own_side}
            made["pair"] += 1
    items = [word_items[j] for j in rng.permutation(len(word_items))] + \
            [pair_items[j] for j in rng.permutation(len(pair_items))]
    for it in items:
        del it["unit"]  # the page does not say which filter, so raters cannot match items up
    key = {"sources": [s.name for s in srcs], "origins": {s.name: s.origin for s in srcs},
           "control": [CONTROL_SOURCE] if control else [], "run_source": run.name, "words": words,
           "seed": seed, "filters": chosen, "eligible": len(eligible),
           "strata": len(set(strata)), "strata_by": strata_by, "checks": made, "items": key_items,
           "order": [it["id"] for it in items]}
    return StudyPlan(items, key)


def _derangement(n: int, rng: np.random.Generator) -> list[int]:
    """A seeded permutation with no fixed point (n >= 2): each filter gets another filter's words."""
    while True:
        p = rng.permutation(n)
        if not np.any(p == np.arange(n)):
            return [int(x) for x in p]


def study_id(key: dict) -> str:
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def write_page(out: Path, plan: StudyPlan, image_src: dict[str, str], context: dict) -> Path:
    """Render ``index.html`` (items, images as data URIs, the script) and ``key.json`` into ``out``."""
    import jinja2

    key = dict(plan.key)
    key["study"] = study_id(key)
    used = sorted({k for it in plan.items for k in it["images"]})
    missing = [k for k in used if k not in image_src]
    if missing:
        raise StudyError(f"{len(missing)} image(s) of the sampled filters could not be drawn, e.g. {missing[0]}")
    data = {"study": key["study"], "items": plan.items, "images": {k: image_src[k] for k in used},
            "title": context["title"], "words": key["words"]}
    env = jinja2.Environment(loader=jinja2.PackageLoader("lavise", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]))
    # the JSON sits in a <script type="application/json">: "</" must not close it
    payload = json.dumps(data, ensure_ascii=True).replace("</", "<\\/")
    html = env.get_template("rate.html.j2").render(data=payload, **context)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / KEY_FILE, {"format": KEY_FORMAT, "version": 1, **key, **{"run": context["run"]}})
    write_text(out / PAGE_FILE, html)
    return out / PAGE_FILE


def load_key(study: str | Path) -> dict:
    """The answer key of a study folder (or its ``key.json``)."""
    p = Path(study)
    p = p / KEY_FILE if p.is_dir() else p
    if not p.is_file():
        raise StudyError(f"no rating study at {study} ({KEY_FILE} is missing); make one with `lavise rate RUN --out DIR`")
    key = read_json(p, StudyError, "study key")
    if not isinstance(key, dict) or key.get("format") != KEY_FORMAT:
        raise StudyError(f"{p} is not a lavise rating study key; make one with `lavise rate RUN --out DIR`")
    return key


