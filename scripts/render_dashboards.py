"""Render the two Grafana dashboards to PNG without Grafana: run each panel's queries against a real
Prometheus and draw the panels with matplotlib, laid out on the dashboards' own grid.

Run through scripts/render-dashboards (venv .venv/render with matplotlib, Prometheus installed,
binary built, every process killed on exit). What it does:
  1. starts a fleet of six fake nodes on loopback (tests/e2e/stack.py: simulator + exporter each,
     one Prometheus scraping every second, alert rules with `for:` shortened to 5s);
  2. plays a timeline of about three minutes, so the graphs show events:
       node-a  healthy -> outage -> healthy -> throttle -> healthy   (the node-dashboard subject)
       node-b  healthy throughout
       node-c  slow (1.5 s answers, beyond the SDKs' 1 s timeout) from 80 s on
       node-d  hop-limit (token PUTs dropped) from 110 s on
       node-e  clock 2.5 s behind NTP from 50 s on
       node-f  credentials re-dated to expire in 10 min from 120 s on
  3. runs every panel's queries over the whole run (/api/v1/query_range; stat and table panels at
     the end, as Grafana shows them), and every annotation query as a range query (the node
     dashboard's rotations, every 60 s here, and firing alerts: faint dashed lines on its graphs,
     with a marker on their bottom edge), and
     writes docs/img/imds-fleet.png and docs/img/imds-node.png.

--from-running URL skips 1-2 and renders against an existing Prometheus (job="imds").
"""

import argparse
import datetime
import json
import math
import re
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402
from matplotlib.ticker import FuncFormatter, MultipleLocator  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from stack import Prometheus, Stack, dashboard_values  # noqa: E402
from stack import substitute as interpolate  # noqa: E402

RATE_INTERVAL = "10s"  # Grafana's $__rate_interval for a 1 s scrape interval and a 2 s step
STEP = 2
NODE_SUBJECT = "node-a"

# Grafana's dark theme.
BG, PANEL_BG, GRID, TEXT, MUTED = "#111217", "#181b1f", "#2c3235", "#ccccdc", "#8e8e9a"
COLORS = {"green": "#73bf69", "orange": "#ff9830", "red": "#f2495c", "blue": "#5794f2", "text": TEXT,
          "dark-orange": "#fa6400"}
PALETTE = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#8ab8ff", "#ff780a",
           "#96d98d", "#ca95e5", "#fade2a", "#ffb357"]

TIMELINE = [  # (seconds from start, node, action, argument)
    (40, "node-a", "scenario", "outage"),
    (50, "node-e", "clock", "2.5"),
    (70, "node-a", "scenario", "healthy"),
    (80, "node-c", "scenario", "slow?delay=1500ms"),
    (100, "node-a", "scenario", "throttle"),
    (110, "node-d", "scenario", "hop-limit"),
    (120, "node-f", "scenario", "expiring?in=10m"),
    (130, "node-a", "scenario", "healthy"),
]
DURATION = 175


# ------------------------------------------------------------------------------------ units
def fmt_duration(v, short=False):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    sign = "-" if v < 0 else ""
    v = abs(v)
    parts = []
    for name, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if v >= size or (name == "s" and not parts):
            n = int(v // size)
            v -= n * size
            parts.append(f"{n}{name}")
    return sign + " ".join(parts[: 1 if short else 2])


def fmt_seconds(v):
    a = abs(v)
    if a == 0:
        return "0 s"
    if a < 1e-3:
        return f"{v * 1e6:.0f} µs"
    if a < 1:
        return f"{v * 1e3:.3g} ms"
    if a < 60:
        return f"{v:.3g} s"
    return fmt_duration(v)


def fmt_short(v):
    a = abs(v)
    for div, suffix in ((1e9, " Bil"), (1e6, " Mil"), (1e3, " K")):
        if a >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}" if a < 1000 else f"{v:.0f}"


def fmt_bytes(v):
    a = abs(v)
    for div, suffix in ((2**30, " GiB"), (2**20, " MiB"), (2**10, " KiB")):
        if a >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.0f} B"


def formatter(unit):
    return {
        "s": fmt_seconds,
        "dtdurations": fmt_duration,
        "percentunit": lambda v: f"{v * 100:.3g}%",
        "reqps": lambda v: f"{fmt_short(v)} req/s",
        "pps": lambda v: f"{fmt_short(v)} p/s",
        "ops": lambda v: f"{fmt_short(v)} ops/s",
        "bytes": fmt_bytes,
    }.get(unit, fmt_short)


def threshold_color(thresholds, v):
    color = "green"
    for step in (thresholds or {}).get("steps", []):
        if step["value"] is None or (v is not None and v >= step["value"]):
            color = step["color"]
    return COLORS.get(color, color)


def mapped(mappings, v):
    for m in mappings or []:
        for key, opt in m.get("options", {}).items():
            try:
                if v is not None and float(key) == v:
                    return opt.get("text"), COLORS.get(opt.get("color"), opt.get("color"))
            except ValueError:
                pass
    return None, None


# ---------------------------------------------------------------------------------- queries
def substitute(expr, instance, display=False):
    """`expr` (or, with display=True, a title) as Grafana has it for job=imds, `instance` (".*": All)
    and every other variable at All (tests/e2e/stack.py, shared with the e2e test)."""
    return interpolate(expr, dashboard_values(instance, rate_interval=RATE_INTERVAL, interval=f"{STEP}s",
                                              display=display))


def annotation_events(board, prom, instance, start, end):
    """[(name, colour, [(t0, t1), ...])] for each enabled Prometheus annotation of `board` over the run.

    As Grafana does, each annotation query runs as a range query, and every run of consecutive steps
    in which a series exists is one event, starting at the first of them (a region when it lasts)."""
    events = []
    for a in board.get("annotations", {}).get("list", []):
        if "expr" not in a or not a.get("enable", True):
            continue
        data = prom.query_range(substitute(a["expr"], instance), start, end, STEP)
        runs = []
        for series in data["result"]:
            first = prev = None
            for t, _ in series["values"]:
                t = float(t)
                if prev is not None and t - prev > 1.5 * STEP:
                    runs.append((first, prev))
                    first = None
                first = t if first is None else first
                prev = t
            if first is not None:
                runs.append((first, prev))
        events.append((a["name"], COLORS.get(a.get("iconColor"), a.get("iconColor", TEXT)), sorted(runs)))
    return events


def draw_annotations(ax, events):
    """Grafana's annotation marks, kept out of the data's way: a small marker on the bottom edge and a
    thin, faint dashed line where each event starts, under the data, and one faint band over the time
    covered by the annotation's regions (overlapping regions merged, not stacked)."""
    for _, color, runs in events:
        covered = []
        for t0, t1 in runs:
            ax.axvline(tnum(t0), color=color, linewidth=0.6, linestyle=(0, (3, 4)), alpha=0.35, zorder=1.5)
            ax.plot([tnum(t0)], [0], transform=ax.get_xaxis_transform(), marker="^", markersize=4,
                    color=color, clip_on=False, zorder=3, scalex=False, scaley=False)  # the data's limits
            if t1 - t0 <= 6 * STEP:  # a mark, not a region
                continue
            if covered and t0 <= covered[-1][1]:
                covered[-1][1] = max(covered[-1][1], t1)
            else:
                covered.append([t0, t1])
        for t0, t1 in covered:
            ax.axvspan(tnum(t0), tnum(t1), color=color, alpha=0.05, linewidth=0, zorder=0.5)


def legend(fmt, labels):
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt or "")
    text = " ".join(text.split())
    return text or ", ".join(f"{k}={v}" for k, v in labels.items() if k != "__name__") or "value"


def panels_of(board):
    for p in board["panels"]:
        yield p
        yield from p.get("panels", [])


# ---------------------------------------------------------------------------------- drawing
def tnum(t):
    """Unix seconds -> matplotlib date number (UTC)."""
    return mdates.date2num(datetime.datetime.fromtimestamp(float(t), datetime.timezone.utc))


def time_axis(ax, start, end):
    ax.set_xlim(tnum(start), tnum(end))
    width_in = ax.get_position().width * ax.figure.get_figwidth()
    fits = max(2, int(width_in / 1.1))  # one HH:MM:SS label per ~1.1 in
    every = next(step for step in (10, 15, 20, 30, 60, 120, 300, 600, 1800, 3600, 86400) if (end - start) / step <= fits)
    if every < 60:
        ax.xaxis.set_major_locator(mdates.SecondLocator(bysecond=range(0, 60, every)))
    else:
        ax.xaxis.set_major_locator(mdates.MinuteLocator(byminute=range(0, 60, max(1, every // 60))))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))


def duration_ticks(ax, unit):
    """Ticks on round durations (1 m, 5 m, 15 m, ...) for time units, as Grafana places them."""
    if unit not in ("s", "dtdurations"):
        return
    lo, hi = ax.get_ylim()
    span = hi - lo
    if span < 60:
        return
    for step in (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400):
        if span / step <= 6:
            ax.yaxis.set_major_locator(MultipleLocator(step))
            return


def style_axes(ax):
    ax.set_facecolor(PANEL_BG)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.tick_params(colors=MUTED, labelsize=7.5, length=0)
    ax.grid(True, color=GRID, linewidth=0.6)


def draw_timeseries(ax, panel, prom, instance, start, end):
    """Returns (legend handles, labels, twin axis or None)."""
    defaults = panel["fieldConfig"]["defaults"]
    unit = defaults.get("unit", "short")
    overrides = {o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
                 for o in panel["fieldConfig"].get("overrides", []) if o["matcher"]["id"] == "byFrameRefID"}
    custom = defaults.get("custom", {})
    bars = custom.get("drawStyle") == "bars"
    stacked = custom.get("stacking", {}).get("mode") == "normal"
    bottoms = {}
    ax2 = None
    n = 0
    for target in panel["targets"]:
        ov = overrides.get(target["refId"], {})
        axis = ax
        if ov.get("custom.axisPlacement") == "right":
            if ax2 is None:
                ax2 = ax.twinx()
                style_axes(ax2)
                ax2.grid(False)
                ax2.yaxis.set_major_formatter(FuncFormatter(lambda v, _, u=ov.get("unit", unit): formatter(u)(v)))
            axis = ax2
        data = prom.query_range(substitute(target["expr"], instance), start, end, STEP)
        for series in data["result"]:
            ts = [tnum(t) for t, _ in series["values"]]
            vs = [float(v) for _, v in series["values"]]
            color = PALETTE[n % len(PALETTE)]
            label = legend(target.get("legendFormat"), series["metric"])
            dashed = "lineStyle" in str(ov)
            if bars:
                base = [bottoms.get(t, 0.0) for t in ts] if stacked else None
                axis.bar(ts, vs, bottom=base, width=STEP / 86400 * 0.9, color=color, label=label, alpha=0.9)
                if stacked:
                    for t, v in zip(ts, vs):
                        bottoms[t] = bottoms.get(t, 0.0) + v
            else:
                axis.plot(ts, vs, color=color, linewidth=1.4, label=label, linestyle="--" if dashed else "-")
            n += 1
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: formatter(unit)(v)))
    if "min" in defaults:
        lo, hi = ax.get_ylim()
        ax.set_ylim(bottom=defaults["min"], top=max(hi, defaults["min"] + 1e-9))
    if custom.get("thresholdsStyle", {}).get("mode") in ("dashed", "line"):
        lo, hi = ax.get_ylim()
        for step in defaults.get("thresholds", {}).get("steps", []):
            if step["value"] is not None and lo <= step["value"] <= hi:
                ax.axhline(step["value"], color=COLORS.get(step["color"], step["color"]), linestyle="--", linewidth=1)
    duration_ticks(ax, unit)
    time_axis(ax, start, end)
    if n == 0:
        ax.text(0.5, 0.5, "No data", transform=ax.transAxes, ha="center", va="center", color=MUTED, fontsize=12)
        ax.set_yticks([])
        return [], [], ax2
    handles, labels = ax.get_legend_handles_labels()
    if ax2:
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    return handles, labels, ax2


def draw_state_timeline(ax, panel, prom, instance, start, end):
    defaults = panel["fieldConfig"]["defaults"]
    rows = []
    for target in panel["targets"]:
        data = prom.query_range(substitute(target["expr"], instance), start, end, STEP)
        for series in data["result"]:
            rows.append((legend(target.get("legendFormat"), series["metric"]), series["values"]))
    ax.grid(False)
    if not rows:
        ax.text(0.5, 0.5, "No data", transform=ax.transAxes, ha="center", va="center", color=MUTED)
        return [], [], None
    for i, (name, values) in enumerate(reversed(rows)):
        for (t, v), nxt in zip(values, values[1:] + [(end, None)]):
            v = float(v)
            text, color = mapped(defaults.get("mappings"), v)
            color = color or threshold_color(defaults.get("thresholds"), v)
            a, b = tnum(t), tnum(nxt[0])
            ax.barh(i, b - a, left=a, height=0.8, color=color, edgecolor="none")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([name for name, _ in reversed(rows)], fontsize=7.5, color=TEXT)
    ax.set_ylim(-0.5, len(rows) - 0.5)
    time_axis(ax, start, end)
    handles, labels = [], []
    for m in defaults.get("mappings", []):
        for key, opt in m["options"].items():
            handles.append(plt.Rectangle((0, 0), 1, 1, color=COLORS.get(opt["color"], opt["color"])))
            labels.append(opt["text"])
    return handles, labels, None


def draw_heatmap(ax, panel, prom, instance, start, end):
    target = panel["targets"][0]
    data = prom.query_range(substitute(target["expr"], instance), start, end, STEP)
    buckets = []
    for series in data["result"]:
        le = series["metric"].get("le")
        buckets.append((float("inf") if le == "+Inf" else float(le), le, series["values"]))
    if not buckets:
        ax.text(0.5, 0.5, "No data", transform=ax.transAxes, ha="center", va="center", color=MUTED)
        return
    buckets.sort(key=lambda b: b[0])
    times = sorted({float(t) for _, _, vals in buckets for t, _ in vals})
    index = {t: i for i, t in enumerate(times)}
    cum = np.zeros((len(buckets), len(times)))
    for row, (_, _, vals) in enumerate(buckets):
        for t, v in vals:
            cum[row, index[float(t)]] = float(v)
    counts = np.diff(np.vstack([np.zeros((1, len(times))), cum]), axis=0).clip(min=0)
    cmap = LinearSegmentedColormap.from_list("grafana", [PANEL_BG, "#5a2a00", "#fa6400", "#ffd8a8"])
    x = [tnum(t) for t in times] + [tnum(times[-1] + STEP)]
    ax.pcolormesh(x, np.arange(len(buckets) + 1), np.sqrt(counts), cmap=cmap, shading="flat")
    ax.set_yticks(np.arange(len(buckets)) + 0.5)
    labels = []
    for b, le, _ in buckets:
        labels.append("+Inf" if math.isinf(b) else fmt_seconds(b))
    ax.set_yticklabels(labels, fontsize=6)
    ax.grid(False)
    time_axis(ax, start, end)
    ax.set_ylabel("request duration ≤", color=MUTED, fontsize=7)


def draw_stat(ax, panel, prom, instance, at):
    defaults = panel["fieldConfig"]["defaults"]
    values = []
    for target in panel["targets"]:
        data = prom.query(substitute(target["expr"], instance), at)
        if data["resultType"] == "scalar":
            values.append(("", float(data["result"][1])))
        for series in data["result"] if data["resultType"] == "vector" else []:
            label = legend(target.get("legendFormat"), series["metric"]) if target.get("legendFormat") else ""
            values.append((label, float(series["value"][1])))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if not values:
        ax.text(0.5, 0.45, "No data", transform=ax.transAxes, ha="center", va="center", color=MUTED, fontsize=13)
        return
    fmt = formatter(defaults.get("unit"))
    width = 1 / len(values)
    for i, (label, v) in enumerate(values[:4]):
        text, color = mapped(defaults.get("mappings"), v)
        color = color or threshold_color(defaults.get("thresholds"), v)
        ax.add_patch(plt.Rectangle((i * width + 0.01, 0.02), width - 0.02, 0.74, transform=ax.transAxes, color=color, alpha=0.9))
        shown = text if text else fmt(v)
        ax.text(i * width + width / 2, 0.36, shown, transform=ax.transAxes, ha="center", va="center",
                color="white", fontsize=15 if len(values) == 1 else 10, fontweight="bold")
        if label and label != "value":
            ax.text(i * width + width / 2, 0.66, label, transform=ax.transAxes, ha="center", va="center", color="white", fontsize=6)


def draw_table(ax, panel, prom, instance, at):
    ax.axis("off")
    columns, rows = {}, {}
    rename = {}
    excluded = set()
    for tr in panel.get("transformations", []):
        if tr["id"] == "organize":
            rename = tr["options"].get("renameByName", {})
            excluded = {k for k, v in tr["options"].get("excludeByName", {}).items() if v}
    key_labels = set()
    for target in panel["targets"]:
        data = prom.query(substitute(target["expr"], instance), at)
        for series in data["result"]:
            labels = {k: v for k, v in series["metric"].items() if k != "__name__"}
            key_labels |= set(labels)
            key = tuple(sorted(labels.items()))
            rows.setdefault(key, {}).update(labels)
            value_col = f"Value #{target['refId']}"
            if value_col not in excluded:
                rows[key][rename.get(value_col, value_col)] = float(series["value"][1])
    if not rows:
        ax.text(0.5, 0.5, "No data", ha="center", va="center", color=MUTED)
        return
    # Merge rows that share their labels (Grafana's merge transformation).
    merged = {}
    for r in rows.values():
        k = tuple((l, r.get(l)) for l in sorted(key_labels) if l in ("job", "instance", "view"))
        merged.setdefault(k, {}).update(r)
    records = list(merged.values())
    cols = [c for c in ["instance", "view"] + list(rename.values()) if any(c in r for r in records)]
    if not rename:  # an info table: every label but the bookkeeping ones
        cols = [c for c in sorted({c for r in records for c in r}) if c not in ("job", "instance")]
    sort = panel["options"].get("sortBy") or []
    if sort:
        name, desc = sort[0]["displayName"], sort[0].get("desc", False)
        records.sort(key=lambda r: r.get(name, 0), reverse=desc)
    overrides = {o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
                 for o in panel["fieldConfig"].get("overrides", []) if o["matcher"]["id"] == "byName"}
    cells, colors = [], []
    for r in records:
        line, line_colors = [], []
        for c in cols:
            v = r.get(c, "")
            ov = overrides.get(c, {})
            color = PANEL_BG
            if isinstance(v, float):
                text, mcolor = mapped(ov.get("mappings"), v)
                tcolor = mcolor or threshold_color(ov.get("thresholds"), v)
                v = text or formatter(ov.get("unit", "short"))(v)
                color = tcolor
            line.append(v)
            line_colors.append(color)
        cells.append(line)
        colors.append(line_colors)
    fig = ax.figure
    height_in = ax.get_position().height * fig.get_figheight()
    frac = min(1.0, (len(cells) + 1) * 0.24 / height_in)
    table = ax.table(cellText=cells, colLabels=cols, cellLoc="left", colLoc="left", bbox=[0, 1 - frac, 1, frac])
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    for (row, col), cell in table.get_celld().items():
        cell.set_edgecolor(GRID)
        if row == 0:
            cell.set_facecolor("#22252b")
            cell.get_text().set_color(TEXT)
            cell.get_text().set_fontweight("bold")
        else:
            c = colors[row - 1][col]
            cell.set_facecolor(PANEL_BG)
            cell.get_text().set_color(c if c != PANEL_BG else TEXT)


UNIT_W, UNIT_H = 0.72, 0.34  # inches per Grafana grid unit (24 columns; rows of ~30 px)
TITLE_IN = 0.6


def render(board, prom, instance, start, end, out):
    grid = board["panels"]
    total_h = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in grid)
    fig_w, fig_h = 24 * UNIT_W, total_h * UNIT_H + TITLE_IN
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=80, facecolor=BG)
    shown = "All" if instance == ".*" else instance
    fig.text(0.25 / fig_w, 1 - 0.3 / fig_h, f"{board['title']}    job=imds   instance={shown}",
             color=TEXT, fontsize=15, fontweight="bold", va="center")
    try:
        events = annotation_events(board, prom, instance, start, end)
    except Exception as e:  # as for a panel: say so in the picture rather than lose it
        events = []
        fig.text(1 - 0.25 / fig_w, 1 - 0.3 / fig_h, f"annotations: error: {e}"[:120], color=COLORS["red"],
                 fontsize=9, ha="right", va="center")
    for name, _, runs in events:
        print(f"render-dashboards: {board['uid']}: annotation {name!r}: {len(runs)} event(s)")
    # A key right of the title: which colour is which annotation (dashed lines on the graphs).
    x = 1 - 0.25 / fig_w
    for name, color, runs in reversed(events):
        label = fig.text(x, 1 - 0.3 / fig_h, f"╎ {name} ({len(runs)})", color=color, fontsize=10,
                         ha="right", va="center", fontweight="bold")
        x = label.get_window_extent(renderer=fig.canvas.get_renderer()).x0 / (fig_w * fig.dpi) - 0.3 / fig_w

    def inches(x, y, w, h):
        """A box in inches from the top-left corner -> figure fraction [left, bottom, width, height]."""
        return [x / fig_w, 1 - (y + h) / fig_h, w / fig_w, h / fig_h]

    for p in grid:
        g = p["gridPos"]
        x, y = g["x"] * UNIT_W, TITLE_IN + g["y"] * UNIT_H
        w, h = g["w"] * UNIT_W, g["h"] * UNIT_H
        if p["type"] == "row":
            fig.text((x + 0.1) / fig_w, 1 - (y + h / 2) / fig_h, p["title"], color=TEXT, fontsize=12,
                     fontweight="bold", va="center")
            continue
        pad = 0.05
        bg = fig.add_axes(inches(x + pad, y + pad, w - 2 * pad, h - 2 * pad))
        bg.set_facecolor(PANEL_BG)
        bg.set_xticks([])
        bg.set_yticks([])
        for side in bg.spines.values():
            side.set_color(GRID)
        unit = p["fieldConfig"]["defaults"].get("unit", "")
        bg.text(0.12 / (w - 2 * pad), 1 - 0.08 / (h - 2 * pad), substitute(p["title"], instance, display=True), transform=bg.transAxes, ha="left", va="top",
                color=TEXT, fontsize=9.5, fontweight="bold")
        if p["type"] == "stat":  # narrow: the unit goes under the value
            bg.text(1 - 0.1 / (w - 2 * pad), 0.04 / (h - 2 * pad), unit, transform=bg.transAxes, ha="right", va="bottom",
                    color=MUTED, fontsize=7)
        else:
            bg.text(1 - 0.1 / (w - 2 * pad), 1 - 0.08 / (h - 2 * pad), unit, transform=bg.transAxes, ha="right",
                    va="top", color=MUTED, fontsize=8)
        kind = p["type"]
        left = {"timeseries": 0.8, "heatmap": 0.8, "state-timeline": 1.25}.get(kind, 0.12)
        right = 0.15
        if any(o["matcher"]["id"] == "byFrameRefID" and any(q["id"] == "custom.axisPlacement" for q in o["properties"])
               for o in p["fieldConfig"].get("overrides", [])):
            right = 0.8
        top = 0.36
        bottom = 0.3 if kind in ("timeseries", "heatmap", "state-timeline") else 0.2
        ax = fig.add_axes(inches(x + pad + left, y + pad + top, w - 2 * pad - left - right, h - 2 * pad - top - bottom))
        style_axes(ax)
        handles, labels = [], []
        try:
            if kind == "timeseries":
                handles, labels, _ = draw_timeseries(ax, p, prom, instance, start, end)
                draw_annotations(ax, events)
            elif kind == "state-timeline":
                handles, labels, _ = draw_state_timeline(ax, p, prom, instance, start, end)
            elif kind == "heatmap":
                draw_heatmap(ax, p, prom, instance, start, end)
            elif kind == "stat":
                draw_stat(ax, p, prom, instance, end)
            elif kind == "table":
                draw_table(ax, p, prom, instance, end)
        except Exception as e:  # draw the error into the panel rather than lose the picture
            ax.text(0.5, 0.5, f"error: {e}"[:120], transform=ax.transAxes, ha="center", color=COLORS["red"], fontsize=7)
        if labels:
            # Grafana's legend sits under the graph: make room for it.
            labels = labels[:12]
            handles = handles[:12]
            ncol = max(1, min(len(labels), int((w - left) // 1.9)))
            rows_needed = math.ceil(len(labels) / ncol)
            legend_h = 0.17 * rows_needed
            ax.set_position(inches(x + pad + left, y + pad + top, w - 2 * pad - left - right,
                                   h - 2 * pad - top - bottom - legend_h))
            fig.legend(handles, labels, loc="upper left", ncol=ncol, fontsize=7.5, frameon=False, labelcolor=TEXT,
                       bbox_to_anchor=((x + pad + left - 0.1) / fig_w, 1 - (y + h - pad - legend_h - 0.05) / fig_h),
                       handlelength=1.2, columnspacing=1.0, borderaxespad=0, handletextpad=0.4)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, facecolor=BG)
    plt.close(fig)
    print(f"render-dashboards: wrote {out.relative_to(ROOT)}")


def play(stack, log):
    t0 = time.monotonic()
    for at, node_name, kind, arg in TIMELINE:
        time.sleep(max(0.0, t0 + at - time.monotonic()))
        node = stack.node(node_name)
        if kind == "scenario":
            node.switch(arg)
        else:
            node.clock_offset(arg)
        log(f"render-dashboards: t={at:>3}s {node_name} -> {kind} {arg}")
    time.sleep(max(0.0, t0 + DURATION - time.monotonic()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default=str(ROOT / "target/debug/imds_exporter"))
    parser.add_argument("--from-running", metavar="URL", help="render against this Prometheus, play nothing")
    parser.add_argument("--minutes", type=float, default=None, help="with --from-running: how far back (default 3)")
    args = parser.parse_args()
    boards = {n: json.loads((ROOT / "dashboards" / f"{n}.json").read_text()) for n in ("imds-fleet", "imds-node")}

    def draw(prom, start, end):
        render(boards["imds-fleet"], prom, ".*", start, end, ROOT / "docs/img/imds-fleet.png")
        render(boards["imds-node"], prom, NODE_SUBJECT, start, end, ROOT / "docs/img/imds-node.png")

    if args.from_running:
        end = time.time()
        draw(Prometheus(args.from_running), end - 60 * (args.minutes or 3), end)
        return 0
    nodes = ["node-a", "node-b", "node-c", "node-d", "node-e", "node-f"]
    stack = Stack(args.binary, nodes, rotate_every="60s", lifetime="1h", rule_for="5s",
                  log=lambda m: print(m, flush=True))
    try:
        stack.start()
        start = time.time()
        print(f"render-dashboards: fleet up ({stack.prom.url}); playing a {DURATION}s timeline", flush=True)
        play(stack, lambda m: print(m, flush=True))
        end = time.time()
        draw(stack.prom, start, end)
    finally:
        stack.cleanup()
    return 0


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop the fleet
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    sys.exit(main())
