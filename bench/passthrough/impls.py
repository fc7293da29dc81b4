"""The pass-through implementations, one per subprocess: ``python -m bench.passthrough.impls CASE ...``.

Each reads the whole input topic from the start with a fresh consumer group and writes every message to
its output topic, forever (the parent kills it once the output high watermark reaches N). At the first
consumed message it writes ``<wall time> <own CPU seconds>`` to ``--first`` so the parent can time the
hop from there and subtract start-up CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def self_cpu() -> float:
    """User+system seconds of the whole process (all threads, librdkafka's included), from /proc like the
    parent's end reading, so both ends share one clock-tick source."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class First:
    """Marks the first consumed message (a single attribute test per message for every case)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.seen = False

    def __call__(self) -> None:
        if not self.seen:
            self.seen = True
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                f.write(f"{time.time()} {self_cpu()}\n")
            os.replace(tmp, self.path)


def raw(a: argparse.Namespace, first: First) -> None:
    from confluent_kafka import Consumer, Producer

    consumer = Consumer({"bootstrap.servers": a.bootstrap, "group.id": a.group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": True})
    producer = Producer({"bootstrap.servers": a.bootstrap, "acks": "all", "linger.ms": 5})
    consumer.subscribe([a.input])
    out = a.output
    while True:
        batch = consumer.consume(num_messages=500, timeout=0.5)
        for m in batch:
            if m.error():
                continue
            first()
            while True:
                try:
                    producer.produce(out, m.value(), m.key())
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)


def quix(a: argparse.Namespace, first: First) -> None:
    from quixstreams import Application

    app = Application(broker_address=a.bootstrap, consumer_group=a.group, auto_offset_reset="earliest",
                      auto_create_topics=False, use_changelog_topics=False, loglevel="WARNING",
                      producer_extra_config={"acks": "all", "linger.ms": 5})
    src = app.topic(a.input, key_deserializer="bytes", value_deserializer="bytes")
    dst = app.topic(a.output, key_serializer="bytes", value_serializer="bytes")
    sdf = app.dataframe(src)
    sdf = sdf.update(lambda _v: first())
    sdf.to_topic(dst)
    app.run()


def faust_app(app_id: str, bootstrap: str, datadir: str):
    import faust

    # the same settings as streams.worker.make_app, so C and E differ only by the wrapper
    return faust.App(app_id, broker=f"kafka://{bootstrap}", datadir=datadir, store="memory://", key_serializer="raw",
                     value_serializer="raw", web_enabled=False, topic_disable_leader=True, topic_allow_declare=False,
                     consumer_auto_offset_reset="earliest", producer_acks=-1, broker_commit_interval=1.0)


def faust_plain(a: argparse.Namespace, first: First) -> None:
    import faust

    app = faust_app(a.group, a.bootstrap, str(Path(a.first).parent / "faust-data"))
    src, dst = app.topic(a.input), app.topic(a.output)

    @app.agent(src, name="passthrough")
    async def passthrough(stream):
        async for key, value in stream.items():
            first()
            await dst.send(key=key, value=value)

    faust_worker(app)


def faust_worker(app) -> None:
    """faust.Worker as ``streams.worker.run_app`` starts it (no terminal spinner, see there)."""
    import faust

    worker = faust.Worker(app, loglevel="warning", quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()


def runtime_settings(a: argparse.Namespace, runtime: str):
    from shadowline.config import Settings

    return Settings(kafka_bootstrap=a.bootstrap, runtime=runtime, home=Path(a.first).parent / "home")


def kafka_bytes(a: argparse.Namespace, first: First) -> None:
    """The confluent-kafka runtime (streams.kafka_loop) around a handler that forwards bytes: the runtime's
    own cost, comparable with A, B and C."""
    from streams.messages import Inbound, Outbound
    from streams.worker import Route, make_app, run_app

    out = a.output

    class Forward:
        def handle(self, msg: Inbound) -> list[Outbound]:
            first()
            return [Outbound(out, msg.key, msg.value)]

    run_app(make_app(a.group, runtime_settings(a, "kafka"), [Route("passthrough", (a.input,), Forward())]))


def stage_processor(a: argparse.Namespace, first: First, runtime: str) -> None:
    """The real StageProcessor (validate) with a no-op component, TurnState in and out, on ``runtime``."""
    from agents.records import Outcome, Validation
    from schemas.codec import SingleObjectCodec
    from schemas.topics import Topics
    from streams.messages import Inbound, Outbound
    from streams.processor import StageProcessor
    from streams.worker import Route, make_app, run_app

    class NoOpValidate:
        stage, name, version = "validate", "noop", "1"
        _out = Validation("answerable", True, 1.0, {})

        def process(self, turn):
            return Outcome(self._out)

    topics = Topics(prefix=a.prefix)  # production router writes to <prefix>turns.validate
    proc = StageProcessor("validate", NoOpValidate(), SingleObjectCodec(), topics, input_topic=a.input)
    assert topics.stage_out("validate") == a.output, (topics.stage_out("validate"), a.output)

    class Marked:
        def handle(self, msg: Inbound) -> list[Outbound]:
            first()
            return proc.handle(msg)

    run_app(make_app(a.group, runtime_settings(a, runtime), [Route("stage-validate", (a.input,), Marked())]))


CASES = {
    "raw": raw, "quix": quix, "faust": faust_plain, "kafka": kafka_bytes,
    "faust-stage": lambda a, first: stage_processor(a, first, "faust"),
    "kafka-stage": lambda a, first: stage_processor(a, first, "kafka"),
}



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=sorted(CASES))
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--first", required=True)
    ap.add_argument("--prefix", default="")
    a = ap.parse_args()
    if os.environ.get("PASSTHROUGH_PROFILE"):
        import cProfile
        import signal

        prof = cProfile.Profile()

        def dump(*_):
            prof.disable()
            prof.dump_stats(os.environ["PASSTHROUGH_PROFILE"])
            os._exit(0)

        signal.signal(signal.SIGRTMIN + 1, dump)  # faust/mode own SIGUSR1/2
        prof.enable()
    sys.argv = sys.argv[:1]  # faust's Worker reads argv
    CASES[a.case](a, First(a.first))


if __name__ == "__main__":
    main()
