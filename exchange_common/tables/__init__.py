"""Tables as the node and the department client both read and check them, with one set of rules.

A data push (a table for a catalog resource) and a query's persons list are checked by the
same DuckDB SQL on both sides: the client runs it before it seals a bundle, the node when the
bundle arrives, so both give the same verdict for the same rows (one first-failing reason per
row, the same codes, ID numbers masked wherever they are shown).

- :mod:`~exchange_common.tables.sql`: quoting and the value rules (trim, dates);
- :mod:`~exchange_common.tables.source`: reading a CSV or Parquet table strictly, and the
  refusal of one DuckDB cannot read;
- :mod:`~exchange_common.tables.rows`: the row checks of a catalog resource's table;
- :mod:`~exchange_common.tables.persons`: the columns and row checks of a persons list;
- :mod:`~exchange_common.tables.check`: the client's whole check of a file, with line numbers.
"""
