"""Analyst questions in Athena SQL, each with the same question in PostgreSQL's own SQL.

test_query_local.py asks every question of the local engine (DuckDB over the exported lake, after
translation from Athena SQL) and of PostgreSQL (over the source rows, shaped like the lake) and
compares the answers; docs/querying.md shows them as examples (`python -m
weward_pipeline_tests.query_corpus` rewrites that section, and a test fails when it drifts).

The sample lake: 2024-03-28 .. 2024-04-01 in Europe/Paris, 2024-03-31 being the 23-hour day of
the change to summer time; `users` and `reward_offers` are snapshot tables (`<name>_latest` is
their latest day); `dt` is the local day as a 'YYYY-MM-DD' string.

`tolerance`: approx_* functions are estimates, so their answers are compared within a relative
tolerance, stated per question from the estimator's documented error (HyperLogLog's standard
error is 2.3% in Athena and about 1.6% in DuckDB; approx_percentile's rank error is about 1%).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Question:
    name: str
    title: str
    athena: str
    postgres: str
    tolerance: float | None = None  # relative, for every numeric column; None: exact
    topic: str = ""


def q(name: str, topic: str, title: str, athena: str, postgres: str, tolerance: float | None = None) -> Question:
    return Question(name, title, athena.strip(), postgres.strip(), tolerance, topic)


CORPUS: list[Question] = [
    # -- The functions of issue 16's table ------------------------------------------------------
    q(
        "approx_distinct_walkers_per_day",
        "Approximate aggregates",
        "Walkers per day, estimated (approx_distinct: within 5%)",
        "SELECT dt, approx_distinct(user_id) AS walkers FROM step_events GROUP BY dt ORDER BY dt",
        "SELECT dt, count(DISTINCT user_id) FROM step_events GROUP BY dt ORDER BY dt",
        tolerance=0.05,
    ),
    q(
        "approx_distinct_everything",
        "Approximate aggregates",
        "Distinct walkers and sources over all days (approx_distinct: within 5%)",
        "SELECT approx_distinct(user_id) AS walkers, approx_distinct(source) AS sources FROM step_events",
        "SELECT count(DISTINCT user_id), count(DISTINCT source) FROM step_events",
        tolerance=0.05,
    ),
    q(
        "approx_percentile_median_steps",
        "Approximate aggregates",
        "Median steps per sync, per day (approx_percentile: within 5%)",
        "SELECT dt, approx_percentile(steps, 0.5) AS median_steps FROM step_events GROUP BY dt ORDER BY dt",
        "SELECT dt, percentile_disc(0.5) WITHIN GROUP (ORDER BY steps) FROM step_events GROUP BY dt ORDER BY dt",
        tolerance=0.05,
    ),
    q(
        "date_format_utc_hours_of_the_dst_day",
        "Dates, times and the DST change",
        "Syncs per UTC hour on the 23-hour day (date_format with MySQL-style specifiers)",
        """
SELECT date_format(created_at, '%Y-%m-%d %H') AS utc_hour, count(*) AS syncs
FROM step_events
WHERE dt = '2024-03-31'
GROUP BY 1
ORDER BY 1""",
        """
SELECT to_char(created_at, 'YYYY-MM-DD HH24'), count(*) FROM step_events
WHERE dt = '2024-03-31' GROUP BY 1 ORDER BY 1""",
    ),
    q(
        "from_iso8601_timestamp_window",
        "Dates, times and the DST change",
        "Syncs between two ISO 8601 instants given in different offsets",
        """
SELECT count(*) AS syncs
FROM step_events
WHERE created_at >= from_iso8601_timestamp('2024-03-31T01:00:00+02:00')
  AND created_at < from_iso8601_timestamp('2024-03-31T12:00:00Z')""",
        """
SELECT count(*) FROM step_events
WHERE created_at >= '2024-03-31T01:00:00+02:00'::timestamptz AND created_at < '2024-03-31T12:00:00Z'::timestamptz""",
    ),
    q(
        "regexp_like_and_count_if",
        "Strings and regular expressions",
        "Users with a .fr or .de address (regexp_like, count_if)",
        "SELECT count(*) AS users, count_if(regexp_like(email, '@example\\.(fr|de)$')) AS fr_or_de FROM users_latest",
        "SELECT count(*), count(*) FILTER (WHERE email ~ '@example\\.(fr|de)$') FROM users_latest",
    ),
    q(
        "element_at_is_one_based",
        "Arrays",
        "First and last team mate, and a position past the end (element_at: 1-based, negative from the end, NULL past it)",
        """
SELECT id, element_at(team_member_ids, 1) AS first_mate, element_at(team_member_ids, -1) AS last_mate,
       element_at(team_member_ids, 3) AS third_mate
FROM contest_participations
WHERE dt = '2024-03-29' AND team_member_ids IS NOT NULL
ORDER BY id
LIMIT 20""",
        """
SELECT id, team_member_ids[1], team_member_ids[array_length(team_member_ids, 1)], team_member_ids[3]
FROM contest_participations WHERE dt = '2024-03-29' AND team_member_ids IS NOT NULL ORDER BY id LIMIT 20""",
    ),
    q(
        "json_extract_scalar_app_versions",
        "JSON in the jsonb columns",
        "Syncs per app version, read from the JSON payload (json_extract_scalar)",
        """
SELECT json_extract_scalar(payload, '$.app') AS app, count(*) AS syncs
FROM step_events
WHERE payload IS NOT NULL
GROUP BY 1
ORDER BY 1""",
        "SELECT payload::jsonb ->> 'app', count(*) FROM step_events WHERE payload IS NOT NULL GROUP BY 1 ORDER BY 1",
    ),
    q(
        "to_unixtime_first_and_last_sync",
        "Dates, times and the DST change",
        "First and last sync of each day as Unix time (to_unixtime)",
        "SELECT dt, min(to_unixtime(created_at)) AS first_sync, max(to_unixtime(created_at)) AS last_sync FROM step_events GROUP BY dt ORDER BY dt",
        "SELECT dt, extract(epoch FROM min(created_at)), extract(epoch FROM max(created_at)) FROM step_events GROUP BY dt ORDER BY dt",
    ),
    q(
        "date_trunc_week",
        "Dates, times and the DST change",
        "Syncs per ISO week (date_trunc('week'): weeks start on Monday)",
        "SELECT date_trunc('week', created_at) AS week, count(*) AS syncs FROM step_events GROUP BY 1 ORDER BY 1",
        "SELECT date_trunc('week', created_at), count(*) FROM step_events GROUP BY 1 ORDER BY 1",
    ),
    q(
        "cardinality_of_devices",
        "Arrays",
        "Users by number of devices (cardinality)",
        "SELECT cardinality(devices) AS devices, count(*) AS users FROM users_latest GROUP BY 1 ORDER BY 1",
        "SELECT cardinality(devices), count(*) FROM users_latest GROUP BY 1 ORDER BY 1",
    ),
    q(
        "date_diff_days_across_dst",
        "Dates, times and the DST change",
        "Syncs by whole days after 2024-03-30 23:00 UTC (date_diff counts whole days, not midnights crossed)",
        """
SELECT date_diff('day', TIMESTAMP '2024-03-30 23:00:00', created_at) AS days_after, count(*) AS syncs
FROM step_events
WHERE dt BETWEEN '2024-03-30' AND '2024-04-01'
GROUP BY 1
ORDER BY 1""",
        """
SELECT trunc(extract(epoch FROM created_at - timestamptz '2024-03-30 23:00:00+00') / 86400)::int AS d, count(*)
FROM step_events WHERE dt BETWEEN '2024-03-30' AND '2024-04-01' GROUP BY 1 ORDER BY 1""",
    ),
    q(
        "date_diff_hours_per_day",
        "Dates, times and the DST change",
        "Hours between each day's first and last sync: 22 on the 23-hour day (date_diff('hour'))",
        "SELECT dt, date_diff('hour', min(created_at), max(created_at)) AS span_hours FROM step_events GROUP BY dt ORDER BY dt",
        "SELECT dt, trunc(extract(epoch FROM max(created_at) - min(created_at)) / 3600)::int FROM step_events GROUP BY dt ORDER BY dt",
    ),
    q(
        "try_cast_json_multiplier",
        "JSON in the jsonb columns",
        "Ledger rows by bonus multiplier, NULL where there is none (try_cast of a JSON value)",
        """
SELECT try_cast(json_extract_scalar(details, '$.multiplier') AS integer) AS multiplier, count(*) AS transactions
FROM ward_transactions
WHERE dt = '2024-03-30'
GROUP BY 1
ORDER BY 1 NULLS FIRST""",
        """
SELECT (details::jsonb ->> 'multiplier')::int, count(*) FROM ward_transactions
WHERE dt = '2024-03-30' GROUP BY 1 ORDER BY 1 NULLS FIRST""",
    ),
    q(
        "count_if_per_day",
        "Aggregates and NULLs",
        "Syncs without a distance, and big syncs, per day (count_if)",
        """
SELECT dt, count_if(distance_m IS NULL) AS without_distance, count_if(steps > 2000) AS big_syncs
FROM step_events
GROUP BY dt
ORDER BY dt""",
        """
SELECT dt, count(*) FILTER (WHERE distance_m IS NULL), count(*) FILTER (WHERE steps > 2000)
FROM step_events GROUP BY dt ORDER BY dt""",
    ),
    # -- Athena's arithmetic ------------------------------------------------------------------------
    q(
        "integer_division_truncates",
        "Arithmetic",
        "Mean steps per sync as Athena computes it: integer / integer is an integer",
        "SELECT dt, sum(steps) / count(*) AS mean_steps, sum(steps) % 7 AS remainder FROM step_events GROUP BY dt ORDER BY dt",
        "SELECT dt, sum(steps) / count(*), sum(steps) % 7 FROM step_events GROUP BY dt ORDER BY dt",
    ),
    q(
        "integer_division_of_negatives",
        "Arithmetic",
        "Rank tiers, negative ones included: division truncates toward zero",
        """
SELECT id, final_rank / 3 AS tier, (0 - final_rank) / 3 AS negative_tier, final_rank % 3 AS remainder
FROM contest_participations
WHERE dt = '2024-03-29' AND final_rank IS NOT NULL
ORDER BY id
LIMIT 20""",
        """
SELECT id, final_rank / 3, (0 - final_rank) / 3, final_rank % 3 FROM contest_participations
WHERE dt = '2024-03-29' AND final_rank IS NOT NULL ORDER BY id LIMIT 20""",
    ),
    q(
        "decimal_division_keeps_the_scale",
        "Arithmetic",
        "Mean ledger amount per kind: decimal / bigint is a decimal with the amount's 2 decimals",
        """
SELECT kind, sum(amount) / count(*) AS mean_amount
FROM ward_transactions
WHERE dt = '2024-03-30'
GROUP BY kind
ORDER BY kind""",
        "SELECT kind, round(sum(amount) / count(*), 2) FROM ward_transactions WHERE dt = '2024-03-30' GROUP BY kind ORDER BY kind",
    ),
    q(
        "avg_of_a_decimal_is_a_decimal",
        "Arithmetic",
        "Average amount per kind: avg(decimal(12,2)) is a decimal(12,2), rounded half up",
        "SELECT kind, avg(amount) AS mean_amount, sum(amount) AS total FROM ward_transactions GROUP BY kind ORDER BY kind",
        "SELECT kind, round(avg(amount), 2), sum(amount) FROM ward_transactions GROUP BY kind ORDER BY kind",
    ),
    # -- NULLs in aggregates ------------------------------------------------------------------------
    q(
        "aggregates_of_no_rows",
        "Aggregates and NULLs",
        "Aggregates over a day with no data: count is 0, sum and max are NULL",
        """
SELECT count(*) AS syncs, sum(steps) AS steps, max(created_at) AS last_sync,
       count(DISTINCT user_id) AS walkers, count_if(steps > 0) AS positive
FROM step_events
WHERE dt = '2023-01-01'""",
        """
SELECT count(*), sum(steps), max(created_at), count(DISTINCT user_id), count(*) FILTER (WHERE steps > 0)
FROM step_events WHERE dt = '2023-01-01'""",
    ),
    q(
        "aggregates_skip_nulls",
        "Aggregates and NULLs",
        "Prizes: NULLs are skipped by sum, avg and count(column), counted by count(*)",
        """
SELECT count(*) AS participations, count(prize_wards) AS with_prize, sum(prize_wards) AS prizes,
       avg(final_rank) AS mean_rank, sum(prize_wards) FILTER (WHERE prize_wards IS NULL) AS nothing
FROM contest_participations""",
        """
SELECT count(*), count(prize_wards), sum(prize_wards), avg(final_rank),
       sum(prize_wards) FILTER (WHERE prize_wards IS NULL)
FROM contest_participations""",
    ),
    q(
        "null_ordering_and_coalesce",
        "Aggregates and NULLs",
        "Balances, missing ones last (Athena sorts NULLs last by default, in both directions)",
        """
SELECT id, coalesce(reason, '(none)') AS reason, balance_after
FROM ward_transactions
WHERE dt = '2024-03-31' AND user_id = 2
ORDER BY balance_after DESC, id""",
        """
SELECT id, coalesce(reason, '(none)'), balance_after FROM ward_transactions
WHERE dt = '2024-03-31' AND user_id = 2 ORDER BY balance_after DESC NULLS LAST, id""",
    ),
    # -- Window functions ---------------------------------------------------------------------------
    q(
        "top_three_walkers_per_day",
        "Window functions",
        "The three walkers with most steps each day (row_number over a WITH clause)",
        """
WITH daily AS (
    SELECT dt, user_id, sum(steps) AS steps
    FROM step_events
    GROUP BY dt, user_id
)
SELECT dt, user_id, steps
FROM (
    SELECT dt, user_id, steps, row_number() OVER (PARTITION BY dt ORDER BY steps DESC, user_id) AS place
    FROM daily
)
WHERE place <= 3
ORDER BY dt, place""",
        """
WITH daily AS (SELECT dt, user_id, sum(steps) AS steps FROM step_events GROUP BY dt, user_id)
SELECT dt, user_id, steps FROM (
    SELECT dt, user_id, steps, row_number() OVER (PARTITION BY dt ORDER BY steps DESC, user_id) AS place FROM daily
) ranked WHERE place <= 3 ORDER BY dt, place""",
    ),
    q(
        "running_total_and_day_over_day",
        "Window functions",
        "Steps per day, running total and change from the day before (sum over, lag)",
        """
SELECT dt, sum(steps) AS steps,
       sum(sum(steps)) OVER (ORDER BY dt) AS running_steps,
       count(*) - lag(count(*)) OVER (ORDER BY dt) AS change_in_syncs
FROM step_events
GROUP BY dt
ORDER BY dt""",
        """
SELECT dt, sum(steps), sum(sum(steps)) OVER (ORDER BY dt), count(*) - lag(count(*)) OVER (ORDER BY dt)
FROM step_events GROUP BY dt ORDER BY dt""",
    ),
    q(
        "dense_rank_of_countries",
        "Window functions",
        "Countries ranked by users (dense_rank)",
        """
SELECT country, count(*) AS users, dense_rank() OVER (ORDER BY count(*) DESC) AS place
FROM users_latest
GROUP BY country
ORDER BY place, country""",
        """
SELECT country, count(*), dense_rank() OVER (ORDER BY count(*) DESC) AS place FROM users_latest
GROUP BY country ORDER BY place, country""",
    ),
    q(
        "share_of_the_day_per_source",
        "Window functions",
        "Each source's share of the day's syncs, in percent (a window over an aggregate)",
        """
SELECT dt, source, count(*) AS syncs,
       round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY dt), 1) AS percent
FROM step_events
WHERE dt >= '2024-03-31'
GROUP BY dt, source
ORDER BY dt, source""",
        """
SELECT dt, source, count(*), round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY dt), 1)
FROM step_events WHERE dt >= '2024-03-31' GROUP BY dt, source ORDER BY dt, source""",
    ),
    q(
        "max_by_last_sync_per_day",
        "Window functions",
        "The last sync of each day and its walker (max_by)",
        "SELECT dt, max_by(user_id, id) AS last_walker, max(id) AS last_id FROM step_events GROUP BY dt ORDER BY dt",
        "SELECT dt, (array_agg(user_id ORDER BY id DESC))[1], max(id) FROM step_events GROUP BY dt ORDER BY dt",
    ),
    # -- UNNEST -------------------------------------------------------------------------------------
    q(
        "unnest_devices",
        "Arrays",
        "Users per device (CROSS JOIN UNNEST)",
        """
SELECT device, count(*) AS users
FROM users_latest
CROSS JOIN UNNEST(devices) AS t(device)
GROUP BY device
ORDER BY device""",
        "SELECT device, count(*) FROM users_latest CROSS JOIN LATERAL unnest(devices) AS t(device) GROUP BY device ORDER BY device",
    ),
    q(
        "unnest_with_ordinality",
        "Arrays",
        "Team mates by position in the team (UNNEST ... WITH ORDINALITY)",
        """
SELECT position, count(*) AS mates, count(DISTINCT mate) AS distinct_mates
FROM contest_participations
CROSS JOIN UNNEST(team_member_ids) WITH ORDINALITY AS t(mate, position)
GROUP BY position
ORDER BY position""",
        """
SELECT position, count(*), count(DISTINCT mate) FROM contest_participations
CROSS JOIN LATERAL unnest(team_member_ids) WITH ORDINALITY AS t(mate, position) GROUP BY position ORDER BY position""",
    ),
    q(
        "unnest_offer_tags",
        "Arrays",
        "Offers and active offers per tag (UNNEST on a snapshot's latest day)",
        """
SELECT tag, count(*) AS offers, count_if(active) AS active_offers
FROM reward_offers_latest
CROSS JOIN UNNEST(tags) AS t(tag)
GROUP BY tag
ORDER BY tag""",
        """
SELECT tag, count(*), count(*) FILTER (WHERE active) FROM reward_offers_latest
CROSS JOIN LATERAL unnest(tags) AS t(tag) GROUP BY tag ORDER BY tag""",
    ),
    q(
        "contains_in_an_array",
        "Arrays",
        "Users with a Garmin (contains)",
        "SELECT count(*) AS garmin_users FROM users_latest WHERE contains(devices, 'garmin')",
        "SELECT count(*) FROM users_latest WHERE 'garmin' = ANY(devices)",
    ),
    # -- JSON -------------------------------------------------------------------------------------------
    q(
        "json_preferences_by_language",
        "JSON in the jsonb columns",
        "Users and their mean daily goal per language (two JSON fields, one cast)",
        """
SELECT json_extract_scalar(preferences, '$.lang') AS lang, count(*) AS users,
       avg(CAST(json_extract_scalar(preferences, '$.daily_goal') AS integer)) AS mean_goal
FROM users_latest
GROUP BY 1
ORDER BY 1""",
        """
SELECT preferences::jsonb ->> 'lang', count(*), avg((preferences::jsonb ->> 'daily_goal')::int)
FROM users_latest GROUP BY 1 ORDER BY 1""",
    ),
    q(
        "json_boolean_field",
        "JSON in the jsonb columns",
        "Purchases per channel, and how many were emailed (a JSON boolean reads as 'true')",
        """
SELECT json_extract_scalar(delivery, '$.channel') AS channel, count(*) AS purchases,
       count_if(json_extract_scalar(delivery, '$.email_sent') = 'true') AS emailed
FROM reward_purchases
GROUP BY 1
ORDER BY 1""",
        """
SELECT delivery::jsonb ->> 'channel', count(*), count(*) FILTER (WHERE delivery::jsonb ->> 'email_sent' = 'true')
FROM reward_purchases GROUP BY 1 ORDER BY 1""",
    ),
    q(
        "json_extract_scalar_of_an_object_is_null",
        "JSON in the jsonb columns",
        "json_extract_scalar gives NULL for an object; json_extract gives the JSON, castable",
        """
SELECT count(*) AS with_payload, count(json_extract_scalar(payload, '$')) AS scalar_roots,
       max(CAST(json_extract(payload, '$.battery') AS integer)) AS max_battery
FROM step_events
WHERE payload IS NOT NULL""",
        """
SELECT count(*), count(CASE WHEN jsonb_typeof(payload::jsonb) NOT IN ('object', 'array') THEN 1 END),
       max((payload::jsonb -> 'battery')::int)
FROM step_events WHERE payload IS NOT NULL""",
    ),
    # -- Time zones and the DST change --------------------------------------------------------------
    q(
        "local_hours_per_local_day",
        "Dates, times and the DST change",
        "Distinct local (Paris) hours per day: 23 on 2024-03-31 (AT TIME ZONE gives the zone's wall clock)",
        """
SELECT dt, count(DISTINCT hour(created_at AT TIME ZONE 'Europe/Paris')) AS local_hours
FROM step_events
GROUP BY dt
ORDER BY dt""",
        """
SELECT dt, count(DISTINCT extract(hour FROM created_at AT TIME ZONE 'Europe/Paris')) FROM step_events
GROUP BY dt ORDER BY dt""",
    ),
    q(
        "local_date_matches_dt",
        "Dates, times and the DST change",
        "The local date of each sync is its dt (date of a zoned timestamp)",
        """
SELECT dt, count(*) AS syncs, count_if(CAST(date(created_at AT TIME ZONE 'Europe/Paris') AS varchar) <> dt) AS misplaced
FROM step_events
GROUP BY dt
ORDER BY dt""",
        """
SELECT dt, count(*), count(*) FILTER (WHERE ((created_at AT TIME ZONE 'Europe/Paris')::date)::text <> dt)
FROM step_events GROUP BY dt ORDER BY dt""",
    ),
    q(
        "wall_clock_arithmetic_on_naive_timestamps",
        "Dates, times and the DST change",
        "Adding hours and days to local wall-clock times around the DST gap (date_add)",
        """
SELECT id, joined_at, date_add('hour', 3, joined_at) AS plus_3_hours, date_add('day', 1, joined_at) AS next_day,
       joined_at + INTERVAL '90' MINUTE AS plus_90_minutes
FROM contest_participations
WHERE id BETWEEN 3000001 AND 3000005
ORDER BY id""",
        """
SELECT id, joined_at, joined_at + interval '3 hours', joined_at + interval '1 day', joined_at + interval '90 minutes'
FROM contest_participations WHERE id BETWEEN 3000001 AND 3000005 ORDER BY id""",
    ),
    q(
        "the_23_hour_day_in_utc",
        "Dates, times and the DST change",
        "The DST day is 23 hours of UTC time: 2024-03-30 23:00 to 2024-03-31 22:00 UTC",
        """
SELECT count(*) AS syncs, sum(steps) AS steps
FROM step_events
WHERE created_at >= TIMESTAMP '2024-03-30 23:00:00'
  AND created_at < TIMESTAMP '2024-03-30 23:00:00' + INTERVAL '23' HOUR""",
        """
SELECT count(*), sum(steps) FROM step_events
WHERE created_at >= timestamptz '2024-03-30 23:00:00+00' AND created_at < timestamptz '2024-03-30 23:00:00+00' + interval '23 hours'""",
    ),
    q(
        "from_unixtime_instant",
        "Dates, times and the DST change",
        "Syncs in the hour after the clocks jumped (from_unixtime: 1711846800 is 2024-03-31 01:00 UTC)",
        """
SELECT count(*) AS syncs
FROM step_events
WHERE created_at >= from_unixtime(1711846800) AND created_at < from_unixtime(1711846800 + 3600)""",
        """
SELECT count(*) FROM step_events WHERE created_at >= to_timestamp(1711846800) AND created_at < to_timestamp(1711846800 + 3600)""",
    ),
    q(
        "day_of_week_and_name_of_dt",
        "Dates, times and the DST change",
        "Syncs per weekday, from dt (date_parse, day_of_week, date_format %W)",
        """
SELECT day_of_week(date_parse(dt, '%Y-%m-%d')) AS weekday, date_format(date_parse(dt, '%Y-%m-%d'), '%W') AS name,
       count(*) AS syncs
FROM step_events
GROUP BY 1, 2
ORDER BY 1""",
        """
SELECT extract(isodow FROM dt::date)::int, trim(to_char(dt::date, 'Day')), count(*) FROM step_events GROUP BY 1, 2 ORDER BY 1""",
    ),
    # -- dt ranges and _latest views ------------------------------------------------------------
    q(
        "dt_range_between",
        "dt ranges and _latest views",
        "Ledger per day over a range of days (dt is a string: compare it with strings)",
        """
SELECT dt, count(*) AS transactions, sum(amount) AS net
FROM ward_transactions
WHERE dt BETWEEN '2024-03-29' AND '2024-03-31'
GROUP BY dt
ORDER BY dt""",
        """
SELECT dt, count(*), sum(amount) FROM ward_transactions WHERE dt BETWEEN '2024-03-29' AND '2024-03-31'
GROUP BY dt ORDER BY dt""",
    ),
    q(
        "dt_like_a_month",
        "dt ranges and _latest views",
        "Syncs in March (dt LIKE '2024-03-%')",
        "SELECT count(*) AS syncs, count(DISTINCT dt) AS days FROM step_events WHERE dt LIKE '2024-03-%'",
        "SELECT count(*), count(DISTINCT dt) FROM step_events WHERE dt LIKE '2024-03-%'",
    ),
    q(
        "days_ago_from_dt",
        "dt ranges and _latest views",
        "Purchases by how many days before 2024-04-01 they were made (date(dt), date_diff)",
        """
SELECT date_diff('day', date(dt), DATE '2024-04-01') AS days_ago, count(*) AS purchases
FROM reward_purchases
GROUP BY 1
ORDER BY 1""",
        "SELECT DATE '2024-04-01' - dt::date, count(*) FROM reward_purchases GROUP BY 1 ORDER BY 1",
    ),
    q(
        "latest_snapshot_day",
        "dt ranges and _latest views",
        "The latest snapshot is one day (users_latest)",
        "SELECT dt, count(*) AS users, count(DISTINCT id) AS ids FROM users_latest GROUP BY dt",
        "SELECT dt, count(*), count(DISTINCT id) FROM users_latest GROUP BY dt",
    ),
    q(
        "active_offers_per_partner",
        "dt ranges and _latest views",
        "Active offers and their stock per partner (reward_offers_latest)",
        """
SELECT partner, count(*) AS offers, sum(stock) AS stock, min(cost_wards) AS cheapest
FROM reward_offers_latest
WHERE active
GROUP BY partner
ORDER BY partner""",
        """
SELECT partner, count(*), sum(stock), min(cost_wards) FROM reward_offers_latest WHERE active
GROUP BY partner ORDER BY partner""",
    ),
    # -- WITH clauses and joins -------------------------------------------------------------------
    q(
        "earners_who_also_spend",
        "WITH clauses and joins",
        "Users who both earned and spent wards, and how much (two WITH clauses joined)",
        """
WITH spenders AS (
    SELECT user_id, sum(wards_spent) AS spent FROM reward_purchases WHERE status <> 'cancelled' GROUP BY user_id
), earners AS (
    SELECT user_id, sum(amount) AS earned FROM ward_transactions WHERE amount > 0 GROUP BY user_id
)
SELECT count(*) AS users, sum(s.spent) AS spent, sum(e.earned) AS earned
FROM spenders s
JOIN earners e ON e.user_id = s.user_id""",
        """
WITH spenders AS (SELECT user_id, sum(wards_spent) AS spent FROM reward_purchases WHERE status <> 'cancelled' GROUP BY user_id),
     earners AS (SELECT user_id, sum(amount) AS earned FROM ward_transactions WHERE amount > 0 GROUP BY user_id)
SELECT count(*), sum(s.spent), sum(e.earned) FROM spenders s JOIN earners e ON e.user_id = s.user_id""",
    ),
    q(
        "purchases_per_country_and_status",
        "WITH clauses and joins",
        "Purchases by the buyer's country and status, with a HAVING filter",
        """
SELECT u.country, p.status, count(*) AS purchases
FROM reward_purchases p
JOIN users_latest u ON u.id = p.user_id
GROUP BY u.country, p.status
HAVING count(*) >= 5
ORDER BY u.country, p.status""",
        """
SELECT u.country, p.status, count(*) FROM reward_purchases p JOIN users_latest u ON u.id = p.user_id
GROUP BY u.country, p.status HAVING count(*) >= 5 ORDER BY u.country, p.status""",
    ),
    q(
        "exists_and_in_subqueries",
        "WITH clauses and joins",
        "Users who synced on the DST day but bought nothing that week (EXISTS, NOT IN)",
        """
SELECT count(*) AS users
FROM users_latest u
WHERE EXISTS (SELECT 1 FROM step_events s WHERE s.user_id = u.id AND s.dt = '2024-03-31')
  AND u.id NOT IN (SELECT user_id FROM reward_purchases)""",
        """
SELECT count(*) FROM users_latest u
WHERE EXISTS (SELECT 1 FROM step_events s WHERE s.user_id = u.id AND s.dt = '2024-03-31')
  AND u.id NOT IN (SELECT user_id FROM reward_purchases)""",
    ),
    q(
        "union_of_two_ledgers",
        "WITH clauses and joins",
        "Wards in and out per day in one list (UNION ALL)",
        """
SELECT dt, 'earned' AS direction, sum(amount) AS wards FROM ward_transactions WHERE amount > 0 GROUP BY dt
UNION ALL
SELECT dt, 'spent' AS direction, sum(wards_spent) AS wards FROM reward_purchases GROUP BY dt
ORDER BY dt, direction""",
        """
SELECT dt, 'earned' AS direction, sum(amount) FROM ward_transactions WHERE amount > 0 GROUP BY dt
UNION ALL
SELECT dt, 'spent', sum(wards_spent) FROM reward_purchases GROUP BY dt ORDER BY dt, direction""",
    ),
    # -- Strings --------------------------------------------------------------------------------
    q(
        "regexp_extract_domain",
        "Strings and regular expressions",
        "Users per e-mail top-level domain (regexp_extract with a group)",
        """
SELECT regexp_extract(email, '@example\\.([a-z]+)$', 1) AS tld, count(*) AS users
FROM users_latest
GROUP BY 1
ORDER BY 1""",
        "SELECT substring(email FROM '@example\\.([a-z]+)$'), count(*) FROM users_latest GROUP BY 1 ORDER BY 1",
    ),
    q(
        "regexp_replace_group_reference",
        "Strings and regular expressions",
        "A handle from the e-mail address (regexp_replace with $1)",
        "SELECT id, regexp_replace(email, '^user([0-9]+)@.*$', 'u$1') AS handle FROM users_latest ORDER BY id LIMIT 5",
        "SELECT id, regexp_replace(email, '^user([0-9]+)@.*$', 'u\\1') FROM users_latest ORDER BY id LIMIT 5",
    ),
    q(
        "split_part_and_friends",
        "Strings and regular expressions",
        "Users per e-mail domain, with the domain's length and a name in capitals (split_part, length, upper, if)",
        """
SELECT split_part(email, '@', 2) AS domain, length(split_part(email, '@', 2)) AS chars, count(*) AS users,
       count_if(upper(substr(first_name, 1, 1)) = 'L') AS names_in_l,
       if(count(*) > 50, 'many', 'few') AS size
FROM users_latest
GROUP BY 1
ORDER BY 1""",
        """
SELECT split_part(email, '@', 2), length(split_part(email, '@', 2)), count(*),
       count(*) FILTER (WHERE upper(substr(first_name, 1, 1)) = 'L'), CASE WHEN count(*) > 50 THEN 'many' ELSE 'few' END
FROM users_latest GROUP BY 1 ORDER BY 1""",
    ),
]


# --------------------------------------------------------------------------------------------
# docs/querying.md: the examples section is rendered from CORPUS.
# --------------------------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "querying.md"
BEGIN = "<!-- examples: generated from weward_pipeline_tests/query_corpus.py; do not edit by hand -->"
END = "<!-- end of examples -->"


def render_examples() -> str:
    out = [BEGIN, ""]
    topics: list[str] = []
    for question in CORPUS:
        if question.topic not in topics:
            topics.append(question.topic)
    for topic in topics:
        out.append(f"### {topic}\n")
        for question in (x for x in CORPUS if x.topic == topic):
            out.append(f"{question.title}:\n\n```sql\n{question.athena}\n```\n")
    out.append(END)
    return "\n".join(out)


def examples_in_docs(text: str) -> str:
    match = re.search(re.escape(BEGIN) + r".*?" + re.escape(END), text, re.S)
    return match.group(0) if match else ""


def write_docs() -> None:
    text = DOCS.read_text(encoding="utf-8")
    current = examples_in_docs(text)
    if not current:
        raise SystemExit(f"{DOCS}: no examples section ({BEGIN} ... {END})")
    DOCS.write_text(text.replace(current, render_examples()), encoding="utf-8")


if __name__ == "__main__":
    write_docs()
    print(f"{DOCS}: {len(CORPUS)} examples written", file=sys.stderr)
