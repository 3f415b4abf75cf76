"""Figures: panels per (model, dataset), mean ± std over seeds, one way to save.

The analysis path is records -> report accessors -> these helpers (like
ShrinkBench's plot_df and d2l's plot): a notebook says what each figure
compares; the axes, bands, legends and files are made here, the same way in
every notebook. Titles carry the profile so a figure never hides what was run.
"""
from __future__ import annotations

import math

import numpy as np

from . import report


def panels(keys, ncols: int | None = None, width: float = 4.4, height: float = 3.3, **kw):
    """A figure with one axis per key (e.g. (model, dataset) pairs); returns (fig, {key: ax})."""
    import matplotlib.pyplot as plt

    keys = list(keys)
    ncols = ncols or min(len(keys), 3) or 1
    nrows = max(1, math.ceil(len(keys) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kw)
    flat = axes.ravel()
    for ax in flat[len(keys):]:
        ax.set_visible(False)
    return fig, dict(zip(keys, flat))


def title(*parts, profile: str) -> str:
    """'<part>, <part> (<profile> profile)'."""
    return ", ".join(str(p) for p in parts if p not in (None, "")) + f" ({profile} profile)"


def mean_std(values_per_x):
    """Means and sample standard deviations (0 for one value, NaN for none) of lists of values."""
    stats = [report._mean_std(list(v)) for v in values_per_x]
    return np.array([s[0] for s in stats]), np.array([s[1] for s in stats])


def band(ax, x, values_per_x, label: str | None = None, **kw):
    """The mean over seeds as a line with a ± std band; `values_per_x[i]` are the seeds' values at x[i]."""
    m, s = mean_std(values_per_x)
    (line,) = ax.plot(x, m, label=label, **kw)
    ax.fill_between(x, m - np.nan_to_num(s), m + np.nan_to_num(s), color=line.get_color(), alpha=0.2, lw=0)
    return line


def errorbars(ax, x, values_per_x, label: str | None = None, **kw):
    """The mean over seeds with ± std error bars."""
    m, s = mean_std(values_per_x)
    kw.setdefault("marker", "o")
    kw.setdefault("capsize", 3)
    return ax.errorbar(x, m, yerr=s, label=label, **kw)


def label(ax, x: str | None = None, y: str | None = None, title: str | None = None, legend: bool = True,
          fontsize: int = 9, legend_fontsize: int | None = None):
    """Axis labels (with units), a title and a legend placed where it covers the least data
    (legend text one point smaller than the title unless `legend_fontsize` says otherwise)."""
    if x:
        ax.set_xlabel(x)
    if y:
        ax.set_ylabel(y)
    if title:
        ax.set_title(title, fontsize=fontsize)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=legend_fontsize or fontsize - 1, loc="best")


def plain_log_ticks(ax, axis: str = "y", unit: str = "") -> None:
    """Ticks of a log-scaled axis (base 10) written as plain numbers ('3', '10', '0.5', with `unit`
    appended) instead of powers (3 x 10^0); minor ticks at 2 and 5 of each decade are labelled too
    when the axis spans less than two decades."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    target = ax.yaxis if axis == "y" else ax.xaxis
    fmt = FuncFormatter(lambda v, _pos: f"{v:g}{unit}")
    target.set_major_formatter(fmt)
    lo, hi = (ax.get_ylim() if axis == "y" else ax.get_xlim())
    if lo > 0 and hi / lo < 100:
        target.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
        target.set_minor_formatter(fmt)
    else:
        target.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))


def finish(fig, paper: str, name: str, profile: str) -> None:
    """Lay out, save to figures/<paper>/<name>.png (build/<profile>/ for other profiles) and show.
    Returns nothing, so that a notebook cell ending with it prints no file path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    report.savefig(fig, paper, name, profile)
    plt.show()
