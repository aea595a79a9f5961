"""What the DAL services (SCS, SIA, SSA, DataLink) share.

Running a query for the request's caller and answering with a VOTable, and
service descriptors.

Small results (MAXREC up to :data:`BUFFERED_MAXREC`) are read whole, the
connection goes back to the pool at once, and the document is sent as one
body with a Content-Length, so a kept-alive connection gets the response in
one write. Larger ones are read through a server-side cursor and streamed in
64 KiB chunks (memory does not grow with the result).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any
from xml.sax.saxutils import quoteattr

import psycopg2
from flask import Response, stream_with_context
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from vo_archive import web
from vo_archive.access import caller_connection, current_caller
from vo_archive.vo import statements
from vo_archive.vo.dali.errors import TransientFault, UsageFault
from vo_archive.vo.obscore import DATALINK_FORMAT
from vo_archive.vo.statements import (
    STATEMENT_TIMEOUT_MS,
    ShapedQuery,
    check_values,
    compile_shape,
)
from vo_archive.vo.votable import Field, Param, TableDocument, stream_votable

log = logging.getLogger(__name__)

VOTABLE_TYPE = "application/x-votable+xml"
#: Results up to this many rows are buffered and sent in one piece.
BUFFERED_MAXREC = 5000
DATALINK_STANDARD = "ivo://ivoa.net/std/DataLink#links-1.1"

RowConverter = Callable[[Sequence[Any]], Sequence[Any]]
RowTransform = Callable[[Iterator[Sequence[Any]]], Iterator[Sequence[Any]]]


def _database_fault(exc: DBAPIError | psycopg2.Error, region_param: str | None
                    ) -> Exception | None:
    """Return the fault a database error means for the user, if any."""
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "pgcode", None) or ""
    if code == "57014":
        return TransientFault("the query took too long; narrow it down")
    if region_param and (code.startswith("22") or code == "XX000"):
        # pgSphere rejects degenerate or self-crossing regions this way
        diag = getattr(orig, "diag", None)
        msg = str((diag and diag.message_primary) or orig).strip()
        return UsageFault(f"parameter {region_param}: {msg}", region_param)
    return None


def _stream(conn: Connection, query: ShapedQuery) -> Any:
    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}; "
                         "SET LOCAL jit = off")
    shape = compile_shape(query, conn.dialect)
    values = query.resolve(lambda sql: conn.exec_driver_sql(sql).scalar())
    check_values(shape, values)
    return conn.execution_options(stream_results=True, max_row_buffer=2000).execute(
        shape.select, dict(values))


def votable_response(doc: TableDocument, query: ShapedQuery | None,
                     maxrec: int | None, convert: RowConverter | None = None,
                     mimetype: str = VOTABLE_TYPE,
                     region_param: str | None = None,
                     transform: RowTransform | None = None) -> Response:
    """Run a query for the request's caller and answer with its VOTable.

    Parameters
    ----------
    doc
        The document around the rows (fields in the order of the select).
    query
        The shaped select (:mod:`vo_archive.vo.statements`); it must limit the
        rows to ``maxrec + 1``. None: no query, an empty table with status OK.
    maxrec
        Row limit; 0 answers with metadata and OVERFLOW without querying.
    convert
        Turns a database row into the output row (absolute URLs, DALI arrays).
    mimetype
        Content type of the answer.
    region_param
        Parameter to name when the database rejects a region value.
    transform
        Turns the stream of database rows into output rows (e.g. one row per
        format a dataset is offered in); applied after ``convert``.
    """
    if query is None or maxrec == 0:
        body = b"".join(stream_votable(doc, (), None if query is None else maxrec))
        return Response(body, mimetype=mimetype)

    def output(rows: Iterable[Sequence[Any]]) -> Iterable[Sequence[Any]]:
        it = iter(rows) if convert is None else map(convert, rows)
        return it if transform is None else transform(it)

    proprietary = current_caller().sees_proprietary
    if maxrec is not None and maxrec <= BUFFERED_MAXREC:
        try:
            rows = web.read(lambda engine: statements.run(engine, query, proprietary),
                            pre_ping=False)
        except psycopg2.Error as exc:
            fault = _database_fault(exc, region_param)
            if fault is None:
                raise
            raise fault from exc
        return Response(b"".join(stream_votable(doc, output(rows), maxrec)),
                        mimetype=mimetype)

    def start(engine: Engine) -> tuple[AbstractContextManager[Connection], Any]:
        # the first rows are read here, before anything is sent: a standby that
        # fails by then is passed over (web.read)
        cm = caller_connection(engine)
        conn = cm.__enter__()
        try:
            return cm, _stream(conn, query)
        except BaseException as exc:
            cm.__exit__(type(exc), exc, exc.__traceback__)
            raise

    try:
        cm, result = web.read(start)
    except DBAPIError as exc:
        fault = _database_fault(exc, region_param)
        if fault is None:
            raise
        raise fault from exc

    def generate() -> Iterator[bytes]:
        try:
            yield from stream_votable(doc, output(result), maxrec)
        finally:
            cm.__exit__(None, None, None)

    # the converters make absolute URLs from the request: keep its context
    return Response(stream_with_context(generate()), mimetype=mimetype)


def string_param(name: str, value: str, ucd: str | None = None,
                 utype: str | None = None, description: str | None = None) -> Param:
    """Return a ``char`` PARAM with a constant value."""
    return Param(Field(name, "char", "*", ucd=ucd, utype=utype,
                       description=description), value)


def service_descriptor(id_: str, access_path: str, standard_id: str | None,
                       inputs: Sequence[str], name: str | None = None,
                       description: str | None = None,
                       content_type: str | None = None,
                       absolute: Callable[[str], str] | None = None) -> str:
    """Return a DataLink service descriptor resource (DataLink 1.1 §4).

    Parameters
    ----------
    id_
        XML ID of the resource.
    access_path
        Archive path of the service (made absolute).
    standard_id
        The service's standard, if any.
    inputs
        Raw PARAM elements of the ``inputParams`` group.
    name, description
        Human-readable name and description.
    content_type
        What the service returns.
    absolute
        Makes archive paths absolute (default: this request's base URL; a job
        worker passes the job's).
    """
    make = absolute or web.absolute
    params = [string_param("accessURL", make(access_path)).element()]
    if standard_id:
        params.append(string_param("standardID", standard_id).element())
    if content_type:
        params.append(string_param("contentType", content_type).element())
    desc = f"<DESCRIPTION>{description}</DESCRIPTION>" if description else ""
    name_attr = f" name={quoteattr(name)}" if name else ""
    return (f'<RESOURCE type="meta" utype="adhoc:service" ID={quoteattr(id_)}'
            f"{name_attr}>{desc}{''.join(params)}"
            f'<GROUP name="inputParams">{"".join(inputs)}</GROUP></RESOURCE>')


def datalink_descriptor(id_field: str,
                        absolute: Callable[[str], str] | None = None,
                        preferred_format: str | None = None) -> str:
    """Return the DataLink descriptor of a result with publisher DIDs.

    The FIELD ``id_field`` (by XML ID) holds the DIDs: TOPCAT and pyvo then
    offer each row's links. ``preferred_format`` (a MIME type) becomes a fixed
    ``PREFERRED_FORMAT`` input, which clients send along: the links document
    then lists the ``#this`` link of that format first.
    """
    ref = Field("ID", "char", "*", ucd="meta.id;meta.main", ref=id_field)
    inputs = [ref.element("PARAM", "")]
    if preferred_format:
        inputs.append(string_param(
            "PREFERRED_FORMAT", preferred_format, "meta.code.mime",
            description="Format whose #this link comes first").element())
    return service_descriptor(
        "datalink", "/datalink/links", DATALINK_STANDARD,
        inputs, name="links",
        description="Files, previews, provenance and versions of each dataset",
        content_type=DATALINK_FORMAT, absolute=absolute,
    )


def parse_publisher_did(did: str, authority: str) -> tuple[int, int] | None:
    """Return (product id, version) of ``<authority>/pessto?<pid>/v<vno>``, or None.

    The authority is compared case-insensitively (IVOIDs are), the rest exactly.
    """
    prefix = authority.rstrip("/") + "/pessto?"
    if not did.lower().startswith(prefix.lower()):
        return None
    pid, sep, vno = did[len(prefix):].partition("/v")
    if not (sep and pid.isdigit() and vno.isdigit()):
        return None
    return int(pid), int(vno)


def publisher_did(authority: str, product_id: int, version_no: int) -> str:
    """Return the publisher DID of a product version (as the database writes it)."""
    return f"{authority.rstrip('/')}/pessto?{product_id}/v{version_no}"
