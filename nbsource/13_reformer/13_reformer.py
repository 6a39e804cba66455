# ---
# jupyter:
#   celltoolbar: Slideshow
#   kernelspec:
#     display_name: Python 3 (course)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "title", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# # 13 · The Reformer and efficient attention
#
# **Learning objectives.** After this notebook you can
# 1. **hash** vectors with angular LSH and **implement** LSH attention (sort, chunk, attend within the bucket, in the chunk and one back);
# 2. **build** reversible residual blocks and a custom autograd function that recomputes activations;
# 3. **chunk** the feed-forward layer and **build** a sliding-window attention mask;
# 4. **assemble** a small Reformer from these parts and **train** it on the paper's duplication task, with 1, 2 and 4 hashing rounds;
# 5. **measure** memory and time of full, fused and LSH attention, and of reversible against ordinary models.
#
# **Prerequisites.** Notebooks 03 (scaled dot-product attention), 04 (masks) and 06 (the Transformer).
#
# **Estimated time.** 2.5 hours. The notebook runs in about a minute on a 2-core CPU.

# %% [markdown] nbgrader={"grade": false, "grade_id": "notes_intro", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "notes"}
# Speaker notes: full attention stores an n x n matrix per head; a stack of L layers stores L sets
# of activations for the backward pass. The Reformer attacks both: attend only to *similar*
# positions (found by hashing), and store no activations at all (recompute them from the output).

# %% [markdown] nbgrader={"grade": false, "grade_id": "setup_text", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Setup

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
import copy
import itertools
import math
import time
from unittest import mock

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_utils import assert_close, check_shape, describe_environment, get_device, seed_everything
from course_utils.memory import peak_memory
from course_utils.train import fit

seed_everything(0)
device = get_device()
print(describe_environment(device))


# %% [markdown] nbgrader={"grade": false, "grade_id": "angular_locality_sensitive_hashing", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 1 · Angular locality-sensitive hashing
#
# Attention weights are dominated by the keys closest to the query. To find them without
# comparing all pairs, project onto random directions: with a random matrix
# $R \in \mathbb{R}^{d \times b/2}$,
#
# $$h(x) = \arg\max\,[\,xR\,;\,-xR\,] \in \{0, \dots, b-1\}$$
#
# Vectors at a small angle tend to land in the same bucket; opposite ones never do (Andoni et al., 2015).
#
# | symbol | shape | meaning | code name |
# |---|---|---|---|
# | $R$ | `(d, n_buckets // 2)` per round | random rotation | `rotations[r]` |
# | $b$ | | buckets | `n_buckets` |
# | $c$ | | chunk length | `chunk_size` |

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_1_hash", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 2 · Exercise 1: the hash (3 points)
#
# Complete `lsh_hash(x, rotations)`: `x (..., d)`, `rotations (d, n_buckets // 2)`; return the
# bucket ids `(...)` as `argmax` over the concatenation `[xR, -xR]`.
#
# <details><summary>Hint 1</summary>
#
# `rotations` has `n_buckets // 2` columns, so `xR` alone can name only half of the buckets: `-xR` names the other half.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Join `xR` and `-xR` along their last axis (the bucket axis), keeping `x`'s leading shape, then take the largest entry.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "lsh_hash", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def lsh_hash(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Angular LSH: argmax over [xR, -xR]."""
    ### BEGIN SOLUTION
    projected = x @ rotations                                               # (..., n_buckets // 2)
    return torch.cat([projected, -projected], dim=-1).argmax(dim=-1)
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
angles = torch.linspace(0, 2 * math.pi, 361)[:-1]
circle = torch.stack([angles.cos(), angles.sin()], dim=-1)                   # (360, 2): unit vectors
circle_rotations = torch.randn(2, 4, generator=torch.Generator().manual_seed(3))  # d = 2, 8 buckets
circle_buckets = lsh_hash(circle, circle_rotations)                           # (360,)
print("buckets", circle_buckets.shape, "every 20 degrees:", circle_buckets[::20].tolist())
print("x and -x:", lsh_hash(circle[:4], circle_rotations).tolist(), "vs", lsh_hash(-circle[:4], circle_rotations).tolist())
fig, ax = plt.subplots(figsize=(3.2, 3.2))
ax.scatter(circle[:, 0], circle[:, 1], c=circle_buckets, cmap="tab10", vmin=0, vmax=9, s=12)
for bucket in circle_buckets.unique().tolist():
    middle = circle[circle_buckets == bucket].mean(dim=0)                     # the middle of the bucket's arc
    ax.annotate(str(bucket), (1.25 * F.normalize(middle, dim=0)).tolist(), ha="center", va="center")
ax.set_xlim(-1.4, 1.4)
ax.set_ylim(-1.4, 1.4)
ax.set_aspect("equal")
ax.set_axis_off()
ax.set_title("lsh_hash on the unit circle, 8 buckets:\neach bucket is one arc; x and -x are 4 apart", fontsize=9)
plt.show()


# %% nbgrader={"grade": true, "grade_id": "test_lsh_hash", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""lsh_hash gives argmax over [xR, -xR]; near vectors collide much more often than far ones."""
rotations = torch.tensor([[1.0, 0.0], [0.0, 1.0]])              # d = 2, 4 buckets
points = torch.tensor([[2.0, 0.1], [0.1, 3.0], [-2.0, 0.2], [0.3, -1.0]])
found = lsh_hash(points, rotations)
assert found.shape == (4,), (f"4 points of d = 2 should give bucket ids of shape (4,), got {tuple(found.shape)}: "
                             "[xR, -xR] is joined along the bucket axis (the last one), not the points")
assert found.max() >= 2 or found.tolist() == [0, 0, 0, 0], (f"only buckets 0 and 1 of 4 used, got {found.tolist()}: "
                                                             "is the argmax over xR alone, without -xR?")
assert found.tolist() != [2, 3, 0, 1], (f"every point landed in its opposite's bucket (got [2, 3, 0, 1], expected [0, 1, 2, 3]): "
                                         "the argmax of [xR, -xR], in that order?")
assert found.tolist() == [0, 1, 2, 3], f"expected buckets [0, 1, 2, 3], got {found.tolist()}"
g = torch.Generator().manual_seed(0)
x = F.normalize(torch.randn(2000, 32, generator=g), dim=-1)
near = F.normalize(x + 0.2 * torch.randn(2000, 32, generator=g) / math.sqrt(32), dim=-1)
far = F.normalize(torch.randn(2000, 32, generator=g), dim=-1)
r = torch.randn(32, 8, generator=g)
same_near = (lsh_hash(x, r) == lsh_hash(near, r)).double().mean().item()
same_far = (lsh_hash(x, r) == lsh_hash(far, r)).double().mean().item()
print(f"collisions: near {same_near:.0%}, far {same_far:.0%}")
assert same_near > 3 * same_far, f"near vectors should collide far more often: {same_near:.0%} vs {same_far:.0%}"
### BEGIN HIDDEN TESTS
assert (lsh_hash(x, r) != lsh_hash(-x, r)).all(), "opposite vectors never share a bucket"
buckets = lsh_hash(torch.randn(5, 7, 32, generator=g), r)
check_shape(buckets, (5, 7), "bucket ids keep the leading shape")
assert buckets.min() >= 0 and buckets.max() < 16 and len(buckets.unique()) > 8, "16 buckets are used"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_2_lsh_attention", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 3 · Exercise 2: LSH attention (4 points)
#
# Shared query-keys: the keys are the **normalised** queries, $\hat k_j = q_j / \lVert q_j \rVert$, and
# query $i$ scores key $j$ with
#
# $$s_{ij} = \frac{q_i \cdot \hat k_j}{\sqrt{d}}$$
#
# (the query itself is not normalised; `shared_qk_attention` below computes exactly this over all
# pairs). A query's best match is then itself, so a position may attend to itself only when nothing
# else is allowed (its score gets $-10^5$ instead of $s_{ii}$). One round,
# `lsh_attention_round(qk, v, rotations, chunk_size, causal=False)` with `rotations (d, n_buckets // 2)`:
#
# 1. hash the queries; **sort** positions by bucket, then by position (stable);
# 2. cut the sorted sequence into chunks of `chunk_size`; each chunk attends to **itself and the
#    chunk before** (the first chunk's "before" wraps around to the last one; with a single chunk,
#    only itself);
# 3. mask with `finfo.min` every key of **another bucket** than the query's (the paper's rule: a
#    query sees only its own bucket, in its chunk and the one before) and, with `causal=True`, any
#    key later than the query; then give the query's own position $-10^5$;
# 4. softmax, weighted values, and **un-sort** back to the original order; return
#    `(out (batch, n, d), lse (batch, n))`, where `lse` is the log-sum-exp of each query's masked
#    scores (in the original order too).
#
# Then `lsh_attention(qk, v, rotations, chunk_size, causal=False)`, with `rotations (rounds, d, n_buckets // 2)`:
# run `lsh_attention_round` once per round and combine the rounds' outputs with weights
# $\operatorname{softmax}_r(\text{lse}_r)$, each round's share of the total attention mass (one round:
# its output as it is). Both take `qk, v (batch, n, d)` with `n` divisible by `chunk_size`.
#
# **Memory.** The point of LSH attention is to never hold an $n \times n$ array: build every score,
# mask and position comparison per chunk, `(chunk_size, 2 chunk_size)` at a time, never over all pairs
# (not even a boolean same-bucket mask). Tested: peak memory at 4,096 positions is less than 2.5
# times that at 2,048 (memory linear in $n$; an $n \times n$ array makes it about 4 times); section 7
# then asks for at least 8 times less memory than full attention at 8,192 tokens, and section 11 for
# at least 5 times less in a training step at 4,096.
#
# **Where this differs from the paper.** When a query meets the same key in $N_{ij}$ of the rounds,
# the Reformer subtracts $\log N_{ij}$ from that score, so the key is not counted $N_{ij}$ times; here
# the rounds are combined by their mass alone, which keeps the code short. With a single chunk the
# result is exactly full attention restricted to pairs in the same bucket (with one chunk and every
# position in one bucket, it is full attention); with every position in one bucket and several
# chunks, each chunk attends to itself and the one before: the tests use these cases.
#
# <details><summary>Hint 1</summary>
#
# Sorting is what makes chunking work: after it, the members of one bucket sit next to each other. Keep `order` and its inverse permutation to put the outputs back.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Gather the keys, values, positions and buckets into sorted order and view them as `(batch, chunks, chunk_size, ...)`; the chunk before is the same tensor rolled by one chunk.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# Masks come from comparing positions and buckets of queries and keys within the chunk pair; the log-sum-exp is taken after every mask, and un-sorted like the output.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "lsh_attention", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def lsh_attention_round(qk: torch.Tensor, v: torch.Tensor, rotations: torch.Tensor, chunk_size: int,
                        causal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One hashing round: (output (batch, n, d), log-sum-exp (batch, n))."""
    ### BEGIN SOLUTION
    batch, n, d = qk.shape
    positions = torch.arange(n, device=qk.device)
    buckets = lsh_hash(qk, rotations)                                          # (batch, n)
    order = (buckets * n + positions).argsort(dim=-1)                          # by bucket, then position
    undo = order.argsort(dim=-1)
    take = lambda t: t.gather(1, order.unsqueeze(-1).expand(-1, -1, t.shape[-1]))
    chunks = n // chunk_size
    q = take(qk).view(batch, chunks, chunk_size, d)                            # (batch, chunks, c, d)
    k = F.normalize(take(qk), dim=-1).view(batch, chunks, chunk_size, d)
    values = take(v).view(batch, chunks, chunk_size, -1)
    q_pos = order.view(batch, chunks, chunk_size)
    q_bucket = buckets.gather(1, order).view(batch, chunks, chunk_size)        # sorted buckets
    look_back = lambda t: t if chunks == 1 else torch.cat([t, t.roll(1, dims=1)], dim=2)
    k, values = look_back(k), look_back(values)                                # (batch, chunks, 2c, d)
    k_pos, k_bucket = look_back(q_pos), look_back(q_bucket)                    # (batch, chunks, 2c)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)                            # (batch, chunks, c, 2c)
    hidden = k_bucket.unsqueeze(-2) != q_bucket.unsqueeze(-1)                  # another bucket
    if causal:
        hidden = hidden | (k_pos.unsqueeze(-2) > q_pos.unsqueeze(-1))          # a later position
    scores = scores.masked_fill(hidden, torch.finfo(scores.dtype).min)
    scores = scores.masked_fill(k_pos.unsqueeze(-2) == q_pos.unsqueeze(-1), -1e5)
    lse = scores.logsumexp(dim=-1, keepdim=True)
    out = (scores - lse).exp() @ values                                        # (batch, chunks, c, d_v)
    out = out.reshape(batch, n, -1).gather(1, undo.unsqueeze(-1).expand(-1, -1, out.shape[-1]))
    return out, lse.reshape(batch, n).gather(1, undo)
    ### END SOLUTION


def lsh_attention(qk: torch.Tensor, v: torch.Tensor, rotations: torch.Tensor, chunk_size: int,
                  causal: bool = False) -> torch.Tensor:
    """Multi-round LSH attention with shared query-keys; rotations (rounds, d, n_buckets // 2)."""
    ### BEGIN SOLUTION
    outs, lses = zip(*(lsh_attention_round(qk, v, r, chunk_size, causal) for r in rotations))
    weights = torch.stack(lses).softmax(dim=0).unsqueeze(-1)                   # (rounds, batch, n, 1)
    return (weights * torch.stack(outs)).sum(0)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "reference", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
def shared_qk_attention(qk: torch.Tensor, v: torch.Tensor, causal: bool = False,
                        allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Full attention with shared query-keys and the same self rule: the reference for one chunk.

    ``allowed`` (n, n) or (batch, n, n), optional: True where query i may see key j at all."""
    n, d = qk.shape[1], qk.shape[2]
    scores = qk @ F.normalize(qk, dim=-1).transpose(-2, -1) / math.sqrt(d)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    if causal:
        scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool, device=qk.device).triu(1), torch.finfo(scores.dtype).min)
    scores = scores.masked_fill(torch.eye(n, dtype=torch.bool, device=qk.device), -1e5)
    return scores.softmax(-1) @ v


# %% slideshow={"slide_type": "fragment"}
demo_g = torch.Generator().manual_seed(5)
centres = 3 * torch.randn(4, 8, generator=demo_g, dtype=torch.float64)
cluster = torch.randperm(32, generator=demo_g) % 4                            # (32,): cluster of each position
demo_qk = (centres[cluster] + 0.3 * torch.randn(32, 8, generator=demo_g, dtype=torch.float64))[None]  # (1, 32, 8)
demo_v = torch.randn(1, 32, 8, generator=demo_g, dtype=torch.float64)
demo_rotations = torch.randn(8, 8, 4, generator=demo_g, dtype=torch.float64)  # 8 rounds of 8 buckets
print("cluster of each position:", cluster.tolist())
print("its bucket in round 1:   ", lsh_hash(demo_qk[0], demo_rotations[0]).tolist())
exact = shared_qk_attention(demo_qk, demo_v)                                    # (1, 32, 8)
print(f"full attention: output {tuple(exact.shape)}, mean |output| {exact.abs().mean():.3f}")
for rounds in (1, 2, 4, 8):
    approx_out = lsh_attention(demo_qk, demo_v, demo_rotations[:rounds], chunk_size=8)   # (1, 32, 8)
    print(f"{rounds} round(s), 4 chunks of 8: output {tuple(approx_out.shape)}, "
          f"mean |LSH - full attention| {(approx_out - exact).abs().mean():.3f}")


# %% nbgrader={"grade": true, "grade_id": "test_lsh_attention", "locked": true, "points": 4.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""LSH attention is shared-QK attention over the pairs its rule allows (one chunk: same bucket; two buckets in chunks of 4), in memory linear in n."""
torch.manual_seed(0)
qk, v = torch.randn(2, 16, 8, dtype=torch.float64), torch.randn(2, 16, 8, dtype=torch.float64)
rotations = torch.randn(3, 8, 2, dtype=torch.float64)
buckets = lsh_hash(qk, rotations[0])                                         # (2, 16)
same_bucket = buckets[:, :, None] == buckets[:, None, :]                     # (2, 16, 16)
for causal in (False, True):
    got = lsh_attention(qk, v, rotations[:1], chunk_size=16, causal=causal)
    assert_close(got, shared_qk_attention(qk, v, causal, allowed=same_bucket),
                 f"one chunk, one round, causal={causal}: expected full attention restricted to same-bucket pairs "
                 "(the prompt's single-chunk case: keys normalised, scores over sqrt(d), own position -1e5, output in input order)",
                 atol=1e-10)
# two buckets by the sign of the first coordinate: even positions in bucket 0, odd ones in bucket 1.
# Sorted, chunks of 4 hold the even positions 0-6 and 8-14, then the odd ones 1-7 and 9-15.
two = qk[:1].clone()
two[..., 0] = 3 * torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(8)
first_axis = torch.eye(8, dtype=torch.float64)[None, :, :1]                  # (1 round, d, 1): 2 buckets
i, j = torch.arange(16)[:, None], torch.arange(16)[None, :]
allowed = (i % 2 == j % 2) & ((i >= 8) | (j < 8))                             # own bucket; own chunk or the one before
assert_close(lsh_attention(two, v[:1], first_axis, chunk_size=4), shared_qk_attention(two, v[:1], allowed=allowed),
             "two buckets, chunks of 4: a query should see its own bucket in its chunk and the chunk BEFORE it "
             "(the first chunk wraps around to the last)", atol=1e-10)
check_shape(lsh_attention(qk, v, rotations, chunk_size=4), (2, 16, 8), "output")
peaks = []
for n in (2048, 4096):                                                       # d = 16, chunks of 32, 32 buckets
    g = torch.Generator().manual_seed(n)
    long_qk, long_v = torch.randn(1, n, 16, generator=g), torch.randn(1, n, 16, generator=g)
    long_rotations = torch.randn(1, 16, 16, generator=g)
    with torch.no_grad():
        peaks.append(peak_memory(lambda: lsh_attention(long_qk, long_v, long_rotations, 32), torch.device("cpu"))[1])
assert peaks[1] < 2.5 * peaks[0], (f"memory must grow linearly with n (no n x n array): peak {peaks[0] / 2**20:.1f} MiB "
                                   f"at 2,048 positions, {peaks[1] / 2**20:.1f} MiB at 4,096 (expected under 2.5x)")
### BEGIN HIDDEN TESTS
one, lse = lsh_attention_round(qk, v, rotations[0], chunk_size=4)
check_shape(lse, (2, 16), "log-sum-exp per query")
for causal in (False, True):                                                  # one chunk: the masked scores of all pairs
    scores = qk @ F.normalize(qk, dim=-1).transpose(-2, -1) / math.sqrt(8)
    hidden = ~same_bucket | (torch.ones(16, 16, dtype=torch.bool).triu(1) if causal else False)
    scores = scores.masked_fill(hidden, torch.finfo(scores.dtype).min).masked_fill(torch.eye(16, dtype=torch.bool), -1e5)
    assert_close(lsh_attention_round(qk, v, rotations[0], chunk_size=16, causal=causal)[1], scores.logsumexp(-1),
                 f"one chunk, causal={causal}: lse is the log-sum-exp of each query's masked scores, in the input order", atol=1e-8)
first = lsh_attention(qk, v, rotations[:1], chunk_size=4)
assert_close(first, one, "one round = lsh_attention_round", atol=1e-10)
o2, l2 = lsh_attention_round(qk, v, rotations[1], chunk_size=4)
w = torch.softmax(torch.stack([lse, l2]), 0).unsqueeze(-1)
assert_close(lsh_attention(qk, v, rotations[:2], chunk_size=4), w[0] * one + w[1] * o2, "rounds weighted by softmax of lse", atol=1e-10)
causal_out = lsh_attention(qk, v, rotations, chunk_size=4, causal=True)
later = v.clone()
later[:, 10:] = 100.0
assert_close(lsh_attention(qk, later, rotations, chunk_size=4, causal=True)[:, :10], causal_out[:, :10],
             "causal: positions never see later values", atol=1e-8)
permute = torch.randperm(16)
shuffled = lsh_attention(qk[:, permute], v[:, permute], rotations[:1], chunk_size=16)
assert_close(shuffled, shared_qk_attention(qk, v, allowed=same_bucket)[:, permute], "un-sorting restores the input order", atol=1e-10)
assert_close(lsh_attention(two, v[:1], first_axis, chunk_size=4, causal=True),
             shared_qk_attention(two, v[:1], causal=True, allowed=allowed), "two buckets, chunks of 4, causal", atol=1e-10)
clustered = (12 * torch.eye(8, dtype=torch.float64)[:4]).repeat_interleave(8, dim=0)[None] + 0.3 * torch.randn(1, 32, 8, dtype=torch.float64)
values = torch.randn(1, 32, 8, dtype=torch.float64)
approx = lsh_attention(clustered, values, torch.randn(4, 8, 4, dtype=torch.float64), chunk_size=8)
assert (approx - shared_qk_attention(clustered, values)).abs().max() < 0.5, "on four orthogonal clusters of 8, LSH finds most of the mass"
# every position in one bucket: sorted order is sequence order, so chunk k sees chunks k and k - 1 (0 sees the last)
base = torch.randn(8, dtype=torch.float64)
one_bucket = base + 0.01 * torch.randn(1, 16, 8, dtype=torch.float64)
towards = (base / base.norm())[:, None]                                     # (d, 1): two buckets, all in 0
assert (lsh_hash(one_bucket, towards) == 0).all()
chunk = torch.arange(16) // 4
allowed = (chunk[None, :] == chunk[:, None]) | (chunk[None, :] == (chunk[:, None] - 1) % 4)
assert_close(lsh_attention(one_bucket, values[:, :16], towards[None], chunk_size=4),
             shared_qk_attention(one_bucket, values[:, :16], allowed=allowed),
             "one bucket, chunks of 4: each chunk attends to itself and the chunk before", atol=1e-10)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_3_reversible_residual", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 4 · Exercise 3: reversible residual blocks (3 points)
#
# A reversible block (Gomez et al., 2017) splits the activations in two halves and computes
#
# $$y_1 = x_1 + F(x_2),\qquad y_2 = x_2 + G(y_1)$$
#
# which can be **inverted** exactly: $x_2 = y_2 - G(y_1)$, $x_1 = y_1 - F(x_2)$. So the inputs of every
# layer can be recomputed from its outputs during the backward pass, and need not be stored.
# Complete `ReversibleBlock(f, g)` with `forward(x1, x2) -> (y1, y2)` and `inverse(y1, y2) -> (x1, x2)`.
#
# <details><summary>Hint 1</summary>
#
# Each half is updated from the other half only: that is what lets you undo it.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Undo the steps in the opposite order: recover `x2` first from what you know (`y1`, `y2`), then `x1`.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "reversible_block", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class ReversibleBlock(nn.Module):
    """y1 = x1 + f(x2), y2 = x2 + g(y1), and its exact inverse."""

    def __init__(self, f: nn.Module, g: nn.Module) -> None:
        super().__init__()
        self.f, self.g = f, g

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ### BEGIN SOLUTION
        y1 = x1 + self.f(x2)
        return y1, x2 + self.g(y1)
        ### END SOLUTION

    def inverse(self, y1: torch.Tensor, y2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ### BEGIN SOLUTION
        x2 = y2 - self.g(y1)
        return y1 - self.f(x2), x2
        ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "blocks", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
def feed_forward(d: int) -> nn.Module:
    return nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))


def make_blocks(n_layers: int, d: int) -> nn.ModuleList:
    """Reversible blocks with feed-forward F and G (attention would do as well)."""
    return nn.ModuleList(ReversibleBlock(feed_forward(d), feed_forward(d)) for _ in range(n_layers))


# %% slideshow={"slide_type": "fragment"}
with torch.random.fork_rng():
    torch.manual_seed(0)
    demo_blocks = make_blocks(8, 32)                                           # float32
    demo_x1, demo_x2 = torch.randn(1, 4, 32), torch.randn(1, 4, 32)
with torch.no_grad():
    demo_y1, demo_y2 = demo_blocks[0](demo_x1, demo_x2)
    back1, back2 = demo_blocks[0].inverse(demo_y1, demo_y2)
    print(f"one block: y1 {tuple(demo_y1.shape)}, y2 {tuple(demo_y2.shape)}; "
          f"mean |y1 - x1| = {(demo_y1 - demo_x1).abs().mean():.2f}, mean |y2 - x2| = {(demo_y2 - demo_x2).abs().mean():.2f}")
    print(f"inverse(forward(x)): largest error {max((back1 - demo_x1).abs().max(), (back2 - demo_x2).abs().max()):.1e}")
    deep1, deep2 = demo_x1, demo_x2
    for block in demo_blocks:
        deep1, deep2 = block(deep1, deep2)
    for block in reversed(demo_blocks):
        deep1, deep2 = block.inverse(deep1, deep2)
    print(f"8 blocks forward, then inverted: largest error {max((deep1 - demo_x1).abs().max(), (deep2 - demo_x2).abs().max()):.1e} "
          "(float32 rounding; in exact arithmetic it is 0)")


# %% nbgrader={"grade": true, "grade_id": "test_reversible_block", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""The inverse restores the inputs to 1e-10 in float64, through a stack of blocks too."""
torch.manual_seed(0)
blocks = make_blocks(4, 16).double()
x1, x2 = torch.randn(2, 5, 16, dtype=torch.float64), torch.randn(2, 5, 16, dtype=torch.float64)
with torch.no_grad():
    y1, y2 = blocks[0](x1, x2)
    assert_close(y1, x1 + blocks[0].f(x2), "forward: y1 should be x1 + F(x2): which half does F read?", atol=1e-12)
    assert_close(y2, x2 + blocks[0].g(y1), "forward: y2 should be x2 + G(y1): G reads the new half y1, not x1", atol=1e-12)
    r1, r2 = blocks[0].inverse(y1, y2)
    assert_close(r1, x1, "inverse(forward(x1, x2)) does not give back x1: check the signs and which halves F and G read in inverse", atol=1e-10)
    assert_close(r2, x2, "inverse(forward(x1, x2)) does not give back x2: undo y2 = x2 + G(y1) first", atol=1e-10)
### BEGIN HIDDEN TESTS
with torch.no_grad():
    a, b = x1, x2
    for block in blocks:
        a, b = block(a, b)
    for block in reversed(blocks):
        a, b = block.inverse(a, b)
assert_close(a, x1, "four blocks forward then inverted", atol=1e-10)
assert_close(b, x2, "four blocks forward then inverted", atol=1e-10)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_4_recompute_instead", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 5 · Exercise 4: recompute instead of store (3 points)
#
# Autograd normally **saves** every block's inputs for the backward pass: memory grows with depth.
# Complete the custom `torch.autograd.Function` `ReversibleStack`: `forward` runs the blocks under
# `torch.no_grad()` and saves **only the final outputs**; `backward` walks the blocks in reverse,
# recovers each block's inputs with `inverse` (no gradient), re-runs that block with gradient
# enabled on detached inputs, and back-propagates the incoming gradients through it
# (`torch.autograd.backward`), which also fills the parameters' `.grad`; the inputs' gradients
# become the incoming gradients of the previous block.
# `reversible_stack(blocks, x1, x2)` is how it is called. The test compares every gradient with the
# ordinary computation's and counts what autograd saves with `saved_bytes` (given after the try-it
# cell): the same bytes for 2 blocks as for 8, and no more than the two outputs.
#
# <details><summary>Hint 1</summary>
#
# The last block's outputs are saved; every earlier activation can be rebuilt from them, one block at a time, from the last block to the first.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# For one block: inverse without gradient, then a fresh forward on detached inputs that require grad, then back-propagate the incoming gradients through it; its inputs' `.grad` and its inputs themselves are what the next (earlier) block needs.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "reversible_stack", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class ReversibleStack(torch.autograd.Function):
    """Run reversible blocks storing only the outputs; recompute activations in the backward pass."""

    @staticmethod
    def forward(ctx, x1: torch.Tensor, x2: torch.Tensor, blocks: nn.ModuleList, *parameters: torch.Tensor):
        ### BEGIN SOLUTION
        with torch.no_grad():
            for block in blocks:
                x1, x2 = block(x1, x2)
        ctx.blocks = blocks
        ctx.save_for_backward(x1, x2)
        return x1, x2
        ### END SOLUTION

    @staticmethod
    def backward(ctx, grad_y1: torch.Tensor, grad_y2: torch.Tensor):
        ### BEGIN SOLUTION
        y1, y2 = ctx.saved_tensors
        for block in reversed(ctx.blocks):
            with torch.no_grad():
                x1, x2 = block.inverse(y1, y2)
            with torch.enable_grad():
                x1, x2 = x1.detach().requires_grad_(), x2.detach().requires_grad_()
                out1, out2 = block(x1, x2)
                torch.autograd.backward((out1, out2), (grad_y1, grad_y2))
            grad_y1, grad_y2 = x1.grad, x2.grad
            y1, y2 = x1.detach(), x2.detach()
        return (grad_y1, grad_y2, None) + (None,) * len(ctx.needs_input_grad[3:])
        ### END SOLUTION


def reversible_stack(blocks: nn.ModuleList, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return ReversibleStack.apply(x1, x2, blocks, *blocks.parameters())


# %% slideshow={"slide_type": "fragment"}
with torch.random.fork_rng():
    torch.manual_seed(0)
    demo_blocks = make_blocks(3, 16)
    demo_x1, demo_x2 = torch.randn(2, 5, 16, requires_grad=True), torch.randn(2, 5, 16, requires_grad=True)
calls = {"F": 0, "G": 0}
hooks = [module.register_forward_hook(lambda *_, key=key: calls.__setitem__(key, calls[key] + 1))
         for block in demo_blocks for key, module in (("F", block.f), ("G", block.g))]
demo_y1, demo_y2 = reversible_stack(demo_blocks, demo_x1, demo_x2)
in_forward = dict(calls)
(demo_y1.sum() + demo_y2.sum()).backward()
for hook in hooks:
    hook.remove()
with_grad = sum(p.grad is not None for p in demo_blocks.parameters())
print(f"outputs {tuple(demo_y1.shape)}, {tuple(demo_y2.shape)}; input gradients {tuple(demo_x1.grad.shape)}, "
      f"{tuple(demo_x2.grad.shape)}; {with_grad} of {len(list(demo_blocks.parameters()))} parameters have a gradient")
print(f"calls per block: forward F {in_forward['F'] / 3:.0f}, G {in_forward['G'] / 3:.0f}; "
      f"backward F {(calls['F'] - in_forward['F']) / 3:.0f}, G {(calls['G'] - in_forward['G']) / 3:.0f} (inverse, then re-run)")


# %% nbgrader={"grade": false, "grade_id": "saved_bytes", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
def saved_bytes(fn) -> int:
    """Bytes of the tensors autograd saves for the backward pass while fn() runs."""
    total = [0]

    def pack(t: torch.Tensor):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total[0]


# %% nbgrader={"grade": true, "grade_id": "test_reversible_stack", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""Gradients equal the ordinary (stored) computation; saved activations do not grow with depth."""
torch.manual_seed(0)
blocks = make_blocks(3, 16).double()
x1, x2 = torch.randn(2, 5, 16, dtype=torch.float64, requires_grad=True), torch.randn(2, 5, 16, dtype=torch.float64, requires_grad=True)
a, b = x1, x2
for block in blocks:
    a, b = block(a, b)
(a.sum() + (b ** 2).sum()).backward()
expected = [x1.grad.clone(), x2.grad.clone()] + [p.grad.clone() for p in blocks.parameters()]
x1.grad = x2.grad = None
blocks.zero_grad(set_to_none=True)
a, b = reversible_stack(blocks, x1, x2)
(a.sum() + (b ** 2).sum()).backward()
got = [x1.grad, x2.grad] + [p.grad for p in blocks.parameters()]
for i, (e, g) in enumerate(zip(expected, got)):
    name = ("x1", "x2")[i] if i < 2 else f"parameter {i - 2} of blocks.parameters()"
    assert g is not None, (f"the gradient of {name} is missing: backward must also fill the parameters' .grad "
                           "(back-propagate through every block's parameters, not only its inputs)")
    assert_close(g, e, f"the gradient of {name} differs from the ordinary (stored) stack's: check that the blocks are "
                 "walked last to first, each block's inputs are recovered before it is re-run, and grad_y1 goes with y1", atol=1e-9)
deep, shallow = make_blocks(8, 16).double(), make_blocks(2, 16).double()
assert saved_bytes(lambda: reversible_stack(deep, x1, x2)) == saved_bytes(lambda: reversible_stack(shallow, x1, x2)), \
    "only the outputs are saved, whatever the depth"
### BEGIN HIDDEN TESTS
def plain(blocks):
    a, b = x1, x2
    for block in blocks:
        a, b = block(a, b)
    return a, b
assert saved_bytes(lambda: plain(deep)) > 3 * saved_bytes(lambda: plain(shallow)), "the ordinary stack grows (sanity)"
assert saved_bytes(lambda: reversible_stack(deep, x1, x2)) <= 2 * x1.numel() * 8 + 64, "save the two outputs, nothing else"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_5_chunked_feed", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 6 · Exercise 5: chunked feed-forward and a sliding window (4 points)
#
# * `chunked_feed_forward(ffn, x, chunk_size)`: the feed-forward layer acts on each position
#   independently, so applying it to chunks of `chunk_size` positions at a time gives the same
#   result with a `(chunk, 4d)` intermediate instead of `(n, 4d)`. Split along the sequence
#   (dim 1), apply, concatenate. (2 points)
# * `sliding_window_mask(n, window, causal=False)`: `(n, n)` boolean, True (may attend) where
#   $|i - j| \le$ `window`, and also $j \le i$ when `causal`. This is the local attention of
#   Longformer (Beltagy et al., 2020), whose window size $w$ counts both sides ($w/2$ keys on
#   each side of the query): `window` here is one side, so Longformer's $w$ is `2 * window`. (2 points)
#
# <details><summary>Hint 1</summary>
#
# `chunked_feed_forward`: `chunk_size` is a number of positions per piece, and the last piece may be shorter.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# `sliding_window_mask`: one `(n, n)` table of the signed distance from query `i` (row) to key `j` (column) gives both conditions.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "chunked_ffn", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def chunked_feed_forward(ffn: nn.Module, x: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """Apply a position-wise network chunk by chunk along the sequence (dim 1)."""
    ### BEGIN SOLUTION
    return torch.cat([ffn(chunk) for chunk in x.split(chunk_size, dim=1)], dim=1)
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
with torch.random.fork_rng():
    torch.manual_seed(0)
    demo_ffn = feed_forward(16)
demo_x = torch.randn(1, 1000, 16, generator=torch.Generator().manual_seed(0))
hidden_shapes = []
hook = demo_ffn[1].register_forward_hook(lambda module, inputs, out: hidden_shapes.append(tuple(out.shape)))
with torch.no_grad():
    whole, chunked = demo_ffn(demo_x), chunked_feed_forward(demo_ffn, demo_x, 256)
hook.remove()
print(f"output {tuple(chunked.shape)}; largest difference from ffn(x): {(chunked - whole).abs().max():.1e}")
print(f"the (..., 4d) intermediate: {hidden_shapes[0]} at once, or {hidden_shapes[1:]} one after another")


# %% nbgrader={"grade": true, "grade_id": "test_chunked_ffn", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""chunked_feed_forward equals the plain feed-forward, for chunk sizes that do and do not divide the length."""
torch.manual_seed(0)
ffn = feed_forward(16).double()
x = torch.randn(2, 13, 16, dtype=torch.float64)
for size in (1, 4, 13, 50):
    out = chunked_feed_forward(ffn, x, size)
    assert out.shape[0] == 2, f"chunk size {size}: x is (2, 13, 16), the output is {tuple(out.shape)}: split along the sequence (dim 1), not the batch"
    assert out.shape[1] >= 13, (f"chunk size {size}: x has 13 positions, the output {out.shape[1]}: "
                                "positions were lost; is the last, shorter chunk kept?")
    assert_close(out, ffn(x), f"chunk size {size}: should equal ffn(x)", atol=1e-12)
### BEGIN HIDDEN TESTS
calls = []
counting = nn.Sequential(ffn)
counting.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[1]))
chunked_feed_forward(counting, x, 5)
assert calls == [5, 5, 3], f"one call per chunk of at most 5 positions, got {calls}"
### END HIDDEN TESTS

# %% nbgrader={"grade": false, "grade_id": "sliding_window", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def sliding_window_mask(n: int, window: int, causal: bool = False) -> torch.Tensor:
    """True where |i - j| <= window (and j <= i if causal)."""
    ### BEGIN SOLUTION
    distance = torch.arange(n)[None, :] - torch.arange(n)[:, None]              # j - i
    allowed = distance.abs() <= window
    return allowed & (distance <= 0) if causal else allowed
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
fig, axes = plt.subplots(1, 2, figsize=(7, 3.4))
for ax, causal in zip(axes, (False, True)):
    window_mask = sliding_window_mask(12, 2, causal=causal)                    # (12, 12)
    ax.imshow(window_mask, cmap="Greys", vmin=0, vmax=1)
    ax.set_title(f"sliding_window_mask(12, 2, causal={causal})\n{int(window_mask.sum())} of 144 pairs allowed", fontsize=8)
    ax.set_xlabel("key j")
    ax.set_ylabel("query i")
fig.tight_layout()
plt.show()


# %% nbgrader={"grade": true, "grade_id": "test_sliding_window", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""sliding_window_mask: a band of width 2 w + 1, the lower half when causal."""
m = sliding_window_mask(5, 1)
assert m.dtype == torch.bool, f"expected a boolean mask, got {m.dtype}"
assert m[0, 1] and m[1, 0], f"sliding_window_mask(5, 1): keys at distance exactly window = 1 must be allowed (|i - j| <= window), got\n{m.int()}"
assert m.tolist() == [[True, True, False, False, False], [True, True, True, False, False],
                                              [False, True, True, True, False], [False, False, True, True, True],
                                              [False, False, False, True, True]], f"band of width 3, got\n{m.int()}"
row = sliding_window_mask(5, 1, causal=True).tolist()[2]                    # query i = 2
assert not row[3], f"causal, window 1: query 2 may see keys 1 and 2, got {row}: key 3 lies in the future (j > i)"
assert not row[0], f"causal, window 1: query 2 may see keys 1 and 2, got {row}: key 0 lies outside the window (causal keeps the band)"
assert row == [False, True, True, False, False], f"causal, window 1: query 2 may see keys 1 and 2 (j in [i - window, i]), got {row}"
### BEGIN HIDDEN TESTS
assert sliding_window_mask(6, 0).equal(torch.eye(6, dtype=torch.bool))
assert sliding_window_mask(4, 10).all() and sliding_window_mask(4, 10, causal=True).equal(torch.ones(4, 4, dtype=torch.bool).tril())
assert sliding_window_mask(9, 2).sum() == 9 * 5 - 2 * (2 + 1), "band count"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "experiment_memory_time_against", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 7 · Experiment: memory and time against length
#
# One head of width 64, batch 1, lengths 512 to 8,192. **Full** attention materialises the
# $n \times n$ score matrix; PyTorch's fused `F.scaled_dot_product_attention` does not; **LSH**
# attention (one round, up to 64 buckets, chunks of 64) builds a
# $c \times 2c$ block per chunk. Peak memory above the inputs is measured by `course_utils.memory.peak_memory`
# (the CUDA allocator's statistics on a GPU; on a CPU, an exact count of the tensors alive at once).
# Tested: at 8,192 tokens, full attention holds more than 200 MiB (its score matrix alone is 256 MiB)
# and at least 8 times the memory of your LSH attention.

# %% slideshow={"slide_type": "fragment"}
lengths = [512, 1024, 2048, 4096, 8192]
CHUNK = 64


def full_attention(q, k, v):
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)   # (1, n, n)
    return weights @ v


measured = {name: {"memory": [], "seconds": []} for name in ("full", "SDPA (fused)", "LSH")}
with torch.no_grad():
    for n in lengths:
        g = torch.Generator().manual_seed(n)
        qk, v = torch.randn(1, n, 64, generator=g).to(device), torch.randn(1, n, 64, generator=g).to(device)
        rotations = torch.randn(1, 64, min(32, n // CHUNK), generator=g).to(device)
        runs = {"full": lambda: full_attention(qk, qk, v),
                "SDPA (fused)": lambda: F.scaled_dot_product_attention(qk[:, None], qk[:, None], v[:, None]),
                "LSH": lambda: lsh_attention(qk, v, rotations, CHUNK)}
        for name, run in runs.items():
            start = time.perf_counter()
            _, peak = peak_memory(run, device)
            measured[name]["seconds"].append(time.perf_counter() - start)
            measured[name]["memory"].append(peak / 2**20)
print(f"{'length':>7} " + " ".join(f"{name:>22}" for name in measured))
for i, n in enumerate(lengths):
    print(f"{n:>7} " + " ".join(f"{m['memory'][i]:>11.1f} MiB {m['seconds'][i]:>6.2f} s" for m in measured.values()))
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for name, m in measured.items():
    axes[0].plot(lengths, [max(x, 0.1) for x in m["memory"]], "o-", label=name)
    axes[1].plot(lengths, m["seconds"], "o-", label=name)
for ax, label in zip(axes, ("peak memory (MiB)", "seconds")):
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length")
    ax.set_ylabel(label)
axes[0].legend()
plt.show()

# %% nbgrader={"grade": true, "grade_id": "test_lsh_memory", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""At 8,192 tokens LSH attention uses at most 1/8 of full attention's memory."""
full_mb, lsh_mb = measured["full"]["memory"][-1], measured["LSH"]["memory"][-1]
assert full_mb > 8 * lsh_mb, f"full {full_mb:.0f} MiB vs LSH {lsh_mb:.0f} MiB: expected at least 8x less"
### BEGIN HIDDEN TESTS
assert full_mb > 200, f"full attention at 8,192 tokens holds a 256 MiB score matrix; measured {full_mb:.0f} MiB"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_6_lsh_layer", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 8 · Exercise 6: an LSH attention layer (3 points)
#
# A model needs attention as a layer: several heads, learned projections, and a hashing that stays
# fixed while it is needed. `LSHSelfAttention(d_model, n_heads, n_buckets, chunk_size)` holds a
# LayerNorm `norm`, the shared query-key projection `w_qk` and `w_v` (both `d_model -> d_model`,
# no bias), the output projection `w_o`, and `rotations (rounds, d_head, n_buckets // 2)`, which
# `rehash(rounds, generator)` draws (`rounds=0` sets `None`: full attention). Complete `forward(x)`
# for `x (batch, n, d_model)`:
#
# 1. `h = norm(x)`; project `h` to `qk` and `v` and split each into `n_heads` heads of width
#    $d_\text{head}$ = `d_model // n_heads` (head $i$ takes features $i\,d_\text{head}$ to
#    $(i+1)\,d_\text{head} - 1$), folded into the batch: `(batch * n_heads, n, d_head)`;
# 2. **causal** attention per head: your `lsh_attention` with `self.rotations` (the same rotations
#    for every head) and `self.chunk_size`; when `self.rotations is None`, `shared_qk_attention`;
# 3. put the heads back side by side, `(batch, n, d_model)`, and apply `w_o`.
#
# Never draw rotations inside `forward`: the reversible backward pass runs every layer again and must
# hash exactly as the forward pass did, so the training loop calls `rehash` once per step.
#
# **Where this differs from the reference implementations.** `transformers`' `ReformerModel` draws
# separate rotations for every head (`(heads, d_head, rounds, n_buckets // 2)`); here every head
# hashes with the same `rotations`, which keeps them one tensor per layer. The heads still hash
# differently, since each projects its own `qk`.
#
# A caution that the tests respect: with more than one chunk, causal LSH attention never reads a
# later value, but *which* earlier keys share a query's chunk depends on every position's hash, later
# ones included (a later position in a lower bucket moves the query's place in the sorted order).
#
# <details><summary>Hint 1</summary>
#
# Heads are a reshape: split the feature axis into `(n_heads, d_head)`, then move the head axis next to the batch before folding them together.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Both paths are causal, and both use what the layer already holds (`self.rotations`, `self.chunk_size`); undo the head split in the reverse order before `w_o`.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "lsh_self_attention", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class LSHSelfAttention(nn.Module):
    """Multi-head causal self-attention with shared query-keys: LSH attention, or full attention without rotations."""

    def __init__(self, d_model: int, n_heads: int, n_buckets: int, chunk_size: int) -> None:
        super().__init__()
        self.n_heads, self.n_buckets, self.chunk_size = n_heads, n_buckets, chunk_size
        self.norm = nn.LayerNorm(d_model)
        self.w_qk = nn.Linear(d_model, d_model, bias=False)
        self.w_v = nn.Linear(d_model, d_model, bias=False)
        self.w_o = nn.Linear(d_model, d_model)
        self.rotations: torch.Tensor | None = None                              # (rounds, d_head, n_buckets // 2)

    def rehash(self, rounds: int, generator: torch.Generator | None = None) -> None:
        """Draw the rotations of `rounds` hashing rounds (0: none, full attention)."""
        d_head = self.w_qk.out_features // self.n_heads
        self.rotations = None if rounds == 0 else torch.randn(
            rounds, d_head, self.n_buckets // 2, generator=generator).to(self.w_qk.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        batch, n, d_model = x.shape
        h = self.norm(x)
        heads = lambda t: t.view(batch, n, self.n_heads, -1).transpose(1, 2).reshape(batch * self.n_heads, n, -1)
        qk, v = heads(self.w_qk(h)), heads(self.w_v(h))                        # (batch * heads, n, d_head)
        if self.rotations is None:
            out = shared_qk_attention(qk, v, causal=True)
        else:
            out = lsh_attention(qk, v, self.rotations, self.chunk_size, causal=True)
        out = out.view(batch, self.n_heads, n, -1).transpose(1, 2).reshape(batch, n, d_model)
        return self.w_o(out)
        ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
with torch.random.fork_rng():
    torch.manual_seed(0)
    demo_layer = LSHSelfAttention(32, n_heads=4, n_buckets=8, chunk_size=8)
    demo_x = torch.randn(2, 64, 32)
with torch.no_grad():
    demo_layer.rehash(0)
    full_out = demo_layer(demo_x)                                               # (2, 64, 32)
    demo_layer.rehash(2, torch.Generator().manual_seed(0))
    lsh_out, again = demo_layer(demo_x), demo_layer(demo_x)
    demo_layer.rehash(2, torch.Generator().manual_seed(1))
    other = demo_layer(demo_x)
print(f"output {tuple(lsh_out.shape)}; rotations {tuple(demo_layer.rotations.shape)} (rounds, d_head, n_buckets // 2)")
print(f"same rotations, called twice: largest difference {(again - lsh_out).abs().max():.1e}")
print(f"new rotations: mean |change| {(other - lsh_out).abs().mean():.3f}; "
      f"LSH against full attention: mean |difference| {(lsh_out - full_out).abs().mean():.3f}")


# %% nbgrader={"grade": true, "grade_id": "test_lsh_self_attention", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""LSHSelfAttention is Concat(head_1, ..., head_h) W_o, each head from its own rows of w_qk and w_v: causal, full or LSH, hashed alike on every call."""
torch.manual_seed(0)
layer = LSHSelfAttention(16, n_heads=2, n_buckets=4, chunk_size=4).double()
x = torch.randn(3, 16, 16, dtype=torch.float64)


def by_head(layer: LSHSelfAttention, x: torch.Tensor, attend) -> torch.Tensor:
    """Multi-head attention as the paper writes it: each head on its own slice of the projections."""
    h, d_head = layer.norm(x), x.shape[-1] // layer.n_heads
    heads = [attend(h @ layer.w_qk.weight[i * d_head:(i + 1) * d_head].T, h @ layer.w_v.weight[i * d_head:(i + 1) * d_head].T)
             for i in range(layer.n_heads)]
    return layer.w_o(torch.cat(heads, dim=-1))


with torch.no_grad():
    layer.rehash(0)
    assert_close(layer(x), by_head(layer, x, lambda qk, v: shared_qk_attention(qk, v, causal=True)),
                 "no rotations: expected causal full attention per head after norm(x) (head i on features i * d_head to "
                 "(i + 1) * d_head - 1), heads side by side, then w_o", atol=1e-10)
    layer.rehash(2, torch.Generator().manual_seed(1))
    out = layer(x)
    assert_close(out, by_head(layer, x, lambda qk, v: lsh_attention(qk, v, layer.rotations, 4, causal=True)),
                 "2 rounds: expected causal lsh_attention per head with self.rotations and self.chunk_size "
                 "(full attention passes, so the LSH branch is at fault)", atol=1e-10)
    assert torch.equal(layer(x), out), "the same rotations must give the same output on every call"
### BEGIN HIDDEN TESTS
with torch.no_grad():
    check_shape(out, (3, 16, 16), "output (batch, n, d_model)")
    assert_close(layer(x[1:2]), out[1:2], "each sequence of the batch on its own", atol=1e-10)
    whole = LSHSelfAttention(16, n_heads=4, n_buckets=4, chunk_size=16).double()
    whole.rehash(3, torch.Generator().manual_seed(2))
    changed = x.clone()
    changed[:, 9:] = torch.randn(3, 7, 16, dtype=torch.float64)
    for rounds in (0, 3):
        whole.rehash(rounds, torch.Generator().manual_seed(2))
        assert_close(whole(changed)[:, :9], whole(x)[:, :9], f"causal ({rounds} rounds, one chunk): the future changes nothing before it", atol=1e-10)
    assert_close(whole(x), by_head(whole, x, lambda qk, v: lsh_attention(qk, v, whole.rotations, 16, causal=True)),
                 "4 heads, 3 rounds", atol=1e-10)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "reformer_model_text", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ### A small Reformer, from your parts
#
# Each layer is a `ReversibleBlock` with $F$ = your `LSHSelfAttention` and $G$ = the feed-forward
# layer run by your `chunked_feed_forward`. Both halves start as the token plus position
# embeddings; the head reads the two outputs side by side. With `reversible=True` the blocks run in
# your `ReversibleStack`; with `reversible=False` the same blocks run as an ordinary network
# (`ordinary_stack`), whose backward pass uses the activations autograd stored.

# %% nbgrader={"grade": false, "grade_id": "reformer_model", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
class ChunkedFeedForward(nn.Module):
    """G of a Reformer block: the feed-forward layer, chunk by chunk along the sequence."""

    def __init__(self, d_model: int, chunk_size: int) -> None:
        super().__init__()
        self.ffn, self.chunk_size = feed_forward(d_model), chunk_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return chunked_feed_forward(self.ffn, x, self.chunk_size)


def ordinary_stack(blocks: nn.ModuleList, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same blocks as an ordinary network: autograd stores every block's activations."""
    for block in blocks:
        x1, x2 = block(x1, x2)
    return x1, x2


class Reformer(nn.Module):
    """A causal language model of reversible blocks: F = LSH attention, G = chunked feed-forward."""

    def __init__(self, vocab: int, max_len: int, d_model: int = 64, n_heads: int = 2, n_layers: int = 1,
                 n_buckets: int = 8, chunk_size: int = 8, ffn_chunk: int = 32, reversible: bool = True) -> None:
        super().__init__()
        self.reversible = reversible
        self.embed = nn.Embedding(vocab, d_model)
        self.position = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(
            ReversibleBlock(LSHSelfAttention(d_model, n_heads, n_buckets, chunk_size), ChunkedFeedForward(d_model, ffn_chunk))
            for _ in range(n_layers))
        self.head = nn.Sequential(nn.LayerNorm(2 * d_model), nn.Linear(2 * d_model, vocab))

    def rehash(self, rounds: int, generator: torch.Generator | None = None) -> None:
        """New rotations for every layer (0 rounds: full attention)."""
        for block in self.blocks:
            block.f.rehash(rounds, generator)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.position(torch.arange(tokens.shape[1], device=tokens.device))  # (batch, n, d)
        y1, y2 = (reversible_stack if self.reversible else ordinary_stack)(self.blocks, x, x)
        return self.head(torch.cat([y1, y2], dim=-1))                          # (batch, n, vocab)


# %% [markdown] nbgrader={"grade": false, "grade_id": "experiment_duplication_task", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 9 · Experiment: the duplication task
#
# The Reformer paper tests LSH attention on a synthetic task (Kitaev et al., 2020, section 5):
# sequences `0 w 0 w`, where `w` is a random string of symbols, and a causal language model that
# predicts each token from the ones before. The first copy of `w` cannot be predicted; the second
# can be copied from the first, but only by attention that finds, for each position, the one 31
# places back (the query at position $32 + i$ predicts the token at $33 + i$, which is the token at
# $1 + i$). The paper uses length 1,024 and one layer of width 256 with 4 heads, trained for
# 150k steps. Scaled to this budget: length 64 (`w` is 31 symbols drawn from 1 to 31),
# one layer of width 64 with 2 heads, 8 buckets, chunks of 8, 500 steps of 32 sequences, the loss
# taken on the second copy only.
#
# Two models from the same initial weights: one trained with full attention, one with LSH attention
# of 2 rounds (new rotations every step). Each is evaluated with full attention and with LSH attention
# of 1, 2 and 4 rounds on 256 new sequences (4 draws of rotations each): the share of the second
# copy's tokens predicted right. One round can put a query and the key it needs in different
# buckets, and then that round cannot see the key; several independent rounds all miss it less
# often than one does.
#
# Targets (tested): for both models, LSH-1 + 3 points < LSH-2 $\le$ LSH-4, and LSH-1 below the same
# model's full-attention accuracy; the model trained with full attention, evaluated with full
# attention, above 98%; the model trained with LSH above 97% with 4 rounds and above 95% with 2, and
# at least 2 points above the full-attention model with one round.

# %% slideshow={"slide_type": "fragment"}
HALF, VOCAB = 32, 32                       # each half: the separator 0, then w (31 symbols from 1 to 31)


def duplication_batch(batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """(batch_size, 2 * HALF) sequences 0 w 0 w."""
    w = torch.randint(1, VOCAB, (batch_size, HALF - 1), generator=generator)
    zero = torch.zeros(batch_size, 1, dtype=torch.long)
    return torch.cat([zero, w, zero, w], dim=1)                                 # (batch, 64)


def second_copy(model: nn.Module, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits that predict the second copy of w, and its tokens."""
    return model(tokens)[:, HALF:-1], tokens[:, HALF + 1:]                     # (batch, 31, vocab), (batch, 31)


def train_duplication(model: Reformer, rounds: int, steps: int, seed: int, schedule_steps: int | None = None,
                      batch_size: int = 32, lr: float = 3e-3):
    """Train on the second copy with new rotations every step (rounds=0: full attention); returns the History."""
    data, hashes = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    batches = (duplication_batch(batch_size, data) for _ in itertools.count())

    def loss_fn(model: Reformer, tokens: torch.Tensor) -> torch.Tensor:
        model.rehash(rounds, hashes)                                            # once per step, forward and backward alike
        logits, targets = second_copy(model, tokens)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=schedule_steps or steps, pct_start=0.1)
    return fit(model, loss_fn, batches, optimizer, steps, device=device, scheduler=schedule,
               description=f"{'reversible' if model.reversible else 'ordinary'}, {rounds or 'full'} rounds")


def second_copy_accuracy(model: Reformer, tokens: torch.Tensor, rounds: int, draws: int = 4, seed: int = 0) -> float:
    """Share of the second copy predicted right, over `draws` draws of rotations (one for full attention)."""
    hashes, right = torch.Generator().manual_seed(seed), []
    model.eval()
    with torch.no_grad():
        for _ in range(draws if rounds else 1):
            model.rehash(rounds, hashes)
            logits, targets = second_copy(model, tokens)
            right.append((logits.argmax(-1) == targets).double().mean().item())
    return sum(right) / len(right)


print("a sequence:", duplication_batch(1, torch.Generator().manual_seed(0))[0].tolist())
start = time.perf_counter()
duplication = {}
for name, rounds in (("full attention", 0), ("LSH, 2 rounds", 2)):
    seed_everything(0)
    model = Reformer(VOCAB, 2 * HALF, n_layers=1, reversible=False).to(device)
    duplication[name] = (model, train_duplication(model, rounds, steps=500, seed=0))
test_tokens = duplication_batch(256, torch.Generator().manual_seed(1234)).to(device)
evaluated_with = {"full": 0, "LSH-1": 1, "LSH-2": 2, "LSH-4": 4}
accuracy = {name: {setting: second_copy_accuracy(model, test_tokens, rounds) for setting, rounds in evaluated_with.items()}
            for name, (model, _) in duplication.items()}
print(f"trained in {time.perf_counter() - start:.0f} s; accuracy on the second copy:")
print(f"{'trained with':>16} " + " ".join(f"{setting:>7}" for setting in evaluated_with))
for name, row in accuracy.items():
    print(f"{name:>16} " + " ".join(f"{row[setting]:>7.1%}" for setting in evaluated_with))
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for name, (_, history) in duplication.items():
    axes[0].plot(history.steps, history.losses, label=f"trained with {name}")
axes[0].set_xlabel("step")
axes[0].set_ylabel("loss on the second copy (nats)")
axes[0].legend()
width = 0.38
for k, (name, row) in enumerate(accuracy.items()):
    bars = axes[1].bar([i + (k - 0.5) * width for i in range(len(row))], [100 * a for a in row.values()], width,
                       label=f"trained with {name}")
    axes[1].bar_label(bars, fmt="%.0f", fontsize=8)
axes[1].set_xticks(range(len(evaluated_with)), [f"evaluated: {s}" for s in evaluated_with], fontsize=8)
axes[1].set_ylabel("second copy right (%)")
axes[1].set_ylim(0, 110)
axes[1].legend(fontsize=8, loc="lower right")
fig.tight_layout()
plt.show()

# %% nbgrader={"grade": true, "grade_id": "test_duplication", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""Duplication task: full attention copies the second half; with LSH attention, accuracy rises with the hashing rounds."""
for name, row in accuracy.items():
    assert row["LSH-1"] + 0.03 < row["LSH-2"] <= row["LSH-4"], f"trained with {name}: expected LSH-1 < LSH-2 <= LSH-4, got {row}"
assert accuracy["full attention"]["full"] > 0.98, f"full attention should copy: {accuracy['full attention']['full']:.1%}"
assert accuracy["LSH, 2 rounds"]["LSH-4"] > 0.97, f"the LSH model with 4 rounds: {accuracy['LSH, 2 rounds']['LSH-4']:.1%}"
### BEGIN HIDDEN TESTS
assert accuracy["LSH, 2 rounds"]["LSH-2"] > 0.95, f"the LSH model as trained (2 rounds): {accuracy['LSH, 2 rounds']['LSH-2']:.1%}"
assert all(row["LSH-1"] < row["full"] for row in accuracy.values()), f"one round misses keys that full attention sees: {accuracy}"
assert accuracy["LSH, 2 rounds"]["LSH-1"] > accuracy["full attention"]["LSH-1"] + 0.02, \
    f"trained with LSH, the model loses less with one round: {accuracy}"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "experiment_reversible_against_ordinary", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 10 · Experiment: a reversible Reformer, trained
#
# Two layers of reversible blocks, LSH attention with 2 rounds, trained on the duplication task for
# 300 steps through your `ReversibleStack`. Beside it, the same model from the same initial weights,
# run as an ordinary network, on the same batches with the same rotations, for the first 50 steps.
# The reversible backward pass recomputes what the ordinary one stored, so the two should give the
# same losses up to float32 rounding. Then memory against depth, 1 to 8 layers, for a training step
# on 8 sequences of 256 tokens: the bytes autograd saves for the backward pass (`saved_bytes`;
# a tensor saved by two operations counts twice) and the peak above what was in use before, with
# the parameters' gradients already allocated, so that what remains is activations.
#
# Targets (tested): the two models' losses within a relative $10^{-3}$ of each other over the 50
# steps; the reversible model above 95% on the second copy with 4 rounds, and better with 4 rounds
# than with 1; its saved bytes the same at every depth and its peak at 8 layers below 1.25 times
# that at 2; the ordinary model's saved bytes and peak more than 3 times larger at 8 layers than
# at 2.

# %% slideshow={"slide_type": "fragment"}
COMPARED = 50
seed_everything(0)
reformer = Reformer(VOCAB, 2 * HALF, n_layers=2, reversible=True).to(device)
twin = copy.deepcopy(reformer)
twin.reversible = False
reversible_history = train_duplication(reformer, 2, steps=300, seed=1)
ordinary_history = train_duplication(twin, 2, steps=COMPARED, seed=1, schedule_steps=300)
loss_gap = max(abs(a - b) / b for a, b in zip(reversible_history.losses, ordinary_history.losses))
reversible_accuracy = {rounds: second_copy_accuracy(reformer, test_tokens, rounds) for rounds in (1, 2, 4)}
print(f"first {COMPARED} steps: largest relative difference of the losses {loss_gap:.1e}")
print("reversible model, second copy right with 1, 2, 4 rounds: " + ", ".join(f"{a:.1%}" for a in reversible_accuracy.values()))
print(f"time per training step: reversible {1000 * reversible_history.seconds / 300:.0f} ms, "
      f"ordinary {1000 * ordinary_history.seconds / COMPARED:.0f} ms")


def training_step(model: Reformer, tokens: torch.Tensor):
    def step():
        F.cross_entropy(model(tokens)[:, :-1].flatten(0, 1), tokens[:, 1:].flatten()).backward()
    return step


depths = [1, 2, 4, 8]
stacks = {"ordinary": {"saved": [], "peak": []}, "reversible": {"saved": [], "peak": []}}
memory_tokens = torch.randint(0, VOCAB, (8, 256), generator=torch.Generator().manual_seed(0)).to(device)
for depth in depths:
    for name in stacks:
        seed_everything(0)
        model = Reformer(VOCAB, 256, n_layers=depth, reversible=name == "reversible").to(device)
        model.rehash(2, torch.Generator().manual_seed(0))
        training_step(model, memory_tokens)()                                 # allocates the gradients
        model.zero_grad(set_to_none=False)
        stacks[name]["saved"].append(saved_bytes(lambda: model(memory_tokens)))
        stacks[name]["peak"].append(peak_memory(training_step(model, memory_tokens), device)[1])
print(f"{'layers':>6} " + " ".join(f"{name + ' saved / peak':>30}" for name in stacks))
for i, depth in enumerate(depths):
    print(f"{depth:>6} " + " ".join(f"{s['saved'][i] / 2**20:>14.1f} MiB / {s['peak'][i] / 2**20:>6.1f} MiB" for s in stacks.values()))
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
axes[0].plot(reversible_history.steps, reversible_history.losses, label="reversible")
axes[0].plot(ordinary_history.steps, ordinary_history.losses, "--", label=f"ordinary (first {COMPARED} steps)")
axes[0].set_xlabel("step")
axes[0].set_ylabel("loss on the second copy (nats)")
axes[0].legend()
for name, s in stacks.items():
    axes[1].plot(depths, [b / 2**20 for b in s["saved"]], "o-", label=f"{name}: saved for backward")
    axes[1].plot(depths, [b / 2**20 for b in s["peak"]], "s--", label=f"{name}: peak of a training step")
axes[1].set_xlabel("layers")
axes[1].set_ylabel("MiB")
axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% nbgrader={"grade": true, "grade_id": "test_reversible_training", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""The reversible Reformer trains as the ordinary one does (same losses), learns the task, and its activation memory stays flat with depth."""
assert loss_gap < 1e-3, f"reversible and ordinary losses should agree to rounding over {COMPARED} steps; largest relative gap {loss_gap:.1e}"
assert reversible_accuracy[4] > 0.95, f"the reversible model should copy the second half: {reversible_accuracy}"
saved, peak = stacks["reversible"]["saved"], stacks["reversible"]["peak"]
assert len(set(saved)) == 1, f"the reversible model saves the same bytes at every depth: {saved}"
assert peak[-1] < 1.25 * peak[1], f"reversible peak should stay flat from 2 to 8 layers: {peak}"
### BEGIN HIDDEN TESTS
assert stacks["ordinary"]["peak"][-1] > 3 * stacks["ordinary"]["peak"][1], f"the ordinary model's peak grows with depth: {stacks['ordinary']['peak']}"
assert stacks["ordinary"]["saved"][-1] > 3 * stacks["ordinary"]["saved"][1]
assert reversible_accuracy[1] < reversible_accuracy[4]
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "experiment_training_memory", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 11 · Experiment: training memory against length
#
# Section 7 measured attention alone; here the whole one-layer model of section 9, a full training
# step (forward and backward) on one sequence, as the length doubles from 256 to 4,096 tokens:
# with full attention, and with LSH attention of 2 rounds (chunks of 8). Tested: from 2,048 to 4,096
# tokens, full attention's peak grows more than 3 times and LSH's less than 2.5 times, and at 4,096
# full attention's peak is more than 5 times LSH's.

# %% slideshow={"slide_type": "fragment"}
train_lengths = [256, 512, 1024, 2048, 4096]
training_peak = {"full attention": [], "LSH, 2 rounds": []}
for n in train_lengths:
    tokens = torch.randint(0, VOCAB, (1, n), generator=torch.Generator().manual_seed(n)).to(device)
    for name, rounds in (("full attention", 0), ("LSH, 2 rounds", 2)):
        seed_everything(0)
        model = Reformer(VOCAB, max(train_lengths), n_layers=1, reversible=False).to(device)
        model.rehash(rounds, torch.Generator().manual_seed(0))
        training_peak[name].append(peak_memory(training_step(model, tokens), device)[1] / 2**20)
print(f"{'length':>7} " + " ".join(f"{name:>16}" for name in training_peak))
for i, n in enumerate(train_lengths):
    print(f"{n:>7} " + " ".join(f"{p[i]:>12.1f} MiB" for p in training_peak.values()))
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, p in training_peak.items():
    ax.plot(train_lengths, p, "o-", label=name)
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xlabel("sequence length")
ax.set_ylabel("peak memory of a training step (MiB)")
ax.legend()
plt.show()

# %% nbgrader={"grade": true, "grade_id": "test_training_memory", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""Training memory: full attention's peak grows about 4x per doubling at the longest lengths, LSH's about 2x."""
full_peak, lsh_peak = training_peak["full attention"], training_peak["LSH, 2 rounds"]
assert full_peak[-1] > 3 * full_peak[-2], f"full attention from 2,048 to 4,096 tokens: {full_peak[-2]:.0f} -> {full_peak[-1]:.0f} MiB"
assert lsh_peak[-1] < 2.5 * lsh_peak[-2], f"LSH attention from 2,048 to 4,096 tokens: {lsh_peak[-2]:.0f} -> {lsh_peak[-1]:.0f} MiB"
### BEGIN HIDDEN TESTS
assert full_peak[-1] > 5 * lsh_peak[-1], f"at 4,096 tokens: full {full_peak[-1]:.0f} MiB vs LSH {lsh_peak[-1]:.0f} MiB"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "reading_results", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ### Reading the results
#
# **Attention alone** (section 7). Full attention's memory grows with $n^2$ (at 8,192 tokens the
# score matrix and its softmax take 256 MiB each, per head and batch element); LSH attention's grows
# with $n$, at the price of hashing, sorting and gathering, many small operations, and of an
# approximation. PyTorch's fused SDPA is exact and, where a fused kernel runs, stores no $n \times n$
# matrix either (the table shows what it used on your machine): it is the practical answer on modern
# hardware (FlashAttention computes exact attention in tiles without storing the
# matrix). The times are of one call each (on a CPU, while every tensor is being counted), so read
# them loosely.
#
# **The duplication task** (section 9). As in the paper's Table 2, accuracy rises with the number
# of hashing rounds: with one round, a query can miss the key 31 places back (hashed into another
# bucket, or too far away in the sorted order) and the token is lost; more rounds give it more
# chances, for both models. The model trained with LSH attention loses less with one round than the
# one trained with full attention: it learned under the hashing it is evaluated with. Full attention
# copies the second half. One difference from the paper: there, the models trained with LSH
# attention fail when evaluated with full attention; here the test only asks that the LSH-trained
# model do better with full attention than with one round, and the table shows how close to 100%
# your run comes. The paper's sequences are 16 times longer, so under full attention each query
# there meets 16 times as many keys that hashing had kept away from it; this notebook does not test
# whether that is the reason.
#
# **Reversible layers** (section 10) change how the gradients are computed, not what they are: the
# two models' losses agree to float32 rounding. The reversible model saves the same bytes whatever
# its depth (the stack's two outputs, the embeddings and the head), and its peak stays flat from 2 to
# 8 layers, while the ordinary model's grows with depth. It pays in compute: its backward pass
# inverts each block (F and G once each) and then runs it again with gradients (F and G again), so
# every block's F and G run three times per training step instead of once (the cell after exercise 4
# counts the calls; the step times above show the cost). RevNet's own backward (Gomez et al., 2017)
# gets the inputs from the re-run itself, one extra evaluation instead of two.
#
# **Training memory** (section 11): as the length doubles, the full-attention model's peak grows
# about fourfold at the longest lengths, the LSH model's about twofold.
#
# Other efficient attentions of the time: **local/sliding windows** (Longformer, BigBird, with a few
# global tokens), **low-rank** projections of keys (Linformer), **kernel** feature maps (Performer),
# and **exact tiling** (FlashAttention), which won.

# %% [markdown] nbgrader={"grade": false, "grade_id": "better_faster_transformers", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 12 · Better and faster Transformers
#
# The Reformer is one answer to attention's cost, quadratic in length. Around 2020 the work on
# Transformers went two ways. **Faster**: restrict which pairs interact (sliding windows and a few
# global tokens in Longformer; buckets of similar vectors here), approximate the softmax with a
# low-rank or random-feature kernel (Linformer, Performer), or compute exact attention with less
# memory traffic (FlashAttention, which PyTorch's `scaled_dot_product_attention` uses where it
# can). **Better at the same cost**: new pre-training objectives (ELECTRA, notebook 11), shared
# parameters (ALBERT, notebook 09), recurrence in depth (the Universal Transformer, notebook 12).
# This notebook built the sliding window, the chunked feed-forward layer and reversible layers, and
# measured `scaled_dot_product_attention` beside LSH attention; notebook 14 trades compute for
# memory the other way round, with activation checkpointing.

# %% [markdown] nbgrader={"grade": false, "grade_id": "summary", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## Summary
#
# * **Angular LSH** puts vectors at a small angle in the same bucket with high probability.
# * **LSH attention** sorts by bucket, lets each query see the keys of its own bucket in its chunk
#   and the one before, and combines several rounds by their attention mass; with one chunk it is
#   full (shared-QK) attention within each bucket. Unlike the paper's, ours does not correct for a
#   key found in several rounds.
# * On the paper's **duplication task**, a small model with your LSH attention copies the second
#   half; its accuracy rises with the number of hashing rounds, as in the paper's Table 2.
# * **Reversible blocks** let the backward pass recompute activations from outputs; a custom
#   `autograd.Function` keeps activation memory flat as depth grows, with the same gradients (the
#   same training losses, to rounding), at the price of two more evaluations of every block per
#   step (inverse and re-run).
# * **Chunking** the feed-forward layer and **sliding windows** bound the other large intermediates.

# %% [markdown] nbgrader={"grade": false, "grade_id": "further_reading", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Further reading
#
# * Kitaev, Kaiser, Levskaya (2020). *Reformer: The Efficient Transformer.* arXiv:2001.04451
# * Gomez et al. (2017). *The Reversible Residual Network.* arXiv:1707.04585
# * Andoni et al. (2015). *Practical and Optimal LSH for Angular Distance.* arXiv:1509.02897
# * Beltagy, Peters, Cohan (2020). *Longformer.* arXiv:2004.05150
# * Dao et al. (2022). *FlashAttention.* arXiv:2205.14135
# * Wang et al. (2020). *Linformer: Self-Attention with Linear Complexity.* arXiv:2006.04768
# * Choromanski et al. (2020). *Rethinking Attention with Performers.* arXiv:2009.14794
# * Tay et al. (2020). *Efficient Transformers: A Survey.* arXiv:2009.06732
#
# <!-- reading-list -->
# **From the course reading list** (`readings/reading-list.md`, mostly Chinese-language articles; links as the list gives them), by the section they go with:
#
# * with *1 · Angular locality-sensitive hashing*
#   * [Reformer: The Efficient Transformer](https://ai.googleblog.com/2020/01/reformer-efficient-transformer.html) (the Google AI blog)
# * with *12 · Better and faster Transformers*
#   * [ICLR 2020趋势分析：NLP中更好&更快的Transformer](https://zhuanlan.zhihu.com/p/143852458): ICLR 2020 trends: better and faster Transformers (zhihu)
#   * [Trends, an article on zhihu](https://zhuanlan.zhihu.com/p/141624736)
#   * [2020年NLP所有领域最新、经典、顶会、必读论文整理分享](https://zhuanlan.zhihu.com/p/143123368): a 2020 list of must-read NLP papers in every area (zhihu)
#   * [transformer三部曲](https://zhuanlan.zhihu.com/p/85612521): a Transformer trilogy (zhihu)
#   * [ICML(2020)自然语言处理（NLP）论文汇总](https://zhuanlan.zhihu.com/p/145798732): the NLP papers of ICML 2020, gathered (zhihu)
# * with the notebook as a whole
#   * [Reformer, an article on zhihu](https://zhuanlan.zhihu.com/p/115741192)
#   * [Reformer, an article on zhihu](https://zhuanlan.zhihu.com/p/105123890)
#   * [Reformer, an article on zhihu](https://www.zhihu.com/question/349958732/answer/945349902)
#   * [Reformer, an article on zhihu](https://zhuanlan.zhihu.com/p/48612853)
#   * [Reformer, an article on zhihu](https://www.zhihu.com/question/347833432/answer/836971492)
#   * [Reformer, an article on zhihu](https://zhuanlan.zhihu.com/p/120858314)
#   * [Reformer, an article on zhihu](https://zhuanlan.zhihu.com/p/99737208)
# <!-- /reading-list -->
