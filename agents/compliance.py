"""Compliance rules for outgoing answers: things a support reply must never say, whatever the KB says.

Each rule is a named regular expression with a severity:

- ``block``: a hit fails the answer outright (asking for a full card number, legal or medical advice).
- ``review``: a hit is a doubt, like a sentence the similarity check could not ground. The tier-2 LLM
  evaluator decides when one is configured; without one the answer goes to a human.

Rules are checked per sentence. ``unless`` exempts a sentence that also matches it (negations: "we
will never ask for your password" is the opposite of asking). ``allow_in_kb`` exempts a phrase the
retrieved KB text itself contains: the rule is about promises *not in the KB*, and "we'll refund the
delivery fee" is fine where the policy says exactly that. The grounding check still has to pass.

The guardrail's component config ``compliance`` is a list of rule entries: an entry named like a
default overrides the fields it gives (``enabled: false`` drops the rule), any other name adds a rule
(``pattern`` or ``keywords`` required). Patterns are case-insensitive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Iterable, Sequence

from kb_index.chunker import split_sentences
from shadowline.errors import ConfigError

__all__ = ["DEFAULT_RULES", "SEVERITIES", "ComplianceRules", "Rule", "Violation"]

SEVERITIES = ("block", "review")

# A sentence that denies, refuses or warns is not a promise or a request.
NEGATION = r"\b(?:never|not|no one|nobody|without)\b|n't\b|\bwon’t\b|\bcan’t\b"


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    pattern: re.Pattern[str]
    severity: str = "block"
    unless: re.Pattern[str] | None = None
    allow_in_kb: bool = False
    description: str = ""


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    severity: str
    sentence: str
    matched: str

    def describe(self) -> str:
        return f"{self.rule} ({self.severity}): {self.matched!r}"


def _re(pattern: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ConfigError(f"{where}: invalid regular expression {pattern!r}: {exc}") from exc


def _keywords(words: Iterable[str]) -> str:
    return r"\b(?:" + "|".join(re.escape(w.strip()) for w in words if w.strip()) + r")\b"


_CREDENTIAL = r"(?:password|passcode|pin|cvv|cvc|security code|one-time code|2fa code|verification code|backup code)"
_DRUGS = r"(?:medication|medicine|ibuprofen|paracetamol|acetaminophen|aspirin|antihistamines?|painkillers?|pills?|tablets?|epipen)"

DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("refund-promise", _re(
        r"\b(?:we|i)(?:'ll|’ll| will| are going to| am going to| shall)\s+(?:\w+\s+){0,3}?"
        r"(?:refund|reimburse|compensate|credit|pay you)\b"
        r"|\byou(?:'ll|’ll| will)\s+(?:get|receive|be given)\s+(?:a\s+|an\s+|your\s+)?(?:full\s+)?"
        r"(?:refund|compensation|reimbursement|credit|money back)"
        r"|\b(?:full|complete)\s+refund\b", "default rule"),
        "review", _re(NEGATION, "default rule"), True,
        "a refund or compensation promise the KB does not make"),
    Rule("guarantee", _re(r"\bguarantee[ds]?\b|\b100\s?%|\bhundred percent\b|\b(?:i|we) promise\b", "default rule"),
         "review", _re(NEGATION, "default rule"), True, "a guarantee the KB does not give"),
    Rule("legal-advice", _re(
        r"\byou (?:can|could|should|may|might want to)\s+(?:\w+\s+){0,2}?"
        r"(?:sue|take (?:us|them|it) to court|take legal action|file a lawsuit|press charges)\b"
        r"|\b(?:legally|by law|under (?:the )?(?:law|consumer law|consumer protection law))\b,?\s+(?:you|we|they)\b"
        r"|\byour legal rights\b|\b(?:this|that|it) (?:is|was) (?:illegal|unlawful)\b"
        r"|\b(?:you are|you're) (?:legally )?(?:entitled|liable) (?:to|for) (?:damages|compensation)\b", "default rule"),
        "block", None, False, "telling the customer what the law says or which legal action to take"),
    Rule("medical-advice", _re(
        r"\b(?:take|taking|try|use|stop taking)\s+(?:an?\s+|some\s+|your\s+)?(?:\w+\s+)?" + _DRUGS + r"\b"
        r"|\b(?:it is|it's|it’s|should be) (?:safe|fine|ok|okay) to (?:eat|drink|consume)\b"
        r"|\byou (?:don't|do not|won't) need (?:to see )?a doctor\b|\b(?:dosage|dose of)\b", "default rule"),
        "block", None, False, "advice on medication, symptoms or what is safe to eat"),
    Rule("credential-request", _re(
        r"\b(?:send|give|tell|provide|share|reply with|paste|read out|what(?:'s|’s| is))\s+(?:\w+\s+){0,3}?"
        r"(?:your\s+)?(?:full\s+|complete\s+|entire\s+|whole\s+)?(?:card number|" + _CREDENTIAL + r")\b"
        r"|\b(?:full|complete|entire|whole|16[- ]digit|long)\s+(?:\w+\s+)?card number\b", "default rule"),
        "block", _re(NEGATION, "default rule"), False, "asking for a full card number, a password or a code"),
)


class ComplianceRules:
    """The rules in force for one guardrail; ``check`` returns every hit, block first."""

    def __init__(self, rules: Sequence[Rule] = DEFAULT_RULES) -> None:
        self.rules = tuple(rules)

    @classmethod
    def from_config(cls, entries: Any, defaults: Sequence[Rule] = DEFAULT_RULES) -> ComplianceRules:
        if entries is None:
            return cls(defaults)
        if not isinstance(entries, list):
            raise ConfigError("guardrail compliance: expected a list of rules")
        rules = {r.name: r for r in defaults}
        for i, entry in enumerate(entries):
            where = f"guardrail compliance[{i}]"
            if not isinstance(entry, dict) or not str(entry.get("name") or "").strip():
                raise ConfigError(f"{where}: expected a mapping with a 'name'")
            name = str(entry["name"]).strip()
            unknown = sorted(set(entry) - {"name", "pattern", "keywords", "severity", "unless", "allow_in_kb",
                                           "description", "enabled"})
            if unknown:
                raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
            if entry.get("enabled", True) is False:
                rules.pop(name, None)
                continue
            rules[name] = _rule(entry, rules.get(name), where)
        return cls(tuple(rules.values()))

    def check(self, text: str, kb_text: str = "") -> tuple[Violation, ...]:
        found: list[Violation] = []
        for sentence in split_sentences(text) or [text]:
            for rule in self.rules:
                m = rule.pattern.search(sentence)
                if m is None or (rule.unless is not None and rule.unless.search(sentence)):
                    continue
                if rule.allow_in_kb and _kb_says(rule, m.group(0), kb_text):
                    continue
                found.append(Violation(rule.name, rule.severity, sentence, m.group(0)))
        return tuple(sorted(found, key=lambda v: SEVERITIES.index(v.severity)))


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s.lower().replace("’", "'")).strip()


def _kb_says(rule: Rule, phrase: str, kb_text: str) -> bool:
    """Whether a KB sentence makes the same statement affirmatively ("it isn't guaranteed" does not)."""
    phrase = _norm(phrase)
    return any(rule.pattern.search(s) and not (rule.unless and rule.unless.search(s)) and phrase in _norm(s)
               for s in split_sentences(kb_text))


def _rule(entry: dict[str, Any], base: Rule | None, where: str) -> Rule:
    severity = str(entry.get("severity", base.severity if base else "block"))
    if severity not in SEVERITIES:
        raise ConfigError(f"{where}: severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    if "pattern" in entry and "keywords" in entry:
        raise ConfigError(f"{where}: give 'pattern' or 'keywords', not both")
    if "keywords" in entry:
        words = entry["keywords"]
        if not isinstance(words, list) or not any(isinstance(w, str) and w.strip() for w in words):
            raise ConfigError(f"{where}: 'keywords' must be a non-empty list of strings")
        pattern = _re(_keywords(words), where)
    elif "pattern" in entry:
        pattern = _re(str(entry["pattern"]), where)
    elif base is not None:
        pattern = base.pattern
    else:
        raise ConfigError(f"{where}: a new rule needs 'pattern' or 'keywords'")
    unless = base.unless if base else None
    if "unless" in entry:
        unless = _re(str(entry["unless"]), where) if entry["unless"] else None
    allow_in_kb = entry.get("allow_in_kb", base.allow_in_kb if base else False)
    if not isinstance(allow_in_kb, bool):
        raise ConfigError(f"{where}: 'allow_in_kb' must be true or false, got {allow_in_kb!r}")
    fields = {"pattern": pattern, "severity": severity, "unless": unless, "allow_in_kb": allow_in_kb,
              "description": str(entry.get("description", base.description if base else ""))}
    return replace(base, **fields) if base else Rule(str(entry["name"]).strip(), **fields)
