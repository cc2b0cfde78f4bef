"""A realistic, seeded sample of the app's database, at any size.

The data is generated inside PostgreSQL (generate_series + a seeded random()) so a million rows
take seconds, and the same seed gives the same rows. The schema mirrors the real app: users with
personal data, step syncs, ward (points) transactions, reward offers and purchases, contests.
"""

from __future__ import annotations

import datetime as dt
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

COUNTRIES = ["FR", "FR", "FR", "FR", "DE", "ES", "IT", "BE", "GB", "NL", "PT", "CH"]
PARTNERS = ["Decathlon", "Fnac", "Sephora", "Uber Eats", "Zalando", "Spotify", "Back Market", "Nike"]


@dataclass(frozen=True)
class SampleSize:
    users: int = 2_000
    days: int = 5
    step_events_per_user_day: float = 3.0
    ward_transactions_per_user_day: float = 1.5
    purchases_per_day: int = 120
    offers: int = 60
    contest_participations_per_day: int = 150


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
        sql.SQL("""
        INSERT INTO {s}.reward_offers
        SELECT g,
               ({partners})[1 + (g %% 8)],
               'Offer #' || g || ' - ' || (ARRAY['10€ voucher','free month','gift card','-20%% code'])[1 + (g %% 4)],
               round((500 + random() * 20000)::numeric, 2),
               CASE WHEN g %% 5 <> 0 THEN round((5 + random() * 95)::numeric, 2) END,
               CASE WHEN g %% 7 <> 0 THEN (random() * 1000)::int END,
               g %% 9 <> 0,
               ARRAY[(ARRAY['sport','food','beauty','tech','music'])[1 + (g %% 5)]],
               %(start)s::date - 60 + (g %% 30),
               CASE WHEN g %% 3 = 0 THEN %(start)s::date + 90 END,
               (%(start)s::date - 90)::timestamp AT TIME ZONE %(tz)s
        FROM generate_series(1, %(offers)s) AS g
        """),
        # Step syncs: several a day per user, spread over each local day (DST days included).
        sql.SQL("""
        INSERT INTO {s}.step_events
        SELECT row_number() OVER (ORDER BY d, u, k),
               u,
               ts,
               (ts AT TIME ZONE %(tz)s)::date,
               (random() * 4000)::int,
               CASE WHEN random() < 0.9 THEN random() * 3000 END,
               CASE WHEN random() < 0.8 THEN (random() * 90)::smallint END,
               (ARRAY['ios_healthkit','android_fit','garmin','manual'])[1 + (random() * 3)::int]::{s}.step_source,
               CASE WHEN random() < 0.95 THEN md5('dev' || u)::uuid END,
               CASE WHEN random() < 0.3 THEN jsonb_build_object('battery', (random() * 100)::int, 'app', '4.12.' || (u %% 9)) END
        -- random() in a subquery's select list runs once per row (a LATERAL over d alone ran once per day)
        FROM (SELECT d, u, k,
                     ((%(start)s::date + d)::timestamp AT TIME ZONE %(tz)s)
                     + random() * ((((%(start)s::date + d + 1)::timestamp AT TIME ZONE %(tz)s))
                                   - ((%(start)s::date + d)::timestamp AT TIME ZONE %(tz)s)) AS ts
              FROM generate_series(0, %(days)s - 1) AS d,
                   generate_series(1, %(users)s) AS u,
                   generate_series(1, %(steps_per_day)s) AS k) AS t
        WHERE random() < %(steps_keep)s
        """),
        sql.SQL("""
        INSERT INTO {s}.ward_transactions
        SELECT row_number() OVER (ORDER BY d, u, k),
               u,
               ts,
               kind::{s}.ward_kind,
               CASE WHEN kind LIKE 'spend%%' THEN -round((100 + random() * 5000)::numeric, 2)
                    ELSE round((random() * 250)::numeric, 2) END,
               round((random() * 100000)::numeric, 2),
               CASE WHEN random() < 0.6 THEN 'steps ' || (d + 1) END,
               md5('wt' || d || '-' || u || '-' || k)::uuid,
               CASE WHEN random() < 0.5 THEN jsonb_build_object('campaign', 'c' || (u %% 13), 'multiplier', 1 + (u %% 3)) END
        FROM (SELECT d, u, k,
                     ((%(start)s::date + d)::timestamp AT TIME ZONE %(tz)s) + random() * interval '23 hours' AS ts,
                     (ARRAY['earn_steps','earn_steps','earn_bonus','spend_reward','refund','contest_prize'])[1 + (random() * 5)::int] AS kind
              FROM generate_series(0, %(days)s - 1) AS d,
                   generate_series(1, %(users)s) AS u,
                   generate_series(1, %(wards_per_day)s) AS k) AS t
        WHERE random() < %(wards_keep)s
        """),
        sql.SQL("""
        INSERT INTO {s}.reward_purchases
        SELECT row_number() OVER (ORDER BY d, k),
               1 + (random() * (%(users)s - 1))::int,
               1 + (random() * (%(offers)s - 1))::int,
               ((%(start)s::date + d)::timestamp AT TIME ZONE %(tz)s) + random() * interval '23 hours',
               round((500 + random() * 20000)::numeric, 2),
               (ARRAY['pending','delivered','delivered','cancelled','refunded'])[1 + (random() * 4)::int]::{s}.purchase_status,
               CASE WHEN random() < 0.9 THEN md5('v' || d || '-' || k)::uuid END,
               ('10.' || (random() * 255)::int || '.' || (random() * 255)::int || '.' || (random() * 255)::int)::inet,
               jsonb_build_object('channel', (ARRAY['app','web'])[1 + (k %% 2)], 'email_sent', random() < 0.9)
        FROM generate_series(0, %(days)s - 1) AS d,
             generate_series(1, %(purchases)s) AS k
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
        FROM generate_series(0, %(days)s - 1) AS d,
             generate_series(1, %(contests)s) AS k
        """),
    ]
    params.update(
        offers=size.offers,
        steps_per_day=max(1, int(size.step_events_per_user_day + 0.999)),
        steps_keep=size.step_events_per_user_day / max(1, int(size.step_events_per_user_day + 0.999)),
        wards_per_day=max(1, int(size.ward_transactions_per_user_day + 0.999)),
        wards_keep=size.ward_transactions_per_user_day / max(1, int(size.ward_transactions_per_user_day + 0.999)),
        purchases=size.purchases_per_day,
        contests=size.contest_participations_per_day,
    )
    for statement in statements:
        conn.execute(statement.format(s=s, countries=countries, partners=partners), params)
    counts = {}
    for table in ("users", "step_events", "ward_transactions", "reward_offers", "reward_purchases", "contest_participations"):
        counts[table] = conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(s, sql.Identifier(table))).fetchone()[0]
        conn.execute(sql.SQL("ANALYZE {}.{}").format(s, sql.Identifier(table)))
    return counts


def load(url: str, *, end_date: dt.date, size: SampleSize = SampleSize(), schema: str = "public",
         timezone: str = "Europe/Paris", seed: float = 0.42) -> dict[str, int]:
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
