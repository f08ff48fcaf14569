"""Trusted spec of Chapter 10's graded cells (solutions/ch10_tokenization/ch10_exercises.ipynb).

Probes run inside the sandbox next to the student's code and are self-contained (imports inside). They read the
real tokenizer files from the offline asset cache through ``llmprep.grading.probing`` (GPT-2's vocab.json +
merges.txt, MiniLM's WordPiece vocabulary, SmolLM2's tokenizer with its chat template), do the trusted parts
themselves (pre-tokenising, the merge-rank table, text to ids) and call the student's function only on the step
the exercise is about.

Oracles run in the trusted test process and are the libraries' own code: GPT-2's pre-tokenizer, ``transformers``'
``bytes_to_unicode``, ``tokenizers``' ``BpeTrainer`` (on cases without ties; a trusted reference where ties
decide), GPT-2's BPE model, ``GPT2TokenizerFast.decode``, MiniLM's WordPiece model and SmolLM2's
``apply_chat_template``. A probe blocks the library entry points while the student's function runs; each oracle
binds what it needs when it is built, before that.
"""
import json

from llmprep.grading.spec import (Case, Chapter, Exercise, Hint, Rule, first_difference, json_lists, mutate,
                                  sequence_diff, text_diff)

# ============================================================================ judges

A_LIST = " (return a list, as the instructions say)"
_CONTRACTIONS = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"}


def _kind(piece):
    import unicodedata

    if not piece:
        return "an empty piece"
    core = piece[1:] if piece[0] == " " and len(piece) > 1 else piece
    if piece in _CONTRACTIONS:
        return "a contraction"
    if core.isspace():
        return "whitespace"
    cat = unicodedata.category(core[0])[0]
    return {"L": "letters", "N": "digits"}.get(cat, "punctuation or symbols") + \
        (" with a leading space" if core is not piece else "")


def _mine_explained(piece):
    """What is wrong with the student's own piece at the first difference, when it breaks a stated rule."""
    import unicodedata

    if piece.lower() in _CONTRACTIONS and piece not in _CONTRACTIONS:
        return f"; your piece {piece!r} is not a contraction: contractions are lower case only"
    kinds = {unicodedata.category(c)[0] for c in piece}
    if {"L", "N"} <= kinds:
        return "; your piece there mixes letters and digits (digits form their own runs)"
    return ""


def judge_pieces(got, want, params):
    mine, expected, why = json_lists(got, want, "pieces", "your list of pieces", A_LIST)
    if why:
        return why
    reason = sequence_diff(mine, expected, "pieces")
    if reason:
        i = first_difference(mine, expected)
        if i < len(expected):
            reason += f" (the expected piece there is {_kind(expected[i])})"
        if i < len(mine):
            reason += _mine_explained(str(mine[i]))
        if "".join(map(str, mine)) != "".join(expected):
            reason += "; your pieces do not join back into the input text"
    return reason


def params_bytes(params):
    sel = params["bytes"]
    return list(range(256)) if sel == "all" else [b for lo, hi in sel for b in range(lo, hi + 1)]


def judge_byte_table(got, want, params):
    import numpy as np

    if not bool(np.asarray(got["keys_ok"])):
        return "the table's keys must be exactly the 256 byte values 0..255 (ints)"
    g, w = np.asarray(got["codepoints"]), np.asarray(want["codepoints"])
    if g.shape != w.shape:
        return "the table has the wrong size"
    bad = np.flatnonzero(g != w)
    if bad.size:
        b = int(np.asarray(params_bytes(params))[bad[0]])
        return f"{bad.size} of {w.size} bytes map to the wrong character, first byte {b}"
    if not bool(np.asarray(got["bijective"])):
        return "two bytes map to the same character (the table must be one-to-one)"
    return None


def _merge(symbols, pair):
    """The trusted merge rule: every occurrence of ``pair``, non-overlapping, left to right."""
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def _pair_counts(words):
    """Count of each adjacent pair over ``[(symbols, count), ...]``, weighted by the counts."""
    from collections import Counter

    counts = Counter()
    for symbols, c in words:
        for pair in zip(symbols, symbols[1:]):
            counts[pair] += c
    return counts


def _counts_after(word_counts, merges_done):
    """Pair counts after replaying ``merges_done`` (the trusted rule) on the case's words."""
    words = [(list(w), c) for w, c in word_counts.items()]
    for pair in merges_done:
        words = [(_merge(symbols, pair), c) for symbols, c in words]
    return _pair_counts(words)


def judge_merges(got, want, params):
    mine, expected, why = json_lists(got, want, "merges", "your merge list", A_LIST)
    if why:
        return why
    try:
        mine = [tuple(m) for m in mine]
        assert all(len(m) == 2 and all(isinstance(s, str) for s in m) for m in mine)
    except Exception:  # noqa: BLE001
        return "each merge must be a pair (left, right) of strings"
    expected = [tuple(m) for m in expected]
    reason = sequence_diff(mine, expected, "merges")
    if not reason:
        return None
    i = first_difference(mine, expected)
    if i < len(mine) and i < len(expected) and "word_counts" in params:
        counts = _counts_after(params["word_counts"], expected[:i])
        yours, right = counts.get(mine[i], 0), counts[expected[i]]
        if yours == right:
            reason += (f" (your pair and the expected one are tied at count {right}: the rule picks the "
                       f"lexicographically greater pair)")
        else:
            reason += f" (your pair occurs {yours} times at that point, the expected one {right} times)"
    elif len(mine) > len(expected):
        reason += " (merging must stop when no adjacent pair is left)"
    return reason


def judge_tokens(got, want, params):
    mine, expected, why = json_lists(got, want, "tokens", "your token list", A_LIST)
    return why or sequence_diff(mine, expected, "tokens")


def judge_wordpiece(got, want, params):
    """judge_tokens, plus what the expected token at the first difference is ([UNK], a ## continuation)
    or that the student's piece there is a shorter prefix of it (not the longest match)."""
    mine, expected, why = json_lists(got, want, "tokens", "your token list", A_LIST)
    if why:
        return why
    reason = sequence_diff(mine, expected, "tokens")
    i = first_difference(mine, expected)
    if reason and i < len(expected):
        yours, right = (str(mine[i]) if i < len(mine) else None), str(expected[i])
        if right == "[UNK]":
            reason += " (the expected token there is [UNK], which replaces the whole word)"
        elif yours is not None and len(yours) < len(right) and right.startswith(yours):
            reason += " (your piece there is a shorter prefix of the expected one: take the longest match in vocab)"
        elif right.startswith("##") and yours is not None and not yours.startswith("##"):
            reason += " (the expected token there is a continuation piece, with the ## prefix)"
    return reason


def judge_texts(got, want, params):
    mine, expected, why = json_lists(got, want, "texts", "your decoded texts", A_LIST)
    if why:
        return why
    if len(mine) != len(expected):
        return "the probe got the wrong number of decoded texts"
    for k, (m, e) in enumerate(zip(mine, expected)):
        if not isinstance(m, str):
            return f"slice {k}: decode_ids must return a str"
        reason = text_diff(m, e, f"slice {k} of {len(expected)}: decoded text differs")
        if reason:
            if m.count("\ufffd") != e.count("\ufffd"):
                reason += (f"; yours has {m.count(chr(0xFFFD))} replacement characters (U+FFFD), "
                           f"expected {e.count(chr(0xFFFD))}")
            return reason
    return None


def judge_chat(got, want, params):
    import numpy as np

    text, expected_text = str(np.asarray(got["text"]).reshape(()).item()), str(np.asarray(want["text"]).item())
    reason = text_diff(text, expected_text, "render_chat: the text differs from the template's")
    if reason:
        return reason
    ids, mask = np.asarray(got["ids"]).ravel(), np.asarray(got["mask"]).ravel()
    want_ids, want_mask = np.asarray(want["ids"]).ravel(), np.asarray(want["mask"]).ravel()
    reason = sequence_diff(ids.tolist(), want_ids.tolist(), "token ids")
    if reason:
        return f"tokenize_chat: {reason}"
    if mask.shape != want_mask.shape:
        return f"tokenize_chat: the mask has {mask.size} entries for {want_ids.size} tokens"
    bad = np.flatnonzero(mask.astype(np.int64) != want_mask)
    if bad.size:
        i = int(bad[0])
        return (f"tokenize_chat: the assistant mask is wrong at {bad.size} of {want_mask.size} tokens, first at "
                f"position {i} (yours {int(mask[i])}, expected {int(want_mask[i])})")
    return None


# ============================================================================ 1 GPT-2 pre-tokenization

def probe_pretokenize(ns, params):
    import json

    fn = ns["gpt2_pretokenize"]
    out = fn(params["text"])
    return {"pieces": json.dumps([str(p) for p in out])}


def oracle_pretokenize():
    from llmprep.grading.probing import gpt2_tokenizer

    pre = gpt2_tokenizer().backend_tokenizer.pre_tokenizer  # the real GPT-2 pre-tokenizer (byte-level output)

    def gpt2_pretokenize(text):
        return [text[a:b] for _, (a, b) in pre.pre_tokenize_str(text)]  # offsets are character offsets

    return {"gpt2_pretokenize": gpt2_pretokenize}


# ============================================================================ 2 bytes_to_unicode

def probe_byte_table(ns, params):
    fn = ns["bytes_to_unicode"]
    table = fn()
    keys_ok = isinstance(table, dict) and set(table) == set(range(256)) and all(type(k) is int for k in table)
    if not keys_ok:
        return {"keys_ok": False, "codepoints": [0], "bijective": False}
    sel = params["bytes"]
    chosen = list(range(256)) if sel == "all" else [b for lo, hi in sel for b in range(lo, hi + 1)]
    ok_chars = all(isinstance(v, str) and len(v) == 1 for v in table.values())
    return {"keys_ok": ok_chars,
            "codepoints": [ord(table[b]) if ok_chars else -1 for b in chosen],
            "bijective": len(set(table.values())) == 256}


def oracle_byte_table():
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {"bytes_to_unicode": bytes_to_unicode}


# ============================================================================ 3 BPE training

def probe_train_bpe(ns, params):
    import json

    fn = ns["train_bpe"]
    if "word_counts" in params:
        counts = dict(params["word_counts"])
    else:  # the most frequent GPT-2 pre-tokens of one play, byte-mapped (real data)
        from collections import Counter

        from llmprep.assets import load_shakespeare
        from llmprep.grading.probing import gpt2_tokenizer

        text = next(t for title, t in sorted(load_shakespeare().items()) if title.startswith(params["play"]))
        pre = gpt2_tokenizer().backend_tokenizer.pre_tokenizer
        freq = Counter(w for w, _ in pre.pre_tokenize_str(text[:params["chars"]]))
        counts = dict(sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))[:params["words"]])
    merges = fn(counts, params["num_merges"])
    return {"merges": json.dumps([list(m) for m in merges])}


def oracle_train_bpe():
    """``tokenizers``' BpeTrainer where no step has a tie; the trusted reference rule where one does
    (BpeTrainer breaks ties by token id, not by the stated lexicographic rule)."""
    from tokenizers import Tokenizer
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer

    def reference(word_counts, num_merges):
        words = [(list(w), c) for w, c in word_counts.items()]
        merges, tied = [], False
        for _ in range(num_merges):
            counts = _pair_counts(words)
            if not counts:
                break
            top = max(counts.values())
            tied = tied or sum(v == top for v in counts.values()) > 1
            best = max(p for p, v in counts.items() if v == top)
            merges.append(best)
            words = [(_merge(symbols, best), c) for symbols, c in words]
        return merges, tied

    def library(word_counts, num_merges):
        alphabet = sorted({ch for w in word_counts for ch in w})
        tok = Tokenizer(BPE())
        trainer = BpeTrainer(vocab_size=len(alphabet) + num_merges, min_frequency=0, show_progress=False,
                             special_tokens=[])
        tok.train_from_iterator((w for w, c in word_counts.items() for _ in range(c)), trainer=trainer)
        return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
                for m in json.loads(tok.to_str())["model"]["merges"]]

    def train_bpe(word_counts, num_merges):
        merges, tied = reference(word_counts, num_merges)
        if tied:
            return merges
        lib = library(word_counts, num_merges)
        assert lib == merges, "BpeTrainer disagrees with the reference on a case without ties"
        return lib

    return {"train_bpe": train_bpe}


# ============================================================================ 4 BPE encoding of one pre-token

def probe_bpe_encode(ns, params):
    import json

    from llmprep.grading.probing import gpt2_ranks, gpt2_tokenizer

    fn = ns["bpe_encode"]
    if "ranks" in params:  # a small merge table: [[left, right], ...] in rank order
        ranks = {tuple(p): r for r, p in enumerate(params["ranks"])}
        words = params["words"]
    else:  # GPT-2's real merges on real text, pre-tokenised and byte-mapped here (trusted)
        ranks = gpt2_ranks()
        pre = gpt2_tokenizer().backend_tokenizer.pre_tokenizer
        words = [w for w, _ in pre.pre_tokenize_str(params["text"])]
    tokens = []
    for w in words:
        tokens.extend(str(t) for t in fn(w, ranks))
    return {"tokens": json.dumps(tokens)}


def oracle_bpe_encode():
    from tokenizers.models import BPE

    from llmprep.grading.probing import gpt2_ranks, gpt2_tokenizer

    gpt2_model = gpt2_tokenizer().backend_tokenizer.model  # GPT2TokenizerFast's own BPE with the real merges
    n_gpt2 = len(gpt2_ranks())

    def bpe_encode(word, ranks):
        if len(ranks) == n_gpt2:
            model = gpt2_model
        else:  # a small table: tokenizers' BPE model built from it (every symbol in the vocabulary)
            merges = [p for p, _ in sorted(ranks.items(), key=lambda kv: kv[1])]
            symbols = set(word) | {s for p in merges for s in p} | {a + b for a, b in merges}
            model = BPE(vocab={s: i for i, s in enumerate(sorted(symbols))}, merges=merges)
        return [t.value for t in model.tokenize(word)]

    return {"bpe_encode": bpe_encode}


# ============================================================================ 5 decoding ids

def probe_decode(ns, params):
    import json

    from llmprep.grading.probing import gpt2_tokenizer, gpt2_vocab

    fn = ns["decode_ids"]
    tok = gpt2_tokenizer()
    ids = tok(params["text"]).input_ids
    id_to_token = {i: t for t, i in gpt2_vocab().items()}
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_decoder = {c: b for b, c in bytes_to_unicode().items()}
    texts = []
    for a, b in params["slices"]:
        out = fn(ids[a:b], dict(id_to_token), dict(byte_decoder))
        texts.append(out if isinstance(out, str) else repr(type(out)))
    return {"texts": json.dumps(texts)}


def oracle_decode():
    from llmprep.grading.probing import gpt2_tokenizer

    tok = gpt2_tokenizer()
    decode = type(tok).decode

    def decode_ids(ids, id_to_token, byte_decoder):
        ids = list(ids)
        text = decode(tok, ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        # the claim, both settings: False is the pinned transformers' default; True is ignored for a BPE tokenizer
        # by transformers 5 (older versions applied clean_up_tokenization, which the mutant above stands for)
        assert decode(tok, ids, skip_special_tokens=False) == text
        assert decode(tok, ids, skip_special_tokens=False, clean_up_tokenization_spaces=True) == text
        return text

    return {"decode_ids": decode_ids}


# ============================================================================ 6 WordPiece

def probe_wordpiece(ns, params):
    import json

    from llmprep.grading.probing import minilm_tokenizer

    fn = ns["wordpiece"]
    backend = minilm_tokenizer().backend_tokenizer
    # BERT's normaliser (lower-case, accents, spaces around CJK) and pre-tokenizer, done here (trusted)
    words = [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(params["text"]))]
    vocab = backend.get_vocab()
    tokens = []
    for w in words:
        tokens.extend(str(t) for t in fn(w, vocab))
    return {"tokens": json.dumps(tokens)}


def oracle_wordpiece():
    from llmprep.grading.probing import minilm_tokenizer

    model = minilm_tokenizer().backend_tokenizer.model  # BertTokenizerFast's WordPiece (unk [UNK], ##, 100)

    def wordpiece(word, vocab, unk_token="[UNK]", max_chars=100):
        return [t.value for t in model.tokenize(word)]

    return {"wordpiece": wordpiece}


# ============================================================================ 7 chat template + assistant mask

def probe_chat(ns, params):
    from llmprep.grading.probing import smollm2_tokenizer

    render, tokenize = ns["render_chat"], ns["tokenize_chat"]
    tok = smollm2_tokenizer()
    messages = [dict(m) for m in params["messages"]]
    gen = params["add_generation_prompt"]
    text = render([dict(m) for m in messages], add_generation_prompt=gen)
    ids, mask = tokenize([dict(m) for m in messages], tok, add_generation_prompt=gen)
    return {"text": str(text), "ids": [int(i) for i in ids], "mask": [int(m) for m in mask]}


def oracle_chat():
    """SmolLM2's own template. Its template has no generation tags, so the mask comes from rendering
    each conversation with and without every assistant turn: an assistant turn's tokens are those the
    full rendering adds after the prefix rendered with ``add_generation_prompt=True``."""
    from llmprep.grading.probing import smollm2_tokenizer

    tok = smollm2_tokenizer()
    apply = type(tok).apply_chat_template  # bound now: the probe blocks it while the student's code runs

    def ids_of(messages, gen):
        out = apply(tok, messages, tokenize=True, add_generation_prompt=gen)
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    def render_chat(messages, add_generation_prompt=False):
        return apply(tok, messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def tokenize_chat(messages, tokenizer, add_generation_prompt=False):
        ids = ids_of(messages, add_generation_prompt)
        mask = [0] * len(ids)
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before, upto = ids_of(messages[:i], True), ids_of(messages[:i + 1], False)
            assert upto[:len(before)] == before == ids[:len(before)] and ids[:len(upto)] == upto
            for k in range(len(before), len(upto)):
                mask[k] = 1
        return ids, mask

    return {"render_chat": render_chat, "tokenize_chat": tokenize_chat}




# ============================================================================ case data

ENGLISH = ("I'm sure you'll say it's the best; we've done what they'd do, and I've  seen   more.\n"
           "HAMLET. To be, or not to be: that is the question.\n\n  Whether 'tis nobler...")
CHINESE = "分词器把文本切成子词：中文每个汉字常常要两到三个 token。你好，世界！"
CODE = "def f(x):\n    return x ** 2  # square\n\n\nprint(f(3), [1, 2, 3])\n"

# Library entry points banned in several exercises: (owner, attribute, label)
TOKENIZER = ("tokenizers", "Tokenizer", "tokenizers.Tokenizer")
GPT2_FAST = ("transformers", "GPT2TokenizerFast", "GPT2TokenizerFast")
AUTO = ("transformers", "AutoTokenizer", "AutoTokenizer")

# Mutants are edits of the solution's own functions (read from the solution notebook); a snippet used twice:
DECODE = ('data = bytes(byte_decoder[ch] for i in ids for ch in id_to_token[i])\n'
          '    return data.decode("utf-8", errors="replace")')

EXERCISES = [
    Exercise(
        grade_id="ch10_pretokenize_test", functions=("gpt2_pretokenize",), points=2,
        bans=(("tokenizers.pre_tokenizers", "ByteLevel", "the ByteLevel pre-tokenizer"), TOKENIZER, GPT2_FAST, AUTO),
        cases=(
            Case("English prose with contractions", {"text": ENGLISH}),
            Case("upper-case contractions", {"text": "DON'T SHOUT, I'M HERE. She'S fine, isn'T she? 'tis 'll"},
                 edge="contractions in upper case and mixed case ('S, 'T, DON'T)"),
            Case("runs of spaces, tabs and newlines", {"text": "Hello   world\n\n  indented\tTab \n end \t  "},
                 edge="whitespace runs before a word and at the very end of the text"),
            Case("digits and symbols", {"text": "Price: $1,234.56 (approx.) -- 2024-01-01 #tag @user 100%!!! x2y"},
                 edge="letters and digits touching (x2y), symbols after a space"),
            Case("Chinese, accents and mixed scripts", {"text": "你好，世界！Héllo naïve café 東京2024年 ça va Привет"},
                 edge="letters outside ASCII (CJK, Cyrillic, accents)"),
            Case("Python code", {"text": CODE}),
            Case("underscores and non-ASCII numerals",
                 {"text": "def __init__(self, max_len=2):  # snake_case_name, _private\n"
                          "x² + y³ = ½ ; Ⅻ chapters, ①②, ٣٤ and ४२ _ __"},
                 edge="character classes: _ is neither \\p{L} nor \\p{N}; ², Ⅻ, ① are \\p{N} but not \\d"),
        ),
        probe=probe_pretokenize, judge=judge_pieces,
        mutants={
            "ASCII letters only ([a-zA-Z] instead of \\p{L})": mutate(r" ?\p{L}+|", r" ?[a-zA-Z]+|",
                hint=Hint("字母类只认 ASCII 字母：é、中文等非 ASCII 字母被当成符号切开。",
                    "Only ASCII letters count as letters, so accented or CJK letters are split off as symbols.")),
            "contractions matched case-insensitively": mutate("'s|'t|'re|'ve|'m|'ll|'d|", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|",
                hint=Hint("缩写后缀匹配忽略了大小写；GPT-2 的模式只认小写的 's、'll 等。",
                    "Contractions are matched case-insensitively; GPT-2's pattern only knows lowercase 's, 'll and the rest.")),
            "whitespace runs taken whole (no lookahead)": mutate(r"|\s+(?!\S)|\s+", r"|\s+",
                hint=Hint("空白串被整段取走（没有 lookahead），后面的单词就失去了它的前导空格。",
                    "A run of whitespace is taken whole (no lookahead), so the next word loses its leading space.")),
            "letters and digits in one run": mutate(r" ?\p{L}+| ?\p{N}+|", r" ?[\p{L}\p{N}]+|",
                hint=Hint("字母和数字被并进同一段；GPT-2 把字母串和数字串分开切。",
                    "Letters and digits are joined in one run; GPT-2 splits letter runs and digit runs apart.")),
            "symbols never take the leading space": mutate(r"| ?[^\s\p{L}\p{N}]+|", r"|[^\s\p{L}\p{N}]+|",
                hint=Hint("符号串不带前导空格；GPT-2 允许符号串和字母、数字串一样带一个空格。",
                    "Symbol runs never take a leading space; in GPT-2 they may, like letter and digit runs.")),
            "ported to the standard re module (\\w, \\d)": mutate({
                r" ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|": r" ?[^\W\d_]+| ?\d+| ?[^\s\w]+|",
                "return regex.findall": "import re\n    return re.findall"},
                hint=Hint("换成标准 re 的 word/digit 类并不等价：上标数字、罗马数字等非十进制数字被当成了字母。",
                    "The standard re classes are not Unicode letters and numbers: some numerals join the letters.")),
        },
        alternatives={
            "a hand-written scanner (unicodedata, no regex)": r'''
                import unicodedata as _ud

                def gpt2_pretokenize(text):
                    def cls(ch):
                        if ch.isspace():
                            return "S"
                        c = _ud.category(ch)[0]
                        return c if c in "LN" else "O"
                    out, i, n = [], 0, len(text)
                    while i < n:
                        if text[i] == "'":
                            hit = next((c for c in ("re", "ve", "ll", "s", "t", "m", "d")
                                        if text.startswith(c, i + 1)), None)
                            if hit:
                                out.append("'" + hit)
                                i += 1 + len(hit)
                                continue
                        start = i + 1 if text[i] == " " and i + 1 < n and cls(text[i + 1]) != "S" else i
                        kind = cls(text[start])
                        if kind != "S":
                            j = start
                            while j < n and cls(text[j]) == kind:
                                j += 1
                            out.append(text[i:j])
                            i = j
                            continue
                        j = i
                        while j < n and cls(text[j]) == "S":
                            j += 1
                        if j < n and j - i > 1:
                            j -= 1
                        out.append(text[i:j])
                        i = j
                    return out
            ''',
        },
    ),
    Exercise(
        grade_id="ch10_bytes_to_unicode_test", functions=("bytes_to_unicode",), points=1,
        bans=(("transformers.convert_slow_tokenizer", "bytes_to_unicode", "transformers' bytes_to_unicode"),),
        cases=(
            Case("the whole table", {"bytes": "all"}),
            Case("printable ASCII and Latin-1 bytes", {"bytes": [[33, 126], [161, 172], [174, 255]]},
                 edge="the ranges' ends: 33, 126, 161, 172, 174, 255"),
            Case("space, control bytes, DEL..NBSP and the soft hyphen", {"bytes": [[0, 32], [127, 160], [173, 173]]},
                 edge="the remapped bytes: 0-32, 127-160 and 173 (the soft hyphen)"),
        ),
        probe=probe_byte_table, judge=judge_byte_table,
        mutants={
            "soft hyphen (173) kept as itself": mutate('ord("¬") + 1)) | set(range(ord("®"),',
                                                       'ord("¬") + 2)) | set(range(ord("®"),',
                hint=Hint("软连字符（字节 173）被当作可见字符保留；它不可见，应和其他字节一样重新映射。",
                    "The soft hyphen (byte 173) is kept as itself; it is invisible and must be remapped like the other bytes.")),
            "other bytes mapped to chr(256 + b)": mutate("table[b] = chr(256 + n)", "table[b] = chr(256 + b)",
                hint=Hint("被重映射的字节用了 256 加字节值本身，而不是 256 加它在重映射字节中的序号。",
                    "Remapped bytes use 256 plus the byte value instead of 256 plus their index among the remapped bytes.")),
            "space (32) kept as itself": mutate('set(range(ord("!"),', 'set(range(ord(" "),',
                hint=Hint("空格（字节 32）被保留为自身；它也要映射成可见字符（Ġ）。",
                    "The space (byte 32) is kept as itself; it must be remapped to a visible character too.")),
        },
        alternatives={
            "GPT-2's original two-list construction": '''
                def bytes_to_unicode():
                    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\\u00a1"), ord("\\u00ac") + 1)) \\
                        + list(range(ord("\\u00ae"), ord("\\u00ff") + 1))
                    cs = bs[:]
                    n = 0
                    for b in range(2 ** 8):
                        if b not in bs:
                            bs.append(b)
                            cs.append(2 ** 8 + n)
                            n += 1
                    return dict(zip(bs, map(chr, cs)))
            ''',
        },
    ),
    Exercise(
        grade_id="ch10_train_bpe_test", functions=("train_bpe",), points=3,
        bans=(("tokenizers.trainers", "BpeTrainer", "tokenizers' BpeTrainer"), TOKENIZER),
        cases=(
            Case("low, lower, newest, widest", {"word_counts": {"low": 5, "lower": 2, "newest": 6, "widest": 3},
                                                "num_merges": 10}),
            Case("ties broken by the greater pair", {"word_counts": {"ab": 1, "cd": 1, "ef": 1, "ac": 1},
                                                     "num_merges": 4}, edge="every pair tied at count 1"),
            Case("counts weight the pairs", {"word_counts": {"ab": 5, "cd": 1, "xcd": 1, "ycd": 1},
                                             "num_merges": 3}, edge="one frequent word against several rare words"),
            Case("overlapping pairs in aaa", {"word_counts": {"aaa": 3, "bc": 5}, "num_merges": 3},
                 edge="a pair overlapping itself (a, a) in aaa"),
            Case("merges respect symbol boundaries", {"word_counts": {"xa": 10, "xab": 2, "ab": 5},
                                                      "num_merges": 3},
                 edge="a pair that occurs in the text but not as two symbols (xa b)"),
            Case("stops when nothing is left", {"word_counts": {"ab": 2, "c": 7}, "num_merges": 5},
                 edge="num_merges larger than the merges there are"),
            # found by a seeded search (random.seed(0), words of a/b/c) and kept as a fixed case: after (c, a), the
            # pairs (ca, ca) and (c, b) tie; the pairs order them (ca, ca) > (c, b), the joined strings "cb" > "caca"
            Case("a tie the pairs and the joined strings order differently",
                 {"word_counts": {"bab": 1, "caca": 1, "cbb": 1}, "num_merges": 4},
                 edge="tie between pairs whose order differs from the order of their concatenations"),
            Case("Hamlet's 400 most frequent byte-level words", {"play": "Hamlet", "chars": 60000, "words": 400,
                                                                  "num_merges": 60}),
        ),
        probe=probe_train_bpe, judge=judge_merges,
        mutants={
            "ties broken by the smaller pair": mutate("best = max(counts, key=lambda p: (counts[p], p))",
                                                      "best = min(counts, key=lambda p: (-counts[p], p))",
                hint=Hint("频次相同时选了字典序较小的 pair，规则要求的是另一方向。",
                    "Equally frequent pairs are broken towards the smaller pair; the stated rule picks the other one.")),
            "ties broken on the concatenated string, not the pair": mutate(
                "best = max(counts, key=lambda p: (counts[p], p))", "best = max(counts, key=lambda p: (counts[p], p[0] + p[1]))",
                hint=Hint("平局按拼接后的字符串比较，而不是按 pair 本身（两个符号依次）比较。",
                    "Ties are compared on the concatenated string instead of on the pair of symbols itself.")),
            "every word counted once (counts ignored)": mutate("counts[pair] += c", "counts[pair] += 1",
                hint=Hint("每个词只算一次，词频 word_counts 被忽略了。",
                    "Every word counts once; the word frequencies are ignored.")),
            "overlapping occurrences counted once (aaa has one (a, a))": mutate(
                "            for pair in zip(symbols, symbols[1:]):\n                counts[pair] += c\n",
                "            i = 0\n            while i + 1 < len(symbols):\n"
                "                counts[(symbols[i], symbols[i + 1])] += c\n"
                "                i += 2 if symbols[i] == symbols[i + 1] else 1\n",
                hint=Hint("重叠出现只算了一次：a a a 中相邻位置有两处 (a, a)，每处都要计数。",
                    "Overlapping occurrences are counted once; in a a a the pair (a, a) occurs at two adjacent positions.")),
            "merges right to left (aaa becomes a + aa)": mutate({  # the merge scans the reversed symbols
                "out, i = [], 0": "out, i, symbols = [], 0, symbols[::-1]",
                "(symbols[i], symbols[i + 1]) == pair": "(symbols[i + 1], symbols[i]) == pair",
                "out.append(symbols[i] + symbols[i + 1])": "out.append(symbols[i + 1] + symbols[i])",
                "return out": "return out[::-1]"},
                hint=Hint("合并从右往左扫描：a a a 变成 a + aa，应从左往右合并。",
                    "The merge scans right to left, so a a a becomes a + aa instead of aa + a.")),
            "string replace on space-joined symbols (crosses boundaries)": mutate(
                "words = [(merge(s, best), c) for s, c in words]",
                'words = [(" ".join(s).replace(" ".join(best), "".join(best)).split(" "), c) for s, c in words]',
                hint=Hint("在空格连接的字符串上做 replace，会跨越符号边界匹配到不该合并的位置。",
                    "String replace on the space-joined symbols also matches across symbol boundaries.")),
            "does not stop when no pair is left": mutate("        if not counts:\n            break\n", "",
                hint=Hint("没有 pair 可合并时没有停下，循环仍继续。", "Training does not stop when no pair is left to merge.")),
        },
        alternatives={
            "incremental pair counts with an index of words per pair": '''
                def train_bpe(word_counts, num_merges):
                    from collections import defaultdict
                    words = [list(w) for w in word_counts]
                    freq = list(word_counts.values())
                    counts, where = defaultdict(int), defaultdict(set)
                    for k, s in enumerate(words):
                        for p in zip(s, s[1:]):
                            counts[p] += freq[k]
                            where[p].add(k)
                    merges = []
                    for _ in range(num_merges):
                        live = {p: c for p, c in counts.items() if c > 0}
                        if not live:
                            break
                        best = max(live, key=lambda p: (live[p], p))
                        merges.append(best)
                        for k in sorted(where.pop(best, ())):
                            s = words[k]
                            for p in zip(s, s[1:]):
                                counts[p] -= freq[k]
                            out, i = [], 0
                            while i < len(s):
                                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                                    out.append(s[i] + s[i + 1])
                                    i += 2
                                else:
                                    out.append(s[i])
                                    i += 1
                            words[k] = out
                            for p in zip(out, out[1:]):
                                counts[p] += freq[k]
                                where[p].add(k)
                        counts.pop(best, None)
                    return merges
            ''',
        },
    ),
    Exercise(
        grade_id="ch10_bpe_encode_test", functions=("bpe_encode",), points=3,
        bans=(("tokenizers.models", "BPE", "tokenizers' BPE model"), TOKENIZER, GPT2_FAST, AUTO),
        cases=(
            Case("GPT-2 merges on English prose", {"text": ENGLISH}),
            Case("GPT-2 merges on Chinese", {"text": CHINESE}),
            Case("GPT-2 merges on Python code", {"text": CODE + "    aaaa = '!!!!!' + '....' ;;;; \n"}),
            Case("lowest rank first, not leftmost", {"ranks": [["b", "c"], ["a", "b"], ["c", "d"], ["a", "bc"]],
                                                     "words": ["abc", "abcd", "cdab", "x", "ab"]},
                 edge="the lowest-ranked pair is not the leftmost mergeable one"),
            Case("repeated pairs merge left to right", {"ranks": [["a", "a"], ["b", "b"], ["aa", "a"]],
                                                        "words": ["aaa", "aaaaa", "bbb", "abbba", "a"]},
                 edge="a pair overlapping itself (aaa, aaaaa, bbb)"),
        ),
        probe=probe_bpe_encode, judge=judge_tokens,
        mutants={
            "leftmost mergeable pair instead of the lowest rank": mutate("best = min(pairs, key=ranks.__getitem__)",
                                                                         "best = pairs[0]",
                hint=Hint("每步合并最左边的可合并 pair，而不是 rank 最低（最早学到）的那个。",
                    "Each step merges the leftmost mergeable pair instead of the one with the lowest rank.")),
            "repeated pairs merged right to left": mutate({  # the merge scans the reversed parts
                "merged, i = [], 0": "merged, i, parts = [], 0, parts[::-1]",
                "(parts[i], parts[i + 1]) == best": "(parts[i + 1], parts[i]) == best",
                "merged.append(parts[i] + parts[i + 1])": "merged.append(parts[i + 1] + parts[i])",
                "parts = merged": "parts = merged[::-1]"},
                hint=Hint("同一 pair 多次出现时从右往左合并；应从左往右。",
                    "Repeated occurrences of a pair are merged right to left instead of left to right.")),
            "one merge step only": mutate("while len(parts) > 1:", "for _ in range(1 if len(parts) > 1 else 0):",
                hint=Hint("只做了一步合并；应一直合并，直到没有在 ranks 里的 pair。",
                    "Only one merge is made; merging must go on until no pair in ranks is left.")),
        },
        alternatives={
            "one occurrence per step (leftmost of the lowest rank)": '''
                def bpe_encode(word, ranks):
                    parts = list(word)
                    while len(parts) > 1:
                        scored = [(ranks[(parts[i], parts[i + 1])], i) for i in range(len(parts) - 1)
                                  if (parts[i], parts[i + 1]) in ranks]
                        if not scored:
                            break
                        _, i = min(scored)
                        parts[i:i + 2] = [parts[i] + parts[i + 1]]
                    return parts
            ''',
        },
    ),
    Exercise(
        grade_id="ch10_decode_test", functions=("decode_ids",), points=2,
        bans=(TOKENIZER, ("tokenizers", "decoders", "tokenizers.decoders"), GPT2_FAST, AUTO),
        cases=(
            Case("English round trip", {"text": ENGLISH, "slices": [[0, 1000], [3, 17]]}),
            Case("Chinese cut inside characters", {"text": CHINESE,
                                                   "slices": [[0, 1000], [1, 1000], [0, 3], [1, 2], [2, 9]]},
                 edge="slices that start and end inside a 3-byte character"),
            Case("emoji and 4-byte characters split", {"text": "ok 🙂👍🏽 𝔘𝔫𝔦 done", "slices": [[0, 1000], [1, 4], [2, 6]]},
                 edge="4-byte characters and a modifier split over tokens"),
            Case("newlines, tabs and <|endoftext|>", {"text": "line one\n\tline two\r\n<|endoftext|>  end \n",
                                                      "slices": [[0, 1000], [2, 9]]},
                 edge="bytes mapped away from themselves (newline, tab, CR) and a special token"),
            Case("a space before punctuation", {"text": "Wait , what ? No ! I do n't know . It 's fine , they 're here ' ok",
                                                "slices": [[0, 1000], [1, 6]]},
                 edge="a space before punctuation or a contraction, which the old clean_up_tokenization removed"),
        ),
        probe=probe_decode, judge=judge_texts,
        mutants={
            "each token decoded on its own": mutate(
                DECODE, 'return "".join(bytes(byte_decoder[ch] for ch in id_to_token[i])'
                        '.decode("utf-8", errors="replace") for i in ids)',
                hint=Hint("逐个 token 解码：跨 token 的多字节 UTF-8 字符被拆坏。",
                    "Each token is decoded on its own, so a multi-byte UTF-8 character split across tokens breaks.")),
            "invalid bytes dropped (errors='ignore')": mutate('errors="replace"', 'errors="ignore"',
                hint=Hint("非法字节被直接丢掉了；应替换成 U+FFFD 替换字符。",
                    "Invalid bytes are dropped instead of replaced by the replacement character U+FFFD.")),
            "the old clean-up of spaces before punctuation (clean_up_tokenization_spaces=True)": mutate(
                'return data.decode("utf-8", errors="replace")',
                'text = data.decode("utf-8", errors="replace")\n'
                '    for old, new in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" \' ", "\'"), (" n\'t", "n\'t"),\n'
                '                     (" \'m", "\'m"), (" \'s", "\'s"), (" \'ve", "\'ve"), (" \'re", "\'re")):\n'
                '        text = text.replace(old, new)\n'
                '    return text',
                hint=Hint("解码后又删掉了标点前的空格（旧的 clean-up）；解码必须逐字节还原原文。",
                    "The old clean-up removes spaces before punctuation; decoding must give back the exact original text.")),
            "only Ġ mapped back to a space": mutate(
                DECODE, 'return "".join(id_to_token[i] for i in ids).replace("\\u0120", " ")',
                hint=Hint("只把 Ġ 换回空格，其他被映射的字节（换行、非 ASCII 字节等）没有还原。",
                    "Only the space stand-in is mapped back; other remapped bytes (newlines, non-ASCII) stay as they are.")),
        },
        alternatives={
            "an incremental UTF-8 decoder fed token by token": '''
                import codecs as _codecs

                def decode_ids(ids, id_to_token, byte_decoder):
                    dec = _codecs.getincrementaldecoder("utf-8")(errors="replace")
                    out = [dec.decode(bytes(byte_decoder[c] for c in id_to_token[i])) for i in ids]
                    out.append(dec.decode(b"", final=True))
                    return "".join(out)
            ''',
        },
    ),
    Exercise(
        grade_id="ch10_wordpiece_test", functions=("wordpiece",), points=2,
        bans=(("tokenizers.models", "WordPiece", "tokenizers' WordPiece model"), TOKENIZER,
              ("transformers", "BertTokenizerFast", "BertTokenizerFast"),
              ("transformers", "BertTokenizer", "BertTokenizer"), AUTO),
        cases=(
            Case("English words split into pieces", {"text": "Tokenization is unaffable; preprocessing embeddings "
                                                             "rehearsed quickly by transformers."}),
            Case("an unknown character inside a word", {"text": "abc☃def hello ☃ snow☃ ok"},
                 edge="a character missing from the vocabulary inside a word"),
            Case("words of 101 and 100 characters", {"text": "x" * 101 + " ok " + "ab" * 50 + " fine"},
                 edge="word lengths max_chars and max_chars + 1"),
            Case("Chinese and accents after normalisation", {"text": "你好 Héllo naïve Zürich résumé 東京"}),
        ),
        probe=probe_wordpiece, judge=judge_wordpiece,
        mutants={
            "shortest match first": mutate({"end, found = len(word), None": "end, found = start + 1, None",
                                            "while start < end:": "while end <= len(word):", "end -= 1": "end += 1"},
                hint=Hint("先匹配最短的片段；WordPiece 是贪心的最长匹配优先。",
                    "The shortest piece is matched first; WordPiece is greedy longest-match-first.")),
            "only the unmatched part becomes [UNK]": mutate(
                "        if found is None:\n            return [unk_token]\n",
                "        if found is None:\n            pieces.append(unk_token)\n"
                "            start += 1\n            continue\n",
                hint=Hint("只把匹配不上的部分换成 [UNK]；只要有一处匹配失败，整个词就是 [UNK]。",
                    "Only the unmatched part becomes [UNK]; if any part fails to match, the whole word is [UNK].")),
            "no ## on continuation pieces": mutate('if start == 0 else "##" + word[start:end]', "",
                hint=Hint("后续片段没有加 ## 前缀，于是查到的是词首片段。",
                    "Continuation pieces are looked up without the ## prefix, so word-initial pieces are used.")),
            "no limit on the word length": mutate("    if len(word) > max_chars:\n        return [unk_token]\n", "",
                hint=Hint("没有长度上限：超过 max_chars 个字符的词应直接是 [UNK]。",
                    "There is no length limit: a word longer than max_chars must be [UNK].")),
            "a word of exactly max_chars characters also [UNK] (>= instead of >)": mutate(
                "if len(word) > max_chars:", "if len(word) >= max_chars:",
                hint=Hint("恰好 max_chars 个字符的词也被当成 [UNK]；只有更长的词才是。",
                    "A word of exactly max_chars characters is also made [UNK]; only longer words are.")),
        },
        alternatives={
            "recursive, bounded by the longest vocabulary entry": '''
                def wordpiece(word, vocab, unk_token="[UNK]", max_chars=100):
                    if len(word) > max_chars:
                        return [unk_token]
                    longest = max(len(t) for t in vocab)

                    def rest(start):
                        if start == len(word):
                            return []
                        for end in range(min(len(word), start + longest), start, -1):
                            piece = ("##" if start else "") + word[start:end]
                            if piece in vocab:
                                tail = rest(end)
                                return None if tail is None else [piece] + tail
                        return None

                    out = rest(0)
                    return [unk_token] if out is None else out
            ''',
        },
    ),
    Exercise(
        grade_id="ch10_chat_template_test", functions=("render_chat", "tokenize_chat"), points=3,
        bans=(("transformers.tokenization_utils_base.PreTrainedTokenizerBase", "apply_chat_template", "apply_chat_template"),),
        cases=(
            Case("user and assistant, default system prompt", {
                "messages": [{"role": "user", "content": "What is BPE?"},
                             {"role": "assistant", "content": "Byte-pair encoding: merge frequent pairs."}],
                "add_generation_prompt": False}, edge="no system message: the default one is inserted"),
            Case("own system prompt, two assistant turns", {
                "messages": [{"role": "system", "content": "Answer in one line."},
                             {"role": "user", "content": "2+2?"},
                             {"role": "assistant", "content": "4"},
                             {"role": "user", "content": "And 3*3?"},
                             {"role": "assistant", "content": "9, since 3 times 3 is 9."}],
                "add_generation_prompt": False}, edge="two assistant turns in one conversation"),
            Case("generation prompt after the last user turn", {
                "messages": [{"role": "user", "content": "Say hi."},
                             {"role": "assistant", "content": "Hi!"},
                             {"role": "user", "content": "Again?"}],
                "add_generation_prompt": True}, edge="add_generation_prompt=True"),
            Case("multi-line and Chinese content", {
                "messages": [{"role": "system", "content": "你是一个助手。\nBe kind."},
                             {"role": "user", "content": "分词是什么？\nExplain."},
                             {"role": "assistant", "content": "分词就是把文本切成 token。\n- BPE\n- WordPiece"}],
                "add_generation_prompt": False}),
        ),
        probe=probe_chat, judge=judge_chat,
        mutants={
            "no default system message": mutate('if messages and messages[0]["role"] != "system":', "if False:",
                                                count=2,
                hint=Hint("第一条消息不是 system 时，没有先插入默认的 system 消息。",
                    "When the first message is not a system message, the default system message is not added.")),
            "generation prompt ignored": mutate("if add_generation_prompt:", "if False:", count=2,
                hint=Hint("add_generation_prompt 被忽略，结尾没有加上 assistant 的开头。",
                    "add_generation_prompt is ignored, so the assistant header is never appended at the end.")),
            "mask covers the assistant header too": mutate(r'''{m['role']}\n", 0)''',
                                                           r'''{m['role']}\n", int(m["role"] == "assistant"))''',
                hint=Hint("mask 把 assistant 的头部（im_start 和角色名）也标成了 1；它不是模型要学的输出。",
                    "The mask also covers the assistant header; the model does not learn to produce it.")),
            "mask stops before <|im_end|>": mutate(
                r'''add(f"{m['content']}<|im_end|>\n", int(m["role"] == "assistant"))''',
                'add(m["content"], int(m["role"] == "assistant"))\n        add("<|im_end|>\\n", 0)',
                hint=Hint("mask 在 <|im_end|> 之前就结束了；结束符和其后的换行也要学（学会何时停）。",
                    "The mask stops before <|im_end|>; the closing token and its newline must be learned too (when to stop).")),
            "every turn's content masked in (user and system too)": mutate({
                r'''Hugging Face<|im_end|>\n", 0)''': r'''Hugging Face<|im_end|>\n", 1)''',
                'int(m["role"] == "assistant")': "1"},
                hint=Hint("所有轮次的内容都被标成 1；只有 assistant 的内容才计入 loss。",
                    "Every turn's content is masked in, user and system too; only assistant content counts in the loss.")),
        },
        alternatives={
            "tokenise the whole text once, mark tokens by character offsets": '''
                def tokenize_chat(messages, tokenizer, add_generation_prompt=False):
                    text = render_chat(messages, add_generation_prompt)
                    spans, pos = [], 0
                    for m in messages:
                        block = f"<|im_start|>{m['role']}\\n{m['content']}<|im_end|>\\n"
                        pos = text.index(block, pos)
                        if m["role"] == "assistant":
                            head = len(f"<|im_start|>{m['role']}\\n")
                            spans.append((pos + head, pos + len(block)))
                        pos += len(block)
                    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
                    mask = [int(any(a <= s and e <= b for a, b in spans)) for s, e in enc["offset_mapping"]]
                    return list(enc["input_ids"]), mask
            ''',
        },
    ),
]

# Library implementations the exercises imitate (used by the test suite, in the trusted process).
ORACLES = {
    "ch10_pretokenize_test": oracle_pretokenize,
    "ch10_bytes_to_unicode_test": oracle_byte_table,
    "ch10_train_bpe_test": oracle_train_bpe,
    "ch10_bpe_encode_test": oracle_bpe_encode,
    "ch10_decode_test": oracle_decode,
    "ch10_wordpiece_test": oracle_wordpiece,
    "ch10_chat_template_test": oracle_chat,
}

R = Rule

# Every rule the instructions state, quoted from them: the hidden cases that break when it is broken, and the
# mutants that break it, each with a word its feedback must contain (tests/test_exercise_rules.py, test_mutants.py).
RULES = {
    "ch10_pretokenize_test": (
        R(r"a run of Unicode **letters** (`\p{L}`: any script", ("Chinese, accents and mixed scripts",),
          {"ASCII letters only ([a-zA-Z] instead of \\p{L})": "letters"}),
        R("**lower case only**", ("upper-case contractions",),
          {"contractions matched case-insensitively": "lower case"}),
        R("a run of whitespace before a word leaves its **last** character for the word",
          ("runs of spaces, tabs and newlines", "Python code"),
          {"whitespace runs taken whole (no lookahead)": "whitespace"}),
        R("never mixed with letters", ("digits and symbols", "Chinese, accents and mixed scripts"),
          {"letters and digits in one run": "digits"}),
        R("an optional space followed by a run of characters that are neither whitespace, letters nor digits",
          ("digits and symbols", "English prose with contractions"),
          {"symbols never take the leading space": "leading space"}),
        R(r"a run of Unicode **digits** (`\p{N}`)", ("underscores and non-ASCII numerals",),
          {"ported to the standard re module (\\w, \\d)": "pieces"}),
    ),
    "ch10_bytes_to_unicode_test": (
        R("the other 68 bytes (0–32, 127–160 and 173, the soft hyphen) map to `chr(256 + n)`",
          ("the whole table", "space, control bytes, DEL..NBSP and the soft hyphen"),
          {"soft hyphen (173) kept as itself": "byte 173", "space (32) kept as itself": "byte 32"}),
        R("`n` counts those bytes in increasing byte order",
          ("the whole table", "space, control bytes, DEL..NBSP and the soft hyphen"),
          {"other bytes mapped to chr(256 + b)": "wrong character"}),
    ),
    "ch10_train_bpe_test": (
        R("**weighted by the word's count**", ("counts weight the pairs", "low, lower, newest, widest"),
          {"every word counted once (counts ignored)": "occurs"}),
        R("on a **tie**, pick the **lexicographically greatest** pair", ("ties broken by the greater pair",),
          {"ties broken by the smaller pair": "lexicographically greater"}),
        R("comparing\n   `(left, right)` as Python tuples of strings",
          ("a tie the pairs and the joined strings order differently",),
          {"ties broken on the concatenated string, not the pair": "lexicographically greater"}),
        R("every adjacent position counts, so `aaa` (count 1) holds the pair", ("overlapping pairs in aaa",),
          {"overlapping occurrences counted once (aaa has one (a, a))": "occurs"}),
        R("**non-overlapping, left to right** (`a a a` → `aa a`)", ("overlapping pairs in aaa",),
          {"merges right to left (aaa becomes a + aa)": "occurs"}),
        R("a merge joins two whole *symbols* only", ("merges respect symbol boundaries",),
          {"string replace on space-joined symbols (crosses boundaries)": "merges"}),
        R("stop early if no word has two symbols left", ("stops when nothing is left",),
          {"does not stop when no pair is left": "nothing is left"}),
    ),
    "ch10_bpe_encode_test": (
        R("pick the one with the **lowest rank** (not the leftmost pair", ("lowest rank first, not leftmost",
                                                                          "GPT-2 merges on English prose"),
          {"leftmost mergeable pair instead of the lowest rank": "tokens"}),
        R("merge **all** its occurrences, non-overlapping, **left to right**", ("repeated pairs merge left to right",),
          {"repeated pairs merged right to left": "tokens"}),
        R("repeat until no adjacent pair has a rank",
          ("GPT-2 merges on English prose", "GPT-2 merges on Chinese", "GPT-2 merges on Python code",
           "lowest rank first, not leftmost", "repeated pairs merge left to right",),
          {"one merge step only": "tokens"}),
    ),
    "ch10_decode_test": (
        R("join the bytes of **all** ids first, then decode the whole byte string as UTF-8 once",
          ("Chinese cut inside characters", "emoji and 4-byte characters split"),
          {"each token decoded on its own": "replacement"}),
        R('with `errors="replace"`', ("Chinese cut inside characters", "emoji and 4-byte characters split"),
          {"invalid bytes dropped (errors='ignore')": "replacement"}),
        R("every character, not only `Ġ`", ("English round trip", "newlines, tabs and <|endoftext|>"),
          {"only Ġ mapped back to a space": "decoded text"}),
        R("`clean_up_tokenization_spaces=False`", ("a space before punctuation",),
          {"the old clean-up of spaces before punctuation (clean_up_tokenization_spaces=True)": "decoded text"}),
    ),
    "ch10_wordpiece_test": (
        R("take the **longest** prefix that is in `vocab`", ("English words split into pieces",
                                                             "an unknown character inside a word",
                                                             "words of 101 and 100 characters",),
          {"shortest match first": "longest"}),
        R("every piece after the first must be looked up with the continuation prefix `##`",
          ("English words split into pieces", "words of 101 and 100 characters",), {"no ## on continuation pieces": "##"}),
        R("the **whole word** becomes the single token `[unk_token]` (not only the unmatched part)",
          ("an unknown character inside a word",), {"only the unmatched part becomes [UNK]": "[UNK]"}),
        R("if the word has more than `max_chars` characters (100 for BERT), the result is `[unk_token]`",
          ("words of 101 and 100 characters",),
          {"no limit on the word length": "[UNK]",
           "a word of exactly max_chars characters also [UNK] (>= instead of >)": "tokens"}),
    ),
    "ch10_chat_template_test": (
        R("if the **first** message is not a `system` message, a default system message comes first",
          ("user and assistant, default system prompt", "generation prompt after the last user turn"),
          {"no default system message": "render_chat"}),
        R(r"with `add_generation_prompt=True`, the text ends with `<|im_start|>assistant\n`",
          ("generation prompt after the last user turn",), {"generation prompt ignored": "render_chat"}),
        R(r"every `<|im_start|>assistant\n` header", ("user and assistant, default system prompt",
                                                       "own system prompt, two assistant turns"),
          {"mask covers the assistant header too": "assistant mask"}),
        R(r"its closing `<|im_end|>` and the `\n` after it",
          ("own system prompt, two assistant turns", "multi-line and Chinese content"),
          {"mask stops before <|im_end|>": "assistant mask"}),
        R("0 for everything else — system and user turns",
          ("own system prompt, two assistant turns", "multi-line and Chinese content"),
          {"every turn's content masked in (user and system too)": "assistant mask"}),
    ),
}

CHAPTER = Chapter("ch10_tokenization", "ch10_exercises.ipynb", EXERCISES, rules=RULES, oracles=ORACLES)
