# ---
# jupyter:
#   celltoolbar: Slideshow
#   kernelspec:
#     display_name: Python 3 (course)
#     language: python
#     name: python3
# ---

# %% [markdown] slideshow={"slide_type": "slide"} nbgrader={"solution": false, "grade": false, "locked": true, "grade_id": "title", "schema_version": 3}
# # 02 · ELMo: contextual word vectors
#
# **Learning objectives.** After this notebook you can
# 1. **explain** why one vector per word cannot represent words with several senses;
# 2. **implement** a character-CNN word encoder with highway layers, robust to padding;
# 3. **build** a bidirectional language model with separate forward and backward LSTMs and a shared softmax;
# 4. **combine** its layers with a learned scalar mix, and **measure** what contextual vectors buy.
#
# **Prerequisites.** Notebook 01 (word vectors), LSTMs, `pack_padded_sequence`, cross-entropy.
#
# **Estimated time.** 2 hours. The notebook runs in about two minutes on a laptop CPU.

# %% [markdown] slideshow={"slide_type": "notes"} nbgrader={"solution": false, "grade": false, "locked": true, "grade_id": "notes_intro", "schema_version": 3}
# Speaker notes: start with "bank" in two sentences and the word2vec vector that has to serve both.

# %% [markdown] slideshow={"slide_type": "subslide"} nbgrader={"solution": false, "grade": false, "locked": true, "grade_id": "setup_text", "schema_version": 3}
# ## Setup

# %% slideshow={"slide_type": "-"} nbgrader={"solution": false, "grade": false, "locked": true, "grade_id": "setup", "schema_version": 3}
import math
import re
from collections import Counter

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_utils import assert_close, check_shape, describe_environment, get_device, seed_everything
from course_utils.data import newsgroups, wikipedia_articles
from course_utils.plot import plot_history
from course_utils.train import count_parameters, fit

seed_everything(0)
device = get_device()
print(describe_environment(device))


# %% [markdown] slideshow={"slide_type": "slide"} nbgrader={"solution": false, "grade": false, "locked": true, "grade_id": "intuition_one_word_several", "schema_version": 3}
# ## 1 · Intuition: one word, several meanings
#
# word2vec gives "bank" one vector, whether the sentence is about rivers or money. ELMo
# (Peters et al., 2018) computes a word's vector **from the whole sentence**: it runs a
# language model forwards and another backwards, and represents each token by a learned
# mix of the models' layers at that position.
#
# Its input is not a word id but the word's **characters**: a convolutional network reads
# them, so unseen words still get a sensible vector and "running"/"runner" share parts.

# %% [markdown] slideshow={"slide_type": "subslide"} nbgrader={"solution": false, "grade": false, "locked": true, "grade_id": "data_wikipedia_sample", "schema_version": 3}
# The data: the Wikipedia sample as one long stream of tokens, cut into windows of 32 tokens.
# The output vocabulary (what the language model predicts) is the 5,000 most frequent words
# plus `<unk>`; the input reads every word's characters, so it has no unknown words.

# %% slideshow={"slide_type": "-"} nbgrader={"solution": false, "grade": false, "locked": true, "grade_id": "corpus", "schema_version": 3}
def tokenize(text: str) -> list[str]:
    """Lowercase word tokens (letters, with inner apostrophes), as in notebook 01."""
    return re.findall(r"[a-z]+(?:'[a-z]+)?", text.lower())


articles = wikipedia_articles()
tokens = [w for article in articles for w in tokenize(article)]
counts = Counter(tokens)
words = ["<pad>", "<unk>"] + [w for w, _ in counts.most_common(5_000)]
word_to_id = {w: i for i, w in enumerate(words)}
PAD, UNK = 0, 1
chars = ["<pad>", "<bow>", "<eow>"] + sorted({c for w in counts for c in w})
char_to_id = {c: i for i, c in enumerate(chars)}
MAX_WORD = 16


def word_chars(word: str) -> list[int]:
    """<bow> characters <eow>, truncated to MAX_WORD ids."""
    ids = [1] + [char_to_id.get(c, 2) for c in word[:MAX_WORD - 2]] + [2]
    return ids


def encode(sentence: list[str], width: int = MAX_WORD) -> tuple[torch.Tensor, torch.Tensor]:
    """Character ids (len, width) and output word ids (len,) of one token list."""
    char_ids = torch.zeros(len(sentence), width, dtype=torch.long)
    for i, word in enumerate(sentence):
        ids = word_chars(word)
        char_ids[i, :len(ids)] = torch.tensor(ids)
    return char_ids, torch.tensor([word_to_id.get(w, UNK) for w in sentence])


SEQ = 32
n_windows = len(tokens) // SEQ
split = int(0.95 * n_windows)
stream_chars, stream_ids = encode(tokens[:n_windows * SEQ])
all_chars = stream_chars.view(n_windows, SEQ, MAX_WORD)          # (windows, SEQ, MAX_WORD)
all_ids = stream_ids.view(n_windows, SEQ)                         # (windows, SEQ)
print(f"{len(tokens):,} tokens; {len(words):,} output words ({(all_ids == UNK).double().mean():.1%} of tokens are <unk>); "
      f"{len(chars)} characters; {split:,} training and {n_windows - split:,} held-out windows of {SEQ}")


# %% [markdown] slideshow={"slide_type": "slide"} nbgrader={"solution": false, "grade": false, "locked": true, "grade_id": "math", "schema_version": 3}
# ## 2 · The math
#
# A word $w$ of characters $c_1..c_L$ becomes $x = \text{Proj}(\text{Highway}(\max_t \text{Conv}(E c)))$.
# A **highway layer** lets information pass unchanged where a gate says so:
#
# $$g = \sigma(W_g x + b_g), \qquad y = g \odot \text{ReLU}(W_h x + b_h) + (1 - g) \odot x$$
#
# The forward LM models $p(t_k \mid t_1..t_{k-1})$ from $\overrightarrow{h}_{k-1}$; the
# backward LM models $p(t_k \mid t_{k+1}..t_N)$ from $\overleftarrow{h}_{k+1}$; both share the
# softmax. ELMo's vector for token $k$ mixes the $L+1$ layers $h_{k,j}$:
#
# $$\text{ELMo}_k = \gamma \sum_{j=0}^{L} s_j\, h_{k,j}, \qquad s = \operatorname{softmax}(w)$$
#
# | symbol | shape | meaning | code name |
# |---|---|---|---|
# | $E c$ | `(words, chars, char_dim)` | character embeddings | `self.embed(char_ids)` |
# | $x$ | `(batch, seq, dim)` | token encoding from characters | `CharCNN(...)` output |
# | $\overrightarrow{h}, \overleftarrow{h}$ | `(batch, seq, hidden)` | forward, backward LSTM states | `forward_states`, `backward_states` |
# | $h_{k,j}$ | `(layers, batch, seq, 2*hidden)` | layer $j$ at token $k$ | `layers` |
# | $w$, $\gamma$ | `(layers,)`, scalar | mix weights (before softmax), scale | `weights`, `gamma` |

# %% [markdown] slideshow={"slide_type": "slide"} nbgrader={"solution": false, "grade": false, "locked": true, "grade_id": "exercise_1_highway_layer", "schema_version": 3}
# ## 3 · Exercise 1: a highway layer (2 points)
#
# Complete `Highway.forward`: for each layer in `self.layers` (an `nn.Linear(dim, 2 * dim)`
# whose output is split into the transform half $W_h x + b_h$ (first) and the gate half
# $W_g x + b_g$ (second)), compute $y$ as above and feed it to the next layer.
# The gate biases start at $-1$ so that a new network mostly carries its input through.

# %% slideshow={"slide_type": "-"} nbgrader={"solution": true, "grade": false, "locked": false, "grade_id": "highway", "schema_version": 3}
class Highway(nn.Module):
    """Highway layers: y = g * relu(W_h x) + (1 - g) * x, with a learned gate g."""

    def __init__(self, dim: int, n_layers: int = 1) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, 2 * dim) for _ in range(n_layers))
        for layer in self.layers:
            nn.init.constant_(layer.bias[dim:], -1.0)          # gate bias: carry by default

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., dim) -> (..., dim)."""
        ### BEGIN SOLUTION
        for layer in self.layers:
            transform, gate = layer(x).chunk(2, dim=-1)         # (..., dim) each
            gate = torch.sigmoid(gate)
            x = gate * F.relu(transform) + (1 - gate) * x
        return x
        ### END SOLUTION


# %% slideshow={"slide_type": "-"} nbgrader={"solution": false, "grade": true, "locked": true, "points": 2.0, "grade_id": "test_highway", "schema_version": 3}
"""Highway: closed form with chosen weights; a closed gate copies the input, an open one transforms."""
layer = Highway(2, 1).double()
with torch.no_grad():
    layer.layers[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0], [0.0, 0.0], [0.0, 0.0]]))
    layer.layers[0].bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0]))     # gate = sigmoid(0) = 0.5
x = torch.tensor([[2.0, 3.0]], dtype=torch.float64)
# transform = (2, -3) -> relu (2, 0); y = 0.5 * (2, 0) + 0.5 * (2, 3) = (2, 1.5)
assert_close(layer(x), torch.tensor([[2.0, 1.5]], dtype=torch.float64), "highway with gate 0.5")
with torch.no_grad():
    layer.layers[0].bias[2:] = -50.0
assert_close(layer(x), x, "a closed gate carries the input through", atol=1e-12)
### BEGIN HIDDEN TESTS
with torch.no_grad():
    layer.layers[0].bias[2:] = 50.0
assert_close(layer(x), torch.tensor([[2.0, 0.0]], dtype=torch.float64), "an open gate gives relu(W_h x + b_h)", atol=1e-12)
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
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "slide"} nbgrader={"solution": false, "grade": false, "locked": true, "grade_id": "exercise_2_character_cnn", "schema_version": 3}
# ## 4 · Exercise 2: the character-CNN word encoder (3 points)
#
# Complete `CharCNN.forward(char_ids)`: `char_ids` `(..., max_chars)` with 0 = padding.
#
# 1. embed characters (`self.embed`, padding row is zero) and run each `nn.Conv1d` in
#    `self.convs` (one per width) over the character axis;
# 2. **max over time**, but only over windows that lie inside the word: position $t$ of a
#    width-$w$ filter is valid when $t + w \le \max(\text{length}, w)$; fill invalid positions
#    with `torch.finfo(dtype).min` before the max. Then the output cannot depend on how much
#    padding follows the word;
# 3. `tanh`, concatenate the widths, apply `self.highway` (your `Highway`), then `self.project`.
#
# Returns `(..., out_dim)`.

# %% slideshow={"slide_type": "-"} nbgrader={"solution": true, "grade": false, "locked": false, "grade_id": "char_cnn", "schema_version": 3}
class CharCNN(nn.Module):
    """Characters -> word vector: embeddings, convolutions of several widths, max, highway, projection."""

    def __init__(self, n_chars: int, char_dim: int = 16,
                 filters: tuple[tuple[int, int], ...] = ((1, 32), (2, 32), (3, 64), (4, 128)),
                 highway_layers: int = 1, out_dim: int = 128) -> None:
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
        return self.project(h).reshape(*shape, -1)                      # (..., out_dim)
        ### END SOLUTION


# %% slideshow={"slide_type": "-"} nbgrader={"solution": false, "grade": true, "locked": true, "points": 3.0, "grade_id": "test_char_cnn", "schema_version": 3}
"""CharCNN: output shape, and a word's vector does not depend on the padding after it."""
torch.manual_seed(0)
encoder_demo = CharCNN(len(chars), out_dim=24).double()
short, _ = encode(["river"], width=12)
long, _ = encode(["river"], width=40)
out_short, out_long = encoder_demo(short), encoder_demo(long)
check_shape(out_short, (1, 24), "one word")
assert_close(out_short, out_long, "the same word with 7 or 35 padding characters", atol=1e-12)
batch, _ = encode(["a", "bank", "riverbanks"], width=16)
check_shape(encoder_demo(batch.view(1, 3, 16)), (1, 3, 24), "(batch, seq, max_chars) input")
### BEGIN HIDDEN TESTS
one = encoder_demo(encode(["a"], width=16)[0])
assert_close(one, encoder_demo(encode(["a"], width=30)[0]), "a 3-character word (shorter than the widest filter)", atol=1e-12)
assert_close(encoder_demo(batch)[1], encoder_demo(encode(["bank"], width=16)[0])[0], "words are encoded independently", atol=1e-12)
# the highway layer must be used
with torch.no_grad():
    for lin in encoder_demo.highway.layers:
        lin.bias[lin.out_features // 2:] = 60.0
assert not torch.allclose(encoder_demo(short), out_short), "self.highway is not applied"
# different words differ, and gradients reach the character embeddings
encoder_demo(batch).sum().backward()
assert encoder_demo.embed.weight.grad[char_to_id["b"]].abs().sum() > 0, "no gradient reaches the characters"
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "slide"} nbgrader={"solution": false, "grade": false, "locked": true, "grade_id": "exercise_3_reversing_padded", "schema_version": 3}
# ## 5 · Exercise 3: reversing padded sequences (2 points)
#
# The backward LM reads each sentence from its end. With padding, `x.flip(1)` would put the
# padding first. Write `reverse_padded(x, lengths)`: for `x` `(batch, seq, ...)`, reverse the
# first `lengths[b]` items of each row `b` and leave the padding where it is. Use one
# `gather` (or index) with a computed index tensor; no Python loop over the batch.

# %% slideshow={"slide_type": "-"} nbgrader={"solution": true, "grade": false, "locked": false, "grade_id": "reverse_padded", "schema_version": 3}
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


# %% slideshow={"slide_type": "-"} nbgrader={"solution": false, "grade": true, "locked": true, "points": 2.0, "grade_id": "test_reverse_padded", "schema_version": 3}
"""reverse_padded: each row reversed within its length, padding untouched."""
x = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0], [6, 7, 8, 9]])
got = reverse_padded(x, torch.tensor([3, 2, 4]))
assert got.tolist() == [[3, 2, 1, 0], [5, 4, 0, 0], [9, 8, 7, 6]], f"got {got.tolist()}"
### BEGIN HIDDEN TESTS
feats = torch.arange(24.0).view(2, 4, 3)
rev = reverse_padded(feats, torch.tensor([2, 4]))
assert torch.equal(rev[0, 0], feats[0, 1]) and torch.equal(rev[0, 2:], feats[0, 2:]), "trailing feature axes"
assert torch.equal(rev[1], feats[1].flip(0)), "a full-length row is simply flipped"
assert torch.equal(reverse_padded(rev, torch.tensor([2, 4])), feats), "reversing twice gives the input back"
one = reverse_padded(torch.tensor([[7, 0, 0]]), torch.tensor([1]))
assert one.tolist() == [[7, 0, 0]], f"length 1: {one.tolist()}"
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "slide"} nbgrader={"solution": false, "grade": false, "locked": true, "grade_id": "exercise_4_bidirectional_language", "schema_version": 3}
# ## 6 · Exercise 4: the bidirectional language model (4 points)
#
# Complete `BiLM.forward(char_ids, lengths)`, returning
# `(token_encodings, forward_states, backward_states)`, each `(batch, seq, dim)`:
#
# 1. `x = self.encoder(char_ids)` (your `CharCNN`);
# 2. the forward LSTM reads `x` left to right (pack with `lengths`, `enforce_sorted=False`);
# 3. the backward LSTM reads `reverse_padded(x, lengths)`; reverse its outputs back, so that
#    `backward_states[:, t]` has read tokens `t..end`;
# 4. padded positions of both state tensors are zeros (packing does this).
#
# `lm_loss` (given) predicts token $t+1$ from `forward_states[:, t]` and token $t-1$ from
# `backward_states[:, t]` with the **shared** softmax `self.softmax`.

# %% slideshow={"slide_type": "-"} nbgrader={"solution": true, "grade": false, "locked": false, "grade_id": "bilm", "schema_version": 3}
class BiLM(nn.Module):
    """Character-CNN token encoder, separate forward and backward LSTMs, a shared softmax."""

    def __init__(self, n_chars: int, vocab_size: int, dim: int = 128) -> None:
        super().__init__()
        self.encoder = CharCNN(n_chars, out_dim=dim)
        self.forward_lstm = nn.LSTM(dim, dim, batch_first=True)
        self.backward_lstm = nn.LSTM(dim, dim, batch_first=True)
        self.softmax = nn.Linear(dim, vocab_size)

    def _run(self, lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = lstm(packed)
        return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]

    def forward(self, char_ids: torch.Tensor, lengths: torch.Tensor):
        """char_ids (batch, seq, max_chars) -> encodings, forward states, backward states (batch, seq, dim)."""
        ### BEGIN SOLUTION
        x = self.encoder(char_ids)                                     # (batch, seq, dim)
        forward_states = self._run(self.forward_lstm, x, lengths)      # (batch, seq, dim)
        backward_states = self._run(self.backward_lstm, reverse_padded(x, lengths), lengths)
        return x, forward_states, reverse_padded(backward_states, lengths)
        ### END SOLUTION

    def lm_loss(self, char_ids: torch.Tensor, word_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of both directions over real (non-padding) targets."""
        _, fwd, bwd = self(char_ids, lengths)
        forward_logits = self.softmax(fwd[:, :-1])                     # predicts tokens 1..end
        backward_logits = self.softmax(bwd[:, 1:])                     # predicts tokens 0..end-1
        mask = torch.arange(word_ids.shape[1], device=word_ids.device)[None] < lengths.to(word_ids.device)[:, None]
        targets_f = word_ids[:, 1:].masked_fill(~mask[:, 1:], -100)
        targets_b = word_ids[:, :-1].masked_fill(~mask[:, 1:], -100)
        return 0.5 * (F.cross_entropy(forward_logits.flatten(0, 1), targets_f.flatten()) +
                      F.cross_entropy(backward_logits.flatten(0, 1), targets_b.flatten()))


# %% slideshow={"slide_type": "-"} nbgrader={"solution": false, "grade": true, "locked": true, "points": 4.0, "grade_id": "test_bilm", "schema_version": 3}
"""BiLM: forward states ignore the future, backward states ignore the past, padding changes nothing."""
torch.manual_seed(0)
lm_demo = BiLM(len(chars), len(words), dim=16).double()
sentence = "the river bank was wet".split()
a, _ = encode(sentence)
b, _ = encode(sentence[:3] + ["money", "today"])
lengths = torch.tensor([5])
_, fa, ba = lm_demo(a[None], lengths)
_, fb, bb = lm_demo(b[None], lengths)
check_shape(fa, (1, 5, 16), "forward states")
assert_close(fa[:, :3], fb[:, :3], "forward states at t <= 2 must ignore tokens 3-4", atol=1e-12)
assert not torch.allclose(ba[:, :3], bb[:, :3]), "backward states at t <= 2 must see tokens 3-4"
c, _ = encode(["a", "sandy"] + sentence[2:])
_, fc, bc = lm_demo(c[None], lengths)
assert_close(bc[:, 2:], ba[:, 2:], "backward states at t >= 2 must ignore tokens 0-1", atol=1e-12)
### BEGIN HIDDEN TESTS
padded = torch.zeros(2, 7, MAX_WORD, dtype=torch.long)
padded[0, :5] = a
padded[1, :3] = a[:3]
_, fp, bp = lm_demo(padded, torch.tensor([5, 3]))
assert_close(fp[0, :5], fa[0], "forward states with extra padding", atol=1e-12)
assert_close(bp[0, :5], ba[0], "backward states with extra padding", atol=1e-12)
assert (fp[0, 5:] == 0).all() and (bp[1, 3:] == 0).all(), "padded positions must be zero"
_, f3, b3 = lm_demo(a[None, :3], torch.tensor([3]))
assert_close(bp[1, :3], b3[0], "a short row's backward states start at its own last token", atol=1e-12)
assert lm_demo.forward_lstm is not lm_demo.backward_lstm
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "slide"} nbgrader={"solution": false, "grade": false, "locked": true, "grade_id": "training_bidirectional_lm", "schema_version": 3}
# ## 7 · Training the bidirectional LM
#
# Adam, a fixed number of steps sized for about a minute on two CPU cores, and held-out
# perplexity $\exp(\text{mean NLL})$ compared with the **unigram** model that predicts every
# token from its training frequency alone.

# %% slideshow={"slide_type": "fragment"}
seed_everything(0)
lm = BiLM(len(chars), len(words)).to(device)
print(f"{count_parameters(lm):,} parameters")
train_batches = list(zip(all_chars[:split].split(64), all_ids[:split].split(64)))
held_chars, held_ids = all_chars[split:], all_ids[split:]


def loss_fn(model: BiLM, batch) -> torch.Tensor:
    char_ids, word_ids = batch
    return model.lm_loss(char_ids, word_ids, torch.full((len(word_ids),), SEQ))


def held_out_perplexity(model: BiLM) -> dict[str, float]:
    total = 0.0
    for c, w in zip(held_chars.split(128), held_ids.split(128)):
        total += model.lm_loss(c.to(device), w.to(device), torch.full((len(w),), SEQ)).item() * len(w)
    return {"perplexity": math.exp(total / len(held_ids))}


STEPS = 450
optimizer = torch.optim.Adam(lm.parameters(), lr=2e-3)
scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=STEPS, pct_start=0.1)
history = fit(lm, loss_fn, train_batches, optimizer, STEPS, device=device, scheduler=scheduler,
              eval_fn=held_out_perplexity, eval_every=150, description="biLM")
unigram = torch.bincount(all_ids[:split].flatten(), minlength=len(words)).double() + 1
unigram_perplexity = math.exp(-(unigram / unigram.sum()).log()[held_ids.flatten()].mean().item())
lm_perplexity = history.last("perplexity")
print(f"trained in {history.seconds:.0f} s; held-out perplexity {lm_perplexity:.0f} vs unigram {unigram_perplexity:.0f}")
plot_history(history, log_y=True)
plt.show()

# %% slideshow={"slide_type": "-"} nbgrader={"solution": false, "grade": true, "locked": true, "points": 3.0, "grade_id": "test_trained_lm", "schema_version": 3}
"""The trained biLM's held-out perplexity is at most half the unigram perplexity."""
assert lm_perplexity <= 0.5 * unigram_perplexity, \
    f"expected perplexity <= {0.5 * unigram_perplexity:.0f} (half the unigram's), got {lm_perplexity:.0f}"
### BEGIN HIDDEN TESTS
again = held_out_perplexity(lm.eval())["perplexity"]
assert abs(again - lm_perplexity) / lm_perplexity < 0.01, "the reported perplexity must come from the trained model"
assert 1 < again < unigram_perplexity, "a perplexity must lie between 1 and the unigram baseline"
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "slide"} nbgrader={"solution": false, "grade": false, "locked": true, "grade_id": "exercise_5_scalar_mix", "schema_version": 3}
# ## 8 · Exercise 5: the scalar mix (2 points)
#
# Write `ScalarMix(n_layers)` with parameters `weights` `(n_layers,)` (zeros: an equal mix at
# the start) and `gamma` (one). `forward(layers)` takes `(n_layers, ..., dim)` and returns
# $\gamma \sum_j \operatorname{softmax}(w)_j\, h_j$, shape `(..., dim)`.

# %% slideshow={"slide_type": "-"} nbgrader={"solution": true, "grade": false, "locked": false, "grade_id": "scalar_mix", "schema_version": 3}
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


# %% slideshow={"slide_type": "-"} nbgrader={"solution": false, "grade": true, "locked": true, "points": 2.0, "grade_id": "test_scalar_mix", "schema_version": 3}
"""ScalarMix: an equal mix at the start; softmax weights and gamma as in the formula."""
mix = ScalarMix(3)
layers = torch.stack([torch.full((2, 4), v) for v in (1.0, 2.0, 6.0)])
check_shape(mix(layers), (2, 4), "mix of (3, 2, 4)")
assert_close(mix(layers), torch.full((2, 4), 3.0), "equal weights average the layers")
with torch.no_grad():
    mix.weights.copy_(torch.tensor([0.0, math.log(3.0), 0.0]))
    mix.gamma.fill_(2.0)
# softmax = (1, 3, 1) / 5 -> (1 + 6 + 6) / 5 = 2.6, times gamma 2
assert_close(mix(layers), torch.full((2, 4), 5.2), "weights (0, log 3, 0) and gamma 2", atol=1e-5)
### BEGIN HIDDEN TESTS
assert sorted(n for n, _ in mix.named_parameters()) == ["gamma", "weights"], "parameters named weights and gamma"
mix(layers).sum().backward()
assert mix.weights.grad is not None and mix.gamma.grad is not None, "both must be learnable"
with torch.no_grad():
    mix.weights.copy_(torch.tensor([100.0, 0.0, 0.0]))
    mix.gamma.fill_(1.0)
assert_close(mix(layers), torch.full((2, 4), 1.0), "softmax, not raw weights", atol=1e-5)
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "slide"} nbgrader={"solution": false, "grade": false, "locked": true, "grade_id": "contextual_against_static", "schema_version": 3}
# ## 9 · Contextual against static
#
# ELMo's layers for a token: layer 0 is the character encoding (duplicated to match widths),
# layer 1 the concatenated forward and backward states. We take an equal scalar mix. The word
# "state" means a country's part in "the state of alabama" and a condition in "the state of
# the water": its static vector is the same in both, its ELMo vectors are not. The nearest
# corpus tokens to each ELMo vector show which sense each one caught.

# %% slideshow={"slide_type": "fragment"}
lm.eval()
mix = ScalarMix(2).to(device)


@torch.no_grad()
def elmo_vectors(sentences: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ELMo (mixed) and static (layer 0) vectors, (batch, seq, 2*dim), and the lengths."""
    width = max(len(s) for s in sentences)
    char_ids = torch.zeros(len(sentences), width, MAX_WORD, dtype=torch.long)
    for i, s in enumerate(sentences):
        char_ids[i, :len(s)] = encode(s)[0]
    lengths = torch.tensor([len(s) for s in sentences])
    x, fwd, bwd = lm(char_ids.to(device), lengths)
    static = torch.cat([x, x], dim=-1)
    return mix(torch.stack([static, torch.cat([fwd, bwd], dim=-1)])).cpu(), static.cpu(), lengths


probe = [("the state of alabama has a governor and a capital city", "state"),
         ("the united states is a federal republic of fifty states", "state"),
         ("in the liquid state water is denser than in the solid state", "state"),
         ("a state of matter depends on temperature and pressure", "state")]
probe_vectors, probe_static, _ = elmo_vectors([s.split() for s, _ in probe])
picked = torch.stack([probe_vectors[i, s.split().index(w)] for i, (s, w) in enumerate(probe)])
picked_static = torch.stack([probe_static[i, s.split().index(w)] for i, (s, w) in enumerate(probe)])
similarity = F.normalize(picked, dim=-1) @ F.normalize(picked, dim=-1).T
static_similarity = F.normalize(picked_static, dim=-1) @ F.normalize(picked_static, dim=-1).T
labels = ["state (alabama)", "states (republic)", "state (liquid)", "state (of matter)"]
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
for ax, matrix, title in ((axes[0], static_similarity, "static: one vector per word"),
                          (axes[1], similarity, "ELMo: one vector per occurrence")):
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(4), labels=labels, rotation=45, ha="right")
    ax.set_yticks(range(4), labels=labels)
    ax.set_title(title)
fig.colorbar(image, ax=axes, fraction=0.03)
plt.show()

# %% slideshow={"slide_type": "fragment"}
# nearest corpus tokens to each occurrence (2,000 held-out windows as the search space)
corpus_sentences = [[words[i] if i != UNK else "<unk>" for i in row.tolist()] for row in held_ids[:2000]]
corpus_vectors, _, _ = elmo_vectors(corpus_sentences)
flat = F.normalize(corpus_vectors.flatten(0, 1), dim=-1)
flat_words = [(i, t) for i, s in enumerate(corpus_sentences) for t in range(len(s))]
for vector, label in zip(picked, labels):
    best = (flat @ F.normalize(vector, dim=-1)).topk(5).indices.tolist()
    shown = [" ".join(corpus_sentences[flat_words[j][0]][max(0, flat_words[j][1] - 2):flat_words[j][1] + 3]) for j in best]
    print(f"{label:>18}: " + " | ".join(shown))

# %% [markdown] slideshow={"slide_type": "slide"} nbgrader={"solution": false, "grade": false, "locked": true, "grade_id": "features_classifier", "schema_version": 3}
# ## 10 · Features for a classifier
#
# Mean-pooled ELMo vectors against mean-pooled static (layer 0) vectors as features for a
# logistic-regression classifier on the two-class newsgroup set (alt.atheism vs sci.space):
# 140 posts to train, 60 to test. The language model stays frozen.

# %% slideshow={"slide_type": "fragment"}
texts, labels_news, names = newsgroups()
documents = [tokenize(t.split("\n\n", 1)[-1])[:200] or ["empty"] for t in texts]
pooled = {"ELMo": [], "static": []}
for start in range(0, len(documents), 25):
    elmo, static, lengths = elmo_vectors(documents[start:start + 25])
    mask = (torch.arange(elmo.shape[1])[None] < lengths[:, None]).float().unsqueeze(-1)
    pooled["ELMo"].append((elmo * mask).sum(1) / mask.sum(1))
    pooled["static"].append((static * mask).sum(1) / mask.sum(1))
y = torch.tensor(labels_news)
order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
train_idx, test_idx = order[:140], order[140:]
accuracy = {}
for name, chunks in pooled.items():
    features = torch.cat(chunks)
    features = (features - features[train_idx].mean(0)) / (features[train_idx].std(0) + 1e-6)
    classifier = nn.Linear(features.shape[1], 2)
    opt = torch.optim.Adam(classifier.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(classifier(features[train_idx]), y[train_idx]).backward()
        opt.step()
    accuracy[name] = (classifier(features[test_idx]).argmax(-1) == y[test_idx]).float().mean().item()
print({k: f"{v:.1%}" for k, v in accuracy.items()})
plt.figure(figsize=(4, 3))
plt.bar(list(accuracy), list(accuracy.values()), color=["tab:blue", "tab:gray"])
plt.ylim(0.4, 1.0)
plt.title(f"{names[0]} vs {names[1]}: test accuracy")
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"} nbgrader={"solution": false, "grade": false, "locked": true, "grade_id": "summary", "schema_version": 3}
# ## Summary
#
# * A **character CNN** with **highway** layers builds word vectors from spelling, so no word is
#   unknown; masking the max over time makes it blind to padding.
# * A **bidirectional LM** (separate forward and backward LSTMs, shared softmax) gives each token
#   a state that has read its left and its right context; you checked that each direction sees
#   only its own side.
# * ELMo's vector is a learned **scalar mix** of the layers: different in every sentence, so
#   "state" in Alabama and "state" of matter come apart, which no static vector can do.
# * Next, notebook 03 replaces recurrence as the way to look at context: **attention**.

# %% [markdown] slideshow={"slide_type": "subslide"} nbgrader={"solution": false, "grade": false, "locked": true, "grade_id": "further_reading", "schema_version": 3}
# ## Further reading
#
# * Peters et al. (2018). *Deep contextualized word representations.* arXiv:1802.05365
# * Kim, Jernite, Sontag, Rush (2015). *Character-Aware Neural Language Models.* arXiv:1508.06615
# * Srivastava, Greff, Schmidhuber (2015). *Highway Networks.* arXiv:1505.00387
# * Jozefowicz et al. (2016). *Exploring the Limits of Language Modeling.* arXiv:1602.02410
