# ---
# jupyter:
#   celltoolbar: Slideshow
#   kernelspec:
#     display_name: Python 3 (course)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "title", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# # 04 · Masking
#
# **Learning objectives.** After this notebook you can
# 1. **build** padding, causal and prefix-LM masks and broadcast them to `(batch, 1, q_len, k_len)`;
# 2. **implement** a masked softmax, masked pooling and a masked loss that never produce NaN;
# 3. **handle** padding in recurrent networks with packed sequences;
# 4. **implement** BERT's 80/10/10 masked-LM corruption and check its rates statistically.
#
# **Prerequisites.** Notebook 03 (scaled dot-product attention), cross-entropy, GRUs.
#
# **Estimated time.** 1.5 hours. The notebook runs in under a minute on a laptop CPU.

# %% [markdown] nbgrader={"grade": false, "grade_id": "notes_intro", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "notes"}
# Speaker notes: one picture carries the lecture: a batch of sentences of different lengths,
# padded into a rectangle. Every mask in this notebook answers "which cells are real?".

# %% [markdown] nbgrader={"grade": false, "grade_id": "setup_text", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Setup

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
from unittest import mock

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_utils import assert_close, check_shape, describe_environment, get_device, seed_everything
from course_utils.data import pad_batch
from course_utils.plot import show_attention
from course_utils.train import fit

seed_everything(0)
device = get_device()
print(describe_environment(device))


# %% [markdown] nbgrader={"grade": false, "grade_id": "intuition_rectangles_ragged_data", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 1 · Intuition: rectangles of ragged data
#
# Sentences have different lengths, tensors are rectangles: we **pad**. From then on every
# operation that mixes positions (attention, pooling, a loss, a recurrent state) must be told
# which positions are real, or padding leaks into the result. A second kind of mask hides
# the **future** from a language model, a third hides **chosen tokens** from BERT.
#
# Convention (as in `F.scaled_dot_product_attention`): masks are **boolean, True = may attend**.
# Masked scores are filled with `torch.finfo(dtype).min`, never `-1e9` (it overflows in float16).
#
# The figure: three sentences padded into one rectangle. Left, which cells are real (the
# padding mask); right, which words a language model may look at when it predicts the word
# after each one (the causal mask), for the longest sentence.

# %% slideshow={"slide_type": "fragment"}
batch_words = [["the", "cat", "sat", "on", "mats"], ["dogs", "bark"], ["birds", "sing", "loudly"]]
width = max(len(words) for words in batch_words)
padded_words = [words + ["<pad>"] * (width - len(words)) for words in batch_words]
is_real = torch.tensor([[word != "<pad>" for word in row] for row in padded_words])       # (batch, seq)
may_see = torch.tensor([[key <= query for key in range(width)] for query in range(width)])  # (seq, seq)
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].imshow(is_real.float(), cmap="Greens", vmin=0, vmax=1.5)
for b, row in enumerate(padded_words):
    for t, word in enumerate(row):
        axes[0].text(t, b, word, ha="center", va="center", fontsize=9, color="gray" if word == "<pad>" else "black")
axes[0].set(title="padding mask: True (green) at real tokens", xlabel="position", ylabel="sentence",
            xticks=range(width), yticks=range(len(batch_words)))
axes[1].imshow(may_see.float(), cmap="Greens", vmin=0, vmax=1.5)
axes[1].set_xticks(range(width), labels=batch_words[0])
axes[1].set_yticks(range(width), labels=batch_words[0])
axes[1].set(title="causal mask: query i sees keys j <= i", xlabel="key (attended to)", ylabel="query")
fig.tight_layout()
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "math", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## The math
#
# | mask | shape | entry $(i, j)$ is True when | code |
# |---|---|---|---|
# | padding | `(batch, k_len)` | key $j$ is a real token: $j < \text{length}_b$ | `padding_mask` |
# | causal | `(q_len, k_len)` | query $i$ may see key $j$: $j \le i + (k\_len - q\_len)$ | `causal_mask` |
# | combined | `(batch, 1, q_len, k_len)` | both, broadcast over heads | `attention_mask` |
# | prefix-LM | `(S+T, S+T)` | $j < S$ and $i < S$, or $i \ge S$ and $j \le i$ | `prefix_lm_mask` |
#
# A masked softmax over keys $j$: $\alpha_{ij} = m_{ij} e^{s_{ij}} / \sum_{j'} m_{ij'} e^{s_{ij'}}$, and
# $\alpha_{i\cdot} = 0$ when no $m_{ij}$ is True. A masked mean: $\bar x = \sum_t m_t x_t / \max(1, \sum_t m_t)$.

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_1_padding_causal", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 2 · Exercise 1: padding, causal and combined masks (3 points)
#
# * `padding_mask(lengths, max_len)` -> `(batch, max_len)`, True at real tokens;
# * `causal_mask(q_len, k_len=None, device=None)` -> `(q_len, k_len)`; with `k_len > q_len`
#   the queries are the **last** `q_len` positions (as when decoding with a cache);
# * `attention_mask(lengths, max_len, causal)` -> `(batch, 1, max_len, max_len)`: key padding,
#   and the causal mask when `causal` is True. Only keys are masked: the query rows of padding
#   positions still see the real keys (their outputs are ignored later, and a row with nothing to
#   see is what exercise 2 has to handle).
#
# No Python loops over the batch: the test counts the Python lines `padding_mask` and
# `attention_mask` run for a batch of 4 and of 400, and a loop shows as many more.
#
# <details><summary>Hint 1</summary>
#
# Every mask here compares positions: a row of positions `0, 1, ..., max_len - 1` against one number per sequence (its length), or the query index against the key index. Broadcasting turns such a comparison into the whole rectangle at once, with no loop.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# The causal mask of a square is lower-triangular. With a cache the queries are the last `q_len` positions, so each row may see `k_len - q_len` more keys than in the square case: the diagonal moves right by that much.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# For `attention_mask`, give the key-padding mask the shape `(batch, 1, 1, k_len)` so that it broadcasts over heads and query rows, combine it with the causal mask so that a pair needs both, and expand it to `(batch, 1, max_len, max_len)`.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "masks", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(batch, max_len) bool, True where the position is a real token."""
    ### BEGIN SOLUTION
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
    ### END SOLUTION


def causal_mask(q_len: int, k_len: int | None = None, device=None) -> torch.Tensor:
    """(q_len, k_len) bool, True where query i may see key j (j <= i + k_len - q_len)."""
    ### BEGIN SOLUTION
    k_len = q_len if k_len is None else k_len
    return torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(diagonal=k_len - q_len)
    ### END SOLUTION


def attention_mask(lengths: torch.Tensor, max_len: int, causal: bool = False) -> torch.Tensor:
    """(batch, 1, max_len, max_len) bool: key padding, and the causal mask when asked."""
    ### BEGIN SOLUTION
    mask = padding_mask(lengths, max_len)[:, None, None, :]     # (batch, 1, 1, k_len)
    if causal:
        mask = mask & causal_mask(max_len, device=lengths.device)  # (batch, 1, q_len, k_len)
    return mask.expand(-1, 1, max_len, max_len)
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
lengths = torch.tensor([5, 3])
fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
show_attention(padding_mask(lengths, 5).float(), ax=axes[0], title="padding (batch, k_len)")
show_attention(causal_mask(5).float(), ax=axes[1], title="causal (q_len, k_len)")
show_attention(attention_mask(lengths, 5, causal=True)[1, 0].float(), ax=axes[2], title="combined, sequence 2")
fig.tight_layout()
plt.show()

# %% nbgrader={"grade": true, "grade_id": "test_masks", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""Masks: exact small cases, no loop over the batch, and attention with the combined mask equals attention on each unpadded sequence."""
from course_utils.checks import python_lines_run  # counts the Python lines a call runs: a loop shows

pad = padding_mask(torch.tensor([2, 0, 3]), 3)
check_shape(pad, (3, 3), "padding_mask(tensor([2, 0, 3]), 3)")
real = pad.sum(1).tolist()
assert real != [3, 1, 3], (f"padding_mask(tensor([2, 0, 3]), 3) has one True too many per row, {pad.int().tolist()}: "
                           "a sequence of length n has its real tokens at positions 0 to n - 1")
assert real == [2, 0, 3], f"padding_mask(tensor([2, 0, 3]), 3): expected 2, 0 and 3 True per row (the lengths), got {real}"
assert pad.tolist() == [[True, True, False], [False] * 3, [True] * 3], \
    f"padding_mask(tensor([2, 0, 3]), 3): the real tokens come first, then the padding; got {pad.int().tolist()}"
wide = padding_mask(torch.tensor([2, 1]), 4)
assert wide.tolist() == [[True, True, False, False], [True, False, False, False]], \
    f"padding_mask(tensor([2, 1]), 4): expected 4 columns (max_len), got {wide.int().tolist()}"
square = causal_mask(3)
assert not square.triu(1).any(), (f"causal_mask(3): a query sees a future key (True above the diagonal), "
                                  f"{square.int().tolist()}: query i may see keys 0 to i only")
assert square.tolist() == [[True, False, False], [True, True, False], [True, True, True]], \
    f"causal_mask(3): query i sees keys 0 to i, got {square.int().tolist()}"
cached = causal_mask(1, 3)
assert cached.tolist() == [[True, True, True]], (
    f"causal_mask(1, 3) gives {cached.int().tolist()}: with k_len > q_len the queries are the last q_len "
    "positions (decoding with a cache), so this one query is position 2 and sees all 3 keys")
mask = attention_mask(torch.tensor([4, 2]), 4, causal=True)
check_shape(mask, (2, 1, 4, 4), "attention_mask(tensor([4, 2]), 4, causal=True)")
assert mask.dtype == torch.bool, f"expected a boolean mask, got {mask.dtype}"
assert mask[1, 0, 3].any(), (f"attention_mask(tensor([4, 2]), 4, causal=True): query 3 of sequence 1 (a padding "
                             f"position) sees no key, {mask[1, 0].int().tolist()}: mask the keys (columns), "
                             "not the queries; padded queries still see the real keys")
assert not mask[0, 0].triu(1).any(), (
    f"attention_mask(tensor([4, 2]), 4, causal=True), sequence 0 (no padding): a query sees a future key, "
    f"{mask[0, 0].int().tolist()}: a pair is allowed only when both masks allow it")
plain = attention_mask(torch.tensor([4, 2]), 4)
check_shape(plain, (2, 1, 4, 4), "attention_mask(tensor([4, 2]), 4) without causal: (batch, 1, max_len, max_len) still")
g = torch.Generator().manual_seed(0)
q, k, v = (torch.randn(2, 3, 4, 8, dtype=torch.float64, generator=g) for _ in range(3))
out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
for b, n in enumerate([4, 2]):
    alone = F.scaled_dot_product_attention(q[b:b + 1, :, :n], k[b:b + 1, :, :n], v[b:b + 1, :, :n], is_causal=True)
    assert_close(out[b:b + 1, :, :n], alone, f"sequence {b}: padded and masked vs unpadded", atol=1e-12)
loop_sizes = torch.Generator().manual_seed(0)
for name, call in (("padding_mask", lambda n: padding_mask(torch.randint(1, 9, (n,), generator=loop_sizes), 8)),
                   ("attention_mask", lambda n: attention_mask(torch.randint(1, 9, (n,), generator=loop_sizes), 8, True))):
    small_lines, large_lines = python_lines_run(call, 4), python_lines_run(call, 400)
    assert large_lines <= small_lines + 20, (f"{name}: {small_lines} Python lines for a batch of 4, {large_lines} "
                                            f"for 400: a Python loop over the batch? Build the whole batch's mask at once, by broadcasting")
### BEGIN HIDDEN TESTS
rect = causal_mask(2, 4)
assert rect.tolist() == [[True, True, True, False], [True, True, True, True]], f"rectangular (cache) case: {rect.tolist()}"
plain = attention_mask(torch.tensor([3, 1]), 3, causal=False)
assert plain[1, 0].tolist() == [[True, False, False]] * 3, "without causal: every query sees the real keys"
assert attention_mask(torch.tensor([2]), 3)[0, 0, 2].tolist() == [True, True, False], "padded queries still see real keys"
out_plain = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask(torch.tensor([4, 2]), 4))
alone = F.scaled_dot_product_attention(q[1:, :, :2], k[1:, :, :2], v[1:, :, :2])
assert_close(out_plain[1:, :, :2], alone, "padding only", atol=1e-12)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_2_masked_softmax", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 3 · Exercise 2: a masked softmax without NaN (2 points)
#
# Write `masked_softmax(scores, mask, dim=-1)`: mask is boolean and broadcastable to `scores`.
# Fill masked scores with `torch.finfo(scores.dtype).min`, take the softmax, and make every
# entry of a row with **no** allowed position exactly zero. The gradient must not be NaN either.
# (`torch.softmax` of a row of `-inf` is NaN; of a row of `finfo.min` it is uniform: both wrong.)
#
# <details><summary>Hint 1</summary>
#
# Three steps: push the masked scores far down, take the softmax, then clear the rows that had nothing to see.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# `torch.finfo(scores.dtype).min` is the most negative finite number of the scores' dtype: the softmax of a row of it is uniform, never NaN, and its gradient stays finite.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# After the softmax, the masked positions hold (almost) 0 in rows with an allowed position, and 1 / k_len in rows without one: multiplying by the mask as numbers clears both and changes nothing else.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "masked_softmax", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over allowed positions; rows with none allowed are all zeros."""
    ### BEGIN SOLUTION
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=dim) * mask
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
# Try it: equal scores and a causal mask for 3 real tokens padded to 5. Row 3, a padding query, still
# sees the real keys; row 4 is forbidden everything on purpose.
demo_mask = torch.ones(5, 5, dtype=torch.bool).tril() & (torch.arange(5) < 3)
demo_mask[4] = False
demo_weights = masked_softmax(torch.zeros(5, 5), demo_mask)
fig, axes = plt.subplots(1, 2, figsize=(6, 2.5))
show_attention(demo_mask.float(), ax=axes[0], title="mask")
show_attention(demo_weights, ax=axes[1], title="masked_softmax")
fig.tight_layout()
plt.show()
print("row sums:", demo_weights.sum(-1).tolist())

# %% nbgrader={"grade": true, "grade_id": "test_masked_softmax", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""masked_softmax: allowed positions sum to 1, an all-masked row is zeros, and no NaN in values or gradients."""
scores = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], requires_grad=True)
mask = torch.tensor([[True, True, False], [False, False, False]])
p = masked_softmax(scores, mask)
check_shape(p, (2, 3), "masked_softmax(scores, mask) for scores (2, 3)")
assert p[0, :2].sum() > 0.5, (f"row 0 allows keys 0 and 1, yet they get a total weight of {p[0, :2].sum().item():.3g}: "
                              "in mask, True means may attend; which positions did you fill?")
assert_close(p[0], torch.cat([torch.softmax(torch.tensor([1.0, 2.0]), 0), torch.zeros(1)]),
             "row 0: the softmax of its two allowed scores, then 0 at the masked key")
assert not torch.allclose(p[1], torch.full((3,), 1 / 3)), (
    f"row 1 has no allowed key and comes out uniform, {p[1].tolist()}: the softmax of a row of finfo.min; "
    "the prompt asks for all zeros in such a row")
assert_close(p[1], torch.zeros(3), "row 1, with nothing to attend to: all zeros")
(p * torch.arange(3.0)).sum().backward()
assert not torch.isnan(scores.grad).any(), f"NaN in the gradient with respect to scores: {scores.grad}"
try:
    spread = masked_softmax(torch.zeros(2, 3), torch.tensor([[True, True, False]]))
except (IndexError, RuntimeError) as error:
    raise AssertionError(f"a mask of shape (1, 3) with scores of shape (2, 3) raised {type(error).__name__} ({error}): "
                         "the mask only has to broadcast to the scores, not have their shape") from None
assert_close(spread, torch.tensor([[0.5, 0.5, 0.0]] * 2), "a mask (1, 3) broadcast over scores (2, 3) of zeros")
try:
    half = masked_softmax(torch.tensor([[1.0, 2.0], [1.0, 2.0]], dtype=torch.float16),
                          torch.tensor([[True, False], [False, False]]))
except RuntimeError as error:
    raise AssertionError(f"float16 scores raised RuntimeError ({error}): is your fill value a float16 number? "
                         "float16 ends near -65504") from None
assert not torch.isnan(half).any(), (f"float16 scores give NaN, {half.tolist()}: is your fill value a float16 number? "
                                     "float16 ends near -65504, and beyond that is -inf")
cols = torch.tensor([[1.0, 3.0, 0.0], [2.0, 1.0, 5.0]])
col_mask = torch.tensor([[True, True, False], [True, False, True]])
by_column = masked_softmax(cols.t(), col_mask.t(), dim=0)
assert_close(by_column, masked_softmax(cols, col_mask).t(),
             "masked_softmax(scores.t(), mask.t(), dim=0) against masked_softmax(scores, mask).t(): is dim used?")
### BEGIN HIDDEN TESTS
half = masked_softmax(torch.randn(2, 4, dtype=torch.float16), torch.tensor([[True, False, True, False], [False] * 4]))
assert not torch.isnan(half).any() and half[1].abs().sum() == 0, "float16: use torch.finfo(dtype).min"
cols = masked_softmax(torch.zeros(3, 2), torch.tensor([[True, False], [True, False], [False, False]]), dim=0)
assert_close(cols[:, 0], torch.tensor([0.5, 0.5, 0.0]), "softmax over dim 0")
assert_close(cols[:, 1], torch.zeros(3), "an all-masked column")
big = masked_softmax(torch.tensor([[1000.0, 0.0]]), torch.tensor([[False, True]]))
assert_close(big, torch.tensor([[0.0, 1.0]]), "a huge masked score must not win")
# a key-padding mask (batch, 1, 1, k) broadcast over heads and queries, against the softmax of the real keys
wide_scores = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
key_mask = torch.tensor([[True] * 5, [True] * 2 + [False] * 3])[:, None, None, :]   # (batch, 1, 1, k_len)
spread = masked_softmax(wide_scores, key_mask)
check_shape(spread, (2, 3, 4, 5), "a broadcast mask: the scores' shape")
assert_close(spread[1, ..., :2], torch.softmax(wide_scores[1, ..., :2], -1), "broadcast mask, real keys", atol=1e-12)
assert_close(spread[1, ..., 2:], torch.zeros(3, 4, 3, dtype=torch.float64), "broadcast mask, padded keys", atol=0)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_3_masked_pooling", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 4 · Exercise 3: masked pooling and a masked loss (3 points)
#
# * `masked_mean(x, mask)`: `x` `(batch, seq, dim)`, `mask` `(batch, seq)` -> `(batch, dim)`,
#   the mean over real positions only (zeros for a row with none);
# * `masked_cross_entropy(logits, targets, mask)`: `logits` `(batch, seq, vocab)`, `targets`
#   `(batch, seq)`, `mask` `(batch, seq)` -> the mean cross-entropy over **real tokens** (not the
#   mean of per-sequence means). It must equal `F.cross_entropy(..., ignore_index=-100)` with the
#   padded targets set to -100. At padded positions `targets` may hold anything, -100 included
#   (an index `gather` cannot take): only positions where `mask` is True count. Compute it from
#   `F.log_softmax`; do not call `F.cross_entropy`.
#
# <details><summary>Hint 1</summary>
#
# A masked mean is a weighted mean: the mask, as 0/1 weights, goes into the sum and into the count.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# The count of real positions can be 0; keep the divisor at least 1, so that such a row gives 0 / 1.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# For the loss, pick each position's log-probability of its target (`gather` along the vocabulary), after replacing the targets at padded positions by any valid index: those positions are multiplied by 0 anyway. Then sum over the real positions and divide by how many there are, over the whole batch.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "masked_reductions", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x (batch, seq, dim) over positions where mask (batch, seq) is True."""
    ### BEGIN SOLUTION
    weights = mask.to(x.dtype).unsqueeze(-1)                        # (batch, seq, 1)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1)       # (batch, dim)
    ### END SOLUTION


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean token cross-entropy over real (mask True) positions."""
    ### BEGIN SOLUTION
    log_probs = F.log_softmax(logits, dim=-1)                       # (batch, seq, vocab)
    picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (batch, seq)
    return -(picked * mask).sum() / mask.sum().clamp(min=1)
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
# Try it: two sequences of lengths 3 and 1, padded to 4. Padding vectors hold 100, padding targets -100.
demo_x = torch.tensor([[[1.0], [2.0], [3.0], [100.0]], [[5.0], [100.0], [100.0], [100.0]]])
demo_mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
print("masked mean:", masked_mean(demo_x, demo_mask).flatten().tolist(), "  plain mean:", demo_x.mean(1).flatten().tolist())
# logits that favour the right token at real positions, and token 2 at padding
demo_targets = torch.tensor([[0, 1, 2, -100], [1, -100, -100, -100]])
demo_logits = 5 * F.one_hot(demo_targets.clamp(min=0), 3).float()
demo_logits[~demo_mask] = torch.tensor([-5.0, 0.0, 5.0])
print(f"masked cross-entropy: {masked_cross_entropy(demo_logits, demo_targets, demo_mask).item():.4f} "
      f"(log(1 + 2 exp(-5)) = {(1 + 2 * torch.tensor(-5.0).exp()).log().item():.4f}: the padding does not count)")

# %% nbgrader={"grade": true, "grade_id": "test_masked_reductions", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""masked_mean ignores padding; masked_cross_entropy equals F.cross_entropy(ignore_index=-100)."""
x = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [50.0], [60.0]]])
mask = torch.tensor([[True, True, False], [True, False, False]])
mean = masked_mean(x, mask)
check_shape(mean, (2, 1), "masked_mean(x, mask) for x (2, 3, 1)")
assert not torch.allclose(mean, torch.tensor([[4 / 3], [2 / 3]])), (
    f"masked_mean gives {mean.flatten().tolist()}: row 0 is (1 + 3) / 3, its real values summed over all 3 positions; "
    "what should the sum be divided by?")
assert_close(mean, torch.tensor([[2.0], [2.0]]), "masked_mean: row 0 has real values 1 and 3, row 1 only 2")
empty = masked_mean(torch.ones(1, 2, 1), torch.zeros(1, 2, dtype=torch.bool))
assert not torch.isnan(empty).any(), (f"masked_mean of a row with no real position gives {empty.flatten().tolist()}: "
                                      "0 / 0 is NaN; the prompt asks for zeros there")
assert_close(empty, torch.zeros(1, 1), "masked_mean of a row with no real position")
g = torch.Generator().manual_seed(0)
logits = torch.randn(3, 5, 7, dtype=torch.float64, generator=g)
targets = torch.randint(0, 7, (3, 5), generator=g)
mask = padding_mask(torch.tensor([5, 2, 4]), 5)
expected = F.cross_entropy(logits.flatten(0, 1), targets.masked_fill(~mask, -100).flatten(), ignore_index=-100)
loss = masked_cross_entropy(logits, targets, mask)
check_shape(loss, (), "masked_cross_entropy(logits, targets, mask): one number")
assert loss >= 0, (f"masked_cross_entropy is {loss.item():.4f}, negative: a cross-entropy averages -log p >= 0; "
                   "are you picking log-probabilities?")
everywhere = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
assert not torch.isclose(loss, everywhere), ("masked_cross_entropy equals the mean over every position, padding "
                                             "included: only positions where mask is True count")
per_sequence = torch.stack([F.cross_entropy(logits[b, :n], targets[b, :n]) for b, n in enumerate([5, 2, 4])]).mean()
assert not torch.isclose(loss, per_sequence), (
    "masked_cross_entropy equals the mean of per-sequence means: the prompt asks for the mean over all real tokens, "
    "so the sequence of 5 tokens weighs more than the one of 2")
assert_close(loss, expected, "masked_cross_entropy against F.cross_entropy(ignore_index=-100)", atol=1e-12)
try:
    with_ignored = masked_cross_entropy(logits, targets.masked_fill(~mask, -100), mask)
except (IndexError, RuntimeError) as error:
    raise AssertionError(f"masked_cross_entropy with -100 at the padded targets raised {type(error).__name__} ({error}): "
                         "the prompt says padded targets may hold anything, -100 included, which is no index") from None
assert_close(with_ignored, expected, "masked_cross_entropy with -100 at the padded targets", atol=1e-12)
### BEGIN HIDDEN TESTS
# the mean over tokens, not over sequences: lengths 5 and 1 weigh 5 : 1
uneven = padding_mask(torch.tensor([5, 1, 1]), 5)
expected = F.cross_entropy(logits.flatten(0, 1), targets.masked_fill(~uneven, -100).flatten(), ignore_index=-100)
with mock.patch.object(F, "cross_entropy", side_effect=AssertionError("compute it from log_softmax")):
    got = masked_cross_entropy(logits, targets.masked_fill(~uneven, -100), uneven)
assert_close(got, expected, "uneven lengths, padded targets holding -100", atol=1e-12)
empty = masked_mean(torch.ones(1, 3, 2), torch.zeros(1, 3, dtype=torch.bool))
assert_close(empty, torch.zeros(1, 2), "an all-padding row gives zeros, not NaN")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_4_recurrent_networks", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 5 · Exercise 4: recurrent networks and padding (2 points)
#
# A GRU run over a padded batch keeps reading after the sentence ends: its "final" state has
# digested the padding. `pack_padded_sequence` tells it where each sequence stops.
# Write `rnn_final_states(rnn, x, lengths)` returning the GRU's last-layer state after each
# sequence's **own** last token, `(batch, hidden)`, using packing: **one call** of `rnn` on
# `pack_padded_sequence(..., enforce_sorted=False)` (the test checks that the GRU is called once, on a
# `PackedSequence`). Reading the padded run's outputs at position length - 1 would give the same
# numbers for this one-directional GRU, but it still computes every padded step, and the backward
# direction of a bidirectional GRU would start in the padding.
#
# <details><summary>Hint 1</summary>
#
# `pack_padded_sequence` needs the lengths (on the CPU) and must be told that the batch comes first, as the GRU was built.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# The GRU returns `(output, h_n)`; `h_n` is `(num_layers, batch, hidden)`, already in the batch's original order when packed with `enforce_sorted=False`. The prompt asks for the last layer.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "rnn_final_states", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def rnn_final_states(rnn: nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Final hidden state of a batch_first GRU for each sequence at its own length, (batch, hidden)."""
    ### BEGIN SOLUTION
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    _, last = rnn(packed)                                           # (layers, batch, hidden), input order
    return last[-1]
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
# Try it: one sequence of 3 vectors followed by more and more padding (zero vectors).
demo_gru = nn.GRU(2, 3, batch_first=True)
sequence = torch.randn(1, 3, 2, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    for extra in (0, 2, 8):
        padded = F.pad(sequence, (0, 0, 0, extra))                      # (1, 3 + extra, 2)
        packed_state = rnn_final_states(demo_gru, padded, torch.tensor([3]))
        naive_state = demo_gru(padded)[1][-1]
        print(f"{extra} padding steps: packed {[round(v, 3) for v in packed_state.flatten().tolist()]}, "
              f"naive {[round(v, 3) for v in naive_state.flatten().tolist()]}")

# %% nbgrader={"grade": true, "grade_id": "test_rnn_final_states", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""rnn_final_states equals running each sequence alone, and differs from the naive padded run."""
torch.manual_seed(0)
gru = nn.GRU(3, 4, batch_first=True).double()
x = torch.randn(3, 6, 3, dtype=torch.float64)
lengths = torch.tensor([6, 2, 4])
try:
    got = rnn_final_states(gru, x, lengths)
except RuntimeError as error:
    if "enforce_sorted" in str(error):
        raise
    raise AssertionError(f"rnn_final_states(gru, x, lengths) for x (batch=3, seq=6, 3) raised RuntimeError ({error}): "
                         "x is batch-first, as the GRU reads it; does the packing know that?") from None
check_shape(got, (3, 4), "rnn_final_states(gru, x, lengths): (batch, hidden)")
naive = gru(x)[1][-1]
assert not torch.allclose(naive[1], got[1]), (
    "sequence 1 (length 2): your state is the GRU's state after all 6 positions, the padding included: "
    "the GRU kept reading the padding; tell it where each sequence stops")
for b in range(3):
    alone = gru(x[b:b + 1, :lengths[b]])[1][-1]
    assert_close(got[b:b + 1], alone, f"sequence {b} (length {lengths[b]}) against the GRU run on it alone", atol=1e-12)
calls = []
spy = gru.register_forward_pre_hook(lambda module, args, kwargs: calls.append(type((args or [kwargs.get("input")])[0]).__name__),
                                    with_kwargs=True)
try:
    rnn_final_states(gru, x, lengths)
finally:
    spy.remove()
assert calls == ["PackedSequence"], f"expected one call of the GRU, on a PackedSequence; got calls on {calls}"
two_layers = nn.GRU(3, 2, num_layers=2, batch_first=True).double()
layered = rnn_final_states(two_layers, x, lengths)
first_layer = two_layers(x[:1])[1][0]          # sequence 0 has no padding
assert not torch.allclose(layered[:1], first_layer), (
    "a two-layer GRU: your state is the first layer's; the prompt asks for the last layer's")
assert_close(layered[:1], two_layers(x[:1])[1][-1], "a two-layer GRU, sequence 0: the last layer's state", atol=1e-12)
### BEGIN HIDDEN TESTS
deep = nn.GRU(3, 5, num_layers=2, batch_first=True).double()
got2 = rnn_final_states(deep, x, lengths)
check_shape(got2, (3, 5), "two layers: the last layer's state")
assert_close(got2[1:2], deep(x[1:2, :2])[1][-1], "two-layer GRU, sequence 1", atol=1e-12)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_5_bert_masked", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 6 · Exercise 5: BERT's masked-LM corruption (4 points)
#
# BERT chooses **15%** of the non-special tokens. Of the chosen ones **80%** become `[MASK]`,
# **10%** a random token drawn uniformly from the vocabulary, **10%** stay unchanged. The labels
# are the original tokens at the chosen positions and -100 (ignored by the loss) elsewhere.
# Write `bert_corrupt(tokens, special, vocab_size, mask_id, generator, rate=0.15)` returning
# `(inputs, labels)`; `special` `(batch, seq)` is True at [CLS], [SEP] and padding, which are
# never chosen. Use the generator for every random draw.
#
# How the 15% are chosen differs between implementations: Hugging Face's
# `DataCollatorForLanguageModeling` chooses each non-special token independently with probability
# 0.15; BERT's own `create_pretraining_data.py` shuffles the non-special positions and takes
# round(15% of the sequence's length, [CLS] and [SEP] counted) of them, at most
# `max_predictions_per_seq` (20 at length 128). Either is accepted here: the tests check rates over
# many tokens, not counts per sequence.
#
# > **Targets (tested).** On 400 sequences of 500 tokens (the first and last special): the share of
# > non-special tokens chosen within 0.3 points of `rate` (15%; a hidden test uses 30%, within 0.5);
# > among the chosen, `[MASK]`, unchanged and random tokens each within 1 point of 80%, 10% and 10%;
# > random tokens spread over the whole vocabulary; the same generator seed gives the same output.
#
# <details><summary>Hint 1</summary>
#
# Draw uniform numbers per token with the generator twice: one draw decides whether a token is chosen (and never a special one), the other what happens to a chosen token.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Split the second draw at 0.8 and 0.9: below 0.8 `[MASK]`, between 0.8 and 0.9 a random token (drawn with the generator too), above 0.9 the token stays.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# The labels come from the original tokens, before any corruption: the token where it was chosen, -100 everywhere else.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "bert_corrupt", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def bert_corrupt(tokens: torch.Tensor, special: torch.Tensor, vocab_size: int, mask_id: int,
                 generator: torch.Generator, rate: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's 80/10/10 masked-LM corruption; returns (inputs, labels with -100 where not chosen)."""
    ### BEGIN SOLUTION
    draw = lambda: torch.rand(tokens.shape, generator=generator, device=tokens.device)
    chosen = (draw() < rate) & ~special
    labels = tokens.masked_fill(~chosen, -100)
    action = draw()
    to_mask = chosen & (action < 0.8)
    to_random = chosen & (action >= 0.8) & (action < 0.9)
    random_tokens = torch.randint(0, vocab_size, tokens.shape, generator=generator, device=tokens.device)
    inputs = tokens.masked_fill(to_mask, mask_id)
    inputs = torch.where(to_random, random_tokens, inputs)
    return inputs, labels
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
# Try it on words (rate 0.3 here, so that a short sentence shows a few choices).
words = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"] + "the a cat dog sat ran on under mat tree and then slept".split()
sentence = "[CLS] the cat sat on the mat and then the dog ran under a tree [SEP] [PAD] [PAD]".split()
demo_tokens = torch.tensor([[words.index(w) for w in sentence]])
demo_special = demo_tokens < 5                                          # [PAD], [CLS], [SEP], [UNK], [MASK]
demo_inputs, demo_labels = bert_corrupt(demo_tokens, demo_special, len(words), mask_id=words.index("[MASK]"),
                                        generator=torch.Generator().manual_seed(3), rate=0.3)
print("input: ", " ".join(words[i] for i in demo_inputs[0].tolist()))
print("labels:", " ".join(words[i] if i != -100 else "." for i in demo_labels[0].tolist()))

# %% nbgrader={"grade": true, "grade_id": "test_bert_corrupt", "locked": true, "points": 4.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""bert_corrupt: 15% chosen, 80/10/10 among them, specials never chosen, labels -100 elsewhere."""
g = torch.Generator().manual_seed(0)
tokens = torch.randint(5, 1000, (400, 500), generator=g)
special = torch.zeros_like(tokens, dtype=torch.bool)
special[:, 0] = special[:, -1] = True
inputs, labels = bert_corrupt(tokens, special, 1000, mask_id=4, generator=torch.Generator().manual_seed(1))
check_shape(inputs, (400, 500), "inputs")
check_shape(labels, (400, 500), "labels")
chosen = labels != -100
share = chosen[~special].double().mean().item()
assert abs(share - 0.85) > 0.01, (f"labels hold a token at {share:.1%} of the non-special positions, about 100% - 15%: "
                                  "labels are -100 where a token was not chosen; is that mask the right way round?")
assert abs(share - 0.15) < 0.003, f"expected 15% of the non-special tokens chosen (labels not -100), got {share:.2%}"
assert not chosen[special].any(), "special tokens ([CLS], [SEP], padding) must never be chosen, but some have labels"
assert torch.equal(inputs[special], tokens[special]), ("special tokens were changed in inputs: they are never chosen, "
                                                       "so never corrupted either")
assert torch.equal(labels[chosen], tokens[chosen]), (
    f"labels at the chosen positions must be the original tokens; {(labels[chosen] != tokens[chosen]).sum().item()} "
    "differ (are they taken from the corrupted inputs?)")
masked = (inputs[chosen] == 4).double().mean().item()
kept = (inputs[chosen] == tokens[chosen]).double().mean().item()
assert abs(masked - 0.8) < 0.01, f"expected 80% [MASK] among the chosen tokens, got {masked:.1%}"
assert abs(kept - 0.1) < 0.01, f"expected about 10% of the chosen tokens unchanged, got {kept:.1%}"
assert torch.equal(inputs[~chosen], tokens[~chosen]), "tokens that were not chosen must stay as they are in inputs"
few = tokens[:20]
first = bert_corrupt(few, special[:20], 1000, 4, torch.Generator().manual_seed(5))
second = bert_corrupt(few, special[:20], 1000, 4, torch.Generator().manual_seed(5))
assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1]), (
    "two calls with generators seeded alike gave different outputs: is every random draw made with the generator?")
half_rate = (bert_corrupt(few, special[:20], 1000, 4, torch.Generator().manual_seed(6), rate=0.5)[1] != -100)
half_share = half_rate[~special[:20]].double().mean().item()
assert abs(half_share - 0.5) < 0.02, f"rate=0.5 chose {half_share:.1%} of the non-special tokens: is the rate argument used?"
### BEGIN HIDDEN TESTS
replaced = ((inputs[chosen] != 4) & (inputs[chosen] != tokens[chosen])).double().mean().item()
assert abs(replaced - 0.1) < 0.01, f"expected about 10% random tokens among chosen, got {replaced:.1%}"
randoms = inputs[chosen][(inputs[chosen] != 4) & (inputs[chosen] != tokens[chosen])]
assert randoms.min() >= 0 and randoms.max() < 1000 and randoms.float().std() > 200, "random tokens span the vocabulary"
again = bert_corrupt(tokens, special, 1000, 4, torch.Generator().manual_seed(1))
assert torch.equal(again[0], inputs) and torch.equal(again[1], labels), "the same seed gives the same corruption"
rate = (bert_corrupt(tokens, special, 1000, 4, torch.Generator().manual_seed(2), rate=0.3)[1] != -100)[~special].double().mean()
assert abs(rate - 0.3) < 0.005, f"the rate argument must be used, got {rate:.2%}"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_6_prefix_lm", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 7 · Exercise 6: the prefix-LM mask (2 points)
#
# One Transformer stack can act as an encoder-decoder (UniLM, T5's prefix LM): the **source**
# tokens see each other in both directions, the **target** tokens see the whole source and
# the targets up to themselves. Write `prefix_lm_mask(src_len, tgt_len)` -> `(L, L)` with
# `L = src_len + tgt_len` (True = may attend).
#
# <details><summary>Hint 1</summary>
#
# Start from the causal mask of the whole length `L`: it is already right for the targets among themselves.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Then change two blocks: every row sees every source column, and the source rows still see no target column.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "prefix_lm_mask", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def prefix_lm_mask(src_len: int, tgt_len: int) -> torch.Tensor:
    """(L, L) bool: bidirectional over the source prefix, causal over the target."""
    ### BEGIN SOLUTION
    total = src_len + tgt_len
    mask = causal_mask(total)                                       # targets: causal
    mask[:, :src_len] = True                                        # everyone sees the source
    mask[:src_len, src_len:] = False                                # the source never sees targets
    return mask
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
show_attention(prefix_lm_mask(3, 4).float(), queries=["s1", "s2", "s3", "t1", "t2", "t3", "t4"],
               keys=["s1", "s2", "s3", "t1", "t2", "t3", "t4"], title="prefix-LM mask")
plt.show()

# %% nbgrader={"grade": true, "grade_id": "test_prefix_lm_mask", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""prefix_lm_mask: the source is bidirectional, targets are causal and see the whole source."""
m = prefix_lm_mask(3, 2)
check_shape(m, (5, 5), "prefix_lm_mask(3, 2): (src_len + tgt_len, src_len + tgt_len)")
shown = m.int().tolist()
assert m[:3, :3].all(), (f"prefix_lm_mask(3, 2) = {shown}: a source token (rows 0-2) does not see every source token "
                         "(columns 0-2): the source is bidirectional, every source token sees the whole source")
assert not m[:3, 3:].any(), f"prefix_lm_mask(3, 2) = {shown}: a source token (rows 0-2) sees a target (columns 3-4)"
assert m[3:, :3].all(), f"prefix_lm_mask(3, 2) = {shown}: a target (rows 3-4) does not see the whole source (columns 0-2)"
assert not m[3, 4], (f"prefix_lm_mask(3, 2) = {shown}: the first target (row 3) sees a later target (column 4): "
                     "among themselves the targets are causal")
assert m[4, 3] and m[3, 3] and m[4, 4], (f"prefix_lm_mask(3, 2) = {shown}: a target does not see itself or an earlier "
                                         "target: among themselves the targets are causal")
### BEGIN HIDDEN TESTS
assert torch.equal(prefix_lm_mask(0, 4), causal_mask(4)), "no source: a causal mask"
assert prefix_lm_mask(3, 0).all(), "no target: fully bidirectional"
big = prefix_lm_mask(4, 5)
assert big.shape == (9, 9) and big.dtype == torch.bool
assert not big[:4, 4:].any() and big[4:, :4].all() and torch.equal(big[4:, 4:], causal_mask(5))
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "experiment_what_forgetting_mask", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 8 · Experiment: what forgetting the mask does
#
# A tiny classifier (embeddings, mean pooling, a linear layer) learns whether a sequence holds
# more 1s than 2s. It is trained with your `masked_mean`. We then feed the same sequences with
# more and more padding. With the mask, padding gets weight zero, so with a correct `masked_mean` the
# predictions cannot move; pooling **without** the mask averages the padding embedding in. The
# cell prints the largest change of a predicted probability either way, on your run.

# %% slideshow={"slide_type": "fragment"}
seed_everything(0)


def make_batch(n: int, generator: torch.Generator):
    lengths = torch.randint(4, 16, (n,), generator=generator)
    seqs = [torch.randint(1, 5, (int(length),), generator=generator) for length in lengths]
    labels = torch.tensor([int((s == 1).sum() > (s == 2).sum()) for s in seqs])
    tokens, lengths = pad_batch(seqs)
    return tokens, lengths, labels


class Pooler(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 16)          # id 0 is padding, with a learned (non-zero) vector
        self.out = nn.Linear(16, 2)

    def forward(self, tokens, lengths, use_mask: bool = True):
        x = self.embed(tokens)                                  # (batch, seq, 16)
        pooled = masked_mean(x, padding_mask(lengths, tokens.shape[1])) if use_mask else x.mean(1)
        return self.out(pooled)


generator = torch.Generator().manual_seed(0)
train = [make_batch(64, generator) for _ in range(50)]
classifier = Pooler()
fit(classifier, lambda m, b: F.cross_entropy(m(b[0], b[1]), b[2]), train,
    torch.optim.Adam(classifier.parameters(), lr=1e-2), steps=400, device="cpu", progress=False)
tokens, lengths, labels = make_batch(200, torch.Generator().manual_seed(1))
extra = list(range(0, 61, 5))
curves = {True: [], False: []}
with torch.no_grad():
    for pad in extra:
        padded = F.pad(tokens, (0, pad))
        for use_mask in (True, False):
            probs = classifier(padded, lengths, use_mask).softmax(-1)[:, 1]
            curves[use_mask].append(probs)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for ax, use_mask in zip(axes, (True, False)):
    stacked = torch.stack(curves[use_mask])                     # (len(extra), 200)
    ax.plot(extra, stacked[:, :12].numpy(), alpha=0.7)
    accuracy = [(c > 0.5).long().eq(labels).float().mean().item() for c in curves[use_mask]]
    ax.set(title=f"{'with' if use_mask else 'without'} the mask: accuracy {accuracy[0]:.0%} -> {accuracy[-1]:.0%}",
           xlabel="extra padding tokens", ylabel="P(more 1s than 2s)", ylim=(0, 1))
fig.tight_layout()
plt.show()
drift = {m: (torch.stack(curves[m]) - curves[m][0]).abs().max().item() for m in (True, False)}
print(f"largest change in probability as padding grows: with the mask {drift[True]:.2e}, without {drift[False]:.2f}")
if drift[True] > 1e-4:
    print("With the mask the predictions moved: your masked_mean lets the padding in (exercise 3's test says where).")

# %% [markdown] nbgrader={"grade": false, "grade_id": "summary", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## Summary
#
# * **Padding masks** (per key), **causal masks** (per query/key pair, offset for caches) and the
#   **prefix-LM** mask are all boolean, True = may attend, and broadcast to `(batch, 1, q, k)`.
# * A masked softmax fills with `finfo.min` and zeroes rows with nothing to see: no NaN in values
#   or gradients, in any precision.
# * Pooling and losses average over **real tokens**; RNNs need **packed** sequences.
# * **BERT's** corruption chooses 15%, then 80/10/10; the tests check its rates statistically.
# * Forgetting a mask does not crash anything: the predictions drift with the amount of padding (the
#   experiment's right-hand panel, on your run), which is why it is the bug most worth a test.

# %% [markdown] nbgrader={"grade": false, "grade_id": "further_reading", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Further reading
#
# * Vaswani et al. (2017). *Attention Is All You Need.* arXiv:1706.03762 (masking in the decoder)
# * Devlin et al. (2018). *BERT: Pre-training of Deep Bidirectional Transformers.* arXiv:1810.04805 (section 3.1, 80/10/10)
# * Dong et al. (2019). *Unified Language Model Pre-training (UniLM).* arXiv:1905.03197 (prefix-LM masks)
# * Raffel et al. (2019). *Exploring the Limits of Transfer Learning (T5).* arXiv:1910.10683
#
# <!-- reading-list -->
# **From the course reading list** (`readings/reading-list.md`, mostly Chinese-language articles; links as the list gives them), by the section they go with:
#
# * with *1 · Intuition: rectangles of ragged data*
#   * [NLP 中的Mask全解](https://zhuanlan.zhihu.com/p/139595546): masks in NLP, all of them (zhihu)
#   * [深度学习中的mask到底是什么意思](https://www.zhihu.com/question/320615749/answer/1080485410): what a mask actually means in deep learning (zhihu)
# * with *5 · Exercise 4: recurrent networks and padding*
#   * [为什么RNN 需要mask 输入](https://www.zhihu.com/question/55014250/answer/214236204): why an RNN needs its input masked (zhihu)
# * with *7 · Exercise 6: the prefix-LM mask*
#   * [从语言模型到Seq2Seq：Transformer如戏，全靠Mask](https://zhuanlan.zhihu.com/p/84157931): from language models to seq2seq: the Transformer's masks decide the role it plays (zhihu)
# <!-- /reading-list -->
