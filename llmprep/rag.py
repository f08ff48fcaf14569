"""Retrieval-augmented generation on the course's own text (Chapter 14): the corpus, its evaluation set, the
retrievers and the batched reader the reference notebook measures stage by stage.

The corpus is the markdown of the reference notebooks ch01-ch13 (the course's own words, in the repository);
``llmprep/data/ch14_eval.jsonl`` holds the evaluation questions written for the chapter, each tied to a verbatim
passage of that text (``evidence``) that contains its short answer. Heavy libraries (torch, transformers, the
text splitter) are imported when a helper is called, so importing this module is cheap.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from llmprep.models import chat_prompts
from llmprep.paths import chapter_prefix, format_path
from llmprep.results import mean_se  # noqa: F401 - rag.mean_se: the chapter's notebook reads it here

EVAL_SET = Path(__file__).parent / "data" / "ch14_eval.jsonl"
CORPUS_CHAPTERS = tuple(f"ch{i:02d}" for i in range(1, 14))  # the chapters whose text is the corpus
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class Doc:
    """One markdown cell of a reference notebook: ``chapter`` (``ch09``), its cell index and its text."""
    chapter: str
    cell: int
    text: str

    @property
    def key(self) -> str:
        return f"{self.chapter}:{self.cell}"


@dataclass(frozen=True)
class Chunk:
    """A piece of a Doc: ``text`` is ``doc.text[start:end]`` (what the splitter cut)."""
    id: int
    chapter: str
    cell: int
    start: int
    end: int
    text: str

    @property
    def cite(self) -> str:
        return f"{self.chapter}#{self.cell}@{self.start}"


def cjk_share(text: str) -> float:
    """The share of the non-space characters of ``text`` that are CJK ideographs."""
    chars = [c for c in text if not c.isspace()]
    return sum(bool(_CJK.match(c)) for c in chars) / max(len(chars), 1)


def english_only(text: str, threshold: float = 0.1) -> str:
    """``text`` without its Chinese paragraphs (blank-line separated blocks more than ``threshold`` CJK)."""
    blocks = re.split(r"\n\s*\n", text)
    return "\n\n".join(b for b in blocks if b.strip() and cjk_share(b) <= threshold)


def course_corpus(chapters=CORPUS_CHAPTERS, english: bool = False, root: Path | None = None) -> list[Doc]:
    """The markdown cells of the reference notebooks of ``chapters`` (``ch01``...), in course order;
    ``english``: Chinese paragraphs dropped (what an English-only encoder can read). Read from ``solutions/``
    (``course/`` when the solutions are not there: the reference notebooks are released unchanged)."""
    wanted = {chapter_prefix(c) for c in chapters}
    docs = []
    for folder in ("solutions", "course"):
        base = format_path(folder, root=root)
        found = sorted(base.glob("ch*/ch*_reference.ipynb")) if base.is_dir() else []
        found = [p for p in found if chapter_prefix(p.parent.name) in wanted]
        if found:
            break
    else:
        raise FileNotFoundError(f"no reference notebook of {sorted(wanted)} under solutions/ or course/")
    for path in found:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for i, cell in enumerate(cells):
            if cell.get("cell_type") != "markdown":
                continue
            src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            text = english_only(src) if english else src
            if text.strip():
                docs.append(Doc(chapter_prefix(path.parent.name), i, text))
    return docs


def split_corpus(docs: list[Doc], tokenizer, chunk_size: int = 128, overlap: int = 16) -> list[Chunk]:
    """Every doc cut by ``langchain_text_splitters``' recursive splitter (paragraphs, then lines, sentences,
    words), sizes counted in ``tokenizer``'s tokens; each chunk knows where it starts in its doc."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        tokenizer, chunk_size=chunk_size, chunk_overlap=overlap, separators=["\n\n", "\n", ". ", "。", " ", ""],
        keep_separator="end", strip_whitespace=False)
    chunks = []
    for doc in docs:
        cursor = 0
        for text in splitter.split_text(doc.text):
            start = doc.text.find(text, cursor)  # chunks come in order; an overlap starts before the last end
            if not text.strip() or start < 0:
                continue
            cursor = start + 1
            chunks.append(Chunk(len(chunks), doc.chapter, doc.cell, start, start + len(text), text))
    return chunks


# --------------------------------------------------------------------------- the evaluation set

@dataclass(frozen=True)
class Question:
    id: str
    lang: str  # "en" or "zh"
    question: str
    answer: str  # the short gold answer span (occurs verbatim in ``evidence``)
    evidence: str  # a verbatim passage of the chapter's text that contains the answer
    chapter: str  # ``ch09``


def load_eval_set(path: Path = EVAL_SET) -> list[Question]:
    """The chapter's evaluation questions (one JSON object per line)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Question(**row) for row in rows]


def _loose(text: str) -> re.Pattern:
    """A pattern for ``text`` that matches any run of whitespace where ``text`` has one (line breaks in the
    notebook's markdown do not matter)."""
    return re.compile(r"\s+".join(re.escape(part) for part in text.split()))


def locate(question: Question, docs: list[Doc]) -> tuple[Doc, int, int]:
    """(doc, start, end) of the gold answer span inside the question's evidence, in the corpus ``docs``
    (whitespace-insensitive; ValueError when the course text no longer contains the evidence or the answer)."""
    if question.answer not in question.evidence:
        raise ValueError(f"{question.id}: the answer {question.answer!r} is not in its evidence")
    pattern = _loose(question.evidence)
    for doc in docs:
        if doc.chapter != question.chapter:
            continue
        m = pattern.search(doc.text)
        if m:
            a = _loose(question.answer).search(doc.text, m.start(), m.end())
            return doc, a.start(), a.end()
    raise ValueError(f"{question.id}: the evidence is no longer in {question.chapter}'s text: "
                     f"{question.evidence[:60]!r}")


def gold_chunk_ids(question: Question, docs: list[Doc], chunks: list[Chunk]) -> set[int]:
    """The chunks that hold the whole gold answer span at the place its evidence puts it."""
    doc, start, end = locate(question, docs)
    return {c.id for c in chunks if c.chapter == doc.chapter and c.cell == doc.cell
            and c.start <= start and end <= c.end}


# --------------------------------------------------------------------------- retrievers

_WORD = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*|[\u3400-\u9fff]")


def words(text: str) -> list[str]:
    """BM25's tokens: lower-cased words and numbers (``2.5``, ``don't``), and each CJK character alone."""
    return _WORD.findall(text.lower())


class BM25:
    """Okapi BM25 (k1, b; idf = ln((N - df + 0.5) / (df + 0.5) + 1), ch04's formula) over a list of texts,
    as a sparse term-weight matrix: ``scores(query)`` is one float per text."""

    def __init__(self, texts: list[str], k1: float = 1.5, b: float = 0.75):
        import numpy as np
        from scipy.sparse import csr_matrix

        toks = [words(t) for t in texts]
        self.vocab: dict[str, int] = {}
        rows, cols = [], []
        for r, d in enumerate(toks):
            for w in d:
                rows.append(r)
                cols.append(self.vocab.setdefault(w, len(self.vocab)))
        tf = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(texts), len(self.vocab)))
        tf.sum_duplicates()
        n, lengths = len(texts), np.asarray(tf.sum(1)).ravel()
        df = np.bincount(tf.indices, minlength=len(self.vocab))
        idf = np.log((n - df + 0.5) / (df + 0.5) + 1.0)
        norm = k1 * (1 - b + b * lengths / max(lengths.mean(), 1e-9))
        tf = tf.tocoo()
        weight = idf[tf.col] * tf.data * (k1 + 1) / (tf.data + norm[tf.row])
        self.weight = csr_matrix((weight, (tf.row, tf.col)), shape=tf.shape).tocsc()

    def scores(self, query: str):
        import numpy as np

        cols = [self.vocab[w] for w in words(query) if w in self.vocab]  # a repeated query word counts each time
        if not cols:
            return np.zeros(self.weight.shape[0])
        return np.asarray(self.weight[:, cols].sum(1)).ravel()


def rrf(rankings, k: int = 60, depth: int | None = None) -> list[int]:
    """Reciprocal rank fusion: each ranking (best first) gives a document 1 / (k + rank) (rank from 1);
    returns the ids by fused score, best first (ties: the smaller id first)."""
    score: dict[int, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(list(ranking)[:depth], start=1):
            score[int(doc)] = score.get(int(doc), 0.0) + 1.0 / (k + rank)
    return sorted(score, key=lambda d: (-score[d], d))


def retrieval_metrics(ranked, gold, ks=(1, 5, 10)) -> dict[str, tuple[float, float]]:
    """recall@k (a gold chunk in the top k), MRR and nDCG@10 (binary gains, the ideal ranking puts every gold
    chunk first) over queries; each as (mean, standard error)."""
    rows: dict[str, list[float]] = {f"recall@{k}": [] for k in ks}
    rows["MRR"], rows["nDCG@10"] = [], []
    for r, g in zip(ranked, gold):
        r = [int(x) for x in r]
        for k in ks:
            rows[f"recall@{k}"].append(float(bool(set(r[:k]) & g)))
        first = next((i for i, d in enumerate(r) if d in g), None)
        rows["MRR"].append(0.0 if first is None else 1.0 / (first + 1))
        dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(r[:10]) if d in g)
        ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(g), 10)))
        rows["nDCG@10"].append(dcg / ideal if ideal else 0.0)
    return {name: mean_se(v) for name, v in rows.items()}


# --------------------------------------------------------------------------- answers: SQuAD v1.1 scoring

CJK_PUNCTUATION = "，。、：；？！（）《》“”‘’【】"
_CJK_CHAR = re.compile(r"([\u4e00-\u9fff])")


def normalize_answer(text: str) -> str:
    """SQuAD v1.1's normalisation (lower case; punctuation, then the articles a/an/the dropped; whitespace
    collapsed) with the chapter's CJK rule: the Chinese marks ``CJK_PUNCTUATION`` dropped with the ASCII ones,
    and every ideograph U+4E00-U+9FFF its own token (exercise 6 states the same rules)."""
    import string

    drop = set(string.punctuation) | set(CJK_PUNCTUATION)
    text = "".join(ch for ch in text.lower() if ch not in drop)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(_CJK_CHAR.sub(r" \1 ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD v1.1's token F1 (common tokens with multiplicity; 0 when nothing is shared, an empty string too)."""
    from collections import Counter

    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def short_answer(reply: str) -> str:
    """The answer part of a reader's reply: the first line, up to the first sentence end, without a leading
    ``:`` or ``is`` and the trailing full stop (what a QA pipeline keeps before scoring it)."""
    text = reply.strip().lstrip(":：").strip()
    text = text.split("\n")[0]
    text = re.split(r"(?<=[^\d])\.(?:\s|$)|\.\s", text)[0]
    return re.sub(r"^(?:is|are)\s+", "", text).strip().rstrip(".。").strip()


def contains_answer(prediction: str, gold: str) -> float:
    """1.0 when the normalised gold span occurs inside the normalised prediction (a lenient "answered")."""
    return float(f" {normalize_answer(gold)} " in f" {normalize_answer(prediction)} ")


# --------------------------------------------------------------------------- the reader

def chat_batch(model, tokenizer, prompts: list[str], max_new_tokens: int = 16, batch_size: int = 8,
               system: str | None = None, prefix: str = "") -> list[str]:
    """Greedy replies to many one-turn chats, ``batch_size`` at a time: the prompts go through the chat
    template and are **left**-padded (a decoder continues from the last position, so padding must come first),
    with the attention mask, so a batched reply equals the one-at-a-time reply up to float rounding.
    ``prefix`` starts the assistant's turn (e.g. ``"The answer is"``): the reply is what the model adds to it."""
    import torch

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    replies = []
    try:
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths together: less padding
        out_by_index = {}
        for k in range(0, len(order), batch_size):
            rows = order[k:k + batch_size]
            texts = [t + prefix for t in chat_prompts(tokenizer, [prompts[i] for i in rows], system)]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
            for j, i in enumerate(rows):
                out_by_index[i] = tokenizer.decode(out[j, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        replies = [out_by_index[i].strip() for i in range(len(prompts))]
    finally:
        tokenizer.padding_side = side
    return replies


def encode(texts: list[str], encoder, tokenizer, batch_size: int = 32, max_length: int = 256):
    """MiniLM as in :func:`llmprep.models.sentence_embeddings` (masked mean pooling, L2-normalised), plus each
    text's L2-normalised token vectors (real tokens only, float16 to halve the memory) for a late-interaction
    (ColBERT-style MaxSim) reranker. Returns (embeddings [n, d] float32, list of [tokens_i, d] tensors)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    order = np.argsort([len(t) for t in texts])
    pooled = torch.zeros(len(texts), encoder.config.hidden_size)
    tokens: list = [None] * len(texts)
    with torch.no_grad():
        for k in range(0, len(texts), batch_size):
            rows = order[k:k + batch_size]
            enc = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            states = encoder(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled[torch.as_tensor(rows)] = F.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)
            for j, i in enumerate(rows):
                n = int(enc["attention_mask"][j].sum())
                tokens[i] = F.normalize(states[j, 1:n - 1], dim=-1).half()  # [CLS] and [SEP] left out
    return pooled, tokens


def maxsim(query_tokens, doc_tokens) -> float:
    """Late interaction (ColBERT): for each query token its best cosine over the document's tokens, summed."""
    return float((query_tokens.float() @ doc_tokens.float().T).max(1).values.sum())
