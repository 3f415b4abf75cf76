"""Verdict rules: one function per claim, from the numbers a notebook measured to a verdict.

Each rule was written before its numbers were looked at and is stated in the
claim text exactly as it is tested here. A notebook computes the inputs from
the records (means over seeds, per-case values) and calls the rule; the rule
knows nothing of records, so tests/test_rules.py can drive every rule to each
of its outcomes with synthetic inputs. `RULES` maps every claim id of the
ledgers (results/claims/*.csv) to its rule and the verdicts the rule can
return; a claim id without an entry fails the tests.

Conventions: a per-case outcome is True (the claim holds there), False (it does
not) or None (the case could not be tested: a failed run, a missing value); a
rule with no testable case never returns supported or contradicted.
"""
from __future__ import annotations

import math
import re

from .claims import combine

S, C, I, N, D = "supported", "contradicted", "inconclusive", "not testable here", "documented"


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _case(test, *values):
    """test(*values) as a per-case outcome: None when a value is missing."""
    return None if any(_nan(v) for v in values) else bool(test(*values))


# --- adaptive quantization (Khoram & Li 2018) -----------------------------------------------------

def aq_headline(compression: float, error_change: float, paper_compression: float, paper_error_change: float) -> str:
    """aq-headline-lenet5[-long-base]: supported when the compression is at least half the paper's and the error
    change at most the paper's + 0.5 points; contradicted when the compression is below half the
    paper's; inconclusive otherwise (enough compression at a larger error cost) or when unmeasured."""
    if _nan(compression) or _nan(error_change):
        return I
    if compression >= paper_compression / 2 and error_change <= paper_error_change + 0.5:
        return S
    if compression < paper_compression / 2:
        return C
    return I


def aq_zero_loss_vs_float(ratios) -> str:
    """aq-zero-loss-vs-float: per setting, adaptive / best floating-point compression at no validation
    loss (inf when only adaptive qualifies, 0 when only a float method does, NaN when neither);
    close = ratio >= 0.5; all / none / some close."""
    return combine([_case(lambda r: r >= 0.5, r) for r in ratios], untested=I)


def aq_near_sota(median_ratios) -> str:
    """aq-near-sota-size: per setting, the median ratio adaptive / best competitor at equal or lower
    error; a setting is near or better when it is >= 0.8. Supported when at least 3/4 of the settings
    are, contradicted when at most 1/4 are, inconclusive in between or with no setting."""
    wins = [r >= 0.8 for r in median_ratios if not _nan(r)]
    if not wins:
        return I
    n_win = sum(wins)
    if n_win >= max(1, math.ceil(0.75 * len(wins))):
        return S
    if n_win <= len(wins) // 4:
        return C
    return I


def aq_conv_layers(conv_compressions) -> str:
    """aq-q5-conv-layers: the conv layers are compressed more than 4x (smaller than 8-bit storage) at the
    headline bound, per dataset; all / none / some."""
    return combine([_case(lambda c: c > 4, c) for c in conv_compressions])


def aq_25_iterations(fractions_at_25) -> str:
    """aq-25-iterations: per setting, the compression at iteration 25 over the long run's final
    compression; levelled off when >= 0.95; all / none / some."""
    return combine([_case(lambda f: f >= 0.95, f) for f in fractions_at_25], untested=I)


def aq_small_radius(cases) -> str:
    """aq-small-radius-slower-more-accurate: per setting, a dict with the small (2^-8) and large (2^-4)
    radius runs' compression, iterations and error change; holds when the small radius gives less
    compression or more iterations (slower) AND a lower error change (more accurate); all / none / some."""
    out = []
    for c in cases:
        if any(_nan(c[k]) for k in ("small_error_change", "large_error_change")):
            out.append(None)
            continue
        slower = c["small_compression"] < c["large_compression"] or c["small_iterations"] > c["large_iterations"]
        out.append(bool(slower and c["small_error_change"] < c["large_error_change"]))
    return combine(out, untested=I)


def aq_linearisation(median_relative_errors) -> str:
    """aq-q2-linearisation: the linear prediction of L - L0 is adequate in a setting when its median
    relative error is below 0.5; all / none / some."""
    return combine([_case(lambda e: e < 0.5, e) for e in median_relative_errors], untested=I)


def aq_binarized(pairs) -> str:
    """aq-q3-binarized-models: per (setting, bound), (payload bits per weight after adaptive quantization
    of the binary weights, the binary network's bits per weight); the benefit is lost when the first
    exceeds the second; all / none / some."""
    return combine([_case(lambda b, bn: b > bn, b, bn) for b, bn in pairs], untested=I)


# --- baselines (Han et al. 2015) ------------------------------------------------------------------

def han_reached(dense_mean: float, dense_std: float, pruned_mean: float, n_seeds: int):
    """One dataset of han2015-<model>-12x: the iterative schedule's error at the target compression is
    within max(2 x the dense std over seeds, 0.1) points of dense (None with < 2 seeds or no result)."""
    if n_seeds < 2 or _nan(dense_mean) or _nan(pruned_mean):
        return None
    return bool(pruned_mean - dense_mean <= max(2 * dense_std, 0.1))


def han_12x(outcomes) -> str:
    """han2015-<model>-12x[-layer-ratios|-global]: han_reached per dataset for one variant of the
    iterative schedule; all / none / some."""
    return combine(outcomes)


# --- DST (Liu et al. 2020) -------------------------------------------------------------------------

def dst_table1_case(dense_std: float, variants) -> str:
    """One dataset of dst-table1-<model>: `variants` are (accuracy drop vs dense in points, remaining %)
    for the recipe and its longer schedule. Supported when any variant loses <= 0.5 points at < 10 %
    remaining; contradicted when every variant loses more than 0.5 + 2 x the dense std; else inconclusive."""
    variants = [(d, r) for d, r in variants if not (_nan(d) or _nan(r))]
    if not variants:
        return I
    if any(d <= 0.5 and r < 10 for d, r in variants):
        return S
    if all(d > 0.5 + 2 * dense_std for d, _ in variants):
        return C
    return I


def dst_table1(case_verdicts) -> str:
    """dst-table1-<model>: the datasets' verdicts when they agree, else inconclusive."""
    vs = set(case_verdicts)
    return vs.pop() if len(vs) == 1 else I


def dst_dynamics(per_dataset) -> str:
    """dst-dynamics-*-<model>: per dataset, whether the property holds in every seed (None: no
    successful run); all / none / some, inconclusive without runs."""
    return combine(per_dataset, untested=I)


def dst_alpha_monotone(means_per_model) -> str:
    """dst-alpha-monotone: the mean remaining % strictly decreases as alpha grows, in every model."""
    series = [list(m) for m in means_per_model if m]
    if not series or any(_nan(v) for m in series for v in m):
        return I
    return S if all(all(b < a for a, b in zip(m, m[1:])) for m in series) else C


def dst_consistent_pattern(taus) -> str:
    """dst-consistent-pattern: Kendall's tau between per-layer remaining ratios at alpha values a decade
    apart (NaN, constant ratios, counts as 0); supported when every tau >= 0.6, contradicted when any
    tau <= 0, inconclusive otherwise or with no pair."""
    taus = [0.0 if _nan(t) else t for t in taus]
    if not taus:
        return I
    if all(t >= 0.6 for t in taus):
        return S
    if any(t <= 0 for t in taus):
        return C
    return I


def dst_exp_wider(widths: dict) -> str:
    """dst-exp-wider-alpha-range: usable alpha width (decades) per regularizer; supported when exp's
    is larger than every alternative's, contradicted when an alternative's is larger, inconclusive on a
    tie or without alternatives."""
    if "exp" not in widths or len(widths) < 2:
        return I
    best_other = max(v for k, v in widths.items() if k != "exp")
    return S if widths["exp"] > best_other else C if best_other > widths["exp"] else I


def dst_activation_sparsity(pairs) -> str:
    """dst-activation-sparsity: per (model, layer, alpha), (DST's zero-input %, dense's); holds when
    DST's is higher; all / none / some."""
    return combine([_case(lambda a, b: a > b, a, b) for a, b in pairs], untested=I)


def dst_reset_wider_alpha(gains) -> str:
    """dst-reset-wider-alpha: per large alpha, the accuracy change vs dense with the reset rule minus
    without it (points); holds when >= 0.5; all / none / some."""
    return combine([_case(lambda g: g >= 0.5, g) for g in gains])


def dst_lr_decay_case(jump_high_lr, jump_low_lr):
    """One seed of dst-lr-decay-jump: the output layer's remaining-ratio rise at the lr decay (the largest
    ratio within the window after it minus the ratio just before), at the high and at the low initial lr.
    Holds when the high-lr rise is >= 0.2 and larger than the low-lr rise; None when a run failed."""
    if _nan(jump_high_lr) or _nan(jump_low_lr):
        return None
    return bool(jump_high_lr >= 0.2 and jump_high_lr > jump_low_lr)


def dst_lr_decay_jump(outcomes) -> str:
    """dst-lr-decay-jump: dst_lr_decay_case per seed; all / none / some."""
    return combine(outcomes, untested=I)


def dst_table2(profile: str, points) -> str:
    """dst-table2-cifar: per network, (remaining %, accuracy change vs dense in points) at the first
    alpha; supported when every network is <= 10 % remaining at a change >= -1 point, else
    contradicted; only the paper profile (CIFAR-10, the paper's networks) can test it."""
    if profile != "paper":
        return N
    points = list(points)
    if not points or any(_nan(r) or _nan(c) for r, c in points):
        return I
    return S if all(r <= 10 and c >= -1.0 for r, c in points) else C


# --- sensitivity-driven regularization (Tartaglione et al. 2018) -----------------------------------

def sens_twice_sparsity(ratios) -> str:
    """sens-twice-sparsity: per equal-error point, the method's compression over the best magnitude
    schedule's ('in some cases': one point suffices); supported when any ratio >= 2, contradicted when
    none exceeds 1, inconclusive otherwise."""
    rs = [r for r in ratios if not _nan(r)]
    if not rs:
        return I
    if any(r >= 2 for r in rs):
        return S
    return C if not any(r > 1 for r in rs) else I


def sens_generalization(better) -> str:
    """sens-generalization-vs-weight-decay: per setting, lower test error than weight decay beyond 2 std;
    all / none / some."""
    return combine(better, untested=I)


def differs_from_weight_decay(err_a: float, err_b: float, std_a: float, std_b: float,
                              size_a: float, size_b: float, *, size: str = "compression") -> bool:
    """Two runs differ when their error changes differ by more than 2 x the larger std (at least
    0.1 points), or their sizes do: compressions by more than 25 % (log ratio), or remaining
    fractions by more than 25 % of the second's (`size="remaining"`)."""
    tol = 2 * max(0.0 if _nan(std_a) else std_a, 0.0 if _nan(std_b) else std_b, 0.05)
    if abs(err_a - err_b) > tol:
        return True
    if size == "compression":
        return abs(math.log(size_a / size_b)) > math.log(1.25)
    return abs(size_a - size_b) > 0.25 * size_b


def sens_optimizers(differs_per_optimizer) -> str:
    """sens-q6-optimizers: per optimizer other than SGD, whether the method still differs from weight
    decay at some lambda; all / none / some."""
    return combine(differs_per_optimizer, untested=I)


def sens_lambda_t(within_target) -> str:
    """sens-q7-lambda-T-selection: per target, the held-out pick keeps the test change within the
    target; all / none / some."""
    return combine(within_target, untested=I)


def sens_cost(ratios_vs_weight_decay) -> str:
    """sens-q9-cost-vs-weight-decay: the specific sensitivity's step costs at most 2x a weight-decay
    step in every model."""
    rs = [r for r in ratios_vs_weight_decay if not _nan(r)]
    if not rs:
        return I
    return S if max(rs) <= 2.0 else C


def sens_phase_length(stop_epoch, dense_epochs: int) -> str:
    """sens-q5-phase-length: the sparsity stops changing within 10 % of the dense training epochs;
    inconclusive when it was still changing at the end of the run."""
    if _nan(stop_epoch):
        return I
    return S if stop_epoch <= 0.1 * dense_epochs else C


def sens_input_side(orderings) -> str:
    """sens-q10-input-side-pruning: per dataset (raw inputs), fc1 < fc2 < fc3 remaining in every seed;
    all / none / some."""
    return combine(orderings, untested=I)


def sens_beyond_weight_decay(n_differ: int, n_same: int) -> str:
    """sens-q11-beyond-weight-decay: over the sensitivity definitions, how many differ from weight decay
    at some lambda and how many are indistinguishable at every lambda; supported when all differ,
    contradicted when none does, inconclusive when some do."""
    if n_differ + n_same == 0:
        return I
    return S if n_same == 0 else C if n_differ == 0 else I


def sens_conv_case(conv_remaining_pct: float, error_change: float):
    """One row of sens-q4-conv-layers: holds when under 50 % of the conv weights remain at an error
    change <= +1 point; fails when 50 % or more remain; None when sparsified at a larger error cost."""
    if _nan(conv_remaining_pct) or _nan(error_change):
        return None
    if conv_remaining_pct >= 50:
        return False
    return True if error_change <= 1.0 else None


def sens_conv(outcomes) -> str:
    """sens-q4-conv-layers: sens_conv_case per row; all / none / some."""
    return combine(outcomes)


def sens_rnn(hh_differences, error_change: float) -> str:
    """sens-q8-rnn: per seed, the recurrent matrix's remaining % with the regularizer minus with
    thresholding alone. Contradicted when it is >= 0 in every seed (no extra pruning); supported when
    it is <= -1 point in every seed at an error change <= +1 point; inconclusive otherwise."""
    d = [x for x in hh_differences if not _nan(x)]
    if not d:
        return I
    if all(x >= 0 for x in d):
        return C
    if all(x <= -1.0 for x in d) and not _nan(error_change) and error_change <= 1.0:
        return S
    return I


# --- FLOP (Wang, Wohlwend & Lei 2020) -----------------------------------------------------------------

def flop_vs_agp(cases, margin: float = 0.02, size_tolerance: float = 0.02) -> str:
    """flop-vs-agp-unstructured-<corpus> (and flop-vs-agp-word-<corpus>, given test log-perplexities in nats
    instead of BPC and a margin of ln(ratio)): per (target sparsity t, seed), a tuple (t, FLOP's hard sparsity,
    FLOP's test BPC, unstructured AGP's test BPC at sparsity t, same seed and parent). A case holds when FLOP's
    BPC is at most AGP's + `margin` (matches or beats it); it is untestable when a BPC is missing or FLOP's
    hard sparsity is more than `size_tolerance` from t (the two models would not be the same size).
    All / none / some of the testable cases; inconclusive when none is testable."""
    out = []
    for t, hard, flop_bpc, agp_bpc in cases:
        if any(_nan(v) for v in (t, hard, flop_bpc, agp_bpc)) or abs(hard - t) > size_tolerance:
            out.append(None)
        else:
            out.append(flop_bpc <= agp_bpc + margin)
    return combine(out, untested=I)


def flop_beats_small_dense(cases, margin: float = 0.02, size_tolerance: float = 0.02) -> str:
    """flop-beats-small-dense-<corpus>: per (target t, seed), a tuple (t, FLOP's hard sparsity, FLOP's test
    BPC, the test BPC of the dense model of matched size trained from scratch for the same steps). A case
    holds when FLOP's BPC is lower by more than `margin`, fails when it is higher by more than `margin`,
    and is undecided in between; it is untestable when a value is missing or FLOP's hard sparsity is more
    than `size_tolerance` from t. Supported when every testable case holds, contradicted when every one
    fails, inconclusive otherwise (undecided cases included) or when none is testable."""
    out = []
    for t, hard, flop_bpc, small_bpc in cases:
        if any(_nan(v) for v in (t, hard, flop_bpc, small_bpc)) or abs(hard - t) > size_tolerance:
            continue
        d = small_bpc - flop_bpc
        out.append("holds" if d > margin else "fails" if d < -margin else "undecided")
    if not out:
        return I
    return S if all(o == "holds" for o in out) else C if all(o == "fails" for o in out) else I


def flop_hits_target(cases, tolerance: float = 0.02) -> str:
    """flop-hits-target-<corpus>: per (target t, seed), a pair (t, FLOP's expected sparsity s_hat at the
    end of the run; None or nan for a run that failed). A case holds when |s_hat - t| <= `tolerance`; a
    failed run did not reach its target and counts as a miss, not as untested. All / none / some of the
    cases; inconclusive when there are none."""
    out = [False if _nan(s) else abs(s - t) <= tolerance for t, s in cases]
    return combine(out, untested=I)


def l0_length_drift(cases, tolerance: float = 0.02, informative=(0.05, 0.95)) -> str:
    """l0-coefficient-drifts-<corpus>: per L0 coefficient, a pair (sparsity at the end of the plan's run,
    sparsity at the end of a run with the same coefficient and seed trained longer). A case holds when
    the two differ by more than `tolerance` (the coefficient alone does not fix the final size); it is
    untestable when a value is missing or the shorter run's sparsity is outside `informative` (a gate
    set that is all open or all closed cannot move). All / none / some of the testable cases;
    inconclusive when none is testable."""
    lo, hi = informative
    out = [None if _nan(a) or _nan(b) or not lo <= a <= hi else abs(b - a) > tolerance for a, b in cases]
    return combine(out, untested=I)


def flop_exported_faster(ratios, tol: float = 0.1) -> str:
    """flop-exported-faster-cpu-<corpus>: per (target sparsity, batch size), the exported FLOP model's median
    CPU forward time over the dense model's, measured in one process (nan when it could not be timed).
    A case holds when the ratio is at most 1 - `tol` (more than `tol` faster). All / none / some of the
    timed cases; inconclusive when none was timed."""
    return combine([None if _nan(r) else r <= 1 - tol for r in ratios], untested=I)


# --- DRL static + runtime channel pruning (Chen, Chen & Pan 2020) -----------------------------------

def drl_tradeoff(acc_by_rr: dict, params_by_rr: dict, margin: float = 0.2) -> str:
    """drl-tradeoff-rr-<budget>: accuracy (%, mean over seeds) and stored parameters (x the dense
    backbone, with every overhead) at the trade-off rates Rr = 0, 0.5 and 1. A step from one Rr to
    the next rises when accuracy gains more than `margin` points, falls when it loses more than
    `margin`. Supported when accuracy rises at both steps, stored parameters rise at both steps
    and Rr = 0.5 stores less than the dense backbone (< 1x); contradicted when accuracy falls at a
    step, or storage does not rise at a step, or Rr = 0.5 stores 1x or more; inconclusive otherwise
    (a step within the margin) or when a value is missing."""
    rates = (0.0, 0.5, 1.0)
    acc = [acc_by_rr.get(r) for r in rates]
    par = [params_by_rr.get(r) for r in rates]
    if any(_nan(v) for v in acc + par):
        return I
    if not (par[0] < par[1] < par[2]) or par[1] >= 1:
        return C
    steps = [b - a for a, b in zip(acc, acc[1:])]
    if any(d < -margin for d in steps):
        return C
    return S if all(d > margin for d in steps) else I


def printed_agreement(ours: float, printed: float, decimals: int) -> str:
    """One count against the paper's printed value: "agrees" when ours rounds to it at the printed
    precision (`decimals`), "near" when it is off by at most one unit of the last printed digit,
    "differs" beyond; "unmeasured" when either is missing."""
    if _nan(ours) or _nan(printed):
        return "unmeasured"
    if round(ours, decimals) == round(printed, decimals):
        return "agrees"
    return "near" if abs(ours - printed) <= 10.0 ** -decimals + 1e-12 else "differs"


def drl_printed_counts(cases) -> str:
    """drl-agent-overhead-*: cases of (ours, printed, decimals). Supported when every count agrees
    with the printed value at its precision, contradicted when any differs by more than one unit of
    the last printed digit, inconclusive otherwise (near, or unmeasured)."""
    found = [printed_agreement(*c) for c in cases]
    if not found or "unmeasured" in found:
        return I
    if "differs" in found:
        return C
    return S if all(f == "agrees" for f in found) else I


def drl_lr_ablation(reference_acc: float, high_cnn_lr_acc: float, other_accs, margin: float = 2.0,
                    chance_below: float = 20.0, works_above: float = 50.0, high_diverged: bool = False) -> str:
    """drl-lr-ablation-*: the rebuttal's pattern. Supported when the run with the CNN lr raised x10
    collapses (accuracy below `chance_below` %) and every other pair (one lr changed) stays within
    `margin` points of the reference pair; contradicted when the raised CNN lr still works (accuracy
    of `works_above` % or more) or another pair is more than `margin` points from the reference;
    inconclusive otherwise (a partial collapse), when a run is missing or when the reference pair
    itself is below `works_above`. `high_diverged`: every run
    of the raised CNN lr diverged (a non-finite loss), which counts as a collapse."""
    if high_diverged:
        high_cnn_lr_acc = 0.0
    values = [reference_acc, high_cnn_lr_acc, *other_accs]
    if any(_nan(v) for v in values) or not other_accs or reference_acc < works_above:
        return I     # a missing run, or a reference pair that itself does not work: nothing to compare
    robust = all(abs(a - reference_acc) <= margin for a in other_accs)
    if high_cnn_lr_acc >= works_above or not robust:
        return C
    return S if high_cnn_lr_acc < chance_below else I


def drl_beats_fbs(differences, margin: float) -> str:
    """drl-beats-fbs-*: per budget d, DRL's accuracy change vs dense minus FBS's (mean over seeds).
    Supported when DRL is ahead by more than `margin` points at every budget; contradicted when it
    is behind by more than `margin` at any; inconclusive otherwise or with a missing budget."""
    diffs = list(differences)
    if not diffs or any(_nan(d) for d in diffs):
        return I
    if any(d < -margin for d in diffs):
        return C
    return S if all(d > margin for d in diffs) else I


def drl_learned_vs_uniform(differences, margin: float) -> str:
    """drl-learned-vs-uniform-*: per trade-off rate Rr, the DRL run's accuracy (learned ratios) minus that of
    the same pruner with every ratio fixed at the budget d (policy "uniform"), mean over seeds, in points.
    Supported when the learned ratios are ahead by more than `margin` at every Rr; contradicted when they
    are behind by more than `margin` at any; inconclusive otherwise or with a missing Rr (the same
    all-or-one rule as drl_beats_fbs)."""
    return drl_beats_fbs(differences, margin)


def drl_monotone_rr(acc_by_rr: dict, params_by_rr: dict, margin: float) -> str:
    """drl-monotone-rr-*: over the trade-off rates in increasing order, stored parameters rise at every
    step and accuracy never falls by more than `margin` points at a step. Supported when both hold and
    accuracy at the highest Rr exceeds the lowest's by more than `margin`; contradicted when storage
    fails to rise at a step or accuracy falls by more than `margin` at one; inconclusive otherwise
    (accuracy flat within the margin overall) or when a rate is missing."""
    rates = sorted(acc_by_rr)
    acc = [acc_by_rr[r] for r in rates]
    par = [params_by_rr.get(r, math.nan) for r in rates]
    if len(rates) < 2 or any(_nan(v) for v in acc + par):
        return I
    if any(b <= a for a, b in zip(par, par[1:])) or any(b - a < -margin for a, b in zip(acc, acc[1:])):
        return C
    return S if acc[-1] - acc[0] > margin else I


def drl_wallclock(per_batch, tol: float = 0.1) -> str:
    """drl-wallclock-*: per batch size, median ms of "dense", "masked" (runtime pruning executed by
    masking) and "drl rr=0.5" (never-selectable channels deleted). A batch size supports the claim
    when the Rr = 0.5 net is faster than the masked one by more than `tol` (a fraction) and the masked
    one is not faster than dense by more than `tol`; it contradicts it when the Rr = 0.5 net is no
    faster than the masked one, or the masked one is faster than dense by more than `tol`. Supported
    when every batch size supports, contradicted when any contradicts, inconclusive otherwise or
    when a time is missing."""
    outcomes = []
    for ms in per_batch:
        dense, masked, rr05 = (ms.get(k, math.nan) for k in ("dense", "masked", "drl rr=0.5"))
        if any(_nan(v) for v in (dense, masked, rr05)):
            outcomes.append(None)
        elif rr05 >= masked or masked < dense * (1 - tol):
            outcomes.append(False)
        else:
            outcomes.append(True if rr05 < masked * (1 - tol) else None)
    if not outcomes or (None in outcomes and False not in outcomes):
        return I
    return C if False in outcomes else S


def drl_learned_ratios(runs, spread: float = 0.05, slack: float = 0.05) -> str:
    """drl-learned-ratios-*: per DRL run, (max - min of its per-layer kept ratios, achieved conv-MAC
    fraction, the budget's fraction). A run holds when its layers' ratios differ by more than `spread`
    (the agents learned layer-specific ratios) and it uses at most (1 + slack) x the budget's MACs.
    Supported when every run holds, contradicted when none does, inconclusive otherwise."""
    outcomes = [_case(lambda r, a, b: r > spread and a <= b * (1 + slack), *run) for run in runs]
    return combine(outcomes, untested=I)


def not_testable() -> str:
    """A claim that needs data or hardware that is not available (the row says what)."""
    return N


def documented() -> str:
    """A correction of the paper's text or tables, checked against the references; no experiment."""
    return D


def drl_table3_accuracy(ours_change, fbs_change, ours_speedup, fbs_speedup, margin: float = 0.2,
                        slack: float = 0.1) -> str:
    """drl-table3-accuracy-*: DRL (Rr = 0.5) and FBS on ResNet-18 / ImageNet at one budget, their top-1
    changes vs the shared base (points) and measured MAC speed-ups. Not testable when a run is missing
    (the cpu profile runs neither); inconclusive when DRL's speed-up is below (1 - slack) x FBS's (not at
    matched MACs) or the changes are within `margin`; supported when DRL loses less by more than `margin`;
    contradicted when it loses more by more than `margin`."""
    if any(_nan(v) for v in (ours_change, fbs_change, ours_speedup, fbs_speedup)):
        return N
    if ours_speedup < (1 - slack) * fbs_speedup:
        return I
    diff = ours_change - fbs_change
    return S if diff > margin else C if diff < -margin else I


def drl_table3_storage(ours_ratio, fbs_ratio) -> str:
    """drl-table3-storage-*: stored parameters (x the dense backbone, overheads included) of DRL (Rr = 0.5)
    and FBS on ResNet-18 / ImageNet. Not testable when a run is missing; supported when DRL stores less
    than the dense backbone and FBS more; contradicted when DRL stores at least as much as the dense
    backbone or as FBS; inconclusive otherwise (both below the dense backbone)."""
    if _nan(ours_ratio) or _nan(fbs_ratio):
        return N
    if ours_ratio >= 1 or ours_ratio >= fbs_ratio:
        return C
    return S if fbs_ratio > 1 else I


# claim id (regular expression, matched in full) -> (rule, the verdicts it can return)
RULES: dict[str, tuple] = {
    r"aq-headline-lenet5(-long-base)?": (aq_headline, (S, C, I)),
    r"aq-zero-loss-vs-float": (aq_zero_loss_vs_float, (S, C, I)),
    r"aq-near-sota-size": (aq_near_sota, (S, C, I)),
    r"aq-q5-conv-layers": (aq_conv_layers, (S, C, I, N)),
    r"aq-25-iterations": (aq_25_iterations, (S, C, I)),
    r"aq-small-radius-slower-more-accurate": (aq_small_radius, (S, C, I)),
    r"aq-q2-linearisation": (aq_linearisation, (S, C, I)),
    r"aq-q3-binarized-models": (aq_binarized, (S, C, I)),
    r"han2015-.+-12x(-layer-ratios|-global)?": (han_12x, (S, C, I, N)),
    r"dst-table1-.+": (dst_table1, (S, C, I)),
    r"dst-dynamics-.+": (dst_dynamics, (S, C, I)),
    r"dst-alpha-monotone": (dst_alpha_monotone, (S, C, I)),
    r"dst-consistent-pattern": (dst_consistent_pattern, (S, C, I)),
    r"dst-exp-wider-alpha-range": (dst_exp_wider, (S, C, I)),
    r"dst-activation-sparsity": (dst_activation_sparsity, (S, C, I)),
    r"dst-reset-wider-alpha": (dst_reset_wider_alpha, (S, C, I, N)),
    r"dst-table2-cifar": (dst_table2, (S, C, I, N)),
    r"dst-lr-decay-jump": (dst_lr_decay_jump, (S, C, I)),
    r"sens-twice-sparsity(-long(-lenet5)?)?": (sens_twice_sparsity, (S, C, I)),
    r"sens-table2-corrections": (documented, (D,)),
    r"sens-generalization-vs-weight-decay": (sens_generalization, (S, C, I)),
    r"sens-q6-optimizers": (sens_optimizers, (S, C, I)),
    r"sens-q7-lambda-T-selection": (sens_lambda_t, (S, C, I)),
    r"sens-q9-cost-vs-weight-decay": (sens_cost, (S, C, I)),
    r"sens-q5-phase-length": (sens_phase_length, (S, C, I)),
    r"sens-q10-input-side-pruning": (sens_input_side, (S, C, I)),
    r"sens-q11-beyond-weight-decay": (sens_beyond_weight_decay, (S, C, I)),
    r"sens-q4-conv-layers": (sens_conv, (S, C, I, N)),
    r"sens-q8-rnn": (sens_rnn, (S, C, I)),
    r"sens-table3-vgg16-imagenet": (not_testable, (N,)),
    r"flop-vs-agp-unstructured-.+": (flop_vs_agp, (S, C, I)),
    r"flop-vs-agp-word-.+": (flop_vs_agp, (S, C, I)),       # FLOP 05: log-perplexities, margin ln 1.02
    r"flop-vs-agp-transformer-.+": (flop_vs_agp, (S, C, I)),   # FLOP 04: the transformer character model
    r"flop-hits-target-.+": (flop_hits_target, (S, C, I)),
    r"flop-beats-small-dense-.+": (flop_beats_small_dense, (S, C, I)),
    r"l0-coefficient-drifts-.+": (l0_length_drift, (S, C, I)),
    r"flop-exported-faster-cpu-.+": (flop_exported_faster, (S, C, I)),
    r"drl-learned-vs-uniform-.+": (drl_learned_vs_uniform, (S, C, I)),
    r"drl-tradeoff-rr-.+": (drl_tradeoff, (S, C, I)),
    r"drl-agent-overhead-.+": (drl_printed_counts, (S, C, I)),
    r"drl-lr-ablation-.+": (drl_lr_ablation, (S, C, I)),
    r"drl-beats-fbs-.+": (drl_beats_fbs, (S, C, I)),
    r"drl-monotone-rr-.+": (drl_monotone_rr, (S, C, I)),
    r"drl-wallclock-.+": (drl_wallclock, (S, C, I)),
    r"drl-learned-ratios-.+": (drl_learned_ratios, (S, C, I)),
    r"drl-table3-accuracy-.+": (drl_table3_accuracy, (S, C, I, N)),
    r"drl-table3-storage-.+": (drl_table3_storage, (S, C, I, N)),
    r"template-.+": (combine, (S, C, I, N)),
}


def rule_for(claim_id: str):
    """(rule, outcomes) for a claim id, or None when no rule is registered."""
    for pattern, entry in RULES.items():
        if re.fullmatch(pattern, claim_id):
            return entry
    return None
