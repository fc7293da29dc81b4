"""The comparator of one stage: joins production's result and each candidate's by event id.

Inputs: ``support.suggestions`` and ``support.escalations`` (production's TurnState carries every stage
result, so stage k's output is read from there), ``shadow.<stage>.out`` (candidates and the noise-floor
replica) and ``support.feedback`` (what the agent sent). Outputs: a Comparison per (event, candidate)
on ``compare.<stage>``, ``missing_*`` records when one side never arrives within the window, and the
running statistics (agreement, latency, errors, outcome match) that gates read.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from agents.records import StageRun, Turn
from schemas.codec import Codec
from schemas.topics import Topics
from shadow.agreement import TEXT_OF, Verdict, compare, output_json
from shadow.mirror import sampled
from shadow.redact import redact_record
from shadow.stats import MATCH_THRESHOLD

REPLY_STAGES = frozenset({"generate", "tone"})  # stages whose output is a reply draft
from shadowline.errors import DecodeError
from streams.messages import Inbound, Outbound



class StatsSink(Protocol):
    def comparison(self, stage: str, production: str, candidate: str, status: str, agree: bool | None,
                   production_latency_ms: float | None, candidate_latency_ms: float | None, candidate_error: bool) -> None: ...

    def outcome(self, stage: str, candidate: str, prod_match: bool, cand_match: bool | None, agree: bool) -> None: ...


@dataclass
class Side:
    run: StageRun
    output: Any
    turn: Turn


@dataclass
class Pending:
    first_seen: float
    conversation_id: str = ""
    prod: Side | None = None
    prod_text: str | None = None  # the suggestion production made; None if it escalated
    cands: dict[str, Side] = field(default_factory=dict)
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    feedback: str | None = None
    scored: set[str] = field(default_factory=set)
    swept: bool = False  # missing-side records already emitted
    given_up: set[str] = field(default_factory=set)  # candidates recorded missing: a late answer is not counted again


def ref_of(run: StageRun) -> str:
    return f"{run.component}@{run.version}"


class Comparator:
    def __init__(
        self,
        stage: str,
        codec: Codec,
        topics: Topics,
        stats: StatsSink,
        similarity: Callable[[str, str], float],
        expected: Callable[[], tuple[float, list[str]]],
        *,
        threshold: float = 0.8,
        match_threshold: float = MATCH_THRESHOLD,
        window_s: float = 30.0,
        feedback_window_s: float = 600.0,
        max_pending: int = 200_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stage, self.codec, self.topics, self.stats = stage, codec, topics, stats
        self.similarity, self.expected = similarity, expected
        self.threshold, self.match_threshold = threshold, match_threshold
        self.window_s, self.feedback_window_s, self.max_pending = window_s, feedback_window_s, max_pending
        self.clock = clock
        self.pending: OrderedDict[str, Pending] = OrderedDict()
        self.output_topic = topics.compare(stage)
        self.input_topics = (topics.suggestions, topics.escalations, topics.shadow_out(stage), topics.feedback)
        self._last_sweep = 0.0

    # -- input -------------------------------------------------------------------------------
    def handle(self, msg: Inbound) -> list[Outbound]:
        out = self.sweep() if self.clock() - self._last_sweep >= 1.0 else []
        if msg.value is None:
            return out
        try:
            out += self._dispatch(msg)
        except DecodeError:
            pass  # production already dead-letters what it cannot read; nothing to compare
        return out

    def _dispatch(self, msg: Inbound) -> list[Outbound]:
        t = self.topics
        if msg.topic == t.feedback:
            fb = self.codec.decode(msg.value, "AgentFeedback", msg.topic)
            if fb["event_id"] is None:
                return []
            entry = self._entry(fb["event_id"], fb["conversation_id"])
            entry.feedback = fb["sent_text"]
            return self._score(fb["event_id"], entry)
        if msg.topic == t.shadow_out(self.stage):
            turn = Turn.from_record(self.codec.decode(msg.value, "TurnState", msg.topic))
            side = self._side(turn)
            if side is None:
                return []
            eid = turn.event.event_id
            entry = self._entry(eid, turn.event.conversation_id)
            entry.cands[ref_of(side.run)] = side
            return self._join(eid, entry)
        record = "Suggestion" if msg.topic == t.suggestions else "Escalation"
        rec = self.codec.decode(msg.value, record, msg.topic)
        turn = Turn.from_record(rec["turn"])
        side = self._side(turn)
        if side is None:
            return []  # production stopped before this stage: there is nothing to compare
        eid = turn.event.event_id
        entry = self._entry(eid, turn.event.conversation_id)
        entry.prod = side
        entry.prod_text = rec["text"] if record == "Suggestion" else None
        return self._join(eid, entry)

    def _side(self, turn: Turn) -> Side | None:
        runs = [r for r in turn.trace if r.stage == self.stage]
        return Side(runs[-1], getattr(turn, self.stage), turn) if runs else None

    def _entry(self, eid: str, cid: str) -> Pending:
        entry = self.pending.get(eid)
        if entry is None:
            entry = self.pending[eid] = Pending(self.clock(), cid)
            while len(self.pending) > self.max_pending:
                self.pending.popitem(last=False)  # bounded memory: the oldest join is given up
        return entry

    # -- joining -----------------------------------------------------------------------------
    def _join(self, eid: str, entry: Pending) -> list[Outbound]:
        if entry.prod is None:
            return []
        out = []
        for ref, cand in entry.cands.items():
            if ref in entry.verdicts or ref in entry.given_up:
                continue
            verdict = compare(self.stage, (entry.prod.run, entry.prod.output), (cand.run, cand.output), self.similarity, self.threshold)
            entry.verdicts[ref] = verdict
            error = cand.run.reason if cand.run.status == "error" else None
            self.stats.comparison(self.stage, ref_of(entry.prod.run), ref, "matched", verdict.agree,
                                  entry.prod.run.latency_ms, cand.run.latency_ms, error is not None)
            out.append(self._record(eid, entry, ref, "matched", verdict, error))
        return out + self._score(eid, entry)

    def _score(self, eid: str, entry: Pending) -> list[Outbound]:
        """Outcome: production's suggestion (and a text candidate's output) against what the agent sent."""
        if entry.feedback is None or entry.prod is None:
            return []
        for ref, verdict in entry.verdicts.items():
            if ref in entry.scored or verdict.agree is None:
                continue
            entry.scored.add(ref)
            cand = entry.cands[ref]
            if self.stage in REPLY_STAGES:
                # Like with like: both sides' stage output (a reply draft) against what the agent sent.
                prod_match = self._matches(entry.prod, entry.feedback)
                cand_match: bool | None = self._matches(cand, entry.feedback)
            else:
                # A label stage has no reply of its own: the outcome is production's final suggestion.
                prod_match = entry.prod_text is not None and self.similarity(entry.prod_text, entry.feedback) >= self.match_threshold
                cand_match = None
            self.stats.outcome(self.stage, ref, prod_match, cand_match, verdict.agree)
        return []

    def _matches(self, side: Side, sent: str) -> bool:
        if side.output is None or side.run.status != "ok":
            return False  # no draft offered: the agent had to write it all
        return self.similarity(TEXT_OF[self.stage](side.output), sent) >= self.match_threshold

    # -- expiry ------------------------------------------------------------------------------
    def sweep(self) -> list[Outbound]:
        """Give up on joins older than the window: record what is missing, keep outcome state longer."""
        now = self.clock()
        self._last_sweep = now
        rate, expected_refs = self.expected()
        out = []
        for eid in list(self.pending):
            entry = self.pending[eid]
            age = now - entry.first_seen
            if age < self.window_s:
                break  # ordered by first arrival: everything after is younger
            if not entry.swept:
                out += self._missing(eid, entry, rate, expected_refs)
                entry.swept = True
            if age >= self.feedback_window_s or (entry.feedback is not None and entry.prod is not None):
                del self.pending[eid]
        return out

    def _missing(self, eid: str, entry: Pending, rate: float, expected_refs: list[str]) -> list[Outbound]:
        out = []
        if entry.prod is None:
            for ref, cand in entry.cands.items():
                self.stats.comparison(self.stage, "?", ref, "missing_production", None, None, cand.run.latency_ms, False)
                out.append(self._record(eid, entry, ref, "missing_production", Verdict("label", None, None), None))
        elif sampled(entry.conversation_id, rate):
            for ref in expected_refs:
                if ref not in entry.cands:
                    entry.given_up.add(ref)
                    self.stats.comparison(self.stage, ref_of(entry.prod.run), ref, "missing_candidate", None, entry.prod.run.latency_ms, None, False)
                    out.append(self._record(eid, entry, ref, "missing_candidate", Verdict("label", None, None), None))
        return out

    # -- output ------------------------------------------------------------------------------
    def _record(self, eid: str, entry: Pending, ref: str, status: str, verdict: Verdict, error: str | None) -> Outbound:
        prod, cand = entry.prod, entry.cands.get(ref)
        name, _, version = ref.partition("@")
        dump = lambda side: json.dumps(redact_record(output_json(self.stage, side.output))) if side and side.output is not None else None
        record = {
            "comparison_id": uuid.uuid4().hex, "event_id": eid, "conversation_id": entry.conversation_id,
            "stage": self.stage,
            "production": {"name": prod.run.component, "version": prod.run.version} if prod else {"name": "?", "version": "?"},
            "candidate": {"name": name, "version": version},
            "status": status, "kind": verdict.kind, "agree": verdict.agree, "similarity": verdict.similarity,
            "production_output": dump(prod), "candidate_output": dump(cand),
            "production_latency_ms": prod.run.latency_ms if prod else None,
            "candidate_latency_ms": cand.run.latency_ms if cand else None,
            "candidate_error": redact_record(error) if error else None,
            "created_ms": int(self.clock() * 1000),
        }
        return Outbound(self.output_topic, entry.conversation_id.encode(), self.codec.encode("Comparison", record, self.output_topic))
