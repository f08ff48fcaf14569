"""Chapter 14 (RAG): the evaluation set is tied to text the course really contains, the shared helpers in
llmprep/rag.py compute what they claim, and every exercise's solution agrees with its library oracle on fresh
random inputs (fast, no sandbox: the solution's own definitions are executed here, in the trusted process)."""
import json
import random
import re
import string
from collections import Counter

import numpy as np
import pytest

from llmprep import rag
from llmprep.grading.spec import solution_source
from llmprep.grading.trusted import spec_module
from llmprep.paths import format_path

CHAPTER = "ch14_rag"
NOTEBOOK = "ch14_exercises.ipynb"


@pytest.fixture(scope="module")
def spec():
    return spec_module(CHAPTER)


@pytest.fixture(scope="module")
def solution():
    """The solution's definitions of every graded function, run on the notebook's set-up cell."""
    nb = json.loads((format_path("solutions") / CHAPTER / NOTEBOOK).read_text(encoding="utf-8"))
    setup = next("".join(c["source"]) for c in nb["cells"]
                 if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "ch14_setup")
    ns: dict = {}
    exec(setup, ns)  # noqa: S102 - trusted source: the repository's own solution notebook
    names = ("ivf_search", "pq_encode", "pq_adc", "mmr", "ndcg_at_k", "assemble_context", "squad_scores",
             "recursive_split")
    exec(solution_source(CHAPTER, NOTEBOOK, names), ns)  # noqa: S102
    return ns


# --------------------------------------------------------------------------- the evaluation set

def test_eval_set_is_large_bilingual_and_well_formed():
    questions = rag.load_eval_set()
    assert len(questions) >= 80
    assert sum(q.lang == "zh" for q in questions) >= 15
    assert len({q.id for q in questions}) == len(questions)
    assert {q.chapter for q in questions} == set(rag.CORPUS_CHAPTERS), "every chapter of the corpus is asked about"
    for q in questions:
        assert q.lang in ("en", "zh") and q.question.strip() and q.answer.strip(), q.id
        assert q.answer in q.evidence, f"{q.id}: the answer is not inside its evidence"
        assert (rag.cjk_share(q.question) > 0.2) == (q.lang == "zh"), f"{q.id}: the language tag is wrong"


@pytest.mark.parametrize("english", [False, True], ids=["both languages", "English paragraphs"])
def test_every_gold_answer_still_occurs_in_the_course_text(english):
    """Fails when an edit of ch01-ch13 removes or rewords a passage a question depends on."""
    docs = rag.course_corpus(english=english)
    for q in rag.load_eval_set():
        doc, start, end = rag.locate(q, docs)  # raises ValueError naming the question
        assert re.sub(r"\s+", " ", doc.text[start:end]) == q.answer, q.id


def test_a_changed_course_text_is_detected():
    q = rag.load_eval_set()[0]
    docs = [rag.Doc(d.chapter, d.cell, d.text.replace(q.answer, "(edited)")) for d in rag.course_corpus((q.chapter,))]
    with pytest.raises(ValueError, match=q.id):
        rag.locate(q, docs)


def test_gold_chunks_hold_the_answer_at_the_default_chunking():
    from llmprep.assets import load_smollm2_tokenizer

    part = ("ch09", "ch13")  # two chapters of the default corpus (the notebook asserts it for all of them)
    docs = rag.course_corpus(part, english=True)
    chunks = rag.split_corpus(docs, load_smollm2_tokenizer(), 128, 16)
    for c in chunks:
        doc = next(d for d in docs if (d.chapter, d.cell) == (c.chapter, c.cell))
        assert doc.text[c.start:c.end] == c.text
    for q in [q for q in rag.load_eval_set() if q.chapter in part]:
        gold = rag.gold_chunk_ids(q, docs, chunks)
        assert gold, f"{q.id}: no chunk holds the whole answer"
        assert all(re.search(r"\s+".join(map(re.escape, q.answer.split())), chunks[g].text) for g in gold), q.id


# --------------------------------------------------------------------------- llmprep.rag helpers

def test_bm25_matches_the_hand_computed_example():
    """Chapter 4's hand check: N = 3, avgdl = 4, idf(cat) = idf(sat) = ln 1.6."""
    bm = rag.BM25(["the cat sat", "the dog sat down", "a cat and a dog"])
    want = [2 * np.log(1.6) * 2.5 / 2.21875, np.log(1.6), np.log(1.6) * 2.5 / 2.78125]
    assert np.allclose(bm.scores("cat sat"), want)
    assert np.allclose(bm.scores("unknown words"), 0)
    assert rag.words("SmolLM2 的 2.5 KiB don't") == ["smollm2", "的", "2.5", "kib", "don't"]


def test_rrf_sums_reciprocal_ranks():
    fused = rag.rrf([[3, 1, 2], [1, 4]], k=60)
    assert fused[0] == 1  # 1/62 + 1/61
    assert fused == [1, 3, 4, 2]  # 3 (1/61) before 4 (1/62): rank 1 in one list beats rank 2; 2 last (1/63)


def test_retrieval_metrics_on_a_known_ranking():
    m = rag.retrieval_metrics([[5, 1, 2], [7, 8, 9]], [{1}, {3}], ks=(1, 2))
    assert m["recall@1"][0] == 0 and m["recall@2"][0] == 0.5
    assert m["MRR"][0] == pytest.approx(0.25)
    assert m["nDCG@10"][0] == pytest.approx(0.5 / np.log2(3))


def test_short_answer_keeps_the_first_phrase():
    assert rag.short_answer(": 6%.") == "6%"
    assert rag.short_answer(" 16 bytes/parameter. The model states") == "16 bytes/parameter"
    assert rag.short_answer("is 3.5 GB. More") == "3.5 GB"
    assert rag.short_answer("134.5M.\nNext line") == "134.5M"


def test_notebook_metrics_are_the_graded_metrics(spec):
    """The reference notebook scores answers with llmprep.rag; exercise 6's oracle is the official SQuAD logic
    (+ the CJK rule): they must agree, so the reported EM/F1 are what the exercise teaches."""
    oracle = spec.oracle_squad()["squad_scores"]
    rng = random.Random(0)
    vocab = ["the", "a", "an", "KV", "cache", "heads", "3", "22.5", "KiB", "词", "嵌", "入", "，", "。", "!", "(x)"]
    for _ in range(500):
        pred = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 6)))
        gold = " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 5)))
        em, f1 = oracle(pred, [gold])
        assert rag.exact_match(pred, gold) == em and rag.token_f1(pred, gold) == pytest.approx(f1), (pred, gold)


# --------------------------------------------------------------------------- solutions vs oracles, fresh inputs

@pytest.mark.parametrize("seed", range(4))
def test_ivf_solution_equals_faiss(solution, spec, seed):
    rng = np.random.default_rng(100 + seed)
    d, n, nlist = rng.integers(2, 12), rng.integers(20, 300), rng.integers(1, 16)
    xb, cent, qs = (rng.normal(size=s).astype(np.float32) for s in [(n, d), (nlist, d), (5, d)])
    for nprobe in sorted({1, int(nlist), int(rng.integers(1, nlist + 1))}):
        k = int(rng.integers(1, 40))
        D, I = solution["ivf_search"](xb, cent, qs, k, nprobe)
        D0, I0 = spec.oracle_ivf()["ivf_search"](xb, cent, qs, k, nprobe)
        assert np.array_equal(I, I0)
        assert np.allclose(D, D0, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("m, ksub, dsub", [(4, 256, 2), (3, 16, 5), (8, 2, 1), (1, 100, 7)])
def test_pq_solution_equals_faiss(solution, spec, m, ksub, dsub):
    rng = np.random.default_rng(ksub + m)
    books = rng.normal(size=(m, ksub, dsub)).astype(np.float32)
    x, q = rng.normal(size=(60, m * dsub)).astype(np.float32), rng.normal(size=(4, m * dsub)).astype(np.float32)
    oracle = spec.oracle_pq()
    codes = solution["pq_encode"](x, books)
    assert codes.dtype == np.uint8 and np.array_equal(codes, oracle["pq_encode"](x, books))
    assert np.allclose(solution["pq_adc"](q, codes, books), oracle["pq_adc"](q, codes, books), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("seed", range(6))
def test_mmr_solution_equals_the_trusted_reference(solution, spec, seed):
    rng = np.random.default_rng(seed)
    docs, q = rng.normal(size=(int(rng.integers(2, 40)), 6)), rng.normal(size=6)
    docs[1] = docs[0] * 4.0  # an exact tie in cosine
    for lam in (0.0, 0.25, 0.5, 1.0, float(rng.random())):
        k = int(rng.integers(0, len(docs) + 3))
        assert list(solution["mmr"](q, docs, k, lam)) == spec.oracle_mmr()["mmr"](q, docs, k, lam)
    relevance = (docs / np.linalg.norm(docs, axis=1, keepdims=True)) @ q
    assert list(solution["mmr"](q, docs, 5, 1.0)) == list(np.argsort(-relevance, kind="stable")[:5])


@pytest.mark.parametrize("seed", range(6))
def test_ndcg_solution_equals_sklearn(solution, spec, seed):
    rng = np.random.default_rng(seed)
    nq, nd = int(rng.integers(1, 6)), int(rng.integers(2, 15))
    rel = rng.integers(0, 5, size=(nq, nd))
    scores = rng.integers(0, 3, size=(nq, nd)).astype(float) if seed % 2 else rng.normal(size=(nq, nd))
    for k in (1, 2, nd // 2 + 1, nd, nd + 3):
        assert solution["ndcg_at_k"](rel, scores, k) == pytest.approx(spec.oracle_ndcg()["ndcg_at_k"](rel, scores, k))


def test_context_solution_equals_the_reference_with_smollm2_counts(solution, spec):
    from llmprep.assets import load_smollm2_tokenizer

    tok = load_smollm2_tokenizer()

    def count(text):
        return len(tok(text, add_special_tokens=False)["input_ids"])

    rng = random.Random(0)
    pool = spec.POOL + ["  padded text  ", "短的中文块。", "A much longer chunk " * 6]
    for _ in range(25):
        chunks = [{"text": rng.choice(pool), "source": f"s{i}", "score": rng.choice([0.1, 0.5, 0.5, 0.9, rng.random()])}
                  for i in range(rng.randint(0, 8))]
        budget = rng.randint(0, 120)
        assert solution["assemble_context"](chunks, budget, count) == \
            spec.oracle_context()["assemble_context"](chunks, budget, count)


def test_squad_solution_equals_the_official_logic(solution, spec):
    oracle = spec.oracle_squad()["squad_scores"]
    rng = random.Random(1)
    vocab = ["The", "a", "an", "answer", "is", "3", "KV", "heads", "旋", "转", "位", "置", "，", "。", "“", "”",
             "!", "?", "the.", "(tied)", "theory", ""]
    for _ in range(400):
        pred = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 7)))
        golds = [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 5))) for _ in range(rng.randint(1, 3))]
        assert solution["squad_scores"](pred, golds) == pytest.approx(oracle(pred, golds)), (pred, golds)
    # English-only strings: the oracle is the unmodified official v1.1 logic
    letters = string.ascii_letters + " .,!"
    for _ in range(200):
        pred = "".join(rng.choice(letters) for _ in range(rng.randint(0, 20)))
        gold = "".join(rng.choice(letters) for _ in range(rng.randint(1, 20)))
        p, g = _official_normalize(pred).split(), _official_normalize(gold).split()
        same = sum((Counter(p) & Counter(g)).values())
        f1 = 0 if same == 0 else 2 * (same / len(p)) * (same / len(g)) / (same / len(p) + same / len(g))
        assert solution["squad_scores"](pred, [gold]) == pytest.approx((float(p == g), f1))


def test_splitter_solution_equals_langchain_with_smollm2_tokens(solution, spec):
    """Exercise 7 against the library itself, built the way the instructions name it
    (``from_huggingface_tokenizer``), on fresh random texts, sizes, overlaps and separator lists; the spec's
    oracle (the same class with ``length_function``) must agree with it too."""
    import logging

    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from llmprep.assets import load_smollm2_tokenizer

    logging.getLogger("langchain_text_splitters.base").setLevel(logging.ERROR)
    tok = load_smollm2_tokenizer()

    def count(text):
        return len(tok.tokenize(text))

    oracle = spec.oracle_splitter()["recursive_split"]
    words = ["the", "KV", "cache", "grows", "with", "every", "token;", "RoPE", "rotates", "pairs", "旋转", "位置编码",
             "supercalifragilisticexpialidocious", "1234567", "naïve", "café", "e.g.", "(x)"]
    glue = [" ", " ", " ", "  ", "\n", "\n\n", ". ", "。", " \n", "\t"]
    separator_lists = [("\n\n", "\n", " ", ""), ("\n\n", "\n", ". ", "。", " ", ""), ("\n", " "), (" ",),
                       ("\n\n", "。", ""), ("x", " ", "")]
    rng = random.Random(14)
    for _ in range(150):
        text = "".join(rng.choice(words) + rng.choice(glue) for _ in range(rng.randint(0, 60)))[:rng.randint(0, 400)]
        size = rng.choice([1, 2, 3, 5, 8, 16, 32, 64])
        overlap = rng.randint(0, size)
        seps = rng.choice(separator_lists)
        library = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
            tok, chunk_size=size, chunk_overlap=overlap, separators=list(seps), keep_separator="end",
            strip_whitespace=False).split_text(text)
        got = solution["recursive_split"](text, count, size, overlap, seps)
        assert got == library, (text, size, overlap, seps)
        assert oracle(text, count, size, overlap, seps) == library
    for size, overlap in [(0, 0), (4, -1), (4, 5)]:
        with pytest.raises(ValueError):
            solution["recursive_split"]("abc", count, size, overlap)
        with pytest.raises(ValueError):
            RecursiveCharacterTextSplitter.from_huggingface_tokenizer(tok, chunk_size=size, chunk_overlap=overlap)


def _official_normalize(s):
    """evaluate-v1.1.py's normalize_answer, verbatim in logic."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())
