# ---
# jupyter:
#   celltoolbar: Slideshow
#   kernelspec:
#     display_name: Python 3 (course)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "title", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# # 14 · Training at scale: where memory goes and how large models fit
#
# **Learning objectives.** After this notebook you can
# 1. **budget** the memory of training: parameters, gradients, optimizer state and activations;
# 2. **accumulate** gradients so that small batches add up to a large one, padding included;
# 3. **use** mixed precision (bfloat16 autocast, float16 with loss scaling) and **checkpoint** activations;
# 4. **train** with data parallelism in `torch.distributed`, by hand and with `DistributedDataParallel`;
# 5. **shard** AdamW's state across processes (ZeRO stage 1) by hand, and compare PyTorch's `ZeroRedundancyOptimizer` and FSDP.
#
# **Prerequisites.** Notebooks 06 (the Transformer) and 13 (recomputation, memory measurement).
#
# **Estimated time.** 2 hours. The notebook runs in under a minute on a laptop CPU.

# %% [markdown] nbgrader={"grade": false, "grade_id": "notes_intro", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "notes"}
# Speaker notes: every technique here trades something (time, precision, communication) for
# memory or throughput. The closing table is the lecture: what each saves and what it costs,
# measured on this machine.

# %% [markdown] nbgrader={"grade": false, "grade_id": "setup_text", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Setup

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
import inspect
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from course_utils import assert_close, check_shape, describe_environment, get_device, seed_everything
from course_utils.memory import peak_memory

seed_everything(0)
device = get_device()
print(describe_environment(device))


# %% [markdown] nbgrader={"grade": false, "grade_id": "where_memory_goes", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 1 · Where the memory goes
#
# Training a model of $P$ parameters with AdamW keeps, besides the activations:
#
# | what | bytes | why |
# |---|---|---|
# | parameters | $P \cdot b$ | the model |
# | gradients | $P \cdot b$ | one per parameter |
# | AdamW state | $2 P \cdot b$ | first and second moments (`exp_avg`, `exp_avg_sq`) |
#
# with $b$ bytes per number (4 for float32, 2 for bfloat16). A 7B-parameter model in float32 needs
# 112 GB before a single activation; the activations grow with batch, length and depth.
#
# Storing everything in bfloat16 would halve that, but it is not how large models are usually trained:
# bfloat16 keeps 8 significant bits (7 stored), so an update smaller than $2^{-9}$ (about 0.2%) of a
# weight is rounded away entirely. **Mixed-precision
# training** (Micikevicius et al., 2017) computes in 16 bits and keeps a float32 **master copy** of
# the weights and float32 moments. The ZeRO paper's accounting: 2 bytes (bfloat16 weights) + 2
# (bfloat16 gradients) + 4 (float32 master weights) + 4 + 4 (AdamW's two moments) = **16 bytes per
# parameter**, as many as float32 training. Mixed precision saves activation memory and time, not
# these states; sharding them (ZeRO, section 7) is what shrinks them.

# %% nbgrader={"grade": false, "grade_id": "model", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
def tiny_transformer(d_model: int = 64, layers: int = 4, vocab: int = 100) -> nn.Module:
    """A small language-model-shaped network: embedding, encoder layers, output head."""
    return nn.Sequential(nn.Embedding(vocab, d_model),
                         *[nn.TransformerEncoderLayer(d_model, 4, 4 * d_model, 0.0, batch_first=True) for _ in range(layers)],
                         nn.Linear(d_model, vocab))


# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_1_memory_budget", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 2 · Exercise 1: a memory budget (3 points)
#
# Complete `training_memory(model, dtype)`: the bytes of parameters, gradients and AdamW state if
# every parameter of `model` were stored in `dtype` (use `torch.finfo(dtype).bits`), as a dict
# with keys `parameters`, `gradients`, `optimizer`, `total`. Count what the optimizer trains: each
# parameter once (a weight shared by two layers is one tensor), and no buffers (they get no gradient
# and no AdamW state). The tests check it against the tensors PyTorch actually holds after one AdamW step.
#
# <details><summary>Hint 1</summary>
#
# Every number the optimizer trains has one copy as a parameter, one as a gradient, and AdamW keeps two more (its first and second moments), all in `dtype`.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# `model.parameters()` yields each parameter once, even one shared by two layers, and never a buffer; `torch.finfo(dtype).bits` is the size of one number in bits.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "memory_budget", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def training_memory(model: nn.Module, dtype: torch.dtype = torch.float32) -> dict[str, int]:
    """Bytes for parameters, gradients and AdamW's two moments, in the given dtype."""
    ### BEGIN SOLUTION
    n = sum(p.numel() for p in model.parameters())
    size = torch.finfo(dtype).bits // 8
    budget = {"parameters": n * size, "gradients": n * size, "optimizer": 2 * n * size}
    budget["total"] = sum(budget.values())
    return budget
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
class Sized(nn.Module):
    """A stand-in with `count` parameters on the meta device: shapes, no memory."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(count, device="meta"))


def budgets(count: int) -> dict[str, dict[str, int]]:
    """Bytes per part for float32, pure bfloat16, and mixed precision (bfloat16 copies + float32 master and moments)."""
    f32, bf16 = training_memory(Sized(count), torch.float32), training_memory(Sized(count), torch.bfloat16)
    return {"float32": {"parameters": f32["parameters"], "gradients": f32["gradients"], "optimizer": f32["optimizer"]},
            "bfloat16": {"parameters": bf16["parameters"], "gradients": bf16["gradients"], "optimizer": bf16["optimizer"]},
            "mixed\nprecision": {"parameters": bf16["parameters"], "gradients": bf16["gradients"],
                                  "float32 master": f32["parameters"], "optimizer": f32["optimizer"]}}


fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
colours = {"parameters": "C0", "gradients": "C1", "float32 master": "C3", "optimizer": "C2"}
labelled = set()
for ax, (name, count) in zip(axes, (("GPT-2 small", 124_000_000), ("7B", 7_000_000_000))):
    for column, (recipe, parts) in enumerate(budgets(count).items()):
        total = sum(parts.values())
        print(f"{name:>12} {recipe.replace(chr(10), ' '):>16}: {total / 1e9:7.1f} GB before activations, "
              f"{total / count:.0f} bytes per parameter")
        bottom = 0.0
        for part, size in parts.items():
            ax.bar(column, size / 1e9, bottom=bottom, color=colours[part], width=0.6, label=None if part in labelled else part)
            labelled.add(part)
            bottom += size / 1e9
        ax.text(column, bottom, f"{bottom:.1f} GB", ha="center", va="bottom")
    ax.set_xticks([0, 1, 2], list(budgets(count)))
    ax.set_title(f"{name}: {count / 1e6:,.0f}M parameters")
    ax.set_ylabel("GB before activations")
    ax.margins(y=0.15)
axes[1].axhline(80, color="k", linestyle="--", linewidth=1)
axes[1].text(1, 81, "one 80 GB GPU", ha="center", va="bottom", fontsize=8)
axes[0].legend(fontsize=8)
fig.suptitle("Training memory from your training_memory(): mixed precision needs as much as float32")
fig.tight_layout()
plt.show()
unit = torch.tensor(1.0, dtype=torch.bfloat16)
print(f"why the float32 master copy: in bfloat16, 1 + 0.001 = {(unit + 0.001).item()}, 1 + 0.01 = {(unit + 0.01).item()}")

# %% nbgrader={"grade": true, "grade_id": "test_memory_budget", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""training_memory matches the parameter, gradient and AdamW tensors PyTorch holds after a step, in float32 and bfloat16."""
def held_after_a_step(model: nn.Module, inputs: torch.Tensor) -> dict[str, int]:
    """Bytes of the parameters, gradients and AdamW state that PyTorch holds after one step on inputs."""
    optimizer = torch.optim.AdamW(model.parameters())
    model(inputs).float().sum().backward()
    optimizer.step()
    held = lambda tensors: sum(t.numel() * t.element_size() for t in tensors)
    return {"parameters": held(model.parameters()), "gradients": held(p.grad for p in model.parameters()),
            "optimizer": held(t for s in optimizer.state.values() for k, t in s.items() if k != "step")}
for dtype in (torch.float32, torch.bfloat16):
    torch.manual_seed(0)
    model = tiny_transformer().to(dtype)
    actual = held_after_a_step(model, torch.randint(0, 100, (2, 8)))
    budget = training_memory(model, dtype)
    call = f"training_memory(model, {dtype})"
    found, held = budget["parameters"], actual["parameters"]
    assert found != 8 * held, (f"{call}: parameters {found:,} bytes, 8 times the {held:,} PyTorch holds: "
                               "torch.finfo(dtype).bits counts bits; how many bits make a byte?")
    assert not (dtype != torch.float32 and found == held * 4 // next(model.parameters()).element_size()), (
        f"{call}: parameters {found:,} bytes, as if each number took 4 bytes (float32); PyTorch holds {held:,}: "
        "the size of a number depends on dtype")
    assert found == held, f"{call}: parameters expected {held:,} bytes (every parameter once, in {dtype}), got {found:,}"
    assert budget["gradients"] != 0, (f"{call}: gradients 0 bytes, yet after backward every parameter holds a "
                                      "gradient of its own size and dtype")
    assert budget["gradients"] == actual["gradients"], \
        f"{call}: gradients expected {actual['gradients']:,} bytes, one per parameter number, got {budget['gradients']:,}"
    assert budget["optimizer"] * 2 != actual["optimizer"], (
        f"{call}: optimizer {budget['optimizer']:,} bytes, half of the {actual['optimizer']:,} AdamW holds: "
        "how many numbers does AdamW keep per parameter?")
    assert budget["optimizer"] == actual["optimizer"], \
        f"{call}: optimizer (AdamW state) expected {actual['optimizer']:,} bytes, got {budget['optimizer']:,}"
    assert budget["total"] == sum(actual.values()), \
        f"{call}: total {budget['total']:,} bytes is not the sum of parameters, gradients and optimizer"
torch.manual_seed(0)
tied = nn.Sequential(nn.Embedding(50, 16), nn.LayerNorm(16), nn.Linear(16, 16), nn.BatchNorm1d(7), nn.Linear(16, 50))
tied[4].weight = tied[0].weight                                   # output layer tied to the embedding, as in GPT-2
actual = held_after_a_step(tied, torch.randint(0, 50, (3, 7)))
budget = training_memory(tied)
for key, value in actual.items():
    assert budget[key] == value, (
        f"training_memory on a model with a tied weight (the output layer shares the embedding's) and BatchNorm buffers: "
        f"{key} expected {value:,} bytes, got {budget[key]:,}; a shared weight counts once, buffers not at all "
        "(count what the optimizer trains)")
### BEGIN HIDDEN TESTS
half = training_memory(tiny_transformer(), torch.float16)
full = training_memory(tiny_transformer(), torch.float32)
assert half["total"] * 2 == full["total"], "training_memory(model, torch.float16): half the total of torch.float32"
assert training_memory(nn.Linear(10, 3))["parameters"] == 33 * 4, "training_memory(nn.Linear(10, 3)): 33 float32 parameters"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_2_gradient_accumulation", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 3 · Exercise 2: gradient accumulation (3 + 2 points)
#
# When a batch does not fit, split it into micro-batches, add their gradients, and step once.
# The gradient equals the large batch's only if each micro-batch's loss is scaled correctly. For a
# token-level loss with **padding**, the large batch averages over *all real tokens of the batch*;
# averaging each micro-batch over its own tokens and then over micro-batches weighs a token in a
# micro-batch with fewer real tokens more (the pitfall).
#
# * `token_loss_sum(logits, targets)`: the **sum** of cross-entropies over real tokens
#   (`targets == -100` are padding) and the number of real tokens.
# * `accumulation_step(model, micro_batches, optimizer)`: zero the gradients, for each
#   `(inputs, targets)` back-propagate `loss_sum / total_real_tokens_in_all_micro_batches`, then
#   one `optimizer.step()`. Return the loss of the whole batch before the step, as a float: the
#   summed cross-entropy of all micro-batches over their total number of real tokens.
#
# <details><summary>Hint 1</summary>
#
# The whole batch's loss is one sum over all its real tokens divided by one count. Each micro-batch contributes its part of that sum, so each must be divided by the same count.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Count the real tokens of all micro-batches before the first backward pass; `F.cross_entropy` can sum instead of average, and it skips targets equal to `ignore_index`.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# Gradients add up over `backward` calls: zero them once at the start, and step once at the end.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "accumulation", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def token_loss_sum(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(sum of cross-entropy over real tokens, number of real tokens); -100 marks padding."""
    ### BEGIN SOLUTION
    loss = F.cross_entropy(logits.flatten(0, -2), targets.flatten(), ignore_index=-100, reduction="sum")
    return loss, int((targets != -100).sum())
    ### END SOLUTION


def accumulation_step(model: nn.Module, micro_batches: list[tuple[torch.Tensor, torch.Tensor]],
                      optimizer: torch.optim.Optimizer) -> float:
    """One optimizer step over several micro-batches, equal to one step on their union; returns the union's loss per real token."""
    ### BEGIN SOLUTION
    optimizer.zero_grad()
    total_tokens = sum(int((targets != -100).sum()) for _, targets in micro_batches)
    total_loss = 0.0
    for inputs, targets in micro_batches:
        loss, _ = token_loss_sum(model(inputs), targets)
        (loss / total_tokens).backward()
        total_loss += loss.item()
    optimizer.step()
    return total_loss / total_tokens
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "padded_batch", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
def padded_batch(n: int, seed: int, max_len: int = 12):
    """Random token sequences of random lengths; targets are -100 on padding."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, max_len + 1, (n,), generator=g)
    inputs = torch.randint(0, 100, (n, max_len), generator=g)
    targets = torch.randint(0, 100, (n, max_len), generator=g)
    targets[torch.arange(max_len)[None, :] >= lengths[:, None]] = -100
    return inputs, targets


# %% slideshow={"slide_type": "fragment"}
demo_inputs, demo_targets = padded_batch(6, seed=11)
print("targets of sequence 0:", demo_targets[0].tolist())
print("real tokens per sequence:", (demo_targets != -100).sum(dim=1).tolist())
with torch.random.fork_rng():
    torch.manual_seed(0)
    demo_model = tiny_transformer()
with torch.no_grad():
    loss_sum, real = token_loss_sum(demo_model(demo_inputs), demo_targets)
print(f"token_loss_sum: {loss_sum.item():.1f} over {real} real tokens, {loss_sum.item() / real:.3f} per token "
      f"(a uniform guess over 100 tokens: {math.log(100):.3f})")
demo_optimizer = torch.optim.SGD(demo_model.parameters(), lr=0.1)
before = [p.detach().clone() for p in demo_model.parameters()]
mean_loss = accumulation_step(demo_model, [(demo_inputs[:1], demo_targets[:1]), (demo_inputs[1:], demo_targets[1:])],
                              demo_optimizer)
moved = sum((p.detach() - b).square().sum() for p, b in zip(demo_model.parameters(), before)).sqrt()
print(f"accumulation_step over micro-batches of 1 and 5 sequences: mean loss {mean_loss:.3f}, parameters moved by {moved:.3f}")


# %% nbgrader={"grade": true, "grade_id": "test_accumulation", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""token_loss_sum on a small case; four micro-batches of uneven padding give the same parameters as one step on the whole batch (1e-6)."""
small_sum, small_count = token_loss_sum(torch.zeros(1, 4, 5, dtype=torch.float64), torch.tensor([[3, -100, -100, 0]]))
assert small_count != 4, ("token_loss_sum(zero logits (1, 4, 5), tensor([[3, -100, -100, 0]])) counts 4 tokens: "
                          "-100 marks padding, which is no real token")
assert small_count == 2, f"token_loss_sum(zero logits (1, 4, 5), tensor([[3, -100, -100, 0]])): expected 2 real tokens, got {small_count}"
assert abs(float(small_sum) - math.log(5)) > 1e-9, (
    "token_loss_sum(zero logits (1, 4, 5), tensor([[3, -100, -100, 0]])) gives log 5, the mean per real token: "
    "the prompt asks for the sum over real tokens (2 log 5 here)")
assert abs(float(small_sum) - 2 * math.log(5)) < 1e-9, (
    f"token_loss_sum(zero logits (1, 4, 5), tensor([[3, -100, -100, 0]])): the sum of 2 cross-entropies of a uniform "
    f"guess over 5 tokens is 2 log 5 = {2 * math.log(5):.6f}, got {float(small_sum):.6f}")
inputs, targets = padded_batch(16, seed=0)
torch.manual_seed(0)
big = tiny_transformer().double()
initial = {key: value.clone() for key, value in big.state_dict().items()}
def from_initial() -> nn.Module:
    """A model with the test's starting parameters."""
    model = tiny_transformer().double()
    model.load_state_dict(initial)
    return model
small = from_initial()
opt_big, opt_small = torch.optim.SGD(big.parameters(), lr=0.5), torch.optim.SGD(small.parameters(), lr=0.5)
micro = [(inputs[a:b], targets[a:b]) for a, b in ((0, 2), (2, 8), (8, 11), (11, 16))]
calls = []
with mock.patch.object(torch.optim.SGD, "step", lambda self, *a, **k: calls.append(1)):
    accumulation_step(small, micro, opt_small)
assert len(calls) == 1, (f"accumulation_step over {len(micro)} micro-batches called optimizer.step() {len(calls)} times: "
                         "the prompt asks for one step after all micro-batches")
small = from_initial()                            # the run above left gradients on the old one
opt_small = torch.optim.SGD(small.parameters(), lr=0.5)
opt_big.zero_grad()
loss, count = token_loss_sum(big(inputs), targets)
(loss / count).backward()
opt_big.step()
returned = accumulation_step(small, micro, opt_small)
if not all(torch.allclose(b, a, atol=1e-6) for a, b in zip(big.parameters(), small.parameters())):
    own_means = from_initial()                    # each micro-batch divided by its own real tokens
    for x_micro, y_micro in micro:
        part, part_count = token_loss_sum(own_means(x_micro), y_micro)
        (part / part_count).backward()
    assert not all(torch.allclose(b.grad, a.grad, atol=1e-9) for a, b in zip(own_means.parameters(), small.parameters())), (
        "accumulation_step: your gradient is each micro-batch's loss divided by its own real tokens, added up; "
        "the whole batch divides every micro-batch by the real tokens of all micro-batches together")
for (name, a), b in zip(big.named_parameters(), small.parameters()):
    assert_close(b, a, f"accumulation_step over micro-batches of 2, 6, 3 and 5 sequences: parameter {name} after the step, "
                 "against one step on the whole batch", atol=1e-6)
whole = (loss / count).item()
assert isinstance(returned, float), f"accumulation_step returns a float (the loss), got {type(returned).__name__}"
last_inputs, last_targets = micro[-1]
with torch.no_grad():
    last_sum, last_count = token_loss_sum(from_initial()(last_inputs), last_targets)
assert abs(returned - (last_sum / last_count).item()) > 1e-9 or abs(returned - whole) < 1e-9, (
    f"accumulation_step returned {returned:.6f}, the last micro-batch's own loss per real token: the prompt asks for "
    f"the whole batch's, all micro-batches' summed losses over their total real tokens ({whole:.6f})")
assert abs(returned - whole) < 1e-9, \
    f"accumulation_step returns the whole batch's loss per real token before the step, {whole:.6f}, got {returned!r}"
fresh_big, fresh_small = tiny_transformer().double(), tiny_transformer().double()
fresh_small.load_state_dict(fresh_big.state_dict())
for p in fresh_small.parameters():
    p.grad = torch.ones_like(p)                                  # left over from an earlier step
opt_a, opt_b = torch.optim.SGD(fresh_big.parameters(), lr=0.5), torch.optim.SGD(fresh_small.parameters(), lr=0.5)
opt_a.zero_grad()
loss, count = token_loss_sum(fresh_big(inputs), targets)
(loss / count).backward()
opt_a.step()
accumulation_step(fresh_small, [(inputs[:5], targets[:5]), (inputs[5:], targets[5:])], opt_b)
for (name, a), b in zip(fresh_big.named_parameters(), fresh_small.parameters()):
    assert_close(b, a, f"accumulation_step on a model still holding gradients of 1 from an earlier step: parameter {name}; "
                 "gradients left from before must not count in this step", atol=1e-6)
### BEGIN HIDDEN TESTS
loss, count = token_loss_sum(torch.zeros(1, 3, 5, dtype=torch.float64), torch.tensor([[1, -100, 2]]))
assert count == 2 and abs(loss.item() - 2 * math.log(5)) < 1e-9, "token_loss_sum: the sum over the real tokens only"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "pitfall_measured", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ### The pitfall, measured (2 points)
#
# Complete `naive_accumulation_gradient(model, micro_batches)`: the gradient (flattened, one
# vector) that the common mistake produces: each micro-batch's **mean** loss, divided by the number
# of micro-batches. The test shows it differs from the correct one when padding is uneven, and
# agrees when every micro-batch has the same number of real tokens.
#
# <details><summary>Hint 1</summary>
#
# Here each micro-batch's loss is `F.cross_entropy`'s usual mean over its own real tokens (padding ignored), divided by the number of micro-batches.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Start from zero gradients, back-propagate every micro-batch's scaled loss, then put every parameter's gradient, flattened, into one vector.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "pitfall", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def naive_accumulation_gradient(model: nn.Module, micro_batches: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Flattened gradient of mean-over-micro-batches of per-micro-batch token means."""
    ### BEGIN SOLUTION
    model.zero_grad()
    for inputs, targets in micro_batches:
        logits = model(inputs)
        loss = F.cross_entropy(logits.flatten(0, -2), targets.flatten(), ignore_index=-100)
        (loss / len(micro_batches)).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
with torch.random.fork_rng():
    torch.manual_seed(0)
    demo_model = tiny_transformer().double()
demo_inputs, demo_targets = padded_batch(16, seed=12)
demo_model.zero_grad()
loss_sum, real = token_loss_sum(demo_model(demo_inputs), demo_targets)
(loss_sum / real).backward()
whole_batch = torch.cat([p.grad.flatten() for p in demo_model.parameters()])     # the gradient to match
for first in (8, 4, 2, 1):
    micro = [(demo_inputs[:first], demo_targets[:first]), (demo_inputs[first:], demo_targets[first:])]
    naive = naive_accumulation_gradient(demo_model, micro)                       # (parameters,)
    tokens = [int((t != -100).sum()) for _, t in micro]
    print(f"micro-batches of {first:>2} and {16 - first:>2} sequences ({tokens[0]:>3} and {tokens[1]:>3} real tokens): "
          f"naive gradient off by {((naive - whole_batch).norm() / whole_batch.norm()).item():.0%}, "
          f"cosine {F.cosine_similarity(naive, whole_batch, dim=0).item():.3f}")


# %% nbgrader={"grade": true, "grade_id": "test_pitfall", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""The naive gradient is wrong with uneven padding and right when every micro-batch has as many real tokens."""
inputs, targets = padded_batch(16, seed=0)
torch.manual_seed(1)
model = tiny_transformer().double()
def correct_gradient(micro_batches):
    model.zero_grad()
    loss, count = token_loss_sum(model(torch.cat([i for i, _ in micro_batches])), torch.cat([t for _, t in micro_batches]))
    (loss / count).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])
uneven = [(inputs[:8], targets[:8]), (inputs[8:], targets[8:])]
numbers = sum(p.numel() for p in model.parameters())
naive = naive_accumulation_gradient(model, uneven)
assert naive.ndim == 1 and naive.numel() == numbers, (
    f"naive_accumulation_gradient returns {tuple(naive.shape)}, the model has {numbers} parameter numbers: "
    "one flat vector holding every parameter's gradient")
again = naive_accumulation_gradient(model, uneven)
assert torch.allclose(again, naive, atol=1e-12), (
    "naive_accumulation_gradient called twice on the same micro-batches gives a different gradient the second time: "
    "the first call's gradients were added to; start from zero gradients")
correct = correct_gradient(uneven)
relative = ((naive - correct).norm() / correct.norm()).item()
print(f"uneven padding: the naive gradient is off by {relative:.1%}")
full = inputs[:4], torch.randint(0, 100, (4, 12))
even = [(full[0][:2], full[1][:2]), (full[0][2:], full[1][2:])]
naive_even, correct_even = naive_accumulation_gradient(model, even), correct_gradient(even)
assert not torch.allclose(naive_even, len(even) * correct_even, atol=1e-10), (
    f"without padding, naive_accumulation_gradient over {len(even)} micro-batches is {len(even)} times the whole batch's "
    "gradient: the prompt divides each micro-batch's mean loss by the number of micro-batches")
assert relative > 1e-3, ("with uneven padding (micro-batches of 8 sequences each, with different numbers of real tokens) "
                         "the naive gradient must differ from the whole batch's, yet they agree")
assert_close(naive_even, correct_even, "naive_accumulation_gradient without padding: it agrees with the whole batch's gradient",
             atol=1e-10)
each = [correct_gradient([micro]) for micro in uneven]        # each micro-batch's own token mean
if not torch.allclose(naive, sum(each) / len(each), atol=1e-10):
    model.zero_grad()
    for x_micro, y_micro in uneven:                            # padding counted as class 0
        F.cross_entropy(model(x_micro).flatten(0, -2), y_micro.flatten().clamp(min=0)).div(len(uneven)).backward()
    padded_in = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert not torch.allclose(naive, padded_in, atol=1e-10), (
        "naive_accumulation_gradient counts the padded positions (targets -100) in each micro-batch's mean: "
        "the mean is over real tokens only")
assert_close(naive, sum(each) / len(each),
             "naive_accumulation_gradient with uneven padding: the mean over micro-batches of each one's mean over its "
             "real tokens", atol=1e-10)
### BEGIN HIDDEN TESTS
g = naive_accumulation_gradient(model, uneven)
assert g.ndim == 1 and g.numel() == sum(p.numel() for p in model.parameters()), "naive_accumulation_gradient: one flat vector"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_3_mixed_precision", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 4 · Exercise 3: mixed precision (3 points)
#
# float16 has 5 exponent bits: its smallest positive number is about $6 \times 10^{-8}$ (a subnormal),
# and anything below half of it becomes 0. Gradients of a deep
# network are often that small, so float16 training multiplies the loss by a **scale** $S$ (say
# $2^{16}$) before `backward` and divides the gradients by $S$ before the step (`torch.amp.GradScaler`
# does this and adapts $S$). bfloat16 keeps float32's 8 exponent bits and needs no scaling, at the
# cost of precision (7 stored mantissa bits, float32 has 23).
#
# * `through_float16(values, scale)`: what survives a trip through float16 with loss scaling:
#   `(values * scale).half().float() / scale`.
# * `mixed_precision_step(model, inputs, targets, optimizer, device, scaler=None, dtype=None)`: one
#   training step (zero the gradients first) on the token-level cross-entropy, averaged over the real
#   tokens (`F.cross_entropy` on the flattened logits in float32, `ignore_index=-100`), with the
#   forward pass under `torch.autocast(device.type, dtype)`; `dtype=None`
#   means bfloat16 on CPU and float16 on CUDA (the CPU's autocast runs float16 too, which the test
#   uses to exercise loss scaling without a GPU). Autocast casts per operation: leave the parameters
#   in float32. When a `GradScaler` is given, scale the loss before back-propagating, let the scaler
#   make the optimizer step (it unscales the gradients in place, and skips steps whose gradients
#   overflowed), then let it update its scale. Return the loss as a float.
#
# > **Targets (tested).** 15 steps of AdamW (lr 3e-3) on one batch lower its loss by at least 0.5
# > nats. In float16, on a model so confident that each token's gradient is about $10^{-8}$: without a
# > scaler the output layer's gradient is exactly 0; with the loss scaled by $2^{16}$ (and unscaled
# > before the step) it is within 2% of the float64 gradient; with a scale of $2^{60}$ the gradients
# > overflow, the parameters do not move, and the scale is halved.
#
# <details><summary>Hint 1</summary>
#
# `through_float16` is a single line: the order of the scaling, the cast and the unscaling is what matters.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Only the forward pass and the loss go inside `torch.autocast(device.type, dtype=dtype)`; `backward` and the step come after it.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# With a scaler, three calls replace `loss.backward()` and `optimizer.step()`: scale the loss and back-propagate it, let the scaler step the optimizer, then update the scaler.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "mixed_precision", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def through_float16(values: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Values after scaling, a round trip through float16, and unscaling."""
    ### BEGIN SOLUTION
    return (values * scale).half().float() / scale
    ### END SOLUTION


def mixed_precision_step(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, optimizer: torch.optim.Optimizer,
                         device: torch.device, scaler: "torch.amp.GradScaler | None" = None,
                         dtype: torch.dtype | None = None) -> float:
    """One step with autocast (default: bfloat16 on CPU, float16 + loss scaling on CUDA)."""
    ### BEGIN SOLUTION
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    optimizer.zero_grad()
    with torch.autocast(device.type, dtype=dtype):
        logits = model(inputs)
        loss = F.cross_entropy(logits.flatten(0, -2).float(), targets.flatten(), ignore_index=-100)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss.item()
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
small_gradients = torch.tensor([1e-3, 1e-5, 1e-7, 1e-8, 1e-9])
print("value        ", [f"{v:.0e}" for v in small_gradients.tolist()])
print("float16      ", [f"{v:.1e}" for v in through_float16(small_gradients).tolist()])
print("float16 x2^16", [f"{v:.1e}" for v in through_float16(small_gradients, 2.0 ** 16).tolist()])

# %% nbgrader={"grade": true, "grade_id": "test_mixed_precision", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""Small gradients vanish in float16 and survive with scaling; the autocast dtype follows dtype and its default; the loss is
the mean over real tokens, from zeroed gradients; mixed-precision steps lower the loss; in float16 an unscaled loss loses
the gradients, a scaled one keeps them, and a step whose scaled gradients overflow is skipped."""
tiny = torch.tensor([1e-8, 3e-9])
assert (through_float16(tiny) == 0).all(), \
    f"through_float16(tensor([1e-8, 3e-9])): below float16's smallest subnormal, values become 0, got {through_float16(tiny).tolist()}"
kept = through_float16(tiny, 2.0 ** 16)
assert not torch.allclose(kept, tiny * 2.0 ** 16, rtol=2e-3, atol=0), (
    "through_float16(tensor([1e-8, 3e-9]), 2**16) comes back 2^16 times larger: the prompt divides by the scale "
    "after the round trip")
assert not (kept == 0).all(), ("through_float16(tensor([1e-8, 3e-9]), 2**16) gives zeros: the values underflowed anyway; "
                               "is the scale applied before the cast to float16?")
assert_close(kept, tiny, "through_float16(tensor([1e-8, 3e-9]), 2**16): scaled by 2^16 they survive", rtol=2e-3, atol=0)
def confident_model() -> nn.Module:
    """An identity embedding, then a linear layer that gives the right token a logit 12 above the others."""
    model = nn.Sequential(nn.Embedding(8, 8), nn.Linear(8, 8))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(8))
        model[1].weight.copy_(12 * torch.eye(8))
        model[1].bias.zero_()
    return model.to(device)
tokens = torch.arange(8, device=device).repeat(8, 32)           # (8, 256): predict each token itself
original = torch.autocast.__init__
def autocast_dtypes(**options) -> list:
    """The dtypes autocast was entered with during one mixed_precision_step on a small model (learning rate 0)."""
    seen = []
    def spy(self, device_type, *args, **kwargs):
        seen.append(kwargs.get("dtype", args[0] if args else None))
        return original(self, device_type, *args, **kwargs)
    probe = confident_model()
    with mock.patch.object(torch.autocast, "__init__", spy):
        mixed_precision_step(probe, tokens, tokens, torch.optim.SGD(probe.parameters(), lr=0.0), device, **options)
    return seen
default = torch.float16 if device.type == "cuda" else torch.bfloat16
other = torch.bfloat16 if default == torch.float16 else torch.float16
given = autocast_dtypes(dtype=other)
assert given == [other], (f"mixed_precision_step(..., dtype={other}) on {device.type} ran autocast with {given}: "
                          "is the dtype argument used?")
seen = autocast_dtypes()
assert seen == [default], (f"mixed_precision_step(..., dtype=None) on {device.type} ran autocast with {seen}: "
                           "the prompt's default is bfloat16 on CPU and float16 on CUDA")
# a model whose logits are all 0: the loss is log 8 per real token, whatever the dtype
zero_model = nn.Sequential(nn.Embedding(8, 8), nn.Linear(8, 8)).to(device)
nn.init.zeros_(zero_model[1].weight)
nn.init.zeros_(zero_model[1].bias)
some_padding = tokens.clone()
some_padding[:, 200:] = -100                                     # 8 * 200 real tokens
for p in zero_model.parameters():
    p.grad = torch.ones_like(p)                                  # left over from an earlier step
uniform_loss = mixed_precision_step(zero_model, tokens, some_padding, torch.optim.SGD(zero_model.parameters(), lr=0.0), device)
assert abs(uniform_loss - 8 * 200 * math.log(8)) > 1, (
    f"mixed_precision_step on a model whose logits are all 0 returned {uniform_loss:.1f} = 1600 x log 8: the loss summed "
    "over the 1600 real tokens; the prompt averages over the real tokens")
assert abs(uniform_loss - math.log(8)) < 1e-3, (
    f"mixed_precision_step on a model whose logits are all 0 (and targets -100 after position 200): expected the "
    f"cross-entropy log 8 = {math.log(8):.4f} per real token, got {uniform_loss:.4f}")
assert zero_model[0].weight.grad.abs().max() < 0.5, (
    "mixed_precision_step on a model holding gradients of 1 from an earlier step: they are still in its gradients "
    "(this step's are 0 for the embedding); the prompt zeroes the gradients first")
torch.manual_seed(0)
model = tiny_transformer().to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
x, y = padded_batch(32, seed=3)
x, y = x.to(device), y.to(device)
losses = [mixed_precision_step(model, x, y, optimizer, device, scaler) for _ in range(15)]
print(f"15 mixed-precision steps on one batch: loss {losses[0]:.2f} -> {losses[-1]:.2f}")
assert losses[-1] < losses[0] - 0.5, (f"15 steps of AdamW (lr 3e-3) on one repeated batch: the loss should fall by at least "
                                      f"0.5, got {losses[0]:.2f} -> {losses[-1]:.2f}")
# float16 on any device: a confident model's gradients per token (about 1e-8) underflow unless the loss is scaled
exact_model = confident_model().double()
F.cross_entropy(exact_model(tokens).flatten(0, -2), tokens.flatten()).backward()
exact = exact_model[1].weight.grad                               # (8, 8)
float16_grads = {}
for scaler16 in (None, torch.amp.GradScaler(device.type, init_scale=2.0 ** 16)):
    model16 = confident_model()
    try:
        mixed_precision_step(model16, tokens, tokens, torch.optim.SGD(model16.parameters(), lr=0.0), device,
                             scaler=scaler16, dtype=torch.float16)
    except (AssertionError, RuntimeError) as error:
        if "No inf checks" in str(error):
            raise AssertionError(f"mixed_precision_step with a GradScaler raised {type(error).__name__} ({error}): "
                                 "the scaler was updated without having made the step; the prompt lets the scaler make "
                                 "the optimizer step") from None
        if "_scale is None" in str(error):
            raise AssertionError(f"mixed_precision_step with a GradScaler raised {type(error).__name__} ({error}): "
                                 "the scaler made the step, but the loss was never scaled before backward") from None
        raise
    float16_grads[scaler16 is not None] = model16[1].weight.grad.double()
relative = ((float16_grads[True] - exact).norm() / exact.norm()).item()
print(f"float16, output layer's gradient: exact |max| {exact.abs().max():.2e}; without scaling |max| "
      f"{float16_grads[False].abs().max():.2e}; scaled by 2^16 and unscaled: |max| {float16_grads[True].abs().max():.2e}, "
      f"off by {relative:.2%}")
assert (float16_grads[False] == 0).all(), \
    f"float16 without a scaler: per-token gradients of ~1e-8 underflow to 0, got |max| {float16_grads[False].abs().max():.2e}"
assert not (float16_grads[True] == 0).all(), (
    "float16 with a GradScaler of 2^16: the output layer's gradient still underflows to 0: was the loss scaled "
    "before backward?")
ratio = (float16_grads[True].norm() / exact.norm()).item()
assert abs(ratio - 2.0 ** 16) > 0.02 * 2.0 ** 16, (
    "float16 with a GradScaler of 2^16: the output layer's gradient is 2^16 times the exact one when the optimizer "
    "steps: the gradients were never unscaled; the prompt lets the scaler make the step (it unscales first)")
assert relative < 2e-2, (f"float16 with the loss scaled by 2^16 (unscaled before the step): expected the float64 gradient "
                         f"within 2%, off by {relative:.1%}")
# a scale so large that the float16 gradients overflow: the scaler skips that step and halves its scale
model16, too_large = confident_model(), torch.amp.GradScaler(device.type, init_scale=2.0 ** 60)
before = [p.detach().clone() for p in model16.parameters()]
mixed_precision_step(model16, tokens, tokens, torch.optim.SGD(model16.parameters(), lr=0.1), device,
                     scaler=too_large, dtype=torch.float16)
assert all(torch.equal(p, b) for p, b in zip(model16.parameters(), before)), (
    "a GradScaler of 2^60 makes the float16 gradients overflow (inf), yet the parameters moved: such a step must be "
    "skipped; the prompt lets the scaler make the step, it skips such steps")
assert too_large.get_scale() == 2.0 ** 59, (f"after an overflow the scaler's update halves the scale: expected 2^59, "
                                            f"got {too_large.get_scale():.3g}; was the scaler updated after the step?")
# loss scaling changes nothing but the gradients' range: two steps with a GradScaler (and gradients
# left over from before) end where two steps without one do
torch.manual_seed(0)
plain_model, scaled_model = tiny_transformer().to(device), tiny_transformer().to(device)
scaled_model.load_state_dict(plain_model.state_dict())
for p in scaled_model.parameters():
    p.grad = torch.ones_like(p)
opt_plain = torch.optim.SGD(plain_model.parameters(), lr=0.1)
opt_scaled = torch.optim.SGD(scaled_model.parameters(), lr=0.1)
grad_scaler = torch.amp.GradScaler(device.type, init_scale=2.0 ** 10)
for _ in range(2):
    mixed_precision_step(plain_model, x, y, opt_plain, device, scaler=None)
    mixed_precision_step(scaled_model, x, y, opt_scaled, device, scaler=grad_scaler)
for a, b in zip(plain_model.parameters(), scaled_model.parameters()):
    assert_close(b, a, "two steps with a GradScaler (scaled loss, unscaled step) against two without", atol=1e-6)
### BEGIN HIDDEN TESTS
assert all(p.dtype == torch.float32 for p in model.parameters()), "mixed_precision_step: the parameters stay float32 (autocast casts per operation)"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_4_activation_checkpointing", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 5 · Exercise 4: activation checkpointing (3 points)
#
# Instead of keeping every layer's activations for the backward pass, keep only each layer's
# **input** and recompute the layer during `backward` (Chen et al., 2016): one extra forward pass
# buys activation memory. Complete `CheckpointedStack(layers, use_checkpoint=True)`: `forward(x)`
# applies the layers in order, each through `torch.utils.checkpoint.checkpoint(layer, x,
# use_reentrant=False)` when `use_checkpoint`, plainly otherwise.
#
# > **Targets (tested).** The gradients with and without checkpointing agree (to 1e-5), and on six
# > encoder layers of width 128 over 16 sequences of 256 tokens, forward + backward with
# > checkpointing peaks at most at **60%** of the plain stack's memory (at least 40% less). Memory is
# > counted, not sampled (`course_utils.memory.peak_memory`: every tensor alive at once), so the
# > figure does not depend on how busy the machine is.
#
# <details><summary>Hint 1</summary>
#
# `forward` is a loop over `self.layers` that feeds each layer's output to the next.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Inside the loop, each layer either goes through `checkpoint` (with the arguments the prompt gives) or is called directly, as `self.use_checkpoint` says.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "checkpointing", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class CheckpointedStack(nn.Module):
    """Layers applied in order, optionally recomputing each one's activations in the backward pass."""

    def __init__(self, layers: nn.ModuleList, use_checkpoint: bool = True) -> None:
        super().__init__()
        self.layers, self.use_checkpoint = layers, use_checkpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        for layer in self.layers:
            x = checkpoint(layer, x, use_reentrant=False) if self.use_checkpoint else layer(x)
        return x
        ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "measure_checkpointing", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
def encoder_layers(n: int, d: int = 128) -> nn.ModuleList:
    return nn.ModuleList(nn.TransformerEncoderLayer(d, 4, 4 * d, 0.0, batch_first=True) for _ in range(n))


def train_step_memory(stack: CheckpointedStack, x: torch.Tensor) -> tuple[float, float]:
    """(peak MiB of forward + backward above the inputs, seconds of one unmeasured step)."""
    def step():
        stack(x).square().mean().backward()
    _, peak = peak_memory(step, x.device)
    start = time.perf_counter()
    step()
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return peak / 2**20, time.perf_counter() - start


# %% slideshow={"slide_type": "fragment"}
with torch.random.fork_rng():
    torch.manual_seed(0)
    demo_layers = encoder_layers(3)
    demo_x = torch.randn(2, 8, 128, requires_grad=True)
for flag in (False, True):
    layer_calls = []
    hooks = [layer.register_forward_pre_hook(lambda *_, i=i: layer_calls.append(i)) for i, layer in enumerate(demo_layers)]
    demo_out = CheckpointedStack(demo_layers, use_checkpoint=flag)(demo_x)       # (2, 8, 128)
    in_forward = list(layer_calls)
    demo_out.square().mean().backward()
    for hook in hooks:
        hook.remove()
    print(f"use_checkpoint={flag!s:<5}: output {tuple(demo_out.shape)}; layers run in the forward pass {in_forward}, "
          f"in the backward pass {layer_calls[len(in_forward):]}")


# %% nbgrader={"grade": true, "grade_id": "test_checkpointing", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""CheckpointedStack applies the layers in order with and without checkpointing, one checkpoint per layer when asked;
checkpointed gradients equal plain ones; the checkpointed stack uses at least 40% less memory for forward + backward."""
torch.manual_seed(0)
layers = encoder_layers(6).to(device)
x = torch.randn(16, 256, 128, device=device, requires_grad=True)
plain, ckpt = CheckpointedStack(layers, use_checkpoint=False), CheckpointedStack(layers, use_checkpoint=True)
few = x[:2].detach().requires_grad_()                   # gradients: two sequences are enough
with torch.no_grad():
    in_order = nn.Sequential(*layers)(few)
    for flag in (True, False):
        out = CheckpointedStack(layers, use_checkpoint=flag)(few)
        name = f"CheckpointedStack(layers, use_checkpoint={flag})(x) for 6 layers"
        assert out.shape == in_order.shape, f"{name}: expected shape {tuple(in_order.shape)}, got {tuple(out.shape)}"
        if not torch.allclose(out, in_order, atol=1e-5):
            assert not torch.allclose(out, nn.Sequential(*reversed(layers))(few), atol=1e-5), \
                f"{name}: the layers ran last to first; the prompt applies them in order"
            assert not torch.allclose(out, layers[0](few), atol=1e-5), \
                f"{name}: only the first layer was applied; the prompt applies every layer, in order"
        assert_close(out, in_order, f"{name} against nn.Sequential(*layers)(x)", atol=1e-5)
calls = []
spy = lambda f, *a, **k: calls.append(k) or f(*a)
with mock.patch.dict(globals(), {"checkpoint": spy}), mock.patch("torch.utils.checkpoint.checkpoint", spy):
    CheckpointedStack(layers, use_checkpoint=False)(x[:1])
    assert not calls, (f"CheckpointedStack(layers, use_checkpoint=False) called checkpoint {len(calls)} times: "
                       "with use_checkpoint=False the layers run plainly")
    CheckpointedStack(layers)(x[:1])
assert len(calls) == 6 and all(k.get("use_reentrant") is False for k in calls), \
    f"CheckpointedStack(layers) on 6 layers: one checkpoint(layer, x, use_reentrant=False) per layer, got {len(calls)} calls with {calls[:1]}"
plain(few).square().mean().backward()
expected = [few.grad.clone()] + [p.grad.clone() for p in layers.parameters()]
few.grad = None
layers.zero_grad(set_to_none=True)
ckpt(few).square().mean().backward()
got = [few.grad] + [p.grad for p in layers.parameters()]
missing = [i for i, g in enumerate(got) if g is None]
assert not missing, (f"after backward through CheckpointedStack(layers), {len(missing)} of {len(got)} tensors (the input x "
                     "and the layers' parameters, first ones first) got no gradient: is some layer's input cut off from "
                     "the graph?")
for e, g in zip(expected, got):
    assert_close(g, e, "gradients with and without checkpointing", atol=1e-5)
layers.zero_grad(set_to_none=True)
plain_mb = peak_memory(lambda: plain(x).square().mean().backward(), device)[1] / 2**20
layers.zero_grad(set_to_none=True)
ckpt_mb = peak_memory(lambda: ckpt(x).square().mean().backward(), device)[1] / 2**20
print(f"forward + backward of 16 sequences: plain {plain_mb:.0f} MiB, checkpointed {ckpt_mb:.0f} MiB")
assert ckpt_mb <= 0.6 * plain_mb, f"expected at least 40% less memory: plain {plain_mb:.0f} MiB, checkpointed {ckpt_mb:.0f} MiB"
### BEGIN HIDDEN TESTS
with torch.no_grad():
    for flag in (False, True):
        assert_close(CheckpointedStack(layers, flag)(x[:2]), nn.Sequential(*layers)(x[:2]),
                     f"CheckpointedStack(layers, use_checkpoint={flag}): the layers in order, like nn.Sequential", atol=1e-5)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_5_data_parallelism", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 6 · Exercise 5: data parallelism (3 + 2 points)
#
# Each of $W$ processes holds a full copy of the model and a $1/W$ share of the global batch. After
# `backward`, the gradients are **averaged** across processes (an all-reduce), so every copy takes
# the same step: the same result as one process on the global batch. `torchrun` starts the
# processes; `torch.distributed` connects them (gloo on CPU, NCCL on GPUs).
#
# * `average_gradients(model)`: for every parameter, `dist.all_reduce` its gradient (sum) and
#   divide by `dist.get_world_size()`.
# * `wrap_ddp(model)`: return `DistributedDataParallel(model)` (it does the same all-reduce,
#   bucketed and overlapped with the backward pass).
#
# Both functions are copied into a script that `torchrun` runs on 2 processes; the test compares
# the parameters after 5 steps with single-process training on the global batch. The script uses
# the gloo backend on the CPU everywhere: NCCL wants one GPU per process, and two processes on one
# GPU are refused; on a multi-GPU machine you would pass `"nccl"` and move each rank's model to
# `cuda:{rank}`.
#
# <details><summary>Hint 1</summary>
#
# `dist.all_reduce` changes the tensor it is given, in place, on every process: after it, each process holds the sum over all of them.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Loop over `model.parameters()`, skip those without a gradient, all-reduce each gradient with `dist.ReduceOp.SUM`, then divide it by `dist.get_world_size()`.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "data_parallel", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def average_gradients(model: nn.Module) -> None:
    """All-reduce (sum) every gradient and divide by the number of processes."""
    ### BEGIN SOLUTION
    world = dist.get_world_size()
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= world
    ### END SOLUTION


def wrap_ddp(model: nn.Module) -> nn.Module:
    """Wrap the model in DistributedDataParallel."""
    ### BEGIN SOLUTION
    return DistributedDataParallel(model)
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
# Two replicas in this process stand in for two ranks, each with half of a batch of 8; a stand-in
# for dist.all_reduce (SUM) gives every rank the sum of both ranks' gradients.
with torch.random.fork_rng():
    torch.manual_seed(0)
    replicas = [nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 4)).double() for _ in range(3)]
    demo_x, demo_y = torch.randn(8, 16, dtype=torch.float64), torch.randint(0, 4, (8,))
for replica in replicas[1:]:
    replica.load_state_dict(replicas[0].state_dict())
F.cross_entropy(replicas[2](demo_x), demo_y).backward()                         # one process, whole batch
for rank in range(2):
    F.cross_entropy(replicas[rank](demo_x[4 * rank:4 * rank + 4]), demo_y[4 * rank:4 * rank + 4]).backward()
flat = lambda model: torch.cat([p.grad.flatten() for p in model.parameters()])
print(f"before: rank 0's gradient differs from the whole batch's by {(flat(replicas[0]) - flat(replicas[2])).abs().max():.2e}")
summed = {id(a.grad): a.grad + b.grad for a, b in zip(replicas[0].parameters(), replicas[1].parameters())}
summed.update({id(b.grad): summed[id(a.grad)] for a, b in zip(replicas[0].parameters(), replicas[1].parameters())})
with mock.patch.object(dist, "get_world_size", return_value=2), \
        mock.patch.object(dist, "all_reduce", lambda t, op=dist.ReduceOp.SUM, **kwargs: t.copy_(summed[id(t)])):
    for rank in range(2):
        average_gradients(replicas[rank])
print(f"after average_gradients: ranks 0 and 1 differ by {(flat(replicas[0]) - flat(replicas[1])).abs().max():.2e}, "
      f"rank 0 and the whole batch by {(flat(replicas[0]) - flat(replicas[2])).abs().max():.2e}")


# %% nbgrader={"grade": false, "grade_id": "launch", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
SCRIPT = '''
import os, sys, torch, torch.nn as nn, torch.nn.functional as F
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
torch.set_num_threads(1)
{functions}
def main(mode, out):
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 4)).double()
    if mode == "ddp":
        model = wrap_ddp(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    for step in range(5):
        x, y = torch.randn(8, 16, generator=g, dtype=torch.float64), torch.randint(0, 4, (8,), generator=g)
        share = slice(rank * 8 // world, (rank + 1) * 8 // world)
        optimizer.zero_grad()
        F.cross_entropy(model(x[share]), y[share]).backward()
        if mode == "manual":
            average_gradients(model)
        optimizer.step()
    if rank == 0:
        module = model.module if mode == "ddp" else model
        torch.save(module.state_dict(), out)
    dist.barrier()                     # everyone is done
    sys.stdout.flush()
    os._exit(0)                        # skip gloo's teardown at interpreter exit, which can abort (a known race)
main(sys.argv[1], sys.argv[2])
'''


def single_process_reference() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 4)).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    for step in range(5):
        x, y = torch.randn(8, 16, generator=g, dtype=torch.float64), torch.randint(0, 4, (8,), generator=g)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.state_dict()


def torchrun(script: str, mode: str, processes: int, prefix: str) -> Path:
    """Write the script to a new folder and run it with torchrun (argv: mode, output file); return the output file."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    (folder / "train.py").write_text(script)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               str(folder / "train.py"), mode, str(folder / "out.pt")]
    start = time.perf_counter()
    for attempt in range(2):                      # one retry: process start-up can race on a busy machine
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
        if result.returncode == 0:
            break
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if "Error" in line or "error" in line]
        raise RuntimeError(f"torchrun failed ({result.returncode}); the processes said:\n" + "\n".join(errors[-15:]))
    print(f"torchrun with {processes} processes ({mode}) took {time.perf_counter() - start:.1f} s")
    return folder / "out.pt"


def run_data_parallel(mode: str, processes: int = 2) -> dict[str, torch.Tensor]:
    """Write the script with your functions, launch it with torchrun, return rank 0's final parameters."""
    functions = inspect.getsource(average_gradients) + "\n" + inspect.getsource(wrap_ddp)
    return torch.load(torchrun(SCRIPT.format(functions=functions), mode, processes, "ddp-"))


# %% nbgrader={"grade": true, "grade_id": "test_average_gradients", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""average_gradients leaves every process the mean gradient (first with a stand-in all-reduce of 4 equal
processes, in this one); two real processes end with the parameters of one process on the global batch."""
def averaged_with_stand_in(model: nn.Module, world: int) -> list:
    """Run average_gradients as if `world` processes all held gradients of ones; return the all_reduce calls' ops."""
    reduce_calls, reduced = [], []
    def stand_in_all_reduce(t, op=dist.ReduceOp.SUM, **kwargs):
        reduce_calls.append(op)
        reduced.append(t)
        return t.mul_(world) if op == dist.ReduceOp.SUM else t   # AVG (or MAX, MIN) of equal values: t itself
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    gradients = [p.grad for p in model.parameters()]
    with mock.patch.object(dist, "get_world_size", return_value=world), mock.patch.object(dist, "all_reduce", stand_in_all_reduce):
        average_gradients(model)
    assert all(op == dist.ReduceOp.SUM for op in reduce_calls), (
        f"average_gradients called dist.all_reduce with op {reduce_calls[:1]}: the prompt sums (ReduceOp.SUM), "
        "then divides by the world size")
    assert all(any(t is g for g in gradients) for t in reduced), (
        "average_gradients gave dist.all_reduce a copy of a gradient: all_reduce works in place, so the sum went into "
        "the copy and was thrown away; reduce the gradient tensor itself")
    for name, p in model.named_parameters():
        value = p.grad.flatten()[0].item()
        assert value != world, (f"{world} processes, each with gradient 1: {name}'s gradient is {value:g}, the sum; "
                                "the prompt asks for the mean")
        assert value != world / 2 or world == 2, (
            f"{world} processes, each with gradient 1: {name}'s gradient is {value:g} = {world} / 2; "
            "is the sum divided by the number of processes?")
        assert torch.equal(p.grad, torch.ones_like(p)), \
            f"{world} processes, each with gradient 1: the mean is 1, {name} got {p.grad.flatten()[:3].tolist()}"
    return reduce_calls
calls = averaged_with_stand_in(nn.Linear(3, 2), world=4)
assert len(calls) == 2, f"average_gradients(nn.Linear(3, 2)): one all_reduce per parameter (2), got {len(calls)}"
reference = single_process_reference()
manual = run_data_parallel("manual")
for name, value in reference.items():
    assert_close(manual[name], value, f"{name} after 5 steps on 2 processes (average_gradients) against one process "
                 "on the global batch", atol=1e-10)
### BEGIN HIDDEN TESTS
calls = averaged_with_stand_in(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), world=3)
assert len(calls) == 4, f"average_gradients on 4 parameters: one all_reduce per parameter (4), got {len(calls)}"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_ddp", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""wrap_ddp returns DistributedDataParallel(model) (first checked with a stand-in class, in this process);
DistributedDataParallel on two processes gives the same parameters too."""
class StandIn:
    def __init__(self, module, *args, **kwargs):
        self.module = module
def wrap_with_stand_in(model: nn.Module):
    """wrap_ddp(model) with DistributedDataParallel replaced by StandIn wherever it may be looked up."""
    with mock.patch.dict(globals(), {"DistributedDataParallel": StandIn}), \
            mock.patch("torch.nn.parallel.DistributedDataParallel", StandIn), \
            mock.patch("torch.nn.parallel.distributed.DistributedDataParallel", StandIn):
        return wrap_ddp(model)
probe = nn.Linear(3, 2)
wrapped = wrap_with_stand_in(probe)
assert not isinstance(wrapped, nn.DataParallel), (
    "wrap_ddp(model) returned nn.DataParallel: it runs threads in one process; the prompt asks for "
    "DistributedDataParallel, one process per copy of the model")
assert wrapped is not probe, "wrap_ddp(model) returned the model itself: the prompt asks for it wrapped in DistributedDataParallel"
assert isinstance(wrapped, StandIn) and wrapped.module is probe, \
    f"wrap_ddp(model): expected DistributedDataParallel(model), got {type(wrapped).__name__}"
reference = single_process_reference()
ddp = run_data_parallel("ddp")
for name, value in reference.items():
    assert_close(ddp[name], value, f"{name} after 5 steps on 2 processes (wrap_ddp) against one process on the global batch",
                 atol=1e-10)
### BEGIN HIDDEN TESTS
probe = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
wrapped = wrap_with_stand_in(probe)
assert isinstance(wrapped, StandIn) and wrapped.module is probe, "wrap_ddp(model): the very model, wrapped (not a copy)"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_6_zero", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 7 · Exercise 6: sharding the optimizer state, ZeRO stage 1 (4 points)
#
# Data parallelism keeps a full copy of AdamW's two moments on every process, though each process
# computes the very same update. **ZeRO stage 1** (Rajbhandari et al., 2019) splits the work: the
# parameters are flattened into one vector of `numel` numbers, rank $r$ of $W$ owns a contiguous
# shard of it, keeps AdamW's state for that shard only, updates only that shard, and an
# **all-gather** then hands every rank the whole updated vector. The optimizer state per rank falls
# to about $1/W$; gradients and parameters stay whole (stages 2 and 3 shard those too).
#
# * `shard_bounds(numel, rank, world)`: with shards of $s = \lceil \text{numel} / W \rceil$ numbers,
#   rank $r$ owns `[min(r * s, numel), min((r + 1) * s, numel))`; the last shards may be shorter
#   or empty. Return `(start, stop)`.
# * `ZeroAdamW(params, **adamw_options)`, for a process group that is already initialised:
#   `__init__` keeps `self.params` (a list), copies this rank's slice of the flattened parameters
#   into one tensor and keeps `self.optimizer = torch.optim.AdamW([that tensor], **adamw_options)`.
#   `step()`: flatten the gradients, `dist.all_reduce` them and divide by the world size (the mean,
#   as in exercise 5), give the rank's slice of it to its tensor as `.grad`, step `self.optimizer`,
#   then `dist.all_gather` every rank's updated shard (pad each to $s$ numbers: all-gather wants
#   equal sizes) and copy the result into the parameters. `zero_grad()` sets every `p.grad` to None.
#   The test first builds one in this process with `dist.get_world_size` and `dist.get_rank` stood in
#   (2 ranks, rank 1), so `__init__` and `zero_grad` may use nothing else of `torch.distributed`.
#
# AdamW works number by number, so the ranks together take the step of one AdamW on the whole
# model (up to rounding). Do not use `ZeroRedundancyOptimizer` or FSDP here: they come after the test.
#
# <details><summary>Hint 1</summary>
#
# Everything is indexed in one flat vector: `torch.cat` of the flattened parameters (or gradients), and `shard_bounds` tells this rank which slice of it is its own.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# The rank's tensor is a detached copy of its slice that requires grad; in `step`, its `.grad` is its slice of the averaged flat gradient, and after `self.optimizer.step()` it holds the rank's updated numbers.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# For the all-gather, pad the tensor with zeros to $s$ numbers, gather into a list of $W$ empty tensors of that size, concatenate, cut to `numel`, and copy back into each parameter by splitting at the parameters' sizes.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "zero", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def shard_bounds(numel: int, rank: int, world: int) -> tuple[int, int]:
    """[start, stop) of rank's shard of a flat vector: shards of ceil(numel / world), the last ones shorter."""
    ### BEGIN SOLUTION
    size = math.ceil(numel / world)
    return min(rank * size, numel), min((rank + 1) * size, numel)
    ### END SOLUTION


class ZeroAdamW:
    """AdamW whose state is sharded across the ranks (ZeRO stage 1): each rank updates its shard, then all-gather."""

    def __init__(self, params, **adamw_options) -> None:
        ### BEGIN SOLUTION
        self.params = list(params)
        self.world, self.rank = dist.get_world_size(), dist.get_rank()
        self.numel = sum(p.numel() for p in self.params)
        self.shard_size = math.ceil(self.numel / self.world)
        self.start, self.stop = shard_bounds(self.numel, self.rank, self.world)
        flat = torch.cat([p.detach().flatten() for p in self.params])                    # (numel,)
        self.shard = flat[self.start:self.stop].clone().requires_grad_()                  # (stop - start,)
        self.optimizer = torch.optim.AdamW([self.shard], **adamw_options)
        ### END SOLUTION

    def zero_grad(self) -> None:
        """Set every parameter's gradient to None."""
        ### BEGIN SOLUTION
        for p in self.params:
            p.grad = None
        ### END SOLUTION

    @torch.no_grad()
    def step(self) -> None:
        """Average the gradients over the ranks, step this rank's shard, all-gather the parameters."""
        ### BEGIN SOLUTION
        grad = torch.cat([p.grad.flatten() for p in self.params])                       # (numel,)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        grad /= self.world
        self.shard.grad = grad[self.start:self.stop].clone()
        self.optimizer.step()
        padded = F.pad(self.shard.detach(), (0, self.shard_size - self.shard.numel()))    # (shard_size,)
        pieces = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(pieces, padded)
        flat = torch.cat(pieces)[:self.numel]                                             # (numel,)
        for p, piece in zip(self.params, flat.split([p.numel() for p in self.params])):
            p.copy_(piece.view_as(p))
        ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
# The model of the runs below has 16 * 31 + 31 + 31 * 4 + 4 = 655 numbers: an odd count, so 2 ranks
# cannot split it evenly.
for numel, world in ((655, 2), (655, 3), (10, 4), (3, 4)):
    bounds = [shard_bounds(numel, rank, world) for rank in range(world)]
    print(f"{numel:>4} numbers on {world} ranks: shards {bounds}, sizes {[stop - start for start, stop in bounds]}")


# %% nbgrader={"grade": false, "grade_id": "launch_zero", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
import ast
import linecache

ZERO_SCRIPT = '''
import math, os, sys, torch, torch.nn as nn, torch.nn.functional as F
import torch.distributed as dist
torch.set_num_threads(1)
{functions}
def local(t):
    return t.to_local() if hasattr(t, "to_local") else t        # FSDP keeps its tensors as DTensors
def main(modes, out):
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    results = {{}}
    for mode in modes.split(","):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(16, 31), nn.Tanh(), nn.Linear(31, 4)).double()
        module = model
        if mode == "zero":                   # yours, with PyTorch's twin switched off
            from unittest import mock
            twin = mock.Mock(side_effect=RuntimeError("ZeroAdamW may not use ZeroRedundancyOptimizer"))
            with mock.patch("torch.distributed.optim.ZeroRedundancyOptimizer", twin):
                optimizer = ZeroAdamW(model.parameters(), lr=0.01, weight_decay=0.1)
            state = optimizer.optimizer.state
        elif mode == "zero_redundancy":      # PyTorch's ZeRO-1; DDP averages the gradients for it
            from torch.distributed.optim import ZeroRedundancyOptimizer
            from torch.nn.parallel import DistributedDataParallel
            model = DistributedDataParallel(module)
            optimizer = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.AdamW, lr=0.01, weight_decay=0.1)
            state = optimizer.optim.state
        else:                                # FSDP2: parameters, gradients and state sharded (ZeRO-3)
            from torch.distributed.fsdp import fully_shard
            for layer in (model[0], model[2]):
                fully_shard(layer)
            fully_shard(model)
            optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
            state = optimizer.state
        g = torch.Generator().manual_seed(1)
        for step in range(5):
            x, y = torch.randn(8, 16, generator=g, dtype=torch.float64), torch.randint(0, 4, (8,), generator=g)
            share = slice(rank * 8 // world, (rank + 1) * 8 // world)
            optimizer.zero_grad()
            F.cross_entropy(model(x[share]), y[share]).backward()
            optimizer.step()
        parameters = {{name: (value.full_tensor() if hasattr(value, "full_tensor") else value).detach().clone()
                       for name, value in module.state_dict().items()}}
        moments = [local(s["exp_avg"]).flatten() for s in state.values()]
        state_bytes = sum(local(t).numel() * local(t).element_size() for s in state.values()
                          for key, t in s.items() if key != "step")
        results[mode] = {{"parameters": parameters, "state_bytes": state_bytes,
                         "exp_avg": torch.cat(moments) if moments else torch.zeros(0, dtype=torch.float64)}}
    gathered = [None] * world
    dist.all_gather_object(gathered, results)
    if rank == 0:
        torch.save(gathered, out)
    dist.barrier()                     # everyone is done
    sys.stdout.flush()
    os._exit(0)                        # skip gloo's teardown at interpreter exit, which can abort (a known race)
main(sys.argv[1], sys.argv[2])
'''


def zero_reference() -> tuple[nn.Module, torch.optim.AdamW]:
    """One process, AdamW, the whole batch: what every ZeRO run must end with."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 31), nn.Tanh(), nn.Linear(31, 4)).double()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    g = torch.Generator().manual_seed(1)
    for step in range(5):
        x, y = torch.randn(8, 16, generator=g, dtype=torch.float64), torch.randint(0, 4, (8,), generator=g)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model, optimizer


def class_source(cls: type) -> str:
    """A class's source, found through one of its methods (inspect.getsource cannot find a notebook's classes)."""
    method = inspect.unwrap(next(f for f in vars(cls).values() if inspect.isfunction(inspect.unwrap(f))))
    cell = "".join(linecache.getlines(inspect.getfile(method)))           # IPython keeps each cell's text here
    lines = cell.splitlines(keepends=True)
    for node in ast.parse(cell).body:
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            first = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list])
            return "".join(lines[first - 1:node.end_lineno])
    raise ValueError(f"no class {cls.__name__} in the cell of {method.__qualname__}")


def run_zero(modes: str, processes: int = 2) -> list[dict]:
    """Write the script with your functions, launch it with torchrun; per rank, per mode: parameters, state bytes, exp_avg."""
    functions = inspect.getsource(shard_bounds) + "\n" + class_source(ZeroAdamW)
    return torch.load(torchrun(ZERO_SCRIPT.format(functions=functions), modes, processes, "zero-"), weights_only=False)


# %% nbgrader={"grade": true, "grade_id": "test_zero", "locked": true, "points": 4.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""shard_bounds tiles the vector in shards of ceil(numel / world); ZeroAdamW (built in this process) owns its rank's slice;
on two processes it ends with the parameters and moments of one AdamW on the global batch (1e-6 and 1e-10), and each rank
holds half of the optimizer state."""
for numel, world in ((655, 2), (655, 3), (12, 4)):
    bounds = [shard_bounds(numel, rank, world) for rank in range(world)]
    size = math.ceil(numel / world)
    assert bounds[-1][1] >= numel, (
        f"shard_bounds({numel}, rank, {world}) for every rank: {bounds}, the last shard stops at {bounds[-1][1]}: "
        f"numbers [{bounds[-1][1]}, {numel}) belong to no rank; the prompt's shards hold ceil(numel / world) numbers")
    assert bounds[0][0] == 0 and bounds[-1][1] == numel and all(a[1] == b[0] for a, b in zip(bounds, bounds[1:])), \
        f"shard_bounds({numel}, rank, {world}) for every rank: the shards must tile [0, {numel}) in order, got {bounds}"
    assert all(stop - start == min(size, max(numel - rank * size, 0)) for rank, (start, stop) in enumerate(bounds)), \
        f"shard_bounds({numel}, rank, {world}) for every rank: shards of {size} numbers (the last ones shorter), got {bounds}"
with mock.patch.object(dist, "get_world_size", return_value=2), mock.patch.object(dist, "get_rank", return_value=1):
    probe = nn.Sequential(nn.Linear(16, 31), nn.Tanh(), nn.Linear(31, 4)).double()       # 655 numbers
    probe_optimizer = ZeroAdamW(probe.parameters(), lr=0.01, weight_decay=0.1)
owned = [t for group in probe_optimizer.optimizer.param_groups for t in group["params"]]
assert isinstance(probe_optimizer.optimizer, torch.optim.AdamW) and len(owned) == 1, \
    f"self.optimizer: one torch.optim.AdamW over one tensor, got {type(probe_optimizer.optimizer).__name__} over {len(owned)}"
flat = torch.cat([p.detach().flatten() for p in probe.parameters()])
assert owned[0].numel() != 655, ("ZeroAdamW on rank 1 of 2, 655 numbers: its AdamW holds all 655, the whole vector; "
                                 "the point of ZeRO is that each rank keeps (and updates) only its shard")
assert not torch.equal(owned[0].detach(), flat[:328]), (
    "ZeroAdamW on rank 1 of 2, 655 numbers: its tensor is numbers [0, 328), the first shard: "
    "rank 1 owns numbers [328, 655); which rank does this process say it is?")
assert torch.equal(owned[0].detach(), flat[328:]), \
    f"ZeroAdamW on rank 1 of 2 owns numbers [328, 655) of the flattened parameters, its tensor holds {owned[0].numel()} other numbers"
group = probe_optimizer.optimizer.param_groups[0]
assert group["lr"] == 0.01 and group["weight_decay"] == 0.1, (
    f"ZeroAdamW(params, lr=0.01, weight_decay=0.1): its AdamW has lr {group['lr']} and weight_decay "
    f"{group['weight_decay']}; the options given to ZeroAdamW go to self.optimizer")
for p in probe.parameters():
    p.grad = torch.ones_like(p)
probe_optimizer.zero_grad()
assert all(p.grad is None for p in probe.parameters()), (
    "ZeroAdamW.zero_grad() on parameters holding gradients: they are still there, so they would add up over steps; "
    "zero_grad() sets every parameter's gradient to None")
reference_model, reference_optimizer = zero_reference()
reference_moments = torch.cat([reference_optimizer.state[p]["exp_avg"].flatten() for p in reference_model.parameters()])
unsharded = sum(t.numel() * t.element_size() for s in reference_optimizer.state.values() for k, t in s.items() if k != "step")
ranks = run_zero("zero")
together = torch.cat([results["zero"]["exp_avg"] for results in ranks])
if together.shape == reference_moments.shape and reference_moments.abs().max() > 0:
    assert not torch.allclose(together, 2 * reference_moments, rtol=1e-3, atol=1e-12), (
        "on 2 processes, AdamW's first moment (exp_avg) is twice that of one AdamW on the global batch: the gradients "
        "were summed over the 2 ranks; the prompt averages them (as in exercise 5)")
torch.manual_seed(0)
initial_flat = torch.cat([p.detach().flatten() for p in nn.Sequential(nn.Linear(16, 31), nn.Tanh(), nn.Linear(31, 4)).double().parameters()])
for rank, results in enumerate(ranks):
    mine = torch.cat([results["zero"]["parameters"][name].flatten() for name in reference_model.state_dict()])
    start, stop = shard_bounds(initial_flat.numel(), rank, len(ranks))
    others = torch.cat([mine[:start] - initial_flat[:start], mine[stop:] - initial_flat[stop:]])
    assert others.numel() == 0 or others.abs().max() > 0, (
        f"after 5 steps on 2 processes, rank {rank}'s parameters outside its own shard [{start}, {stop}) are still "
        "the initial ones: the other ranks' updated shards never reached it (the all-gather)")
for rank, results in enumerate(ranks):
    for name, value in reference_model.state_dict().items():
        assert_close(results["zero"]["parameters"][name], value,
                     f"rank {rank}'s {name} after 5 steps on 2 processes, against one AdamW on the global batch", atol=1e-6)
assert_close(torch.cat([results["zero"]["exp_avg"] for results in ranks]), reference_moments,
             "AdamW's first moment (exp_avg), the ranks' shards put together", atol=1e-10)
per_rank = [results["zero"]["state_bytes"] for results in ranks]
print(f"optimizer state: {unsharded:,} bytes unsharded, {per_rank} bytes per rank")
assert sum(per_rank) == unsharded and all(abs(b - unsharded / 2) <= 16 for b in per_rank), \
    f"each of 2 ranks holds half of the {unsharded:,} bytes of AdamW's state (within one number's two moments), got {per_rank}"
### BEGIN HIDDEN TESTS
assert [shard_bounds(3, rank, 4) for rank in range(4)] == [(0, 1), (1, 2), (2, 3), (3, 3)], "shard_bounds(3, rank, 4): the last shard is empty"
assert [shard_bounds(10, rank, 3) for rank in range(3)] == [(0, 4), (4, 8), (8, 10)], "shard_bounds(10, rank, 3): shards of 4, 4 and 2"
assert shard_bounds(655, 0, 1) == (0, 655), "shard_bounds(655, 0, 1): one rank owns everything"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "zero_builtin_text", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ### PyTorch's twins: `ZeroRedundancyOptimizer` and FSDP's `fully_shard`
#
# `torch.distributed.optim.ZeroRedundancyOptimizer` is ZeRO stage 1: it wraps any optimizer and
# gives each rank whole **parameters** (greedily, by size) rather than a slice of one flat vector, so
# its shards can be uneven; it does not average gradients itself, so it runs under DDP.
# `torch.distributed.fsdp.fully_shard` (FSDP2) is stage 3: it splits every parameter along its first
# dimension, so parameters, gradients and state are all sharded, and gathers each wrapped layer's
# parameters only while it runs. Both run on the CPU with gloo (the cell below does it), with the same
# model, data and AdamW as your run.

# %% slideshow={"slide_type": "fragment"}
builtin_ranks = run_zero("zero,zero_redundancy,fully_shard")
print(f"{'':<16}{'state bytes per rank':>24}{'max |difference| from one AdamW':>36}")
for mode in ("zero", "zero_redundancy", "fully_shard"):
    per_rank = [results[mode]["state_bytes"] for results in builtin_ranks]
    difference = max((results[mode]["parameters"][name] - value).abs().max().item()
                     for results in builtin_ranks for name, value in reference_model.state_dict().items())
    print(f"{mode:<16}{str(per_rank):>24}{difference:>36.1e}")
print(f"unsharded AdamW: {unsharded:,} bytes; your training_memory(model, torch.float64) says "
      f"{training_memory(reference_model, torch.float64)['optimizer']:,}")

# %% slideshow={"slide_type": "subslide"}
def zero_per_rank(count: int, world: int) -> dict[str, dict[str, float]]:
    """Bytes per rank of mixed-precision training (from your training_memory) for ZeRO stages 0-3 on `world` ranks."""
    parts = budgets(count)["mixed\nprecision"]                 # bfloat16 parameters and gradients, float32 master and moments
    sharded = {0: (), 1: ("float32 master", "optimizer"), 2: ("float32 master", "optimizer", "gradients"),
               3: ("float32 master", "optimizer", "gradients", "parameters")}
    return {f"stage {stage}": {part: size / world if part in parts_sharded else size for part, size in parts.items()}
            for stage, parts_sharded in sharded.items()}


paper = [sum(parts.values()) / 1e9 for parts in zero_per_rank(7_500_000_000, 64).values()]
print("7.5B parameters on 64 ranks, GB per rank:", [round(gb, 1) for gb in paper], "(the ZeRO paper's figure 1: 120, 31.4, 16.6, 1.9)")
world = 8
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for ax, (name, count) in zip(axes, (("GPT-2 small", 124_000_000), ("7B", 7_000_000_000))):
    stages = zero_per_rank(count, world)
    for column, (stage, parts) in enumerate(stages.items()):
        bottom = 0.0
        for part, size in parts.items():
            ax.bar(column, size / 1e9, bottom=bottom, color=colours[part], width=0.6, label=part if column == 0 else None)
            bottom += size / 1e9
        ax.text(column, bottom, f"{bottom:.1f} GB\n{bottom * 1e9 / count:.1f} B/param", ha="center", va="bottom", fontsize=8)
        print(f"{name:>12} {stage}: {bottom:6.1f} GB per rank, {bottom * 1e9 / count:5.2f} bytes per parameter per rank")
    ax.set_xticks(range(4), ["DDP\n(stage 0)", "ZeRO-1\nstates", "ZeRO-2\n+ gradients", "ZeRO-3\n+ parameters"])
    ax.set_title(f"{name}, mixed precision, {world} ranks")
    ax.set_ylabel("GB per rank before activations")
    ax.margins(y=0.25)
axes[1].axhline(80, color="k", linestyle="--", linewidth=1)
axes[0].legend(fontsize=8)
fig.suptitle(f"ZeRO on W = {world} ranks, from your training_memory(): each sharded part divided by W")
fig.tight_layout()
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "what_each_technique_saves", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 8 · What each technique saves and costs
#
# Rows with a number were measured or computed in this notebook, on this machine; the others say what
# holds in general.

# %% slideshow={"slide_type": "fragment"}
torch.manual_seed(0)
layers = encoder_layers(6).to(device)
x = torch.randn(16, 256, 128, device=device, requires_grad=True)
rows = []
plain_mb, plain_s = train_step_memory(CheckpointedStack(layers, False), x)
ckpt_mb, ckpt_s = train_step_memory(CheckpointedStack(layers, True), x)
rows.append(("activation checkpointing", f"{1 - ckpt_mb / plain_mb:.0%} of forward + backward memory",
             f"{ckpt_s / plain_s - 1:+.0%} time (one extra forward)"))
model = tiny_transformer(d_model=256, layers=4)
f32, bf16 = training_memory(model, torch.float32)["total"], training_memory(model, torch.bfloat16)["total"]
mixed = training_memory(model, torch.bfloat16)["parameters"] * 2 + training_memory(model, torch.float32)["parameters"] * 3
rows.append(("bfloat16 weights and states", f"{1 - bf16 / f32:.0%} of parameter + gradient + AdamW memory",
             "precision: 7 stored mantissa bits, small updates round away"))
rows.append(("mixed precision (float32 master + moments)", f"{1 - mixed / f32:.0%} of that memory; activations: not measured here",
             "a cast per operation; float16 also needs loss scaling"))
xb, yb = padded_batch(32, seed=5)
stepper = tiny_transformer(d_model=128, layers=4).to(device)
opt = torch.optim.AdamW(stepper.parameters())
start = time.perf_counter()
accumulation_step(stepper, [(xb.to(device), yb.to(device))], opt)
one = time.perf_counter() - start
start = time.perf_counter()
accumulation_step(stepper, [(xb[i::4].to(device), yb[i::4].to(device)) for i in range(4)], opt)
four = time.perf_counter() - start
rows.append(("gradient accumulation (4 micro-batches)", "3/4 of the activations (1/4 of the batch at a time)",
             f"{four / one - 1:+.0%} time per step here"))
rows.append(("data parallel (2 processes)", "nothing per process (each holds everything)", "an all-reduce of all gradients per step"))
zero_bytes = [results["zero"]["state_bytes"] for results in builtin_ranks]
rows.append(("ZeRO-1 (2 processes, your ZeroAdamW)", f"{1 - max(zero_bytes) / unsharded:.0%} of AdamW state per process",
             "an all-gather of the parameters per step"))
rows.append(("ZeRO-3 / FSDP", "gradients and parameters sharded too: 16/W bytes per parameter",
             "gathers each layer's parameters in forward and backward"))
width = max(len(r[0]) for r in rows)
for technique, saves, costs in rows:
    print(f"{technique:<{width}}  saves: {saves:<55}  costs: {costs}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "where_this_goes_next", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ### Where this goes next
#
# Data parallelism copies everything to every process. **ZeRO** (Rajbhandari et al., 2019) shards
# the optimizer state (stage 1, your `ZeroAdamW`), the gradients (2) and the parameters (3) across the
# $W$ processes, stage 3 gathering each layer's parameters only while it runs; PyTorch's **FSDP**
# implements stage 3 (section 7 ran `fully_shard` on two CPU processes) and, with its
# `SHARD_GRAD_OP` strategy, stage 2. Together
# with mixed precision and checkpointing, that is how models far larger than one device's memory
# are trained; tensor and pipeline parallelism split single layers and the depth when even that is
# not enough.

# %% [markdown] nbgrader={"grade": false, "grade_id": "summary", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## Summary
#
# * Training memory = parameters + gradients + 2 x AdamW state (+ activations). Storing all three in
#   bfloat16 would halve them, but mixed-precision training keeps float32 master weights and moments:
#   16 bytes per parameter (2 + 2 + 4 + 4 + 4), as many as float32; it saves activations and time.
# * **Accumulation** equals the large batch when each micro-batch's summed loss is divided by the
#   **global** token count; per-micro-batch means are wrong under uneven padding.
# * **Mixed precision**: bfloat16 autocast on CPU; float16 needs **loss scaling** or small gradients vanish.
# * **Checkpointing** trades one extra forward pass per layer (the cell after exercise 4 counts the
#   calls) for activation memory (at least 40% less for forward + backward on the test's six layers,
#   as it asserts; the table in section 8 prints the figure).
# * **Data parallelism** averages gradients with an all-reduce; DDP does it for you.
# * **ZeRO stage 1** keeps AdamW's state for a $1/W$ shard of the flattened parameters on each rank,
#   updates that shard and all-gathers the result: the same step as one AdamW, with half the state
#   per rank on two processes (the test asserts both). Stages 2 and 3 (FSDP) shard gradients and
#   parameters too, down to $16/W$ bytes per parameter per rank.

# %% [markdown] nbgrader={"grade": false, "grade_id": "further_reading", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Further reading
#
# * Micikevicius et al. (2017). *Mixed Precision Training.* arXiv:1710.03740
# * Chen et al. (2016). *Training Deep Nets with Sublinear Memory Cost.* arXiv:1604.06174
# * Li et al. (2020). *PyTorch Distributed: Experiences on Accelerating Data Parallel Training.* arXiv:2006.15704
# * Rajbhandari et al. (2019). *ZeRO: Memory Optimizations Toward Training Trillion Parameter Models.* arXiv:1910.02054
# * Zhao et al. (2023). *PyTorch FSDP.* arXiv:2304.11277
#
# <!-- reading-list -->
# **From the course reading list** (`readings/reading-list.md`, mostly Chinese-language articles; links as the list gives them), by the section they go with:
#
# * with *1 · Where the memory goes*
#   * [如何优雅地训练大型模型？](https://zhuanlan.zhihu.com/p/110278004): how to train large models gracefully (zhihu)
#   * [GPU 显存不足怎么办？](https://zhuanlan.zhihu.com/p/100884995): what to do when GPU memory runs out (zhihu)
# * with *8 · What each technique saves and costs*
#   * [Pytorch有什么节省显存的小技巧？](https://www.zhihu.com/question/274635237/answer/755102181): PyTorch tricks that save GPU memory (zhihu)
# <!-- /reading-list -->
