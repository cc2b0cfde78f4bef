"""A realistic, seeded sample of the app's database, at any size.

The data is generated inside PostgreSQL (generate_series + a seeded random()) so a million rows
take seconds, and the same seed gives the same rows. The schema mirrors the real app: users with
personal data, step syncs, ward (points) transactions, reward offers and purchases, contests.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import psycopg
from psycopg import sql

SCHEMA_DDL = """
CREATE TYPE {s}.user_status AS ENUM ('active', 'suspended', 'deleted');
CREATE TYPE {s}.step_source AS ENUM ('ios_healthkit', 'android_fit', 'garmin', 'manual');
CREATE TYPE {s}.ward_kind AS ENUM ('earn_steps', 'earn_bonus', 'spend_reward', 'refund', 'contest_prize');
CREATE TYPE {s}.purchase_status AS ENUM ('pending', 'delivered', 'cancelled', 'refunded');

CREATE TABLE {s}.users (
    id bigint PRIMARY KEY,
    public_id uuid NOT NULL,
    email text NOT NULL,
    phone text,
    first_name text,
    birth_date date,
    country char(2) NOT NULL,
    status {s}.user_status NOT NULL,
    marketing_opt_in boolean NOT NULL,
    referral_code varchar(12),
    preferences jsonb,
    devices text[],
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE {s}.step_events (
    id bigint PRIMARY KEY,
    user_id bigint NOT NULL,
    created_at timestamptz NOT NULL,
    step_date date NOT NULL,
    steps integer NOT NULL,
    distance_m double precision,
    active_minutes smallint,
    source {s}.step_source NOT NULL,
    device_id uuid,
    payload jsonb
);
CREATE INDEX ON {s}.step_events (created_at);

CREATE TABLE {s}.ward_transactions (
    id bigint PRIMARY KEY,
    user_id bigint NOT NULL,
    created_at timestamptz NOT NULL,
    kind {s}.ward_kind NOT NULL,
    amount numeric(12, 2) NOT NULL,
    balance_after numeric(14, 2),
    reason text,
    transaction_id uuid NOT NULL,
    details jsonb
);
CREATE INDEX ON {s}.ward_transactions (created_at);

CREATE TABLE {s}.reward_offers (
    id integer PRIMARY KEY,
    partner text NOT NULL,
    title text NOT NULL,
    cost_wards numeric(10, 2) NOT NULL,
    retail_price_eur numeric(8, 2),
    stock integer,
    active boolean NOT NULL,
    tags text[],
    valid_from date,
    valid_until date,
    created_at timestamptz NOT NULL
);

CREATE TABLE {s}.reward_purchases (
    id bigint PRIMARY KEY,
    user_id bigint NOT NULL,
    offer_id integer NOT NULL,
    purchased_at timestamptz NOT NULL,
    wards_spent numeric(12, 2) NOT NULL,
    status {s}.purchase_status NOT NULL,
    voucher_code uuid,
    client_ip inet,
    delivery jsonb
);
CREATE INDEX ON {s}.reward_purchases (purchased_at);

CREATE TABLE {s}.contest_participations (
    id bigint PRIMARY KEY,
    contest_id integer NOT NULL,
    user_id bigint NOT NULL,
    joined_at timestamp NOT NULL,
    final_rank integer,
    steps_total bigint,
    prize_wards numeric,
    time_to_finish interval,
    team_member_ids bigint[]
);
CREATE INDEX ON {s}.contest_participations (joined_at);
"""

# Mean share of users active on a day: 0.25 x 0.92 + 0.45 x 0.55 + 0.30 x 0.15, times the weekly
# rhythm's mean (5 x 1.0 + 1.15 + 0.8) / 7.
ACTIVE_SHARE = (0.25 * 0.92 + 0.45 * 0.55 + 0.30 * 0.15) * (5 + 1.15 + 0.8) / 7

COUNTRIES = ["FR", "FR", "FR", "FR", "DE", "ES", "IT", "BE", "GB", "NL", "PT", "CH"]
PARTNERS = ["Decathlon", "Fnac", "Sephora", "Uber Eats", "Zalando", "Spotify", "Back Market", "Nike"]


@dataclass(frozen=True)
class SampleSize:
    users: int = 2_000
    days: int = 5
    step_events_per_user_day: float = 3.0  # on average over users and days; active users sync more
    ward_transactions_per_user_day: float = 1.5  # earnings on active days plus one spend per purchase
    purchases_per_day: int = 120
    offers: int = 60
    contest_participations_per_day: int = 150


def _geometric_scale(mean: float) -> float:
    """The scale s for which 1 + floor(Exp(s)) has the given mean (>= 1): E[floor(Exp(s))] = 1 / (e^(1/s) - 1)."""
    if mean <= 1.001:
        return 0.01
    return 1 / math.log(1 + 1 / (mean - 1))


def _literal_array(values: list[str]) -> sql.Composable:
    return sql.SQL("ARRAY[{}]").format(sql.SQL(", ").join(sql.Literal(v) for v in values))


def create_schema(conn: psycopg.Connection, schema: str = "public") -> None:
    s = sql.Identifier(schema)
    if schema != "public":
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s))
    conn.execute(sql.SQL(SCHEMA_DDL).format(s=s))


def generate(
    conn: psycopg.Connection,
    *,
    end_date: dt.date,
    size: SampleSize = SampleSize(),
    schema: str = "public",
    timezone: str = "Europe/Paris",
    seed: float = 0.42,
) -> dict[str, int]:
    """Fill the sample tables with `size.days` days of activity ending on `end_date` (local days).

    Returns rows per table. Deterministic for a given seed: one session, serial plans, setseed().
    """
    s = sql.Identifier(schema)
    start_date = end_date - dt.timedelta(days=size.days - 1)
    params = {
        "start": start_date,
        "days": size.days,
        "tz": timezone,
        "users": size.users,
    }
    conn.execute("SET max_parallel_workers_per_gather = 0")
    conn.execute(sql.SQL("SELECT setseed({})").format(sql.Literal(seed)))
    countries = _literal_array(COUNTRIES)
    partners = _literal_array(PARTNERS)
    statements = [
        # Users signed up over the year before the window; a few have no phone or birth date.
        sql.SQL("""
        INSERT INTO {s}.users
        SELECT g,
               md5('user' || g)::uuid,
               'user' || g || '@example.' || (ARRAY['com','fr','de','es'])[1 + (g %% 4)],
               CASE WHEN random() < 0.85 THEN '+33 6 ' || lpad((random() * 99999999)::int::text, 8, '0') END,
               (ARRAY['Camille','Lucas','Léa','Hugo','Chloé','Jürgen','Zoë','Ana','Marie','Noah'])[1 + (g %% 10)],
               CASE WHEN random() < 0.9 THEN date '1950-01-01' + (random() * 20000)::int END,
               ({countries})[1 + (random() * 11)::int],
               (CASE WHEN random() < 0.95 THEN 'active' WHEN random() < 0.5 THEN 'suspended' ELSE 'deleted' END)::{s}.user_status,
               random() < 0.4,
               upper(substr(md5('ref' || g), 1, 8)),
               jsonb_build_object('daily_goal', 6000 + (g %% 8) * 1000, 'notifications', random() < 0.7, 'lang', (ARRAY['fr','en','de'])[1 + (g %% 3)]),
               CASE WHEN random() < 0.7 THEN ARRAY['iphone'] ELSE ARRAY['android', 'garmin'] END,
               ((%(start)s::date - 365 + (random() * 360)::int)::timestamp + random() * interval '1 day') AT TIME ZONE %(tz)s,
               (%(start)s::date - 1)::timestamp AT TIME ZONE %(tz)s
        FROM generate_series(1, %(users)s) AS g
        """),
        # Partner offers: the price in wards follows the retail price (about 100 wards per euro,
        # rounded to 50); offers without a retail price are priced by hand.
        sql.SQL("""
        INSERT INTO {s}.reward_offers
        SELECT g, partner, title,
               CASE WHEN retail IS NOT NULL THEN greatest(50, round(retail * 100 / 50) * 50)
                    ELSE round((500 + random() * 9500)::numeric / 50) * 50 END,
               retail, stock, active, tags, valid_from, valid_until, created_at
        FROM (SELECT g,
                     ({partners})[1 + (g %% 8)] AS partner,
                     'Offer #' || g || ' - ' || (ARRAY['10€ voucher','free month','gift card','-20%% code'])[1 + (g %% 4)] AS title,
                     CASE WHEN g %% 5 <> 0 THEN round((5 + random() * 95)::numeric, 2) END AS retail,
                     CASE WHEN g %% 7 <> 0 THEN (random() * 1000)::int END AS stock,
                     g %% 9 <> 0 AS active,
                     ARRAY[(ARRAY['sport','food','beauty','tech','music'])[1 + (g %% 5)]] AS tags,
                     %(start)s::date - 60 + (g %% 30) AS valid_from,
                     CASE WHEN g %% 3 = 0 THEN %(start)s::date + 90 END AS valid_until,
                     (%(start)s::date - 90)::timestamp AT TIME ZONE %(tz)s AS created_at
              FROM generate_series(1, %(offers)s) AS g) AS o
        """),
        # Who walks when: a quarter of the users sync almost every day, most a few days a week, some
        # rarely; Saturdays are busier and Sundays quieter. One row per (day, active user) with how
        # many syncs the phone sent (geometric: mostly a few, sometimes many).
        sql.SQL("""
        CREATE TEMP TABLE sample_active_days AS
        SELECT d, u, weekend,
               1 + floor(-ln(1 - random()) * %(extra_syncs)s)::int AS syncs,
               1 + floor(-ln(1 - random()) * %(extra_wards)s)::int AS ledger_rows
        FROM (SELECT u, CASE WHEN r < 0.25 THEN 0.92 WHEN r < 0.70 THEN 0.55 ELSE 0.15 END AS propensity
              FROM (SELECT u, random() AS r FROM generate_series(1, %(users)s) AS u) AS r) AS walkers,
             LATERAL (SELECT d, extract(isodow FROM %(start)s::date + d) AS dow,
                             extract(isodow FROM %(start)s::date + d) >= 6 AS weekend
                      FROM generate_series(0, %(days)s - 1) AS d) AS days
        WHERE random() < propensity * CASE dow WHEN 6 THEN 1.15 WHEN 7 THEN 0.8 ELSE 1.0 END
        """),
        # Step syncs, spread over each local day (DST days included), mostly between 07:00 and 22:00;
        # more steps per sync at the weekend.
        sql.SQL("""
        INSERT INTO {s}.step_events
        SELECT row_number() OVER (ORDER BY d, u, k),
               u,
               ts,
               (ts AT TIME ZONE %(tz)s)::date,
               (random() * CASE WHEN weekend THEN 3000 ELSE 2200 END)::int,
               CASE WHEN random() < 0.9 THEN random() * 3000 END,
               CASE WHEN random() < 0.8 THEN (random() * 90)::smallint END,
               (ARRAY['ios_healthkit','android_fit','garmin','manual'])[1 + (random() * 3)::int]::{s}.step_source,
               CASE WHEN random() < 0.95 THEN md5('dev' || u)::uuid END,
               CASE WHEN random() < 0.3 THEN jsonb_build_object('battery', (random() * 100)::int, 'app', '4.12.' || (u %% 9)) END
        -- random() in a subquery's select list runs once per row (a LATERAL over d alone ran once per day)
        FROM (SELECT d, u, k, weekend,
                     ((%(start)s::date + d)::timestamp AT TIME ZONE %(tz)s)
                     + (CASE WHEN random() < 0.85 THEN 7.0 / 24 + random() * 15.0 / 24 ELSE random() END)
                       * ((((%(start)s::date + d + 1)::timestamp AT TIME ZONE %(tz)s))
                          - ((%(start)s::date + d)::timestamp AT TIME ZONE %(tz)s)) AS ts
              FROM sample_active_days, generate_series(1, syncs) AS k) AS t
        """),
        # Purchases: more at the weekend, a few popular offers (low ids) sell most, and the wards
        # spent are the offer's price.
        sql.SQL("""
        INSERT INTO {s}.reward_purchases
        SELECT row_number() OVER (ORDER BY d, k),
               1 + (random() * (%(users)s - 1))::int,
               offer_id,
               ((%(start)s::date + d)::timestamp AT TIME ZONE %(tz)s) + (0.25 + random() * 0.7) * interval '24 hours',
               (SELECT o.cost_wards FROM {s}.reward_offers o WHERE o.id = offer_id),
               (ARRAY['pending','delivered','delivered','cancelled','refunded'])[1 + (random() * 4)::int]::{s}.purchase_status,
               CASE WHEN random() < 0.9 THEN md5('v' || d || '-' || k)::uuid END,
               ('10.' || (random() * 255)::int || '.' || (random() * 255)::int || '.' || (random() * 255)::int)::inet,
               jsonb_build_object('channel', (ARRAY['app','web'])[1 + (k %% 2)], 'email_sent', random() < 0.9)
        FROM (SELECT d, k, 1 + floor(%(offers)s * power(random(), 1.7))::int AS offer_id
              FROM (SELECT d, round(%(purchases)s * CASE extract(isodow FROM %(start)s::date + d) WHEN 6 THEN 1.3
                                                    WHEN 7 THEN 1.1 ELSE 0.9 END * (0.8 + random() * 0.4))::int AS n
                    FROM generate_series(0, %(days)s - 1) AS d) AS per_day,
                   generate_series(1, n) AS k) AS p
        """),
        # The wards ledger: earnings on the days users walk, and one spend per purchase, of its price.
        sql.SQL("""
        INSERT INTO {s}.ward_transactions
        SELECT row_number() OVER (ORDER BY ts, u, k, transaction_id),
               u,
               ts,
               kind::{s}.ward_kind,
               amount,
               round((random() * 100000)::numeric, 2),
               reason,
               transaction_id,
               CASE WHEN random() < 0.5 THEN jsonb_build_object('campaign', 'c' || (u %% 13), 'multiplier', 1 + (u %% 3)) END
        FROM (SELECT u, k, ts, kind,
                     CASE WHEN kind = 'refund' THEN round((100 + random() * 2000)::numeric, 2)
                          ELSE round((random() * 250)::numeric, 2) END AS amount,
                     CASE WHEN random() < 0.6 THEN 'steps ' || (d + 1) END AS reason,
                     md5('wt' || d || '-' || u || '-' || k)::uuid AS transaction_id
              FROM (SELECT d, u, k, ts,
                           CASE WHEN k = 1 OR draw < 0.55 THEN 'earn_steps' WHEN draw < 0.9 THEN 'earn_bonus'
                                WHEN draw < 0.98 THEN 'contest_prize' ELSE 'refund' END AS kind
                    FROM (SELECT d, u, k,
                                 ((%(start)s::date + d)::timestamp AT TIME ZONE %(tz)s) + random() * interval '23 hours' AS ts,
                                 random() AS draw
                          FROM sample_active_days, generate_series(1, ledger_rows) AS k) AS drawn) AS e
              UNION ALL
              SELECT p.user_id, 0, p.purchased_at, 'spend_reward', -p.wards_spent, 'reward ' || p.offer_id,
                     md5('spend' || p.id)::uuid
              FROM {s}.reward_purchases p) AS t
        """),
        # joined_at is a timestamp WITHOUT time zone in the app's local time: a second kind of day window.
        sql.SQL("""
        INSERT INTO {s}.contest_participations
        SELECT row_number() OVER (ORDER BY d, k),
               100 + (d / 2),
               1 + (random() * (%(users)s - 1))::int,
               (%(start)s::date + d)::timestamp + random() * interval '24 hours' - interval '1 microsecond',
               CASE WHEN random() < 0.8 THEN (random() * 500)::int END,
               (random() * 300000)::bigint,
               CASE WHEN random() < 0.1 THEN round((random() * 1000)::numeric, 3) END,
               CASE WHEN random() < 0.7 THEN make_interval(days => (random() * 6)::int, secs => random() * 86400) END,
               CASE WHEN random() < 0.5 THEN ARRAY[(random() * 1000)::bigint, (random() * 1000)::bigint] END
        FROM (SELECT d, round(%(contests)s * (0.7 + random() * 0.6))::int AS n
              FROM generate_series(0, %(days)s - 1) AS d) AS per_day,
             generate_series(1, n) AS k
        """),
    ]
    # SampleSize gives averages per user and day; active days carry them (ACTIVE_SHARE of the
    # user-days), as geometric counts 1 + floor(Exp(scale)) with the scale that gives that mean.
    per_active_syncs = size.step_events_per_user_day / ACTIVE_SHARE
    spends_per_user_day = size.purchases_per_day / max(1, size.users)
    per_active_ledger = max(1.0, (size.ward_transactions_per_user_day - spends_per_user_day) / ACTIVE_SHARE)
    params.update(
        offers=size.offers,
        extra_syncs=_geometric_scale(per_active_syncs),
        extra_wards=_geometric_scale(per_active_ledger),
        purchases=size.purchases_per_day,
        contests=size.contest_participations_per_day,
    )
    conn.execute("DROP TABLE IF EXISTS pg_temp.sample_active_days")
    for statement in statements:
        conn.execute(statement.format(s=s, countries=countries, partners=partners), params)
    conn.execute("DROP TABLE pg_temp.sample_active_days")
    counts = {}
    for table in (
        "users",
        "step_events",
        "ward_transactions",
        "reward_offers",
        "reward_purchases",
        "contest_participations",
    ):
        counts[table] = conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(s, sql.Identifier(table))).fetchone()[
            0
        ]
        conn.execute(sql.SQL("ANALYZE {}.{}").format(s, sql.Identifier(table)))
    return counts


def load(
    url: str,
    *,
    end_date: dt.date,
    size: SampleSize = SampleSize(),
    schema: str = "public",
    timezone: str = "Europe/Paris",
    seed: float = 0.42,
) -> dict[str, int]:
    """Create the sample schema in the database at `url` (if absent) and fill it."""
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = 'users'", (schema,)
        ).fetchone()
        if exists:
            raise RuntimeError(f"sample schema {schema!r} already loaded; drop it or use another schema")
        with conn.transaction():
            create_schema(conn, schema)
            return generate(conn, end_date=end_date, size=size, schema=schema, timezone=timezone, seed=seed)
