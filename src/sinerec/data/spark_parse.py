"""Spark's parse of a delimited interaction file: lines -> checked, typed rows, by the single-machine rules.

The rules are those of ``sinerec.data.delimited`` / ``sinerec.data.linescan``, written as Spark column
expressions so that they run on the executors:

* the file is read as lines (``\\n`` ends a line; one trailing ``\\r`` and a leading UTF-8 BOM are removed);
  blank lines are skipped; with a header, line 1 is not data;
* a record is malformed when it is not valid UTF-8 (a latin-1 source holding a non-ASCII byte is refused), has
  another number of fields than the source's, or a checked field fails its kind's rule (an id: non-empty, no
  NUL, at most ``MAX_ID_LENGTH`` characters; a choice: one of its values; a number or timestamp: a finite
  decimal number, a timestamp below 2**63);
* ids are int64 when every id of the column (trimmed) is an integer that fits, else the text as it is;
  timestamps int64 when every one is integral (and below 2**62 when written as a fraction or exponent), else
  float64; categories are the text of the (typed) id.

File order is kept in the column ``_m`` (Spark's monotonically increasing id: one file's splits are read in
offset order, so ``_m`` grows with the line). A line's number is only needed for a malformed line's message:
then the lines of each partition are counted. The first malformed line is checked again on the driver by
:func:`sinerec.data.linescan.scan` (the authority), so the error (file, line number, content, reason) is the
single-machine one word for word.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from sinerec.data.frame import CATEGORY
from sinerec.data.linescan import MAX_ID_LENGTH, TIMESTAMP_LIMIT, Block, Field, report_bad_lines, scan
from sinerec.data.spark_source import SparkSource
from sinerec.errors import ConfigError, SinerecError

__all__ = ["head_lines", "line_frame", "parse_rows"]

# Java regular expressions (\s is ASCII whitespace there; \z the end of the text).
_NUMBER = r"^\s*[+-]?(?:[0-9]+\.?[0-9]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)\s*\z"
_INTEGER = r"^-?[0-9]+\z"  # pyarrow's int64: no "+"
_TRIM = r"^\s+|\s+\z"
_ISO_DATE = r"^\s*[0-9]{4}-"
_BOM = b"\xef\xbb\xbf"
_RESCAN = 5  # malformed lines named in a --skip-bad-lines warning


def line_frame(spark: SparkSession, path: str) -> DataFrame:
    """The file's lines: ``_p`` (partition), ``_m`` (file order), ``value`` (the line as read) and ``text``
    (without BOM and trailing ``\\r``). A missing local file, or gzip data without the ``.gz`` suffix Spark
    needs to decompress it, raises SinerecError naming the file."""
    if "://" not in path:
        local = Path(path)
        if not local.is_file():
            raise SinerecError(f"{path}: no such file")
        with open(local, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        if gzipped != local.name.lower().endswith(".gz"):
            raise SinerecError(f"{path}: {'gzip data without' if gzipped else 'not gzip data but'} the .gz "
                               "suffix: Spark decompresses by the suffix; rename the file")
        path = str(local.resolve())
    raw = spark.read.option("lineSep", "\n").text(path)
    lines = raw.select(F.spark_partition_id().alias("_p"), F.monotonically_increasing_id().alias("_m"), "value")
    text = F.when(F.col("_m") == 0, F.regexp_replace("value", r"^\uFEFF", "")).otherwise(F.col("value"))
    return lines.withColumn("text", F.regexp_replace(text, "\r\\z", ""))


def head_lines(lines: DataFrame, n: int) -> list[bytes]:
    """The first ``n`` lines as bytes (BOM removed), read from the first partitions only."""
    head = [bytes(row[0]) for row in lines.select(F.col("value").cast("binary")).head(n)]
    if head and head[0].startswith(_BOM):
        head[0] = head[0][len(_BOM):]
    return head


def _trimmed(value: Column) -> Column:
    return F.regexp_replace(value, _TRIM, "")


def _integer(value: Column) -> Column:
    """An integer that fits int64 (after trimming whitespace)."""
    trimmed = _trimmed(value)
    return trimmed.rlike(_INTEGER) & trimmed.try_cast("bigint").isNotNull()


def _field_ok(field: Field, value: Column) -> Column:
    """The rule of ``sinerec.data.linescan.check_value`` for one field, as a column."""
    if field.kind == "text":
        return F.lit(True)
    if field.kind == "id":
        return (value != "") & ~value.rlike(r"\x00") & (F.length(value) <= MAX_ID_LENGTH)
    if field.kind == "choice":
        return value.isin(sorted(field.choices))
    number = F.abs(_trimmed(value).try_cast("double"))
    ok = value.rlike(_NUMBER) & (number < float("inf"))
    return ok & (number < TIMESTAMP_LIMIT) if field.kind == "time" else ok


def _records(lines: DataFrame, source: SparkSource) -> DataFrame:
    """The data lines (not blank, not the header) with their fields ``_f`` and ``_ok``."""
    rows = lines.filter(F.col("text") != "")
    if source.header:
        rows = rows.filter(F.col("_m") != 0)
    parts = F.split(F.col("text"), "\\Q" + source.sep + "\\E", -1)
    rows = rows.withColumn("_f", parts)
    valid = F.expr("is_valid_utf8(value)") if source.encoding == "utf-8" else F.lit(True)  # latin-1: any byte
    ok = valid & (F.size("_f") == source.n_fields)
    for field in source.fields:
        ok = ok & _field_ok(field, F.get(F.col("_f"), field.index))
    return rows.withColumn("_ok", F.coalesce(ok, F.lit(False)))


def _count(condition: Column) -> Column:
    return F.coalesce(F.sum(F.when(condition, 1).otherwise(0)), F.lit(0))


def _inspect(records: DataFrame, source: SparkSource) -> dict[str, Any]:
    """One pass: malformed lines, double quotes, ISO dates, and per field whether the values are integers."""
    ok = F.col("_ok")
    checks = [_count(~ok).alias("bad"), _count(F.col("text").contains('"')).alias("quotes")]
    if source.encoding != "utf-8":
        checks.append(_count(F.col("value").rlike(r"[^\x00-\x7F]")).alias("nonascii"))
    for field in source.fields:
        value = F.get(F.col("_f"), field.index)
        if field.kind == "id":
            checks.append(_count(ok & ~_integer(value)).alias(f"text_{field.index}"))
        if field.kind == "time":
            number = _trimmed(value).try_cast("double")
            fraction = (number != F.rint(number)) | (F.abs(number) >= 2.0**62)
            checks += [_count(ok & ~_integer(value)).alias(f"nonint_{field.index}"),
                       _count(ok & fraction).alias(f"fraction_{field.index}"),
                       _count(~ok & value.rlike(_ISO_DATE)).alias(f"iso_{field.index}")]
    return records.agg(*checks).first().asDict()  # type: ignore[union-attr]


def _refuse_unreproduced(source: SparkSource, seen: dict[str, Any]) -> None:
    if source.quoting and seen["quotes"]:
        raise ConfigError(f"{source.path}: {seen['quotes']:,} line(s) hold a double quote: --engine spark does "
                          "not split csv-quoted fields (prepare it on one machine: drop --engine spark)")
    if source.encoding != "utf-8" and seen["nonascii"]:
        raise ConfigError(f"{source.path}: {seen['nonascii']:,} line(s) hold non-ASCII characters of a "
                          f"{source.encoding} file: --engine spark decodes UTF-8 (prepare it on one machine: drop "
                          "--engine spark)")
    for field in source.fields:
        if field.datetime and seen.get(f"iso_{field.index}"):
            raise ConfigError(f"{source.path}: ISO 8601 {field.label}s: --engine spark reads unix seconds only "
                              "(prepare it on one machine: drop --engine spark)")


def _report_bad(lines: DataFrame, records: DataFrame, source: SparkSource, n_bad: int, skip: bool) -> None:
    """The single-machine error (or ``skip``: warning) for the malformed lines, checked by linescan."""
    starts: dict[int, int] = {}
    at = 0
    for part, count in sorted((row[0], row[1]) for row in lines.groupBy("_p").count().collect()):
        starts[part], at = at, at + count
    total, ends_in_newline = at, _ends_in_newline(source.path)
    first = records.filter(~F.col("_ok")).orderBy("_m").limit(_RESCAN if skip else 1)
    bad = []
    for part, order, raw in first.select("_p", "_m", F.col("value").cast("binary")).collect():
        line = starts[part] + order - (part << 33) + 1
        data = bytes(raw)[len(_BOM):] if order == 0 and bytes(raw).startswith(_BOM) else bytes(raw)
        cut = line == total and not ends_in_newline
        block = Block(data if cut else data + b"\n", line, source.sep, source.n_fields, source.quoting,
                      source.encoding)
        found = scan(block, source.fields, collect=False)
        if not found:
            raise SinerecError(f"{source.path}, line {line}: --engine spark found this line malformed and the "
                               f"line check does not: {data[:200]!r}; prepare it on one machine meanwhile")
        bad.append(found[0])
    report_bad_lines(Path(source.path), bad + bad[-1:] * (n_bad - len(bad)), skip)


def _ends_in_newline(path: str) -> bool:
    """Whether a local file ends with a newline (else its last line may be cut short); True when unknown."""
    if "://" in path:
        return True
    if path.lower().endswith(".gz"):
        with gzip.open(path, "rb") as f:
            tail = b"\n"
            while chunk := f.read(1 << 20):
                tail = chunk[-1:]
            return tail == b"\n"
    with open(path, "rb") as f:
        f.seek(0, 2)
        if f.tell() == 0:
            return True
        f.seek(-1, 2)
        return f.read(1) == b"\n"


def _typed(value: Column, field: Field, seen: dict[str, Any]) -> Column:
    """The column of ``field`` typed as the single-machine reader types it (see the module docstring)."""
    if field.kind == "id":
        return value if seen[f"text_{field.index}"] else _trimmed(value).try_cast("bigint")
    if field.kind == "time":
        if not seen[f"nonint_{field.index}"]:
            return _trimmed(value).try_cast("bigint")
        number = _trimmed(value).try_cast("double")
        return number if seen[f"fraction_{field.index}"] else number.cast("bigint")
    return value


def parse_rows(lines: DataFrame, source: SparkSource, skip_bad_lines: bool) -> DataFrame:
    """The well-formed records as typed rows ``_m`` and the source's logical columns (user, item [, timestamp]
    [, category] [, behavior]), checkpointed. Malformed lines raise DataFormatError for the first one, or with
    ``skip_bad_lines`` are skipped with one warning naming them; what the engine does not reproduce (csv quotes,
    ISO 8601 timestamps) raises ConfigError."""
    records = _records(lines, source)
    seen = _inspect(records, source)
    _refuse_unreproduced(source, seen)
    if seen["bad"]:
        _report_bad(lines, records, source, seen["bad"], skip_bad_lines)
    fields = {f.index: f for f in source.fields}
    columns = []
    for key, index in source.columns.items():
        column = _typed(F.get(F.col("_f"), index), fields[index], seen)
        columns.append((column.cast("string") if key == CATEGORY else column).alias(key))
    rows = records.filter(F.col("_ok")).select("_m", *columns)
    return rows.localCheckpoint()
