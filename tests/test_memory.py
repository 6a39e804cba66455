import torch

from course_utils.memory import peak_memory


def test_peak_memory_sees_a_large_temporary_and_not_a_small_one():
    def big():
        x = torch.ones(64, 1024, 1024)          # 256 MiB, touched
        return float(x[0, 0, 0])

    result, peak = peak_memory(big)
    assert result == 1.0
    assert peak > 200 * 2**20, f"a 256 MiB temporary should show, got {peak / 2**20:.0f} MiB"
    _, small = peak_memory(lambda: torch.ones(1024).sum())
    assert small < 50 * 2**20, f"a 4 KiB tensor should not, got {small / 2**20:.0f} MiB"


def test_peak_memory_still_sees_medium_tensors_after_a_large_one_was_freed():
    peak_memory(lambda: torch.ones(128, 1024, 1024).sum())          # 512 MiB, freed again
    _, peak = peak_memory(lambda: [torch.ones(1024, 1024) for _ in range(24)])   # 24 x 4 MiB held together
    assert peak > 80 * 2**20, f"96 MiB of 4 MiB blocks should show after a large free, got {peak / 2**20:.0f} MiB"
