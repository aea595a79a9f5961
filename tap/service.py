"""What sync queries and async jobs share: prepare a query, describe its result."""

from __future__ import annotations

from collections.abc import Sequence

from tap.adql.translate import ADQLError, Translation, translate
from tap.params import TAPRequest
from tap.query import ResultSet
from tap.uploads import UploadedTable, load_votable
from vo_archive.dali.errors import UsageFault
from vo_archive.votable import Info, TableDocument

STANDARD_ID = "ivo://ivoa.net/std/TAP"


def prepare(request: TAPRequest, contents: Sequence[tuple[str, bytes]]
            ) -> tuple[Translation, list[UploadedTable]]:
    """Parse the uploads and check and translate the ADQL.

    Raises
    ------
    UsageFault
        With the ADQL error and its position, or an upload problem.
    """
    tables = [load_votable(name, content) for name, content in contents]
    try:
        translation = translate(request.query, {t.name for t in tables})
    except ADQLError as exc:
        raise UsageFault(str(exc), "QUERY") from None
    return translation, tables


def result_document(rs: ResultSet, request: TAPRequest) -> TableDocument:
    """Return the VOTable frame of a query result (DALI 1.1 §4.4.3 INFOs)."""
    infos = [Info("QUERY_STATUS", "OK"), Info("standardID", STANDARD_ID),
             Info("QUERY", request.query)]
    if request.runid:
        infos.append(Info("RUNID", request.runid))
    return TableDocument(rs.fields, infos=infos, table_name="result")
