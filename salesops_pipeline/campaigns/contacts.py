"""The campaigns' contacts table: one row per contact of the two campaigns compared, each
number as the campaign wrote it, in E.164, and whether it is valid.

The provider's pages go from disk into DuckDB without becoming Python objects: DuckDB reads
the JSON, and the records are checked in columns. What the provider sends is read by these
rules, the same for every record:

- a record is a JSON object; anything else in the list is malformed;
- `id`, `campaign_id`, `phone`, `assignedAgent`, `wrapup`, `crm_id` are text, a number (kept
  as written) or null; true/false, objects and lists are malformed;
- `lastCallAt` and `retryDate` are null or an ISO 8601 date or date-time, read as naive Paris
  time as the provider writes them; one with an offset is converted to Paris time;
- `totalCalls` is null or a whole number, written as a number or as text;
- other fields are ignored, so the provider can add some.

A malformed record is left out and reported with its place in the campaign's list, its id
and every reason, never echoing a value (it may be a phone number).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from salesops_pipeline.campaigns.phones import (
    DEFAULT_REGION,
    NO_NUMBER,
    read_phone,
    valid_national_number_pattern,
)
from salesops_pipeline.clients.models import Rejected

CONTACTS = "campaign_contacts"

CONTACTS_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    position INTEGER NOT NULL,      -- 1 for the first campaign compared, 2 for the second
    campaign VARCHAR NOT NULL,
    contact_id VARCHAR,
    phone VARCHAR,                  -- as the provider wrote it
    phone_e164 VARCHAR,             -- NULL only when it cannot be a phone number
    phone_valid BOOLEAN,            -- phonenumbers' validity today; NULL when unreadable
    phone_problem VARCHAR,          -- why it cannot be a phone number
    last_call_at TIMESTAMP,         -- naive Europe/Paris time, as the provider sends it
    retry_date TIMESTAMP,
    assigned_agent VARCHAR,
    wrapup VARCHAR,
    total_calls BIGINT,
    crm_id VARCHAR
)
"""

# While a load is under way: which page of the provider's answer each row came from, and
# whether the quick reading could vouch for it. Dropped once the load is whole.
_LOADING_COLUMNS = ("page INTEGER", "doubtful BOOLEAN")

# The provider's field names, by kind.
_TEXT_FIELDS = ("id", "campaign_id", "phone", "assignedAgent", "wrapup", "crm_id")
_DATE_FIELDS = ("lastCallAt", "retryDate")
_COUNT_FIELD = "totalCalls"
_FIELDS = (*_TEXT_FIELDS, *_DATE_FIELDS, _COUNT_FIELD)

_ISO_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_ISO_TIME = r"[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?"
_OFFSET = r"([zZ]|[+-][0-9]{2}(:?[0-9]{2})?)"


def _date(text: str) -> str:
    """SQL reading `text` (VARCHAR) as a provider date; NULL when it is not one."""
    return f"""CASE
        WHEN regexp_full_match({text}, '{_ISO_DATE}({_ISO_TIME})?')
            THEN TRY_CAST({text} AS TIMESTAMP)
        WHEN regexp_full_match({text}, '{_ISO_DATE}{_ISO_TIME}{_OFFSET}')
            THEN timezone('Europe/Paris', TRY_CAST({text} AS TIMESTAMPTZ))
    END"""


def _count(number: str) -> str:
    """SQL reading `number` (a DOUBLE, NULL when the text was not a number) as a whole
    number; NULL when it is not one. 5.0 is 5; 5.5 is not a count."""
    return (
        f"CASE WHEN {number} = floor({number}) AND abs({number}) < 1e15 THEN {number}::BIGINT END"
    )


def _not_text(value: str) -> str:
    # What DuckDB makes of true/false, an object or a list when it reads them as text.
    return (
        f"(starts_with({value}, '{{') OR starts_with({value}, '[')"
        f" OR {value} = 'true' OR {value} = 'false')"
    )


def _column(field: str, prefix: str = "") -> str:
    return f'{prefix}"{field}"'


def _typed(text_of) -> str:
    """Select items reading each field from its text (`text_of(field)`), each worked out once:
    the texts as they are, the dates, the count; with `<field>_text` kept for the checks."""
    items = [f"{text_of(field)} AS {_column(field)}" for field in _TEXT_FIELDS]
    for field in (*_DATE_FIELDS, _COUNT_FIELD):
        items.append(f"{text_of(field)} AS {_column(field + '_text')}")
    items += [f"{_date(text_of(field))} AS {_column(field)}" for field in _DATE_FIELDS]
    items.append(f"TRY_CAST({text_of(_COUNT_FIELD)} AS DOUBLE) AS count_number")
    return ", ".join(items)


def _checked(extra: str) -> str:
    """Select items over `_typed`: the values, the count made whole, plus `extra`."""
    values = [_column(field) for field in (*_TEXT_FIELDS, *_DATE_FIELDS)]
    values.append(f"{_count('count_number')} AS {_column(_COUNT_FIELD)}")
    return ", ".join([*values, extra])


def _unreadable(field: str) -> str:
    """A date or count given but not read."""
    value = _count("count_number") if field == _COUNT_FIELD else _column(field)
    return f"({_column(field + '_text')} IS NOT NULL AND {value} IS NULL)"


def _quick_sql() -> str:
    """The quick reading: every field as text straight from DuckDB's JSON reader, with a flag
    on any row that might be malformed. A page with no flag is exactly what the careful
    reading would make of it; a page with one is read again, carefully."""
    types = ", ".join(f"'{field}': 'VARCHAR'" for field in _FIELDS)
    return f"""
    SELECT page, {_checked(f"{_doubts()} AS doubtful")}
    FROM (
        SELECT CAST(regexp_extract(filename, '([0-9]+)[.]json$', 1) AS INTEGER) AS page,
               {_typed(_column)}
        FROM read_json($files, format = 'array', records = true, filename = true,
                       columns = {{{types}}})
    )
    """


def _doubts() -> str:
    """Whether a row read as text might be malformed (a text field that was true/false, an
    object or a list; a date or count given but not read)."""
    doubts = [_not_text(_column(field)) for field in _TEXT_FIELDS]
    doubts += [_unreadable(field) for field in (*_DATE_FIELDS, _COUNT_FIELD)]
    # A null in the list reads as a record of nulls: only the JSON tells it from `{}`.
    texts = [_column(field) for field in _TEXT_FIELDS]
    texts += [_column(field + "_text") for field in (*_DATE_FIELDS, _COUNT_FIELD)]
    doubts.append(f"coalesce({', '.join(texts)}) IS NULL")
    return f"coalesce({' OR '.join(doubts)}, false)"


def _careful_sql() -> str:
    """The careful reading of one page: each record in order, read as text exactly as the
    quick reading does; the rows it would doubt (or every row, with `$every_row`) checked
    against the JSON itself, every reason a record is malformed spelled out."""
    struct = "{" + ", ".join(f'"{field}": "VARCHAR"' for field in _FIELDS) + "}"
    reasons = [
        f"CASE WHEN json_type(json, '$.{field}') IN ('BOOLEAN', 'OBJECT', 'ARRAY')"
        f" THEN '{field}: expected text' END"
        for field in _TEXT_FIELDS
    ]
    reasons += [
        f"CASE WHEN {_unreadable(field)} THEN '{field}: not an ISO 8601 date' END"
        for field in _DATE_FIELDS
    ]
    reasons.append(
        f"CASE WHEN {_unreadable(_COUNT_FIELD)} THEN '{_COUNT_FIELD}: not a whole number' END"
    )
    reason = (
        "CASE WHEN NOT is_object THEN 'record: not an object'"
        f" ELSE nullif(concat_ws('; ', {', '.join(reasons)}), '') END"
    )
    return f"""
    SELECT $page AS page, place, {_checked("false AS doubtful")}, {reason} AS reason,
           CASE WHEN is_object AND json_type(json, '$.id') NOT IN ('BOOLEAN', 'OBJECT', 'ARRAY')
                THEN "id" END AS record_id
    FROM (
        SELECT place, json, is_object, {_typed(lambda field: _column(field, "r."))}
        FROM (
            SELECT ordinality - 1 AS place, json,
                   -- DuckDB writes each value back minified: an object opens at once.
                   coalesce(starts_with(json, '{{'), false) AS is_object,
                   CASE WHEN starts_with(json, '{{') THEN from_json(json, '{struct}') END AS r
            FROM read_json($file, format = 'array', records = false,
                           columns = {{'json': 'JSON'}}) WITH ORDINALITY
        )
    )
    WHERE $every_row OR NOT is_object OR {_doubts()}
    """


_QUICK_SQL = _quick_sql()
_CAREFUL_SQL = _careful_sql()

# Separators taken out before reading a number; what this misses (exotic spaces) is left to
# the Python path, which strips more.
_SQL_COMPACT = "translate(phone, ' \t.()/-', '')"  # a real tab: SQL has no escapes
# The national number of +33…, 0033… and 0… shapes; checked for its 9 digits afterwards.
_SQL_NATIONAL = f"""CASE WHEN starts_with({_SQL_COMPACT}, '+33') THEN {_SQL_COMPACT}[4:]
                         WHEN starts_with({_SQL_COMPACT}, '0033') THEN {_SQL_COMPACT}[5:]
                         WHEN starts_with({_SQL_COMPACT}, '0') THEN {_SQL_COMPACT}[2:] END"""


def _insert_sql(table: str, source: str) -> str:
    """Rows of `source` (the provider's field names) into `table`, French numbers in their
    usual shapes read on the way; the others are read afterwards by `read_other_phones`."""
    return f"""
    INSERT INTO {table}
    SELECT $position, $campaign, "id", phone,
           CASE WHEN french THEN '+33' || national END,
           CASE WHEN french THEN regexp_full_match(national, $valid) END,
           CASE WHEN phone IS NULL OR trim(phone) = '' THEN '{NO_NUMBER}' END,
           "lastCallAt", "retryDate", "assignedAgent", wrapup, "totalCalls", crm_id,
           page, doubtful
    FROM (SELECT *, coalesce(regexp_full_match(national, '[1-9][0-9]{{8}}'), false) AS french
          FROM (SELECT *, {_SQL_NATIONAL} AS national FROM {source}))
    """


def reset_contacts(conn: duckdb.DuckDBPyConnection, table: str = CONTACTS) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(CONTACTS_DDL.format(table=table))


# How DuckDB works while contacts load: their strings are stored as they come, since the
# contacts are rewritten whole at every load and read by one query before the next, and
# compressing them costs about a third of the load's CPU for nothing that query notices;
# memory is bounded, DuckDB writing what it holds to disk beyond it; and no progress bar is
# drawn on the terminal of whoever runs the load.
LOADING_SETTINGS = {
    "force_compression": "uncompressed",
    "memory_limit": "256MB",
    "enable_progress_bar": "false",
}


@contextmanager
def loading_settings(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """DuckDB set for a load of contacts (LOADING_SETTINGS), then as it was."""
    before = {
        name: conn.execute("SELECT current_setting(?)", [name]).fetchone()[0]
        for name in LOADING_SETTINGS
    }
    for name, value in LOADING_SETTINGS.items():
        conn.execute(f"SET {name} = '{value}'")
    try:
        yield
    finally:
        for name, value in before.items():
            conn.execute(f"SET {name} = '{value}'")


def start_loading(conn: duckdb.DuckDBPyConnection, table: str) -> None:
    """An empty contacts table for a load, with the columns the load needs on the way."""
    reset_contacts(conn, table)
    for column in _LOADING_COLUMNS:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")


def finish_loading(conn: duckdb.DuckDBPyConnection, table: str) -> None:
    """Leave `table` with the contacts table's columns only (dropping a column is free)."""
    for column in _LOADING_COLUMNS:
        conn.execute(f"ALTER TABLE {table} DROP COLUMN {column.split()[0]}")


def stage_pages(
    conn: duckdb.DuckDBPyConnection,
    pages: dict[int, Path],
    *,
    table: str,
    position: int,
    campaign: str,
) -> dict[int, list[Rejected]]:
    """Read a batch of saved pages (by page number) into the loading `table`.

    The quick reading takes them all in one statement; the rows it doubts are taken out and
    read again carefully, against the JSON itself. Returns the malformed records, by page,
    each placed within its page.
    """
    params = {"position": position, "campaign": campaign, "valid": _valid_pattern()}
    files = [str(pages[number]) for number in sorted(pages)]
    try:
        conn.execute(_insert_sql(table, f"({_QUICK_SQL})"), {**params, "files": files})
    except duckdb.InvalidInputException:
        # Some page is not a list of objects (the statement left nothing behind): each page
        # on its own, so that only the odd one is read record by record.
        if len(pages) == 1:
            [(page, path)] = pages.items()
            return {page: _stage_carefully(conn, path, page, table, params, every_row=True)}
        rejected: dict[int, list[Rejected]] = {}
        for page, path in sorted(pages.items()):
            rejected |= stage_pages(
                conn, {page: path}, table=table, position=position, campaign=campaign
            )
        return rejected
    doubted = conn.execute(
        f"""SELECT DISTINCT page FROM {table}
            WHERE position = $position AND doubtful AND page BETWEEN $first AND $last
            ORDER BY page""",
        {"position": position, "first": min(pages), "last": max(pages)},
    ).fetchall()
    rejected = {}
    for (page,) in doubted:
        conn.execute(
            f"DELETE FROM {table} WHERE position = $position AND page = $page AND doubtful",
            {"position": position, "page": page},
        )
        rejected[page] = _stage_carefully(conn, pages[page], page, table, params, every_row=False)
    return rejected


def page_sizes(conn: duckdb.DuckDBPyConnection, table: str, position: int) -> dict[int, int]:
    """Contacts kept per page of one campaign, while it loads."""
    return dict(
        conn.execute(
            f"SELECT page, COUNT(*) FROM {table} WHERE position = $position GROUP BY page",
            {"position": position},
        ).fetchall()
    )


def _stage_carefully(
    conn: duckdb.DuckDBPyConnection,
    path: Path,
    page: int,
    table: str,
    params: dict,
    *,
    every_row: bool,
) -> list[Rejected]:
    try:
        conn.execute(
            f"CREATE OR REPLACE TEMP TABLE careful_contacts AS {_CAREFUL_SQL}",
            {"file": str(path), "page": page, "every_row": every_row},
        )
    except duckdb.InvalidInputException as error:
        raise ValueError(f"the answer is not a JSON list ({_first_line(error)})") from None
    try:
        conn.execute(_insert_sql(table, "careful_contacts WHERE reason IS NULL"), params)
        rows = conn.execute(
            "SELECT place, record_id, reason FROM careful_contacts"
            " WHERE reason IS NOT NULL ORDER BY place"
        ).fetchall()
    finally:
        conn.execute("DROP TABLE IF EXISTS careful_contacts")
    return [Rejected(place, record_id, reason) for place, record_id, reason in rows]


def _first_line(error: Exception) -> str:
    # DuckDB's message names the file and adds hints meant for SQL users: the first clause
    # is what went wrong.
    return str(error).splitlines()[0].split(" in file ")[0].removeprefix("Invalid Input Error: ")


def _valid_pattern() -> str:
    return valid_national_number_pattern("FR")


def read_other_phones(conn: duckdb.DuckDBPyConnection, table: str = CONTACTS) -> None:
    """Read the numbers not in a usual French shape (foreign, unusual, unreadable) through
    phonenumbers, one distinct value at a time: a few among a million contacts."""
    others = [
        phone
        for (phone,) in conn.execute(
            f"SELECT DISTINCT phone FROM {table} WHERE phone_e164 IS NULL AND phone_problem IS NULL"
        ).fetchall()
    ]
    if not others:
        return
    readings = [read_phone(phone, DEFAULT_REGION) for phone in others]
    # Zipped back from lists in one statement: no per-row round trip.
    conn.execute(
        f"""UPDATE {table} SET phone_e164 = m.e164, phone_valid = m.valid,
                               phone_problem = m.problem
            FROM (SELECT unnest($phone) AS phone, unnest($e164) AS e164,
                         unnest($valid::BOOLEAN[]) AS valid, unnest($problem) AS problem) AS m
            WHERE {table}.phone = m.phone""",
        {
            "phone": others,
            "e164": [r.e164 for r in readings],
            "valid": [r.valid for r in readings],
            "problem": [r.problem for r in readings],
        },
    )
