"""Trusted spec of Chapter 7's graded cells (solutions/ch07_jax/ch07_exercises.ipynb).

Probes are self-contained (they run in the sandbox). Oracles (trusted side): ``optax``'s integer-label
cross-entropy, a jitted ``optax`` step, ``jax.vmap`` and the stated key-splitting scheme.
"""
from llmprep.grading.spec import Case, Chapter, Exercise, Hint, Rule, allclose, banned, mutate


# ============================================================================ 1 cross-entropy

def probe_cross_entropy(ns, params):
    import jax.numpy as jnp
    import numpy as np

    fn = ns["softmax_cross_entropy_int"]
    rng = np.random.default_rng(params["seed"])
    shape = tuple(params["shape"])
    logits = jnp.asarray((rng.standard_normal(shape) * params["scale"]).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, shape[-1], size=shape[:-1]).astype(np.int32))
    out = fn(logits, labels)
    return {"loss": np.asarray(out, dtype=np.float32).reshape(())}


def oracle_cross_entropy():
    import optax

    import jax

    # Bound now: the probe blocks these names while it runs, and optax calls jax.nn.logsumexp internally,
    # so the originals are put back for the duration of the library call only.
    library = optax.softmax_cross_entropy_with_integer_labels
    originals = [(jax.nn, "logsumexp", jax.nn.logsumexp), (jax.nn, "log_softmax", jax.nn.log_softmax),
                 (jax.scipy.special, "logsumexp", jax.scipy.special.logsumexp)]

    def softmax_cross_entropy_int(logits, labels):
        current = [(owner, name, getattr(owner, name)) for owner, name, _ in originals]
        for owner, name, fn in originals:
            setattr(owner, name, fn)
        try:
            return library(logits, labels).mean()
        finally:
            for owner, name, fn in current:
                setattr(owner, name, fn)

    return {"softmax_cross_entropy_int": softmax_cross_entropy_int}


# ============================================================================ 2 Haiku model function

def probe_mlp_fn(ns, params):
    import haiku as hk
    import jax
    import numpy as np

    fn = ns["mlp_fn"]
    model = hk.transform(fn)
    rng = np.random.default_rng(params["seed"])
    images = rng.random((params["n"], 8, 8)).astype(np.float32)
    init_params = model.init(jax.random.PRNGKey(params["seed"]), images)
    layout = []
    for module in sorted(init_params):
        for name in sorted(init_params[module]):
            layout.append(f"{module}/{name}:{tuple(int(d) for d in init_params[module][name].shape)}")
    # Deterministic parameters of the same structure (not the student's initializer).
    given = {module: {name: (rng.standard_normal(init_params[module][name].shape) * params["scale"]
                             ).astype(np.float32)
                      for name in sorted(init_params[module])}
             for module in sorted(init_params)}
    logits = model.apply(given, None, images)
    again = model.apply(given, None, images)
    return {"layout": np.array(layout), "logits": np.asarray(logits),
            "pure": bool(np.array_equal(np.asarray(logits), np.asarray(again)))}


# ============================================================================ 3 jitted update step

def probe_update(ns, params):
    import haiku as hk
    import jax
    import numpy as np
    import optax

    make_update = ns["make_update"]
    traces = []

    def net(images):
        x = hk.Flatten()(images)
        x = jax.nn.tanh(hk.Linear(16, name="hidden")(x))
        return hk.Linear(10, name="out")(x)

    model = hk.without_apply_rng(hk.transform(net))

    def apply_fn(p, images):
        traces.append(1)  # runs once per trace when jitted, once per call when not
        return model.apply(p, images)

    rng = np.random.default_rng(params["seed"])
    batches = []
    for _ in range(params["steps"]):
        x = rng.random((params["batch"], 8, 8)).astype(np.float32)
        y = rng.integers(0, 10, size=params["batch"]).astype(np.int32)
        batches.append((x, y) if params["varying"] else batches[0] if batches else (x, y))
    p = model.init(jax.random.PRNGKey(params["seed"]), batches[0][0])
    kind = params["optimizer"]
    if kind == "sgd":
        opt = optax.sgd(params["lr"])
    elif kind == "adam":
        opt = optax.adam(params["lr"])
    else:
        opt = optax.chain(optax.clip_by_global_norm(0.5), optax.adamw(params["lr"], weight_decay=0.1))
    state = opt.init(p)
    optimizer_calls = []

    def counted_update(grads, opt_state, params=None):
        optimizer_calls.append(1)  # once per trace inside jax.jit, once per step outside it
        return opt.update(grads, opt_state, params)

    update = make_update(apply_fn, optax.GradientTransformation(opt.init, counted_update))
    losses = []
    for batch in batches:
        p, state, loss = update(p, state, batch)
        losses.append(float(loss))
    out = {"losses": np.array(losses, dtype=np.float32), "decreased": bool(losses[-1] < losses[0]),
           "compiled": bool(len(traces) < params["steps"]),
           "optimizer_step_jitted": bool(len(optimizer_calls) < params["steps"])}
    for module in sorted(p):
        for name in sorted(p[module]):
            out[f"{module}.{name}"] = np.asarray(p[module][name])
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(state) if np.ndim(x) > 0]
    out["opt_state_norm"] = np.float32(sum(float(np.sum(np.abs(x))) for x in leaves))
    return out


def oracle_update():
    import jax
    import optax

    def make_update(apply_fn, optimizer):
        def loss_fn(params, images, labels):
            logits = apply_fn(params, images)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        @jax.jit
        def update(params, opt_state, batch):
            images, labels = batch
            loss, grads = jax.value_and_grad(loss_fn)(params, images, labels)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        return update

    return {"make_update": make_update}


# ============================================================================ 4 batched accuracy

def probe_accuracy(ns, params):
    import jax.numpy as jnp
    import numpy as np

    fn = ns["batched_accuracy"]
    rng = np.random.default_rng(params["seed"])
    n = params["n"]
    model_params = {"w": jnp.asarray(rng.standard_normal((64, 10)).astype(np.float32)),
                    "b": jnp.asarray(rng.standard_normal(10).astype(np.float32))}
    images = rng.random((n, 8, 8)).astype(np.float32)
    logits = images.reshape(n, 64) @ np.asarray(model_params["w"]) + np.asarray(model_params["b"])
    labels = logits.argmax(-1)
    flip = rng.random(n) < params["noise"]
    labels[flip] = (labels[flip] + rng.integers(1, 10, size=int(flip.sum()))) % 10
    calls = []

    def apply_fn(p, image):
        if image.shape != (8, 8):
            raise ValueError(f"apply_fn takes ONE image of shape (8, 8), got {tuple(image.shape)}: use jax.vmap")
        calls.append(1)
        return image.reshape(64) @ p["w"] + p["b"]

    acc = fn(apply_fn, model_params, jnp.asarray(images), jnp.asarray(labels.astype(np.int32)))
    # vmap traces apply_fn once for the whole batch; a Python loop calls it once per image
    return {"accuracy": np.float64(float(acc)), "apply_fn_traced_once": bool(len(calls) <= 1)}


def oracle_accuracy():
    import jax
    import numpy as np

    def batched_accuracy(apply_fn, params, images, labels):
        # the library the exercise imitates is jax.vmap itself; the accuracy is counted in numpy
        logits = np.asarray(jax.vmap(apply_fn, in_axes=(None, 0))(params, images))
        return float((logits.argmax(-1) == np.asarray(labels)).mean())

    return {"batched_accuracy": batched_accuracy}


# ============================================================================ 5 PRNG discipline

def probe_split(ns, params):
    import jax
    import numpy as np

    fn = ns["split_for_epochs"]

    def raw(k):
        k = jax.numpy.asarray(k) if not hasattr(k, "dtype") else k
        if jax.dtypes.issubdtype(k.dtype, jax.dtypes.prng_key):
            k = jax.random.key_data(k)
        return np.asarray(k, dtype=np.uint32).reshape(2)

    def flat(result):
        pairs, carry = result
        keys = [raw(k) for pair in pairs for k in pair]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError("each epoch must give exactly (shuffle_key, dropout_key)")
        return len(pairs), np.stack(keys + [raw(carry)])

    key = jax.random.PRNGKey(params["seed"])
    n = params["epochs"]
    n_pairs, keys = flat(fn(key, n))
    _, again = flat(fn(jax.random.PRNGKey(params["seed"]), n))
    _, other = flat(fn(jax.random.PRNGKey(params["seed"] + 1000), n))
    children = keys[:-1] if n > 0 else keys[:0]
    with_parent = np.concatenate([children, raw(key)[None]])
    return {
        "n_pairs": n_pairs,
        "keys": keys,
        "children_distinct_from_each_other_and_parent": bool(len({tuple(k) for k in with_parent}) == len(with_parent)),
        "all_returned_distinct": bool(len({tuple(k) for k in keys}) == len(keys)),
        "deterministic": bool(np.array_equal(keys, again)),
        "depends_on_key": bool(n == 0 or not np.array_equal(keys[:-1], other[:-1])),
    }


def oracle_split():
    import jax

    def split_for_epochs(key, n_epochs):
        pairs = []
        for _ in range(n_epochs):
            key, shuffle_key, dropout_key = jax.random.split(key, 3)
            pairs.append((shuffle_key, dropout_key))
        return pairs, key

    return {"split_for_epochs": split_for_epochs}


# ============================================================================ the spec

# Snippets of the solutions that several mutants edit.
PICKED = "picked = jnp.take_along_axis(log_probs, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]"
VMAPPED = "jax.vmap(apply_fn, in_axes=(None, 0))(params, images)"
SPLIT = "key, shuffle_key, dropout_key = jax.random.split(key, 3)"

EXERCISES = [
    Exercise(
        grade_id="ch07_cross_entropy_test", functions=("softmax_cross_entropy_int",), points=2,
        bans=banned("optax.softmax_cross_entropy_with_integer_labels", "optax.softmax_cross_entropy",
                    "optax.losses.softmax_cross_entropy_with_integer_labels", "optax.losses.softmax_cross_entropy",
                    "jax.nn.log_softmax", "jax.nn.logsumexp", "jax.scipy.special.logsumexp",
                    "jax.scipy.special.log_softmax", "optax.losses.safe_softmax_cross_entropy",
                    "optax.safe_softmax_cross_entropy", "optax.losses.poly_loss_cross_entropy"),
        cases=(
            Case("small logits", dict(seed=0, shape=[6, 10], scale=1.0)),
            Case("logits of magnitude 1e4", dict(seed=1, shape=[5, 7], scale=1e4),
                 edge="exp(z) overflows float32, and rows' maxima differ by ~1e4 (one shared maximum underflows)"),
            Case("batch x time x classes", dict(seed=2, shape=[3, 4, 9], scale=3.0), edge="two leading axes"),
            Case("very negative logits", dict(seed=3, shape=[8, 3], scale=-1e4),
                 edge="logits around -1e4: every exp underflows to 0 without the shift"),
            Case("one position, no leading axis", dict(seed=4, shape=[7], scale=2.0),
                 edge="zero leading axes: logits (C,), a 0-d label"),
        ),
        probe=probe_cross_entropy, judge=allclose(rtol=1e-5, atol=1e-4),
        mutants={
            "no max subtraction (overflows)": mutate(
                "logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))", "logits",
                hint=Hint("没有先减去每行最大值，大 logits 的 exp 溢出。",
                    "The row maximum is not subtracted, so exp of large logits overflows.")),
            "one maximum over the whole array (rows far below it underflow)": mutate(
                "jnp.max(logits, axis=-1, keepdims=True)", "jnp.max(logits)",
                hint=Hint("整个数组只减去一个全局最大值，远低于它的行 exp 全部下溢为 0。",
                    "One maximum for the whole array: rows far below it underflow to 0 after exp.")),
            "sum instead of mean": mutate("-jnp.mean(picked)", "-jnp.sum(picked)",
                hint=Hint("对样本求和而不是取平均。", "The loss is summed over examples instead of averaged.")),
            "mean over the classes too (one-hot times log p, averaged everywhere)": mutate(
                PICKED, "picked = jax.nn.one_hot(labels, logits.shape[-1]) * log_probs",
                hint=Hint("one-hot 乘 log p 后对所有元素取平均，还平均了类别维，loss 被除以了类别数。",
                    "one-hot times log p is averaged over every entry, classes too, so the loss is divided by the class count.")),
            "one-hot over the wrong axis": mutate(
                PICKED, "picked = (jax.nn.one_hot(labels, logits.shape[0], axis=0) * log_probs).sum(-1)",
                hint=Hint("one-hot 建在了错误的轴上，类别维和样本维被混淆。",
                    "The one-hot is built along the wrong axis, mixing up classes and examples.")),
            "rows indexed with arange (2-d input only)": mutate(
                PICKED, "picked = log_probs[jnp.arange(labels.shape[0]), labels]",
                hint=Hint(zh="arange 索引只适用于二维输入；take_along_axis 对任意个前导轴（包括 0 个）都成立。",
                          en="Indexing with arange works for 2-d input only; take_along_axis works for any number of "
                             "leading axes, zero included.")),
            "uses jax.nn.log_softmax": mutate(
                "log_probs = shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))",
                "log_probs = jax.nn.log_softmax(logits, axis=-1)",
                hint=Hint("直接调用了 jax.nn.log_softmax；本练习要求自己实现，评分时它被禁用。",
                    "It calls jax.nn.log_softmax, which this exercise asks you to write (it is blocked when graded).")),
        },
    ),
    Exercise(
        grade_id="ch07_mlp_fn_test", functions=("mlp_fn",), points=2,
        cases=(
            Case("5 images", dict(seed=0, n=5, scale=0.3)),
            Case("one image", dict(seed=1, n=1, scale=1.0), edge="N = 1"),
            Case("17 images, larger weights", dict(seed=2, n=17, scale=2.0)),
        ),
        probe=probe_mlp_fn, judge=allclose(rtol=1e-5, atol=1e-4),
        mutants={
            "relu forgotten": mutate('jax.nn.relu(hk.Linear(64, name="hidden")(x))', 'hk.Linear(64, name="hidden")(x)',
                hint=Hint("忘了 ReLU，两层线性叠起来仍然是线性模型。",
                    "The ReLU is forgotten, so two linear layers collapse into one linear map.")),
            "hidden width 32": mutate('hk.Linear(64, name="hidden")', 'hk.Linear(32, name="hidden")',
                hint=Hint("隐藏层宽度用了 32，要求是 64。", "The hidden layer is 32 wide; it should be 64.")),
            "default module names": mutate({'hk.Linear(64, name="hidden")': "hk.Linear(64)",
                                             'hk.Linear(10, name="logits")': "hk.Linear(10)"},
                hint=Hint("用了默认的模块名，参数树中的名字与要求的 hidden、logits 不符。",
                    "Default module names are used, so the parameter names differ from the required hidden and logits.")),
            "tanh instead of relu": mutate("jax.nn.relu(", "jnp.tanh(",
                hint=Hint("激活函数用了 tanh 而不是 ReLU。", "tanh is used instead of ReLU.")),
        },
    ),
    Exercise(
        grade_id="ch07_update_test", functions=("make_update",), points=3,
        cases=(
            Case("SGD, one batch repeated", dict(seed=0, steps=4, batch=8, lr=0.5, optimizer="sgd", varying=False)),
            Case("Adam, fresh batches", dict(seed=1, steps=4, batch=12, lr=0.01, optimizer="adam", varying=True),
                 edge="a new batch every step (new values, same shapes: no retrace allowed)"),
            Case("clip + AdamW chain", dict(seed=2, steps=5, batch=6, lr=0.02, optimizer="chain", varying=False),
                 edge="a chained transformation that clips and whose weight decay needs params"),
        ),
        probe=probe_update, judge=allclose(rtol=1e-4, atol=1e-5, messages={
            "decreased": "the loss did not decrease over the steps",
            "compiled": "update is not jitted: apply_fn was traced again on every step (wrap the step in jax.jit)",
            "optimizer_step_jitted": "optimizer.update ran outside jax.jit on every step: jit the whole step "
                                     "(gradients, optimizer update and apply_updates), not only the gradient"}),
        mutants={
            "params - updates (wrong sign)": mutate("optax.apply_updates(params, updates)",
                                                    "jax.tree_util.tree_map(lambda p, u: p - u, params, updates)",
                hint=Hint("用参数减去 updates；Optax 的 updates 已经包含了下降的负号，应该相加。",
                    "The updates are subtracted; Optax updates already include the minus sign, so they are added.")),
            "loss summed over the batch instead of averaged": mutate("(logits, labels).mean()", "(logits, labels).sum()",
                hint=Hint("loss 对 batch 求和而不是取平均。", "The loss is summed over the batch instead of averaged.")),
            "grads not passed through the optimizer": mutate(
                "optax.apply_updates(params, updates)", "jax.tree_util.tree_map(lambda p, g: p - 0.01 * g, params, grads)",
                hint=Hint("梯度没有经过 optimizer.update，而是手写了固定步长的 SGD。",
                    "The gradients skip optimizer.update; a fixed-step SGD is applied by hand instead.")),
            "returns the old optimizer state": mutate("updates, opt_state = optimizer.update(",
                                                      "updates, _ = optimizer.update(",
                hint=Hint("返回的是旧的优化器状态，新的状态被丢掉了。",
                    "The old optimizer state is returned; the new one is thrown away.")),
            "not jitted (retraced every step)": mutate("    @jax.jit\n", "",
                hint=Hint("update 没有用 jax.jit 包裹。", "update is not wrapped in jax.jit.")),
            "only the gradient is jitted (optimizer step outside jit)": mutate({
                "    @jax.jit\n": "    grad_fn = jax.jit(jax.value_and_grad(loss_fn))\n\n",
                "jax.value_and_grad(loss_fn)(params, images, labels)": "grad_fn(params, images, labels)"},
                hint=Hint("只有梯度计算被 jit，优化器更新在 jit 之外；整个 step 应是一个 jit 函数。",
                    "Only the gradient is jitted and the optimizer step runs outside; the whole step is one jitted function.")),
        },
    ),
    Exercise(
        grade_id="ch07_accuracy_test", functions=("batched_accuracy",), points=2,
        cases=(
            Case("37 images, 30% wrong labels", dict(seed=0, n=37, noise=0.3)),
            Case("one image", dict(seed=1, n=1, noise=0.0), edge="N = 1"),
            Case("100 images, 60% wrong labels", dict(seed=2, n=100, noise=0.6)),
            Case("10 images (as many as classes)", dict(seed=3, n=10, noise=0.5),
                 edge="N = 10 = the number of classes: an axis mix-up keeps the shape"),
        ),
        probe=probe_accuracy, judge=allclose(rtol=0, atol=1e-6, messages={
            "apply_fn_traced_once": "apply_fn was called once per image (a Python loop): map it over the batch "
                                    "with jax.vmap, which calls it once"}),
        mutants={
            "argmax over the wrong axis": mutate("axis=-1", "axis=0", hint=Hint(
                "argmax 做在了 batch 轴上，而不是类别轴上。", "The argmax runs over the batch axis instead of the class axis.")),
            "count instead of fraction": mutate("jnp.mean(", "jnp.sum(",
                hint=Hint("返回的是正确的个数而不是比例。", "It returns the number correct instead of the fraction.")),
            "apply_fn called on the whole batch (no vmap)": mutate(VMAPPED, "apply_fn(params, images)",
                hint=Hint("直接把整个 batch 传给 apply_fn；它只接受单张图片，应使用 vmap。",
                    "apply_fn is called on the whole batch, but it takes one image; vmap is needed.")),
            "a Python loop over the images": mutate(VMAPPED, "jnp.stack([apply_fn(params, im) for im in images])",
                hint=Hint("用 Python 循环逐张调用 apply_fn，而不是用 vmap 一次处理整个 batch。",
                    "A Python loop calls apply_fn once per image instead of one vmap over the batch.")),
        },
    ),
    Exercise(
        grade_id="ch07_split_test", functions=("split_for_epochs",), points=2,
        cases=(
            Case("3 epochs", dict(seed=0, epochs=3)),
            Case("1 epoch", dict(seed=7, epochs=1), edge="n_epochs = 1"),
            Case("10 epochs", dict(seed=42, epochs=10)),
            Case("0 epochs", dict(seed=3, epochs=0), edge="n_epochs = 0: the key comes back untouched"),
        ),
        probe=probe_split, judge=allclose(rtol=0, atol=0),
        mutants={
            "same key split every epoch (keys reused)": mutate(SPLIT, "_, shuffle_key, dropout_key = jax.random.split(key, 3)",
                hint=Hint("每个 epoch 都对同一个 key 做 split，没有更新携带的 key，各 epoch 的 key 完全相同。",
                    "The same key is split every epoch (the carry never advances), so every epoch gets the same keys.")),
            "parent key returned as a child": mutate({SPLIT: "new_key, dropout_key = jax.random.split(key)",
                                                      "pairs.append((shuffle_key, dropout_key))":
                                                          "pairs.append((key, dropout_key))\n        key = new_key"},
                hint=Hint("把已经被 split 过的父 key 当作子 key 使用；split 过的 key 不能再用。",
                    "A key that was already split is handed out as a child; a split key must never be used again.")),
            "split outputs in another order than specified": mutate(
                SPLIT, "shuffle_key, dropout_key, key = jax.random.split(key, 3)",
                hint=Hint("split 出的三个 key 的用途顺序与规定的方案不同（携带 key 在最前）。",
                    "The three keys of each split are used in another order than the stated scheme (carry first).")),
            "splits the carry once more even for 0 epochs": mutate(
                "    return pairs, key", "    return pairs, (key if pairs else jax.random.split(key)[0])",
                hint=Hint(zh="0 个 epoch 时不做任何 split，原样返回传入的 key。",
                          en="With 0 epochs nothing is split: return the key you were given.")),
        },
    ),
]

# ============================================================================ rule table and alternatives

R = Rule
RULES = {
    "ch07_cross_entropy_test": (
        R("subtract the maximum $m$ along the class axis first", ("logits of magnitude 1e4", "very negative logits"),
          {"no max subtraction (overflows)": "loss",
           "one maximum over the whole array (rows far below it underflow)": "loss"}),
        R("the **mean** (not the sum) of the per-position\nlosses", ("small logits", "very negative logits",
                                                                      "one position, no leading axis"),
          {"sum instead of mean": "loss",
           "mean over the classes too (one-hot times log p, averaged everywhere)": "loss"}),
        R("any number of leading axes", ("batch x time x classes", "one position, no leading axis"),
          {"one-hot over the wrong axis": "incompatible shapes",
           "rows indexed with arange (2-d input only)": "incompatible shapes"}),
        R("Do not call the optax losses, `jax.nn.log_softmax`", ("small logits", "batch x time x classes"),
          {"uses jax.nn.log_softmax": "calls"}),
    ),
    "ch07_mlp_fn_test": (
        R('`hk.Linear(64, name="hidden")`, then `jax.nn.relu`', ("5 images", "17 images, larger weights", "one image"),
          {"relu forgotten": "logits", "tanh instead of relu": "logits", "hidden width 32": "layout"}),
        R("checks the parameter names and shapes", ("one image",), {"default module names": "layout"}),
    ),
    "ch07_update_test": (
        R("`optax.apply_updates(params,\nupdates)` adds them to the parameters",
          ("SGD, one batch repeated", "clip + AdamW chain"), {"params - updates (wrong sign)": "losses"}),
        R("`loss` is the mean softmax cross-entropy", ("SGD, one batch repeated", "clip + AdamW chain"),
          {"loss summed over the batch instead of averaged": "losses"}),
        R("go through `optimizer.update(grads, opt_state, params)`", ("clip + AdamW chain",),
          {"grads not passed through the optimizer": "losses"}),
        R("returns new parameters and a new state", ("Adam, fresh batches",),
          {"returns the old optimizer state": "losses"}),
        R("`update` is wrapped in `jax.jit`", ("SGD, one batch repeated", "Adam, fresh batches"),
          {"not jitted (retraced every step)": "not jitted"}),
        R("is one jitted function", ("Adam, fresh batches",),
          {"only the gradient is jitted (optimizer step outside jit)": "optimizer.update ran outside jax.jit"}),
    ),
    "ch07_accuracy_test": (
        R("the share of images whose arg-max logit equals the label", ("37 images, 30% wrong labels", "one image"),
          {"argmax over the wrong axis": "incompatible shapes"}),
        R("**fraction** in [0, 1]", ("37 images, 30% wrong labels", "10 images (as many as classes)"),
          {"count instead of fraction": "accuracy"}),
        R("takes **one** image of\nshape `(8, 8)`", ("37 images, 30% wrong labels", "one image"),
          {"apply_fn called on the whole batch (no vmap)": "jax.vmap"}),
        R("Use `jax.vmap`, not a Python loop", ("37 images, 30% wrong labels", "10 images (as many as classes)"),
          {"a Python loop over the images": "jax.vmap"}),
    ),
    "ch07_split_test": (
        R("never use a key again after splitting it", ("3 epochs", "1 epoch"),
          {"same key split every epoch (keys reused)": "keys", "parent key returned as a child": "keys"}),
        R("new carry first, then shuffle, then dropout", ("1 epoch",),
          {"split outputs in another order than specified": "keys"}),
        R("For `n_epochs == 0` return `([], key)`", ("0 epochs",),
          {"splits the carry once more even for 0 epochs": "keys"}),
    ),
}

ALTERNATIVES = {
    "ch07_cross_entropy_test": {"one-hot and a log-sum-exp by hand, float32": """
        def softmax_cross_entropy_int(logits, labels):
            m = jnp.max(logits, axis=-1, keepdims=True)
            lse = m[..., 0] + jnp.log(jnp.exp(logits - m).sum(axis=-1))
            picked = (jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype) * logits).sum(axis=-1)
            return jnp.mean(lse - picked)
    """},
    "ch07_mlp_fn_test": {"hk.Sequential with a reshape": """
        def mlp_fn(images):
            net = hk.Sequential([lambda x: x.reshape(x.shape[0], -1), hk.Linear(64, name="hidden"), jax.nn.relu,
                                 hk.Linear(10, name="logits")])
            return net(images)
    """},
    "ch07_update_test": {"jax.jit called on a named step, value_and_grad with has_aux": """
        def make_update(apply_fn, optimizer):
            def loss_fn(params, batch):
                images, labels = batch
                logits = apply_fn(params, images)
                loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
                return loss, logits

            def step(params, opt_state, batch):
                (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
                updates, new_state = optimizer.update(grads, opt_state, params)
                return optax.apply_updates(params, updates), new_state, loss

            return jax.jit(step)
    """},
    "ch07_accuracy_test": {"vmap of a closure, jitted, returns a Python float": """
        def batched_accuracy(apply_fn, params, images, labels):
            predict = jax.jit(jax.vmap(lambda image: jnp.argmax(apply_fn(params, image))))
            return float((predict(images) == labels).sum()) / images.shape[0]
    """},
    "ch07_split_test": {"one split array unpacked by index, while loop": """
        def split_for_epochs(key, n_epochs):
            pairs = []
            while len(pairs) < n_epochs:
                keys = jax.random.split(key, 3)
                key = keys[0]
                pairs.append([keys[1], keys[2]])
            return pairs, key
    """},
}


# Library implementations (or the specified reference scheme) the exercises imitate
# (used by the test suite, in the trusted process).
ORACLES = {
    "ch07_cross_entropy_test": oracle_cross_entropy,
    "ch07_update_test": oracle_update,
    "ch07_accuracy_test": oracle_accuracy,
    "ch07_split_test": oracle_split,
}

CHAPTER = Chapter("ch07_jax", "ch07_exercises.ipynb", EXERCISES, rules=RULES, alternatives=ALTERNATIVES, oracles=ORACLES)
