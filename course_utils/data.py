"""Offline data: gensim's package corpora and evaluation sets, seeded synthetic tasks,
a vocabulary with special tokens, and padding collate functions.

Nothing here downloads: corpora come from the installed gensim package, synthetic tasks
are generated from a seed, and the cleaned Wikipedia text is cached once per user.
"""

from __future__ import annotations

import io
import os
import pickle
import random
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader

# --------------------------------------------------------------------------- files

WIKIPEDIA_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def gensim_data_dir() -> Path:
    """Return gensim's bundled ``test/test_data`` folder (raises if gensim is missing)."""
    try:
        import gensim
    except ImportError as error:  # pragma: no cover - gensim is a dependency
        raise RuntimeError("gensim is not installed: run `make lab` or `pip install -e .`") from error
    path = Path(gensim.__file__).parent / "test" / "test_data"
    if not path.is_dir():
        raise FileNotFoundError(f"gensim {gensim.__version__} ships no test data at {path}")
    return path


def cache_dir() -> Path:
    """Return (and create) the user cache folder; ``COURSE_CACHE`` overrides it."""
    root = os.environ.get("COURSE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pytorch-course"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------- corpora


def wikipedia_articles() -> list[str]:
    """Return ~107 English Wikipedia articles as clean prose (extracted once, then cached)."""
    cached = cache_dir() / "enwiki-sample.txt"
    if cached.exists():
        return [a for a in cached.read_text(encoding="utf-8").split("\n\n") if a]
    import bz2

    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    articles = []
    with bz2.open(gensim_data_dir() / WIKIPEDIA_FILE, "rb") as dump:
        for _title, text, _pageid in extract_pages(dump):
            if not text or text.lower().startswith("#redirect"):
                continue
            clean = filter_wiki(text)
            # one paragraph per line, no blank lines: articles are separated by one blank line
            paragraphs = [re.sub(r"\s+", " ", p).strip() for p in clean.split("\n")]
            paragraphs = [p for p in paragraphs if len(p.split()) >= 5]
            if paragraphs:
                articles.append("\n".join(paragraphs))
    tmp = cached.with_suffix(".tmp")
    tmp.write_text("\n\n".join(articles), encoding="utf-8")
    tmp.replace(cached)  # atomic: a parallel reader never sees half a file
    return articles


SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


def sentences_of(article: str, min_words: int = 4) -> list[str]:
    """Split an article into sentences (at . ! or ? before a capital, a quote or a bracket) of at least min_words words."""
    return [s for paragraph in article.split("\n") for s in SENTENCE_END.split(paragraph) if len(s.split()) >= min_words]


def lee_news() -> list[str]:
    """Return the 300 raw Lee news articles (about 60k words)."""
    text = (gensim_data_dir() / "lee_background.cor").read_text(encoding="utf-8", errors="replace")
    return [line.strip() for line in text.splitlines() if line.strip()]


def analogy_questions() -> dict[str, list[tuple[str, str, str, str]]]:
    """Return the Google analogy set as {section: [(a, b, c, d), ...]} (a:b :: c:d)."""
    sections: dict[str, list[tuple[str, str, str, str]]] = {}
    current = None
    for line in (gensim_data_dir() / "questions-words.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith(":"):
            current = line[1:].strip()
            sections[current] = []
        elif line.strip() and current is not None:
            a, b, c, d = line.lower().split()
            sections[current].append((a, b, c, d))
    return sections


def _word_pairs(filename: str) -> list[tuple[str, str, float]]:
    rows = []
    for line in (gensim_data_dir() / filename).read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        first, second, score = line.split("\t")[:3]
        rows.append((first.lower(), second.lower(), float(score)))
    return rows


def wordsim353() -> list[tuple[str, str, float]]:
    """Return WordSim-353 as (word, word, human similarity 0-10) rows."""
    return _word_pairs("wordsim353.tsv")


def simlex999() -> list[tuple[str, str, float]]:
    """Return SimLex-999 as (word, word, human similarity 0-10) rows."""
    return _word_pairs("simlex999.txt")


def polarity() -> list[tuple[str, int]]:
    """Return the 200 labelled movie-review sentences as (text, label), 1 = positive."""
    rows = []
    for line in (gensim_data_dir() / "pang_lee_polarity.cor").read_text(encoding="cp1252").splitlines():
        if not line.strip():
            continue
        label, text = line.split(" ", 1)
        rows.append((text.strip(), 1 if label == "__label__pos" else 0))
    return rows


class _BunchUnpickler(pickle.Unpickler):
    """Read sklearn's old ``Bunch`` pickle without sklearn, allowing only known classes."""

    allowed = {
        ("copy_reg", "_reconstructor"): ("copyreg", "_reconstructor"),
        ("__builtin__", "object"): ("builtins", "object"),
        ("__builtin__", "dict"): ("builtins", "dict"),
        ("numpy.core.multiarray", "_reconstruct"): ("numpy.core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"): ("numpy", "ndarray"),
        ("numpy", "dtype"): ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        if module.startswith("sklearn") and name == "Bunch":
            return dict
        if (module, name) in self.allowed:
            target_module, target_name = self.allowed[(module, name)]
            return super().find_class(target_module, target_name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from mini_newsgroup")


def newsgroups() -> tuple[list[str], list[int], list[str]]:
    """Return the two-class newsgroup posts: (texts, labels, label names)."""
    raw = zlib.decompress((gensim_data_dir() / "mini_newsgroup").read_bytes())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bunch = _BunchUnpickler(io.BytesIO(raw), encoding="latin1").load()
    texts = [str(t) for t in bunch["data"]]
    labels = [int(y) for y in bunch["target"]]
    names = [str(n) for n in bunch["target_names"]]
    return texts, labels, names


def post_body(post: str) -> str:
    """The body of a newsgroup post on one line: no headers (they name the group), quoted lines,
    attributions ("... writes:") or lines with e-mail addresses."""
    body = post.split("\n\n", 1)[1] if "\n\n" in post else post
    lines = [line for line in body.split("\n")
             if not line.lstrip().startswith((">", "|")) and not re.search(r"writes:|wrote:|^In article|@", line)]
    return " ".join(" ".join(lines).split())


def available_datasets() -> dict[str, bool]:
    """Return which bundled data files are present (for ``course doctor``)."""
    files = {
        "wikipedia": WIKIPEDIA_FILE,
        "lee_news": "lee_background.cor",
        "analogies": "questions-words.txt",
        "wordsim353": "wordsim353.tsv",
        "simlex999": "simlex999.txt",
        "polarity": "pang_lee_polarity.cor",
        "newsgroups": "mini_newsgroup",
    }
    try:
        root = gensim_data_dir()
    except (RuntimeError, FileNotFoundError):
        return {name: False for name in files}
    return {name: (root / f).exists() for name, f in files.items()}


# --------------------------------------------------------------------------- synthetic tasks

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

# Every format is unambiguous: numeric day-first and month-first use different separators.
_DATE_FORMATS: list[Callable[[int, int, int, int], str]] = [
    lambda y, m, d, w: f"{d} {MONTHS[m - 1]} {y}",
    lambda y, m, d, w: f"{d:02d} {MONTHS[m - 1]} {y}",
    lambda y, m, d, w: f"{MONTHS[m - 1]} {d}, {y}",
    lambda y, m, d, w: f"{MONTHS[m - 1][:3]} {d}, {y}",
    lambda y, m, d, w: f"{d} {MONTHS[m - 1][:3]} {y}",
    lambda y, m, d, w: f"{WEEKDAYS[w]}, {MONTHS[m - 1]} {d}, {y}",
    lambda y, m, d, w: f"{WEEKDAYS[w][:3]} {d} {MONTHS[m - 1][:3]} {y}",
    lambda y, m, d, w: f"{m:02d}/{d:02d}/{y}",
    lambda y, m, d, w: f"{m}/{d}/{y}",
    lambda y, m, d, w: f"{d:02d}.{m:02d}.{y}",
    lambda y, m, d, w: f"{d}.{m}.{y}",
    lambda y, m, d, w: f"{y}-{m:02d}-{d:02d}",
]


def make_dates(n: int, seed: int = 0, years: tuple[int, int] = (1950, 2049)) -> list[tuple[str, str]]:
    """Return n (human-written date, ISO date) pairs in a dozen unambiguous formats."""
    import datetime

    rng = random.Random(seed)
    start = datetime.date(years[0], 1, 1).toordinal()
    end = datetime.date(years[1], 12, 31).toordinal()
    pairs = []
    for _ in range(n):
        day = datetime.date.fromordinal(rng.randint(start, end))
        text = rng.choice(_DATE_FORMATS)(day.year, day.month, day.day, day.weekday())
        case = rng.random()
        text = text.lower() if case < 0.25 else text.upper() if case < 0.35 else text
        pairs.append((text, day.isoformat()))
    return pairs


_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_to_words(number: int) -> str:
    """Spell 0 <= number < 10**9 in English words ("three hundred forty-two")."""
    if not 0 <= number < 10**9:
        raise ValueError(f"expected 0 <= number < 1e9, got {number}")

    def below_thousand(n: int) -> list[str]:
        words = []
        if n >= 100:
            words += [_ONES[n // 100], "hundred"]
            n %= 100
        if n >= 20:
            words.append(_TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else ""))
        elif n or not words:
            words.append(_ONES[n])
        return words

    if number == 0:
        return "zero"
    words: list[str] = []
    for scale, name in ((10**6, "million"), (10**3, "thousand"), (1, "")):
        chunk = (number // scale) % 1000
        if chunk:
            words += below_thousand(chunk) + ([name] if name else [])
    return " ".join(words)


def make_numbers(n: int, seed: int = 0, max_value: int = 999_999) -> list[tuple[str, str]]:
    """Return n (digits, English words) pairs with log-uniformly spread magnitudes."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        digits = rng.randint(1, len(str(max_value)))
        value = min(rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1), max_value)
        pairs.append((str(value), number_to_words(value)))
    return pairs


def _random_strings(rng: random.Random, n: int, lengths: tuple[int, int], alphabet: str) -> list[str]:
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(*lengths))) for _ in range(n)]


def make_copy(n: int, seed: int = 0, lengths: tuple[int, int] = (1, 10), alphabet: str = "abcdefghij") -> list[tuple[str, str]]:
    """Return n (string, same string) pairs."""
    return [(s, s) for s in _random_strings(random.Random(seed), n, lengths, alphabet)]


def make_reverse(n: int, seed: int = 0, lengths: tuple[int, int] = (1, 10), alphabet: str = "abcdefghij") -> list[tuple[str, str]]:
    """Return n (string, reversed string) pairs."""
    return [(s, s[::-1]) for s in _random_strings(random.Random(seed), n, lengths, alphabet)]


def make_sort(n: int, seed: int = 0, lengths: tuple[int, int] = (1, 10), alphabet: str = "abcdefghij") -> list[tuple[str, str]]:
    """Return n (string, its characters sorted) pairs."""
    return [(s, "".join(sorted(s))) for s in _random_strings(random.Random(seed), n, lengths, alphabet)]


def make_addition(n: int, seed: int = 0, digits: tuple[int, int] = (1, 5)) -> list[tuple[str, str]]:
    """Return n ("a+b", "sum") pairs with operands of the given digit counts."""
    rng = random.Random(seed)

    def operand() -> int:
        k = rng.randint(*digits)
        return rng.randint(10 ** (k - 1) if k > 1 else 0, 10**k - 1)

    pairs = []
    for _ in range(n):
        a, b = operand(), operand()
        pairs.append((f"{a}+{b}", str(a + b)))
    return pairs


# --------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class Specials:
    """The special tokens every vocabulary starts with, in this order."""

    pad: str = "<pad>"
    bos: str = "<bos>"
    eos: str = "<eos>"
    unk: str = "<unk>"


class Vocab:
    """A token <-> id map whose first ids are <pad>=0, <bos>=1, <eos>=2, <unk>=3."""

    def __init__(self, tokens: Iterable[str], specials: Specials = Specials()) -> None:
        self.specials = specials
        self.itos: list[str] = [specials.pad, specials.bos, specials.eos, specials.unk]
        seen = set(self.itos)
        for token in tokens:
            if token not in seen:
                seen.add(token)
                self.itos.append(token)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = 0, 1, 2, 3

    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        tokenize: Callable[[str], Sequence[str]] = list,
        min_freq: int = 1,
        max_size: int | None = None,
    ) -> "Vocab":
        """Build a vocabulary of tokens seen at least ``min_freq`` times, most frequent first."""
        counts = Counter(t for text in texts for t in tokenize(text))
        ranked = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        return cls(ranked[:max_size] if max_size else ranked)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: Iterable[str], bos: bool = False, eos: bool = False) -> list[int]:
        """Map tokens to ids (unknown -> <unk>), optionally adding <bos> and <eos>."""
        ids = [self.stoi.get(t, self.unk_id) for t in tokens]
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: Iterable[int], stop_at_eos: bool = True) -> list[str]:
        """Map ids back to tokens, dropping <pad>/<bos> and stopping at <eos>."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id and stop_at_eos:
                break
            if i in (self.pad_id, self.bos_id):
                continue
            out.append(self.itos[i] if 0 <= i < len(self.itos) else self.specials.unk)
        return out


# --------------------------------------------------------------------------- batching


def pad_batch(sequences: Sequence[Sequence[int] | torch.Tensor], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad id sequences to (batch, max_len) and return them with their lengths (batch,)."""
    tensors = [torch.as_tensor(s, dtype=torch.long) for s in sequences]
    lengths = torch.tensor([len(t) for t in tensors], dtype=torch.long)
    return pad_sequence(tensors, batch_first=True, padding_value=pad_id), lengths


def collate_pairs(batch: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int = 0):
    """Collate (source ids, target ids) pairs into (src, src_lengths, tgt, tgt_lengths)."""
    src, src_lengths = pad_batch([s for s, _ in batch], pad_id)
    tgt, tgt_lengths = pad_batch([t for _, t in batch], pad_id)
    return src, src_lengths, tgt, tgt_lengths


def seq2seq_loader(
    pairs: Sequence[tuple[str, str]],
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    batch_size: int = 64,
    shuffle: bool = True,
    seed: int = 0,
    tokenize: Callable[[str], Sequence[str]] = list,
) -> DataLoader:
    """Encode string pairs (target gets <bos>/<eos>) and batch them with padding."""
    encoded = [
        (src_vocab.encode(tokenize(s)), tgt_vocab.encode(tokenize(t), bos=True, eos=True))
        for s, t in pairs
    ]
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        encoded,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        collate_fn=lambda b: collate_pairs(b, src_vocab.pad_id),
    )
