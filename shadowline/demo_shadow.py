"""The shadow half of `shadowline demo`: candidates in shadow, their evidence, a refused and a gated
promotion, the hot switch seen on a live event, and a rollback."""

from __future__ import annotations

import time
from typing import Any, Callable

from rich.console import Console
from rich.markup import escape

DEMO_STAGE = "classify"


def reset_shadow_state(redis_url: str) -> None:
    """The demo starts from the pipeline config: no earlier promotions, no earlier statistics."""
    import redis

    r = redis.Redis.from_url(redis_url)
    for pattern in ("sl:reg:*", "sl:stats:*"):
        keys = list(r.scan_iter(pattern))
        if keys:
            r.delete(*keys)


def shadow_worker_args(registry: Any) -> list[list[str]]:
    args = [["shadow", "mirror", DEMO_STAGE], ["shadow", "compare", DEMO_STAGE, "--window-s", "20"],
            ["shadow", "run", DEMO_STAGE, "--replica"]]
    for spec in registry.candidates(DEMO_STAGE):
        args.append(["shadow", "run", DEMO_STAGE, "--candidate", f"{spec.name}@{spec.version}"])
    return args


def wait_for_evidence(stats: Any, refs: list[str], expected: int, timeout_s: float, alive: Callable[[], None]) -> None:
    """Until every candidate has a verdict (or an error) for each event that reached the stage."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive()
        done = [stats.load(DEMO_STAGE, ref) for ref in refs]
        if all(s.samples + s.candidate_errors >= expected for s in done):
            return
        time.sleep(0.5)


def promotion_story(console: Console, promoter: Any, registry: Any, probe: Callable[[], dict], refused: str, good: str) -> None:
    from shadow.promotion import PromotionRefused

    console.print(f"$ shadowline promote {DEMO_STAGE} --candidate {refused}")
    try:
        promoter.promote(DEMO_STAGE, refused)
        console.print("[red]unexpected: the bad candidate was promoted[/red]")
    except PromotionRefused as exc:
        console.print(f"  [yellow]refused[/yellow]: {escape(str(exc))}")
    registry.remove_candidate(DEMO_STAGE, f"{DEMO_STAGE}:{refused}")
    console.print(f"  (withdrawn {refused} from shadow)")

    console.print(f"$ shadowline promote {DEMO_STAGE} --candidate {good}")
    decision = promoter.promote(DEMO_STAGE, good)
    console.print(f"  [green]promoted[/green] {decision.candidate.ref}: " + "; ".join(f"{g.name} ok" for g in decision.gates))
    run = _classify_run(probe())
    console.print(f"  a new customer turn after the switch was classified by [bold]{run}[/bold] (no worker restarted)")

    console.print(f"$ shadowline rollback {DEMO_STAGE}")
    replaced, restored = promoter.rollback(DEMO_STAGE, reason="demo: show rollback")
    run = _classify_run(probe())
    console.print(f"  rolled back {replaced.name}@{replaced.version} → {restored.name}@{restored.version}; next turn classified by [bold]{run}[/bold]")


def _classify_run(record: dict) -> str:
    for r in record["turn"]["trace"]:
        if r["stage"] == DEMO_STAGE:
            return f"{r['component']}@{r['version']}"
    return "(did not reach classify)"
