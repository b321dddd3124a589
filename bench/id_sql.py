"""Micro-benchmark: the GB 11643 rule as DuckDB SQL (:mod:`exchange_common.idnumber`) on 1 M values.

    .venv/bin/python bench/id_sql.py                  # 1,000,000 values, one thread, best of 5
    .venv/bin/python bench/id_sql.py --values 200k --threads 2

Values: synthetic persons' ID numbers (``exchange_server.data.synthetic``, all valid), with
``--bad`` of them (default 10 %) given a wrong check character, in an in-memory table. Timed:

- ``scan``: the peer, plain DuckDB reading the column (``s IS NOT NULL``);
- ``glob``: the peer, a bare ``GLOB`` for 17 digits and a digit or X (the cheapest shape test);
- ``normalize``: :func:`id_normalize_sql` alone;
- ``valid``: :func:`id_valid_sql` on canonical text (what the rule adds per value);
- ``both``: normalise, then check, as datasets.py and persons.py use them (two layers);
- ``statement``: one statement over one row with the check: the per-statement cost of parsing
  and folding the constant tables (weights, region bitmap).

µs/value is (time - scan) / values, CPU of one thread. Not a test.
"""

# ruff: noqa: S608

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb

from exchange_common.idnumber import id_normalize_sql, id_valid_sql
from exchange_server.data.synthetic import persons_sql


def _count(text: str) -> int:
    text = text.strip().lower().replace("_", "").replace(",", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def _best(con: duckdb.DuckDBPyConnection, sql: str, repeat: int) -> tuple[float, int]:
    best, result = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        row = con.execute(sql).fetchone()
        best = min(best, time.perf_counter() - started)
        result = int(row[0]) if row else 0
    return best, result


def main() -> None:
    """Run the benchmark and print one line per measurement."""
    import datetime as dt

    from exchange_common.idnumber import china_today

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--values", default="1M", help="number of values (1M, 200k, ...)")
    parser.add_argument("--bad", type=float, default=0.1, help="share with a wrong check character")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n = _count(args.values)
    today: dt.date = china_today()
    con = duckdb.connect()
    con.execute(f"SET threads = {int(args.threads)}")
    every = max(1, round(1 / args.bad)) if args.bad > 0 else 0
    wrong = (
        f"CASE WHEN rowid % {every} = 0 THEN left(id_number, 17) || "
        "CASE WHEN right(id_number, 1) = '0' THEN '1' ELSE '0' END ELSE id_number END"
        if every
        else "id_number"
    )
    con.execute(f"CREATE TABLE p AS SELECT id_number FROM ({persons_sql(n)})")
    con.execute(f"CREATE TABLE t AS SELECT {wrong} AS s FROM p")
    con.execute("DROP TABLE p")

    def ok_count(expr: str, inner: str = "t") -> str:
        return f"SELECT count(*) FILTER (WHERE ok) FROM (SELECT {expr} AS ok FROM {inner})"

    glob = "s GLOB '" + "[0-9]" * 17 + "[0-9X]'"
    normalized = f"(SELECT {id_normalize_sql('s')} AS s FROM t)"
    cases = {
        "scan": ok_count("s IS NOT NULL"),
        "glob": ok_count(glob),
        "normalize": ok_count(f"{id_normalize_sql('s')} IS NOT NULL"),
        "valid": ok_count(id_valid_sql("s", today=today)),
        "both": ok_count(id_valid_sql("s", today=today), normalized),
    }
    scan = 0.0
    print(f"{n:,} values, {args.bad:.0%} with a wrong check character, threads={args.threads}")
    for name, sql in cases.items():
        seconds, count = _best(con, sql, args.repeat)
        if name == "scan":
            scan = seconds
        per = (seconds - scan) / n * 1e6
        print(f"  {name:<10} {seconds * 1e3:8.1f} ms  {per:6.3f} µs/value  true: {count:,}")
    one = f"SELECT {id_valid_sql('s', today=today)} FROM (SELECT '11010519491231002X' AS s)"
    seconds, _ = _best(con, one, args.repeat)
    print(f"  statement  {seconds * 1e3:8.1f} ms  (one row: parsing and constant folding)")


if __name__ == "__main__":
    main()
