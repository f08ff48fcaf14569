"""Trusted spec of Chapter 3's graded cells (solutions/ch03_finetuning/ch03_exercises.ipynb).

Probes run inside the sandbox next to the student's code and must be self-contained
(imports inside the function). Models are tiny: the real all-MiniLM-L6-v2 config with
2-3 layers and a seeded random init, except one pooling case that runs the real pretrained
encoder on four short sentences. Oracles run in the trusted test process and give the
library implementation each exercise imitates (peft's parameter count, peft's LoRA ``Linear``
layer, ``get_peft_model``, sentence-transformers' mean pooling); the test suite proves the
solution agrees with them on every case.
"""
from llmprep.grading.spec import Case, Exercise, allclose

CHAPTER = "ch03_finetuning"
NOTEBOOK = "ch03_exercises.ipynb"


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
    out["init_minus_base"] = (y0 - ref0).abs().max()
    out["B_init_is_zero"] = bool(torch.count_nonzero(layer.lora_B.detach()) == 0)
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
        mask[i, :n] = 1
    if params.get("bool_mask"):
        mask = mask.bool()
    hidden[mask == 0] = 1e3  # padded positions hold large junk: they must not leak in
    snapshot = hidden.clone()
    pooled = fn(hidden, mask)
    return {"pooled": pooled, "dtype_kept": pooled.dtype == dtype, "input_untouched": bool(torch.equal(hidden, snapshot))}


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
    cfg = AutoConfig.from_pretrained(str(minilm_dir()), num_hidden_layers=params["layers"], num_labels=3)
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

EXERCISES = [
    Exercise(
        grade_id="ch03_freeze_count_test", functions=("freeze_all_but_head", "count_parameters"), points=2,
        title="freeze all but the head; count trainable parameters",
        cases=(
            Case("BERT classifier, head only", dict(_MINI, seed=0, heads=["classifier"])),
            Case("BERT classifier, head and pooler", dict(_MINI, seed=1, heads=["classifier", "bert.pooler"])),
            Case("everything frozen beforehand, head unfrozen", dict(_MINI, seed=2, heads=["classifier"],
                                                                       freeze_first=True)),
            Case("tied weights and look-alike names", {"model": "toy", "seed": 3, "heads": ["head", "body.1"]}),
            Case("count a peft-wrapped model", {"model": "bert_lora", "layers": 2, "seed": 4, "heads": None}),
        ),
        probe=probe_freeze_count, judge=allclose(rtol=0, atol=0),
        mutants={
            "counts frozen parameters as trainable": """
                def count_parameters(model):
                    total = sum(p.numel() for p in model.parameters())
                    return total, total
            """,
            "forgets the biases": """
                def count_parameters(model):
                    ps = [(n, p) for n, p in model.named_parameters() if not n.endswith("bias")]
                    return sum(p.numel() for _, p in ps if p.requires_grad), sum(p.numel() for _, p in ps)
            """,
            "freezes the head too": """
                def freeze_all_but_head(model, head_names):
                    for p in model.parameters():
                        p.requires_grad_(False)
                    return model
            """,
            "head matched as a bare prefix": """
                def freeze_all_but_head(model, head_names):
                    for n, p in model.named_parameters():
                        p.requires_grad_(any(n.startswith(h) for h in head_names))
                    return model
            """,
        },
    ),
    Exercise(
        grade_id="ch03_lora_linear_test", functions=("LoRALinear",), points=3,
        title="a LoRA linear layer from scratch",
        cases=(
            Case("r=4, alpha=8, with bias", {"seed": 0, "fin": 12, "fout": 10, "r": 4, "alpha": 8, "bias": True,
                                             "dropout": 0.0, "batch": [5]}),
            Case("r=1, alpha=1, no bias, 3-d input", {"seed": 1, "fin": 7, "fout": 9, "r": 1, "alpha": 1,
                                                      "bias": False, "dropout": 0.0, "batch": [2, 3]}),
            Case("r=8, alpha=32, dropout in eval mode", {"seed": 2, "fin": 16, "fout": 6, "r": 8, "alpha": 32,
                                                         "bias": True, "dropout": 0.3, "batch": [4]}),
            Case("r larger than alpha (scaling 0.25)", {"seed": 3, "fin": 5, "fout": 5, "r": 8, "alpha": 2,
                                                        "bias": True, "dropout": 0.0, "batch": [3]}),
        ),
        probe=probe_lora_linear, judge=allclose(rtol=1e-5, atol=1e-5),
        mutants={
            "B not zero-initialised": """
                class LoRALinear(nn.Module):
                    def __init__(self, base, r, alpha, dropout=0.0):
                        super().__init__()
                        self.base, self.r, self.scaling, self.merged = base, r, alpha / r, False
                        for p in base.parameters():
                            p.requires_grad_(False)
                        self.lora_A = nn.Parameter(torch.randn(r, base.in_features) / r)
                        self.lora_B = nn.Parameter(torch.randn(base.out_features, r) / r)
                        self.dropout = nn.Dropout(dropout)
                    def forward(self, x):
                        y = self.base(x)
                        if self.merged:
                            return y
                        return y + self.dropout(x) @ self.lora_A.T @ self.lora_B.T * self.scaling
                    def merge(self):
                        self.base.weight.data += self.lora_B @ self.lora_A * self.scaling
                        self.merged = True
                    def unmerge(self):
                        self.base.weight.data -= self.lora_B @ self.lora_A * self.scaling
                        self.merged = False
            """,
            "scaling r/alpha": """
                class LoRALinear(nn.Module):
                    def __init__(self, base, r, alpha, dropout=0.0):
                        super().__init__()
                        self.base, self.r, self.scaling, self.merged = base, r, r / alpha, False
                        for p in base.parameters():
                            p.requires_grad_(False)
                        self.lora_A = nn.Parameter(torch.randn(r, base.in_features) / r)
                        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
                        self.dropout = nn.Dropout(dropout)
                    def forward(self, x):
                        y = self.base(x)
                        if self.merged:
                            return y
                        return y + self.dropout(x) @ self.lora_A.T @ self.lora_B.T * self.scaling
                    def merge(self):
                        self.base.weight.data += self.lora_B @ self.lora_A * self.scaling
                        self.merged = True
                    def unmerge(self):
                        self.base.weight.data -= self.lora_B @ self.lora_A * self.scaling
                        self.merged = False
            """,
            "merge without scaling": """
                class LoRALinear(nn.Module):
                    def __init__(self, base, r, alpha, dropout=0.0):
                        super().__init__()
                        self.base, self.r, self.scaling, self.merged = base, r, alpha / r, False
                        for p in base.parameters():
                            p.requires_grad_(False)
                        self.lora_A = nn.Parameter(torch.randn(r, base.in_features) / r)
                        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
                        self.dropout = nn.Dropout(dropout)
                    def forward(self, x):
                        y = self.base(x)
                        if self.merged:
                            return y
                        return y + self.dropout(x) @ self.lora_A.T @ self.lora_B.T * self.scaling
                    def merge(self):
                        self.base.weight.data += self.lora_B @ self.lora_A
                        self.merged = True
                    def unmerge(self):
                        self.base.weight.data -= self.lora_B @ self.lora_A
                        self.merged = False
            """,
            "base weights left trainable": """
                class LoRALinear(nn.Module):
                    def __init__(self, base, r, alpha, dropout=0.0):
                        super().__init__()
                        self.base, self.r, self.scaling, self.merged = base, r, alpha / r, False
                        self.lora_A = nn.Parameter(torch.randn(r, base.in_features) / r)
                        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
                        self.dropout = nn.Dropout(dropout)
                    def forward(self, x):
                        y = self.base(x)
                        if self.merged:
                            return y
                        return y + self.dropout(x) @ self.lora_A.T @ self.lora_B.T * self.scaling
                    def merge(self):
                        with torch.no_grad():
                            self.base.weight += self.lora_B @ self.lora_A * self.scaling
                        self.merged = True
                    def unmerge(self):
                        with torch.no_grad():
                            self.base.weight -= self.lora_B @ self.lora_A * self.scaling
                        self.merged = False
            """,
            "adds the update again after merging": """
                class LoRALinear(nn.Module):
                    def __init__(self, base, r, alpha, dropout=0.0):
                        super().__init__()
                        self.base, self.r, self.scaling = base, r, alpha / r
                        for p in base.parameters():
                            p.requires_grad_(False)
                        self.lora_A = nn.Parameter(torch.randn(r, base.in_features) / r)
                        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
                        self.dropout = nn.Dropout(dropout)
                    def forward(self, x):
                        return self.base(x) + self.dropout(x) @ self.lora_A.T @ self.lora_B.T * self.scaling
                    def merge(self):
                        self.base.weight.data += self.lora_B @ self.lora_A * self.scaling
                    def unmerge(self):
                        self.base.weight.data -= self.lora_B @ self.lora_A * self.scaling
            """,
        },
    ),
    Exercise(
        grade_id="ch03_inject_lora_test", functions=("inject_lora",), points=3,
        title="inject LoRA into the attention projections",
        cases=(
            Case("query and value, 2 layers, r=8", {"seed": 0, "layers": 2, "r": 8, "alpha": 16,
                                                    "targets": ["query", "value"]}),
            Case("value only, 3 layers, r=2", {"seed": 1, "layers": 3, "r": 2, "alpha": 4, "targets": ["value"]}),
            Case("query, key and value, 2 layers, r=4", {"seed": 2, "layers": 2, "r": 4, "alpha": 4,
                                                         "targets": ["query", "key", "value"]}),
        ),
        probe=probe_inject_lora, judge=allclose(rtol=0, atol=1e-5),
        mutants={
            "also adapts the key projection": """
                def inject_lora(model, r, alpha, targets=("query", "value")):
                    targets = tuple(targets) + ("key",)
                    for p in model.parameters():
                        p.requires_grad_(False)
                    for name, module in list(model.named_modules()):
                        for child_name, child in list(module.named_children()):
                            if child_name in targets and isinstance(child, nn.Linear):
                                setattr(module, child_name, LoRALinear(child, r, alpha))
                    return model
            """,
            "adapts only the first layer": """
                def inject_lora(model, r, alpha, targets=("query", "value")):
                    for p in model.parameters():
                        p.requires_grad_(False)
                    attn = model.encoder.layer[0].attention.self
                    for t in targets:
                        setattr(attn, t, LoRALinear(getattr(attn, t), r, alpha))
                    return model
            """,
            "forgets to freeze the base model": """
                def inject_lora(model, r, alpha, targets=("query", "value")):
                    for name, module in list(model.named_modules()):
                        for child_name, child in list(module.named_children()):
                            if child_name in targets and isinstance(child, nn.Linear):
                                lora = LoRALinear(child, r, alpha)
                                for p in child.parameters():
                                    p.requires_grad_(True)
                                setattr(module, child_name, lora)
                    return model
            """,
        },
    ),
    Exercise(
        grade_id="ch03_mean_pool_test", functions=("masked_mean_pool",), points=2,
        title="masked mean pooling",
        cases=(
            Case("ragged lengths", {"seed": 0, "shape": [4, 7, 5], "lengths": [7, 3, 1, 5], "dtype": "float32"}),
            Case("a row that is all padding", {"seed": 1, "shape": [3, 4, 6], "lengths": [4, 0, 2],
                                               "dtype": "float32"}),
            Case("bool mask, float64", {"seed": 2, "shape": [2, 5, 3], "lengths": [2, 5], "dtype": "float64",
                                        "bool_mask": True}),
            Case("real MiniLM, padded batch", {"real_model": True, "sentences": [
                "A gripping, beautifully acted film.",
                "Dull.",
                "The plot wanders for two hours and never arrives anywhere worth the trip.",
                "Not bad at all, honestly."]}),
        ),
        probe=probe_mean_pool, judge=allclose(rtol=1e-5, atol=1e-5),
        mutants={
            "padding not masked": """
                def masked_mean_pool(last_hidden_state, attention_mask):
                    return last_hidden_state.mean(dim=1)
            """,
            "divides by the sequence length": """
                def masked_mean_pool(last_hidden_state, attention_mask):
                    m = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
                    return (last_hidden_state * m).sum(1) / last_hidden_state.shape[1]
            """,
            "no clamp on the token count": """
                def masked_mean_pool(last_hidden_state, attention_mask):
                    m = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
                    return (last_hidden_state * m).sum(1) / m.sum(1)
            """,
        },
    ),
    Exercise(
        grade_id="ch03_llrd_test", functions=("layerwise_lr_groups",), points=3,
        title="layer-wise learning-rate decay parameter groups",
        cases=(
            Case("BertModel, 2 layers", {"seed": 0, "layers": 2, "classifier": False, "frozen": [],
                                         "base_lr": 1e-3, "decay": 0.8, "weight_decay": 0.01}),
            Case("classifier on 3 layers", {"seed": 1, "layers": 3, "classifier": True, "frozen": [],
                                            "base_lr": 2e-5, "decay": 0.9, "weight_decay": 0.05}),
            Case("frozen embeddings are left out", {"seed": 2, "layers": 2, "classifier": True,
                                                    "frozen": ["bert.embeddings."], "base_lr": 5e-4,
                                                    "decay": 0.5, "weight_decay": 0.1}),
            Case("decay 1.0 is plain AdamW", {"seed": 3, "layers": 2, "classifier": False, "frozen": [],
                                              "base_lr": 1e-4, "decay": 1.0, "weight_decay": 0.0}),
        ),
        probe=probe_llrd, judge=allclose(rtol=1e-9, atol=0),
        mutants={
            "decay exponent reversed": """
                def layerwise_lr_groups(model, base_lr, decay, weight_decay):
                    import re
                    L = model.config.num_hidden_layers
                    no_decay = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
                    groups = []
                    for name, p in model.named_parameters():
                        if not p.requires_grad:
                            continue
                        m = re.search(r"encoder\\.layer\\.(\\d+)\\.", name)
                        if "embeddings." in name:
                            lr = base_lr
                        elif m:
                            lr = base_lr * decay ** (int(m.group(1)) + 1)
                        else:
                            lr = base_lr * decay ** L
                        wd = 0.0 if (name.endswith("bias") or id(p) in no_decay) else weight_decay
                        groups.append({"params": [p], "lr": lr, "weight_decay": wd})
                    return groups
            """,
            "LayerNorm weights decayed": """
                def layerwise_lr_groups(model, base_lr, decay, weight_decay):
                    import re
                    L = model.config.num_hidden_layers
                    groups = []
                    for name, p in model.named_parameters():
                        if not p.requires_grad:
                            continue
                        m = re.search(r"encoder\\.layer\\.(\\d+)\\.", name)
                        if "embeddings." in name:
                            lr = base_lr * decay ** L
                        elif m:
                            lr = base_lr * decay ** (L - int(m.group(1)) - 1)
                        else:
                            lr = base_lr
                        wd = 0.0 if name.endswith("bias") else weight_decay
                        groups.append({"params": [p], "lr": lr, "weight_decay": wd})
                    return groups
            """,
            "embeddings treated as the top layer": """
                def layerwise_lr_groups(model, base_lr, decay, weight_decay):
                    import re
                    L = model.config.num_hidden_layers
                    no_decay = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
                    groups = []
                    for name, p in model.named_parameters():
                        if not p.requires_grad:
                            continue
                        m = re.search(r"encoder\\.layer\\.(\\d+)\\.", name)
                        if m:
                            lr = base_lr * decay ** (L - int(m.group(1)) - 1)
                        else:
                            lr = base_lr
                        wd = 0.0 if (name.endswith("bias") or id(p) in no_decay) else weight_decay
                        groups.append({"params": [p], "lr": lr, "weight_decay": wd})
                    return groups
            """,
            "frozen parameters included": """
                def layerwise_lr_groups(model, base_lr, decay, weight_decay):
                    import re
                    L = model.config.num_hidden_layers
                    no_decay = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
                    groups = []
                    for name, p in model.named_parameters():
                        m = re.search(r"encoder\\.layer\\.(\\d+)\\.", name)
                        if "embeddings." in name:
                            lr = base_lr * decay ** L
                        elif m:
                            lr = base_lr * decay ** (L - int(m.group(1)) - 1)
                        else:
                            lr = base_lr
                        wd = 0.0 if (name.endswith("bias") or id(p) in no_decay) else weight_decay
                        groups.append({"params": [p], "lr": lr, "weight_decay": wd})
                    return groups
            """,
        },
    ),
]

# Library implementations the exercises imitate (used by the test suite, in the trusted process).
ORACLES = {
    "ch03_freeze_count_test": oracle_freeze_count,
    "ch03_lora_linear_test": oracle_lora_linear,
    "ch03_inject_lora_test": oracle_inject_lora,
    "ch03_mean_pool_test": oracle_mean_pool,
}
