"""Chapter 13's trusted oracles agree with the closed forms the instructions quote (fast, no sandbox)."""
import math

import pytest

from llmprep.grading.trusted import spec_module

CHAPTER = "ch13_distributed"


@pytest.mark.parametrize("p, m", [(1, 1), (2, 4), (4, 8), (4, 2), (3, 5), (8, 32)])
@pytest.mark.parametrize("t_f, t_b", [(1, 1), (1, 2), (2, 3)])
def test_reference_schedules_have_the_textbook_bubble_and_memory(p, m, t_f, t_b):
    spec = spec_module(CHAPTER)
    formula = (p - 1) / (m + p - 1)
    events, bubble, in_flight = spec.reference_schedule(p, m, t_f, t_b)
    assert len(events) == 2 * p * m and math.isclose(bubble, formula, abs_tol=1e-12)
    assert in_flight == [min(p - s, m) for s in range(p)]
    _, gpipe_bubble, gpipe_in_flight = spec.reference_schedule(p, m, t_f, t_b, gpipe=True)
    assert math.isclose(gpipe_bubble, formula, abs_tol=1e-12) and gpipe_in_flight == [m] * p


def test_ring_oracle_sends_2_n_minus_1_over_n_of_the_tensor():
    import torch

    ring = spec_module(CHAPTER).oracle_ring()["ring_all_reduce"]
    for n in (2, 3, 4, 8):
        tensors = [torch.ones(n * 6, dtype=torch.float64) * r for r in range(n)]
        results, sent = ring(tensors)
        assert sent == [2 * (n - 1) * 6 * 8] * n
        assert all(torch.equal(r, torch.full((n * 6,), n * (n - 1) / 2, dtype=torch.float64)) for r in results)


def test_zero_oracle_reproduces_the_papers_example():
    zero = spec_module(CHAPTER).oracle_zero()["zero_memory"]
    totals = [zero(7.5e9, 64, stage)["total"] / 1e9 for stage in range(4)]
    assert [round(t, 1) for t in totals] == [120.0, 31.4, 16.6, 1.9]
    assert math.isclose(zero(7.5e9, 64, 3)["comm"], 1.5 * zero(7.5e9, 64, 0)["comm"])


def test_checkpoint_oracle_sqrt_rule_peak_is_about_2_sqrt_n():
    ns = spec_module(CHAPTER).oracle_checkpoint()
    for n in (16, 64, 100, 400):
        peak, recompute = ns["checkpoint_cost"]([1] * n, [1] * n, ns["sqrt_checkpoints"](n))
        assert peak == 2 * math.isqrt(n) - 1 and recompute == n - math.isqrt(n)
