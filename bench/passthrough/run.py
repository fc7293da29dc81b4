"""Per-hop pass-through: raw confluent-kafka loop vs Quix Streams vs Faust vs shadowline's runtimes (issue 7).

Starts one local Kafka on free ports, pre-fills an input topic with real ConversationEvent records (and
TurnState records for the real validate StageProcessor), then runs the cases interleaved (A B C ... A B C ...),
each in its own subprocess and consumer group, reading the input from the start and writing every message
to a fresh output topic. Time: from the child's first consumed message to the output topic's high watermark
reaching N (polled here). CPU: the child's own user+system seconds over the same span (all threads).
Fast cases are timed over --messages, the Faust ones (~2-3k msg/s) over --slow-messages.

    .venv-bench/bin/python -m bench.passthrough.run --messages 200000 --slow-messages 20000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agents.records import ConversationEvent, Turn  # noqa: E402
from schemas.codec import SingleObjectCodec  # noqa: E402
from shadowline.config import get_settings  # noqa: E402
from shadowline.localinfra import KafkaNode, free_port  # noqa: E402
from bench.hardware import hardware, pin  # noqa: E402

CODEC = SingleObjectCodec()
LABELS = {
    "raw": "A raw confluent-kafka loop",
    "quix": "B Quix Streams",
    "faust": "C plain Faust agent (bytes)",
    "kafka": "D shadowline kafka runtime (bytes)",
    "faust-stage": "E StageProcessor on Faust (before)",
    "kafka-stage": "F StageProcessor on kafka runtime (after)",
}
STAGE_CASES = {"faust-stage", "kafka-stage"}  # read TurnState, write <prefix>turns.validate
SLOW_CASES = {"faust", "faust-stage"}  # ~2-3k msg/s: timed over --slow-messages so a run stays short
TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def texts() -> list[str]:
    out = []
    for line in (get_settings().samples_dir / "conversations.jsonl").read_text().splitlines():
        if line.strip():
            out += [t["text"] for t in json.loads(line)["turns"] if t.get("text")]
    return out


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        f.result(30)


def prefill(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all"})
    for k, v in values:
        while True:
            try:
                p.produce(topic, v, k)
                break
            except BufferError:
                p.poll(0.1)
    assert p.flush(60) == 0


def await_topic(consumer, topic: str, partitions: int, timeout_s: float = 30.0) -> None:
    """Until ``consumer``'s own metadata shows every partition of a just-created topic with a leader: a
    client that looked too early caches the topic as unknown for minutes (topic.metadata.refresh.interval.ms)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        meta = consumer.list_topics(topic, timeout=5).topics.get(topic)
        if meta is not None and meta.error is None and len(meta.partitions) == partitions \
                and all(p.leader >= 0 for p in meta.partitions.values()):
            return
        time.sleep(0.1)
    raise RuntimeError(f"topic {topic} has no leader after {timeout_s:.0f}s")


def high_watermark(consumer, topic: str, partitions: int) -> int:
    from confluent_kafka import KafkaException, TopicPartition

    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5, cached=False)[1] for p in range(partitions))
    except KafkaException:  # a just-created topic may not have a leader in the metadata yet
        return 0


def one_run(case: str, bootstrap: str, input_topic: str, n: int, partitions: int, work: Path, wm, timeout_s: float,
            profile: Path | None = None, cpus: set[int] | None = None) -> dict:
    tag = uuid.uuid4().hex[:8]
    prefix = f"pt{tag}."
    output = f"{prefix}turns.validate" if case in STAGE_CASES else f"pt.out.{case}.{tag}"
    create_topics(bootstrap, [output], partitions)
    await_topic(wm, output, partitions)
    first = work / f"first-{case}-{tag}"
    log = open(work / f"{case}-{tag}.log", "w")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if profile:
        env["PASSTHROUGH_PROFILE"] = str(profile)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t_spawn = time.time()
    child = subprocess.Popen([sys.executable, "-m", "bench.passthrough.impls", case, "--bootstrap", bootstrap,
                              "--input", input_topic, "--output", output, "--group", f"pt-{case}-{tag}",
                              "--first", str(first), "--prefix", prefix], cwd=ROOT, env=env, stdout=log, stderr=log)
    if cpus:
        pin(child.pid, cpus)  # before it starts threads: librdkafka's and Faust's inherit it
    result: dict = {"case": case, "messages": n}
    try:
        deadline = time.time() + timeout_s
        hw = 0
        while time.time() < deadline and child.poll() is None:
            hw = high_watermark(wm, output, partitions)
            if hw >= n:
                break
            time.sleep(0.005)
        t_end = time.time()
        cpu_end = proc_cpu(child.pid) if child.poll() is None else None
        if hw < n or not first.exists() or cpu_end is None:
            result["error"] = f"output reached {hw}/{n} (exit {child.poll()}); see {log.name}"
            return result
        t_first, cpu_first = map(float, first.read_text().split())
        secs, cpu = t_end - t_first, cpu_end - cpu_first
        result.update(seconds=secs, msgs_per_s=n / secs, cpu_s=cpu, cpu_s_per_million=cpu / n * 1e6,
                      startup_s=t_first - t_spawn)
        if profile:
            os.kill(child.pid, signal.SIGRTMIN + 1)
            child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        log.close()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        result["cpu_s_whole_process"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return result


def inputs(n: int) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """N ConversationEvents with the sample conversations' texts, and the same as fresh TurnStates."""
    ts = texts()
    events, turns = [], []
    now = int(time.time() * 1000)
    for i in range(n):
        e = ConversationEvent(f"ev-{i}", f"conv-{i % 997}", "customer", ts[i % len(ts)], now, "chat", f"cust-{i % 101}", "en")
        key = e.conversation_id.encode()
        events.append((key, CODEC.encode("ConversationEvent", e.to_record(), "pt.in.events")))
        turns.append((key, CODEC.encode("TurnState", Turn.start(e, now).to_record(), "pt.in.turns")))
    return events, turns


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Medians per case, and each as a ratio to the raw loop's."""
    summary: dict[str, dict] = {}
    for case, rs in runs.items():
        ok = [x for x in rs if "error" not in x]
        if not ok:
            summary[case] = {"error": rs[0]["error"] if rs else "not run"}
            continue
        summary[case] = {"msgs_per_s": statistics.median(x["msgs_per_s"] for x in ok),
                         "cpu_s_per_million": statistics.median(x["cpu_s_per_million"] for x in ok),
                         "ok_runs": len(ok), "messages": ok[0]["messages"]}
    base = summary.get("raw", {})
    for s in summary.values():
        if "error" not in s and base and "error" not in base:
            s["throughput_vs_raw"] = s["msgs_per_s"] / base["msgs_per_s"]
            # CPU time comes from /proc in clock ticks (10 ms): a tiny --quick run of the raw loop can read 0.
            cpu = base["cpu_s_per_million"]
            s["cpu_vs_raw"] = s["cpu_s_per_million"] / cpu if cpu > 0 else None
    return summary


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def table(summary: dict[str, dict]) -> str:
    lines = ["| implementation | msg/s | × raw | CPU-s / M msgs | × raw |", "|---|---|---|---|---|"]
    for case, s in summary.items():
        if "error" in s:
            lines.append(f"| {LABELS[case]} | failed: {s['error']} | | | |")
        else:
            lines.append(f"| {LABELS[case]} | {s['msgs_per_s']:,.0f} | {s.get('throughput_vs_raw', 1):.3f} | "
                         f"{s['cpu_s_per_million']:.1f} | {_ratio(s.get('cpu_vs_raw', 1))} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200000, help="per run of a fast case")
    ap.add_argument("--slow-messages", type=int, default=20000, help="per run of a Faust case")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--cases", default=",".join(LABELS))
    ap.add_argument("--pin", action="store_true", help="broker and this driver on CPU 0, each case on the others")
    ap.add_argument("--timeout", type=float, default=300.0, help="per run")
    ap.add_argument("--profile", default=None, help="after the runs, cProfile one more run of this case")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "passthrough.json")
    args = ap.parse_args(argv)
    cases = args.cases.split(",")
    unknown = [c for c in cases if c not in LABELS]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; cases are {', '.join(LABELS)}")
    n_of = {c: (min(args.slow_messages, args.messages) if c in SLOW_CASES else args.messages) for c in cases}
    n = max(n_of.values())
    settings = get_settings()
    work = Path(tempfile.mkdtemp(prefix="passthrough-bench-"))
    kafka = KafkaNode(settings.home, free_port(), free_port(), work / "kafka" / "data")
    kafka.start()
    hw = hardware()
    cpus = None
    if args.pin and (os.cpu_count() or 1) >= 2:
        pin(kafka.pid(), {0})
        pin(os.getpid(), {0})
        cpus = set(range(1, os.cpu_count()))
    try:
        from confluent_kafka import Consumer

        bs = kafka.bootstrap
        create_topics(bs, ["pt.in.events", "pt.in.turns"], args.partitions)
        events, turns = inputs(n)
        prefill(bs, "pt.in.events", events)
        if STAGE_CASES & set(cases):
            prefill(bs, "pt.in.turns", turns)
        print(f"pre-filled {n} ConversationEvent ({sum(len(v) for _, v in events) / n:.0f} B avg)"
              + (f" and {n} TurnState ({sum(len(v) for _, v in turns) / n:.0f} B avg)" if STAGE_CASES & set(cases) else ""), flush=True)
        wm = Consumer({"bootstrap.servers": bs, "group.id": "pt-watermarks"})
        runs: dict[str, list[dict]] = {c: [] for c in cases}
        for r in range(args.repeats):
            for case in cases:
                inp = "pt.in.turns" if case in STAGE_CASES else "pt.in.events"
                res = one_run(case, bs, inp, n_of[case], args.partitions, work, wm, args.timeout, cpus=cpus)
                runs[case].append(res)
                if "error" in res:
                    print(f"repeat {r} {case}: FAILED {res['error']}", flush=True)
                else:
                    print(f"repeat {r} {case}: {res['msgs_per_s']:.0f} msg/s, {res['cpu_s_per_million']:.1f} CPU-s/M "
                          f"(start-up {res['startup_s']:.1f}s)", flush=True)
        summary = summarize(runs)
        prof = None
        if args.profile:
            prof = work / f"{args.profile}.prof"
            inp = "pt.in.turns" if args.profile in STAGE_CASES else "pt.in.events"
            one_run(args.profile, bs, inp, n_of.get(args.profile, n), args.partitions, work, wm, args.timeout, profile=prof, cpus=cpus)
        wm.close()
        out = {"config": {"messages": args.messages, "slow_messages": args.slow_messages, "repeats": args.repeats,
                          "partitions": args.partitions, "pinned": cpus is not None, "hardware": hw},
               "labels": {c: LABELS[c] for c in cases}, "summary": summary, "runs": runs}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2))
        print(f"\n{args.repeats} interleaved repeats, medians; {hw['cpus']} cores\n")
        print(table(summary))
        if prof and prof.exists():
            import pstats

            print(f"\ncProfile of {args.profile} ({prof}):")
            pstats.Stats(str(prof)).sort_stats("tottime").print_stats(25)
        return out
    finally:
        kafka.stop()


if __name__ == "__main__":
    main()
