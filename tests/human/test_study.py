"""The study's plan: labels read from other tools' files, stratified sampling, blind items, the answer key."""
from __future__ import annotations

import numpy as np
import pytest

from lavise.human import LabelSource, StudyError, plan_study, read_labels
from lavise.human.study import _derangement, norm, stratified_sample


def test_labels_from_each_tool_format(tmp_path):
    p = tmp_path / "explanations.csv"  # lavise explain: rank orders the rows
    p.write_text("layer,unit,rank,word,score\nL,0,2,grass,0.1\nL,0,1,dog,0.3\nL,1,1,cat,0.5\nM,0,1,fish,0.9\n")
    assert read_labels(p, layer="L").words == {0: ["dog", "grass"], 1: ["cat"]}
    with pytest.raises(StudyError, match="no rows of layer 'Z'"):
        read_labels(p, layer="Z")
    p = tmp_path / "dissect.csv"  # lavise dissect: uninterpretable units give no label
    p.write_text("layer,unit,concept,iou,interpretable\nL,0,dog,0.08,1\nL,1,cat,0.01,0\n")
    src = read_labels(p, "netdissect", layer="L")
    assert src.name == "netdissect" and src.words == {0: ["dog"]}
    p = tmp_path / "tally.csv"  # NetDissect-Lite: 1-based units
    p.write_text("unit,category,label,score,object-label\n3,object,car,0.12,car\n1,object,sky,0.2,sky\n")
    assert read_labels(p).words == {2: ["car"], 0: ["sky"]}
    p = tmp_path / "clip.csv"  # CLIP-Dissect
    p.write_text("layer,unit,description,similarity\nlayer4,5,Stripes,0.3\nlayer4,5,stripes,0.2\n")
    assert read_labels(p).words == {5: ["Stripes"]}  # the same word twice is one word


def test_bad_label_files(tmp_path):
    with pytest.raises(StudyError, match="labels file not found"):
        read_labels(tmp_path / "none.csv")
    p = tmp_path / "x.csv"
    p.write_text("filter,name\n0,dog\n")
    with pytest.raises(StudyError, match="needs a 'unit' column"):
        read_labels(p)
    p.write_text("unit,word\nfirst,dog\n")
    with pytest.raises(StudyError, match="line 2: unit 'first'"):
        read_labels(p)
    p.write_text("unit,word\n0,\n")
    with pytest.raises(StudyError, match="gives no words"):
        read_labels(p)


def test_stratified_sample_takes_evenly_from_each_quartile():
    units = list(range(40))
    strength = np.arange(40)[::-1] / 40.0  # unit 0 strongest
    chosen, strata = stratified_sample(units, strength, 8, np.random.default_rng(0))
    assert len(chosen) == 8 and sorted(chosen) == chosen
    assert [strata.count(g) for g in range(4)] == [2, 2, 2, 2]
    for u, g in zip(chosen, strata):  # stratum 0 holds the weakest ten (units 30-39)
        assert u // 10 == 3 - g
    again, _ = stratified_sample(units, strength, 8, np.random.default_rng(0))
    assert again == chosen
    assert stratified_sample(units, strength, 99, np.random.default_rng(1))[0] == units
    # uneven: 10 from 4 strata of 10 -> 3, 3, 2, 2
    _, strata = stratified_sample(units, strength, 10, np.random.default_rng(0))
    assert sorted(strata.count(g) for g in range(4)) == [2, 2, 3, 3]


def test_derangement_has_no_fixed_point():
    rng = np.random.default_rng(0)
    for n in (2, 3, 10):
        p = _derangement(n, rng)
        assert sorted(p) == list(range(n)) and all(p[i] != i for i in range(n))


def _sources(n=30):
    run = LabelSource("lavise", {u: [f"w{u}", f"w{u + 1}", "common", f"x{u}"] for u in range(n)})
    other = LabelSource("nd", {u: [f"w{u}"] if u % 3 else ["Common"] for u in range(n)})
    return run, other


def test_plan_is_blind_complete_and_keyed():
    run, other = _sources()
    images = {u: [f"{u}:img{u}", f"{u}:img{u + 100}"] for u in range(30)}
    strength = {u: u / 30 for u in range(30)}
    plan = plan_study([run, other], images, strength, filters=12, words=3, checks=2, seed=3)
    key, items = plan.key, {it["id"]: it for it in plan.items}
    assert len(key["filters"]) == 12 and key["sources"] == ["lavise", "nd", "shuffled"]
    assert key["order"] == [it["id"] for it in plan.items]
    for it in plan.items:  # nothing on the page says which filter or which source
        assert "unit" not in it and set(it) <= {"id", "kind", "images", "words", "lists"}
    words_items = [i for i, k in key["items"].items() if k["kind"] == "words" and not k.get("check")]
    assert len(words_items) == 12
    for iid in words_items:
        k, shown = key["items"][iid], items[iid]
        u = k["unit"]
        assert shown["images"] == images[u]
        assert sorted(shown["words"]) == sorted(k["words"])
        # every source's top-3 words, each once (one judgement serves two sources)
        for s in ("lavise", "nd"):
            src = run if s == "lavise" else other
            got = sorted((r, w) for w, by in k["words"].items() for name, r in by.items() if name == s)
            assert [norm(w) for _, w in got] == [norm(w) for w in src.words[u][:3]]
        assert len({norm(w) for w in shown["words"]}) == len(shown["words"])
    # the shuffled control gives each filter another sampled filter's words
    for iid in words_items:
        k = key["items"][iid]
        ctrl = [w for w, by in sorted(k["words"].items(), key=lambda x: x[1].get("shuffled", 9)) if "shuffled" in by]
        donors = [v for v in key["filters"] if v != k["unit"] and [norm(w) for w in run.words[v][:3]] == [norm(w) for w in ctrl]]
        assert donors
    pairs = [k for k in key["items"].values() if k["kind"] == "pair" and not k.get("check")]
    assert {p["A"] for p in pairs} == {"lavise", "nd", "shuffled"}  # sides are shuffled
    assert all("lavise" in (p["A"], p["B"]) for p in pairs)
    for iid, k in key["items"].items():
        if k["kind"] == "pair" and not k.get("check"):
            assert items[iid]["lists"]["A"] == [w for w in (run if k["A"] == "lavise" else other).words[k["unit"]][:3]] \
                or k["A"] == "shuffled"
    # attention checks: a confident filter's images beside a far filter's words, with the expected answers
    checks = {i: k for i, k in key["items"].items() if k.get("check")}
    assert key["checks"] == {"words": 2, "pair": 2} and len(checks) == 4
    for iid, k in checks.items():
        u, v = k["unit"], k["other"]
        assert not {norm(w) for w in run.words[u][:3]} & {norm(w) for w in run.words[v][:2]}
        assert norm(run.words[u][0]) not in {norm(w) for w in run.words[v][:3]}
        assert items[iid]["images"] == images[u]
        if k["kind"] == "words":
            assert set(k["expect"]) == set(run.words[v][:2]) and set(k["expect"].values()) == {"no"}
        else:
            assert items[iid]["lists"][k["expect"]] == run.words[u][:3]
    again = plan_study([run, other], images, strength, filters=12, words=3, checks=2, seed=3)
    assert again.key == key and again.items == plan.items


def test_plan_errors():
    run, other = _sources(5)
    images = {u: [f"{u}:a"] for u in range(5)}
    with pytest.raises(StudyError, match="no filter in common with far"):
        plan_study([run, LabelSource("far", {99: ["x"]})], images, {}, filters=4)
    with pytest.raises(StudyError, match="source names must differ"):
        plan_study([run, LabelSource("lavise", other.words)], images, {}, filters=4)
