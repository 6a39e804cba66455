# ---
# jupyter:
#   celltoolbar: Slideshow
#   kernelspec:
#     display_name: Python 3 (course)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "title", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# # 02 · ELMo: contextual word vectors
#
# **Learning objectives.** After this notebook you can
# 1. **explain** why one vector per word cannot represent words with several senses;
# 2. **implement** a character-CNN word encoder with highway layers, robust to padding, computed once per distinct word;
# 3. **build** a bidirectional language model with separate two-layer forward and backward LSTMs and a shared softmax;
# 4. **combine** its layers with a scalar mix learned on a downstream task, and **measure** what contextual vectors buy.
#
# **Prerequisites.** Notebook 01 (word vectors), LSTMs, `pack_padded_sequence`, cross-entropy.
#
# **Estimated time.** 2 hours. The notebook runs in under three minutes on two CPU cores.

# %% [markdown] nbgrader={"grade": false, "grade_id": "notes_intro", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "notes"}
# Speaker notes: start with "state" in "the state of Alabama" and "a state of emergency", and the
# word2vec vector that has to serve both.

# %% [markdown] nbgrader={"grade": false, "grade_id": "setup_text", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Setup

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
import math
import random
import re
import sys
import time
from collections import Counter

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_utils import assert_close, check_shape, describe_environment, get_device, seed_everything
from course_utils.data import newsgroups, post_body, wikipedia_articles
from course_utils.plot import plot_history
from course_utils.train import count_parameters, fit

seed_everything(0)
device = get_device()
print(describe_environment(device))


# %% [markdown] nbgrader={"grade": false, "grade_id": "intuition_one_word_several", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 1 · Intuition: one word, several meanings
#
# word2vec gives "state" one vector, whether the sentence is about Alabama or about a state of
# emergency. ELMo (Peters et al., 2018) computes a word's vector **from the whole sentence**: it
# runs a language model forwards and another backwards, and represents each token by a learned
# mix of the models' layers at that position.
#
# Its input is not a word id but the word's **characters**: a convolutional network reads
# them, so unseen words still get a vector and "running"/"runner" share parts.
#
# ```
#  token k:   characters ─► CharCNN ─► x_k ──┬─► forward LSTM 1 ─► forward LSTM 2 (+ residual) ─► softmax: t_{k+1}
#                                            └─► backward LSTM 1 ─► backward LSTM 2 (+ residual) ─► softmax: t_{k-1}
#  ELMo_k = γ (s_0 [x_k; x_k] + s_1 [f1_k; b1_k] + s_2 [f2_k; b2_k])
# ```

# %% [markdown] nbgrader={"grade": false, "grade_id": "data_wikipedia_sample", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# The data: the Wikipedia sample cut into **sentences** (at `.`, `!`, `?` and line ends), one
# sentence per row, so no row crosses a sentence boundary; a sentence longer than 40 tokens is
# cut into rows of 40 (the cell prints how many rows such a cut made), and a row of fewer than 3 tokens
# is dropped. The last 5% of the rows
# are held out. The output vocabulary (what the language model predicts) is the 5,000 most
# frequent training words plus `<unk>`; the input reads every word's characters, so it has no
# unknown words, and a character never seen in training gets its own id `<unk>`.

# %% nbgrader={"grade": false, "grade_id": "corpus", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
def tokenize(text: str) -> list[str]:
    """Lowercase word tokens (letters, with inner apostrophes), as in notebook 01."""
    return re.findall(r"[a-z]+(?:'[a-z]+)?", text.lower())


MAX_LEN = 40                                                        # tokens per row at most
rows, cut_rows = [], 0
for article in wikipedia_articles():
    for sentence in re.split(r"(?<=[.!?])\s+|\n", article):
        tokens = tokenize(sentence)
        pieces = [tokens[i:i + MAX_LEN] for i in range(0, len(tokens), MAX_LEN)]
        cut_rows += len(pieces) - 1
        rows += [p for p in pieces if len(p) >= 3]
split = int(0.95 * len(rows))
train_rows, held_rows = rows[:split], rows[split:]
counts = Counter(w for row in train_rows for w in row)
words = ["<pad>", "<unk>"] + [w for w, _ in counts.most_common(5_000)]
word_to_id = {w: i for i, w in enumerate(words)}
PAD, UNK = 0, 1
chars = ["<pad>", "<bow>", "<eow>", "<unk>"] + sorted({c for w in counts for c in w})
char_to_id = {c: i for i, c in enumerate(chars)}
BOW, EOW, UNK_CHAR = 1, 2, 3
MAX_WORD = 16                                                       # characters per word, <bow> and <eow> included


def word_chars(word: str) -> list[int]:
    """<bow> characters <eow>, truncated to MAX_WORD ids; an unseen character is <unk>."""
    return [BOW] + [char_to_id.get(c, UNK_CHAR) for c in word[:MAX_WORD - 2]] + [EOW]


def encode(sentence: list[str], width: int = MAX_WORD) -> tuple[torch.Tensor, torch.Tensor]:
    """Character ids (len, width) and output word ids (len,) of one token list."""
    char_ids = torch.zeros(len(sentence), width, dtype=torch.long)
    for i, word in enumerate(sentence):
        ids = word_chars(word)[:width]
        char_ids[i, :len(ids)] = torch.tensor(ids)
    return char_ids, torch.tensor([word_to_id.get(w, UNK) for w in sentence])


n_train, n_held = sum(map(len, train_rows)), sum(map(len, held_rows))
unk_share = sum(w not in word_to_id for row in train_rows for w in row) / n_train
print(f"{len(rows):,} rows ({cut_rows:,} cuts inside a long sentence); {n_train:,} training and {n_held:,} held-out tokens; "
      f"{len(words):,} output words ({unk_share:.1%} of training tokens are <unk>); {len(chars)} characters")
print(train_rows[0])
print(encode(["state", "café"])[0])     # é was never seen: id 3 (<unk>), not <eow>

# %% [markdown] nbgrader={"grade": false, "grade_id": "batches_text", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# Batches hold rows of similar length (sorted by length, then about 2,000 tokens per batch, the
# batches shuffled), so little of each batch is padding. Each batch is `(char_ids, word_ids,
# lengths)` with shapes `(rows, seq, MAX_WORD)`, `(rows, seq)` and `(rows,)`; padding is 0.

# %% nbgrader={"grade": false, "grade_id": "batches", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
types = sorted({w for row in rows for w in row})                   # every distinct word of the corpus
type_index = {w: i for i, w in enumerate(types)}
type_chars = torch.stack([encode([w])[0][0] for w in types])        # (types, MAX_WORD)
type_words = torch.tensor([word_to_id.get(w, UNK) for w in types])  # (types,)


def make_batches(rows: list[list[str]], tokens_per_batch: int, seed: int | None = None):
    """(char_ids, word_ids, lengths) batches of rows of similar length."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    groups, group = [], []
    for i in order:
        if group and len(rows[i]) * (len(group) + 1) > tokens_per_batch:
            groups.append(group)
            group = []
        group.append(i)
    groups.append(group)
    batches = []
    for group in groups:
        lengths = torch.tensor([len(rows[i]) for i in group])
        ids = torch.zeros(len(group), int(lengths.max()), dtype=torch.long)    # (rows, seq) type ids
        for r, i in enumerate(group):
            ids[r, :len(rows[i])] = torch.tensor([type_index[w] for w in rows[i]])
        real = torch.arange(ids.shape[1])[None] < lengths[:, None]             # (rows, seq)
        batches.append((type_chars[ids] * real[..., None], type_words[ids] * real, lengths))
    if seed is not None:
        random.Random(seed).shuffle(batches)
    return batches


train_batches = make_batches(train_rows, 2048, seed=0)
held_batches = make_batches(held_rows, 4096)
char_ids, word_ids, lengths = train_batches[0]
print(f"{len(train_batches)} training batches; the first: char_ids {tuple(char_ids.shape)}, word_ids {tuple(word_ids.shape)}, "
      f"{(word_ids != PAD).float().mean():.0%} real tokens")

# %% [markdown] nbgrader={"grade": false, "grade_id": "math", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 2 · The math
#
# A word $w$ of characters $c_1..c_L$ becomes $x = \text{Proj}(\text{Highway}(\tanh \max_t \text{Conv}(E c)))$.
# The $\tanh$ after the max is Kim et al.'s (2016), whose character CNN ELMo builds on, and we keep it
# (it bounds every feature to $(-1, 1)$ before the highway layers); ELMo's released models use a
# ReLU at that point instead (`"activation": "relu"` in the `char_cnn` options of their `bilm-tf`
# files). Either way the activation comes after the max, so it does not change which window wins.
# A **highway layer** lets information pass unchanged where its transform gate $g$ says so:
#
# $$g = \sigma(W_g x + b_g), \qquad y = g \odot \text{ReLU}(W_h x + b_h) + (1 - g) \odot x$$
#
# The forward LM models $p(t_k \mid t_1..t_{k-1})$ from $\overrightarrow{h}_{k-1}$; the
# backward LM models $p(t_k \mid t_{k+1}..t_N)$ from $\overleftarrow{h}_{k+1}$; both share the
# softmax. Each direction has two LSTM layers, the second with a residual connection,
# $h^{(2)} = \text{LSTM}_2(h^{(1)}) + h^{(1)}$. ELMo's vector for token $k$ mixes the $L+1 = 3$ layers
# $h_{k,j}$ (layer 0 is $[x_k; x_k]$, layer $j$ is $[\overrightarrow{h}^{(j)}_k; \overleftarrow{h}^{(j)}_k]$):
#
# $$\text{ELMo}_k = \gamma \sum_{j=0}^{L} s_j\, h_{k,j}, \qquad s = \operatorname{softmax}(w)$$
#
# | symbol | shape | meaning | code name |
# |---|---|---|---|
# | $E c$ | `(words, chars, char_dim)` | character embeddings | `self.embed(char_ids)` |
# | $x$ | `(batch, seq, dim)` | token encoding from characters | `CharCNN(...)` output |
# | $\overrightarrow{h}^{(j)}, \overleftarrow{h}^{(j)}$ | `(batch, seq, dim)` | forward, backward LSTM states of layer $j$ | `forward_layers[j-1]`, `backward_layers[j-1]` |
# | $h_{k,j}$ | `(layers, batch, seq, 2*dim)` | layer $j$ at token $k$ | `layers` |
# | $w$, $\gamma$ | `(layers,)`, scalar | mix weights (before softmax), scale | `weights`, `gamma` |

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_1_highway_layer", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 3 · Exercise 1: a highway layer (2 points)
#
# Complete `Highway.forward`: for each layer in `self.layers` (an `nn.Linear(dim, 2 * dim)`
# whose output is split into the transform half $W_h x + b_h$ (first) and the gate half
# $W_g x + b_g$ (second)), compute $y$ as above and feed it to the next layer.
# The gate biases start at $-2$ (Kim et al., 2016; ELMo does the same), so that a new network
# mostly **carries** its input through ($g = \sigma(-2) \approx 0.12$).
#
# <details><summary>Hint 1</summary>
#
# Each layer's output splits in two along the last axis: the first half is the transform, the second the gate. The gate is a number between 0 and 1 per feature.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# The mix is a weighted average per feature: `relu` of the transform with weight $g$, the layer's input with weight $1 - g$. The result takes the place of `x`, so that the next layer reads it.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "highway", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class Highway(nn.Module):
    """Highway layers: y = g * relu(W_h x + b_h) + (1 - g) * x, with a learned transform gate g."""

    def __init__(self, dim: int, n_layers: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, 2 * dim) for _ in range(n_layers))
        for layer in self.layers:
            nn.init.constant_(layer.bias[dim:], -2.0)          # gate bias: carry by default

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., dim) -> (..., dim)."""
        ### BEGIN SOLUTION
        for layer in self.layers:
            transform, gate = layer(x).chunk(2, dim=-1)         # (..., dim) each
            gate = torch.sigmoid(gate)
            x = gate * F.relu(transform) + (1 - gate) * x
        return x
        ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
# try it: a fresh highway layer mostly carries its input (gate about 0.12); a forced-open gate transforms
torch.manual_seed(1)
highway_demo = Highway(4, 1)
inputs = torch.tensor([[1.0, -2.0, 3.0, -4.0]])
with torch.no_grad():
    print("input            ", inputs.tolist()[0])
    print("fresh (carry)    ", [round(v, 2) for v in highway_demo(inputs).tolist()[0]])
    highway_demo.layers[0].bias[4:] = 20.0
    print("gate open (relu) ", [round(v, 2) for v in highway_demo(inputs).tolist()[0]], " <- no negative values left")

# %% nbgrader={"grade": true, "grade_id": "test_highway", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""Highway: closed form with chosen weights; a closed gate copies the input, an open one transforms; layers in turn."""
layer = Highway(2, 1).double()
with torch.no_grad():
    layer.layers[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0], [0.0, 0.0], [0.0, 0.0]]))
    layer.layers[0].bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0]))     # gate = sigmoid(0) = 0.5
x = torch.tensor([[2.0, 3.0]], dtype=torch.float64)
# transform half W_h x + b_h = (2, -3) -> relu (2, 0); gate half W_g x + b_g = (0, 0) -> g = 0.5
# y = 0.5 * (2, 0) + 0.5 * (2, 3) = (2, 1.5)
y = layer(x)
check_shape(y, (1, 2), "Highway(2, 1) on x of shape (1, 2)")
shown = [round(v, 4) for v in y.flatten().tolist()]
assert not torch.allclose(y, x), (
    f"Highway(2, 1) with a gate half W_g x + b_g = (0, 0) returns x unchanged, {shown}, as if g were 0: "
    "the gate there should be 0.5, so half of the transform gets in; which function turns W_g x + b_g into g?")
assert not torch.allclose(y, torch.tensor([[2.0, 0.0]], dtype=torch.float64)), (
    f"Highway(2, 1) gives {shown}, as if the -3 of the transform half (2, -3) got into y: is the ReLU applied to the "
    "transform half before the gate multiplies it?")
as_if_gate_first = (1 - torch.sigmoid(torch.tensor([[2.0, -3.0]], dtype=torch.float64))) * x   # gate from (2, -3), transform relu(0)
assert not torch.allclose(y, as_if_gate_first), (
    f"Highway(2, 1) gives {shown}, as if the gate came from the first half of layer(x) and the transform from the "
    "second: the prompt puts the transform half W_h x + b_h first and the gate half W_g x + b_g second")
assert_close(y, torch.tensor([[2.0, 1.5]], dtype=torch.float64),
             "Highway(2, 1) with g = 0.5: y = 0.5 * relu((2, -3)) + 0.5 * (2, 3)")
with torch.no_grad():
    layer.layers[0].bias[2:] = -50.0                                   # g = sigmoid(-50), about 0
closed = layer(x)
assert not torch.allclose(closed, torch.tensor([[2.0, 0.0]], dtype=torch.float64)), (
    f"with the gate closed (gate bias -50, g about 0) Highway(2, 1) returns relu(W_h x + b_h) = (2, 0) instead of "
    "carrying x = (2, 3) through: which term does g multiply, and which one 1 - g?")
assert_close(closed, x, "Highway(2, 1) with a closed gate (bias -50) carries x through", atol=1e-12)
two = Highway(3, 2).double()
z = torch.randn(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    two.layers[0].bias[3:] = 60.0                                      # first gate open: it transforms
    two.layers[1].bias[3:] = -60.0                                     # second gate closed: it carries what it reads
stacked = two(z)
check_shape(stacked, (2, 3), "Highway(3, 2) on x of shape (2, 3)")
assert not torch.allclose(stacked, z, atol=1e-9), (
    "Highway(3, 2) with the first gate open and the second closed returns its input x unchanged, as if the second "
    "layer (which carries what it reads) had read x instead of the first layer's output: does each layer's output "
    "feed the next?")
assert_close(stacked, F.relu(two.layers[0](z)[..., :3]),
             "Highway(3, 2), first gate open, second closed: the first layer's relu(W_h x + b_h), carried through the second",
             atol=1e-12)
### BEGIN HIDDEN TESTS
with torch.no_grad():
    layer.layers[0].bias[2:] = 50.0
assert_close(layer(x), torch.tensor([[2.0, 0.0]], dtype=torch.float64),
             "an open gate (bias +50) gives relu(W_h x + b_h): carry and transform must not be swapped", atol=1e-12)
with torch.no_grad():
    layer.layers[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0], [1.0, 0.0], [0.0, 0.0]]))
    layer.layers[0].bias.zero_()
# gate = sigmoid((2, 0)) = (0.8808, 0.5): y = g * (2, 0) + (1 - g) * (2, 3)
g = torch.sigmoid(torch.tensor([2.0, 0.0], dtype=torch.float64))
assert_close(layer(x), (g * torch.tensor([2.0, 0.0], dtype=torch.float64) + (1 - g) * x),
             "the gate is the second half of the layer's output", atol=1e-12)
two = Highway(3, 2).double()
y = two(torch.randn(4, 5, 3, dtype=torch.float64))
check_shape(y, (4, 5, 3), "two highway layers on (4, 5, 3)")
with torch.no_grad():
    for lin in two.layers:
        lin.bias[3:] = -60.0
z = torch.randn(2, 3, dtype=torch.float64)
assert_close(two(z), z, "every layer must be applied in turn (closed gates: identity)", atol=1e-12)
with torch.no_grad():
    two.layers[1].bias[3:] = 60.0
assert not torch.allclose(two(z), z), "the second layer must be used"
assert_close(two(z), F.relu(two.layers[1](z)[..., :3]),
             "the second layer reads the first one's output (here: the input, carried)", atol=1e-12)
with torch.no_grad():
    two.layers[0].bias[3:] = 60.0
    two.layers[1].bias[3:] = -60.0
assert_close(two(z), F.relu(two.layers[0](z)[..., :3]),
             "each layer reads the previous layer's output (first gate open, second closed)", atol=1e-12)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_2_character_cnn", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 4 · Exercise 2: the character-CNN word encoder (3 points)
#
# Complete `CharCNN.forward(char_ids)`: `char_ids` `(..., max_chars)` with 0 = padding.
#
# 1. embed characters (`self.embed`, padding row is zero) and run each `nn.Conv1d` in
#    `self.convs` (one per width) over the character axis;
# 2. **max over time**, but only over windows that lie inside the word: position $t$ of a
#    width-$w$ filter is valid when $t + w \le \max(\text{length}, w)$, where length counts the
#    non-zero ids; fill invalid positions with `torch.finfo(dtype).min` before the max. Then
#    padding can never win the max, and the output cannot depend on how much padding follows
#    the word;
# 3. `tanh`, concatenate the widths, apply `self.highway` (your `Highway`), then `self.project`.
#
# Returns `(..., out_dim)`.
#
# <details><summary>Hint 1</summary>
#
# Work on a flat batch of words `(words, max_chars)` and give the result the leading shape `(...)` back at the end. `nn.Conv1d` wants the channels (the character embedding) before the length, so the embeddings need a transpose.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# For each filter, the valid windows form a boolean `(words, positions)` mask: a row of positions `0, 1, ...` plus the width, compared with each word's length kept at least the width. Broadcast it over the filters.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# Fill the invalid positions before the max over the last axis, take `tanh`, and after the loop concatenate the filters' features along the last axis before the highway and the projection.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "char_cnn", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class CharCNN(nn.Module):
    """Characters -> word vector: embeddings, convolutions of several widths, max, highway, projection."""

    def __init__(self, n_chars: int, char_dim: int = 16,
                 filters: tuple[tuple[int, int], ...] = ((1, 32), (2, 32), (3, 64), (4, 128)),
                 highway_layers: int = 2, out_dim: int = 128) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_chars, char_dim, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(char_dim, n, width) for width, n in filters)
        total = sum(n for _, n in filters)
        self.highway = Highway(total, highway_layers)
        self.project = nn.Linear(total, out_dim)

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        """char_ids (..., max_chars) -> (..., out_dim)."""
        ### BEGIN SOLUTION
        shape = char_ids.shape[:-1]
        flat = char_ids.reshape(-1, char_ids.shape[-1])                  # (words, max_chars)
        lengths = (flat != 0).sum(-1)                                   # (words,)
        x = self.embed(flat).transpose(1, 2)                            # (words, char_dim, max_chars)
        pooled = []
        for conv in self.convs:
            width = conv.kernel_size[0]
            y = conv(x)                                                 # (words, n, max_chars - width + 1)
            positions = torch.arange(y.shape[-1], device=y.device)
            valid = positions[None, :] + width <= lengths.clamp(min=width)[:, None]  # (words, positions)
            y = y.masked_fill(~valid[:, None, :], torch.finfo(y.dtype).min)
            pooled.append(torch.tanh(y.max(dim=-1).values))             # (words, n)
        h = self.highway(torch.cat(pooled, dim=-1))                     # (words, total)
        return self.project(h).view(*shape, -1)                         # (..., out_dim)
        ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
# try it: one word, padded to 8 and to 30 characters, and three other words
torch.manual_seed(0)
cnn_demo = CharCNN(len(chars), filters=((1, 4), (2, 4), (3, 4)), out_dim=6)
with torch.no_grad():
    for width in (8, 30):
        print(f"'state' in {width:>2} slots:", [round(v, 3) for v in cnn_demo(encode(["state"], width)[0])[0].tolist()])
    print("shape of (2 sentences, 3 words):", tuple(cnn_demo(torch.stack([encode(["a", "bank", "state"])[0]] * 2)).shape))

# %% nbgrader={"grade": true, "grade_id": "test_char_cnn", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""CharCNN: a readable encoder gives tanh of the max over the windows inside the word; self.highway is used; the output does not depend on padding."""
# A readable encoder: one number per character (all real characters below 0, <eow> the highest, padding 0),
# a width-1 and a width-4 filter that sum their window and add 0.05, a closed highway gate and an identity
# projection: its two outputs are tanh(max over the valid windows) of the two filters.
torch.manual_seed(0)
readable = CharCNN(len(chars), char_dim=1, filters=((1, 1), (4, 1)), highway_layers=1, out_dim=2).double()
values = -0.1 - torch.arange(len(chars), dtype=torch.float64) / 100
values[PAD], values[BOW], values[EOW] = 0.0, -0.3, -0.08
with torch.no_grad():
    readable.embed.weight.copy_(values[:, None])
    for conv in readable.convs:
        conv.weight.fill_(1.0)
        conv.bias.fill_(0.05)
    readable.highway.layers[0].bias[2:] = -60.0
    readable.project.weight.copy_(torch.eye(2, dtype=torch.float64))
    readable.project.bias.zero_()


def window_scores(word: str, width: int) -> list[float]:
    """The filter's score (window sum + 0.05) at every window the prompt calls valid: t + width <= max(length, width)."""
    ids = [float(values[i]) for i in word_chars(word)] + [0.0] * width
    return [sum(ids[t:t + width]) + 0.05 for t in range(max(len(word_chars(word)) - width + 1, 1))]


bank, short_word = (readable(encode([w], width=16)[0]) for w in ("bank", "a"))
check_shape(bank, (1, 2), "CharCNN(..., out_dim=2) on one word, char_ids (1, 16)")
said = [round(v, 4) for v in bank.flatten().tolist()]
assert not torch.isclose(bank, torch.tanh(torch.tensor(0.05, dtype=torch.float64))).any(), (
    f"'bank' padded to 16 characters gives {said}: tanh(0.05), the score of a window of padding only (embeddings 0, "
    "bias 0.05), while every window inside the word scores below 0: padding won the max; are the windows that reach "
    "past the word's end masked before the max?")
assert not torch.isclose(bank, torch.zeros((), dtype=torch.float64), atol=1e-9).any(), (
    f"'bank' gives {said}: tanh(0) = 0, while every window inside the word scores below 0, as if the masked positions "
    "won the max with their fill value 0: the fill value must lose to every real score (the prompt says which one)")
mean_twin = torch.tanh(torch.tensor([[sum(w) / len(w) for w in (window_scores("bank", 1), window_scores("bank", 4))]],
                                    dtype=torch.float64))
assert not torch.allclose(bank, mean_twin, atol=1e-9), (
    f"'bank' gives {said}: tanh of the mean over the word's windows; pooling takes the max over time")
last_left_out = torch.tanh(torch.tensor([[max(window_scores("bank", 1)[:-1]), max(window_scores("bank", 4)[:-1])]],
                                        dtype=torch.float64))
assert not torch.allclose(bank, last_left_out, atol=1e-9), (
    f"'bank' gives {said}: the max over every valid window but the last (the one ending on <eow>); the prompt's "
    "condition t + w <= max(length, w) includes the window that ends on the word's last character")
assert not short_word[0, 1] < -0.999, (
    f"'a' (<bow> a <eow>, 3 characters) gives {[round(v, 4) for v in short_word.flatten().tolist()]}: -1 from the "
    "width-4 filter, as if no window were left (tanh of the fill value); a word shorter than the filter keeps its "
    "first window, t + w <= max(length, w)")
for word, got in (("bank", bank), ("a", short_word)):
    expected = torch.tanh(torch.tensor([[max(window_scores(word, 1)), max(window_scores(word, 4))]], dtype=torch.float64))
    assert_close(got, expected, f"'{word}': tanh of the max over the windows inside the word, one number per filter",
                 atol=1e-9)
with torch.no_grad():
    readable.highway.layers[0].bias[2:] = 60.0                          # open the highway gate
assert not torch.allclose(readable(encode(["bank"], width=16)[0]), bank), (
    "opening the gate of self.highway (gate bias +60) leaves CharCNN's output unchanged: is self.highway applied to "
    "the concatenated features (step 3)?")
torch.manual_seed(0)
encoder_demo = CharCNN(len(chars), char_dim=8, filters=((1, 4), (2, 4), (3, 8)), out_dim=24).double()
exact, _ = encode(["river"], width=7)            # <bow> r i v e r <eow>: no padding at all
short, _ = encode(["river"], width=12)
long, _ = encode(["river"], width=40)
out_exact, out_short, out_long = encoder_demo(exact), encoder_demo(short), encoder_demo(long)
check_shape(out_short, (1, 24), "CharCNN(..., out_dim=24) on one word, char_ids (1, 12)")
assert_close(out_short, out_long, "'river' with 5 and with 33 padding characters: the output must not depend on padding",
             atol=1e-12)
assert_close(out_exact, out_short, "'river' without padding and with 5 padding characters: the output must not depend on padding",
             atol=1e-12)
batch, _ = encode(["a", "bank", "riverbanks"], width=16)
check_shape(encoder_demo(batch.view(1, 3, 16)), (1, 3, 24), "CharCNN on char_ids (batch=1, seq=3, max_chars=16): (..., out_dim)")
### BEGIN HIDDEN TESTS
# padding must not win even when every real window scores below the padding's score
with torch.no_grad():
    for conv in encoder_demo.convs:
        conv.bias.fill_(5.0)                                   # padding windows score 5 (embedding 0)
        conv.weight.fill_(-1.0)                                # real windows score less
    encoder_demo.embed.weight.abs_()                           # (the padding row stays 0)
for word in ["a", "bank", "riverbanks"]:
    assert_close(encoder_demo(encode([word], width=len(word) + 2)[0]), encoder_demo(encode([word], width=30)[0]),
                 f"'{word}': padding won the max (compare without padding and with)", atol=1e-12)
torch.manual_seed(0)
encoder_demo = CharCNN(len(chars), char_dim=8, filters=((1, 4), (2, 4), (3, 8)), out_dim=24).double()
out_short = encoder_demo(short)
one = encoder_demo(encode(["a"], width=16)[0])
assert_close(one, encoder_demo(encode(["a"], width=30)[0]), "a 3-character word (as short as the widest filter)", atol=1e-12)
assert_close(encoder_demo(batch)[1], encoder_demo(encode(["bank"], width=16)[0])[0], "words are encoded independently", atol=1e-12)
assert encoder_demo(batch).abs().max() < 1e3, "the masked value must not leak into the output (tanh after the max)"
# the highway layer must be used
with torch.no_grad():
    for lin in encoder_demo.highway.layers:
        lin.bias[lin.out_features // 2:] = 60.0
assert not torch.allclose(encoder_demo(short), out_short), "self.highway is not applied"
# gradients reach the character embeddings
encoder_demo(batch).sum().backward()
assert encoder_demo.embed.weight.grad[char_to_id["b"]].abs().sum() > 0, "no gradient reaches the characters"
# a readable encoder: one number per character (id / 100, <eow> 1.0), filters of width 1 and 4 summing
# their window, a closed highway gate, an identity projection: output = tanh(max over valid windows)
probe_cnn = CharCNN(len(chars), char_dim=1, filters=((1, 1), (4, 1)), highway_layers=1, out_dim=2).double()
with torch.no_grad():
    values = torch.arange(len(chars), dtype=torch.float64) / 100
    values[EOW] = 1.0
    probe_cnn.embed.weight.copy_(values[:, None])
    for conv in probe_cnn.convs:
        conv.weight.fill_(1.0)
        conv.bias.zero_()
    probe_cnn.highway.layers[0].bias[2:] = -60.0
    probe_cnn.project.weight.copy_(torch.eye(2, dtype=torch.float64))
    probe_cnn.project.bias.zero_()
for word in ["a", "by", "bank", "riverbanks"]:
    ids = [float(values[i]) for i in word_chars(word)]
    padded = ids + [0.0] * 3
    best_4 = max(sum(padded[t:t + 4]) for t in range(max(len(ids) - 3, 1)))
    expected = torch.tanh(torch.tensor([[max(ids), best_4]], dtype=torch.float64))
    assert_close(probe_cnn(encode([word], width=16)[0]), expected,
                 f"'{word}': tanh of the max over every window inside the word (the last one included; "
                 f"a word shorter than the filter keeps its first window)", atol=1e-9)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_3_once_per", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 5 · Exercise 3: encode each distinct word once (2 points)
#
# A word's encoding depends only on its characters, and a batch of 2,000 tokens holds far fewer
# distinct words (the try-it cell counts them in the first batch). ELMo's released code can use this at
# inference time: it offers to precompute one vector per word of a vocabulary file and look tokens up
# instead of running the CNN (an option of `bilm-tf`, not part of the paper's training). We use it
# inside each training batch. Write `encode_types(encoder, char_ids)`:
# find the distinct rows of `char_ids` `(..., max_chars)` with
# `torch.unique(..., dim=0, return_inverse=True)`, call `encoder` **once, on the distinct rows
# only**, and gather the result back to every token, returning `(..., out_dim)`, equal to
# `encoder(char_ids)`. The tests wrap the encoder in `CountingEncoder` (given below) to count the rows
# it receives.
#
# <details><summary>Hint 1</summary>
#
# Flatten `char_ids` to `(tokens, max_chars)`: each row is one token's word, so unique rows are distinct words, and `inverse` tells each token which distinct row is its own.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Encode the distinct rows in one call, index their vectors with `inverse` (one row per token), and reshape to `(..., out_dim)`.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "counting_encoder", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
class CountingEncoder(nn.Module):
    """Wraps an encoder and records how many words each call received."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder, self.calls = encoder, []

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        self.calls.append(char_ids.reshape(-1, char_ids.shape[-1]).shape[0])
        return self.encoder(char_ids)


# %% nbgrader={"grade": false, "grade_id": "encode_types", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def encode_types(encoder: nn.Module, char_ids: torch.Tensor) -> torch.Tensor:
    """encoder(char_ids) for char_ids (..., max_chars), computed once per distinct word."""
    ### BEGIN SOLUTION
    flat = char_ids.reshape(-1, char_ids.shape[-1])                       # (tokens, max_chars)
    distinct, inverse = torch.unique(flat, dim=0, return_inverse=True)    # (types, max_chars), (tokens,)
    vectors = encoder(distinct)                                           # (types, out_dim)
    return vectors[inverse].view(*char_ids.shape[:-1], -1)                # (..., out_dim)
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
# try it: a sentence with repeated words; how many rows reach the encoder?
counting = CountingEncoder(cnn_demo)
demo_sentence = "the state of the art and the state of alabama".split()
with torch.no_grad():
    typed = encode_types(counting, encode(demo_sentence)[0])
print(f"{len(demo_sentence)} tokens, encoder called on {counting.calls} rows; output {tuple(typed.shape)}")
char_ids, _, _ = train_batches[0]
print(f"first training batch: {int((char_ids[..., 0] != 0).sum())} tokens, {len(torch.unique(char_ids.flatten(0, 1), dim=0))} distinct rows")

# %% nbgrader={"grade": true, "grade_id": "test_encode_types", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""encode_types: equal to encoding every token, with one encoder call on the distinct words only."""
torch.manual_seed(0)
encoder_demo = CharCNN(len(chars), char_dim=8, filters=((1, 4), (2, 4), (3, 8)), out_dim=24).double()
counting = CountingEncoder(encoder_demo)
sentences = torch.stack([encode("a rose is a rose is a rose".split())[0], encode("is a rose a rose or not a".split())[0]])
got = encode_types(counting, sentences)                                  # (2, 8, 24)
every_token = encoder_demo(sentences)
assert counting.calls != [1], (
    "encode_types(counting, sentences) called the encoder on a single row, not on the 5 distinct words: as if "
    "torch.unique compared single numbers, not words; each row of char_ids (..., max_chars) is one word "
    "(which dim holds the rows?)")
if counting.calls == [16]:
    same = got.shape == every_token.shape and torch.allclose(got, every_token, atol=1e-12)
    assert not same, ("encode_types(counting, sentences) equals encoder(char_ids), but the encoder received all 16 "
                      "tokens in one call: it must run on the 5 distinct words only, then give each token its word's vector")
    raise AssertionError("encode_types(counting, sentences): the encoder received all 16 tokens, not the 5 distinct "
                         "words, and some tokens came back with vectors that are not their word's: which rows does inverse number?")
assert got.shape[0] != 5, (
    f"encode_types(counting, sentences) returned shape {tuple(got.shape)}: one vector per distinct word; gather them back "
    "so that every token gets its word's vector, (2 sentences, 8 tokens, out_dim)")
check_shape(got, (2, 8, 24), "encode_types(counting, sentences) for char_ids (2, 8, max_chars): (2, 8, out_dim)")
assert_close(got, every_token, "encode_types(counting, sentences) against encoding every token, encoder(sentences)",
             atol=1e-12)
assert counting.calls == [5], (f"expected one encoder call on the 5 distinct words (a, rose, is, or, not), "
                               f"got calls on {counting.calls} rows")
### BEGIN HIDDEN TESTS
counting.calls.clear()
flat_ids = encode("to be or not to be".split())[0]                      # (6, max_chars)
assert_close(encode_types(counting, flat_ids), encoder_demo(flat_ids), "a (tokens, max_chars) input", atol=1e-12)
assert counting.calls == [4], f"'to be or not to be' has 4 distinct words, the encoder saw {counting.calls}"
encoder_demo.zero_grad()
encode_types(encoder_demo, sentences).pow(2).sum().backward()
typed_grad = encoder_demo.project.weight.grad.clone()
encoder_demo.zero_grad()
encoder_demo(sentences).pow(2).sum().backward()
assert_close(typed_grad, encoder_demo.project.weight.grad, "gradients equal to encoding every token", atol=1e-9)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_4_reversing_padded", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 6 · Exercise 4: reversing padded sequences (2 points)
#
# The backward LM reads each sentence from its end. With padding, `x.flip(1)` would put the
# padding first. Write `reverse_padded(x, lengths)`: for `x` `(batch, seq, ...)`, reverse the
# first `lengths[b]` items of each row `b` and leave the padding where it is. Use one
# `gather` (or index) with a computed index tensor; no Python loop over the batch (the test counts
# the Python lines your function runs for a batch of 4 and of 400: a loop shows as lines that grow).
#
# <details><summary>Hint 1</summary>
#
# Reversing within the length only moves items inside the row, never across into the padding: every output position reads one input position of the same row, and a padding position reads itself. A table of those positions is all `gather` needs.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Position `t` of row `b` reads position `lengths[b] - 1 - t` while `t < lengths[b]`, and position `t` in the padding.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# Build that index for the whole batch at once by broadcasting a row of positions `(1, seq)` against the lengths `(batch, 1)`, then expand it over the trailing axes of `x` so that one `gather` along the sequence axis uses it.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "reverse_padded", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse the first lengths[b] steps of each row of x (batch, seq, ...); padding stays."""
    ### BEGIN SOLUTION
    seq = x.shape[1]
    positions = torch.arange(seq, device=x.device)[None, :]               # (1, seq)
    lengths = lengths.to(x.device)[:, None]                               # (batch, 1)
    index = torch.where(positions < lengths, lengths - 1 - positions, positions)  # (batch, seq)
    index = index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
# try it: two padded sentences, reversed within their lengths
demo_rows = [["the", "state", "of", "alabama"], ["a", "state", "<pad>", "<pad>"]]
demo_ids = torch.tensor([[word_to_id.get(w, PAD) for w in row] for row in demo_rows])
for row in reverse_padded(demo_ids, torch.tensor([4, 2])).tolist():
    print([words[i] for i in row])

# %% nbgrader={"grade": true, "grade_id": "test_reverse_padded", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""reverse_padded: each row reversed within its length, padding untouched, no loop over the batch."""


from course_utils.checks import python_lines_run  # counts the Python lines a call runs: a loop shows


x = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0], [6, 7, 8, 9]])
got = reverse_padded(x, torch.tensor([3, 2, 4]))
check_shape(got, (3, 4), "reverse_padded(x, lengths) for x (batch=3, seq=4)")
assert got.tolist() != x.flip(1).tolist(), (
    f"reverse_padded(x, tensor([3, 2, 4])) gives {got.tolist()}: every row flipped whole, so the padding (the 0s) moved "
    "to the front; only the first lengths[b] items of row b are reversed, the padding stays at the end")
assert got[:, 0].tolist() == [3, 5, 9], (
    f"reverse_padded(x, tensor([3, 2, 4])) gives {got.tolist()}: a reversed row starts with its last real item, the one "
    f"at position lengths[b] - 1 (3, 5 and 9 here), but yours start with {got[:, 0].tolist()}; is the index off by one?")
assert got.tolist() == [[3, 2, 1, 0], [5, 4, 0, 0], [9, 8, 7, 6]], \
    f"reverse_padded(x, tensor([3, 2, 4])): expected [[3, 2, 1, 0], [5, 4, 0, 0], [9, 8, 7, 6]], got {got.tolist()}"
loop_sizes = torch.Generator().manual_seed(0)
small_lines = python_lines_run(reverse_padded, torch.randn(4, 9, 3), torch.randint(1, 10, (4,), generator=loop_sizes))
large_lines = python_lines_run(reverse_padded, torch.randn(400, 9, 3), torch.randint(1, 10, (400,), generator=loop_sizes))
assert large_lines <= small_lines + 20, (f"reverse_padded: {small_lines} Python lines for a batch of 4, {large_lines} for "
                                        "400: a Python loop over the batch? Build one index tensor for the whole batch")
### BEGIN HIDDEN TESTS
feats = torch.arange(24.0).view(2, 4, 3)
rev = reverse_padded(feats, torch.tensor([2, 4]))
assert torch.equal(rev[0, 0], feats[0, 1]) and torch.equal(rev[0, 2:], feats[0, 2:]), "trailing feature axes"
assert torch.equal(rev[1], feats[1].flip(0)), "a full-length row is simply flipped"
assert torch.equal(reverse_padded(rev, torch.tensor([2, 4])), feats), "reversing twice gives the input back"
one = reverse_padded(torch.tensor([[7, 0, 0]]), torch.tensor([1]))
assert one.tolist() == [[7, 0, 0]], f"length 1: {one.tolist()}"
marked = torch.tensor([[1, 2, 3, -1, -2]])
assert reverse_padded(marked, torch.tensor([3])).tolist() == [[3, 2, 1, -1, -2]], "padding keeps its place and values"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_5_bidirectional_language", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 7 · Exercise 5: the bidirectional language model (4 points)
#
# Complete `BiLM.forward(char_ids, lengths)`, returning
# `(x, forward_layers, backward_layers)`: the token encodings `(batch, seq, dim)` and two lists
# of two `(batch, seq, dim)` tensors, one per LSTM layer:
#
# 1. `x = encode_types(self.encoder, char_ids)` (your `CharCNN`, once per distinct word);
# 2. the forward stack reads `x` left to right: $h^{(1)} = $ `self._run(self.forward_lstms[0], x, lengths)`
#    (`_run` packs with `lengths`), then $h^{(2)} = $ `self._run(self.forward_lstms[1], h1, lengths)` $+\, h^{(1)}$;
# 3. the backward stack (`self.backward_lstms`, its own weights) does the same on
#    `reverse_padded(x, lengths)`; reverse both its layers back, so that `backward_layers[j][:, t]`
#    has read tokens `t..end` only;
# 4. padded positions of every state tensor are zeros (packing does this).
#
# `lm_losses` (given) predicts token $t+1$ from `forward_layers[1][:, t]` and token $t-1$ from
# `backward_layers[1][:, t]` with the **shared** softmax `self.softmax`, and returns both
# directions' mean cross-entropy.
#
# <details><summary>Hint 1</summary>
#
# The two directions run the same two-layer recipe: one on `x`, one on the reversed `x`, each with its own list of LSTMs.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# In each direction, layer 2 reads layer 1's output and adds layer 1 back. `_run` does the packing, and the zeros at the padding come with it.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# The backward stack's outputs come out in reversed order: reverse each of its two layers back, with the same lengths, before returning them.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "bilm", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class BiLM(nn.Module):
    """Character-CNN token encoder, separate two-layer forward and backward LSTMs, a shared softmax."""

    def __init__(self, n_chars: int, vocab_size: int, dim: int = 128) -> None:
        super().__init__()
        self.encoder = CharCNN(n_chars, out_dim=dim)
        self.forward_lstms = nn.ModuleList(nn.LSTM(dim, dim, batch_first=True) for _ in range(2))
        self.backward_lstms = nn.ModuleList(nn.LSTM(dim, dim, batch_first=True) for _ in range(2))
        self.softmax = nn.Linear(dim, vocab_size)

    def _run(self, lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = lstm(packed)
        return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]

    def forward(self, char_ids: torch.Tensor, lengths: torch.Tensor):
        """char_ids (batch, seq, max_chars) -> x, [forward layer 1, 2], [backward layer 1, 2], each (batch, seq, dim)."""
        ### BEGIN SOLUTION
        x = encode_types(self.encoder, char_ids)                        # (batch, seq, dim)
        f1 = self._run(self.forward_lstms[0], x, lengths)               # (batch, seq, dim)
        f2 = self._run(self.forward_lstms[1], f1, lengths) + f1         # residual
        reversed_x = reverse_padded(x, lengths)
        b1 = self._run(self.backward_lstms[0], reversed_x, lengths)
        b2 = self._run(self.backward_lstms[1], b1, lengths) + b1
        return x, [f1, f2], [reverse_padded(b1, lengths), reverse_padded(b2, lengths)]
        ### END SOLUTION

    def lm_losses(self, char_ids: torch.Tensor, word_ids: torch.Tensor, lengths: torch.Tensor):
        """Mean cross-entropy of the forward and of the backward direction over real targets."""
        _, forward_layers, backward_layers = self(char_ids, lengths)
        forward_logits = self.softmax(forward_layers[1][:, :-1])       # predicts tokens 1..end
        backward_logits = self.softmax(backward_layers[1][:, 1:])      # predicts tokens 0..end-1
        real = torch.arange(word_ids.shape[1], device=word_ids.device)[None] < lengths.to(word_ids.device)[:, None]
        targets_f = word_ids[:, 1:].masked_fill(~real[:, 1:], -100)
        targets_b = word_ids[:, :-1].masked_fill(~real[:, 1:], -100)
        return (F.cross_entropy(forward_logits.flatten(0, 1), targets_f.flatten()),
                F.cross_entropy(backward_logits.flatten(0, 1), targets_b.flatten()))


# %% slideshow={"slide_type": "fragment"}
# try it: a fresh biLM on two padded sentences; the shapes, and zeros where the padding is
torch.manual_seed(0)
bilm_demo = BiLM(len(chars), len(words), dim=8)
demo_chars = torch.zeros(2, 5, MAX_WORD, dtype=torch.long)
demo_chars[0] = encode("the state of the art".split())[0]
demo_chars[1, :3] = encode("a federal state".split())[0]
with torch.no_grad():
    x_demo, forward_demo, backward_demo = bilm_demo(demo_chars, torch.tensor([5, 3]))
print("x", tuple(x_demo.shape), "| forward layers", [tuple(h.shape) for h in forward_demo],
      "| backward layers", [tuple(h.shape) for h in backward_demo])
print("row 1, forward layer 2, |h| per position:", forward_demo[1][1].norm(dim=-1).round(decimals=3).tolist())
print("fresh losses (forward, backward):", [round(v.item(), 2) for v in bilm_demo.lm_losses(demo_chars, torch.zeros(2, 5, dtype=torch.long) + 2, torch.tensor([5, 3]))],
      f"~ log {len(words)} = {math.log(len(words)):.2f}")

# %% nbgrader={"grade": true, "grade_id": "test_bilm", "locked": true, "points": 4.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""BiLM: forward states ignore the future, backward states the past; padding changes nothing; each direction has its own LSTMs; two layers with a residual."""
import copy

torch.manual_seed(0)
lm_demo = BiLM(len(chars), len(words), dim=16).double()
sentence = "the river bank was wet".split()
a, _ = encode(sentence)
b, _ = encode(sentence[:3] + ["money", "today"])
lengths = torch.tensor([5])
_, fa, ba = lm_demo(a[None], lengths)
_, fb, bb = lm_demo(b[None], lengths)
assert len(fa) == 2 and len(ba) == 2, f"expected two layers per direction, got {len(fa)} forward and {len(ba)} backward"
for name, layers in (("forward_layers", fa), ("backward_layers", ba)):
    for j in range(2):
        check_shape(layers[j], (1, 5, 16), f"{name}[{j}] for one sentence of 5 tokens and dim 16: (batch, seq, dim)")
for j in range(2):
    assert_close(fa[j][:, :3], fb[j][:, :3],
                 f"forward_layers[{j}] at t <= 2 when tokens 3-4 change: it must not depend on the future", atol=1e-12)
first_changed, _ = encode(["a"] + sentence[1:])
_, _, bd = lm_demo(first_changed[None], lengths)
moved = [t for t in range(5) if not torch.allclose(bd[0][0, t], ba[0][0, t], atol=1e-12)]
assert moved != [4], (
    "changing token 0 changes backward_layers[0] at position 4 only, as if the backward states were still in reversed "
    "order; backward_layers[j][:, t] must be the state that has read tokens t..end, at position t")
assert moved == [0], (
    f"changing token 0 changes backward_layers[0] at positions {moved}: a backward state at t reads tokens t..end only, "
    "so only position 0 may change; does the backward stack read the sentence from its end?")
for j in range(2):
    assert not torch.allclose(ba[j][:, :3], bb[j][:, :3]), \
        f"backward_layers[{j}] at t <= 2 does not change when tokens 3-4 do: it must read tokens t..end"
c, _ = encode(["a", "sandy"] + sentence[2:])
_, fc, bc = lm_demo(c[None], lengths)
for j in range(2):
    assert_close(bc[j][:, 2:], ba[j][:, 2:],
                 f"backward_layers[{j}] at t >= 2 when tokens 0-1 change: it must not depend on the past", atol=1e-12)
    assert not torch.allclose(fc[j][:, 2:], fa[j][:, 2:]), \
        f"forward_layers[{j}] at t >= 2 does not change when tokens 0-1 do: it must read tokens 0..t"
two_rows = torch.zeros(2, 5, MAX_WORD, dtype=torch.long)
two_rows[0], two_rows[1, :3] = a, a[:3]
_, f_rows, b_rows = lm_demo(two_rows, torch.tensor([5, 3]))
_, f_alone, b_alone = lm_demo(a[None, :3], torch.tensor([3]))
for j in range(2):
    assert_close(f_rows[j][1, :3], f_alone[j][0],
                 f"forward_layers[{j}] of a row of 3 tokens and 2 padding against the same 3 tokens alone", atol=1e-12)
    assert torch.allclose(b_rows[j][1, :3], b_alone[j][0], atol=1e-12), (
        f"backward_layers[{j}] of a row of 3 tokens and 2 padding differs from the same 3 tokens alone: the backward LM must start at the row's last real token, not in its padding")
nudged = copy.deepcopy(lm_demo)
with torch.no_grad():
    for p in nudged.forward_lstms.parameters():
        p.add_(0.1)
_, _, b_nudged = nudged(a[None], lengths)
for j in range(2):
    assert torch.allclose(b_nudged[j], ba[j], atol=1e-12), (
        f"changing only self.forward_lstms changes backward_layers[{j}]: the backward stack runs on its own LSTMs, "
        "self.backward_lstms")
silent = copy.deepcopy(lm_demo)
with torch.no_grad():
    for lstm in (silent.forward_lstms[1], silent.backward_lstms[1]):
        for p in lstm.parameters():
            p.zero_()                                   # an LSTM with all weights 0 outputs 0
_, f_silent, b_silent = silent(a[None], lengths)
for name, layers in (("forward_layers", f_silent), ("backward_layers", b_silent)):
    assert not (layers[1] == 0).all(), (
        f"with the second LSTMs silenced (all weights 0, so they output 0), {name}[1] is all zeros; layer 2 is "
        "LSTM_2(h1) + h1, so here it should equal layer 1: is the residual added?")
    assert_close(layers[1], layers[0], f"{name}[1] with a silenced second LSTM: h2 = 0 + h1 = {name}[0]", atol=1e-12)
deaf = copy.deepcopy(lm_demo)
with torch.no_grad():
    for lstm in (deaf.forward_lstms[0], deaf.backward_lstms[0]):
        for p in lstm.parameters():
            p.zero_()                                   # layer 1 outputs 0 everywhere
_, f_deaf_a, b_deaf_a = deaf(a[None], lengths)
_, f_deaf_b, b_deaf_b = deaf(b[None], lengths)
for name, one, other in (("forward_layers", f_deaf_a, f_deaf_b), ("backward_layers", b_deaf_a, b_deaf_b)):
    assert torch.allclose(one[1], other[1], atol=1e-12), (
        f"with the first LSTMs silenced (layer 1 is 0 everywhere), {name}[1] still depends on the tokens: layer 2 "
        "reads layer 1's output h1, not the token encodings x")
### BEGIN HIDDEN TESTS
padded = torch.zeros(2, 7, MAX_WORD, dtype=torch.long)
padded[0, :5] = a
padded[1, :3] = a[:3]
_, fp, bp = lm_demo(padded, torch.tensor([5, 3]))
for j in range(2):
    assert_close(fp[j][0, :5], fa[j][0], f"forward layer {j + 1} with extra padding", atol=1e-12)
    assert_close(bp[j][0, :5], ba[j][0], f"backward layer {j + 1} with extra padding", atol=1e-12)
    assert (fp[j][0, 5:] == 0).all() and (bp[j][1, 3:] == 0).all(), "padded positions must be zero"
_, f3, b3 = lm_demo(a[None, :3], torch.tensor([3]))
assert_close(bp[1][1, :3], b3[1][0], "a short row's backward states start at its own last token", atol=1e-12)
assert lm_demo.forward_lstms[0] is not lm_demo.backward_lstms[0]
# the residual: with a silent second LSTM (all weights 0, so its output is 0) layer 2 equals layer 1
assert not torch.allclose(fa[1], fa[0]) and not torch.allclose(ba[1], ba[0]), "layer 2 must differ from layer 1"
with torch.no_grad():
    for lstm in (lm_demo.forward_lstms[1], lm_demo.backward_lstms[1]):
        for p in lstm.parameters():
            p.zero_()
_, fz, bz = lm_demo(a[None], lengths)
assert_close(fz[1], fz[0], "forward layer 2 = LSTM_2(layer 1) + layer 1 (the residual)", atol=1e-12)
assert_close(bz[1], bz[0], "backward layer 2 = LSTM_2(layer 1) + layer 1 (the residual)", atol=1e-12)
assert_close(fz[0], fa[0], "layer 1 does not depend on the second LSTM", atol=1e-12)
torch.manual_seed(1)
own_lm = BiLM(len(chars), len(words), dim=16).double()
_, f_before, b_before = own_lm(a[None], lengths)
with torch.no_grad():
    for p in own_lm.forward_lstms.parameters():
        p.add_(0.1)
_, f_after, b_after = own_lm(a[None], lengths)
for j in range(2):
    assert_close(b_after[j], b_before[j], f"backward layer {j + 1} must not use the forward LSTMs", atol=1e-12)
    assert not torch.allclose(f_after[j], f_before[j]), f"forward layer {j + 1} must use the forward LSTMs"
with torch.no_grad():
    for lstm in (own_lm.forward_lstms[0], own_lm.backward_lstms[0]):
        for p in lstm.parameters():
            p.zero_()                                            # layer 1 outputs 0 everywhere
_, fa0, ba0 = own_lm(a[None], lengths)
_, fb0, bb0 = own_lm(b[None], lengths)
assert_close(fa0[1], fb0[1], "forward layer 2 reads layer 1 (here 0), not the token encodings", atol=1e-12)
assert_close(ba0[1], bb0[1], "backward layer 2 reads backward layer 1 (here 0), not the token encodings", atol=1e-12)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "speed_text", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# What encoding each distinct word once buys: a training step (forward and backward) of a fresh
# biLM on the same batches, with `encode_types` and with the encoder run on every token. The
# saving is the CNN's share of a step times the share of repeated tokens; our CNN is small (256
# filters over 16 characters; ELMo's has 2,048 over 50), so here it is modest, and it grows with
# the CNN.

# %% slideshow={"slide_type": "fragment"}
timing_lm = BiLM(len(chars), len(words)).to(device)
typed_encoding = encode_types


def seconds_per_step(n: int = 3) -> float:
    start = time.perf_counter()
    for char_ids, word_ids, lengths in train_batches[:n]:
        sum(timing_lm.lm_losses(char_ids.to(device), word_ids.to(device), lengths)).backward()
    return (time.perf_counter() - start) / n


seconds_per_step(1)                                                       # warm-up
per_type = seconds_per_step()
encode_types = lambda encoder, char_ids: encoder(char_ids)                # every token through the CNN
try:
    per_token = seconds_per_step()
finally:
    encode_types = typed_encoding                                          # your function back, whatever happened
print(f"per training step: {per_token:.3f} s encoding every token, {per_type:.3f} s once per distinct word "
      f"({per_token / per_type:.1f}x faster)")
del timing_lm

# %% [markdown] nbgrader={"grade": false, "grade_id": "training_bidirectional_lm", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 8 · Training the bidirectional LM
#
# Adam with a short warm-up and a cosine decay, a fixed number of steps (150) sized for
# under two minutes on two CPU cores. We report the held-out perplexity $\exp(\text{mean NLL})$
# of each direction, their arithmetic mean $(p_\to + p_\leftarrow)/2$ (the number ELMo reports for its
# biLM: the average of the forward and backward perplexities) and their geometric mean $\sqrt{p_\to\, p_\leftarrow}$,
# the exponential of the mean of the two losses we train on. **Target (tested):** a geometric mean at
# most 0.75 x the unigram baseline's (the hidden test re-measures it on the trained model). Two baselines,
# counted on the training rows: the **unigram** model (every token from its frequency, add-one
# smoothed) and an **interpolated bigram**,
# $p(t_k \mid t_{k-1}) = 0.6\, \frac{n(t_{k-1} t_k)}{n(t_{k-1})} + 0.4\, p_\text{unigram}(t_k)$
# (and the mirror image for the backward direction; the weight 0.6 is fixed, not tuned on held-out text).
#
# **The softmax bias starts at the unigram.** A fresh character CNN points all words in nearly one
# direction: a random filter's maximum over a word's positions leans positive, so after `tanh`
# the features of every word lean the same way (the cell prints the mean cosine between the
# encodings of two of the 1,000 most frequent words). What a language model learns first is the
# unigram, and with zero biases it can only learn it by moving every state, hence every encoding,
# the same way. All words share the encoder's weights, and Adam moves each weight by about its
# learning rate whatever the size of its gradient, so this common part can grow quickly, until the
# encodings barely tell words apart. Starting the softmax bias at the log unigram frequencies (a
# common initialisation of an output layer) hands the unigram to the bias from the first step, so
# what reaches the encoder is the signal that tells words apart. To let you see the difference, the
# cell first trains a copy for 20 steps with the bias left at zero (same batches, same optimiser and
# schedule) and prints the same cosine for it next to the real model's, fresh and after training.

# %% slideshow={"slide_type": "fragment"}
seed_everything(0)
lm = BiLM(len(chars), len(words)).to(device)
print(f"{count_parameters(lm):,} parameters")
train_ids = torch.tensor([word_to_id.get(w, UNK) for row in train_rows for w in row])
unigram_log_p = ((torch.bincount(train_ids, minlength=len(words)) + 1.0) / (len(train_ids) + len(words))).log()
with torch.no_grad():
    lm.softmax.bias.copy_(unigram_log_p.to(device))                # the softmax starts as the unigram model
frequent = torch.stack([encode([w])[0][0] for w in words[2:1002]]).to(device)   # the 1,000 most frequent words


@torch.no_grad()
def mean_cosine(vectors: torch.Tensor) -> float:
    """Mean cosine similarity between two different rows of vectors (n, dim)."""
    unit = F.normalize(vectors, dim=-1)
    return ((unit @ unit.T).sum().item() - len(unit)) / (len(unit) * (len(unit) - 1))


fresh_cosine = mean_cosine(lm.encoder(frequent))
print(f"fresh encoder: mean cosine between two frequent words' encodings {fresh_cosine:.2f}")
STEPS = 150


def loss_fn(model: BiLM, batch) -> torch.Tensor:
    char_ids, word_ids, lengths = batch
    return sum(model.lm_losses(char_ids, word_ids, lengths)) / 2


def held_out_perplexity(model: BiLM) -> dict[str, float]:
    totals, n = torch.zeros(2), 0
    for char_ids, word_ids, lengths in held_batches:
        targets = int((lengths - 1).sum())
        totals += torch.stack(model.lm_losses(char_ids.to(device), word_ids.to(device), lengths)).cpu() * targets
        n += targets
    forward, backward = (totals / n).exp().tolist()
    return {"perplexity": math.sqrt(forward * backward), "forward": forward, "backward": backward}


def schedule(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over 20 steps, then a cosine decay to zero at STEPS."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 20) * 0.5 * (1 + math.cos(math.pi * min(step, STEPS) / STEPS)))


zero_bias_lm = BiLM(len(chars), len(words)).to(device)             # the same start, the softmax bias at zero
zero_bias_lm.load_state_dict(lm.state_dict())
with torch.no_grad():
    zero_bias_lm.softmax.bias.zero_()
zero_bias_optimizer = torch.optim.Adam(zero_bias_lm.parameters(), lr=3e-3)
fit(zero_bias_lm, loss_fn, train_batches, zero_bias_optimizer, 20, device=device, scheduler=schedule(zero_bias_optimizer),
    description="biLM, zero bias", progress=False)
zero_bias_cosine = mean_cosine(zero_bias_lm.eval().encoder(frequent))
del zero_bias_lm, zero_bias_optimizer

optimizer = torch.optim.Adam(lm.parameters(), lr=3e-3)
history = fit(lm, loss_fn, train_batches, optimizer, STEPS, device=device, scheduler=schedule(optimizer),
              eval_fn=held_out_perplexity, eval_every=75, description="biLM")
lm_perplexity = history.last("perplexity")
trained_cosine = mean_cosine(lm.eval().encoder(frequent))
print(f"trained in {history.seconds:.0f} s ({history.seconds / STEPS:.2f} s/step)")
print(f"mean cosine between two frequent words' encodings: {fresh_cosine:.2f} fresh; {zero_bias_cosine:.2f} after 20 steps "
      f"with the softmax bias at zero; {trained_cosine:.2f} after {STEPS} steps from the unigram bias "
      f"({'less' if trained_cosine < fresh_cosine else 'more'} alike than fresh)")

# %% slideshow={"slide_type": "fragment"}
unigram_counts = torch.zeros(len(words), dtype=torch.float64)
bigram_counts = Counter()
for row in train_rows:
    ids = [word_to_id.get(w, UNK) for w in row]
    unigram_counts += torch.bincount(torch.tensor(ids), minlength=len(words))
    bigram_counts.update(zip(ids[:-1], ids[1:]))
unigram_p = ((unigram_counts + 1) / (unigram_counts + 1).sum()).tolist()
left_totals, right_totals = Counter(), Counter()
for (left, right), n in bigram_counts.items():
    left_totals[left] += n
    right_totals[right] += n
nll = {"unigram": [0.0, 0.0], "bigram": [0.0, 0.0]}
n_targets = 0
for row in held_rows:
    ids = [word_to_id.get(w, UNK) for w in row]
    for left, right in zip(ids[:-1], ids[1:]):
        pair = bigram_counts[(left, right)]
        nll["unigram"][0] -= math.log(unigram_p[right])
        nll["unigram"][1] -= math.log(unigram_p[left])
        nll["bigram"][0] -= math.log(0.6 * pair / max(left_totals[left], 1) + 0.4 * unigram_p[right])
        nll["bigram"][1] -= math.log(0.6 * pair / max(right_totals[right], 1) + 0.4 * unigram_p[left])
        n_targets += 1
baseline = {name: [math.exp(v / n_targets) for v in both] for name, both in nll.items()}
unigram_perplexity = math.sqrt(baseline["unigram"][0] * baseline["unigram"][1])
bigram_perplexity = math.sqrt(baseline["bigram"][0] * baseline["bigram"][1])
final = history.evals[-1][1]
print(f"{'held-out perplexity':<22}{'forward':>9}{'backward':>10}{'mean (ELMo)':>13}{'geometric mean':>16}{'/ unigram':>11}")
for name, (f, b) in [("biLM (char-CNN)", (final["forward"], final["backward"])), ("interpolated bigram", baseline["bigram"]),
                     ("unigram", baseline["unigram"])]:
    print(f"{name:<22}{f:>9.0f}{b:>10.0f}{(f + b) / 2:>13.0f}{math.sqrt(f * b):>16.0f}{math.sqrt(f * b) / unigram_perplexity:>11.2f}")
print(f"the biLM's perplexity is {lm_perplexity / bigram_perplexity:.2f} x the bigram's")
plot_history(history, log_y=True)
plt.show()

# %% nbgrader={"grade": true, "grade_id": "test_trained_lm", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""The trained biLM's held-out perplexity is at most 0.75 x the unigram perplexity."""
assert lm_perplexity <= 0.75 * unigram_perplexity, (
    f"the trained biLM's held-out perplexity (the geometric mean of the two directions) is {lm_perplexity:.0f}, above "
    f"0.75 x the unigram's, {0.75 * unigram_perplexity:.0f}: the target of section 8")
### BEGIN HIDDEN TESTS
with torch.no_grad():
    again = held_out_perplexity(lm.eval())
assert abs(again["perplexity"] - lm_perplexity) / lm_perplexity < 0.01, "the reported perplexity must come from the trained model"
assert 1 < again["perplexity"] < unigram_perplexity, "a perplexity lies between 1 and the unigram baseline"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_6_scalar_mix", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 9 · Exercise 6: the scalar mix (2 points)
#
# Write `ScalarMix(n_layers)` with parameters `weights` `(n_layers,)` (zeros: an equal mix at
# the start) and `gamma` (one). `forward(layers)` takes `(n_layers, ..., dim)` and returns
# $\gamma \sum_j \operatorname{softmax}(w)_j\, h_j$, shape `(..., dim)`.
#
# <details><summary>Hint 1</summary>
#
# `weights` and `gamma` are both `nn.Parameter`s, so that the downstream task's optimiser trains them.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Normalise the weights with a softmax over the layer axis, weight each layer by its share and sum over the first axis of `layers` (`torch.tensordot` does both, or broadcast a reshaped `s`), then scale by `gamma`.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "scalar_mix", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class ScalarMix(nn.Module):
    """gamma * sum_j softmax(w)_j * layer_j."""

    def __init__(self, n_layers: int) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        self.weights = nn.Parameter(torch.zeros(n_layers))
        self.gamma = nn.Parameter(torch.ones(()))
        ### END SOLUTION

    def forward(self, layers: torch.Tensor) -> torch.Tensor:
        """layers (n_layers, ..., dim) -> (..., dim)."""
        ### BEGIN SOLUTION
        s = torch.softmax(self.weights, dim=0)                          # (n_layers,)
        return self.gamma * torch.tensordot(s.to(layers.dtype), layers, dims=([0], [0]))
        ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
# try it: three constant "layers" 1, 2 and 6; the equal mix, then weights that favour the last
mix_demo = ScalarMix(3)
demo_layers = torch.stack([torch.full((1, 2), v) for v in (1.0, 2.0, 6.0)])   # (3, 1, 2)
print("equal mix:", mix_demo(demo_layers).tolist())
with torch.no_grad():
    mix_demo.weights.copy_(torch.tensor([0.0, 0.0, 2.0]))
print("weights (0, 0, 2) -> s =", [round(v, 3) for v in torch.softmax(mix_demo.weights, 0).tolist()], "->", mix_demo(demo_layers).tolist())

# %% nbgrader={"grade": true, "grade_id": "test_scalar_mix", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""ScalarMix: learnable weights and gamma, an equal mix at the start, softmax weights and gamma as in the formula."""
mix = ScalarMix(3)
names = sorted(n for n, _ in mix.named_parameters())
assert names == ["gamma", "weights"], (
    f"ScalarMix(3) has the parameters {names}: the prompt asks for two, weights and gamma, both learned with the "
    "downstream task (an nn.Parameter each)")
layers = torch.stack([torch.full((2, 4), v) for v in (1.0, 2.0, 6.0)])   # layer j is the constant 1, 2 or 6
out = mix(layers)
check_shape(out, (2, 4), "ScalarMix(3) on layers (n_layers=3, 2, 4): (..., dim)")
assert_close(out, torch.full((2, 4), 3.0), "ScalarMix(3) as initialised (weights 0, gamma 1): the equal mix (1 + 2 + 6) / 3")
with torch.no_grad():
    mix.gamma.fill_(2.0)
assert not torch.allclose(mix(layers), out), (
    "setting gamma to 2 leaves the output of ScalarMix unchanged: the mix is gamma * sum_j s_j h_j; is gamma used?")
with torch.no_grad():
    mix.weights.copy_(torch.tensor([0.0, math.log(3.0), 0.0]))
    mix.gamma.fill_(1.0)
s_read = mix(torch.eye(3))                 # layer j is the j-th unit vector, so the output is (s_0, s_1, s_2)
shown = [round(v, 4) for v in s_read.tolist()]
assert abs(s_read.sum().item() - 1) < 1e-5, (
    f"with weights (0, log 3, 0) and gamma 1 the layers are mixed with s = {shown}, which sums to "
    f"{s_read.sum().item():.4f}: s = softmax(w) sums to 1 whatever w is; are the weights normalised?")
assert abs(s_read[1].item() / s_read[0].item() - 3) < 1e-4, (
    f"with weights (0, log 3, 0) the layers are mixed with s = {shown}: they sum to 1, but s_1 / s_0 = "
    f"{s_read[1].item() / s_read[0].item():.4f}, not exp(log 3 - 0) = 3 as for s = softmax(w)")
with torch.no_grad():
    mix.gamma.fill_(2.0)
# softmax = (1, 3, 1) / 5 -> (1 + 6 + 6) / 5 = 2.6, times gamma 2
assert_close(mix(layers), torch.full((2, 4), 5.2), "ScalarMix with weights (0, log 3, 0) and gamma 2: 2 * (1 + 6 + 6) / 5",
             atol=1e-5)
### BEGIN HIDDEN TESTS
assert sorted(n for n, _ in mix.named_parameters()) == ["gamma", "weights"], "parameters named weights and gamma"
mix(layers).sum().backward()
assert mix.weights.grad is not None and mix.gamma.grad is not None, "both must be learnable"
with torch.no_grad():
    mix.weights.copy_(torch.tensor([100.0, 0.0, 0.0]))
    mix.gamma.fill_(1.0)
assert_close(mix(layers), torch.full((2, 4), 1.0), "softmax, not raw weights (the mix must be normalised)", atol=1e-5)
with torch.no_grad():
    mix.weights.copy_(torch.tensor([1.0, 2.0, 3.0]))
s = torch.softmax(torch.tensor([1.0, 2.0, 3.0]), 0)
assert_close(mix(layers), torch.full((2, 4), float(s @ torch.tensor([1.0, 2.0, 6.0]))), "softmax over the layer axis", atol=1e-5)
five = ScalarMix(5)
check_shape(five(torch.randn(5, 2, 3, 7)), (2, 3, 7), "five layers of (2, 3, 7)")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "contextual_against_static", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 10 · Contextual against static
#
# ELMo's three layers for a token: layer 0 is the character encoding (duplicated to match the
# width of the others), layers 1 and 2 the concatenated forward and backward states. Here we take
# an equal mix (`ScalarMix(3)` as initialised). The word "state" is a polity in "the state of
# alabama" and a condition in "a state of emergency": its static vector (layer 0) is the same in
# every sentence, its ELMo vectors are not. `position_of` finds the word as a whole token, so
# "states" does not count as "state".

# %% nbgrader={"grade": false, "grade_id": "elmo_vectors", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
lm.eval()


@torch.no_grad()
def elmo_layers(sentences: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The three layers (3, batch, seq, 2*dim) of a list of token lists, and their lengths."""
    width = max(len(s) for s in sentences)
    char_ids = torch.zeros(len(sentences), width, MAX_WORD, dtype=torch.long)
    for i, s in enumerate(sentences):
        char_ids[i, :len(s)] = encode(s)[0]
    lengths = torch.tensor([len(s) for s in sentences])
    x, forward_layers, backward_layers = lm(char_ids.to(device), lengths)
    layers = [torch.cat([x, x], dim=-1)] + [torch.cat(pair, dim=-1) for pair in zip(forward_layers, backward_layers)]
    return torch.stack(layers).cpu(), lengths


def position_of(sentence: list[str], word: str) -> int:
    """Index of the first token equal to word (a whole token: 'states' is not 'state')."""
    if word not in sentence:
        raise ValueError(f"{word!r} is not a token of {' '.join(sentence)!r}")
    return sentence.index(word)


assert position_of("the united states and the state".split(), "state") == 5
try:
    position_of("the united states".split(), "state")
    raise AssertionError("'states' must not count as 'state'")
except ValueError:
    pass

# %% slideshow={"slide_type": "fragment"}
senses = {"polity": ["the state of alabama has a governor and a capital city",
                     "alaska was admitted as the forty ninth state of the union",
                     "the state government passed a law on taxes",
                     "montana is a state in the west of the country"],
          "condition": ["during sleep a person is in an altered state of mind",
                        "the government lifted the state of emergency after the war",
                        "in the liquid state water is denser than ice",
                        "the oxidation state of the element is three"]}
probe = [(sense, s.split()) for sense, group in senses.items() for s in group]
probe_layers, _ = elmo_layers([s for _, s in probe])
equal_mix = ScalarMix(3)
with torch.no_grad():
    picked_layers = torch.stack([probe_layers[:, i, position_of(s, "state")] for i, (_, s) in enumerate(probe)], 1)  # (3, 8, 2*dim)
    picked = equal_mix(picked_layers)                                   # (8, 2*dim)
similarity = F.normalize(picked, dim=-1) @ F.normalize(picked, dim=-1).T
static_similarity = F.normalize(picked_layers[0], dim=-1) @ F.normalize(picked_layers[0], dim=-1).T
same = torch.tensor([[a == b for b, _ in probe] for a, _ in probe]) & ~torch.eye(len(probe), dtype=torch.bool)
across = torch.tensor([[a != b for b, _ in probe] for a, _ in probe])
labels = [f"{sense}: {' '.join(s[max(0, position_of(s, 'state') - 2):position_of(s, 'state') + 3])}" for sense, s in probe]
fig, axes = plt.subplots(1, 2, figsize=(12, 5))
for ax, matrix, title in ((axes[0], static_similarity, "static (layer 0): one vector per word"),
                          (axes[1], similarity, "ELMo (equal mix): one vector per occurrence")):
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(probe)), labels=range(1, len(probe) + 1))
    ax.set_yticks(range(len(probe)), labels=labels, fontsize=8)
    ax.set_title(title)
fig.colorbar(image, ax=axes, fraction=0.03)
plt.show()
within, between = similarity[same].mean().item(), similarity[across].mean().item()
print(f"ELMo cosine of 'state' with the same sense {within:.2f}, across senses {between:.2f} "
      f"({'the senses separate' if within > between else 'the senses do not separate'}); static: always {static_similarity.min():.2f}")

# %% slideshow={"slide_type": "fragment"}
# nearest held-out tokens to one occurrence of each sense (contextual vectors of the held-out rows)
corpus = [row for row in held_rows[:1500]]
corpus_vectors = []
for start in range(0, len(corpus), 250):
    chunk_layers, chunk_lengths = elmo_layers(corpus[start:start + 250])
    with torch.no_grad():
        mixed = equal_mix(chunk_layers)                                  # (rows, seq, 2*dim)
    corpus_vectors += [mixed[i, :n] for i, n in enumerate(chunk_lengths.tolist())]
flat = F.normalize(torch.cat(corpus_vectors), dim=-1)                   # (tokens, 2*dim)
where = [(i, t) for i, row in enumerate(corpus) for t in range(len(row))]
for k in (0, 5):
    sense, s = probe[k]
    best = (flat @ F.normalize(picked[k], dim=-1)).topk(5).indices.tolist()
    print(f"{sense} ({' '.join(s)}):")
    for j in best:
        i, t = where[j]
        print(f"    {' '.join(corpus[i][max(0, t - 3):t])} [{corpus[i][t]}] {' '.join(corpus[i][t + 1:t + 4])}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "features_classifier", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 11 · A scalar mix learned on a downstream task
#
# ELMo learns the mix weights $w$ and $\gamma$ **with the downstream task**, the language model
# frozen. Our task: the two-class newsgroup set (alt.atheism vs sci.space), 140 posts to train and
# 60 to test, each post the mean of its tokens' vectors (the first 200 tokens of its body). The mean
# commutes with the mix, so we pool each layer once, `(posts, 3, 2*dim)`, and train a `ScalarMix`
# and a linear classifier on top together. Against it: the same classifier on mean-pooled static
# vectors (layer 0 alone).
#
# The LSTMs were trained on rows of at most 40 tokens, so a post is read the same way: cut into rows
# of at most 40 tokens (as the corpus was cut; each row starts from a fresh state, without the
# previous row), its tokens' vectors pooled over all its rows. Read in one go, most of a 200-token
# post's states would come from lengths the language model never trained on.

# %% slideshow={"slide_type": "fragment"}
texts, post_labels, group_names = newsgroups()
documents = [tokenize(post_body(t))[:200] or ["empty"] for t in texts]
post_rows = [(d, doc[i:i + MAX_LEN]) for d, doc in enumerate(documents) for i in range(0, len(doc), MAX_LEN)]
sums = torch.zeros(len(documents), 3, 2 * lm.softmax.in_features)      # (posts, 3, 2*dim)
for start in range(0, len(post_rows), 100):
    owners, chunk = zip(*post_rows[start:start + 100])
    row_layers, row_lengths = elmo_layers(list(chunk))                 # (3, rows, seq, 2*dim)
    real = (torch.arange(row_layers.shape[2])[None] < row_lengths[:, None]).float()[None, ..., None]
    sums.index_add_(0, torch.tensor(owners), (row_layers * real).sum(2).transpose(0, 1))
pooled = sums / torch.tensor([len(d) for d in documents], dtype=torch.float32)[:, None, None]   # mean over the post's tokens
pooled = pooled / pooled[:, 0].norm(dim=-1).mean()
print(f"{len(documents)} posts, {sum(map(len, documents)):,} tokens, read as {len(post_rows)} rows of at most {MAX_LEN}")                      # one common scale for every layer
y = torch.tensor(post_labels)
order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
train_idx, test_idx = order[:140], order[140:]


def train_classifier(features: torch.Tensor, mix: ScalarMix | None = None, steps: int = 300) -> float:
    """Logistic regression on (posts, [3,] 2*dim) features (through the mix when given); test accuracy."""
    seed_everything(0)
    classifier = nn.Linear(features.shape[-1], 2)
    mixed = (lambda f: mix(f.transpose(0, 1))) if mix is not None else (lambda f: f)
    params = [{"params": classifier.parameters(), "weight_decay": 1e-3}]
    if mix is not None:
        params.append({"params": mix.parameters(), "weight_decay": 0.0})
    opt = torch.optim.Adam(params, lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(classifier(mixed(features[train_idx])), y[train_idx]).backward()
        opt.step()
    with torch.no_grad():
        return (classifier(mixed(features[test_idx])).argmax(-1) == y[test_idx]).float().mean().item()


learned_mix = ScalarMix(3)
accuracy = {"ELMo (learned mix)": train_classifier(pooled, learned_mix), "static (layer 0)": train_classifier(pooled[:, 0])}
mix_weights = torch.softmax(learned_mix.weights.detach(), 0)
print({k: f"{v:.1%} (standard error {math.sqrt(v * (1 - v) / len(test_idx)):.1%})" for k, v in accuracy.items()})
print(f"learned mix weights s = {[round(v, 3) for v in mix_weights.tolist()]}, gamma = {learned_mix.gamma.item():.2f}")
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
axes[0].bar(["layer 0\n(characters)", "layer 1\n(LSTM 1)", "layer 2\n(LSTM 2)"], mix_weights.tolist(), color="tab:blue")
axes[0].axhline(1 / 3, color="gray", ls="--", lw=1, label="equal mix")
axes[0].set_title(f"learned mix weights (gamma {learned_mix.gamma.item():.2f})")
axes[0].legend()
axes[1].bar(list(accuracy), list(accuracy.values()), color=["tab:blue", "tab:gray"])
axes[1].set_ylim(0.4, 1.0)
axes[1].set_title(f"{group_names[0]} vs {group_names[1]}: test accuracy")
plt.tight_layout()
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "features_reading", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
# Sixty test posts are few: an accuracy $p$ measured on them has a standard error of about
# $\sqrt{p(1-p)/60}$, 4.6 points at 85% (the cell prints it for each row). A gap between the two rows
# smaller than about twice that says little by itself; read the two accuracies together with the
# learned weights, which say which layers the task drew on.

# %% [markdown] nbgrader={"grade": false, "grade_id": "summary", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## Summary
#
# * A **character CNN** with **highway** layers builds word vectors from spelling, so no word is
#   unknown; masking the max over time makes it blind to padding, and encoding each distinct word
#   once per batch runs it on the distinct words only.
# * A **bidirectional LM** (separate two-layer forward and backward LSTMs with a residual, shared
#   softmax) gives each token states that have read its left and its right context; you checked
#   that each direction sees only its own side, and measured both directions against a unigram and
#   a bigram.
# * ELMo's vector is a **scalar mix** of the layers, learned with the downstream task: different
#   in every sentence, where a static vector is one per word.
# * Next, notebook 03 replaces recurrence as the way to look at context: **attention**.

# %% [markdown] nbgrader={"grade": false, "grade_id": "further_reading", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Further reading
#
# * Peters et al. (2018). *Deep contextualized word representations.* arXiv:1802.05365
# * Kim, Jernite, Sontag, Rush (2016). *Character-Aware Neural Language Models.* arXiv:1508.06615
# * Srivastava, Greff, Schmidhuber (2015). *Highway Networks.* arXiv:1505.00387
# * Jozefowicz et al. (2016). *Exploring the Limits of Language Modeling.* arXiv:1602.02410
#
# <!-- reading-list -->
# **From the course reading list** (`readings/reading-list.md`, mostly Chinese-language articles; links as the list gives them), by the section they go with:
#
# * with *1 · Intuition: one word, several meanings*
#   * [NLP的游戏规则从此改写？从word2vec, ELMo到BERT](https://zhuanlan.zhihu.com/p/47488095): from word2vec and ELMo to BERT: the rules of NLP rewritten (zhihu)
#   * [从Word Embedding到Bert模型—自然语言处理中的预训练技术发展史](https://zhuanlan.zhihu.com/p/49271699): a history of pre-training in NLP, from word embeddings to BERT (zhihu)
# <!-- /reading-list -->
