"""Trusted spec of Chapter 4's graded cells (solutions/ch04_applications/ch04_exercises.ipynb).

Probes are self-contained (they run in the sandbox). Oracles (trusted side): cosine top-k is a normalised dot product
and ``torch.topk``; BM25, recall@k / MRR, span selection and reciprocal-rank fusion have no library among the course's
dependencies, so their oracles are deliberately naive loops (over documents, queries, span pairs, rank positions).
"""
from llmprep.grading.spec import Case, Chapter, Exercise, Hint, Rule, allclose, mutate, ranking


# ============================================================================ 1 cosine top-k

def probe_cosine_top_k(ns, params):
    import torch

    fn = ns["cosine_top_k"]
    g = torch.Generator().manual_seed(params["seed"])
    n, d = params["n"], params["d"]
    corpus = torch.randn(n, d, generator=g) * torch.exp(torch.randn(n, 1, generator=g) * params["norm_spread"])
    shape = (params["m"], d) if params.get("m") else (d,)
    query = torch.randn(*shape, generator=g) * params["query_scale"]
    if "query_norms" in params:  # rows rescaled to the given L2 norms (some below F.normalize's eps = 1e-12)
        query = query / query.norm(dim=-1, keepdim=True) * torch.tensor(params["query_norms"])[:, None]
    for row, norm in params.get("corpus_norms", []):
        corpus[row] = corpus[row] / corpus[row].norm() * norm
    q0, c0 = query.clone(), corpus.clone()
    scores, indices = fn(query, corpus, params["k"])
    return {"scores": torch.as_tensor(scores).to(torch.float32),
            "indices": torch.as_tensor(indices).to(torch.int64),
            "inputs_untouched": bool(torch.equal(q0, query) and torch.equal(c0, corpus))}


def oracle_cosine_top_k():
    import torch

    topk = torch.topk  # bound now

    def cosine_top_k(query, corpus, k):
        qn = query / query.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # F.normalize's eps, as the text states
        cn = corpus / corpus.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        sims = qn @ cn.T
        out = topk(sims, k, dim=-1)
        return out.values, out.indices

    return {"cosine_top_k": cosine_top_k}


# ============================================================================ 2 BM25

def probe_bm25(ns, params):
    import random

    import numpy as np

    fn = ns["bm25_scores"]
    if "docs" in params:
        docs = [list(doc) for doc in params["docs"]]
        query = list(params["query"])
    else:
        rng = random.Random(params["seed"])
        vocab = [f"w{i}" for i in range(params["vocab"])]
        weights = [1.0 / (i + 1) ** params["zipf"] for i in range(params["vocab"])]
        docs = [rng.choices(vocab, weights, k=rng.randint(params["min_len"], params["max_len"]))
                for _ in range(params["n_docs"])]
        query = rng.choices(vocab, k=params["query_len"]) + list(params.get("extra_query", []))
    snapshot = ([list(d) for d in docs], list(query))
    kwargs = {key: params[key] for key in ("k1", "b") if key in params}
    scores = fn(query, docs, **kwargs)
    return {"scores": np.asarray([float(s) for s in scores], dtype=np.float64),
            "inputs_untouched": snapshot == (docs, query)}


def oracle_bm25():
    import math

    def bm25_scores(query_tokens, docs_tokens, k1=1.5, b=0.75):
        n = len(docs_tokens)
        avgdl = sum(len(doc) for doc in docs_tokens) / n
        out = []
        for doc in docs_tokens:
            total = 0.0
            for term in query_tokens:
                df = 0
                for other in docs_tokens:
                    if term in other:
                        df += 1
                tf = 0
                for tok in doc:
                    if tok == term:
                        tf += 1
                if tf == 0:  # contributes 0, also where the fraction reads 0/0 (|D| = 0 with b = 1, or k1 = 0)
                    continue
                idf = math.log((n - df + 0.5) / (df + 0.5) + 1.0)
                total += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(doc) / avgdl))
            out.append(total)
        return out

    return {"bm25_scores": bm25_scores}


# ============================================================================ 3 recall@k and MRR

def probe_retrieval_metrics(ns, params):
    import random

    recall_at_k, mrr = ns["recall_at_k"], ns["mrr"]
    if "ranked" in params:
        ranked = [list(r) for r in params["ranked"]]
        relevant = [set(r) for r in params["relevant"]]
    else:
        rng = random.Random(params["seed"])
        ranked, relevant = [], []
        for _ in range(params["queries"]):
            ranked.append(rng.sample(range(params["n_docs"]), rng.randint(1, params["list_len"])))
            relevant.append(set(rng.sample(range(params["n_docs"]), rng.randint(1, params["max_relevant"]))))
    out = {f"recall@{k}": float(recall_at_k(ranked, relevant, k)) for k in params["ks"]}
    out["mrr"] = float(mrr(ranked, relevant))
    return out


def oracle_retrieval_metrics():
    import numpy as np

    def _hits(ranked, relevant):
        width = max(len(r) for r in ranked)
        hits = np.zeros((len(ranked), width))
        for i, (r, rel) in enumerate(zip(ranked, relevant)):
            hits[i, :len(r)] = [doc in rel for doc in r]
        return hits

    def recall_at_k(ranked, relevant, k):
        hits = _hits(ranked, relevant)[:, :k]
        return float(np.mean(hits.sum(1) / np.array([len(rel) for rel in relevant])))

    def mrr(ranked, relevant):
        hits = _hits(ranked, relevant)
        first = hits.argmax(1)
        rr = np.where(hits.any(1), 1.0 / (first + 1), 0.0)
        return float(rr.mean())

    return {"recall_at_k": recall_at_k, "mrr": mrr}


# ============================================================================ 4 extractive-QA span

def probe_best_span(ns, params):
    import torch

    fn = ns["best_span"]
    g = torch.Generator().manual_seed(params["seed"])
    length = params["length"]
    if params["mode"] == "ties":
        start = torch.randint(-2, 3, (length,), generator=g).to(torch.float32)
        end = torch.randint(-2, 3, (length,), generator=g).to(torch.float32)
    else:
        start = torch.randn(length, generator=g) * 2
        end = torch.randn(length, generator=g) * 2
    if params["mode"] == "negative":  # every span scores below 0
        start, end = -start.abs() - 5.0, -end.abs() - 5.0
    if params["mode"] == "crossing":  # the best end sits before the best start
        start[params["length"] - 2] = 9.0
        end[1] = 9.0
    if params["mode"] == "boundary":  # best valid span exactly max_len long; one token longer would score more
        start, end = start / 8, end / 8  # the rest far below: no other span comes near
        start[2], end[1 + params["max_len"]], end[2 + params["max_len"]] = 8.0, 7.0, 9.0
    if params["mode"] == "long":  # the best pair is further apart than max_len allows
        start[1] = 8.0
        end[length - 1] = 8.0
    s0, e0 = start.clone(), end.clone()
    s, e, score = fn(start, end, params["max_len"])
    return {"start": int(s), "end": int(e), "score": float(score),
            "inputs_untouched": bool(torch.equal(s0, start) and torch.equal(e0, end))}


def oracle_best_span():
    def best_span(start_logits, end_logits, max_len):
        best = None
        n = len(start_logits)
        for s in range(n):
            for e in range(s, min(n, s + max_len)):
                score = float(start_logits[s]) + float(end_logits[e])
                if best is None or score > best[2]:
                    best = (s, e, score)
        return best

    return {"best_span": best_span}


# ============================================================================ 5 reciprocal-rank fusion

def probe_rrf(ns, params):
    import random

    fn = ns["reciprocal_rank_fusion"]
    if "rankings" in params:
        rankings = [list(r) for r in params["rankings"]]
    else:
        rng = random.Random(params["seed"])
        rankings = [rng.sample(range(params["n_docs"]), rng.randint(params["min_len"], params["max_len"]))
                    for _ in range(params["lists"])]
    before = [list(r) for r in rankings]
    kwargs = {key: params[key] for key in ("c", "k") if key in params}
    ids, scores = fn(rankings, **kwargs)
    return {"ids": [int(i) for i in ids], "scores": [float(x) for x in scores],
            "inputs_untouched": rankings == before}


def oracle_rrf():
    def reciprocal_rank_fusion(rankings, c=60, k=None):
        docs = sorted({d for r in rankings for d in r})
        fused = []
        for d in docs:
            total = 0.0
            for r in rankings:
                for position in range(len(r)):
                    if r[position] == d:
                        total += 1.0 / (c + position + 1)
            fused.append((d, total))
        fused.sort(key=lambda pair: -pair[1])  # stable: equal scores keep the ascending id order
        if k is not None:
            fused = fused[:k]
        return [d for d, _ in fused], [t for _, t in fused]

    return {"reciprocal_rank_fusion": reciprocal_rank_fusion}


# ============================================================================ the spec

_HAND_DOCS = [["the", "cat", "sat"], ["the", "dog", "sat", "down"], ["a", "cat", "and", "a", "dog"]]

# Mutants are edits of the solution's own functions (read from the solution notebook); snippets used more than once:
SIMS = "sims = F.normalize(query, dim=-1) @ F.normalize(corpus, dim=-1).T"
VALID = "valid = (gap >= 0) & (gap < max_len)"
ADD = "fused[doc] = fused.get(doc, 0.0) + 1.0 / (c + rank)"

EXERCISES = [
    Exercise(
        grade_id="ch04_cosine_top_k_test", functions=("cosine_top_k",), points=2,
        cases=(
            Case("one query, unit-ish corpus", dict(seed=0, n=50, d=16, k=5, norm_spread=0.0, query_scale=1.0)),
            Case("batch of queries, corpus norms spread widely",
                 dict(seed=1, n=80, d=8, m=4, k=10, norm_spread=1.5, query_scale=3.0)),
            Case("k equals the corpus size", dict(seed=2, n=7, d=5, k=7, norm_spread=1.0, query_scale=0.2),
                 edge="k = n"),
            Case("k = 1, long vectors", dict(seed=3, n=30, d=384, m=3, k=1, norm_spread=2.0, query_scale=10.0),
                 edge="k = 1"),
            Case("a batch of one query", dict(seed=4, n=20, d=8, m=1, k=3, norm_spread=1.0, query_scale=1.0),
                 edge="a batch (m, d) with m = 1"),
            Case("vectors shorter than eps", dict(seed=5, n=12, d=16, m=3, k=4, norm_spread=1.0, query_scale=1.0,
                                                  query_norms=[1.0, 1e-10, 1e-14],
                                                  corpus_norms=[[0, 1e-14], [1, 1e-11], [2, 3e-13]]),
                 edge="norms on both sides of F.normalize's eps = 1e-12 (1e-10, 1e-11 above; 3e-13, 1e-14 below)"),
        ),
        probe=probe_cosine_top_k, judge=allclose(rtol=1e-4, atol=1e-5),
        mutants={
            "raw dot product (no normalisation)": mutate(SIMS, "sims = query @ corpus.T",
                hint=Hint("用了原始点积，没有归一化；余弦相似度要先把两边都归一化为单位向量。",
                    "A raw dot product is used; cosine similarity needs both sides normalised to unit length.")),
            "corpus normalised, query not": mutate("F.normalize(query, dim=-1) @", "query @",
                hint=Hint("只归一化了 corpus，query 没有归一化，分数不是余弦相似度。",
                    "The corpus is normalised but the query is not, so the scores are not cosines.")),
            "ascending order (least similar first)": mutate("largest=True", "largest=False",
                hint=Hint("结果按升序排列，最不相似的排在最前。", "Results come in ascending order, least similar first.")),
            "k off by one (k - 1 results)": mutate("torch.topk(sims, k,", "torch.topk(sims, k - 1,",
                hint=Hint("只返回了 k−1 个结果。", "Only k - 1 results are returned.")),
            "normalises the inputs in place": mutate(SIMS, "query /= query.norm(dim=-1, keepdim=True)\n"
                                                           "    corpus /= corpus.norm(dim=-1, keepdim=True)\n"
                                                           "    sims = query @ corpus.T",
                hint=Hint("原地归一化了输入的 query 和 corpus，修改了调用者的张量。",
                    "The query and corpus are normalised in place, changing the caller's tensors.")),
            "a single query returned as a batch of one": mutate("F.normalize(query, dim=-1)",
                                                                "F.normalize(query.reshape(-1, query.shape[-1]), dim=-1)",
                hint=Hint("单个（1-D）query 的结果被当成 batch 返回，多了一维。",
                    "A single 1-D query comes back as a batch of one, with an extra dimension.")),
            "a batch of one query squeezed to a single query": mutate(
                "return out.values, out.indices", "return out.values.squeeze(0), out.indices.squeeze(0)",
                hint=Hint("只有一个 query 的 batch 被 squeeze 掉了 batch 维；batch 输入应返回 batch 形状。",
                    "A batch holding one query loses its batch dimension; batch input must keep its batch shape.")),
            "divides by the norm itself (no eps)": mutate(
                SIMS, "sims = (query / query.norm(dim=-1, keepdim=True)) @ (corpus / corpus.norm(dim=-1, keepdim=True)).T",
                hint=Hint(zh="极短的向量要除以 max(‖v‖, 1e-12)，而不是它自己的范数：这是 F.normalize 的约定。",
                          en="A very short vector is divided by max(|v|, 1e-12), not by its own norm: that is "
                             "F.normalize's convention.")),
            "eps added to the norm (v / (|v| + 1e-8))": mutate(
                SIMS, "sims = (query / (query.norm(dim=-1, keepdim=True) + 1e-8)) @ "
                      "(corpus / (corpus.norm(dim=-1, keepdim=True) + 1e-8)).T",
                hint=Hint(zh="eps 是范数的下限（取 max），不是加到范数上的常数；加上去会让短向量的相似度变小。",
                          en="eps is a floor on the norm (a max), not a constant added to it; adding it shrinks "
                             "the similarities of short vectors.")),
        },
    ),
    Exercise(
        grade_id="ch04_bm25_test", functions=("bm25_scores",), points=3,
        cases=(
            Case("hand-computed: three short documents", dict(docs=_HAND_DOCS, query=["cat", "sat"])),
            Case("hand-computed: repeated query term, term in every document, unknown term",
                 dict(docs=[["x", "y"], ["x", "x", "x", "z"], ["x", "y", "z", "w", "v", "u"]],
                      query=["x", "y", "y", "nowhere"], k1=1.2, b=0.5),
                 edge="df = N (idf at its smallest), df = 0 (a token in no document), a query token repeated, "
                      "f(q, D) = 3 in one document"),
            Case("random Zipf corpus, default parameters",
                 dict(seed=0, vocab=40, zipf=1.1, n_docs=25, min_len=3, max_len=30, query_len=4)),
            Case("random corpus, b=1 and k1=2",
                 dict(seed=1, vocab=15, zipf=0.8, n_docs=12, min_len=1, max_len=60, query_len=6, k1=2.0, b=1.0),
                 edge="b = 1 (full length normalisation), documents of 1 to 60 tokens"),
            Case("random corpus, b=0 (no length normalisation)",
                 dict(seed=2, vocab=30, zipf=1.0, n_docs=10, min_len=2, max_len=20, query_len=3, extra_query=["w0"],
                      k1=0.9, b=0.0), edge="b = 0 (no length normalisation)"),
            Case("an empty document in the corpus",
                 dict(docs=[["x", "y", "x"], [], ["y", "z"], ["z", "z", "w", "x"]], query=["x", "z"], k1=1.2, b=0.75),
                 edge="an empty document (|D| = 0; the corpus need only have one non-empty document)"),
            Case("an empty document with b = 1",
                 dict(docs=[["a", "b", "a"], [], ["b", "c"], ["c"]], query=["a", "c", "c"], k1=1.5, b=1.0),
                 edge="|D| = 0 with b = 1: the fraction reads 0/0 for every term"),
            Case("k1 = 0 (binary term frequency)",
                 dict(seed=3, vocab=12, zipf=1.0, n_docs=8, min_len=1, max_len=10, query_len=4, k1=0.0, b=0.75),
                 edge="k1 = 0: every f(q, D) = 0 reads 0/0, every f > 0 counts idf once"),
        ),
        probe=probe_bm25, judge=allclose(rtol=1e-6, atol=1e-9),  # float32 arithmetic passes
        mutants={
            "no document-length normalisation": mutate("norm = k1 * (1.0 - b + b * len(doc) / avgdl)", "norm = k1",
                hint=Hint("没有文档长度归一化（b 和 avgdl 没用上）。",
                    "There is no document-length normalisation: b and avgdl are never used.")),
            "idf without the +1 (negative for common terms)": mutate(" + 0.5) + 1.0)", " + 0.5))",
                hint=Hint("idf 漏了 +1，出现在一半以上文档中的词 idf 为负。",
                    "The idf is missing its +1, so terms in more than half the documents get a negative idf.")),
            "term frequency not saturated (tf * idf)": mutate("idf[q] * tf[q] * (k1 + 1.0) / (tf[q] + norm)",
                                                              "idf[q] * tf[q]",
                hint=Hint("词频没有饱和（直接 tf·idf），k1 没起作用。",
                    "Term frequency is not saturated (plain tf times idf); k1 plays no part.")),
            "df counts occurrences, not documents": mutate("for term in set(doc))", "for term in doc)",
                hint=Hint("df 统计了词的出现次数，而不是包含该词的文档数。",
                    "df counts occurrences of a term instead of documents that contain it.")),
            "repeated query tokens counted once": mutate("for q in query_tokens if", "for q in set(query_tokens) if",
                hint=Hint("查询中重复的词只算了一次；每次出现都要计分。",
                    "A query token that repeats is counted once; each occurrence adds to the score.")),
            "unknown query token raises KeyError": mutate("df = Counter(term for doc in docs_tokens for term in set(doc))",
                                                          "df = dict(Counter(term for doc in docs_tokens for term in set(doc)))",
                hint=Hint("查询中有语料里没有的词时抛 KeyError；这样的词应贡献 0 分。",
                    "A query token absent from the corpus raises KeyError; it should simply add nothing.")),
            "0/0 for an absent term (ZeroDivisionError)": mutate(
                " for q in query_tokens if tf[q]))", " for q in query_tokens))",
                hint=Hint(zh="f(q, D) = 0 的词贡献 0；空文档在 b = 1（或 k1 = 0）时分式是 0/0，要先跳过这些词。",
                          en="A term with f(q, D) = 0 contributes 0; for an empty document with b = 1 (or k1 = 0) the "
                             "fraction reads 0/0, so skip such terms first.")),
            "sorts the query in place": mutate("    n = len(docs_tokens)\n",
                                               "    query_tokens.sort()\n    n = len(docs_tokens)\n", hint=Hint(
                "原地对查询 token 排序，修改了输入列表。", "The query tokens are sorted in place, modifying the input list.")),
            "avgdl over the non-empty documents only": mutate(
                "avgdl = sum(len(doc) for doc in docs_tokens) / n",
                "avgdl = sum(len(doc) for doc in docs_tokens) / sum(1 for doc in docs_tokens if doc)",
                hint=Hint("avgdl 只在非空文档上平均；空文档也算在文档总数里。",
                    "avgdl averages over non-empty documents only; empty documents count too.")),
        },
    ),
    Exercise(
        grade_id="ch04_retrieval_metrics_test", functions=("recall_at_k", "mrr"), points=2,
        cases=(
            Case("closed form: three queries, one finds nothing",
                 dict(ranked=[[3, 1, 2], [5, 6, 7], [9, 8]], relevant=[[1], [7, 4], [0]], ks=[1, 2, 3]),
                 edge="a query with no relevant id in its list (reciprocal rank 0); k = 1 where no hit is at rank 1"),
            Case("closed form: relevant documents beyond k and lists shorter than k",
                 dict(ranked=[[0, 1, 2, 3, 4, 5], [10, 11]], relevant=[[0, 5], [11, 12, 13]], ks=[1, 3, 5, 10]),
                 edge="k = 10 beyond every list (6 and 2 ids); a hit at rank 1; a relevant id at rank k + 1"),
            Case("random: 40 queries, up to 3 relevant each",
                 dict(seed=0, queries=40, n_docs=30, list_len=12, max_relevant=3, ks=[1, 5, 10])),
            Case("random: 25 queries, long lists",
                 dict(seed=1, queries=25, n_docs=60, list_len=40, max_relevant=6, ks=[1, 4, 20])),
        ),
        probe=probe_retrieval_metrics, judge=allclose(rtol=1e-6, atol=1e-9),  # float32 means pass
        mutants={
            "recall divided by k (that is precision@k)": mutate("if doc in rel) / len(rel)", "if doc in rel) / k",
                hint=Hint("recall 除以了 k，那是 precision@k；应除以相关文档的个数。",
                    "Recall is divided by k, which is precision at k; it is divided by the number of relevant documents.")),
            "recall counts hits beyond k": mutate("for doc in ids[:k]", "for doc in ids",
                hint=Hint("recall 统计了前 k 个之外的命中。", "Recall counts hits beyond the first k results.")),
            "MRR with a 0-based rank": mutate("total += 1.0 / rank", "total += 1.0 / max(rank - 1, 1)", hint=Hint(
                "MRR 用了从 0 开始的名次；第一个结果的名次是 1。", "MRR uses a 0-based rank; the first result has rank 1.")),
            "MRR averaged over queries with a hit only": mutate(
                "                break\n    return total / len(ranked)",
                "                break\n"
                "    return total / max(1, sum(any(d in set(r) for d in i) for i, r in zip(ranked, relevant)))",
                hint=Hint("MRR 只在有命中的查询上平均；没命中的查询记 0，也要计入平均。",
                    "MRR averages over queries with a hit only; a query with no hit scores 0 and still counts.")),
        },
    ),
    Exercise(
        grade_id="ch04_best_span_test", functions=("best_span",), points=3,
        cases=(
            Case("random logits, max_len 5", dict(seed=0, length=20, max_len=5, mode="random")),
            Case("best end lies before best start", dict(seed=1, length=12, max_len=12, mode="crossing"),
                 edge="j < i: the separate argmaxes form an invalid span"),
            Case("best pair longer than max_len", dict(seed=2, length=15, max_len=4, mode="long")),
            Case("integer logits with ties", dict(seed=3, length=16, max_len=3, mode="ties"),
                 edge="exact ties between spans (integer logits)"),
            Case("best valid span exactly max_len long", dict(seed=7, length=12, max_len=5, mode="boundary"),
                 edge="j - i + 1 = max_len, and the span one token longer scores higher"),
            Case("max_len 1 (single tokens)", dict(seed=4, length=9, max_len=1, mode="random"), edge="max_len = 1"),
            Case("max_len longer than the passage", dict(seed=5, length=6, max_len=50, mode="ties"),
                 edge="max_len > L"),
            Case("every logit negative", dict(seed=6, length=10, max_len=4, mode="negative"),
                 edge="every span scores below 0"),
        ),
        probe=probe_best_span, judge=allclose(rtol=1e-6, atol=1e-6),
        mutants={
            "allows end before start": mutate(VALID, "valid = gap < max_len",
                hint=Hint("允许结束位置在开始之前。", "Spans whose end comes before their start are allowed.")),
            "ignores max_len": mutate(VALID, "valid = gap >= 0",
                hint=Hint("忽略了 max_len，跨度可以任意长。", "max_len is ignored, so a span can be any length.")),
            "argmax of start and end independently": mutate(
                "start, end = divmod(flat, n)", "start, end = int(torch.argmax(start_logits)), int(torch.argmax(end_logits))",
                hint=Hint("分别对 start 和 end 取 argmax，得到的跨度可能无效（end < start 或过长）。",
                    "Start and end are argmaxed independently, which can give an invalid span (reversed or too long).")),
            "span length off by one (end <= start + max_len)": mutate("(gap < max_len)", "(gap <= max_len)",
                hint=Hint("跨度长度差一：允许了 max_len + 1 个 token 的跨度。",
                    "The span length is off by one: spans of max_len + 1 tokens are allowed.")),
            "ties broken by the latest span": mutate("flat = int(torch.argmax(scores.reshape(-1)))",
                                                     "flat = n * n - 1 - int(torch.argmax(scores.reshape(-1).flip(0)))",
                hint=Hint("分数相同时选了最后一个跨度；应选最早的那个。",
                    "Ties go to the latest span; the earliest one is asked for.")),
            "shifts the logits in place": mutate({
                "    n = start_logits.shape[0]\n": "    shift = float(start_logits.max())\n    start_logits -= shift\n"
                                                "    n = start_logits.shape[0]\n",
                "float(scores[start, end])": "float(scores[start, end]) + shift"},
                hint=Hint("原地修改了输入的 logits。", "The input logits are shifted in place.")),
            "invalid spans scored 0, not -inf": mutate('masked_fill(~valid, float("-inf"))', "masked_fill(~valid, 0.0)",
                hint=Hint("无效跨度记为 0 而不是 −inf；当有效跨度分数都为负时会选中无效跨度。",
                    "Invalid spans score 0, not -inf, so they win whenever every valid span scores below 0.")),
        },
    ),
    Exercise(
        grade_id="ch04_rrf_test", functions=("reciprocal_rank_fusion",), points=2,
        cases=(
            Case("closed form: two rankings of different lengths, c=1", dict(rankings=[[7, 2, 9], [2, 5]], c=1),
                 edge="rankings of different lengths, each with a document the other lacks"),
            Case("closed form: c = 0 and k = 1", dict(rankings=[[4, 2, 7], [2, 9], [9, 4, 2]], c=0, k=1),
                 edge="c = 0 (plain reciprocal ranks: rank 0 would divide by zero) and k = 1"),
            Case("exact ties between mirrored rankings", dict(rankings=[[8, 3, 5, 1], [1, 5, 3, 8], [6]]),
                 edge="equal fused scores"),
            Case("random: three rankings over 40 documents", dict(seed=0, n_docs=40, lists=3, min_len=5, max_len=20)),
            Case("random: two rankings, c=0.5 and top k=6",
                 dict(seed=1, n_docs=25, lists=2, min_len=8, max_len=15, c=0.5, k=6)),
            Case("random: five short rankings, default c", dict(seed=2, n_docs=12, lists=5, min_len=1, max_len=6)),
        ),
        probe=probe_rrf, judge=ranking("the fused ranking (ids)", "documents", "fused score"),
        mutants={
            "ranks counted from 0": mutate("enumerate(ranking, start=1)", "enumerate(ranking)", hint=Hint(
                "名次从 0 开始计；RRF 的第一名是 1。", "Ranks are counted from 0; in RRF the first result has rank 1.")),
            "best rank only (max instead of sum)": mutate(ADD, "fused[doc] = max(fused.get(doc, 0.0), 1.0 / (c + rank))",
                hint=Hint("只取了最好的一项（max），而不是把各个排名的贡献相加。",
                    "Only the best contribution is kept (max) instead of summing over the rankings.")),
            "only the documents of the first ranking": mutate({
                "    fused = {}\n": "    fused = {doc: 0.0 for doc in rankings[0]}\n",
                ADD: "if doc in fused:\n                fused[doc] += 1.0 / (c + rank)"},
                hint=Hint("只融合了第一个排名中的文档，其他排名独有的文档被丢掉了。",
                    "Only documents of the first ranking are fused; those found only by others are dropped.")),
            "ties kept in order of first appearance": mutate("key=lambda d: (-fused[d], d)", "key=lambda d: -fused[d]",
                hint=Hint("分数相同时保持首次出现的顺序；规则要求按文档 id 打破平局。",
                    "Tied documents keep their order of first appearance; ties must be broken by document id.")),
            "c ignored (always 60)": mutate("1.0 / (c + rank)", "1.0 / (60 + rank)", hint=Hint(
                "常数 c 被写死为 60，c 参数被忽略。", "The constant c is hard-wired to 60; the c argument is ignored.")),
            "k ignored": mutate("    if k is not None:\n        ids = ids[:k]\n", "",
                hint=Hint("忽略了 k，没有截断为前 k 个结果。", "k is ignored, so the result is not cut to the top k.")),
            "sorts the input rankings in place": mutate("    ids = sorted(fused",
                                                        "    for ranking in rankings:\n        ranking.sort()\n"
                                                        "    ids = sorted(fused",
                hint=Hint("原地对输入的排名列表排序，破坏了调用者的数据。",
                    "The input rankings are sorted in place, destroying the caller's data.")),
        },
    ),
]

# ============================================================================ rule table and alternatives

R = Rule
RULES = {
    "ch04_cosine_top_k_test": (
        R("L2-normalise both sides, then take dot products", ("batch of queries, corpus norms spread widely",
                                                             "vectors shorter than eps"),
          {"raw dot product (no normalisation)": "scores", "corpus normalised, query not": "scores"}),
        R("A vector shorter than $10^{-12}$ is divided by $10^{-12}$, not by its own norm", ("vectors shorter than eps",),
          {"divides by the norm itself (no eps)": "scores", "eps added to the norm (v / (|v| + 1e-8))": "scores"}),
        R("the `k` largest similarities **in descending order**", ("one query, unit-ish corpus",
                                                                   "k equals the corpus size"),
          {"ascending order (least similar first)": "scores", "k off by one (k - 1 results)": "shape"}),
        R("of shape `(k,)` for a single query", ("one query, unit-ish corpus", "k equals the corpus size"),
          {"a single query returned as a batch of one": "shape"}),
        R("`(m, k)` for a batch", ("a batch of one query", "k = 1, long vectors"),
          {"a batch of one query squeezed to a single query": "shape"}),
        R("Do not modify the inputs", ("one query, unit-ish corpus", "vectors shorter than eps"),
          {"normalises the inputs in place": "modified its inputs in place"}),
    ),
    "ch04_bm25_test": (
        R(r"\frac{f(q, D)\,(k_1 + 1)}{f(q, D) + k_1\big(1 - b + b\,\frac{|D|}{\mathrm{avgdl}}\big)}",
          ("random Zipf corpus, default parameters", "random corpus, b=1 and k1=2",
           "random corpus, b=0 (no length normalisation)"),
          {"no document-length normalisation": "scores", "term frequency not saturated (tf * idf)": "scores"}),
        R(r"\mathrm{idf}(q) = \ln\!\Big(\frac{N - \mathrm{df}(q) + 0.5}{\mathrm{df}(q) + 0.5} + 1\Big)",
          ("hand-computed: repeated query term, term in every document, unknown term",),
          {"idf without the +1 (negative for common terms)": "scores"}),
        R("the number of **documents** that contain $q$", ("random Zipf corpus, default parameters",
                                                             "hand-computed: repeated query term, term in every "
                                                             "document, unknown term"),
          {"df counts occurrences, not documents": "scores"}),
        R(r"$\mathrm{avgdl}$ the mean of $|D|$ over the corpus", ("an empty document in the corpus",),
          {"avgdl over the non-empty documents only": "scores"}),
        R("a token repeated in the query counts each time",
          ("hand-computed: repeated query term, term in every document, unknown term",),
          {"repeated query tokens counted once": "scores"}),
        R("A query token that occurs in no document contributes 0",
          ("hand-computed: repeated query term, term in every document, unknown term",),
          {"unknown query token raises KeyError": "KeyError"}),
        R("a term that does not occur in $D$ ($f(q, D) = 0$) contributes 0 to the score of $D$, even where the fraction "
          "reads $0/0$", ("an empty document with b = 1", "k1 = 0 (binary term frequency)"),
          {"0/0 for an absent term (ZeroDivisionError)": "ZeroDivisionError"}),
        R("Do not modify the inputs", ("hand-computed: three short documents",
                                       "hand-computed: repeated query term, term in every document, unknown term"),
          {"sorts the query in place": "modified its inputs in place"}),
    ),
    "ch04_retrieval_metrics_test": (
        R("divided by the number of relevant ids (`len(relevant[i])`, not `k`)",
          ("random: 40 queries, up to 3 relevant each", "closed form: relevant documents beyond k and lists shorter than k"),
          {"recall divided by k (that is precision@k)": "recall@"}),
        R("the number of relevant ids among the first `k` ranked ids",
          ("closed form: relevant documents beyond k and lists shorter than k",),
          {"recall counts hits beyond k": "recall@"}),
        R("with ranks counted **from 1**", ("closed form: three queries, one finds nothing",
                                            "closed form: relevant documents beyond k and lists shorter than k"),
          {"MRR with a 0-based rank": "mrr"}),
        R("Queries that find nothing count (as 0) in the mean", ("closed form: three queries, one finds nothing",),
          {"MRR averaged over queries with a hit only": "mrr"}),
    ),
    "ch04_best_span_test": (
        R(r"when $i \le j$", ("best end lies before best start", "every logit negative"),
          {"allows end before start": "start", "argmax of start and end independently": "start"}),
        R(r"$j - i + 1 \le$ `max_len`", ("best pair longer than max_len", "max_len 1 (single tokens)",
                                          "best valid span exactly max_len long"),
          {"ignores max_len": "start", "span length off by one (end <= start + max_len)": "start"}),
        R("**Ties:** the earliest start wins, then the earliest end", ("integer logits with ties",),
          {"ties broken by the latest span": "start"}),
        R("for the valid span with the largest score", ("every logit negative",), {"invalid spans scored 0, not -inf": "start"}),
        R("Do not modify the inputs", ("random logits, max_len 5", "max_len 1 (single tokens)"),
          {"shifts the logits in place": "modified its inputs in place"}),
    ),
    "ch04_rrf_test": (
        R("with ranks counted **from 1**", ("closed form: two rankings of different lengths, c=1",
                                            "closed form: c = 0 and k = 1"),
          {"ranks counted from 0": "fused"}),
        R("its fused score is that **summed over the rankings** that contain it",
          ("closed form: two rankings of different lengths, c=1", "random: three rankings over 40 documents",
           "closed form: c = 0 and k = 1"),
          {"best rank only (max instead of sum)": "fused"}),
        R("every document that appears in **any** ranking", ("closed form: two rankings of different lengths, c=1",),
          {"only the documents of the first ranking": "ids"}),
        R("ties (equal fused scores): the smaller document id first", ("exact ties between mirrored rankings",),
          {"ties kept in order of first appearance": "order"}),
        R("`c` (default 60, any `c >= 0`) is the constant in $1/(c + r)$", (
            "closed form: two rankings of different lengths, c=1", "random: two rankings, c=0.5 and top k=6",
            "closed form: c = 0 and k = 1"),
          {"c ignored (always 60)": "fused"}),
        R("with `k` given, return only the first `k` documents",
          ("random: two rankings, c=0.5 and top k=6", "closed form: c = 0 and k = 1"), {"k ignored": "documents"}),
        R("Do not modify the inputs", ("closed form: two rankings of different lengths, c=1",
                                       "exact ties between mirrored rankings"),
          {"sorts the input rankings in place": "modified its inputs in place"}),
    ),
}

ALTERNATIVES = {
    "ch04_cosine_top_k_test": {"explicit norms and a full descending sort": """
        def cosine_top_k(query, corpus, k):
            q = query if query.dim() == 2 else query[None]
            eps = 1e-12  # F.normalize's default: max(|v|, eps)
            sims = (q @ corpus.T) / (q.norm(dim=1, keepdim=True).clamp_min(eps)
                                     * corpus.norm(dim=1)[None, :].clamp_min(eps))
            order = torch.argsort(sims, dim=1, descending=True, stable=True)[:, :k]
            scores = torch.gather(sims, 1, order)
            return (scores, order) if query.dim() == 2 else (scores[0], order[0])
    """},
    "ch04_bm25_test": {"numpy float32, vectorised over documents": """
        import numpy as np

        def bm25_scores(query_tokens, docs_tokens, k1=1.5, b=0.75):
            lengths = np.array([len(d) for d in docs_tokens], dtype=np.float32)
            norm = k1 * (1 - b + b * lengths / lengths.mean())
            total = np.zeros(len(docs_tokens), dtype=np.float32)
            for q in query_tokens:
                tf = np.array([d.count(q) for d in docs_tokens], dtype=np.float32)
                df = np.float32((tf > 0).sum())
                idf = np.log1p((len(docs_tokens) - df + 0.5) / (df + 0.5))
                present = tf > 0  # f = 0 adds nothing, also where tf + norm is 0
                total[present] += idf * tf[present] * (k1 + 1) / (tf[present] + norm[present])
            return total
    """},
    "ch04_retrieval_metrics_test": {"torch float32 means": """
        def recall_at_k(ranked, relevant, k):
            per_query = [len(set(r[:k]) & set(rel)) / len(rel) for r, rel in zip(ranked, relevant)]
            return torch.tensor(per_query).mean().item()

        def mrr(ranked, relevant):
            rr = [next((1.0 / (i + 1) for i, d in enumerate(r) if d in rel), 0.0) for r, rel in zip(ranked, relevant)]
            return torch.tensor(rr).mean().item()
    """},
    "ch04_best_span_test": {"double loop with a strict comparison": """
        def best_span(start_logits, end_logits, max_len):
            s_list, e_list = start_logits.tolist(), end_logits.tolist()
            best = (0, 0, s_list[0] + e_list[0])
            for i in range(len(s_list)):
                for j in range(i, min(len(s_list), i + max_len)):
                    if s_list[i] + e_list[j] > best[2]:
                        best = (i, j, s_list[i] + e_list[j])
            return best
    """},
    "ch04_rrf_test": {"numpy arrays over a document index, stable argsort": """
        import numpy as np

        def reciprocal_rank_fusion(rankings, c=60, k=None):
            docs = np.array(sorted({d for r in rankings for d in r}), dtype=np.int64)
            where = {int(d): i for i, d in enumerate(docs)}
            fused = np.zeros(len(docs), dtype=np.float64)
            for r in rankings:
                rows = np.array([where[d] for d in r], dtype=np.int64)
                np.add.at(fused, rows, 1.0 / (c + np.arange(1, len(r) + 1)))
            order = np.argsort(-fused, kind="stable")[: (len(docs) if k is None else k)]
            return docs[order].tolist(), fused[order].tolist()
    """},
}


ORACLES = {
    "ch04_cosine_top_k_test": oracle_cosine_top_k,
    "ch04_bm25_test": oracle_bm25,
    "ch04_retrieval_metrics_test": oracle_retrieval_metrics,
    "ch04_best_span_test": oracle_best_span,
    "ch04_rrf_test": oracle_rrf,
}

CHAPTER = Chapter("ch04_applications", "ch04_exercises.ipynb", EXERCISES, rules=RULES, alternatives=ALTERNATIVES, oracles=ORACLES)
