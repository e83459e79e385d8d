"""PyMySQL, with each result's column metadata parsed once per connection instead of once per statement.

A result set starts with one descriptor packet per column (catalog, schema, table, names, charset, type,
flags), and PyMySQL parses each in Python for every statement: for a 1-change confirmed sale, whose
statements return 52 columns, that was a fifth of the push's CPU. The packets of a statement that returns
the same columns are the same bytes every time, so the connection keeps what it made of each packet (the
field, its DB-API description and its value converter) keyed by those bytes, and only a packet it has not
seen yet is parsed, by PyMySQL's own `FieldDescriptorPacket`. The bytes are the whole key: two columns
that differ in anything the server says about them are different packets, and the connection's encoding
and converters, which the parse also depends on, are fixed for its life. A connection keeps at most
`MAX_KNOWN` packets (the code base issues a few hundred distinct columns); past that it stops remembering
new ones and parses them as PyMySQL does.

The engine creates these connections through SQLAlchemy's `do_connect` hook (`domain.db`); they are
PyMySQL's `Connection` in every other respect.
"""

from __future__ import annotations

from typing import Any

from pymysql import converters
from pymysql.connections import TEXT_TYPES, Connection, MySQLResult
from pymysql.constants import FIELD_TYPE
from pymysql.protocol import FieldDescriptorPacket

MAX_KNOWN = 4096
BINARY_CHARSET = 63

Known = tuple[FieldDescriptorPacket, tuple[Any, ...], tuple[str | None, Any]]


def describe(connection: Connection, data: bytes) -> Known:
    """One column as PyMySQL's `MySQLResult._get_descriptions` reads it: the parsed field, its DB-API
    description and the (encoding, converter) pair its values are read with."""
    field = FieldDescriptorPacket(data, connection.encoding)
    encoding: str | None
    if not connection.use_unicode:
        encoding = None
    elif field.type_code == FIELD_TYPE.JSON:
        encoding = connection.encoding  # JSON arrives as binary, decoded by the connection's encoding
    elif field.type_code in TEXT_TYPES:
        encoding = None if field.charsetnr == BINARY_CHARSET else connection.encoding
    else:
        encoding = "ascii"
    converter = connection.decoders.get(field.type_code)
    if converter is converters.through:
        converter = None
    return field, field.description(), (encoding, converter)


class KnownColumnsResult(MySQLResult):
    def _get_descriptions(self) -> None:
        connection = self.connection
        known: dict[bytes, Known] = connection.known_columns
        fields, description, readers = [], [], []
        for _ in range(self.field_count):
            data = connection._read_packet().get_all_data()
            column = known.get(data)
            if column is None:
                column = describe(connection, data)
                if len(known) < MAX_KNOWN:
                    known[data] = column
            fields.append(column[0])
            description.append(column[1])
            readers.append(column[2])
        self.fields = fields
        self.converters = readers
        eof_packet = connection._read_packet()
        assert eof_packet.is_eof_packet(), "Protocol error, expecting EOF"
        self.description = tuple(description)


class KnownColumnsConnection(Connection):
    """PyMySQL's connection, reading results with `KnownColumnsResult`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.known_columns: dict[bytes, Known] = {}
        super().__init__(*args, **kwargs)

    def _read_query_result(self, unbuffered: bool = False) -> int:
        # PyMySQL's own method, with the result class swapped.
        self._result = None
        result = KnownColumnsResult(self)
        if unbuffered:
            result.init_unbuffered_query()
        else:
            result.read()
        self._result = result
        if result.server_status is not None:
            self.server_status = result.server_status
        return result.affected_rows  # type: ignore[no-any-return]
