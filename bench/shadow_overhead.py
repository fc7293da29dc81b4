"""What shadow mode costs production: end-to-end latency with the shadow path off vs on (A B A B ...).

Starts its own Kafka and Redis on free loopback ports, one production worker (all stages), and for the
"on" runs a mirror, a candidate and a comparator for the classify stage. Each run publishes the same
open-loop load (fixed rate, fresh conversation ids) and measures publish -> suggestion/escalation time.

    .venv/bin/python bench/shadow_overhead.py --repeats 3 --events 200 --rate 20
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.records import ConversationEvent  # noqa: E402
from schemas.codec import SingleObjectCodec  # noqa: E402
from schemas.topics import Topics  # noqa: E402
from shadowline.config import get_settings  # noqa: E402
from shadowline.localinfra import KafkaNode, RedisNode, free_port  # noqa: E402
from streams.admin import ensure_topics  # noqa: E402
from streams.publisher import Publisher  # noqa: E402
from streams.reader import end_offsets, read  # noqa: E402
from shadowline.processes import WorkerProcess, worker_env  # noqa: E402

CODEC = SingleObjectCodec()
TOPICS = Topics()


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def one_run(kafka: str, texts: list[str], rate: float) -> list[float]:
    tag = uuid.uuid4().hex[:6]
    events = [ConversationEvent(f"{tag}-{i}-t0", f"{tag}-{i}", "customer", t, 0) for i, t in enumerate(texts)]
    start = end_offsets(kafka, [TOPICS.suggestions, TOPICS.escalations])
    sent: dict[str, float] = {}
    with Publisher(kafka, CODEC, TOPICS) as pub:
        t0 = time.monotonic()
        for n, e in enumerate(events):
            time.sleep(max(0.0, t0 + n / rate - time.monotonic()))  # open loop: the schedule, not the replies, sets the pace
            now = int(time.time() * 1000)
            pub.publish_event(ConversationEvent(e.event_id, e.conversation_id, "customer", e.text, now))
            sent[e.event_id] = now
    lat: dict[str, float] = {}
    for _, rec in read(kafka, start, CODEC, TOPICS.record_of, stop=lambda: len(lat) >= len(events), timeout_s=120):
        if rec.get("event_id") in sent:
            lat[rec["event_id"]] = rec["created_ms"] - sent[rec["event_id"]]
    return list(lat.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=None, help="default docs/bench/shadow_overhead_<rate>.json")
    args = ap.parse_args()
    args.out = args.out or ROOT / "docs" / "bench" / f"shadow_overhead_{args.rate:g}.json"
    settings = get_settings()
    texts = [r["text"] for r in csv.DictReader(open(settings.samples_dir / "training" / "topics.csv"))]
    texts = (texts * (args.events // len(texts) + 1))[: args.events]
    work = Path(tempfile.mkdtemp(prefix="shadow-bench-"))
    kafka = KafkaNode(settings.home, free_port(), free_port(), work / "kafka" / "data")
    redis_node = RedisNode(settings.home, free_port(), work / "redis" / "data")
    kafka.start()
    redis_node.start()
    procs: list[WorkerProcess] = []
    try:
        pipeline = yaml.safe_load((ROOT / "pipeline.yaml").read_text())
        pipeline["stages"]["classify"].update(candidates=[{"name": "tfidf-logreg", "version": "2", "config": {"C": 3.0}}], mirror_rate=1.0)
        (work / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
        env = worker_env(kafka.bootstrap, redis_node.url, work, SHADOWLINE_PIPELINE_CONFIG=str(work / "pipeline.yaml"))
        ensure_topics(kafka.bootstrap, TOPICS.specs(), partitions=3)
        procs.append(WorkerProcess(["worker"], env, work / "production.log"))
        one_run(kafka.bootstrap, texts[:20], 10)  # warm up: consumer groups joined, models loaded
        results: dict[str, list[dict]] = {"off": [], "on": []}
        shadow: list[WorkerProcess] = []
        for r in range(args.repeats):
            for mode in ("off", "on"):
                if mode == "on":
                    shadow = [WorkerProcess(a, env, work / f"{a[1]}-{r}.log") for a in (
                        ["shadow", "mirror", "classify"], ["shadow", "run", "classify"], ["shadow", "compare", "classify"])]
                    one_run(kafka.bootstrap, texts[:20], 10)  # let them boot: measure steady state
                lat = one_run(kafka.bootstrap, texts, args.rate)
                results[mode].append({"p50": percentile(lat, 50), "p95": percentile(lat, 95), "p99": percentile(lat, 99), "n": len(lat)})
                print(f"repeat {r} shadow {mode}: p50 {results[mode][-1]['p50']:.0f} ms, p95 {results[mode][-1]['p95']:.0f} ms, "
                      f"p99 {results[mode][-1]['p99']:.0f} ms (n={len(lat)})", flush=True)
                for p in shadow:
                    p.stop()
                shadow = []
        summary = {mode: {k: statistics.median(x[k] for x in runs) for k in ("p50", "p95", "p99")} for mode, runs in results.items()}
        summary["config"] = {"repeats": args.repeats, "events": args.events, "rate_per_s": args.rate, "cpus": 2}
        summary["runs"] = results
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2))
        print(json.dumps({k: summary[k] for k in ("off", "on")}, indent=2))
    finally:
        for p in procs:
            p.stop()
        redis_node.stop()
        kafka.stop()


if __name__ == "__main__":
    main()
