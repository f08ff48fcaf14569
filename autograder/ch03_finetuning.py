"""Trusted spec of Chapter 3's graded cells (solutions/ch03_finetuning/ch03_exercises.ipynb).

Probes (self-contained: they run in the sandbox) build the real all-MiniLM-L6-v2 config with 2-3 layers and a seeded
random init; one pooling case runs the pretrained encoder. Oracles (trusted side) are the libraries the exercises
imitate: peft's parameter count, LoRA ``Linear`` layer and ``get_peft_model``, sentence-transformers' mean pooling.
"""
from llmprep.grading.spec import Case, Chapter, Exercise, Hint, Rule, allclose, mutate


# ============================================================================ 1 freeze + count

def probe_freeze_count(ns, params):
    import torch
    import torch.nn as nn

    freeze, count = ns["freeze_all_but_head"], ns["count_parameters"]
    torch.manual_seed(params["seed"])
    kind = params["model"]
    if kind in ("bert_cls", "bert_lora"):
        from transformers import AutoConfig, BertForSequenceClassification

        from llmprep.assets import minilm_dir

        cfg = AutoConfig.from_pretrained(str(minilm_dir()), num_hidden_layers=params["layers"], num_labels=2)
        model = BertForSequenceClassification(cfg)
        if kind == "bert_lora":  # a peft-wrapped model: only the LoRA matrices (and the head) train
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"],
                                                     modules_to_save=["classifier"]))
    else:  # a toy model with tied weights, a bias-free layer and look-alike names
        class Toy(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = nn.Embedding(50, 8)
                self.body = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 8, bias=False))
                self.decoder = nn.Linear(8, 50, bias=False)
                self.decoder.weight = self.embed.weight  # tied: one parameter, counted once
                self.header = nn.Linear(8, 3)  # not "head": a prefix match must stop at a dot
                self.head = nn.Linear(8, 2)

        model = Toy()
    if params.get("freeze_first"):
        for p in model.parameters():
            p.requires_grad_(False)
    out = {}
    if params["heads"] is not None:
        freeze(model, list(params["heads"]))
        names = [n for n, _ in model.named_parameters()]
        out["requires_grad"] = [bool(p.requires_grad) for _, p in model.named_parameters()]
        out["n_params"] = len(names)
    trainable, total = count(model)
    out["trainable"] = int(trainable)
    out["total"] = int(total)
    return out


def oracle_freeze_count():
    from peft import PeftModel

    nb_trainable = PeftModel.get_nb_trainable_parameters  # peft's own counter (iterates named_parameters)

    def count_parameters(model):
        return nb_trainable(model)

    def freeze_all_but_head(model, head_names):
        for name, p in model.named_parameters():
            p.requires_grad_(any(name == h or name.startswith(h + ".") for h in head_names))
        return model

    return {"count_parameters": count_parameters, "freeze_all_but_head": freeze_all_but_head}


# ============================================================================ 2 LoRALinear

def probe_lora_linear(ns, params):
    import torch
    import torch.nn as nn

    cls = ns["LoRALinear"]
    torch.manual_seed(params["seed"])
    fin, fout, r, alpha = params["fin"], params["fout"], params["r"], params["alpha"]
    base = nn.Linear(fin, fout, bias=params["bias"])
    w0 = base.weight.detach().clone()
    x = torch.randn(*params["batch"], fin)
    ref0 = base(x).detach()
    layer = cls(base, r, alpha, dropout=params["dropout"])
    layer.eval()
    out = {}
    with torch.no_grad():
        y0 = layer(x)
    out["B_init_is_zero"] = bool(torch.count_nonzero(layer.lora_B.detach()) == 0)
    out["init_minus_base"] = (y0 - ref0).abs().max()
    out["A_init_nonzero"] = bool(torch.count_nonzero(layer.lora_A.detach()) > 0)
    out["A_shape"] = list(layer.lora_A.shape)
    out["B_shape"] = list(layer.lora_B.shape)
    out["scaling"] = float(layer.scaling)
    out["base_frozen"] = [bool(not p.requires_grad) for p in base.parameters()]
    out["adapters_trainable"] = [bool(layer.lora_A.requires_grad), bool(layer.lora_B.requires_grad)]
    out["n_trainable"] = sum(p.numel() for p in layer.parameters() if p.requires_grad)
    g = torch.Generator().manual_seed(params["seed"] + 100)
    with torch.no_grad():
        layer.lora_A.copy_(torch.randn(r, fin, generator=g) * 0.3)
        layer.lora_B.copy_(torch.randn(fout, r, generator=g) * 0.3)
    y = layer(x)
    y.square().sum().backward()
    out["y"] = y.detach()
    out["grad_A"] = layer.lora_A.grad.detach().clone()
    out["grad_B"] = layer.lora_B.grad.detach().clone()
    # In train mode, dropout acts on the input of the LoRA branch only, with the given probability.
    layer.train()
    out["dropout_p"] = float(layer.dropout.p)
    torch.manual_seed(params["seed"] + 7)
    with torch.no_grad():
        y_train = layer(x)
        saved_B = layer.lora_B.detach().clone()
        layer.lora_B.zero_()
        out["base_not_dropped"] = (layer(x) - base(x)).abs().max()
        layer.lora_B.copy_(saved_B)
    out["y_train"] = y_train
    layer.eval()
    with torch.no_grad():
        layer.merge()
        out["merged_weight"] = base.weight.detach().clone()
        out["y_merged"] = layer(x)
        out["base_after_merge"] = base(x)
        layer.unmerge()
        out["unmerged_weight_minus_w0"] = (base.weight - w0).abs().max()
        out["y_unmerged"] = layer(x)
    return out


def oracle_lora_linear():
    import torch.nn as nn
    from peft import LoraConfig
    from peft.tuners.lora.layer import Linear as PeftLoraLinear

    class LoRALinear(nn.Module):
        """The probe's interface on top of peft's own LoRA layer (same A and B copied in by the probe)."""

        def __init__(self, base, r, alpha, dropout=0.0):
            super().__init__()
            for p in base.parameters():
                p.requires_grad_(False)
            cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout)
            self.inner = PeftLoraLinear(base, "default", config=cfg, r=r, lora_alpha=alpha, lora_dropout=dropout)

        lora_A = property(lambda self: self.inner.lora_A["default"].weight)
        lora_B = property(lambda self: self.inner.lora_B["default"].weight)
        scaling = property(lambda self: self.inner.scaling["default"])
        # peft uses nn.Identity for dropout 0
        dropout = property(lambda self: getattr(self.inner.lora_dropout["default"], "p", None) is not None
                           and self.inner.lora_dropout["default"] or nn.Dropout(0.0))

        def forward(self, x):
            return self.inner(x)

        def merge(self):
            self.inner.merge()

        def unmerge(self):
            self.inner.unmerge()

    return {"LoRALinear": LoRALinear}


# ============================================================================ 3 inject LoRA

def probe_inject_lora(ns, params):
    import torch
    from transformers import AutoConfig, BertModel

    from llmprep.assets import minilm_dir

    fn = ns["inject_lora"]
    torch.manual_seed(params["seed"])
    cfg = AutoConfig.from_pretrained(str(minilm_dir()), num_hidden_layers=params["layers"])
    model = BertModel(cfg).eval()
    ids = torch.randint(1000, 2000, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).last_hidden_state
    model = fn(model, params["r"], params["alpha"], targets=tuple(params["targets"]))
    model.eval()
    out = model(input_ids=ids, attention_mask=mask).last_hidden_state
    out.sum().backward()

    def where(name):  # the adapted module's path, whatever the wrapper calls things inside it
        name = name.removeprefix("base_model.model.")
        return name.split(".lora_")[0] if ".lora_" in name else name

    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    adapted = sorted({where(n) for n, _ in trainable})
    return {
        "adapted_modules": "\n".join(adapted),
        "n_adapted": len(adapted),
        "trainable": sum(p.numel() for _, p in trainable),
        "total": sum(p.numel() for p in model.parameters()),
        "grads_only_on_trainable": all((p.grad is not None) == p.requires_grad for p in model.parameters()),
        "init_output_change": (out.detach() - before).abs().max(),
    }


def oracle_inject_lora():
    from peft import LoraConfig, get_peft_model

    def inject_lora(model, r, alpha, targets=("query", "value")):
        return get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0,
                                                target_modules=list(targets)))

    return {"inject_lora": inject_lora}


# ============================================================================ 4 masked mean pooling

def probe_mean_pool(ns, params):
    import torch

    fn = ns["masked_mean_pool"]
    if params.get("real_model"):
        from transformers import AutoModel, AutoTokenizer

        from llmprep.assets import minilm_dir

        tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
        model = AutoModel.from_pretrained(str(minilm_dir())).eval()
        batch = tok(params["sentences"], padding=True, truncation=True, max_length=64, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        pooled = fn(hidden, batch["attention_mask"])
        emb = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return {"embedding": emb, "cosine": emb @ emb.T}
    g = torch.Generator().manual_seed(params["seed"])
    b, t, h = params["shape"]
    dtype = getattr(torch, params["dtype"])
    hidden = (torch.randn(b, t, h, generator=g) * 3).to(dtype)
    lengths = params["lengths"]
    mask = torch.zeros(b, t, dtype=torch.long)
    for i, n in enumerate(lengths):
        if params.get("left_padded"):
            mask[i, t - n:] = 1
        else:
            mask[i, :n] = 1
    if params.get("bool_mask"):
        mask = mask.bool()
    hidden[mask == 0] = 1e3  # padded positions hold large junk: they must not leak in
    snapshot, mask_snapshot = hidden.clone(), mask.clone()
    pooled = fn(hidden, mask)
    untouched = torch.equal(hidden, snapshot) and torch.equal(mask, mask_snapshot)
    return {"pooled": pooled, "dtype_kept": pooled.dtype == dtype, "inputs_untouched": bool(untouched)}


def oracle_mean_pool():
    import torch

    def mean_pooling(token_embeddings, attention_mask):
        # sentence-transformers' Pooling(pooling_mode_mean_tokens=True), as its model card writes it
        input_mask_expanded = attention_mask.unsqueeze(-1).expand(token_embeddings.size()).to(token_embeddings.dtype)
        return torch.sum(token_embeddings * input_mask_expanded, 1) / torch.clamp(input_mask_expanded.sum(1), min=1e-9)

    return {"masked_mean_pool": mean_pooling}


# ============================================================================ 5 layer-wise LR decay

def probe_llrd(ns, params):
    import torch
    from transformers import AutoConfig, BertForSequenceClassification, BertModel

    from llmprep.assets import minilm_dir

    fn = ns["layerwise_lr_groups"]
    torch.manual_seed(params["seed"])
    cfg = AutoConfig.from_pretrained(str(minilm_dir()), num_hidden_layers=params["layers"], num_labels=3,
                                     **params.get("config", {}))
    model = BertForSequenceClassification(cfg) if params["classifier"] else BertModel(cfg)
    for name, p in model.named_parameters():
        if any(name.startswith(prefix) for prefix in params["frozen"]):
            p.requires_grad_(False)
    groups = fn(model, params["base_lr"], params["decay"], params["weight_decay"])
    groups = list(groups)
    seen = {}
    for grp in groups:
        if set(grp) != {"params", "lr", "weight_decay"}:
            raise ValueError(f"a group must have exactly the keys params, lr, weight_decay; got {sorted(grp)}")
        for p in grp["params"]:
            seen.setdefault(id(p), []).append((float(grp["lr"]), float(grp["weight_decay"])))
    names = [n for n, _ in model.named_parameters()]
    lr, wd, times = [], [], []
    for _, p in model.named_parameters():
        hits = seen.get(id(p), [])
        times.append(len(hits))
        lr.append(hits[0][0] if hits else -1.0)
        wd.append(hits[0][1] if hits else -1.0)
    torch.optim.AdamW(groups, lr=123.0)  # the groups must be accepted as they are
    return {"names": "\n".join(names), "lr": lr, "weight_decay": wd, "times_listed": times,
            "n_groups_nonempty": int(all(len(list(g["params"])) > 0 for g in groups))}


# ============================================================================ the spec

_MINI = {"model": "bert_cls", "layers": 2}

# Mutants are edits of the solution's own functions (read from the solution notebook); snippets used more than once:
HEAD_TEST = 'any(name == h or name.startswith(h + ".") for h in head_names)'
SUMMED = "(last_hidden_state * mask).sum(dim=1)"
COUNT = "mask.sum(dim=1).clamp(min=1e-9)"

EXERCISES = [
    Exercise(
        grade_id="ch03_freeze_count_test", functions=("freeze_all_but_head", "count_parameters"), points=2,
        cases=(
            Case("BERT classifier, head only", dict(_MINI, seed=0, heads=["classifier"])),
            Case("BERT classifier, head and pooler", dict(_MINI, seed=1, heads=["classifier", "bert.pooler"])),
            Case("everything frozen beforehand, head unfrozen", dict(_MINI, seed=2, heads=["classifier"],
                                                                       freeze_first=True),
                 edge="every parameter frozen before the call"),
            Case("tied weights and look-alike names", dict(model="toy", seed=3, heads=["head", "body.1"]),
                 edge="a head name that is a prefix of another module's name"),
            Case("a head name that is a parameter's own name", dict(model="toy", seed=5, heads=["head.bias", "body.0"]),
                 edge="a head name equal to a parameter name (no dot after it)"),
            Case("count a peft-wrapped model", dict(model="bert_lora", layers=2, seed=4, heads=None)),
            Case("no head names (everything frozen)", dict(model="toy", seed=6, heads=[]),
                 edge="an empty head list: trainable = 0"),
        ),
        probe=probe_freeze_count, judge=allclose(rtol=0, atol=0),
        mutants={
            "counts frozen parameters as trainable": mutate("        if p.requires_grad:\n            trainable",
                                                            "        trainable",
                hint=Hint("把冻结的参数也算成了可训练参数；只有 requires_grad 为 True 的才算。",
                    "Frozen parameters are counted as trainable; only those with requires_grad count.")),
            "forgets the biases": mutate("    for p in model.parameters():\n",
                                         "    for p in [p for n, p in model.named_parameters() if not n.endswith('bias')]:\n",
                hint=Hint("计数时漏掉了 bias 参数。", "The biases are left out of the count.")),
            "freezes the head too": mutate(HEAD_TEST, "False",
                hint=Hint("连分类头也冻结了，模型没有任何可训练参数。", "The head is frozen too, so nothing is left to train.")),
            "head matched as a bare prefix": mutate('name == h or name.startswith(h + ".")', "name.startswith(h)",
                hint=Hint("头的名字被当作裸前缀匹配：classifier 也会匹配到 classifier2 之类的其他模块。",
                    "Head names are matched as bare prefixes, so classifier also matches another module like classifier2.")),
            "a head name equal to a parameter's own name not matched": mutate('name == h or name.startswith(h + ".")',
                                                                              'name.startswith(h + ".")',
                hint=Hint("头的名字恰好是某个参数的完整名字时没有匹配上（只匹配了子模块前缀）。",
                    "A head name that is a parameter's full name is not matched; only module prefixes are.")),
            "only unfreezes the head (leaves the rest as it was)": mutate(
                f"        p.requires_grad_({HEAD_TEST})", f"        if {HEAD_TEST}:\n            p.requires_grad_(True)",
                hint=Hint("只解冻了头部，其他参数保持原状而没有被冻结。",
                    "Only the head is unfrozen; the other parameters are left as they were instead of being frozen.")),
            "counts tied weights twice": mutate("for p in model.parameters():",
                                                "for _, p in model.named_parameters(remove_duplicate=False):",
                hint=Hint("共享（tied）的权重被数了两次；同一个参数只算一次。",
                    "Tied weights are counted twice; a shared parameter counts once.")),
        },
    ),
    Exercise(
        grade_id="ch03_lora_linear_test", functions=("LoRALinear",), points=3,
        cases=(
            Case("r=4, alpha=8, with bias",
                 dict(seed=0, fin=12, fout=10, r=4, alpha=8, bias=True, dropout=0.0, batch=[5])),
            Case("r=1, alpha=1, no bias, 3-d input",
                 dict(seed=1, fin=7, fout=9, r=1, alpha=1, bias=False, dropout=0.0, batch=[2, 3]),
                 edge="r = 1, a base without bias, two leading dimensions"),
            Case("r=8, alpha=32, dropout 0.3",
                 dict(seed=2, fin=16, fout=6, r=8, alpha=32, bias=True, dropout=0.3, batch=[4])),
            Case("dropout 0.5 in train mode",
                 dict(seed=4, fin=9, fout=7, r=3, alpha=6, bias=True, dropout=0.5, batch=[6]),
                 edge="train mode with dropout 0.5: half the LoRA inputs dropped"),
            Case("r larger than alpha (scaling 0.25)",
                 dict(seed=3, fin=5, fout=5, r=8, alpha=2, bias=True, dropout=0.0, batch=[3]),
                 edge="alpha / r below 1 (integer division gives 0)"),
        ),
        probe=probe_lora_linear, judge=allclose(rtol=1e-5, atol=1e-5, messages={
            "B_init_is_zero": "lora_B is not all zeros at initialisation",
            "A_init_nonzero": "lora_A is all zeros at initialisation (it must be random)",
            "base_frozen": "the parameters of the base layer you were given are still trainable",
            "adapters_trainable": "lora_A and lora_B must both be trainable",
            "dropout_p": "self.dropout does not have the probability `dropout`",
            "base_not_dropped": "in train mode, dropout changes the base layer's output "
                                "(apply it to the LoRA branch only)",
        }),
        mutants={
            "B not zero-initialised": mutate("torch.zeros(base.out_features, r)", "torch.randn(base.out_features, r) / r",
                hint=Hint("B 没有初始化为 0，加了 LoRA 的模型在第 0 步就不再等于预训练模型。",
                    "B is not zero-initialised, so at step 0 the adapted model no longer equals the pretrained one.")),
            "scaling r/alpha": mutate("self.scaling = alpha / r", "self.scaling = r / alpha", hint=Hint(
                "缩放系数写反了，用了 r/α 而不是 α/r。", "The scaling is upside down: r over alpha instead of alpha over r.")),
            "merge without scaling": mutate("(self.lora_B @ self.lora_A) * self.scaling", "(self.lora_B @ self.lora_A)",
                                            count=2,
                hint=Hint("merge 时没有乘缩放系数，合并后的输出和合并前不同。",
                    "merge leaves out the scaling, so the merged output differs from the unmerged one.")),
            "base weights left trainable": mutate("        for p in base.parameters():\n            p.requires_grad_(False)\n",
                                                  "",
                hint=Hint("base 层的参数没有冻结，仍然可训练。", "The base layer's parameters are not frozen.")),
            "adds the update again after merging": mutate("        if self.merged:\n            return y\n", "",
                hint=Hint("merge 之后 forward 仍然再加一次 LoRA 分支，更新被算了两次。",
                    "After merging, forward still adds the LoRA branch, so the update counts twice.")),
            "dropout on the LoRA output (wrong term)": mutate("(self.dropout(x) @ self.lora_A.T @ self.lora_B.T)",
                                                              "self.dropout(x @ self.lora_A.T @ self.lora_B.T)",
                hint=Hint("dropout 作用在 LoRA 分支的输出上，而不是它的输入 x 上。",
                    "Dropout is applied to the LoRA branch's output instead of its input.")),
            "dropout probability hard-coded to 0.1": mutate("nn.Dropout(dropout)", "nn.Dropout(0.1)",
                hint=Hint("dropout 概率被写死为 0.1，dropout 参数被忽略。",
                    "The dropout probability is hard-coded to 0.1; the dropout argument is ignored.")),
            "dropout on the input of the base layer too": mutate(
                "return y + (self.dropout(x) @", "x = self.dropout(x)\n        return self.base(x) + (x @",
                hint=Hint("dropout 也作用到了 base 层的输入上；它只该用于 LoRA 分支。",
                    "Dropout is applied to the base layer's input too; it belongs to the LoRA branch only.")),
            "copies the base layer": mutate("        self.base = base\n        for p in base.parameters():",
                                            "        import copy\n        self.base = copy.deepcopy(base)\n"
                                            "        for p in self.base.parameters():",
                hint=Hint("复制了 base 层而不是保留原对象，merge 改的是副本，外部的层没有变。",
                    "The base layer is copied instead of kept, so merge changes a copy and the caller's layer is untouched.")),
        },
    ),
    Exercise(
        grade_id="ch03_inject_lora_test", functions=("inject_lora",), points=3,
        cases=(
            Case("query and value, 2 layers, r=8", dict(seed=0, layers=2, r=8, alpha=16, targets=["query", "value"])),
            Case("value only, 3 layers, r=2", dict(seed=1, layers=3, r=2, alpha=4, targets=["value"])),
            Case("query, key and value, 2 layers, r=4",
                 dict(seed=2, layers=2, r=4, alpha=4, targets=["query", "key", "value"])),
            Case("dense layers everywhere (attention output, MLP, pooler)",
                 dict(seed=3, layers=2, r=2, alpha=8, targets=["dense"]),
                 edge="targets outside the attention projections"),
        ),
        probe=probe_inject_lora, judge=allclose(rtol=0, atol=1e-5),
        mutants={
            "also adapts the key projection": mutate("if name in targets and", 'if name in (*targets, "key") and',
                hint=Hint("也给 key 投影加了 LoRA；只替换名字在 targets 中的层。",
                    "The key projection is adapted too; only layers named in targets are replaced.")),
            "adapts only the first layer": mutate("for parent, name in found:", "for parent, name in found[:len(targets)]:",
                hint=Hint("只替换了第一层的投影；每一层中名字匹配的 Linear 都要替换。",
                    "Only the first layer's projections are replaced; every layer's matching Linear must be.")),
            "forgets to freeze the base model": mutate("    for p in model.parameters():\n        p.requires_grad_(False)\n",
                                                       "",
                hint=Hint("忘了冻结基础模型，所有原始参数仍然可训练。",
                    "The base model is not frozen, so all original parameters still train.")),
            "only looks inside the attention blocks": mutate(
                "for _, parent in model.named_modules()",
                "for _, parent in [(None, m) for layer in model.encoder.layer for m in layer.attention.modules()]",
                hint=Hint("只在注意力块里查找；名字在 targets 中的 Linear 可能在模型的任何位置。",
                    "It only looks inside attention blocks; a Linear named in targets may sit anywhere in the model.")),
        },
    ),
    Exercise(
        grade_id="ch03_mean_pool_test", functions=("masked_mean_pool",), points=2,
        cases=(
            Case("ragged lengths", dict(seed=0, shape=[4, 7, 5], lengths=[7, 3, 1, 5], dtype="float32")),
            Case("a row that is all padding", dict(seed=1, shape=[3, 4, 6], lengths=[4, 0, 2], dtype="float32"),
                 edge="a row with no tokens (0 / 1e-9)"),
            Case("bool mask, float64", dict(seed=2, shape=[2, 5, 3], lengths=[2, 5], dtype="float64", bool_mask=True),
                 edge="the other allowed dtypes: bool mask, float64 states"),
            Case("left-padded masks",
                 dict(seed=3, shape=[3, 6, 4], lengths=[6, 2, 4], dtype="float32", left_padded=True),
                 edge="left padding: the real tokens are the last ones"),
            Case("real MiniLM, padded batch", {"real_model": True, "sentences": [
                "A gripping, beautifully acted film.", "Dull.",
                "The plot wanders for two hours and never arrives anywhere worth the trip.",
                "Not bad at all, honestly."]}),
        ),
        probe=probe_mean_pool, judge=allclose(rtol=1e-5, atol=1e-5, messages={
            "dtype_kept": "the result does not have the dtype of last_hidden_state"}),
        mutants={
            "padding not masked": mutate({SUMMED: "last_hidden_state.sum(dim=1)", COUNT: "last_hidden_state.shape[1]"},
                hint=Hint("padding 没有被屏蔽，被平均进了句向量。",
                    "Padding is not masked out, so it is averaged into the sentence vector.")),
            "divides by the sequence length": mutate(COUNT, "last_hidden_state.shape[1]",
                hint=Hint("除以了整个序列长度，而不是真实 token 的个数。",
                    "It divides by the sequence length instead of the number of real tokens.")),
            "no clamp on the token count": mutate(".clamp(min=1e-9)", "",
                hint=Hint("token 数没有下限保护，全是 padding 的行得到 0/0 = NaN。",
                    "The token count is not clamped, so a row of padding only gives 0/0 = NaN.")),
            "assumes right padding (first n tokens)": mutate(
                SUMMED, "torch.stack([last_hidden_state[i, :int(n)].sum(0) for i, n in enumerate(mask.sum(dim=1).flatten())])",
                hint=Hint("假设是右侧 padding（取前 n 个 token）；padding 可能在左侧或任意位置。",
                    "It assumes right padding (the first n tokens); the mask may mark any positions.")),
            "zeroes the padding in place": mutate(f"    summed = {SUMMED}",
                                                  "    last_hidden_state[attention_mask == 0] = 0\n"
                                                  "    summed = last_hidden_state.sum(dim=1)", hint=Hint(
                "原地把输入中的 padding 置零，修改了输入张量。", "The padding is zeroed in place, modifying the input tensor.")),
            "returns float32 whatever the input dtype": mutate(
                "mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)",
                "mask = attention_mask.unsqueeze(-1).float()\n    last_hidden_state = last_hidden_state.float()",
                hint=Hint("无论输入是什么 dtype 都返回 float32；结果应保持输入的 dtype。",
                    "It returns float32 whatever the input dtype; the result must keep the input's dtype.")),
        },
    ),
    Exercise(
        grade_id="ch03_llrd_test", functions=("layerwise_lr_groups",), points=3,
        cases=(
            Case("BertModel, 2 layers",
                 dict(seed=0, layers=2, classifier=False, frozen=[], base_lr=1e-3, decay=0.8, weight_decay=0.01)),
            Case("classifier on 3 layers",
                 dict(seed=1, layers=3, classifier=True, frozen=[], base_lr=2e-5, decay=0.9, weight_decay=0.05)),
            Case("frozen embeddings are left out", dict(seed=2, layers=2, classifier=True, frozen=["bert.embeddings."],
                                                        base_lr=5e-4, decay=0.5, weight_decay=0.1),
                 edge="a whole block frozen: its parameters belong to no group"),
            Case("decay 1.0 is plain AdamW",
                 dict(seed=3, layers=2, classifier=False, frozen=[], base_lr=1e-4, decay=1.0, weight_decay=0.0),
                 edge="decay = 1 and weight_decay = 0: every group has the same settings"),
            Case("12 layers, a narrow encoder",
                 dict(seed=4, layers=12, classifier=True, frozen=[], base_lr=1e-3, decay=0.9, weight_decay=0.01,
                      config=dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=200)),
                 edge="layer indices of two digits (encoder.layer.10, .11)"),
        ),
        probe=probe_llrd, judge=allclose(rtol=1e-9, atol=0),
        mutants={
            "decay exponent reversed": mutate("decay ** (L - 1 - int(layer.group(1)))", "decay ** (int(layer.group(1)) + 1)",
                hint=Hint("衰减指数方向反了：底层的学习率应更小，顶层更接近 base_lr。",
                    "The decay exponent is reversed: lower layers should get the smaller learning rates.")),
            "LayerNorm weights decayed": mutate(" or id(p) in no_decay", "",
                hint=Hint("LayerNorm 的权重也做了 weight decay；它们和 bias 一样应为 0。",
                    "LayerNorm weights get weight decay; like biases they take 0.")),
            "embeddings treated as the top layer": mutate("lr = base_lr * decay ** L\n", "lr = base_lr\n",
                hint=Hint("embedding 用了 base_lr，被当作最顶层；它在最底层，衰减最多。",
                    "The embeddings get base_lr as if they were on top; they sit at the bottom and decay the most.")),
            "frozen parameters included": mutate("        if not p.requires_grad:\n            continue\n", "",
                hint=Hint("冻结的参数也被放进了参数组。", "Frozen parameters are included in the groups.")),
            "one-digit layer index (layer 10 read as 1)": mutate(r"encoder\.layer\.(\d+)\.", r"encoder\.layer\.(\d)",
                hint=Hint("层号只读了一位数字，第 10 层被读成了第 1 层。",
                    "The layer index is read as one digit, so layer 10 is read as layer 1.")),
        },
    ),
]

# ============================================================================ rule table and alternatives

R = Rule
RULES = {
    "ch03_freeze_count_test": (
        R("set `p.requires_grad = True` if `name` equals a head name", ("BERT classifier, head only",
                                                                        "everything frozen beforehand, head unfrozen"),
          {"freezes the head too": "requires_grad"}),
        R("**not** `header.weight`", ("tied weights and look-alike names",),
          {"head matched as a bare prefix": "requires_grad"}),
        R("if `name` equals a head name", ("a head name that is a parameter's own name",),
          {"a head name equal to a parameter's own name not matched": "requires_grad"}),
        R("and `False` otherwise — whatever it was before", ("BERT classifier, head only",
                                                             "no head names (everything frozen)"),
          {"only unfreezes the head (leaves the rest as it was)": "requires_grad"}),
        R("a parameter is trainable when `requires_grad` is True", ("count a peft-wrapped model",
                                                                     "no head names (everything frozen)"),
          {"counts frozen parameters as trainable": "trainable"}),
        R("numbers of scalar entries (`numel`) over `model.parameters()`",
          ("BERT classifier, head only", "tied weights and look-alike names"), {"forgets the biases": "trainable"}),
        R("so tied weights count once", ("tied weights and look-alike names",), {"counts tied weights twice": "total"}),
    ),
    "ch03_lora_linear_test": (
        R("$B=0$ at the start", ("r=4, alpha=8, with bias", "r=1, alpha=1, no bias, 3-d input"),
          {"B not zero-initialised": "lora_B"}),
        R("`self.scaling = alpha / r`", ("r=4, alpha=8, with bias", "r larger than alpha (scaling 0.25)"),
          {"scaling r/alpha": "scaling"}),
        R("freeze all parameters of `base`", ("r=4, alpha=8, with bias", "r=1, alpha=1, no bias, 3-d input"),
          {"base weights left trainable": "base layer"}),
        R("keep that same object as `self.base`; do not copy it",
          ("r=4, alpha=8, with bias", "r=1, alpha=1, no bias, 3-d input"), {"copies the base layer": "base layer"}),
        R("`merge()`: add `B @ A * scaling` to `base.weight` in place", ("r=4, alpha=8, with bias",
                                                                          "r larger than alpha (scaling 0.25)"),
          {"merge without scaling": "merged_weight"}),
        R("or just `base(x)` while merged", ("r=4, alpha=8, with bias", "r=1, alpha=1, no bias, 3-d input"),
          {"adds the update again after merging": "y_merged"}),
        R("an `nn.Dropout` with probability `dropout`", ("dropout 0.5 in train mode",
                                                         "r=1, alpha=1, no bias, 3-d input"),
          {"dropout probability hard-coded to 0.1": "probability"}),
        R("applied to the input of the LoRA branch only", ("dropout 0.5 in train mode",),
          {"dropout on the LoRA output (wrong term)": "y_train",
           "dropout on the input of the base layer too": "base layer's output"}),
    ),
    "ch03_inject_lora_test": (
        R("freezes **every** parameter of `model`", ("query and value, 2 layers, r=8",
                                                     "dense layers everywhere (attention output, MLP, pooler)"),
          {"forgets to freeze the base model": "adapted_modules"}),
        R("whose own attribute name (the last part of its qualified name) is in `targets`",
          ("query and value, 2 layers, r=8", "value only, 3 layers, r=2",
           "dense layers everywhere (attention output, MLP, pooler)"),
          {"also adapts the key projection": "adapted_modules"}),
        R("— in every layer", ("value only, 3 layers, r=2", "dense layers everywhere (attention output, MLP, pooler)"),
          {"adapts only the first layer": "adapted_modules"}),
        R("replaces every `nn.Linear` child", ("dense layers everywhere (attention output, MLP, pooler)",),
          {"only looks inside the attention blocks": "adapted_modules"}),
    ),
    "ch03_mean_pool_test": (
        R("Padded positions hold arbitrary vectors and must not count", ("ragged lengths", "a row that is all padding"),
          {"padding not masked": "pooled"}),
        R("divided by the number of such tokens", ("ragged lengths", "a row that is all padding"),
          {"divides by the sequence length": "pooled"}),
        R("clamped below at `1e-9`", ("a row that is all padding",), {"no clamp on the token count": "NaN"}),
        R("where the mask is 1", ("left-padded masks",), {"assumes right padding (first n tokens)": "pooled"}),
        R("Do not modify the inputs", ("ragged lengths", "a row that is all padding"),
          {"zeroes the padding in place": "modified its inputs"}),
        R("in the dtype of `last_hidden_state`", ("bool mask, float64",),
          {"returns float32 whatever the input dtype": "dtype"}),
    ),
    "ch03_llrd_test": (
        R("`base_lr * decay ** (L - 1 - k)`", ("BertModel, 2 layers", "12 layers, a narrow encoder"),
          {"decay exponent reversed": "lr"}),
        R("layer k is the (k+1)-th layer from the bottom", ("12 layers, a narrow encoder",),
          {"one-digit layer index (layer 10 read as 1)": "lr"}),
        R("`base_lr * decay ** L`", ("classifier on 3 layers", "12 layers, a narrow encoder"),
          {"embeddings treated as the top layer": "lr"}),
        R("for every parameter of an `nn.LayerNorm`", ("BertModel, 2 layers", "12 layers, a narrow encoder"),
          {"LayerNorm weights decayed": "weight_decay"}),
        R("frozen parameters in none", ("frozen embeddings are left out",), {"frozen parameters included": "lr"}),
    ),
}

ALTERNATIVES = {
    "ch03_freeze_count_test": {"attribute assignment, ids to count each parameter once": """
        def freeze_all_but_head(model, head_names):
            heads = tuple(head_names)
            for name, p in model.named_parameters():
                p.requires_grad = name in heads or name.startswith(tuple(h + "." for h in heads))
            return model

        def count_parameters(model):
            seen = {}
            for _, p in model.named_parameters(remove_duplicate=False):
                seen[id(p)] = p
            return (sum(p.numel() for p in seen.values() if p.requires_grad),
                    sum(p.numel() for p in seen.values()))
    """},
    "ch03_lora_linear_test": {"F.linear branch, nn.init.zeros_, functional dropout through the module": """
        class LoRALinear(nn.Module):
            def __init__(self, base, r, alpha, dropout=0.0):
                super().__init__()
                self.base = base
                base.requires_grad_(False)
                self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
                self.lora_B = nn.Parameter(torch.empty(base.out_features, r))
                nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
                nn.init.zeros_(self.lora_B)
                self.scaling = float(alpha) / float(r)
                self.dropout = nn.Dropout(p=dropout)
                self.merged = False

            def delta(self):
                return self.scaling * (self.lora_B @ self.lora_A)

            def forward(self, x):
                out = self.base(x)
                if not self.merged:
                    lin = torch.nn.functional.linear
                    out = out + lin(lin(self.dropout(x), self.lora_A), self.lora_B) * self.scaling
                return out

            @torch.no_grad()
            def merge(self):
                if not self.merged:
                    self.base.weight.add_(self.delta())
                    self.merged = True

            @torch.no_grad()
            def unmerge(self):
                if self.merged:
                    self.base.weight.sub_(self.delta())
                    self.merged = False
    """},
    "ch03_inject_lora_test": {"recursive walk over named_children": """
        def inject_lora(model, r, alpha, targets=("query", "value")):
            model.requires_grad_(False)

            def walk(module):
                for name, child in list(module.named_children()):
                    if name in targets and type(child) is nn.Linear:
                        setattr(module, name, LoRALinear(child, r, alpha))
                    else:
                        walk(child)

            walk(model)
            return model
    """},
    "ch03_mean_pool_test": {"einsum over the mask": """
        def masked_mean_pool(last_hidden_state, attention_mask):
            m = attention_mask.to(last_hidden_state.dtype)
            total = torch.einsum("bth,bt->bh", last_hidden_state, m)
            return total / torch.clamp(m.sum(dim=1, keepdim=True), min=1e-9)
    """},
    "ch03_llrd_test": {"one group per parameter, depth from the name": """
        def layerwise_lr_groups(model, base_lr, decay, weight_decay):
            L = model.config.num_hidden_layers
            norms = set()
            for mod_name, mod in model.named_modules():
                if isinstance(mod, nn.LayerNorm):
                    norms.update(f"{mod_name}.{n}" for n, _ in mod.named_parameters())
            groups = []
            for name, p in model.named_parameters():
                if not p.requires_grad:
                    continue
                parts = name.split(".")
                if "embeddings" in parts:
                    depth = L
                elif "layer" in parts and "encoder" in parts:
                    depth = L - 1 - int(parts[parts.index("layer") + 1])
                else:
                    depth = 0
                wd = 0.0 if name.endswith("bias") or name in norms else weight_decay
                groups.append({"params": [p], "lr": base_lr * decay ** depth, "weight_decay": wd})
            return groups
    """},
}


# Library implementations the exercises imitate (used by the test suite, in the trusted process).
ORACLES = {
    "ch03_freeze_count_test": oracle_freeze_count,
    "ch03_lora_linear_test": oracle_lora_linear,
    "ch03_inject_lora_test": oracle_inject_lora,
    "ch03_mean_pool_test": oracle_mean_pool,
}

CHAPTER = Chapter("ch03_finetuning", "ch03_exercises.ipynb", EXERCISES, rules=RULES, alternatives=ALTERNATIVES, oracles=ORACLES)
