"""Per-hop pass-through: raw confluent-kafka loop vs Quix Streams vs Faust vs shadowline's worker (issue 7 item 1).

Starts one local Kafka on free ports, pre-fills an input topic with N real ConversationEvent records (and
N TurnState records for the real validate StageProcessor), then runs the cases interleaved (A B C D E A B ...),
each in its own subprocess and consumer group, reading the whole input and writing every message to a fresh
output topic. Time: from the child's first consumed message to the output topic's high watermark reaching N
(polled here). CPU: the child's own user+system seconds over the same span (all threads).

    .venv/bin/python -m bench.passthrough.run --messages 50000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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

CODEC = SingleObjectCodec()
LABELS = {
    "raw": "A raw confluent-kafka loop",
    "quix": "B Quix Streams",
    "faust": "C plain Faust agent (bytes)",
    "shadowline": "D shadowline make_app, decode+encode",
    "stage": "E StageProcessor validate, no-op",
}
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


def high_watermark(consumer, topic: str, partitions: int) -> int:
    from confluent_kafka import KafkaException, TopicPartition

    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5, cached=False)[1] for p in range(partitions))
    except KafkaException:  # a just-created topic may not have a leader in the metadata yet
        return 0


def one_run(case: str, bootstrap: str, input_topic: str, n: int, partitions: int, work: Path, wm, timeout_s: float,
            profile: Path | None = None) -> dict:
    tag = uuid.uuid4().hex[:8]
    prefix = f"pt{tag}."
    output = f"{prefix}turns.validate" if case == "stage" else f"pt.out.{case}.{tag}"
    create_topics(bootstrap, [output], partitions)
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
    result: dict = {"case": case}
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=50000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--cases", default="raw,quix,faust,shadowline,stage")
    ap.add_argument("--timeout", type=float, default=300.0, help="per run")
    ap.add_argument("--profile", default=None, help="after the runs, cProfile one more run of this case")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "passthrough.json")
    args = ap.parse_args()
    cases = args.cases.split(",")
    n = args.messages
    settings = get_settings()
    work = Path(tempfile.mkdtemp(prefix="passthrough-bench-"))
    kafka = KafkaNode(settings.home, free_port(), free_port(), work / "kafka" / "data")
    kafka.start()
    try:
        from confluent_kafka import Consumer

        bs = kafka.bootstrap
        create_topics(bs, ["pt.in.events", "pt.in.turns"], args.partitions)
        ts = texts()
        events, turns = [], []
        now = int(time.time() * 1000)
        for i in range(n):
            e = ConversationEvent(f"ev-{i}", f"conv-{i % 997}", "customer", ts[i % len(ts)], now, "chat", f"cust-{i % 101}", "en")
            key = e.conversation_id.encode()
            events.append((key, CODEC.encode("ConversationEvent", e.to_record(), "pt.in.events")))
            turns.append((key, CODEC.encode("TurnState", Turn.start(e, now).to_record(), "pt.in.turns")))
        prefill(bs, "pt.in.events", events)
        if "stage" in cases:
            prefill(bs, "pt.in.turns", turns)
        print(f"pre-filled {n} ConversationEvent ({sum(len(v) for _, v in events) / n:.0f} B avg)"
              + (f" and {n} TurnState ({sum(len(v) for _, v in turns) / n:.0f} B avg)" if "stage" in cases else ""), flush=True)
        wm = Consumer({"bootstrap.servers": bs, "group.id": "pt-watermarks"})
        runs: dict[str, list[dict]] = {c: [] for c in cases}
        for r in range(args.repeats):
            for case in cases:
                inp = "pt.in.turns" if case == "stage" else "pt.in.events"
                res = one_run(case, bs, inp, n, args.partitions, work, wm, args.timeout)
                runs[case].append(res)
                if "error" in res:
                    print(f"repeat {r} {case}: FAILED {res['error']}", flush=True)
                else:
                    print(f"repeat {r} {case}: {res['msgs_per_s']:.0f} msg/s, {res['cpu_s_per_million']:.1f} CPU-s/M "
                          f"(start-up {res['startup_s']:.1f}s)", flush=True)
        summary: dict[str, dict] = {}
        for case, rs in runs.items():
            ok = [x for x in rs if "error" not in x]
            if not ok:
                summary[case] = {"error": rs[0]["error"] if rs else "not run"}
                continue
            summary[case] = {"msgs_per_s": statistics.median(x["msgs_per_s"] for x in ok),
                             "cpu_s_per_million": statistics.median(x["cpu_s_per_million"] for x in ok), "ok_runs": len(ok)}
        base = summary.get("raw", {})
        for case, s in summary.items():
            if "error" not in s and "error" not in base and base:
                s["throughput_vs_raw"] = s["msgs_per_s"] / base["msgs_per_s"]
                s["cpu_vs_raw"] = s["cpu_s_per_million"] / base["cpu_s_per_million"]
        prof = None
        if args.profile:
            prof = work / f"{args.profile}.prof"
            inp = "pt.in.turns" if args.profile == "stage" else "pt.in.events"
            one_run(args.profile, bs, inp, n, args.partitions, work, wm, args.timeout, profile=prof)
        wm.close()
        out = {"config": {"messages": n, "repeats": args.repeats, "partitions": args.partitions, "cpus": os.cpu_count(),
                          "python": platform.python_version(), "kafka": "4.1 (local KRaft, single node)"},
               "summary": summary, "runs": runs}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2))
        print(f"\nN={n}, {args.repeats} interleaved repeats, medians; {os.cpu_count()} cores\n")
        print("| implementation | msg/s | × raw | CPU-s / M msgs | × raw |")
        print("|---|---|---|---|---|")
        for case, s in summary.items():
            if "error" in s:
                print(f"| {LABELS[case]} | failed: {s['error']} | | | |")
            else:
                print(f"| {LABELS[case]} | {s['msgs_per_s']:,.0f} | {s.get('throughput_vs_raw', 1):.2f} | "
                      f"{s['cpu_s_per_million']:.1f} | {s.get('cpu_vs_raw', 1):.2f} |")
        if prof and prof.exists():
            import pstats

            print(f"\ncProfile of {args.profile} ({prof}):")
            pstats.Stats(str(prof)).sort_stats("tottime").print_stats(25)
    finally:
        kafka.stop()


if __name__ == "__main__":
    main()
