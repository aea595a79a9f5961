"""What sync queries and async jobs share: prepare a query, describe its result."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from tap.adql.translate import ADQLError, Translation, translate
from tap.params import TAPRequest
from tap.query import ResultSet
from tap.uploads import UploadedTable, load_votable
from vo_archive.vo.dal import datalink_descriptor
from vo_archive.vo.dali.errors import UsageFault
from vo_archive.vo.votable import Info, TableDocument

STANDARD_ID = "ivo://ivoa.net/std/TAP"
#: Result columns that hold publisher DIDs, which DataLink resolves.
DID_COLUMNS = frozenset({"obs_publisher_did", "publisher_did"})


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


def result_document(rs: ResultSet, request: TAPRequest,
                    absolute: Callable[[str], str]) -> TableDocument:
    """Return the VOTable frame of a query result (DALI 1.1 §4.4.3 INFOs).

    A result holding publisher DIDs (``obs_publisher_did``, ``publisher_did``)
    gets a DataLink service descriptor on that column (DataLink 1.1 §4.1), so
    that TOPCAT and pyvo's ``iter_datalinks`` offer each row's links.
    """
    infos = [Info("QUERY_STATUS", "OK"), Info("standardID", STANDARD_ID),
             Info("QUERY", request.query)]
    if request.runid:
        infos.append(Info("RUNID", request.runid))
    fields = list(rs.fields)
    trailing = []
    for i, f in enumerate(fields):
        if f.name.lower() in DID_COLUMNS and f.datatype == "char":
            # the XML ID is the column's name: astropy (and so pyvo's
            # to_table) names columns by their ID when they have one
            fields[i] = dataclasses.replace(f, id=f.name)
            trailing.append(datalink_descriptor(f.name, absolute))
            break
    return TableDocument(fields, infos=infos, table_name="result",
                         trailing_resources=trailing)
