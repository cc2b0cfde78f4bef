"""Rounds of methods, their medians, and the product's targets."""

from __future__ import annotations

import os
import statistics

from bench import data
from bench.report import mb
from bench.runner import Method, Runner, key

TARGET_FLOOR_RATIO = 1.3
TARGET_RSS_MB = 256
# "Flat" memory: the 3x day may use at most this much more than the 1x day.
RSS_FLAT_TOLERANCE = 0.10


def run_rounds(runner: Runner, methods: list[Method], rounds: int, say, slow_after: float = 0) -> dict[str, list[dict]]:
    """Every method once per round, the order rotating. A method slower than `slow_after` seconds
    in round 1 (pandas, dlt: minutes) is not repeated: its median would not change a conclusion."""
    results: dict[str, list[dict]] = {key(m): [] for m in methods}
    for round_ in range(rounds):
        shift = round_ % len(methods)
        order = methods[shift:] + methods[:shift]  # rotate so no method always runs first or last
        for method in order:
            done = results[key(method)]
            if slow_after and done and all(r.get("seconds", 0) > slow_after for r in done):
                continue
            load = os.getloadavg()[0]
            result = runner.run(method, f"r{round_}")
            result["loadavg_before"] = load
            results[key(method)].append(result)
            if "error" in result:
                say(f"  round {round_ + 1}: {key(method):16s} FAILED ({result['error']})\n{result['log']}")
            else:
                say(
                    f"  round {round_ + 1}: {key(method):16s} {result['seconds']:7.2f} s  "
                    f"{result['peak_rss_kb'] / 1024:7.0f} MB"
                )
    return results


def summarize(runs: list[dict]) -> dict | None:
    good = [r for r in runs if "error" not in r]
    if not good:
        return None
    # The run with the median time stands for the method (its read_s, bytes...); RSS is the worst run's.
    summary = dict(sorted(good, key=lambda r: r["seconds"])[(len(good) - 1) // 2])
    summary["seconds"] = statistics.median(r["seconds"] for r in good)
    summary["seconds_all"] = [round(r["seconds"], 2) for r in good]
    summary["peak_rss_kb"] = max(r["peak_rss_kb"] for r in good)
    summary["peak_anon_kb"] = max(r.get("peak_anon_kb", 0) for r in good)
    summary["runs"] = len(good)
    summary["loadavg_max"] = max(r.get("loadavg_before", 0) for r in good)
    summary["failed_runs"] = len(runs) - len(good)
    summary["rows_ok"] = all(r.get("rows", r["expected_rows"]) == r["expected_rows"] for r in good)
    return summary


def day_ids(dataset: data.Dataset) -> tuple[int, int]:
    """The id range of the exported day (data.load numbers rows day after day from 1)."""
    index = (dataset.day - dataset.first_day).days
    first = 1 + index * dataset.rows_per_day
    return first, first + dataset.rows_per_day - 1


def evaluate(summaries: dict) -> dict:
    floor, product = summaries.get("copy_floor"), summaries.get("product")
    if not floor or not product:
        return {}
    targets = {}
    ratio = product["seconds"] / floor["seconds"]
    targets[f"within {TARGET_FLOOR_RATIO}x of the COPY floor"] = (ratio <= TARGET_FLOOR_RATIO, f"{ratio:.2f}x")
    peers = {k: v for k, v in summaries.items() if k not in ("copy_floor", "product", "product_s3") and "@" not in k}
    if peers:
        slowest_gap = min(v["seconds"] / product["seconds"] for v in peers.values())
        fastest = min(peers, key=lambda k: peers[k]["seconds"])
        targets["faster than every peer"] = (
            slowest_gap > 1,
            f"fastest peer {fastest} takes {slowest_gap:.2f}x the product's time",
        )
    rss = [product["peak_rss_kb"]]
    big = summaries.get("product@3x")
    if big:
        rss.append(big["peak_rss_kb"])
    targets[f"peak RSS under {TARGET_RSS_MB} MB"] = (max(rss) < TARGET_RSS_MB * 1024, " and ".join(mb(r) for r in rss))
    big_floor = summaries.get("copy_floor@3x")
    if big and big_floor:
        big_ratio = big["seconds"] / big_floor["seconds"]
        targets[f"within {TARGET_FLOOR_RATIO}x of the COPY floor on the 3x day too (a flat cost per row)"] = (
            big_ratio <= TARGET_FLOOR_RATIO,
            f"{big_ratio:.2f}x; {ratio:.2f}x on the 1x day",
        )
    if big:
        growth = big["peak_rss_kb"] / product["peak_rss_kb"] - 1
        targets["same peak RSS at 1x and 3x rows"] = (
            abs(growth) <= RSS_FLAT_TOLERANCE,
            f"{growth:+.0%} at 3x the rows",
        )
    exact = (
        product.get("wards_type") == "decimal128(12, 2)" and product.get("created_at_type") == "timestamp[us, tz=UTC]"
    )
    targets["exact types"] = (exact, f"{product.get('wards_type')}, {product.get('created_at_type')}")
    return targets
