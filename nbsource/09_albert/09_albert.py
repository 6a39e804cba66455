# ---
# jupyter:
#   celltoolbar: Slideshow
#   kernelspec:
#     display_name: Python 3 (course)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "title", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# # 09 · ALBERT: a lighter BERT
#
# **Learning objectives.** After this notebook you can
# 1. **factorise** the embedding table (V x E, then E x H) and **share** parameters across layers in four ways;
# 2. **count** parameters in closed form and **reproduce** the ALBERT paper's table of model sizes;
# 3. **build** sentence-order prediction pairs, **measure** why next-sentence prediction is solved by topic, and **train** a SentencePiece unigram tokenizer;
# 4. **compare** a small BERT and a small ALBERT of the same shape: parameters against accuracy.
#
# **Prerequisites.** Notebook 07 (BERT).
#
# **Estimated time.** 2 hours. The notebook runs in about two minutes on a laptop CPU.

# %% [markdown] nbgrader={"grade": false, "grade_id": "notes_intro", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "notes"}
# Speaker notes: BERT-large has 334M parameters and ALBERT-large 18M with the same depth and width.
# Two ideas do it; neither removes computation from the encoder (the same L layers of width H run),
# they make it smaller. (The paper still measures ALBERT-large iterating through the training data
# 1.7 times faster than BERT-large on the same TPUs, crediting less communication and fewer
# computations.)

# %% [markdown] nbgrader={"grade": false, "grade_id": "setup_text", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Setup

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
import io
import math
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, replace
from unittest import mock

import matplotlib.pyplot as plt
import sentencepiece as spm
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_utils import assert_close, check_shape, describe_environment, get_device, seed_everything
from course_utils.data import sentences_of, wikipedia_articles
from course_utils.train import count_parameters, fit, format_count

seed_everything(0)
device = get_device()
print(describe_environment(device))


# %% [markdown] nbgrader={"grade": false, "grade_id": "where_bert_parameters_are", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 1 · Where BERT's parameters are
#
# * **Embeddings**: $V \times H$. With $V = 30{,}000$ and $H = 4096$ that is 123M parameters for a
#   lookup table, and most rows are rare tokens. ALBERT looks tokens up in a small space $E$ and
#   projects: $V \times E + E \times H$. With $E = 128$: 4M.
# * **Layers**: $L$ copies of $4(H^2 + H)$ attention and $2HI + I + H$ feed-forward parameters.
#   ALBERT **shares** one layer across all $L$ (or only its attention, or only its feed-forward part).
#
# | symbol | meaning | code name |
# |---|---|---|
# | $V, E, H, I, L$ | vocabulary, embedding size, hidden size, feed-forward size, layers | `vocab_size, embedding_size, hidden, intermediate, layers` |
# | share | which sub-layers are shared across layers | `share` in `{"none", "attention", "ffn", "all"}` |

# %% nbgrader={"grade": false, "grade_id": "config", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
@dataclass(frozen=True)
class AlbertConfig:
    """A BERT/ALBERT encoder. embedding_size=None means BERT's unfactorised V x H table."""

    vocab_size: int = 30_000
    embedding_size: int | None = 128
    hidden: int = 768
    layers: int = 12
    heads: int = 12
    intermediate: int = 3_072
    max_positions: int = 512
    segments: int = 2
    share: str = "all"
    dropout: float = 0.0
    eps: float = 1e-12


TINY = AlbertConfig(vocab_size=50, embedding_size=8, hidden=16, layers=3, heads=4, intermediate=32, max_positions=12)


# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_1_factorised_embeddings", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 2 · Exercise 1: factorised embeddings (3 points)
#
# Complete `FactorisedEmbeddings(config)`: with `E = config.embedding_size or config.hidden`, tables
# `token (V, E)`, `segment (segments, E)`, `position (max_positions, E)`, `norm` = `nn.LayerNorm(E, eps)`,
# then `projection` = `nn.Linear(E, H)`, or `nn.Identity()` when `embedding_size` is `None` (BERT).
# `forward(input_ids, segment_ids=None)` -> `(batch, seq, H)`: sum the token, segment and position
# (0, 1, ..., seq - 1) embeddings, normalise, project; `segment_ids=None` means segment 0 everywhere.
# The test copies your weights into Hugging Face's `AlbertEmbeddings` and the projection of its
# encoder (`embedding_hidden_mapping_in`) and compares the outputs.
#
# <details><summary>Hint 1</summary>
#
# The three lookups all have width E, so they can be added as they are; the LayerNorm and then the projection act on that sum, at each position on its own.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Every sequence of the batch has the same positions, 0 to seq - 1, one per column of `input_ids`: a `(seq, E)` lookup of them broadcasts over the batch.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# BERT and ALBERT differ only in the last step: with `embedding_size` `None`, E is H and there is nothing to project.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "factorised_embeddings", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class FactorisedEmbeddings(nn.Module):
    """Token + segment + position embeddings of size E, LayerNorm, then a projection to H."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        e = config.embedding_size or config.hidden
        self.token = nn.Embedding(config.vocab_size, e)
        self.segment = nn.Embedding(config.segments, e)
        self.position = nn.Embedding(config.max_positions, e)
        self.norm = nn.LayerNorm(e, eps=config.eps)
        self.projection = nn.Identity() if config.embedding_size is None else nn.Linear(e, config.hidden)
        ### END SOLUTION

    def forward(self, input_ids: torch.Tensor, segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids (batch, seq) -> (batch, seq, hidden)."""
        ### BEGIN SOLUTION
        if segment_ids is None:
            segment_ids = torch.zeros_like(input_ids)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        summed = self.token(input_ids) + self.segment(segment_ids) + self.position(positions)  # (batch, seq, E)
        return self.projection(self.norm(summed))                                            # (batch, seq, H)
        ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
tiny_embeddings = FactorisedEmbeddings(TINY)
tiny_out = tiny_embeddings(torch.tensor([[2, 7, 9, 3, 11]]), torch.tensor([[0, 0, 0, 1, 1]]))
print("token table", tuple(tiny_embeddings.token.weight.shape), "-> projection", tiny_embeddings.projection,
      "-> output", tuple(tiny_out.shape), "(batch, seq, H)")
with torch.device("meta"):                                    # shapes only: the real sizes cost no memory
    for name, e in (("BERT-style V x H", None), ("ALBERT V x E + E x H", 128)):
        big = FactorisedEmbeddings(replace(TINY, vocab_size=30_000, hidden=4_096, max_positions=512, embedding_size=e))
        print(f"{name:>22}: {format_count(count_parameters(big)):>6} embedding parameters at V = 30,000, H = 4,096")


# %% nbgrader={"grade": true, "grade_id": "test_factorised_embeddings", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""FactorisedEmbeddings: E-sized tables, LayerNorm over E, then E -> H; BERT (embedding_size=None) has no projection."""
torch.manual_seed(0)
emb = FactorisedEmbeddings(TINY).double()
ids, seg = torch.tensor([[2, 7, 9, 3, 11]]), torch.tensor([[0, 0, 0, 1, 1]])
check_shape(emb(ids, seg), (1, 5, 16), "output (batch, seq, hidden)")
assert emb.token.weight.shape == (50, 8), f"token table must be (V, E) = (50, 8), got {tuple(emb.token.weight.shape)}"
near = lambda a, b: a.shape == b.shape and torch.allclose(a, b, atol=1e-10)
assert not near(emb(ids, seg), emb(ids, 1 - seg)), \
    "emb(ids, segment_ids) does not change when segment_ids change: is the segment embedding added to the sum?"
same_token = torch.full((1, 5), 7)
rows = emb(same_token)[0]
assert not near(rows, rows[:1].expand(5, -1)), \
    "token 7 at positions 0 to 4 gives the same output at every position: is the position embedding added to the sum?"
assert near(emb(ids), emb(ids, torch.zeros_like(ids))), \
    "emb(ids) without segment_ids differs from emb(ids, segment_ids of zeros): segment_ids=None means segment 0 everywhere"
eps = getattr(emb.norm, "eps", None)
assert eps == TINY.eps, (f"your LayerNorm's eps is {eps}" + (", PyTorch's default" if eps == 1e-5 else "")
                         + f"; the prompt asks for nn.LayerNorm(E, eps) with the config's eps, {TINY.eps}")
assert getattr(emb.projection, "bias", None) is not None, \
    "your projection has no bias: the prompt's nn.Linear(E, H) has one, and so does the twin's embedding_hidden_mapping_in"
bert_style = FactorisedEmbeddings(replace(TINY, embedding_size=None))
assert bert_style.token.weight.shape == (50, 16), \
    f"with embedding_size=None (BERT) the token table is (V, H) = (50, 16), got {tuple(bert_style.token.weight.shape)}"
assert isinstance(bert_style.projection, nn.Identity), \
    f"with embedding_size=None (BERT) the projection must be nn.Identity() (E = H, nothing to project), got {bert_style.projection}"
with torch.no_grad():
    plain = bert_style(ids, seg)                   # a fresh LayerNorm (weight 1, bias 0) and no projection
found_mean, found_var = plain.mean(-1).abs().max().item(), plain.var(-1, unbiased=False).mean().item()
assert found_mean < 1e-5 and abs(found_var - 1) < 1e-3, \
    (f"with embedding_size=None the output is that of a fresh LayerNorm (weight 1, bias 0), so each position should have "
     f"mean 0 and variance 1 over H; "
     f"found a mean of up to {found_mean:.3g} and a variance of {found_var:.3g}: is the sum normalised before the projection?")
import transformers  # Hugging Face's ALBERT as the twin: its embeddings (size E), then the E -> H mapping of its encoder

twin = transformers.AlbertModel(transformers.AlbertConfig(
    vocab_size=50, embedding_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=4, intermediate_size=32,
    max_position_embeddings=12, type_vocab_size=2, layer_norm_eps=1e-12, hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0)).double().eval()
with torch.no_grad():
    for ours, theirs in ((emb.token, twin.embeddings.word_embeddings), (emb.segment, twin.embeddings.token_type_embeddings),
                         (emb.position, twin.embeddings.position_embeddings), (emb.norm, twin.embeddings.LayerNorm),
                         (emb.projection, twin.encoder.embedding_hidden_mapping_in)):
        theirs.weight.normal_()                 # random, so that a table left out or a LayerNorm skipped shows
        ours.weight.copy_(theirs.weight)
        if hasattr(theirs, "bias") and theirs.bias is not None:
            theirs.bias.normal_()
            ours.bias.copy_(theirs.bias)
    expected = twin.encoder.embedding_hidden_mapping_in(twin.embeddings(ids, token_type_ids=seg))
    from_one = twin.encoder.embedding_hidden_mapping_in(twin.embeddings(ids, token_type_ids=seg,
                                                                        position_ids=torch.arange(1, 6)[None]))
    got = emb(ids, seg)
assert not near(got, from_one), \
    ("your output is that of Hugging Face's AlbertEmbeddings given positions 1, 2, ..., seq: the prompt numbers "
     "positions 0, 1, ..., seq - 1")
assert_close(got, expected, "against transformers' AlbertEmbeddings + embedding_hidden_mapping_in", atol=1e-10)
### BEGIN HIDDEN TESTS
assert isinstance(emb.projection, nn.Linear) and emb.projection.in_features == 8 and emb.projection.out_features == 16
assert emb.position.weight.shape == (12, 8) and emb.segment.weight.shape == (2, 8)
assert_close(emb(ids), emb(ids, torch.zeros_like(ids)), "segment_ids=None means segment 0", atol=0)
longer = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(2))
with torch.no_grad():
    expected = twin.encoder.embedding_hidden_mapping_in(twin.embeddings(longer))
assert_close(emb(longer), expected, "a batch of 3 at max_positions, without segment ids", atol=1e-10)
assert emb.norm.normalized_shape == (8,) and emb.norm.eps == 1e-12, "LayerNorm over E with the config's eps"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_2_cross_layer", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 3 · Exercise 2: cross-layer sharing (3 points)
#
# Complete `SharedEncoder(config)`: `layers`, an `nn.ModuleList` of `config.layers`
# `nn.TransformerEncoderLayer(H, heads, I, dropout, activation="gelu", layer_norm_eps=eps, batch_first=True)`,
# sharing according to `config.share`:
#
# | share | what all layers have in common |
# |---|---|
# | `"none"` | nothing (BERT) |
# | `"attention"` | one `self_attn` module |
# | `"ffn"` | one `linear1` and one `linear2` |
# | `"all"` | the whole layer: the list holds the **same** module `layers` times |
#
# Share by assigning the same module object (PyTorch then counts its parameters once and sums
# their gradients). Any other value of `share` raises `ValueError`. `forward(x, attention_mask=None)`
# runs the layers in order (`attention_mask` True = real token).
#
# <details><summary>Hint 1</summary>
#
# Two layers share a module when they hold the same Python object: PyTorch finds its parameters once through every path that reaches it.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# For `"attention"` and `"ffn"`, build `config.layers` separate layers first, then point the later layers' sub-modules at the first layer's; the LayerNorms stay per layer.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# PyTorch's `src_key_padding_mask` is True where a position is to be ignored: the opposite of `attention_mask`.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "shared_encoder", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class SharedEncoder(nn.Module):
    """A stack of Transformer encoder layers with ALBERT's cross-layer parameter sharing."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        make = lambda: nn.TransformerEncoderLayer(config.hidden, config.heads, config.intermediate, config.dropout,
                                                  activation="gelu", layer_norm_eps=config.eps, batch_first=True)
        if config.share not in ("none", "attention", "ffn", "all"):
            raise ValueError(f"share must be none, attention, ffn or all, got {config.share!r}")
        if config.share == "all":
            layer = make()
            self.layers = nn.ModuleList([layer] * config.layers)
            return
        layers = [make() for _ in range(config.layers)]
        for layer in layers[1:]:
            if config.share == "attention":
                layer.self_attn = layers[0].self_attn
            elif config.share == "ffn":
                layer.linear1, layer.linear2 = layers[0].linear1, layers[0].linear2
        self.layers = nn.ModuleList(layers)
        ### END SOLUTION

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (batch, seq, hidden) -> (batch, seq, hidden)."""
        ### BEGIN SOLUTION
        padding = None if attention_mask is None else ~attention_mask
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=padding)
        return x
        ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
print(f"{'share':>10} {'parameters':>10} {'distinct layers':>15} {'distinct self_attn':>18} {'distinct linear1':>16}")
for share_mode in ("none", "attention", "ffn", "all"):
    stack = SharedEncoder(replace(TINY, share=share_mode))
    distinct = lambda part: len({id(part(layer)) for layer in stack.layers})
    print(f"{share_mode:>10} {count_parameters(stack):>10,} {distinct(lambda l: l):>15} "
          f"{distinct(lambda l: l.self_attn):>18} {distinct(lambda l: l.linear1):>16}")
print("output", tuple(stack(torch.randn(2, 5, 16)).shape), "(batch, seq, H), the shape of the input")


# %% nbgrader={"grade": true, "grade_id": "test_shared_encoder", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""SharedEncoder shares exactly what `share` says; "all" applies one layer L times."""
torch.manual_seed(0)
try:
    SharedEncoder(replace(TINY, share="everything"))
    raise AssertionError("SharedEncoder(share='everything') built an encoder: a share other than none, attention, ffn "
                         "or all must raise ValueError")
except ValueError:
    pass
parts = ("self_attn", "linear1", "linear2", "norm1", "norm2")
shared_parts = {"none": (), "attention": ("self_attn",), "ffn": ("linear1", "linear2"), "all": parts}
for share, shared in shared_parts.items():
    stack = SharedEncoder(replace(TINY, share=share))
    n = len(stack.layers)
    assert n == 3, (f"share={share!r}: self.layers has {n} entr{'y' if n == 1 else 'ies'}; it must have config.layers = 3, "
                    "shared or not (with share='all' the same layer object appears 3 times)")
    if share == "all":
        n = len({id(layer) for layer in stack.layers})
        assert n == 1, f"share='all': self.layers should hold the same layer object 3 times; yours holds {n} distinct layers"
        continue
    distinct = {part: len({id(getattr(layer, part)) for layer in stack.layers}) for part in parts}
    wanted = {part: 1 if part in shared else 3 for part in parts}
    if distinct != wanted:
        like = [other for other, theirs in shared_parts.items() if distinct == {p: 1 if p in theirs else 3 for p in parts}]
        raise AssertionError(
            f"share={share!r}: the 3 layers should have {' and '.join('one ' + p for p in shared) or 'nothing'} in common; counting "
            f"distinct module objects, yours have " + ", ".join(f"{distinct[p]} {p}" for p in parts)
            + (f" (that is share={like[0]!r})" if like else "")
            + ("; only what the table lists is shared, each layer keeps its own LayerNorms"
               if share in ("attention", "ffn") and distinct["norm1"] + distinct["norm2"] < 6 else ""))
counts = {share: count_parameters(SharedEncoder(replace(TINY, share=share))) for share in ("none", "attention", "ffn", "all")}
one_layer = count_parameters(nn.TransformerEncoderLayer(16, 4, 32, batch_first=True))
attention = 4 * (16 * 16 + 16)
ffn = 2 * 16 * 32 + 32 + 16
assert counts["none"] == 3 * one_layer, f"share='none': expected 3 x {one_layer} parameters, got {counts['none']}"
assert counts["all"] == one_layer, f"share='all': expected one layer's {one_layer} parameters, got {counts['all']}"
assert counts["attention"] == 3 * one_layer - 2 * attention, \
    f"share='attention': expected {3 * one_layer - 2 * attention} parameters, got {counts['attention']}"
assert counts["ffn"] == 3 * one_layer - 2 * ffn, f"share='ffn': expected {3 * one_layer - 2 * ffn} parameters, got {counts['ffn']}"
l0 = SharedEncoder(replace(TINY, share="none")).layers[0].eval()
x = torch.randn(2, 5, 16)
twins = {(activation, norm_first): nn.TransformerEncoderLayer(16, 4, 32, 0.0, activation=activation, layer_norm_eps=1e-12,
                                                              batch_first=True, norm_first=norm_first).eval()
         for activation in ("gelu", "relu") for norm_first in (False, True)}
for twin in twins.values():
    twin.load_state_dict(l0.state_dict())
close = lambda a, b: a.shape == b.shape and torch.allclose(a, b, atol=1e-5)
with torch.no_grad():
    one = l0(x)
    assert not close(one, twins["relu", False](x)), \
        "your layer gives the output of a ReLU layer (nn.TransformerEncoderLayer's default activation): the prompt asks for GELU"
    assert not close(one, twins["gelu", True](x)), \
        "your layer gives the output of a pre-LN layer (norm_first=True): the prompt's layer is post-LN, PyTorch's default"
    assert close(one, twins["gelu", False](x)), ("a layer with the same weights as nn.TransformerEncoderLayer(H, heads, I, "
                                                 "dropout, activation='gelu', layer_norm_eps=eps, batch_first=True) must "
                                                 "give the same output")
encoder = SharedEncoder(TINY).eval()
layer = encoder.layers[0]
with torch.no_grad():
    assert_close(encoder(x), layer(layer(layer(x))), "share='all' is one layer applied three times", atol=1e-5)
    separate = SharedEncoder(replace(TINY, share="none")).eval()
    first, second, third = separate.layers
    got = separate(x)
    assert not close(got, first(first(first(x)))), \
        "share='none': your encoder runs layers[0] three times; each entry of self.layers runs once"
    assert not close(got, first(second(third(x)))), "share='none': your encoder runs the layers last to first; layers[0] runs first"
    assert_close(got, third(second(first(x))), "share='none': the three layers, in order", atol=1e-5)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])          # True = real token; sequence 1 has 2 padded
    out = encoder(x, mask)
    assert not close(out, encoder(x)), \
        "encoder(x, attention_mask) gives the output of encoder(x): is attention_mask passed on to the layers?"
    assert close(out[0], encoder(x)[0]), \
        ("sequence 0 has no padding (attention_mask all True), yet its output changes when attention_mask is given: "
         "attention_mask True = real token, while PyTorch's src_key_padding_mask True = ignore")
    changed = x.clone()
    changed[1, 3:] = 5.0
    assert close(encoder(changed, mask)[1, :3], out[1, :3]), \
        "changing sequence 1's padded positions (attention_mask False) changed its outputs at the real positions"
### BEGIN HIDDEN TESTS
att = SharedEncoder(replace(TINY, share="attention"))
assert att.layers[0].self_attn is att.layers[2].self_attn and att.layers[0].linear1 is not att.layers[2].linear1
ff = SharedEncoder(replace(TINY, share="ffn"))
assert ff.layers[0].linear2 is ff.layers[1].linear2 and ff.layers[0].self_attn is not ff.layers[1].self_attn
assert len(SharedEncoder(TINY).layers) == 3, "the list has config.layers entries, shared or not"
try:
    SharedEncoder(replace(TINY, share="everything"))
    raise AssertionError("an unknown share mode must raise ValueError")
except ValueError:
    pass
mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
out = encoder(x, mask)
changed = x.clone()
changed[1, 3:] = 5.0
assert_close(encoder(changed, mask)[1, :3], out[1, :3], "padding must not change real positions", atol=1e-5)
l0 = SharedEncoder(replace(TINY, share="none")).layers[0]
assert not l0.norm_first and l0.norm1.eps == 1e-12, "post-LN, eps from the config"
twin = nn.TransformerEncoderLayer(16, 4, 32, 0.0, activation="gelu", layer_norm_eps=1e-12, batch_first=True).eval()
twin.load_state_dict(l0.state_dict())
assert_close(l0.eval()(x), twin(x), "a layer with the same weights as nn.TransformerEncoderLayer(..., activation='gelu', "
             "layer_norm_eps=eps, batch_first=True) must give the same output", atol=1e-5)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_3_reproduce_paper", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 4 · Exercise 3: reproduce the paper's table (3 points)
#
# `AlbertModel` (given) is your embeddings, your encoder and a tanh pooler `Linear(H, H)` on `[CLS]`.
# Complete `albert_parameter_count(config)` in closed form (build no module, not even on the meta
# device; a hidden test makes building one raise): embeddings
# (tables, LayerNorm, projection if any), the encoder according to `share`, the pooler.
# The check instantiates each model on PyTorch's **meta** device, where tensors have shapes but
# no memory, so even xxlarge, with over 200M parameters, costs nothing to build.
#
# <details><summary>Hint 1</summary>
#
# Count as the model is built, module by module: an `nn.Embedding(n, E)` has n x E parameters, an `nn.Linear(a, b)` has a x b + b, a LayerNorm over d has 2d.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# One `nn.TransformerEncoderLayer` has an attention block (four H x H projections, each with a bias), a feed-forward block (`linear1`, `linear2`) and two LayerNorms; `share` says which of them are counted once and which L times.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "albert_model", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
class AlbertModel(nn.Module):
    """Embeddings (factorised or not), a shared or unshared encoder, and the [CLS] pooler."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = FactorisedEmbeddings(config)
        self.encoder = SharedEncoder(config)
        self.pooler = nn.Linear(config.hidden, config.hidden)

    def forward(self, input_ids, segment_ids=None, attention_mask=None):
        hidden = self.encoder(self.embeddings(input_ids, segment_ids), attention_mask)
        return hidden, torch.tanh(self.pooler(hidden[:, 0]))


PAPER = {  # Lan et al. (2019), Table 1: the configurations and the parameter counts printed there
    "BERT base": (AlbertConfig(embedding_size=None, share="none"), 108e6),
    "BERT large": (AlbertConfig(embedding_size=None, hidden=1024, layers=24, heads=16, intermediate=4096, share="none"), 334e6),
    "ALBERT base": (AlbertConfig(), 12e6),
    "ALBERT large": (AlbertConfig(hidden=1024, layers=24, heads=16, intermediate=4096), 18e6),
    "ALBERT xlarge": (AlbertConfig(hidden=2048, layers=24, heads=16, intermediate=8192), 60e6),
    "ALBERT xxlarge": (AlbertConfig(hidden=4096, layers=12, heads=64, intermediate=16384), 235e6),
}


# %% nbgrader={"grade": false, "grade_id": "parameter_count", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def albert_parameter_count(config: AlbertConfig) -> int:
    """Closed-form parameter count of AlbertModel(config)."""
    ### BEGIN SOLUTION
    h, i = config.hidden, config.intermediate
    e = config.embedding_size or h
    embeddings = (config.vocab_size + config.segments + config.max_positions) * e + 2 * e
    if config.embedding_size is not None:
        embeddings += e * h + h
    attention, ffn, norms = 4 * (h * h + h), 2 * h * i + i + h, 4 * h
    encoder = {"none": config.layers * (attention + ffn + norms),
               "attention": attention + config.layers * (ffn + norms),
               "ffn": ffn + config.layers * (attention + norms),
               "all": attention + ffn + norms}[config.share]
    return embeddings + encoder + h * h + h
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "meta_count", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "fragment"}
def meta_count(config: AlbertConfig) -> int:
    """Parameters of AlbertModel(config), built on the meta device (shapes, no memory)."""
    with torch.device("meta"):
        return count_parameters(AlbertModel(config))


# %% slideshow={"slide_type": "-"}
print(f"{'model':>15} {'printed':>7} {'yours':>8} {'built on meta':>14}  E     H   L  share")
for name, (config, paper) in PAPER.items():
    print(f"{name:>15} {format_count(paper):>7} {format_count(albert_parameter_count(config)):>8} "
          f"{format_count(meta_count(config)):>14}  {str(config.embedding_size):>4} {config.hidden:>5} {config.layers:>3}  {config.share}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "counts_land_within", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# Two figures per row: **printed** is the paper's Table 1, rounded to millions; **yours** counts every
# parameter of the configuration on that row (the paper's 30,000-piece vocabulary, embeddings,
# encoder and pooler; no pre-training heads). They agree within about 1% for BERT and within 3% for
# ALBERT base, large and xlarge, which the paper rounds to 12M, 18M and 60M. **xxlarge** is the
# exception: the configuration has 223M parameters, and so do the released ALBERT-xxlarge
# checkpoints (their model cards say 223M), while the paper prints 235M. The paper does not say
# what its 235M counts; the pre-training heads add under 1M (masked-LM head $H \times E + E + 2E + V$,
# sentence-order head $2H + 2$), so they do not explain the 12M. This notebook quotes 223M for
# xxlarge and 235M only as the paper's printed figure.

# %% nbgrader={"grade": true, "grade_id": "test_parameter_count", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""albert_parameter_count equals models built on the meta device, and the paper's table within 6%."""
probe = replace(TINY, embedding_size=6, hidden=20, intermediate=44, segments=3)   # sizes chosen so that each part has its own size
with mock.patch.object(nn.Module, "__init__", side_effect=AssertionError("albert_parameter_count built a module")):
    try:
        albert_parameter_count(probe)
    except AssertionError as error:
        raise AssertionError(f"{error}: count in closed form, from the config's sizes alone (no module, not even on the "
                             "meta device)") from None
for share in ("none", "attention", "ffn", "all"):
    for e in (6, None):
        cfg = replace(probe, share=share, embedding_size=e)
        got, built = albert_parameter_count(cfg), meta_count(cfg)
        if got == built:
            continue
        h, i, big_l, ee = cfg.hidden, cfg.intermediate, cfg.layers, e or cfg.hidden
        copies = lambda part_shared: 1 if cfg.share in (part_shared, "all") else big_l   # how many copies a part has
        sizes = {"H * H + H, the size of the pooler Linear(H, H)": h * h + h,
                 "2E, the size of the embeddings' LayerNorm (a weight and a bias of size E)": 2 * ee,
                 "H, the size of the projection's bias": h if e else 0,
                 "E, one row of the segment table: the config has 3 segments, so the table has 3 rows": ee,
                 "2H per layer, the size of one LayerNorm: each layer has two, norm1 and norm2":
                     2 * h * (1 if share == "all" else big_l),
                 "4H per attention block: the biases of the query, key, value and output projections": 4 * h * copies("attention"),
                 "I per feed-forward block: the bias of linear1": i * copies("ffn"),
                 "4H per layer but one: with share='attention' each layer keeps its own LayerNorms": 4 * h * (big_l - 1)
                     if share == "attention" else 0}
        named = [what for what, size in sizes.items() if size and size == built - got]
        raise AssertionError(f"share={share!r}, E={e}, H=20, I=44, L=3, 3 segments: albert_parameter_count gives {got:,}, "
                             f"the model built on the meta device has {built:,}"
                             + (f": you are {built - got:,} short, which is {named[0]}" if named else ""))
for name, (config, paper) in PAPER.items():
    ours = albert_parameter_count(config)
    assert ours == meta_count(config), f"{name}: albert_parameter_count gives {ours:,}, the model built on meta {meta_count(config):,}"
    assert abs(ours - paper) / paper < 0.06, f"{name}: {ours:,} is not within 6% of the paper's {paper:,.0f}"
### BEGIN HIDDEN TESTS
for share in ("none", "attention", "ffn", "all"):
    for e in (None, 8):
        cfg = replace(TINY, share=share, embedding_size=e, segments=3)
        with mock.patch.object(nn.Module, "__init__", side_effect=AssertionError("closed form, please: build no module")):
            got = albert_parameter_count(cfg)
        assert got == meta_count(cfg), f"share={share}, E={e}: {got} vs {meta_count(cfg)}"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_4_sentence_order", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 5 · Exercise 4: sentence-order prediction (2 points)
#
# NSP turned out to be too easy: a random sentence from another document usually has another
# *topic*. ALBERT's **sentence-order prediction** uses two consecutive sentences of the same
# document, in order (label 1) or swapped (label 0), so only coherence tells them apart.
# Complete `sop_pairs(documents, n, rng)`: `n` triples `(a, b, in_order)`, each from one document
# with a sentence and its successor, swapped with probability 1/2 (every document has at least two
# sentences). Use only `rng`, never the `random` module's own functions.
#
# <details><summary>Hint 1</summary>
#
# Draw a document, then a position in it whose sentence has a successor: the last sentence cannot start a pair, every other one can.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Draw everything with `rng`'s own methods (`rng.randrange`, `rng.random`): then the same seed gives the same pairs.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "sop_pairs", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def sop_pairs(documents: list[list[str]], n: int, rng: random.Random) -> list[tuple[str, str, int]]:
    """Return n (a, b, in_order) triples of consecutive sentences, half of them swapped."""
    ### BEGIN SOLUTION
    pairs = []
    for _ in range(n):
        d = rng.randrange(len(documents))
        i = rng.randrange(len(documents[d]) - 1)
        first, second = documents[d][i], documents[d][i + 1]
        pairs.append((first, second, 1) if rng.random() < 0.5 else (second, first, 0))
    return pairs
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
story = [["She took the key.", "She opened the door.", "The room was dark."],
         ["Water boils at 100 degrees.", "Steam rises from the pot.", "The lid starts to rattle."]]
for first, second, label in sop_pairs(story, 5, random.Random(3)):
    print(f"{'in order' if label else 'swapped ':>8} ({label}): {first!r} -> {second!r}")


# %% nbgrader={"grade": true, "grade_id": "test_sop_pairs", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""sop_pairs: consecutive sentences of one document, about half swapped, labels say which."""
toy_docs = [[f"d{d} s{i}" for i in range(5)] for d in range(6)]


def refuse(name):
    def call(*args, **kwargs):
        raise AssertionError(f"sop_pairs called random.{name}, the random module's own generator: draw everything from rng")
    return call


with mock.patch("random.random", refuse("random")), mock.patch("random.randrange", refuse("randrange")), \
        mock.patch("random.randint", refuse("randint")), mock.patch("random.choice", refuse("choice")), \
        mock.patch("random.shuffle", refuse("shuffle")), mock.patch("random.sample", refuse("sample")):
    pairs = sop_pairs(toy_docs, 2_000, random.Random(0))
assert len(pairs) == 2_000, f"sop_pairs(toy_docs, 2_000, rng) returned {len(pairs)} triples, not n = 2,000"
assert pairs == sop_pairs(toy_docs, 2_000, random.Random(0)), "two calls with random.Random(0) gave different pairs: use only rng"
where = lambda s: tuple(int(t[1:]) for t in s.split())                  # "d3 s2" -> (document 3, sentence 2)
for a, b, in_order in pairs:
    (da, ia), (db, ib) = where(a), where(b)
    assert da == db, f"{a!r} and {b!r} come from two documents: both sentences of a pair come from one document"
    assert abs(ia - ib) == 1, f"{a!r} and {b!r} are not neighbours: a pair is a sentence and its successor, in some order"
labelled_1 = [(a, b) for a, b, in_order in pairs if in_order == 1]
assert not labelled_1 or any(where(b)[1] == where(a)[1] + 1 for a, b in labelled_1), \
    f"every pair labelled 1 is swapped (e.g. {labelled_1[0]}): label 1 means in order, a then its successor b"
for a, b, in_order in pairs:
    expected = where(b)[1] == where(a)[1] + 1 if in_order else where(a)[1] == where(b)[1] + 1
    assert expected, f"in_order={in_order} but a = {a!r}, b = {b!r}: 1 means b follows a in the document, 0 means a follows b"
share = sum(p[2] for p in pairs) / len(pairs)
assert 0.46 < share < 0.54, f"expected about 50% in order, got {share:.1%}: swap each pair with probability 1/2"
starts = Counter(min(where(a)[1], where(b)[1]) for a, b, _ in pairs)
for i in range(4):
    assert starts[i] > 0, (f"in 2,000 pairs from 6 documents of 5 sentences, no pair is (s{i}, s{i + 1}) of any document: "
                           "every sentence but the last can be the first of a pair, the first and the last pair too")
### BEGIN HIDDEN TESTS
assert pairs == sop_pairs(toy_docs, 2_000, random.Random(0)), "use only rng"
assert len({(a, b) for a, b, _ in pairs}) == 48, "every consecutive pair, both ways"
refuse = AssertionError("use rng, not the random module")
with mock.patch("random.random", side_effect=refuse), mock.patch("random.randrange", side_effect=refuse), \
        mock.patch("random.randint", side_effect=refuse), mock.patch("random.choice", side_effect=refuse), \
        mock.patch("random.shuffle", side_effect=refuse), mock.patch("random.sample", side_effect=refuse):
    sop_pairs(toy_docs, 10, random.Random(1))
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "nsp_against_sop", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ### NSP against SOP: what gives the answer away
#
# BERT's **next-sentence** pairs (notebook 07's `make_nsp_pairs`, given below) take the second sentence either from the next line (label 1) or
# from another document (label 0), so a model can answer much of it by *topic*: two sentences of one
# article share words more often than two articles do. Measure it on Wikipedia's sentences, with the plainest topic cue
# there is, the share of words two sentences have in common (Jaccard overlap $|A \cap B| / |A \cup B|$
# of their word sets). The **AUC** is the probability that a pair of label 1 scores higher than a
# pair of label 0 (ties count half): 0.5 means the cue tells nothing.
#
# An SOP pair holds the same two sentences whichever its label, so any cue that treats the two
# sentences alike (overlap, topic) has the same distribution under both labels: its AUC is 0.5
# up to sampling noise. Cues about one sentence alone help little more: every sentence is the second
# sentence of one pair and the first of the next. To order the two, a model has to relate them
# (who "he" is, which event comes first): coherence, which is what ALBERT wants it to learn.

# %% nbgrader={"grade": false, "grade_id": "nsp_overlap", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
documents = [d for d in (sentences_of(article) for article in wikipedia_articles()) if len(d) >= 2]


def make_nsp_pairs(documents: list[list[str]], n: int, rng: random.Random) -> list[tuple[str, str, int]]:
    """Notebook 07's exercise 4, given here: a sentence and its successor (1), or a sentence of another document (0)."""
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


def word_overlap(a: str, b: str) -> float:
    """Jaccard overlap of the two sentences' sets of lower-cased words."""
    words_a, words_b = (set(re.findall(r"\w+", s.lower())) for s in (a, b))
    return len(words_a & words_b) / len(words_a | words_b)


def auc(label_1: torch.Tensor, label_0: torch.Tensor) -> float:
    """P(a label-1 score > a label-0 score), ties counting half."""
    above = (label_1[:, None] > label_0[None]).double().mean()
    ties = (label_1[:, None] == label_0[None]).double().mean()
    return (above + ties / 2).item()


overlaps, cue_auc = {}, {}
print(f"{sum(map(len, documents)):,} sentences in {len(documents)} articles")
print(f"{'pairs':>5} {'mean overlap, label 1':>22} {'label 0':>8} {'AUC':>6}")
for task, make_pairs in (("NSP", make_nsp_pairs), ("SOP", sop_pairs)):
    pairs = make_pairs(documents, 4_000, random.Random(0))
    overlaps[task] = {label: torch.tensor([word_overlap(a, b) for a, b, y in pairs if y == label]) for label in (1, 0)}
    cue_auc[task] = auc(overlaps[task][1], overlaps[task][0])
    print(f"{task:>5} {overlaps[task][1].mean():>22.3f} {overlaps[task][0].mean():>8.3f} {cue_auc[task]:>6.3f}")
fig, axes = plt.subplots(1, 2, figsize=(11, 3), sharey=True)
bins = torch.linspace(0, 0.5, 26).tolist()
for ax, task in zip(axes, ("NSP", "SOP")):
    for label, name in ((1, "label 1 (next / in order)"), (0, "label 0 (other document / swapped)")):
        ax.hist(overlaps[task][label].clamp(max=0.5).tolist(), bins=bins, alpha=0.55, density=True, label=name)
    ax.set_title(f"{task} pairs: word overlap, AUC {cue_auc[task]:.2f}")
    ax.set_xlabel("share of words in common")
axes[0].set_ylabel("density")
axes[0].legend(fontsize=8)
plt.show()
assert cue_auc["NSP"] > 0.65, f"overlap should be a strong cue to NSP's label (AUC {cue_auc['NSP']:.3f}); the text below says so"
n_1, n_0 = len(overlaps["SOP"][1]), len(overlaps["SOP"][0])
null_se = math.sqrt((n_1 + n_0 + 1) / (12 * n_1 * n_0))            # the AUC's standard error when the cue tells nothing
print(f"SOP: AUC {cue_auc['SOP']:.3f}, {abs(cue_auc['SOP'] - 0.5) / null_se:.1f} standard errors ({null_se:.3f}) from 0.5")

# %% [markdown] nbgrader={"grade": false, "grade_id": "reading_overlap", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "fragment"}
# Word overlap alone goes a long way to separating next sentences from sentences of other articles
# (the NSP AUC above, checked to be over 0.65) and says nothing about SOP's order: by the argument
# above its AUC is 0.5 up to sampling noise, and the cell prints how many standard errors your pairs
# are from it. That is the ALBERT paper's argument (Lan et al., section 4.6): NSP mixes topic
# prediction, which is easy, with coherence prediction, which is hard, and a model trained on NSP
# learns the easy part. In the paper's Table 5 the NSP-trained model scores 52.0% on SOP (chance is
# 50%), while the SOP-trained one scores 78.9% on NSP (the NSP-trained one 90.5%) and 86.5% on SOP.
#
# This notebook does not train a model on the two tasks; the paper's figures come from ALBERT-base
# pre-trained for 125,000 steps of 4,096 sequences.

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_5_sentencepiece_unigram", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 6 · Exercise 5: a SentencePiece unigram tokenizer (2 points)
#
# ALBERT tokenizes with **SentencePiece** (Kudo and Richardson, 2018): it treats the text as a raw
# stream and marks word starts with `▁`, so spaces are part of the pieces and decoding gives the text
# back, up to SentencePiece's normalisation (by default NFKC, and runs of spaces folded into one;
# characters it has no piece for come back as ⁇). Its **unigram**
# model (Kudo, 2018) starts from a large seed vocabulary (frequent substrings) and repeatedly
# prunes the pieces whose removal reduces the corpus likelihood least, keeping the ones the
# likelihood needs most, until `vocab_size` are left. Complete `train_sentencepiece(lines, vocab_size)`: train a unigram model from
# the iterator of lines into memory (`model_writer=io.BytesIO()`, no files) with ids
# `[PAD]` 0, `[UNK]` 1, `[CLS]` 2, `[SEP]` 3, `[MASK]` 4 (`pad_id, unk_id, pad_piece, unk_piece`,
# `user_defined_symbols`, no BOS/EOS), and return a `spm.SentencePieceProcessor`. Pass
# `minloglevel=2` to keep it quiet.
#
# <details><summary>Hint 1</summary>
#
# `spm.SentencePieceTrainer.train` takes each option as a keyword argument; `sentence_iterator` and `model_writer` stand in for the input file and the model prefix.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# `pad_id` and `unk_id` place `[PAD]` and `[UNK]` (named by `pad_piece` and `unk_piece`); an id of -1 removes BOS and EOS; the three other specials, as user-defined symbols, take the next ids in their order and are matched in the text.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "specials", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD, UNK, CLS, SEP, MASK = range(5)


# %% nbgrader={"grade": false, "grade_id": "sentencepiece", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def train_sentencepiece(lines: list[str], vocab_size: int) -> spm.SentencePieceProcessor:
    """Train a unigram SentencePiece model in memory; SPECIALS get ids 0-4."""
    ### BEGIN SOLUTION
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size,
                                   model_type="unigram", pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,
                                   pad_piece="[PAD]", unk_piece="[UNK]", user_defined_symbols=SPECIALS[2:],
                                   minloglevel=2)
    return spm.SentencePieceProcessor(model_proto=model.getvalue())
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "tokenizer", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "fragment"}
lines = [line for article in wikipedia_articles() for line in article.split("\n")]
start = time.perf_counter()
sp = train_sentencepiece(lines[:3_000], vocab_size=4_000)
training_seconds = time.perf_counter() - start

# %% slideshow={"slide_type": "-"}
print(f"trained a {sp.get_piece_size():,}-piece unigram model in {training_seconds:.1f} s")
print(sp.encode("Unaffable anarchists hypothesised.", out_type=str))

# %% nbgrader={"grade": true, "grade_id": "test_sentencepiece", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""The unigram model has the requested size, the specials at ids 0-4, ▁ word starts, and decodes exactly."""
assert sp.get_piece_size() == 4_000, f"train_sentencepiece(lines[:3_000], vocab_size=4_000) gave {sp.get_piece_size():,} pieces, not 4,000"
found = [sp.id_to_piece(i) for i in range(5)]
if found[:2] == ["[UNK]", "[PAD]"]:
    raise AssertionError(f"ids 0-4 are {found}: [PAD] and [UNK] are swapped, the prompt puts [PAD] at 0 and [UNK] at 1")
for i, (got, wanted) in enumerate(zip(found, SPECIALS)):
    assert got == wanted, (f"id {i} is {got!r}, not {wanted!r}" + (f": {got} is SentencePiece's own name for that piece, "
                                                                    f"the prompt names it {wanted}" if got in ("<pad>", "<unk>")
                                                                    else f" (ids 0-4 are {found}, the prompt asks for {SPECIALS})"))
in_text = sp.encode("a [MASK] b", out_type=str)
assert "[MASK]" in in_text, (f"'a [MASK] b' encodes to {in_text}: [MASK] in text should be one piece, as a user-defined "
                             "symbol is (a control symbol is never matched in text)")
scores = [sp.get_score(i) for i in range(5, 200)]
assert any(abs(x - round(x)) > 1e-3 for x in scores), \
    ("the scores of pieces 5-199 are all whole numbers, the ranks a BPE model stores; a unigram model scores each piece by "
     "its log-probability: which model_type did you train?")
pieces = sp.encode("The history of music", out_type=str)
assert pieces[0].startswith("▁"), f"word starts are marked with ▁: {pieces}"
text = "Anarchism is a political philosophy."
assert sp.decode(sp.encode(text)) == text, f"decoding {text!r} gave {sp.decode(sp.encode(text))!r}, not the text back"
try:
    small = train_sentencepiece(lines[:400], vocab_size=500)
except RuntimeError as error:
    raise AssertionError(f"train_sentencepiece(lines[:400], vocab_size=500) failed: {error}: is vocab_size passed on?") from None
assert small.get_piece_size() == 500, \
    f"train_sentencepiece(lines[:400], vocab_size=500) gave {small.get_piece_size():,} pieces: vocab_size sets the number of pieces"
### BEGIN HIDDEN TESTS
assert sp.encode("[MASK]") [-1] == MASK or MASK in sp.encode("a [MASK] b"), "[MASK] must be one symbol"
assert sp.bos_id() == -1 and sp.eos_id() == -1, "no BOS/EOS"
scores = [sp.get_score(i) for i in range(5, 200)]
assert any(abs(x - round(x)) > 1e-3 for x in scores), "a unigram model scores pieces by log-probability (BPE scores are ranks)"
assert small.get_piece_size() == 500, "vocab_size must be used"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "experiment_small_bert_against", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 7 · Experiment: a small BERT against a small ALBERT
#
# Same width ($H = 128$), depth ($L = 2$), heads and feed-forward size, same data (windows of 48
# SentencePiece pieces of Wikipedia, 15% corrupted 80/10/10, one token at a time as in notebook 04;
# the paper's ALBERT masks n-grams of up to three words instead), same optimiser and number of steps.
# BERT: a $V \times H$ table and two separate layers. ALBERT: $E = 32$ and one shared layer.
# The masked-LM head maps $H \to E$ and decodes with the (tied) token table.
#
# > **Targets (tested).** ALBERT's encoder has at most half of BERT's parameters (and exactly your
# > `albert_parameter_count`, hidden), and after the 600 steps each model's held-out masked-token
# > accuracy is at least 1.25 times that of always predicting the most frequent piece. The cells
# > the test reads are locked.

# %% nbgrader={"grade": false, "grade_id": "masked_lm", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
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
    return torch.where(to_random, random_tokens, tokens.masked_fill(to_mask, mask_id)), labels


class MaskedLM(nn.Module):
    """AlbertModel with a masked-LM head: H -> E, GELU, LayerNorm, tied decoder."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        e = config.embedding_size or config.hidden
        self.model = AlbertModel(config)
        self.dense, self.norm = nn.Linear(config.hidden, e), nn.LayerNorm(e, eps=config.eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        for module in self.modules():                         # BERT's initialisation
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.model(input_ids)
        h = self.norm(F.gelu(self.dense(hidden[positions])))  # (n_chosen, E)
        return h @ self.model.embeddings.token.weight.T + self.bias


# %% nbgrader={"grade": false, "grade_id": "experiment", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "fragment"}
stream = torch.tensor([i for line in lines for i in sp.encode(line)])
split = int(len(stream) * 0.95)
train_stream, held_out_stream = stream[:split], stream[split:]
SEQ, BATCH, STEPS = 48, 64, 600
print(f"{len(stream):,} pieces; {len(held_out_stream):,} held out")


def mlm_batches(source: torch.Tensor, n_batches: int, batch: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        starts = torch.randint(0, len(source) - SEQ, (batch,), generator=generator).tolist()
        tokens = torch.stack([source[s:s + SEQ] for s in starts])
        out.append(bert_corrupt(tokens, tokens < 5, sp.get_piece_size(), MASK, generator))
    return out


held_out = mlm_batches(held_out_stream, 4, 256, seed=99)
held_out_labels = torch.cat([labels[labels != -100] for _, labels in held_out])
baseline = Counter(held_out_labels.tolist()).most_common(1)[0][1] / len(held_out_labels)
train_batches = mlm_batches(train_stream, STEPS, BATCH, seed=1)


def mlm_loss(model: MaskedLM, batch) -> torch.Tensor:
    inputs, labels = batch
    chosen = labels != -100
    return F.cross_entropy(model(inputs, chosen), labels[chosen])


def mlm_accuracy(model: MaskedLM) -> dict[str, float]:
    hits = 0
    for inputs, labels in held_out:
        inputs, labels = inputs.to(device), labels.to(device)
        chosen = labels != -100
        hits += (model(inputs, chosen).argmax(-1) == labels[chosen]).sum().item()
    return {"masked-token accuracy": hits / len(held_out_labels)}


shape = dict(vocab_size=sp.get_piece_size(), hidden=128, layers=2, heads=4, intermediate=512, max_positions=SEQ)
contenders = {"BERT (E = H, no sharing)": AlbertConfig(embedding_size=None, share="none", **shape),
              "ALBERT (E = 32, all shared)": AlbertConfig(embedding_size=32, share="all", **shape)}
results = {}
for name, config in contenders.items():
    seed_everything(0)
    model = MaskedLM(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 30) * max(0.0, 1 - s / STEPS))
    history = fit(model, mlm_loss, train_batches, optimizer, STEPS, device=device, scheduler=scheduler,
                  eval_fn=mlm_accuracy, eval_every=200, description=name)
    results[name] = {"parameters": count_parameters(model.model), "accuracy": history.last("masked-token accuracy"),
                     "seconds": history.seconds, "curve": [m["masked-token accuracy"] for _, m in history.evals]}

print(f"{'model':>28} {'parameters':>11} {'accuracy':>9} {'seconds':>8}")
for name, r in results.items():
    print(f"{name:>28} {r['parameters']:>11,} {r['accuracy']:>9.1%} {r['seconds']:>8.0f}")
print(f"{'most frequent piece':>28} {'':>11} {baseline:>9.1%}")
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for name, r in results.items():
    axes[0].scatter(r["parameters"], r["accuracy"], s=80, label=name)
    axes[1].plot([200 * (i + 1) for i in range(len(r["curve"]))], r["curve"], "o-", label=name)
axes[0].axhline(baseline, color="gray", ls="--", label="most frequent piece")
axes[0].set_xscale("log")
axes[0].set_xlabel("encoder parameters")
axes[0].set_ylabel("held-out masked-token accuracy")
axes[1].set_xlabel("step")
axes[1].legend(fontsize=8)
plt.show()
bert_run, albert_run = results["BERT (E = H, no sharing)"], results["ALBERT (E = 32, all shared)"]
print(f"ALBERT: {albert_run['parameters'] / bert_run['parameters']:.0%} of BERT's parameters, "
      f"{albert_run['accuracy'] / bert_run['accuracy']:.0%} of its accuracy after {STEPS} steps: "
      f"{'below' if albert_run['accuracy'] < bert_run['accuracy'] else 'not below'} BERT in this run")

# %% nbgrader={"grade": true, "grade_id": "test_albert_experiment", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""ALBERT has at most half of BERT's parameters and both learn: accuracy at least 1.25x the most-frequent-piece baseline."""
bert, albert = results["BERT (E = H, no sharing)"], results["ALBERT (E = 32, all shared)"]
assert albert["parameters"] * 2 <= bert["parameters"], \
    f"ALBERT's encoder has {albert['parameters']:,} parameters, more than half of BERT's {bert['parameters']:,}"
for name, r in results.items():
    assert r["accuracy"] >= 1.25 * baseline, f"{name}: held-out masked-token accuracy {r['accuracy']:.1%}, below 1.25 x the most-frequent-piece baseline {baseline:.1%}"
### BEGIN HIDDEN TESTS
assert albert["parameters"] == albert_parameter_count(contenders["ALBERT (E = 32, all shared)"]), "the experiment uses your model"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "reading_result", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ### Reading the result
#
# ALBERT stores far fewer parameters but runs the same encoder computation: two layer
# applications at $H = 128$ either way (its head, $H \to E = 32$, and its decoding against a
# $V \times E$ table are cheaper, its $E \to H$ projection costs a little), so on one machine sharing
# is a **memory** saving, not a speed-up; the seconds column also depends on whatever else the
# machine is doing. (Across many TPUs the paper does measure a higher training throughput, 1.7x for
# ALBERT-large over BERT-large, which it credits to less communication and fewer computations.) At equal width sharing costs accuracy: here ALBERT reaches a lower accuracy
# than BERT in the same steps, as ALBERT-base trails BERT-base in the paper (80.1 against 82.3 on
# average over its downstream tasks, Table 2); the last line the cell above prints says whether your
# run shows it too. The paper spends the saved memory on width (xxlarge, $H = 4096$) to come
# out ahead.

# %% [markdown] nbgrader={"grade": false, "grade_id": "summary", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## Summary
#
# * **Factorised embeddings** replace $V \times H$ with $V \times E + E \times H$; the token table holds
#   a fifth of BERT-base's parameters (23M of 109M).
# * **Cross-layer sharing** (attention, feed-forward or all) cuts the encoder to one layer's worth
#   of parameters; with PyTorch it is a matter of reusing module objects.
# * A closed-form count reproduces the paper's table within 3%, except xxlarge: its configuration
#   has 223M parameters where the paper prints 235M. The count is checked on the **meta** device
#   without allocating memory.
# * **Sentence-order prediction** asks for coherence rather than topic: word overlap is a strong cue to
#   NSP's label (an AUC over 0.65 on your pairs) and, by construction, none to SOP's order.
#   **SentencePiece** unigram tokenizes raw text and decodes it back, up to its normalisation.

# %% [markdown] nbgrader={"grade": false, "grade_id": "further_reading", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Further reading
#
# * Lan et al. (2019). *ALBERT: A Lite BERT for Self-supervised Learning of Language Representations.* arXiv:1909.11942
# * Kudo and Richardson (2018). *SentencePiece.* arXiv:1808.06226
# * Kudo (2018). *Subword Regularization* (the unigram model). arXiv:1804.10959
# * Dehghani et al. (2018). *Universal Transformers* (weight sharing across depth, notebook 12). arXiv:1807.03819
#
# <!-- reading-list -->
# **From the course reading list** (`readings/reading-list.md`, mostly Chinese-language articles; links as the list gives them), by the section they go with:
#
# * with *1 · Where BERT's parameters are*
#   * [如何看待瘦身成功版BERT——ALBERT](https://www.zhihu.com/question/347898375): what to make of ALBERT, a slimmed-down BERT (zhihu)
# <!-- /reading-list -->
