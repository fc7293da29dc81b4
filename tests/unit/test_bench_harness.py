"""The benchmark harness (`make bench`): its summaries and plots from recorded runs, and a --quick smoke run
against a real broker (marked integration) so the harness cannot rot unnoticed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import e2e_latency, plots
from bench.passthrough import run as passthrough

ROOT = Path(__file__).resolve().parents[2]


def _run(case: str, rate: float, cpu: float) -> dict:
    return {"case": case, "messages": 1000, "msgs_per_s": rate, "cpu_s_per_million": cpu}


def test_passthrough_summary_takes_medians_and_ratios_to_the_raw_loop():
    runs = {
        "raw": [_run("raw", 100_000, 2.0), _run("raw", 300_000, 4.0), _run("raw", 200_000, 3.0)],
        "kafka-stage": [_run("kafka-stage", 10_000, 60.0), {"case": "kafka-stage", "error": "output reached 5/10"},
                        _run("kafka-stage", 20_000, 30.0)],
        "faust-stage": [{"case": "faust-stage", "error": "crashed"}],
    }
    s = passthrough.summarize(runs)
    assert s["raw"]["msgs_per_s"] == 200_000 and s["raw"]["throughput_vs_raw"] == 1.0
    assert s["kafka-stage"]["msgs_per_s"] == 15_000 and s["kafka-stage"]["ok_runs"] == 2  # failed runs left out
    assert s["kafka-stage"]["throughput_vs_raw"] == pytest.approx(0.075)
    assert s["kafka-stage"]["cpu_vs_raw"] == pytest.approx(15.0)
    assert s["faust-stage"] == {"error": "crashed"}
    table = passthrough.table(s)
    assert "| F StageProcessor on kafka runtime (after) | 15,000 | 0.075 | 45.0 | 15.0 |" in table
    assert "failed: crashed" in table


def test_percentiles_are_nearest_rank():
    xs = list(range(1, 1001))  # 1..1000 ms
    assert [e2e_latency.percentile(xs, q) for q in (50, 99, 99.9)] == [500, 990, 999]
    assert e2e_latency.percentile([7.0], 99.9) == 7.0
    assert e2e_latency.stats([]) == {"n": 0}
    assert e2e_latency.stats([1.0, 2.0, 3.0])["max"] == 3.0


def test_latency_summary_compares_p99_with_shadow_on_and_off():
    def r(p99: float, comp: dict | None = None) -> dict:
        out = {"rate": 10.0, "n": 100, "p50": p99 / 4, "p99": p99, "p99.9": p99 * 2, "max": p99 * 3}
        if comp is not None:
            out["comparator"] = comp
        return out

    blocks = {"off": {0.5: [r(100.0), r(120.0), r(110.0)]},
              "on": {0.5: [r(111.0, {"n": 90, "p50": 20.0, "p99": 50.0, "p99.9": 60.0})] * 3}}
    (row,) = e2e_latency.summarize(blocks, [0.5])
    assert row["off"]["p99"] == 110.0 and row["on"]["p99"] == 111.0
    assert row["p99_change_pct"] == pytest.approx(100 * (111 / 110 - 1))
    assert row["comparator"]["n"] == 90


def test_plots_are_drawn_from_the_recorded_json(tmp_path):
    pytest.importorskip("matplotlib")
    pt = {"config": {"repeats": 5, "hardware": {"cpus": 2, "cpu_model": "test"}},
          "labels": passthrough.LABELS,
          "summary": passthrough.summarize({"raw": [_run("raw", 300_000, 2.5)], "kafka": [_run("kafka", 150_000, 6.0)]})}
    e2e = {"config": {"repeats": 3, "runtime": "kafka"}, "max_rate": {"events_per_s": 120.0},
           "loads": [{"load": x, "off": {"p50": 10 + x, "p99": 30 + x, "p99.9": 50 + x},
                      "on": {"p50": 11 + x, "p99": 31 + x, "p99.9": 52 + x}} for x in (0.1, 0.5, 0.8)]}
    (tmp_path / "passthrough.json").write_text(json.dumps(pt))
    (tmp_path / "e2e_latency.json").write_text(json.dumps(e2e))
    written = plots.main(["--dir", str(tmp_path)])
    for name in ("passthrough.png", "e2e_latency.png"):
        assert written[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_quick_bench_runs_end_to_end(tmp_path):
    """`python -m bench.all --quick`: both benchmarks with tiny counts on their own broker, JSON and plots."""
    done = subprocess.run([sys.executable, "-m", "bench.all", "--quick", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=840, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    pt = json.loads((tmp_path / "passthrough.json").read_text())
    assert not [c for c, s in pt["summary"].items() if "error" in s], pt["summary"]
    assert pt["summary"]["kafka-stage"]["msgs_per_s"] > 0
    e2e = json.loads((tmp_path / "e2e_latency.json").read_text())
    assert e2e["max_rate"]["events_per_s"] > 0
    (row,) = e2e["loads"]
    assert row["off"]["n"] and row["on"]["n"] and row["comparator"]["n"]


def test_a_raw_run_too_short_to_register_cpu_gives_no_cpu_ratio():
    # /proc counts CPU in 10 ms ticks: a --quick raw run can read 0 CPU-seconds; ratios to it are n/a, not a crash.
    runs = {"raw": [{"msgs_per_s": 100.0, "cpu_s_per_million": 0.0, "messages": 10}],
            "kafka": [{"msgs_per_s": 50.0, "cpu_s_per_million": 3.0, "messages": 10}]}
    s = passthrough.summarize(runs)
    assert s["kafka"]["throughput_vs_raw"] == 0.5 and s["kafka"]["cpu_vs_raw"] is None
    assert "| n/a |" in passthrough.table(s)
