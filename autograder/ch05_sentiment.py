"""Trusted spec of Chapter 5's graded cells (solutions/ch05_sentiment/ch05_exercises.ipynb).

Probes are self-contained (they run in the sandbox). Oracles (trusted side): a Counter-based vocabulary,
``pad_sequence``, an LSTM run one sequence at a time, ``sklearn``'s ``accuracy_score`` and a plain training loop.
"""
from llmprep.grading.spec import Case, Chapter, Exercise, Hint, Rule, allclose, mutate


# ============================================================================ 1 build_vocab

def probe_build_vocab(ns, params):
    import random

    fn = ns["build_vocab"]
    rng = random.Random(params["seed"])
    words = params["words"]
    weights = [1.0 / (i + 1) for i in range(len(words))]
    texts = [rng.choices(words, weights=weights, k=rng.randint(1, params["max_len"])) for _ in range(params["n"])]
    if params.get("texts"):  # literal texts (ties placed by hand)
        texts = [list(t) for t in params["texts"]]
    snapshot = [list(t) for t in texts]
    kwargs = {"min_freq": params["min_freq"]}
    if params.get("specials") is not None:
        kwargs["specials"] = tuple(params["specials"])
    vocab = fn(texts, **kwargs)
    if not isinstance(vocab, dict):
        raise TypeError(f"build_vocab returned {type(vocab).__name__}, expected a dict")
    order = sorted(vocab.items(), key=lambda kv: int(kv[1]))
    return {"tokens": [str(t) for t, _ in order], "indices": [int(i) for _, i in order],
            "size": len(vocab), "input_untouched": texts == snapshot}


def oracle_build_vocab():
    from collections import Counter

    def reference(tokenized_texts, min_freq=1, specials=("<pad>", "<unk>")):
        counts = Counter()
        for text in tokenized_texts:
            counts.update(text)
        tokens = list(dict.fromkeys(specials))
        tokens += sorted((t for t in counts if counts[t] >= min_freq and t not in tokens),
                         key=lambda t: (-counts[t], t))
        return {t: i for i, t in enumerate(tokens)}

    return {"build_vocab": reference}


# ============================================================================ 2 collate

def probe_collate(ns, params):
    import torch

    fn = ns["collate"]
    g = torch.Generator().manual_seed(params["seed"])
    batch = []
    for n in params["lengths"]:
        ids = torch.randint(2, 50, (n,), generator=g)
        label = int(torch.randint(0, 2, (1,), generator=g))
        batch.append((ids if params["as_tensor"] else ids.tolist(), label))
    padded, lengths, labels = fn(batch, pad_index=params["pad_index"])
    return {"padded": padded, "lengths": lengths, "labels": labels,
            "padded_is_long": padded.dtype == torch.long, "lengths_is_long": lengths.dtype == torch.long,
            "labels_is_float32": labels.dtype == torch.float32}


def oracle_collate():
    import torch
    from torch.nn.utils.rnn import pad_sequence

    def reference(batch, pad_index=0):
        seqs = [torch.as_tensor(ids, dtype=torch.long) for ids, _ in batch]
        return (pad_sequence(seqs, batch_first=True, padding_value=pad_index),
                torch.tensor([len(s) for s in seqs]),
                torch.tensor([y for _, y in batch], dtype=torch.float32))

    return {"collate": reference}


# ============================================================================ 3 last_real_hidden

def probe_last_real_hidden(ns, params):
    import torch
    import torch.nn as nn

    fn = ns["last_real_hidden"]
    torch.manual_seed(params["seed"])
    lstm = nn.LSTM(params["emb"], params["hidden"], num_layers=params["layers"], batch_first=True,
                   bidirectional=params["bidirectional"])
    lengths = torch.tensor(params["lengths"], dtype=torch.long)
    t = int(lengths.max()) + params["extra_pad"]
    embedded = torch.randn(len(params["lengths"]), t, params["emb"]) * 2  # padding positions hold garbage
    before = embedded.clone()
    out = fn(lstm, embedded, lengths.clone())
    return {"hidden": out, "embedded_untouched": bool(torch.equal(before, embedded))}


def oracle_last_real_hidden():
    import torch

    def one_at_a_time(lstm, embedded, lengths):
        rows = []
        with torch.no_grad():
            for i, n in enumerate(lengths.tolist()):
                _, (h, _) = lstm(embedded[i:i + 1, :n])
                rows.append(torch.cat([h[-2, 0], h[-1, 0]]) if lstm.bidirectional else h[-1, 0])
        return torch.stack(rows)

    return {"last_real_hidden": one_at_a_time}


# ============================================================================ 4 accuracy

def probe_accuracy(ns, params):
    import torch

    g = torch.Generator().manual_seed(params["seed"])
    n, c = params["n"], params["c"]
    z = torch.randn(n, generator=g) * 2
    z[torch.rand(n, generator=g) < 0.2] = 0.0  # exact zeros predict class 0
    if params.get("tiny"):  # positive logits whose float32 sigmoid rounds to exactly 0.5: they still predict 1
        z[torch.rand(n, generator=g) < 0.3] = 1e-9
    y = (torch.rand(n, generator=g) < params["pos_rate"]).long()
    if params["logit_shape"] == "column":
        z = z[:, None]
    if params["label_dtype"] == "float":
        y = y.float()
    if params["label_shape"] == "column":
        y = y[:, None]
    logits = torch.randn(n, c, generator=g)
    classes = torch.randint(0, c, (n,), generator=g)
    hit = torch.rand(n, generator=g) < 0.5
    logits[hit, classes[hit]] += 10.0
    binary, multiclass = ns["binary_accuracy"](z, y), ns["multiclass_accuracy"](logits, classes)
    return {"binary": float(binary), "multiclass": float(multiclass),
            "returns_floats": isinstance(binary, float) and isinstance(multiclass, float)}


def oracle_accuracy():
    from sklearn.metrics import accuracy_score

    return {
        "binary_accuracy": lambda logits, labels: accuracy_score(labels.reshape(-1).long().numpy(),
                                                                 (logits.reshape(-1) > 0).long().numpy()),
        "multiclass_accuracy": lambda logits, labels: accuracy_score(labels.numpy(), logits.argmax(-1).numpy()),
    }


# ============================================================================ 5 bug hunt: train_epoch

def probe_train_epoch(ns, params):
    import torch
    import torch.nn as nn
    from torch.nn.utils.rnn import pack_padded_sequence

    fn = ns["train_epoch"]

    class Net(nn.Module):  # the notebook's TinySentimentNet, defined here so the student cannot change it
        def __init__(self, vocab_size, emb_dim=8, hidden=6, dropout=0.3):
            super().__init__()
            self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=0)
            self.lstm = nn.LSTM(emb_dim, hidden, batch_first=True, bidirectional=True)
            self.dropout = nn.Dropout(dropout)
            self.head = nn.Linear(2 * hidden, 1)

        def forward(self, padded, lengths=None):
            x = self.dropout(self.embedding(padded))
            if lengths is None:
                out, _ = self.lstm(x)
                h = out[:, -1]
            else:
                packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
                _, (h_n, _) = self.lstm(packed)
                h = torch.cat([h_n[-2], h_n[-1]], dim=-1)
            return self.head(self.dropout(h)).squeeze(-1)

    vocab = 30
    g = torch.Generator().manual_seed(params["seed"])
    batches = []
    for size in params["sizes"]:
        lengths = torch.randint(1, params["max_len"] + 1, (size,), generator=g)
        lengths[0] = params["max_len"]
        padded = torch.zeros(size, params["max_len"], dtype=torch.long)
        for i, n in enumerate(lengths.tolist()):
            padded[i, :n] = torch.randint(2, vocab, (n,), generator=g)
        labels = (padded == 7).any(1).float()
        batches.append((padded, lengths, labels))
    torch.manual_seed(params["seed"])
    model = Net(vocab)
    params_list = list(model.parameters())
    if params["optimizer"] == "adam":
        opt = torch.optim.Adam(params_list, lr=params["lr"])
    else:
        opt = torch.optim.SGD(params_list, lr=params["lr"], momentum=0.5)
    if params["stale_grads"]:
        for p in params_list:
            p.grad = torch.full_like(p, 3.0)
    model.train(not params["start_eval"])
    torch.manual_seed(params["seed"] + 100)  # the dropout masks
    loss = fn(model, batches, opt, nn.BCEWithLogitsLoss())
    out = {"loss": float(loss), "training_after": bool(model.training)}
    for name, p in model.named_parameters():
        out[name] = p.detach()
    return out


def oracle_train_epoch():
    def reference(model, batches, optimizer, loss_fn):
        model.train()
        total, n = 0.0, 0
        for padded, lengths, labels in batches:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(padded, lengths), labels.float())
            loss.backward()
            optimizer.step()
            total += loss.item() * len(labels)
            n += len(labels)
        return total / n

    return {"train_epoch": reference}


# ============================================================================ the spec

EXERCISES = [
    Exercise(
        grade_id="ch05_build_vocab_test", functions=("build_vocab",), points=2,
        cases=(
            Case("min_freq 1, default specials", dict(seed=0, n=12, max_len=6, min_freq=1, specials=None, words=[
                "the", "movie", "is", "not", "good", "bad", "plot", "dull", "fun", "acting", "great", "a"])),
            Case("min_freq 2 with many ties", dict(seed=1, n=20, max_len=5, min_freq=2, specials=None, words=[
                "zebra", "yak", "apple", "mango", "kiwi", "fig", "date", "lime", "pear", "plum", "grape", "melon",
                "berry"]), edge="tokens whose count is exactly min_freq = 2, many of them tied"),
            Case("min_freq 3, extra special that occurs in the text",
                 dict(seed=2, n=30, max_len=7, min_freq=3, specials=["<pad>", "<unk>", "<cls>"],
                      words=["film", "<cls>", "was", "boring", "<unk>", "superb", "script", "x", "y", "z", "w"]),
                 edge="specials that also occur in the text, given out of sorted order"),
            Case("min_freq above every count",
                 dict(seed=3, n=4, max_len=3, min_freq=50, specials=None, words=["only", "specials", "remain"]),
                 edge="min_freq above every count: only the specials remain"),
            Case("ties between tokens that differ only in case",
                 dict(seed=4, n=0, max_len=1, min_freq=1, specials=None, words=["x"],
                      texts=[["b", "B", "a", "Zed", "A", "zed"], ["zed", "A", "a", "B", "b", "Zed"]]),
                 edge="a tie in count between tokens Python orders by case (uppercase first)"),
        ),
        probe=probe_build_vocab, judge=allclose(rtol=0, atol=0),
        mutants={
            "forgets <unk>": mutate("for s in specials:", "for s in specials[:1]:", hint=Hint(
                "漏掉了 <unk>：只加入了第一个特殊 token。", "<unk> is forgotten: only the first special token is added.")),
            "min_freq off by one (count > min_freq)": mutate("c >= min_freq", "c > min_freq",
                hint=Hint("min_freq 差一：恰好出现 min_freq 次的词也应收录。",
                    "min_freq is off by one: a token seen exactly min_freq times must be kept.")),
            "ties in first-seen order (Counter.most_common)": mutate("key=lambda t: (-counts[t], t)",
                                                                    "key=lambda t: -counts[t]",
                hint=Hint("频次相同的词按首次出现的顺序排列；规则要求按字符串顺序打破平局。",
                    "Equally frequent tokens stay in first-seen order; ties must be broken by the token string.")),
            "ties broken case-insensitively": mutate("key=lambda t: (-counts[t], t)",
                                                     "key=lambda t: (-counts[t], t.lower())",
                hint=Hint("平局按忽略大小写的顺序打破；应按字符串本身（区分大小写）比较。",
                    "Ties are broken case-insensitively; they are broken by the token string itself, case and all.")),
            "special tokens in the text added a second time": mutate("c >= min_freq and t not in vocab",
                                                                     "c >= min_freq",
                hint=Hint("文本中出现的特殊 token 又被加了一次，得到两个编号。",
                    "A special token that also occurs in the text is added a second time, with a second index.")),
            "specials sorted like the other tokens": mutate("for s in specials:", "for s in sorted(specials):",
                hint=Hint("特殊 token 被重新排序了；它们要按给定的顺序排在最前面。",
                    "The special tokens are sorted; they come first, in the order given.")),
        },
    ),
    Exercise(
        grade_id="ch05_collate_test", functions=("collate",), points=2,
        cases=(
            Case("lists, pad index 0", dict(seed=0, lengths=[3, 1, 5, 2], pad_index=0, as_tensor=False)),
            Case("tensors, pad index 1", dict(seed=1, lengths=[2, 6, 6, 1, 4], pad_index=1, as_tensor=True),
                 edge="1-d LongTensors, two sequences of the maximum length, pad_index = 1"),
            Case("pad index 7, longest sequence last", dict(seed=2, lengths=[1, 2, 3, 8], pad_index=7, as_tensor=False),
                 edge="a one-token sequence padded with 7 positions; the longest one last"),
            Case("batch of one", dict(seed=3, lengths=[4], pad_index=1, as_tensor=True), edge="B = 1: nothing to pad"),
        ),
        probe=probe_collate, judge=allclose(rtol=0, atol=0),
        mutants={
            "pads on the left": mutate("padded[i, :len(s)] = s", "padded[i, padded.shape[1] - len(s):] = s", hint=Hint(
                "在左侧做了 padding；这里要求右侧 padding。", "Sequences are padded on the left; padding goes on the right.")),
            "lengths measured after padding": mutate("return padded, lengths, labels",
                                                     "return padded, torch.full_like(lengths, padded.shape[1]), labels",
                hint=Hint("长度是 padding 之后的长度，而不是每条序列的真实长度。",
                    "The lengths are measured after padding instead of each sequence's real length.")),
            "pads with 0 whatever pad_index is": mutate("pad_index, dtype=torch.long)", "0, dtype=torch.long)",
                hint=Hint("总是用 0 填充，忽略了 pad_index。", "It pads with 0 whatever pad_index is.")),
            "labels left as integers": mutate("torch.tensor([float(y) for _, y in batch], dtype=torch.float32)",
                                              "torch.tensor([int(y) for _, y in batch])",
                hint=Hint("标签保留为整数；BCEWithLogitsLoss 需要 float32 标签。",
                    "The labels are left as integers; BCEWithLogitsLoss needs float32 labels.")),
        },
    ),
    Exercise(
        grade_id="ch05_last_real_hidden_test", functions=("last_real_hidden",), points=3,
        cases=(
            Case("unidirectional, one layer",
                 dict(seed=0, emb=5, hidden=4, layers=1, bidirectional=False, lengths=[3, 7, 1, 5], extra_pad=0)),
            Case("bidirectional, unsorted lengths",
                 dict(seed=1, emb=4, hidden=3, layers=1, bidirectional=True, lengths=[2, 6, 4, 6, 1], extra_pad=0),
                 edge="unsorted lengths with a tie (6, 6) and a length of 1"),
            Case("bidirectional, two layers, extra padding",
                 dict(seed=2, emb=6, hidden=5, layers=2, bidirectional=True, lengths=[5, 1, 3], extra_pad=2),
                 edge="T = longest length + 2: no sequence reaches the last position"),
            Case("unidirectional, two layers, ascending lengths",
                 dict(seed=3, emb=3, hidden=4, layers=2, bidirectional=False, lengths=[1, 2, 4, 8], extra_pad=1),
                 edge="two stacked layers, lengths already ascending"),
        ),
        probe=probe_last_real_hidden, judge=allclose(rtol=1e-4, atol=1e-5),
        mutants={
            "output[:, -1] of the padded batch": mutate(
                "packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)",
                "return lstm(embedded)[0][:, -1]",
                hint=Hint("取了 padding 后 batch 的最后一个位置，短序列拿到的是 padding 上的状态。",
                    "It takes the last position of the padded batch, so short sequences return a state computed over padding.")),
            "sorts by length and never restores the order": mutate(
                "pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)",
                "pack_padded_sequence(embedded[lengths.argsort(descending=True)],"
                " lengths.sort(descending=True).values.cpu(), batch_first=True)",
                hint=Hint("按长度排序后没有恢复原来的顺序，各行结果对不上原样本。",
                    "The batch is sorted by length and never put back, so the rows no longer match the examples.")),
            "forward direction only": mutate("return torch.cat([h_n[-2], h_n[-1]], dim=-1)", "return h_n[-2]",
                hint=Hint("只返回了前向方向的状态，漏了反向方向。",
                    "Only the forward direction's state is returned; the backward direction is missing.")),
            "output at position length-1 for both directions": mutate(
                "    _, (h_n, _) = lstm(packed)\n",
                "    out, _ = torch.nn.utils.rnn.pad_packed_sequence(lstm(packed)[0], batch_first=True)\n"
                "    return out[torch.arange(len(lengths)), lengths - 1]\n",
                hint=Hint("两个方向都取 length−1 位置的输出；反向方向的最终状态在位置 0。",
                    "Both directions are read at position length - 1; the backward direction ends at position 0.")),
            "first layer's state in a stacked LSTM": mutate({"h_n[-2], h_n[-1]": "h_n[0], h_n[1]",
                                                             "return h_n[-1]": "return h_n[0]"},
                hint=Hint("多层 LSTM 取了第一层的状态，而不是最顶层的。",
                    "In a stacked LSTM it returns the first layer's state instead of the top layer's.")),
        },
    ),
    Exercise(
        grade_id="ch05_accuracy_test", functions=("binary_accuracy", "multiclass_accuracy"), points=2,
        cases=(
            Case("[N] logits, [N] integer labels",
                 dict(seed=0, n=40, c=3, pos_rate=0.5, logit_shape="flat", label_shape="flat", label_dtype="long"),
                 edge="about a fifth of the logits exactly 0 (they predict 0)"),
            Case("[N, 1] logits, [N] float labels",
                 dict(seed=1, n=33, c=5, pos_rate=0.7, logit_shape="column", label_shape="flat", label_dtype="float"),
                 edge="logits of shape [N, 1]"),
            Case("[N] logits, [N, 1] float labels",
                 dict(seed=2, n=25, c=4, pos_rate=0.4, logit_shape="flat", label_shape="column", label_dtype="float"),
                 edge="labels of shape [N, 1] against [N] logits"),
            Case("[N, 1] logits, [N, 1] integer labels",
                 dict(seed=3, n=50, c=2, pos_rate=0.3, logit_shape="column", label_shape="column", label_dtype="long")),
            Case("tiny positive logits", dict(seed=4, n=40, c=3, pos_rate=0.6, logit_shape="flat", label_shape="flat",
                                              label_dtype="long", tiny=True),
                 edge="logits just above 0 (1e-9), where a float32 sigmoid is exactly 0.5"),
        ),
        probe=probe_accuracy, judge=allclose(rtol=1e-6, atol=1e-6, messages={
            "returns_floats": "both functions must return a Python float (use .item() or float(...))"}),
        mutants={
            "argmax over a single logit (always class 0)": mutate("preds = (logits.reshape(-1) > 0).long()",
                                                                  "preds = logits.reshape(len(logits), -1).argmax(1)",
                hint=Hint("对单个 logit 取 argmax，永远是类别 0；二分类应看 logit 的符号。",
                    "argmax over a single logit is always class 0; a binary prediction comes from the logit's sign.")),
            "sigmoid compared with 0 instead of 0.5": mutate("(logits.reshape(-1) > 0)",
                                                             "(torch.sigmoid(logits.reshape(-1)) > 0)",
                hint=Hint("sigmoid 之后和 0 比较，几乎全部预测为 1。",
                    "The sigmoid is compared with 0, so nearly everything is predicted positive.")),
            "sigmoid > 0.5 in float32 (tiny positive logits predict 0)": mutate(
                "(logits.reshape(-1) > 0)", "(torch.sigmoid(logits.reshape(-1)) > 0.5)",
                hint=Hint("在 float32 里比较 sigmoid > 0.5：极小的正 logit 经 sigmoid 后恰好是 0.5，被判为 0。",
                    "Comparing a float32 sigmoid with 0.5: a tiny positive logit rounds to exactly 0.5 and predicts 0.")),
            "[N, 1] labels broadcast against [N] predictions": mutate("preds == labels.reshape(-1).long()",
                                                                      "preds == labels.long()",
                hint=Hint("[N, 1] 的标签与 [N] 的预测广播成了 N×N 的比较。",
                    "[N, 1] labels broadcast against [N] predictions into an N by N comparison.")),
            "multi-class argmax over the batch dimension": mutate("logits.argmax(dim=-1)", "logits.argmax(0)[:1]",
                hint=Hint("多分类在 batch 维上取了 argmax，而不是在类别维上。",
                    "The multi-class argmax runs over the batch dimension instead of the classes.")),
            "a logit of exactly 0 predicts 1 (>= 0)": mutate("(logits.reshape(-1) > 0)", "(logits.reshape(-1) >= 0)",
                hint=Hint("logit 恰好为 0 时预测为 1；规则是严格大于 0 才预测为正。",
                    "A logit of exactly 0 predicts 1; only a strictly positive logit predicts positive.")),
            "returns 0-d tensors": mutate(".float().mean().item()", ".float().mean()", count=2,
                hint=Hint("返回的是 0 维张量，而不是 Python float。", "It returns 0-d tensors instead of Python floats.")),
        },
    ),
    Exercise(
        grade_id="ch05_train_epoch_test", functions=("train_epoch",), points=3,
        cases=(
            Case("SGD, model arrives in eval mode with stale gradients",
                 dict(seed=0, sizes=[5, 3, 4], max_len=6, optimizer="sgd", lr=0.5, stale_grads=True, start_eval=True),
                 edge="eval mode on arrival and stale gradients, both at once"),
            Case("Adam, train mode, stale gradients", dict(seed=1, sizes=[4, 4, 2, 6], max_len=5, optimizer="adam",
                                                           lr=0.05, stale_grads=True, start_eval=False),
                 edge="Adam (stateful) and batches of 2 to 6 examples"),
            Case("SGD, eval mode, no stale gradients",
                 dict(seed=2, sizes=[6, 2], max_len=7, optimizer="sgd", lr=0.3, stale_grads=False, start_eval=True),
                 edge="eval mode on arrival without stale gradients: only model.train() repairs it"),
        ),
        probe=probe_train_epoch, judge=allclose(rtol=1e-4, atol=1e-6, messages={
            "training_after": "the model must be left in training mode"}),
        mutants={
            "never clears gradients (no zero_grad)": mutate("        optimizer.zero_grad()\n", "", hint=Hint(
                "从不清零梯度，各 batch 的梯度不断累加。", "Gradients are never cleared, so they pile up across batches.")),
            "calls the model without lengths (reads output[:, -1] of the padding)": mutate("model(padded, lengths)",
                                                                                           "model(padded)",
                hint=Hint("调用模型时没有传 lengths，模型读到的是 padding 位置的输出。",
                    "The model is called without lengths, so it reads the output at the padding.")),
            "no model.train() (dropout stays off after an evaluation)": mutate("    model.train()\n", "",
                hint=Hint("没有调用 model.train()，评估之后 dropout 仍处于关闭状态。",
                    "model.train() is not called, so dropout stays off after an evaluation.")),
            "mean of batch losses instead of per-example mean": mutate({"total += loss.item() * len(labels)":
                                                                        "total += loss.item()",
                                                                        "n += len(labels)": "n += 1"},
                hint=Hint("对各 batch 的 loss 取平均，而不是按样本数加权的平均（最后一个 batch 往往更小）。",
                    "Batch losses are averaged instead of per example (the last batch is often smaller).")),
            "switches to eval mode at the end": mutate("    return total / n", "    model.eval()\n    return total / n",
                hint=Hint("结束时把模型切到了 eval 模式；训练后它应保持在训练模式。",
                    "The model is switched to eval mode at the end; it should be left in training mode.")),
        },
    ),
]

# ============================================================================ rule table and alternatives

R = Rule
RULES = {
    "ch05_build_vocab_test": (
        R("the `specials` come first, in the order given", ("min_freq 3, extra special that occurs in the text",),
          {"forgets <unk>": "tokens", "specials sorted like the other tokens": "tokens"}),
        R("whose total count over all texts is **at least** `min_freq`", ("min_freq 2 with many ties",),
          {"min_freq off by one (count > min_freq)": "tokens"}),
        R("for equal counts, alphabetically (Python's string order)", ("min_freq 2 with many ties",),
          {"ties in first-seen order (Counter.most_common)": "tokens"}),
        R("for equal counts, alphabetically (Python's string order)", ("ties between tokens that differ only in case",),
          {"ties broken case-insensitively": "tokens"}),
        R("a token that is also a special is not added a second time",
          ("min_freq 3, extra special that occurs in the text",),
          {"special tokens in the text added a second time": "tokens"}),
    ),
    "ch05_collate_test": (
        R("Pad every sequence on the **right**", ("lists, pad index 0", "pad index 7, longest sequence last"),
          {"pads on the left": "padded"}),
        R("keep the **original** lengths", ("lists, pad index 0", "pad index 7, longest sequence last"),
          {"lengths measured after padding": "lengths"}),
        R("positions after its end filled with `pad_index`", ("tensors, pad index 1",
                                                              "pad index 7, longest sequence last"),
          {"pads with 0 whatever pad_index is": "padded"}),
        R("`labels`: `torch.float32`", ("lists, pad index 0", "batch of one"), {"labels left as integers": "torch.float32"}),
    ),
    "ch05_last_real_hidden_test": (
        R("the final state of every sequence", ("unidirectional, one layer", "bidirectional, two layers, extra padding"),
          {"output[:, -1] of the padded batch": "hidden"}),
        R("**in the original batch order**", ("bidirectional, unsorted lengths",),
          {"sorts by length and never restores the order": "hidden"}),
        R("the concatenation `[forward final, backward final]`", ("bidirectional, unsorted lengths",),
          {"forward direction only": "shape", "output at position length-1 for both directions": "hidden"}),
        R("for the **last layer**", ("unidirectional, two layers, ascending lengths",),
          {"first layer's state in a stacked LSTM": "hidden"}),
    ),
    "ch05_accuracy_test": (
        R("`argmax` over a dimension of size 1 is always 0", ("[N, 1] logits, [N] float labels",),
          {"argmax over a single logit (always class 0)": "binary"}),
        R("Predict 1 iff the logit is `> 0`", ("[N] logits, [N] integer labels", "tiny positive logits"),
          {"sigmoid compared with 0 instead of 0.5": "binary"}),
        R("Predict 1 iff the logit is `> 0`", ("tiny positive logits",),
          {"sigmoid > 0.5 in float32 (tiny positive logits predict 0)": "binary"}),
        R("(a logit of exactly 0 predicts 0)", ("[N] logits, [N] integer labels",),
          {"a logit of exactly 0 predicts 1 (>= 0)": "binary"}),
        R("`labels` of shape `[N]` or `[N, 1]`", ("[N] logits, [N, 1] float labels",),
          {"[N, 1] labels broadcast against [N] predictions": "binary"}),
        R("the prediction is the `argmax` over the class dimension", ("[N] logits, [N] integer labels",
                                                                       "[N, 1] logits, [N] float labels"),
          {"multi-class argmax over the batch dimension": "multiclass"}),
        R("each returning a Python `float`", ("[N] logits, [N] integer labels", "tiny positive logits"),
          {"returns 0-d tensors": "Python float"}),
    ),
    "ch05_train_epoch_test": (
        R("when gradients from an earlier step are still stored in the parameters",
          ("SGD, model arrives in eval mode with stale gradients",), {"never clears gradients (no zero_grad)": "loss"}),
        R("feeds the model the lengths", ("SGD, eval mode, no stale gradients",),
          {"calls the model without lengths (reads output[:, -1] of the padding)": "loss"}),
        R("dropout must be active while training", ("SGD, eval mode, no stale gradients",),
          {"no model.train() (dropout stays off after an evaluation)": "loss"}),
        R("each batch's loss weighted by its size", ("Adam, train mode, stale gradients",),
          {"mean of batch losses instead of per-example mean": "loss"}),
        R("checks that the model is left in training mode", ("Adam, train mode, stale gradients",),
          {"switches to eval mode at the end": "training mode"}),
    ),
}

ALTERNATIVES = {
    "ch05_build_vocab_test": {"one sorted list, itertools.count": """
        import itertools

        def build_vocab(tokenized_texts, min_freq=1, specials=("<pad>", "<unk>")):
            counts = {}
            for text in tokenized_texts:
                for tok in text:
                    counts[tok] = counts.get(tok, 0) + 1
            ordered = list(dict.fromkeys(specials))
            ordered += sorted((t for t in counts if counts[t] >= min_freq and t not in ordered),
                              key=lambda t: (-counts[t], t))
            return dict(zip(ordered, itertools.count()))
    """},
    "ch05_collate_test": {"pad_sequence": """
        from torch.nn.utils.rnn import pad_sequence

        def collate(batch, pad_index=0):
            seqs = [torch.tensor(ids) if not torch.is_tensor(ids) else ids for ids, _ in batch]
            padded = pad_sequence(seqs, batch_first=True, padding_value=pad_index).long()
            lengths = torch.tensor([s.numel() for s in seqs])
            return padded, lengths, torch.tensor([y for _, y in batch]).float()
    """},
    "ch05_last_real_hidden_test": {"each sequence run alone, no packing": """
        def last_real_hidden(lstm, embedded, lengths):
            rows = []
            for i, n in enumerate(lengths.tolist()):
                _, (h, _) = lstm(embedded[i:i + 1, :n])
                rows.append(torch.cat([h[-2, 0], h[-1, 0]]) if lstm.bidirectional else h[-1, 0])
            return torch.stack(rows)
    """},
    "ch05_accuracy_test": {"numpy comparisons": """
        def binary_accuracy(logits, labels):
            pred = logits.detach().numpy().ravel() > 0
            return float((pred == (labels.numpy().ravel() > 0.5)).mean())

        def multiclass_accuracy(logits, labels):
            return float((logits.detach().numpy().argmax(axis=1) == labels.numpy()).mean())
    """},
    "ch05_train_epoch_test": {"losses summed as tensors, set_to_none=False": """
        def train_epoch(model, batches, optimizer, loss_fn):
            model.train(True)
            weighted, count = torch.zeros(()), 0
            for padded, lengths, labels in batches:
                optimizer.zero_grad(set_to_none=False)
                loss = loss_fn(model(padded, lengths=lengths), labels.to(torch.float32))
                loss.backward()
                optimizer.step()
                weighted += loss.detach() * labels.shape[0]
                count += labels.shape[0]
            return float(weighted / count)
    """},
}


# Library implementations (or independent references) the exercises imitate (used by the test suite).
ORACLES = {
    "ch05_build_vocab_test": oracle_build_vocab,
    "ch05_collate_test": oracle_collate,
    "ch05_last_real_hidden_test": oracle_last_real_hidden,
    "ch05_accuracy_test": oracle_accuracy,
    "ch05_train_epoch_test": oracle_train_epoch,
}

CHAPTER = Chapter("ch05_sentiment", "ch05_exercises.ipynb", EXERCISES, rules=RULES, alternatives=ALTERNATIVES, oracles=ORACLES)
