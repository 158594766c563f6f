"""The benchmarks at their tiny size: they run end to end and the report has every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ("pi-live-voice", "cookbook", "seed-fix")
LATENCIES = (
    "tool_call_to_led",
    "tool_call_to_response_gpio",
    "tool_call_to_response_mqtt",
    "interrupted_to_silence",
    "speech_end_to_activity_end",
    "close_1011_to_resumed",
)
COST = ("cpu_pct_listening", "cpu_pct_speaking", "rss_peak_mib", "ready_s", "import_s")


# The suite's 180 s is too short for every benchmark at once, the soak's half minute included.
@pytest.mark.timeout(330)
def test_tiny_bench_writes_a_complete_report(tmp_path: Path) -> None:
    # A process of its own, as `make bench` runs it: alsa-lib reads its configuration once
    # per process, and the bench spawns workers.
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--size", "tiny", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert {"machine", "versions", "date"} <= set(report)
    for family in ("race", "faults"):
        for client in CLIENTS:
            entry = report[family][client]
            assert {"runs", "finished", "closures"} <= set(entry)
            assert entry["runs"] > 0
            assert all(code.isdigit() for code in entry["closures"])
    assert report["race"]["pi-live-voice"]["closures"] == {}
    assert report["faults"]["pi-live-voice"]["rule_violations"] == 0
    for metric in LATENCIES:
        summary = report["latency_ms"][metric]
        assert set(summary) == {"p50", "p95", "p99", "max", "n"}
        assert summary["n"] > 0
    assert set(COST) <= set(report["cost"])
    soak = report["soak"]
    assert soak["turns"] > 0
    assert soak["rss_end_mib"] > 0
    assert soak["top_growth"]
    assert all(report["cost"][key] > 0 for key in COST)
    assert (tmp_path / "report.md").read_text(encoding="utf-8").startswith("# pi-live-voice")
    assert (tmp_path / "latency.png").stat().st_size > 0
    assert (tmp_path / "race-timeline.png").stat().st_size > 0
