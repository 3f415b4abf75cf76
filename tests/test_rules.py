"""Every verdict rule reaches each of its outcomes on synthetic inputs, and every claim in the
ledgers has a rule that could have returned its verdict."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from replicate import rules
from replicate.rules import C, D, I, N, S
from replicate.store import repo_root

nan = math.nan

# rule -> [(args, expected verdict)]: together they reach every outcome the rule declares in RULES
CASES = {
    rules.aq_headline: [((40.0, 0.1, 64.0, 0.2), S), ((20.0, 0.1, 64.0, 0.2), C), ((40.0, 1.5, 64.0, 0.2), I),
                        ((nan, 0.1, 64.0, 0.2), I)],
    rules.aq_zero_loss_vs_float: [(([0.6, math.inf],), S), (([0.2, 0.0],), C), (([0.6, 0.2],), I), (([nan],), I)],
    rules.aq_near_sota: [(([0.9, 1.0, 0.85, 2.0],), S), (([0.1, 0.5, 0.7, 0.9],), C), (([0.9, 0.9, 0.1, 0.1],), I),
                         (([],), I)],
    rules.aq_conv_layers: [(([5.0, 6.0],), S), (([3.0, 2.0],), C), (([5.0, 3.0],), I), (([nan],), N)],
    rules.aq_25_iterations: [(([0.97, 1.0],), S), (([0.5, 0.9],), C), (([0.97, 0.5],), I)],
    rules.aq_small_radius: [
        (([dict(small_compression=10, large_compression=20, small_iterations=5, large_iterations=5,
                small_error_change=0.1, large_error_change=0.5)],), S),
        (([dict(small_compression=30, large_compression=20, small_iterations=5, large_iterations=9,
                small_error_change=0.1, large_error_change=0.5)],), C),
        (([dict(small_compression=10, large_compression=20, small_iterations=5, large_iterations=5,
                small_error_change=0.1, large_error_change=0.5),
           dict(small_compression=10, large_compression=20, small_iterations=5, large_iterations=5,
                small_error_change=0.9, large_error_change=0.5)],), I)],
    rules.aq_linearisation: [(([0.1, 0.3],), S), (([0.6, 2.0],), C), (([0.1, 0.7],), I)],
    rules.aq_binarized: [(([(1.5, 1.0)],), S), (([(0.8, 1.0)],), C), (([(1.5, 1.0), (0.8, 1.0)],), I)],
    rules.han_12x: [(([True, True],), S), (([False],), C), (([True, False],), I), (([None],), N)],
    rules.dst_table1: [(([S, S],), S), (([C],), C), (([S, C],), I)],
    rules.dst_dynamics: [(([True, True],), S), (([False, False],), C), (([True, False],), I), (([None],), I)],
    rules.dst_alpha_monotone: [(([[50, 20, 5], [30, 10]],), S), (([[50, 20, 25]],), C), (([[50, nan]],), I)],
    rules.dst_consistent_pattern: [(([0.8, 0.6],), S), (([0.8, -0.1],), C), (([0.8, 0.3],), I), (([nan],), C)],
    rules.dst_exp_wider: [(({"exp": 3.0, "l1": 1.0},), S), (({"exp": 1.0, "l1": 2.0},), C),
                          (({"exp": 2.0, "l1": 2.0},), I), (({"exp": 2.0},), I)],
    rules.dst_activation_sparsity: [(([(60, 50)],), S), (([(40, 50)],), C), (([(60, 50), (40, 50)],), I)],
    rules.dst_reset_wider_alpha: [(([1.0, 0.6],), S), (([0.1],), C), (([1.0, 0.0],), I), (([nan],), N)],
    rules.dst_table2: [(("paper", [(8.0, -0.5)]), S), (("paper", [(12.0, -0.5)]), C), (("paper", [(8.0, -1.5)]), C),
                       (("paper", [(nan, 0.0)]), I), (("cpu", [(8.0, -0.5)]), N)],
    rules.dst_lr_decay_jump: [(([True, True],), S), (([False],), C), (([True, False],), I), (([None],), I)],
    rules.sens_twice_sparsity: [(([2.5, 0.8],), S), (([0.9, 1.0],), C), (([1.5],), I), (([nan],), I)],
    rules.documented: [((), D)],
    rules.sens_generalization: [(([True],), S), (([False],), C), (([True, False],), I)],
    rules.sens_optimizers: [(([True, True],), S), (([False, False],), C), (([True, False],), I), (([],), I)],
    rules.sens_lambda_t: [(([True],), S), (([False],), C), (([True, False],), I)],
    rules.sens_cost: [(([1.2, 1.9],), S), (([1.2, 2.3],), C), (([],), I)],
    rules.sens_phase_length: [((5, 100), S), ((30, 100), C), ((nan, 100), I), ((None, 100), I)],
    rules.sens_input_side: [(([True],), S), (([False, False],), C), (([True, False],), I)],
    rules.sens_beyond_weight_decay: [((3, 0), S), ((0, 3), C), ((1, 2), I), ((0, 0), I)],
    rules.sens_conv: [(([True, True],), S), (([False],), C), (([True, False],), I), (([None],), N)],
    rules.sens_rnn: [(([-2.0, -1.5], 0.5), S), (([0.0, 1.0], 0.5), C), (([-2.0, -1.5], 2.0), I),
                     (([-2.0, 0.5], 0.5), I)],
    rules.flop_vs_agp: [(([(0.5, 0.51, 1.90, 1.91), (0.7, 0.7, 2.00, 1.99)],), S),
                        (([(0.5, 0.5, 2.10, 1.90)],), C), (([(0.5, 0.5, 1.90, 1.95), (0.7, 0.7, 2.30, 2.00)],), I),
                        (([(0.5, 0.45, 1.90, 2.00), (0.7, 0.7, nan, 2.0)],), I)],
    rules.flop_beats_small_dense: [(([(0.5, 0.5, 2.0, 2.1)],), S), (([(0.5, 0.5, 2.2, 2.1), (0.7, 0.7, 2.4, 2.2)],), C),
                                   (([(0.5, 0.5, 2.0, 2.01)],), I), (([(0.5, 0.5, 2.0, 2.1), (0.7, 0.7, 2.4, 2.2)],), I),
                                   (([(0.5, 0.4, 2.0, 2.1), (0.7, 0.7, nan, 2.0)],), I)],
    rules.flop_hits_target: [(([(0.5, 0.51), (0.9, 0.885)],), S), (([(0.5, 0.45), (0.9, None)],), C),
                             (([(0.5, 0.5), (0.9, 0.85)],), I), (([],), I)],
    rules.l0_length_drift: [(([(0.3, 0.4), (0.6, 0.7)],), S), (([(0.3, 0.31)],), C),
                            (([(0.3, 0.4), (0.6, 0.61)],), I), (([(0.99, 1.0), (nan, 0.5)],), I)],
    rules.flop_exported_faster: [(([0.5, 0.85],), S), (([0.95, 1.2],), C), (([0.5, 0.95],), I), (([nan],), I)],
    rules.drl_learned_vs_uniform: [(([0.5, 1.0], 0.2), S), (([0.5, -1.0], 0.2), C), (([0.5, 0.1], 0.2), I),
                                   (([nan, 1.0], 0.2), I)],
    rules.drl_tradeoff: [(({0.0: 90.0, 0.5: 91.0, 1.0: 92.0}, {0.0: 0.3, 0.5: 0.8, 1.0: 1.2}), S),
                         (({0.0: 91.0, 0.5: 90.0, 1.0: 92.0}, {0.0: 0.3, 0.5: 0.8, 1.0: 1.2}), C),
                         (({0.0: 90.0, 0.5: 91.0, 1.0: 92.0}, {0.0: 0.3, 0.5: 1.05, 1.0: 1.2}), C),
                         (({0.0: 90.0, 0.5: 91.0, 1.0: 92.0}, {0.0: 0.3, 0.5: 0.8, 1.0: 0.7}), C),
                         (({0.0: 90.0, 0.5: 90.1, 1.0: 92.0}, {0.0: 0.3, 0.5: 0.8, 1.0: 1.2}), I),
                         (({0.0: 90.0, 0.5: nan, 1.0: 92.0}, {0.0: 0.3, 0.5: 0.8, 1.0: 1.2}), I)],
    rules.drl_printed_counts: [(([(0.297, 0.3, 1), (1.112, 1.11, 2)],), S), (([(0.42, 0.3, 1)],), C),
                               (([(0.22, 0.3, 1)],), I), (([(nan, 0.3, 1)],), I), (([],), I)],
    rules.drl_lr_ablation: [((85.0, 10.0, [84.0, 86.5, 83.5]), S), ((85.0, 80.0, [84.0]), C),
                            ((85.0, 10.0, [84.0, 82.0]), C), ((85.0, 30.0, [84.0]), I), ((85.0, nan, [84.0]), I),
                            ((85.0, 10.0, []), I), ((30.0, 10.0, [31.0]), I),
                            ((85.0, nan, [84.0], 2.0, 20.0, 50.0, True), S)],
    rules.drl_table3_accuracy: [((-1.0, -2.5, 1.9, 2.0), S), ((-2.5, -1.0, 1.9, 2.0), C), ((-1.0, -1.1, 1.9, 2.0), I),
                                ((-1.0, -2.5, 1.5, 2.0), I), ((None, -2.5, 1.9, 2.0), N)],
    rules.drl_table3_storage: [((0.8, 1.1), S), ((1.05, 1.1), C), ((0.8, 0.7), C), ((0.8, 0.9), I), ((0.8, None), N)],
    rules.drl_beats_fbs: [(([0.5, 1.2], 0.2), S), (([0.5, -0.3], 0.2), C), (([0.5, 0.1], 0.2), I),
                          (([0.5, nan], 0.2), I), (([], 0.2), I)],
    rules.drl_monotone_rr: [(({0: 90.0, 0.5: 90.1, 1: 91.0}, {0: 0.3, 0.5: 0.8, 1: 1.2}, 0.2), S),
                            (({0: 90.0, 0.5: 89.5, 1: 91.0}, {0: 0.3, 0.5: 0.8, 1: 1.2}, 0.2), C),
                            (({0: 90.0, 0.5: 90.1, 1: 91.0}, {0: 0.3, 0.5: 0.3, 1: 1.2}, 0.2), C),
                            (({0: 90.0, 0.5: 90.1, 1: 90.1}, {0: 0.3, 0.5: 0.8, 1: 1.2}, 0.2), I),
                            (({0: 90.0, 1: nan}, {0: 0.3, 1: 1.2}, 0.2), I)],
    rules.drl_wallclock: [(([{"dense": 10, "masked": 12, "drl rr=0.5": 8}, {"dense": 100, "masked": 100, "drl rr=0.5": 60}],), S),
                          (([{"dense": 10, "masked": 12, "drl rr=0.5": 12.5}],), C),
                          (([{"dense": 10, "masked": 5, "drl rr=0.5": 4}],), C),
                          (([{"dense": 10, "masked": 12, "drl rr=0.5": 11.5}],), I),
                          (([{"dense": 10, "masked": 12}],), I), (([],), I)],
    rules.drl_learned_ratios: [(([(0.2, 0.24, 0.25), (0.1, 0.5, 0.49)],), S), (([(0.01, 0.24, 0.25)],), C),
                               (([(0.2, 0.4, 0.25)],), C), (([(0.2, 0.24, 0.25), (0.0, 0.2, 0.25)],), I),
                               (([(nan, 0.2, 0.25)],), I), (([],), I)],
    rules.not_testable: [((), N)],
    rules.combine: [(([True],), S), (([False],), C), (([True, False],), I), (([],), N)],
}


@pytest.mark.parametrize("pattern", sorted(rules.RULES))
def test_every_declared_outcome_is_reached(pattern):
    rule, outcomes = rules.RULES[pattern]
    assert rule in CASES, f"no synthetic cases for {rule.__name__}"
    reached = set()
    for args, expected in CASES[rule]:
        got = rule(*args)
        assert got == expected, (rule.__name__, args, got, expected)
        reached.add(got)
    assert reached == set(outcomes), f"{rule.__name__}: reached {sorted(reached)}, declares {sorted(outcomes)}"


def test_rules_with_both_verdicts_can_flip():
    # every rule that can support a claim can also contradict it (or is a fixed, labelled outcome)
    for pattern, (rule, outcomes) in rules.RULES.items():
        assert (S in outcomes) == (C in outcomes), pattern


def test_per_case_helpers():
    assert rules.han_reached(1.0, 0.1, 1.15, 3) is True
    assert rules.han_reached(1.0, 0.1, 1.5, 3) is False
    assert rules.han_reached(1.0, 0.1, 1.5, 1) is None
    assert rules.dst_table1_case(0.1, [(0.3, 5.0)]) == S
    assert rules.dst_table1_case(0.1, [(2.0, 5.0), (1.0, 3.0)]) == C
    assert rules.dst_table1_case(0.1, [(0.3, 15.0)]) == I
    assert rules.dst_table1_case(0.1, []) == I
    assert rules.dst_lr_decay_case(0.8, 0.0) is True
    assert rules.dst_lr_decay_case(0.1, 0.0) is False      # too small a rise
    assert rules.dst_lr_decay_case(0.5, 0.6) is False      # no larger than at the low lr
    assert rules.dst_lr_decay_case(math.nan, 0.0) is None
    assert rules.sens_conv_case(30.0, 0.5) is True
    assert rules.sens_conv_case(60.0, 0.5) is False
    assert rules.sens_conv_case(30.0, 2.0) is None
    assert rules.differs_from_weight_decay(1.0, 1.5, 0.1, 0.1, 4.0, 4.0) is True      # error gap 0.5 > 0.2
    assert rules.differs_from_weight_decay(1.0, 1.1, 0.1, 0.1, 4.0, 4.2) is False
    assert rules.differs_from_weight_decay(1.0, 1.1, 0.1, 0.1, 4.0, 6.0) is True      # compression x1.5
    assert rules.differs_from_weight_decay(1.0, 1.1, 0.1, 0.1, 10.0, 7.0, size="remaining") is True


def test_every_ledger_claim_has_a_rule_that_could_give_its_verdict():
    root = repo_root()
    seen = 0
    for path in sorted((root / "results" / "claims").glob("*.csv")):
        for row in pd.read_csv(path, dtype=str, keep_default_na=False).itertuples():
            entry = rules.rule_for(row.claim_id)
            assert entry is not None, f"{path.name}: claim {row.claim_id} has no rule in replicate/rules.py"
            assert row.verdict in entry[1], (row.claim_id, row.verdict, entry[1])
            seen += 1
    assert seen >= 30


def test_notebooks_take_verdicts_from_rules():
    # a verdict typed into a notebook could not have gone the other way: every verdict comes from a rule
    import json
    import re

    literal = re.compile(r"""["'](supported|contradicted|inconclusive|not testable here|documented)["']""")
    for path in sorted((repo_root() / "notebooks").rglob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                src = "".join(cell["source"])
                assert not literal.search(src), f"{path.name}: a verdict literal in a code cell: {literal.search(src).group(0)}"


def test_printed_agreement_bands():
    assert rules.printed_agreement(3.934, 3.93, 2) == "agrees"
    assert rules.printed_agreement(3.94, 3.93, 2) == "near"
    assert rules.printed_agreement(3.96, 3.93, 2) == "differs"
    assert rules.printed_agreement(174.3, 174, 0) == "agrees"
    assert rules.printed_agreement(None, 1.0, 1) == "unmeasured"


def test_equal_error_ratio_picks_the_largest_magnitude_compression_no_less_accurate():
    from replicate.studies.sensitivity import equal_error_ratio

    points = [(4.0, 0.1), (8.0, 0.3), (16.0, 1.0)]
    assert equal_error_ratio(12.0, 0.3, points) == (1.5, 8.0)          # 8x at +0.3 qualifies, 16x at +1.0 does not
    assert equal_error_ratio(3.0, 0.0, points) == (3.0, 1.0)           # only the dense model is as accurate
    r, against = equal_error_ratio(3.0, -0.5, points)                  # nothing as accurate: no ratio
    assert math.isnan(r) and math.isnan(against)
