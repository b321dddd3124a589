"""Realistic synthetic data for tests, demos and benchmarks: persons and catalog resources.

Everything is generated inside DuckDB as vectorised SQL over ``range(n)`` and streamed by
``COPY ... TO`` into Parquet (row groups of ``row_group_size``; the default 122,880 keeps every
core busy, 1M-row groups halve the rate) or CSV, so any size works in bounded memory. On two
cores: about 1.2 M persons/s and 1.0 M rows/s of a 10-column resource (bench/compare.py).

Values are pure functions of (row index, seed): the same call gives the same file, and person
number ``p`` has the same ID number, name and household in the persons list and in every
dataset, which is what makes known answers possible.

- ID numbers (GB 11643): a real region code (e.g. 330102 杭州市上城区, 420625 谷城县), a birth
  date 1925–2024, a sequence number and the ISO 7064 MOD 11-2 check character
  (:func:`exchange_common.idnumber.check_character_sql`): valid under
  :func:`exchange_common.idnumber.normalize_id` for any ``today`` after 2024-12-06. Birth date and
  sequence are a bijection of the person number, so the first 36,500,000 persons have distinct
  numbers.
- Names: common surnames and given-name characters, one or two of them.
- Households: consecutive persons, two or three per household (``H`` + 10 digits).
- Dataset rows pick their person by hash over a population (so some persons have several
  records and others none), a time item spread over ``months`` monthly snapshots, and a value
  for every item of the resource by its type (code lists from the catalog's ``values``).
"""

# SQL is assembled here on purpose: identifiers are quoted (_q), text and paths are literals
# with quotes doubled (_lit), numbers pass through int(); no value is spliced in raw.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb

from exchange_common.catalog import ItemType, Resource
from exchange_common.idnumber import check_character_sql
from exchange_common.tables.sql import quote_ident, quote_literal

__all__ = [
    "REGIONS",
    "dataset_sql",
    "persons_sql",
    "write_dataset",
    "write_persons",
]

#: Region codes in use (a sample of 浙江, 湖北 谷城, 北京, 上海, 广东, 四川, 河南).
REGIONS = (
    330102, 330105, 330106, 330108, 330109, 330110, 330111, 330112, 330122, 330127,
    330182, 330203, 330212, 330302, 330324, 330402, 330502, 330602, 330702, 330781,
    420602, 420606, 420607, 420624, 420625, 420626, 420682, 420683, 420684,
    110101, 110102, 110105, 110108, 310101, 310104, 310115, 440103, 440106, 440305,
    510104, 510107, 410102, 410105, 330783, 330881, 331002, 331102,
)  # fmt: skip

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏"
    "魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵"
)
GIVEN = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国文辉玉兰红梅志强海燕小红婷雪"
    "宇浩然子涵欣怡梓轩雨泽佳琪诗晨思远嘉怡俊杰家豪慧琳春生金花振华德明永福秋菊淑珍凤英玉珍"
)
COMPANIES = (
    "杭州市西湖区城市管理服务中心", "浙江恒达建设有限公司", "杭州联华华商集团有限公司",
    "谷城县供销合作社联合社", "湖北骆驼蓄电池股份有限公司", "杭州市上城区人民政府清波街道办事处",
    "浙江省农村信用社联合社", "杭州公交集团有限公司", "个体工商户（餐饮）", "灵活就业人员",
)  # fmt: skip

#: Birth dates span this many days from 1925-01-01; times 1000 sequence numbers = unique IDs.
_DAYS = 36_500
_SPACE = _DAYS * 1000
_STRIDE = 12_345_679  # coprime to _SPACE (2^5 5^6 73): p -> p * _STRIDE mod _SPACE is a bijection


def _lit_list(values: tuple[object, ...] | list[str]) -> str:
    parts = (quote_literal(v) if isinstance(v, str) else str(v) for v in values)
    return "[" + ", ".join(parts) + "]"


def _h(row: str, seed: int, salt: int) -> str:
    return f"CAST(hash({row}, {int(seed)}, {int(salt)}) >> 1 AS BIGINT)"


def _body_expr(pid: str, seed: int) -> str:
    """SQL for the first 17 digits (a BIGINT) of the ID number of person ``pid``."""
    perm = f"(({pid}) * {_STRIDE} + {int(seed) % _SPACE}) % {_SPACE}"
    birth = f"(DATE '1925-01-01' + CAST({perm} // 1000 AS INTEGER))"
    region = f"{_lit_list(REGIONS)}[1 + {_h(pid, seed, 1)} % {len(REGIONS)}]"
    ymd = f"(year({birth}) * 10000 + month({birth}) * 100 + day({birth}))"
    return f"(CAST({region} AS BIGINT) * 100000000000 + {ymd} * 1000 + {perm} % 1000)"


def _id_from_body(b: str) -> str:
    """SQL for the ID number whose first 17 digits are the column ``b``."""
    return f"CAST({b} AS VARCHAR) || {check_character_sql(b)}"


def _name_expr(pid: str, seed: int) -> str:
    s, g = _lit_list(list(SURNAMES)), _lit_list(list(GIVEN))
    return (
        f"{s}[1 + {_h(pid, seed, 2)} % {len(SURNAMES)}] || {g}[1 + {_h(pid, seed, 3)} % {len(GIVEN)}]"
        f" || CASE WHEN {_h(pid, seed, 4)} % 3 = 0 THEN '' "
        f"ELSE {g}[1 + {_h(pid, seed, 5)} % {len(GIVEN)}] END"
    )


def _household_expr(pid: str) -> str:
    return f"'H' || lpad(CAST((({pid}) * 10) // 27 AS VARCHAR), 10, '0')"


def persons_sql(count: int, *, seed: int = 0, start: int = 0) -> str:
    """SQL for persons ``start .. start+count-1``: id_number, name, household_id."""
    return (
        f"SELECT {_id_from_body('b')} AS id_number, {_name_expr('p', seed)} AS name, "
        f"{_household_expr('p')} AS household_id "
        f"FROM (SELECT p, {_body_expr('p', seed)} AS b "
        f"FROM (SELECT range + {int(start)} AS p FROM range({int(count)})))"
    )


def _item_expr(resource: Resource, index: int, seed: int, start: dt.date, months: int) -> str:
    item = resource.items[index]
    h = _h("r", seed, 100 + index)
    if item.type is ItemType.ID_NUMBER:  # the key, or another role of the same person
        return _id_from_body("b")
    if item.name == resource.time_item:
        return (
            f"CAST(DATE '{start.isoformat()}' + to_months(CAST({h} % {months} AS INTEGER)) AS DATE)"
        )
    if item.identifies_person:
        return _name_expr("pid", seed)
    if item.values:
        return f"{_lit_list(list(item.values))}[1 + {h} % {len(item.values)}]"
    if item.type is ItemType.DECIMAL:
        return f"CAST(({h} % 1000000) / 100.0 AS DECIMAL(12, 2))"
    if item.type is ItemType.INTEGER:
        return f"CAST({h} % 1000 AS BIGINT)"
    if item.type is ItemType.DATE:
        return f"CAST(DATE '2000-01-01' + CAST({h} % 9000 AS INTEGER) AS DATE)"
    if item.type is ItemType.CODE or "代码" in item.name:
        return f"CAST({_lit_list(REGIONS)}[1 + {h} % {len(REGIONS)}] AS VARCHAR)"
    if "单位" in item.name or "名称" in item.name:
        return f"{_lit_list(list(COMPANIES))}[1 + {h} % {len(COMPANIES)}]"
    return f"{quote_literal(item.name)} || CAST({h} % 100000 AS VARCHAR)"


def dataset_sql(
    resource: Resource,
    rows: int,
    *,
    population: int,
    seed: int = 0,
    start: dt.date = dt.date(2024, 1, 1),
    months: int = 12,
) -> str:
    """SQL for ``rows`` records of ``resource`` over persons ``0 .. population-1``."""
    if population < 1 or months < 1:
        raise ValueError("population and months must be positive")
    cols = ", ".join(
        f"{_item_expr(resource, i, seed, start, months)} AS {quote_ident(item.name)}"
        for i, item in enumerate(resource.items)
    )
    pid = f"{_h('r', seed, 99)} % {int(population)}"
    return (
        f"SELECT {cols} FROM (SELECT r, pid, {_body_expr('pid', seed)} AS b "
        f"FROM (SELECT range AS r, {pid} AS pid FROM range({int(rows)})))"
    )


def _copy(sql: str, path: Path, row_group_size: int, threads: int | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = (
        "CSV, HEADER"
        if path.suffix.lower() == ".csv"
        else (f"PARQUET, COMPRESSION snappy, ROW_GROUP_SIZE {int(row_group_size)}")
    )
    con = duckdb.connect()
    try:
        con.execute("SET preserve_insertion_order = false")
        con.execute("SET enable_progress_bar = false")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        con.execute(f"COPY ({sql}) TO {quote_literal(str(path))} (FORMAT {fmt})")
    finally:
        con.close()


def write_persons(
    path: Path,
    count: int,
    *,
    seed: int = 0,
    start: int = 0,
    row_group_size: int = 122_880,
    threads: int | None = None,
) -> None:
    """Write a persons list (``.parquet`` or ``.csv`` by suffix)."""
    _copy(persons_sql(count, seed=seed, start=start), path, row_group_size, threads)


def write_dataset(
    path: Path,
    resource: Resource,
    rows: int,
    *,
    population: int,
    seed: int = 0,
    start: dt.date = dt.date(2024, 1, 1),
    months: int = 12,
    row_group_size: int = 122_880,
    threads: int | None = None,
) -> None:
    """Write ``rows`` records of ``resource`` (``.parquet`` or ``.csv`` by suffix)."""
    sql = dataset_sql(resource, rows, population=population, seed=seed, start=start, months=months)
    _copy(sql, path, row_group_size, threads)
