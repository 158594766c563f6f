"""From measurements to ``report.json`` and ``report.md``: tables, targets, and the notes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.families import CLIENTS, FAULTS, STALE_REJECTION, Outcome
from bench.latency import HANGOVER_MS
from bench.scaling import SPEED
from bench.stats import summarize

# (what, where in report.json, upper bound, unit)
TARGETS: tuple[tuple[str, tuple[str, ...], float, str], ...] = (
    (
        "tool-pending LED on after the toolCall is received, p99",
        ("latency_ms", "tool_call_to_led", "p99"),
        2.0,
        "ms",
    ),
    (
        "GPIO tool response on the wire, p99",
        ("latency_ms", "tool_call_to_response_gpio", "p99"),
        10.0,
        "ms",
    ),
    ("interrupted → silence, p99", ("latency_ms", "interrupted_to_silence", "p99"), 30.0, "ms"),
    (
        "conversation resumed after a 1011, p95",
        ("latency_ms", "close_1011_to_resumed", "p95"),
        2000.0,
        "ms",
    ),
    ("listening, CPU of one core", ("cost", "cpu_pct_listening"), 2.0, "%"),
    ("peak RSS", ("cost", "rss_peak_mib"), 100.0, "MiB"),
    ("start → READY", ("cost", "ready_s"), 3.0, "s"),
    (
        "RSS growth over the soak, after its warm-up",
        ("soak", "rss_growth_after_warmup_mib"),
        1.0,
        "MiB",
    ),
)
# Metric → its target, for the plot.
PLOT_TARGETS = {
    "tool_call_to_led": 2.0,
    "tool_call_to_response_gpio": 10.0,
    "interrupted_to_silence": 30.0,
    "close_1011_to_resumed": 2000.0,
}
METRIC_NAMES = {
    "tool_call_to_led": "toolCall received → tool-pending LED on",
    "tool_call_to_response_gpio": "toolCall received → toolResponse on the wire (GPIO tool)",
    "tool_call_to_response_mqtt": (
        "toolCall received → toolResponse on the wire (MQTT tool, QoS 1 publish to mosquitto)"
    ),
    "interrupted_to_silence": "`interrupted` received → speaker silent (PCM dropped)",
    "interrupted_to_last_write": "`interrupted` received → last stale sample written to ALSA",
    "speech_end_to_activity_end": (
        f"speech end in the fixture → `activityEnd` on the wire, beyond the {HANGOVER_MS} ms "
        "hang-over"
    ),
    "close_1011_to_resumed": (
        "1011 closure → conversation resumed (`setupComplete` on the resumed connection), "
        "isolated: fault family, a fresh session each"
    ),
    "close_1011_to_resumed_daemon": (
        "1011 closure → conversation resumed, the daemon's own fault rounds"
    ),
}
FAULT_NAMES = {
    "close-1011-pending": "1011 while a call is pending",
    "go-away-mid-turn": "goAway mid-turn",
    "stale-handle": "stale resumption handle",
    "silent-stall": "silent stall",
}


def _closures(outcomes: Sequence[Outcome]) -> dict[str, int]:
    counts = Counter(code for o in outcomes for code in o.closures)
    return {str(code): n for code, n in sorted(counts.items())}


def _basic(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    return {
        "runs": len(outcomes),
        "finished": sum(o.finished for o in outcomes),
        "closures": _closures(outcomes),
        "hung": sum(o.hung for o in outcomes),
    }


def family(outcomes: Sequence[Outcome], by_fault: bool) -> dict[str, dict[str, Any]]:
    """Per client: runs, finished, closures by code, and what explains them."""
    table: dict[str, dict[str, Any]] = {}
    for client in CLIENTS:
        mine = [o for o in outcomes if o.client == client]
        rules = Counter(v for o in mine for v in o.violations)
        entry = {
            **_basic(mine),
            "violations": dict(sorted(rules.items())),
            "rule_violations": sum(n for rule, n in rules.items() if rule != STALE_REJECTION),
            "runs_with_input_while_pending": sum(1 for o in mine if o.late_input),
            "frames_held_by_gate": sum(o.gated for o in mine),
            "calls_while_speaking": sum(o.early_calls for o in mine),
            "median_run_s": summarize([o.seconds for o in mine])["p50"],
        }
        if by_fault:
            entry["by_fault"] = {f: _basic([o for o in mine if o.fault == f]) for f in FAULTS}
        table[client] = entry
    return table


def _get(report: dict[str, Any], path: tuple[str, ...]) -> float | None:
    node: Any = report
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, int | float) else None


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue with its figure; ``met`` None when it was not measured."""
    rows = []
    for name, path, bound, unit in TARGETS:
        value = _get(report, path)
        n = _get(report, (*path[:-1], "n")) if path[0] == "latency_ms" else None
        measured = value is not None and n != 0
        rows.append(
            {
                "target": name,
                "bound": bound,
                "unit": unit,
                "value": value if measured else None,
                "met": (value <= bound) if measured and value is not None else None,
            }
        )
    return rows


@dataclass(frozen=True)
class Extras:
    """What the markdown says beyond the JSON figures."""

    size: str
    wall_s: float
    params: dict[str, Any]
    notes: list[str]
    import_heaviest: list[tuple[str, float]]


def codes(closures: dict[str, int]) -> str:
    """Closures by code for people: ``1008: 12, 1011: 3``, or ``none``."""
    return ", ".join(f"{code}: {n}" for code, n in closures.items()) or "none"


def _pct(n: int, of: int) -> str:
    return f"{n} ({100 * n / of:.1f} %)" if of else "0"


def _race_md(report: dict[str, Any]) -> list[str]:
    race = report["race"]
    lines = [
        "| client | runs | finished | closures (code: count) "
        "| runs with input while a call was pending | hung |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for client in CLIENTS:
        r = race[client]
        lines.append(
            f"| {client} | {r['runs']} | {_pct(r['finished'], r['runs'])} "
            f"| {codes(r['closures'])} "
            f"| {r['runs_with_input_while_pending']} | {r['hung']} |"
        )
    ours = race["pi-live-voice"]
    lines += [
        "",
        f"The races happened: {ours['calls_while_speaking']} of pi-live-voice's tool calls came "
        "while "
        f"the user was speaking, and its gate held back {ours['frames_held_by_gate']} realtime "
        "frames (audio and activity signals) that would have broken the rule.",
    ]
    return lines


def _faults_md(report: dict[str, Any]) -> list[str]:
    faults = report["faults"]
    head = "| fault | " + " | ".join(CLIENTS) + " |"
    lines = [head, "| --- |" + " --- |" * len(CLIENTS)]
    for fault in FAULTS:
        cells = []
        for client in CLIENTS:
            f = faults[client]["by_fault"][fault]
            hung = f", {f['hung']} hung" if f["hung"] else ""
            cells.append(
                f"{f['finished']}/{f['runs']} finished; closures {codes(f['closures'])}{hung}"
            )
        lines.append(f"| {FAULT_NAMES[fault]} | " + " | ".join(cells) + " |")
    lines.append(
        "| rules the client broke (the stale-handle rejection aside) | "
        + " | ".join(str(faults[c]["rule_violations"]) for c in CLIENTS)
        + " |"
    )
    lines.append(
        "| **all faults** | "
        + " | ".join(
            f"**{faults[c]['finished']}/{faults[c]['runs']}**; {codes(faults[c]['closures'])}"
            for c in CLIENTS
        )
        + " |"
    )
    return lines


def _latency_md(report: dict[str, Any]) -> list[str]:
    lines = [
        "| metric | p50 | p95 | p99 | max | n | target |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for metric, s in report["latency_ms"].items():
        target = PLOT_TARGETS.get(metric)
        verdict = ""
        if target is not None:
            key = "p95" if metric == "close_1011_to_resumed" else "p99"
            met = s["n"] and s[key] <= target
            verdict = f"{key} ≤ {target:g} ms: {'met' if met else 'missed'}"
        lines.append(
            f"| {METRIC_NAMES.get(metric, metric)} | {s['p50']:.2f} | {s['p95']:.2f} "
            f"| {s['p99']:.2f} "
            f"| {s['max']:.2f} | {s['n']} | {verdict} |"
        )
    return lines


def _cost_md(report: dict[str, Any], extras: Extras) -> list[str]:
    c = report["cost"]
    per_min = {k: c[f"cpu_pct_{k}"] * 0.6 for k in ("idle", "listening", "speaking")}
    lines = [
        "| | % of one core | CPU s per minute | window |",
        "| --- | ---: | ---: | ---: |",
    ]
    for k, label in (
        ("idle", "idle (capture + VAD)"),
        ("listening", "listening (capture + VAD + send)"),
        ("speaking", "speaking (receive + playback)"),
    ):
        lines.append(
            f"| {label} | {c[f'cpu_pct_{k}']:.2f} | {per_min[k]:.2f} | {c['windows_s'][k]:.0f} s |"
        )
    heavy = ", ".join(f"{name} {s:.2f} s" for name, s in extras.import_heaviest)
    lines += [
        "",
        f"- peak RSS (VmHWM of the daemon process): **{c['rss_peak_mib']:.1f} MiB**",
        f"- start → READY: **{c['ready_s']:.2f} s** (clock point: {c['ready_clock']})",
        f"- `import device.daemon` in a fresh interpreter: **{c['import_s']:.2f} s** (median), "
        f"{c['import_rss_mib']:.1f} MiB resident once imported; "
        f"heaviest imports: {heavy}",
        "",
        "Where the CPU goes, each stage alone (CPU ms per second of audio; 10 ms/s is 1 % of a "
        "core):",
        "",
        "| stage | ms/s |",
        "| --- | ---: |",
    ]
    lines += [f"| {stage} | {ms:.2f} |" for stage, ms in report["components_ms_per_s"].items()]
    return lines


# What the scaling run sizes that must stay small whatever the session length.
BOUNDED = ("uplink_queue", "pending_calls", "call_start_times", "running_tools", "speaker_queue")


def _scaling_md(report: dict[str, Any]) -> list[str]:
    points = report["scaling"]["checkpoints"]
    if not points:
        return ["No checkpoint was reached."]
    keys = [k for k in points[0] if k != "minutes"]
    lines = [
        "| simulated minutes | " + " | ".join(f"{p['minutes']:g}" for p in points) + " |",
        "| --- |" + " ---: |" * len(points),
    ]
    lines += [f"| {k} | " + " | ".join(f"{p[k]:g}" for p in points) + " |" for k in keys]
    if len(points) >= 2:
        a, b = points[-2], points[-1]
        held = max(b[k] for k in BOUNDED)
        objects = b["gc_objects"] - a["gc_objects"]
        pins = b["mock_pin_history"] - a["mock_pin_history"]
        rss = b["rss_mib"] - a["rss_mib"]
        lines += [
            "",
            f"From {a['minutes']:g} to {b['minutes']:g} simulated minutes, Python objects grew "
            f"by {objects:g}, of which {pins:g} are the mock pins' history, and RSS by "
            f"{rss:.1f} MiB; the queues, pending calls and running tools held at most {held:g} "
            f"item(s), and the closure reports {b['closure_reports']:g} (a ring of 32).",
        ]
    return lines


def _soak_md(report: dict[str, Any]) -> list[str]:
    soak = report["soak"]
    points = soak["checkpoints"]
    lines = [
        f"The daemon as installed (`pi-live-voice run`, `tracemalloc` on) for "
        f"{soak['minutes']:g} minutes in real time on the virtual sound card: a request every "
        f"{soak['turn_every_s']:g} s, each answered after a `set_output` call and followed by "
        f"a `goAway`, so it reconnected {soak['reconnects']} times over {soak['turns']} turns. "
        "The figures at the first checkpoint, after the warm-up and at the end:",
        "",
        "| | start | after the warm-up | end | growth after the warm-up |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| RSS, MiB | {soak['rss_start_mib']:.1f} | {soak['rss_warm_mib']:.1f} | "
        f"{soak['rss_end_mib']:.1f} | {soak['rss_growth_after_warmup_mib']:+.2f} |",
        f"| RSS less tracemalloc's tables, MiB | {points[0]['rss_untraced_mib']:.1f} | "
        f"{soak['untraced_warm_mib']:.1f} | {soak['untraced_end_mib']:.1f} | "
        f"{soak['untraced_growth_after_warmup_mib']:+.2f} |",
        f"| traced Python heap, MiB | {points[0]['traced_mib']:.1f} | "
        f"{soak['traced_warm_mib']:.1f} | {soak['traced_end_mib']:.1f} | "
        f"{soak['traced_growth_after_warmup_mib']:+.2f} |",
        "",
        f"The warm-up is the first {soak['warmup_min']:g} minutes. Where the traced heap grew "
        "most from the end of the warm-up to the end:",
        "",
        "| site | growth KiB | blocks | live KiB |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| `{row['site']}` | {row['growth_kib']:+.1f} | {row['blocks']:+d} | "
        f"{row['size_kib']:.1f} |"
        for row in soak["top_growth"][:5]
    ]
    return lines


def markdown(report: dict[str, Any], extras: Extras) -> str:
    """The human report."""
    m = report["machine"]
    v = report["versions"]
    rows = report["targets"]
    out = [
        "# pi-live-voice benchmarks",
        "",
        f"Produced by `make bench` (`python -m bench.run --size {extras.size}`) on "
        f"{report['date']}; "
        f"the whole run took {extras.wall_s / 60:.1f} min.",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['arch']}, "
        f"{m['os']} (kernel {m['kernel']}); load average {m['load_avg_1m_at_start']} at the start",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        "",
        "> Absolute times are from this machine class, not a Raspberry Pi: expect a Pi to be",
        "> several times slower on CPU-bound figures (start-up, import, CPU share).",
        "",
        "## Targets",
        "",
        "| target | measured | bound | |",
        "| --- | ---: | ---: | --- |",
    ]
    for r in rows:
        value = "not measured" if r["value"] is None else f"{r['value']:g} {r['unit']}"
        verdict = "not measured" if r["met"] is None else ("**met**" if r["met"] else "**missed**")
        out.append(f"| {r['target']} | {value} | ≤ {r['bound']:g} {r['unit']} | {verdict} |")
    p = extras.params
    out += [
        "",
        "## 1. Gate correctness under races",
        "",
        f"{report['race']['pi-live-voice']['runs']} seeded runs per client of a two-turn "
        "conversation against its own stand-in (grace window 100 ms), through the real SDK; every "
        "client gets the same seeds. Per turn the model calls one to three tools in one message "
        "(fast, slow 50-400 ms, or failing), in 75 % of turns while the user is still speaking; "
        "the "
        "mic sends a 20 ms frame every 10-20 ms. pi-live-voice uses manual activity "
        "(`activityStart`/`activityEnd`, as the daemon does); `cookbook` (the getting-started "
        "example: no gating) and `seed-fix` (the public report's boolean flag) keep an open mic "
        "with automatic activity detection, as they are written. A failing tool is answered with "
        "an error payload by all three, so the columns differ only in gating and recovery. "
        f"{p['workers']} worker processes ran up to {p['concurrency']} conversations each; "
        f"their event loops woke late by {p['loop_lag_ms']['p99']:.1f} ms p99 "
        f"(max {p['loop_lag_ms']['max']:.1f} ms), against the 100 ms grace window.",
        "",
        *_race_md(report),
        "",
        "### Faults",
        "",
        f"{p['fault_runs']} seeded runs per fault and client: slow tools (100-400 ms) after the "
        "user's turn, and one service fault — a 1011 closure while a call is pending, a `goAway` "
        "(200-800 ms left) while a call is pending, expired resumption handles followed by a 1011, "
        f"or a silent stall during the reply. pi-live-voice's stall watchdog is set to "
        f"{p['stall_timeout_s']:g} s for these runs (`[live] stall_timeout_s`, default 20 s); "
        "a run "
        f"not finished after {p['fault_limit_s']:g} s counts as hung. For a stale handle the "
        "service answers the resumption with 1008 `session not found` — the expected answer, "
        "after which pi-live-voice starts a fresh session and the user repeats the request.",
        "",
        *_faults_md(report),
        "",
        "## 2. Reaction latencies (pi-live-voice daemon)",
        "",
        "The whole daemon runs in its own process as `pi-live-voice run` builds it (virtual ALSA "
        "sound card, mock GPIO pins, the real SDK) against stand-ins in the bench process. "
        f"{p['button_rounds']} push-to-talk rounds (`set_output` on a relay, `set_light` published "
        "with QoS 1 to a real mosquitto, a slow tool hit by a 1011, or a long reply interrupted "
        f"by the service), then {p['utterances']} espeak-ng "
        "utterances in open-mic mode with the VAD deciding the end. Clock points, all on the one "
        "monotonic clock: *received* = the SDK handed the message to the session; *LED on* = the "
        "daemon's `tool-led on` observation right after the pin was set; *on the wire* = the "
        "session's send of the response returned; *silent* = the speaker PCM's `drop()` returned "
        "(the PCM is paced like a device buffer, and the stand-in streams replies at twice real "
        "time, so the speaker is busy when `interrupted` comes); *speech end* = the fixture's last "
        "loud sample was spoken into the FIFO mic, *activityEnd* = the stand-in received it; "
        "*1011* = the stand-in closed, *resumed* = it sent `setupComplete` on the connection that "
        "resumed the conversation with its handle. The 1011 figure the target applies to comes "
        "from the fault family's 1011 runs (pi-live-voice's session, fresh each time); the "
        "daemon's own few fault rounds have a line of their own and are kept at least 35 s "
        "apart, because the session counts a connection as healthy only after 30 s: 1011s "
        "closer together are a failing streak, met with a back-off that doubles each time "
        "(0.2 s, 0.4 s, ... up to 30 s), as it is meant to.",
        "",
        *_latency_md(report),
        "",
        "![latency distributions](latency.png)",
        "",
        "## 3. Cost (pi-live-voice daemon)",
        "",
        "`python -m device.cli run --config FILE` in its own process; CPU from `/proc/PID/stat` "
        "(all threads, user + system) sampled every 100 ms; windows from the stand-in's trace: "
        "listening = `activityStart` → `activityEnd` of one long espeak-ng utterance, speaking = "
        "first reply audio → `turnComplete` of a reply streamed in real time.",
        "",
        *_cost_md(report, extras),
        "",
        "### Scaling with session length",
        "",
        f"The daemon on a mic fast-forwarded to {SPEED:g} times real time (every frame "
        "processed, none dropped) against a "
        "stand-in replying flat out; every turn calls `set_output`, every 60th ends its "
        f"connection with `goAway`. The run took {report['scaling']['wall_s']:.0f} s of wall "
        "time. Sizes at each checkpoint (the stand-in's rows are the stand-in, not the device):",
        "",
        *_scaling_md(report),
        "",
        "### Soak",
        "",
        *_soak_md(report),
        "",
        "## 4. A race, drawn",
        "",
        "![race timeline](race-timeline.png)",
        "",
    ]
    out += ["## Closing note", ""]
    out += [f"- {note}" for note in extras.notes] or ["- Every target was met."]
    out.append("")
    return "\n".join(out)
