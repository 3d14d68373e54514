"""The epoch's figures from per-step buffers equal step-by-step accumulation; the CPU allocator setting."""

import torch

from supermask_pipeline.training.allocator import keep_cpu_memory
from supermask_pipeline.training.optimization import _epoch_figures


def test_epoch_figures_equal_the_float32_running_sum_and_find_the_first_bad_step():
    g = torch.Generator().manual_seed(0)
    losses = torch.rand(9, generator=g) * 3
    correct = torch.randint(0, 64, (9,), generator=g)
    n, batch = 8 * 64 + 17, 64
    running = torch.zeros(())
    for step, loss in enumerate(losses):
        running += loss * (batch if step < 8 else 17)
    mean, accuracy, bad = _epoch_figures(losses, correct, n, batch)
    assert mean == float(running) / n
    assert accuracy == float(correct.sum()) / n and bad == 0
    losses[4], losses[6] = float("nan"), float("inf")
    assert _epoch_figures(losses, correct, n, batch)[2] == 5


def test_keep_cpu_memory_is_idempotent_and_never_raises():
    first = keep_cpu_memory()
    assert keep_cpu_memory() is first
    assert isinstance(first, bool)
