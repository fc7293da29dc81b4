"""Codec cost on the real records: fastavro single-object (what shadowline uses) vs the `avro` package
vs JSON, encode and decode, interleaved (A B C A B C ...), several repeats, medians.

    .venv/bin/python bench/codec.py --repeats 5 --n 2000
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schemas.codec import SingleObjectCodec  # noqa: E402
from shadowline.config import get_settings  # noqa: E402
from shadowline.conversations import items_from_file  # noqa: E402
from streams.testing import InMemoryPipeline  # noqa: E402


def real_records() -> dict[str, list[dict]]:
    """ConversationEvents, mid-pipeline TurnStates and Suggestions from the sample conversations."""
    pipe = InMemoryPipeline()
    for item in items_from_file(get_settings().samples_dir / "conversations.jsonl"):
        pipe.publish(item.event)
        pipe.run()
    codec = pipe.codec
    return {
        "ConversationEvent": pipe.broker.records(codec, pipe.topics.events, "ConversationEvent"),
        "TurnState": pipe.broker.records(codec, pipe.topics.stage_out("retrieve"), "TurnState"),
        "Suggestion": pipe.suggestions,
    }


def timed(fn, items, n: int) -> float:
    """Microseconds per call over n calls cycling through items."""
    k = len(items)
    t0 = time.perf_counter()
    for i in range(n):
        fn(items[i % k])
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "codec.json")
    args = ap.parse_args()
    import avro.io
    import avro.schema

    fast = SingleObjectCodec()
    records = real_records()
    results: dict[str, dict[str, list[float]]] = {}
    for name, recs in records.items():
        version = fast.catalog.current(name)
        slow_schema = avro.schema.parse(version.canonical)
        writer, reader = avro.io.DatumWriter(slow_schema), avro.io.DatumReader(slow_schema)

        def avro_enc(r):
            buf = io.BytesIO()
            writer.write(r, avro.io.BinaryEncoder(buf))
            return buf.getvalue()

        def avro_dec(b):
            return reader.read(avro.io.BinaryDecoder(io.BytesIO(b)))

        fast_bytes = [fast.encode(name, r) for r in recs]
        avro_bytes = [avro_enc(r) for r in recs]
        json_bytes = [json.dumps(r, default=lambda b: b.hex()).encode() for r in recs]
        cases = {
            "fastavro encode": (lambda r: fast.encode(name, r), recs),
            "avro encode": (avro_enc, recs),
            "json encode": (lambda r: json.dumps(r).encode(), recs),
            "fastavro decode": (lambda b: fast.decode(b, name), fast_bytes),
            "avro decode": (avro_dec, avro_bytes),
            "json decode": (json.loads, json_bytes),
        }
        per = results.setdefault(name, {c: [] for c in cases})
        per["bytes"] = [statistics.median(len(b) for b in fast_bytes), statistics.median(len(b) for b in avro_bytes),
                        statistics.median(len(b) for b in json_bytes)]
        for _ in range(args.repeats):  # interleaved: every case once per repeat
            for case, (fn, items) in cases.items():
                per[case].append(timed(fn, items, args.n))
    summary = {name: {case: (round(statistics.median(v), 2) if case != "bytes" else v) for case, v in per.items()}
               for name, per in results.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"repeats": args.repeats, "n": args.n, "us_per_record_median": summary}, indent=2))
    print(f"{'record':18} {'case':16} {'us/record':>10} {'vs fastavro':>12}")
    for name, per in summary.items():
        for op in ("encode", "decode"):
            base = per[f"fastavro {op}"]
            for lib in ("fastavro", "avro", "json"):
                v = per[f"{lib} {op}"]
                print(f"{name:18} {lib + ' ' + op:16} {v:10.1f} {v / base:11.1f}x")
        print(f"{name:18} {'bytes f/a/j':16} {per['bytes']}")


if __name__ == "__main__":
    main()
