import datetime
import re

import pytest
import torch

from course_utils import data


def test_gensim_data_dir_and_available_datasets():
    assert (data.gensim_data_dir() / "wordsim353.tsv").is_file()
    found = data.available_datasets()
    assert set(found) == {"wikipedia", "lee_news", "analogies", "wordsim353", "simlex999", "polarity", "newsgroups"}
    assert all(found.values()), found


def test_cache_dir_honours_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "c"))
    assert data.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()


def test_wikipedia_articles_are_clean_prose_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    articles = data.wikipedia_articles()
    words = sum(len(a.split()) for a in articles)
    assert 90 <= len(articles) <= 110, len(articles)
    assert 400_000 < words < 550_000, words
    text = " ".join(articles[:20])
    assert "[[" not in text and "{{" not in text, "wiki markup left in the text"
    assert (tmp_path / "enwiki-sample.txt").is_file()
    assert data.wikipedia_articles() == articles  # read back from the cache


def test_lee_news():
    articles = data.lee_news()
    assert len(articles) == 300
    assert 50_000 < sum(len(a.split()) for a in articles) < 70_000


def test_analogy_questions():
    sections = data.analogy_questions()
    assert "capital-common-countries" in sections
    assert sections["capital-common-countries"][0] == ("athens", "greece", "baghdad", "iraq")
    assert sum(len(v) for v in sections.values()) > 19_000


@pytest.mark.parametrize("loader, size", [(data.wordsim353, 353), (data.simlex999, 999)])
def test_word_similarity_sets(loader, size):
    rows = loader()
    assert len(rows) == size
    first, second, score = rows[0]
    assert first.islower() and isinstance(score, float) and 0 <= score <= 10


def test_polarity():
    rows = data.polarity()
    assert len(rows) == 200
    assert {label for _, label in rows} == {0, 1}
    assert not any(text.startswith("__label__") for text, _ in rows)


def test_newsgroups():
    texts, labels, names = data.newsgroups()
    assert len(texts) == len(labels) == 200
    assert names == ["alt.atheism", "sci.space"]
    assert set(labels) == {0, 1}
    assert "Newsgroups:" in texts[0]


def test_make_dates_are_valid_unambiguous_and_seeded():
    pairs = data.make_dates(500, seed=3)
    assert pairs == data.make_dates(500, seed=3)
    assert pairs != data.make_dates(500, seed=4)
    for source, target in pairs:
        day = datetime.date.fromisoformat(target)
        assert 1950 <= day.year <= 2049
        assert str(day.year) in source
    sources = [s for s, _ in pairs]
    assert any(re.fullmatch(r"\d\d/\d\d/\d{4}", s) for s in sources)
    assert any(re.search(r"[a-z]", s) and re.search(r"[A-Z]", s) for s in sources)
    assert len({s for s in sources}) > 450


@pytest.mark.parametrize("number, words", [
    (0, "zero"), (7, "seven"), (15, "fifteen"), (40, "forty"), (42, "forty-two"), (100, "one hundred"),
    (101, "one hundred one"), (342_017, "three hundred forty-two thousand seventeen"),
    (1_000_000, "one million"), (12_345_678, "twelve million three hundred forty-five thousand six hundred seventy-eight"),
])
def test_number_to_words(number, words):
    assert data.number_to_words(number) == words


def test_number_to_words_range():
    with pytest.raises(ValueError):
        data.number_to_words(-1)


def test_make_numbers():
    pairs = data.make_numbers(300, seed=0)
    assert all(data.number_to_words(int(d)) == w for d, w in pairs)
    assert {len(d) for d, _ in pairs} == set(range(1, 7))


def test_simple_string_tasks():
    for source, target in data.make_copy(50, seed=1):
        assert source == target
    for source, target in data.make_reverse(50, seed=1, lengths=(3, 5)):
        assert target == source[::-1] and 3 <= len(source) <= 5
    for source, target in data.make_sort(50, seed=1):
        assert target == "".join(sorted(source))
    for source, target in data.make_addition(50, seed=1, digits=(1, 3)):
        a, b = source.split("+")
        assert int(a) + int(b) == int(target) and len(a) <= 3


def test_vocab_roundtrip_and_specials():
    vocab = data.Vocab.from_texts(["abca", "bd"], min_freq=1)
    assert vocab.itos[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert vocab.itos[4] in ("a", "b")  # most frequent first
    ids = vocab.encode("abz", bos=True, eos=True)
    assert ids[0] == vocab.bos_id and ids[-1] == vocab.eos_id and ids[3] == vocab.unk_id
    assert vocab.decode(ids + [vocab.pad_id, 5]) == ["a", "b", "<unk>"]
    assert len(data.Vocab.from_texts(["abca", "bd"], min_freq=2)) == 6
    assert "a" in vocab and "z" not in vocab


def test_pad_batch_and_collate_pairs():
    padded, lengths = data.pad_batch([[5, 6, 7], [8]], pad_id=0)
    assert padded.tolist() == [[5, 6, 7], [8, 0, 0]] and lengths.tolist() == [3, 1]
    src, src_len, tgt, tgt_len = data.collate_pairs([([1, 2], [3]), ([4], [5, 6, 7])])
    assert src.shape == (2, 2) and tgt.shape == (2, 3)
    assert src_len.tolist() == [2, 1] and tgt_len.tolist() == [1, 3]


def test_seq2seq_loader_batches():
    pairs = data.make_reverse(10, seed=0)
    vocab = data.Vocab.from_texts(s for s, _ in pairs)
    loader = data.seq2seq_loader(pairs, vocab, vocab, batch_size=4, shuffle=False)
    src, src_len, tgt, tgt_len = next(iter(loader))
    assert src.shape[0] == 4 and src.dtype == torch.long
    assert (tgt[:, 0] == vocab.bos_id).all()
    assert tgt_len.tolist() == [len(t) + 2 for _, t in pairs[:4]]
    assert "".join(vocab.decode(src[0].tolist())) == pairs[0][0]


def test_post_body_drops_headers_quotes_and_addresses():
    post = ("Newsgroups: sci.space\nFrom: someone@nasa.gov\nSubject: orbits\n\n"
            "In article <1@x.org> bob@x.org writes:\n> quoted text\nThe shuttle reached\n  orbit today.\n-- me@home.com")
    assert data.post_body(post) == "The shuttle reached orbit today."
    texts, labels, names = data.newsgroups()
    bodies = [data.post_body(t) for t in texts]
    assert not any(b.startswith(("Newsgroups:", "From:", "Path:")) for b in bodies)
    assert sum(len(b.split()) for b in bodies) > 20_000


def test_sentences_of_splits_at_sentence_ends_and_drops_short_pieces():
    article = 'Anarchism is a political philosophy. "It rejects" all rulers, says one. Yes!\nThe second paragraph has five words. e.g. this stays joined to it.'
    assert data.sentences_of(article) == [
        "Anarchism is a political philosophy.",
        '"It rejects" all rulers, says one.',
        "The second paragraph has five words. e.g. this stays joined to it.",
    ]
    assert data.sentences_of(article, min_words=1)[2] == "Yes!", "min_words=1 keeps the one-word sentence"
