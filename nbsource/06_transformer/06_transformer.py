# ---
# jupyter:
#   celltoolbar: Slideshow
#   kernelspec:
#     display_name: Python 3 (course)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "title", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# # 06 · The Transformer
#
# **Learning objectives.** After this notebook you can
# 1. **implement** multi-head attention, LayerNorm and the position-wise feed-forward network, and match PyTorch's modules weight for weight;
# 2. **assemble** encoder and decoder layers in both norm placements (post-LN as in the paper, pre-LN as in modern models);
# 3. **train** an encoder-decoder with label smoothing and the warm-up schedule;
# 4. **decode** with greedy search and beam search with a length penalty, and **read** cross-attention.
#
# **Prerequisites.** Notebooks 03-05 (attention, masks, positions).
#
# **Estimated time.** 2.5 hours. The notebook runs in about two minutes on a laptop CPU.

# %% [markdown] nbgrader={"grade": false, "grade_id": "notes_intro", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "notes"}
# Speaker notes: draw the two stacks first; every box on the figure is one exercise below.

# %% [markdown] nbgrader={"grade": false, "grade_id": "setup_text", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Setup

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
import math
import re
import time
from unittest import mock

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_utils import assert_close, check_shape, describe_environment, get_device, seed_everything
from course_utils.data import Vocab, make_numbers, pad_batch
from course_utils.plot import plot_curves, plot_history, show_attention_grid
from course_utils.train import count_parameters, fit

seed_everything(0)
device = get_device()
print(describe_environment(device))


# %% [markdown] nbgrader={"grade": false, "grade_id": "intuition", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 1 · Intuition
#
# The Transformer keeps the encoder-decoder of notebook 03 but drops recurrence: every layer
# lets all positions talk to each other through **attention**, and a position-wise network
# transforms each position on its own. Order comes from **positional encodings** (05), padding
# and the future are hidden by **masks** (04). Each layer wraps its two or three sub-layers in
# a **residual** connection with **LayerNorm**.
#
# | symbol | shape | meaning | code name |
# |---|---|---|---|
# | $X$ | `(batch, seq, d_model)` | token representations | `x` |
# | $W^Q_i, W^K_i, W^V_i$ | `(d_model, d_head)` per head | projections (one `nn.Linear` each for all heads) | `w_q, w_k, w_v` |
# | $W^O$ | `(d_model, d_model)` | output projection | `w_o` |
# | $h$, $d_{head}$ | | heads, $d_{model}/h$ | `n_heads`, `d_head` |
# | $\gamma, \beta$ | `(d_model,)` | LayerNorm gain and bias | `weight`, `bias` |
#
# $$\text{MultiHead}(Q,K,V) = \text{Concat}(\text{head}_1..\text{head}_h) W^O,\quad \text{head}_i = \operatorname{softmax}\!\Big(\frac{Q W^Q_i (K W^K_i)^\top}{\sqrt{d_{head}}}\Big) V W^V_i$$
#
# $$\text{LayerNorm}(x) = \gamma \odot \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta,\quad \mu, \sigma^2 \text{ the mean and the biased variance over } d_{model}$$
#
# The figure below is the whole model: every box is one of the exercises.

# %% slideshow={"slide_type": "subslide"}
from matplotlib.patches import FancyBboxPatch

fig, ax = plt.subplots(figsize=(9, 6.5))
ax.set_xlim(0, 11)
ax.set_ylim(0.4, 11.6)
ax.axis("off")


def box(x, y, text, color, w=3.8):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - 0.32), w, 0.64, boxstyle="round,pad=0.04", fc=color, ec="black"))
    ax.text(x, y, text, ha="center", va="center", fontsize=9)


def arrow(x0, y0, x1, y1, **style):
    ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="->", **{"lw": 1.2, **style}))


ATTENTION, NORM, FEED = "#fcd9b6", "#fff6b3", "#c9e7f7"
stacks = {2.6: ["self-attention (ex. 1)", "add & LayerNorm (ex. 2, 3)", "feed-forward (ex. 2)", "add & LayerNorm"],
          8.0: ["masked self-attention", "add & LayerNorm", "cross-attention over memory", "add & LayerNorm",
                "feed-forward", "add & LayerNorm"]}
for x, (bottom, stack) in zip(stacks, (("source digits", stacks[2.6]), ("target words, shifted right", stacks[8.0]))):
    box(x, 1.0, bottom, "white")
    box(x, 2.1, "embed x sqrt(d) + sinusoid (ex. 4)", "#d9f0d3")
    arrow(x, 1.32, x, 1.78)
    ys = [3.4 + 0.9 * i for i in range(len(stack))]
    ax.add_patch(FancyBboxPatch((x - 2.15, ys[0] - 0.5), 4.3, ys[-1] - ys[0] + 1.0, boxstyle="round,pad=0.05",
                                fc="#f2f2f2", ec="gray", ls="--", zorder=0))
    ax.text(x - 2.3 if x < 5 else x + 2.3, (ys[0] + ys[-1]) / 2, "N x", fontsize=11, va="center",
            ha="right" if x < 5 else "left")
    arrow(x, 2.42, x, ys[0] - 0.32)
    for y, text in zip(ys, stack):
        color = NORM if "LayerNorm" in text else FEED if "feed" in text else ATTENTION
        box(x, y, text, "#f7c6c6" if "cross" in text else color)
    for y0, y1 in zip(ys, ys[1:]):
        arrow(x, y0 + 0.32, x, y1 - 0.32)
    top = ys[-1]
encoder_top, cross = 3.4 + 0.9 * 3, 3.4 + 0.9 * 2
ax.plot([2.6, 2.6, 5.3, 5.3], [encoder_top + 0.32, encoder_top + 1.0, encoder_top + 1.0, cross], color="tab:red", lw=1.5)
arrow(5.3, cross, 8.0 - 1.9, cross, color="tab:red", lw=1.5)
ax.text(2.7, encoder_top + 1.15, "memory: the encoder's output,\nread by every decoder layer", color="tab:red", fontsize=9)
box(8.0, top + 1.1, "x @ tgt_embed.T (tied), softmax", "#e5d4f2")
arrow(8.0, top + 0.32, 8.0, top + 0.78)
box(8.0, top + 2.1, "next word (ex. 6: greedy, beam)", "white")
arrow(8.0, top + 1.42, 8.0, top + 1.78)
ax.set_title("The Transformer: an encoder stack (left) and a decoder stack (right)")
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_1_multi_head", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 2 · Exercise 1: multi-head attention (4 points)
#
# Complete `MultiHeadAttention.forward(query, key, value, mask=None)`: project with `w_q, w_k,
# w_v`, split into `n_heads` heads `(batch, heads, seq, d_head)`, scaled dot-product attention
# with the boolean `mask` (True = may attend, broadcastable to `(batch, heads, q_len, k_len)`;
# fill with `torch.finfo(dtype).min`, zero all-masked rows), merge the heads, apply `w_o`.
# Return `(output (batch, q_len, d_model), weights (batch, heads, q_len, k_len))`.
# **Do not use `nn.MultiheadAttention`**: a hidden test makes it raise. A test copies its
# weights into yours and compares outputs.
#
# <details><summary>Hint 1</summary>
#
# Each head is ordinary scaled dot-product attention on its own slice of `d_model`: `d_head` features of each projection, scaled by `1/sqrt(d_head)`, softmax over the keys.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Splitting `(batch, seq, d_model)` into heads takes two steps: cut the last axis into `(n_heads, d_head)`, then move the heads axis in front of `seq`.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# Merging undoes the split in reverse order: heads axis back behind `q_len`, then the last two axes joined into `d_model`, then `w_o`. Zero the weights of masked keys after the softmax, so that an all-masked row comes out as zeros.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "multi_head_attention", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate q, k, v and output projections."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        assert d_model % n_heads == 0, f"d_model={d_model} must be divisible by n_heads={n_heads}"
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.w_q, self.w_k, self.w_v, self.w_o = (nn.Linear(d_model, d_model) for _ in range(4))
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (output (batch, q_len, d_model), weights (batch, heads, q_len, k_len))."""
        ### BEGIN SOLUTION
        batch, q_len, d_model = query.shape
        split = lambda x: x.view(batch, -1, self.n_heads, self.d_head).transpose(1, 2)  # (batch, heads, seq, d_head)
        q, k, v = split(self.w_q(query)), split(self.w_k(key)), split(self.w_v(value))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)            # (batch, heads, q_len, k_len)
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        if mask is not None:
            weights = weights * mask
        out = self.dropout(weights) @ v                                      # (batch, heads, q_len, d_head)
        out = out.transpose(1, 2).reshape(batch, q_len, d_model)             # (batch, q_len, d_model)
        return self.w_o(out), weights
        ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
torch.manual_seed(0)
mha = MultiHeadAttention(d_model=8, n_heads=2)
sequence = torch.randn(1, 5, 8)                                      # (batch, seq, d_model)
lower = torch.ones(5, 5, dtype=torch.bool).tril()                   # a causal mask: position i sees 0..i
mha_out, mha_weights = mha(sequence, sequence, sequence, mask=lower)
print(f"output {tuple(mha_out.shape)}, weights {tuple(mha_weights.shape)} = (batch, heads, q_len, k_len)")
print("row sums of head 0:", [round(v, 3) for v in mha_weights[0, 0].sum(-1).tolist()])
fig = show_attention_grid(mha_weights[0].detach(), queries=[f"q{i}" for i in range(5)], keys=[f"k{j}" for j in range(5)])
fig.suptitle("an untrained layer under a causal mask: nothing above the diagonal", y=1.05)
plt.show()


# %% nbgrader={"grade": false, "grade_id": "copy_helpers", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
def copy_attention(mine: MultiHeadAttention, theirs: nn.MultiheadAttention) -> None:
    """Copy nn.MultiheadAttention's packed in-projection (q, k, v order) into w_q, w_k, w_v, w_o."""
    d = theirs.embed_dim
    with torch.no_grad():
        for i, lin in enumerate((mine.w_q, mine.w_k, mine.w_v)):
            lin.weight.copy_(theirs.in_proj_weight[i * d:(i + 1) * d])
            lin.bias.copy_(theirs.in_proj_bias[i * d:(i + 1) * d])
        mine.w_o.weight.copy_(theirs.out_proj.weight)
        mine.w_o.bias.copy_(theirs.out_proj.bias)


# %% nbgrader={"grade": true, "grade_id": "test_multi_head_attention", "locked": true, "points": 4.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""MultiHeadAttention equals nn.MultiheadAttention with copied weights (float64), with key-padding and causal masks."""
torch.manual_seed(0)
theirs = nn.MultiheadAttention(16, 4, batch_first=True).double()
mine = MultiHeadAttention(16, 4).double()
copy_attention(mine, theirs)
x = torch.randn(2, 5, 16, dtype=torch.float64)
memory = torch.randn(2, 7, 16, dtype=torch.float64)
out, w = mine(x, memory, memory)
check_shape(out, (2, 5, 16), "output")
check_shape(w, (2, 4, 5, 7), "weights (batch, heads, q_len, k_len)")
expected, expected_w = theirs(x, memory, memory, average_attn_weights=False)   # weights per head
near = lambda a, b: torch.allclose(a, b, atol=1e-10)
assert near(w.sum(-1), torch.ones(2, 4, 5, dtype=torch.float64)) or not near(w.sum(-2), torch.ones(2, 4, 7, dtype=torch.float64)), \
    "the weights sum to 1 over the queries, not over the keys: which dimension did the softmax take?"
# softmax(c * log p) = softmax(c * scores): here d_head = 4 and d_model = 16
assert not near(w, torch.softmax(2 * expected_w.log(), -1)), \
    "the weights are too sharp, as if the scores were sqrt(d_head) = 2 times too large: is the 1/sqrt(d_head) scale missing?"
assert not near(w, torch.softmax(0.5 * expected_w.log(), -1)), \
    "the weights are too flat: the scores are divided by sqrt(d_model) = 4, not by sqrt(d_head) = 2"
assert near(w, expected_w), ("the weights differ from nn.MultiheadAttention's head by head (its head h reads features "
                             "h * d_head to (h + 1) * d_head of each projection): check the split into (batch, heads, seq, d_head)")
values = torch.randn(2, 7, 16, dtype=torch.float64)
assert not near(mine(x, memory, values)[0], expected), \
    "with value != key your output is still the one for value = key: which input goes through w_v?"
assert near(out, expected), ("the weights match nn.MultiheadAttention's but the output does not: check how the heads "
                             "go back to (batch, q_len, d_model) before w_o")
assert_close(out, expected, "cross-attention, no mask", atol=1e-10)
keep = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])           # True = real key
out, w = mine(x, memory, memory, mask=keep[:, None, None, :])
assert w[1, ..., :4].sum() > 0, "sequence 1's real keys (mask True) get no weight: True means may attend"
assert (w[1, ..., 4:] == 0).all(), "sequence 1's padded keys (mask False) get weight: they must get exactly 0"
expected, _ = theirs(x, memory, memory, key_padding_mask=~keep)      # PyTorch: True = ignore
assert_close(out, expected, "key padding mask", atol=1e-10)
nothing = torch.zeros(2, 1, 1, 7, dtype=torch.bool)                  # no query may attend to any key
out, w = mine(x, memory, memory, mask=nothing)
assert not w.isnan().any(), "a query whose keys are all masked gets NaN weights: they must be zeros"
assert (w == 0).all(), (f"a query whose keys are all masked must get zero weights (the prompt: zero all-masked rows); "
                        f"its weights sum to {w.sum(-1).flatten()[0].item():.3g}")
### BEGIN HIDDEN TESTS
causal = torch.ones(5, 5, dtype=torch.bool).tril()
with mock.patch.object(nn.MultiheadAttention, "forward", side_effect=AssertionError("do not use nn.MultiheadAttention")):
    out, w = mine(x, x, x, mask=causal)
expected, _ = theirs(x, x, x, attn_mask=~causal)
assert_close(out, expected, "causal self-attention", atol=1e-10)
assert (w[..., ~causal] == 0).all(), "masked weights must be exactly zero"
assert_close(w.sum(-1), torch.ones(2, 4, 5, dtype=torch.float64), "weights sum to 1 over keys", atol=1e-12)
values = torch.randn(2, 7, 16, dtype=torch.float64)
assert_close(mine(x, memory, values)[0], theirs(x, memory, values)[0], "values differ from keys: project `value`", atol=1e-10)
none = keep.clone()
none[1] = False                                                     # the second row may attend to nothing
out, w = mine(x, memory, memory, mask=none[:, None, None, :])
assert not out.isnan().any() and (w[1] == 0).all(), "an all-masked row gets zero weights, not NaN"
assert_close(out[1], mine.w_o.bias.expand(5, 16), "zero weights: the output is w_o's bias", atol=1e-12)
names = sorted(n.split(".")[0] for n, _ in mine.named_parameters())
assert set(names) == {"w_q", "w_k", "w_v", "w_o"}, f"expected w_q, w_k, w_v, w_o as nn.Linear, got {sorted(set(names))}"
one_head = MultiHeadAttention(8, 1).double()
theirs1 = nn.MultiheadAttention(8, 1, batch_first=True).double()
copy_attention(one_head, theirs1)
y = torch.randn(1, 3, 8, dtype=torch.float64)
assert_close(one_head(y, y, y)[0], theirs1(y, y, y)[0], "one head (scale 1/sqrt(d_head) = 1/sqrt(8))", atol=1e-10)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_2_layernorm_feed", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 3 · Exercise 2: LayerNorm and the feed-forward network (3 points)
#
# * `LayerNorm(d_model, eps=1e-5)`: parameters `weight` (ones) and `bias` (zeros); normalise over
#   the last axis with the **biased** variance (divide by $d$, not $d-1$), **inside** the square
#   root with `eps` (not `std + eps`). `nn.LayerNorm` is forbidden here.
# * `FeedForward(d_model, d_ff, dropout)`: `linear1` -> ReLU -> dropout -> `linear2`.
#
# <details><summary>Hint 1</summary>
#
# LayerNorm normalises each position on its own: the mean and the variance are taken over the last axis only.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# The biased variance is the mean of the squared deviations; `eps` is added to it before the square root, then `weight` multiplies and `bias` adds.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# The feed-forward's dropout sits between the ReLU and `linear2`, on the hidden layer.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "layer_norm", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class LayerNorm(nn.Module):
    """LayerNorm over the last axis: weight * (x - mean) / sqrt(var + eps) + bias."""

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., d_model) -> (..., d_model)."""
        ### BEGIN SOLUTION
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, unbiased=False, keepdim=True)
        return self.weight * (x - mean) / torch.sqrt(var + self.eps) + self.bias
        ### END SOLUTION


class FeedForward(nn.Module):
    """Position-wise feed-forward: linear1 -> ReLU -> dropout -> linear2."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        self.linear1, self.linear2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., d_model) -> (..., d_model)."""
        ### BEGIN SOLUTION
        return self.linear2(self.dropout(F.relu(self.linear1(x))))
        ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
torch.manual_seed(0)
activations = torch.randn(2, 3, 6) * 4 + 10                          # (batch, seq, d_model), far from mean 0, std 1
normed = LayerNorm(6)(activations)
for name, t in (("before", activations), ("after LayerNorm", normed)):
    print(f"{name:>16}: mean per position {[round(v, 2) for v in t.mean(-1).flatten().tolist()]}")
    print(f"{'':>16}  std per position  {[round(v, 2) for v in t.std(-1, unbiased=False).flatten().tolist()]}")
print(f"FeedForward(6, 24) maps {tuple(activations.shape)} -> {tuple(FeedForward(6, 24)(activations).shape)}, "
      "each position on its own")

# %% nbgrader={"grade": true, "grade_id": "test_layer_norm", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""LayerNorm equals nn.LayerNorm (biased variance, eps inside the root); FeedForward is linear-ReLU-linear."""
torch.manual_seed(0)
ln, ref = LayerNorm(6).double(), nn.LayerNorm(6).double()
with torch.no_grad():
    ref.weight.uniform_(0.5, 1.5)
    ref.bias.uniform_(-1, 1)
    ln.weight.copy_(ref.weight)
    ln.bias.copy_(ref.bias)
x = torch.randn(3, 4, 6, dtype=torch.float64) * 3 + 1
plain = LayerNorm(6).double()(x)                      # weight 1, bias 0: mean 0 and variance 1 at every position
worst = plain.mean(-1).abs().max().item()
assert worst < 1e-9, f"each position's output should have mean 0 over d_model; found a mean of {worst:.3g}: over which axis is the mean taken?"
variance = plain.var(-1, unbiased=False).mean().item()
assert abs(variance - 5 / 6) > 1e-3, ("each position's output has variance (d - 1) / d = 5/6, not 1: the prompt asks for the "
                                      "biased variance (divide by d, not d - 1)")
assert not torch.allclose(ln(x), ref(x) - ref.bias, atol=1e-12), "your output is nn.LayerNorm's minus its bias: is `bias` added?"
tiny = torch.tensor([[1e-4, -1e-4, 2e-4]], dtype=torch.float64)      # here eps = 1e-5 is not small against the variance
centred = tiny - tiny.mean(-1, keepdim=True)
assert not torch.allclose(LayerNorm(3).double()(tiny), centred / (centred.pow(2).mean(-1, keepdim=True).sqrt() + 1e-5), atol=1e-9), \
    "on tiny inputs your LayerNorm divides by std + eps: the prompt puts eps inside the square root"
assert_close(ln(x), ref(x), "LayerNorm vs nn.LayerNorm", atol=1e-12)
ff = FeedForward(6, 12).double()
eye = torch.eye(6, dtype=torch.float64)
with torch.no_grad():                                 # hidden = [x; -x], output = relu(x) + relu(-x) + 0.5
    ff.linear1.weight.copy_(torch.cat([eye, -eye]))
    ff.linear1.bias.zero_()
    ff.linear2.weight.copy_(torch.cat([eye, eye], dim=1))
    ff.linear2.bias.fill_(0.5)
assert not torch.allclose(ff(x), torch.full_like(x, 0.5), atol=1e-12), \
    "hidden = [x; -x] came out as x - x = 0 after linear2: is a non-linearity applied between linear1 and linear2?"
assert not torch.allclose(ff(x), F.gelu(x) + F.gelu(-x) + 0.5, atol=1e-12), "your feed-forward uses GELU: the prompt asks for ReLU"
assert_close(ff(x), x.abs() + 0.5, "FeedForward with W1 = [I; -I], W2 = [I, I], b2 = 0.5 gives |x| + 0.5", atol=1e-12)
torch.manual_seed(0)
dropped = (FeedForward(6, 64, dropout=0.5).double().train()(x) == 0).double().mean().item()
assert dropped < 0.05, (f"with dropout 0.5 in training, {dropped:.0%} of the outputs are exactly 0: dropout goes on the "
                        "hidden layer, before linear2, so almost no output is 0")
### BEGIN HIDDEN TESTS
tiny = torch.tensor([[1e-4, -1e-4, 2e-4]], dtype=torch.float64)
assert_close(LayerNorm(3).double()(tiny), nn.LayerNorm(3).double()(tiny), "eps inside the square root matters for tiny inputs", atol=1e-9)
with mock.patch.object(nn.LayerNorm, "forward", side_effect=AssertionError("do not use nn.LayerNorm")), \
        mock.patch.object(F, "layer_norm", side_effect=AssertionError("do not use F.layer_norm")):
    LayerNorm(6).double()(x)
assert sorted(n for n, _ in LayerNorm(4).named_parameters()) == ["bias", "weight"]
assert isinstance(ff.linear1, nn.Linear) and ff.linear1.out_features == 12
torch.manual_seed(0)
dropping = FeedForward(6, 64, dropout=0.5).double().train()
y = dropping(x)
assert not torch.equal(y, dropping(x)), "dropout must be applied in training"
zeros = (y == 0).double().mean().item()
assert zeros < 0.05, f"dropout goes on the hidden layer, before linear2: expected almost no zero outputs, got {zeros:.0%}"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_3_encoder_decoder", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 4 · Exercise 3: encoder and decoder layers, post-LN and pre-LN (4 points)
#
# Complete the two layers. With `norm_first=False` (**post-LN**, the paper):
# $x = \text{LN}(x + \text{Sublayer}(x))$; with `norm_first=True` (**pre-LN**, GPT-2 and most
# modern models): $x = x + \text{Sublayer}(\text{LN}(x))$. Dropout goes on each sub-layer's
# output before the residual sum. The decoder has three sub-layers: masked self-attention,
# cross-attention over `memory`, feed-forward; it also returns the cross-attention weights.
# Tests copy the weights of `nn.TransformerEncoderLayer` / `nn.TransformerDecoderLayer` into yours.
#
# <details><summary>Hint 1</summary>
#
# Write each sub-layer once as a function of its input (attention, then dropout), and build both norm placements from it.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Post-LN normalises the sum, `LN(x + f(x))`; pre-LN normalises only what the sub-layer reads, `x + f(LN(x))`, so the residual stream itself is never normalised.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# In the decoder, `norm1`, `norm2` and `norm3` belong to self-attention (with `tgt_mask`), cross-attention (queries from `x`, keys and values from `memory`, `memory_mask`) and the feed-forward, in that order.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "layers", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class EncoderLayer(nn.Module):
    """Self-attention and feed-forward, each in a residual block with LayerNorm."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1, norm_first: bool = False) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.feed_forward = FeedForward(d_model, d_ff, dropout)
        self.norm1, self.norm2 = LayerNorm(d_model), LayerNorm(d_model)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (batch, seq, d_model), mask broadcastable to (batch, heads, seq, seq)."""
        ### BEGIN SOLUTION
        attend = lambda y: self.dropout1(self.self_attn(y, y, y, mask)[0])
        transform = lambda y: self.dropout2(self.feed_forward(y))
        if self.norm_first:
            x = x + attend(self.norm1(x))
            return x + transform(self.norm2(x))
        x = self.norm1(x + attend(x))
        return self.norm2(x + transform(x))
        ### END SOLUTION


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention over the encoder output, feed-forward."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1, norm_first: bool = False) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.feed_forward = FeedForward(d_model, d_ff, dropout)
        self.norm1, self.norm2, self.norm3 = LayerNorm(d_model), LayerNorm(d_model), LayerNorm(d_model)
        self.dropout1, self.dropout2, self.dropout3 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: torch.Tensor, memory: torch.Tensor, tgt_mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (x (batch, tgt_len, d_model), cross-attention weights (batch, heads, tgt_len, src_len))."""
        ### BEGIN SOLUTION
        attend = lambda y: self.dropout1(self.self_attn(y, y, y, tgt_mask)[0])
        transform = lambda y: self.dropout3(self.feed_forward(y))
        if self.norm_first:
            x = x + attend(self.norm1(x))
            cross, weights = self.cross_attn(self.norm2(x), memory, memory, memory_mask)
            x = x + self.dropout2(cross)
            return x + transform(self.norm3(x)), weights
        x = self.norm1(x + attend(x))
        cross, weights = self.cross_attn(x, memory, memory, memory_mask)
        x = self.norm2(x + self.dropout2(cross))
        return self.norm3(x + transform(x)), weights
        ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
torch.manual_seed(0)
source_states, target_states = torch.randn(1, 6, 16) * 3, torch.randn(1, 4, 16) * 3   # (batch, seq, d_model)
future_hidden = torch.ones(4, 4, dtype=torch.bool).tril()
for norm_first in (False, True):
    encoder_layer = EncoderLayer(16, 4, 32, dropout=0.0, norm_first=norm_first)
    decoder_layer = DecoderLayer(16, 4, 32, dropout=0.0, norm_first=norm_first)
    encoded = encoder_layer(source_states)
    decoded, cross_weights = decoder_layer(target_states, encoded, future_hidden)
    print(f"norm_first={norm_first!s:5}: encoder {tuple(encoded.shape)}, decoder {tuple(decoded.shape)}, "
          f"cross-attention {tuple(cross_weights.shape)}; std per position of the decoder output "
          f"{[round(v, 2) for v in decoded.std(-1, unbiased=False)[0].tolist()]}")
print("post-LN ends on a LayerNorm (std 1 at every position); pre-LN adds to the residual stream and keeps its scale")

# %% nbgrader={"grade": false, "grade_id": "copy_layers", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
def copy_encoder_layer(mine: EncoderLayer, theirs: nn.TransformerEncoderLayer) -> None:
    """Copy every weight of a PyTorch encoder layer into ours."""
    copy_attention(mine.self_attn, theirs.self_attn)
    mine.feed_forward.load_state_dict({"linear1.weight": theirs.linear1.weight, "linear1.bias": theirs.linear1.bias,
                                       "linear2.weight": theirs.linear2.weight, "linear2.bias": theirs.linear2.bias})
    mine.norm1.load_state_dict(theirs.norm1.state_dict())
    mine.norm2.load_state_dict(theirs.norm2.state_dict())


def copy_decoder_layer(mine: DecoderLayer, theirs: nn.TransformerDecoderLayer) -> None:
    """Copy every weight of a PyTorch decoder layer into ours."""
    copy_attention(mine.self_attn, theirs.self_attn)
    copy_attention(mine.cross_attn, theirs.multihead_attn)
    mine.feed_forward.load_state_dict({"linear1.weight": theirs.linear1.weight, "linear1.bias": theirs.linear1.bias,
                                       "linear2.weight": theirs.linear2.weight, "linear2.bias": theirs.linear2.bias})
    for n in ("norm1", "norm2", "norm3"):
        getattr(mine, n).load_state_dict(getattr(theirs, n).state_dict())


# %% nbgrader={"grade": true, "grade_id": "test_layers", "locked": true, "points": 4.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""Encoder and decoder layers equal PyTorch's with copied weights, post-LN and pre-LN, with masks."""
torch.manual_seed(0)
x, memory = torch.randn(2, 5, 16, dtype=torch.float64), torch.randn(2, 6, 16, dtype=torch.float64)
src_keep = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
causal = torch.ones(5, 5, dtype=torch.bool).tril()


def randomise_norms(layer: nn.Module) -> nn.Module:
    """Give every LayerNorm its own gain and bias, so that swapping two norms shows."""
    with torch.no_grad():
        for module in layer.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return layer


def record(layer: nn.Module, names: list[str]) -> dict:
    """After each forward pass: name -> (first input, output) of each named sub-module of the layer."""
    seen = {}
    def hook(name):
        def save(module, args, kwargs, output):
            seen[name] = (args[0] if args else next(iter(kwargs.values())), output[0] if isinstance(output, tuple) else output)
        return save
    for name in names:
        getattr(layer, name).register_forward_hook(hook(name), with_kwargs=True)
    return seen


near = lambda a, b: a.shape == b.shape and torch.allclose(a, b, atol=1e-10)
for norm_first in (False, True):
    kind = f"norm_first={norm_first} ({'pre' if norm_first else 'post'}-LN)"
    theirs = randomise_norms(nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=norm_first).double())
    mine = EncoderLayer(16, 4, 32, dropout=0.0, norm_first=norm_first).double()
    copy_encoder_layer(mine, theirs)
    seen = record(mine, ["self_attn", "norm1", "norm2", "feed_forward"])
    got = mine(memory, src_keep[:, None, None, :])
    if not norm_first:
        assert near(seen["self_attn"][0], memory), (f"encoder, {kind}: the self-attention should read x itself; yours reads "
                                                   "a normalised x, as pre-LN does: is the norm_first test the wrong way round?")
        assert near(seen["feed_forward"][0], seen["norm1"][1]), \
            f"encoder, {kind}: the feed-forward should read norm1's output, LN(x + Attention(x)); yours reads something else"
    else:
        assert near(seen["norm2"][0], memory + seen["self_attn"][1]), \
            (f"encoder, {kind}: norm2 should read x + Attention(LN(x)), the input x itself plus the attention's output; "
             "does your residual start from the normalised x?")
        assert near(got, seen["norm2"][0] + seen["feed_forward"][1]), \
            f"encoder, {kind}: the output should be the residual stream plus the feed-forward's output, x + FF(LN(x))"
    assert_close(got, theirs(memory, src_key_padding_mask=~src_keep), f"encoder layer, {kind}", atol=1e-10)
    theirs_d = randomise_norms(nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=norm_first).double())
    mine_d = DecoderLayer(16, 4, 32, dropout=0.0, norm_first=norm_first).double()
    copy_decoder_layer(mine_d, theirs_d)
    seen = record(mine_d, ["cross_attn", "norm1", "norm2", "norm3", "feed_forward"])
    out, weights = mine_d(x, memory, causal, src_keep[:, None, None, :])
    check_shape(weights, (2, 4, 5, 6), "cross-attention weights (batch, heads, tgt_len, src_len)")
    if norm_first:
        assert "norm2" in seen and near(seen["cross_attn"][0], seen["norm2"][1]), \
            f"decoder, {kind}: the cross-attention's queries should be norm2's output, LN(x); yours are not normalised by norm2"
    else:
        assert near(seen["feed_forward"][0], seen["norm2"][1]), \
            (f"decoder, {kind}: the feed-forward should read norm2's output; the norms go norm1 (self-attention), "
             "norm2 (cross-attention), norm3 (feed-forward), as copy_decoder_layer copies them")
    later = x.clone()
    later[:, -1] += 1.0                                                 # change the last target position only
    assert near(mine_d(later, memory, causal, src_keep[:, None, None, :])[0][:, :-1], out[:, :-1]), \
        f"decoder, {kind}: changing the last target position changed the outputs before it: is tgt_mask used?"
    assert (weights[1, :, :, 3:] == 0).all(), \
        f"decoder, {kind}: the cross-attention gives weight to padded source positions (memory_mask False)"
    expected = theirs_d(x, memory, tgt_mask=~causal, memory_key_padding_mask=~src_keep)
    assert_close(out, expected, f"decoder layer, {kind}", atol=1e-10)
### BEGIN HIDDEN TESTS
assert (weights[1, :, :, 3:] == 0).all(), "cross-attention must not look at padded source positions"
theirs = nn.TransformerEncoderLayer(16, 2, 24, dropout=0.0, batch_first=True).double()
mine = EncoderLayer(16, 2, 24, dropout=0.0).double()
copy_encoder_layer(mine, theirs)
assert_close(mine(x), theirs(x), "encoder layer without a mask", atol=1e-10)
train_mode = EncoderLayer(16, 4, 32, dropout=0.5).double().train()
assert not torch.allclose(train_mode(x), train_mode(x)), "dropout must be applied in training"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_4_model", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 5 · Exercise 4: the model (2 points)
#
# Complete `Seq2SeqTransformer.embed(tokens, table)`: look the tokens up in `table`, multiply by
# $\sqrt{d_{model}}$, add the sinusoidal encoding of their positions (given), apply dropout; and
# `logits(x)`: the output projection **tied** to the target embedding, `x @ self.tgt_embed.weight.T`.
#
# <details><summary>Hint 1</summary>
#
# The table starts with entries of std `d_model ** -0.5`; multiplying by `sqrt(d_model)` brings them to about 1, the size of the sinusoid's entries.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Take the first `seq` rows of `self.positions` (position 0 first), add them to the scaled lookup, and apply dropout to the sum; the logits reuse the target table as the output matrix.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "sinusoidal", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
def sinusoidal_encoding(n_positions: int, d_model: int) -> torch.Tensor:
    """The encoding of notebook 05, given here."""
    positions = torch.arange(n_positions, dtype=torch.float64)[:, None]
    frequencies = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    encoding = torch.zeros(n_positions, d_model, dtype=torch.float64)
    encoding[:, 0::2] = (positions * frequencies).sin()
    encoding[:, 1::2] = (positions * frequencies).cos()
    return encoding.float()


# %% nbgrader={"grade": false, "grade_id": "model", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder Transformer with scaled embeddings, sinusoidal positions and tied output weights."""

    def __init__(self, src_vocab: int, tgt_vocab: int, d_model: int = 128, n_heads: int = 4, n_layers: int = 2,
                 d_ff: int = 256, dropout: float = 0.1, norm_first: bool = False, max_len: int = 256) -> None:
        super().__init__()
        self.d_model = d_model
        self.src_embed, self.tgt_embed = nn.Embedding(src_vocab, d_model), nn.Embedding(tgt_vocab, d_model)
        nn.init.normal_(self.src_embed.weight, std=d_model ** -0.5)
        nn.init.normal_(self.tgt_embed.weight, std=d_model ** -0.5)
        self.register_buffer("positions", sinusoidal_encoding(max_len, d_model), persistent=False)
        self.dropout = nn.Dropout(dropout)
        self.encoder = nn.ModuleList(EncoderLayer(d_model, n_heads, d_ff, dropout, norm_first) for _ in range(n_layers))
        self.decoder = nn.ModuleList(DecoderLayer(d_model, n_heads, d_ff, dropout, norm_first) for _ in range(n_layers))
        self.final_norm = LayerNorm(d_model) if norm_first else nn.Identity()

    def embed(self, tokens: torch.Tensor, table: nn.Embedding) -> torch.Tensor:
        """tokens (batch, seq) -> (batch, seq, d_model): table(tokens) * sqrt(d_model) + PE, dropout."""
        ### BEGIN SOLUTION
        x = table(tokens) * math.sqrt(self.d_model)                         # (batch, seq, d_model)
        return self.dropout(x + self.positions[:tokens.shape[1]])
        ### END SOLUTION

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """x (batch, seq, d_model) -> (batch, seq, tgt_vocab), tied to tgt_embed."""
        ### BEGIN SOLUTION
        return x @ self.tgt_embed.weight.T
        ### END SOLUTION

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(src, self.src_embed)
        for layer in self.encoder:
            x = layer(x, src_mask)
        return self.final_norm(x)

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor):
        causal = torch.ones(tgt.shape[1], tgt.shape[1], dtype=torch.bool, device=tgt.device).tril()
        x, weights = self.embed(tgt, self.tgt_embed), []
        for layer in self.decoder:
            x, w = layer(x, memory, causal, src_mask)
            weights.append(w)
        return self.logits(self.final_norm(x)), weights

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, pad_id: int = 0):
        src_mask = (src != pad_id)[:, None, None, :]                         # (batch, 1, 1, src_len)
        return self.decode(tgt_in, self.encode(src, src_mask), src_mask)[0]


# %% slideshow={"slide_type": "fragment"}
torch.manual_seed(0)
small_model = Seq2SeqTransformer(src_vocab=12, tgt_vocab=10, d_model=16, n_heads=2, n_layers=1, d_ff=32, dropout=0.0)
target_ids = torch.tensor([[1, 6, 7, 4]])                                         # (batch, tgt_len)
with torch.no_grad():
    embedded = small_model.embed(target_ids, small_model.tgt_embed)               # (batch, tgt_len, d_model)
    token_part = small_model.tgt_embed(target_ids) * math.sqrt(16)
    print(f"embed: {tuple(target_ids.shape)} -> {tuple(embedded.shape)}; logits: "
          f"{tuple(small_model(torch.tensor([[3, 4, 5, 0]]), target_ids).shape)} = (batch, tgt_len, tgt_vocab)")
    print("norm of the scaled token vectors:", [round(v, 2) for v in token_part.norm(dim=-1)[0].tolist()])
    print("norm of the position encodings:  ", [round(v, 2) for v in small_model.positions[:4].norm(dim=-1).tolist()])
print("rows of the table have norm about 1 (std d_model^-0.5), so the sqrt(d_model) scaling puts tokens on the scale of positions")


# %% nbgrader={"grade": true, "grade_id": "test_model", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""The model scales embeddings by sqrt(d_model), adds positions, and ties the output to the target embedding."""
toy = Seq2SeqTransformer(7, 9, d_model=8, n_heads=2, n_layers=1, d_ff=16, dropout=0.0).double()
tokens = torch.tensor([[3, 3, 5]])
pe = sinusoidal_encoding(3, 8).double()
with torch.no_grad():
    toy.tgt_embed.weight.zero_()
zero_table = toy.embed(tokens, toy.tgt_embed)[0]
assert not torch.allclose(zero_table, sinusoidal_encoding(4, 8).double()[1:], atol=1e-12), \
    "an all-zero table gives the encodings of positions 1, 2, 3: the first token is at position 0"
assert_close(zero_table, pe, "an all-zero table leaves the encodings of positions 0, 1, 2", atol=1e-12)
with torch.no_grad():
    toy.tgt_embed.weight.fill_(0.5)
token_part = (toy.embed(tokens, toy.tgt_embed)[0] - pe).mean().item()
assert abs(token_part - 0.5) > 1e-9, "a table of 0.5s gives 0.5 + the position's encoding: is the table multiplied by sqrt(d_model)?"
assert abs(token_part - 0.5 / math.sqrt(8)) > 1e-9, \
    "a table of 0.5s gives 0.5 / sqrt(d_model) = 0.177 + the position's encoding: multiply by sqrt(d_model), do not divide"
assert_close(toy.embed(tokens, toy.tgt_embed)[0] - pe, torch.full((3, 8), 0.5 * math.sqrt(8), dtype=torch.float64),
             "a table of 0.5s: every entry is 0.5 * sqrt(d_model) = 1.414 plus the position's encoding", atol=1e-12)
dropping = Seq2SeqTransformer(7, 9, d_model=8, n_heads=2, n_layers=1, d_ff=16, dropout=0.5).double().train()
with torch.no_grad():
    dropping.tgt_embed.weight.zero_()
torch.manual_seed(0)
assert ((dropping.embed(torch.tensor([[1, 2, 3, 4]]), dropping.tgt_embed)[0] == 0) & (sinusoidal_encoding(4, 8).double() != 0)).any(), \
    "with dropout 0.5 in training no entry of the position encodings was dropped: dropout goes on the sum, after the positions are added"
with torch.no_grad():
    toy.tgt_embed.weight.copy_(torch.randn(9, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
unit = torch.eye(8, dtype=torch.float64)[None]                                 # 8 positions holding e_1 .. e_8
assert toy.logits(unit).shape[-1] != len(toy.src_embed.weight), \
    "logits(x) has one entry per source token (7), not per target token (9): which embedding is the output tied to?"
assert_close(toy.logits(unit)[0], toy.tgt_embed.weight.T, "tied: the logits of e_k are column k of the target embedding", atol=1e-12)
check_shape(toy(torch.tensor([[1, 2, 0]]), torch.tensor([[1, 4]])), (1, 2, 9), "logits (batch, tgt_len, vocab)")
### BEGIN HIDDEN TESTS
h = torch.randn(1, 2, 8, dtype=torch.float64)
with torch.no_grad():
    toy.tgt_embed.weight[4] += 1.0
assert_close(toy.logits(h)[..., 4], h @ toy.tgt_embed.weight[4], "changing the embedding changes the logits (tied)", atol=1e-12)
assert not any(p.shape == (9, 8) for n, p in toy.named_parameters() if not n.startswith("tgt_embed")), \
    "no separate output matrix: the projection is tied"
e1 = toy.embed(torch.tensor([[3]]), toy.src_embed)
e2 = toy.embed(torch.tensor([[5, 3]]), toy.src_embed)[:, 1:]
assert not torch.allclose(e1, e2), "the same token at another position must differ (positions added)"
dropping = Seq2SeqTransformer(7, 9, d_model=8, n_heads=2, n_layers=1, d_ff=16, dropout=0.5).double().train()
with torch.no_grad():
    dropping.src_embed.weight.zero_()
torch.manual_seed(0)
out, pe = dropping.embed(torch.tensor([[1, 2, 3, 4]]), dropping.src_embed)[0], sinusoidal_encoding(4, 8).double()
assert ((out == 0) & (pe != 0)).any(), "dropout applies to the sum, positions included"
assert_close(out[out != 0], 2 * pe[out != 0], "what dropout keeps is scaled by 1 / (1 - p) = 2", atol=1e-12)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_5_label_smoothing", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 6 · Exercise 5: label smoothing and the warm-up schedule (4 points)
#
# * `label_smoothed_loss(logits, targets, smoothing, ignore_index)`: logits `(n, vocab)`, targets
#   `(n,)`. The target distribution puts $1-\varepsilon$ on the true class and spreads $\varepsilon$
#   uniformly over **all** classes (PyTorch's convention); average over non-ignored rows.
#   Equal to `F.cross_entropy(label_smoothing=..., ignore_index=...)`, which you may not call.
# * `warmup_lr(step, d_model, warmup)` $= d_{model}^{-0.5} \min(\text{step}^{-0.5}, \text{step}\cdot\text{warmup}^{-1.5})$ for step $\ge 1$.
#
# <details><summary>Hint 1</summary>
#
# Label-smoothed cross-entropy is a mix of two losses: the usual `-log p(true class)` and the mean of `-log p` over all classes.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Weight them `1 - eps` and `eps`, compute both from `log_softmax`, and average over the rows whose target is not `ignore_index` (give those rows a valid index before gathering, then drop them).
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# The schedule is the smaller of a rising line and a falling `1/sqrt(step)`: they cross at `step = warmup`.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "training_pieces", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def label_smoothed_loss(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.1,
                        ignore_index: int = -100) -> torch.Tensor:
    """Cross-entropy against (1 - eps) * one_hot + eps / vocab, averaged over non-ignored rows."""
    ### BEGIN SOLUTION
    log_probs = F.log_softmax(logits, dim=-1)                              # (n, vocab)
    keep = targets != ignore_index
    nll = -log_probs.gather(-1, targets.clamp(min=0)[:, None]).squeeze(-1)  # (n,)
    uniform = -log_probs.mean(-1)                                          # (n,)
    loss = (1 - smoothing) * nll + smoothing * uniform
    return (loss * keep).sum() / keep.sum().clamp(min=1)
    ### END SOLUTION


def warmup_lr(step: int, d_model: int, warmup: int) -> float:
    """The learning rate of 'Attention Is All You Need' at a step (>= 1)."""
    ### BEGIN SOLUTION
    step = max(step, 1)
    return d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
steps = range(1, 20_001)
plot_curves({f"d_model={d}, warmup={w}": [warmup_lr(s, d, w) for s in steps] for d, w in [(512, 4000), (128, 4000), (128, 400)]},
            ylabel="learning rate")
plt.show()

# %% nbgrader={"grade": true, "grade_id": "test_training_pieces", "locked": true, "points": 4.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""label_smoothed_loss equals F.cross_entropy(label_smoothing, ignore_index); warmup_lr peaks at the warm-up step."""
g = torch.Generator().manual_seed(0)
logits = torch.randn(6, 5, dtype=torch.float64, generator=g)
targets = torch.tensor([0, 4, 2, -100, 1, -100])
expected = F.cross_entropy(logits, targets, label_smoothing=0.1, ignore_index=-100)
try:
    got = label_smoothed_loss(logits, targets, 0.1, -100)
except (IndexError, RuntimeError) as error:
    raise AssertionError(f"with ignore_index=-100 your function fails ({error}): an ignored row's target is not a class, "
                         "so it cannot index the log-probabilities as it is") from None
same = lambda loss: abs(got.item() - loss.item()) < 1e-12
assert not same(F.cross_entropy(logits, targets, label_smoothing=0.125, ignore_index=-100)), \
    ("your loss is PyTorch's with smoothing 0.125 = 0.1 * 5/4: eps is spread over all 5 classes, the true one included, "
     "not over the 4 others")
assert not same(F.cross_entropy(logits, targets, label_smoothing=0.9, ignore_index=-100)), \
    "your loss is PyTorch's with smoothing 0.9: the true class gets 1 - eps and the uniform part eps, not the other way round"
assert not same(0.9 * F.cross_entropy(logits, targets) + 0.1 * 5 * F.cross_entropy(logits, targets, label_smoothing=1.0)), \
    "your smoothing term is 5 times too large (vocab = 5): average -log p over the classes, do not sum it"
assert not same(expected * 4 / 6), "your loss is 4/6 of the expected one: average over the 4 rows that are not ignored, not over all 6"
assert abs(label_smoothed_loss(logits + 3.0, targets, 0.1, -100).item() - got.item()) < 1e-12, \
    "adding 3 to every logit changed your loss, but not the softmax: are the logits turned into log-probabilities?"
assert_close(got, expected, "smoothing 0.1, two ignored rows", atol=1e-12)
assert abs(warmup_lr(4000, 512, 4000) - 512 ** -0.5 * 4000 ** -0.5) < 1e-15, "the peak at step = warmup"
assert warmup_lr(9000, 512, 4000) < warmup_lr(5000, 512, 4000), \
    "after the warm-up (step 5000, then 9000) your rate rises; it should fall as 1/sqrt(step): which of the two terms do you take?"
assert warmup_lr(100, 512, 4000) < warmup_lr(200, 512, 4000), \
    (f"during the warm-up your rate falls, {warmup_lr(100, 512, 4000):.3g} at step 100, {warmup_lr(200, 512, 4000):.3g} at 200; "
     "it should rise linearly, step * warmup^-1.5: check the warm-up term's exponent")
### BEGIN HIDDEN TESTS
with mock.patch.object(F, "cross_entropy", side_effect=AssertionError("do not call F.cross_entropy")):
    got = label_smoothed_loss(logits, torch.tensor([0, 4, 2, 3, 1, 0]), 0.3, ignore_index=3)
assert_close(got, F.cross_entropy(logits, torch.tensor([0, 4, 2, 3, 1, 0]), label_smoothing=0.3, ignore_index=3),
             "smoothing 0.3, ignore_index 3", atol=1e-12)
assert_close(label_smoothed_loss(logits, torch.tensor([0, 4, 2, 1, 1, 0]), 0.0), F.cross_entropy(logits, torch.tensor([0, 4, 2, 1, 1, 0])),
             "no smoothing: plain cross-entropy", atol=1e-12)
assert abs(warmup_lr(1, 128, 400) - 128 ** -0.5 * 400 ** -1.5) < 1e-15, "step 1"
assert abs(warmup_lr(1600, 128, 400) - 128 ** -0.5 / 40) < 1e-15, "1/sqrt(step) after warm-up"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task_numbers_english_words", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 7 · The task: numbers to English words
#
# "342017" -> "three hundred forty - two thousand seventeen". Source tokens are digits; target
# tokens are words and the hyphen. 1,000 held-out numbers never appear in training.

# %% slideshow={"slide_type": "fragment"}
def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z]+|-", text)


train_pairs = make_numbers(40_000, seed=0)
seen = {digits for digits, _ in train_pairs}
test_pairs = [p for p in make_numbers(3_000, seed=1) if p[0] not in seen][:1_000]
src_vocab = Vocab.from_texts((d for d, _ in train_pairs), tokenize=list)
tgt_vocab = Vocab.from_texts((w for _, w in train_pairs), tokenize=words_of)
print(f"{len(train_pairs):,} training pairs, {len(test_pairs):,} held out; vocabularies {len(src_vocab)} and {len(tgt_vocab)}")
for digits, text in train_pairs[:4]:
    print(f"{digits:>8} -> {text}")


def encode_pairs(pairs):
    src, _ = pad_batch([src_vocab.encode(list(d)) for d, _ in pairs])
    tgt, _ = pad_batch([tgt_vocab.encode(words_of(w), bos=True, eos=True) for _, w in pairs])
    return src, tgt


train_src, train_tgt = encode_pairs(train_pairs)
test_src, test_tgt = encode_pairs(test_pairs)
MAX_LEN = test_tgt.shape[1] + 2


# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_6_greedy_decoding", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 8 · Exercise 6: greedy decoding and beam search (3 points)
#
# * `greedy_decode(model, src, max_len)`: batch decoding from `<bos>`, arg-max at every step;
#   returns `(batch, max_len)` tokens (no `<bos>`), `<pad>` after each sequence's first `<eos>`.
# * `beam_search(model, src, beam_size, max_len, alpha)` for **one** source `(1, src_len)`: keep
#   the `beam_size` best prefixes by summed log-probability; a prefix that emits `<eos>` is finished
#   (it stays in the beam and competes with the unfinished ones);
#   stop when `beam_size` hypotheses are finished or after `max_len` steps; return the tokens
#   (up to and including `<eos>`, no `<bos>`) of the finished hypothesis with the best
#   **length-normalised** score $\log p(Y) / \text{lp}(Y)$, $\text{lp}(Y) = ((5 + |Y|)/6)^\alpha$ (Wu et al., 2016),
#   where $|Y|$ counts the returned tokens (`<eos>` included, `<bos>` not).
#   With `beam_size=1` it must return what greedy decoding returns.
#
# <details><summary>Hint 1</summary>
#
# Both decoders grow the target prefix one token at a time from `<bos>`: the next token's distribution is the model's output at the newest position.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Greedy: append the arg-max for the whole batch `max_len` times, drop `<bos>`, then turn every token after each row's first `<eos>` into `<pad>`.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# Beam: at each step extend every unfinished prefix by its `beam_size` best tokens, keep the finished ones as candidates too, and keep the `beam_size` best by summed log p; only at the end pick the finished hypothesis with the best log p / lp(Y).
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "decoding", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
@torch.no_grad()
def greedy_decode(model: Seq2SeqTransformer, src: torch.Tensor, max_len: int) -> torch.Tensor:
    """Batched greedy decoding; tokens after the first <eos> become <pad>."""
    ### BEGIN SOLUTION
    src_mask = (src != src_vocab.pad_id)[:, None, None, :]
    memory = model.encode(src, src_mask)
    out = torch.full((src.shape[0], 1), tgt_vocab.bos_id, dtype=torch.long, device=src.device)
    for _ in range(max_len):
        logits, _ = model.decode(out, memory, src_mask)
        out = torch.cat([out, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    tokens = out[:, 1:]
    is_eos = tokens == tgt_vocab.eos_id
    after = (is_eos.long().cumsum(1) - is_eos.long()) > 0
    return tokens.masked_fill(after, tgt_vocab.pad_id)
    ### END SOLUTION


@torch.no_grad()
def beam_search(model: Seq2SeqTransformer, src: torch.Tensor, beam_size: int = 4, max_len: int = 20,
                alpha: float = 0.6) -> list[int]:
    """Beam search for one source; returns the best finished hypothesis (ends with <eos> if any finished)."""
    ### BEGIN SOLUTION
    src_mask = (src != src_vocab.pad_id)[:, None, None, :]
    memory = model.encode(src, src_mask)                                   # (1, src_len, d_model)
    beams = [(0.0, [tgt_vocab.bos_id], False)]                             # (log p, tokens, finished)
    for _ in range(max_len):
        alive = [b for b in beams if not b[2]]
        if not alive:
            break
        prefixes = torch.tensor([b[1] for b in alive], device=src.device)  # (n_alive, t)
        logits, _ = model.decode(prefixes, memory.expand(len(alive), -1, -1), src_mask)
        top, index = logits[:, -1].log_softmax(-1).topk(beam_size, dim=-1)  # (n_alive, beam_size)
        candidates = [b for b in beams if b[2]]                            # finished beams stay as they are
        for (score, tokens, _), scores, ids in zip(alive, top.tolist(), index.tolist()):
            candidates += [(score + s, tokens + [t], t == tgt_vocab.eos_id) for s, t in zip(scores, ids)]
        beams = sorted(candidates, key=lambda b: b[0], reverse=True)[:beam_size]  # ranked by log p
    finished = [b for b in beams if b[2]] or beams
    penalty = lambda length: ((5 + length) / 6) ** alpha
    best = max(finished, key=lambda b: b[0] / penalty(len(b[1]) - 1))      # length-normalised choice
    return best[1][1:]
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
class Rehearsed(nn.Module):
    """A stand-in for a trained model: whatever the source, it prefers the words of one answer, then <eos>."""

    def __init__(self, words: list[str]) -> None:
        super().__init__()
        self.answer = tgt_vocab.encode(words) + [tgt_vocab.eos_id]

    def encode(self, src, src_mask):
        return torch.zeros(src.shape[0], src.shape[1], 1)

    def decode(self, tgt, memory, src_mask):
        logits = torch.zeros(tgt.shape[0], tgt.shape[1], len(tgt_vocab))        # (batch, tgt_len, vocab)
        for t in range(tgt.shape[1]):                                             # position t predicts word t
            logits[:, t, self.answer[min(t, len(self.answer) - 1)]] = 3.0
        return logits, []


rehearsed = Rehearsed(["four", "hundred"])
greedy_tokens = greedy_decode(rehearsed, test_src[:2], 6)                        # (batch, max_len)
print(f"greedy_decode: {tuple(greedy_tokens.shape)} tokens")
for row in greedy_tokens.tolist():
    print("  greedy:", " ".join(tgt_vocab.itos[t] for t in row))
print("  beam 3:", " ".join(tgt_vocab.itos[t] for t in beam_search(rehearsed, test_src[:1], beam_size=3, max_len=6)))
print("look for: no <bos>, the answer's <eos> kept, <pad> after it in greedy; beam search stops at <eos>")


# %% nbgrader={"grade": true, "grade_id": "test_decoding", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""greedy_decode agrees with the teacher-forced arg-max; beam size 1 equals greedy; beam search returns the finished hypothesis with the best normalised score."""
class Scripted(nn.Module):
    """A model whose next-token probabilities are a table: prefix after <bos> -> {token: p}; other prefixes end."""

    def __init__(self, table: dict) -> None:
        super().__init__()
        self.table = table

    def encode(self, src, src_mask):
        return torch.zeros(src.shape[0], src.shape[1], 16)

    def decode(self, tgt, memory, src_mask):
        logits = torch.full((tgt.shape[0], tgt.shape[1], len(tgt_vocab)), -1e9)
        for row, prefix in enumerate(tgt.tolist()):
            for t in range(len(prefix)):                                # position t has read prefix[:t + 1]
                for token, p in self.table.get(tuple(prefix[1:t + 1]), {tgt_vocab.eos_id: 1.0}).items():
                    logits[row, t, token] = math.log(p)
        return logits, []

    def forward(self, src, tgt_in, pad_id=0):
        return self.decode(tgt_in, self.encode(src, None), None)[0]


A, B, C, D = tgt_vocab.encode(["one", "two", "three", "four"])
E = tgt_vocab.eos_id
said = lambda ids: "[" + ", ".join(tgt_vocab.itos[t] for t in ids) + "]"
src = test_src[:3]
# greedy on a script that says one, two, <eos>
script = Scripted({(): {A: 0.55, E: 0.45}, (A,): {B: 0.9, C: 0.1}, (A, B): {E: 0.9, D: 0.1}, (A, C): {E: 0.5, D: 0.5}})
greedy = greedy_decode(script, src[:1], 5)[0].tolist()
assert len(greedy) == 5, f"greedy_decode(model, src, max_len=5) returns 5 tokens per row; got {len(greedy)}: {said(greedy)}"
assert len(set(greedy)) > 1, (f"greedy on a script that says one, two, <eos>: every step gave {said(greedy[:1])}; each step "
                              "picks the arg-max of the newest position's logits")
assert greedy[0] != tgt_vocab.bos_id, f"greedy's output starts with <bos>: {said(greedy)}; return the tokens after it"
assert E in greedy, f"greedy on a script that says one, two, <eos> returned {said(greedy)}: the first <eos> itself is kept"
assert greedy[3:] == [tgt_vocab.pad_id] * 2, \
    f"greedy on a script that says one, two, <eos> returned {said(greedy)}: after the first <eos> every token must be <pad>"
assert greedy == [A, B, E, tgt_vocab.pad_id, tgt_vocab.pad_id], \
    f"greedy on a script that says one, two, <eos>: expected [one, two, <eos>, <pad>, <pad>] (<pad> after the first <eos>), got {said(greedy)}"
torch.manual_seed(0)
toy = Seq2SeqTransformer(len(src_vocab), len(tgt_vocab), d_model=16, n_heads=2, n_layers=1, d_ff=32, dropout=0.0).eval()
tokens = greedy_decode(toy, src, 6)
check_shape(tokens, (3, 6), "greedy tokens (batch, max_len)")
bos = torch.full((3, 1), tgt_vocab.bos_id)
with torch.no_grad():
    forced = toy(src, torch.cat([bos, tokens[:, :-1]], 1)).argmax(-1)
for b in range(3):
    stop = next((i for i, t in enumerate(tokens[b].tolist()) if t == tgt_vocab.eos_id), 5) + 1
    assert torch.equal(forced[b, :stop], tokens[b, :stop]), f"row {b}: not the greedy choices"
for b in range(3):
    one = beam_search(toy, src[b:b + 1], beam_size=1, max_len=6)
    greedy = [t for t in tokens[b].tolist() if t != tgt_vocab.pad_id]
    assert one == greedy, f"row {b}: beam size 1 gave {one}, greedy {greedy}"
# beam_size = 2 on scripts; alpha = 0 (lp = 1) where the length penalty is not the point
got = beam_search(Scripted({(): {A: 0.6, E: 0.4}, (A,): {B: 0.6, C: 0.4}, (A, B): {E: 1.0}, (A, C): {E: 1.0}}), src[:1], 2, 5, 0.0)
assert got == [E], (f"[<eos>] (p 0.4) finishes at the first step and stays the most likely; yours returned {said(got)}: "
                    "does a finished hypothesis stay in the beam?")
got = beam_search(Scripted({(): {A: 0.9, E: 0.1}, (A,): {B: 0.9, E: 0.1}, (A, B): {C: 0.9, E: 0.1}}), src[:1], 2, 2, 0.0)
assert got and got[-1] == E, (f"after max_len = 2 steps yours returned {said(got)}, which never emitted <eos>: return the best "
                              "finished hypothesis")
got = beam_search(Scripted({(): {A: 0.55, B: 0.45}, (A,): {E: 0.2, C: 0.8}, (B,): {E: 0.3, C: 0.7}}), src[:1], 2, 5, 0.0)
assert got == [A, C, E], (f"expected [one, three, <eos>] (p 0.44), got {said(got)} (p at most 0.135): does log p include "
                          "the log-probability of <eos> itself?")
got = beam_search(Scripted({(): {A: 0.6, E: 0.4}, (A,): {B: 0.9, E: 0.1}, (A, B): {E: 1.0}}), src[:1], 2, 5, 0.0)
assert got == [A, B, E], (f"expected [one, two, <eos>] (p 0.54), got {said(got)}: [<eos>] (p 0.4) finishes first, but the "
                          "search goes on until beam_size hypotheses are finished (or max_len)")
got = beam_search(Scripted({(): {A: 0.7, E: 0.3}, (A,): {B: 1.0}, (A, B): {E: 0.5, C: 0.3, D: 0.2}}), src[:1], 2, 5, 1.0)
assert got == [A, B, E], (f"[one, two, <eos>] has both the higher log p (p 0.35 against 0.3) and the higher log p / lp, "
                          f"yet yours returned {said(got)}: is log p divided by lp(Y)?")
# [E] has p = 0.45, [A, B, E] has 0.55 * 0.9 * 0.9 = 0.4455: more likely, [E] loses after length
# normalisation (alpha = 1): log 0.45 / 1 = -0.80 < log 0.4455 / (8/6) = -0.61
got = beam_search(script, src[:1], beam_size=2, max_len=5, alpha=1.0)
assert got == [A, B, E], (f"expected [one, two, <eos>], got {said(got)}: [<eos>] has the higher log p (p 0.45 against "
                          "0.4455), [one, two, <eos>] the higher log p / lp(Y) with alpha = 1, and the prompt ranks the "
                          "finished hypotheses by log p / lp(Y)")
# |Y| = 1 for [E], 3 for [A, B, E]: alpha = 1 and log p(A, B, E) / log p(E) between 9/7 and 8/6 (resp. 8/6 and 7/5)
got = beam_search(Scripted({(): {A: 0.6, E: 0.4}, (A,): {B: 0.9, C: 0.1}, (A, B): {E: 0.5574, D: 0.4426}}), src[:1], 2, 5, 1.0)
assert got == [A, B, E], (f"expected [one, two, <eos>] (p 0.301, lp = (5 + 3) / 6) over [<eos>] (p 0.4, lp = (5 + 1) / 6), "
                          f"got {said(got)}: does your |Y| count <bos>?")
got = beam_search(Scripted({(): {A: 0.6, E: 0.4}, (A,): {B: 0.9, C: 0.1}, (A, B): {E: 0.5278, D: 0.4722}}), src[:1], 2, 5, 1.0)
assert got == [E], (f"expected [<eos>] (p 0.4, lp = (5 + 1) / 6) over [one, two, <eos>] (p 0.285, lp = (5 + 3) / 6), "
                    f"got {said(got)}: does your |Y| count <eos>?")
### BEGIN HIDDEN TESTS
wide = beam_search(toy, src[:1], beam_size=4, max_len=6)
assert isinstance(wide, list) and all(isinstance(t, int) for t in wide), "beam_search returns a list of ints"
assert tgt_vocab.bos_id not in wide, "no <bos> in the output"
# a model that always prefers <eos> next: beams end at once
class EosModel(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
    def encode(self, s, m):
        return self.inner.encode(s, m)
    def decode(self, t, mem, m):
        logits, w = self.inner.decode(t, mem, m)
        logits[..., tgt_vocab.eos_id] += 1e4
        return logits, w
assert beam_search(EosModel(toy), src[:1], beam_size=3, max_len=6) == [tgt_vocab.eos_id], "a finished beam ends with <eos>"
assert (greedy_decode(EosModel(toy), src, 4)[:, 1:] == tgt_vocab.pad_id).all(), "<pad> after <eos>"
assert (greedy_decode(EosModel(toy), src, 4)[:, 0] == E).all(), "the first <eos> itself is kept"
# after max_len = 2 steps the beam holds [A, B] (p 0.56, unfinished) and [E] (0.3): return the finished one
script = Scripted({(): {A: 0.7, E: 0.3}, (A,): {B: 0.8, C: 0.2}})
got = beam_search(script, src[:1], beam_size=2, max_len=2, alpha=1.0)
assert got == [E], f"the best *finished* hypothesis: expected [<eos>] = {[E]}, got {got}"
# |Y| counts the output tokens with <eos>, without <bos>: [E] scores log 0.4206 / (6/6) = -0.866,
# [A, E] log(0.5 * 0.7358) / (7/6) = -0.857 and wins (counting <bos> would make [E] win)
script = Scripted({(): {A: 0.5, E: 0.4206, D: 0.0794}, (A,): {E: 0.7358, B: 0.2642}})
got = beam_search(script, src[:1], beam_size=2, max_len=4, alpha=1.0)
assert got == [A, E], f"lp(Y) = ((5 + |Y|) / 6) ** alpha with |Y| = 2 for [A, <eos>]: expected {[A, E]}, got {got}"
# which tokens |Y| counts, as alpha moves: [<eos>] (p 0.4, |Y| = 1) and [A, B, <eos>] (p 0.6 * 0.9 * 0.5844,
# |Y| = 3) both finish; they tie at alpha = 0.80 when |Y| counts <eos> and not <bos>. Counting <bos> too
# moves the tie to 0.92, counting neither to 0.68, so alpha = 0.75 and 0.85 tell the three apart
script = Scripted({(): {A: 0.6, E: 0.4}, (A,): {B: 0.9, C: 0.1}, (A, B): {E: 0.5844, D: 0.4156}})
penalty = lambda n, alpha: ((5 + n) / 6) ** alpha
for alpha in (0.75, 0.85):
    short_wins = math.log(0.4) / penalty(1, alpha) > math.log(0.6 * 0.9 * 0.5844) / penalty(3, alpha)
    expected = [E] if short_wins else [A, B, E]
    got = beam_search(script, src[:1], beam_size=2, max_len=5, alpha=alpha)
    assert got == expected, (f"alpha = {alpha}: expected {expected} (|Y| counts the returned tokens, <eos> included, "
                             f"<bos> not), got {got}")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "training", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 9 · Training
#
# Post-LN as in the paper, label smoothing 0.1, Adam(0.9, 0.98) with the warm-up schedule
# (scaled for a short run), a fixed number of steps. The peak learning rate matters for post-LN,
# whose gradients near the output are large at the start (Xiong et al., 2020): try ten times
# higher and compare the loss curve.

# %% slideshow={"slide_type": "fragment"}
seed_everything(0)
# no dropout: the task is deterministic and the run is short; the paper used 0.1
model = Seq2SeqTransformer(len(src_vocab), len(tgt_vocab), dropout=0.0).to(device)
print(f"{count_parameters(model):,} parameters")
batches = list(zip(train_src.split(128), train_tgt.split(128)))


def loss_fn(model: Seq2SeqTransformer, batch) -> torch.Tensor:
    src, tgt = batch
    logits = model(src, tgt[:, :-1])
    return label_smoothed_loss(logits.flatten(0, 1), tgt[:, 1:].flatten(), 0.1, tgt_vocab.pad_id)


def exact_match(model: Seq2SeqTransformer) -> dict[str, float]:
    tokens = greedy_decode(model, test_src.to(device), MAX_LEN).cpu()
    hits = [tgt_vocab.decode(p) == tgt_vocab.decode(t) for p, t in zip(tokens.tolist(), test_tgt.tolist())]
    return {"greedy exact match": sum(hits) / len(hits)}


STEPS, WARMUP = 1_200, 100
optimizer = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
# the paper's schedule, scaled down (x 0.2: a peak of about 1.8e-3) for a small model and a short run
scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.2 * warmup_lr(s + 1, 128, WARMUP))
history = fit(model, loss_fn, batches, optimizer, STEPS, device=device, scheduler=scheduler,
              eval_fn=exact_match, description="numbers -> words")
model.eval()
greedy_accuracy = history.last("greedy exact match")
print(f"trained {STEPS} steps in {history.seconds:.0f} s; greedy exact match {greedy_accuracy:.1%}")
plot_history(history, log_y=True)
plt.show()

# %% slideshow={"slide_type": "fragment"}
start = time.perf_counter()
beam_hits = 0
for i in range(len(test_pairs)):
    predicted = beam_search(model, test_src[i:i + 1].to(device), beam_size=4, max_len=MAX_LEN)
    beam_hits += tgt_vocab.decode(predicted) == tgt_vocab.decode(test_tgt[i].tolist())
beam_accuracy = beam_hits / len(test_pairs)
print(f"beam (4) exact match {beam_accuracy:.1%} in {time.perf_counter() - start:.0f} s; greedy {greedy_accuracy:.1%}")

# %% nbgrader={"grade": true, "grade_id": "test_trained_translator", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""The trained model reaches at least 99% exact match on 1,000 held-out numbers, with greedy decoding and with beam search (4)."""
assert len(test_pairs) == 1000
assert greedy_accuracy >= 0.99, f"expected at least 99% greedy exact match, got {greedy_accuracy:.1%}"
assert beam_accuracy >= 0.99, f"expected at least 99% exact match with beam search (4), got {beam_accuracy:.1%} (greedy {greedy_accuracy:.1%})"
### BEGIN HIDDEN TESTS
fresh = [p for p in make_numbers(2_000, seed=77) if p[0] not in seen][:300]
fresh_src, fresh_tgt = encode_pairs(fresh)
tokens = greedy_decode(model, fresh_src.to(device), fresh_tgt.shape[1] + 2).cpu()
fresh_acc = sum(tgt_vocab.decode(p) == tgt_vocab.decode(t) for p, t in zip(tokens.tolist(), fresh_tgt.tolist())) / len(fresh)
assert fresh_acc >= 0.97, f"expected at least 97% on other unseen numbers, got {fresh_acc:.1%}"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "cross_attention_trained_model", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 10 · Cross-attention of the trained model
#
# Each panel is one head of the last decoder layer: each row is the step that predicts that
# output word, columns are the digits.
# What to look for: a head whose bright cell in each row sits on the digit that decides that
# word (the step that writes "three" reading the 3, the one that writes "seventeen" reading 1
# and 7). Nothing forces this: the encoder has already mixed the digits, so the information
# may sit anywhere and another run may spread it over several heads. The printout below the
# figure lists, for each word, the digit that gets the most weight summed over the heads.

# %% slideshow={"slide_type": "fragment"}
digits = "342017"
src = torch.tensor([src_vocab.encode(list(digits))], device=device)
tokens = greedy_decode(model, src, MAX_LEN)[0]
output = tgt_vocab.decode(tokens.tolist())
with torch.no_grad():
    tgt_in = torch.tensor([[tgt_vocab.bos_id] + tgt_vocab.encode(output)], device=device)
    src_mask = (src != src_vocab.pad_id)[:, None, None, :]
    _, weights = model.decode(tgt_in, model.encode(src, src_mask), src_mask)
# row i is the decoder step that *predicts* output word i (its input is the word before it)
fig = show_attention_grid(weights[-1][0, :, :len(output)], queries=output, keys=list(digits), columns=4)
fig.suptitle(f"{digits} -> {' '.join(output)}", y=1.05)
plt.show()
most_read = weights[-1][0, :, :len(output)].sum(0).argmax(-1).tolist()            # (len(output),) over the heads
print("  ".join(f"{word} <- {digits[j]} (digit {j})" for word, j in zip(output, most_read)))

# %% [markdown] nbgrader={"grade": false, "grade_id": "summary", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## Summary
#
# * **Multi-head attention**, **LayerNorm** and the **feed-forward** network match PyTorch's modules
#   weight for weight; so do your encoder and decoder layers in **post-LN** and **pre-LN** form.
# * The model **scales** embeddings by $\sqrt{d_{model}}$, adds **sinusoidal** positions and **ties**
#   its output projection to the target embedding.
# * **Label smoothing** and the **warm-up** schedule are the paper's training recipe.
# * **Greedy** decoding is beam search with one beam. A wider beam usually finds hypotheses the
#   model scores higher, but it is not guaranteed to: beam search is not monotone in its width (a
#   wider beam can keep prefixes that crowd out the one a narrower beam would have finished), and
#   the **length penalty** changes the ranking again. Here beam search (4) and greedy both reach at
#   least 99% exact match.

# %% [markdown] nbgrader={"grade": false, "grade_id": "further_reading", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Further reading
#
# * Vaswani et al. (2017). *Attention Is All You Need.* arXiv:1706.03762
# * Rush (2018). *The Annotated Transformer.* (Harvard NLP)
# * Xiong et al. (2020). *On Layer Normalization in the Transformer Architecture.* arXiv:2002.04745 (pre-LN)
# * Wu et al. (2016). *Google's Neural Machine Translation System.* arXiv:1609.08144 (length penalty)
# * Müller, Kornblith, Hinton (2019). *When Does Label Smoothing Help?* arXiv:1906.02629
#
# <!-- reading-list -->
# **From the course reading list** (`readings/reading-list.md`, mostly Chinese-language articles; links as the list gives them), by the section they go with:
#
# * with *1 · Intuition*
#   * [超细节的BERT/Transformer知识点](https://zhuanlan.zhihu.com/p/132554155): the fine details of BERT and the Transformer (zhihu)
#   * [The Illustrated Transformer](https://jalammar.github.io/illustrated-transformer/): the architecture in pictures; the list says “结构介绍的很清晰” (explains the structure very clearly) (Jay Alammar's blog)
#   * [聊聊 Transformer](https://zhuanlan.zhihu.com/p/47812375): a talk about the Transformer (zhihu)
#   * [详解Transformer](https://zhuanlan.zhihu.com/p/48508221): the Transformer in detail (zhihu)
#   * [Transformer (machine learning model)](https://en.wikipedia.org/wiki/Transformer_(machine_learning_model)) (Wikipedia)
#   * [Transformer, an article on Towards Data Science](https://towardsdatascience.com/transformers-141e32e69591)
#   * [Transformer: A Novel Neural Network Architecture for Language Understanding](https://ai.googleblog.com/2017/08/transformer-novel-neural-network.html) (the Google AI blog)
#   * [When Recurrent Models Don't Need to be Recurrent](https://bair.berkeley.edu/blog/2018/08/06/recurrent/): when a feed-forward model can stand in for a recurrent one (the BAIR blog)
#   * [The Illustrated Transformer](http://jalammar.github.io/illustrated-transformer/): the same article, at its http address; the list says “这三篇差不多，讲的都很好” (these three are much the same, and all explain it well) (Jay Alammar's blog)
#   * [Transformer, an article on ricardokleinklein.github.io](https://ricardokleinklein.github.io/2017/11/16/Attention-is-all-you-need.html)
#   * [Transformer, an article on Medium](https://medium.com/@adityathiruvengadam/transformer-architecture-attention-is-all-you-need-aeccd9f50d09)
# * with *2 · Exercise 1: multi-head attention*
#   * [transformer中的attention为什么scaled?](https://www.zhihu.com/question/339723385): why the Transformer's attention is scaled (zhihu)
# * with *5 · Exercise 4: the model*
#   * [How to code The Transformer in Pytorch](https://towardsdatascience.com/how-to-code-the-transformer-in-pytorch-24db27c8f9ec); the list says “code” (Towards Data Science)
#   * [The Annotated Transformer](http://nlp.seas.harvard.edu/2018/04/03/attention.html): the paper as runnable PyTorch, line by line (Harvard NLP)
#   * [Transformer注解及PyTorch实现](https://www.cnblogs.com/guoyaohua/p/transformer.html): the Annotated Transformer in Chinese, with its PyTorch code (cnblogs)
#   * [Transformer 模型的 PyTorch 实现](https://juejin.im/post/5b9f1af0e51d450e425eb32d#comment): the Transformer in PyTorch (juejin)
#   * [Transformer模型的PyTorch实现](https://luozhouyang.github.io/transformer/): the Transformer in PyTorch; the list says “解释了一些背后的原理” (explains some of the principles behind it) (luozhouyang.github.io)
# * with *6 · Exercise 5: label smoothing and the warm-up schedule*
#   * [The Annotated Transformer](http://nlp.seas.harvard.edu/2018/04/03/attention.html): the paper as runnable PyTorch, line by line (Harvard NLP)
# * with the notebook as a whole
#   * [Transformer, an article on 360doc](http://www.360doc.com/content/20/0115/13/7673502_886318289.shtml)
#   * [Transformer, an article on zhihu](https://zhuanlan.zhihu.com/p/47282410)
#   * [Transformer, an article on zhihu](https://zhuanlan.zhihu.com/p/38485843); the list says “挺好，可再看” (very good, worth reading again)
#   * [Transformer, an article on zhihu](https://www.zhihu.com/question/302392659/answer/551542493)
#   * [Transformer, an article on zhihu](https://www.zhihu.com/question/311377593/answer/591236505)
#   * [Transformer, an article on zhihu](https://zhuanlan.zhihu.com/p/48731949)
#   * [Transformer, an article on zhihu](https://www.zhihu.com/question/313507574/answer/645129386)
#   * [Transformer, an article on zhihu](https://zhuanlan.zhihu.com/p/52924578)
#   * [Transformer, an article on zhihu](https://zhuanlan.zhihu.com/p/59629215)
#   * [Transformer, an article on zhihu](https://zhuanlan.zhihu.com/p/39034683)
#   * [Transformer, an article on zhihu](https://zhuanlan.zhihu.com/p/54356280)
#   * [Transformer, an article on zhihu](https://zhuanlan.zhihu.com/p/54770086)
#   * [transformer三部曲](https://zhuanlan.zhihu.com/p/85612521): a Transformer trilogy (zhihu)
# <!-- /reading-list -->
