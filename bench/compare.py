"""Benchmark: the comparison engine against the same join as plain DuckDB SQL and as pandas.

    .venv/bin/python bench/compare.py                                 # 1,000,000 x 20,000,000
    .venv/bin/python bench/compare.py --persons 100k --rows 2M        # quick
    .venv/bin/python bench/compare.py --dir /var/tmp/bench --keep --threads 4

Generates (exchange_server.synthetic) a persons list and a dataset of one catalog resource
(default RS-SI-01, 人社 social insurance, 10 columns) over a population of ``--population``
persons (default max(persons, rows / 4): the listed persons are the first of that population,
so with the defaults about 98% have records, on average four, from 12 monthly snapshots), then runs in the same process, on the same files:

- ``engine``: :func:`exchange_server.engine.match`, latest records, every item visible: ID
  normalisation, duplicate persons, explicit no-record rows, results and household summary
  files (Parquet), timed by stage;
- ``duckdb-sql``: the join a careful analyst writes by hand in DuckDB: persons LEFT JOIN the
  records of those persons, latest per person, written to Parquet (no normalisation, no
  summary);
- ``pandas``: the same as ``read_parquet`` + ``merge`` + latest per person + ``to_parquet``
  (skipped with a message when pandas is not installed).

Result row counts are compared as a sanity check. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

# ruff: noqa: S608
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb

from exchange_server.catalog import load_catalog
from exchange_server.engine import match
from exchange_server.synthetic import write_dataset, write_persons

ROOT = Path(__file__).resolve().parents[1]
SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


def count(text: str) -> int:
    """``1000000``, ``1M``, ``100k``, ``20m``."""
    t = text.strip().lower().replace("_", "")
    unit = t[-1] if t and t[-1] in SUFFIX else ""
    return int(float(t[: len(t) - len(unit)]) * SUFFIX[unit])


def timed(label: str, fn: object, *args: object, **kwargs: object) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)  # type: ignore[operator]
    dt = time.perf_counter() - t0
    print(f"  {label:<28} {dt:8.2f} s", flush=True)
    return dt, out


def raw_sql(persons: Path, data: Path, out: Path, key: str, when: str, threads: int | None) -> int:
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {threads}")
    con.execute(
        f"""COPY (
            SELECT p.*, d.* FROM read_parquet('{persons}') p
            LEFT JOIN (
                SELECT d.* FROM read_parquet('{data}') d
                SEMI JOIN read_parquet('{persons}') p ON d."{key}" = p.id_number
                QUALIFY d."{when}" = max(d."{when}") OVER (PARTITION BY d."{key}")
            ) d ON d."{key}" = p.id_number
        ) TO '{out}' (FORMAT parquet, COMPRESSION snappy)"""
    )
    (n,) = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchall()[0]
    con.close()
    return int(n)


def pandas_merge(persons: Path, data: Path, out: Path, key: str, when: str) -> int:
    import pandas as pd

    p = pd.read_parquet(persons)
    d = pd.read_parquet(data)
    d = d[d[key].isin(p["id_number"])]
    d = d[d[when] == d.groupby(key)[when].transform("max")]
    merged = p.merge(d, how="left", left_on="id_number", right_on=key)
    merged.to_parquet(out)
    return len(merged)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--persons", type=count, default=1_000_000, help="persons in the list")
    ap.add_argument("--rows", type=count, default=20_000_000, help="dataset rows")
    ap.add_argument("--population", type=count, help="persons the dataset covers")
    ap.add_argument("--resource", default="RS-SI-01", help="catalog resource to generate")
    ap.add_argument("--catalog", type=Path, default=ROOT / "config" / "catalog.example.toml")
    ap.add_argument("--threads", type=int, help="DuckDB threads (default: all cores)")
    ap.add_argument("--dir", type=Path, help="work folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    args = ap.parse_args()

    resource = load_catalog(args.catalog).resource(args.resource)
    if resource is None or resource.time_item is None:
        sys.exit(f"{args.resource}: not in the catalog or has no time item")
    population = args.population or max(args.persons, args.rows // 4)
    work = Path(tempfile.mkdtemp(prefix="bench-compare-", dir=args.dir))
    print(
        f"{args.persons:,} persons x {args.rows:,} rows of {resource.code} "
        f"({len(resource.items)} columns) over {population:,} persons; "
        f"{args.threads or os.cpu_count()} threads; work in {work}"
    )
    try:
        persons, data = work / "persons.parquet", work / "data.parquet"
        print("generate (exchange_server.synthetic)")
        t_p, _ = timed("persons", write_persons, persons, args.persons, threads=args.threads)
        t_d, _ = timed(
            "dataset",
            write_dataset,
            data,
            resource,
            args.rows,
            population=population,
            threads=args.threads,
        )
        print(
            f"  rate: persons {args.persons / t_p / 1e6:.2f} M rows/s, "
            f"dataset {args.rows / t_d / 1e6:.2f} M rows/s, "
            f"{data.stat().st_size / 1e6:,.0f} MB"
        )

        print("engine (exchange_server.engine.match)")
        t_e, result = timed(
            "total",
            match,
            persons,
            data,
            resource,
            resource.item_names,
            work / "engine",
            threads=args.threads,
        )
        for stage, seconds in result.timings.items():  # type: ignore[attr-defined]
            print(f"    {stage:<26} {seconds:8.2f} s")
        rows_e = duckdb.sql(f"SELECT count(*) FROM '{result.results}'").fetchall()[0][0]  # type: ignore[attr-defined]
        print(
            f"    matched {result.matched_persons:,} persons, {result.records:,} records, "  # type: ignore[attr-defined]
            f"{rows_e:,} result rows"
        )

        print("duckdb-sql (hand-written join)")
        t_r, rows_r = timed(
            "total",
            raw_sql,
            persons,
            data,
            work / "raw.parquet",
            resource.key_item,
            resource.time_item,
            args.threads,
        )

        t_pd: float | None = None
        rows_pd = None
        try:
            import pandas  # noqa: F401
        except ImportError:
            print("pandas: not installed, skipped (pip install pandas to compare)")
        else:
            print("pandas (read_parquet + merge + to_parquet)")
            t_pd, rows_pd = timed(
                "total",
                pandas_merge,
                persons,
                data,
                work / "pandas.parquet",
                resource.key_item,
                resource.time_item,
            )

        print(
            "result rows: "
            + ", ".join(
                f"{k} {v:,}"
                for k, v in [("engine", rows_e), ("duckdb-sql", rows_r), ("pandas", rows_pd)]
                if v is not None
            )
        )
        if rows_e != rows_r or (rows_pd is not None and rows_pd != rows_e):
            print("WARNING: result row counts differ")
        print("ratios (time / engine time; above 1 = slower than the engine)")
        print(f"  duckdb-sql  {t_r / t_e:5.2f}")
        if t_pd is not None:
            print(f"  pandas      {t_pd / t_e:5.2f}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
