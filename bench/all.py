"""Every benchmark of issue 7 in one go (`make bench`): per-hop pass-through, end-to-end latency with shadow
off and on, then the plots. Each benchmark starts its own Kafka (and Redis) on free ports.

    .venv-bench/bin/python -m bench.all            # the full run, ~20 min on 2 cores; writes docs/bench/
    .venv-bench/bin/python -m bench.all --quick      # tiny counts into a temporary folder: checks the harness
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import e2e_latency, plots  # noqa: E402
from bench.passthrough import run as passthrough  # noqa: E402

FULL = {
    "passthrough": ["--messages", "200000", "--slow-messages", "20000", "--repeats", "5"],
    "e2e": ["--repeats", "3", "--duration", "20", "--burst", "1000"],
}
QUICK = {
    "passthrough": ["--messages", "3000", "--slow-messages", "500", "--repeats", "1", "--timeout", "120"],
    "e2e": ["--repeats", "1", "--duration", "2", "--burst", "60", "--loads", "0.5"],
}


def cases() -> str:
    """Every pass-through case; Quix Streams only where it is installed (the bench extra)."""
    try:
        import quixstreams  # noqa: F401
    except ImportError:
        print("quixstreams is not installed (pip install -e '.[bench]'): case B left out", flush=True)
        return ",".join(c for c in passthrough.LABELS if c != "quix")
    return ",".join(passthrough.LABELS)


def main(argv: list[str] | None = None) -> dict[str, Path]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny counts, one repeat: a smoke test of the harness")
    ap.add_argument("--out", type=Path, default=None, help="where the JSON and PNG files go (default docs/bench, "
                    "or a fresh temporary folder with --quick, so a smoke run never overwrites the recorded results)")
    ap.add_argument("--skip", default="", help="comma-separated: passthrough, e2e")
    args = ap.parse_args(argv)
    preset = QUICK if args.quick else FULL
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="bench-quick-")) if args.quick else ROOT / "docs" / "bench"
    skip = set(filter(None, args.skip.split(",")))
    args.out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    t0 = time.monotonic()
    if "passthrough" not in skip:
        written["passthrough"] = args.out / "passthrough.json"
        passthrough.main([*preset["passthrough"], "--cases", cases(), "--out", str(written["passthrough"])])
        print(f"-- pass-through done after {time.monotonic() - t0:.0f}s", flush=True)
    if "e2e" not in skip:
        written["e2e"] = args.out / "e2e_latency.json"
        e2e_latency.main([*preset["e2e"], "--out", str(written["e2e"])])
        print(f"-- end-to-end latency done after {time.monotonic() - t0:.0f}s", flush=True)
    written.update(plots.main(["--dir", str(args.out)]))
    print(f"-- all done after {time.monotonic() - t0:.0f}s: {', '.join(str(p) for p in written.values())}", flush=True)
    return written


if __name__ == "__main__":
    main()
