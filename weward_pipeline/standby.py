"""Exporting from a hot standby: wait until it holds the whole day, survive recovery conflicts.

`WEWARD_PG_URL` may name a streaming replica (redaction always uses the primary). Two things
differ from reading the primary, and each has one rule here:

  1. Freshness. A standby shows the primary as it was some time ago. Exporting day D before the
     standby has replayed the primary's WAL up to D's end would silently miss D's last rows. So
     before the export takes its snapshot, `replayed_through` asks the standby up to which instant
     (on the primary's clock) it has replayed, and the export waits, polling, until that instant
     is past D's end plus a margin (`standby_margin_s`, for transactions that commit a little
     after the timestamp they write). The wait has a budget (`standby_max_wait_s`); past it the
     export fails as transient (Dagster retries it later) and reads nothing.

     The instant: when the standby has replayed everything its WAL receiver was told exists
     (replay LSN >= `pg_stat_wal_receiver.latest_end_lsn`), it holds the primary as of the
     receiver's last message (`last_msg_send_time`; the primary sends one at least every
     `wal_receiver_status_interval`, even when idle). Otherwise it holds the primary as of the
     last transaction it replayed (`pg_last_xact_replay_timestamp()`). The receiver's columns are
     visible to roles with pg_monitor (or pg_read_all_stats); without them only the second
     rule applies, which is exact but stalls on an idle primary.

  2. Recovery conflicts. While a standby query holds a snapshot, the primary may vacuum row
     versions that snapshot still needs. The standby then delays replay for at most
     `max_standby_streaming_delay` and cancels the query (or ends the session) with SQLSTATE 40001
     "conflict with recovery". A standby never raises a real serialization failure (it runs no
     read-write or SERIALIZABLE transactions), and the message tells them apart anyway. The export
     discards what it wrote and reads the day again in shorter reads (`CONFLICT_SLICES`: the day
     cut into 8, then 32 time slices, each in its own short snapshot), which usually fit inside
     the delay. When even those are cancelled, it fails once with `StandbyConflictError`, which
     names the two server settings that fix it: nothing partial is ever published.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

# One statement: is this a standby, and up to which primary instant has it replayed.
REPLAYED_THROUGH_SQL = """
SELECT pg_is_in_recovery(),
       CASE WHEN r.latest_end_lsn IS NOT NULL AND pg_last_wal_replay_lsn() >= r.latest_end_lsn
            THEN greatest(r.last_msg_send_time, pg_last_xact_replay_timestamp())
            ELSE pg_last_xact_replay_timestamp() END,
       r.latest_end_lsn IS NOT NULL,
       pg_is_in_recovery() AND pg_is_wal_replay_paused()
FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS r ON true
"""

# Queries this database's sessions lost to recovery conflicts since the standby started (readable by any role).
CONFLICTS_SQL = (
    "SELECT confl_tablespace + confl_lock + confl_snapshot + confl_bufferpin + confl_deadlock "
    "FROM pg_stat_database_conflicts WHERE datname = current_database()"
)
RECOVERY_CONFLICT = re.compile(r"conflict with recovery", re.IGNORECASE)
CONFLICT_SQLSTATE = "40001"
# How the day is cut after a recovery conflict: one read, then 8 (3 h each), then 32 (45 min).
CONFLICT_SLICES = (1, 8, 32)


class StandbyLagging(RuntimeError):
    """The standby has not replayed day D's end yet; nothing was read. Transient: retry later."""

    transient = True


class StandbyConflictError(RuntimeError):
    """Recovery conflicts cancelled even the shortest reads; nothing was published. Not transient:
    the same settings would cancel the retry too."""

    transient = False


@dataclass(frozen=True)
class StandbyState:
    in_recovery: bool
    replayed_through: dt.datetime | None
    sees_receiver: bool  # the role can read pg_stat_wal_receiver's positions
    replay_paused: bool


def standby_state(query_rows: Callable[[str], list[tuple]]) -> StandbyState:
    in_recovery, through, sees_receiver, paused = query_rows(REPLAYED_THROUGH_SQL)[0]
    return StandbyState(bool(in_recovery), through, bool(sees_receiver), bool(paused))


def is_recovery_conflict(exc: BaseException) -> bool:
    """A query cancelled (or a session ended) because the standby had to replay a cleanup.

    By the message, not by SQLSTATE 40001 alone: that is also a serialization failure's code, and
    when the standby ends the session libpq reports no SQLSTATE at all.
    """
    return bool(RECOVERY_CONFLICT.search(str(exc)))


def wait_until_replayed(
    query_rows: Callable[[str], list[tuple]],
    required: dt.datetime,
    *,
    max_wait_s: float,
    what: str,
    say: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    poll_s: float = 1.0,
) -> dict:
    """Return at once on a primary; on a standby, wait until it replayed past `required`.

    Returns what the pacing metadata records: {"standby": bool, "waited_s": s, "replayed_through": iso}.
    Raises StandbyLagging when the budget runs out.
    """
    started = time.monotonic()
    state = standby_state(query_rows)
    if not state.in_recovery:
        return {"standby": False}
    said = False
    while True:
        through = state.replayed_through
        if through is not None and through >= required:
            return {
                "standby": True,
                "waited_s": round(time.monotonic() - started, 3),
                "replayed_through": through.isoformat(),
                "required": required.isoformat(),
            }
        waited = time.monotonic() - started
        behind = "nothing replayed yet" if through is None else f"replayed through {through.isoformat()}"
        if waited >= max_wait_s:
            hint = (
                ""
                if state.sees_receiver
                else (
                    " The export role cannot read pg_stat_wal_receiver (grant it pg_monitor), so only replayed "
                    "transactions count: on a primary with no writes since, the standby cannot show it is current."
                )
            )
            paused = " Replay is paused on the standby (pg_wal_replay_resume())." if state.replay_paused else ""
            raise StandbyLagging(
                f"{what}: the standby ({behind}) has not yet replayed the primary past {required.isoformat()} "
                f"(the day's end plus the margin), after waiting {waited:.0f} s; exporting now would miss the "
                f"day's last rows, so nothing was read.{paused}{hint} Retried later; raise standby_max_wait_s "
                "or point WEWARD_PG_URL at the primary if the standby lags this much."
            )
        if not said:
            say(f"{what}: the standby has {behind}; waiting until it passes {required.isoformat()}")
            said = True
        sleep(min(poll_s, max(max_wait_s - waited, 0.01)))
        state = standby_state(query_rows)


def conflict_failure(what: str, attempts: list[str]) -> StandbyConflictError:
    return StandbyConflictError(
        f"{what}: the standby cancelled every read with a recovery conflict (SQLSTATE 40001: the primary "
        f"removed row versions the export's snapshot still needed), also in the shortest reads tried "
        f"({'; '.join(attempts)}). Nothing was published. On the standby, raise max_standby_streaming_delay "
        "(how long replay may wait for a query) or turn on hot_standby_feedback (the primary then keeps "
        "those row versions, at the cost of some bloat while exports run); or export from the primary."
    )


def slice_bounds(lower, upper, slices: int) -> list[tuple]:
    """[lower, upper) cut into `slices` equal, contiguous, non-overlapping ranges (datetimes or dates)."""
    if slices <= 1:
        return [(lower, upper)]
    if isinstance(lower, dt.datetime):
        # Instants: equal real durations (a DST day's 23 or 25 hours cut evenly).
        utc = dt.UTC
        lo, hi = (lower.astimezone(utc), upper.astimezone(utc)) if lower.tzinfo else (lower, upper)
        step = (hi - lo) / slices
        edges = [lo + step * i for i in range(slices)] + [hi]
        if lower.tzinfo is None:
            return list(zip(edges[:-1], edges[1:]))
        return [(a.astimezone(lower.tzinfo), b.astimezone(lower.tzinfo)) for a, b in zip(edges[:-1], edges[1:])]
    return [(lower, upper)]  # a date column: one value per day, nothing to cut
