"""Every figure of the audit side, as PNG bytes, drawn on matplotlib's Agg canvas through the object-oriented API:
``matplotlib.pyplot`` is never imported (no window, no global backend switched, no figure kept alive)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullFormatter, PercentFormatter

from audit.retention import DEFAULT_METRICS
from audit.stats import bucket_order, finite

__all__ = ["profile_heatmap", "retention_curves", "rate_by_duplicates", "rate_points", "histogram", "roc_curves"]

DPI = 120
COLORBAR_LABEL = "memorisation (surprisal reduction, nats)"
MASK_COLOR = "#c8c8c8"  # cells whose interval covers 0
BLANK_COLOR = "white"  # cells before treatment, or without an estimate
MAX_TICKS = 16
METRIC_LABELS = {"recognition": "recognition accuracy", "exact_recall": "exact recall", "token_recall": "token recall"}


def _new_figure(width: float, height: float):
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _png(fig: Figure, ax=None, title: str = "") -> bytes:
    if title:
        ax.set_title(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


def _tick_positions(n: int) -> np.ndarray:
    """At most :data:`MAX_TICKS` indices in [0, n) at a constant stride, starting at 0."""
    return np.arange(0, n, max(1, math.ceil(n / MAX_TICKS)))


def _step_label(v) -> str:
    f = float(v)
    return str(int(f)) if f.is_integer() else f"{f:g}"


def _require_columns(df, columns: Sequence[str], what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, got {type(df).__name__}")
    if missing := [c for c in columns if c not in df.columns]:
        raise ValueError(f"{what} has no columns {missing} (columns: {list(df.columns)})")
    if len(df) == 0:
        raise ValueError(f"{what} is empty: nothing to plot")


def profile_heatmap(profile: pd.DataFrame, title: str = "") -> bytes:
    """Heatmap of a memorisation profile (Lesci et al. 2024): treatment step (rows) x checkpoint step.

    Colour = ``effect`` (nats) on a diverging map centred at 0 (red: surprisal reduced by training on the cohort);
    grey: the simultaneous band [``band_lower``, ``band_upper``], else [``lower``, ``upper``], covers 0 (NaN bounds
    do); lead cells (step < treatment_step) left of a black line at each cohort's treatment; blank: absent cells (base
    period, partially treated checkpoints of merged cohorts) and non-finite effects. Rows "step (n=size)" with a
    ``cohort_size`` column; values written in matrices up to 12 x 12; tick labels thinned. ``profile``: columns
    ``treatment_step``, ``step``, ``effect``, ``lower``, ``upper``, one row per pair (ValueError when empty, missing a
    column or a step, or with a duplicated pair).
    """
    cols = ["treatment_step", "step", "effect", "lower", "upper"]
    _require_columns(profile, cols, "profile")
    band = {"band_lower", "band_upper"} <= set(profile.columns)
    df = profile[cols].copy()
    if band:
        df["lower"], df["upper"] = profile["band_lower"].to_numpy(), profile["band_upper"].to_numpy()
    if df[["treatment_step", "step"]].isna().any().any():
        raise ValueError("profile has missing treatment_step or step values")
    if df.duplicated(subset=["treatment_step", "step"]).any():
        raise ValueError("profile has duplicated (treatment_step, step) pairs")
    for c in ("effect", "lower", "upper"):
        df[c] = pd.to_numeric(df[c], errors="raise").astype(np.float64)

    rows = np.array(sorted(df["treatment_step"].unique()))
    columns = np.array(sorted(df["step"].unique()))
    E, L, U = (df.pivot(index="treatment_step", columns="step", values=v).reindex(index=rows, columns=columns)
               .to_numpy(dtype=np.float64) for v in ("effect", "lower", "upper"))

    has_effect = np.isfinite(E)
    with np.errstate(invalid="ignore"):
        covers_zero = ~((L > 0) | (U < 0))  # NaN bounds count as covering 0 (not significant)
    greyed, coloured = has_effect & covers_zero, has_effect & ~covers_zero
    vmax = float(np.max(np.abs(E[has_effect]), initial=0.0)) or 1.0  # no effect, or all 0: any scale

    n_r, n_c = E.shape
    fig, ax = _new_figure(float(np.clip(3.2 + 0.55 * n_c, 6.0, 14.0)), float(np.clip(2.4 + 0.42 * n_r, 4.0, 10.0)))
    ax.set_facecolor(BLANK_COLOR)
    extent = (-0.5, n_c - 0.5, n_r - 0.5, -0.5)
    ax.imshow(np.ma.masked_where(~greyed, np.ones_like(E)), cmap=ListedColormap([MASK_COLOR]), vmin=0, vmax=1,
              aspect="auto", interpolation="nearest", extent=extent)
    im = ax.imshow(np.ma.masked_where(~coloured, E), cmap="RdBu_r", aspect="auto", interpolation="nearest",
                   norm=TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax), extent=extent)

    if n_r <= 40 and n_c <= 40:  # thin white lines between cells
        ax.set_xticks(np.arange(-0.5, n_c, 1.0), minor=True)
        ax.set_yticks(np.arange(-0.5, n_r, 1.0), minor=True)
        ax.grid(which="minor", color="white", linewidth=0.8)
        ax.tick_params(which="minor", length=0)
    xt, yt = _tick_positions(n_c), _tick_positions(n_r)
    ax.set_xticks(xt, [_step_label(columns[i]) for i in xt])
    sizes = (profile.groupby("treatment_step")["cohort_size"].first().reindex(rows).to_numpy()
             if "cohort_size" in profile.columns else None)
    ax.set_yticks(yt, [_step_label(rows[i]) + (f" (n={int(sizes[i])})" if sizes is not None and np.isfinite(sizes[i])
                                               else "") for i in yt])
    for i, g in enumerate(rows):  # treatment: left of the first checkpoint that has seen the cohort
        j = int(np.searchsorted(columns, g, side="left"))
        ax.plot([j - 0.5, j - 0.5], [i - 0.5, i + 0.5], color="black", linewidth=1.2)
    if len(xt) > 6 or max((len(_step_label(c)) for c in columns), default=0) > 5:
        for label in ax.get_xticklabels():
            label.set(rotation=45, horizontalalignment="right", rotation_mode="anchor")
    ax.set(xlabel="checkpoint step", ylabel="treatment step (cohort)")

    if n_r <= 12 and n_c <= 12:
        for i, j in zip(*np.nonzero(has_effect)):
            dark = coloured[i, j] and abs(E[i, j]) > 0.6 * vmax
            ax.text(j, i, f"{E[i, j]:.2g}", ha="center", va="center", fontsize=8 if n_c <= 8 else 6.5,
                    color="white" if dark else ("#555555" if greyed[i, j] else "black"))

    fig.colorbar(im, ax=ax, shrink=0.9).set_label(COLORBAR_LABEL)
    fig.legend(handles=[Patch(facecolor=MASK_COLOR, edgecolor="#888888",
                              label="simultaneous 95% band covers 0" if band else "interval covers 0"),
                        Patch(facecolor=BLANK_COLOR, edgecolor="#888888", label="base period / no estimate")],
               loc="outside lower center", ncols=2, frameon=False, fontsize=8)
    return _png(fig, ax, title)


def event_time_curve(curve: pd.DataFrame, title: str = "") -> bytes:
    """:func:`audit.profile.event_time_curve`'s effect (nats) against event time (checkpoints since
    treatment; negative: lead cells) with its simultaneous band, x ticks also giving the mean lag in steps; an empty
    curve says so."""
    fig, ax = _new_figure(7.0, 4.2)
    if curve is None or len(curve) == 0:
        ax.text(0.5, 0.5, "no cohort with a base period", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return _png(fig)
    cols = ["event_time", "effect", "band_lower", "band_upper"]
    _require_columns(curve, cols, "curve")
    x, y, lo, hi = (curve[c].to_numpy(dtype=np.float64) for c in cols)
    ok = np.isfinite(lo) & np.isfinite(hi)
    for side in (x < 0, x >= 0):
        if (side & ok).any():
            ax.fill_between(x[side & ok], lo[side & ok], hi[side & ok], color="#d62728", alpha=0.2, linewidth=0)
        ax.plot(x[side], y[side], marker="o", color="#d62728", markersize=4)
    ax.axhline(0.0, color="black", linestyle="--", linewidth=0.8)
    ax.axvline(-0.5, color="#555555", linewidth=0.8)
    xt = x[_tick_positions(x.size)]
    lag = dict(zip(x, curve["lag_steps"].to_numpy(dtype=np.float64))) if "lag_steps" in curve.columns else {}
    ax.set_xticks(xt, [f"{int(v)}\n{lag[v]:.0f}" if np.isfinite(lag.get(v, np.nan)) else f"{int(v)}" for v in xt])
    ax.set(xlabel="event time (checkpoints since treatment; below: mean lag in steps)", ylabel=COLORBAR_LABEL)
    return _png(fig, ax, title)


def retention_curves(curve: pd.DataFrame, metrics: Sequence[str] = DEFAULT_METRICS, title: str = "") -> bytes:
    """Retention metrics (Orhan 2024) against steps since treatment on a symlog x axis (linear on
    [0, 1]), bands from ``{metric}_lower``/``_upper``, chance (0.5) dashed for recognition. Rows with steps_since < 0
    or NaN, and absent ``metrics``, are skipped. ValueError: empty, no ``steps_since``, none of ``metrics``, or no
    finite value."""
    _require_columns(curve, ["steps_since"], "curve")
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    if not (present := [m for m in metrics if m in curve.columns]):
        raise ValueError(f"curve has none of the metric columns {metrics} (columns: {list(curve.columns)})")
    x_all = pd.to_numeric(curve["steps_since"], errors="raise").to_numpy(dtype=np.float64)
    order = np.argsort(x_all, kind="stable")

    def column(name: str) -> np.ndarray:
        return pd.to_numeric(curve[name], errors="coerce").to_numpy(dtype=np.float64)

    fig, ax = _new_figure(7.0, 4.5)
    lo_y, hi_y, x_max = 0.0, 1.0, 0.0
    for m in present:
        y_all = column(m)
        keep = order[np.isfinite(x_all[order]) & (x_all[order] >= 0) & np.isfinite(y_all[order])]
        if keep.size == 0:
            continue
        x, y = x_all[keep], y_all[keep]
        (line,) = ax.plot(x, y, marker="o", markersize=4, linewidth=1.6, label=METRIC_LABELS.get(m, m))
        if f"{m}_lower" in curve.columns and f"{m}_upper" in curve.columns:
            ax.fill_between(x, column(f"{m}_lower")[keep], column(f"{m}_upper")[keep], color=line.get_color(),
                            alpha=0.15, linewidth=0)
        lo_y, hi_y = min(lo_y, float(y.min())), max(hi_y, float(y.max()))
        x_max = max(x_max, float(x.max()))
    if not ax.lines:
        raise ValueError(f"no finite values with steps_since >= 0 in {present}: nothing to plot")
    if "recognition" in present:
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=1.0, label="chance (recognition)")
    ax.set_xscale("symlog", linthresh=1.0, linscale=0.5)
    pad = 0.03 * (hi_y - lo_y)
    ax.set(xlim=(-0.1, max(1.0, x_max) * 1.35), ylim=(lo_y - pad, hi_y + pad), ylabel="score",
           xlabel="steps since treatment (symlog axis: linear on [0, 1], log above)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _png(fig, ax, title)


def rate_by_duplicates(rows: list[dict], title: str = "") -> bytes:
    """Extractable rate per duplicate bucket with Wilson bars, in :func:`audit.stats.bucket_order`
    (else as given), each tick with its n (n == 0 or a NaN rate: no point). ``rows``:
    :func:`audit.stats.rate_by_group`'s (ValueError when empty or a key is missing)."""
    rows = list(rows)
    if not rows:
        raise ValueError("rows is empty: nothing to plot")
    needed = ("group", "n", "k", "rate", "lower", "upper")
    for r in rows:
        if missing := [k for k in needed if k not in r]:
            raise ValueError(f"row {r!r} lacks keys {missing}")
    try:
        rows = sorted(rows, key=lambda r: bucket_order(r["group"]))
    except ValueError:
        pass  # not all duplicate-bucket labels: keep the given order
    labels = [str(r["group"]) for r in rows]
    n = [int(r["n"]) for r in rows]
    rate, lower, upper = (np.array([r[k] for r in rows], dtype=np.float64) for k in ("rate", "lower", "upper"))
    ok = np.isfinite(rate) & (np.array(n) > 0)
    x = np.arange(len(rows))

    fig, ax = _new_figure(float(np.clip(2.5 + 0.7 * len(rows), 5.0, 12.0)), 4.2)
    if ok.any():
        lo = np.where(np.isfinite(lower), lower, rate)
        hi = np.where(np.isfinite(upper), upper, rate)
        yerr = np.vstack([np.clip(rate - lo, 0, None), np.clip(hi - rate, 0, None)])[:, ok]
        ax.errorbar(x[ok], rate[ok], yerr=yerr, fmt="o", capsize=4, markersize=5, linewidth=1.4,
                    label="extractable rate (Wilson 95% CI)")
        ax.legend(loc="best", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no sequences in any bucket", transform=ax.transAxes, ha="center", va="center",
                color="grey")
    ax.set_xticks(x, [f"{g}\nn={c}" for g, c in zip(labels, n)])
    ax.set(xlim=(-0.5, len(rows) - 0.5), ylim=(-0.02, 1.02), ylabel="extractable rate",
           xlabel="duplicate count bucket (copies in the audited corpus)")
    ax.grid(True, axis="y", alpha=0.3)
    return _png(fig, ax, title)


def rate_points(series: Sequence[tuple[str, list[dict]]], xlabel: str, groups: Sequence[str]) -> bytes:
    """Extractable rate per group of ``groups`` (the x axis) with Wilson bars, one dodged series per
    (label, rate rows) of ``series``, a legend above for several; n == 0 or no finite rate: no point."""
    fig, ax = _new_figure(float(np.clip(2.8 + 0.8 * len(groups), 5.5, 11.0)), 4.2)
    m = len(series)
    step = min(0.12, 0.5 / max(m - 1, 1))  # horizontal dodge between models, so error bars stay apart
    markers = "osD^vP*X"
    handles, names = [], []
    for i, (label, rows) in enumerate(series):
        by = {r["group"]: r for r in rows}
        off = (i - (m - 1) / 2) * step
        pts = [(j + off, r) for j, g in enumerate(groups) if (r := by.get(g)) and r.get("n") and finite(r.get("rate"))]
        if pts:
            ys = [float(r["rate"]) for _, r in pts]
            yerr = [[max(y - float(r["lower"]), 0.0) for y, (_, r) in zip(ys, pts)],
                    [max(float(r["upper"]) - y, 0.0) for y, (_, r) in zip(ys, pts)]]
            handles.append(ax.errorbar([x for x, _ in pts], ys, yerr=yerr, capsize=3, markersize=5, linewidth=1.3,
                                       fmt=markers[i % len(markers)] + ("-" if m > 1 else "")))
            names.append(label)
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set(xlim=(-0.6, len(groups) - 0.4), ylim=(-0.02, 1.02), xlabel=xlabel, ylabel="extractable rate (95% CI)")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.grid(True, axis="y", alpha=0.3)
    if m > 1:  # labels as given: passed explicitly (a leading "_" is not hidden), no mathtext ("$")
        legend = fig.legend(handles, names, loc="outside upper center", ncols=min(m, 4), fontsize=9, frameon=False)
        for text in legend.get_texts():
            text.set_parse_math(False)
    return _png(fig)


def histogram(values, bins, xlabel: str, integer: bool = False) -> bytes:
    """Histogram of the finite ``values`` on a log count axis; ``integer``: integer x ticks."""
    fig, ax = _new_figure(6.4, 3.6)
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    ax.hist(values, bins=bins, color="#3b6ea8", edgecolor="white", linewidth=0.6)
    if not values.size:  # no counts to scale a log axis by (matplotlib warns)
        ax.set_ylim(0.7, 10)
    ax.set(yscale="log", ylim=(0.7, None), xlabel=xlabel, ylabel="sequences (log scale)")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else ""))
    ax.yaxis.set_minor_formatter(NullFormatter())
    if integer:
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, axis="y", which="major", alpha=0.3)
    return _png(fig)


def roc_curves(curves: Sequence[tuple[str, np.ndarray, np.ndarray, float]]) -> bytes:
    """ROC curves, (label, fpr, tpr, ROC-AUC) per score (:func:`audit.stats.roc_curve`), and chance."""
    fig, ax = _new_figure(5.2, 4.6)
    for label, fpr, tpr, auc in curves:
        ax.plot(fpr, tpr, linewidth=1.6, drawstyle="steps-post", label=f"{label} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1.0, label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal", xlabel="false-positive rate (non-members flagged)",
           ylabel="true-positive rate (members flagged)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)
