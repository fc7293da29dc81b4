"""End-to-end latency through the full pipeline at 10/50/80% of its maximum rate, shadow mode off and on.

Starts Kafka and Redis on free ports and one production worker running every stage with the default
components (pipeline.yaml; classify gets a candidate and mirror rate 1.0, used only when shadow is on).
The end topics (suggestions, escalations, compare.classify) are created with LogAppendTime, so a record's
timestamp is the moment it reached the end topic. Each event carries its send time in a Kafka header, which
the workers forward to what they produce, so latency = end-topic append time - header, per event, with no
reader in the loop while the load runs.

1. Maximum rate: a burst of --burst events sent at once; rate = events / (last arrival - first send).
2. Open loop at each --loads fraction of that rate: events on a fixed schedule (never paced by replies) for
   --duration seconds; p50/p99/p99.9 of the arrivals. Blocks alternate shadow off / shadow on (mirror,
   candidate, comparator started for the block with their consumer groups moved to the end, so they start
   from "now" like a freshly enabled shadow), --repeats times; medians over repeats.
3. Comparator: in every shadow-on run, comparisons per event and their latency; then a burst with shadow
   on: the rate at which production finished and the rate at which the comparisons finished.

    .venv-bench/bin/python -m bench.e2e_latency --repeats 3 --duration 20
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.records import ConversationEvent  # noqa: E402
from bench.hardware import hardware  # noqa: E402
from schemas.codec import SingleObjectCodec  # noqa: E402
from schemas.topics import Topics  # noqa: E402
from shadowline.config import get_settings  # noqa: E402
from shadowline.localinfra import KafkaNode, RedisNode, free_port  # noqa: E402
from shadowline.processes import WorkerProcess, stop_all, worker_env  # noqa: E402
from streams.admin import ensure_topics  # noqa: E402
from streams.reader import end_offsets  # noqa: E402

CODEC = SingleObjectCodec()
TOPICS = Topics()
STAGE = "classify"
CANDIDATE = {"name": "tfidf-logreg", "version": "2", "config": {"C": 3.0}}
HDR_RUN, HDR_SENT = "bench-run", "bench-sent-us"
# Consumer groups of the shadow processes (app ids in shadow/workers.py) and what each reads.
SHADOW_GROUPS = {
    f"shadowline-mirror-{STAGE}": [TOPICS.stage_in(STAGE)],
    f"shadowline-shadow-{STAGE}-{CANDIDATE['name']}-{CANDIDATE['version']}": [TOPICS.shadow_in(STAGE)],
    f"shadowline-compare-{STAGE}": [TOPICS.suggestions, TOPICS.escalations, TOPICS.shadow_out(STAGE), TOPICS.feedback],
}
SHADOW_ARGS = [["shadow", "mirror", STAGE], ["shadow", "run", STAGE], ["shadow", "compare", STAGE]]


def percentile(xs: list[float], q: float) -> float:
    """Nearest rank; with n samples, p99.9 is the maximum until n >= 1000."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(q / 100 * len(xs) - 1e-9) - 1))]


def stats(lat_ms: list[float]) -> dict[str, float]:
    if not lat_ms:
        return {"n": 0}
    return {"n": len(lat_ms), "p50": percentile(lat_ms, 50), "p99": percentile(lat_ms, 99),
            "p99.9": percentile(lat_ms, 99.9), "max": max(lat_ms)}


def create_topics(bootstrap: str) -> None:
    """Every topic, the end ones with LogAppendTime (ensure_topics leaves existing topics as they are)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    specs = {s.name: s for s in TOPICS.specs()}
    ends = [TOPICS.suggestions, TOPICS.escalations, TOPICS.compare(STAGE)]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(n, specs[n].partitions or 3, 1, config={**specs[n].config(), "message.timestamp.type": "LogAppendTime"})
                                   for n in ends])
    for f in futures.values():
        f.result(30)
    ensure_topics(bootstrap, TOPICS.specs(), partitions=3)


class Load:
    """Open-loop sender: each event leaves at its scheduled time, whatever the pipeline is doing."""

    def __init__(self, bootstrap: str, texts: list[str]) -> None:
        from confluent_kafka import Producer

        self.texts = texts
        # The Publisher's settings, but no linger: the send time in the header is when the event left.
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                  "compression.type": "lz4", "linger.ms": 0})

    def send(self, n: int, rate: float | None, tag: str) -> dict[str, Any]:
        now = int(time.time() * 1000)
        values = []
        for i in range(n):
            e = ConversationEvent(f"{tag}-{i}-t0", f"{tag}-{i}", "customer", self.texts[i % len(self.texts)], now)
            values.append((e.conversation_id.encode(), CODEC.encode("ConversationEvent", e.to_record(), TOPICS.events)))
        behind = 0.0
        t0 = time.monotonic()
        for i, (key, value) in enumerate(values):
            if rate:
                wait = t0 + i / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                else:
                    behind = max(behind, -wait)
            headers = [(HDR_RUN, tag.encode()), (HDR_SENT, str(time.time_ns() // 1000).encode())]
            while True:
                try:
                    self.producer.produce(TOPICS.events, value, key, headers=headers)
                    break
                except BufferError:
                    self.producer.poll(0.01)
            self.producer.poll(0)
        left = self.producer.flush(60)
        return {"sent": n - left, "seconds": time.monotonic() - t0, "max_behind_ms": round(behind * 1000, 1)}


def arrivals(bootstrap: str, start: dict, tag: str, want: int | None, timeout_s: float, idle_s: float = 5.0) -> list[tuple[int, int]]:
    """(sent µs, append ms) of each record of run ``tag`` after ``start``: until ``want`` are in, or (want None)
    until nothing new arrives for ``idle_s``."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-e2e-reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(t, p, o) for (t, p), o in start.items()])
    out: list[tuple[int, int]] = []
    deadline = time.monotonic() + timeout_s
    last = time.monotonic()
    mark = tag.encode()
    try:
        while time.monotonic() < deadline and (want is None or len(out) < want):
            if want is None and time.monotonic() - last > idle_s:
                break
            for m in consumer.consume(500, 0.2):
                if m.error():
                    continue
                h = dict(m.headers() or ())
                if h.get(HDR_RUN) == mark:
                    out.append((int(h[HDR_SENT]), m.timestamp()[1]))
                    last = time.monotonic()
    finally:
        consumer.close()
    return out


def latencies(arr: list[tuple[int, int]]) -> list[float]:
    return [append_ms - sent_us / 1000 for sent_us, append_ms in arr]


def skip_to_end(bootstrap: str) -> None:
    """Move the shadow groups' committed offsets to the end: a shadow turned on starts from now, not from
    the backlog the off block left behind."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for group, topics in SHADOW_GROUPS.items():
        ends = end_offsets(bootstrap, topics)
        req = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p, o) for (t, p), o in ends.items()])
        for f in admin.alter_consumer_group_offsets([req]).values():
            f.result(30)


class Bench:
    def __init__(self, kafka: str, env: dict[str, str], work: Path, texts: list[str]) -> None:
        self.kafka, self.env, self.work = kafka, env, work
        self.load = Load(kafka, texts)
        self.shadow: list[WorkerProcess] = []

    def run(self, n: int, rate: float | None, shadow: bool, timeout_s: float = 300.0) -> dict[str, Any]:
        tag = uuid.uuid4().hex[:8]
        ends = [TOPICS.suggestions, TOPICS.escalations]
        start = end_offsets(self.kafka, ends)
        cstart = end_offsets(self.kafka, [TOPICS.compare(STAGE)]) if shadow else None
        sent = self.load.send(n, rate, tag)
        prod = arrivals(self.kafka, start, tag, sent["sent"], timeout_s)
        out: dict[str, Any] = {"rate": rate, "events": n, "generator": sent, **stats(latencies(prod))}
        if prod:
            first_sent = min(s for s, _ in prod) / 1000
            out["throughput"] = len(prod) / max(1e-3, (max(a for _, a in prod) - first_sent) / 1000)
        if shadow:
            comp = arrivals(self.kafka, cstart, tag, None, timeout_s)
            out["comparator"] = stats(latencies(comp))
            if comp:
                out["comparator"]["throughput"] = len(comp) / max(1e-3, (max(a for _, a in comp) - min(s for s, _ in comp) / 1000) / 1000)
        return out

    def start_shadow(self, label: str) -> None:
        skip_to_end(self.kafka)
        self.shadow = [WorkerProcess(a, self.env, self.work / f"{a[1]}-{label}.log") for a in SHADOW_ARGS]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # warm: until comparisons flow end to end
            got = self.run(10, 10.0, shadow=True, timeout_s=60)
            if got.get("comparator", {}).get("n"):
                return
        raise RuntimeError(f"shadow processes produced no comparison in 180 s; see {self.work}")

    def stop_shadow(self) -> None:
        stop_all(self.shadow)
        self.shadow = []


def median_of(runs: list[dict], key: str) -> float | None:
    vals = [r[key] for r in runs if key in r]
    return statistics.median(vals) if vals else None


def summarize(blocks: dict[str, dict[float, list[dict]]], loads: list[float]) -> list[dict[str, Any]]:
    rows = []
    for load in loads:
        row: dict[str, Any] = {"load": load}
        for mode in ("off", "on"):
            runs = blocks[mode][load]
            row[mode] = {k: median_of(runs, k) for k in ("rate", "n", "p50", "p99", "p99.9", "max")}
            if mode == "on":
                comps = [r["comparator"] for r in runs if r.get("comparator")]
                row["comparator"] = {k: median_of(comps, k) for k in ("n", "p50", "p99", "p99.9")}
        if row["off"]["p99"] and row["on"]["p99"]:
            row["p99_change_pct"] = (row["on"]["p99"] / row["off"]["p99"] - 1) * 100
        rows.append(row)
    return rows


def table(out: dict[str, Any]) -> str:
    """The markdown tables of docs/benchmarks.md, from a result of ``main``."""
    fmt = lambda v: "–" if v is None else f"{v:,.0f}"
    lines = ["| load | events/s | shadow | n | p50 ms | p99 ms | p99.9 ms | p99 change | comparisons (n, p50 / p99 ms) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in out["loads"]:
        for mode in ("off", "on"):
            r = row[mode]
            change = f"{row['p99_change_pct']:+.1f}%" if mode == "on" and row.get("p99_change_pct") is not None else ""
            comp = row.get("comparator", {}) if mode == "on" else {}
            comp_s = f"{fmt(comp.get('n'))}, {fmt(comp.get('p50'))} / {fmt(comp.get('p99'))}" if comp else ""
            lines.append(f"| {row['load']:.0%} | {fmt(r['rate'])} | {mode} | {fmt(r['n'])} | {fmt(r['p50'])} | {fmt(r['p99'])} | "
                         f"{fmt(r['p99.9'])} | {change} | {comp_s} |")
    burst = out["comparator_burst"]
    lines.append("")
    lines.append(f"Maximum rate (burst of {out['config']['burst']}, shadow off): {out['max_rate']['events_per_s']:.1f} events/s. "
                 f"Burst with shadow on: production {fmt(burst['production_per_s'])}/s, comparisons "
                 f"{fmt(burst['comparisons_per_s'])}/s ({fmt(burst['comparisons'])} of {burst['events']} events compared).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of load per open-loop run")
    ap.add_argument("--loads", default="0.1,0.5,0.8", help="fractions of the measured maximum rate")
    ap.add_argument("--burst", type=int, default=1000, help="events per maximum-rate burst")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "e2e_latency.json")
    args = ap.parse_args(argv)
    loads = [float(x) for x in args.loads.split(",")]
    settings = get_settings()
    texts = [r["text"] for r in csv.DictReader(open(settings.samples_dir / "training" / "topics.csv"))]
    work = Path(tempfile.mkdtemp(prefix="e2e-bench-"))
    kafka = KafkaNode(settings.home, free_port(), free_port(), work / "kafka" / "data")
    redis_node = RedisNode(settings.home, free_port(), work / "redis" / "data")
    kafka.start()
    redis_node.start()
    hw = hardware()
    production: WorkerProcess | None = None
    bench: Bench | None = None
    try:
        pipeline = yaml.safe_load((ROOT / "pipeline.yaml").read_text())
        pipeline["stages"][STAGE].update(candidates=[CANDIDATE], mirror_rate=1.0)
        (work / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
        env = worker_env(kafka.bootstrap, redis_node.url, work, SHADOWLINE_PIPELINE_CONFIG=str(work / "pipeline.yaml"))
        create_topics(kafka.bootstrap)
        production = WorkerProcess(["worker"], env, work / "production.log")
        bench = Bench(kafka.bootstrap, env, work, texts)
        warm = bench.run(20, 10.0, shadow=False, timeout_s=180)  # models loaded, groups joined
        if warm.get("n", 0) < 20:
            raise RuntimeError(f"production worker did not answer; see {production.log}")
        bursts = [bench.run(args.burst, None, shadow=False) for _ in range(2)]
        max_rate = statistics.median(b["throughput"] for b in bursts)
        print(f"maximum rate (burst of {args.burst}): {max_rate:.0f} events/s", flush=True)
        blocks: dict[str, dict[float, list[dict]]] = {"off": {x: [] for x in loads}, "on": {x: [] for x in loads}}
        for r in range(args.repeats):
            for mode in ("off", "on"):
                if mode == "on":
                    bench.start_shadow(f"r{r}")
                for load in loads:
                    rate = load * max_rate
                    res = bench.run(max(10, int(rate * args.duration)), rate, shadow=mode == "on")
                    blocks[mode][load].append(res)
                    comp = res.get("comparator", {})
                    print(f"repeat {r} shadow {mode} load {load:.0%} ({rate:.0f}/s): p50 {res.get('p50', 0):.0f} ms, "
                          f"p99 {res.get('p99', 0):.0f} ms, p99.9 {res.get('p99.9', 0):.0f} ms (n={res.get('n', 0)})"
                          + (f"; comparisons {comp.get('n', 0)}, p99 {comp.get('p99', 0):.0f} ms" if comp else ""), flush=True)
                if mode == "on":
                    bench.stop_shadow()
        bench.start_shadow("burst")
        burst_on = bench.run(args.burst, None, shadow=True)
        bench.stop_shadow()
        comp_rate = burst_on.get("comparator", {}).get("throughput")
        print(f"burst with shadow on: production {burst_on.get('throughput', 0):.0f}/s, comparisons {comp_rate or 0:.0f}/s", flush=True)
        out = {
            "config": {"repeats": args.repeats, "duration_s": args.duration, "burst": args.burst, "loads": loads,
                       "runtime": env.get("SHADOWLINE_RUNTIME", settings.runtime), "stage": STAGE,
                       "candidate": CANDIDATE, "hardware": hw},
            "max_rate": {"events_per_s": max_rate, "bursts": bursts},
            "loads": summarize(blocks, loads),
            "comparator_burst": {"production_per_s": burst_on.get("throughput"), "comparisons_per_s": comp_rate,
                                 "comparisons": burst_on.get("comparator", {}).get("n"), "events": args.burst},
            "runs": {mode: {str(k): v for k, v in per.items()} for mode, per in blocks.items()},
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2))
        print("\n" + table(out), flush=True)
        return out
    finally:
        if bench is not None:
            bench.stop_shadow()
        if production is not None:
            production.stop()
        redis_node.stop()
        kafka.stop()


if __name__ == "__main__":
    main()
