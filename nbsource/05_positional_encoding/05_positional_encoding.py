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
# `permutation` a `LongTensor` `(seq,)`. Return `True` (a Python `bool`) when permuting the input
# positions permutes the output positions the same way, `layer(x[:, permutation]) == layer(x)[:, permutation]`
# within `atol`, and `False` otherwise.
#
# <details><summary>Hint 1</summary>
#
# Equivariance is $f(Px) = P f(x)$: two sides to compute, the layer's output for the permuted input, and the layer's output for the original input, permuted afterwards.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Permuting positions means indexing the seq axis (dim 1) with `permutation`; the batch stays as it is. Compare the two outputs within `atol`, with a function that gives a Python `bool`.
#
# </details>

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
"""is_permutation_equivariant: True for layers that mix positions by content only, False once positions are added."""
torch.manual_seed(0)
encoder_layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True).double().eval()
x = torch.randn(2, 7, 16, dtype=torch.float64)
perm = torch.randperm(7)
doubling = lambda inp: 2 * inp                                 # position by position: equivariant
swap = torch.tensor([1, 0, 2, 3, 4, 5, 6])                     # swaps positions 0 and 1: its own inverse
cycle = torch.tensor([1, 2, 3, 4, 5, 6, 0])                    # not its own inverse
try:
    answer = is_permutation_equivariant(doubling, x, swap)
except IndexError as error:
    raise AssertionError(f"is_permutation_equivariant(layer, x, permutation) for x (batch=2, seq=7, d=16) and a "
                         f"permutation of the 7 positions raised IndexError ({error}): the permutation reorders the "
                         "positions, the seq axis (dim 1), not the batch") from None
assert isinstance(answer, bool), (f"is_permutation_equivariant returned a {type(answer).__name__}, not a bool: "
                                  "the prompt asks for True or False, a Python bool")
assert answer is True, ("the layer x -> 2 * x works position by position, so it is equivariant, yet is_permutation_equivariant "
                        "returns False for a swap of positions 0 and 1: is layer(x) permuted too before the comparison?")
assert is_permutation_equivariant(doubling, x, cycle) is True, (
    "the layer x -> 2 * x: True for a swap of positions 0 and 1 (its own inverse), but False for the cycle "
    "[1, 2, 3, 4, 5, 6, 0]: is layer(x) permuted by permutation itself, or by its inverse?")
with torch.no_grad():
    rounding = (encoder_layer(x[:, perm]) - encoder_layer(x)[:, perm]).abs().max().item()
assert is_permutation_equivariant(encoder_layer, x, perm) is True, (
    f"nn.TransformerEncoderLayer without positions is equivariant, yet is_permutation_equivariant returns False; its "
    f"two sides differ by at most {rounding:.1e} here (rounding: the sums run in another order): is the comparison "
    "within atol?")
with_positions = lambda inp: encoder_layer(inp + torch.arange(inp.shape[1], dtype=inp.dtype)[None, :, None])
assert is_permutation_equivariant(with_positions, x, perm) is False, (
    "the same layer with each position's index added to its input is not equivariant, yet is_permutation_equivariant "
    "returns True")
small_nudge = lambda inp: inp + 1e-3 * torch.arange(7.0, dtype=inp.dtype)[None, :, None]
assert is_permutation_equivariant(small_nudge, x, perm, atol=1e-2) is True, (
    "a layer that moves position j by 1e-3 * j is equivariant within atol=1e-2 (its two sides differ by at most 6e-3), "
    "yet is_permutation_equivariant(layer, x, permutation, atol=1e-2) returns False: is atol used?")
### BEGIN HIDDEN TESTS
assert is_permutation_equivariant(lambda inp: inp.flip(1), x, perm) is False, "a layer that reverses order is not equivariant"
assert is_permutation_equivariant(lambda inp: inp * 2, x, perm) is True, "a position-wise layer (2 * x) is equivariant"
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
#
# <details><summary>Hint 1</summary>
#
# Build the angle $p\,\omega_i$ for every position and every pair at once: a column of positions times a row of frequencies, by broadcasting, gives `(n_positions, d_model / 2)`.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# In $\omega_i = 10000^{-2i/d}$, `i = 0, 1, ..., d_model / 2 - 1` numbers the pairs, so the exponents are $0, -2/d, -4/d, \dots$ Compute in float64 and convert to float32 at the end.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# Fill the even columns (a slice with step 2 from column 0) with the sines of the angles and the odd columns (step 2 from column 1) with their cosines.
#
# </details>

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
"""sinusoidal_encoding: shape, dtype, sines and cosines interleaved, positions from 0, omega_i = 10000^(-2i/d)."""
pe = sinusoidal_encoding(50, 8)
check_shape(pe, (50, 8), "sinusoidal_encoding(50, 8): (n_positions, d_model)")
assert pe.dtype == torch.float32, f"sinusoidal_encoding(50, 8) returns {pe.dtype}; the prompt asks for float32"
omega = [10000 ** (-2 * i / 8) for i in range(4)]              # the prompt's omega_i for d_model = 8


def pairs_at(p, frequencies):
    """sin and cos of p * w for each w, interleaved as the prompt writes them (closed form, one position)."""
    return torch.tensor([f(p * w) for w in frequencies for f in (math.sin, math.cos)])


row0 = [round(v, 3) for v in pe[0].tolist()]
assert not torch.allclose(pe[0], torch.tensor([1.0, 0.0] * 4), atol=1e-6), (
    f"row 0 (position 0) is {row0}: 1 in the even columns, 0 in the odd ones, so the cosines are in the even "
    "columns; the prompt puts the sines in the even columns (sin 0 = 0), the cosines in the odd ones (cos 0 = 1)")
assert not torch.allclose(pe[0], torch.tensor([0.0] * 4 + [1.0] * 4), atol=1e-6), (
    f"row 0 (position 0) is {row0}: the sines fill the first half of the columns, the cosines the second half; the "
    "prompt interleaves them: column 2i holds sin(p omega_i), column 2i + 1 holds cos(p omega_i)")
assert not torch.allclose(pe[0], pairs_at(1, omega), atol=1e-6), (
    f"row 0 is {row0}, the encoding of position 1: rows count positions from 0, and at position 0 every pair "
    "is (sin 0, cos 0) = (0, 1)")
assert_close(pe[0], torch.tensor([0.0, 1.0] * 4), "row 0 (position 0): sin 0 = 0 in the even columns, cos 0 = 1 in the odd ones")
assert_close(pe[1, :2], pairs_at(1, omega[:1]), "row 1, pair 0 (columns 0 and 1, omega_0 = 1): (sin 1, cos 1)")
for i in range(1, 4):
    found = pe[3, 2 * i:2 * i + 2]
    columns = f"row 3, pair {i} (columns {2 * i} and {2 * i + 1})"
    assert not torch.allclose(found, pairs_at(3, [10000 ** (-i / 8)]), atol=1e-6), (
        f"{columns} turns by 10000^(-{i}/8) per position, expected omega_{i} = 10000^(-{2 * i}/8): in "
        "omega_i = 10000^(-2i/d), is i the pair's number (columns 2i and 2i + 1) or a column's?")
    assert not torch.allclose(found, pairs_at(3, [10000 ** (2 * i / 8)]), atol=1e-6), (
        f"{columns} turns by 10000^(+{2 * i}/8) per position, faster than pair 0; omega_i = 10000^(-2i/d) gets "
        "smaller as i grows: check the sign of the exponent")
    assert_close(found, pairs_at(3, omega[i:i + 1]), f"{columns}: (sin, cos) of 3 omega_{i}, omega_{i} = 10000^(-{2 * i}/8)")
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
#
# <details><summary>Hint 1</summary>
#
# Pair $i$ of $PE_p$ is $(\sin a, \cos a)$ with $a = p\,\omega_i$; $k$ positions later it is $(\sin(a + t), \cos(a + t))$ with $t = k\,\omega_i$. Expand both with the angle-sum formulas.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Read the $2 \times 2$ block off that expansion: its first row makes the new sine from $(\sin a, \cos a)$, its second row the new cosine. With $t = 0$ your block must be the identity.
#
# </details>

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
m1 = shift_matrix(1, 16)
check_shape(m1, (16, 16), "shift_matrix(1, 16): (d_model, d_model)")
assert not torch.allclose(shift_matrix(5, 16), m1), (
    "shift_matrix(5, 16) equals shift_matrix(1, 16): moving 5 positions turns each pair 5 times as far as moving 1; "
    "is k used?")
m0 = shift_matrix(0, 16)
if not torch.allclose(m0, torch.eye(16, dtype=torch.float64), atol=1e-12):
    corner = [[round(v, 3) for v in row] for row in m0[:2, :2].tolist()]
    assert not torch.allclose(m0.diagonal(), torch.zeros(16, dtype=torch.float64), atol=1e-12), (
        f"shift_matrix(0, 16) should be the identity (PE(p + 0) = PE(p)), but its first block is {corner}, 0 on the "
        "diagonal: a turn by 0 has cos 0 = 1 on the diagonal and sin 0 = 0 off it; are cos and sin in each other's places?")
    raise AssertionError(f"shift_matrix(0, 16) should be the identity, PE(p + 0) = PE(p); its first block is {corner}")
for k in (1, 5, 37):
    m = shift_matrix(k, 16)
    check_shape(m, (16, 16), f"shift_matrix({k}, 16): (d_model, d_model)")
    moved = pe[:200 - k] @ m.T                                 # row p: M_k PE(p)
    assert not torch.allclose(moved[k:], pe[:200 - 2 * k], atol=1e-5), (
        f"shift_matrix({k}, 16) carries PE(p) back to PE(p - {k}), not on to PE(p + {k}): its blocks turn the wrong "
        "way; write (sin(a + t), cos(a + t)) in terms of sin a and cos a")
    wrong = [i for i in range(8) if not torch.allclose(moved[:, 2 * i:2 * i + 2], pe[k:, 2 * i:2 * i + 2], atol=1e-5)]
    assert not wrong or 0 in wrong, (
        f"shift_matrix({k}, 16) carries pair 0 (columns 0 and 1) right, but not pairs {wrong}: the block of pair i "
        f"turns by k omega_i, with the frequencies of sinusoidal_encoding, omega_i = 10000^(-2i/d)")
    assert_close(moved, pe[k:], f"shift_matrix({k}, 16) @ PE(p) against PE(p + {k}), for every p (pairs {wrong} differ)",
                 atol=1e-5)
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
#
# <details><summary>Hint 1</summary>
#
# An `nn.Embedding` called on a tensor of indices returns their rows. Here the indices are the positions `0, 1, ..., seq - 1`, and broadcasting adds the `(seq, d_model)` rows to every sequence of the batch.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Compare the length, `x.shape[1]`, with the number of rows of the table (`num_embeddings`) before the lookup; a sequence of exactly `max_len` fits.
#
# </details>

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
"""LearnedPositions: adds row p of positions at position p, every row it uses learns, longer sequences raise ValueError."""
layer = LearnedPositions(10, 4)
x = torch.zeros(2, 6, 4)
try:
    out = layer(x)
except RuntimeError as error:
    raise AssertionError(f"LearnedPositions(10, 4) on x (batch=2, seq=6, d_model=4) raised RuntimeError ({error}): "
                         "which dimension of x is seq?") from None
check_shape(out, (2, 6, 4), "LearnedPositions(10, 4)(x) for x (batch=2, seq=6, d_model=4)")
rows = layer.positions.weight.detach()
assert out.abs().sum() > 0, ("x of zeros gave zeros out: forward(x) adds the position rows to x, so zeros in give "
                             "the rows themselves; are the rows multiplied with x?")
assert not torch.allclose(out[1], rows[1:7]), ("position p got row p + 1 of positions: position 0 is row 0, so a "
                                             "sequence of seq positions uses rows 0 to seq - 1")
assert_close(out[1], rows[:6], "x of zeros (batch=2, seq=6): sequence 1 of the output should be rows 0 to 5 of positions")
try:
    full = layer(torch.zeros(1, 10, 4))
except ValueError as error:
    raise AssertionError(f"a sequence of exactly max_len = 10 positions raised ValueError ({error}): the table has rows "
                         "0 to 9, one for each of its 10 positions; only longer sequences are refused") from None
check_shape(full, (1, 10, 4), "LearnedPositions(10, 4) for x (batch=1, seq=10, d_model=4)")
try:
    layer(torch.zeros(1, 11, 4))
except IndexError as error:
    raise AssertionError(f"a sequence of 11 > max_len = 10 positions raised IndexError ({error}), the embedding's own "
                         "error: the prompt asks for a ValueError naming both numbers; check the length before "
                         "the lookup") from None
except ValueError as error:
    assert "11" in str(error) and "10" in str(error), (f"the ValueError for 11 positions with max_len = 10 must name "
                                                       f"both numbers, 11 and 10: {error}")
else:
    raise AssertionError("a sequence of 11 > max_len = 10 positions must raise ValueError")
learning = layer(torch.randn(2, 6, 4))
assert learning.requires_grad, ("the output of LearnedPositions has no path back to layer.positions.weight (no "
                                "grad_fn): every row it uses must learn; is the table detached from the graph?")
layer.positions.weight.grad = None
learning.sum().backward()
grad = layer.positions.weight.grad
assert grad is not None, "no gradient reaches layer.positions.weight after backward(): every row it uses must learn"
starts_at_zero = " (and it starts at zero)" if (rows[0] == 0).all() else ""
assert grad[0].abs().sum() > 0, (f"row 0 of positions gets no gradient{starts_at_zero}: position 0 is a real position, "
                                 "not padding, and learns like every other row")
assert_close(grad[:6], torch.full((6, 4), 2.0), "the gradient of output.sum() for rows 0 to 5 of positions: "
             "1 per sequence of the batch, so 2 everywhere")
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
#
# <details><summary>Hint 1</summary>
#
# Start with the side. Bidirectional: halve the buckets, add the half to every key after the query, and use $|r|$. Unidirectional: keep all buckets and use a distance that is 0 for keys after the query.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Compute both candidates for every distance, the distance itself and the log formula (its log needs a distance of at least 1), and choose with `torch.where` by `distance < max_exact`. Converting a non-negative float to an integer type rounds it down; cap the log bucket at the side's last one.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# For `RelativeBias`, build the `(q_len, k_len)` table of $n - m$ from two `arange`s by broadcasting, bucket it, look the buckets up in `bias` (one value per head), and move the heads to the front.
#
# </details>

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
"""t5_bucket: exact small offsets, log buckets further away, a last bucket beyond max_distance; RelativeBias by n - m."""
r = torch.tensor([-3, -1, 0, 1, 3, 7, 8, 12, 40, 127, 1000])
got = t5_bucket(r, num_buckets=32, max_distance=128)
check_shape(got, (11,), "t5_bucket(r) for r of 11 offsets")
# bidirectional, 32 buckets: 16 per side, max_exact 8; keys after the query (r > 0) use buckets 16..31
small = got[:5].tolist()
assert max(small) < 32, (f"r = -3, -1, 0, 1, 3 got buckets {small}, but num_buckets=32 has buckets 0 to 31 only: "
                         "with bidirectional=True each side gets buckets_per_side = num_buckets // 2 = 16")
assert max(small[:2]) < 16 and min(small[3:]) >= 16, (
    f"r = -3, -1, 0, 1, 3 got buckets {small}: keys after the query (r > 0) use the shifted buckets 16 to 31, keys at "
    "or before it (r <= 0) buckets 0 to 15")
assert small == [3, 1, 0, 17, 19], (f"r = -3, -1, 0, 1, 3: expected buckets [3, 1, 0, 17, 19] (the distance |r|, plus "
                                    f"16 for keys after the query), got {small}")
assert got[5].item() == 16 + 7 and got[6].item() == 16 + 8, (
    f"r = 7 and 8: expected buckets 23 and 24 (7 is below max_exact = 8, so exact; 8 is where the log range starts), "
    f"got {got[5:7].tolist()}")


def log_bucket(distance, rounding=math.floor):
    """The prompt's formula with 16 buckets per side, max_exact = 8 and max_distance = 128."""
    return 8 + rounding(math.log(distance / 8) / math.log(128 / 8) * (16 - 8))


far = t5_bucket(torch.tensor([10, 20, -50]), num_buckets=32, max_distance=128).tolist()
expected = [16 + log_bucket(10), 16 + log_bucket(20), log_bucket(50)]
assert far[0] != 16 + 10, (f"r = 10 got bucket {far[0]}, its exact bucket, as if 10 were below max_exact: max_exact = "
                           "buckets_per_side // 2 = 8, and distances from 8 on share the log buckets")
assert far != [16 + log_bucket(10, round), 16 + log_bucket(20, round), log_bucket(50, round)], (
    f"r = 10, 20, -50 got buckets {far}, expected {expected}: yours are the formula rounded to the nearest integer; "
    "its bracket is a floor (round down)")
end = got[9].item()
assert end == 31, (f"r = 127, just below max_distance = 128, got bucket {end}, not the last of its side (31): the log "
                   "range runs from max_exact up to max_distance; what is the log divided by?")
assert got[10].item() == 31, (f"r = 1000, beyond max_distance = 128, got bucket {got[10].item()}: everything beyond "
                              "max_distance falls in the last bucket of its side, 31")
assert far == expected, f"r = 10, 20, -50: expected log buckets {expected} (the prompt's formula), got {far}"
looking_back = t5_bucket(torch.tensor([-2, 3, -7]), num_buckets=32, max_distance=128, bidirectional=False).tolist()
assert looking_back == [2, 0, 7], (
    f"bidirectional=False: r = -2, 3, -7 got buckets {looking_back}, expected [2, 0, 7]: all 32 buckets are for the "
    "past, the distance is max(-r, 0), so keys after the query fall in bucket 0")
bias = RelativeBias(num_heads=3)
check_shape(bias(5, 6), (3, 5, 6), "RelativeBias(num_heads=3)(q_len=5, k_len=6): (num_heads, q_len, k_len)")


def bucket_of(entry, module):
    """Which row of module.bias.weight the vector entry (one value per head) is, or None."""
    same = (module.bias.weight.detach() == entry.detach()).all(1).nonzero().flatten().tolist()
    return f"bucket {same[0]}" if same else "no row of bias.weight"


used = bucket_of(bias(3, 3)[:, 0, 2], bias)
assert used == "bucket 18", (f"RelativeBias: entry [h, 0, 2] (query 0, key 2) uses {used}; r = n - m is key minus "
                             "query, +2 here, so it should use bucket 18")
decoder_bias = RelativeBias(num_heads=2, bidirectional=False)
used = bucket_of(decoder_bias(2, 2)[:, 0, 1], decoder_bias)
assert used == "bucket 0", (f"RelativeBias(num_heads=2, bidirectional=False): entry [h, 0, 1] (the key just after "
                            f"the query) uses {used}; with bidirectional=False keys after the query fall in bucket 0: "
                            "does forward pass bidirectional on to t5_bucket?")
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
#
# <details><summary>Hint 1</summary>
#
# Slices with step 2 give the two members of every pair at once: the even coordinates and the odd ones, each `(..., seq, d/2)`.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# The angles are the positions (as a column) times the frequencies (as a row), `(seq, d/2)`; they broadcast against `(..., seq, d/2)`.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# Put each rotated pair back side by side: stack the two new coordinates on a new last axis, `(..., seq, d/2, 2)`, and merge the last two axes into `d`.
#
# </details>

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
"""apply_rotary: turns pair i at position m by m omega_i, so the score of a query at m and a key at n depends only on n - m."""
g = torch.Generator().manual_seed(0)
q, k = torch.randn(16, dtype=torch.float64, generator=g), torch.randn(16, dtype=torch.float64, generator=g)
turned = apply_rotary(torch.ones(3, 16, dtype=torch.float64), torch.arange(3))
assert tuple(turned.shape) == (3, 16), (
    f"apply_rotary(x, positions) for x (seq=3, d=16) returned shape {tuple(turned.shape)}: the output has x's shape "
    "(..., seq, d), each rotated pair back in its columns 2i and 2i + 1")
lone = torch.tensor([[0.3, -1.2, 0.8, 0.5]], dtype=torch.float64)
assert not torch.allclose(apply_rotary(lone, torch.tensor([3])), lone), (
    "apply_rotary(x, positions=tensor([3])) returned one vector x unchanged, as if it were at position 0: the angle is "
    "m omega_i with m taken from positions, not counted 0, 1, ... along seq")
# the unit vectors e_0 .. e_3 of d = 4, each at position 1: pair i is (x_2i, x_2i+1), omega = (1, 10000^(-2/4))
omega = [1.0, 10000 ** (-2 / 4)]
units = [apply_rotary(torch.eye(4, dtype=torch.float64)[j:j + 1], torch.tensor([1]))[0] for j in range(4)]
for j, out in enumerate(units):
    outside = [c for c in range(4) if c // 2 != j // 2 and abs(out[c].item()) > 1e-12]
    assert not outside, (f"apply_rotary(e_{j}, positions=tensor([1])) for d = 4 changed coordinates {outside}: "
                         f"coordinate {j} is in pair {j // 2}, (x_{2 * (j // 2)}, x_{2 * (j // 2) + 1}); a pair is two "
                         "neighbouring coordinates and turns on its own")
for i in range(2):
    out = units[2 * i]                                           # e_2i turned by omega_i: (cos, sin) in its pair
    angle = math.atan2(out[2 * i + 1].item(), out[2 * i].item())
    assert abs(angle + omega[i]) > 1e-9, (
        f"apply_rotary(e_{2 * i}, positions=tensor([1])) turned pair {i} by {angle:.4g}, expected +omega_{i} = "
        f"{omega[i]:.4g}: it turns the other way; the prompt's formula is (x_2i cos - x_2i+1 sin, x_2i sin + x_2i+1 cos)")
    assert i == 0 or abs(angle - 10000 ** (-i / 4)) > 1e-9, (
        f"pair {i} at position 1 turned by {angle:.4g} = 10000^(-{i}/4), expected omega_{i} = 10000^(-{2 * i}/4) = "
        f"{omega[i]:.4g}: in omega_i = 10000^(-2i/d), is i the pair's number or a column's?")
    assert abs(angle - omega[i]) < 1e-6, (f"pair {i} (coordinates {2 * i} and {2 * i + 1}) at position 1 turned by "
                                          f"{angle:.4g}, expected omega_{i} = 10000^(-{2 * i}/4) = {omega[i]:.4g}")


def score(m, n):
    return (apply_rotary(q[None], torch.tensor([m])) @ apply_rotary(k[None], torch.tensor([n])).T).item()


for m, n, shift in [(0, 3, 5), (7, 2, 11), (4, 4, 30)]:
    assert abs(score(m, n) - score(m + shift, n + shift)) < 1e-9, (
        f"the score of q at position {m} and k at {n} is {score(m, n):.6f}, but {score(m + shift, n + shift):.6f} with "
        f"both moved {shift} on: it must depend only on n - m")
assert abs(score(0, 0) - (q @ k).item()) < 1e-12, "at position 0 the angle is 0: q and k must come out unchanged"
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
