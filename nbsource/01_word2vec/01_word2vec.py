# ---
# jupyter:
#   celltoolbar: Slideshow
#   kernelspec:
#     display_name: Python 3 (course)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "title", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# # 01 · word2vec
#
# **Learning objectives.** After this notebook you can
# 1. **explain** the distributional hypothesis and why predicting context words yields word vectors;
# 2. **implement** the pieces of skip-gram with negative sampling as the original C code does them:
#    subsampling, the dynamic window, the unigram$^{0.75}$ noise distribution;
# 3. **train** skip-gram on a Wikipedia sample and **compare** it with gensim on the same corpus;
# 4. **evaluate** word vectors by word similarity (WordSim-353) and analogies (3CosAdd).
#
# **Prerequisites.** PyTorch tensors, `nn.Embedding`, a training loop.
#
# **Estimated time.** 2 hours. The notebook runs in about two minutes on a laptop CPU.

# %% [markdown] nbgrader={"grade": false, "grade_id": "notes_intro", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "notes"}
# Speaker notes: open with "you shall know a word by the company it keeps" (Firth, 1957),
# then show two nearest-neighbour lists from a trained model before any maths.

# %% [markdown] nbgrader={"grade": false, "grade_id": "setup_text", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Setup

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
import math
import re
import time
from collections import Counter
from unittest import mock

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.stats import spearmanr

from course_utils import assert_close, check_shape, describe_environment, get_device, seed_everything
from course_utils.data import analogy_questions, wikipedia_articles, wordsim353
from course_utils.plot import plot_curves, project_2d, scatter_embeddings
from course_utils.train import fit

seed_everything(0)
device = get_device()
print(describe_environment(device))


# %% [markdown] nbgrader={"grade": false, "grade_id": "intuition_words_that_keep", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 1 · Intuition: words that keep the same company
#
# *"You shall know a word by the company it keeps"* (Firth, 1957). Skip-gram turns the
# idea into a prediction task: from a **center** word, predict the words around it. Two
# words that appear in the same contexts ("coffee" and "tea") must make similar
# predictions, so their vectors end up close.
#
# Predicting with a softmax over the whole vocabulary costs $O(V)$ per pair. **Negative
# sampling** replaces it with a handful of binary questions: is this (center, context) pair
# real, or was the context drawn at random from a **noise** distribution?

# %% [markdown] nbgrader={"grade": false, "grade_id": "corpus_about_100", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# The corpus: about 100 English Wikipedia articles shipped with gensim (~478k words), split
# into sentences of lowercase word tokens.

# %% nbgrader={"grade": false, "grade_id": "corpus", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
def tokenize(text: str) -> list[str]:
    """Lowercase word tokens (letters, with inner apostrophes)."""
    return re.findall(r"[a-z]+(?:'[a-z]+)?", text.lower())


sentences = [tokenize(p) for article in wikipedia_articles() for p in article.split("\n")]
sentences = [s for s in sentences if len(s) > 1]
counts = Counter(w for s in sentences for w in s)
MIN_COUNT = 5
vocab = [w for w, c in counts.most_common() if c >= MIN_COUNT]
word_to_id = {w: i for i, w in enumerate(vocab)}
word_counts = torch.tensor([counts[w] for w in vocab], dtype=torch.float64)   # (V,)
corpus_ids = torch.tensor([word_to_id[w] for s in sentences for w in s if w in word_to_id])  # (n_tokens,)
print(f"{sum(counts.values()):,} tokens, {len(vocab):,} words seen at least {MIN_COUNT} times, "
      f"{len(corpus_ids):,} tokens kept")
print("most frequent:", vocab[:12])

# %% slideshow={"slide_type": "fragment"}
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.loglog(range(1, len(vocab) + 1), word_counts.numpy())
ax.set(xlabel="rank", ylabel="count", title="Zipf's law: a few words are everywhere")
ax.grid(alpha=0.3)
plt.show()


# %% [markdown] nbgrader={"grade": false, "grade_id": "math", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 2 · The math
#
# For a center word $c$ with input vector $v_c$, a true context word $o$ with output vector
# $u_o$, and $K$ noise words $n_1..n_K$ drawn from $P_n$, skip-gram with negative sampling
# minimises
#
# $$\mathcal{L} = -\log \sigma(u_o^\top v_c) - \sum_{k=1}^{K} \log \sigma(-u_{n_k}^\top v_c)$$
#
# averaged over the batch. The noise distribution is the unigram distribution raised to $3/4$:
#
# $$P_n(w) = \frac{\text{count}(w)^{0.75}}{\sum_{w'} \text{count}(w')^{0.75}}$$
#
# | symbol | shape | meaning | code name |
# |---|---|---|---|
# | $V$, $D$ | | vocabulary size, vector size | `vocab_size`, `dim` |
# | $v_c$ | `(batch, D)` | input ("center") embedding | `model.in_embed(center)` |
# | $u_o$ | `(batch, D)` | output ("context") embedding | `model.out_embed(context)` |
# | $u_{n_k}$ | `(batch, K, D)` | output embeddings of noise words | `model.out_embed(negatives)` |
# | $P_n$ | `(V,)` | noise distribution | `noise` |
# | $f(w)$ | `(V,)` | relative frequency count(w)/total | |
# | $t$ | scalar | subsampling threshold | `sample` |

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_1_subsampling_frequent", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 3 · Exercise 1: subsampling frequent words (2 points)
#
# "the" appears in nearly every window and teaches little. Mikolov et al. discard each
# occurrence of a word with a probability that grows with its frequency $f(w)$. The paper
# writes $P_\text{discard}(w) = 1 - \sqrt{t / f(w)}$, but the released C code (which gensim
# follows) keeps an occurrence with probability
#
# $$P_\text{keep}(w) = \left(\sqrt{\frac{f(w)}{t}} + 1\right) \frac{t}{f(w)}, \quad \text{clipped to at most } 1.$$
#
# **We implement the C code's formula.** Write `keep_probabilities(counts, sample)`:
# `counts` `(V,)`, returns `(V,)` in $[0, 1]$.
#
# <details><summary>Hint 1</summary>
#
# $f(w)$ is a word's share of all tokens: turn the counts into frequencies first. Everything after that is element-wise on `(V,)` tensors.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Check one value by hand: with $t = 0.01$ a word with $f = 0.25$ gives $(\sqrt{25} + 1) \times 0.04 = 0.24$, and a word with $f = 0.01$ gives $2$, which the clip turns into $1$. The clip is an upper bound, and `Tensor.clamp` has one argument for each side: which one is it?
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "keep_probabilities", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def keep_probabilities(counts: torch.Tensor, sample: float = 1e-3) -> torch.Tensor:
    """Probability of keeping each occurrence of each word (word2vec's C code), shape (V,)."""
    ### BEGIN SOLUTION
    frequency = counts / counts.sum()                          # (V,)
    keep = ((frequency / sample).sqrt() + 1) * sample / frequency
    return keep.clamp(max=1.0)
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
keep = keep_probabilities(word_counts, 1e-3)
for w in ["the", "of", "city", "music", "quantum"]:
    if w in word_to_id:
        print(f"{w:>8}: keep {keep[word_to_id[w]].item():.3f}")
print(f"expected fraction of tokens kept: {(keep[corpus_ids]).mean().item():.2f}")

# %% nbgrader={"grade": true, "grade_id": "test_keep_probabilities", "locked": true, "points": 2.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""keep_probabilities: the C code's formula on hand-computed counts, clipped at 1."""
counts_demo = torch.tensor([2500.0, 100.0, 7400.0], dtype=torch.float64)   # total 10,000: f = 0.25, 0.01, 0.74
got = keep_probabilities(counts_demo, sample=0.01)
call = "keep_probabilities(tensor([2500., 100., 7400.]), sample=0.01)"
check_shape(got, (3,), call)
shown = [round(x, 4) for x in got.tolist()]
scaled = keep_probabilities(counts_demo * 7, sample=0.01)
assert torch.allclose(scaled, got, atol=1e-12), (
    f"{call} = {shown}, but with every count 7 times larger {[round(x, 4) for x in scaled.tolist()]}: "
    "f(w) in the formula is a relative frequency (count / total), so scaling every count changes nothing")
assert not torch.allclose(got, torch.ones(3, dtype=torch.float64)), (
    f"{call} = {shown}: every word is kept, even the one with f = 0.74; the C code keeps it about 13% of the "
    "time: check the square root in the first term")
assert not (got >= 1).all(), (
    f"{call} = {shown}: every probability is at least 1, even for the word with f = 0.74; "
    "the formula is clipped to at most 1: does your clip work from below?")
assert not (got > 1).any(), (
    f"{call} = {shown}: a probability above 1 (the rare word, f = 0.01, gives 2 before clipping): "
    "the prompt's formula is clipped to at most 1")
frequency_demo = counts_demo / counts_demo.sum()
assert not torch.allclose(got, (0.01 / frequency_demo).sqrt().clamp(max=1.0), atol=1e-9), (
    f"{call} = {shown}: these are the paper's sqrt(t / f(w)); the prompt asks for the C code's formula")
inverted = ((0.01 / frequency_demo).sqrt() + 1) * 0.01 / frequency_demo
assert not torch.allclose(got, inverted.clamp(max=1.0), atol=1e-9), (
    f"{call} = {shown}, 0.048 instead of 0.24 for f = 0.25: your square root looks like sqrt(t / f(w)); "
    "inside the square root of the prompt's formula the frequency is on top")
# f = 0.25: (sqrt(25) + 1) * 0.01 / 0.25 = 0.24;  f = 0.01: (1 + 1) * 1 = 2 -> clipped to 1
expected = torch.tensor([0.24, 1.0, (math.sqrt(74) + 1) * 0.01 / 0.74], dtype=torch.float64)
assert_close(got, expected, f"{call}: the C code's formula for f = 0.25, 0.01 and 0.74", atol=1e-9)
### BEGIN HIDDEN TESTS
rare = keep_probabilities(torch.tensor([1.0, 1.0, 1e6], dtype=torch.float64), sample=1e-3)
assert (rare <= 1).all() and (rare >= 0).all(), f"probabilities must lie in [0, 1], got {rare}"
assert rare[0] == 1.0, "a rare word must always be kept (clip at 1)"
# frequencies, not raw counts: scaling every count changes nothing
scaled = keep_probabilities(counts_demo * 7, sample=0.01)
assert_close(scaled, got, "keep probabilities depend on frequencies, not counts", atol=1e-12)
many = keep_probabilities(torch.arange(1.0, 200.0, dtype=torch.float64), sample=1e-3)
assert (many[1:] <= many[:-1] + 1e-12).all(), "more frequent words must be kept less often"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_2_center_context", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 4 · Exercise 2: (center, context) pairs with a dynamic window (2 points)
#
# The C code does not use every word within `window` positions. For each center word it
# draws $b$ uniformly from $\{1, \dots, \text{window}\}$ and uses the words at distance
# $1..b$ on both sides. Near words are therefore used more often than far ones: distance
# $d$ is used with probability $(\text{window} - d + 1)/\text{window}$.
#
# Write `skipgram_pairs(ids, window, generator)` returning a `(n_pairs, 2)` tensor of
# `[center_id, context_id]` rows. Draw one $b$ per position with
# `torch.randint(1, window + 1, (n,), generator=generator)`; then loop over the **offsets**
# $d = 1..\text{window}$ (not over positions) and keep the pairs whose center has $b \ge d$.
# Never pair a word with itself, and never cross the ends of `ids`.
#
# <details><summary>Hint 1</summary>
#
# Think in offsets, not positions: for one distance $d$, the centers that look right are the positions $0 .. n - 1 - d$ and their contexts lie $d$ further on; looking left is the mirror image.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Draw all the $b$'s once, before the loop over $d$. For each $d$, a boolean mask $b \ge d$ over the centers keeps those whose window reaches that far, on both sides alike.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# Index `ids` with the kept center positions and with the shifted context positions, stack the two as columns, and concatenate the pieces of every offset and both sides. With a short `ids` and a large window some offsets have no center at all, and a slice that ends at a negative index wraps around in Python.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "skipgram_pairs", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def skipgram_pairs(ids: torch.Tensor, window: int, generator: torch.Generator) -> torch.Tensor:
    """All (center, context) id pairs under word2vec's dynamic window, shape (n_pairs, 2)."""
    ### BEGIN SOLUTION
    n = len(ids)
    reach = torch.randint(1, window + 1, (n,), generator=generator)   # (n,) b per center
    positions = torch.arange(n)
    pairs = []
    for d in range(1, window + 1):
        stop = max(n - d, 0)                                          # (n - d < 0 would wrap around)
        right = positions[:stop][reach[:stop] >= d]                   # centers looking right
        left = positions[d:][reach[d:] >= d]                          # centers looking left
        pairs.append(torch.stack([ids[right], ids[right + d]], dim=1))
        pairs.append(torch.stack([ids[left], ids[left - d]], dim=1))
    return torch.cat(pairs)                                          # (n_pairs, 2)
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
demo = skipgram_pairs(torch.tensor([word_to_id[w] for w in ["the", "city", "was", "on", "the", "river"]]), 2,
                      torch.Generator().manual_seed(0))
print([(vocab[c], vocab[o]) for c, o in demo.tolist()])

# %% nbgrader={"grade": true, "grade_id": "test_skipgram_pairs", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""skipgram_pairs: exact pairs for window 1; distance d used with probability (W - d + 1) / W, one b per center."""
got = skipgram_pairs(torch.tensor([10, 11, 12]), 1, torch.Generator().manual_seed(0))
call = "skipgram_pairs(tensor([10, 11, 12]), window=1, generator)"
check_shape(got, (None, 2), call)
found = sorted(map(tuple, got.tolist()))
wanted = [(10, 11), (11, 10), (11, 12), (12, 11)]
assert set(got.flatten().tolist()) <= {10, 11, 12}, (
    f"{call} = {found}: the pairs hold numbers that are not in ids; are they positions 0, 1, 2 "
    "instead of the ids at those positions?")
assert len(found) > 0, (f"{call} gives no pair at all: with window 1 every b is 1, and a center with b = 1 "
                        "uses distance 1 (the distances 1..b, b included)")
assert not (set(found) & {(10, 12), (12, 10)}), (
    f"{call} = {found}: 10 and 12 are paired, but they are two apart: does the window wrap around the ends "
    "of ids? A center near an end has fewer contexts on that side")
assert any(center > context for center, context in found), (
    f"{call} = {found}: no context lies to the left of its center; the words at distance 1..b on the "
    "left count too")
assert set(found) >= set(wanted), (
    f"{call} = {found}, missing {sorted(set(wanted) - set(found))}: with window 1, b can only be 1, so every "
    "center uses both of its neighbours: from which range is b drawn?")
assert found == wanted, f"{call}: expected the pairs {wanted} in any order, got {found}"
positions = torch.arange(40_000)
pairs = skipgram_pairs(positions, 4, torch.Generator().manual_seed(1))
distance = (pairs[:, 0] - pairs[:, 1]).abs()
share = torch.stack([(distance == d).sum() for d in range(1, 5)]).double()
share = share / share[0]
call = "skipgram_pairs(torch.arange(40_000), window=4, generator)"
assert not ((share - share.round()).abs() < 0.01).all(), (
    f"{call}: distances 1-4 occur {[round(x, 2) for x in share.tolist()]} times as often as distance 1, as if "
    "every center had the same b: b is drawn for each center, uniformly from 1..window")
used = torch.zeros(40_000, 5, dtype=torch.bool)                # used[center, distance], right-hand side
right_side = pairs[:, 1] > pairs[:, 0]
used[pairs[right_side, 0], distance[right_side]] = True
gaps = (used[:-4, 2:] & ~used[:-4, 1:-1]).sum().item()
assert gaps == 0, (f"{call}: {gaps} centers use a distance d but not d - 1; with one b per center, "
                   "a center uses every distance from 1 to its b: is b drawn once per center, or again for each d?")
assert_close(share, torch.tensor([1.0, 0.75, 0.5, 0.25], dtype=torch.float64),
             f"{call}: how often distances 1-4 occur, relative to distance 1 ((W - d + 1) / W)", atol=0.03)
### BEGIN HIDDEN TESTS
assert distance.min() >= 1 and distance.max() <= 4, "no self-pairs and nothing beyond the window"
again = skipgram_pairs(positions, 4, torch.Generator().manual_seed(1))
assert torch.equal(again, pairs), "the same generator seed must give the same pairs"
other = skipgram_pairs(positions, 4, torch.Generator().manual_seed(2))
assert not torch.equal(other, pairs), "the generator must be used"
# one b per center: a center away from the ends uses exactly the distances 1..b, on both sides
used = torch.zeros(40_000, 9, dtype=torch.bool)                # used[center, offset + 4]
used[pairs[:, 0], pairs[:, 1] - pairs[:, 0] + 4] = True
right_used, left_used = used[4:-4, 5:], used[4:-4, :4].flip(1)  # distances 1..4 on each side
assert torch.equal(right_used, left_used), "each center must use the same b on both sides"
gaps = (right_used[:, 1:] & ~right_used[:, :-1]).sum().item()
assert gaps == 0, f"a center that uses distance d must use every distance below d (one b per center): {gaps} centers do not"
edge = skipgram_pairs(torch.tensor([5, 6]), 3, torch.Generator().manual_seed(0))
assert sorted(map(tuple, edge.tolist())) == [(5, 6), (6, 5)], f"pairs must not cross the ends: {edge.tolist()}"
expected_pairs = 2 * sum((40_000 - d) * (4 - d + 1) / 4 for d in range(1, 5))
assert abs(len(pairs) - expected_pairs) < 0.01 * expected_pairs, f"expected about {expected_pairs:,.0f} pairs, got {len(pairs):,}"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_3_noise_distribution", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 5 · Exercise 3: the noise distribution and a negative sampler (3 points)
#
# Write `noise_distribution(counts, power=0.75)` returning $P_n$ `(V,)` (float32, sums to 1),
# and `sample_negatives(noise, shape, generator)` returning a `LongTensor` of the given shape
# with ids drawn independently from `noise` (one vectorised call, e.g. `torch.multinomial`
# with replacement, then reshape). Raising counts to $0.75$ flattens the distribution: rare
# words are drawn more often than their frequency alone would give.
#
# <details><summary>Hint 1</summary>
#
# Raise, then normalise: a distribution sums to 1. Compute in float64 if you like; the prompt asks for float32 at the end.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# `torch.multinomial` draws indices from a vector of weights, a flat number of them: ask for as many as the shape holds (`math.prod(shape)`) and reshape. Far more draws than ids means drawing with replacement, and the generator goes to that call.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "negative_sampling", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def noise_distribution(counts: torch.Tensor, power: float = 0.75) -> torch.Tensor:
    """P_n(w) proportional to count(w) ** power, shape (V,), float32."""
    ### BEGIN SOLUTION
    weights = counts.double() ** power
    return (weights / weights.sum()).float()
    ### END SOLUTION


def sample_negatives(noise: torch.Tensor, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Ids drawn i.i.d. from ``noise``, as a LongTensor of ``shape``."""
    ### BEGIN SOLUTION
    total = math.prod(shape)
    return torch.multinomial(noise, total, replacement=True, generator=generator).view(shape)
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
noise = noise_distribution(word_counts)
unigram = word_counts / word_counts.sum()
for w in ["the", "music", "quantum"]:
    if w in word_to_id:
        i = word_to_id[w]
        print(f"{w:>8}: unigram {unigram[i].item():.2e}   noise {noise[i].item():.2e}")

# %% nbgrader={"grade": true, "grade_id": "test_negative_sampling", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""noise_distribution and sample_negatives: closed-form probabilities, sampled frequencies, the generator used."""
p = noise_distribution(torch.tensor([1.0, 16.0, 81.0]))
call = "noise_distribution(tensor([1., 16., 81.]))"
check_shape(p, (3,), call)
shown = [round(x, 4) for x in p.tolist()]
assert abs(p.sum().item() - 1) < 1e-5, f"{call} = {shown} sums to {p.sum().item():.4g}, not 1: P_n is a distribution"
unigram_demo = torch.tensor([1.0, 16.0, 81.0]) / 98
assert not torch.allclose(p.double(), unigram_demo.double(), atol=1e-6), (
    f"{call} = {shown} is count / total, the plain unigram distribution: the counts are raised to the power "
    "0.75 first (is power used?)")
assert p[0] > unigram_demo[0], (
    f"{call} = {shown}: the rarest word (count 1) gets {p[0].item():.4f}, less than its unigram frequency 1/98 = "
    f"{1 / 98:.4f}; a power below 1 flattens the distribution, yours sharpens it: which power did the counts get?")
# 1 ** 0.75 = 1, 16 ** 0.75 = 8, 81 ** 0.75 = 27
assert_close(p, torch.tensor([1.0, 8.0, 27.0]) / 36, f"{call}: counts ** 0.75 = 1, 8, 27, normalised", atol=1e-6)
assert p.dtype == torch.float32, f"{call} returns {p.dtype}; the prompt asks for float32"
try:
    draws = sample_negatives(p, (50_000, 4), torch.Generator().manual_seed(0))
except RuntimeError as error:
    raise AssertionError(f"sample_negatives(noise, (50_000, 4), generator) raised RuntimeError ({error}): "
                         "200,000 draws from 3 ids bring every id back many times: "
                         "do your draws allow that (with replacement)?") from None
call = "sample_negatives(noise, (50_000, 4), generator)"
check_shape(draws, (50_000, 4), call)
assert draws.dtype == torch.long, f"{call} returns {draws.dtype}; the prompt asks for int64 ids (a LongTensor)"
freq = torch.bincount(draws.flatten(), minlength=3).double() / draws.numel()
assert not torch.allclose(freq, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.01), (
    f"{call}: the 3 ids come out equally often, {[round(x, 3) for x in freq.tolist()]}, although noise is "
    f"{shown}: the draws ignore noise")
assert_close(freq, p.double(), f"{call}: how often each id is drawn, against noise", atol=0.005)
first = sample_negatives(p, (7, 3), torch.Generator().manual_seed(5))
second = sample_negatives(p, (7, 3), torch.Generator().manual_seed(5))
assert torch.equal(first, second), ("sample_negatives: two calls with generators seeded alike gave different "
                                    "negatives: is the generator passed to the random draw?")
### BEGIN HIDDEN TESTS
assert_close(noise_distribution(torch.tensor([2.0, 6.0]), power=1.0), torch.tensor([0.25, 0.75]),
             "power = 1 gives the unigram distribution", atol=1e-6)
a = sample_negatives(p, (7, 3), torch.Generator().manual_seed(5))
b = sample_negatives(p, (7, 3), torch.Generator().manual_seed(5))
assert torch.equal(a, b), "the same generator seed must give the same negatives"
with mock.patch("random.random", side_effect=AssertionError("use the torch generator")):
    sample_negatives(p, (2, 2), torch.Generator().manual_seed(0))
skewed = noise_distribution(torch.tensor([1.0, 10_000.0]))
assert 0.0009 < skewed[0].item() < 0.0011, f"counts 1 and 10,000: expected ~1e-3 for the rare word, got {skewed[0].item():.2e}"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_4_skip_gram", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 6 · Exercise 4: skip-gram with negative sampling (3 points)
#
# Write `SkipGramNS(vocab_size, dim)` with two **separate** `nn.Embedding(vocab_size, dim,
# sparse=True)` tables named `in_embed` (for centers) and `out_embed` (for contexts and noise
# words), initialised as the C code does: `in_embed` uniform in $[-0.5/D, 0.5/D]$, `out_embed` zeros.
# `forward(center (B,), context (B,), negatives (B, K))` returns the loss $\mathcal{L}$ above,
# **summed over the K negatives and averaged over the batch**, using `F.logsigmoid`
# (numerically safe, unlike `torch.log(torch.sigmoid(...))`). No loops.
#
# <details><summary>Hint 1</summary>
#
# Three look-ups: the centers in `in_embed` `(B, D)`, the contexts in `out_embed` `(B, D)`, the noise words in `out_embed` `(B, K, D)`.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Every score is a dot product with the center's vector: multiply element-wise and sum over $D$ for the context; for the $K$ noise words a batched matrix product (or broadcasting) gives `(B, K)`.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# The true pair should score high and the noise words low, hence the minus sign inside the noise term's `F.logsigmoid`. Sum the noise terms over $K$, add the positive term, negate, and average over $B$.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "skipgram_model", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
class SkipGramNS(nn.Module):
    """Skip-gram with negative sampling: separate input and output embeddings."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        self.in_embed = nn.Embedding(vocab_size, dim, sparse=True)
        self.out_embed = nn.Embedding(vocab_size, dim, sparse=True)
        nn.init.uniform_(self.in_embed.weight, -0.5 / dim, 0.5 / dim)
        nn.init.zeros_(self.out_embed.weight)
        ### END SOLUTION

    def forward(self, center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of -log s(u_o.v_c) - sum_k log s(-u_k.v_c)."""
        ### BEGIN SOLUTION
        v = self.in_embed(center)                                   # (B, D)
        u = self.out_embed(context)                                 # (B, D)
        u_noise = self.out_embed(negatives)                         # (B, K, D)
        positive = F.logsigmoid((u * v).sum(-1))                    # (B,)
        negative = F.logsigmoid(-(u_noise @ v.unsqueeze(-1)).squeeze(-1)).sum(-1)  # (B,)
        return -(positive + negative).mean()
        ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
tiny_model = SkipGramNS(vocab_size=6, dim=4)
tiny_loss = tiny_model(torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([[4, 5, 4], [5, 5, 4]]))
# out_embed starts at zero, so every score is 0 and every sigmoid 1/2: the loss is (1 + K) log 2
print(f"loss at initialisation: {tiny_loss.item():.4f}   (1 + K) log 2 with K = 3: {4 * math.log(2):.4f}")
tiny_loss.backward()
gradient = tiny_model.out_embed.weight.grad
touched = gradient.to_dense().abs().sum(1).nonzero().flatten().tolist()
print(f"out_embed's gradient is sparse: {gradient.is_sparse}; the rows it touches: {touched} (contexts and noise words)")

# %% nbgrader={"grade": true, "grade_id": "test_skipgram_model", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""SkipGramNS: separate sparse tables, the C code's initialisation, the loss on a hand-computed case, finite for large scores."""
torch.manual_seed(0)
model_demo = SkipGramNS(3, 2)
assert model_demo.in_embed is not model_demo.out_embed, (
    "SkipGramNS(3, 2): in_embed and out_embed are the same table; the prompt asks for two separate "
    "nn.Embedding tables, one for centers and one for contexts and noise words")
for name in ("in_embed", "out_embed"):
    assert getattr(model_demo, name).sparse, (
        f"SkipGramNS(3, 2).{name} is a dense nn.Embedding: the prompt asks for sparse=True "
        "(SparseAdam, used for training below, needs sparse gradients)")
assert model_demo.out_embed.weight.abs().sum() == 0, (
    f"SkipGramNS(3, 2).out_embed.weight is not all zeros at initialisation (largest |w| = "
    f"{model_demo.out_embed.weight.abs().max().item():.3g}): the C code starts out_embed at zeros")
largest = model_demo.in_embed.weight.abs().max().item()
assert largest <= 0.25, (f"SkipGramNS(3, 2).in_embed.weight reaches |w| = {largest:.3g}; with dim = 2 the C code's "
                         "range [-0.5/D, 0.5/D] is [-0.25, 0.25]")
assert largest > 0, "SkipGramNS(3, 2).in_embed.weight is all zeros: it starts uniform in [-0.5/D, 0.5/D]"
with torch.no_grad():
    model_demo.in_embed.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    model_demo.out_embed.weight.copy_(torch.tensor([[0.5, 0.0], [0.0, 2.0], [-1.0, 1.0]]))
loss = model_demo(torch.tensor([0]), torch.tensor([1]), torch.tensor([[2, 2]]))
call = "loss for center 0, context 1, negatives [[2, 2]]"
check_shape(loss, (), f"{call}: one number")
# v = (1, 0); u_o = (0, 2): u_o.v = 0; noise u = (-1, 1): u.v = -1, twice
logsig = lambda x: -math.log1p(math.exp(-x))
expected = -(logsig(0.0) + 2 * logsig(1.0))
assert abs(loss.item() - (-(logsig(0.0) + 2 * logsig(-1.0)))) > 1e-6, (
    f"{call}: {loss.item():.4f} instead of {expected:.4f}; the noise word scores u.v = -1 and yours counts it "
    "as log sigma(-1): the noise term is log sigma(-u.v), a noise word with a low score should cost little")
assert abs(loss.item() - (-(logsig(0.0) + logsig(1.0)))) > 1e-6, (
    f"{call}: {loss.item():.4f} instead of {expected:.4f}, which is what the 2 noise terms give averaged: "
    "the loss sums them over the K negatives")
assert abs(loss.item() - expected) < 1e-6, (f"{call}: expected -log sigma(0) - 2 log sigma(1) = {expected:.6f} "
                                            f"(in_embed and out_embed set by hand), got {loss.item():.6f}")
twice = model_demo(torch.tensor([0, 0]), torch.tensor([1, 1]), torch.tensor([[2, 2], [2, 2]]))
assert abs(twice.item() - expected) < 1e-6, (
    f"the same example twice in a batch gives {twice.item():.4f}, once {expected:.4f}: the loss is averaged "
    "over the batch" + (", not summed" if abs(twice.item() - 2 * expected) < 1e-6 else ""))
loss.backward()
gradient = model_demo.in_embed.weight.grad
rows = (gradient.to_dense() if gradient.is_sparse else gradient).abs().sum(1).nonzero().flatten().tolist()
assert rows == [0], (f"{call}: the gradient reaches in_embed rows {rows}; only the center (row 0) is looked up in "
                     "in_embed, the context and the noise words come from out_embed")
model_demo.zero_grad()
big_model = SkipGramNS(2, 1)
with torch.no_grad():
    big_model.in_embed.weight.fill_(1000.0)
    big_model.out_embed.weight.copy_(torch.tensor([[-1.0], [1.0]]))
big = big_model(torch.tensor([0]), torch.tensor([0]), torch.tensor([[1]]))
assert torch.isfinite(big), (f"scores of -1000 for the context and +1000 for a noise word give a loss of {big.item()}: "
                             "sigma(-1000) rounds to 0 and its log is -inf; the prompt's F.logsigmoid stays finite")
### BEGIN HIDDEN TESTS
# the mean over the batch: two different examples average, duplicates change nothing
loss2 = model_demo(torch.tensor([0, 2]), torch.tensor([1, 0]), torch.tensor([[2, 2], [1, 1]]))
v2 = (1.0, 1.0)
second = -(logsig(0.5 * v2[0]) + 2 * logsig(-(2.0 * v2[1])))
assert abs(loss2.item() - (expected + second) / 2) < 1e-6, "the loss must average over the batch"
loss_dup = model_demo(torch.tensor([0, 0]), torch.tensor([1, 1]), torch.tensor([[2, 2], [2, 2]]))
assert abs(loss_dup.item() - expected) < 1e-6, "duplicated examples must give the same mean loss"
# three negatives: summed, not averaged
loss3 = model_demo(torch.tensor([0]), torch.tensor([1]), torch.tensor([[2, 2, 2]]))
assert abs(loss3.item() - (-(logsig(0.0) + 3 * logsig(1.0)))) < 1e-6, "negatives must be summed"
assert model_demo.in_embed.sparse and model_demo.out_embed.sparse, "use sparse=True embeddings"
# no overflow for large scores: v = (1000, 0), u_o = (-1, 1) scores -1000, the noise u = (0.5, 0) scores 500 (twice)
with torch.no_grad():
    model_demo.in_embed.weight.mul_(1000)
big = model_demo(torch.tensor([0]), torch.tensor([2]), torch.tensor([[0, 0]]))
assert torch.isfinite(big) and abs(big.item() - 2000.0) < 1e-2, \
    f"expected -logsig(-1000) - 2 logsig(-500) = 2000 (use F.logsigmoid), got {big.item()}"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "exercise_5_nearest_neighbours", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 7 · Exercise 5: nearest neighbours and analogies (3 points)
#
# With unit-length vectors, cosine similarity is a dot product. Write
#
# * `most_similar(vectors, query, k, exclude=())`: ids of the `k` rows of `vectors` `(V, D)`
#   with the highest cosine similarity to `query` `(D,)`, best first, skipping ids in `exclude`;
# * `three_cos_add(vectors, a, b, c)`: for id tensors `a, b, c` `(Q,)` answer "a is to b as c
#   is to ?" with $\arg\max_x \cos(x, \hat b - \hat a + \hat c)$ over unit vectors, **excluding
#   a, b and c themselves** (without that the answer is usually b or c); returns `(Q,)`.
#
# <details><summary>Hint 1</summary>
#
# Cosine similarity is the dot product of unit vectors: normalise the rows and the query, and one matrix-vector product scores every word.
#
# </details>
#
# <details><summary>Hint 2</summary>
#
# Exclude before you pick the top `k`: give the excluded ids a score that nothing can fall below, and `topk` takes the `k` best among the others.
#
# </details>
#
# <details><summary>Hint 3</summary>
#
# For 3CosAdd, build the `(Q, D)` targets from the unit vectors of a, b and c, score them against every unit vector to get `(Q, V)`, and in each row push that question's own a, b and c out of reach before the `argmax`.
#
# </details>

# %% nbgrader={"grade": false, "grade_id": "similarity", "locked": false, "schema_version": 3, "solution": true} slideshow={"slide_type": "-"}
def most_similar(vectors: torch.Tensor, query: torch.Tensor, k: int = 10, exclude: tuple[int, ...] = ()) -> list[int]:
    """Ids of the k rows most cosine-similar to query, best first."""
    ### BEGIN SOLUTION
    scores = F.normalize(vectors, dim=-1) @ F.normalize(query, dim=-1)   # (V,)
    if exclude:
        scores[list(exclude)] = -float("inf")
    return scores.topk(k).indices.tolist()
    ### END SOLUTION


def three_cos_add(vectors: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """3CosAdd answers (Q,) to a:b :: c:?, never returning a, b or c."""
    ### BEGIN SOLUTION
    unit = F.normalize(vectors, dim=-1)                                  # (V, D)
    target = unit[b] - unit[a] + unit[c]                                 # (Q, D)
    scores = F.normalize(target, dim=-1) @ unit.T                        # (Q, V)
    for ids in (a, b, c):
        scores.scatter_(1, ids.unsqueeze(1), -float("inf"))
    return scores.argmax(dim=1)
    ### END SOLUTION


# %% slideshow={"slide_type": "fragment"}
# hand-made vectors; dimensions: person, royal, female, fruit
toy_words = ["man", "woman", "king", "queen", "prince", "apple"]
toy_vectors = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0],
                            [1.0, 1.0, 1.0, 0.0], [0.8, 1.0, 0.0, 0.1], [0.0, 0.0, 0.0, 1.0]])
king = toy_words.index("king")
nearest = most_similar(toy_vectors, toy_vectors[king], k=3, exclude=(king,))
print("closest to king:", [toy_words[i] for i in nearest])
toy_answer = three_cos_add(toy_vectors, torch.tensor([0]), torch.tensor([2]), torch.tensor([1]))
print("man : king :: woman :", toy_words[toy_answer.item()])

# %% nbgrader={"grade": true, "grade_id": "test_similarity", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""most_similar and three_cos_add on hand-made vectors: cosine, best first, each question's own words excluded."""
vecs = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0], [0.7, 0.7]])
# cosines with the query [2, 0]: 1, 0.99, 0, -1, 0.71
got = most_similar(vecs, torch.tensor([2.0, 0.0]), k=2)
call = "most_similar(vecs, tensor([2., 0.]), k=2)"
assert len(got) == 2, f"{call} returned {len(got)} ids, {got}: k=2 asks for 2"
assert got != [3, 2], f"{call} = {got}: the least similar rows (cosines -1 and 0); best first is the highest cosine first"
assert got == [0, 1], f"{call}: expected [0, 1] (cosines 1 and 0.99), got {got}"
got = most_similar(torch.tensor([[3.0, 0.0], [0.6, 0.8]]), torch.tensor([1.0, 0.0]), k=2)
assert got == [0, 1], (
    f"most_similar(tensor([[3., 0.], [0.6, 0.8]]), tensor([1., 0.]), k=2) = {got}, expected [0, 1]: row 0 points "
    "exactly along the query (cosine 1), row 1 does not (cosine 0.6) but lies nearer to it: is your score a "
    "distance? Cosine similarity compares directions only")
got = most_similar(torch.tensor([[1.0, 0.0], [5.0, 1.0], [0.0, 1.0]]), torch.tensor([5.0, 0.0]), k=2)
assert got == [0, 1], (
    f"most_similar(tensor([[1., 0.], [5., 1.], [0., 1.]]), tensor([5., 0.]), k=2) = {got}, expected [0, 1]: "
    "row 0 points exactly along the query (cosine 1), row 1 is longer but at an angle (cosine 0.98): "
    "do the lengths of the rows change your scores?")
got = most_similar(vecs, torch.tensor([1.0, 0.0]), k=2, exclude=(0,))
call = "most_similar(vecs, tensor([1., 0.]), k=2, exclude=(0,))"
assert len(got) == 2, f"{call} returned {got}, {len(got)} id for k=2: the k best among the ids not excluded"
assert 0 not in got, f"{call} = {got} returns the excluded id 0"
assert got == [1, 4], f"{call}: expected [1, 4] (cosines 0.99 and 0.71), got {got}"
got = most_similar(vecs, torch.tensor([1.0, 0.0]), k=4, exclude=(1,))
call = "most_similar(vecs, tensor([1., 0.]), k=4, exclude=(1,))"
assert 1 not in got, (f"{call} = {got} returns the excluded id 1: an excluded id ranks below every other id, "
                      "even one with a negative cosine (row 3 has -1)")
assert got == [0, 4, 2, 3], f"{call}: expected the 4 ids left after excluding id 1, best first, [0, 4, 2, 3]; got {got}"


def answer_of(vectors: torch.Tensor, a: int, b: int, c: int) -> int:
    """three_cos_add for one question, as a plain id."""
    answer = three_cos_add(vectors, torch.tensor([a]), torch.tensor([b]), torch.tensor([c]))
    check_shape(answer, (1,), f"three_cos_add(vectors, tensor([{a}]), tensor([{b}]), tensor([{c}])): (Q,) with Q = 1")
    return answer.item()


toy = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.2, 1.0, 1.0], [0.0, 1.0, 0.0]])
# ids: 0 king, 1 man, 2 woman, 3 queen, 4 royal.  man:king :: woman:?  king - man + woman is near queen = e2 + e3
call = "three_cos_add(toy, a=[1] (man), b=[0] (king), c=[2] (woman))"
got = answer_of(toy, 1, 0, 2)
for role, word in (("a", 1), ("b", 0), ("c", 2)):
    assert got != word, f"{call} = [{got}], that question's own {role}: a, b and c themselves are never the answer"
assert got == 3, f"{call}: expected [3] (queen), got [{got}]"
# a, b and c all lie nearer the target b - a + c than the only other word, 3
close = torch.tensor([[1.0, 1.1], [1.1, 1.0], [1.0, 1.0], [1.0, -1.0]])
call = "three_cos_add(close, a=[0], b=[1], c=[2])"
got = answer_of(close, 0, 1, 2)
for role, word in (("a", 0), ("b", 1), ("c", 2)):
    assert got != word, (f"{call} = [{got}], that question's own {role}: a, b and c all lie nearer the target than "
                         "word 3, and each of the three is excluded")
assert got == 3, f"{call}: expected [3], the only word that is not a, b or c; got [{got}]"
scaled = toy.clone()
scaled[4] *= 50
got = answer_of(scaled, 1, 0, 2)
assert got == 3, (f"toy with row 4 (royal) 50 times longer: three_cos_add answers [{got}] instead of [3]: a candidate's "
                  "length changes your scores; cosine similarity compares directions only")
long_b = toy.clone()
long_b[0] *= 20
got = answer_of(long_b, 1, 0, 2)
assert got == 3, (f"toy with row 0 (king, the question's b) 20 times longer: three_cos_add answers [{got}] instead of "
                  "[3]: the length of b changes your answer; the prompt's target, unit(b) - unit(a) + unit(c), "
                  "is made of unit vectors")
with_distractor = torch.cat([toy, torch.tensor([[1.0, -1.0, 1.0]])])
got = answer_of(with_distractor, 1, 0, 2)
assert got == 3, (f"toy with a row 5 = [1, -1, 1], close to unit(man) - unit(king) + unit(woman) (cosine 0.92) "
                  f"and at a right angle to unit(king) - unit(man) + unit(woman): three_cos_add answers [{got}] "
                  "instead of [3] (queen): is your offset the wrong way round? a is to b as c is to ?")
generator = torch.Generator().manual_seed(0)
random_vectors = torch.randn(12, 3, generator=generator)
qa, qb, qc = torch.randint(0, 12, (3, 60), generator=generator)
together = three_cos_add(random_vectors, qa, qb, qc)
check_shape(together, (60,), "three_cos_add(vectors, a, b, c) for 60 questions: (Q,)")
alone = torch.tensor([answer_of(random_vectors, qa[i].item(), qb[i].item(), qc[i].item()) for i in range(60)])
differ = (together != alone).nonzero().flatten().tolist()
assert not differ, (
    f"{len(differ)} of 60 questions asked together get another answer than asked alone; question {differ[0]} "
    f"(a={qa[differ[0]].item()}, b={qb[differ[0]].item()}, c={qc[differ[0]].item()}) gets "
    f"{together[differ[0]].item()} in the batch, {alone[differ[0]].item()} alone: "
    "each question excludes only its own a, b and c")
### BEGIN HIDDEN TESTS
# without exclusion the best match would be b itself
same = torch.tensor([[1.0, 0.0], [0.99, 0.05], [0.0, 1.0], [0.5, 0.5]])
got = three_cos_add(same, torch.tensor([2]), torch.tensor([0]), torch.tensor([2]))
assert got.item() not in (0, 2), f"a, b and c must be excluded, got {got.item()}"
batch = three_cos_add(toy, torch.tensor([1, 1]), torch.tensor([0, 0]), torch.tensor([2, 2]))
assert batch.tolist() == [3, 3], f"batched questions: {batch.tolist()}"
assert len(most_similar(vecs, torch.tensor([0.0, 1.0]), k=3)) == 3
scaled = toy.clone()
scaled[4] *= 50
assert three_cos_add(scaled, torch.tensor([1]), torch.tensor([0]), torch.tensor([2])).item() == 3, \
    "candidates must be normalised: a long wrong vector must not win by its length"
long_b = toy.clone()
long_b[0] *= 20
got = three_cos_add(long_b, torch.tensor([1]), torch.tensor([0]), torch.tensor([2])).item()
assert got == 3, f"a, b and c are normalised first: a longer 'king' must not change the answer (expected 3, got {got})"
# a distractor that answers a - b + c instead of b - a + c
with_distractor = torch.cat([toy, torch.tensor([[1.0, -1.0, 1.0]])])
got = three_cos_add(with_distractor, torch.tensor([1]), torch.tensor([0]), torch.tensor([2])).item()
assert got == 3, f"the target is b - a + c: expected 3 (queen), got {got}"
# a, b and c all lie closer to the target than the only other word: each must be excluded
close = torch.tensor([[1.0, 1.1], [1.1, 1.0], [1.0, 1.0], [1.0, -1.0]])
got = three_cos_add(close, torch.tensor([0]), torch.tensor([1]), torch.tensor([2])).item()
assert got == 3, f"a, b and c must all be excluded: expected 3, got {got}"
# cosine, not dot product or distance: a long vector 5 x further along the query is not the most similar
spread = torch.tensor([[1.0, 0.0], [5.0, 1.0], [0.0, 1.0]])
got = most_similar(spread, torch.tensor([5.0, 0.0]), k=2)
assert got == [0, 1], f"cosine similarity: expected [0, 1] (cosines 1 and 0.98), got {got}"
got = most_similar(vecs, torch.tensor([1.0, 0.0]), k=4, exclude=(1,))
assert got == [0, 4, 2, 3], f"k = 4 of the 4 words left after excluding id 1: expected [0, 4, 2, 3], got {got}"
# questions are independent: a batch answers each question as it would be answered alone, even when
# one question's words are another's best answer (each question excludes only its own a, b and c)
generator = torch.Generator().manual_seed(0)
random_vectors = torch.randn(12, 3, generator=generator)
qa, qb, qc = torch.randint(0, 12, (3, 60), generator=generator)
together = three_cos_add(random_vectors, qa, qb, qc)
alone = torch.stack([three_cos_add(random_vectors, qa[i:i + 1], qb[i:i + 1], qc[i:i + 1])[0] for i in range(60)])
assert torch.equal(together, alone), \
    f"question i of a batch must get the answer it gets alone: {(together != alone).sum().item()} of 60 differ"
assert not ((together == qa) | (together == qb) | (together == qc)).any(), "an answer is never its own question's a, b or c"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "training", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 8 · Training
#
# Each epoch re-draws the subsample and the windows, shuffles the pairs and walks through them
# in batches of 1,024 with 5 negatives each. `SparseAdam` updates only the rows a batch touches.
# The same hyper-parameters go to gensim below.
#
# One difference from gensim: the pairs are built from `corpus_ids`, every sentence joined end
# to end, so a window near the end of a sentence (here a paragraph) reaches into the next one.
# gensim's windows stop at the sentence boundary. The cell after training measures how many
# pairs that concerns.

# %% slideshow={"slide_type": "fragment"}
DIM, WINDOW, NEGATIVES, SAMPLE, EPOCHS, BATCH = 100, 5, 5, 1e-3, 5, 1024


class PairBatches:
    """Iterate over shuffled (center, context) batches; every pass re-draws subsample and windows."""

    def __init__(self, ids: torch.Tensor, seed: int = 0) -> None:
        self.ids, self.keep = ids, keep_probabilities(word_counts, SAMPLE).float()
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self):
        kept = self.ids[torch.rand(len(self.ids), generator=self.generator) < self.keep[self.ids]]
        pairs = skipgram_pairs(kept, WINDOW, self.generator)
        pairs = pairs[torch.randperm(len(pairs), generator=self.generator)]
        return iter(pairs.split(BATCH))


seed_everything(0)
batches = PairBatches(corpus_ids)
steps_per_epoch = sum(1 for _ in batches)
negative_generator = torch.Generator().manual_seed(0)
noise = noise_distribution(word_counts)
model = SkipGramNS(len(vocab), DIM).to(device)


def loss_fn(model: SkipGramNS, batch: torch.Tensor) -> torch.Tensor:
    negatives = sample_negatives(noise, (len(batch), NEGATIVES), negative_generator).to(device)
    return model(batch[:, 0], batch[:, 1], negatives)


optimizer = torch.optim.SparseAdam(model.parameters(), lr=1e-3)
history = fit(model, loss_fn, batches, optimizer, steps=EPOCHS * steps_per_epoch, device=device,
              clip_grad_norm=None, description="skip-gram")
ours_seconds = history.seconds
print(f"{EPOCHS} epochs ({EPOCHS * steps_per_epoch:,} steps) in {ours_seconds:.0f} s")
plot_curves({"training loss": history.losses}, smooth=50)
plt.show()

# %% slideshow={"slide_type": "fragment"}
sentence_of = torch.repeat_interleave(torch.tensor([sum(w in word_to_id for w in s) for s in sentences]))  # (n_tokens,)
boundary_generator = torch.Generator().manual_seed(1)
kept_positions = torch.arange(len(corpus_ids))[torch.rand(len(corpus_ids), generator=boundary_generator)
                                               < batches.keep[corpus_ids]]
position_pairs = skipgram_pairs(kept_positions, WINDOW, boundary_generator)  # pairs of positions, not ids
crossing = (sentence_of[position_pairs[:, 0]] != sentence_of[position_pairs[:, 1]]).double().mean().item()
print(f"{crossing:.1%} of one pass's pairs join words of two different sentences (gensim builds none of those)")


# %% [markdown] nbgrader={"grade": false, "grade_id": "evaluation_gensim_same_corpus", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 9 · Evaluation, and gensim on the same corpus
#
# **WordSim-353**: 353 word pairs scored for similarity by people; we report Spearman's
# $\rho$ between those scores and cosine similarities, over the pairs whose words are both
# in our vocabulary. **Analogies**: Google's questions ("athens:greece :: baghdad:?") whose
# four words are in the vocabulary, answered with your `three_cos_add`.
#
# gensim gets the same corpus, vocabulary threshold, vector size, window, negatives,
# subsampling threshold and number of epochs. Its optimiser is the C code's: plain SGD with a
# learning rate that decays linearly from 0.025; yours is `SparseAdam`. On a corpus this small
# (under half a million words) both scores are low and noisy: WordSim-353 wants more text.

# %% nbgrader={"grade": false, "grade_id": "evaluation", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
def wordsim_spearman(vectors: torch.Tensor) -> tuple[float, int]:
    """Spearman's rho on the in-vocabulary WordSim-353 pairs, and how many pairs that is."""
    rows = [(word_to_id[a], word_to_id[b], s) for a, b, s in wordsim353() if a in word_to_id and b in word_to_id]
    unit = F.normalize(vectors.float().cpu(), dim=-1)
    left, right = torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])
    return spearmanr((unit[left] * unit[right]).sum(-1).numpy(), [r[2] for r in rows]).statistic, len(rows)


def analogy_accuracy(vectors: torch.Tensor) -> tuple[float, int]:
    """3CosAdd accuracy on the in-vocabulary Google analogies, and how many questions that is."""
    questions = [q for section in analogy_questions().values() for q in section if all(w in word_to_id for w in q)]
    ids = torch.tensor([[word_to_id[w] for w in q] for q in questions])
    vectors = vectors.float().cpu()
    predicted = torch.cat([three_cos_add(vectors, *chunk[:, :3].T) for chunk in ids.split(2048)])
    return (predicted == ids[:, 3]).double().mean().item(), len(questions)


ours = model.in_embed.weight.detach().cpu()
ours_ws, n_pairs = wordsim_spearman(ours)
ours_analogy, n_questions = analogy_accuracy(ours)
print(f"WordSim-353 pairs in vocabulary: {n_pairs}; analogy questions: {n_questions}")

# %% slideshow={"slide_type": "fragment"}
from gensim.models import Word2Vec  # noqa: E402  (imported here: it takes a few seconds)

start = time.perf_counter()
reference = Word2Vec(sentences, vector_size=DIM, window=WINDOW, negative=NEGATIVES, sample=SAMPLE,
                     min_count=MIN_COUNT, sg=1, epochs=EPOCHS, workers=2, seed=0)
gensim_seconds = time.perf_counter() - start
theirs = torch.tensor(reference.wv.vectors)[[reference.wv.key_to_index[w] for w in vocab]]
gensim_ws, _ = wordsim_spearman(theirs)
gensim_analogy, _ = analogy_accuracy(theirs)
print(f"{'':>10} {'WS-353 rho':>11} {'analogies':>10} {'seconds':>8}")
print(f"{'yours':>10} {ours_ws:>11.3f} {ours_analogy:>10.1%} {ours_seconds:>8.1f}")
print(f"{'gensim':>10} {gensim_ws:>11.3f} {gensim_analogy:>10.1%} {gensim_seconds:>8.1f}")
fig, axes = plt.subplots(1, 3, figsize=(11, 3))
for ax, (title, values) in zip(axes, [("WordSim-353 Spearman", (ours_ws, gensim_ws)),
                                      ("analogy accuracy", (ours_analogy, gensim_analogy)),
                                      ("training seconds", (ours_seconds, gensim_seconds))]):
    ax.bar(["yours", "gensim"], values, color=["tab:blue", "tab:gray"])
    ax.set_title(title)
fig.tight_layout()
plt.show()

# %% nbgrader={"grade": true, "grade_id": "test_trained_vectors", "locked": true, "points": 3.0, "schema_version": 3, "solution": false} slideshow={"slide_type": "-"}
"""Your trained vectors reach at least 0.9 x gensim's WordSim-353 Spearman on the same corpus."""
assert ours_ws >= 0.9 * gensim_ws, (f"your vectors' WordSim-353 Spearman rho is {ours_ws:.3f}; the test asks for at least "
                                    f"0.9 x gensim's {gensim_ws:.3f} = {0.9 * gensim_ws:.3f}")
print(f"yours {ours_ws:.3f} vs gensim {gensim_ws:.3f}")
### BEGIN HIDDEN TESTS
fresh_ws, _ = wordsim_spearman(model.in_embed.weight.detach().cpu())
assert abs(fresh_ws - ours_ws) < 1e-9, "the score must come from the trained model"
assert fresh_ws > 0.2, f"expected a clearly positive correlation, got {fresh_ws:.3f}"
neighbours = [vocab[i] for i in most_similar(ours, ours[word_to_id["france"]], k=20, exclude=(word_to_id["france"],))]
assert any(w in neighbours for w in ("french", "paris", "germany", "italy", "spain", "belgium", "europe")), \
    f"the neighbours of 'france' look random: {neighbours[:10]}"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "what_vectors_know", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## 10 · What the vectors know
#
# Nearest neighbours of a few words, and a 2-D projection (PCA) of countries and their
# capitals with an arrow from each country to its capital. With vectors from a large corpus
# the arrows are nearly parallel (that is why 3CosAdd works); from half a million words they
# are only loosely so, which is the low analogy score above, drawn.

# %% slideshow={"slide_type": "fragment"}
for word in ["war", "music", "king", "france", "water"]:
    if word in word_to_id:
        ids = most_similar(ours, ours[word_to_id[word]], k=6, exclude=(word_to_id[word],))
        print(f"{word:>7}: {', '.join(vocab[i] for i in ids)}")
pairs_to_show = [("france", "paris"), ("germany", "berlin"), ("italy", "rome"), ("spain", "madrid"),
                 ("russia", "moscow"), ("japan", "tokyo"), ("china", "beijing"), ("england", "london")]
shown = [(country, capital) for country, capital in pairs_to_show if country in word_to_id and capital in word_to_id]
words = [w for pair in shown for w in pair]
points = project_2d(ours[[word_to_id[w] for w in words]])
ax = scatter_embeddings(points, words, title="countries -> capitals (your vectors, PCA)", groups=[0, 1] * len(shown))
for i in range(len(shown)):
    ax.annotate("", xy=points[2 * i + 1], xytext=points[2 * i], arrowprops={"arrowstyle": "->", "alpha": 0.4})
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "summary", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "slide"}
# ## Summary
#
# * Skip-gram learns vectors by **predicting context words**; negative sampling turns the
#   $V$-way softmax into $K+1$ binary decisions.
# * The details matter and are easy to get wrong: the **C code's** subsampling formula (not the
#   paper's), the **dynamic window**, the **unigram$^{0.75}$** noise, separate input and output tables.
# * Evaluated on **WordSim-353** and **3CosAdd analogies**, your model reaches at least 0.9 x the
#   WordSim-353 correlation of gensim's C implementation on the same corpus (the graded test; the
#   table says whether it beats it). gensim trains in a fraction of the time (the table's seconds),
#   which is why it exists. Both score low here: half a million words is a small corpus.
# * Static vectors give every word one vector, whatever its sense. Notebook 02 (ELMo) fixes that.

# %% [markdown] nbgrader={"grade": false, "grade_id": "further_reading", "locked": true, "schema_version": 3, "solution": false} slideshow={"slide_type": "subslide"}
# ## Further reading
#
# * Mikolov et al. (2013). *Efficient Estimation of Word Representations in Vector Space.* arXiv:1301.3781
# * Mikolov et al. (2013). *Distributed Representations of Words and Phrases and their Compositionality.* arXiv:1310.4546
# * Goldberg, Levy (2014). *word2vec Explained.* arXiv:1402.3722
# * Levy, Goldberg, Dagan (2015). *Improving Distributional Similarity with Lessons Learned from Word Embeddings.* TACL.
#
# <!-- reading-list -->
# **From the course reading list** (`readings/reading-list.md`, mostly Chinese-language articles; links as the list gives them), by the section they go with:
#
# * with *1 · Intuition: words that keep the same company*
#   * [NLP的游戏规则从此改写？从word2vec, ELMo到BERT](https://zhuanlan.zhihu.com/p/47488095): from word2vec and ELMo to BERT: the rules of NLP rewritten (zhihu)
#   * [从Word Embedding到Bert模型—自然语言处理中的预训练技术发展史](https://zhuanlan.zhihu.com/p/49271699): a history of pre-training in NLP, from word embeddings to BERT (zhihu)
# * with *10 · What the vectors know*
#   * [Bert比之Word2Vec,有哪些进步呢？](https://www.zhihu.com/question/352468546/answer/870846960): what BERT improves over word2vec (zhihu)
# <!-- /reading-list -->
