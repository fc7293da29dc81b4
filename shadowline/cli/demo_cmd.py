"""`shadowline demo`: local Kafka + Redis, the workers, the sample conversations, real output."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.rule import Rule

from schemas.topics import STAGES
from shadowline.processes import WorkerProcess, stop_all

# Piped output (logs, CI) gets room for the status table instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
BAD_PAYLOAD = b"\x00not-avro: a malformed event, to show the dead-letter path"
DEMO_PIPELINE = Path(__file__).resolve().parents[2] / "samples" / "demo-pipeline.yaml"
PROBE_TEXT = "How long does a refund take to reach my card?"


def _probe(s: Any, codec: Any, topics: Any, timeout_s: float = 60.0, text: str = PROBE_TEXT) -> dict:
    """Publish one fresh customer turn and return its suggestion or escalation."""
    import uuid

    from agents.records import ConversationEvent
    from shadowline.errors import InfraError
    from streams.publisher import Publisher
    from streams.reader import end_offsets, read

    time.sleep(1.5)  # workers look at the registry every second
    cid = f"probe-{uuid.uuid4().hex[:8]}"
    watch = [topics.suggestions, topics.escalations]
    start = end_offsets(s.kafka_bootstrap, watch)
    with Publisher(s.kafka_bootstrap, codec, topics) as pub:
        pub.publish_event(ConversationEvent(f"{cid}-t0", cid, "customer", text, int(time.time() * 1000)))
    found: list[dict] = []
    for _, rec in read(s.kafka_bootstrap, start, codec, topics.record_of, stop=lambda: bool(found), timeout_s=timeout_s):
        if rec.get("event_id") == f"{cid}-t0":
            found.append(rec)
    if not found:
        raise InfraError(f"no result for the probe turn within {timeout_s:.0f}s")
    return found[0]


def _start_workers(commands: list[list[str]], log_dir: Path) -> list[WorkerProcess]:
    """Workers inherit this process's environment (the demo's pipeline config included)."""
    return [
        WorkerProcess(args, None, log_dir / ("-".join(a for a in args if not a.startswith("-"))[:80].replace("@", "-") + ".log"))
        for args in commands
    ]


def _check_alive(procs: list[WorkerProcess]) -> None:
    from shadowline.errors import InfraError

    for p in procs:
        if not p.alive():
            tail = p.output().strip().splitlines()[-5:]
            raise InfraError(f"worker exited with {p.proc.returncode} (log {p.log}): {' | '.join(tail)}")


def _latencies(turn: dict[str, Any]) -> str:
    return " · ".join(f"{r['stage']} {r['latency_ms']:.1f}ms" for r in turn["trace"])


def _print_result(kind: str, rec: dict[str, Any]) -> None:
    turn = rec["turn"]
    e2e = rec["created_ms"] - turn["received_ms"]
    # Texts come from users and the KB: escape them so "[order]" is printed, not read as markup.
    console.print(f"[bold]customer[/bold] ({turn['event']['event_id']}): {escape(turn['event']['text'])}")
    if kind == "suggestion":
        sources = ", ".join(s["article_id"] for s in rec["sources"]) or "none"
        label = escape(f"[{rec['topic']}; sources {sources}]")
        console.print(f"  [green]suggestion[/green] {label}: {escape(rec['text'])}")
    else:
        console.print(f"  [yellow]escalation[/yellow] at {rec['stage']}: {escape(rec['reason'])}")
    console.print(f"  [dim]{_latencies(turn)} · end-to-end {e2e} ms[/dim]")


def demo(
    conversations: Path = typer.Option(None, help="Conversations to replay; default samples/conversations.jsonl."),
    per_stage: bool = typer.Option(True, help="One worker process per stage (production layout); else one for all."),
    timeout_s: float = typer.Option(240.0, help="Give up waiting for results after this long."),
    keep_running: bool = typer.Option(False, help="Leave Kafka, Redis and the workers running afterwards."),
) -> None:
    """Run the whole pipeline on the sample conversations over a real local broker and print the results."""
    from kb_index.embedder import get_embedder
    from kb_index.index import load_or_build
    from schemas.codec import make_codec
    from schemas.topics import Topics
    from shadowline import localinfra
    from shadowline.config import get_settings
    from shadowline.conversations import items_from_file
    from shadowline.errors import InfraError
    from streams.admin import ensure_topics
    from streams.publisher import Publisher
    from streams.reader import end_offsets, read

    from shadow.registry import Registry
    from shadow.stats_store import RedisStats
    from shadowline import demo_quality, demo_shadow
    from shadowline.cli.shadow_cmd import promoter, status
    from streams.pipeline import load_pipeline

    if "SHADOWLINE_PIPELINE_CONFIG" not in os.environ:
        # The demo's pipeline adds two shadow candidates; worker processes inherit the setting.
        os.environ["SHADOWLINE_PIPELINE_CONFIG"] = str(DEMO_PIPELINE)
        get_settings.cache_clear()
    s = get_settings()
    topics, codec = Topics(s.topic_prefix), make_codec(s.schema_registry_url)
    items = items_from_file(conversations or s.samples_dir / "conversations.jsonl")
    expected = {i.event.event_id for i in items if i.event.role == "customer"}

    console.print(Rule("1. local Kafka and Redis"))
    was_up = all(v.get("reachable") for v in localinfra.status(s).values() if isinstance(v, dict))
    localinfra.up(s)
    procs: list = []
    try:
        created = ensure_topics(s.kafka_bootstrap, topics.specs(), s.partitions)
        console.print(f"topics ready ({len(created)} created)")
        console.print(Rule("2. knowledge base index"))
        index = load_or_build(s, get_embedder("hashing"))
        st = index.stats()
        console.print(f"KB index {st['version']}: {st['articles']} articles, {st['chunks']} chunks, {st['embedder']} ({st['dim']}-d)")
        console.print(Rule("3. stream workers and shadow workers"))
        demo_shadow.reset_shadow_state(s.redis_url)
        registry = Registry(s.redis_url)
        pipeline = load_pipeline(s.pipeline_config)
        registry.seed(pipeline.active, pipeline.candidates)
        for stage, rate in pipeline.mirror_rate.items():
            registry.set_mirror_rate(stage, rate)
        production = [["worker", st] for st in STAGES] if per_stage else [["worker"]]
        shadow_args = demo_shadow.shadow_worker_args(registry)
        procs = _start_workers(production + shadow_args + [demo_quality.JUDGE_ARGS], s.home / "logs")
        console.print(f"started {len(production)} production worker(s), {len(shadow_args)} shadow worker(s) "
                      f"(mirror, comparator, replica, {len(registry.candidates(demo_shadow.DEMO_STAGE))} candidates) "
                      f"and the quality judge; logs in {s.home / 'logs'}")
        watch = [topics.suggestions, topics.escalations, topics.deadletter]
        start = end_offsets(s.kafka_bootstrap, watch)
        judged_from = end_offsets(s.kafka_bootstrap, [topics.judgments])
        console.print(Rule("4. replay sample conversations"))
        with Publisher(s.kafka_bootstrap, codec, topics) as pub:
            for item in items:
                pub.publish_event(item.event)
                if item.feedback:
                    pub.publish_feedback(item.feedback)
            pub.send_raw(topics.events, b"demo-bad-input", BAD_PAYLOAD)
        console.print(f"published {len(items)} events ({len(expected)} customer turns) and 1 malformed payload")
        console.print(Rule("5. results (from support.suggestions / support.escalations)"))
        results: dict[str, tuple[str, dict]] = {}
        dead: list[dict] = []

        def finished() -> bool:
            return (len(results) >= len(expected) and bool(dead)) or any(not p.alive() for p in procs)

        for topic, rec in read(s.kafka_bootstrap, start, codec, topics.record_of, stop=finished, timeout_s=timeout_s):
            if topic == topics.deadletter:
                dead.append(rec)
            elif rec.get("event_id") in expected:
                results[rec["event_id"]] = ("suggestion" if topic == topics.suggestions else "escalation", rec)
        _check_alive(procs)
        if len(results) < len(expected):
            raise InfraError(f"only {len(results)}/{len(expected)} results after {timeout_s:.0f}s; see worker logs in {s.home / 'logs'}")
        for item in items:
            if item.event.event_id in results:
                _print_result(*results[item.event.event_id])
        n_sug = sum(1 for k, _ in results.values() if k == "suggestion")
        console.print(Rule("summary"))
        console.print(f"{len(results)} customer turns: {n_sug} suggestions, {len(results) - n_sug} escalations")
        for d in dead:
            console.print(f"dead letter: {d['topic']}[{d['partition']}]@{d['offset']} reason={d['reason']}: {escape(d['detail'])}")

        console.print(Rule("6. answer quality: the judge's sample and the human review queue"))
        suggested = [e for e, (k, _) in results.items() if k == "suggestion"]
        demo_quality.judge_story(console, s, codec, topics, judged_from, demo_quality.expected_judgments(suggested),
                                 timeout_s, lambda: _check_alive(procs))

        console.print(Rule(f"7. shadow mode on {demo_shadow.DEMO_STAGE}: evidence, gates, promotion, rollback"))
        reached = sum(1 for _, rec in results.values() if any(r["stage"] == demo_shadow.DEMO_STAGE for r in rec["turn"]["trace"]))
        refs = [f"{c.name}@{c.version}" for c in registry.candidates(demo_shadow.DEMO_STAGE)]
        demo_shadow.wait_for_evidence(RedisStats(s.redis_url), refs, reached, timeout_s, lambda: _check_alive(procs))
        console.print(f"$ shadowline shadow status   ({reached} customer turns reached {demo_shadow.DEMO_STAGE})")
        status(stage=demo_shadow.DEMO_STAGE, as_json=False)

        def probe(text: str = PROBE_TEXT) -> dict:
            return _probe(s, codec, topics, text=text)

        demo_shadow.promotion_story(console, promoter("demo"), registry, probe, refused="chaos@1", good="tfidf-logreg@2")

        console.print(Rule("8. a living knowledge base: an article edit reaches answers without a rebuild"))
        demo_quality.kb_story(console, s, probe)
    finally:
        if procs and not keep_running:
            stop_all(procs)
            console.print("workers stopped")
        if not keep_running and not was_up:
            localinfra.down(s)
            console.print("Kafka and Redis stopped")


def register(app: typer.Typer) -> None:
    app.command()(demo)
