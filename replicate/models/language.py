"""Language models: token ids in, next-token scores out.

A language model's forward takes (tokens (B, T), hidden state or None) and
returns (logits (B, T, V), hidden state), which is what the language-model task
(replicate.tasks.language_model) carries from one BPTT window to the next.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


class CharLSTM(nn.Module):
    """A small character-level LSTM language model: embedding -> one LSTM layer ->
    a linear decoder over the vocabulary. Like RowGRU, the gates are two Linear
    layers (`ih`, `hh`; gate order input, forget, cell, output as in nn.LSTM), so
    pruning and the size metrics see the recurrent matrices. The embedding is not
    counted as prunable. forward(tokens (B, T), hidden) -> (logits (B, T, V), hidden)."""

    def __init__(self, vocab: int, embed: int = 32, hidden: int = 128):
        super().__init__()
        self.hidden = hidden
        self.embed = nn.Embedding(vocab, embed)
        self.ih = nn.Linear(embed, 4 * hidden)
        self.hh = nn.Linear(hidden, 4 * hidden, bias=False)
        self.out = nn.Linear(hidden, vocab)
        bound = hidden ** -0.5   # nn.LSTM's initialisation for the recurrent parameters
        for p in (*self.ih.parameters(), *self.hh.parameters()):
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x, hidden=None):
        gx = self.ih(self.embed(x))                           # all steps' input terms at once
        if hidden is None:
            zeros = gx.new_zeros(x.shape[0], self.hidden)
            hidden = (zeros, zeros)
        h, c = hidden
        outs = []
        for t in range(x.shape[1]):
            i, f, g, o = (gx[:, t] + self.hh(h)).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(h)
        return self.out(torch.stack(outs, 1)), (h, c)


class LowRankLinear(nn.Module):
    """x -> p(q(x)): a linear map of rank at most `rank` held as two nn.Linear layers (`q`: d_in -> rank, no
    bias; `p`: rank -> d_out, no bias), the official FLOP code's ProjectedLinear. FLOP's factorize() gates
    its inner dimension directly (the factors as trained, no SVD), and its dense size is its own
    (d_in + d_out) rank weights; magnitude pruning sees the two nn.Linear layers. `low_rank = True` is
    how the methods recognise it (they do not import the models)."""

    low_rank = True

    def __init__(self, in_features: int, rank: int, out_features: int):
        super().__init__()
        self.in_features, self.rank, self.out_features = in_features, rank, out_features
        self.q = nn.Linear(in_features, rank, bias=False)
        self.p = nn.Linear(rank, out_features, bias=False)

    def forward(self, x):
        return self.p(self.q(x))


class SRULayer(nn.Module):
    """One simple recurrent unit (Lei, Zhang, Wang, Dai & Artzi, EMNLP 2018), the recurrent layer of the FLOP
    paper's character models. All of a window's matrix products happen at once, before the recurrence:

        [x~_t, u_f, u_r] = W x_t                       (one nn.Linear `w`, d -> 3d, no bias)
        f_t = sigmoid(u_f + v_f * c_{t-1} + b_f)        (element-wise; v and b are vectors)
        r_t = sigmoid(u_r + v_r * c_{t-1} + b_r)
        c_t = f_t * c_{t-1} + (1 - f_t) * x~_t
        h_t = r_t * c_t + (1 - r_t) * x_t               (highway connection: input and state widths are equal)

    so the only weight matrix is `w`, applied once per window: a gated or factorized `w` draws one gate
    sample per window, as in the official FLOP code's SRU.

    Two options give the paper's enwik8 layers: an input width `d_in` other than d (the first layer reads
    the embedding) makes `w` d_in -> 4d, its fourth block the highway's input in place of x_t; `proj`
    makes `w` a LowRankLinear d_in -> proj -> 3d (the official code's ProjectedLinear, trained factorized
    from the start). `highway_bias` initialises b_r (the official default is -3)."""

    def __init__(self, d: int, d_in: int | None = None, proj: int | None = None, highway_bias: float = 0.0):
        super().__init__()
        self.d, self.d_in = d, d_in or d
        k = 3 if self.d_in == d else 4
        self.w = LowRankLinear(self.d_in, proj, k * d) if proj else nn.Linear(self.d_in, k * d, bias=False)
        self.v = nn.Parameter(torch.zeros(2, d))      # v_f, v_r
        self.b = nn.Parameter(torch.zeros(2, d))      # b_f, b_r
        with torch.no_grad():
            self.b[1].fill_(highway_bias)
        for w in ([self.w.q.weight, self.w.p.weight] if proj else [self.w.weight]):
            bound = (3 / w.shape[1]) ** 0.5           # variance 1 / fan-in, the SRU paper's initialisation
            nn.init.uniform_(w, -bound, bound)

    def forward(self, x, c=None):
        u = self.w(x)
        if self.d_in == self.d:
            xt, uf, ur = u.chunk(3, -1)               # (B, T, d) each
        else:
            xt, uf, ur, x = u.chunk(4, -1)            # the fourth block is the highway's input
        c = x.new_zeros(x.shape[0], self.d) if c is None else c
        vf, vr = self.v
        uf = uf + self.b[0]
        states = [c]
        for t in range(x.shape[1]):                   # only the forget gate needs the previous state in the loop
            f = torch.sigmoid(torch.addcmul(uf[:, t], vf, c))
            c = xt[:, t] + f * (c - xt[:, t])         # f c + (1 - f) x~
            states.append(c)
        cs = torch.stack(states, 1)                   # c_0 .. c_T
        r = torch.sigmoid(ur + vr * cs[:, :-1] + self.b[1])   # r_t from c_{t-1}, for all steps at once
        return x + r * (cs[:, 1:] - x), c             # r c + (1 - r) x


def recur(layers, h, hidden=None):
    """`h` through a stack of recurrent layers, each with its carried state (None: zeros); (output, states)."""
    hidden = hidden or (None,) * len(layers)
    states = []
    for layer, c in zip(layers, hidden):
        h, c = layer(h, c)
        states.append(c)
    return h, tuple(states)


class CharSRU(nn.Module):
    """A character-level SRU language model: embedding (width d) -> `layers` SRU layers of width d -> a linear
    decoder over the vocabulary. Its weight matrices are nn.Linear layers (`rnn.<i>.w`, `out`), each applied
    once per window, so pruning, factorization and the size metrics see them. The embedding is not prunable.
    forward(tokens (B, T), hidden: one state per layer or None) -> (logits (B, T, V), hidden)."""

    def __init__(self, vocab: int, d: int = 256, layers: int = 2, proj: int | None = None, dropout: float = 0.0,
                 highway_bias: float = 0.0):
        super().__init__()
        if proj is None:
            self.embed = nn.Embedding(vocab, d)
            self.rnn = nn.ModuleList(SRULayer(d, highway_bias=highway_bias) for _ in range(layers))
        else:   # the paper's layout: an embedding as wide as the vocabulary, then layers 2.. projected
            e = min(vocab, d)
            self.embed = nn.Embedding(vocab, e)
            self.rnn = nn.ModuleList([SRULayer(d, d_in=e, highway_bias=highway_bias)]
                                     + [SRULayer(d, proj=proj, highway_bias=highway_bias) for _ in range(layers - 1)])
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(d, vocab)

    def forward(self, x, hidden=None):
        h, states = recur(self.rnn, self.drop(self.embed(x)), hidden)
        return self.out(self.drop(h)), states


# The FLOP paper's enwik8 SRU, from the official script's defaults (n_d 3056, depth 6, n_proj 512, dropout 0.1,
# highway bias -3): about 34.5M parameters at enwik8's 205 byte values (the brief's arithmetic).
PAPER_SRU = {"d": 3056, "layers": 6, "proj": 512, "dropout": 0.1, "highway_bias": -3.0}


def alibi_slopes(heads: int) -> torch.Tensor:
    """ALiBi's per-head slopes (Press, Smith & Lewis, ICLR 2022): 2^(-8 i / heads) for i = 1 .. heads."""
    return torch.tensor([2.0 ** (-8.0 * i / heads) for i in range(1, heads + 1)])


class TransformerBlock(nn.Module):
    """One pre-LayerNorm causal transformer layer whose six weight matrices are nn.Linear layers (`q`, `k`,
    `v`, `o` for attention, `fc1`, `fc2` for the feed-forward part), so FLOP factorizes and gates each of
    them and the size metrics see them (nn.MultiheadAttention would hide its projections in one tensor).

    Attention reads this window and, when given, the previous window's normalised inputs (`mem`, the
    Transformer-XL segment recurrence; the language-model task carries and detaches it like an RNN's
    state). Positions enter as ALiBi's linear distance penalty per head instead of Transformer-XL's
    relative sinusoid terms: it needs no parameters and works across the window boundary.
    forward(x (B, T, d), mem (B, M, d) or None) -> (x (B, T, d), this window's normalised input)."""

    def __init__(self, d: int, heads: int, ffn: int, dropout: float = 0.0):
        super().__init__()
        if d % heads:
            raise ValueError(f"the width d={d} must be a multiple of the number of heads ({heads})")
        self.heads, self.p = heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.drop = nn.Dropout(dropout)
        self.register_buffer("slopes", alibi_slopes(heads), persistent=False)

    def forward(self, x, mem=None):
        h = self.ln1(x)
        ctx = h if mem is None else torch.cat([mem, h], 1)
        b, t, d = h.shape
        m = ctx.shape[1] - t

        def heads(z):
            return z.view(b, z.shape[1], self.heads, d // self.heads).transpose(1, 2)

        q, k, v = heads(self.q(h)), heads(self.k(ctx)), heads(self.v(ctx))
        i = torch.arange(m, m + t, device=x.device)[:, None]          # query positions, after the memory
        j = torch.arange(m + t, device=x.device)[None, :]             # key positions
        bias = (-(i - j).to(h.dtype) * self.slopes.to(h.dtype)[:, None, None]).masked_fill(j > i, float("-inf"))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=self.p if self.training else 0.0)
        x = x + self.drop(self.o(a.transpose(1, 2).reshape(b, t, d)))
        return x + self.drop(self.fc2(self.drop(F.gelu(self.fc1(self.ln2(x)))))), h


class CharTransformer(nn.Module):
    """A character-level causal transformer language model, the stand-in for the FLOP paper's enwik8
    Transformer-XL: embedding (width d) -> `layers` TransformerBlocks -> LayerNorm -> a linear decoder.
    With `memory` (default) each layer also attends to the previous window's states, carried as the
    hidden state, so the context reaches back one window further (Transformer-XL's recurrence with a
    memory as long as the window); without it each window stands alone. Weights start from N(0, 0.02).
    forward(tokens (B, T), hidden: one memory per layer or None) -> (logits (B, T, V), hidden)."""

    def __init__(self, vocab: int, d: int = 128, layers: int = 2, heads: int = 4, ffn: int = 512,
                 dropout: float = 0.0, memory: bool = True):
        super().__init__()
        self.memory = memory
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(TransformerBlock(d, heads, ffn, dropout) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(d, vocab)
        for mod in self.modules():
            if isinstance(mod, (nn.Linear, nn.Embedding)):
                nn.init.normal_(mod.weight, 0.0, 0.02)
                if getattr(mod, "bias", None) is not None:
                    nn.init.zeros_(mod.bias)

    def forward(self, x, hidden=None):
        h = self.drop(self.embed(x))
        mems = hidden if (self.memory and hidden is not None) else (None,) * len(self.blocks)
        states = []
        for block, mem in zip(self.blocks, mems):
            h, state = block(h, mem)
            states.append(state)
        return self.out(self.drop(self.ln(h))), (tuple(states) if self.memory else None)


# The Transformer-XL paper's enwik8 base configuration (12 layers, d 512, 8 heads, FFN 2048, dropout 0.1): the
# FLOP paper prunes a Transformer-XL on enwik8 whose settings could not be read offline, so this is a guess.
PAPER_TRANSFORMER = {"d": 512, "layers": 12, "heads": 8, "ffn": 2048, "dropout": 0.1}


class AdaptiveEmbedding(nn.Module):
    """Adaptive input embeddings (Baevski & Auli 2019), the word models' embedding in the FLOP paper: the
    vocabulary, sorted by frequency, is cut at `cutoffs` into clusters; cluster i embeds its words in
    d_embed / div**(i // div_freq) dimensions (d_embed defaults to d, div_freq to 1: d / div**i) and projects
    them up to d with its own nn.Linear (`projs.<i>`, no bias), so rare
    words cost fewer parameters. FLOP factorizes and gates the projections: the kept rank of `projs.<i>` is
    the width cluster i keeps. forward(ids (...)) -> (..., d)."""

    def __init__(self, vocab: int, d: int, cutoffs, div: float = 4.0, d_embed: int | None = None, div_freq: int = 1,
                 head_rows: int = 0, scale: bool = False):
        super().__init__()
        bounds = (0, *cutoffs, vocab)
        if any(b >= c for b, c in zip(bounds, bounds[1:])):
            raise ValueError(f"cutoffs must increase strictly between 0 and the vocabulary size {vocab}; got {list(cutoffs)}")
        self.bounds, self.d = bounds, d
        # scale: outputs times sqrt(d), as the official code's embedding does (Transformer-XL's emb_scale)
        self.scale = float(d) ** 0.5 if scale else None
        base = d if d_embed is None else d_embed      # cluster i's width: base / div^(i // div_freq)
        dims = [max(1, int(base // div ** (i // div_freq))) for i in range(len(bounds) - 1)]
        # head_rows: extra rows of cluster 0's table that no input looks up: a tied softmax's cluster tokens
        rows = [hi - lo + (head_rows if i == 0 else 0) for i, (lo, hi) in enumerate(zip(bounds, bounds[1:]))]
        self.embeds = nn.ModuleList(nn.Embedding(n, k) for n, k in zip(rows, dims))
        self.projs = nn.ModuleList(nn.Linear(k, d, bias=False) for k in dims)

    def forward(self, x):
        out = torch.zeros(*x.shape, self.d, device=x.device, dtype=next(self.parameters()).dtype)
        for lo, hi, embed, proj in zip(self.bounds, self.bounds[1:], self.embeds, self.projs):
            sel = (x >= lo) & (x < hi)
            if sel.any():
                out[sel] = proj(embed(x[sel] - lo))
        return out * self.scale if self.scale is not None else out


class TiedAdaptiveLogSoftmax(nn.Module):
    """An adaptive softmax (Grave et al. 2017, in Transformer-XL's projected form) that shares an
    AdaptiveEmbedding's tables and projections, as the official FLOP WikiText-103 script ties them: for
    cluster i, logits = E_i (P_i^T h) + b_i, with E_i the embedding's table `embeds.<i>` (|V_i| x k_i) and
    P_i its projection `projs.<i>` (d x k_i); the head is cluster 0's words plus one token per tail cluster,
    whose rows are the extra `head_rows` rows of table 0, so they share cluster 0's width. It owns only the
    biases. When FLOP gates the clusters' widths (flop_gates.WidthGated around `embeds.<i>`), P_i^T h is
    multiplied by a sample of the same gates (the official code shares the mask modules; each side draws its
    own sample in training), so one gate removes a dimension from both directions. The embedding is held
    by reference, not as a submodule: its parameters belong to the model once.
    log_prob(h (N, d)) -> (N, V) log-probabilities; forward(h, targets (N,)) -> the targets' log-probabilities,
    scoring each tail only for the rows whose target falls in it."""

    tied_to_embedding = True      # what flop_gates.factorize checks (a tied model's clusters need clusters=True)

    def __init__(self, embed: AdaptiveEmbedding, dropout: float = 0.0):
        super().__init__()
        object.__setattr__(self, "_embed", embed)
        self.bounds = embed.bounds
        self.n_tails = len(self.bounds) - 2
        if embed.embeds[0].num_embeddings != self.bounds[1] + self.n_tails:
            raise ValueError(f"a tied softmax needs cluster 0's table to hold {self.n_tails} extra row(s) for the "
                             "tail clusters' tokens (AdaptiveEmbedding(head_rows=...))")
        sizes = [hi - lo + (self.n_tails if i == 0 else 0) for i, (lo, hi) in enumerate(zip(self.bounds, self.bounds[1:]))]
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(n)) for n in sizes)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()

    def _logits(self, h, i):
        table, proj = self._embed.embeds[i], self._embed.projs[i]
        gates = getattr(table, "gates", None)          # flop_gates.WidthGated: the gated table is `first`
        table = getattr(table, "first", table)
        if type(proj) is not nn.Linear or not isinstance(table, nn.Embedding):
            raise ConfigError(f"the tied softmax reads cluster {i}'s table and projection as plain matrices, found "
                              f"{type(table).__name__} and {type(proj).__name__}: prune a tied word model's clusters "
                              "with flop clusters=True (the official scheme), which leaves them plain")
        p = F.linear(h, proj.weight.t())
        if gates is not None:
            p = p * gates(p.shape[:-1])
        return F.linear(self.drop(p), table.weight, self.biases[i])

    def log_prob(self, h):
        head = torch.log_softmax(self._logits(h, 0), -1)
        v0 = self.bounds[1]
        parts = [head[:, :v0]]
        for i in range(1, self.n_tails + 1):
            parts.append(torch.log_softmax(self._logits(h, i), -1) + head[:, v0 + i - 1:v0 + i])
        return torch.cat(parts, -1)

    def forward(self, h, targets):
        head = torch.log_softmax(self._logits(h, 0), -1)
        v0 = self.bounds[1]
        out = head.gather(1, targets.clamp(max=v0 - 1)[:, None])[:, 0]
        for i in range(1, self.n_tails + 1):
            lo, hi = self.bounds[i], self.bounds[i + 1]
            rows = ((targets >= lo) & (targets < hi)).nonzero().flatten()
            if len(rows):
                tail = torch.log_softmax(self._logits(h[rows], i), -1)
                picked = tail.gather(1, (targets[rows] - lo)[:, None])[:, 0] + head[rows, v0 + i - 1]
                out = out.index_put((rows,), picked)
        return out


# The official WikiText-103 script's model (examples/wt103/train.py defaults): n_d 2048, depth 6, every SRU layer
# projected through 512 (its ProjectedLinear), dropout 0.1, highway bias -3, an adaptive embedding of base width
# n_e 512 on cutoffs 10k / 20k / 40k / 60k / 100k, divided by 2 every 2 clusters, projected to 2048 and scaled by
# sqrt(2048); its softmax tied to the embedding (same tables, projections and gate parameters: tie=True, our
# TiedAdaptiveLogSoftmax), embedding and softmax parameters initialised uniform in +-0.03 with zero biases.
PAPER_WORD_SRU = {"d": 2048, "layers": 6, "proj": 512, "dropout": 0.1, "highway_bias": -3.0,
                  "cutoffs": (10000, 20000, 40000, 60000, 100000), "div": 2.0, "d_embed": 512, "div_freq": 2,
                  "tie": True, "scale": True}
WORD_CUTOFFS = (2000, 6000)   # kjv_word (12,658 words): the head cluster covers 94 % of the training tokens


def word_cutoffs(vocab: int) -> tuple:
    """The cluster boundaries of the registry's word-sru: WORD_CUTOFFS for a vocabulary of kjv_word's size
    or larger; a smaller one (the smoke profile's sample) is cut at the same fractions of kjv_word's
    vocabulary (2000 / 12658 and 6000 / 12658), so that it still has three clusters."""
    if vocab >= 12658:
        return WORD_CUTOFFS
    cuts = tuple(sorted({max(1, round(vocab * c / 12658)) for c in WORD_CUTOFFS}))
    return tuple(c for c in cuts if 0 < c < vocab - 1)


class WordSRU(nn.Module):
    """A word-level SRU language model with an adaptive embedding and an adaptive softmax (PyTorch's
    nn.AdaptiveLogSoftmaxWithLoss, same cutoffs, div 4): the FLOP paper's WikiText-103 model, small.
    The options give the official script's layout (PAPER_WORD_SRU): an embedding base width `d_embed` other
    than d, halved every `div_freq` clusters, SRU layers projected through `proj`, dropout on the embedding
    and the SRU output, the highway bias, the embedding scaled by sqrt(d) (`scale`), and `tie`: the softmax
    shares the embedding's tables and projections (TiedAdaptiveLogSoftmax; the official initialisation,
    uniform +-0.03, zero biases) instead of PyTorch's untied one.
    Cutoffs at or above the vocabulary are dropped (small vocabularies in tests and the smoke profile).
    forward(tokens (B, T), hidden) -> (log-probabilities (B, T, V), hidden): cross-entropy on them is the
    negative log-likelihood, since they are already normalised."""

    def __init__(self, vocab: int, d: int = 256, layers: int = 2, cutoffs=WORD_CUTOFFS, div: float = 4.0,
                 d_embed: int | None = None, div_freq: int = 1, proj: int | None = None, dropout: float = 0.0,
                 highway_bias: float = 0.0, tie: bool = False, scale: bool = False):
        super().__init__()
        cutoffs = [c for c in cutoffs if 0 < c < vocab - 1]
        self.embed = AdaptiveEmbedding(vocab, d, cutoffs, div, d_embed, div_freq, head_rows=len(cutoffs) if tie else 0,
                                       scale=scale)
        self.rnn = nn.ModuleList(SRULayer(d, proj=proj, highway_bias=highway_bias) for _ in range(layers))
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.tied = bool(tie)
        if tie:
            self.out, self.full = TiedAdaptiveLogSoftmax(self.embed, dropout), None
            with torch.no_grad():
                for p in self.embed.parameters():
                    p.uniform_(-0.03, 0.03)
        else:
            self.out = nn.AdaptiveLogSoftmaxWithLoss(d, vocab, cutoffs, div_value=div) if cutoffs else None
            self.full = nn.Linear(d, vocab) if not cutoffs else None

    def _hidden(self, x, hidden):
        h, states = recur(self.rnn, self.drop(self.embed(x)), hidden)
        return self.drop(h), states

    def forward(self, x, hidden=None):
        h, states = self._hidden(x, hidden)
        if self.out is None:
            return torch.log_softmax(self.full(h), -1), states
        b, t, d = h.shape
        return self.out.log_prob(h.reshape(b * t, d)).view(b, t, -1), states

    def target_log_prob(self, x, targets, hidden=None):
        """(log-probability of each target token (B*T,), hidden): what the loss needs, without the full
        distribution. The adaptive softmax then scores each tail cluster only for the tokens whose target
        falls in it (about 4x faster per training step on kjv_word than forward + cross-entropy); the
        numbers are those of forward's distribution at the targets (tested)."""
        h, states = self._hidden(x, hidden)
        flat, y = h.reshape(-1, h.shape[-1]), targets.reshape(-1)
        if self.out is None:
            return torch.log_softmax(self.full(flat), -1).gather(1, y[:, None])[:, 0], states
        if self.tied:
            return self.out(flat, y), states
        return self.out(flat, y).output, states
