"""The language-modelling task: BPTT batches, carried and detached hidden state,
bits per character, and a character LM trained end to end through the CLI on a
fabricated King James-style dump."""
import hashlib
import json
import math

import pytest
import torch

from replicate import data, models, tasks
from replicate.__main__ import main
from replicate.config import ConfigError, RunConfig
from replicate.data import text
from replicate.store import Store

VERSES = ["In the beginning was the word, and the word was good.",
          "And the light shone upon the waters, and it was evening.",
          "Blessed are they that keep the way, for they shall see."]


def fake_dump(n_lines: int = 900) -> bytes:
    books = ["Ge", "Ex", "1Sa", "Joh", "Re"]
    return "".join(f"{books[i % 5]}{i // 30 + 1}:{i % 30 + 1} {VERSES[i % 3]}\n" for i in range(n_lines)).encode()


@pytest.fixture
def kjv_dir(tmp_path, monkeypatch):
    raw = fake_dump()
    (tmp_path / "data" / "kjv").mkdir(parents=True)
    (tmp_path / "data" / "kjv" / "kjv.txt").write_bytes(raw)
    monkeypatch.setenv("REPLICATE_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(text, "KJV_DUMP_MD5", hashlib.md5(raw).hexdigest())
    data._clear_cache()
    yield raw
    data._clear_cache()


def test_kjv_loader_strips_references_and_splits_like_enwik8(kjv_dir):
    ds = data.load("kjv_char")
    plain = text.strip_references(kjv_dir.decode())
    assert "Ge1:1" not in plain and plain.startswith(VERSES[0])
    n = len(plain)
    assert len(ds.test) == len(ds.dev) == int(0.05 * n) and len(ds.train) + 2 * len(ds.test) == n
    assert ds.vocab[0] == text.UNK and "".join(ds.vocab[i] for i in ds.train[:10].tolist()) == plain[:10]


def test_kjv_checksum_and_missing_data_errors(kjv_dir, monkeypatch, tmp_path):
    monkeypatch.setattr(text, "KJV_DUMP_MD5", "0" * 32)
    with pytest.raises(data.DataCorrupt, match="apt-get install bible-kjv bible-kjv-text"):
        data.load("kjv_char")
    monkeypatch.setenv("REPLICATE_DATA", str(tmp_path / "empty"))
    monkeypatch.setattr(text, "KJV_COMMAND", ("no-such-bible-program",))
    data._clear_cache()
    with pytest.raises(data.DataNotFound, match="apt-get install bible-kjv bible-kjv-text"):
        data.load("kjv_char")


def test_bptt_batches_cover_the_stream_and_shift_targets():
    task = tasks.LanguageModel(bptt=5)
    stream = torch.arange(43)
    prepared = task.prepare(type("D", (), {"x_train": stream})(), "cpu")
    got = list(task.batches(prepared, 4, None))
    assert task.steps_per_epoch(prepared, 4) == len(got) == 2   # rows of 10 tokens: windows 5 and 4
    x, y, count = got[0]
    assert x.shape == (4, 5) and torch.equal(y, x + 1) and count == 20
    assert torch.equal(got[1][0][0], torch.tensor([5, 6, 7, 8]))


def test_hidden_state_is_carried_and_detached():
    torch.manual_seed(0)
    model = models.build("char-lstm", (), 7)
    task = tasks.LanguageModel(bptt=4)
    x = torch.randint(0, 7, (2, 4))
    task.loss(model, x, x)
    h1 = task.hidden
    assert h1 is not None and not h1[0].requires_grad
    loss_carried, _ = task.loss(model, x, x)
    task.hidden = None
    loss_fresh, _ = task.loss(model, x, x)
    assert not torch.isclose(loss_carried, loss_fresh)


def test_bits_per_character_of_a_uniform_model_is_log2_vocab():
    class Uniform(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, hidden=None):
            return torch.zeros(*x.shape, 16) + self.w, hidden

    m = tasks.LanguageModel(bptt=8).evaluate(Uniform(), torch.randint(0, 16, (400,)))
    assert m["bpc"] == pytest.approx(4.0) and m["loss"] == pytest.approx(math.log(16))


def test_language_model_options_are_checked():
    with pytest.raises(ConfigError, match="bptt must be a positive number"):
        RunConfig(model="char-lstm", dataset="kjv_char", bptt=0).validate()
    with pytest.raises(ConfigError, match="bptt must be a positive number"):
        RunConfig(dataset="mnist5k", bptt=32).validate()
    with pytest.raises(ConfigError, match="cannot train on dataset 'kjv_char'"):
        RunConfig(model="lenet300-100", dataset="kjv_char").validate()
    with pytest.raises(ConfigError, match="are for image datasets"):
        RunConfig(model="char-lstm", dataset="kjv_char", val_size=100).validate()


def test_char_lm_trains_through_the_cli(kjv_dir, capsys):
    argv = ["run", "--model", "char-lstm", "--dataset", "kjv_char", "--epochs", "3", "--lr", "1.0",
            "--momentum", "0", "--batch-size", "8", "--bptt", "32", "--grad-clip", "0.5",
            "--train-size", "8000", "--test-size", "1000"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    cfg = RunConfig(method="dense", model="char-lstm", dataset="kjv_char", epochs=3, lr=1.0, momentum=0.0,
                    batch_size=8, bptt=32, grad_clip=0.5, train_size=8000, test_size=1000)
    rec = Store.for_profile("cpu").get(cfg)
    assert rec is not None and rec["key"] == out["key"] and rec["status"] == "ok"
    m = rec["metrics"]
    assert set(rec["history"][0]) >= {"test_bpc", "test_loss", "train_loss"}
    vocab = len(data.load("kjv_char").vocab)
    # the three repeated verses are easy: far below a uniform guess over the vocabulary
    assert m["test_bpc"] < 0.6 * math.log2(vocab) and m["val_bpc"] < 0.6 * math.log2(vocab)
    assert rec["history"][-1]["test_bpc"] < rec["history"][0]["test_bpc"]
    assert m["weights"] > 0 and m["dense_macs"] > 0
    # same seed, same record
    assert main(argv + ["--fresh"]) == 0
    assert Store.for_profile("cpu").get(cfg)["metrics"]["test_bpc"] == m["test_bpc"]


def test_sequence_classification_fits_the_same_loop():
    """A sentence classifier (ids + attention mask in, logits or .logits out) trains through train.fit."""
    class Bag(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(20, 8, padding_idx=0)
            self.fc = torch.nn.Linear(8, 2)

        def forward(self, input_ids, attention_mask):
            e = (self.embed(input_ids) * attention_mask[..., None]).sum(1) / attention_mask.sum(1, keepdim=True)
            return type("Out", (), {"logits": self.fc(e)})()

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (400,), generator=g)
    ids = torch.randint(1, 10, (400, 12), generator=g) + 10 * y[:, None]   # class 1 uses ids 11-19
    ids[:, 8:] = 0                                                           # padding
    data_ = type("Seq", (), {"x_train": ids[:300], "y_train": y[:300], "x_test": ids[300:], "y_test": y[300:],
                             "task": "sequence_classification", "name": "toy"})()
    from replicate import train
    torch.manual_seed(0)
    model = Bag()
    task = tasks.for_data(data_)
    assert isinstance(task, tasks.SequenceClassification)
    hist = train.fit(model, data_, epochs=3, batch_size=32, lr=0.5, task=task)
    assert hist[-1]["test_acc"] > 0.95
    assert task.final_metrics(model, data_, hist)["test_acc"] == hist[-1]["test_acc"]


def test_the_runner_takes_the_task_from_the_dataset():
    from replicate import runner

    def ds(kind, **kw):
        return type("D", (), {"task": kind, **kw})()

    cfg = RunConfig(model="char-lstm", dataset="kjv_char", bptt=16)
    lm = runner.task_for(cfg, ds("language_model", unit="char"))
    assert isinstance(lm, tasks.LanguageModel) and lm.bptt == 16 and lm.metric == "bpc"
    assert isinstance(runner.task_for(RunConfig(), ds("sequence_classification", pad_id=3)), tasks.SequenceClassification)
    clf = runner.task_for(RunConfig(augment="crop-flip"), object())
    assert type(clf) is tasks.Classification and clf.augment == "crop-flip"


def test_adaptive_embedding_gives_each_cluster_its_width_and_projection():
    from replicate.models.language import AdaptiveEmbedding
    torch.manual_seed(0)
    emb = AdaptiveEmbedding(100, 16, (10, 40), div=4.0)
    assert [e.embedding_dim for e in emb.embeds] == [16, 4, 1] and [e.num_embeddings for e in emb.embeds] == [10, 30, 60]
    x = torch.tensor([[0, 9, 10, 39, 40, 99]])
    out = emb(x)
    expect = [emb.projs[i](emb.embeds[i](torch.tensor([v - lo])))[0]
              for v, (i, lo) in zip(x[0].tolist(), [(0, 0), (0, 0), (1, 10), (1, 10), (2, 40), (2, 40)])]
    assert torch.allclose(out[0], torch.stack(expect))
    out.sum().backward()
    assert all(p.grad is not None for p in emb.parameters())
    with pytest.raises(ValueError, match="cutoffs must increase strictly"):
        AdaptiveEmbedding(100, 16, (40, 10))


def test_word_sru_returns_normalised_log_probabilities_and_factorizes():
    from replicate.methods.flop_gates import export_model, factorize, factorized_layers
    from replicate.models.language import WordSRU
    torch.manual_seed(0)
    m = WordSRU(50, d=16, layers=2, cutoffs=(10, 30))
    x = torch.randint(0, 50, (2, 7))
    logp, hidden = m(x)
    assert logp.shape == (2, 7, 50) and len(hidden) == 2
    assert torch.allclose(logp.exp().sum(-1), torch.ones(2, 7), atol=1e-5)
    small = WordSRU(5, d=8, cutoffs=(2000, 6000))        # cutoffs beyond a small vocabulary are dropped
    assert small.out is None and small(torch.randint(0, 5, (1, 3)))[0].shape == (1, 3, 5)
    factorize(m)
    names = set(factorized_layers(m))
    assert {"embed.projs.0", "embed.projs.1", "embed.projs.2", "rnn.0.w", "rnn.1.w"} <= names
    m.eval()
    with torch.no_grad():
        for layer in factorized_layers(m).values():
            layer.gates.log_alpha.normal_(0.0, 3.0)
    masked = m(x)[0]
    assert torch.allclose(export_model(m)(x)[0], masked, atol=1e-5)


def test_word_sru_target_log_prob_matches_the_full_distribution_and_the_task_uses_it():
    import torch.nn.functional as F
    from replicate.models.language import WordSRU, word_cutoffs
    from replicate.tasks.language_model import LanguageModel
    torch.manual_seed(0)
    for cutoffs in ((10, 30), ()):                    # adaptive softmax, and the plain softmax of a tiny vocabulary
        m = WordSRU(50, d=16, layers=2, cutoffs=cutoffs)
        x, y = torch.randint(0, 50, (3, 6)), torch.randint(0, 50, (3, 6))
        full, h_full = m(x)
        logp, h = m.target_log_prob(x, y)
        assert torch.allclose(logp, full.reshape(-1, 50).gather(1, y.reshape(-1, 1))[:, 0], atol=1e-5)
        assert all(torch.allclose(a, b) for a, b in zip(h, h_full))
        task = LanguageModel(bptt=4, unit="word")
        loss, _ = task.loss(m, x, y)
        assert torch.allclose(loss, F.cross_entropy(full.reshape(-1, 50), y.reshape(-1)), atol=1e-5)
        stream = torch.randint(0, 50, (200,))
        class Plain(torch.nn.Module):                 # the same model seen only through forward
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, x, hidden=None):
                return self.inner(x, hidden)
        assert abs(task.evaluate(m, stream)["loss"] - task.evaluate(Plain(m), stream)["loss"]) < 1e-5
    assert word_cutoffs(12658) == (2000, 6000) and word_cutoffs(20000) == (2000, 6000)
    assert word_cutoffs(1330) == (210, 630)           # the smoke sample keeps three clusters at the same fractions


def test_kjv_word_sample_is_shipped_and_split_like_kjv_word():
    from replicate.data import text
    ds = data.load("kjv_word_sample")
    assert ds.unit == "word" and ds.vocab[0] == "<unk>" and len(ds.train) > 10 * len(ds.test) > 0
    assert ds.name == "kjv_word_sample" and ds.source.startswith("package:")
    with pytest.raises(ValueError, match="valid: char, word"):
        text.load_kjv_sample(unit="byte")
