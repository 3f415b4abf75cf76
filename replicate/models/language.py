"""Language models: token ids in, next-token scores out.

A language model's forward takes (tokens (B, T), hidden state or None) and
returns (logits (B, T, V), hidden state), which is what the language-model task
(replicate.tasks.language_model) carries from one BPTT window to the next.
"""
from __future__ import annotations

import torch
from torch import nn


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
