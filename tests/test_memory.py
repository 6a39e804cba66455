import torch
from torch.utils.checkpoint import checkpoint

from course_utils.memory import peak_memory


def test_peak_memory_sees_a_large_temporary_and_not_a_small_one():
    def big():
        x = torch.ones(64, 1024, 1024)          # 256 MiB
        return float(x[0, 0, 0])

    result, peak = peak_memory(big)
    assert result == 1.0
    assert peak == 256 * 2**20, f"a 256 MiB temporary should count exactly, got {peak / 2**20:.2f} MiB"
    _, small = peak_memory(lambda: torch.ones(1024).sum())
    assert 4096 <= small < 8192, f"a 4 KiB tensor and a scalar, got {small} bytes"


def test_peak_is_what_is_held_at_once_not_the_total_allocated():
    def one_at_a_time():
        for _ in range(24):
            torch.ones(1024, 1024).sum()        # 4 MiB, freed before the next

    _, sequential = peak_memory(one_at_a_time)
    _, together = peak_memory(lambda: [torch.ones(1024, 1024) for _ in range(24)])
    assert together >= 96 * 2**20, f"24 x 4 MiB held together, got {together / 2**20:.1f} MiB"
    assert sequential < 2 * 4 * 2**20 + 4096, f"one 4 MiB block at a time, got {sequential / 2**20:.1f} MiB"


def test_views_count_once_and_inputs_not_at_all():
    x = torch.ones(1024, 1024)
    _, views = peak_memory(lambda: [x.t(), x[0], x.view(-1)])
    assert views == 0, f"views of an input allocate nothing, got {views} bytes"


def test_backward_and_recomputation_are_counted_and_checkpointing_shows():
    layer = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 256))
    x = torch.randn(512, 256, requires_grad=True)

    def plain():
        h = x
        for _ in range(4):
            h = layer(h)
        h.sum().backward()

    def checkpointed():
        h = x
        for _ in range(4):
            h = checkpoint(layer, h, use_reentrant=False)
        h.sum().backward()

    _, a = peak_memory(plain)
    _, b = peak_memory(plain)
    _, c = peak_memory(checkpointed)
    assert a == b, "the same call gives the same figure"
    assert c < 0.6 * a, f"checkpointing should save activations: plain {a / 2**20:.1f} MiB, checkpointed {c / 2**20:.1f} MiB"
    assert a > 4 * 512 * 1024 * 4 * 2, "each layer's 2 MiB hidden activations (pre and post GELU) are saved for backward"
