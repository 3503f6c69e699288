"""Warm up, then measure a closed-loop scenario `runs` times."""

from __future__ import annotations

from collections.abc import Callable

from bench.harness.common import Figure, say
from bench.harness.context import Ctx
from bench.harness.load import OK, Outcome, Request, closed_loop
from bench.harness.procs import Proc

WARM_UP_S = 2.0


def _note(figure: Figure, name: str, outcome: Outcome) -> None:
    if outcome.errors:
        note = f"{name}: {outcome.errors} failed requests (statuses {outcome.statuses})"
        figure.notes.append(note)
        say("  " + note)


async def rates(ctx: Ctx, name: str, request: Request, *,
                before_run: Callable[[float], None] | None = None,
                ok: frozenset[int] = OK, concurrency: int | None = None,
                server: Proc | None = None) -> Figure:
    """Requests/s of `request`: a warm-up, then ctx.runs runs of ctx.seconds.
    `before_run(expected_rate)` runs before each (untimed): minting single-use inputs,
    resetting rate-limit windows; expected_rate is the warm-up's rate. With `server`, also
    requests per CPU-second of that process."""
    return (await interleaved(ctx, [(name, request, before_run)], ok=ok,
                              concurrency=concurrency, server=server))[0]


Scenario = tuple[str, Request, Callable[[float], None] | None]


async def interleaved(ctx: Ctx, scenarios: list[Scenario], *, ok: frozenset[int] = OK,
                      concurrency: int | None = None,
                      server: Proc | None = None) -> list[Figure]:
    """`rates` of several scenarios against one server, their runs taken in turn (run 1 of
    each, then run 2 of each...), so that what else the machine does weighs on them alike.
    Each scenario is (name, request, before_run)."""
    clients = concurrency or ctx.concurrency
    figures, warm_rates = [], []
    for name, request, before_run in scenarios:
        figure = ctx.figure(name, "/s")
        if before_run:
            before_run(0.0)
        warm = await closed_loop(request, WARM_UP_S, clients, ok)
        _note(figure, f"{name} warm-up", warm)
        figures.append(figure)
        warm_rates.append(warm.rate)
    for i in range(ctx.runs):
        for (name, request, before_run), figure, warm_rate in zip(
                scenarios, figures, warm_rates, strict=True):
            if before_run:
                before_run(max(warm_rate, *figure.runs) if figure.runs else warm_rate)
            cpu = server.cpu_seconds() if server else 0.0
            outcome = await closed_loop(request, ctx.seconds, clients, ok)
            _note(figure, name, outcome)
            figure.runs.append(outcome.rate)
            line = f"  {name} run {i + 1}/{ctx.runs}: {outcome.rate:,.0f}/s"
            if server:
                figure.per_cpu.append(outcome.done / max(server.cpu_seconds() - cpu, 1e-6))
                line += f", {figure.per_cpu[-1]:,.0f} per server CPU-second"
            if outcome.client_cpu > 0.9 * outcome.seconds:
                figure.notes.append(f"run {i + 1}: the load generator used its whole core "
                                    f"({outcome.client_cpu:.1f} CPU-s in "
                                    f"{outcome.seconds:.1f} s): the rate is a lower bound")
            say(line)
    return figures
