"""The word view of the King James Bible and the paper profile's corpora (enwik8, WikiText-103),
each read from small files fabricated in the real layout."""
import pytest

from replicate import data
from replicate.data import text
from test_language_model import VERSES, kjv_dir  # noqa: F401  (the fixture)


def test_kjv_word_view_splits_punctuation_and_builds_the_vocabulary_on_train(kjv_dir):  # noqa: F811
    ds = data.load("kjv_word")
    assert ds.unit == "word" and ds.vocab[0] == text.UNK
    first = [ds.vocab[i] for i in ds.train[:14].tolist()]
    assert first == ["In", "the", "beginning", "was", "the", "word", ",", "and", "the", "word", "was", "good", ".", "<eos>"]
    train_words = set(ds.train.tolist())
    assert 0 not in train_words                                  # every training word is in the vocabulary
    assert len(ds.vocab) == len(train_words) + 1


def test_word_stream_maps_words_unseen_in_train_to_unk():
    ds = text.word_stream("t", ["a", "b", "a", text.EOS], ["a", "zebra"], ["b", "c"], "test")
    assert ds.vocab == (text.UNK, "a", text.EOS, "b")           # by frequency, then alphabetically
    assert ds.dev.tolist() == [1, 0] and ds.test.tolist() == [3, 0]


def _enwik8(tmp_path, body: bytes):
    d = tmp_path / "data" / "enwik8"
    d.mkdir(parents=True)
    (d / "enwik8").write_bytes(body)
    return d


def test_enwik8_is_read_as_bytes_with_fixed_splits(tmp_path):
    body = text.ENWIK8_HEAD + bytes(range(32, 127)) * 20 + b"\xff\x00"
    d = _enwik8(tmp_path, body)
    n = len(body)
    ds = text.load_enwik8(d, expected_bytes=n, splits=(n - 200, 100, 100))
    assert (len(ds.train), len(ds.dev), len(ds.test)) == (n - 200, 100, 100)
    assert ds.unit == "char" and ds.vocab[0] == text.UNK
    assert ds.test[-2:].tolist() == [0, 0]                        # bytes 0xff and 0x00 never occur in train: unknown
    decoded = bytes(int(ds.vocab[i], 16) for i in ds.train[:10].tolist())
    assert decoded == body[:10]


def test_enwik8_errors_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLICATE_DATA", str(tmp_path / "none"))
    with pytest.raises(data.DataNotFound, match=r"\$REPLICATE_DATA/enwik8"):
        text.load_enwik8()
    d = _enwik8(tmp_path, b"<mediawiki" + b"x" * 90)
    with pytest.raises(data.DataCorrupt, match="100,000,000"):
        text.load_enwik8(d)
    assert text.ENWIK8_SPLITS == (90_000_000, 5_000_000, 5_000_000) and sum(text.ENWIK8_SPLITS) == text.ENWIK8_BYTES


def test_wikitext103_reads_the_three_token_files(tmp_path, monkeypatch):
    d = tmp_path / "data" / "wikitext-103"
    d.mkdir(parents=True)
    (d / "wiki.train.tokens").write_text(" = Title = \n\n the cat sat on the <unk> mat . \n")
    (d / "wiki.valid.tokens").write_text(" the dog sat . \n")
    (d / "wiki.test.tokens").write_text(" the cat . \n")
    monkeypatch.setenv("REPLICATE_DATA", str(tmp_path / "data"))
    data._clear_cache()
    ds = data.load("wikitext103")
    words = [ds.vocab[i] for i in ds.train.tolist()]
    assert words == ["=", "Title", "=", "<eos>", "the", "cat", "sat", "on", "the", "<unk>", "mat", ".", "<eos>"]
    assert ds.vocab.index("<unk>") == 0 and ds.unit == "word"
    assert [ds.vocab[i] for i in ds.dev.tolist()] == ["the", "<unk>", "sat", ".", "<eos>"]   # "dog" unseen in train
    (d / "wiki.test.tokens").unlink()
    data._clear_cache()
    with pytest.raises(data.DataNotFound, match="wiki.test.tokens"):
        data.load("wikitext103")
