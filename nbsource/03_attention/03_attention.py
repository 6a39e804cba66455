# ---
# jupyter:
#   celltoolbar: Slideshow
#   kernelspec:
#     display_name: Python 3 (course)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "title", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# # 03 · Attention
#
# **Learning objectives.** After this notebook you can
# 1. **explain** why a fixed-size encoder state is a bottleneck for sequence-to-sequence models;
# 2. **implement** additive (Bahdanau), multiplicative (Luong) and scaled dot-product attention with boolean masks;
# 3. **measure** why dot-product scores are divided by $\sqrt{d_k}$;
# 4. **train** a GRU encoder-decoder with attention that turns human-written dates into ISO dates;
# 5. **read** what the trained model attends to from its alignment heatmaps.
#
# **Prerequisites.** PyTorch tensors and `nn.Module`, recurrent networks (GRU), cross-entropy.
# Notebooks 01-02 help but are not required.
#
# **Estimated time.** 2 hours. The whole notebook runs in about a minute on a laptop CPU.

# %% [markdown] nbgrader={"grade": false, "grade_id": "notes_intro", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "notes"}
# Speaker notes: start from the bottleneck picture; ask the room how a 128-number vector
# could hold a 40-word sentence. The rest of the lecture answers that question.

# %% [markdown] nbgrader={"grade": false, "grade_id": "setup_text", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Setup
#
# `course_utils` holds the plumbing (data, plots, the training loop); everything that
# *is* attention you write yourself below. `get_device()` picks CUDA when present; set
# `COURSE_DEVICE=cpu` to force the CPU.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
import math
from unittest import mock

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_utils import assert_close, check_shape, describe_environment, get_device, seed_everything
from course_utils.data import Vocab, make_dates, seq2seq_loader
from course_utils.plot import plot_history, show_attention
from course_utils.train import count_parameters, fit

seed_everything(0)
device = get_device()
print(describe_environment(device))

# %% [markdown] nbgrader={"grade": false, "grade_id": "intuition_bottleneck", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 1 · Intuition: the bottleneck
#
# A plain encoder-decoder reads the whole source into one vector $h_S$ and decodes
# from it alone. Every detail of a long input must squeeze through those numbers.
#
# **Attention** lets the decoder, at every output step, look back at *all* encoder
# states and take a weighted average of the ones that matter now. The weights are
# computed from how well each encoder state (a **key**) matches the decoder's current
# state (the **query**).
#
# The figure shows the idea on a toy example: the weights over five source positions
# for three decoder steps. Each row sums to one.

# %% slideshow={"slide_type": "fragment"}
toy = torch.softmax(torch.tensor([[4.0, 1, 0, 0, 0], [0, 0.5, 4, 1, 0], [0, 0, 0.5, 1, 4]]), dim=-1)
show_attention(toy, queries=["out 1", "out 2", "out 3"], keys=["x1", "x2", "x3", "x4", "x5"],
               title="each output step attends to a different input")
plt.show()


# %% [markdown] nbgrader={"grade": false, "grade_id": "math", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 2 · The math
#
# One decoder step attends over $S$ source positions. With a query $q$, keys $k_j$ and values $v_j$:
#
# $$e_j = \operatorname{score}(q, k_j), \qquad \alpha_j = \frac{\exp e_j}{\sum_{j'} \exp e_{j'}}, \qquad c = \sum_j \alpha_j v_j$$
#
# Three scores, in historical order:
#
# $$\text{additive (Bahdanau 2014):}\quad e_j = w^\top \tanh(W_q q + W_k k_j)$$
# $$\text{multiplicative (Luong 2015):}\quad e_j = q^\top W k_j$$
# $$\text{scaled dot product (Vaswani 2017):}\quad e_j = \frac{q^\top k_j}{\sqrt{d_k}}$$
#
# A **mask** $m_j \in \{\text{True}, \text{False}\}$ says which keys may be attended to
# (True = may attend, as in `F.scaled_dot_product_attention`). Masked scores are set to the
# most negative float, so their weight is exactly zero.

# %% [markdown] nbgrader={"grade": false, "grade_id": "symbol_shape_meaning", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# | symbol | shape | meaning | code name |
# |---|---|---|---|
# | $q$ | `(batch, d_query)` | decoder state asking "what do I need?" | `query` |
# | $k_j$ | `(batch, src_len, d_key)` | encoder states, matched against the query | `keys` |
# | $v_j$ | `(batch, src_len, d_value)` | encoder states, averaged into the answer | `values` |
# | $m_j$ | `(batch, src_len)` bool | True where attending is allowed | `mask` |
# | $W_q, W_k$ | `(d_attn, d_query)`, `(d_attn, d_key)` | additive projections | `w_query`, `w_key` |
# | $w$ | `(d_attn,)` | additive scoring vector | `v` |
# | $W$ | `(d_query, d_key)` | bilinear (multiplicative) map | `w` |
# | $e_j$ | `(batch, src_len)` | scores | `scores` |
# | $\alpha_j$ | `(batch, src_len)` | attention weights, sum to 1 over allowed keys | `weights` |
# | $c$ | `(batch, d_value)` | context vector | `context` |

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_1_additive_scores", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 3 · Exercise 1: additive scores (2 points)
#
# Write `additive_scores(query, keys, w_query, w_key, v)` returning $e_j = w^\top \tanh(W_q q + W_k k_j)$.
#
# * `query` `(batch, d_query)`, `keys` `(batch, src_len, d_key)`;
# * `w_query` `(d_attn, d_query)`, `w_key` `(d_attn, d_key)`, `v` `(d_attn,)` are plain tensors;
# * return `(batch, src_len)`.
#
# Broadcast the projected query over the source positions; no loops.
#
# <details><summary>Hint 1</summary>
#
# Project first, combine second: $W_q q$ is one vector per sequence, $W_k k_j$ one per source position.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# A tensor of shape `(batch, 1, d_attn)` adds to one of shape `(batch, src_len, d_attn)` position by position.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# After the `tanh`, the dot product with $w$ runs over the `d_attn` axis, which leaves `(batch, src_len)`.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "additive_scores", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def additive_scores(query: torch.Tensor, keys: torch.Tensor, w_query: torch.Tensor,
                    w_key: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Bahdanau scores e_j = v . tanh(W_q q + W_k k_j); returns (batch, src_len)."""
    ### BEGIN SOLUTION
    projected_query = query @ w_query.T                       # (batch, d_attn)
    projected_keys = keys @ w_key.T                           # (batch, src_len, d_attn)
    hidden = torch.tanh(projected_query.unsqueeze(1) + projected_keys)  # (batch, src_len, d_attn)
    return hidden @ v                                         # (batch, src_len)
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
# Try it: two sequences, five source positions.
g = torch.Generator().manual_seed(0)
demo_scores = additive_scores(torch.randn(2, 6, generator=g), torch.randn(2, 5, 4, generator=g),
                              torch.randn(3, 6, generator=g), torch.randn(3, 4, generator=g),
                              torch.randn(3, generator=g))
print(demo_scores.shape, demo_scores)

# %% nbgrader={"grade": true, "grade_id": "test_additive_scores", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""additive_scores: shape (batch, src_len), projections of shape (d_attn, ...), scores bounded by |v|_1, and closed forms."""
q = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
k = torch.tensor([[[1.0, 1.0], [-0.5, 2.0], [0.0, 0.0]]], dtype=torch.float64)
eye = torch.eye(2, dtype=torch.float64)
got = additive_scores(q, k, eye, eye, torch.ones(2, dtype=torch.float64))
check_shape(got, (1, 3), "additive_scores(query (1, 2), keys (1, 3, 2), ...)")
# d_attn = 3 while the query or the keys have 2 features: w_query is (d_attn, d_query), w_key is (d_attn, d_key)
wide = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)      # (3, 2)
eye3, ones3 = torch.eye(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
q3 = torch.tensor([[0.5, -1.0, 0.25]], dtype=torch.float64)
k3 = torch.tensor([[[1.0, 0.0, -1.0], [0.5, 0.5, 0.5], [0.0, 2.0, 0.0]]], dtype=torch.float64)
for name, args, shape, product in (("w_query", (q, k3, wide, eye3), "(d_attn, d_query) = (3, 2)", "W_q q turns the query"),
                                   ("w_key", (q3, k, eye3, wide), "(d_attn, d_key) = (3, 2)", "W_k k_j turns each key")):
    try:
        got_wide = additive_scores(*args, ones3)
    except RuntimeError as error:
        raise AssertionError(f"additive_scores with {name} of shape {shape} raised RuntimeError ({error}): "
                             f"the prompt gives {name} d_attn rows, and {product} into d_attn numbers") from None
    check_shape(got_wide, (1, 3), f"additive_scores with {name} of shape {shape}")
# |tanh| < 1, so |v . tanh(x)| <= |v_1| + ... + |v_d_attn|: 2 for v = [1, 1]
big = additive_scores(torch.tensor([[3.0, 3.0]], dtype=torch.float64), torch.tensor([[[4.0, 4.0]]], dtype=torch.float64),
                      eye, eye, torch.ones(2, dtype=torch.float64))
assert big.abs().max() <= 4, (f"additive_scores gives {big.flatten().tolist()} for query [3, 3], key [4, 4], identity "
                              "projections and v = [1, 1]; with a tanh no score can pass |v_1| + |v_2| = 2: is the tanh applied?")
assert big.abs().max() <= 2 + 1e-12, (
    f"additive_scores gives {big.item():.4f} for query [3, 3], key [4, 4], identity projections and v = [1, 1], beyond "
    "|v_1| + |v_2| = 2, the most v . tanh(x) can be: the prompt takes one tanh, of the sum W_q q + W_k k_j; where is yours?")
v = torch.tensor([2.0, -3.0], dtype=torch.float64)
once, twice = additive_scores(q, k, eye, eye, v), additive_scores(q, k, eye, eye, 2 * v)
assert not torch.allclose(once, twice), ("additive_scores gives the same scores for v and for 2 v: is v used? "
                                         "Each score is v . tanh(...), a dot product over the d_attn axis")
# With W_q = W_k = I: e_j = v_1 tanh(q1 + k_j1) + v_2 tanh(q2 + k_j2)
expected = torch.tensor([[math.tanh(1.5) + math.tanh(0.0), math.tanh(0.0) + math.tanh(1.0),
                          math.tanh(0.5) + math.tanh(-1.0)]], dtype=torch.float64)
assert_close(got, expected, "scores with identity projections and v = [1, 1]", atol=1e-12)
assert_close(once, torch.tensor([[2, -3.0]], dtype=torch.float64) @ torch.tanh(q.T + k[0].T),
             "scores with identity projections and v = [2, -3]", atol=1e-12)
### BEGIN HIDDEN TESTS
# rectangular projections catch a transposed weight; v weighting catches a plain sum
g = torch.Generator().manual_seed(1)
q = torch.randn(4, 3, dtype=torch.float64, generator=g)
k = torch.randn(4, 7, 5, dtype=torch.float64, generator=g)
wq = torch.randn(2, 3, dtype=torch.float64, generator=g)
wk = torch.randn(2, 5, dtype=torch.float64, generator=g)
v = torch.tensor([2.0, -3.0], dtype=torch.float64)
got = additive_scores(q, k, wq, wk, v)
check_shape(got, (4, 7), "additive_scores with d_attn=2")
# each batch row must only use its own query
alone = additive_scores(q[2:3], k[2:3], wq, wk, v)
assert_close(got[2:3], alone, "batch rows are independent", atol=1e-12)
# scaling v scales the scores linearly; a missing tanh breaks the bound |e| <= |v|_1
assert_close(additive_scores(q, k, wq, wk, 2 * v), 2 * got, "linear in v", atol=1e-12)
assert got.abs().max() <= v.abs().sum() + 1e-12, "scores exceed |v|_1: is tanh missing?"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_2_masked_softmax", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 4 · Exercise 2: masked softmax and the weighted sum (3 points)
#
# Write `attend(scores, values, mask=None)` returning `(context, weights)`:
#
# * `scores` `(..., q_len, k_len)` or `(batch, k_len)`; `values` `(..., k_len, d_value)` or `(batch, k_len, d_value)`;
# * `mask` broadcastable to `scores`, boolean, **True = may attend**;
# * fill masked scores with `torch.finfo(scores.dtype).min` (never `-1e9`: it overflows in half precision);
# * a row whose keys are **all** masked gets weights of zero and a zero context, and no NaN anywhere;
# * `weights` has the shape of `scores`; `context` is `weights @ values`.
#
# When `scores` is `(batch, k_len)` (one query per sequence) return `context` of shape `(batch, d_value)`.
#
# <details><summary>Hint 1</summary>
#
# Each query's weights are a distribution over the keys: which axis of `scores` holds the keys?
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Fill the masked scores before the softmax; a row with every key masked still comes out uniform, so fix those rows afterwards.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# For one query per sequence, give `weights` a length-1 query axis for the product with `values`, then drop it again.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "attend", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def attend(scores: torch.Tensor, values: torch.Tensor,
           mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax over the last axis with a boolean mask (True = may attend), then weight the values."""
    ### BEGIN SOLUTION
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)                  # (..., k_len)
    if mask is not None:
        weights = weights * mask                             # all-masked rows: uniform -> 0
    if weights.dim() == values.dim() - 1:                   # one query per sequence
        return (weights.unsqueeze(-2) @ values).squeeze(-2), weights  # (batch, d_value)
    return weights @ values, weights                         # (..., q_len, d_value)
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
# Try it: the second sequence has only 2 real tokens, the third none at all.
scores = torch.zeros(3, 4)
values = torch.arange(12.0).reshape(1, 4, 3).expand(3, 4, 3)
mask = torch.tensor([[True, True, True, True], [True, True, False, False], [False] * 4])
context, weights = attend(scores, values, mask)
print(weights)
print(context)

# %% nbgrader={"grade": true, "grade_id": "test_attend", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""attend: weights sum to 1 over the allowed keys (the last axis), are 0 on masked keys, and all-masked rows give zeros without NaN."""
scores = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [5.0, 1.0, 1.0]])
values = torch.eye(3).expand(3, 3, 3)
mask = torch.tensor([[True, True, False], [False, False, False], [True, True, True]])
context, weights = attend(scores, values, mask)
check_shape(weights, (3, 3), "weights for scores (batch=3, k_len=3)")
check_shape(context, (3, 3), "context for values (batch=3, k_len=3, d_value=3)")
assert weights[0, :2].sum() > 0.5, (
    f"row 0 may attend to keys 0 and 1, yet they get a total weight of {weights[0, :2].sum().item():.3g}: "
    "in mask, True means may attend; which scores did you fill?")
assert not (torch.isnan(weights).any() or torch.isnan(context).any()), (
    f"NaN in attend's output, weights {weights.tolist()}: row 1 has every key masked, and the softmax of a row "
    "of -inf is NaN; the prompt fills with torch.finfo(scores.dtype).min")
assert not torch.allclose(weights[1], torch.full((3,), 1 / 3)), (
    "row 1 has every key masked but its weights are uniform (1/3 each), the softmax of a row of finfo.min: "
    "the prompt asks for zero weights there")
assert_close(weights[1], torch.zeros(3), "weights of row 1, whose keys are all masked")
assert not context[1].abs().sum() > 0, (
    f"row 1 has every key masked: its weights are 0, but its context is {context[1].tolist()}, not 0: "
    "the context must come from the weights that attend returns")
assert_close(weights[0, :2], torch.softmax(torch.tensor([1.0, 2.0]), dim=0), "row 0: the softmax of its two allowed scores")
assert weights[0, 2] == 0, f"row 0: its masked key 2 must get weight exactly 0, got {weights[0, 2].item()}"
assert_close(weights.sum(-1)[[0, 2]], torch.ones(2), "the weights of rows 0 and 2 (with allowed keys) summed over the keys")
assert_close(context, weights @ torch.eye(3), "context with values = I (the weights themselves)")
# (batch, q_len, k_len) scores: each query's weights are a distribution over the keys, the last axis
g = torch.Generator().manual_seed(0)
scores3, values3 = torch.randn(2, 4, 5, generator=g), torch.randn(2, 5, 6, generator=g)
context3, weights3 = attend(scores3, values3)
check_shape(weights3, (2, 4, 5), "weights for scores (batch=2, q_len=4, k_len=5)")
check_shape(context3, (2, 4, 6), "context for scores (2, 4, 5) and values (2, 5, 6)")
assert not torch.allclose(weights3.sum(1), torch.ones(2, 5)), (
    "for scores (batch=2, q_len=4, k_len=5) the weights sum to 1 over the queries (axis 1), not over the keys "
    "(the last axis): which dimension did the softmax take?")
assert_close(weights3.sum(-1), torch.ones(2, 4), "weights for scores (2, 4, 5) summed over the keys (the last axis)")
assert_close(context3, weights3 @ values3, "context = weights @ values for scores (2, 4, 5)")
# float16: the fill value must be a float16 number
try:
    _, half = attend(torch.tensor([[1.0, 2.0], [1.0, 2.0]], dtype=torch.float16), torch.eye(2, dtype=torch.float16).expand(2, 2, 2),
                     torch.tensor([[True, False], [False, False]]))
except RuntimeError as error:
    raise AssertionError(f"attend with float16 scores raised RuntimeError ({error}): is your fill value a float16 "
                         "number? float16 ends near -65504; the prompt fills with torch.finfo(scores.dtype).min") from None
assert not torch.isnan(half).any(), f"attend with float16 scores gives NaN, {half.tolist()}: is your fill value a float16 number?"
assert_close(half.float(), torch.tensor([[1.0, 0.0], [0.0, 0.0]]), "float16 weights: one allowed key, then none")
### BEGIN HIDDEN TESTS
# an inverted mask, softmax over the wrong axis, or -1e9 filling all fail here
s = torch.randn(2, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
vals = torch.randn(2, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
m = torch.rand(2, 4, 5, generator=torch.Generator().manual_seed(5)) > 0.4
m[0, 1] = False
ctx, w = attend(s, vals, m)
check_shape(w, (2, 4, 5), "weights for (batch, q_len, k_len) scores")
check_shape(ctx, (2, 4, 6), "context for (batch, q_len, k_len) scores")
assert (w[~m] == 0).all(), "masked keys must get weight 0"
assert_close(w[0, 1], torch.zeros(5, dtype=torch.float64), "all-masked query row")
assert_close(ctx[0, 1], torch.zeros(6, dtype=torch.float64), "context of an all-masked row")
rows = m.any(-1)
assert_close(w.sum(-1)[rows], torch.ones(int(rows.sum()), dtype=torch.float64), "weights of the rows with an allowed key, summed over the keys")
assert_close(ctx, w @ vals, "context = weights @ values", atol=1e-12)
# no mask at all, and gradients without NaN for all-masked rows
_, w_plain = attend(s, vals)
assert_close(w_plain, torch.softmax(s, -1), "no mask: plain softmax", atol=1e-12)
s16 = torch.randn(1, 2, 3, dtype=torch.float16)
_, w16 = attend(s16, torch.randn(1, 3, 2, dtype=torch.float16), torch.tensor([[[True, False, True], [False] * 3]]))
assert not torch.isnan(w16).any(), "float16 masking produced NaN: use torch.finfo(dtype).min"
s_grad = s.clone().requires_grad_(True)
attend(s_grad, vals, m)[0].sum().backward()
assert not torch.isnan(s_grad.grad).any(), "NaN in the gradient with respect to scores when a row has every key masked"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_3_additive_attention", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 5 · Exercise 3: additive attention as a module (2 points)
#
# Wrap exercises 1-2 in `AdditiveAttention(d_query, d_key, d_attn)`: three `nn.Linear`
# layers without bias named `w_query` `(d_query -> d_attn)`, `w_key` `(d_key -> d_attn)` and
# `v` `(d_attn -> 1)`. `forward(query, keys, values, mask=None)` returns
# `(context (batch, d_value), weights (batch, src_len))`. Use your own `additive_scores`
# and `attend`.
#
# <details><summary>Hint 1</summary>
#
# An `nn.Linear` without bias stores its matrix in `.weight`, with shape `(out_features, in_features)`.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# `v` maps `d_attn -> 1`: the vector $w$ of exercise 1 is its one row.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "additive_attention", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class AdditiveAttention(nn.Module):
    """Bahdanau attention: one query per sequence over src_len keys."""

    def __init__(self, d_query: int, d_key: int, d_attn: int) -> None:
        super().__init__()
        self.w_query = nn.Linear(d_query, d_attn, bias=False)
        self.w_key = nn.Linear(d_key, d_attn, bias=False)
        self.v = nn.Linear(d_attn, 1, bias=False)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (context (batch, d_value), weights (batch, src_len))."""
        ### BEGIN SOLUTION
        scores = additive_scores(query, keys, self.w_query.weight, self.w_key.weight,
                                 self.v.weight.squeeze(0))    # (batch, src_len)
        return attend(scores, values, mask)
        ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
additive = AdditiveAttention(d_query=8, d_key=6, d_attn=5)
ctx, w = additive(torch.randn(2, 8), torch.randn(2, 4, 6), torch.randn(2, 4, 3),
                  torch.tensor([[True, True, True, False], [True, False, False, False]]))
print(ctx.shape, w)

# %% nbgrader={"grade": true, "grade_id": "test_additive_attention", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""AdditiveAttention: uses its own parameters, scores from the keys, respects the mask, returns (context, weights)."""
torch.manual_seed(0)
layer = AdditiveAttention(4, 3, 5).double()
q, k = torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 6, 3, dtype=torch.float64)
# first with values the size of the keys (d_value = d_key = 3), twice: only the values change
same_size = torch.randn(2, 2, 6, 3, dtype=torch.float64)
try:
    _, w_first = layer(q, k, same_size[0])
except RuntimeError as error:
    raise AssertionError(f"AdditiveAttention(d_query=4, d_key=3, d_attn=5) on a query (2, 4) and keys (2, 6, 3) raised "
                         f"RuntimeError ({error}): w_query projects the query and w_key the keys; does each weight "
                         "reach additive_scores in its place?") from None
_, w_second = layer(q, k, same_size[1])
assert_close(w_second, w_first, "weights when only the values change (the scores come from the query and the keys)", atol=1e-12)
vals = torch.randn(2, 6, 2, dtype=torch.float64)
mask = torch.tensor([[True] * 6, [True, True, False, False, False, False]])
ctx, w = layer(q, k, vals, mask)
assert ctx.shape[-1] != k.shape[-1], (f"context has shape {tuple(ctx.shape)}: d_key = 3 numbers per sequence, the keys' "
                                      "size, not d_value = 2: which tensor does the context average?")
check_shape(ctx, (2, 2), "context (batch, d_value)")
check_shape(w, (2, 6), "weights (batch, src_len)")
assert (w[1, 2:] == 0).all(), (f"sequence 1 may attend to keys 0 and 1 only, yet keys 2 to 5 (mask False) get weights "
                               f"{[round(x, 4) for x in w[1, 2:].tolist()]}: is the mask passed on to attend?")
# closed form with hand-set weights: W_q q = (q_1, 2 q_3), W_k k = k, v = [1, -1]
small = AdditiveAttention(d_query=3, d_key=2, d_attn=2).double()
with torch.no_grad():
    small.w_query.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]))
    small.w_key.weight.copy_(torch.eye(2))
    small.v.weight.copy_(torch.tensor([[1.0, -1.0]]))
query = torch.tensor([[0.5, 7.0, -0.25]], dtype=torch.float64)                 # W_q q = (0.5, -0.5)
keys = torch.tensor([[[1.0, 0.0], [-0.5, 0.5], [3.0, 3.0]]], dtype=torch.float64)
# e_1 = tanh(1.5) - tanh(-0.5), e_2 = tanh(0) - tanh(0) = 0, key 3 masked; values = I, so context = weights
e1 = math.tanh(1.5) + math.tanh(0.5)
expected = torch.tensor([[1 / (1 + math.exp(-e1)), 1 / (1 + math.exp(e1)), 0.0]], dtype=torch.float64)
small_ctx, small_w = small(query, keys, torch.eye(3, dtype=torch.float64)[None], torch.tensor([[True, True, False]]))
scaled = e1 / math.sqrt(2)
assert not torch.allclose(small_w[0, 0], torch.tensor(1 / (1 + math.exp(-scaled)), dtype=torch.float64)), (
    "the weights match scores divided by sqrt(d_attn) = sqrt(2): additive scores e_j = w^T tanh(W_q q + W_k k_j) take no scale")
assert_close(small_w, expected, "weights with W_q = [[1, 0, 0], [0, 0, 2]], W_k = I, v = [1, -1]", atol=1e-12)
assert_close(small_ctx, expected, "context with values = I (the weights themselves)", atol=1e-12)
### BEGIN HIDDEN TESTS
names = {n for n, _ in layer.named_parameters()}
assert names == {"w_query.weight", "w_key.weight", "v.weight"}, f"expected three bias-free Linear layers, got {sorted(names)}"
assert_close(ctx, (w.unsqueeze(1) @ vals).squeeze(1), "context = weights @ values", atol=1e-12)
ctx_nomask, w_nomask = layer(q, k, vals)
assert_close(w_nomask.sum(-1), torch.ones(2, dtype=torch.float64), "no mask: rows sum to 1")
# gradients reach every parameter
ctx.sum().backward()
assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters()), "a parameter gets no gradient"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_4_multiplicative_attention", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 6 · Exercise 4: multiplicative attention (2 points)
#
# Luong's "general" score is bilinear: $e_j = q^\top W k_j$. Write
# `MultiplicativeAttention(d_query, d_key)` with one bias-free `nn.Linear` named `w` mapping
# `d_key -> d_query` (so `w(keys)` is $W k_j$), and the same `forward` signature and outputs
# as `AdditiveAttention`. It is cheaper than additive attention: one matrix product, no `tanh`.
#
# <details><summary>Hint 1</summary>
#
# Apply `w` to the keys first: that gives $W k_j$ for every position, in the query's space.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Each score is then a dot product of the query with one projected key, over the `d_query` axis; the rest is `attend`.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "multiplicative_attention", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class MultiplicativeAttention(nn.Module):
    """Luong 'general' attention: e_j = q^T W k_j."""

    def __init__(self, d_query: int, d_key: int) -> None:
        super().__init__()
        self.w = nn.Linear(d_key, d_query, bias=False)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (context (batch, d_value), weights (batch, src_len))."""
        ### BEGIN SOLUTION
        scores = (self.w(keys) @ query.unsqueeze(-1)).squeeze(-1)  # (batch, src_len)
        return attend(scores, values, mask)
        ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
# Try it: the same inputs through both kinds of attention; the second sequence has 2 real keys.
g = torch.Generator().manual_seed(0)
demo_query, demo_keys = torch.randn(2, 8, generator=g), torch.randn(2, 4, 6, generator=g)
demo_mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
both_kinds = (("multiplicative", MultiplicativeAttention(d_query=8, d_key=6)), ("additive", AdditiveAttention(8, 6, d_attn=5)))
for name, layer in both_kinds:
    demo_context, demo_weights = layer(demo_query, demo_keys, demo_keys, demo_mask)
    print(f"{name:>14}: context {tuple(demo_context.shape)}, weights {[[round(w, 3) for w in row] for row in demo_weights.tolist()]}")

# %% nbgrader={"grade": true, "grade_id": "test_multiplicative_attention", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""MultiplicativeAttention: with W = I the scores are plain dot products q . k_j; a mask is honoured; W is applied to the keys."""
layer = MultiplicativeAttention(3, 3).double()
with torch.no_grad():
    layer.w.weight.copy_(torch.eye(3))
q = torch.tensor([[1.0, 0.0, 2.0]], dtype=torch.float64)
k = torch.tensor([[[1.0, 1.0, 1.0], [0.0, 5.0, 0.0], [-1.0, 0.0, 0.5]]], dtype=torch.float64)
ctx, w = layer(q, k, torch.eye(3, dtype=torch.float64)[None])
check_shape(w, (1, 3), "weights (batch, src_len)")
check_shape(ctx, (1, 3), "context (batch, d_value)")
dot = torch.tensor([[3.0, 0.0, 0.0]], dtype=torch.float64)                      # q . k_j
assert not torch.allclose(w, torch.softmax(dot / math.sqrt(3), -1)), (
    "with W = I the weights are those of q . k_j / sqrt(3): the scores are divided by sqrt(d_key); "
    "Luong's score q^T W k_j takes no scale")
assert_close(w, torch.softmax(dot, -1), "weights with W = I: the softmax of the dot products q . k_j")
assert not torch.allclose(ctx, w @ k[0]), ("the context equals weights @ keys: which tensor does the context average?")
assert_close(ctx, w, "context with values = I (the weights themselves)", atol=1e-12)
_, w_masked = layer(q, k, torch.eye(3, dtype=torch.float64)[None], torch.tensor([[True, True, False]]))
assert w_masked[0, 2] == 0, (f"key 2 is masked (False) yet gets weight {w_masked[0, 2].item():.4f}: "
                             "is the mask passed on to attend?")
assert_close(w_masked[0, :2], torch.softmax(dot[0, :2], -1), "weights with key 2 masked")
# a W that is not symmetric: W k = (k_2, 0, 0), so q^T W k_j = q_1 k_j2 = (1, 5, 0)
with torch.no_grad():
    layer.w.weight.copy_(torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
_, w_skew = layer(q, k, torch.eye(3, dtype=torch.float64)[None])
transposed = torch.softmax(q @ layer.w.weight.T.detach() @ k[0].T, -1)            # q^T W^T k_j = q_2 k_j1 = 0
assert not torch.allclose(w_skew, transposed), (
    "with W = [[0, 1, 0], [0, 0, 0], [0, 0, 0]] the weights are those of q^T W^T k_j, W transposed: "
    "self.w(keys) is W k_j, as the prompt says; how is W applied in your scores?")
assert_close(w_skew, torch.softmax(torch.tensor([[1.0, 5.0, 0.0]], dtype=torch.float64), -1),
             "weights with W = [[0, 1, 0], [0, 0, 0], [0, 0, 0]], where q^T W k_j = q_1 k_j2")
### BEGIN HIDDEN TESTS
# a non-symmetric W catches q^T W^T k; a mask must still be honoured
torch.manual_seed(2)
layer = MultiplicativeAttention(4, 2).double()
q, k = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 5, 2, dtype=torch.float64)
mask = torch.ones(3, 5, dtype=torch.bool)
mask[0, 3:] = False
vals = torch.randn(3, 5, 6, dtype=torch.float64)
ctx, w = layer(q, k, vals, mask)
check_shape(ctx, (3, 6), "context")
# q^T W k_j = (q^T W) . k_j: the built-in dot-product attention with queries q^T W and no scale is the twin
W = layer.w.weight.detach()                                   # (d_query, d_key)
twin = lambda values: F.scaled_dot_product_attention((q @ W)[:, None], k, values, attn_mask=mask[:, None], scale=1.0)[:, 0]
assert_close(ctx, twin(vals), "context with a random W and a mask", atol=1e-10)
assert_close(w, twin(torch.eye(5, dtype=torch.float64).expand(3, 5, 5)), "weights with a random W and a mask", atol=1e-10)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_5_scaled_dot", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 7 · Exercise 5: scaled dot-product attention (4 points)
#
# The Transformer's attention works on whole matrices of queries at once:
#
# $$\operatorname{Attention}(Q, K, V) = \operatorname{softmax}\!\left(\frac{Q K^\top}{\sqrt{d_k}}\right) V$$
#
# Write `scaled_dot_product_attention(q, k, v, mask=None)` returning `(output, weights)`:
# `q` `(..., q_len, d_k)`, `k` `(..., k_len, d_k)`, `v` `(..., k_len, d_v)`, `mask` boolean
# broadcastable to `(..., q_len, k_len)`. Reuse `attend`. **Do not call
# `F.scaled_dot_product_attention`**: a hidden test replaces it with one that raises.
# Your output must equal it within 1e-6 in float64, including rows with nothing to attend to.
#
# <details><summary>Hint 1</summary>
#
# $Q K^\top$ swaps the last two axes of `k` only; the leading `...` axes stay where they are.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Divide the scores by $\sqrt{d_k}$ once, before the mask and the softmax; `d_k` is the last axis of `q`.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "scaled_dot_product_attention", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(d_k)) v with a boolean mask (True = may attend)."""
    ### BEGIN SOLUTION
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)         # (..., q_len, k_len)
    return attend(scores, v, mask)                            # (..., q_len, d_v), (..., q_len, k_len)
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
q = torch.randn(2, 4, 5, 8)                                   # (batch, heads, q_len, d_k)
out, w = scaled_dot_product_attention(q, q, q)
print(out.shape, w.shape)

# %% nbgrader={"grade": true, "grade_id": "test_sdpa", "locked": true, "points": 4.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""scaled_dot_product_attention equals F.scaled_dot_product_attention (float64, 1e-6), masks included."""
g = torch.Generator().manual_seed(0)
q = torch.randn(2, 3, 4, 8, dtype=torch.float64, generator=g)
k = torch.randn(2, 3, 6, 8, dtype=torch.float64, generator=g)
v = torch.randn(2, 3, 6, 5, dtype=torch.float64, generator=g)
out, w = scaled_dot_product_attention(q, k, v)
assert out.shape[-1] != k.shape[-1], (f"output has shape {tuple(out.shape)}: d_k = 8 numbers per query, the keys' size, "
                                      "not d_v = 5: which tensor does the output average?")
check_shape(out, (2, 3, 4, 5), "output (batch, heads, q_len, d_v)")
check_shape(w, (2, 3, 4, 6), "weights (batch, heads, q_len, k_len)")
# here d_k = 8, k_len = 6, d_v = 5: each wrong divisor gives its own output
for wrong_scale, symptom in [
        (1.0, "the scores are not divided by anything: is the 1/sqrt(d_k) scale missing?"),
        (1 / 8, "the scores are divided by d_k, not by sqrt(d_k)"),
        (1 / math.sqrt(5), "the scores are divided by sqrt(d_v), the last axis of v: d_k is the last axis of q and k"),
        (1 / math.sqrt(6), "the scores are divided by sqrt(k_len), the number of keys: d_k is the last axis of q and k")]:
    assert not torch.allclose(out, F.scaled_dot_product_attention(q, k, v, scale=wrong_scale), atol=1e-6), symptom
assert_close(out, F.scaled_dot_product_attention(q, k, v), "output without a mask", atol=1e-6)
causal = torch.ones(4, 6, dtype=torch.bool).tril()
causal_out, causal_w = scaled_dot_product_attention(q, k, v, causal)
assert (causal_w[..., 0, 1:] == 0).all(), (
    f"with a causal mask (4, 6), query 0 may attend to key 0 only, yet keys 1 to 5 get weights up to "
    f"{causal_w[..., 0, 1:].max().item():.3f}: is the mask passed on to attend?")
assert_close(causal_out, F.scaled_dot_product_attention(q, k, v, attn_mask=causal), "output with a causal mask", atol=1e-6)
### BEGIN HIDDEN TESTS
# key padding broadcast over heads and queries, plus one query row with nothing to attend to
pad = torch.ones(2, 1, 1, 6, dtype=torch.bool)
pad[1, ..., 4:] = False
mask = pad & torch.ones(4, 6, dtype=torch.bool)
mask = mask.expand(2, 3, 4, 6).clone()
mask[0, 1, 2] = False
expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
with mock.patch.object(F, "scaled_dot_product_attention", side_effect=AssertionError("do not call F.scaled_dot_product_attention")):
    out, w = scaled_dot_product_attention(q, k, v, mask)
assert_close(out, expected, "output with padding and an all-masked row", atol=1e-6)
assert not torch.isnan(out).any(), "NaN in the output of scaled_dot_product_attention when a query row has every key masked"
# scale by sqrt(d_k), not d_k, on a different d_k; and d_v != d_k
q2, k2 = torch.randn(1, 3, 16, dtype=torch.float64, generator=g), torch.randn(1, 5, 16, dtype=torch.float64, generator=g)
v2 = torch.randn(1, 5, 3, dtype=torch.float64, generator=g)
assert_close(scaled_dot_product_attention(q2, k2, v2)[0], F.scaled_dot_product_attention(q2, k2, v2),
             "three-dimensional inputs, d_k = 16", atol=1e-6)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "why_divide", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 8 · Why divide by $\sqrt{d_k}$?
#
# If the entries of $q$ and $k$ are independent with mean 0 and variance 1, then
# $q^\top k = \sum_{i=1}^{d_k} q_i k_i$ has variance $d_k$. Its standard deviation grows like
# $\sqrt{d_k}$, the softmax sees ever larger differences, puts almost all weight on one key
# (it **saturates**), and its gradient vanishes. The gradient of $p = \operatorname{softmax}(e)$ is
#
# $$J = \frac{\partial p}{\partial e} = \operatorname{diag}(p) - p\,p^\top \qquad (k\_len \times k\_len),$$
#
# which tends to the zero matrix as $p$ tends to a one-hot vector.

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_6_size_softmax", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ### Exercise 6: the size of the softmax gradient (2 points)
#
# Write `softmax_jacobian_norm(scores)` returning, for scores `(n, k_len)`, the Frobenius norm
# $\lVert J \rVert_F$ of each row's softmax Jacobian, shape `(n,)`. Use the closed form above
# (no autograd needed).
#
# <details><summary>Hint 1</summary>
#
# The softmax Jacobian is $\operatorname{diag}(p) - p p^\top$: square its entries and sum, row by row.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Expand the squares: the diagonal and off-diagonal sums can be written with $\sum_i p_i^2$ and $\sum_i p_i^3$ alone, no `(k_len, k_len)` matrix needed.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "softmax_jacobian_norm", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def softmax_jacobian_norm(scores: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of d softmax(e) / d e for each row of scores (n, k_len); returns (n,)."""
    ### BEGIN SOLUTION
    p = torch.softmax(scores, dim=-1)                          # (n, k_len)
    jacobian = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)  # (n, k_len, k_len)
    return jacobian.flatten(1).norm(dim=-1)                    # (n,)
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
# Try it: one row of scores, stretched more and more; watch the gradient's size as the softmax sharpens.
row = torch.tensor([1.0, 0.0, -1.0, 0.5])
for stretch in (0.0, 1.0, 3.0, 10.0, 30.0):
    print(f"scores x {stretch:>4}: largest weight {torch.softmax(stretch * row, -1).max().item():.3f}, "
          f"||J||_F = {softmax_jacobian_norm(stretch * row[None]).item():.2e}")

# %% nbgrader={"grade": true, "grade_id": "test_softmax_jacobian_norm", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""softmax_jacobian_norm: one norm per row, the closed form for a uniform row, and (almost) zero for a saturated row."""
uniform = softmax_jacobian_norm(torch.zeros(1, 4, dtype=torch.float64))
assert uniform.shape != (1, 4), ("softmax_jacobian_norm returns shape (1, 4) for scores (1, 4): the prompt asks for "
                                 "shape (n,), one norm per row of scores, taken over all k_len x k_len entries of its J")
check_shape(uniform, (1,), "softmax_jacobian_norm(scores) for scores (n=1, k_len=4)")
# p = 1/4 everywhere: diagonal 1/4 - 1/16 = 3/16, off-diagonal -1/16
expected = math.sqrt(4 * (3 / 16) ** 2 + 12 * (1 / 16) ** 2)
got = uniform.item()
assert abs(got - expected ** 2) > 1e-12, (f"uniform row of 4: got {got:.6f} = {expected:.6f} squared: "
                                          "the Frobenius norm is the square root of the sum of squared entries")
assert abs(got - 0.5) > 1e-12, (f"uniform row of 4: got {got:.6f}, the norm of diag(p) alone (sqrt(4 / 16) = 0.5): "
                                "where is the - p p^T term?")
assert abs(got - math.sqrt(4 * (5 / 16) ** 2 + 12 * (1 / 16) ** 2)) > 1e-12, (
    f"uniform row of 4: got {got:.6f}, the norm of diag(p) + p p^T: check the sign of the p p^T term")
assert abs(got - expected) < 1e-12, f"uniform row of 4 (p = 1/4 each): expected {expected:.6f}, got {got:.6f}"
saturated = softmax_jacobian_norm(torch.tensor([[50.0, 0.0, 0.0]], dtype=torch.float64))
assert saturated.item() < 1e-10, (
    f"scores [50, 0, 0] give p within 1e-21 of (1, 0, 0), where diag(p) - p p^T is almost the zero matrix, yet the norm is "
    f"{saturated.item():.3g}: p p^T is the outer product, a k_len x k_len matrix with entry (i, j) = p_i p_j")
### BEGIN HIDDEN TESTS
scores = torch.randn(5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
got = softmax_jacobian_norm(scores)
check_shape(got, (5,), "one norm per row")
for row in range(5):
    jac = torch.autograd.functional.jacobian(lambda e: torch.softmax(e, -1), scores[row])
    assert abs(got[row].item() - jac.norm().item()) < 1e-10, f"row {row} of random scores (5, 7): expected {jac.norm().item():.6f} (autograd's Jacobian), got {got[row].item():.6f}"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_7_measure_saturation", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ### Exercise 7: measure saturation (2 points)
#
# Write `saturation(d_k, scaled, n_queries=512, k_len=16, seed=0)` returning a pair of floats
# `(mean largest weight, mean Jacobian norm)`. Draw `q` `(n_queries, d_k)` and `k` `(k_len, d_k)`
# from a standard normal with `torch.Generator().manual_seed(seed)`, score every query against
# every key (divided by $\sqrt{d_k}$ when `scaled`), and average over queries.
#
# <details><summary>Hint 1</summary>
#
# Draw `q` then `k` from the same generator, in that order, so that a seed gives the same pair every time.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# The scores are `(n_queries, k_len)`; take each row's softmax, its largest weight and its Jacobian norm, then average over the rows.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "saturation", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def saturation(d_k: int, scaled: bool, n_queries: int = 512, k_len: int = 16,
               seed: int = 0) -> tuple[float, float]:
    """(mean max softmax weight, mean softmax-Jacobian norm) of random q.k scores."""
    ### BEGIN SOLUTION
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n_queries, d_k, generator=g, dtype=torch.float64)
    k = torch.randn(k_len, d_k, generator=g, dtype=torch.float64)
    scores = q @ k.T                                           # (n_queries, k_len)
    if scaled:
        scores = scores / math.sqrt(d_k)
    weights = torch.softmax(scores, dim=-1)
    return weights.max(-1).values.mean().item(), softmax_jacobian_norm(scores).mean().item()
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
dims = [2, 8, 32, 128, 512, 2048]
stats = {scaled: [saturation(d, scaled) for d in dims] for scaled in (True, False)}
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for scaled, label in ((True, "scaled by 1/sqrt(d_k)"), (False, "unscaled")):
    axes[0].plot(dims, [s[0] for s in stats[scaled]], marker="o", label=label)
    axes[1].plot(dims, [s[1] for s in stats[scaled]], marker="o", label=label)
axes[0].set(xscale="log", xlabel="d_k", ylabel="mean largest weight", title="softmax saturates")
axes[1].set(xscale="log", xlabel="d_k", ylabel="mean ||d softmax / d e||_F", title="and its gradient vanishes")
for ax in axes:
    ax.legend()
    ax.grid(alpha=0.3)
plt.show()

# %% nbgrader={"grade": true, "grade_id": "test_saturation", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""saturation: scaled scores keep the softmax soft as d_k grows; unscaled ones saturate; the seed is used."""
scaled_small, scaled_big = saturation(8, True), saturation(1024, True)
unscaled_big = saturation(1024, False)
assert abs(scaled_big[0] - 1 / 16) > 1e-9, (
    f"saturation(1024, True) gives a first number of {scaled_big[0]:.4f} = 1/k_len, the mean of all the weights "
    "(every row sums to 1): the first number is the mean over the queries of each row's largest weight")
assert not unscaled_big[0] < scaled_big[0], (
    f"saturation(1024, scaled=False) is softer (mean largest weight {unscaled_big[0]:.3f}) than scaled=True "
    f"({scaled_big[0]:.3f}): is the scaled flag read the right way round?")
assert unscaled_big[0] != scaled_big[0], (
    f"saturation(1024, True) and saturation(1024, False) give the same mean largest weight, {scaled_big[0]:.3f}, "
    f"but Jacobian norms {scaled_big[1]:.3f} and {unscaled_big[1]:.3f}: are the weights taken from the scaled scores?")
assert scaled_big[0] > 2 / 16, (
    f"saturation(1024, True): mean largest weight {scaled_big[0]:.3f}, not above 2/16 (uniform weights give 1/16); scaled "
    "scores keep variance 1 (q . k has variance d_k), far from uniform: are they divided by sqrt(d_k), not by d_k?")
assert abs(scaled_small[0] - scaled_big[0]) < 0.1, (f"scaled: the mean largest weight should not depend on d_k, got "
                                                    f"{scaled_small[0]:.3f} at d_k = 8 and {scaled_big[0]:.3f} at 1024")
assert unscaled_big[0] > 0.9, (f"unscaled at d_k = 1024: expected a saturated softmax (mean largest weight > 0.9), "
                               f"got {unscaled_big[0]:.3f}")
assert unscaled_big[1] < 0.5 * scaled_big[1], (
    f"unscaled at d_k = 1024 the softmax is saturated (mean largest weight {unscaled_big[0]:.3f}), yet its mean Jacobian "
    f"norm {unscaled_big[1]:.3f} is not below half the scaled one, {scaled_big[1]:.3f}: softmax_jacobian_norm takes "
    "scores; which tensor did yours get?")
assert saturation(64, True, n_queries=64, seed=1) != saturation(64, True, n_queries=64, seed=2), \
    "saturation(64, True, seed=1) and seed=2 give the same result: is the seed used to build the generator?"
### BEGIN HIDDEN TESTS
a, b = saturation(64, True, n_queries=100, k_len=10, seed=3), saturation(64, True, n_queries=100, k_len=10, seed=3)
assert a == b, "the same seed must give the same result"
assert saturation(64, True, seed=1) != saturation(64, True, seed=2), "saturation(64, True, seed=1) and seed=2 give the same result: the seed must be used"
assert isinstance(a[0], float) and isinstance(a[1], float), f"expected two Python floats, got {type(a[0]).__name__}, {type(a[1]).__name__}"
# scaled scores keep unit variance: far from uniform (1/16) as well as from saturated, even at d_k = 1024
assert 2 / 16 < scaled_big[0] < 0.5, f"scaled at d_k = 1024: expected a largest weight near 0.25, got {scaled_big[0]:.3f} (divided by sqrt(d_k)?)"
# the two regimes cross at d_k = 1: scaling changes nothing there
assert abs(saturation(1, True)[0] - saturation(1, False)[0]) < 1e-12, "at d_k = 1 scaling must change nothing"
w_small = saturation(2, False, k_len=16)[0]
assert 1 / 16 < w_small < 0.9, f"unscaled d_k = 2 should not be saturated, got {w_small:.3f}"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "translator_attention_dates_iso", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 9 · A translator with attention: dates to ISO
#
# The task: read a date as people write it and emit `YYYY-MM-DD`.
# The model reads characters. A bidirectional GRU encodes the source; a GRU decoder emits
# one character per step and, before each step, attends over the encoder states with
# your `AdditiveAttention`, using its previous hidden state as the query (Bahdanau et al.).

# %% slideshow={"slide_type": "fragment"}
train_pairs = make_dates(20_000, seed=0)
seen = {source for source, _ in train_pairs}
test_pairs = [p for p in make_dates(1_500, seed=1) if p[0] not in seen][:1_000]  # held out
src_vocab = Vocab.from_texts(source for source, _ in train_pairs)
tgt_vocab = Vocab.from_texts(target for _, target in train_pairs)
for source, target in train_pairs[:6]:
    print(f"{source:>32}  ->  {target}")
print(f"{len(train_pairs)} training pairs, {len(test_pairs)} held out; "
      f"vocabularies: {len(src_vocab)} source and {len(tgt_vocab)} target characters")


# %% [markdown] nbgrader={"grade": false, "grade_id": "encoder_given_embeds", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# The encoder is given. It embeds characters, runs a bidirectional GRU over the packed
# sequence (so padding never enters the recurrence), and returns every state plus a
# summary used to start the decoder.

# %% nbgrader={"grade": false, "grade_id": "given_encoder", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
class Encoder(nn.Module):
    """Bidirectional GRU over characters: returns states (batch, src_len, 2*d_hidden) and a summary."""

    def __init__(self, vocab_size: int, d_embed: int = 64, d_hidden: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_embed, padding_idx=0)
        self.rnn = nn.GRU(d_embed, d_hidden, batch_first=True, bidirectional=True)

    def forward(self, src: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.embed(src)                                   # (batch, src_len, d_embed)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        states, last = self.rnn(packed)
        states, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=src.shape[1])
        return states, torch.cat([last[0], last[1]], dim=-1)  # (batch, src_len, 2h), (batch, 2h)


# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_8_one_decoder", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ### Exercise 8: one decoder step with attention (3 points)
#
# Complete `AttentionDecoder.forward(prev_token, hidden, memory, memory_mask)`, one step:
#
# 1. embed `prev_token` `(batch,)` -> `(batch, d_embed)`;
# 2. attend with `self.attention`, query = `hidden` `(batch, d_hidden)`, keys = values = `memory`
#    `(batch, src_len, d_memory)`, mask = `memory_mask` `(batch, src_len)`;
# 3. update the state: `hidden = self.rnn(cat[embedding, context], hidden)`;
# 4. `logits = self.out(cat[hidden, context, embedding])` `(batch, vocab)`.
#
# Return `(logits, hidden, weights)`. Keep every path in the graph (no `detach()`): training
# backpropagates through all the steps, so the loss at a late step must reach the first step's
# state, through the GRU and through the attention query alike.
#
# <details><summary>Hint 1</summary>
#
# Follow the four numbered steps in order: the context comes from the old `hidden`, before the GRU updates it.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# `self.rnn` is a `GRUCell`: it takes `(input, hidden)` and returns the new hidden state; the concatenations run along the feature axis.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "attention_decoder", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class AttentionDecoder(nn.Module):
    """A GRU decoder that attends over the encoder states before every step."""

    def __init__(self, vocab_size: int, d_memory: int = 128, d_embed: int = 32,
                 d_hidden: int = 128, d_attn: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_embed)
        self.attention = AdditiveAttention(d_hidden, d_memory, d_attn)
        self.rnn = nn.GRUCell(d_embed + d_memory, d_hidden)
        self.out = nn.Linear(d_hidden + d_memory + d_embed, vocab_size)

    def forward(self, prev_token: torch.Tensor, hidden: torch.Tensor, memory: torch.Tensor,
                memory_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step: returns logits (batch, vocab), new hidden (batch, d_hidden), weights (batch, src_len)."""
        ### BEGIN SOLUTION
        embedded = self.embed(prev_token)                               # (batch, d_embed)
        context, weights = self.attention(hidden, memory, memory, memory_mask)  # (batch, d_memory)
        hidden = self.rnn(torch.cat([embedded, context], dim=-1), hidden)       # (batch, d_hidden)
        logits = self.out(torch.cat([hidden, context, embedded], dim=-1))       # (batch, vocab)
        return logits, hidden, weights
        ### END SOLUTION


# %% [markdown] nbgrader={"grade": false, "grade_id": "full_model_given", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# The full model is given: it runs the encoder once, then the decoder step by step.
# During training the decoder is fed the true previous character (**teacher forcing**).

# %% nbgrader={"grade": false, "grade_id": "given_seq2seq", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
class Seq2Seq(nn.Module):
    """Encoder + attention decoder; forward() is teacher-forced."""

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, d_hidden: int = 128) -> None:
        super().__init__()
        self.encoder = Encoder(src_vocab_size, d_hidden=d_hidden // 2)
        self.bridge = nn.Linear(d_hidden, d_hidden)
        self.decoder = AttentionDecoder(tgt_vocab_size, d_memory=d_hidden, d_hidden=d_hidden)

    def start(self, src: torch.Tensor, lengths: torch.Tensor):
        """Encode; return (memory, memory_mask, initial hidden)."""
        memory, summary = self.encoder(src, lengths)
        return memory, src != 0, torch.tanh(self.bridge(summary))

    def forward(self, src: torch.Tensor, lengths: torch.Tensor, tgt_in: torch.Tensor):
        """Logits (batch, tgt_len, vocab) and weights (batch, tgt_len, src_len), teacher-forced."""
        memory, mask, hidden = self.start(src, lengths)
        logits, weights = [], []
        for t in range(tgt_in.shape[1]):
            step_logits, hidden, step_weights = self.decoder(tgt_in[:, t], hidden, memory, mask)
            logits.append(step_logits)
            weights.append(step_weights)
        return torch.stack(logits, dim=1), torch.stack(weights, dim=1)


# %% slideshow={"slide_type": "fragment"}
# Try it: one decoder step of an untrained model on two dates, the second one shorter (padded).
texts = ["5 may 2001", "1/2/03"]
demo_src = nn.utils.rnn.pad_sequence([torch.tensor(src_vocab.encode(t)) for t in texts], batch_first=True)
demo_lengths = torch.tensor([len(t) for t in texts])
untrained = Seq2Seq(len(src_vocab), len(tgt_vocab), d_hidden=16)
demo_memory, demo_memory_mask, demo_hidden = untrained.start(demo_src, demo_lengths)
step_logits, step_hidden, step_weights = untrained.decoder(torch.full((2,), tgt_vocab.bos_id), demo_hidden,
                                                           demo_memory, demo_memory_mask)
print(f"logits {tuple(step_logits.shape)}, hidden {tuple(step_hidden.shape)}, weights {tuple(step_weights.shape)}")
fig, ax = plt.subplots(figsize=(6, 2.5))
show_attention(step_weights.detach(), queries=texts, keys=[str(j) for j in range(demo_src.shape[1])], ax=ax,
               title="first step, untrained: the padding gets no weight")
ax.set_xlabel("source position")
plt.show()

# %% nbgrader={"grade": true, "grade_id": "test_attention_decoder", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""AttentionDecoder: shapes, the mask, the order of the four steps, each concatenation, and gradients through every path."""
torch.manual_seed(0)
toy = Seq2Seq(src_vocab_size=12, tgt_vocab_size=9, d_hidden=16).double()
src = torch.tensor([[4, 5, 6, 7], [8, 9, 0, 0]])
lengths = torch.tensor([4, 2])
memory, mask, hidden = toy.start(src, lengths)
logits, new_hidden, weights = toy.decoder(torch.tensor([1, 1]), hidden, memory, mask)
check_shape(logits, (2, 9), "logits (batch, vocab)")
check_shape(new_hidden, (2, 16), "hidden (batch, d_hidden)")
check_shape(weights, (2, 4), "weights (batch, src_len)")
assert (weights[1, 2:] == 0).all(), (f"sequence 1 has 2 real source positions, yet its padding (positions 2 and 3) gets "
                                     f"weights {[round(x, 4) for x in weights[1, 2:].tolist()]}: is memory_mask passed to self.attention?")
assert not torch.equal(new_hidden, hidden), ("the returned hidden state is the one passed in: return the state after "
                                             "the GRU step (step 3)")
assert new_hidden.requires_grad, ("the returned hidden state is cut from the graph (requires_grad is False): training "
                                  "backpropagates through it into the earlier steps; is it detached?")
_, _, weights_other = toy.decoder(torch.tensor([1, 1]), hidden + 0.5, memory, mask)
assert not torch.allclose(weights, weights_other), "the weights stay the same when the hidden argument changes: it is the attention's query (step 2)"
_, _, weights_other = toy.decoder(torch.tensor([3, 3]), hidden, memory, mask)
assert_close(weights_other, weights, "weights when only prev_token changes (the query is the hidden state passed in, "
             "from before the GRU step)", atol=1e-12)
noisy = memory.clone()
noisy[1, 2:] = 100.0
logits_noisy, _, _ = toy.decoder(torch.tensor([1, 1]), hidden, noisy, mask)
assert_close(logits_noisy, logits, "logits when the padded positions of memory change (the mask hides them)", atol=1e-10)
# hand-set weights make the output layer and the GRU copy one part of their input
context = (weights.unsqueeze(1) @ memory).squeeze(1)                      # (2, d_memory = 16)
embedded = toy.decoder.embed.weight[[1, 1]]                              # (2, d_embed = 32): the embedding of token 1
picked = AttentionDecoder(9, d_memory=16, d_hidden=16).double()
picked.load_state_dict(toy.decoder.state_dict())
def pick(rows: int, columns: int, start: int) -> torch.Tensor:
    """A (rows, columns) matrix that copies inputs start .. start + rows - 1."""
    return torch.eye(columns, dtype=torch.float64)[start:start + rows]
def which(got: torch.Tensor, parts: dict, size: int, to_output=lambda x: x) -> str:
    """The name of the part whose first size features give got, or 'something else'."""
    return next((n for n, t in parts.items() if torch.allclose(got, to_output(t[:, :size]), atol=1e-12)), "something else")
with torch.no_grad():
    parts = {"the new hidden state": new_hidden, "the hidden state passed in": hidden, "the context": context,
             "the embedding": embedded}
    picked.out.bias.zero_()
    for start, name in ((0, "the new hidden state"), (16, "the context"), (32, "the embedding")):
        picked.out.weight.copy_(pick(9, 64, start))
        got = picked(torch.tensor([1, 1]), hidden, memory, mask)[0]
        assert torch.allclose(got, parts[name][:, :9], atol=1e-12), (
            f"the output layer's input columns {start} to {start + 8} hold {which(got, parts, 9)}, not {name}: "
            "step 4 is logits = self.out(cat[hidden, context, embedding]), with the new hidden")
    # a GRUCell whose gates are all 0.5 except n = tanh(x[start:start + 16]): h' = (tanh(x[...]) + h) / 2
    for weight in (picked.rnn.weight_ih, picked.rnn.weight_hh, picked.rnn.bias_ih, picked.rnn.bias_hh):
        weight.zero_()
    for start, name in ((0, "the embedding"), (32, "the context")):
        picked.rnn.weight_ih[32:] = pick(16, 48, start)
        got = picked(torch.tensor([1, 1]), hidden, memory, mask)[1]
        assert torch.allclose(got, (torch.tanh(parts[name][:, :16]) + hidden) / 2, atol=1e-12), (
            f"the GRU's input positions {start} to {start + 15} hold {which(got, parts, 16, lambda x: (torch.tanh(x) + hidden) / 2)}, "
            f"not {name}: step 3 is hidden = self.rnn(cat[embedding, context], hidden)")
# gradients: the loss of a later step must reach the state passed in, through the attention query and through the GRU
start_hidden = hidden.detach().clone().requires_grad_(True)
_, step_hidden, step_weights = toy.decoder(torch.tensor([1, 1]), start_hidden, memory.detach(), mask)
(weights_grad,) = torch.autograd.grad((step_weights * torch.arange(4.0, dtype=torch.float64)).sum(), start_hidden,
                                      retain_graph=True, allow_unused=True)
assert weights_grad is not None and weights_grad.abs().sum() > 0, (
    "the weights change when hidden changes, yet autograd gives them no gradient with respect to hidden: "
    "is the attention query detached?")
readout, direction = torch.randn(2, 2, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
(hidden_grad,) = torch.autograd.grad((step_hidden * readout).sum(), start_hidden, allow_unused=True)
with torch.no_grad():
    ahead, behind = (toy.decoder(torch.tensor([1, 1]), hidden + eps * direction, memory, mask)[1] for eps in (1e-6, -1e-6))
numeric = ((ahead - behind) * readout).sum().item() / 2e-6
by_autograd = 0.0 if hidden_grad is None else (hidden_grad * direction).sum().item()
assert abs(by_autograd - numeric) < 1e-6 * max(1.0, abs(numeric)), (
    f"the derivative of the new hidden state along one direction of the hidden state passed in: autograd gives "
    f"{by_autograd:.6f}, a finite difference {numeric:.6f}: does the GRU read a detached state?")
### BEGIN HIDDEN TESTS
assert not torch.allclose(toy.decoder(torch.tensor([3, 3]), hidden, memory, mask)[0], logits), "logits ignore the previous token"
# the gradient flows through the recurrence: the last step's loss reaches the first step's state and
# the memory by every path (the GRU's state, the attention query, the context); autograd's gradient
# must equal the numerical one, which no detach() can fool
def last_step_logits(first_hidden: torch.Tensor, memory_in: torch.Tensor) -> torch.Tensor:
    state = first_hidden
    for token in (1, 4, 2):
        step_logits, state, _ = toy.decoder(torch.tensor([token, token]), state, memory_in, mask)
    return step_logits
first_hidden = hidden.detach().clone().requires_grad_(True)
memory_in = memory.detach().clone().requires_grad_(True)
assert torch.autograd.gradcheck(last_step_logits, (first_hidden, memory_in), eps=1e-6, atol=1e-5, raise_exception=False), \
    "the gradient of the third step's logits with respect to the first step's hidden state (or the memory) is wrong: " \
    "is a state detached somewhere?"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_9_greedy_decoding", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ### Exercise 9: greedy decoding (2 points)
#
# Write `greedy_decode(model, src, lengths, max_len)` returning
# `(tokens (batch, max_len), weights (batch, max_len, src_len))`:
# start every sequence from `<bos>` (`tgt_vocab.bos_id`), feed back the arg-max token, run
# exactly `max_len` steps, and replace every token **after** a sequence's first `<eos>` with
# `<pad>`. The returned tokens do not include the initial `<bos>`.
#
# <details><summary>Hint 1</summary>
#
# Encode `src` once; then each step feeds the previous token and the current hidden state to the decoder.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Keep a per-sequence flag of whether `<eos>` has already come out; tokens that come after it become `<pad>`, the `<eos>` itself stays.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "greedy_decode", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
@torch.no_grad()
def greedy_decode(model: Seq2Seq, src: torch.Tensor, lengths: torch.Tensor,
                  max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy decoding from <bos>; tokens after the first <eos> become <pad>."""
    ### BEGIN SOLUTION
    memory, mask, hidden = model.start(src, lengths)
    token = torch.full((src.shape[0],), tgt_vocab.bos_id, dtype=torch.long, device=src.device)
    tokens, weights = [], []
    for _ in range(max_len):
        logits, hidden, step_weights = model.decoder(token, hidden, memory, mask)
        token = logits.argmax(dim=-1)                          # (batch,)
        tokens.append(token)
        weights.append(step_weights)
    tokens = torch.stack(tokens, dim=1)                        # (batch, max_len)
    finished = (tokens == tgt_vocab.eos_id).long().cumsum(dim=1)
    after_eos = (finished - (tokens == tgt_vocab.eos_id).long()) > 0
    return tokens.masked_fill(after_eos, tgt_vocab.pad_id), torch.stack(weights, dim=1)
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
# Try it: an untrained model decodes "5 may 2001"; after training (section 10) the same call gives 2001-05-05.
untrained_translator = Seq2Seq(len(src_vocab), len(tgt_vocab), d_hidden=16)
date = torch.tensor([src_vocab.encode("5 may 2001")])
demo_tokens, demo_weights = greedy_decode(untrained_translator, date, torch.tensor([date.shape[1]]), max_len=11)
print(f"tokens {tuple(demo_tokens.shape)}, weights {tuple(demo_weights.shape)}")
print("raw tokens:", [tgt_vocab.itos[i] for i in demo_tokens[0].tolist()])
print("decoded:   ", "".join(tgt_vocab.decode(demo_tokens[0].tolist())))

# %% nbgrader={"grade": true, "grade_id": "test_greedy_decode", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""greedy_decode: max_len tokens from <bos>, <pad> after the first <eos>, and each token the arg-max given the ones before it."""
torch.manual_seed(1)
toy = Seq2Seq(len(src_vocab), len(tgt_vocab), d_hidden=16)
src = torch.tensor([src_vocab.encode("5 may 2001"), src_vocab.encode("12/31/1999")])
lengths = torch.tensor([src.shape[1]] * 2)
tokens, weights = greedy_decode(toy, src, lengths, max_len=6)
assert not (tokens.shape[1] == 7 and (tokens[:, 0] == tgt_vocab.bos_id).all()), (
    "greedy_decode(..., max_len=6) returns 7 tokens per sequence, the first one <bos>: "
    "the returned tokens do not include the initial <bos>")
assert tokens.shape[1] == 6, (f"greedy_decode(..., max_len=6) returns {tokens.shape[1]} tokens per sequence: "
                              "run exactly max_len steps, one token each")
check_shape(tokens, (2, 6), "tokens (batch, max_len)")
check_shape(weights, (2, 6, src.shape[1]), "weights (batch, max_len, src_len)")
# a model that always answers <eos> to <bos>: a logit boost of 1e4 whenever the input token is <bos>
class EosAfterBos(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.decoder = self
    def start(self, src, lengths):
        return self.inner.start(src, lengths)
    def forward(self, token, hidden, memory, mask):
        logits, hidden, w = self.inner.decoder(token, hidden, memory, mask)
        boost = torch.zeros_like(logits)
        boost[:, tgt_vocab.eos_id] = 1e4 * (token == tgt_vocab.bos_id).to(logits.dtype)
        return logits + boost, hidden, w
eos_tokens, _ = greedy_decode(EosAfterBos(toy), src, lengths, max_len=5)
shown = [[tgt_vocab.itos[i] for i in row] for row in eos_tokens.tolist()]
assert not (eos_tokens[:, 0] == tgt_vocab.pad_id).all(), (
    f"a model that always answers <eos> to <bos> gives {shown}: its first <eos> became <pad> too; "
    "only the tokens after the first <eos> become <pad>, the <eos> itself stays")
assert (eos_tokens[:, 0] == tgt_vocab.eos_id).all(), (
    f"a model that always answers <eos> to <bos> gives {shown}: does decoding start from <bos>?")
assert (eos_tokens[:, 1:] == tgt_vocab.pad_id).all(), (
    f"a model that always answers <eos> to <bos> gives {shown}: every token after the first <eos> must be <pad>")
# teacher forcing on the decoded prefix gives the logits each step saw, if each arg-max was fed back
bos = torch.full((2, 1), tgt_vocab.bos_id)
with torch.no_grad():
    forced, _ = toy(src, lengths, torch.cat([bos, tokens[:, :-1]], dim=1))
first_eos = [(row == tgt_vocab.eos_id).nonzero()[0].item() if (row == tgt_vocab.eos_id).any() else 6 for row in tokens]
for b in range(2):
    n = first_eos[b] + 1 if first_eos[b] < 6 else 6
    greedy = forced[b, :n].argmax(-1)
    assert torch.equal(greedy, tokens[b, :n]), (
        f"sequence {b}: token {(greedy != tokens[b, :n]).nonzero()[0].item()} is not the arg-max of the decoder fed the "
        "tokens before it: is each step's arg-max fed back as the next input?")
### BEGIN HIDDEN TESTS
# another max_len, and the <eos> rule on a longer run
assert greedy_decode(toy, src, lengths, max_len=3)[0].shape == (2, 3), "greedy_decode(..., max_len=3): exactly max_len steps"
tokens, _ = greedy_decode(EosAfterBos(toy), src, lengths, max_len=8)
assert (tokens[:, 0] == tgt_vocab.eos_id).all() and (tokens[:, 1:] == tgt_vocab.pad_id).all(), \
    f"max_len=8, a model that always answers <eos> to <bos>: tokens after the first <eos> must be <pad>, got {tokens.tolist()}"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "training", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 10 · Training
#
# Cross-entropy over the target characters, ignoring padding, with Adam and a one-cycle
# learning-rate schedule. The number of steps is fixed (not a time budget), so the result
# is the same on a fast and a slow machine; on two CPU cores it takes well under a minute.

# %% slideshow={"slide_type": "fragment"}
seed_everything(0)
model = Seq2Seq(len(src_vocab), len(tgt_vocab)).to(device)
print(f"{count_parameters(model):,} parameters")
train_loader = seq2seq_loader(train_pairs, src_vocab, tgt_vocab, batch_size=128, seed=0)
test_loader = seq2seq_loader(test_pairs, src_vocab, tgt_vocab, batch_size=500, shuffle=False)
MAX_LEN = 11                                                   # 10 characters and <eos>


def loss_fn(model: Seq2Seq, batch) -> torch.Tensor:
    src, src_lengths, tgt, _ = batch
    logits, _ = model(src, src_lengths, tgt[:, :-1])           # (batch, tgt_len - 1, vocab)
    return F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=tgt_vocab.pad_id)


def exact_match(model: Seq2Seq) -> dict[str, float]:
    correct = total = 0
    for src, src_lengths, tgt, _ in test_loader:
        tokens, _ = greedy_decode(model, src.to(device), src_lengths, MAX_LEN)
        for predicted, truth in zip(tokens.tolist(), tgt.tolist()):
            correct += tgt_vocab.decode(predicted) == tgt_vocab.decode(truth)
            total += 1
    return {"exact match": correct / total}


STEPS = 400
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=STEPS, pct_start=0.1)
history = fit(model, loss_fn, train_loader, optimizer, STEPS, device=device, scheduler=scheduler,
              eval_fn=exact_match, eval_every=100, description="dates -> ISO")
print(f"trained {STEPS} steps in {history.seconds:.1f} s; held-out exact match {history.last('exact match'):.1%}")
plot_history(history, log_y=True)
plt.show()

# %% nbgrader={"grade": true, "grade_id": "test_trained_translator", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""The trained translator reaches at least 98% exact match on the 1,000 held-out dates."""
accuracy = exact_match(model.eval())["exact match"]
assert len(test_pairs) == 1000, f"expected 1,000 held-out dates, got {len(test_pairs)}"
assert accuracy >= 0.98, f"expected at least 98% exact match, got {accuracy:.1%}"
print(f"held-out exact match: {accuracy:.1%}")
### BEGIN HIDDEN TESTS
# dates the notebook never showed: a model fitted to the held-out set would fail here
fresh = [p for p in make_dates(700, seed=12345) if p[0] not in seen][:500]
src, src_lengths, tgt, _ = next(iter(seq2seq_loader(fresh, src_vocab, tgt_vocab, batch_size=500, shuffle=False)))
tokens, _ = greedy_decode(model, src.to(device), src_lengths, MAX_LEN)
fresh_accuracy = sum(tgt_vocab.decode(p) == tgt_vocab.decode(t) for p, t in zip(tokens.tolist(), tgt.tolist())) / len(fresh)
assert fresh_accuracy >= 0.97, f"expected at least 97% on unseen dates, got {fresh_accuracy:.1%}"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "what_did_learn_look", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 11 · What did it learn to look at?
#
# Each row is one output character; each column a source character. What to look for: while
# it writes the year, does the model read the source's four year digits? While it writes the
# month, does it read the month's name (`"March"`) or its number (`"03"`)? And how much do the
# letters of a weekday get, which carry nothing the model needs? Nothing in the training forces
# a readable alignment (the loss only asks for the right output), so the cell measures it on
# your model: the share of attention that the output's year and month characters put on the
# source's year and month, and the most that any output character puts on the weekday.

# %% slideshow={"slide_type": "fragment"}
examples = {"Friday, March 5, 2021": ("2021", "March"), "05.03.2021": ("2021", "03"),
            "sep 9, 1987": ("1987", "sep"), "31 DECEMBER 1999": ("1999", "DECEMBER")}
fig, axes = plt.subplots(1, len(examples), figsize=(5 * len(examples), 4))
model.eval()
shares = {}
for ax, (text, (year, month)) in zip(axes, examples.items()):
    src = torch.tensor([src_vocab.encode(text)], device=device)
    tokens, weights = greedy_decode(model, src, torch.tensor([src.shape[1]]), MAX_LEN)
    output = tgt_vocab.decode(tokens[0].tolist())
    show_attention(weights[0, :len(output)], queries=output, keys=list(text), ax=ax,
                   title=f"{text} -> {''.join(output)}")
    weights = weights[0].cpu()                                 # (MAX_LEN, src_len)
    in_year = slice(text.rfind(year), text.rfind(year) + len(year))
    in_month = slice(text.find(month), text.find(month) + len(month))
    # output characters 0-3 are the year (YYYY), 5-6 the month (MM)
    weekday = weights[:len(output), :text.find(",")].sum(-1).max().item() if text.startswith("Friday") else float("nan")
    shares[text] = (weights[:4, in_year].sum(-1).mean().item(), weights[5:7, in_month].sum(-1).mean().item(), weekday)
fig.tight_layout()
plt.show()
print("mean share of attention that YYYY puts on the source's year, MM on its month;")
print("and the most that any output character puts on the weekday name")
for text, (year_share, month_share, weekday) in shares.items():
    print(f"{text:>22}: year {year_share:4.0%}   month {month_share:4.0%}" + ("" if math.isnan(weekday) else f"   weekday {weekday:4.0%}"))

# %% [markdown] nbgrader={"grade": false, "grade_id": "summary", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## Summary
#
# * A single vector is a **bottleneck**; attention lets every decoder step read every encoder state.
# * **Additive**, **multiplicative** and **scaled dot-product** attention differ only in the score;
#   the masked softmax and the weighted sum are shared (your `attend`).
# * Masks are boolean, True = may attend; filling with `finfo.min` and zeroing all-masked rows
#   avoids NaN in any precision.
# * Without $1/\sqrt{d_k}$ the softmax **saturates** as $d_k$ grows and its gradient vanishes: you measured it.
# * A small GRU encoder-decoder with attention learns dates to ISO almost perfectly (at least 98%
#   exact match on held-out dates, tested), and its **alignments** show where it looks for each
#   output character (section 11 measures how much of it falls on the year and the month).
#
# **Next:** notebook 04 makes masks a subject of their own: padding, causal, and BERT's masking.

# %% [markdown] nbgrader={"grade": false, "grade_id": "further_reading", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Further reading
#
# * Bahdanau, Cho, Bengio (2014). *Neural Machine Translation by Jointly Learning to Align and Translate.* arXiv:1409.0473
# * Luong, Pham, Manning (2015). *Effective Approaches to Attention-based Neural Machine Translation.* arXiv:1508.04025
# * Vaswani et al. (2017). *Attention Is All You Need.* arXiv:1706.03762 (section 3.2.1 on the scale)
# * Sutskever, Vinyals, Le (2014). *Sequence to Sequence Learning with Neural Networks.* arXiv:1409.3215
#
# <!-- reading-list -->
# **From the course reading list** (`readings/reading-list.md`, mostly Chinese-language articles; links as the list gives them), by the section they go with:
#
# * with *1 · Intuition: the bottleneck*
#   * [一文看懂 Attention（本质原理+3大优点+5大类型）](https://zhuanlan.zhihu.com/p/91839581): attention at a glance: the principle, three advantages, five kinds (zhihu)
#   * [Transformer, an article on Towards Data Science](https://towardsdatascience.com/memory-attention-sequences-37456d271992): its address reads “memory, attention, sequences”
# * with *7 · Exercise 5: scaled dot-product attention*
#   * [The Illustrated Transformer](https://jalammar.github.io/illustrated-transformer/): the architecture in pictures; the list says “结构介绍的很清晰” (explains the structure very clearly) (Jay Alammar's blog)
# * with *8 · Why divide by $\sqrt{d_k}$?*
#   * [transformer中的attention为什么scaled?](https://www.zhihu.com/question/339723385): why the Transformer's attention is scaled (zhihu)
# <!-- /reading-list -->
