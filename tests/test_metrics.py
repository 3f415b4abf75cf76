import torch
from torch import nn

from replicate import metrics, models


def test_counts_and_compression_on_a_hand_built_model():
    m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1., 0, 0, 2], [0, 0, 0, 0], [3, 0, 0, 0]]))  # 3 of 12 non-zero
        m[2].weight.copy_(torch.tensor([[1., 1, 0], [0, 0, 1]]))                      # 3 of 6
    s = metrics.summarize(m, (4,))
    assert s["weights"] == 18 and s["nonzero"] == 6
    assert s["compression"] == 3.0
    assert s["params_with_biases"] == 18 + 5
    assert s["layers"]["0"]["remaining"] == 0.25
    assert s["dense_macs"] == 12 + 6
    assert s["effective_macs"] == 3 + 3
    # CSR: 3 values + 3 column indices + 4 row pointers, 32 bits each, plus 3 biases.
    assert s["layers"]["0"]["sparse_bytes"] == (3 * 8 + 4 * 4) + 3 * 4
    assert s["layers"]["0"]["dense_bytes"] == 4 * 15


def test_dense_macs_of_the_lenets():
    assert metrics.summarize(models.build("lenet300-100"), (1, 28, 28))["dense_macs"] == 266_200
    # conv1 24*24*20*25 + conv2 8*8*50*500 + fc 800*500 + 500*10
    lenet5 = metrics.summarize(models.build("lenet5-caffe"), (1, 28, 28))
    assert lenet5["dense_macs"] == 288_000 + 1_600_000 + 400_000 + 5_000
    assert lenet5["theoretical_speedup"] == 1.0


def test_latency_helper_reports_a_median():
    out = metrics.latency(lambda: sum(range(100)), warmup=1, repeats=5)
    assert out["repeats"] == 5 and out["min_s"] <= out["median_s"] <= out["max_s"]


def test_activation_stats_counts_macs_exactly():
    from replicate.metrics import activation_stats
    lin = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]]))
    x = torch.tensor([[1.0, 5.0, 0.0], [0.0, 0.0, 0.0], [2.0, 0.0, 3.0]])
    s = activation_stats(nn.Sequential(lin), x)["0"]
    assert s["zero_input_frac"] == 5 / 9
    assert s["macs_dense"] == 6 and s["macs_weight_sparse"] == 2
    # sample 1: x0 with w00 -> 1 MAC; sample 2: none; sample 3: x0*w00 and x2*w02 -> 2 MACs
    assert s["macs_weight_and_activation"] == 1.0
    assert s["dead_rows"] == 1 and s["never_active_inputs"] == 0 and s["dead_rows_positive_bias"] == 0
    lin.bias = nn.Parameter(torch.tensor([-1.0, 0.5]))
    assert activation_stats(nn.Sequential(lin), x)["0"]["dead_rows_positive_bias"] == 1


def test_activation_stats_conv_matches_brute_force():
    from replicate.metrics import activation_stats
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    with torch.no_grad():
        conv.weight.mul_((torch.rand_like(conv.weight) > 0.5).float())
    x = torch.relu(torch.randn(4, 2, 5, 5))
    s = activation_stats(nn.Sequential(conv), x)["0"]
    xp = nn.functional.pad(x, (1, 1, 1, 1))
    brute = 0
    for i in range(5):
        for j in range(5):
            patch = xp[:, :, i:i + 3, j:j + 3] != 0  # (N, C, 3, 3)
            brute += int((patch.unsqueeze(1) & (conv.weight != 0).unsqueeze(0)).sum())
    assert s["macs_weight_and_activation"] == brute / 4
    assert s["macs_dense"] == 25 * 3 * 18
    assert s["zero_input_frac"] == int((x == 0).sum()) / x.numel()
