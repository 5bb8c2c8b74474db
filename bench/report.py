"""The benchmark's figures as a table for people (``--json`` prints them as they are)."""

from __future__ import annotations

from typing import Any


def report(figures: dict[str, Any]) -> str:
    """A human-readable table of the figures (and, over several rounds, of each scenario's median)."""
    rounds = figures["rounds"]
    lines = [f"{'scenario':<34}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>8}{'cpu µs/req':>12}"
             "  generator"]
    for s in figures["scenarios"]:
        cpu = f"{s['cpu_us']:,.0f}" if s.get("cpu_us") is not None else "-"
        lines.append(f"{_label(s, rounds):<34}{s['rps']:>10,.0f}{s['p50_ms']:>9.2f}{s['p99_ms']:>9.2f}"
                     f"{s['ratio']:>8.3f}{cpu:>12}  {s['generator']}")
    if rounds == 1:
        lines.append(f"users {figures['users']:,} (imported in {figures['import_seconds']} s), "
                     f"{figures['connections']} connections, {figures['duration']} s per scenario; "
                     "ratios are to the mean of the two ceiling runs")
    else:
        lines.append(f"users {figures['users']:,} per round (imported in {figures['import_seconds']} s), "
                     f"{figures['connections']} connections, {figures['duration']} s per scenario, "
                     f"{rounds} rounds; each round's ratios are to the mean of the ceiling runs "
                     "before and after it (a ceiling's ratio: to the mean of them all)")
        lines.append(f"{'over the rounds':<34}{'median req/s':>14}{'p99 max':>9}{'median':>8}"
                     f"{'lowest':>8}{'highest':>8}")
        for name, m in figures["summary"].items():
            lines.append(f"{name:<34}{m['rps_median']:>14,.0f}{m['p99_ms_max']:>9.2f}"
                         f"{m['ratio_median']:>8.3f}{m['ratio_min']:>8.3f}{m['ratio_max']:>8.3f}")
    if figures.get("ledger", "sqlite") != "sqlite" or figures.get("nodes", 1) > 1:
        where, cpu = "in SQLite", ""
        if figures.get("database"):
            where = f"in PostgreSQL database {figures['database']}"
            cpu = "; cpu µs/req counts the nodes, not the PostgreSQL server"
        lines.append(f"the ledger {where}, served by {figures['nodes']} node(s), one wrk thread each{cpu}")
    seen = figures.get("visibility")
    if seen:
        lines.append(f"a vote one node acknowledged showed on another after p50 {seen['p50_ms']:.2f} ms, "
                     f"p99 {seen['p99_ms']:.2f} ms, highest {seen['max_ms']:.2f} ms "
                     f"({seen['votes']} votes, one at a time)")
    for s in figures["scenarios"]:
        if s.get("voters_ran_out"):
            lines.append(f"{_label(s, rounds)}: all {figures['users']:,} voters had voted before the "
                         "time was up, so its req/s is a lower bound; give --users more")
        if s.get("socket_errors"):
            lines.append(f"{_label(s, rounds)}: {s['socket_errors']:,} connections failed or timed out "
                         "(fewer --connections?), so its figures are not to be trusted")
    lines.append(f"tallies {figures['tallies']} vs acknowledged {figures['acknowledged']}: "
                 f"{'match (within in-flight requests)' if figures['tallies_match'] else 'MISMATCH'}; audit "
                 f"{'passed' if figures['audit_passed'] else 'FAILED'}")
    return "\n".join(lines)


def _label(scenario: dict[str, Any], rounds: int) -> str:
    """A scenario's name in the report, after its round's number when there are several."""
    return scenario["name"] if rounds == 1 else f"{scenario['round']}: {scenario['name']}"


def login_report(figures: dict[str, Any]) -> str:
    """The login benchmark's rates at each size, and how the rate at the most users compares."""
    lines = [f"{'scenario':<46}{'logins/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>8}{'cpu µs/req':>12}"
             "  generator"]
    runs = figures["logins"]
    for s in runs:
        cpu = f"{s['cpu_us']:,.0f}" if s.get("cpu_us") is not None else "-"
        lines.append(f"{s['name']:<46}{s['rps']:>10,.0f}{s['p50_ms']:>9.2f}{s['p99_ms']:>9.2f}"
                     f"{s['ratio']:>8.3f}{cpu:>12}  {s['generator']}")
    built = ", ".join(f"{s['users']:,} in {s['build_seconds']} s" for s in runs)
    lines.append(f"logins/s at {runs[-1]['users']:,} users over logins/s at {runs[0]['users']:,}: "
                 f"{figures['ratio']:.3f}; {figures['connections']} connections, {figures['duration']} s "
                 f"per scenario; ledgers of users built ({built})")
    for s in runs:
        if s["ok"] < s["requests"]:
            lines.append(f"{s['name']}: {s['requests'] - s['ok']:,} logins were refused, so its rate is "
                         "not a rate of logins")
        if s.get("socket_errors"):
            lines.append(f"{s['name']}: {s['socket_errors']:,} connections failed or timed out "
                         "(fewer --connections?), so its figures are not to be trusted")
    return "\n".join(lines)
