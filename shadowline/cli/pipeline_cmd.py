"""Commands that move events: create topics, publish, replay, run workers."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from schemas.topics import STAGES

console = Console()


def topics_create() -> None:
    """Create every shadowline topic (idempotent)."""
    from schemas.topics import Topics
    from shadowline.config import get_settings
    from streams.admin import ensure_topics

    s = get_settings()
    created = ensure_topics(s.kafka_bootstrap, Topics(s.topic_prefix).specs(), s.partitions)
    console.print(f"created {len(created)} topic(s)" + (f": {', '.join(created)}" if created else " (all existed)"))


def topics_list() -> None:
    """List topics and their partition counts."""
    from shadowline.config import get_settings
    from streams.admin import list_topics

    table = Table("topic", "partitions")
    for name, parts in list_topics(get_settings().kafka_bootstrap).items():
        table.add_row(name, str(parts))
    console.print(table)


def publish(
    text: str = typer.Argument(..., help="Message text."),
    conversation: str = typer.Option(..., "--conversation", "-c", help="Conversation id (the Kafka key)."),
    role: str = typer.Option("customer", help="customer, agent or system."),
    event_id: Optional[str] = typer.Option(None, help="Defaults to a new UUID."),
    locale: Optional[str] = typer.Option(None),
) -> None:
    """Publish one conversation event to conv.events."""
    from agents.records import ConversationEvent
    from shadowline.config import get_settings
    from shadowline.errors import ConfigError
    from streams.publisher import Publisher

    if role not in ("customer", "agent", "system"):
        raise ConfigError(f"--role must be customer, agent or system, not {role!r}")
    event = ConversationEvent(event_id or uuid.uuid4().hex, conversation, role, text, int(time.time() * 1000), locale=locale)
    with Publisher(get_settings().kafka_bootstrap) as pub:
        pub.publish_event(event)
    console.print(f"published {event.event_id} to conv.events")


def replay(
    path: Path = typer.Argument(..., help="JSONL of conversations (see samples/conversations.jsonl)."),
    rate: float = typer.Option(0.0, "--rate", help="Events per second; 0 = as fast as possible.", min=0),
    feedback: bool = typer.Option(True, help="Also publish agent replies to support.feedback."),
) -> None:
    """Replay conversations as upstream events (and the agents' replies as feedback)."""
    from shadowline.config import get_settings
    from shadowline.conversations import items_from_file
    from streams.publisher import Publisher

    items = items_from_file(path)
    start = time.monotonic()
    with Publisher(get_settings().kafka_bootstrap) as pub, Progress(
        TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    ) as bar:
        task = bar.add_task("replay", total=len(items))
        for n, item in enumerate(items):
            if rate:
                time.sleep(max(0.0, start + n / rate - time.monotonic()))
            pub.publish_event(item.event)
            if feedback and item.feedback:
                pub.publish_feedback(item.feedback)
            bar.advance(task)
    console.print(f"published {len(items)} events from {path}")


def worker(
    stages: list[str] = typer.Argument(None, help=f"Stages to run ({', '.join(STAGES)}); default all."),
    metrics_port: Optional[int] = typer.Option(None, envvar="SHADOWLINE_METRICS_PORT", help="Serve Prometheus metrics here."),
    loglevel: str = typer.Option("warning"),
) -> None:
    """Run the stream processors for some or all stages (runtime: SHADOWLINE_RUNTIME, kafka or faust)."""
    from shadowline.config import get_settings
    from shadowline.errors import ConfigError
    from streams.pipeline import load_pipeline
    from streams.worker import run_worker

    stages = stages or list(STAGES)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {', '.join(unknown)}; stages are {', '.join(STAGES)}")
    settings = get_settings()
    run_worker(stages, settings, load_pipeline(settings.pipeline_config), metrics_port, loglevel)


def components() -> None:
    """List the components each stage can use."""
    from agents.base import available

    for ref in available():
        console.print(ref)


def register(app: typer.Typer) -> None:
    topics = typer.Typer(help="Create and list topics.", no_args_is_help=True)
    topics.command("create")(topics_create)
    topics.command("list")(topics_list)
    app.add_typer(topics, name="topics")
    for fn in (publish, replay, worker, components):
        app.command()(fn)
