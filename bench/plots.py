"""The report's pictures: latency distributions, and one race run's timeline per client."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a build machine

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from bench.families import REALTIME, Timeline
from bench.stats import summarize
from services.emulator.trace import TraceRecord

ROWS = {"mic → wire": 3.0, "toolCall": 2.0, "toolResponse": 1.0, "closure": 0.0}
BLUE, GREY, RED, GREEN, ORANGE = "#4477aa", "#999999", "#cc3311", "#228833", "#ee7733"
TITLES = {
    "tool_call_to_led": "toolCall → tool-pending LED on",
    "tool_call_to_response_gpio": "toolCall → toolResponse sent (GPIO)",
    "tool_call_to_response_mqtt": "toolCall → toolResponse sent (MQTT)",
    "interrupted_to_silence": "interrupted → speaker silent",
    "interrupted_to_last_write": "interrupted → last stale write",
    "speech_end_to_activity_end": "speech end → activityEnd, beyond hang-over",
    "close_1011_to_resumed": "1011 closure → resumed (isolated)",
    "close_1011_to_resumed_daemon": "1011 closure → resumed (daemon)",
}


def latency_figure(
    samples: Mapping[str, Sequence[float]], targets: Mapping[str, float], path: Path
) -> None:
    """One histogram per metric, its p50 and p99 in the title, its target as a red line."""
    metrics = [m for m in TITLES if samples.get(m)]
    cols = 3
    rows = max(1, math.ceil(len(metrics) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        values = samples[metric]
        ax.hist(values, bins=min(40, max(5, len(values) // 3)), color=BLUE)
        s = summarize(values)
        ax.set_title(
            f"{TITLES[metric]}\np50 {s['p50']:.2f} · p99 {s['p99']:.2f} ms · n {s['n']}",
            fontsize=9,
        )
        ax.set_xlabel("ms")
        if metric in targets:
            ax.axvline(targets[metric], color=RED, linestyle="--", label="target")
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    fig.suptitle("pi-live-voice reaction latencies", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pending_spans(records: Sequence[TraceRecord]) -> list[tuple[float, float]]:
    """When the stand-in had a call pending: toolCall out → last response in, or closure."""
    spans = []
    pending: set[str] = set()
    since = 0.0
    for r in records:
        if r["event"] == "out" and r.get("kind") == "toolCall":
            if not pending:
                since = r["t"]
            pending |= set(r.get("ids", []))
        elif pending and r["event"] == "in" and r.get("kind") == "toolResponse":
            pending -= set(r.get("ids", []))
            if not pending:
                spans.append((since, r["t"]))
        elif pending and r["event"] == "close":
            spans.append((since, r["t"]))
            pending = set()
    return spans


def _timeline_axes(ax: Axes, timeline: Timeline, start: float) -> None:
    def ms(t: float) -> float:
        return 1000 * (t - start)

    records = timeline.records

    def times(event: str, kinds: Collection[str]) -> list[float]:
        return [ms(r["t"]) for r in records if r["event"] == event and r.get("kind") in kinds]

    def row(name: str, xs: list[float], marker: str, color: str, label: str) -> None:
        ax.plot(xs, [ROWS[name]] * len(xs), marker, color=color, label=label)

    if timeline.frames:
        row("mic → wire", [ms(t) for t, ok in timeline.frames if ok], "|", BLUE, "frame sent")
        held = [ms(t) for t, ok in timeline.frames if not ok]
        row("mic → wire", held, "x", GREY, "frame held by the gate")
    else:
        row("mic → wire", times("in", REALTIME), "|", BLUE, "frame sent")
    row("toolCall", times("out", {"toolCall"}), "v", RED, "toolCall sent")
    row("toolResponse", times("in", {"toolResponse"}), "^", GREEN, "toolResponse in")
    closes = [ms(r["t"]) for r in records if r["event"] == "close" and r.get("by") == "server"]
    row("closure", closes, "X", "black", "closed")
    for begin, end in _pending_spans(records):
        ax.axvspan(ms(begin), ms(end), ymin=0.05, ymax=0.95, color=RED, alpha=0.08)
    shut_at = None
    for t, shut in timeline.gate:
        if shut and shut_at is None:
            shut_at = t
        elif not shut and shut_at is not None:
            ax.axvspan(ms(shut_at), ms(t), color=ORANGE, alpha=0.25)
            shut_at = None
    for r in records:
        if r["event"] == "violation":
            at = (ms(r["t"]), ROWS["closure"])
            ax.annotate(str(r["code"]), at, xytext=(5, 8), textcoords="offset points")
    ax.set_yticks(list(ROWS.values()), list(ROWS))
    ax.set_ylim(-0.7, 3.7)
    ax.set_title(f"{timeline.client}, seed {timeline.seed}", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def timeline_figure(timelines: Sequence[Timeline], path: Path) -> None:
    """The same seeded race, one panel per client; the gate's shut spans shaded orange."""
    fig, axes = plt.subplots(
        len(timelines), 1, figsize=(12, 2.6 * len(timelines)), squeeze=False, sharex=True
    )
    for ax, timeline in zip(axes.flat, timelines, strict=True):
        setups = [r["t"] for r in timeline.records if r.get("kind") == "setup"]
        _timeline_axes(ax, timeline, setups[0] if setups else 0.0)
        ax.set_xlabel("ms since the setup reached the stand-in")
    fig.suptitle(
        "A race: the toolCall arrives while the user is still speaking "
        "(red: a call pending at the stand-in; orange: pi-live-voice's gate shut)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
