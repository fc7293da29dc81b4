"""PNG plots of the benchmark JSON for docs/benchmarks.md: pass-through throughput and CPU per message, and
end-to-end latency percentiles against load with shadow off and on.

    .venv-bench/bin/python -m bench.plots --dir docs/bench
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def save(fig: Any, path: Path, plt: Any) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def passthrough_plot(data: dict[str, Any], out: Path, plt: Any) -> Path:
    rows = [(data["labels"].get(c, c), s) for c, s in data["summary"].items() if "error" not in s]
    names = [n for n, _ in rows][::-1]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 0.55 * len(rows) + 1.6), sharey=True)
    rates = [s["msgs_per_s"] for _, s in rows][::-1]
    cpu_us = [s["cpu_s_per_million"] for _, s in rows][::-1]  # CPU-s per million = CPU-µs per message
    ax1.barh(names, rates, color="#4c72b0")
    ax1.set_xscale("log")
    ax1.set_xlabel("messages / s (log)")
    for y, (v, (_, s)) in enumerate(zip(rates, rows[::-1])):
        ax1.text(v, y, f" {v:,.0f} ({s.get('throughput_vs_raw', 1):.3f}× raw)", va="center", fontsize=8)
    ax2.barh(names, cpu_us, color="#dd8452")
    ax2.set_xscale("log")
    ax2.set_xlabel("CPU-µs per message (log)")
    for y, v in enumerate(cpu_us):
        ax2.text(v, y, f" {v:.1f}", va="center", fontsize=8)
    hw = data["config"].get("hardware", {})
    fig.suptitle(f"Per-hop pass-through, medians of {data['config']['repeats']} interleaved repeats "
                 f"({hw.get('cpus', '?')} cores, {hw.get('cpu_model', '')})", fontsize=10)
    return save(fig, out / "passthrough.png", plt)


def latency_plot(data: dict[str, Any], out: Path, plt: Any) -> Path:
    rows = data["loads"]
    xs = [r["load"] * 100 for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    styles = {"p50": ("o", "#4c72b0"), "p99": ("s", "#dd8452"), "p99.9": ("^", "#55a868")}
    for mode, line in (("off", "-"), ("on", "--")):
        for q, (marker, color) in styles.items():
            ys = [r[mode].get(q) for r in rows]
            if all(y is not None for y in ys):
                ax.plot(xs, ys, line, marker=marker, color=color, label=f"{q}, shadow {mode}")
    ax.set_yscale("log")
    ax.set_xlabel(f"load, % of the maximum rate ({data['max_rate']['events_per_s']:.0f} events/s)")
    ax.set_ylabel("publish → suggestion/escalation, ms (log)")
    ax.set_xticks(xs)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    ax.set_title(f"End-to-end latency, {data['config'].get('runtime', '?')} runtime, medians of "
                 f"{data['config']['repeats']} repeats", fontsize=10)
    return save(fig, out / "e2e_latency.png", plt)


def main(argv: list[str] | None = None) -> dict[str, Path]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=ROOT / "docs" / "bench")
    args = ap.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plots", flush=True)
        return {}
    written = {}
    for name, fn in (("passthrough", passthrough_plot), ("e2e_latency", latency_plot)):
        src = args.dir / f"{name}.json"
        if src.exists():
            written[f"{name}.png"] = fn(json.loads(src.read_text()), args.dir, plt)
    return written


if __name__ == "__main__":
    main()
