"""The FLOP method (replicate/methods/flop.py) and its character model: the SRU layer follows its equations,
the Lagrangian drives a toy's sparsity to a small target, the exported model is the masked model, bad
arguments are one-line ConfigErrors, and a FLOP run (and its AGP baseline) goes through the run store on a
fabricated King James-style corpus."""
import copy
import hashlib
import math

import pytest
import torch

from replicate import data, models, runner, tasks, train
from replicate.config import ConfigError, RunConfig
from replicate.data import text
from replicate.methods.flop import LagrangianPruning, linear_names, restore_exported
from replicate.methods.flop_gates import (export_model, factorize, factorized_layers, flop_parameters,
                                          hard_sparsity)
from replicate.models.language import CharLSTM, CharSRU, CharTransformer, SRULayer, TransformerBlock

torch.set_num_threads(1)

VERSES = ["And he said, Let there be light upon the face of the deep.",
          "For the earth is full of his goodness, and the sea also.",
          "Behold, the days come that the vineyard shall bring forth fruit."]


@pytest.fixture
def kjv_dir(tmp_path, monkeypatch):
    """A fabricated dump in the `bible -f` format, accepted as the corpus (its md5 patched in)."""
    raw = "".join(f"Ge{i // 20 + 1}:{i % 20 + 1} {VERSES[i % 3]}\n" for i in range(300)).encode()
    (tmp_path / "data" / "kjv").mkdir(parents=True)
    (tmp_path / "data" / "kjv" / "kjv.txt").write_bytes(raw)
    monkeypatch.setenv("REPLICATE_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(text, "KJV_DUMP_MD5", hashlib.md5(raw).hexdigest())
    data._clear_cache()
    yield
    data._clear_cache()


def _dense(**kw):
    c = dict(model="char-sru", dataset="kjv_char", epochs=1, optimizer="adam", lr=3e-3, batch_size=8, bptt=16,
             grad_clip=0.5, train_size=6000, test_size=400, profile="smoke")
    c.update(kw)
    return RunConfig(**c)


def _flop(args=None, **kw):
    dense = _dense()
    return dense.replace(method="flop", parent=dense, args=args or {}, **kw)


# -- the model ------------------------------------------------------------------------------------------

def test_sru_layer_follows_its_equations():
    torch.manual_seed(0)
    layer = SRULayer(5)
    with torch.no_grad():
        layer.v.normal_()
        layer.b.normal_()
    x, c0 = torch.randn(3, 7, 5), torch.randn(3, 5)
    h, c_last = layer(x, c0)
    w = layer.w.weight
    c, ref = c0, []
    for t in range(7):                      # the recurrence written out, one step at a time
        xt, uf, ur = (w @ x[:, t].T).T.chunk(3, -1)
        f = torch.sigmoid(uf + layer.v[0] * c + layer.b[0])
        r = torch.sigmoid(ur + layer.v[1] * c + layer.b[1])
        c = f * c + (1 - f) * xt
        ref.append(r * c + (1 - r) * x[:, t])
    assert torch.allclose(h, torch.stack(ref, 1), atol=1e-6) and torch.allclose(c_last, c, atol=1e-6)


def test_char_sru_size_state_and_registry():
    m = models.build("char-sru", (), 64)
    assert isinstance(m, CharSRU) and sum(p.numel() for p in m.parameters()) == 428_096
    assert [n for n, x in m.named_modules() if isinstance(x, torch.nn.Linear)] == ["rnn.0.w", "rnn.1.w", "out"]
    x = torch.randint(0, 64, (2, 9))
    logits, hidden = m(x)
    assert logits.shape == (2, 9, 64) and len(hidden) == 2
    # carrying the state over two windows is running the whole sequence at once
    a, ha = m(x[:, :4])
    b, _ = m(x[:, 4:], ha)
    assert torch.allclose(torch.cat([a, b], 1), logits, atol=1e-5)


@pytest.mark.parametrize("make", [lambda: CharSRU(11, 12, 2), lambda: CharLSTM(11, 8, 12),
                                  lambda: CharTransformer(11, 12, 2, 3, 20)])
def test_the_character_models_factorize_exactly(make):
    torch.manual_seed(0)
    m = make()
    x = torch.randint(0, 11, (2, 6))
    before = m(x)[0]
    factorize(m, eval_rule="louizos_clamp")
    for layer in factorized_layers(m).values():
        with torch.no_grad():
            layer.gates.log_alpha.fill_(10.0)        # every gate open: the SVD factors are the dense weights
    m.eval()
    assert torch.allclose(m(x)[0], before, atol=1e-4)


def test_transformer_block_is_causal_attention_with_alibi_and_a_memory():
    torch.manual_seed(0)
    block = TransformerBlock(8, 2, 16).eval()
    x, mem = torch.randn(2, 5, 8), torch.randn(2, 3, 8)
    y, state = block(x, mem)
    # attention written out: the window's queries over the memory and the window, each head's score less
    # slope x distance, keys after the query masked
    h = block.ln1(x)
    ctx = torch.cat([mem, h], 1)
    q, k, v = (f(z).view(2, -1, 2, 4).transpose(1, 2) for f, z in ((block.q, h), (block.k, ctx), (block.v, ctx)))
    slopes = torch.tensor([2.0 ** -4, 2.0 ** -8])
    pos_q, pos_k = torch.arange(3, 8)[:, None], torch.arange(8)[None, :]
    scores = q @ k.transpose(-1, -2) / 2.0 - slopes[:, None, None] * (pos_q - pos_k)
    scores = scores.masked_fill(pos_k > pos_q, float("-inf"))
    a = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 8)
    z = x + block.o(a)
    ref = z + block.fc2(torch.nn.functional.gelu(block.fc1(block.ln2(z))))
    assert torch.allclose(y, ref, atol=1e-5) and torch.equal(state, h)


def test_char_transformer_is_causal_carries_one_window_and_registers():
    torch.manual_seed(0)
    m = models.build("char-transformer", (), 63).eval()
    assert isinstance(m, CharTransformer) and sum(p.numel() for p in m.parameters()) == 412_991
    assert [n for n, x in m.named_modules() if isinstance(x, torch.nn.Linear)] == [
        f"blocks.{i}.{k}" for i in range(2) for k in ("q", "k", "v", "o", "fc1", "fc2")] + ["out"]
    x = torch.randint(0, 63, (2, 12))
    logits, hidden = m(x)
    assert logits.shape == (2, 12, 63) and len(hidden) == 2 and hidden[0].shape == (2, 12, 128)
    changed = x.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % 63                 # later tokens do not change earlier scores
    assert torch.allclose(m(changed)[0][:, :8], logits[:, :8], atol=1e-5)
    assert not torch.allclose(m(changed)[0][:, 8:], logits[:, 8:], atol=1e-3)
    # the memory carries the previous window: the next window's scores depend on it, and only when it is given
    nxt = torch.randint(0, 63, (2, 6))
    with_mem, other_mem = m(nxt, hidden)[0], m(nxt, m(changed)[1])[0]
    assert not torch.allclose(with_mem, other_mem, atol=1e-4) and not torch.allclose(with_mem, m(nxt)[0], atol=1e-4)
    alone = CharTransformer(63, memory=False).eval()
    assert alone(x)[1] is None
    with torch.device("meta"):
        big = models.build("char-transformer-paper", (), 205)
    assert len(big.blocks) == 12 and big.blocks[0].fc1.weight.shape == (2048, 512) and big.blocks[0].heads == 8
    assert abs(sum(p.numel() for p in big.parameters()) - 38.0e6) < 0.1e6
    with pytest.raises(ValueError, match="multiple of the number of heads"):
        TransformerBlock(10, 4, 8)


def test_the_transformer_exports_to_the_masked_model():
    torch.manual_seed(0)
    m = CharTransformer(12, 16, 2, 4, 24)
    factorize(m)
    with torch.no_grad():
        for layer in factorized_layers(m).values():
            layer.gates.log_alpha.normal_(0.0, 3.0)
    m.eval()
    x = torch.randint(0, 12, (3, 7))
    masked, hidden = m(x)
    layers = factorized_layers(m).values()
    assert 0 < sum(layer.kept_rank() for layer in layers) < sum(layer.gates.n for layer in layers)   # some closed, some open
    exported = export_model(m)
    out, hidden2 = exported(x)
    assert torch.allclose(out, masked, atol=1e-5) and all(torch.allclose(a, b, atol=1e-5) for a, b in zip(hidden, hidden2))
    again = restore_exported(CharTransformer(12, 16, 2, 4, 24), exported.state_dict()).eval()
    assert torch.allclose(again(x)[0], out)


def test_sru_layer_with_a_wider_input_takes_the_highway_from_a_fourth_block():
    torch.manual_seed(0)
    layer = SRULayer(4, d_in=6, highway_bias=-3.0)
    assert layer.w.weight.shape == (16, 6) and torch.equal(layer.b[1], torch.full((4,), -3.0))
    x = torch.randn(2, 5, 6)
    h, c_last = layer(x)
    c, ref = torch.zeros(2, 4), []
    for t in range(5):
        xt, uf, ur, hw = (x[:, t] @ layer.w.weight.T).chunk(4, -1)
        f = torch.sigmoid(uf + layer.v[0] * c + layer.b[0])
        r = torch.sigmoid(ur + layer.v[1] * c + layer.b[1])
        c = f * c + (1 - f) * xt
        ref.append(r * c + (1 - r) * hw)
    assert torch.allclose(h, torch.stack(ref, 1), atol=1e-6) and torch.allclose(c_last, c, atol=1e-6)


def test_the_paper_sru_has_the_official_layout_and_size():
    with torch.device("meta"):
        m = models.build("char-sru-paper", (), 205)       # enwik8's 205 byte values
    total = sum(p.numel() for p in m.parameters())
    assert abs(total - 34.5e6) < 0.1e6                   # the brief's arithmetic from the official defaults
    assert m.embed.weight.shape == (205, 205) and m.rnn[0].w.weight.shape == (4 * 3056, 205)
    assert all(layer.w.q.weight.shape == (512, 3056) and layer.w.p.weight.shape == (3 * 3056, 512) for layer in m.rnn[1:])
    assert len(m.rnn) == 6 and m.out.weight.shape == (205, 3056)
    assert linear_names("char-sru-paper") == ["rnn.0.w", *(f"rnn.{i}.w" for i in range(1, 6)), "out"]
    small = models.build("char-sru-d64-l3-p16", (), 20)
    assert len(small.rnn) == 3 and small.rnn[1].w.q.out_features == 16 and small.drop.p == 0.1


def test_the_paper_word_sru_has_the_official_layout():
    from replicate.studies import flop as study
    with torch.device("meta"):
        m = models.build(study.PAPER_WORD_MODEL, (), study.WT103_VOCAB)
    bounds = (0, 10000, 20000, 40000, 60000, 100000, study.WT103_VOCAB)
    widths = [512, 512, 256, 256, 128, 128]                # base 512, halved every 2 clusters
    # cluster 0's table also holds the tied softmax's 5 cluster tokens
    rows = [hi - lo + (5 if lo == 0 else 0) for lo, hi in zip(bounds, bounds[1:])]
    assert [tuple(e.weight.shape) for e in m.embed.embeds] == list(zip(rows, widths))
    assert all(tuple(p.weight.shape) == (2048, w) for p, w in zip(m.embed.projs, widths))
    assert len(m.rnn) == 6 and all(layer.w.q.weight.shape == (512, 2048) and layer.w.p.weight.shape == (3 * 2048, 512)
                                   for layer in m.rnn)
    assert m.drop.p == 0.1 and m.embed.scale == 2048 ** 0.5 and m.tied
    # counted independently: tables and projections, SRU layers (2 x 2048 vectors each), the tied softmax's biases
    embedding = sum(n * w + 2048 * w for n, w in zip(rows, widths))
    sru = 6 * (2048 * 512 + 512 * 3 * 2048 + 4 * 2048)
    biases = sum(rows)
    assert sum(p.numel() for p in m.parameters()) == embedding + sru + biases


def test_flop_gates_a_low_rank_pair_on_its_inner_dimension_and_exports_it():
    torch.manual_seed(0)
    m = CharSRU(20, d=24, layers=3, proj=6).eval()
    x = torch.randint(0, 20, (2, 7))
    before = m(x)[0]
    f = factorize(copy.deepcopy(m), eval_rule="louizos_clamp").eval()
    layers = factorized_layers(f)
    assert list(layers) == ["rnn.0.w", "rnn.1.w", "rnn.2.w", "out"]
    pair = layers["rnn.1.w"]
    assert pair.rank == 6 and pair.dense_parameters() == pair.factorized_parameters() == (24 + 72) * 6
    assert torch.equal(pair.q, m.rnn[1].w.q.weight) and torch.equal(pair.p, m.rnn[1].w.p.weight)   # the factors as trained
    with torch.no_grad():
        for layer in layers.values():
            layer.gates.log_alpha.fill_(10.0)
    assert torch.allclose(f(x)[0], before, atol=1e-4)
    with torch.no_grad():
        for layer in layers.values():
            layer.gates.log_alpha.normal_(0.0, 3.0)
    exported = export_model(f)
    assert torch.allclose(exported(x)[0], f(x)[0], atol=1e-5)
    again = restore_exported(CharSRU(20, d=24, layers=3, proj=6), exported.state_dict()).eval()
    assert torch.allclose(again(x)[0], f(x)[0], atol=1e-5)
    with pytest.raises(ConfigError, match="rank is fixed"):
        factorize(copy.deepcopy(m), rank=3)


# -- the Lagrangian on a toy ------------------------------------------------------------------------------

def _toy_stream(n=6000, vocab=12, seed=0):
    """A learnable stream: a repeating phrase with a random symbol every fifth position."""
    g = torch.Generator().manual_seed(seed)
    s = torch.arange(n) % 7 + 1
    noise = torch.randint(1, vocab, (n,), generator=g)
    return torch.where(torch.arange(n) % 5 == 0, noise, s)


def _toy_data():
    return text.TextStream("toy", _toy_stream(), _toy_stream(600, seed=1), _toy_stream(600, seed=2),
                           tuple(str(i) for i in range(12)), "synthetic")


def test_the_lagrangian_drives_a_toy_to_a_small_target():
    """About 190 steps: the multipliers overshoot, oscillate and settle (faster rates than the defaults,
    which are set for runs of about a thousand steps)."""
    ds, task = _toy_data(), tasks.LanguageModel(bptt=16)
    torch.manual_seed(0)
    m = CharSRU(12, 32, 1)
    train.fit(m, ds, epochs=1, batch_size=8, optimizer="adam", lr=1e-2, task=task, progress=False)
    factorize(m)
    cb = LagrangianPruning(target=0.3, warmup=0.3, total="dense", lambda_lr=0.1, gate_lr=0.1)
    hist = train.fit(m, ds, epochs=4, batch_size=8, optimizer="adam", lr=3e-3, task=task, progress=False,
                     callbacks=[cb], penalty=cb.penalty, params=flop_parameters(m)["model"])
    last = hist[-1]
    assert abs(last["hard_sparsity"] - 0.3) <= 0.03 and abs(last["expected_sparsity"] - 0.3) <= 0.03
    assert last["target"] == 0.3 and last["lambda2"] > 0          # lambda2's gradient (s - t)^2 only grows it
    assert max(p["expected_sparsity"] for p in cb.trace) > 0.4     # it overshot on the way
    assert last["test_bpc"] < hist[0]["test_bpc"]
    assert 50 <= len(cb.trace) <= 200 and cb.trace[-1]["step"] == 4 * task.steps_per_epoch(task.prepare(ds, "cpu"), 8)
    assert set(cb.trace[0]) == {"step", "target", "expected_sparsity", "hard_sparsity", "lambda1", "lambda2"}


def test_a_fixed_l0_weight_prunes_more_the_larger_it_is_and_moves_no_multiplier():
    """The baseline without the Lagrangian: loss + l0_coef (1 - s_hat). Its sparsity is whatever the
    weight buys (no target): a larger weight ends sparser, and the multipliers stay at 0."""
    ds, task = _toy_data(), tasks.LanguageModel(bptt=16)
    torch.manual_seed(0)
    base = CharSRU(12, 32, 1)
    train.fit(base, ds, epochs=1, batch_size=8, optimizer="adam", lr=1e-2, task=task, progress=False)
    ends = []
    for coef in (0.02, 2.0):
        m = copy.deepcopy(base)
        factorize(m)
        cb = LagrangianPruning(target=0.3, warmup=0.0, total="dense", lambda_lr=0.1, gate_lr=0.1, l0_coef=coef)
        hist = train.fit(m, ds, epochs=2, batch_size=8, optimizer="adam", lr=3e-3, task=task, progress=False,
                         callbacks=[cb], penalty=cb.penalty, params=flop_parameters(m)["model"])
        assert hist[-1]["lambda1"] == 0.0 and hist[-1]["lambda2"] == 0.0
        ends.append(hist[-1]["expected_sparsity"])
    assert ends[1] > ends[0] + 0.1


def test_structured_agp_masks_the_weakest_components_to_the_target():
    from replicate.methods.flop import ComponentAGP

    ds, task = _toy_data(), tasks.LanguageModel(bptt=16)
    torch.manual_seed(0)
    m = CharSRU(12, 32, 1)
    train.fit(m, ds, epochs=1, batch_size=8, optimizer="adam", lr=1e-2, task=task, progress=False)
    factorize(m)
    before = {n: layer.component_norms() for n, layer in factorized_layers(m).items()}
    alphas = {n: layer.gates.log_alpha.detach().clone() for n, layer in factorized_layers(m).items()}
    cb = ComponentAGP(target=0.5, total="dense")
    hist = train.fit(m, ds, epochs=2, batch_size=8, optimizer="adam", lr=3e-3, task=task, progress=False,
                     callbacks=[cb], params=flop_parameters(m)["model"])
    layers = factorized_layers(m)
    biggest = max(layer.in_features + layer.out_features for layer in layers.values())
    size = sum(layer.dense_parameters() for layer in layers.values())
    assert 0.5 <= hist[-1]["hard_sparsity"] <= 0.5 + biggest / size          # to the target, one component over at most
    for layer in layers.values():                                             # every layer to the same sparsity
        own = 1 - layer.kept_parameters() / layer.dense_parameters()
        assert 0.5 <= own <= 0.5 + (layer.in_features + layer.out_features) / layer.dense_parameters()
    assert hist[-1]["target"] == 0.5 and cb.trace and cb.trace[-1]["lambda1"] == 0.0
    assert all(not layer.use_gates for layer in layers.values())
    # no gate moved (they are not trained), and in each layer the masked components were the weaker ones
    assert all(torch.equal(layer.gates.log_alpha, alphas[n]) for n, layer in layers.items())
    for n, layer in layers.items():
        kept, cut = before[n][layer.keep > 0], before[n][layer.keep == 0]
        if len(kept) and len(cut):
            assert cut.median() < kept.median()
    m.eval()
    x = torch.randint(0, 12, (2, 9))
    assert torch.allclose(export_model(copy.deepcopy(m))(x)[0], m(x)[0], atol=1e-5)


@pytest.mark.parametrize("rule", ["flop_topk", "louizos_clamp"])
def test_exported_model_is_the_masked_model(rule):
    torch.manual_seed(0)
    m = CharSRU(12, 16, 2)
    factorize(m, eval_rule=rule)
    with torch.no_grad():
        for layer in factorized_layers(m).values():
            layer.gates.log_alpha.normal_(0.0, 3.0)           # a mix of closed, soft and open gates
    m.eval()
    x = torch.randint(0, 12, (3, 10))
    masked, hidden = m(x)
    kept = sum(layer.kept_parameters() for layer in factorized_layers(m).values())
    assert 0 < hard_sparsity(m) < 1
    exported = export_model(m)
    assert not factorized_layers(exported)
    out, hidden2 = exported(x)
    assert torch.allclose(out, masked, atol=1e-5) and all(torch.allclose(a, b, atol=1e-5) for a, b in zip(hidden, hidden2))
    linear_weights = sum(x.weight.numel() for x in exported.modules() if isinstance(x, torch.nn.Linear))
    assert linear_weights == kept
    # the cached weights of an exported model load back into a fresh build of the model name
    again = restore_exported(CharSRU(12, 16, 2), exported.state_dict()).eval()
    assert torch.allclose(again(x)[0], out)


# -- arguments ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    ({"target": 1.0}, r"target \(sparsity\) must be a number in \[0, 1\)"),
    ({"target": -0.1}, r"in \[0, 1\)"),
    ({"target": True}, r"in \[0, 1\)"),
    ({"warmup": 1.5}, r"warmup must be a fraction"),
    ({"lambda_lr": 0}, "lambda_lr must be a finite number > 0"),
    ({"gate_lr": -1.0}, r"gate_lr must be a finite number > 0 or None"),
    ({"beta": 0}, "beta must be a finite number > 0"),
    ({"init_drop": 1.0}, r"init_drop must be in \(0, 1\)"),
    ({"init_std": -1.0}, "init_std must be a finite number >= 0"),
    ({"eval_rule": "median"}, "unknown evaluation rule 'median'; valid: flop_topk, louizos_clamp"),
    ({"sampling": "token"}, "unknown gate sampling 'token'; valid: batch, example"),
    ({"init": "zeros"}, "unknown factorization init 'zeros'; valid: svd, random"),
    ({"total": "model"}, "unknown sparsity total 'model'; valid: dense, factorized"),
    ({"rank": 0}, "rank must be an integer >= 1 or None"),
    ({"layers": ["rnn.0.w", "decoder"]}, r"unknown nn.Linear layer\(s\) 'decoder' in 'char-sru'; valid: rnn.0.w, rnn.1.w, out"),
    ({"layers": []}, "layers must be None"),
    ({"tau": 1}, r"unknown argument\(s\) \['tau'\] for method 'flop'"),
    ({"budget": "soft"}, "unknown flop budget 'soft'; valid: lagrangian, fixed"),
    ({"structure": "rows"}, "unknown gate structure 'rows'; valid: factorized, columns"),
    ({"budget": "agp", "structure": "columns"}, "budget 'agp' prunes the factorization's components"),
    ({"structure": "columns", "rank": 4}, "rank and init do not apply"),
    ({"budget": "fixed"}, "budget 'fixed' needs l0_coef"),
    ({"budget": "fixed", "l0_coef": -1.0}, "budget 'fixed' needs l0_coef"),
    ({"l0_coef": 0.1}, "set budget='fixed' or leave l0_coef None"),
    ({"quadratic": 1}, "quadratic must be True"),
    ({"clusters": "yes"}, "unknown clusters 'yes'; valid: False, True"),
    ({"clusters": True, "budget": "agp"}, "clusters=True gates the clusters' widths: it needs budget"),
    ({"clusters": True, "structure": "columns"}, "clusters=True gates the clusters' widths: it needs budget"),
])
def test_bad_arguments_are_one_line_config_errors(args, message):
    with pytest.raises(ConfigError, match=message) as err:
        _flop(args).validate()
    assert "\n" not in str(err.value)


def test_flop_needs_a_parent_of_the_same_model():
    with pytest.raises(ConfigError, match="needs a parent run"):
        RunConfig(method="flop", model="char-sru", dataset="kjv_char").validate()
    with pytest.raises(ConfigError, match="same model as its parent"):
        _flop().replace(model="char-lstm").validate()
    _flop({"layers": "out", "gate_lr": None, "target": 0.0}).validate()     # a name, shared optimizer, t = 0


# -- through the run store ----------------------------------------------------------------------------------

def test_flop_run_round_trips_through_the_store(kjv_dir, monkeypatch):
    cfg = _flop({"target": 0.4, "warmup": 0.25})
    rec = runner.run(cfg)
    assert rec["status"] == "ok" and rec["config"]["parent"]["method"] == "dense"
    m = rec["metrics"]
    # the exported model is the run's model: its metric is the masked model's, its size the kept one
    assert m["test_bpc"] == m["test_bpc_exported"] and math.isclose(m["test_bpc_masked"], m["test_bpc"], abs_tol=1e-4)
    assert m["params_exported_model"] == m["params_dense_model"] - m["params_gated_dense"] + m["params_gated_kept"]
    assert m["weights"] == m["params_gated_kept"] == sum((256 + 768) * r for n, r in m["kept_rank"].items()
                                                         if n != "out") + (256 + m["full_rank"]["out"]) * m["kept_rank"]["out"]
    assert m["full_rank"]["rnn.0.w"] == 256 and m["params_gated_dense"] == 2 * 256 * 768 + 256 * m["full_rank"]["out"]
    for which in ("expected", "hard"):
        assert m[f"{which}_sparsity_factorized"] > m[f"{which}_sparsity_dense"]   # full-rank SVD: a larger total
    assert m["hard_sparsity_dense"] == pytest.approx(1 - m["params_gated_kept"] / m["params_gated_dense"])
    assert m["target"] == 0.4 and m["lambda2"] > 0 and m["trace"] and m["sparsity_total"] == "dense"
    assert {"expected_sparsity", "hard_sparsity", "lambda1", "lambda2", "target"} <= set(rec["history"][-1])
    # asked again: the stored record, nothing trained; the cached weights rebuild the physically smaller model
    monkeypatch.setenv("REPLICATE_NO_TRAIN", "1")
    assert runner.run(cfg)["key"] == rec["key"]
    model, again = runner.load_model(cfg)
    assert again["key"] == rec["key"] and not factorized_layers(model)
    assert model.rnn[0].w.q.weight.shape == (m["kept_rank"]["rnn.0.w"], 256)
    ds = runner.load_data(cfg)
    assert tasks.LanguageModel(bptt=16).evaluate(model, ds.test)["bpc"] == pytest.approx(m["test_bpc"], abs=1e-6)


def test_column_gated_baseline_runs_exports_and_reloads(kjv_dir, monkeypatch):
    """The unfactorized L0 baseline through the store: gates on input columns, a physically narrower model."""
    cfg = _flop({"target": 0.4, "warmup": 0.25, "structure": "columns"})
    rec = runner.run(cfg)
    m = rec["metrics"]
    assert rec["status"] == "ok" and m["test_bpc"] == m["test_bpc_exported"]
    assert math.isclose(m["test_bpc_masked"], m["test_bpc"], abs_tol=1e-4)
    assert m["params_gated_factorized"] == m["params_gated_dense"]           # nothing is factorized
    vocab = (m["params_gated_dense"] - 2 * 256 * 768) // 256              # the output layer is Linear(256, vocab)
    out_features = {"rnn.0.w": 768, "rnn.1.w": 768, "out": vocab}         # each kept input column costs d_out weights
    assert m["full_rank"]["rnn.0.w"] == 256 and m["params_gated_kept"] == sum(
        out_features[n] * r for n, r in m["kept_rank"].items())
    monkeypatch.setenv("REPLICATE_NO_TRAIN", "1")
    model, _ = runner.load_model(cfg)
    assert not factorized_layers(model) and model.rnn[0].w.linear.weight.shape == (768, m["kept_rank"]["rnn.0.w"])
    ds = runner.load_data(cfg)
    assert tasks.LanguageModel(bptt=16).evaluate(model, ds.test)["bpc"] == pytest.approx(m["test_bpc"], abs=1e-6)


def test_gradual_magnitude_pruning_works_on_the_language_model(kjv_dir):
    dense = _dense()
    agp = dense.replace(method="magnitude", parent=dense, args={"schedule": "gradual", "sparsity": 0.4, "prune_end": 0.5,
                                                                 "prune_every": 5})
    rec = runner.run(agp)
    m = rec["metrics"]
    assert rec["status"] == "ok" and m["remaining"] == pytest.approx(0.6, abs=1e-4)
    assert math.isfinite(m["test_bpc"]) and m["test_bpc"] < math.log2(len(data.load("kjv_char").vocab))


def test_the_transformer_trains_prunes_and_reloads_through_the_store(kjv_dir, monkeypatch):
    """FLOP and AGP from a dense char-transformer; the exported model rebuilds and evaluates as recorded."""
    dense = _dense(model="char-transformer", lr=1e-3)
    cfg = dense.replace(method="flop", parent=dense, args={"target": 0.5, "warmup": 0.25})
    agp = dense.replace(method="magnitude", parent=dense, args={"schedule": "gradual", "sparsity": 0.5, "prune_end": 0.5,
                                                                 "prune_every": 5})
    rec, base, sparse = runner.run(cfg), runner.run(dense), runner.run(agp)
    m = rec["metrics"]
    assert rec["status"] == base["status"] == sparse["status"] == "ok"
    assert set(m["kept_rank"]) == {f"blocks.{i}.{k}" for i in range(2) for k in ("q", "k", "v", "o", "fc1", "fc2")} | {"out"}
    assert math.isclose(m["test_bpc_masked"], m["test_bpc"], abs_tol=1e-4)
    assert sparse["metrics"]["remaining"] == pytest.approx(0.5, abs=1e-3)
    monkeypatch.setenv("REPLICATE_NO_TRAIN", "1")
    model, _ = runner.load_model(cfg)
    assert not factorized_layers(model)
    ds = runner.load_data(cfg)
    assert tasks.LanguageModel(bptt=16).evaluate(model, ds.test)["bpc"] == pytest.approx(m["test_bpc"], abs=1e-6)


# -- the corpus sample and the study plan ----------------------------------------------------------------------

def test_the_shipped_sample_is_the_start_of_the_corpus():
    ds = data.load("kjv_char_sample")
    assert len(ds.train) + len(ds.dev) + len(ds.test) == 63_918 and len(ds.test) == len(ds.dev) == 3_195
    assert "".join(ds.vocab[i] for i in ds.train[:16].tolist()) == "In the beginning"
    try:
        full = data.load("kjv_char")
    except data.DataNotFound:
        pytest.skip("the King James Bible packages are not installed")
    plain = text.KJV_SAMPLE.read_text()
    assert "".join(full.vocab[i] for i in full.train[: len(plain)].tolist()) == plain


def test_the_study_plans_are_valid_configurations():
    from replicate.studies import flop as study

    for profile in study.PLANS:
        p = study.plan(profile)
        for seed in p["seeds"]:
            cfgs = [study.dense(profile, seed)]
            cfgs += [study.flop(profile, seed, t) for t in p["targets"]] + [study.agp(profile, seed, t) for t in p["targets"]]
            for c in cfgs:
                c.validate()
            assert len({c.key for c in cfgs}) == len(cfgs)
            assert all(c.parent == cfgs[0] for c in cfgs[1:])
    with pytest.raises(ConfigError, match="unknown profile 'huge'; valid: smoke, cpu, paper"):
        study.plan("huge")
    assert study.model_of("paper") == "char-sru-paper" and study.model_of("cpu") == "char-sru"
    for profile in ("smoke", "cpu", "paper"):                  # every notebook's plan has every profile
        for make in (study.control_plan, study.word_plan, study.encoder_plan, study.transformer_plan):
            assert make(profile)["seeds"]
        study.word_dense(profile, 0).validate()
        tp = study.transformer_plan(profile)
        cfgs = [study.transformer_dense(profile, 0)] + [f(profile, 0, t) for t in tp["targets"]
                                                         for f in (study.transformer_flop, study.transformer_agp)]
        for c in cfgs:
            c.validate()
        assert len({c.key for c in cfgs}) == len(cfgs) and all(c.parent == cfgs[0] for c in cfgs[1:])
        assert cfgs[0].model == ("char-transformer-paper" if profile == "paper" else "char-transformer")
    assert [study.module_group(n) for n in ("blocks.0.q", "blocks.1.o", "blocks.0.fc2", "rnn.1.w", "out", "embed")] == [
        "attention", "attention", "feed-forward", "recurrent", "decoder", "other"]
    assert study.ablation_seeds("cpu") == [0] and study.plan("cpu")["seeds"] == [0, 1, 2]
    rec = {"metrics": {"kept_rank": {"blocks.0.q": 10, "blocks.1.fc1": 0, "out": 20}}}
    rows = {r["matrix"]: r for r in study.kept_per_matrix(rec, "char-transformer", 30)}
    assert (rows["blocks.0.q"]["kept"], rows["blocks.0.q"]["dense"], rows["blocks.0.q"]["part"]) == (2560, 16384, "attention")
    assert rows["blocks.1.fc1"]["kept_fraction"] == 0 and rows["blocks.1.fc1"]["full_rank"] == 128
    assert rows["out"]["kept"] == 158 * 20 and rows["out"]["full_rank"] == 30 and rows["out"]["part"] == "decoder"
    assert (rows["blocks.0.q"]["block"], rows["blocks.1.fc1"]["block"], rows["out"]["block"]) == (0, 1, None)
    assert (rows["blocks.0.q"]["where"], rows["out"]["where"]) == ("block 0 attention", "decoder")
    import pandas as pd
    frame = pd.DataFrame([{"target": 0.5, "seed": s, **r} for s in (0, 1)
                          for r in study.kept_per_matrix({"metrics": {"kept_rank": {"blocks.0.q": 8 * (s + 1),
                                                                                    "blocks.0.k": 8, "blocks.1.q": 0,
                                                                                    "blocks.1.fc1": s}}},
                                                         "char-transformer", 30)])
    att0 = study.kept_fractions(frame, "where").set_index("where").loc["block 0 attention"]
    assert att0["min"] == 256 * 16 / (2 * 16384) and att0["max"] == 256 * 24 / (2 * 16384)
    assert att0["mean"] == (att0["min"] + att0["max"]) / 2
    assert study.removed_blocks(frame) == [(0.5, 0, 1)]                       # seed 1 kept one fc1 component
    variants = [study.transformer_variant("cpu", 0, 0.7, label) for label in study.TRANSFORMER_VARIANTS]
    ours = study.transformer_flop("cpu", 0, 0.7)
    assert len({c.key for c in variants + [ours]}) == len(variants) + 1
    assert all(c.parent == ours.parent and c.epochs == ours.epochs for c in variants)
    assert variants[0].args["init_drop"] == 0.05 and variants[0].args["gate_lr"] is None
    with pytest.raises(ConfigError, match="valid: official Transformer-XL settings"):
        study.transformer_variant("cpu", 0, 0.7, "tuned")
    assert [study.block_of(n) for n in ("rnn.rnn_lst.1.weight", "blocks.12.fc2", "out")] == [1, 12, None]
    assert study.corpus_tag("kjv_char") == study.corpus_tag("kjv_word_sample") == "kjv" and study.corpus_tag("enwik8") == "enwik8"
    assert study.data_note("enwik8", "enwik8") == "enwik8" and study.data_note("kjv_char", "enwik8") == "kjv_char stands in for enwik8"
    rec = {"metrics": {"weights": 100, "nonzero": 40}}
    assert study.parameters(rec, 1000) == 940
    assert study.parameters({"metrics": {"params_exported_model": 500, "weights": 500, "nonzero": 500}}, 1000) == 500


def test_the_paper_small_dense_model_keeps_the_target_share_of_the_paper_sru():
    from replicate.studies import flop as study
    full = study.projected_weights(3056, 205, 6, 512)
    with torch.device("meta"):
        m = models.build("char-sru-paper", (), 205)
    assert full == sum(x.numel() for n, x in m.named_parameters() if n.endswith("weight") and not n.startswith("embed"))
    for t in (0.5, 0.7, 0.9):
        name = study.small_model("paper", t, 205)
        d = study.small_width("paper", t, 205)
        assert name.startswith(f"char-sru-d{d}-l6-p")
        proj = int(name.rsplit("-p", 1)[1])
        assert abs(study.projected_weights(d, 205, 6, proj) / full - (1 - t)) < 0.01
        assert study.model_parameters(name, 205) < study.model_parameters("char-sru-paper", 205)
    assert study.small_model("cpu", 0.7, 64) == f"char-sru-d{study.matched_width(0.7, 64)}"


def test_small_dense_baseline_matches_the_kept_size():
    from replicate.studies import flop as study

    vocab = 70
    full = study.sru_weights(256, vocab)
    for t in (0.5, 0.7, 0.9):
        w = study.matched_width(t, vocab)
        kept = (1 - t) * full
        assert abs(study.sru_weights(w, vocab) - kept) <= study.sru_weights(w + 1, vocab) - study.sru_weights(w, vocab)
        m = models.build(f"char-sru-d{w}", (1,), vocab)
        weights = sum(x.weight.numel() for x in m.modules() if isinstance(x, torch.nn.Linear))
        assert weights == study.sru_weights(w, vocab)
    cfg = study.small_dense("smoke", 0, 0.7, vocab)
    assert cfg.model == f"char-sru-d{study.matched_width(0.7, vocab)}" and cfg.parent is None
    assert cfg.epochs == study.plan("smoke")["dense_epochs"] + study.plan("smoke")["prune_epochs"]
    cfg.validate()
    with pytest.raises(ConfigError, match="char-sru-d<width>"):
        RunConfig(model="char-sru-d", dataset="kjv_char").validate()


def test_an_exported_layer_that_kept_no_component_is_counted_not_divided_by():
    from replicate import metrics
    torch.manual_seed(0)
    m = CharSRU(12, 16, 2)
    factorize(m)
    layers = factorized_layers(m)
    for layer in layers.values():
        layer.use_gates = False
    layers["rnn.0.w"].keep.zero_()                 # structured AGP at a high target can empty a layer
    m.eval()
    exported = export_model(m)
    x = torch.randint(0, 12, (1, 8))
    assert torch.allclose(exported(x)[0], m(x)[0], atol=1e-5)
    s = metrics.summarize(exported, example=x)
    assert s["layers"]["rnn.0.w.q"]["weights"] == 0 and s["nonzero"] > 0


def test_cluster_gated_word_model_runs_exports_and_reloads(kjv_dir, monkeypatch):
    """clusters=True on the word model through the store: the tables are pruned with their projections."""
    dense = _dense(model="word-sru", dataset="kjv_word", train_size=2000, test_size=200, lr=1e-2)
    cfg = dense.replace(method="flop", parent=dense, args={"target": 0.5, "warmup": 0.25, "clusters": True})
    rec = runner.run(cfg)
    m = rec["metrics"]
    assert rec["status"] == "ok" and math.isclose(m["test_ppl_masked"], m["test_ppl"], rel_tol=1e-4)
    assert {"embed.embeds.0", "out.tail.0.0"} <= set(m["kept_rank"]) and "embed.projs.0" not in m["kept_rank"]
    assert m["params_exported_model"] == m["params_dense_model"] - m["params_gated_dense"] + m["params_gated_kept"]
    monkeypatch.setenv("REPLICATE_NO_TRAIN", "1")
    model, _ = runner.load_model(cfg)
    assert not factorized_layers(model)
    assert model.embed.embeds[0].weight.shape[1] == model.embed.projs[0].weight.shape[1] == m["kept_rank"]["embed.embeds.0"]
    ds = runner.load_data(cfg)
    assert math.exp(tasks.LanguageModel(bptt=16).evaluate(model, ds.test)["loss"]) == pytest.approx(m["test_ppl"], rel=1e-5)


def test_cluster_gates_need_a_language_model():
    dense = RunConfig(model="lenet300-100", dataset="mnist5k", epochs=1, profile="smoke")
    with pytest.raises(ConfigError, match="language model with adaptive clusters") as err:
        dense.replace(method="flop", parent=dense, args={"clusters": True}).validate()
    assert "\n" not in str(err.value)


def test_word_clusters_are_the_models_own():
    from replicate.studies import flop as study
    for name in (study.WORD_MODEL, study.PAPER_WORD_MODEL):
        for vocab in (300, 12658, 110016, study.WT103_VOCAB):
            with torch.device("meta"):
                m = models.build(name, (), vocab)
            have = tuple(m.embed.bounds) if m.out is not None else (0, vocab)
            assert study.word_clusters(name, vocab) == have, (name, vocab)


def test_the_paper_plan_prunes_its_tied_word_model_with_the_official_cluster_gates():
    from replicate.studies import flop as study
    assert study.word_flop("paper", 0, 0.5).args.get("clusters") is True
    assert not study.word_flop("cpu", 0, 0.5).args.get("clusters", False)          # the untied proxy: both FLOPs
    assert study.word_flop("cpu", 0, 0.5, clusters=True).args.get("clusters") is True
