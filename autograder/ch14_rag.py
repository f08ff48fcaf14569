"""Trusted spec of Chapter 14's graded cells (solutions/ch14_rag/ch14_exercises.ipynb).

Seven building blocks of a retrieval-augmented generation system, each checked against the library it imitates:
IVF search (``faiss.IndexIVFFlat`` with the same centroids), product quantization (``faiss.ProductQuantizer``
with the same codebooks), maximal marginal relevance (a trusted reference written another way), nDCG@k
(``sklearn.metrics.ndcg_score``), context assembly under a token budget (a trusted reference counting with
SmolLM2's tokenizer), SQuAD scoring (a faithful port of the official SQuAD v1.1 evaluation script, plus the
stated CJK rule) and a recursive token-counted splitter (``langchain-text-splitters``'
``RecursiveCharacterTextSplitter`` with SmolLM2's token counts). Probes run inside the sandbox next to the
student's code and are self-contained (imports inside); oracles run in the trusted test process.

``RULES`` at the bottom quotes each rule the instructions state, names the hidden cases that break when the
rule is broken and maps each mutant that breaks it to a word its feedback must contain.
"""
from llmprep.grading.spec import Case, Chapter, Exercise, Hint, Rule, allclose, json_list, mutate, whole

R = Rule


# ============================================================================ 1 IVF search

def probe_ivf(ns, params):
    import numpy as np

    fn = ns["ivf_search"]
    rng = np.random.default_rng(params["seed"])
    d, n, nlist = params["d"], params["n"], params["nlist"]
    xb = rng.normal(size=(n, d)).astype(np.float32)
    centroids = rng.normal(size=(nlist, d)).astype(np.float32)
    queries = rng.normal(size=(params["q"], d)).astype(np.float32)
    if params.get("query_is_vector"):
        queries[0] = xb[3]
    before = (xb.copy(), centroids.copy(), queries.copy())
    try:
        D, I = fn(xb, centroids, queries, params["k"], params["nprobe"])
    except ValueError:
        return {"raised": True}
    untouched = all(np.array_equal(a, b) for a, b in zip(before, (xb, centroids, queries)))
    return {"raised": False, "ids": np.asarray(I).astype(np.int64), "distances": np.asarray(D, dtype=np.float64),
            "inputs_untouched": bool(untouched)}


def judge_ivf(got, want, params):
    import numpy as np

    from llmprep.grading.spec import compare_arrays

    reason = compare_arrays("raised", got.get("raised", np.array(False)), want["raised"], 0, 0)
    if reason or bool(np.asarray(want["raised"])):
        return reason
    for key, label in (("ids", "the returned ids I"), ("distances", "the returned distances D")):
        if key not in got:
            return f"no value for {label}"
    ids, want_ids = np.asarray(got["ids"]), np.asarray(want["ids"])
    if ids.shape != want_ids.shape:
        return f"I has shape {tuple(ids.shape)}, expected {tuple(want_ids.shape)}"
    bad = np.argwhere(ids != want_ids)
    if len(bad):
        q, r = (int(i) for i in bad[0])
        what = "a padding slot (-1) was expected" if want_ids[q, r] == -1 else \
            "-1 padding where a candidate exists" if ids[q, r] == -1 else "a different id"
        return f"I: {len(bad)} of {want_ids.size} ids differ (first at query {q}, rank {r}: {what})"
    return compare_arrays("distances", got["distances"], want["distances"], 1e-4, 1e-4) or \
        compare_arrays("inputs_untouched", got["inputs_untouched"], want["inputs_untouched"], 0, 0,
                       "your function modified its inputs in place")


def oracle_ivf():
    import numpy as np

    def ivf_search(xb, centroids, queries, k, nprobe):
        """faiss.IndexIVFFlat on an L2 quantizer holding the given centroids (no training), faiss's padding
        (float max) read as inf."""
        import faiss

        nlist, d = centroids.shape
        if k < 1 or not 1 <= nprobe <= nlist:
            raise ValueError("bad k or nprobe")
        quantizer = faiss.IndexFlatL2(d)
        quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_L2)
        index.is_trained = True
        index.add(np.ascontiguousarray(xb, dtype=np.float32))
        index.nprobe = nprobe
        D, I = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        D = D.astype(np.float32)
        D[I == -1] = np.inf
        return D, I.astype(np.int64)

    return {"ivf_search": ivf_search}


# ============================================================================ 2 product quantization

def probe_pq(ns, params):
    import numpy as np

    encode, adc = ns["pq_encode"], ns["pq_adc"]
    rng = np.random.default_rng(params["seed"])
    m, ksub, dsub = params["m"], params["ksub"], params["dsub"]
    codebooks = rng.normal(size=(m, ksub, dsub)).astype(np.float32)
    d = params.get("d", m * dsub)
    x = rng.normal(size=(params["n"], d)).astype(np.float32)
    if params.get("on_centroids"):
        x[0] = codebooks[:, 1, :].reshape(-1)  # exactly centroid 1 in every sub-space: distance 0 to its code
    queries = rng.normal(size=(params["q"], d)).astype(np.float32)
    before = (codebooks.copy(), x.copy(), queries.copy())
    try:
        codes = np.asarray(encode(x, codebooks))
        dist = np.asarray(adc(queries, codes, codebooks), dtype=np.float64)
    except ValueError:
        return {"raised": True}
    untouched = all(np.array_equal(a, b) for a, b in zip(before, (codebooks, x, queries)))
    return {"raised": False, "codes": codes.astype(np.int64), "codes_dtype": str(codes.dtype),
            "distances": dist, "inputs_untouched": bool(untouched)}


def judge_pq(got, want, params):
    import numpy as np

    from llmprep.grading.spec import compare_arrays

    reason = compare_arrays("raised", got.get("raised", np.array(False)), want["raised"], 0, 0)
    if reason or bool(np.asarray(want["raised"])):
        return reason
    if "codes" not in got:
        return "no value for the codes"
    reason = compare_arrays("codes", got["codes"], want["codes"], 0, 0)
    if reason:
        return reason
    if str(np.asarray(got["codes_dtype"])) != "uint8":
        return f"the codes have dtype {np.asarray(got['codes_dtype'])}; return uint8 (one byte per sub-vector)"
    return compare_arrays("distances", got.get("distances"), want["distances"], 1e-4, 1e-4) or \
        compare_arrays("inputs_untouched", got["inputs_untouched"], want["inputs_untouched"], 0, 0,
                       "your function modified its inputs in place")


def oracle_pq():
    import numpy as np

    def _pq(codebooks):
        import faiss

        m, ksub, dsub = codebooks.shape
        pq = faiss.ProductQuantizer(m * dsub, m, 8)
        full = np.full((m, 256, dsub), 1e6, dtype=np.float32)  # unused codes far away: never the nearest
        full[:, :ksub] = codebooks
        faiss.copy_array_to_vector(full.ravel(), pq.centroids)
        return pq

    def pq_encode(x, codebooks):
        m, _, dsub = codebooks.shape
        if x.shape[1] != m * dsub:
            raise ValueError("dimension")
        return _pq(codebooks).compute_codes(np.ascontiguousarray(x, dtype=np.float32))

    def pq_adc(queries, codes, codebooks):
        """ADC = the squared L2 distance to faiss's decoded vector (the sum over sub-spaces of the table)."""
        m, _, dsub = codebooks.shape
        if queries.shape[1] != m * dsub:
            raise ValueError("dimension")
        decoded = _pq(codebooks).decode(np.ascontiguousarray(codes, dtype=np.uint8))
        return ((queries[:, None, :].astype(np.float64) - decoded[None]) ** 2).sum(-1).astype(np.float32)

    return {"pq_encode": pq_encode, "pq_adc": pq_adc}


# ============================================================================ 3 maximal marginal relevance

def probe_mmr(ns, params):
    import numpy as np

    fn = ns["mmr"]
    rng = np.random.default_rng(params["seed"])
    docs = rng.normal(size=(params["n"], params["d"]))
    for a, b in params.get("copies", []):
        docs[b] = docs[a] * params.get("scale", 1.0)  # the same direction: the same cosines (a tie)
    query = rng.normal(size=params["d"])
    if "query_from" in params:  # a query close to one document (and to its copies)
        query = docs[params["query_from"]] + 0.05 * query
    before = docs.copy()
    try:
        picked = fn(query, docs, params["k"], params["lam"])
    except ValueError:
        return {"raised": True}
    return {"raised": False, "picked": np.asarray([int(i) for i in picked], dtype=np.int64).reshape(-1),
            "inputs_untouched": bool(np.array_equal(before, docs))}


def judge_mmr(got, want, params):
    import numpy as np

    from llmprep.grading.spec import compare_arrays, sequence_diff

    reason = compare_arrays("raised", got.get("raised", np.array(False)), want["raised"], 0, 0)
    if reason or bool(np.asarray(want["raised"])):
        return reason
    return sequence_diff(got["picked"], want["picked"], "picks", "the selected indices", integers=True) or \
        compare_arrays("inputs_untouched", got["inputs_untouched"], want["inputs_untouched"], 0, 0)


def oracle_mmr():
    import numpy as np

    def mmr(query, docs, k, lam):
        """Trusted reference: the MMR objective vectorised, the running maximum similarity to the picked set
        kept as an array; ties go to the smallest index (np.argmax returns the first maximum)."""
        if not 0 <= lam <= 1:
            raise ValueError("lam")
        d = docs / np.linalg.norm(docs, axis=1, keepdims=True)
        rel = d @ (query / np.linalg.norm(query))
        sim = d @ d.T
        picked, redundancy = [], np.zeros(len(docs))
        available = np.ones(len(docs), dtype=bool)
        for step in range(min(k, len(docs))):
            score = lam * rel - (1 - lam) * (redundancy if step else 0.0)
            score = np.where(available, score, -np.inf)
            i = int(np.argmax(score))
            picked.append(i)
            available[i] = False
            redundancy = np.maximum(redundancy, sim[i]) if step else sim[i].copy()
        return picked

    return {"mmr": mmr}


# ============================================================================ 4 nDCG@k

def probe_ndcg(ns, params):
    import numpy as np

    fn = ns["ndcg_at_k"]
    rng = np.random.default_rng(params["seed"])
    nq, nd = params["queries"], params["docs"]
    rel = rng.integers(0, params.get("grades", 4), size=(nq, nd))
    if params.get("tied_scores"):
        scores = rng.integers(0, 3, size=(nq, nd)).astype(np.float64)
    else:
        scores = rng.normal(size=(nq, nd))
    for row in params.get("zero_rows", []):
        rel[row] = 0
    if params.get("negative"):
        rel[0, 0] = -1
    before = (rel.copy(), scores.copy())
    try:
        value = fn(rel, scores, params["k"])
    except ValueError:
        return {"raised": True}
    return {"raised": False, "ndcg": np.asarray(float(value)),
            "inputs_untouched": bool(np.array_equal(before[0], rel) and np.array_equal(before[1], scores))}


def oracle_ndcg():
    def ndcg_at_k(relevance, scores, k):
        from sklearn.metrics import ndcg_score

        return ndcg_score(relevance, scores, k=k)

    return {"ndcg_at_k": ndcg_at_k}


# ============================================================================ 5 context assembly

CHUNK_TEXTS = [
    "SmolLM2-135M shares 3 KV heads among 9 query heads.",
    "Ring all-reduce sends 2(N-1)/N of the data per rank.",
    "  BM25 is strong on rare words and numbers.  ",
    "HNSW searches a layered proximity graph; IVF probes nprobe lists.",
    "Reciprocal rank fusion sums 1 / (k + rank) over the lists.",
    "A cross-encoder reads the question and the passage together.",
    "Lost in the middle: the middle of a long context is used worst.",
    "Product quantization stores a vector in m bytes.",
]


def probe_context(ns, params):
    import json

    import numpy as np

    fn = ns["assemble_context"]
    pool = params["pool"]
    chunks = [{"text": pool[i], "source": f"doc{j}", "score": float(s)}
              for j, (i, s) in enumerate(zip(params["texts"], params["scores"]))]
    if params["counter"] == "smollm2":
        from llmprep.assets import load_smollm2_tokenizer

        tok = load_smollm2_tokenizer()

        def count_tokens(text):
            return len(tok(text, add_special_tokens=False)["input_ids"])
    else:
        def count_tokens(text):
            return len(text.split())
    before = json.dumps(chunks)
    try:
        context, cited = fn(chunks, params["budget"], count_tokens)
    except ValueError:
        return {"raised": True}
    return {"raised": False, "context": np.asarray(str(context)), "citations": np.asarray(json.dumps([str(c) for c in cited])),
            "fits": bool(count_tokens(str(context)) <= params["budget"]),
            "inputs_untouched": bool(json.dumps(chunks) == before)}


def judge_context(got, want, params):
    import numpy as np

    from llmprep.grading.spec import compare_arrays, sequence_diff

    reason = compare_arrays("raised", got.get("raised", np.array(False)), want["raised"], 0, 0)
    if reason or bool(np.asarray(want["raised"])):
        return reason
    if not bool(np.asarray(got.get("fits", True))):
        return f"the context is longer than the budget of {params['budget']} tokens (count the whole string)"
    cited, reason = json_list(got.get("citations", ""), "the citations")
    if reason:
        return reason
    expected, _ = json_list(want["citations"], "the citations")
    reason = sequence_diff(cited, expected, "sources", "the cited sources (in marker order)")
    if reason:
        return reason
    g, w = str(np.asarray(got["context"])), str(np.asarray(want["context"]))
    if g != w:
        first = next((i for i in range(min(len(g), len(w))) if g[i] != w[i]), min(len(g), len(w)))
        return f"the context text differs from the expected one at character {first} (markers, stripping, separators)"
    return compare_arrays("inputs_untouched", got["inputs_untouched"], want["inputs_untouched"], 0, 0)


def oracle_context():
    def assemble_context(chunks, budget, count_tokens):
        """Trusted reference: rank by score (stable), greedy by whole chunks, the numbered context rebuilt and
        counted after each addition."""
        if budget < 0:
            raise ValueError("budget")
        ranked = sorted(enumerate(chunks), key=lambda p: (-p[1]["score"], p[0]))
        kept = []
        for _, ch in ranked:
            text = ch["text"].strip()
            if any(text == t for t, _ in kept):
                continue
            candidate = "\n\n".join(f"[{i}] {t}" for i, (t, _) in enumerate(kept + [(text, None)], start=1))
            if count_tokens(candidate) <= budget:
                kept.append((text, ch["source"]))
        return "\n\n".join(f"[{i}] {t}" for i, (t, _) in enumerate(kept, start=1)), [s for _, s in kept]

    return {"assemble_context": assemble_context}


# ============================================================================ 6 SQuAD scoring

def probe_squad(ns, params):
    import numpy as np

    fn = ns["squad_scores"]
    rows = []
    for prediction, golds in params["pairs"]:
        try:
            em, f1 = fn(prediction, list(golds))
            rows.append([float(em), float(f1), 0.0])
        except ValueError:
            rows.append([0.0, 0.0, 1.0])
    table = np.asarray(rows, dtype=np.float64)
    return {"exact_match": table[:, 0], "f1": table[:, 1], "raised": table[:, 2]}


def oracle_squad():
    import re
    import string
    from collections import Counter

    CJK_PUNCTUATION = "，。、：；？！（）《》“”‘’【】"

    def normalize_answer(s):
        """The official SQuAD v1.1 evaluate-v1.1.py normalize_answer, with the chapter's two stated additions
        (CJK punctuation removed with ASCII punctuation; each CJK ideograph U+4E00-U+9FFF its own token)."""
        def remove_articles(text):
            return re.sub(r"\b(a|an|the)\b", " ", text)

        def white_space_fix(text):
            return " ".join(text.split())

        def remove_punc(text):
            exclude = set(string.punctuation) | set(CJK_PUNCTUATION)
            return "".join(ch for ch in text if ch not in exclude)

        def split_cjk(text):
            return re.sub(r"([\u4e00-\u9fff])", r" \1 ", text)

        return white_space_fix(split_cjk(remove_articles(remove_punc(s.lower()))))

    def f1_score(prediction, ground_truth):
        prediction_tokens = normalize_answer(prediction).split()
        ground_truth_tokens = normalize_answer(ground_truth).split()
        common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
        num_same = sum(common.values())
        if num_same == 0:
            return 0
        precision = 1.0 * num_same / len(prediction_tokens)
        recall = 1.0 * num_same / len(ground_truth_tokens)
        return (2 * precision * recall) / (precision + recall)

    def exact_match_score(prediction, ground_truth):
        return normalize_answer(prediction) == normalize_answer(ground_truth)

    def metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
        return max(metric_fn(prediction, gt) for gt in ground_truths)

    def squad_scores(prediction, gold_answers):
        if not gold_answers:
            raise ValueError("no gold answers")
        return (float(metric_max_over_ground_truths(exact_match_score, prediction, gold_answers)),
                float(metric_max_over_ground_truths(f1_score, prediction, gold_answers)))

    return {"squad_scores": squad_scores}


# ============================================================================ 7 recursive text splitter

def probe_splitter(ns, params, _tokenizer={}):  # noqa: B006 - one tokenizer for every case and variant of a run
    import json

    import numpy as np

    fn = ns["recursive_split"]
    if "tok" not in _tokenizer:
        from llmprep.assets import load_smollm2_tokenizer

        _tokenizer["tok"] = load_smollm2_tokenizer()
    tok = _tokenizer["tok"]

    def count_tokens(text):
        return len(tok.tokenize(text))

    kwargs = {"separators": list(params["separators"])} if "separators" in params else {}
    try:
        chunks = fn(params["text"], count_tokens, params["chunk_size"], params["overlap"], **kwargs)
    except ValueError:
        return {"raised": True}
    chunks = [str(c) for c in list(chunks)]
    return {"raised": False, "chunks": np.asarray(json.dumps(chunks)),
            "tokens": np.array([count_tokens(c) for c in chunks], dtype=np.int64)}


def judge_splitter(got, want, params):
    import numpy as np

    from llmprep.grading.spec import compare_arrays, json_list, sequence_diff

    reason = compare_arrays("raised", got.get("raised", np.array(False)), want["raised"], 0, 0)
    if reason or bool(np.asarray(want["raised"])):
        return reason
    chunks, reason = json_list(got.get("chunks", ""), "the chunks")
    if reason:
        return reason
    expected, _ = json_list(want["chunks"], "the chunks")
    if len(chunks) != len(expected):
        return sequence_diff(chunks, expected, "chunks", "the chunks")
    first = next((i for i, (g, w) in enumerate(zip(chunks, expected)) if g != w), None)
    if first is None:
        return None
    g_tok, w_tok = np.asarray(got.get("tokens", [])).reshape(-1), np.asarray(want["tokens"]).reshape(-1)
    size = (f" (count_tokens gives {int(g_tok[first])}, expected {int(w_tok[first])})"
            if len(g_tok) == len(w_tok) else "")
    return (f"the chunks: {sum(g != w for g, w in zip(chunks, expected))} of {len(expected)} chunks differ, "
            f"first chunk {first}{size}")


def oracle_splitter():
    import logging

    from langchain_text_splitters import RecursiveCharacterTextSplitter

    logging.getLogger("langchain_text_splitters.base").setLevel(logging.ERROR)  # its "longer than" warning

    def recursive_split(text, count_tokens, chunk_size, overlap, separators=("\n\n", "\n", " ", "")):
        """The library with the stated options; with a tokenizer, from_huggingface_tokenizer counts the same way
        (``len(tokenizer.tokenize(s))``: tests/chapters/test_ch14_rag.py calls it so)."""
        splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=overlap,
                                                  length_function=count_tokens, separators=list(separators),
                                                  keep_separator="end", strip_whitespace=False)
        return splitter.split_text(text)

    return {"recursive_split": recursive_split}


# ============================================================================ the exercises

IVF_ASSIGN = "assign = np.argmin(sq_dist(xb, centroids), axis=1)"
PQ_TABLES = "tables = ((queries.reshape(len(queries), m, 1, dsub) - codebooks[None]) ** 2).sum(-1)  # (q, m, ksub)"
POOL = CHUNK_TEXTS + ["BM25 is strong on rare words and numbers."]  # the last one: chunk 2 stripped (a duplicate)


def _ivf(seed, d, n, nlist, q, k, nprobe, **extra):
    return dict(seed=seed, d=d, n=n, nlist=nlist, q=q, k=k, nprobe=nprobe, **extra)


def _pq(seed, m, ksub, dsub, n=30, q=4, **extra):
    return dict(seed=seed, m=m, ksub=ksub, dsub=dsub, n=n, q=q, **extra)


def _split(text, chunk_size, overlap, separators=None):
    params = {"text": text, "chunk_size": chunk_size, "overlap": overlap}
    return params if separators is None else {**params, "separators": separators}


PASSAGE = ("# Attention\n\nEvery query scores every key. The scores are scaled by the square root of the head size, "
           "then a softmax turns them into weights.\nThe output is the weighted sum of the values.\n\n"
           "## The KV cache\n\nDuring generation the keys and values of past tokens are kept, so each new token costs "
           "one row of attention instead of a whole matrix. 缓存随序列长度线性增长。\n")


def _ctx(counter, texts, scores, budget):
    return dict(counter=counter, texts=texts, scores=scores, budget=budget, pool=POOL)


EXERCISES = [
    Exercise(
        grade_id="ch14_ivf_test", functions=("ivf_search",), points=3,
        cases=(
            Case("8-d, 10 lists, nprobe 3", _ivf(0, 8, 200, 10, 6, 5, 3)),
            Case("nprobe 1", _ivf(1, 6, 150, 8, 5, 4, 1), edge="nprobe = 1, the smallest probe"),
            Case("nprobe = nlist (exact search)", _ivf(2, 6, 120, 8, 5, 10, 8),
                 edge="nprobe = nlist: every list probed, the search is exact"),
            Case("fewer candidates than k", _ivf(3, 4, 40, 10, 4, 30, 1),
                 edge="k larger than what the probed lists hold: padded slots"),
            Case("a query equal to a database vector", _ivf(4, 5, 100, 6, 3, 6, 2, query_is_vector=True),
                 edge="distance exactly 0"),
            Case("nprobe above nlist", _ivf(5, 4, 50, 5, 2, 3, 6), edge="nprobe = nlist + 1: a promised ValueError"),
            Case("k = 0", _ivf(6, 4, 50, 5, 2, 0, 2), edge="k = 0: a promised ValueError"),
        ),
        probe=probe_ivf, judge=judge_ivf,
        mutants={
            "only the nearest list is probed": mutate('kind="stable")[:nprobe]', 'kind="stable")[:1]', hint=Hint(
                zh="nprobe 是要扫描的倒排列表个数：离查询最近的 nprobe 个质心的列表都要检索，而不只是最近的一个。",
                en="nprobe is how many inverted lists to scan: the lists of the nprobe centroids nearest to the "
                   "query, not only the nearest one.")),
            "distances not squared": mutate("dist = sq_dist(q[None], xb[cand])[0]",
                                            "dist = np.sqrt(sq_dist(q[None], xb[cand])[0])", hint=Hint(
                zh="faiss 的 L2 索引返回的是平方距离 ‖a−b‖²，不开根号（排序相同，但数值不同）。",
                en="faiss's L2 indexes return squared distances |a-b|^2; taking the square root keeps the order but "
                   "changes the values.")),
            "padding with id 0": mutate("I = np.full((len(queries), k), -1, dtype=np.int64)",
                                        "I = np.full((len(queries), k), 0, dtype=np.int64)", hint=Hint(
                zh="候选不足 k 个时空位要用 -1 标记；用 0 会把它当成真实的第 0 号向量。",
                en="Empty slots must be marked -1; a 0 claims that database vector 0 was found.")),
            "lists by inner product": mutate(IVF_ASSIGN, "assign = np.argmax(xb @ centroids.T, axis=1)", hint=Hint(
                zh="L2 索引里向量属于平方 L2 距离最近的质心；未归一化时最大内积的质心不一定最近。",
                en="In an L2 index a vector belongs to the centroid nearest in squared L2; for unnormalised vectors "
                   "the largest inner product is not the nearest centroid.")),
            "no ValueError for nprobe > nlist": mutate("if k < 1 or not 1 <= nprobe <= nlist:",
                                                       "if k < 1 or nprobe < 1:", hint=Hint(
                zh="nprobe 大于 nlist 是调用错误，应当明确报错，而不是悄悄地当成全扫描。",
                en="nprobe above nlist is a caller's mistake: say so with a ValueError instead of silently "
                   "scanning everything.")),
        },
        bans=(("faiss", "IndexIVFFlat", "faiss.IndexIVFFlat"), ("faiss", "IndexFlatL2", "faiss.IndexFlatL2"),
              ("faiss", "knn", "faiss.knn"), ("faiss.extra_wrappers", "knn", "faiss.extra_wrappers.knn")),
    ),
    Exercise(
        grade_id="ch14_pq_test", functions=("pq_encode", "pq_adc"), points=3,
        cases=(
            Case("4 sub-spaces of 2, 256 centroids", _pq(0, 4, 256, 2, n=40, q=5)),
            Case("16 centroids per sub-space", _pq(1, 2, 16, 3), edge="ksub = 16 < 256: still one byte per code"),
            Case("one-dimensional sub-vectors", _pq(2, 8, 4, 1, n=25, q=3),
                 edge="dsub = 1: one scalar quantizer per dimension"),
            Case("a vector exactly on its centroids", _pq(3, 3, 8, 4, n=10, q=2, on_centroids=True),
                 edge="distance 0 to the nearest centroid"),
            Case("one sub-space (m = 1)", _pq(4, 1, 32, 6, n=20, q=3), edge="m = 1: plain k-means quantization"),
            Case("dimension not m x dsub", _pq(5, 4, 8, 2, n=5, q=2, d=9), edge="d = m·dsub + 1: a promised ValueError"),
        ),
        probe=probe_pq, judge=judge_pq,
        mutants={
            "codes kept as int64": mutate("return np.argmin(dist, axis=-1).astype(np.uint8)",
                                          "return np.argmin(dist, axis=-1)", hint=Hint(
                zh="PQ 的意义就是一个子向量只占一个字节：码要存成 uint8。",
                en="The point of PQ is one byte per sub-vector: store the codes as uint8.")),
            "strided sub-vectors": mutate("sub = x.reshape(len(x), m, 1, dsub)",
                                          "sub = x.reshape(len(x), dsub, m).transpose(0, 2, 1)[:, :, None, :]", hint=Hint(
                zh="第 j 个子向量是连续的一段 x[j*dsub:(j+1)*dsub]，不是每隔 m 个取一个。",
                en="Sub-vector j is the contiguous slice x[j*dsub:(j+1)*dsub], not every m-th coordinate.")),
            "L1 distance to the centroids": mutate("dist = ((sub - codebooks[None]) ** 2).sum(-1)",
                                                   "dist = np.abs(sub - codebooks[None]).sum(-1)", hint=Hint(
                zh="编码时选平方 L2 距离最近的质心；L1 最近的质心可能不同。",
                en="Encode with the centroid nearest in squared L2; the nearest in L1 can differ.")),
            "symmetric distance (query quantized too)": mutate(PQ_TABLES, (
                "qc = codebooks[np.arange(m)[None, :], pq_encode(queries, codebooks).astype(np.int64)]\n"
                "    tables = ((qc[:, :, None, :] - codebooks[None]) ** 2).sum(-1)"), hint=Hint(
                zh="非对称距离（ADC）里查询保持原样不量化，只有库里的向量被量化；量化查询会多引入一份误差。",
                en="In asymmetric distance computation the query stays exact; only the database is quantized. "
                   "Quantizing the query adds a second error.")),
        },
        bans=(("faiss", "ProductQuantizer", "faiss.ProductQuantizer"), ("faiss", "IndexPQ", "faiss.IndexPQ")),
    ),
    Exercise(
        grade_id="ch14_mmr_test", functions=("mmr",), points=2,
        cases=(
            Case("lam 0.5, 10 of 40 documents", dict(seed=0, n=40, d=16, k=10, lam=0.5)),
            Case("lam = 1", dict(seed=1, n=30, d=8, k=8, lam=1.0), edge="lam = 1: plain relevance ranking"),
            Case("lam = 0", dict(seed=2, n=25, d=8, k=6, lam=0.0), edge="lam = 0: redundancy only after the first pick"),
            Case("a document and its scaled copy", dict(seed=3, n=12, d=8, k=4, lam=0.7, copies=[[2, 5]], scale=2.0,
                                                        query_from=2),
                 edge="two documents with exactly the same cosines (a tie)"),
            Case("k larger than the number of documents", dict(seed=4, n=5, d=6, k=9, lam=0.6),
                 edge="k > n: every document, in MMR order"),
            Case("lam 0.3, many picks", dict(seed=5, n=50, d=4, k=20, lam=0.3)),
            Case("lam = 1.5", dict(seed=6, n=5, d=4, k=2, lam=1.5), edge="lam just outside [0, 1]: a promised ValueError"),
        ),
        probe=probe_mmr, judge=judge_mmr,
        mutants={
            "redundancy as the mean similarity": mutate(
                "redundancy = max(pairwise[i, j] for j in picked) if picked else 0.0",
                "redundancy = float(np.mean([pairwise[i, j] for j in picked])) if picked else 0.0", hint=Hint(
                    zh="冗余项是与已选文档的最大相似度：只要和其中一个几乎重复就应受罚，平均值会把它稀释。",
                    en="Redundancy is the maximum similarity to the picked documents: being a near-copy of any one of "
                       "them should cost, and a mean dilutes that.")),
            "lam on the wrong term": mutate("score = lam * relevance[i] - (1 - lam) * redundancy",
                                            "score = (1 - lam) * relevance[i] - lam * redundancy", hint=Hint(
                zh="lam 乘的是相关性：lam = 1 就是普通的按相关性排序。",
                en="lam weights relevance: lam = 1 must give the plain relevance ranking.")),
            "dot products instead of cosines": mutate(
                "unit = docs / np.linalg.norm(docs, axis=1, keepdims=True)", "unit = docs", hint=Hint(
                    zh="未归一化时点积会偏向范数大的文档；MMR 用的是余弦相似度。",
                    en="Unnormalised dot products favour long vectors; MMR here uses cosine similarity.")),
            "ties to the larger index": mutate("if score > best_score:", "if score >= best_score:", hint=Hint(
                zh="分数相同时取下标更小的文档（严格大于才替换）。",
                en="On equal scores keep the smaller index (replace only on a strictly larger score).")),
            "no ValueError for lam > 1": mutate("if not 0.0 <= lam <= 1.0:", "if lam < 0.0:", hint=Hint(
                zh="lam 超出 [0, 1] 时目标函数没有意义，应当报错。",
                en="Outside [0, 1] the objective means nothing: raise a ValueError.")),
        },
        bans=(("langchain_core.vectorstores.utils", "maximal_marginal_relevance",
               "langchain's maximal_marginal_relevance"),),
    ),
    Exercise(
        grade_id="ch14_ndcg_test", functions=("ndcg_at_k",), points=2,
        cases=(
            Case("3 queries, 8 documents, k = 5", dict(seed=0, queries=3, docs=8, k=5)),
            Case("tied scores", dict(seed=1, queries=4, docs=10, k=4, tied_scores=True),
                 edge="integer scores: groups of equal scores, cut by k"),
            Case("k = 1", dict(seed=2, queries=5, docs=6, k=1), edge="k = 1: only the top document"),
            Case("k larger than the list", dict(seed=3, queries=2, docs=5, k=9), edge="k > number of documents"),
            Case("a query with no relevant document", dict(seed=4, queries=3, docs=7, k=5, zero_rows=[1]),
                 edge="IDCG = 0 for one query"),
            Case("grades 0-9", dict(seed=6, queries=3, docs=12, k=6, grades=10)),
            Case("negative relevance", dict(seed=5, queries=2, docs=4, k=3, negative=True),
                 edge="a relevance of -1: a promised ValueError"),
        ),
        probe=probe_ndcg, judge=allclose(rtol=1e-7, atol=1e-9),
        mutants={
            "exponential gains": mutate({
                "dcg += group.mean() * discount[rank:rank + len(group)].sum()":
                    "dcg += (2.0 ** group - 1).mean() * discount[rank:rank + len(group)].sum()",
                "ideal = (np.sort(rel)[::-1] * discount).sum()":
                    "ideal = ((2.0 ** np.sort(rel)[::-1] - 1) * discount).sum()"}, hint=Hint(
                zh="这里的增益就是相关等级本身（线性增益，sklearn 的约定），不是 2^rel − 1。",
                en="The gain is the relevance grade itself (linear gains, sklearn's convention), not 2^rel - 1.")),
            "ties broken by position": whole("""
                def ndcg_at_k(relevance, scores, k):
                    relevance, scores = np.asarray(relevance, dtype=np.float64), np.asarray(scores, dtype=np.float64)
                    if (relevance < 0).any():
                        raise ValueError("relevance must be non-negative")
                    discount = 1.0 / np.log2(np.arange(relevance.shape[1]) + 2.0)
                    discount[k:] = 0.0
                    out = []
                    for rel, sc in zip(relevance, scores):
                        dcg = (rel[np.argsort(-sc, kind="stable")] * discount).sum()
                        ideal = (np.sort(rel)[::-1] * discount).sum()
                        out.append(dcg / ideal if ideal > 0 else 0.0)
                    return float(np.mean(out))
            """, hint=Hint(
                zh="分数相同的文档谁先谁后是未知的：它们占据的每个名次都取该组相关度的平均值。",
                en="The order among equal scores is unknown: every rank a tied group occupies gets the group's mean "
                   "relevance.")),
            "discount off by one": mutate("discount = 1.0 / np.log2(np.arange(n) + 2.0)",
                                          "discount = 1.0 / np.log2(np.arange(n) + 3.0)", hint=Hint(
                zh="名次从 1 开始，折扣是 1/log2(rank + 1)：第一名的折扣是 1。",
                en="Ranks start at 1 and the discount is 1/log2(rank + 1): the first rank's discount is 1.")),
            "no cut at k": mutate("discount[k:] = 0.0", "discount[n:] = 0.0", hint=Hint(
                zh="nDCG@k 只看前 k 个名次，DCG 和理想 DCG 都要在 k 处截断。",
                en="nDCG@k looks at the top k ranks only: cut both the DCG and the ideal DCG at k.")),
            "a query without relevant documents scores 1": mutate(
                "out.append(dcg / ideal if ideal > 0 else 0.0)", "out.append(dcg / ideal if ideal > 0 else 1.0)",
                hint=Hint(zh="没有相关文档的查询 IDCG 为 0，按约定记 0 分（sklearn 也是如此），并计入平均。",
                          en="A query without relevant documents has IDCG 0 and scores 0 by convention (as in "
                             "sklearn), still counted in the mean.")),
            "no ValueError for negative relevance": mutate("if (relevance < 0).any():", "if (relevance < -1).any():",
                                                           hint=Hint(
                zh="负的相关度会让 nDCG 失去意义（可能超过 1），应当报错。",
                en="Negative relevance makes nDCG meaningless (it can exceed 1): raise a ValueError.")),
        },
        bans=(("sklearn.metrics", "ndcg_score", "sklearn.metrics.ndcg_score"),
              ("sklearn.metrics", "dcg_score", "sklearn.metrics.dcg_score")),
    ),
    Exercise(
        grade_id="ch14_context_test", functions=("assemble_context",), points=3,
        cases=(
            Case("words, five chunks", _ctx("words", [0, 1, 2, 3, 4], [0.9, 0.5, 0.7, 0.2, 0.6], 30)),
            Case("SmolLM2 tokens, eight chunks", _ctx("smollm2", [0, 1, 2, 3, 4, 5, 6, 7],
                                                      [0.3, 0.8, 0.1, 0.6, 0.9, 0.2, 0.5, 0.4], 60)),
            Case("a long chunk skipped, a later one fits", _ctx("words", [6, 1, 7, 0], [0.9, 0.8, 0.7, 0.1], 23),
                 edge="the second chunk does not fit but the third does"),
            Case("duplicates after stripping", _ctx("words", [2, 8, 0, 2], [0.9, 0.8, 0.7, 0.6], 60),
                 edge="the same text twice, once with surrounding spaces"),
            Case("equal scores", _ctx("words", [5, 3, 7, 0], [0.5, 0.5, 0.5, 0.5], 40),
                 edge="all scores tied: input order"),
            Case("budget met exactly", _ctx("words", [7, 5, 0], [0.9, 0.8, 0.7], 19),
                 edge="the context is exactly budget tokens long"),
            Case("SmolLM2 tokens, separators decide", _ctx("smollm2", [0, 7, 5, 1], [0.9, 0.8, 0.7, 0.6], 37),
                 edge="fits only if the separators are not counted"),
            Case("best chunk last in the input", _ctx("words", [7, 5, 0], [0.1, 0.5, 0.9], 20),
                 edge="scores in increasing input order: the most relevant chunk comes last"),
            Case("nothing fits", _ctx("words", [6, 4], [0.5, 0.9], 5), edge="budget below every chunk: empty context"),
            Case("negative budget", _ctx("words", [0, 1], [0.5, 0.4], -1), edge="budget = -1: a promised ValueError"),
        ),
        probe=probe_context, judge=judge_context,
        mutants={
            "stops at the first chunk that does not fit": mutate(
                "continue                                                         # too long: skip it, try the next",
                "break", hint=Hint(
                    zh="放不下的块跳过即可，后面更短的块可能还放得下；不要提前停止。",
                    en="Skip a chunk that does not fit and try the next: a later, shorter chunk may still fit.")),
            "input order instead of score order": mutate(
                'order = sorted(range(len(chunks)), key=lambda i: -chunks[i]["score"])',
                "order = list(range(len(chunks)))", hint=Hint(
                    zh="预算有限时先放最相关的块：按分数从高到低考虑。",
                    en="With a limited budget the most relevant chunks go first: consider them by decreasing score.")),
            "ties reversed": mutate('key=lambda i: -chunks[i]["score"])', 'key=lambda i: (-chunks[i]["score"], -i))',
                                    hint=Hint(zh="分数相同的块保持输入顺序（稳定排序）。",
                                              en="Equal scores keep their input order (a stable sort).")),
            "blocks counted one by one": mutate(
                "if count_tokens(context) > budget:",
                'if sum(count_tokens(f"[{n + 1}] {t}") for n, (t, _) in enumerate(trial)) > budget:', hint=Hint(
                    zh="预算约束的是最终送进模型的整个字符串，分隔符和编号也占 token。",
                    en="The budget bounds the whole string the model reads: separators and markers cost tokens too.")),
            "no deduplication": mutate("if text in seen:", "if False:", hint=Hint(
                zh="重复的块不提供新信息，只占预算：去掉去除首尾空白后与已选块相同的块。",
                en="A duplicate adds no information and costs budget: skip a chunk whose stripped text was taken.")),
            "text not stripped": mutate('text = chunks[i]["text"].strip()', 'text = chunks[i]["text"]', hint=Hint(
                zh="块的文本要先去掉首尾空白，再编号、去重和计数。",
                en="Strip each chunk's text before numbering, deduplicating and counting it.")),
            "budget used as a strict bound": mutate("if count_tokens(context) > budget:",
                                                    "if count_tokens(context) >= budget:", hint=Hint(
                zh="预算是上限：正好等于预算的上下文是允许的。",
                en="The budget is an upper bound: a context of exactly budget tokens is allowed.")),
            "no ValueError for a negative budget": mutate("if budget < 0:", "if budget < -1:", hint=Hint(
                zh="负的预算是调用错误，应当报错而不是返回空上下文。",
                en="A negative budget is a caller's mistake: raise instead of returning an empty context.")),
        },
    ),
    Exercise(
        grade_id="ch14_squad_test", functions=("squad_scores",), points=3,
        cases=(
            Case("English answers", dict(pairs=[["The Eiffel Tower", ["Eiffel Tower"]],
                                                ["3 KV heads among 9 query heads", ["3 KV heads"]],
                                                ["about 22.5 KiB per token", ["22.5 KiB"]],
                                                ["a cat and the dog", ["cat dog"]]])),
            Case("punctuation and case only", dict(pairs=[["GGUF.", ["gguf"]], ["(value, grad)", ["value grad"]],
                                                          ["Shazeer, 2019!", ["shazeer 2019"]]]),
                 edge="strings that differ only in punctuation and case"),
            Case("articles as whole words", dict(pairs=[["an anthem", ["anthem"]], ["the theory", ["theory"]],
                                                        ["A", [""]], ["they are there", ["y are re"]]]),
                 edge="'a', 'an', 'the' inside longer words are kept"),
            Case("several gold answers", dict(pairs=[["150 tokens", ["about 150", "150 tokens"]],
                                                     ["two thirds", ["2/3", "two-thirds", "two thirds of it"]]]),
                 edge="the best match is not the first gold answer"),
            Case("Chinese characters", dict(pairs=[["共享词嵌入", ["词嵌入"]], ["用旋转位置编码", ["旋转位置编码 RoPE"]],
                                                   ["RoPE 旋转", ["rope旋转"]]]),
                 edge="CJK text without spaces"),
            Case("Chinese punctuation", dict(pairs=[["词嵌入。", ["词嵌入"]], ["（共享）", ["共享"]],
                                                    ["“答案”：是", ["答案是"]]]),
                 edge="full-width Chinese punctuation"),
            Case("repeated tokens", dict(pairs=[["heads heads heads", ["heads"]], ["kv kv cache", ["kv kv"]],
                                                ["heads heads", ["heads heads kv"]]]),
                 edge="a token repeated in the prediction or the gold answer"),
            Case("empty prediction", dict(pairs=[["", ["anything"]], ["", [""]], ["the", ["a"]]]),
                 edge="an empty (or all-article) string"),
            Case("no gold answers", dict(pairs=[["x", []]]), edge="an empty list of gold answers: a promised ValueError"),
        ),
        probe=probe_squad, judge=allclose(rtol=1e-9, atol=1e-12),
        mutants={
            "articles kept": mutate("(a|an|the)", "(xyzzy)", hint=Hint(
                zh="SQuAD 的归一化会删掉冠词 a、an、the（作为整词）。",
                en="SQuAD's normalisation drops the articles a, an, the (as whole words).")),
            "punctuation kept": mutate('text = "".join(ch for ch in text if ch not in PUNCTUATION)',
                                       "text = text.strip()", hint=Hint(
                zh="标点不影响答案的对错：归一化时要全部删掉。",
                en="Punctuation does not make an answer right or wrong: the normalisation removes it.")),
            "Chinese punctuation kept": mutate("ch not in PUNCTUATION", "ch not in string.punctuation", hint=Hint(
                zh="string.punctuation 只有 ASCII 标点；中文的全角标点也要删掉。",
                en="string.punctuation is ASCII only; the full-width Chinese marks must go too.")),
            "Chinese not split into characters": mutate("text = CJK_CHAR.sub(", "text = (lambda r, t: t)(", hint=Hint(
                zh="中文没有空格，不按字切分时整句只是一个 token，F1 只能是 0 或 1。",
                en="Chinese has no spaces: without splitting by character a whole sentence is one token and F1 is "
                   "all or nothing.")),
            "tokens counted once (sets)": mutate("same = sum((Counter(p) & Counter(g)).values())",
                                                 "same = len(set(p) & set(g))", hint=Hint(
                zh="公共 token 要按出现次数计数（多重集交集），不能当集合。",
                en="Common tokens count with multiplicity (a multiset intersection), not as a set.")),
            "first gold answer only": mutate({
                "em = max(float(normalize(prediction) == normalize(g)) for g in gold_answers)":
                    "em = float(normalize(prediction) == normalize(gold_answers[0]))",
                "return em, max(f1(prediction, g) for g in gold_answers)":
                    "return em, f1(prediction, gold_answers[0])"}, hint=Hint(
                zh="有多个标准答案时，EM 和 F1 各取所有标准答案上的最大值。",
                en="With several gold answers, EM and F1 are each the maximum over all of them.")),
            "case kept": mutate("text = text.lower()", "text = text", hint=Hint(
                zh="归一化的第一步是转小写。", en="The normalisation lower-cases first.")),
        },
        bans=(("llmprep.rag", "normalize_answer", "llmprep.rag.normalize_answer"),
              ("llmprep.rag", "token_f1", "llmprep.rag.token_f1"),
              ("llmprep.rag", "exact_match", "llmprep.rag.exact_match")),
    ),
    Exercise(
        grade_id="ch14_splitter_test", functions=("recursive_split",), points=3,
        cases=(
            Case("a course-like passage, 32 tokens, overlap 8", _split(PASSAGE, 32, 8)),
            Case("each paragraph fits alone, not both",
                 _split("Retrieval finds the passages.\n\nThe reader answers from them.", 10, 0),
                 edge="the first separator cuts pieces that fit one by one, but not together"),
            Case("no blank line: lines first",
                 _split("one line of text here\nanother line of text\nthird line is short", 8, 3),
                 edge="the first separator does not occur: the next one that does is used"),
            Case("separators at both ends", _split("\n\nleading breaks and trailing space \n", 5, 2),
                 edge="the text begins with a separator and ends with whitespace"),
            Case("a paragraph of exactly chunk_size tokens", _split("Attention is all you need.\n\nShort.", 7, 0),
                 edge="a piece of exactly chunk_size tokens: long, cut again"),
            Case("a word longer than chunk_size, no empty separator",
                 _split("a supercalifragilisticexpialidocious word\nok", 4, 1, ["\n", " "]),
                 edge="a long piece with no separator left"),
            Case("joined text shorter than its pieces", _split("hello world hello world hello world", 6, 0, [" "]),
                 edge="the joined text has fewer tokens than the sum of its pieces"),
            Case("chunks of exactly chunk_size tokens", _split("one two three four five six seven", 6, 0, [" "]),
                 edge="pieces summing to exactly chunk_size"),
            Case("an overlap of exactly overlap tokens",
                 _split("one two three four five six seven eight nine", 6, 4, [" "]),
                 edge="the overlap run sums to exactly overlap"),
            Case("overlap equal to chunk_size", _split("one two three four five six seven eight", 4, 4, [" "]),
                 edge="overlap = chunk_size: allowed; the room for the new piece decides"),
            Case("a long line between short ones",
                 _split("Hi.\nThis middle line is much longer than the chunk size allows it.\nBye.", 8, 2),
                 edge="a long piece in the middle of a run of small ones"),
            Case("Chinese, characters of several tokens", _split("旋转位置编码让注意力只看相对距离。", 4, 2, ["。", ""]),
                 edge="single characters of 1 to 3 tokens from the empty separator"),
            Case("empty text", _split("", 4, 0, [" "]), edge="an empty text"),
            Case("overlap above chunk_size", _split("abc", 4, 5), edge="overlap = chunk_size + 1: promised ValueError"),
            Case("chunk_size 0", _split("abc", 0, 0), edge="chunk_size = 0: promised ValueError"),
            Case("negative overlap", _split("abc", 4, -1), edge="overlap = -1: promised ValueError"),
        ),
        probe=probe_splitter, judge=judge_splitter,
        mutants={
            "every separator at once": mutate(
                "parts = text.split(sep)\n                pieces = [part + sep for part in parts[:-1]] + [parts[-1]]",
                'parts = re.split("(" + "|".join(re.escape(s) for s in seps if s) + ")", text)\n'
                '                pieces = [a + b for a, b in zip(parts[0::2], parts[1::2] + [""])]',
                hint=Hint(zh="递归切分不是一次按所有分隔符切开：先只用第一个出现的分隔符（段落），放得下的段落保持完整。",
                          en="Recursive splitting is not one cut at every separator: use the first one that occurs, "
                             "and a paragraph that fits stays whole.")),
            "separator moved to the next piece": mutate(
                "pieces = [part + sep for part in parts[:-1]] + [parts[-1]]",
                "pieces = [parts[0]] + [sep + part for part in parts[1:]]",
                hint=Hint(zh="分隔符留在它前面那一段的末尾（keep_separator=\"end\"），块才会在段落或句子结束处断开。",
                          en="The separator stays at the end of the piece before it, so chunks end where a "
                             "paragraph or a line ends.")),
            "a piece of exactly chunk_size tokens kept whole": mutate("if n < chunk_size:", "if n <= chunk_size:",
                hint=Hint(zh="规则是'少于 chunk_size 才算小段'：恰好 chunk_size 个 token 的段落也要用下一个分隔符再切。",
                          en="Only a piece of fewer than chunk_size tokens is small; one of exactly chunk_size "
                             "tokens is cut again.")),
            "a piece no separator can cut is dropped": mutate("if rest else [piece]", "if rest else []",
                hint=Hint(zh="切块不能丢文本：没有分隔符可用的长段自己成为一块，哪怕超过 chunk_size。",
                          en="Chunking never loses text: a long piece with no separator left becomes a chunk "
                             "of its own.")),
            "chunk_size as a strict bound": mutate("if window and total + n > chunk_size:",
                                                   "if window and total + n >= chunk_size:",
                hint=Hint(zh="chunk_size 是上限：恰好 chunk_size 个 token 的块是允许的。",
                          en="chunk_size is an upper bound: a chunk of exactly chunk_size tokens is allowed.")),
            "size counted on the joined text": mutate(
                "if window and total + n > chunk_size:",
                'if window and count_tokens("".join(p for p, _ in window) + piece) > chunk_size:',
                hint=Hint(zh="块的大小按各段 token 数之和计算；拼接后重新分词可能更少（空格和下一个词合并）。",
                          en="A chunk's size is the sum of its pieces' counts; the joined text can tokenize "
                             "shorter, since a space merges with the next word.")),
            "overlap bound strict": mutate("while window and (total > overlap or",
                                           "while window and (total >= overlap or",
                hint=Hint(zh="重叠部分的 token 数可以恰好等于 overlap：'至多'包含等号。",
                          en="The overlap may sum to exactly overlap tokens: at most includes equality.")),
            "overlap kept without room for the new piece": mutate(
                "while window and (total > overlap or total + n > chunk_size):", "while window and total > overlap:",
                hint=Hint(zh="保留的重叠还要给新的一段留出位置；否则新块会超过 chunk_size。",
                          en="The kept overlap must leave room for the new piece, or the new chunk exceeds "
                             "chunk_size.")),
            "one merge over all pieces (overlap across a long piece)": mutate({
                "            chunks += merge(run)                                        # a long piece ends the run ...\n"
                "            run = []\n"
                "            chunks += split(piece, rest) if rest else [piece]           # ... and is cut further, or "
                "kept whole\n"
                "        return chunks + merge(run)":
                    "            run += split(piece, rest) if rest else [(piece, n)]\n"
                    "        return run",
                "return split(text, list(separators)) if text else []":
                    "return merge(split(text, list(separators))) if text else []"},
                hint=Hint(zh="长段单独处理：它前面的小段先合并输出，长段切出的块随后，之后重新开始合并，重叠不跨过长段。",
                          en="A long piece ends the run: merge what came before, emit its own chunks, and start "
                             "afresh after it.")),
            "chunks stripped": mutate('chunks.append("".join(p for p, _ in window))',
                                      'chunks.append("".join(p for p, _ in window).strip())', count=2,
                hint=Hint(zh="块就是各段原样拼接：不要去掉首尾的换行和空格（位置和引用都依赖原文）。",
                          en="A chunk is its pieces joined as they are: keep the newlines and spaces at its ends.")),
            "an empty text gives one empty chunk": mutate("return split(text, list(separators)) if text else []",
                                                          "return split(text, list(separators))",
                hint=Hint(zh="空文本没有任何块，返回空列表，而不是一个空字符串块。",
                          en="An empty text has no chunks: return an empty list, not one empty string.")),
            "no ValueError for overlap above chunk_size": mutate(
                "if chunk_size < 1 or overlap < 0 or overlap > chunk_size:", "if chunk_size < 1 or overlap < 0:",
                hint=Hint(zh="重叠比块还大没有意义，应当报错。",
                          en="An overlap larger than the chunk size has no meaning: raise a ValueError.")),
            "overlap equal to chunk_size refused": mutate("overlap > chunk_size:", "overlap >= chunk_size:",
                hint=Hint(zh="overlap 等于 chunk_size 是允许的（库也允许），只有更大时才报错。",
                          en="An overlap equal to chunk_size is allowed (the library accepts it); only a larger "
                             "one raises.")),
        },
        bans=(("langchain_text_splitters", "RecursiveCharacterTextSplitter",  # labels short: a 48-character
               "langchain's RecursiveCharacterTextSplitter"),                      # name reads as encoded data
              ("langchain_text_splitters.character", "RecursiveCharacterTextSplitter",
               "langchain's RecursiveCharacterTextSplitter (character module)")),
    ),
]


# ============================================================================ the rule table

RULES = {
    "ch14_ivf_test": (
        R("assign every database vector to its nearest centroid by squared L2 distance",
          ("8-d, 10 lists, nprobe 3", "nprobe 1", "a query equal to a database vector"),
          {"lists by inner product": "I"}),
        R("probe the `nprobe` lists whose centroids are nearest to the query",
          ("8-d, 10 lists, nprobe 3", "nprobe = nlist (exact search)"), {"only the nearest list is probed": "I"}),
        R("sorted by increasing squared distance", ("8-d, 10 lists, nprobe 3", "nprobe 1"),
          {"distances not squared": "distances"}),
        R("the missing slots are padded with id -1 and distance `np.inf`", ("fewer candidates than k",),
          {"padding with id 0": "padding"}),
        R("Raise `ValueError` if `k` < 1 or `nprobe` is not between 1 and `nlist`.", ("nprobe above nlist", "k = 0"),
          {"no ValueError for nprobe > nlist": "ValueError"}),
    ),
    "ch14_pq_test": (
        R("sub-vector j is `x[j*dsub:(j+1)*dsub]`", ("4 sub-spaces of 2, 256 centroids", "16 centroids per sub-space",
                                                   "a vector exactly on its centroids"),
          {"strided sub-vectors": "codes"}),
        R("the index of the centroid of `codebooks[j]` nearest to sub-vector j in squared L2 distance",
          ("4 sub-spaces of 2, 256 centroids", "one sub-space (m = 1)", "one-dimensional sub-vectors"),
          {"L1 distance to the centroids": "codes"}),
        R("dtype `uint8`", ("16 centroids per sub-space", "4 sub-spaces of 2, 256 centroids"),
          {"codes kept as int64": "uint8"}),
        R("The query is not quantized", ("4 sub-spaces of 2, 256 centroids", "a vector exactly on its centroids"),
          {"symmetric distance (query quantized too)": "distances"}),
    ),
    "ch14_mmr_test": (
        R("the maximum cosine to the documents already picked", ("lam 0.5, 10 of 40 documents", "lam = 0",
                                                                 "lam 0.3, many picks"),
          {"redundancy as the mean similarity": "selected"}),
        R("lam * cos(query, doc) - (1 - lam) * max over picked p of cos(doc, p)",
          ("lam = 1", "lam 0.5, 10 of 40 documents"), {"lam on the wrong term": "selected"}),
        R("All similarities are **cosine similarities**", ("lam = 1", "lam 0.5, 10 of 40 documents"),
          {"dot products instead of cosines": "selected"}),
        R("Ties go to the smaller index.", ("a document and its scaled copy",), {"ties to the larger index": "selected"}),
        R("Raise `ValueError` if `lam` is outside [0, 1].", ("lam = 1.5",), {"no ValueError for lam > 1": "ValueError"}),
    ),
    "ch14_ndcg_test": (
        R("the gain being the relevance grade itself (linear gains, not 2^rel − 1)",
          ("3 queries, 8 documents, k = 5", "grades 0-9", "k = 1"), {"exponential gains": "ndcg"}),
        R("Tied scores share the average gain of their group", ("tied scores",), {"ties broken by position": "ndcg"}),
        R("the discount 1 / log2(rank + 1)", ("3 queries, 8 documents, k = 5", "k larger than the list"),
          {"discount off by one": "ndcg"}),
        R("only the top k ranks count", ("3 queries, 8 documents, k = 5", "k = 1"), {"no cut at k": "ndcg"}),
        R("A query with no relevant document scores 0", ("a query with no relevant document",),
          {"a query without relevant documents scores 1": "ndcg"}),
        R("Raise `ValueError` if any relevance is negative.", ("negative relevance",),
          {"no ValueError for negative relevance": "ValueError"}),
    ),
    "ch14_context_test": (
        R("in descending order of score", ("words, five chunks", "SmolLM2 tokens, eight chunks",
                                           "best chunk last in the input"),
          {"input order instead of score order": "sources"}),
        R("equal scores keep their input order", ("equal scores",), {"ties reversed": "sources"}),
        R("stripped", ("duplicates after stripping",), {"text not stripped": "context"}),
        R("skip a chunk whose stripped text equals one already\n   taken", ("duplicates after stripping",),
          {"no deduplication": "sources"}),
        R("the whole context string, markers and separators included, counted by `count_tokens`",
          ("SmolLM2 tokens, separators decide",), {"blocks counted one by one": "budget"}),
        R("at most `budget` tokens", ("budget met exactly",), {"budget used as a strict bound": "sources"}),
        R("a chunk that does not fit is skipped and the next one is tried", ("a long chunk skipped, a later one fits",
                                                                             "words, five chunks"),
          {"stops at the first chunk that does not fit": "sources"}),
        R("Raise `ValueError` if `budget` is negative.", ("negative budget",),
          {"no ValueError for a negative budget": "ValueError"}),
    ),
    "ch14_squad_test": (
        R("lower case", ("punctuation and case only",), {"case kept": "exact_match"}),
        R("remove every punctuation character: `string.punctuation` and the Chinese marks",
          ("punctuation and case only", "Chinese punctuation"),
          {"punctuation kept": "exact_match", "Chinese punctuation kept": "exact_match"}),
        R("remove the articles `a`, `an`, `the` as whole words", ("English answers", "articles as whole words"),
          {"articles kept": "exact_match"}),
        R("put spaces around every CJK character U+4E00–U+9FFF", ("Chinese characters",),
          {"Chinese not split into characters": "exact_match"}),
        R("common tokens are counted with multiplicity", ("repeated tokens",), {"tokens counted once (sets)": "f1"}),
        R("the maximum over the gold answers", ("several gold answers",), {"first gold answer only": "exact_match"}),
    ),
    "ch14_splitter_test": (
        R("the first separator in `separators` that occurs in the text",
          ("a course-like passage, 32 tokens, overlap 8", "each paragraph fits alone, not both",
           "no blank line: lines first"), {"every separator at once": "chunks"}),
        R("The separator stays at the end of the piece before it",
          ("a course-like passage, 32 tokens, overlap 8", "separators at both ends"),
          {"separator moved to the next piece": "chunks"}),
        R("A piece of fewer than `chunk_size` tokens is small.", ("a paragraph of exactly chunk_size tokens",),
          {"a piece of exactly chunk_size tokens kept whole": "chunks"}),
        R("a long piece with no separator left is a chunk of its own, however long",
          ("a word longer than chunk_size, no empty separator",), {"a piece no separator can cut is dropped": "chunks"}),
        R("at most `chunk_size` tokens", ("chunks of exactly chunk_size tokens", "a course-like passage, 32 tokens, overlap 8"),
          {"chunk_size as a strict bound": "chunks"}),
        R("the size of a chunk is the sum of its pieces' token counts", ("joined text shorter than its pieces",),
          {"size counted on the joined text": "chunks"}),
        R("the longest run of the emitted chunk's last pieces whose token sum is at most `overlap`",
          ("an overlap of exactly overlap tokens", "a course-like passage, 32 tokens, overlap 8"),
          {"overlap bound strict": "chunks"}),
        R("leaves room for the new piece", ("overlap equal to chunk_size", "Chinese, characters of several tokens"),
          {"overlap kept without room for the new piece": "chunks"}),
        R("A long piece ends the run", ("a long line between short ones",),
          {"one merge over all pieces (overlap across a long piece)": "chunks"}),
        R("nothing is stripped or inserted", ("separators at both ends", "a course-like passage, 32 tokens, overlap 8"),
          {"chunks stripped": "chunks"}),
        R("An empty text has no chunks.", ("empty text",), {"an empty text gives one empty chunk": "chunks"}),
        R("Raise `ValueError` if `chunk_size` < 1, `overlap` < 0 or `overlap` > `chunk_size`",
          ("overlap above chunk_size", "chunk_size 0", "negative overlap", "overlap equal to chunk_size"),
          {"no ValueError for overlap above chunk_size": "ValueError", "overlap equal to chunk_size refused": "ValueError"}),
    ),
}

ALTERNATIVES = {
    "ch14_ivf_test": {"plain loops, dict of lists, heapq for the k best": """
        def ivf_search(xb, centroids, queries, k, nprobe):
            import heapq

            nlist = len(centroids)
            if k < 1 or nprobe < 1 or nprobe > nlist:
                raise ValueError("bad k or nprobe")
            xb = np.asarray(xb, dtype=np.float64)
            cents = np.asarray(centroids, dtype=np.float64)
            lists = {c: [] for c in range(nlist)}
            for i, v in enumerate(xb):
                d2 = [float(((v - c) ** 2).sum()) for c in cents]
                lists[d2.index(min(d2))].append(i)
            out_d, out_i = [], []
            for q in np.asarray(queries, dtype=np.float64):
                near = sorted(range(nlist), key=lambda c: (float(((q - cents[c]) ** 2).sum()), c))[:nprobe]
                cand = [(float(((q - xb[i]) ** 2).sum()), i) for c in near for i in lists[c]]
                best = heapq.nsmallest(k, cand)
                best += [(float("inf"), -1)] * (k - len(best))
                out_d.append([d for d, _ in best])
                out_i.append([i for _, i in best])
            return np.array(out_d, dtype=np.float32), np.array(out_i, dtype=np.int64)
    """},
    "ch14_pq_test": {"a loop over sub-spaces with np.linalg.norm, np.take_along_axis for the lookups": """
        def pq_encode(x, codebooks):
            m, ksub, dsub = codebooks.shape
            if np.shape(x)[-1] != m * dsub:
                raise ValueError("dimension mismatch")
            codes = np.empty((len(x), m), dtype=np.uint8)
            for j in range(m):
                piece = x[:, j * dsub:(j + 1) * dsub]
                d = np.linalg.norm(piece[:, None, :] - codebooks[j][None], axis=-1)
                codes[:, j] = d.argmin(axis=1)
            return codes

        def pq_adc(queries, codes, codebooks):
            m, ksub, dsub = codebooks.shape
            if np.shape(queries)[-1] != m * dsub:
                raise ValueError("dimension mismatch")
            total = np.zeros((len(queries), len(codes)), dtype=np.float64)
            for j in range(m):
                piece = queries[:, j * dsub:(j + 1) * dsub].astype(np.float64)
                table = ((piece[:, None, :] - codebooks[j][None].astype(np.float64)) ** 2).sum(-1)   # (q, ksub)
                index = np.broadcast_to(codes[:, j].astype(np.int64), (len(queries), len(codes)))
                total += np.take_along_axis(table, index, axis=1)
            return total.astype(np.float32)
    """},
    "ch14_mmr_test": {"vectorised, a running maximum, np.argmax for ties": """
        def mmr(query, docs, k, lam):
            if lam < 0 or lam > 1:
                raise ValueError("lam outside [0, 1]")
            d = docs / np.sqrt((docs ** 2).sum(1, keepdims=True))
            rel = d @ query / np.sqrt(query @ query)
            closest = np.full(len(docs), -np.inf)
            chosen = []
            while len(chosen) < min(k, len(docs)):
                gain = lam * rel - (1 - lam) * (closest if chosen else 0.0)
                gain[chosen] = -np.inf
                best = int(np.argmax(gain))
                chosen.append(best)
                closest = np.maximum(closest, d @ d[best])
            return chosen
    """},
    "ch14_ndcg_test": {"average gain per rank from scipy's tie-aware ranks": """
        def ndcg_at_k(relevance, scores, k):
            from scipy.stats import rankdata

            rel_all = np.asarray(relevance, dtype=float)
            if np.any(rel_all < 0):
                raise ValueError("negative relevance")
            results = []
            for rel, sc in zip(rel_all, np.asarray(scores, dtype=float)):
                lo = rankdata(-sc, method="min") - 1          # first rank of each document's tie group (from 0)
                hi = rankdata(-sc, method="max")              # one past its last rank
                dcg = 0.0
                for r, a, b in zip(rel, lo, hi):
                    ranks = np.arange(a, min(b, k))
                    dcg += r / (b - a) * np.sum(1 / np.log2(ranks + 2))
                best = np.sort(rel)[::-1][:k]
                idcg = np.sum(best / np.log2(np.arange(len(best)) + 2))
                results.append(0.0 if idcg == 0 else dcg / idcg)
            return float(sum(results) / len(results))
    """},
    "ch14_context_test": {"a while loop over a sorted list of (score, position) pairs": """
        def assemble_context(chunks, budget, count_tokens):
            if budget < 0:
                raise ValueError("negative budget")
            queue = sorted(((-c["score"], pos) for pos, c in enumerate(chunks)))
            blocks, sources = [], []
            while queue:
                _, pos = queue.pop(0)
                text = chunks[pos]["text"].strip()
                if any(b.split(" ", 1)[1] == text for b in blocks):
                    continue
                block = "[%d] %s" % (len(blocks) + 1, text)
                if count_tokens("\\n\\n".join(blocks + [block])) <= budget:
                    blocks.append(block)
                    sources.append(chunks[pos]["source"])
            return "\\n\\n".join(blocks), sources
    """},
    "ch14_squad_test": {"str.translate and a regex split, F1 from a token multiset loop": """
        def squad_scores(prediction, gold_answers):
            if len(gold_answers) == 0:
                raise ValueError("no gold answers")
            table = str.maketrans("", "", "".join(PUNCTUATION))

            def tokens(s):
                s = s.lower().translate(table)
                s = " ".join(w for w in s.split(" ") if w not in ("a", "an", "the"))
                return re.sub("([\\u4e00-\\u9fff])", " \\\\1 ", s).split()

            def f1(p, g):
                remaining = list(g)
                same = 0
                for t in p:
                    if t in remaining:
                        remaining.remove(t)
                        same += 1
                return 0.0 if same == 0 else 2 * same / (len(p) + len(g))

            p = tokens(prediction)
            return (max(1.0 if p == tokens(g) else 0.0 for g in gold_answers),
                    max(f1(p, tokens(g)) for g in gold_answers))
    """},
    "ch14_splitter_test": {"regex pieces, a shared output list and a deque for the window": """
        def recursive_split(text, count_tokens, chunk_size, overlap, separators=("\\n\\n", "\\n", " ", "")):
            from collections import deque

            if not (chunk_size >= 1 and 0 <= overlap <= chunk_size):
                raise ValueError("bad chunk_size or overlap")
            out = []

            def flush(run):
                window, size = deque(), 0
                for piece, n in run:
                    if window and size + n > chunk_size:
                        out.append("".join(p for p, _ in window))
                        while window and (size > overlap or size + n > chunk_size):
                            size -= window.popleft()[1]
                    window.append((piece, n))
                    size += n
                if window:
                    out.append("".join(p for p, _ in window))

            def go(text, seps):
                k = next((i for i, s in enumerate(seps) if s == "" or s in text), None)
                if k is None:
                    pieces, later = [text], []
                elif seps[k] == "":
                    pieces, later = list(text), []
                else:
                    found = re.finditer(".*?" + re.escape(seps[k]) + "|.+", text, flags=re.S)
                    pieces, later = [m.group(0) for m in found], seps[k + 1:]
                run = []
                for piece in pieces:
                    n = count_tokens(piece)
                    if n < chunk_size:
                        run.append((piece, n))
                        continue
                    flush(run)
                    run = []
                    if later:
                        go(piece, later)
                    else:
                        out.append(piece)
                flush(run)

            if text:
                go(text, list(separators))
            return out
    """},
}

# The oracle each exercise is checked against (used by the test suite, in the trusted process).
ORACLES = {
    "ch14_ivf_test": oracle_ivf,
    "ch14_pq_test": oracle_pq,
    "ch14_mmr_test": oracle_mmr,
    "ch14_ndcg_test": oracle_ndcg,
    "ch14_context_test": oracle_context,
    "ch14_squad_test": oracle_squad,
    "ch14_splitter_test": oracle_splitter,
}

CHAPTER = Chapter("ch14_rag", "ch14_exercises.ipynb", EXERCISES, rules=RULES, alternatives=ALTERNATIVES, oracles=ORACLES)
