# ---
# jupyter:
#   celltoolbar: Slideshow
#   kernelspec:
#     display_name: Python 3 (course)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "title", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# # 12 · The Universal Transformer
#
# **Learning objectives.** After this notebook you can
# 1. **apply** one shared Transformer layer repeatedly, with timestep and position ("coordinate") embeddings;
# 2. **implement** adaptive computation time (ACT): halting probabilities, remainders, updates and ponder cost;
# 3. **compare** depth recurrence with ACT against a standard Transformer on an algorithmic task, at and beyond the training lengths.
#
# **Prerequisites.** Notebooks 05 (sinusoidal positions) and 06 (the Transformer); 09's parameter sharing helps.
#
# **Estimated time.** 1.5 hours. The notebook runs in about two minutes on a laptop CPU.

# %% [markdown] nbgrader={"grade": false, "grade_id": "notes_intro", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "notes"}
# Speaker notes: a Transformer has a fixed depth, so a fixed amount of computation per token. The
# Universal Transformer makes depth a loop over one shared layer, like an RNN over depth instead of
# time, and ACT lets each position decide how many times to go round.

# %% [markdown] nbgrader={"grade": false, "grade_id": "setup_text", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Setup

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
import math
import random
import sys
from unittest import mock

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_utils import assert_close, check_shape, describe_environment, get_device, seed_everything
from course_utils.train import count_parameters, fit

seed_everything(0)
device = get_device()
print(describe_environment(device))


# %% [markdown] nbgrader={"grade": false, "grade_id": "depth_recurrence", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 1 · Depth as recurrence
#
# With one layer $f$ shared across depth, step $t$ computes
#
# $$h^{t} = f\big(h^{t-1} + C^{t}\big),\qquad C^{t}_{i,2j} = \sin\!\frac{i}{10000^{2j/d}} + \sin\!\frac{t}{10000^{2j/d}},\quad C^{t}_{i,2j+1} = \cos\!\frac{i}{10000^{2j/d}} + \cos\!\frac{t}{10000^{2j/d}}$$
#
# so the layer knows both **where** it is (position $i$) and **when** (step $t$). Parameters do not
# grow with the number of steps.
#
# | symbol | shape | meaning | code name |
# |---|---|---|---|
# | $h^t$ | `(batch, seq, d_model)` | state after step $t$ | `state` |
# | $C^t$ | `(steps, seq, d_model)` | coordinate embedding | `coordinates` |
# | $p^t$ | `(steps, batch, seq)` | halting probability at step $t$ | `halting` |
# | $N, R$ | `(batch, seq)` | number of updates, remainder | `n_updates, remainders` |

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_1_coordinate_embeddings", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 2 · Exercise 1: coordinate embeddings (3 points)
#
# Complete `coordinate_embedding(seq_len, steps, d_model)`: a `(steps, seq_len, d_model)` tensor,
# the sinusoidal encoding of the position (as in notebook 05: sine on even dimensions, cosine on
# odd ones, frequencies $10000^{-2j/d}$) plus the same encoding of the step number, with steps
# numbered **from 1**. No Python loops over positions or steps: the test counts the Python lines
# your function runs for a short and a long input, and a loop shows as lines that grow with the length.
#
# <details><summary>Hint 1</summary>
#
# Write one helper that encodes a vector of numbers (positions or steps) as sinusoids, then call it twice.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Angles are `values[:, None] * frequencies[None, :]`; fill the even dims with their sines and the odd dims with their cosines, and add the step table `(steps, 1, d)` to the position table `(1, seq, d)` by broadcasting.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "coordinates", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def coordinate_embedding(seq_len: int, steps: int, d_model: int) -> torch.Tensor:
    """Sinusoid of the position plus sinusoid of the step (1..steps): (steps, seq_len, d_model)."""
    ### BEGIN SOLUTION
    frequencies = torch.exp(-math.log(10_000.0) * torch.arange(0, d_model, 2) / d_model)  # (d_model / 2,)

    def encode(values: torch.Tensor) -> torch.Tensor:
        angles = values[:, None] * frequencies[None, :]                                   # (n, d_model / 2)
        out = torch.zeros(len(values), d_model)
        out[:, 0::2], out[:, 1::2] = angles.sin(), angles.cos()
        return out

    positions = encode(torch.arange(seq_len, dtype=torch.float32))                       # (seq, d_model)
    times = encode(torch.arange(1, steps + 1, dtype=torch.float32))                      # (steps, d_model)
    return times[:, None, :] + positions[None, :, :]
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
coordinates = coordinate_embedding(40, 6, 64)
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
for ax, t in zip(axes, (1, 6)):
    ax.imshow(coordinates[t - 1].numpy(), aspect="auto", cmap="RdBu")
    ax.set_title(f"coordinates at step {t}")
    ax.set_xlabel("dimension")
    ax.set_ylabel("position")
plt.show()

# %% nbgrader={"grade": true, "grade_id": "test_coordinates", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""coordinate_embedding = sinusoid(position) + sinusoid(step), steps from 1, sine on even and cosine on odd dimensions; no loops."""


from course_utils.checks import python_lines_run  # counts the Python lines a call runs: a loop shows


c = coordinate_embedding(5, 3, 8)
check_shape(c, (3, 5, 8), "coordinates (steps, seq, d_model)")
i, t, j = 4, 2, 1                                             # position 4, step 2, pair j = 1 (dims 2 and 3)
w = 10_000 ** (-2 * j / 8)
near = lambda value, expected: abs(float(value) - expected) < 1e-5
assert not torch.allclose(c[1], c[0]), "your coordinates are the same at every step: add the sinusoid of the step number too"
assert not near(c[0, 0, 0], 0.0), "step 1, position 0, dim 0 gives sin(0) + sin(0) = 0: steps are numbered from 1"
assert not near(c[0, 0, 0], 2 * math.sin(1.0)), "step 1, position 0, dim 0 gives sin(1) + sin(1): positions are numbered from 0"
assert not near(c[t - 1, i, 2 * j], math.cos(i * w) + math.cos(t * w)), "your even dims hold cosines: sine on even dims, cosine on odd"
assert not near(c[t - 1, i, 4], math.cos(i) + math.cos(t)), \
    "dims 4..7 hold the cosines: interleave them, sine on even dims and cosine on odd ones, pair j on dims 2j and 2j + 1"
w_half = 10_000 ** (-j / 8)
assert not near(c[t - 1, i, 2 * j], math.sin(i * w_half) + math.sin(t * w_half)), \
    "pair j = 1 uses the frequency 10000^(-j/d): it is 10000^(-2j/d)"
assert abs(c[t - 1, i, 2 * j] - (math.sin(i * w) + math.sin(t * w))) < 1e-5, "even dims: sin(pos w) + sin(step w)"
assert abs(c[t - 1, i, 2 * j + 1] - (math.cos(i * w) + math.cos(t * w))) < 1e-5, "odd dims: cos(pos w) + cos(step w)"
short_lines, long_lines = python_lines_run(coordinate_embedding, 4, 2, 8), python_lines_run(coordinate_embedding, 400, 40, 8)
assert long_lines <= short_lines + 20, (f"{short_lines} Python lines for 4 positions and 2 steps, {long_lines} for 400 and 40: "
                                        f"a Python loop over positions or steps (compute all of them at once)")
### BEGIN HIDDEN TESTS
assert abs(c[0, 0, 0] - math.sin(1.0)) < 1e-6, "steps are numbered from 1 (step 1, position 0: sin(0) + sin(1))"
assert abs(c[0, 0, 1] - (1 + math.cos(1.0))) < 1e-6
big = coordinate_embedding(50, 4, 32)
assert not torch.allclose(big[0, 3], big[0, 4]), "different positions get different coordinates"
assert_close(big[2] - big[1], (big[2] - big[1])[0].expand(50, 32), "the step term does not depend on position", atol=1e-5)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_2_adaptive_computation", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 3 · Exercise 2: adaptive computation time (4 + 2 points)
#
# At every step each position emits a halting probability $p^t \in (0, 1)$. It **halts** at the first
# step $N$ where $\sum_{t \le N} p^t \ge 1 - \epsilon$ (here $1-\epsilon$ = `threshold` = 0.99), or at the
# last step if that never happens. Its output is a weighted sum of its states with weights
#
# $$w^t = p^t \ (t < N),\qquad w^N = R = 1 - \sum_{t<N} p^t,\qquad w^t = 0\ (t > N)$$
#
# which sum to 1. The **ponder cost** $N + R$ is added to the loss (times a small $\tau$) to
# encourage halting early (Graves, 2016).
#
# * `act_weights(halting, threshold=0.99)`: `halting (steps, ...)` -> `(weights (steps, ...),
#   n_updates (...), remainders (...))`, vectorised: a loop over the steps is fine, none over positions
#   (the test counts the Python lines it runs for 10 and for 2,000 positions).
# * `ponder_cost(n_updates, remainders)`: the mean of $N + R$.
#
# <details><summary>Hint 1</summary>
#
# Everything follows from the cumulative sum over the steps (axis 0): where it first reaches `threshold` is step N.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Mark the steps that reached it (and force the last step), then 'strictly before N' is where a cumulative count of those marks is still 0, and step N is the first mark.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# The weights are p before N and R at N; N is the number of steps before N plus one.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "act", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def act_weights(halting: torch.Tensor, threshold: float = 0.99) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ACT weights over steps, the number of updates N and the remainder R for every position."""
    ### BEGIN SOLUTION
    cumulative = halting.cumsum(0)
    reached = cumulative >= threshold
    reached[-1] = True                                                   # nobody runs past the last step
    before = reached.long().cumsum(0) == 0                               # steps strictly before N
    first = reached & (reached.long().cumsum(0) == 1)                    # step N itself
    running_sum = (halting * before).sum(0)
    remainders = 1 - running_sum
    weights = halting * before + first * remainders
    n_updates = before.sum(0) + 1
    return weights, n_updates, remainders
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
example_p = torch.tensor([[0.9, 0.2, 0.5, 0.1, 0.05],
                          [0.5, 0.3, 0.5, 0.1, 0.05],
                          [0.5, 0.6, 0.2, 0.2, 0.05],
                          [0.5, 0.5, 0.2, 0.3, 0.05]])              # (steps=4, positions=5)
example_w, example_n, example_r = act_weights(example_p)
print("N =", example_n.tolist(), " R =", [round(r, 2) for r in example_r.tolist()],
      " weights sum to", [round(w, 2) for w in example_w.sum(0).tolist()])
fig, axes = plt.subplots(1, 2, figsize=(9, 2.6))
for ax, values, title in ((axes[0], example_p, "halting probability $p^t$"), (axes[1], example_w, "ACT weight $w^t$")):
    ax.imshow(values.numpy(), cmap="Blues", vmin=0, vmax=1)
    for t in range(4):
        for i in range(5):
            v = values[t, i].item()
            ax.text(i, t, f"{v:.2f}", ha="center", va="center", fontsize=8, color="black" if v < 0.6 else "white")
    ax.set_xticks(range(5), [f"pos {i}\nN={n}" for i, n in enumerate(example_n.tolist())], fontsize=8)
    ax.set_yticks(range(4), [f"t={t + 1}" for t in range(4)])
    ax.set_title(title)
plt.show()

# %% nbgrader={"grade": true, "grade_id": "test_act", "locked": true, "points": 4.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""ACT on hand-computed cases: halting at the right step, remainders, weights summing to 1, the ponder cost."""
halting = torch.tensor([[0.3, 0.6, 0.995, 0.1],
                        [0.3, 0.6, 0.500, 0.1],
                        [0.3, 0.6, 0.500, 0.1],
                        [0.3, 0.6, 0.500, 0.1]])                 # (steps=4, positions=4)
weights, n_updates, remainders = act_weights(halting)
alone = act_weights(halting[:, 3:])[1].item()
assert n_updates[3].item() == alone, (f"position 3 alone gets N = {alone}, beside the others N = {n_updates[3].item()}: each "
                                      "position's sum runs over the steps (axis 0), never across positions")
assert n_updates.max() <= 4, (f"N = {n_updates.tolist()} with only 4 steps: a position that never reaches the threshold "
                              "halts at the last step")
n_other = act_weights(torch.tensor([[0.3], [0.3], [0.3]]), threshold=0.5)[1].tolist()
assert n_other != [1], ("with threshold=0.5, p = 0.3 at every step reaches 0.6 at step 2, yet you give N = 1: N is one short "
                        "(N counts the halting step itself)")
assert n_other == [2], f"with threshold=0.5, p = 0.3 at every step reaches 0.6 at step 2, so N = 2; you give {n_other}: use `threshold`"
n_exact = act_weights(torch.tensor([[0.25], [0.25], [0.5]]), threshold=0.5)[1].tolist()
assert n_exact == [2], (f"with threshold=0.5, p = 0.25, 0.25 sums to 0.5 exactly at step 2, which halts (sum >= threshold); "
                        f"you give N = {n_exact}")
assert n_updates.tolist() != [3, 1, 0, 3], "N is one short: it counts the halting step itself (N = 1 when the first p reaches the threshold)"
assert n_updates.tolist() == [4, 2, 1, 4], f"expected N = [4, 2, 1, 4], got {n_updates.tolist()}"
assert not torch.allclose(remainders, torch.tensor([-0.2, -0.2, 0.005, 0.6]), atol=1e-5), \
    "R subtracts step N's own p too: R = 1 - the sum of the p *before* step N"
assert_close(remainders, torch.tensor([0.1, 0.4, 1.0, 0.7]), "remainders R = 1 - sum of the p before N", atol=1e-6)
assert torch.allclose(weights.sum(0), torch.ones(4), atol=1e-6), \
    f"your weights sum to {[round(v, 3) for v in weights.sum(0).tolist()]} over the steps: at step N the weight is R, so they sum to 1"
assert_close(weights[:, 0], torch.tensor([0.3, 0.3, 0.3, 0.1]), "0.3 x 3, then R = 0.1", atol=1e-6)
assert_close(weights[:, 1], torch.tensor([0.6, 0.4, 0.0, 0.0]), "halt at step 2: weights 0.6, 0.4, then 0", atol=1e-6)
assert_close(weights[:, 2], torch.tensor([1.0, 0.0, 0.0, 0.0]), "p >= 0.99 at once: N = 1, R = 1", atol=1e-6)
assert_close(weights[:, 3], torch.tensor([0.1, 0.1, 0.1, 0.7]), "never reaches 0.99: the last step takes the rest", atol=1e-6)
assert act_weights(torch.rand(4, 3, requires_grad=True))[0].requires_grad, \
    "your weights do not require grad when the halting probabilities do: keep them differentiable (no detach)"
few, many = torch.rand(4, 10, generator=torch.Generator().manual_seed(0)), torch.rand(4, 2_000, generator=torch.Generator().manual_seed(0))
few_lines, many_lines = python_lines_run(act_weights, few), python_lines_run(act_weights, many)
assert many_lines <= few_lines + 20, (f"{few_lines} Python lines for 10 positions, {many_lines} for 2,000: "
                                      f"a Python loop over positions (vectorise it)")
### BEGIN HIDDEN TESTS
batch = torch.rand(6, 3, 7)
w, n, r = act_weights(batch)
assert_close(w.sum(0), torch.ones(3, 7), "weights sum to 1 everywhere", atol=1e-6)
assert ((n >= 1) & (n <= 6)).all() and (r > 0).all() and (r <= 1).all()
cum = batch.cumsum(0)
for b in range(3):
    for s in range(7):
        hits = [t for t in range(6) if cum[t, b, s] >= 0.99]
        expected = (hits[0] + 1) if hits else 6
        assert n[b, s] == expected, f"position ({b}, {s}): expected N = {expected}, got {n[b, s]}"
w2, n2, _ = act_weights(torch.tensor([[0.5], [0.25], [0.25]]), threshold=0.75)
assert n2.tolist() == [2], "use the threshold argument; reaching it exactly counts (sum >= threshold)"
p = torch.rand(4, 5, requires_grad=True)
act_weights(p)[0].sum().backward()
assert p.grad is not None, "weights must be differentiable in the halting probabilities"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "ponder_cost", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ### The ponder cost (2 points)
#
# Complete `ponder_cost(n_updates, remainders)`: the mean over positions of $N + R$, as a float
# tensor. $N$ is an integer count, so the gradient reaches the halting probabilities only through
# $R$: lowering the cost means pushing the early $p^t$ up.
#
# <details><summary>Hint 1</summary>
#
# Add N and R position by position, as floats, and average.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "ponder", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def ponder_cost(n_updates: torch.Tensor, remainders: torch.Tensor) -> torch.Tensor:
    """Mean of N + R."""
    ### BEGIN SOLUTION
    return (n_updates + remainders).float().mean()
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
for label, p_first in (("halts at once", 0.995), ("halts at step 2", 0.6), ("never halts", 0.1)):
    example_p = torch.tensor([[p_first], [0.5], [0.1], [0.1]], requires_grad=True)   # (steps=4, positions=1)
    _, example_n, example_r = act_weights(example_p)
    cost = ponder_cost(example_n, example_r)
    cost.backward()
    print(f"{label:>16}: N = {example_n.item()}, R = {example_r.item():.3f}, cost N + R = {cost.item():.3f}, "
          f"d cost / d p = {[round(g, 2) for g in example_p.grad.flatten().tolist()]}")

# %% nbgrader={"grade": true, "grade_id": "test_ponder_cost", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""ponder_cost is the mean of N + R and passes gradients to the halting probabilities through R."""
halting = torch.tensor([[0.3, 0.6, 0.995, 0.1], [0.3, 0.6, 0.5, 0.1], [0.3, 0.6, 0.5, 0.1], [0.3, 0.6, 0.5, 0.1]])
_, n_updates, remainders = act_weights(halting)
cost = float(ponder_cost(n_updates, remainders))
for wrong, symptom in (((4.1 + 2.4 + 2.0 + 4.7), "your cost is the sum over the 4 positions: the prompt asks for the mean"),
                       ((4 + 2 + 1 + 4) / 4, "your cost is the mean of N alone: add R"),
                       ((0.1 + 0.4 + 1.0 + 0.7) / 4, "your cost is the mean of R alone: add N"),
                       ((3.9 + 1.6 + 0.0 + 3.3) / 4, "your cost is the mean of N - R: the cost is N + R")):
    assert abs(cost - wrong) > 1e-4, symptom
assert_close(ponder_cost(n_updates, remainders), torch.tensor((4.1 + 2.4 + 2.0 + 4.7) / 4), "ponder cost = mean(N + R)", atol=1e-5)
early = torch.full((3, 2), 0.3, requires_grad=True)
early_cost = ponder_cost(*act_weights(early)[1:])
assert early_cost.requires_grad, \
    "your cost does not require grad when the halting probabilities do: keep R differentiable (no detach)"
early_cost.backward()
assert early.grad is not None and early.grad.abs().sum() > 0, \
    "no gradient reaches the halting probabilities from your cost: keep R differentiable (no detach)"
### BEGIN HIDDEN TESTS
p = torch.full((3, 2), 0.3, requires_grad=True)
_, n, r = act_weights(p)
cost = ponder_cost(n, r)
cost.backward()
assert cost.ndim == 0 and cost.dtype.is_floating_point, "a float scalar"
assert (p.grad[:2] < 0).all(), "raising an early p lowers R and the cost"
assert_close(ponder_cost(torch.tensor([1, 3]), torch.tensor([0.5, 0.5])), torch.tensor(2.5), "mean, not sum", atol=1e-6)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_3_universal_transformer", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 4 · Exercise 3: the Universal Transformer encoder (3 points)
#
# Complete `UniversalTransformer(d_model, n_heads, d_ff, max_steps, act=True)`: **one**
# `nn.TransformerEncoderLayer(d_model, n_heads, d_ff, 0.0, batch_first=True)` named `layer`, and
# `halting` = `nn.Linear(d_model, 1)` with its bias initialised to 1.0 (so positions start by halting
# after about two steps). `forward(x, attention_mask=None)` (x `(batch, seq, d_model)`, mask True =
# real token) runs `max_steps` steps $h^t = \text{layer}(h^{t-1} + C^t)$ and returns
# `(output, n_updates, remainders)`:
#
# * with `act=True`: halting probabilities $p^t = \sigma(\text{halting}(h^t))$, then `act_weights`, and the
#   output $\sum_t w^t h^t$;
# * with `act=False`: the last state, `n_updates` = `max_steps` everywhere and zero remainders.
#
# Keep every path differentiable (no `detach()`): the loss reaches the input through every step, and
# the ponder cost trains the halting unit and, through the states it reads, the shared layer.
#
# (All positions are computed at every step; a halted position's later states get weight 0. The
# paper also freezes them, so others attend to their final state; we keep it simple.)
#
# <details><summary>Hint 1</summary>
#
# One layer, called `max_steps` times: add that step's coordinates to the state, then apply the layer with the padding mask turned round.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Keep every state and read each step's halting probability from the state the layer just produced; stack them, call `act_weights`, and sum the weighted states over the steps.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "universal_transformer", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class UniversalTransformer(nn.Module):
    """One shared encoder layer applied max_steps times, with coordinate embeddings and optional ACT."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, max_steps: int, act: bool = True) -> None:
        super().__init__()
        self.max_steps, self.act = max_steps, act
        ### BEGIN SOLUTION
        self.layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, 0.0, batch_first=True)
        self.halting = nn.Linear(d_model, 1)
        nn.init.constant_(self.halting.bias, 1.0)
        ### END SOLUTION

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (output (batch, seq, d_model), n_updates (batch, seq), remainders (batch, seq))."""
        ### BEGIN SOLUTION
        batch, seq, d_model = x.shape
        coordinates = coordinate_embedding(seq, self.max_steps, d_model).to(x)              # (steps, seq, d_model)
        padding = None if attention_mask is None else ~attention_mask
        state, states, halting = x, [], []
        for t in range(self.max_steps):
            state = self.layer(state + coordinates[t], src_key_padding_mask=padding)
            states.append(state)
            halting.append(torch.sigmoid(self.halting(state)).squeeze(-1))                  # (batch, seq)
        if not self.act:
            return state, torch.full((batch, seq), self.max_steps, device=x.device), torch.zeros(batch, seq, device=x.device)
        weights, n_updates, remainders = act_weights(torch.stack(halting))                   # (steps, batch, seq)
        output = (weights.unsqueeze(-1) * torch.stack(states)).sum(0)                        # (batch, seq, d_model)
        return output, n_updates, remainders
        ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
example_ut = UniversalTransformer(16, 4, 32, max_steps=4).eval()
example_x = torch.randn(2, 6, 16)
with torch.no_grad():
    example_out, example_n, example_r = example_ut(example_x)
    plain_out, plain_n, _ = UniversalTransformer(16, 4, 32, max_steps=4, act=False).eval()(example_x)
print("output", tuple(example_out.shape), "(batch, seq, d_model);", f"{count_parameters(example_ut):,} parameters at any max_steps")
print("untrained ACT, steps N per position:", example_n.tolist())
print("remainders R:", [[round(r, 2) for r in row] for row in example_r.tolist()])
print("without ACT:", plain_n.tolist())

# %% nbgrader={"grade": true, "grade_id": "test_universal_transformer", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""One shared layer: parameters do not grow with steps; without ACT it is the layer applied T times; with ACT a weighted sum."""
torch.manual_seed(0)
short, long = UniversalTransformer(16, 4, 32, 2), UniversalTransformer(16, 4, 32, 8)
assert count_parameters(short) == count_parameters(long), "parameters must not depend on max_steps"
assert abs(long.halting.bias.item() - 1.0) < 1e-6, "halting bias starts at 1.0"
plain = UniversalTransformer(16, 4, 32, 3, act=False).eval()
x = torch.randn(2, 5, 16)
c = coordinate_embedding(5, 3, 16)
def unrolled(step) -> torch.Tensor:
    """Three steps h = step(h, t) from x."""
    h = x
    for t in range(3):
        h = step(h, t)
    return h


out, n, r = plain(x)
near = lambda a, b: a.shape == b.shape and torch.allclose(a, b, atol=1e-5)
assert not near(out, unrolled(lambda h, t: plain.layer(h) + c[t])), \
    "you add the coordinates after the layer: each step is h^t = layer(h^(t-1) + C^t)"
assert not near(out, unrolled(lambda h, t: plain.layer(h + c[0]))), "you add step 1's coordinates at every step: step t adds C^t"
assert_close(out, unrolled(lambda h, t: plain.layer(h + c[t])), "without ACT: layer(h + C^t), three times", atol=1e-5)
assert (n == 3).all() and (r == 0).all(), \
    f"without ACT, n_updates is max_steps = 3 everywhere and the remainders 0; got N {n.unique().tolist()}, R {r.unique().tolist()}"
keep = torch.tensor([[True] * 4 + [False], [True] * 5])               # sequence 0 has one padded position
y = x.clone()
y[0, 4] = 5.0
assert near(plain(y, keep)[0][0, :4], plain(x, keep)[0][0, :4]), \
    ("changing a padded position changed the real ones: attention_mask is True for real tokens, PyTorch's "
     "src_key_padding_mask True for padding")
x_grad = x.clone().requires_grad_()
(plain(x_grad)[0] * torch.randn(2, 5, 16)).sum().backward()
assert x_grad.grad is not None and x_grad.grad.abs().sum() > 0, \
    "without ACT your output has no gradient with respect to the input: does each step read a detached state?"
# with ACT: the states of the same recurrence, their halting probabilities and the weights of your act_weights
adaptive = UniversalTransformer(16, 4, 32, 3).eval()
adaptive.layer.load_state_dict(plain.layer.state_dict())
states, h = [], x
for t in range(3):
    h = adaptive.layer(h + c[t])
    states.append(h)
states = torch.stack(states)                                          # (steps, batch, seq, d_model)
act_out, act_n, _ = adaptive(x)
assert not (act_n == 1).all(), ("every position halts after one step (N = 1 everywhere): p^t = sigmoid(halting(h^t)) is "
                                "below 1; a softmax over the single logit is always 1")
before = torch.stack([torch.sigmoid(adaptive.halting(s)).squeeze(-1) for s in torch.cat([x[None], states[:-1]])])
w_before, n_before, _ = act_weights(before)
w, n_expected, _ = act_weights(torch.stack([torch.sigmoid(adaptive.halting(s)).squeeze(-1) for s in states]))
assert torch.allclose(w_before, w) or not near(act_out, (w_before.unsqueeze(-1) * states).sum(0)), \
    "your halting probabilities are read before the layer runs: p^t is computed from the new state h^t"
assert not near(act_out, states[-1]), "with ACT your output is the last state: it is the weighted sum of the states, sum_t w^t h^t"
assert not near(act_out, (w.unsqueeze(-1) * states).mean(0)), "you average w^t h^t over the steps: the weights sum to 1, so sum them"
assert_close(act_out, (w.unsqueeze(-1) * states).sum(0), "ACT output = sum_t w^t h^t", atol=1e-5)
fixed = UniversalTransformer(16, 4, 32, 3).eval()
with torch.no_grad():
    fixed.halting.weight.zero_()                                      # p^t = sigmoid(1): the weights no longer depend on x
x_grad = x.clone().requires_grad_()
(fixed(x_grad)[0] * torch.randn(2, 5, 16)).sum().backward()
assert x_grad.grad is not None and x_grad.grad.abs().sum() > 0, \
    "with fixed ACT weights your output has no gradient with respect to the input: are the states detached before the weighted sum?"
graded_halting = UniversalTransformer(16, 4, 32, 3).eval()
graded_halting(x)[2].sum().backward()
assert graded_halting.layer.linear2.weight.grad is not None and graded_halting.layer.linear2.weight.grad.abs().sum() > 0, \
    "the remainders (the ponder cost) send no gradient to the shared layer: does the halting unit read a detached state?"
### BEGIN HIDDEN TESTS
adaptive = UniversalTransformer(16, 4, 32, 3).eval()
adaptive.layer.load_state_dict(plain.layer.state_dict())
out, n, r = adaptive(x)
states, h = [], x
for t in range(3):
    h = adaptive.layer(h + c[t])
    states.append(h)
halting = torch.stack([torch.sigmoid(adaptive.halting(s)).squeeze(-1) for s in states])
w, n_expected, _ = act_weights(halting)
assert_close(out, (w.unsqueeze(-1) * torch.stack(states)).sum(0), "ACT output = sum_t w^t h^t", atol=1e-5)
assert torch.equal(n, n_expected)
mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
y = x.clone()
y[1, 3:] = 7.0
assert_close(adaptive(y, mask)[0][1, :3], adaptive(x, mask)[0][1, :3], "padding must not matter", atol=1e-5)
assert sum(isinstance(m, nn.TransformerEncoderLayer) for m in adaptive.modules()) == 1, "exactly one shared layer"
# gradients, not only outputs: along a random direction of the input, autograd's derivatives of the output
# and of the remainders must equal a central difference (a detached state gives the same outputs, not these)
torch.manual_seed(3)
graded = UniversalTransformer(16, 4, 32, 3).double().eval()
x64 = torch.randn(2, 5, 16, dtype=torch.float64, requires_grad=True)
direction, weighting = torch.randn(2, 5, 16, dtype=torch.float64), torch.randn(2, 5, 16, dtype=torch.float64)


def measures(inputs: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Two scalars of the model's answer (a plain sum of a LayerNorm's output would be constant), and N."""
    out, n, r = graded(inputs)
    return {"the output": (out * weighting).sum(), "the remainders R (the ponder cost)": r.sum()}, n


values, _ = measures(x64)
with torch.no_grad():
    (plus, n_plus), (minus, n_minus) = measures(x64 + 1e-6 * direction), measures(x64 - 1e-6 * direction)
assert torch.equal(n_plus, n_minus), "test setup: N changed within the finite difference"
for name, value in values.items():
    (grad,) = torch.autograd.grad(value, x64, retain_graph=True, allow_unused=True)
    autograd_slope = 0.0 if grad is None else float((grad * direction).sum())
    slope = float((plus[name] - minus[name]) / 2e-6)
    assert abs(slope) > 1e-4, f"test setup: {name} barely depends on the input ({slope})"
    assert abs(autograd_slope - slope) <= 1e-5 * max(1.0, abs(slope)), \
        f"d {name} / d x along a direction: autograd {autograd_slope:.6f}, measured {slope:.6f}: is a state detached?"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "experiment_sorting_digits_variable", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 5 · Experiment: sorting digits of variable length
#
# Input: 3 to 10 random digits (padded to 16); target at each real position: the sorted digits.
# Every output depends on every input, and longer inputs need more comparisons. Two models of the
# same width (64): a **standard** post-LN Transformer encoder with 2 distinct layers, and a
# **Universal Transformer** with one shared layer, up to 4 steps and ACT (ponder cost weight
# $\tau = 0.05$: the larger $\tau$, the harder positions are pushed to halt early). Both
# train for the same number of steps; then we test at the training lengths and at **longer** ones
# (11 to 14), which neither has seen.
#
# **Target (tested).** The Universal Transformer with ACT sorts at least **90%** of 1,000 held-out
# inputs of the training lengths exactly (every position right); the hidden test asks the same
# trained model for at least 88% on 500 other inputs of those lengths. Nothing is asserted about the
# standard model or the longer inputs.

# %% nbgrader={"grade": false, "grade_id": "task", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
VOCAB, PAD, MAX_LEN = 12, 0, 16                                   # digits are ids 2..11


def sort_batch(n: int, lengths: tuple[int, int], generator: torch.Generator):
    """(inputs, targets with -100 on padding, real-token mask), each (n, MAX_LEN)."""
    length = torch.randint(lengths[0], lengths[1] + 1, (n,), generator=generator)
    real = torch.arange(MAX_LEN)[None, :] < length[:, None]
    inputs = torch.randint(2, VOCAB, (n, MAX_LEN), generator=generator).masked_fill(~real, PAD)
    targets = inputs.masked_fill(~real, VOCAB).sort(dim=1).values.masked_fill(~real, -100)
    return inputs, targets, real


class Sorter(nn.Module):
    """Token embedding + sinusoidal positions, an encoder (standard or universal), a per-position output."""

    def __init__(self, universal: bool, d_model: int = 64) -> None:
        super().__init__()
        self.universal, self.d_model = universal, d_model
        self.embed = nn.Embedding(VOCAB, d_model)
        self.encoder = (UniversalTransformer(d_model, 4, 4 * d_model, max_steps=4) if universal else
                        nn.ModuleList(nn.TransformerEncoderLayer(d_model, 4, 4 * d_model, 0.0, batch_first=True) for _ in range(2)))
        self.out = nn.Linear(d_model, VOCAB)

    def forward(self, inputs: torch.Tensor, real: torch.Tensor):
        h = self.embed(inputs) * math.sqrt(self.d_model)
        if self.universal:                                        # the coordinates carry the positions
            h, n_updates, remainders = self.encoder(h, real)
            return self.out(h), n_updates, remainders
        h = h + coordinate_embedding(inputs.shape[1], 1, self.d_model)[0].to(h)   # plain sinusoidal positions (+ a constant)
        for layer in self.encoder:
            h = layer(h, src_key_padding_mask=~real)
        return self.out(h), None, None


# %% slideshow={"slide_type": "fragment"}
STEPS, TAU = 2_000, 0.05
generator = torch.Generator().manual_seed(0)
batches = [tuple(t for t in sort_batch(64, (3, 10), generator)) for _ in range(STEPS)]
test_sets = {"lengths 3-10 (trained)": sort_batch(1_000, (3, 10), torch.Generator().manual_seed(1)),
             "lengths 11-14 (longer)": sort_batch(1_000, (11, 14), torch.Generator().manual_seed(2))}


def sort_loss(model: Sorter, batch) -> torch.Tensor:
    inputs, targets, real = batch
    logits, n_updates, remainders = model(inputs, real)
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    return loss if n_updates is None else loss + TAU * ponder_cost(n_updates[real], remainders[real])


@torch.no_grad()
def sort_accuracy(model: Sorter) -> dict[str, float]:
    out = {}
    for name, (inputs, targets, real) in test_sets.items():
        logits, _, _ = model(inputs.to(device), real.to(device))
        right = (logits.argmax(-1).cpu() == targets) | ~real
        out[name] = right.all(1).float().mean().item()
    return out


models, histories = {}, {}
for name, universal in (("standard (2 layers)", False), ("universal + ACT (1 layer, <= 4 steps)", True)):
    seed_everything(0)
    model = Sorter(universal).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    histories[name] = fit(model, sort_loss, batches, optimizer, STEPS, device=device, eval_fn=sort_accuracy,
                          eval_every=500, description=name)
    models[name] = model.eval()
print(f"{'model':>40} {'parameters':>10} {'seconds':>8}  " + "  ".join(f"{k:>22}" for k in test_sets))
for name, model in models.items():
    h = histories[name]
    print(f"{name:>40} {count_parameters(model):>10,} {h.seconds:>8.0f}  " + "  ".join(f"{h.last(k):>22.1%}" for k in test_sets))
standard_run, universal_run = histories["standard (2 layers)"], histories["universal + ACT (1 layer, <= 4 steps)"]
for k in test_sets:
    gap = universal_run.last(k) - standard_run.last(k)
    print(f"{k}: the universal transformer sorts {abs(gap):.1%} {'more' if gap >= 0 else 'fewer'} inputs than the standard one")

# %% [markdown] nbgrader={"grade": false, "grade_id": "how_long_does_each", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ### How long does each position think?
#
# Ponder steps $N$ per position for a few test inputs (lengths 6 to 14): ACT lets each position halt
# after its own number of steps. The picture and the shares printed below it show how your model
# spread them.

# %% slideshow={"slide_type": "fragment"}
ut = models["universal + ACT (1 layer, <= 4 steps)"]
inputs, targets, real = sort_batch(8, (6, 14), torch.Generator().manual_seed(3))
with torch.no_grad():
    _, n_updates, remainders = ut(inputs.to(device), real.to(device))
steps = n_updates.cpu().float().masked_fill(~real, float("nan"))
fig, ax = plt.subplots(figsize=(8, 3))
image = ax.imshow(steps.numpy(), cmap="viridis", vmin=1, vmax=4)
for b in range(8):
    for i in range(MAX_LEN):
        if real[b, i]:
            ax.text(i, b, str(inputs[b, i].item() - 2), ha="center", va="center", color="white", fontsize=8)
ax.set_xlabel("position (digit shown)")
ax.set_ylabel("example")
fig.colorbar(image, ax=ax, label="ponder steps N")
plt.show()
all_steps = ut(test_sets["lengths 3-10 (trained)"][0].to(device), test_sets["lengths 3-10 (trained)"][2].to(device))[1].cpu()
used = all_steps[test_sets["lengths 3-10 (trained)"][2]]
print("share of positions by ponder steps:", {int(k): f"{(used == k).float().mean().item():.0%}" for k in used.unique()},
      f"({len(used.unique())} different step counts in use at the training lengths)")

# %% nbgrader={"grade": true, "grade_id": "test_universal_sorter", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""The Universal Transformer with ACT sorts at least 90% of held-out inputs of the training lengths exactly."""
accuracy = histories["universal + ACT (1 layer, <= 4 steps)"].last("lengths 3-10 (trained)")
assert accuracy >= 0.90, f"expected at least 90% of inputs sorted exactly, got {accuracy:.1%}"
### BEGIN HIDDEN TESTS
fresh = sort_batch(500, (3, 10), torch.Generator().manual_seed(11))
with torch.no_grad():
    logits, n, _ = ut(fresh[0].to(device), fresh[2].to(device))
right = ((logits.argmax(-1).cpu() == fresh[1]) | ~fresh[2]).all(1).float().mean().item()
assert right >= 0.88, f"on other inputs: {right:.1%}"
assert n.min() >= 1 and n.max() <= 4
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "reading_result", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ### Reading the result
#
# Compare the two rows above (the two lines under the table say which sorts more, and by how much).
# The Universal Transformer has half the parameters but more computation per token (up to four
# applications of its one layer against two distinct layers); whether that buys more exact sorts
# in the same number of steps is what your run measures, and only the universal model's accuracy
# at the training lengths is tested. Expect both to do worse beyond the training lengths:
# positions 10-13 were never seen, and a sorted output has to be placed by position. The paper's
# length-generalisation results come from larger models trained far longer.

# %% [markdown] nbgrader={"grade": false, "grade_id": "summary", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## Summary
#
# * A **Universal Transformer** applies one shared layer repeatedly; **coordinate embeddings** tell it
#   the position and the step, and its size does not depend on depth.
# * **ACT** turns per-step halting probabilities into weights that sum to one: $p^t$ until the sum
#   reaches $1-\epsilon$, the **remainder** $R$ at step $N$; the **ponder cost** $N + R$ keeps computation in check.
# * ACT gives each position its own number of steps; whether a trained model uses that freedom is for
#   the run to show (the shares printed under the ponder-step picture), and the table shows how it
#   compares with a standard Transformer at and beyond the training lengths.

# %% [markdown] nbgrader={"grade": false, "grade_id": "further_reading", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Further reading
#
# * Dehghani et al. (2018). *Universal Transformers.* arXiv:1807.03819
# * Graves (2016). *Adaptive Computation Time for Recurrent Neural Networks.* arXiv:1603.08983
# * Lan et al. (2019). *ALBERT* (cross-layer sharing, notebook 09). arXiv:1909.11942
# * Banino, Balaguer, Blundell (2021). *PonderNet: Learning to Ponder.* arXiv:2107.05580
#
# <!-- reading-list -->
# **From the course reading list** (`readings/reading-list.md`, mostly Chinese-language articles; links as the list gives them), by the section they go with:
#
# * with *1 · Depth as recurrence*
#   * [【NLP】Universal Transformers详解](https://zhuanlan.zhihu.com/p/44655133): Universal Transformers explained (zhihu)
#   * [谷歌的机器翻译模型 Transformer，现在可以用来做任何事了](https://mp.weixin.qq.com/s?__biz=MzA3MzI4MjgzMw==&mid=2650747087&idx=3&sn=0157141d97fa2f7f8907e840d68def5d&chksm=871af4b1b06d7da7a18fe60375be52a7b40739f1972efba50b7712c67c7cfd93f00aad4dced0&mpshare=1&scene=24&srcid=0817VCBRh4QR9EkZV9R1W2xg#rd): Google's machine-translation Transformer can now do anything (the Universal Transformer) (WeChat)
#   * [When Recurrent Models Don't Need to be Recurrent](https://bair.berkeley.edu/blog/2018/08/06/recurrent/): when a feed-forward model can stand in for a recurrent one (the BAIR blog)
# <!-- /reading-list -->
