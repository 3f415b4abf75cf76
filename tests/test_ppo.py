"""PPO pieces (replicate.rl.ppo): GAE by hand, the clipped objective's gradient, a toy bandit."""
import math

import pytest
import torch

from replicate.rl import ppo


def test_gae_matches_a_hand_computed_sequence_with_an_episode_boundary():
    # gamma = 0.9, lam = 0.8 (so gamma * lam = 0.72); step 1 ends an episode.
    rewards = [1.0, 2.0, 3.0, 4.0]
    values = [0.5, 1.0, 1.5, 2.0]
    dones = [0, 1, 0, 0]
    last_value = 2.5
    # t=3: delta = 4 + 0.9*2.5 - 2.0 = 4.25;            A3 = 4.25
    # t=2: delta = 3 + 0.9*2.0 - 1.5 = 3.3;             A2 = 3.3 + 0.72*4.25 = 6.36
    # t=1: done, no bootstrap: delta = 2 - 1.0 = 1.0;   A1 = 1.0 (A2 not carried over the boundary)
    # t=0: delta = 1 + 0.9*1.0 - 0.5 = 1.4;             A0 = 1.4 + 0.72*1.0 = 2.12
    # returns = A + V = [2.62, 2.0, 7.86, 6.25]
    adv, ret = ppo.gae(torch.tensor(rewards, dtype=torch.float64), torch.tensor(values, dtype=torch.float64),
                       dones, last_value, gamma=0.9, lam=0.8)
    assert torch.allclose(adv, torch.tensor([2.12, 1.0, 6.36, 4.25], dtype=torch.float64))
    assert torch.allclose(ret, torch.tensor([2.62, 2.0, 7.86, 6.25], dtype=torch.float64))


def test_gae_handles_parallel_streams_and_a_final_done():
    # Two streams in columns; stream 1 ends at the last step, so last_value is ignored there.
    r = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    v = torch.zeros(2, 2)
    d = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    adv, ret = ppo.gae(r, v, d, torch.tensor([10.0, 10.0]), gamma=0.5, lam=1.0)
    # stream 0: A1 = 1 + 0.5*10 = 6, A0 = 1 + 0.5*6 = 4;  stream 1: A1 = 1, A0 = 1 + 0.5*1 = 1.5
    assert torch.allclose(adv, torch.tensor([[4.0, 1.5], [6.0, 1.0]]))
    assert adv.dtype == torch.float32 and torch.equal(ret, adv)


@pytest.mark.parametrize("ratio, adv, zero", [
    (1.5, 1.0, True),     # above 1 + clip with a positive advantage: the clip binds
    (0.5, -1.0, True),    # below 1 - clip with a negative advantage: the clip binds
    (1.1, 1.0, False),    # inside the interval
    (0.9, -1.0, False),
    (0.5, 1.0, False),    # outside, but the unclipped term is the minimum: still learning
    (1.5, -1.0, False),
])
def test_clipped_objective_gradient_vanishes_only_where_the_clip_binds(ratio, adv, zero):
    old = torch.tensor([0.3], dtype=torch.float64)
    new = (old + math.log(ratio)).requires_grad_(True)
    ppo.clipped_policy_loss(new, old, torch.tensor([adv], dtype=torch.float64), clip=0.2).backward()
    if zero:
        assert new.grad.item() == 0.0
    else:   # d/dnew of -ratio * adv = -ratio * adv
        assert new.grad.item() == pytest.approx(-ratio * adv)


def test_value_loss_clips_pessimistically():
    ret = torch.tensor([1.0])
    assert ppo.value_loss(torch.tensor([0.0]), ret, clip=None).item() == pytest.approx(0.5)
    # new value jumped from 0 to 2 (error 1); the clipped value 0.2 has error 0.8: the larger counts
    assert ppo.value_loss(torch.tensor([2.0]), ret, torch.tensor([0.0]), clip=0.2).item() == pytest.approx(0.5)
    # new value 0.9 from old 0 (error 0.1); clipped 0.2 has error 0.8: the larger counts
    assert ppo.value_loss(torch.tensor([0.9]), ret, torch.tensor([0.0]), clip=0.2).item() == pytest.approx(0.32)


def test_gaussian_head_log_prob_and_entropy_match_torch():
    torch.manual_seed(0)
    head = ppo.GaussianHead(4, act_dim=2, log_std_init=-1.0, state_dependent_std=True)
    h, a = torch.randn(5, 4), torch.randn(5, 2)
    mu, log_std = head(h, offset=torch.full((5, 1), 0.5))
    dist = torch.distributions.Normal(mu, log_std.exp())
    assert torch.allclose(head.log_prob(mu, log_std, a), dist.log_prob(a).sum(-1), atol=1e-6)
    assert torch.allclose(head.entropy(log_std), dist.entropy().sum(-1), atol=1e-6)
    assert torch.allclose(head.log_std.bias, torch.full((2,), -1.0))


def _bandit(seed: int):
    """1-D Gaussian action, reward -(a - 0.7)^2, one-step episodes; returns the final mean action."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    head = ppo.GaussianHead(1, act_dim=1, log_std_init=math.log(0.5))
    baseline = torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.Adam([*head.parameters(), baseline], lr=0.03)
    obs = torch.ones(256, 1)        # a constant observation: a bandit
    for _ in range(20):
        with torch.no_grad():
            mu, log_std = head(obs)
            a = head.sample(mu, log_std, gen)
            logp = head.log_prob(mu, log_std, a)
            r = -(a[:, 0] - 0.7) ** 2
            v = baseline.expand(256).clone()
        adv, ret = ppo.gae(r, v, torch.ones(256), 0.0)     # every step ends its episode: A = r - V
        rollout = {"obs": obs, "actions": a, "logp": logp, "values": v, "advantages": adv, "returns": ret}

        def evaluate(mb):
            mu, log_std = head(mb["obs"])
            return (head.log_prob(mu, log_std, mb["actions"]), head.entropy(log_std),
                    baseline.expand(mb["obs"].shape[0]))
        ppo.update(evaluate, opt, rollout, epochs=4, minibatch=64, generator=gen)
    with torch.no_grad():
        return head(torch.ones(1, 1))[0].item()


def test_ppo_learns_a_continuous_bandit_deterministically():
    torch.set_num_threads(1)
    mean = _bandit(0)
    assert abs(mean - 0.7) < 0.1, mean
    assert _bandit(0) == mean     # seeded: the same run twice gives the same policy
