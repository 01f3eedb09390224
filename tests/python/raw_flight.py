"""Flight SQL commands for raw pyarrow.flight clients, protobuf encoded by
hand (pyarrow has no Flight SQL messages): a command is a protobuf `Any`
whose type_url (field 1) names the message and whose value (field 2) is
the message; CommandStatementQuery's field 1 is the SQL text."""

import pyarrow.flight as flight


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def command(type_name: str, message: bytes) -> bytes:
    """`message` packed in an Any as a Flight SQL command `type_name`."""
    url = ("type.googleapis.com/arrow.flight.protocol.sql." + type_name).encode()
    return field(1, url) + field(2, message)


def statement_query_descriptor(sql: str) -> flight.FlightDescriptor:
    """The descriptor of a CommandStatementQuery for `sql`."""
    return flight.FlightDescriptor.for_command(command("CommandStatementQuery", field(1, sql.encode())))
