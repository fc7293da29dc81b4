"""StageProcessor routing, dead letters and hot swap, driven without a broker."""

from dataclasses import dataclass

import pytest

from agents.base import Prior
from agents.records import Context, ConversationEvent, Outcome, Turn, Validation, ok, reject
from schemas.codec import SingleObjectCodec
from schemas.topics import Topics
from streams.history import MemoryStore
from streams.messages import Inbound
from streams.processor import Limits, StageProcessor

CODEC = SingleObjectCodec()
TOPICS = Topics()


class EchoContext:
    stage, name, version = "context", "echo", "1"

    def process(self, turn: Turn, prior: Prior) -> Outcome[Context]:
        history = prior.history + (turn.event.as_message(),)
        return ok(Context(" ".join(m.text for m in history if m.role == "customer"), history, prior.turns))


@dataclass
class Validator:
    answer: bool = True
    boom: bool = False
    stage: str = "validate"
    name: str = "fixed"
    version: str = "1"

    def process(self, turn: Turn) -> Outcome[Validation]:
        if self.boom:
            raise RuntimeError("model file vanished")
        v = Validation("answerable" if self.answer else "chitchat", self.answer, 0.9)
        return ok(v) if self.answer else reject("not answerable: chitchat", v)


def event_msg(text="Where is my refund?", role="customer", eid="e1", cid="c1", offset=0, raw=None):
    value = raw if raw is not None else CODEC.encode("ConversationEvent", ConversationEvent(eid, cid, role, text, 1).to_record())
    return Inbound(TOPICS.events, 0, offset, cid.encode(), value)


def context_proc(limit=8192):
    return StageProcessor("context", EchoContext(), CODEC, TOPICS, store=MemoryStore(), limits=Limits(limit))


def test_context_builds_history_and_routes_to_next_stage():
    proc = context_proc()
    assert proc.handle(event_msg("hi, my card was charged twice", eid="e1"))[0].topic == TOPICS.stage_out("context")
    proc.handle(event_msg("Sorry about that!", role="agent", eid="e2"))
    [out] = proc.handle(event_msg("when do I get it back?", eid="e3"))
    turn = Turn.from_record(CODEC.decode(out.value, "TurnState"))
    assert [m.text for m in turn.context.history] == ["hi, my card was charged twice", "Sorry about that!", "when do I get it back?"]
    assert turn.context.turn_index == 2
    assert turn.trace[0].stage == "context" and turn.trace[0].status == "ok"
    assert out.key == b"c1"


def test_agent_messages_feed_history_only():
    assert context_proc().handle(event_msg("Happy to help", role="agent")) == []


def test_redelivered_event_does_not_duplicate_history():
    proc = context_proc()
    proc.handle(event_msg("first", eid="e1"))
    [again] = proc.handle(event_msg("first", eid="e1"))
    turn = Turn.from_record(CODEC.decode(again.value, "TurnState"))
    assert [m.text for m in turn.context.history] == ["first"] and turn.context.turn_index == 0


@pytest.mark.parametrize(
    "msg, reason",
    [
        (event_msg(raw=b"garbage"), "malformed"),
        (event_msg(text="x" * 100), "too_large"),
        (event_msg(text="   "), "missing_field"),
        (event_msg(raw=CODEC.encode("ConversationEvent", ConversationEvent("", "c1", "customer", "hi", 1).to_record())), "missing_field"),
        (Inbound(TOPICS.events, 2, 7, b"k", None), "empty"),
    ],
)
def test_bad_input_goes_to_deadletter_with_reason(msg, reason):
    proc = context_proc(limit=50)
    [out] = proc.handle(msg)
    assert out.topic == TOPICS.deadletter
    dead = CODEC.decode(out.value, "DeadLetter")
    assert dead["reason"] == reason
    assert (dead["topic"], dead["partition"], dead["offset"]) == (msg.topic, msg.partition, msg.offset)
    assert dead["payload"] == (msg.value or b"")
    assert proc.metrics.deadletters[("context", reason)] == 1
    # and the stage keeps going
    assert proc.handle(event_msg("Where is my parcel?", eid="ok1"))[0].topic == TOPICS.stage_out("context")


def _turn_msg(text="Where is my refund?"):
    turn = Turn.start(ConversationEvent("e9", "c9", "customer", text, 1), 5)
    return Inbound(TOPICS.stage_out("context"), 0, 0, b"c9", CODEC.encode("TurnState", turn.to_record()))


def test_rejection_escalates_with_reason_and_output_recorded():
    proc = StageProcessor("validate", Validator(answer=False), CODEC, TOPICS)
    [out] = proc.handle(_turn_msg("thanks!"))
    assert out.topic == TOPICS.escalations
    esc = CODEC.decode(out.value, "Escalation")
    assert esc["stage"] == "validate" and esc["reason"] == "not answerable: chitchat"
    assert esc["turn"]["validate"]["label"] == "chitchat"
    assert esc["turn"]["trace"][-1]["status"] == "rejected"


def test_component_exception_becomes_error_escalation_not_a_crash():
    proc = StageProcessor("validate", Validator(boom=True), CODEC, TOPICS)
    [out] = proc.handle(_turn_msg())
    esc = CODEC.decode(out.value, "Escalation")
    assert esc["turn"]["trace"][-1]["status"] == "error"
    assert "RuntimeError: model file vanished" in esc["reason"]
    assert proc.metrics.events[("validate", "error")] == 1


def test_hot_swap_changes_version_between_events():
    proc = StageProcessor("validate", Validator(version="1"), CODEC, TOPICS)
    first = CODEC.decode(proc.handle(_turn_msg())[0].value, "TurnState")
    old = proc.swap(Validator(version="2"))
    second = CODEC.decode(proc.handle(_turn_msg())[0].value, "TurnState")
    assert old.version == "1"
    assert first["trace"][-1]["version"] == "1" and second["trace"][-1]["version"] == "2"


def test_wrong_record_on_a_stage_topic_is_deadlettered():
    proc = StageProcessor("validate", Validator(), CODEC, TOPICS)
    [out] = proc.handle(Inbound(TOPICS.stage_out("context"), 1, 3, None, CODEC.encode("ConversationEvent", ConversationEvent("e", "c", "customer", "t", 1).to_record())))
    assert CODEC.decode(out.value, "DeadLetter")["reason"] == "wrong_schema"
