# ---
# jupyter:
#   celltoolbar: Slideshow
#   kernelspec:
#     display_name: Python 3 (course)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "title", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# # 05 · Positional encoding
#
# **Learning objectives.** After this notebook you can
# 1. **show** that self-attention without positions cannot tell word order apart;
# 2. **implement** sinusoidal, learned, relative (T5 buckets) and rotary position information;
# 3. **prove numerically** that sinusoidal encodings shift by a fixed rotation, and that rotary attention depends only on offsets;
# 4. **compare** the encodings on a task that needs order, at the training length and beyond it.
#
# **Prerequisites.** Notebooks 03-04 (attention, masks), `nn.Embedding`.
#
# **Estimated time.** 1.5 hours. The notebook runs in about a minute on a laptop CPU.

# %% [markdown] nbgrader={"grade": false, "grade_id": "notes_intro", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "notes"}
# Speaker notes: shuffle the words of a sentence on the slide; ask what attention would notice. Nothing.

# %% [markdown] nbgrader={"grade": false, "grade_id": "setup_text", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Setup

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
import math

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_utils import assert_close, check_shape, describe_environment, get_device, seed_everything
from course_utils.plot import show_positional_encoding
from course_utils.train import fit

seed_everything(0)
device = get_device()
print(describe_environment(device))


# %% [markdown] nbgrader={"grade": false, "grade_id": "intuition_attention_sees_bag", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 1 · Intuition: attention sees a bag of words
#
# Self-attention mixes positions with weights computed from **content** alone. Shuffle the
# input and the output is shuffled the same way: the layer is **permutation-equivariant**,
# $f(P x) = P f(x)$. "dog bites man" and "man bites dog" get the same vectors, in another order.
# Order must be added: to the input (**absolute** encodings), to the attention scores
# (**relative** biases) or to the queries and keys themselves (**rotary**).
#
# The figure: one self-attention step (scores $x_i^\top x_j / \sqrt{d}$, no positions) over random
# word vectors, for both orders. The weights are the same numbers with rows and columns
# swapped, and "dog" comes out with the same vector (up to rounding) whether it bites or is bitten.

# %% slideshow={"slide_type": "fragment"}
word_vectors = dict(zip(["dog", "bites", "man"], torch.randn(3, 8, generator=torch.Generator().manual_seed(0))))
fig, axes = plt.subplots(1, 2, figsize=(8, 3))
outputs = {}
for ax, sentence in zip(axes, ["dog bites man", "man bites dog"]):
    words = sentence.split()
    x = torch.stack([word_vectors[w] for w in words])                 # (3, 8)
    weights = torch.softmax(x @ x.T / math.sqrt(8), dim=-1)           # (3, 3)
    outputs[sentence] = dict(zip(words, weights @ x))                 # word -> its output vector
    image = ax.imshow(weights, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(3), labels=words)
    ax.set_yticks(range(3), labels=words)
    ax.set(title=f'"{sentence}"', xlabel="key", ylabel="query")
fig.colorbar(image, ax=axes, fraction=0.03)
plt.show()
gap = (outputs["dog bites man"]["dog"] - outputs["man bites dog"]["dog"]).abs().max().item()
print(f'largest difference between the two outputs for "dog": {gap:.1e}')

# %% [markdown] nbgrader={"grade": false, "grade_id": "math", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## The math
#
# Sinusoidal encoding (Vaswani et al.), for position $p$ and dimension pair $i$:
#
# $$PE_{p, 2i} = \sin(p\,\omega_i), \quad PE_{p, 2i+1} = \cos(p\,\omega_i), \quad \omega_i = 10000^{-2i/d}$$
#
# Each pair is a point on a circle turning at speed $\omega_i$; moving $k$ positions turns it by
# $k\omega_i$, a rotation that does not depend on $p$:
#
# $$PE_{p+k} = M_k\, PE_p, \qquad M_k = \operatorname{diag}\!\left(R(k\omega_0), \dots, R(k\omega_{d/2-1})\right), \quad R(\theta) = \begin{pmatrix}\cos\theta & \sin\theta\\ -\sin\theta & \cos\theta\end{pmatrix}$$
#
# Rotary embeddings (RoPE) rotate each query and key pair by its own position:
# $\tilde q_m = R_m q$, $\tilde k_n = R_n k$, so $\tilde q_m^\top \tilde k_n = q^\top R_{n-m} k$ depends on $n - m$ only.
#
# | symbol | shape | meaning | code name |
# |---|---|---|---|
# | $PE$ | `(n_positions, d_model)` | absolute encoding, added to embeddings | `sinusoidal_encoding(...)` |
# | $\omega_i$ | `(d_model/2,)` | frequencies | `frequencies` |
# | $M_k$ | `(d_model, d_model)` | shift-by-$k$ map | `shift_matrix(k, d_model)` |
# | $b(n - m)$ | `(heads, q_len, k_len)` | relative position bias on scores | `RelativeBias` |
# | $R_m$ | `(d, d)`, never built | rotary: turns pair $i$ of a query or key at position $m$ by the angle $m\omega_i$ | `apply_rotary(x, positions)` |

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_1_check_permutation", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 2 · Exercise 1: check permutation equivariance (2 points)
#
# Write `is_permutation_equivariant(layer, x, permutation, atol=1e-6)`: `x` `(batch, seq, d)`,
# `permutation` a `LongTensor` `(seq,)`. Return `True` when permuting the input positions permutes
# the output positions the same way, `layer(x[:, p]) == layer(x)[:, p]` within `atol`.

# %% nbgrader={"grade": false, "grade_id": "equivariance", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def is_permutation_equivariant(layer: nn.Module, x: torch.Tensor, permutation: torch.Tensor,
                               atol: float = 1e-6) -> bool:
    """True when layer(x[:, p]) equals layer(x)[:, p] within atol."""
    ### BEGIN SOLUTION
    with torch.no_grad():
        return torch.allclose(layer(x[:, permutation]), layer(x)[:, permutation], atol=atol)
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
# Try it on four layers: two mix positions by content only, two look at where a position is.
candidates = {
    "self-attention": lambda inp: F.scaled_dot_product_attention(inp, inp, inp),
    "position-wise MLP": nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8)),
    "causal self-attention": lambda inp: F.scaled_dot_product_attention(inp, inp, inp, is_causal=True),
    "running sum over positions": lambda inp: inp.cumsum(1),
}
demo_x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(0))
demo_permutation = torch.tensor([3, 0, 4, 1, 2])
for name, candidate in candidates.items():
    print(f"{name:>27}: equivariant = {is_permutation_equivariant(candidate, demo_x, demo_permutation)}")

# %% nbgrader={"grade": true, "grade_id": "test_equivariance", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""is_permutation_equivariant: True for plain self-attention, False once positions are added."""
torch.manual_seed(0)
encoder_layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True).double().eval()
x = torch.randn(2, 7, 16, dtype=torch.float64)
perm = torch.randperm(7)
assert is_permutation_equivariant(encoder_layer, x, perm) is True, "attention without positions is equivariant"
with_positions = lambda inp: encoder_layer(inp + torch.arange(inp.shape[1], dtype=inp.dtype)[None, :, None])
assert is_permutation_equivariant(with_positions, x, perm) is False, "adding positions must break equivariance"
### BEGIN HIDDEN TESTS
assert is_permutation_equivariant(lambda inp: inp.flip(1), x, perm) is False, "a layer that reverses order is not equivariant"
assert is_permutation_equivariant(lambda inp: inp * 2, x, perm) is True
# a layer that moves position j by eps * j: equivariant within atol exactly when eps * (largest shift) <= atol
nudge = lambda eps: (lambda inp: inp + eps * torch.arange(7.0, dtype=inp.dtype)[None, :, None])
assert is_permutation_equivariant(nudge(1e-4), x, perm, atol=1e-3) is True, "differences of at most 6e-4 are within atol = 1e-3: atol must be used"
assert is_permutation_equivariant(nudge(1e-2), x, perm, atol=1e-3) is False, "differences of 1e-2 or more exceed atol = 1e-3"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_2_sinusoidal_encodings", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 3 · Exercise 2: sinusoidal encodings (3 points)
#
# Write `sinusoidal_encoding(n_positions, d_model)` -> `(n_positions, d_model)`, float32, with
# sines in the **even** columns and cosines in the **odd** ones (interleaved, as in the paper's
# formula), $\omega_i = 10000^{-2i/d}$. `d_model` is even.

# %% nbgrader={"grade": false, "grade_id": "sinusoidal", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def sinusoidal_encoding(n_positions: int, d_model: int) -> torch.Tensor:
    """PE[p, 2i] = sin(p w_i), PE[p, 2i+1] = cos(p w_i), w_i = 10000 ** (-2i / d_model)."""
    ### BEGIN SOLUTION
    positions = torch.arange(n_positions, dtype=torch.float64)[:, None]          # (n, 1)
    frequencies = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (d/2,)
    angles = positions * frequencies                                             # (n, d/2)
    encoding = torch.zeros(n_positions, d_model, dtype=torch.float64)
    encoding[:, 0::2] = angles.sin()
    encoding[:, 1::2] = angles.cos()
    return encoding.float()
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
show_positional_encoding(sinusoidal_encoding(100, 64), title="sinusoidal encoding: 100 positions, d = 64")
plt.show()

# %% nbgrader={"grade": true, "grade_id": "test_sinusoidal", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""sinusoidal_encoding: closed-form values, shape, dtype and interleaving."""
pe = sinusoidal_encoding(50, 8)
check_shape(pe, (50, 8), "encoding")
assert pe.dtype == torch.float32, f"expected float32, got {pe.dtype}"
assert_close(pe[0], torch.tensor([0.0, 1.0] * 4), "position 0: sin 0 = 0, cos 0 = 1")
assert_close(pe[1, :2], torch.tensor([math.sin(1.0), math.cos(1.0)]), "position 1, pair 0 (omega = 1)")
assert_close(pe[3, 2:4], torch.tensor([math.sin(3 * 10000 ** (-2 / 8)), math.cos(3 * 10000 ** (-2 / 8))]),
             "position 3, pair 1 (omega = 10000^(-2/8))")
### BEGIN HIDDEN TESTS
big = sinusoidal_encoding(10, 512)
assert_close(big[7, 510:], torch.tensor([math.sin(7 * 10000 ** (-510 / 512)), math.cos(7 * 10000 ** (-510 / 512))]),
             "the last pair of d = 512", atol=1e-6)
assert_close(big.pow(2).view(10, 256, 2).sum(-1), torch.ones(10, 256), "each pair lies on the unit circle", atol=1e-6)
assert_close(sinusoidal_encoding(3, 4)[2], torch.tensor([math.sin(2), math.cos(2), math.sin(0.02), math.cos(0.02)]),
             "d = 4: omega_1 = 10000^(-1/2) = 0.01", atol=1e-6)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_3_shifting_rotation", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 4 · Exercise 3: shifting is a rotation (3 points)
#
# Write `shift_matrix(k, d_model)` returning $M_k$ `(d_model, d_model)` (float64) so that
# `sinusoidal_encoding(n, d)[p + k] == M_k @ sinusoidal_encoding(n, d)[p]` for **every** p.
# Build it from $2 \times 2$ blocks on the diagonal (`torch.block_diag`).

# %% nbgrader={"grade": false, "grade_id": "shift_matrix", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def shift_matrix(k: int, d_model: int) -> torch.Tensor:
    """Block-diagonal M_k with PE(p + k) = M_k PE(p), shape (d_model, d_model)."""
    ### BEGIN SOLUTION
    frequencies = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    blocks = []
    for theta in (k * frequencies).tolist():
        c, s = math.cos(theta), math.sin(theta)
        # (sin(a + t), cos(a + t)) = (sin a cos t + cos a sin t, cos a cos t - sin a sin t)
        blocks.append(torch.tensor([[c, s], [-s, c]], dtype=torch.float64))
    return torch.block_diag(*blocks)
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
# Try it: M_5 for d = 8 is four 2 x 2 rotations on the diagonal; it carries PE(10) to PE(15).
m5 = shift_matrix(5, 8)
encodings = sinusoidal_encoding(20, 8).double()
fig, ax = plt.subplots(figsize=(6, 2.5))
image = ax.imshow(m5, cmap="RdBu", vmin=-1, vmax=1)
ax.set(title="shift_matrix(5, 8)", xticks=range(8), yticks=range(8))
fig.colorbar(image, ax=ax)
plt.show()
print("M_5 PE(10):", (m5 @ encodings[10]).numpy().round(3).tolist())
print("PE(15):    ", encodings[15].numpy().round(3).tolist())

# %% nbgrader={"grade": true, "grade_id": "test_shift_matrix", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""shift_matrix: M_k maps every position's encoding to the one k positions later."""
pe = sinusoidal_encoding(200, 16).double()
for k in (1, 5, 37):
    m = shift_matrix(k, 16)
    check_shape(m, (16, 16), f"M_{k}")
    assert_close(pe[:200 - k] @ m.T, pe[k:], f"PE(p + {k}) = M_{k} PE(p) for every p", atol=1e-5)
### BEGIN HIDDEN TESTS
m3 = shift_matrix(3, 8)
assert_close(m3 @ m3.T, torch.eye(8, dtype=torch.float64), "M_k is orthogonal (a rotation)", atol=1e-12)
assert_close(shift_matrix(2, 8) @ shift_matrix(3, 8), shift_matrix(5, 8), "M_2 M_3 = M_5", atol=1e-12)
assert_close(shift_matrix(0, 6), torch.eye(6, dtype=torch.float64), "M_0 = I", atol=1e-12)
assert (shift_matrix(4, 8)[0, 2:] == 0).all(), "block diagonal: pairs do not mix"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_4_learned_position", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 5 · Exercise 4: learned position embeddings (2 points)
#
# Write `LearnedPositions(max_len, d_model)`: an `nn.Embedding(max_len, d_model)` named
# `positions`; `forward(x)` adds the first `seq` rows to `x` `(batch, seq, d_model)`, and every
# row it uses learns (position 0 is a real position, not padding). A sequence
# longer than `max_len` raises `ValueError` with a message naming both numbers: a learned
# table has nothing to say about positions it never saw.

# %% nbgrader={"grade": false, "grade_id": "learned_positions", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class LearnedPositions(nn.Module):
    """Adds a learned vector per position (GPT-2, BERT)."""

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        self.positions = nn.Embedding(max_len, d_model)
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (batch, seq, d_model) + positions[:seq]."""
        ### BEGIN SOLUTION
        seq = x.shape[1]
        if seq > self.positions.num_embeddings:
            raise ValueError(f"sequence of {seq} positions, but only {self.positions.num_embeddings} were learned")
        return x + self.positions(torch.arange(seq, device=x.device))    # (batch, seq, d_model)
        ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
# Try it: a table of 8 positions, used by a sequence of 5 and then by one of 9.
demo_positions = LearnedPositions(max_len=8, d_model=3)
print("shape for 5 positions:", tuple(demo_positions(torch.zeros(2, 5, 3)).shape))
try:
    demo_positions(torch.zeros(1, 9, 3))
    print("no error for 9 positions?")
except ValueError as error:
    print("9 positions:", error)

# %% nbgrader={"grade": true, "grade_id": "test_learned_positions", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""LearnedPositions: adds row p at position p, and refuses sequences longer than max_len."""
layer = LearnedPositions(10, 4)
x = torch.zeros(2, 6, 4)
assert_close(layer(x)[1], layer.positions.weight[:6].detach(), "zeros in: the position rows out")
try:
    layer(torch.zeros(1, 11, 4))
    raise AssertionError("a sequence of 11 > 10 positions must raise ValueError")
except ValueError as error:
    assert "11" in str(error) and "10" in str(error), f"the message must name 11 and 10: {error}"
### BEGIN HIDDEN TESTS
layer(torch.randn(3, 10, 4)).sum().backward()
assert layer.positions.weight.grad is not None and layer.positions.weight.grad[:10].abs().sum() > 0, "positions must learn"
# every used row learns, the first one included: d/d row p of sum(out * g) is the batch sum of g at p
layer = LearnedPositions(10, 4)
upstream = torch.randn(3, 7, 4)
(layer(torch.randn(3, 7, 4)) * upstream).sum().backward()
grad = layer.positions.weight.grad
assert grad is not None, "no gradient reaches the position table"
assert_close(grad[:7], upstream.sum(0), "the gradient of row p is the batch's upstream gradient at position p "
             "(row 0 too: position 0 is not a padding row)", atol=1e-5)
assert (grad[7:] == 0).all(), "rows past the sequence get no gradient"
assert layer.positions.weight[0].abs().sum() > 0, "row 0 starts random like every other row, not as a zero padding row"
y = torch.randn(1, 3, 4)
assert_close(layer(y) - y, layer.positions.weight[:3].detach()[None], "added, not concatenated or multiplied")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_5_t5_relative", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 6 · Exercise 5: T5's relative position buckets (3 points)
#
# T5 adds a learned scalar per head to each attention score, chosen by the **bucket** of the
# relative position $r = n - m$ (key minus query). With `bidirectional=True` (T5's encoder)
# `buckets_per_side = num_buckets // 2`: keys at or before the query use buckets
# `0 .. buckets_per_side - 1` by the distance $|r|$, keys after it ($r > 0$) the same buckets shifted by
# `buckets_per_side`. With `bidirectional=False` (T5's decoder, which only looks back)
# `buckets_per_side = num_buckets`, all for the past: the distance is $\max(-r, 0)$, so keys after the
# query fall in bucket 0. Within a side, a distance $\delta$ below `max_exact = buckets_per_side // 2`
# gets bucket $\delta$; larger ones share **logarithmically** wider buckets up to `max_distance`,
# beyond which everything falls in the last bucket of the side:
#
# $$\text{bucket}(\delta) = \text{max\_exact} + \left\lfloor \frac{\log(\delta / \text{max\_exact})}{\log(\text{max\_distance} / \text{max\_exact})} (\text{buckets\_per\_side} - \text{max\_exact}) \right\rfloor, \text{ capped at buckets\_per\_side} - 1$$
#
# Write `t5_bucket(relative, num_buckets=32, max_distance=128, bidirectional=True)` (`relative`
# is a LongTensor of $n - m$) and `RelativeBias(num_heads, num_buckets=32, max_distance=128,
# bidirectional=True)` whose `forward(q_len, k_len)` returns `(num_heads, q_len, k_len)`: entry
# `[h, m, n]` is head `h`'s bias for the bucket of $n - m$, from an `nn.Embedding(num_buckets, num_heads)` named `bias`.

# %% nbgrader={"grade": false, "grade_id": "relative_bias", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def t5_bucket(relative: torch.Tensor, num_buckets: int = 32, max_distance: int = 128,
              bidirectional: bool = True) -> torch.Tensor:
    """T5's bucket of each relative position (key - query)."""
    ### BEGIN SOLUTION
    buckets = torch.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative > 0).long() * num_buckets
        distance = relative.abs()
    else:
        distance = (-relative).clamp(min=0)
    max_exact = num_buckets // 2
    scaled = torch.log(distance.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + (scaled * (num_buckets - max_exact)).long()
    large = large.clamp(max=num_buckets - 1)
    return buckets + torch.where(distance < max_exact, distance, large)
    ### END SOLUTION


class RelativeBias(nn.Module):
    """A learned bias per head and relative-position bucket, added to attention scores."""

    def __init__(self, num_heads: int, num_buckets: int = 32, max_distance: int = 128,
                 bidirectional: bool = True) -> None:
        super().__init__()
        self.num_buckets, self.max_distance, self.bidirectional = num_buckets, max_distance, bidirectional
        self.bias = nn.Embedding(num_buckets, num_heads)

    def forward(self, q_len: int, k_len: int) -> torch.Tensor:
        """(num_heads, q_len, k_len) bias."""
        ### BEGIN SOLUTION
        device = self.bias.weight.device
        relative = torch.arange(k_len, device=device)[None, :] - torch.arange(q_len, device=device)[:, None]
        buckets = t5_bucket(relative, self.num_buckets, self.max_distance, self.bidirectional)  # (q, k)
        return self.bias(buckets).permute(2, 0, 1)                       # (heads, q, k)
        ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
# Try it: the bucket of every (query, key) pair over 40 positions, with 16 buckets up to distance 20.
offsets = torch.arange(40)[None, :] - torch.arange(40)[:, None]        # (q, k): n - m
fig, axes = plt.subplots(1, 2, figsize=(7, 2.8))
for ax, bidirectional in zip(axes, (True, False)):
    image = ax.imshow(t5_bucket(offsets, num_buckets=16, max_distance=20, bidirectional=bidirectional), cmap="tab20")
    ax.set(title=f"bidirectional={bidirectional}", xlabel="key n", ylabel="query m")
    fig.colorbar(image, ax=ax, fraction=0.046)
fig.tight_layout()
plt.show()
print("buckets for n - m = -10 .. 10:", t5_bucket(torch.arange(-10, 11), num_buckets=16, max_distance=20).tolist())
print("RelativeBias(num_heads=2)(3, 4) has shape", tuple(RelativeBias(num_heads=2)(3, 4).shape))

# %% nbgrader={"grade": true, "grade_id": "test_relative_bias", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""t5_bucket: exact small offsets, log buckets further away, a last bucket beyond max_distance."""
r = torch.tensor([-3, -1, 0, 1, 3, 7, 8, 12, 40, 127, 1000])
got = t5_bucket(r, num_buckets=32, max_distance=128)
# per side 16 buckets, max_exact 8; keys after the query (r > 0) use buckets 16..31
assert got[:5].tolist() == [3, 1, 0, 17, 19], f"small offsets: {got[:5].tolist()}"
assert got[5].item() == 16 + 7 and got[6].item() == 16 + 8, f"7 is exact, 8 starts the log range: {got[5:7].tolist()}"
assert got[-1].item() == 31 and got[-2].item() == 31, "beyond max_distance: the last bucket"
bias = RelativeBias(num_heads=3)
check_shape(bias(5, 6), (3, 5, 6), "bias (heads, q_len, k_len)")
### BEGIN HIDDEN TESTS
# log range: 12 -> 8 + floor(log(12/8)/log(16) * 8) = 8 + 1 = 9; 40 -> 8 + floor(log(5)/log(16) * 8) = 8 + 4 = 12
assert got[7].item() == 16 + 9 and got[8].item() == 16 + 12, f"log buckets: {got[7:9].tolist()}"
causal = t5_bucket(torch.tensor([-1, -5, 2, -20]), num_buckets=32, max_distance=128, bidirectional=False)
# unidirectional: 32 buckets for the past, max_exact 16; future offsets fall in bucket 0
assert causal.tolist() == [1, 5, 0, 16 + int(math.log(20 / 16) / math.log(8) * 16)], f"unidirectional: {causal.tolist()}"
b = bias(4, 4)
assert torch.equal(b[:, 0, 1], b[:, 2, 3]) and torch.equal(b[:, 1, 0], b[:, 3, 2]), "the bias depends only on the offset"
assert not torch.equal(b[:, 0, 1], b[:, 1, 0]), "bidirectional: before and after differ"
# entry [h, m, n] uses the bucket of n - m (key minus query): +3 -> bucket 19, -3 -> bucket 3
assert torch.equal(b[:, 0, 3], bias.bias.weight[19]), "query 0, key 3: r = n - m = +3 must use bucket 19 (key minus query)"
assert torch.equal(b[:, 3, 0], bias.bias.weight[3]), "query 3, key 0: r = n - m = -3 must use bucket 3 (key minus query)"
one_way = RelativeBias(num_heads=2, bidirectional=False)
c = one_way(3, 3)
assert torch.equal(c[:, 0, 2], one_way.bias.weight[0]) and torch.equal(c[:, 2, 0], one_way.bias.weight[2]), \
    "RelativeBias(bidirectional=False): a key 2 after the query uses bucket 0, one 2 before it bucket 2"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_6_rotary_embeddings", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 7 · Exercise 6: rotary embeddings (3 points)
#
# Write `apply_rotary(x, positions)`: `x` `(..., seq, d)` (queries or keys), `positions` `(seq,)`.
# Rotate each pair $(x_{2i}, x_{2i+1})$ at position $m$ by the angle $m\,\omega_i$
# ($\omega_i = 10000^{-2i/d}$): $(x_{2i}\cos - x_{2i+1}\sin,\; x_{2i}\sin + x_{2i+1}\cos)$.
# Then $\langle \text{rot}(q, m), \text{rot}(k, n)\rangle$ depends only on $n - m$.

# %% nbgrader={"grade": false, "grade_id": "rotary", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def apply_rotary(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x_2i, x_2i+1) at position m by m * 10000 ** (-2i / d)."""
    ### BEGIN SOLUTION
    d = x.shape[-1]
    frequencies = 10000.0 ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float64) / d)  # (d/2,)
    angles = (positions.to(torch.float64)[:, None] * frequencies).to(x.dtype)   # (seq, d/2)
    cos, sin = angles.cos(), angles.sin()
    even, odd = x[..., 0::2], x[..., 1::2]                                       # (..., seq, d/2)
    rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)  # (..., seq, d/2, 2)
    return rotated.flatten(-2)                                                   # (..., seq, d)
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
# Try it: one query vector and one key vector placed at every position m and n; their score after rotation.
g = torch.Generator().manual_seed(1)
one_query, one_key = torch.randn(1, 16, generator=g), torch.randn(1, 16, generator=g)
places = torch.arange(24)
rotated_scores = apply_rotary(one_query.expand(24, 16), places) @ apply_rotary(one_key.expand(24, 16), places).T
fig, ax = plt.subplots(figsize=(6, 2.5))
image = ax.imshow(rotated_scores, cmap="RdBu")
ax.set(title="score(query at m, key at n); look for diagonals", xlabel="key position n", ylabel="query position m")
fig.colorbar(image, ax=ax)
plt.show()

# %% nbgrader={"grade": true, "grade_id": "test_rotary", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""apply_rotary: the score between a query at m and a key at n depends only on n - m."""
g = torch.Generator().manual_seed(0)
q, k = torch.randn(16, dtype=torch.float64, generator=g), torch.randn(16, dtype=torch.float64, generator=g)
def score(m, n):
    return (apply_rotary(q[None], torch.tensor([m])) @ apply_rotary(k[None], torch.tensor([n])).T).item()
for m, n, shift in [(0, 3, 5), (7, 2, 11), (4, 4, 30)]:
    assert abs(score(m, n) - score(m + shift, n + shift)) < 1e-9, f"score({m},{n}) must equal score({m + shift},{n + shift})"
assert abs(score(0, 0) - (q @ k).item()) < 1e-12, "position 0 leaves vectors unchanged"
### BEGIN HIDDEN TESTS
batch = torch.randn(2, 3, 5, 8, dtype=torch.float64, generator=g)
rotated = apply_rotary(batch, torch.arange(5))
check_shape(rotated, (2, 3, 5, 8), "(batch, heads, seq, d_head)")
assert_close(rotated.norm(dim=-1), batch.norm(dim=-1), "rotations keep lengths", atol=1e-12)
first = apply_rotary(torch.tensor([[1.0, 0.0, 1.0, 0.0]], dtype=torch.float64), torch.tensor([2]))
assert_close(first, torch.tensor([[math.cos(2), math.sin(2), math.cos(0.02), math.sin(0.02)]], dtype=torch.float64),
             "pair i turns by position * 10000^(-2i/d)", atol=1e-12)
assert abs(score(0, 5) - score(0, 6)) > 1e-6, "different offsets must give different scores"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "experiment_which_encoding_lets", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 8 · Experiment: which encoding lets a model use order?
#
# The task: at each position output the token **two places to its left** (or `none` for the first
# two). A 2-layer encoder (pre-LN, 4 heads, d = 64) is trained on length 16 with each kind of
# position information, then tested at length 16 and at 32. Sinusoidal and learned encodings are
# added to the input; your `RelativeBias` (T5's buckets, one table per layer) is added to the
# attention scores; rotary rotates queries and keys inside attention. Without positions the
# model can only see a bag of tokens.

# %% slideshow={"slide_type": "fragment"}
VOCAB, NONE, LENGTH = 12, 1, 16


def shift_batch(n: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(2, VOCAB, (n, length), generator=generator)
    targets = torch.full_like(tokens, NONE)
    targets[:, 2:] = tokens[:, :-2]
    return tokens, targets


class Block(nn.Module):
    def __init__(self, d: int, heads: int, kind: str) -> None:
        super().__init__()
        self.heads, self.rotary = heads, kind == "rotary"
        self.relative = RelativeBias(heads) if kind == "relative" else None
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, seq, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if self.rotary:                                                  # (batch, heads, seq, d_head)
            positions = torch.arange(seq, device=x.device)
            q, k = apply_rotary(q, positions), apply_rotary(k, positions)
        bias = None if self.relative is None else self.relative(seq, seq)  # (heads, seq, seq), added to scores
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (batch, heads, seq, d_head)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, seq, d))
        return x + self.ff(self.norm2(x))


class TinyEncoder(nn.Module):
    def __init__(self, kind: str, d: int = 64, heads: int = 4, layers: int = 2, max_len: int = LENGTH) -> None:
        super().__init__()
        self.kind = kind
        self.embed = nn.Embedding(VOCAB, d)
        self.learned = LearnedPositions(max_len, d) if kind == "learned" else None
        self.register_buffer("sinusoid", sinusoidal_encoding(512, d), persistent=False)
        self.blocks = nn.ModuleList(Block(d, heads, kind) for _ in range(layers))
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, VOCAB))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)                                           # (batch, seq, d)
        if self.kind == "sinusoidal":
            x = x + self.sinusoid[:tokens.shape[1]]
        elif self.kind == "learned":
            x = self.learned(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)                                              # (batch, seq, vocab)


@torch.no_grad()
def accuracy(model: TinyEncoder, length: int) -> float:
    tokens, targets = shift_batch(1000, length, torch.Generator().manual_seed(123))
    try:
        return (model(tokens.to(device)).argmax(-1).cpu() == targets).float().mean().item()
    except ValueError:                                                   # learned table too short
        return float("nan")


results, curves = {}, {}
for kind in ("none", "sinusoidal", "learned", "relative", "rotary"):
    seed_everything(0)
    model = TinyEncoder(kind).to(device)
    generator = torch.Generator().manual_seed(0)
    batches = [shift_batch(64, LENGTH, generator) for _ in range(50)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = fit(model, lambda m, b: F.cross_entropy(m(b[0]).flatten(0, 1), b[1].flatten()), batches, optimizer,
                  steps=400, device=device, description=kind, progress=False)
    model.eval()
    results[kind] = (accuracy(model, LENGTH), accuracy(model, 2 * LENGTH), history.seconds)
    curves[kind] = history.losses
print(f"{'positions':>11} {'length 16':>10} {'length 32':>10} {'seconds':>8}")
for kind, (short, long, seconds) in results.items():
    shown = "n/a" if math.isnan(long) else f"{long:.1%}"
    print(f"{kind:>11} {short:>10.1%} {shown:>10} {seconds:>8.1f}")

# %% slideshow={"slide_type": "fragment"}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for kind, losses in curves.items():
    axes[0].plot(losses, label=kind)
axes[0].set(xlabel="step", ylabel="loss", yscale="log", title="training")
axes[0].legend()
kinds = list(results)
axes[1].bar([i - 0.2 for i in range(len(kinds))], [results[k][0] for k in kinds], width=0.4, label="length 16 (trained)")
axes[1].bar([i + 0.2 for i in range(len(kinds))], [0 if math.isnan(results[k][1]) else results[k][1] for k in kinds],
            width=0.4, label="length 32")
axes[1].set_xticks(range(len(kinds)), labels=[f"{k}\n(no rows past 16)" if math.isnan(results[k][1]) else k for k in kinds])
axes[1].set(ylabel="accuracy", ylim=(0, 1.05), title="shift-by-two accuracy")
axes[1].legend(loc="upper left", fontsize=8)
fig.tight_layout()
plt.show()
assert results["relative"][0] >= 0.95, f"relative: expected at least 95% at length 16, got {results['relative'][0]:.1%}"
for kind in ("sinusoidal", "relative", "rotary"):
    assert results[kind][1] < results[kind][0], f"{kind}: expected a loss of accuracy at length 32, got {results[kind][:2]}"

# %% nbgrader={"grade": true, "grade_id": "test_position_experiment", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""Without positions the model fails; with sinusoidal, learned or rotary positions it reaches 95% at length 16."""
assert results["none"][0] < 0.5, f"without positions the task should be out of reach, got {results['none'][0]:.1%}"
for kind in ("sinusoidal", "learned", "rotary"):
    assert results[kind][0] >= 0.95, f"{kind}: expected at least 95% at the training length, got {results[kind][0]:.1%}"
### BEGIN HIDDEN TESTS
assert math.isnan(results["learned"][1]), "a learned table of 16 positions cannot be used at length 32"
assert results["rotary"][1] > results["none"][1], "rotary should use order at length 32 too"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "summary", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## Summary
#
# * Self-attention is **permutation-equivariant**: you checked it, and checked that positions break it.
# * **Sinusoidal** encodings move by a fixed **rotation** $M_k$ when the position moves by $k$.
# * On the shift-by-two task each of the four kinds of position information lets the model reach
#   95% at the training length; without positions it stays below 50% (checked by the graded test
#   and under the figure).
# * **Learned** positions are simple, but know nothing past `max_len`: at length 32 the model
#   cannot run at all.
# * **Relative** biases (T5) and **rotary** embeddings make attention depend on offsets. They and the
#   sinusoidal encoding run at length 32, and all three lose accuracy there (checked under the
#   figure; your table says how much). Extrapolation is not free, which is what ALiBi and later
#   work set out to fix.
# * Next: notebook 06 assembles attention, masks and positions into the Transformer.

# %% [markdown] nbgrader={"grade": false, "grade_id": "further_reading", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Further reading
#
# * Vaswani et al. (2017). *Attention Is All You Need.* arXiv:1706.03762 (section 3.5)
# * Shaw, Uszkoreit, Vaswani (2018). *Self-Attention with Relative Position Representations.* arXiv:1803.02155
# * Raffel et al. (2019). *Exploring the Limits of Transfer Learning (T5).* arXiv:1910.10683
# * Su et al. (2021). *RoFormer: Enhanced Transformer with Rotary Position Embedding.* arXiv:2104.09864
# * Press, Smith, Lewis (2021). *Train Short, Test Long (ALiBi).* arXiv:2108.12409
#
# <!-- reading-list -->
# **From the course reading list** (`readings/reading-list.md`, mostly Chinese-language articles; links as the list gives them), by the section they go with:
#
# * with *3 · Exercise 2: sinusoidal encodings*
#   * [如何理解Transformer论文中的positional encoding](https://www.zhihu.com/question/347678607): how to understand the positional encoding of the Transformer paper (zhihu)
# * with *4 · Exercise 3: shifting is a rotation*
#   * [Transformer Architecture: The Positional Encoding](https://kazemnejad.com/blog/transformer_architecture_positional_encoding/) (Amirhossein Kazemnejad's blog)
# * with *5 · Exercise 4: learned position embeddings*
#   * [BERT为何使用学习的position embedding而非正弦position encoding?](https://www.zhihu.com/question/307293465): why BERT learns its position embeddings instead of using sinusoids (zhihu)
# <!-- /reading-list -->
