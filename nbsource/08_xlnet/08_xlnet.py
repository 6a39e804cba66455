# ---
# jupyter:
#   celltoolbar: Slideshow
#   kernelspec:
#     display_name: Python 3 (course)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "title", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# # 08 · XLNet and Transformer-XL
#
# **Learning objectives.** After this notebook you can
# 1. **build** the content and query masks of a sampled factorisation order;
# 2. **implement** two-stream self-attention and **show** that the query stream never sees its own token;
# 3. **apply** partial prediction and **train** a permutation language model against a left-to-right one;
# 4. **implement** Transformer-XL's relative attention (four terms, the relative shift) and segment recurrence.
#
# **Prerequisites.** Notebooks 04 (masks, True = may attend), 05 (relative positions) and 06 (the Transformer).
#
# **Estimated time.** 2.5 hours. The notebook runs in about two minutes on a laptop CPU.

# %% [markdown] nbgrader={"grade": false, "grade_id": "notes_intro", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "notes"}
# Speaker notes: BERT sees both sides but corrupts its input with [MASK] and predicts the masked
# tokens independently; a language model is consistent but one-sided. XLNet keeps the language
# model's product of conditionals and gets both sides by averaging over *orders* of factorisation.

# %% [markdown] nbgrader={"grade": false, "grade_id": "setup_text", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Setup

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
import math
import sys
import time
from collections import Counter
from unittest import mock

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_utils import assert_close, check_shape, describe_environment, get_device, seed_everything
from course_utils.data import wikipedia_articles
from course_utils.plot import plot_curves
from course_utils.train import count_parameters, fit

seed_everything(0)
device = get_device()
print(describe_environment(device))


# %% [markdown] nbgrader={"grade": false, "grade_id": "intuition_one_sequence_many", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 1 · Intuition: one sequence, many orders
#
# A left-to-right model factorises $p(x) = \prod_t p(x_t \mid x_{<t})$. Any other order $z$ (a
# permutation of $1..T$) gives an equally valid factorisation:
#
# $$\max_\theta\; \mathbb{E}_{z \sim \mathcal{Z}_T} \Big[\sum_{t=1}^{T} \log p_\theta(x_{z_t} \mid x_{z_{<t}})\Big]$$
#
# Averaged over orders, every token is predicted from context on **both** sides, with no `[MASK]`
# token. The sequence itself is **not** shuffled: positions stay where they are, only the attention
# masks change.
#
# | symbol | shape | meaning | code name |
# |---|---|---|---|
# | $z$ | `(seq,)` | factorisation order: `order[r]` is the position predicted at step `r` | `order` |
# | rank | `(seq,)` | `rank[p]` = step at which position `p` is predicted | `rank` |
# | $h$ | `(batch, seq, d_model)` | content stream: knows its own token | `h` |
# | $g$ | `(batch, seq, d_model)` | query stream: knows its position, not its token | `g` |
# | $K$ | | predict only the last $1/K$ of each order | `k` |

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_1_two_masks", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 2 · Exercise 1: the two masks of an order (3 points)
#
# * `sample_order(seq_len, generator)`: a uniformly random permutation of `0..seq_len-1`, drawn by
#   `torch.randperm` with `generator` (the same seed gives the same order).
# * `permutation_masks(order)`: for an order `(seq,)` or a batch of orders `(batch, seq)`, return
#   `(content_mask, query_mask)` of shape `(..., seq, seq)`, True = may attend. Position `i` may see
#   position `j` in the **content** stream when `rank[j] <= rank[i]` (itself and what precedes it in
#   the order), in the **query** stream when `rank[j] < rank[i]` (strictly before). No Python loops:
#   the test counts the Python lines your function runs for an order of 8 and one of 800, and a loop
#   shows as lines that grow with the length (at 800, a double loop would also take seconds).
#
# <details><summary>Hint 1</summary>
#
# Both masks compare ranks, not positions: first turn the order (position at each step) into the rank of each position (step at which it comes).
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# The rank is the inverse permutation: `rank[order[r]] = r`, which one `scatter_` along the last axis writes for a whole batch; then compare `rank` with itself by broadcasting, `(..., seq, 1)` against `(..., 1, seq)`.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "permutation_masks", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def sample_order(seq_len: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random factorisation order (a permutation of 0..seq_len-1)."""
    ### BEGIN SOLUTION
    return torch.randperm(seq_len, generator=generator)
    ### END SOLUTION


def permutation_masks(order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (content_mask, query_mask), each (..., seq, seq), True = may attend."""
    ### BEGIN SOLUTION
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order))  # rank[order[r]] = r
    content = rank.unsqueeze(-1) >= rank.unsqueeze(-2)           # (..., i, j): rank[j] <= rank[i]
    query = rank.unsqueeze(-1) > rank.unsqueeze(-2)              # strictly before
    return content, query
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
order = sample_order(6, torch.Generator().manual_seed(1))
content_mask, query_mask = permutation_masks(order)
fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
for ax, mask, title in zip(axes, (content_mask, query_mask), ("content mask", "query mask")):
    ax.imshow(mask.numpy(), cmap="Blues")
    ax.set_title(f"{title}, order {order.tolist()}")
    ax.set_xlabel("key position j")
    ax.set_ylabel("query position i")
plt.show()

# %% nbgrader={"grade": true, "grade_id": "test_permutation_masks", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""Read in the order, the masks are the causal masks (content: with the diagonal; query: without); batches; no loops."""


from course_utils.checks import python_lines_run  # counts the Python lines a call runs: a loop shows


def in_order(mask, order):
    """The mask with its rows and columns listed in the order: entry [r, s] is (order[r] may see order[s])."""
    return mask[..., order, :][..., :, order]


assert torch.equal(sample_order(9, torch.Generator().manual_seed(5)), sample_order(9, torch.Generator().manual_seed(5))), \
    "two generators with the same seed gave two different orders: draw the order with `generator`"
g = torch.Generator().manual_seed(0)
for n in (1, 5, 9):
    order = sample_order(n, g)
    assert sorted(order.tolist()) == list(range(n)), f"not a permutation: {order.tolist()}"
    content, query = permutation_masks(order)
    check_shape(content, (n, n), "content mask")
    assert content.dtype == torch.bool and query.dtype == torch.bool, "masks are boolean (True = may attend)"
    causal = torch.ones(n, n, dtype=torch.bool)
    if not torch.equal(in_order(content, order), causal.tril()):
        assert not torch.equal(content, order[:, None] >= order[None, :]), \
            (f"order {order.tolist()}: your masks read order[i] as the rank of position i; order lists the positions "
             "step by step, so the rank of position order[r] is r")
        assert not torch.equal(in_order(content, order), causal.tril(-1)), \
            f"order {order.tolist()}: your content mask leaves out the diagonal: in the content stream a position sees itself"
        assert not torch.equal(in_order(content, order), causal.triu()), \
            f"order {order.tolist()}: your content mask is transposed: row i is the query position, column j the key"
    assert torch.equal(in_order(content, order), causal.tril()), \
        f"order {order.tolist()}: the step-r position must see the positions of steps 0..r (itself included)"
    assert not torch.equal(in_order(query, order), causal.tril()), \
        f"order {order.tolist()}: your query mask includes the diagonal: the query stream sees only what comes strictly before"
    assert torch.equal(in_order(query, order), causal.tril(-1)), \
        f"order {order.tolist()}: the step-r position must see the positions of steps 0..r-1 (not itself)"
orders = torch.stack([sample_order(6, g) for _ in range(3)])                  # a batch of orders (batch, seq)
try:
    batched = permutation_masks(orders)[0]
except (RuntimeError, IndexError) as error:
    raise AssertionError(f"permutation_masks fails on a batch of orders (batch, seq) ({error}): compute the ranks along "
                         "the last axis") from None
check_shape(batched, (3, 6, 6), "content masks of a batch of orders (batch, seq, seq)")
assert all(torch.equal(batched[b], permutation_masks(orders[b])[0]) for b in range(3)), \
    "for a batch of orders, row b's masks differ from those of order b alone: compute the ranks along the last axis"
few_lines = python_lines_run(permutation_masks, sample_order(8, g))
many_lines = python_lines_run(permutation_masks, sample_order(800, g))
assert many_lines <= few_lines + 20, (f"{few_lines} Python lines for an order of 8, {many_lines} for 800: a Python loop "
                                      f"(build the masks from the ranks with broadcasting)")
### BEGIN HIDDEN TESTS
identity = torch.arange(5)
content, query = permutation_masks(identity)
assert torch.equal(content, torch.ones(5, 5, dtype=torch.bool).tril()), "the identity order gives the causal mask"
assert torch.equal(query, torch.ones(5, 5, dtype=torch.bool).tril(-1)), "and the strictly causal query mask"
batch = torch.stack([sample_order(7, g) for _ in range(4)])
content, query = permutation_masks(batch)
check_shape(content, (4, 7, 7), "batched content mask")
for b in range(4):
    assert torch.equal(in_order(content[b], batch[b]), torch.ones(7, 7, dtype=torch.bool).tril()) and \
        torch.equal(in_order(query[b], batch[b]), torch.ones(7, 7, dtype=torch.bool).tril(-1)), f"batched masks wrong for row {b}"
many = torch.stack([sample_order(400, g) for _ in range(2)])
assert python_lines_run(permutation_masks, many) <= few_lines + 20, "no Python loop over a batch of orders either"
reverse = torch.arange(5).flip(0)
assert torch.equal(permutation_masks(reverse)[0], torch.ones(5, 5, dtype=torch.bool).triu()), "reversed order"
assert not torch.equal(sample_order(50, torch.Generator().manual_seed(1)), sample_order(50, torch.Generator().manual_seed(2)))
assert torch.equal(sample_order(50, torch.Generator().manual_seed(1)), sample_order(50, torch.Generator().manual_seed(1))), \
    "the generator decides the order: the same seed must give the same order"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_2_two_stream", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 3 · Exercise 2: two-stream self-attention (4 points)
#
# To predict the token at position $z_t$ the model must know *where* it predicts but not *what*
# is there. XLNet keeps two vectors per position: the **content** stream $h$ (token and position,
# like any Transformer) and the **query** stream $g$ (position only). One set of projections serves both:
#
# $$h_i \leftarrow \text{Attn}(Q = h_i,\ KV = h_{j:\ \text{rank}_j \le \text{rank}_i}),\qquad g_i \leftarrow \text{Attn}(Q = g_i,\ KV = h_{j:\ \text{rank}_j < \text{rank}_i})$$
#
# Complete `TwoStreamAttention.attend(queries, keys_values, mask)` (multi-head scaled dot-product
# attention with `w_q, w_k, w_v, w_o`; boolean mask broadcastable to `(batch, heads, q, k)`; a row
# with nothing to attend to gives **zeros**, not NaN) and `forward(h, g, content_mask, query_mask)`
# returning `(new_h, new_g)`. Keys and values always come from the **content** stream.
#
# Where $g$ starts differs from the paper. In XLNet, $g^{(0)}_i = w$, one learned vector, the same
# at every position: where a position is comes in only through Transformer-XL's **relative**
# attention (section 5). Our small model (`PermutationLM`, below) has absolute positions and plain
# attention instead, so it starts the query stream from $w$ **plus** the position's sinusoid, and
# the content stream from the token embedding plus the same sinusoid. Section 7 assembles the
# paper's version from your parts.
#
# <details><summary>Hint 1</summary>
#
# `attend` is ordinary multi-head attention; the two streams differ only in their queries and their mask.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Fill masked scores with the dtype's min before the softmax and multiply the weights by the mask after it, so that a query with nothing to see gets zeros.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# The content stream attends from `h` to `h` under `content_mask`; the query stream from `g` to `h` under `query_mask`.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "two_stream_attention", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class TwoStreamAttention(nn.Module):
    """Multi-head attention shared by XLNet's content and query streams."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.w_q, self.w_k, self.w_v, self.w_o = (nn.Linear(d_model, d_model) for _ in range(4))

    def attend(self, queries: torch.Tensor, keys_values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """queries (batch, q, d_model), keys_values (batch, k, d_model) -> (batch, q, d_model)."""
        ### BEGIN SOLUTION
        batch = queries.shape[0]
        split = lambda x: x.view(batch, -1, self.n_heads, self.d_head).transpose(1, 2)  # (batch, heads, seq, d_head)
        q, k, v = split(self.w_q(queries)), split(self.w_k(keys_values)), split(self.w_v(keys_values))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)                         # (batch, heads, q, k)
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1) * mask                                     # all-masked rows -> 0
        out = (weights @ v).transpose(1, 2).reshape(batch, -1, self.n_heads * self.d_head)
        return self.w_o(out)
        ### END SOLUTION

    def forward(self, h: torch.Tensor, g: torch.Tensor, content_mask: torch.Tensor,
                query_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (new content stream, new query stream), each (batch, seq, d_model)."""
        ### BEGIN SOLUTION
        return self.attend(h, h, content_mask), self.attend(g, h, query_mask)
        ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
torch.manual_seed(0)
two_stream = TwoStreamAttention(d_model=8, n_heads=2)
small_order = torch.tensor([2, 0, 3, 1])                                  # position 2 is predicted first
small_content, small_query = permutation_masks(small_order)
content_in, query_in = torch.randn(1, 4, 8), torch.randn(1, 4, 8)         # (batch, seq, d_model)
with torch.no_grad():
    content_out, query_out = two_stream(content_in, query_in, small_content, small_query)
    print(f"order {small_order.tolist()}: new h {tuple(content_out.shape)}, new g {tuple(query_out.shape)}")
    print("which outputs change when the content h_j of one position changes (x = changed)")
    print("       " + " ".join(f"g_{i}" for i in range(4)) + "   " + " ".join(f"h_{i}" for i in range(4)))
    for j in range(4):
        nudged = content_in.clone()
        nudged[0, j] += 1.0
        h_moved, g_moved = two_stream(nudged, query_in, small_content, small_query)
        g_marks = ["x" if not torch.allclose(g_moved[0, i], query_out[0, i]) else "." for i in range(4)]
        h_marks = ["x" if not torch.allclose(h_moved[0, i], content_out[0, i]) else "." for i in range(4)]
        print(f"h_{j}:    " + "   ".join(g_marks) + "     " + "   ".join(h_marks))
print("g_i never changes with h_i (its own token); h_i does; position 2, first in the order, sees only itself")


# %% nbgrader={"grade": false, "grade_id": "two_stream_model", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
def sinusoid(positions: torch.Tensor, d_model: int) -> torch.Tensor:
    """Sinusoidal encodings (len, d_model) of (possibly decreasing) positions."""
    frequencies = torch.exp(-math.log(10_000.0) * torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    angles = positions.double()[:, None] * frequencies[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class TwoStreamBlock(nn.Module):
    """Post-LN block: two-stream attention, then a feed-forward network, each stream on its own."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int) -> None:
        super().__init__()
        self.attention = TwoStreamAttention(d_model, n_heads)
        self.feed_forward = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)

    def forward(self, h, g, content_mask, query_mask):
        new_h, new_g = self.attention(h, g, content_mask, query_mask)
        h, g = self.norm1(h + new_h), self.norm1(g + new_g)
        return self.norm2(h + self.feed_forward(h)), self.norm2(g + self.feed_forward(g))


class PermutationLM(nn.Module):
    """A small XLNet: predicts each position's token from the query stream, under a given order."""

    def __init__(self, vocab_size: int, max_len: int, d_model: int = 128, n_heads: int = 4, d_ff: int = 512,
                 n_layers: int = 2) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab_size, d_model)
        self.register_buffer("position", sinusoid(torch.arange(max_len), d_model).float(), persistent=False)
        self.query_start = nn.Parameter(torch.randn(d_model) * 0.02)      # w: "a token goes here"
        self.blocks = nn.ModuleList(TwoStreamBlock(d_model, n_heads, d_ff) for _ in range(n_layers))

    def forward(self, tokens: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """tokens, order (batch, seq) -> logits (batch, seq, vocab) read from the query stream."""
        positions = self.position[:tokens.shape[1]]                                    # (seq, d_model), fixed sinusoids
        h = self.token(tokens) + positions                                             # (batch, seq, d_model)
        g = (self.query_start + positions).expand_as(h)                               # w + position (the paper: w only)
        content_mask, query_mask = permutation_masks(order)                            # (batch, seq, seq)
        content_mask, query_mask = content_mask.unsqueeze(1), query_mask.unsqueeze(1)  # (batch, 1, seq, seq)
        for block in self.blocks:
            h, g = block(h, g, content_mask, query_mask)
        return g @ self.token.weight.T                                                 # tied output


# %% nbgrader={"grade": true, "grade_id": "test_two_stream_attention", "locked": true, "points": 4.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""The content stream equals nn.MultiheadAttention under the content mask; the query stream at t never depends on token t."""
torch.manual_seed(0)
attention = TwoStreamAttention(16, 4).double()
reference = nn.MultiheadAttention(16, 4, batch_first=True).double()
with torch.no_grad():
    reference.in_proj_weight.copy_(torch.cat([attention.w_q.weight, attention.w_k.weight, attention.w_v.weight]))
    reference.in_proj_bias.copy_(torch.cat([attention.w_q.bias, attention.w_k.bias, attention.w_v.bias]))
    reference.out_proj.load_state_dict(attention.w_o.state_dict())
order = torch.tensor([3, 0, 4, 1, 2])
content_mask, query_mask = permutation_masks(order)
h, g = torch.randn(2, 5, 16, dtype=torch.float64), torch.randn(2, 5, 16, dtype=torch.float64)
new_h, new_g = attention(h, g, content_mask, query_mask)
check_shape(new_g, (2, 5, 16), "query stream")
near = lambda a, b: torch.allclose(a, b, atol=1e-10)
assert not near(new_h[:, 3], attention.w_o.bias.expand(2, 16)), \
    "the content stream at position 3 (first in the order) saw nothing: in the content stream a position sees itself (which mask?)"
nudged = h.clone()
nudged[:, 3] += 1.0                                                   # position 3 is first: every other query stream sees it
assert not near(attention(nudged, g, content_mask, query_mask)[1][:, [0, 1, 2, 4]], new_g[:, [0, 1, 2, 4]]), \
    "changing h at position 3 did not change the query stream: its keys and values always come from the content stream h"
sharp = nn.MultiheadAttention(16, 4, batch_first=True).double()
sharp.load_state_dict(reference.state_dict())
with torch.no_grad():
    sharp.in_proj_weight[:16] *= 2                                    # queries twice as large: sqrt(d_head) = 2
    sharp.in_proj_bias[:16] *= 2
assert not near(new_h, sharp(h, h, h, attn_mask=~content_mask)[0]), \
    "your scores are sqrt(d_head) = 2 times too large: is the 1/sqrt(d_head) scale missing?"
one_head = TwoStreamAttention(16, 1).double()
with torch.no_grad():
    alone = one_head.w_o(one_head.w_v(h[:, 3]))                      # position 3 sees only itself: weight 1 on its value
assert near(one_head.attend(h, h, content_mask)[:, 3], alone), \
    ("position 3 (first in the order) sees only itself in the content stream, so its weight on itself must be 1 and its "
     "output w_o(w_v(h_3)); yours is not: fill the masked scores with the dtype's min before the softmax, not 0")
assert near(new_h, reference(h, h, h, attn_mask=~content_mask)[0]), \
    ("the content stream differs from nn.MultiheadAttention with the same projections: check how the heads are split "
     "into (batch, heads, seq, d_head) and merged back to (batch, q, d_model)")
assert not new_g.isnan().any() and (new_g[:, 3] == attention.w_o.bias).all(), \
    "position 3 comes first in the order: its query stream sees nothing, so attention gives zeros (then w_o's bias)"
torch.manual_seed(0)
model = PermutationLM(vocab_size=20, max_len=8, d_model=16, n_heads=4, d_ff=32).eval()
tokens = torch.randint(0, 20, (1, 8))
orders = sample_order(8, torch.Generator().manual_seed(3))[None]
logits = model(tokens, orders)
for t in range(8):
    changed = tokens.clone()
    changed[0, t] = (tokens[0, t] + 1) % 20
    assert_close(model(changed, orders)[0, t], logits[0, t], f"the prediction at position {t} must not see token {t}", atol=1e-5)
### BEGIN HIDDEN TESTS
assert_close(attention.attend(g, h, query_mask), new_g, "the query stream takes keys and values from h", atol=1e-12)
other_g = torch.randn(2, 5, 16, dtype=torch.float64)
assert_close(attention(h, other_g, content_mask, query_mask)[0], new_h, "the content stream ignores g", atol=1e-12)
for p in range(5):
    expected = reference(g[:, p:p + 1], h, h, attn_mask=~query_mask[p:p + 1])[0] if query_mask[p].any() else None
    if expected is not None:
        assert_close(new_g[:, p:p + 1], expected, f"query stream at position {p}", atol=1e-10)
one_head, twin = TwoStreamAttention(8, 1).double(), nn.MultiheadAttention(8, 1, batch_first=True).double()
with torch.no_grad():
    twin.in_proj_weight.copy_(torch.cat([one_head.w_q.weight, one_head.w_k.weight, one_head.w_v.weight]))
    twin.in_proj_bias.copy_(torch.cat([one_head.w_q.bias, one_head.w_k.bias, one_head.w_v.bias]))
    twin.out_proj.load_state_dict(one_head.w_o.state_dict())
x = torch.randn(1, 3, 8, dtype=torch.float64)
allow = torch.ones(3, 3, dtype=torch.bool)
assert_close(one_head.attend(x, x, allow), twin(x, x, x)[0], "one head vs nn.MultiheadAttention: scale by 1/sqrt(d_head) = 1/sqrt(8)", atol=1e-10)
changed = tokens.clone()
target = orders[0, -1].item()
changed[0, orders[0, 0]] = (tokens[0, orders[0, 0]] + 1) % 20
assert not torch.allclose(model(changed, orders)[0, target], logits[0, target]), "later steps must see earlier tokens"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_3_partial_prediction", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 4 · Exercise 3: partial prediction (2 points)
#
# Early steps of an order have almost no context and are hard to predict; XLNet predicts only the
# **last $1/K$** of each order. Complete `prediction_targets(orders, k)`: a boolean `(batch, seq)`
# tensor, True at the positions whose rank is among the last `seq // k` of their order; and
# `partial_prediction_loss(logits, tokens, orders, k)`: the mean cross-entropy over those positions only.
#
# <details><summary>Hint 1</summary>
#
# The last `seq // k` steps of an order are its last `seq // k` entries: they are positions, ready to mark.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Scatter True into a boolean `(batch, seq)` tensor at those positions, then take the cross-entropy of the marked rows only (boolean indexing keeps them), averaged.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "partial_prediction", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def prediction_targets(orders: torch.Tensor, k: int) -> torch.Tensor:
    """True where rank >= seq - seq // k (the last 1/k of each order)."""
    ### BEGIN SOLUTION
    seq = orders.shape[-1]
    targets = torch.zeros_like(orders, dtype=torch.bool)
    return targets.scatter(-1, orders[..., seq - seq // k:], True)
    ### END SOLUTION


def partial_prediction_loss(logits: torch.Tensor, tokens: torch.Tensor, orders: torch.Tensor, k: int) -> torch.Tensor:
    """Mean cross-entropy over the predicted positions; logits (batch, seq, vocab)."""
    ### BEGIN SOLUTION
    targets = prediction_targets(orders, k)
    return F.cross_entropy(logits[targets], tokens[targets])
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
eight_orders = torch.stack([sample_order(8, torch.Generator().manual_seed(s)) for s in (4, 5)])   # (batch, seq)
chosen_positions = prediction_targets(eight_orders, 4)                                             # (batch, seq)
for order_row, chosen_row in zip(eight_orders.tolist(), chosen_positions.tolist()):
    print(f"order {order_row}: predicted positions {[p for p in range(8) if chosen_row[p]]} "
          f"(the last {8 // 4} of the order)  " + "".join("^" if c else "." for c in chosen_row))
uniform_logits = torch.zeros(2, 8, 30)                                                             # (batch, seq, vocab)
print(f"loss of a uniform guess over 30 symbols: {partial_prediction_loss(uniform_logits, torch.randint(0, 30, (2, 8), generator=torch.Generator().manual_seed(0)), eight_orders, 4).item():.3f}"
      f" = log 30 = {math.log(30):.3f}")


# %% nbgrader={"grade": true, "grade_id": "test_partial_prediction", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""prediction_targets marks the last seq // k of each order; the loss averages over them only."""
orders = torch.tensor([[3, 0, 4, 1, 2, 5], [0, 1, 2, 3, 4, 5]])
targets = prediction_targets(orders, 3)
marked = [[p for p in range(6) if row[p]] for row in targets.tolist()]
assert marked[0] != [0, 3], ("order [3, 0, 4, 1, 2, 5], k = 3: you mark positions 0 and 3, its first 2 steps; XLNet predicts "
                             "the last seq // k steps of the order (here positions 2 and 5)")
assert marked[0] != [4, 5], ("order [3, 0, 4, 1, 2, 5], k = 3: you mark positions 4 and 5, the last positions of the text; "
                             "XLNet predicts the last seq // k steps of the order (here positions 2 and 5)")
counts = targets.sum(1).tolist()
assert counts == [2, 2], f"seq = 6, k = 3: seq // k = 2 targets per row; you mark {counts}"
counts = prediction_targets(torch.stack([torch.randperm(7), torch.randperm(7)]), 2).sum(1).tolist()
assert counts == [3, 3], f"seq = 7, k = 2: seq // k = 3 targets per row (rounded down); you mark {counts}"
assert targets.tolist() == [[False, False, True, False, False, True], [False, False, False, False, True, True]], \
    f"the last 2 of each order, got {targets.tolist()}"
# Logits 0 but c at the right token: the loss there is log(e^c + 6) - c, a different c at each position
torch.manual_seed(0)
tokens = torch.randint(0, 7, (2, 6))
margin = torch.arange(12, dtype=torch.float32).view(2, 6) / 2                         # c = 0, 0.5, ..., 5.5
logits = torch.zeros(2, 6, 7).scatter(-1, tokens[..., None], margin[..., None])        # (batch, seq, vocab)
loss_at = lambda c: math.log(math.exp(c) + 6) - c
expected = torch.tensor(sum(loss_at(margin[b, p].item()) for b, p in ((0, 2), (0, 5), (1, 4), (1, 5))) / 4)
got = partial_prediction_loss(logits, tokens, orders, 3)
assert abs(got.item() - F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).item()) > 1e-6, \
    "your loss is the mean over every position: only the targets of prediction_targets count"
assert abs(got.item() - 4 * expected.item()) > 1e-4, "your loss is the sum over the 4 targets: the prompt asks for their mean"
assert_close(got, expected,
             "the mean of log(e^c + 6) - c over the 4 targets (positions 2, 5 of row 0 and 4, 5 of row 1)", atol=1e-6)
### BEGIN HIDDEN TESTS
assert prediction_targets(orders, 1).all(), "k=1 predicts everything"
assert prediction_targets(orders, 6).sum(1).tolist() == [1, 1] and prediction_targets(orders, 6)[0, 5], "k=6: only the last step"
batch = torch.stack([torch.randperm(12) for _ in range(5)])
assert (prediction_targets(batch, 4).sum(1) == 3).all(), "seq // k targets per row"
assert prediction_targets(orders, 4).sum(1).tolist() == [1, 1], "seq = 6, k = 4: seq // k = 1 target per row (rounded down)"
logits[~targets] = 1e4                                          # garbage where nothing is predicted
assert_close(partial_prediction_loss(logits, tokens, orders, 3), expected, "non-targets must not count", atol=1e-6)
wide = torch.stack([torch.randperm(8, generator=torch.Generator().manual_seed(s)) for s in range(3)])  # (3, 8)
wide_tokens = torch.randint(0, 7, (3, 8))
wide_margin = torch.rand(3, 8) * 4
wide_logits = torch.zeros(3, 8, 7).scatter(-1, wide_tokens[..., None], wide_margin[..., None])
chosen = prediction_targets(wide, 4)
wide_expected = torch.tensor(sum(loss_at(c) for c in wide_margin[chosen].tolist()) / chosen.sum().item())
assert_close(partial_prediction_loss(wide_logits, wide_tokens, wide, 4), wide_expected, "three orders of 8, k = 4", atol=1e-6)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "transformer_xl_relative_attention", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 5 · Transformer-XL: relative attention
#
# XLNet's backbone is Transformer-XL (Dai et al., 2019). Positions enter attention as **relative**
# distances $i - j$ through sinusoidal encodings $R_{i-j}$ projected by $W_R$, and two learned vectors
# replace the query's position term:
#
# $$A_{ij} = \underbrace{q_i^\top k_j}_{\text{(a) content}} + \underbrace{q_i^\top W_R R_{i-j}}_{\text{(b) content-position}} + \underbrace{u^\top k_j}_{\text{(c) global content bias}} + \underbrace{v^\top W_R R_{i-j}}_{\text{(d) global position bias}} = (q_i + u)^\top k_j + (q_i + v)^\top r_{i-j}$$
#
# Computing (b)+(d) for every pair naively gathers a `(q_len, k_len, d_head)` tensor. The trick:
# compute $(q + v) R^\top$ against the `k_len` distances listed **from largest to smallest**, then
# shift row $i$ left by `q_len - 1 - i`, which lines each column up with distance $i + m - j$
# ($m$ = memory length, `k_len - q_len`). The shift is one pad, one `view` and one slice.

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_4_relative_shift", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Exercise 4: the relative shift and the four terms (4 points)
#
# * `rel_shift(x)`: `x (..., q_len, k_len)` whose column `c` belongs to distance `k_len - 1 - c`;
#   return `out` with `out[..., i, j] = x[..., i, j + q_len - 1 - i]` wherever `j <= i + k_len - q_len`
#   (elsewhere anything: those are future keys and get masked). Pad a zero column on the left,
#   reshape to `(..., k_len + 1, q_len)`, drop the first row, reshape back. No loops (the test counts
#   the Python lines `rel_shift` runs at `q_len` 4 and 400, as in exercise 1), no `gather` (a hidden
#   test makes it raise).
# * `relative_scores(q, k, r, u, v)`: `q (batch, heads, q_len, d_head)`, `k (batch, heads, k_len, d_head)`,
#   `r (heads, k_len, d_head)` (distances `k_len-1 .. 0`), `u, v (heads, d_head)`; return
#   $\big((q+u)k^\top + \text{rel\_shift}((q+v)r^\top)\big)/\sqrt{d_{head}}$, shape `(batch, heads, q_len, k_len)`.
#
# <details><summary>Hint 1</summary>
#
# Try `rel_shift` by hand on the try-it cell's small tensor: pad, reshape, drop a row, reshape, and watch which distance lands in each entry.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# In `relative_scores`, `u` and `v` are per head `(heads, d_head)`: give them a query axis to broadcast; `u` joins the content term with `k`, `v` the position term with `r`, and only the position term is shifted; the sum is divided once by `sqrt(d_head)`.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "relative_attention", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def rel_shift(x: torch.Tensor) -> torch.Tensor:
    """Align columns listed by decreasing distance with key positions: out[i, j] = x[i, j + q_len - 1 - i]."""
    ### BEGIN SOLUTION
    *lead, q_len, k_len = x.shape
    padded = F.pad(x, (1, 0))                                   # (..., q_len, k_len + 1)
    padded = padded.reshape(*lead, k_len + 1, q_len)
    return padded[..., 1:, :].reshape(*lead, q_len, k_len)
    ### END SOLUTION


def relative_scores(q: torch.Tensor, k: torch.Tensor, r: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Transformer-XL attention scores (a) + (b) + (c) + (d), scaled by 1/sqrt(d_head)."""
    ### BEGIN SOLUTION
    content = (q + u[:, None, :]) @ k.transpose(-2, -1)         # (batch, heads, q_len, k_len): (a) + (c)
    position = rel_shift((q + v[:, None, :]) @ r.transpose(-2, -1))  # (b) + (d)
    return (content + position) / math.sqrt(q.shape[-1])
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
# q_len = 3 queries, k_len = 5 keys (2 of memory); entry = 10 * row + the distance its column holds
listed = torch.tensor([[10 * i + (4 - c) for c in range(5)] for i in range(3)], dtype=torch.float64)
aligned = rel_shift(listed)
print("before the shift, every row lists distances 4 3 2 1 0:\n", listed.long())
print("after it, entry [i, j] should hold distance i + 2 - j (j <= i + 2; the rest is masked later):\n", aligned.long())
torch.manual_seed(0)
print("relative_scores:", tuple(relative_scores(torch.randn(1, 2, 3, 4), torch.randn(1, 2, 5, 4), torch.randn(2, 5, 4),
                                                torch.zeros(2, 4), torch.zeros(2, 4)).shape), "= (batch, heads, q_len, k_len)")


# %% nbgrader={"grade": true, "grade_id": "test_relative_attention", "locked": true, "points": 4.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""rel_shift and relative_scores equal a naive gather over distances, with and without memory."""
def naive_scores(q, k, r, u, v):
    batch, heads, q_len, d = q.shape
    k_len = k.shape[2]
    memory = k_len - q_len
    out = torch.full((batch, heads, q_len, k_len), float("nan"), dtype=q.dtype)
    for i in range(q_len):
        for j in range(k_len):
            distance = memory + i - j
            if distance >= 0:
                row = r[:, k_len - 1 - distance]                 # (heads, d)
                out[:, :, i, j] = (((q[:, :, i] + u) * k[:, :, j]).sum(-1) + ((q[:, :, i] + v) * row).sum(-1)) / math.sqrt(d)
    return out

# rel_shift on 2 queries and 4 keys (2 of memory): entry = 10 * row + the distance its column holds (3, 2, 1, 0)
listed = torch.tensor([[10 * i + (3 - c) for c in range(4)] for i in range(2)], dtype=torch.float64)
shifted = rel_shift(listed)
check_shape(shifted, (2, 4), "rel_shift(x) (q_len, k_len)")
wanted = torch.tensor([[10 * i + (i + 2 - j) for j in range(4)] for i in range(2)], dtype=torch.float64)
valid = torch.tensor([[j <= i + 2 for j in range(4)] for i in range(2)])
if not torch.equal(shifted[valid], wanted[valid]):
    right = F.pad(listed, (0, 1)).reshape(5, 2)[1:].reshape(2, 4)
    assert not torch.equal(shifted[valid], right[valid]), "rel_shift pads the zero column on the right: the prompt pads it on the left"
    last = F.pad(listed, (1, 0)).reshape(5, 2)[:-1].reshape(2, 4)
    assert not torch.equal(shifted[valid], last[valid]), "rel_shift drops the last row of the reshaped tensor: the prompt drops the first"
    raise AssertionError(f"rel_shift: entry [i, j] must hold distance i + 2 - j (j <= i + 2); "
                         f"for 10 * i + distance expected {wanted.masked_fill(~valid, -1).long().tolist()}, got {shifted.long().tolist()}")
torch.manual_seed(0)
for q_len, k_len in ((4, 4), (3, 7)):
    q, k = torch.randn(2, 3, q_len, 8, dtype=torch.float64), torch.randn(2, 3, k_len, 8, dtype=torch.float64)
    r, u, v = torch.randn(3, k_len, 8, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64)
    got, expected = relative_scores(q, k, r, u, v), naive_scores(q, k, r, u, v)
    check_shape(got, (2, 3, q_len, k_len), "scores")
    valid = ~expected.isnan()
    same = lambda twin: torch.allclose(got[valid], twin[valid], atol=1e-10)
    content_part = naive_scores(q, k, torch.zeros_like(r), u, v)          # (a) + (c), scaled
    position_part = naive_scores(q, torch.zeros_like(k), r, u, v)         # (b) + (d), scaled
    unshifted = ((q + v[:, None]) @ r.transpose(-2, -1)) / math.sqrt(8)
    for twin, symptom in ((naive_scores(q, k, r, torch.zeros_like(u), v), "the global content bias u is missing: (q + u) k^T"),
                          (naive_scores(q, k, r, v, v), "your content term uses v: the content bias is u, (q + u) k^T"),
                          ((content_part + position_part) * math.sqrt(8), "your scores are not divided by sqrt(d_head)"),
                          (content_part + position_part * math.sqrt(8), "only the content term is scaled: divide the whole sum by sqrt(d_head)"),
                          (content_part + unshifted, "the position term is not shifted: apply rel_shift to (q + v) r^T")):
        assert not same(twin), f"q_len={q_len}, k_len={k_len}: {symptom}"
    assert_close(got[valid], expected[valid], f"q_len={q_len}, k_len={k_len}", atol=1e-10)
few_lines, many_lines = python_lines_run(rel_shift, torch.randn(2, 4, 6)), python_lines_run(rel_shift, torch.randn(2, 400, 600))
assert many_lines <= few_lines + 20, (f"rel_shift ran {few_lines} Python lines at q_len 4, {many_lines} at q_len 400: "
                                      f"a Python loop (one pad, one reshape, one slice)")
### BEGIN HIDDEN TESTS
x = torch.arange(3 * 5, dtype=torch.float64).reshape(3, 5)
shifted = rel_shift(x)
for i in range(3):
    for j in range(5):
        if j <= i + 2:
            assert shifted[i, j] == x[i, j + 2 - i], f"rel_shift[{i}, {j}] should be x[{i}, {j + 2 - i}]"
with mock.patch.object(torch, "gather", side_effect=AssertionError("do not use gather")), \
        mock.patch.object(torch.Tensor, "gather", side_effect=AssertionError("do not use gather")):
    rel_shift(torch.randn(2, 4, 6))
q, k = torch.randn(1, 2, 5, 4, dtype=torch.float64), torch.randn(1, 2, 9, 4, dtype=torch.float64)
r, u, v = torch.randn(2, 9, 4, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
got, expected = relative_scores(q, k, r, u, v), naive_scores(q, k, r, u, v)
assert_close(got[~expected.isnan()], expected[~expected.isnan()], "u = 0, long memory", atol=1e-10)
u2 = torch.randn(2, 4, dtype=torch.float64)
got, expected = relative_scores(q, k, r, u2, torch.zeros_like(v)), naive_scores(q, k, r, u2, torch.zeros_like(v))
assert_close(got[~expected.isnan()], expected[~expected.isnan()], "v = 0: u is the content bias", atol=1e-10)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_5_segment_recurrence", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 6 · Exercise 5: segment recurrence (3 points)
#
# Transformer-XL reads a long text segment by segment. Each layer keeps the hidden states that
# **entered** it on the previous segment as a **memory** (detached: no gradient flows into the
# past) and attends over `memory + current`. With relative positions nothing else changes, so a
# causal model with enough memory computes exactly what it would over the whole text at once.
#
# `XLLayer` (below, using your `relative_scores`) takes `(x, memory)`. Complete
# `xl_forward(layers, segment, memories, mem_len)`: run the layers over one segment; `memories` is
# a list with one `(batch, m, d_model)` tensor per layer, or `None` for the first segment. Return
# `(output, new_memories)`, where layer `l`'s new memory is the last `mem_len` positions of
# `[memory_l; input of layer l]`, **detached**.
#
# <details><summary>Hint 1</summary>
#
# Each layer's memory is what entered that layer, so record it before calling the layer.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# For layer `l`: concatenate its old memory (if any) with its input along the positions, keep the last `mem_len`, detach, then run the layer with the old memory.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "xl_layer", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
class XLLayer(nn.Module):
    """A causal Transformer-XL layer: relative multi-head attention over [memory; x], then a feed-forward network."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int) -> None:
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.w_q, self.w_k, self.w_v, self.w_o = (nn.Linear(d_model, d_model) for _ in range(4))
        self.w_r = nn.Linear(d_model, d_model, bias=False)
        self.u, self.v = nn.Parameter(torch.randn(n_heads, self.d_head) * 0.1), nn.Parameter(torch.randn(n_heads, self.d_head) * 0.1)
        self.feed_forward = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        context = x if memory is None else torch.cat([memory, x], dim=1)             # (batch, k_len, d_model)
        batch, q_len, d_model = x.shape
        k_len = context.shape[1]
        split = lambda t: t.view(batch, -1, self.n_heads, self.d_head).transpose(1, 2)  # (batch, heads, len, d_head)
        q, k, v = split(self.w_q(x)), split(self.w_k(context)), split(self.w_v(context))
        distances = torch.arange(k_len - 1, -1, -1, device=x.device)                  # k_len-1 .. 0
        r = self.w_r(sinusoid(distances, d_model).to(x)).view(k_len, self.n_heads, self.d_head).transpose(0, 1)
        scores = relative_scores(q, k, r, self.u, self.v)                             # (batch, heads, q_len, k_len)
        allowed = torch.arange(k_len, device=x.device)[None, :] <= torch.arange(q_len, device=x.device)[:, None] + k_len - q_len
        weights = torch.softmax(scores.masked_fill(~allowed, torch.finfo(scores.dtype).min), dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(batch, q_len, d_model)
        x = self.norm1(x + self.w_o(out))
        return self.norm2(x + self.feed_forward(x))


# %% nbgrader={"grade": false, "grade_id": "segment_recurrence", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def xl_forward(layers: nn.ModuleList, segment: torch.Tensor, memories: list[torch.Tensor] | None,
               mem_len: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run the layers over one segment with per-layer memories; return (output, new detached memories)."""
    ### BEGIN SOLUTION
    x, new_memories = segment, []
    for layer, memory in zip(layers, memories or [None] * len(layers)):
        context = x if memory is None else torch.cat([memory, x], dim=1)           # (batch, m + seg, d_model)
        new_memories.append(context[:, -mem_len:].detach())
        x = layer(x, memory)
    return x, new_memories
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
torch.manual_seed(0)
xl_layers = nn.ModuleList(XLLayer(16, 4, 32) for _ in range(2)).eval()
long_text = torch.randn(1, 12, 16)                                        # (batch, 12 positions, d_model)
with torch.no_grad():
    whole, _ = xl_forward(xl_layers, long_text, None, mem_len=12)
    for mem_len in (1, 2, 4, 8):
        state = None
        for segment_start in (0, 4, 8):                                   # three segments of 4 positions
            last, state = xl_forward(xl_layers, long_text[:, segment_start:segment_start + 4], state, mem_len)
        print(f"mem_len {mem_len}: memories {[tuple(m.shape) for m in state]}, third segment differs from the "
              f"whole-text pass by {(last - whole[:, 8:]).abs().max().item():.1e}")


# %% nbgrader={"grade": true, "grade_id": "test_segment_recurrence", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""With memory as long as the past, segment 2's output equals the full-context computation; memories are detached and at most mem_len long."""
torch.manual_seed(0)
layers = nn.ModuleList(XLLayer(16, 4, 32) for _ in range(2)).double().eval()
text = torch.randn(2, 10, 16, dtype=torch.float64, requires_grad=True)
full, _ = xl_forward(layers, text, None, mem_len=10)
out1, memories = xl_forward(layers, text[:, :5], None, mem_len=5)
out2, memories2 = xl_forward(layers, text[:, 5:], memories, mem_len=5)
assert_close(out1, full[:, :5], "segment 1", atol=1e-10)
assert torch.allclose(memories[0], text[:, :5]), \
    "after segment 1, layer 0's memory should be the input that entered it (the segment itself): is it the layer's output?"
assert not torch.allclose(out2, xl_forward(layers, text[:, 5:].detach(), None, mem_len=5)[0], atol=1e-10), \
    "segment 2's output is what it gives with no memory at all: pass each layer its memory"
assert_close(out2, full[:, 5:], "segment 2 with a 5-step memory equals the full context", atol=1e-10)
assert len(memories2) == 2 and all(m.shape == (2, 5, 16) for m in memories2), "one (batch, mem_len, d_model) memory per layer"
assert not any(m.requires_grad for m in memories2), "memories must be detached"
three = [text[:, i:i + 3].detach() for i in (0, 3, 6)]
memory = None
for seg in three:
    _, memory = xl_forward(layers, seg, memory, mem_len=6)
assert memory[0].shape[1] != 3, ("three segments of 3, mem_len = 6: layer 0's memory holds only 3 positions, the current "
                                 "segment: keep the newest mem_len of [memory; input]")
assert not torch.equal(memory[0], text[:, :6].detach()), \
    "after 9 positions, layer 0's memory holds positions 0..5, the oldest: keep the newest mem_len (positions 3..8)"
assert_close(memory[0], text[:, 3:9].detach(), "after 9 positions, layer 0 keeps the newest 6 (positions 3..8)", atol=0)
assert_close(memory[1], layers[0](text[:, :9].detach())[:, 3:9], "layer 1 keeps layer 0's outputs at positions 3..8", atol=1e-10)
### BEGIN HIDDEN TESTS
out2.sum().backward()
assert text.grad is None or text.grad[:, :5].abs().sum() == 0, "no gradient may flow into the previous segment"
assert_close(memories[0], text[:, :5].detach(), "layer 0 remembers its input (the segment itself)", atol=0)
short1, short_memories = xl_forward(layers, text[:, :5].detach(), None, mem_len=2)
assert all(m.shape[1] == 2 for m in short_memories), "keep only the last mem_len positions"
short2, _ = xl_forward(layers, text[:, 5:].detach(), short_memories, mem_len=2)
assert not torch.allclose(short2, full[:, 5:]), "a 2-step memory sees less than the full context"
three = [text[:, i:i + 3].detach() for i in (0, 3, 6)]
mem = None
for seg in three:
    out, mem = xl_forward(layers, seg, mem, mem_len=6)
assert_close(out, full[:, 6:9], "three segments, memory 6: the last segment sees everything before it", atol=1e-10)
assert all(m.shape[1] == 6 for m in mem), "memory grows up to mem_len and stays there"
assert_close(mem[0], text[:, 3:9].detach(), "after 9 positions, layer 0 remembers the last 6 of them (positions 3..8)", atol=0)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "assembled_xlnet", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 7 · An XLNet: the parts assembled
#
# XLNet is every part above in one model: **two-stream** attention (one set of projections, keys
# and values from the content stream) whose scores are Transformer-XL's **relative** ones, over
# the current segment and a **memory** of the previous one, trained with the **permutation**
# objective and **partial prediction**. With relative positions the query stream starts as in the
# paper, $g^{(0)}_i = w$ at every position: where a position is enters only through $R_{i-j}$.
#
# Two details the parts did not need:
# * In a permuted order a position may attend to a key on its **right** (later in the text,
#   earlier in the order), so distances run from `k_len - 1` down to `-q_len`.
#   `bidirectional_scores` lists them so, pads the keys with `q_len` dummy keys so that your
#   `relative_scores` sees matching shapes, and keeps the real keys' columns.
# * The memory holds the previous segment's **content** states; every position of both streams
#   may attend to all of it. The order permutes the current segment only.
#
# The masks come from your `permutation_masks`, the scores from your `relative_scores`, and each
# layer's memory follows your `xl_forward`'s rule (the newest `mem_len` states that entered it).

# %% nbgrader={"grade": false, "grade_id": "xlnet_model", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
def bidirectional_scores(q: torch.Tensor, k: torch.Tensor, r: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """relative_scores for keys on both sides of each query: r (heads, k_len + q_len, d_head) lists
    the distances k_len - 1 .. -q_len; returns (batch, heads, q_len, k_len)."""
    q_len, k_len = q.shape[2], k.shape[2]
    dummy_keys = F.pad(k, (0, 0, 0, q_len))                                   # (batch, heads, k_len + q_len, d_head)
    return relative_scores(q, dummy_keys, r, u, v)[..., :k_len]


class XLNetLayer(XLLayer):
    """XLLayer's weights, used by both streams: relative two-stream attention over [memory; h], then the
    feed-forward network (post-LN)."""

    def attend(self, queries: torch.Tensor, context: torch.Tensor, r: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch = queries.shape[0]
        split = lambda t: t.view(batch, -1, self.n_heads, self.d_head).transpose(1, 2)  # (batch, heads, len, d_head)
        q, k, v = split(self.w_q(queries)), split(self.w_k(context)), split(self.w_v(context))
        scores = bidirectional_scores(q, k, r, self.u, self.v)                      # (batch, heads, q_len, k_len)
        weights = torch.softmax(scores.masked_fill(~mask, torch.finfo(scores.dtype).min), dim=-1) * mask
        return self.w_o((weights @ v).transpose(1, 2).reshape(batch, -1, self.n_heads * self.d_head))

    def forward(self, h, g, memory, content_mask, query_mask):
        context = h if memory is None else torch.cat([memory, h], dim=1)             # (batch, k_len, d_model)
        k_len, q_len, d_model = context.shape[1], h.shape[1], h.shape[2]
        distances = torch.arange(k_len - 1, -q_len - 1, -1, device=h.device)         # k_len-1 .. -q_len
        r = self.w_r(sinusoid(distances, d_model).to(h)).view(-1, self.n_heads, self.d_head).transpose(0, 1)
        h, g = self.norm1(h + self.attend(h, context, r, content_mask)), self.norm1(g + self.attend(g, context, r, query_mask))
        return self.norm2(h + self.feed_forward(h)), self.norm2(g + self.feed_forward(g))


class XLNet(nn.Module):
    """A small XLNet language model: predicts from the query stream, under an order, with a memory."""

    def __init__(self, vocab_size: int, d_model: int = 128, n_heads: int = 4, d_ff: int = 512, n_layers: int = 2,
                 mem_len: int = 24) -> None:
        super().__init__()
        self.mem_len = mem_len
        self.token = nn.Embedding(vocab_size, d_model)
        self.query_start = nn.Parameter(torch.randn(d_model) * 0.02)                  # w, the same everywhere
        self.layers = nn.ModuleList(XLNetLayer(d_model, n_heads, d_ff) for _ in range(n_layers))

    def forward(self, tokens: torch.Tensor, order: torch.Tensor,
                memories: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """tokens, order (batch, seq) -> (logits (batch, seq, vocab), the next segment's memories)."""
        h = self.token(tokens)                                                        # (batch, seq, d_model)
        g = self.query_start.expand_as(h)
        m = 0 if memories is None else memories[0].shape[1]
        content_mask, query_mask = (F.pad(mask, (m, 0), value=True).unsqueeze(1)      # memory columns: visible
                                    for mask in permutation_masks(order))            # (batch, 1, seq, m + seq)
        new_memories = []
        for layer, memory in zip(self.layers, memories or [None] * len(self.layers)):
            new_memories.append((h if memory is None else torch.cat([memory, h], dim=1))[:, -self.mem_len:].detach())
            h, g = layer(h, g, memory, content_mask, query_mask)
        return g @ self.token.weight.T, new_memories


# %% slideshow={"slide_type": "fragment"}
torch.manual_seed(0)
q, k = torch.randn(1, 2, 3, 4, dtype=torch.float64), torch.randn(1, 2, 5, 4, dtype=torch.float64)   # 2 of memory
r, u, v = torch.randn(2, 8, 4, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
scores = bidirectional_scores(q, k, r, u, v)
naive = torch.stack([torch.stack([((q[0, :, i] + u) * k[0, :, j]).sum(-1) + ((q[0, :, i] + v) * r[:, 4 - (2 + i - j)]).sum(-1)
                                  for j in range(5)], -1) for i in range(3)], -2) / 2       # distance 2 + i - j
print(f"bidirectional_scores against a loop over signed distances (keys on both sides): "
      f"largest difference {(scores[0] - naive).abs().max().item():.1e}")
tiny = XLNet(vocab_size=20, d_model=16, n_heads=4, d_ff=32, mem_len=5).eval()
with torch.no_grad():
    logits, memories = tiny(torch.randint(0, 20, (1, 8)), sample_order(8, torch.Generator().manual_seed(3))[None])
    logits, _ = tiny(torch.randint(0, 20, (1, 8)), sample_order(8, torch.Generator().manual_seed(4))[None], memories)
print(f"logits {tuple(logits.shape)}; memories {[tuple(m.shape) for m in memories]} (one per layer, mem_len 5)")

# %% nbgrader={"grade": true, "grade_id": "test_xlnet", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""The assembled XLNet never lets the prediction at position t see token t, with memory on and off; memories are the newest mem_len states."""
torch.manual_seed(0)
tiny = XLNet(vocab_size=20, d_model=16, n_heads=4, d_ff=32, mem_len=5).double().eval()
previous, current = torch.randint(0, 20, (2, 8)), torch.randint(0, 20, (2, 8))
orders = torch.stack([sample_order(8, torch.Generator().manual_seed(s)) for s in (3, 4)])
with torch.no_grad():
    _, memories = tiny(previous, orders)
    for memory in (None, memories):
        logits, _ = tiny(current, orders, memory)
        for t in range(8):
            changed = current.clone()
            changed[:, t] = (current[:, t] + 1) % 20
            assert_close(tiny(changed, orders, memory)[0][:, t], logits[:, t],
                         f"memory {'on' if memory else 'off'}: the prediction at {t} must not see token {t}", atol=1e-10)
assert [tuple(m.shape) for m in memories] == [(2, 5, 16)] * 2, [m.shape for m in memories]
assert_close(memories[0], tiny.token(previous)[:, -5:].detach(), "layer 0 keeps the newest 5 embeddings it was given", atol=0)
### BEGIN HIDDEN TESTS
with torch.no_grad():
    with_memory, _ = tiny(current, orders, memories)
    without, _ = tiny(current, orders)
    assert not torch.allclose(with_memory, without), "the memory must reach the predictions"
    first = orders[:, 0]                                                      # nothing of the segment is visible yet
    assert not torch.allclose(with_memory[torch.arange(2), first], without[torch.arange(2), first]), \
        "the first step of the order sees the memory"
    changed = current.clone()
    changed[0, orders[0, 0]] = (current[0, orders[0, 0]] + 1) % 20
    assert not torch.allclose(tiny(changed, orders, memories)[0][0, orders[0, -1]], with_memory[0, orders[0, -1]]), \
        "the last step of the order sees the first one's token"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "xlnet_experiment", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ### Training it, and a fair comparison
#
# Characters of the Wikipedia sample, windows of two segments of `SEQ` = 24 characters: the first
# segment is read without memory, the second with the first as memory, and each predicts the last
# quarter ($K = 4$) of its order. Two XLNets of the same size and code, the same steps and data:
# one trained on random orders (XLNet's objective), one on the identity order (a left-to-right
# model: its query stream is then a causal Transformer-XL).
#
# Comparing the two on their **own** tasks would compare two tasks: with a random order, most of
# the predicted positions have context on **both** sides, so the permutation model's lower loss
# there is expected, not evidence. The fair comparison asks both models the **same** question.
# We measure every model on every task (on the second segment, with memory), so each column of the
# table below is one task and its two numbers can be compared. The same model with its memory
# switched off shows what the memory adds.
#
# **Targets (tested).** In each column of the table, the model trained for that task has the lower
# loss; the memory lowers the permutation model's loss on its own task; and the permutation XLNet
# ends below **2.2 nats/char** on its task (the hidden test asks the same, under and below the
# left-to-right model, on other random orders). The cell that trains the models is locked, since
# the test reads it; copy it into a new cell to experiment.

# %% nbgrader={"grade": false, "grade_id": "train_xlnets", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "fragment"}
text = "\n".join(wikipedia_articles())
alphabet = [c for c, n in Counter(text).most_common() if n >= 50]
char_id = {c: i + 1 for i, c in enumerate(alphabet)}                 # 0 = any rare character
data = torch.tensor([char_id.get(c, 0) for c in text])
split = int(len(data) * 0.95)
train_data, held_out_data = data[:split], data[split:]
SEQ, BATCH, K, STEPS = 24, 32, 4, 400
print(f"{len(data):,} characters, {len(alphabet) + 1} symbols; {len(held_out_data):,} held out")


def windows(source: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n random windows of two segments, (n, 2 * SEQ)."""
    starts = torch.randint(0, len(source) - 2 * SEQ, (n,), generator=generator)
    return torch.stack([source[s:s + 2 * SEQ] for s in starts.tolist()])


def random_orders(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.stack([sample_order(SEQ, generator) for _ in range(n)])


def make_batches(identity: bool, seed: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(tokens, order of segment 1, order of segment 2) per step."""
    generator = torch.Generator().manual_seed(seed)
    identity_orders = torch.arange(SEQ).expand(BATCH, SEQ)
    return [(windows(train_data, BATCH, generator),
             identity_orders if identity else random_orders(BATCH, generator),
             identity_orders if identity else random_orders(BATCH, generator)) for _ in range(STEPS)]


def segment_losses(model: XLNet, tokens: torch.Tensor, first_order: torch.Tensor, second_order: torch.Tensor,
                   memory: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Partial-prediction losses of the two segments; the second reads the first as memory (or not)."""
    logits, memories = model(tokens[:, :SEQ], first_order)
    first = partial_prediction_loss(logits, tokens[:, :SEQ], first_order, K)
    logits, _ = model(tokens[:, SEQ:], second_order, memories if memory else None)
    return first, partial_prediction_loss(logits, tokens[:, SEQ:], second_order, K)


held_out = windows(held_out_data, 512, torch.Generator().manual_seed(99)).to(device)
tasks = {"random orders": tuple(random_orders(512, torch.Generator().manual_seed(1000 + s)).to(device) for s in (1, 2)),
         "left-to-right": (torch.arange(SEQ, device=device).expand(512, SEQ),) * 2}


def held_out_loss(model: XLNet, task: str, memory: bool = True) -> float:
    """The second segment's loss on the held-out windows, under a task's orders."""
    with torch.no_grad():
        return segment_losses(model, held_out, *tasks[task], memory=memory)[1].item()


models, histories = {}, {}
for name, identity, task in (("permutation (XLNet)", False, "random orders"), ("left-to-right", True, "left-to-right")):
    seed_everything(0)
    model = XLNet(len(alphabet) + 1, mem_len=SEQ).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 30) * max(0.05, 1 - s / STEPS))
    loss_fn = lambda model, batch: sum(segment_losses(model, *batch)) / 2
    histories[name] = fit(model, loss_fn, make_batches(identity, seed=1), optimizer, STEPS, device=device,
                          scheduler=scheduler, eval_fn=lambda m, task=task: {"held-out loss": held_out_loss(m, task)},
                          eval_every=100, description=name)
    models[name] = model.eval()
table = {name: {task: held_out_loss(model, task) for task in tasks} for name, model in models.items()}
no_memory = {name: held_out_loss(model, task, memory=False)
             for (name, model), task in zip(models.items(), tasks)}
print(f"{count_parameters(model):,} parameters each; held-out loss (nats/char) on the second segment's last quarter:")
print(f"{'trained on':>22} | {'task: random orders':>20} | {'task: left-to-right':>20} | own task, memory off")
for (name, row), task in zip(table.items(), tasks):
    print(f"{name:>22} | {row['random orders']:20.3f} | {row['left-to-right']:20.3f} | {no_memory[name]:.3f}")
fig, ax = plt.subplots(figsize=(6, 3.5))
for (name, history), task in zip(histories.items(), tasks):
    ax.plot([s for s, _ in history.evals], [m["held-out loss"] for _, m in history.evals], "o-", label=f"{name}, on {task}")
ax.set(xlabel="step", ylabel="held-out loss (nats/char)", title="each model on its own task")
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "reading_table", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# **Reading the table** (each statement tested below). In each column, the model trained for that
# task wins: the left-to-right model predicts the next characters better than the permutation
# model does, and it does worse when asked to fill positions with context on both sides, which it
# never saw. So the table does not say that one objective makes the better language model: each
# answers best the question it was trained on. XLNet's case for permutations is what the representations
# are good for after fine-tuning (the paper's GLUE and SQuAD results), a question this notebook
# cannot afford to ask. The memory lowers the permutation model's loss on its task, although the
# positions it predicts, the last quarter of each order, already see 18 to 23 of the segment's 24
# characters: the memory adds 24 more, all to the left, and a position near the segment's start
# has few of its left neighbours inside the segment. The left-to-right model's predicted positions
# (the last quarter of the segment) already have at least 18 characters of left context inside
# it: compare its last column with its own task's number to see what the memory adds there.
#
# Where does the permutation model's advantage on its own task come from? Its loss by how many of
# the position's neighbours (within 3 characters on either side) were already visible in the order.

# %% slideshow={"slide_type": "fragment"}
xlnet = models["permutation (XLNet)"]
second_order = tasks["random orders"][1]
with torch.no_grad():
    _, memories = xlnet(held_out[:, :SEQ], tasks["random orders"][0])
    logits, _ = xlnet(held_out[:, SEQ:], second_order, memories)
per_token = F.cross_entropy(logits.transpose(1, 2), held_out[:, SEQ:], reduction="none").cpu()   # (batch, seq)
content_mask, query_mask = permutation_masks(second_order.cpu())
distance = (torch.arange(SEQ)[None, :] - torch.arange(SEQ)[:, None]).abs()
near = (distance >= 1) & (distance <= 3)                                                        # (seq, seq)
visible_neighbours = (query_mask & near).sum(-1)                                                # (batch, seq)
targets = prediction_targets(second_order.cpu(), K)
counts = sorted(set(visible_neighbours[targets].tolist()))
losses = [per_token[targets & (visible_neighbours == c)].mean().item() for c in counts]
fig, ax = plt.subplots(figsize=(6, 3))
ax.bar([str(c) for c in counts], losses, color="tab:blue")
ax.axhline(table["left-to-right"]["left-to-right"], color="tab:red", ls="--", label="left-to-right model, its own task")
ax.set_xlabel("visible neighbours within 3 characters")
ax.set_ylabel("loss (nats/char)")
ax.legend()
plt.show()

# %% nbgrader={"grade": true, "grade_id": "test_permutation_lm", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""Each model wins the task it was trained for; the memory lowers the permutation model's loss; the permutation XLNet reaches below 2.2 nats/char on its task."""
perm, ltr = table["permutation (XLNet)"], table["left-to-right"]
assert perm["random orders"] < ltr["random orders"], f"on random orders: permutation {perm} vs left-to-right {ltr}"
assert ltr["left-to-right"] < perm["left-to-right"], f"left to right: left-to-right {ltr} vs permutation {perm}"
assert perm["random orders"] < 2.2, f"expected the permutation XLNet below 2.2 nats/char on its task, got {perm['random orders']:.3f}"
assert perm["random orders"] < no_memory["permutation (XLNet)"], \
    f"memory on {perm['random orders']:.3f} should be below memory off {no_memory['permutation (XLNet)']:.3f}"
### BEGIN HIDDEN TESTS
other = (random_orders(512, torch.Generator().manual_seed(77)).to(device), random_orders(512, torch.Generator().manual_seed(78)).to(device))
with torch.no_grad():
    other_loss = segment_losses(models["permutation (XLNet)"], held_out, *other)[1].item()
    ltr_other = segment_losses(models["left-to-right"], held_out, *other)[1].item()
assert other_loss < ltr_other and other_loss < 2.2, f"on other orders: permutation {other_loss:.3f}, left-to-right {ltr_other:.3f}"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "what_came_next_mpnet", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 8 · What came next: MPNet
#
# XLNet's query stream at step $t$ knows the positions it has seen, but **not** the positions of the
# tokens still to be predicted: unlike BERT it does not know how long the sentence is or where the
# gaps are. BERT, in turn, predicts its masked tokens independently of each other. **MPNet**
# (Song et al., 2020) permutes like XLNet and then appends `[MASK]` placeholders carrying the
# positions of the tokens still to come, so each prediction sees every position (like BERT) and the
# earlier predicted tokens (like XLNet). It beat both at equal size on GLUE.
#
# **The direction these three share.** Each new pre-training objective kept what the last one
# gained and removed one of its costs: BERT sees both sides, but predicts its masked tokens
# independently and trains on a `[MASK]` symbol it never sees when fine-tuned; XLNet predicts tokens
# one after another in a random order, at the price of two streams; MPNet keeps the order and gives
# back the positions. The course meets this line three times: BERT's masked LM (notebook 07), the
# permutation LM and two-stream attention here, and ELECTRA (notebook 11), which answers the
# `[MASK]` mismatch differently, by asking about every token whether it was replaced.

# %% [markdown] nbgrader={"grade": false, "grade_id": "summary", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## Summary
#
# * A **factorisation order** changes only the masks: the content mask lets a position see itself
#   and its predecessors in the order, the query mask only its predecessors.
# * **Two-stream attention** gives each position a query vector that knows where, not what; the
#   prediction at $t$ provably ignores token $t$.
# * **Partial prediction** trains only the last $1/K$ of each order, where context is rich.
# * An **XLNet** assembled from these parts learns from random orders; asked the same question, a
#   permutation model and a left-to-right one each win the task they were trained for, and the
#   segment memory lowers the permutation model's loss.
# * Transformer-XL's **relative attention** has four terms, computed with one shift instead of a gather,
#   and its **segment recurrence** reuses detached hidden states so a causal model sees past segments.

# %% [markdown] nbgrader={"grade": false, "grade_id": "further_reading", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Further reading
#
# * Yang et al. (2019). *XLNet: Generalized Autoregressive Pretraining for Language Understanding.* arXiv:1906.08237
# * Dai et al. (2019). *Transformer-XL: Attentive Language Models Beyond a Fixed-Length Context.* arXiv:1901.02860
# * Song et al. (2020). *MPNet: Masked and Permuted Pre-training for Language Understanding.* arXiv:2004.09297
# * Shaw, Uszkoreit, Vaswani (2018). *Self-Attention with Relative Position Representations.* arXiv:1803.02155
#
# <!-- reading-list -->
# **From the course reading list** (`readings/reading-list.md`, mostly Chinese-language articles; links as the list gives them), by the section they go with:
#
# * with *1 · Intuition: one sequence, many orders*
#   * [XLNet:运行机制及和Bert的异同比较](https://zhuanlan.zhihu.com/p/70257427): how XLNet works, and how it differs from BERT (zhihu)
# * with *8 · What came next: MPNet*
#   * [一文看尽2019年NLP前沿突破量子位](https://zhuanlan.zhihu.com/p/101416113): NLP's breakthroughs of 2019 at a glance (zhihu)
#   * [ICLR 2020趋势分析：NLP中更好&更快的Transformer](https://zhuanlan.zhihu.com/p/143852458): ICLR 2020 trends: better and faster Transformers (zhihu)
#   * [从BERT、XLNet到MPNet，细看NLP预训练模型发展变迁史](https://zhuanlan.zhihu.com/p/146325984): from BERT and XLNet to MPNet: how pre-trained models changed (zhihu)
# <!-- /reading-list -->
