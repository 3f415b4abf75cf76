"""`make bench`: speed of replicate's training loop against a bare PyTorch loop
(image classification, and a small character language model with truncated
backpropagation through time), and the training-step cost of each method relative to dense training (DST;
sensitivity-driven regularization with its default one-extra-backward sensitivity; one DRL iteration
against as many dense steps).

Both loops train dense LeNet-300-100 on Fashion-MNIST (MNIST-5k when
Fashion-MNIST is not installed) with the same batch size, optimizer, thread
count, data order and per-epoch test evaluation, alternating in one process,
so the ratio is meaningful on a shared machine even when absolute times are not.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from . import data, models, train


def bare_epoch(model, opt, x, y, xt, yt, batch_size, gen):
    order = torch.randperm(len(x), generator=gen)
    model.train()
    for i in range(0, len(x), batch_size):
        idx = order[i:i + batch_size]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        for i in range(0, len(xt), 2000):
            model(xt[i:i + 2000]).argmax(1)


def step_ratio(model_name: str, make, ds, steps: int = 60, reps: int = 5, batch_size: int = 64) -> dict:
    """Median time of `steps` training steps of a method's model against the dense
    model, interleaved in one process. `make(model)` returns (model, penalty, callbacks)."""
    x, y = ds.x_train[: steps * batch_size], ds.y_train[: steps * batch_size]
    sub = data.Dataset(ds.name, x, y, ds.x_test[:1], ds.y_test[:1], ds.num_classes, ds.source)
    times = {"dense": [], "method": []}
    for rep in range(reps):
        for kind in ("dense", "method"):
            torch.manual_seed(rep)
            m = models.build(model_name, ds.x_train.shape[1:], ds.num_classes)
            pen, cbs = None, []
            if kind == "method":
                m, pen, cbs = make(m)
            t = time.perf_counter()
            train.fit(m, sub, epochs=1, batch_size=batch_size, penalty=pen, callbacks=cbs, progress=False)
            times[kind].append(time.perf_counter() - t)
    med = {k: statistics.median(v) / steps for k, v in times.items()}
    best = {k: min(v) / steps for k, v in times.items()}
    return {"dense_ms": 1e3 * med["dense"], "method_ms": 1e3 * med["method"], "ratio": med["method"] / med["dense"],
            "best_dense_ms": 1e3 * best["dense"], "best_method_ms": 1e3 * best["method"],
            "best_ratio": best["method"] / best["dense"], "repeats": reps}


def bare_lm_epoch(model, opt, stream, test, batch_size, bptt, clip):
    """A bare PyTorch BPTT epoch (contiguous rows, hidden carried and detached, gradient
    clipping) and a test evaluation, doing what the language-model task does."""
    rows = stream[: len(stream) // batch_size * batch_size].view(batch_size, -1)
    hidden = None
    model.train()
    for i in range(0, rows.shape[1] - 1, bptt):
        t = min(bptt, rows.shape[1] - 1 - i)
        out, hidden = model(rows[:, i:i + t], hidden)
        hidden = tuple(h.detach() for h in hidden)
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), rows[:, i + 1:i + 1 + t].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
    model.eval()
    with torch.no_grad():
        trows, hidden = test[: len(test) // 10 * 10].view(10, -1), None
        for i in range(0, trows.shape[1] - 1, bptt):
            t = min(bptt, trows.shape[1] - 1 - i)
            out, hidden = model(trows[:, i:i + t], hidden)
            F.cross_entropy(out.reshape(-1, out.shape[-1]), trows[:, i + 1:i + 1 + t].reshape(-1))


def lm_loop_ratio(reps: int = 3, batch_size: int = 16, bptt: int = 64, clip: float = 0.25) -> dict:
    """replicate's loop with the language-model task vs bare_lm_epoch, char-lstm on 64k characters
    of the King James Bible (a seeded random stream when it is not installed), interleaved."""
    from . import tasks

    try:
        ds = data.subset(data.load("kjv_char"), 64000, 8000)
        source = "King James Bible characters"
    except data.DataNotFound:
        g = torch.Generator().manual_seed(0)
        rand = torch.randint(1, 60, (80000,), generator=g)
        ds = data.TextStream("random", rand[:64000], rand[64000:72000], rand[72000:], ("<unk>",) + ("x",) * 59,
                             "seeded random tokens")
        source = "a seeded random token stream (kjv_char not installed)"
    times = {"replicate": [], "bare": []}
    for rep in range(reps):
        for name in ("bare", "replicate"):
            torch.manual_seed(rep)
            m = models.build("char-lstm", (), len(ds.vocab))
            t = time.perf_counter()
            if name == "bare":
                opt = torch.optim.SGD(m.parameters(), lr=1.0)
                bare_lm_epoch(m, opt, ds.train, ds.test, batch_size, bptt, clip)
            else:
                train.fit(m, ds, epochs=1, batch_size=batch_size, lr=1.0, momentum=0.0, grad_clip=clip,
                          task=tasks.LanguageModel(bptt=bptt), progress=False)
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"source": source, "tokens": len(ds.train), **med, "ratio": med["replicate"] / med["bare"]}


def drl_iteration_ratio(ds, agent_batches: int = 20, cnn_batches: int = 10, reps: int = 3, batch_size: int = 128,
                        rr: float = 0.5) -> dict:
    """One DRL iteration of Algorithm 1 (agent batches: a rollout and a PPO update of both agents, the
    CNN frozen; then CNN batches through the pruned net) against as many dense CNN steps (Adam),
    M-FashionNet-S, interleaved in one process; median seconds per iteration."""
    from .methods import drl_prune
    from .methods.args import ARGS

    n = agent_batches + cnn_batches
    x, y = ds.x_train[: n * batch_size], ds.y_train[: n * batch_size]
    hw = tuple(x.shape[2:])
    times = {"dense": [], "drl": []}
    for rep in range(reps + 1):          # the first round warms up and is not timed
        for kind in ("dense", "drl"):
            torch.manual_seed(rep)
            backbone = models.build("m-fashionnet-s", x.shape[1:], ds.num_classes)
            batches = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)]
            t = time.perf_counter()
            if kind == "dense":
                opt = torch.optim.Adam(backbone.parameters(), lr=1e-3)
                backbone.train()
                for xb, yb in batches:
                    loss = F.cross_entropy(backbone(xb), yb)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            else:
                a = {**ARGS["drl_prune"], "rr": rr, "agent_lr": 1e-4}
                model = drl_prune.build(backbone, a)
                trainer = drl_prune.Trainer(model, a, hw, rep)
                model.eval()
                for xb, yb in batches[:agent_batches]:
                    roll = trainer.rollout(xb, yb)
                    for k in ("runtime", "static"):
                        if k in roll:
                            trainer.update(k, roll[k])
                model.train()
                params = list(model.gated.parameters())
                opt = torch.optim.Adam(params, lr=1e-3)
                stream = iter(batches[agent_batches:])
                drl_prune.cnn_steps(model, params, opt, stream, cnn_batches, None, 1, [])
            if rep:
                times[kind].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"dense_s": med["dense"], "drl_s": med["drl"], "ratio": med["drl"] / med["dense"], "steps": n}


def flop_ratios(reps: int = 15, vocab: int = 64) -> dict:
    """FLOP on char-sru (random weights): one training step (batch 32 x 64) of FLOP against the plain dense
    model and the factorized model with its gates off, and an inference forward (batch 16 x 64) of the
    model exported at half the dense weights (each matrix at rank d_in d_out / (2 (d_in + d_out)))
    against the dense model; round-robin medians (flop_latency)."""
    from .methods import flop_latency

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    dense = models.build("char-sru", (), vocab)
    lin = {n: m for n, m in dense.named_modules() if isinstance(m, torch.nn.Linear)}
    half = {n: max(1, m.in_features * m.out_features // (2 * (m.in_features + m.out_features))) for n, m in lin.items()}
    x, y = (torch.randint(0, vocab, (32, 64), generator=gen) for _ in range(2))
    steps = flop_latency.round_robin(flop_latency.step_calls(dense, x, y), repeats=reps, warmup=3)
    tokens = torch.randint(0, vocab, (16, 64), generator=gen)
    fwd = flop_latency.round_robin(flop_latency.forward_calls(
        {"dense": dense, "exported": flop_latency.with_ranks(dense, half, gen)}, tokens), repeats=reps, warmup=3)
    return {"step_ms": steps, "forward_ms": fwd}


def _dst(kernel):
    def make(m):
        from .methods import dst

        m = dst.to_masked(m, kernel=kernel)
        return m, dst.penalty_fn(m, "exp", 5e-4), [dst.SparsityLog()]
    return make


def _sensitivity(m):
    from .methods import sensitivity

    return m, None, [sensitivity.SensitivityStep(1e-4, 1e-3)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per loop")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    threads = train.set_threads(a.threads)
    tuned = train.tune_allocator()     # before either loop runs: both see the same allocator
    try:
        ds = data.load("fashion_mnist")
    except data.DataNotFound:
        ds = data.load("mnist5k")
    print(f"dense LeNet-300-100 on {ds.name} ({len(ds.x_train)} training images), batch {a.batch_size}, "
          f"SGD lr 0.01 momentum 0.9, torch {torch.__version__}, {threads} thread(s), allocator "
          f"{'tuned (train.tune_allocator)' if tuned else 'default'}")
    times = {"replicate": [], "bare": []}
    for rep in range(a.epochs):
        for name in ("bare", "replicate"):
            torch.manual_seed(rep)
            m = models.build("lenet300-100", ds.x_train.shape[1:], 10)
            if name == "bare":
                opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
                gen = torch.Generator().manual_seed(rep)
                t = time.perf_counter()
                bare_epoch(m, opt, ds.x_train, ds.y_train, ds.x_test, ds.y_test, a.batch_size, gen)
                times[name].append(time.perf_counter() - t)
            else:
                t = time.perf_counter()
                train.fit(m, ds, epochs=1, batch_size=a.batch_size, lr=0.01, momentum=0.9,
                          seed=rep, progress=False)
                times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k in ("bare", "replicate"):
        print(f"  {k:9} epoch {med[k]:.3f} s (median of {len(times[k])}), "
              f"{len(ds.x_train) / med[k]:,.0f} samples/s")
    print(f"  ratio replicate / bare: {med['replicate'] / med['bare']:.3f} (goal <= 1.10)")
    r = lm_loop_ratio(reps=5)
    print(f"char-lstm language model, {r['tokens']:,} tokens of {r['source']}, batch 16 x BPTT 64, clip 0.25:")
    for k in ("bare", "replicate"):
        print(f"  {k:9} epoch {r[k]:.3f} s (median of 5), {r['tokens'] / r[k]:,.0f} tokens/s")
    print(f"  ratio replicate / bare: {r['ratio']:.3f} (goal <= 1.10)")
    print("training step time of each method relative to dense training (batch 64, same loop, interleaved; on a "
          "shared machine the best of the interleaved repeats estimates the idle machine's time, the median shows "
          "the spread):")
    from .methods.dst import kernel_for
    kernel = kernel_for("cpu")
    entries = [(f"DST ({kernel})", _dst(kernel), 1.5)] + ([("DST (eager)", _dst("eager"), None)] if kernel != "eager" else [])
    for label, make, goal in entries + [("sensitivity", _sensitivity, 2.0)]:
        # LeNet-300-100: a whole epoch of the training set per fit (steady-state steps; a fit's fixed costs are
        # spread as in a real run), also reported as seconds per epoch; LeNet-5: 100 steps
        for name, steps in (("lenet300-100", len(ds.x_train) // a.batch_size), ("lenet5-caffe", 100)):
            r = step_ratio(name, make, ds, steps=steps, batch_size=a.batch_size)
            epoch = f" (an epoch of {steps} steps: {r['method_ms'] * steps / 1e3:.1f} s)" if name == "lenet300-100" else ""
            print(f"  {label:16} {name:13} median {r['method_ms']:7.2f} ms vs dense {r['dense_ms']:7.2f} ms: ratio "
                  f"{r['ratio']:.2f}; best of {r['repeats']} {r['best_method_ms']:7.2f} vs {r['best_dense_ms']:7.2f} ms: ratio "
                  f"{r['best_ratio']:.2f}" + (f" (goal <= {goal:g}, on the best-of ratio)" if goal else
                                              " (the reference kernel)") + epoch)
    r = drl_iteration_ratio(ds)
    print(f"DRL (M-FashionNet-S, Rr = 0.5): one iteration of 20 agent + 10 CNN batches of 128 {r['drl_s']:.2f} s "
          f"vs {r['steps']} dense Adam steps {r['dense_s']:.2f} s: ratio {r['ratio']:.2f} (no goal: the agents' "
          "rollouts and PPO updates are the method's own work)")
    r = flop_ratios()
    s, f = r["step_ms"], r["forward_ms"]
    print(f"FLOP (char-sru, random weights): training step {s['FLOP']:.1f} ms vs dense {s['dense']:.1f} ms (ratio "
          f"{s['FLOP'] / s['dense']:.2f}) and vs the factorized model with gates off {s['dense factorized']:.1f} ms (ratio "
          f"{s['FLOP'] / s['dense factorized']:.2f}); exported at half the matrix weights, inference batch 16 x 64: "
          f"{f['exported']:.1f} ms vs dense {f['dense']:.1f} ms (ratio {f['exported'] / f['dense']:.2f}) (no goal: "
          "the gates and the full-rank factors are the method's own work; see notebook flop/08)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
