"""`make demo` ends with an analyst's questions, answered from the lake it just filled.

The questions are Athena SQL and run through `weward_pipeline.query` exactly as
`weward-pipeline query` would run them: locally on the demo stack (DuckDB over the lake's
Parquet objects), in Athena elsewhere.
"""

from __future__ import annotations

import sys
import time

ANALYST_QUESTIONS: list[tuple[str, str]] = [
    (
        "Steps per day (dt is the local day, Europe/Paris in the sample catalog)",
        """
SELECT dt AS day, count(*) AS syncs, count(DISTINCT user_id) AS walkers, sum(steps) AS steps
FROM step_events
GROUP BY dt
ORDER BY dt
""",
    ),
    (
        "Wards earned per country (ledger joined to the latest users snapshot)",
        """
SELECT u.country, count(DISTINCT w.user_id) AS earners, sum(w.amount) AS wards_earned
FROM ward_transactions w
JOIN users_latest u ON u.id = w.user_id
WHERE w.amount > 0
GROUP BY u.country
ORDER BY wards_earned DESC, u.country
""",
    ),
    (
        "Top 5 rewards bought (not cancelled), with their partner",
        """
SELECT o.partner, o.title, count(*) AS purchases, sum(p.wards_spent) AS wards_spent
FROM reward_purchases p
JOIN reward_offers_latest o ON o.id = p.offer_id
WHERE p.status <> 'cancelled'
GROUP BY o.partner, o.title
ORDER BY purchases DESC, wards_spent DESC, o.title
LIMIT 5
""",
    ),
]


def demo_analyst_questions(stream=None) -> int:
    """Run ANALYST_QUESTIONS on the lake named by the environment and print the answers.

    Returns the number of questions that failed (each failure is printed, never raised).
    """
    from weward_pipeline.query import LocalEngine, QueryError, QuerySettings, build_engine

    stream = stream or sys.stdout
    settings = QuerySettings.from_env()
    engine = build_engine(settings)
    where = (
        "DuckDB over the lake's Parquet objects"
        if isinstance(engine, LocalEngine)
        else f"Athena workgroup {settings.athena_workgroup}"
    )
    print(
        f"\nAnalyst questions, answered from Glue database {settings.glue_database} ({where}); "
        'try your own: weward-pipeline query "SELECT ..."',
        file=stream,
    )
    failures = 0
    for title, sql in ANALYST_QUESTIONS:
        print(f"\n-- {title}\n{sql.strip()}\n", file=stream)
        started = time.monotonic()
        try:
            result = engine.run(sql)
        except QueryError as exc:
            failures += 1
            print(f"error after {time.monotonic() - started:.1f} s: {exc}", file=stream)
            continue
        print(result.format(max_rows=20), file=stream)
        print(f"({result.summary()})", file=stream)
    return failures


def demo_epilogue() -> None:
    """The demo's last step: every analyst question must be answered."""
    if demo_analyst_questions():
        raise SystemExit("demo: an analyst question failed (see above)")
