"""DataLink 1.1 ``{links}`` for every product version (``/datalink/links``).

For each ID (a publisher DID): the file (``#this``; for spectra also the
Spectrum-DM VOTable), the preview (``#preview``), the inputs named in the
file's provenance keywords (``#progenitor`` for raw frames and parent files,
``#bias``/``#flat``/``#calibration`` for calibrations, ``#auxiliary`` for
associated files), the other versions of the product (``#coderived``: derived
from the same raw data), and the products made from this one
(``#derivation``); for images and 1D spectra also the SODA cutout service
(``#cutout``, a service descriptor: :mod:`vo_archive.vo.soda_descriptor`). Rows of
one ID are consecutive; an ID that is unknown or not visible gets one error row
(DataLink 1.1 §3.4).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, g
from sqlalchemy import Connection, and_, select, text

from vo_archive import web
from vo_archive.access import current_caller, visible
from vo_archive.vo.dal import (
    DATALINK_STANDARD,
    parse_publisher_did,
    publisher_did,
    service_descriptor,
)
from vo_archive.vo.dali.errors import AuthorizationFault, FaultStyle, UsageFault
from vo_archive.vo.dali.params import parse_maxrec
from vo_archive.vo.dali.responseformat import parse_response_format, require_votable
from vo_archive.vo.obscore import DATALINK_FORMAT
from vo_archive.vo.published import product, provenance, version
from vo_archive.vo.soda_descriptor import cutout_link
from vo_archive.vo.vosi import Capability, add_vosi_routes, vosi_capabilities
from vo_archive.vo.votable import Field, Info, TableDocument, stream_votable
from vo_archive.web.previews import preview_path

bp = Blueprint("datalink", __name__)
web.set_fault_style(bp.name, FaultStyle.DALI)

#: Most IDs one request may name.
MAX_IDS = 1000
#: local_semantics of the error row of a dataset the caller may not see.
NOT_VISIBLE = "not-visible"
#: Most #derivation rows per ID.
MAX_DERIVED = 100
SPECTRUM_TYPES = ("fluxcal_1d", "telluric_corrected_1d", "extracted_1d")
#: XML ID of the classification service descriptor, and its standard.
CLASSIFY_SERVICE = "classify"
CLASSIFY_STANDARD = "ivo://pessto.ia2.inaf.it/std/classify#sync-1.0"
_CALIBRATION_SEMANTICS = {"ZEROCOR": "#bias", "FLATCOR": "#flat"}

FIELDS: tuple[Field, ...] = (
    Field("ID", "char", "*", ucd="meta.id;meta.main", id="ID",
          description="Identifier of the dataset the link belongs to"),
    Field("access_url", "char", "*", ucd="meta.ref.url", description="Link URL"),
    Field("service_def", "char", "*", ucd="meta.ref",
          description="Service descriptor of the link"),
    Field("error_message", "char", "*", ucd="meta.code.error",
          description="Why the link could not be made"),
    Field("description", "char", "*", ucd="meta.note",
          description="What the link points to"),
    Field("semantics", "char", "*", ucd="meta.code",
          description="Relation of the linked resource to the dataset"),
    Field("content_type", "char", "*", ucd="meta.code.mime",
          description="MIME type of the linked resource"),
    Field("content_length", "long", ucd="phys.size;meta.file", unit="byte",
          description="Size of the linked resource"),
    Field("content_qualifier", "char", "*", ucd="meta.code.class",
          description="Kind of the linked dataset"),
    Field("local_semantics", "char", "*", ucd="meta.code",
          description="PESSTO-specific relation (header keyword, version)"),
    Field("link_auth", "char", "*", ucd="meta.code",
          description="Whether the link needs authentication"),
    Field("link_authorized", "boolean", ucd="meta.code",
          description="Whether the caller may follow the link"),
)


@dataclass(frozen=True, slots=True)
class Link:
    """One row of a links response."""

    id: str
    access_url: str | None = None
    error_message: str | None = None
    description: str | None = None
    semantics: str = "#this"
    content_type: str | None = None
    content_length: int | None = None
    content_qualifier: str | None = None
    local_semantics: str | None = None
    service_def: str | None = None
    #: The service descriptor RESOURCE that ``service_def`` names.
    descriptor: str = ""

    def row(self, link_auth: str = "false") -> list[Any]:
        """Return the TABLEDATA row (``link_auth``: DataLink 1.1 §3.2.12)."""
        ok = self.error_message is None
        return [self.id, self.access_url, self.service_def, self.error_message,
                self.description,
                self.semantics, self.content_type, self.content_length,
                self.content_qualifier, self.local_semantics,
                link_auth if ok else None, True if ok else None]


def _qualifier(mode: str) -> str:
    return "#image" if mode == "imaging" else "#spectrum"


def _file_links(did: str, pid: int, vno: int, filename: str, size: int, mode: str,
                product_type: str, preferred_format: str | None = None
                ) -> Iterator[Link]:
    q = _qualifier(mode)
    this = [Link(did, web.absolute(f"/products/{pid}/versions/{vno}"),
                 description=f"The FITS file {filename}", semantics="#this",
                 content_type="application/fits", content_length=size,
                 content_qualifier=q)]
    if product_type in SPECTRUM_TYPES:
        this.append(Link(
            did,
            web.absolute(
                f"/ssap?REQUEST=getData&PUBDID={quote(did, safe='')}"
                "&FORMAT=application%2Fx-votable%2Bxml"
            ),
            description="The spectrum as a VOTable (IVOA Spectrum data model)",
            semantics="#this",
            content_type="application/x-votable+xml",
            content_qualifier=q,
            local_semantics="spectrum-votable",
        ))
    # the preferred format's #this first: pyvo's getdataset takes the first
    this.sort(key=lambda link: link.content_type != preferred_format)
    yield from this
    yield Link(did, web.absolute(preview_path(pid, vno)),
               description="Plot of the spectrum" if mode == "spectroscopy"
               else "Thumbnail of the image", semantics="#preview",
               content_type="image/png")


def links_of(conn: Connection, did: str, authority: str,
             preferred_format: str | None = None) -> list[Link]:
    """Return the links of one dataset (an error row when it is not visible).

    ``preferred_format`` (a MIME type) puts the ``#this`` link of that format
    first.
    """
    ids = parse_publisher_did(did, authority)
    if ids is None:
        return [Link(did, error_message=f"NotFoundFault: {did} is not a dataset "
                     "identifier of this archive", semantics="#this")]
    pid, vno = ids
    p, v = product, version
    row = conn.execute(
        select(v.c.version_id, v.c.filename, v.c.file_size, p.c.mode,
               p.c.product_type, p.c.category)
        .select_from(v.join(p, p.c.product_id == v.c.product_id))
        .where(v.c.product_id == pid, v.c.version_no == vno,
               visible(p.c.release_date))).first()
    if row is None:
        return [Link(did, error_message=f"NotFoundFault: no dataset {did} (or it is "
                     "not public)", semantics="#this", local_semantics=NOT_VISIBLE)]
    version_id, filename, size, mode, product_type, category = row
    out = list(_file_links(did, pid, vno, filename, size, mode, product_type,
                           preferred_format))
    soda = cutout_link(conn, did, version_id, mode, product_type)
    if soda is not None:
        out.append(Link(did, description="SODA cutout service for this dataset",
                        semantics="#cutout", content_type="application/fits",
                        content_qualifier=_qualifier(mode),
                        service_def=soda.descriptor_id, descriptor=soda.descriptor))
    if product_type in SPECTRUM_TYPES and category == "science":
        out += _classification_links(conn, did, version_id)
    for ovno, ofile, osize, current in conn.execute(
            select(v.c.version_no, v.c.filename, v.c.file_size, v.c.is_current)
            .where(v.c.product_id == pid, v.c.version_no != vno)
            .order_by(v.c.version_no)):
        state = "current" if current else "superseded"
        out.append(Link(did, web.absolute(f"/products/{pid}/versions/{ovno}"),
                        description=f"Version {ovno} ({state}) of this product: "
                        f"{ofile}", semantics="#coderived",
                        content_type="application/fits", content_length=osize,
                        content_qualifier=_qualifier(mode),
                        local_semantics=f"version-{ovno}"))
    out += _provenance_links(conn, did, version_id)
    out += _derived_links(conn, did, filename, authority)
    return out


#: Where the ESO archive's DataLink service answers for a raw frame
#: (``{dp_id}``: the frame's ESO identifier, its file name without ``.fits``);
#: ``[datalink] eso_raw_links`` in the configuration, empty for none.
ESO_RAW_LINKS = "https://archive.eso.org/datalink/links?ID=ivo://eso.org/ID?{dp_id}"


def eso_raw_url(template: str, filename: str) -> str:
    """Return the ESO archive's links URL of a raw frame's file name."""
    dp_id = re.sub(r"\.fits(\.(gz|Z|fz))?\Z", "", filename, flags=re.IGNORECASE)
    return template.replace("{dp_id}", quote(dp_id, safe=":.-"))


def _classification_links(conn: Connection, did: str, version_id: int
                          ) -> list[Link]:
    """Return the classification service and the stored classification, if any.

    The stored classification is read through ``pessto.classifications``, so
    it follows the access rule of its spectrum.
    """
    out = [Link(did, service_def=CLASSIFY_SERVICE, semantics="#proc",
                description="Classify this spectrum (template cross-correlation: "
                "type, redshift, age)", content_type="application/x-votable+xml",
                local_semantics="classify")]
    stored = conn.execute(text(
        "SELECT sn_type, good, redshift FROM pessto.classifications "
        "WHERE version_id = :v AND is_latest ORDER BY classification_id DESC "
        "LIMIT 1"), {"v": version_id}).first()
    if stored is not None:
        sn_type, good, z = stored
        what = f"{sn_type} at z = {z:.4f}" if good and z is not None else (
            "no good match" if not good else str(sn_type))
        out.append(Link(did, web.absolute(
            f"/classify/stored?ID={quote(did, safe='')}"),
            description=f"Stored classification of this spectrum: {what}",
            semantics="#auxiliary", content_type="application/x-votable+xml",
            local_semantics="classification"))
    return out


#: Defaults of the classifier's numeric options (classify.core.ClassifyOptions),
#: given as the descriptor's values: clients (pyvo) send a PARAM's value as is.
CLASSIFY_DEFAULTS = {"ZMIN": "-0.01", "ZMAX": "1.2", "RLAPMIN": "5.0", "TOP": "10"}


def classify_descriptor() -> str:
    """Return the service descriptor of ``/classify/sync`` for the links rows."""
    def param(name: str, datatype: str, description: str, ref: str | None = None
              ) -> str:
        return Field(name, datatype, "*" if datatype == "char" else None,
                     description=description, ref=ref).element(
            "PARAM", CLASSIFY_DEFAULTS.get(name, ""))

    inputs = [
        param("ID", "char", "The spectrum (dataset identifier)", ref="ID"),
        param("ZMIN", "double", "Smallest redshift searched"),
        param("ZMAX", "double", "Largest redshift searched"),
        param("Z", "char", "Fixed redshift (e.g. of the host); empty: searched"),
        param("TYPES", "char", "Template types, separated by commas (Ia,II,...)"),
        param("RLAPMIN", "double", "Smallest rlap of a good match"),
        param("TOP", "int", "Number of best matches returned"),
    ]
    return service_descriptor(
        CLASSIFY_SERVICE, "/classify/sync", CLASSIFY_STANDARD, inputs,
        name="classify", description="Classify a spectrum by template "
        "cross-correlation", content_type="application/x-votable+xml")


def _provenance_links(conn: Connection, did: str, version_id: int) -> list[Link]:
    eso = str(web.settings().extra.get("datalink", {}).get("eso_raw_links",
                                                           ESO_RAW_LINKS))
    pv, v, p = provenance, version, product
    ref = v.alias("ref")
    ref_p = p.alias("ref_p")
    rows = conn.execute(
        select(pv.c.keyword, pv.c.relation, pv.c.ref_filename, ref.c.product_id,
               ref.c.version_no, ref.c.file_size, ref_p.c.mode)
        .select_from(pv.outerjoin(ref.join(ref_p, and_(
            ref_p.c.product_id == ref.c.product_id, visible(ref_p.c.release_date))),
            ref.c.filename == pv.c.ref_filename))
        .where(pv.c.version_id == version_id)
        .order_by(pv.c.relation, pv.c.keyword, ref.c.version_no.desc())).all()
    out: list[Link] = []
    seen: set[str] = set()
    for keyword, relation, ref_name, rpid, rvno, rsize, rmode in rows:
        if keyword in seen:
            continue
        seen.add(keyword)
        semantics = {"raw": "#progenitor", "parent": "#progenitor",
                     "associated": "#auxiliary"}.get(
            relation, _CALIBRATION_SEMANTICS.get(keyword, "#calibration"))
        desc = f"{ref_name} ({keyword}: {relation})"
        if rpid is None and relation == "raw" and eso:
            # raw frames are kept by the ESO archive: its DataLink service
            # gives the frame, its calibrations and its night log
            out.append(Link(did, eso_raw_url(eso, ref_name),
                            description=f"{desc}, at the ESO archive",
                            semantics=semantics, content_type=DATALINK_FORMAT,
                            content_qualifier="#raw", local_semantics=keyword))
            continue
        if rpid is None:
            where = "held at the ESO archive" if relation == "raw" else \
                "not public or not held here"
            out.append(Link(did, error_message=f"NotFoundFault: {ref_name} is {where}",
                            description=desc, semantics=semantics,
                            local_semantics=keyword))
            continue
        out.append(Link(did, web.absolute(f"/products/{rpid}/versions/{rvno}"),
                        description=desc, semantics=semantics,
                        content_type="application/fits", content_length=rsize,
                        content_qualifier=_qualifier(rmode), local_semantics=keyword))
    return out


def _derived_links(conn: Connection, did: str, filename: str, authority: str
                   ) -> list[Link]:
    pv, v, p = provenance, version, product
    rows = conn.execute(
        select(v.c.product_id, v.c.version_no, v.c.filename, v.c.file_size, p.c.mode,
               pv.c.keyword)
        .select_from(pv.join(v, v.c.version_id == pv.c.version_id)
                     .join(p, p.c.product_id == v.c.product_id))
        .where(pv.c.ref_filename == filename, v.c.is_current,
               visible(p.c.release_date))
        .order_by(v.c.product_id).limit(MAX_DERIVED)).all()
    return [Link(did, web.absolute(f"/products/{pid}/versions/{vno}"),
                 description=f"{name} was made from this file ({keyword}); "
                 f"{publisher_did(authority, pid, vno)}",
                 semantics="#derivation", content_type="application/fits",
                 content_length=size, content_qualifier=_qualifier(mode),
                 local_semantics=keyword)
            for pid, vno, name, size, mode, keyword in rows]


def capabilities() -> list[Capability]:
    """Return the DataLink capability and the VOSI ones."""
    return [Capability(DATALINK_STANDARD, "/datalink/links", None, "1.1"),
            *vosi_capabilities("/datalink")]


add_vosi_routes(bp, capabilities)


@bp.route("/links", methods=["GET", "POST"])
def links() -> Response:
    """Answer a links request (DataLink 1.1 §3)."""
    params = web.params()
    fmt = parse_response_format(params)
    g.wants_votable = fmt == "votable"
    require_votable(fmt)
    ids = [i.strip() for i in params.all("ID") if i.strip()]
    if len(ids) > MAX_IDS:
        raise UsageFault(f"parameter ID: at most {MAX_IDS} identifiers per request",
                         "ID")
    s = web.settings()
    maxrec = parse_maxrec(params, s.maxrec_hard, s.maxrec_hard)
    preferred = params.single("PREFERRED_FORMAT")
    rows: list[list[Any]] = []
    descriptors: dict[str, str] = {}
    overflow = False
    # links to the twin (the answer of an authenticated caller) need credentials
    link_auth = "false" if web.base_url() == web.public_base_url() else "true"
    hidden = 0
    with web.reading() as conn:
        for did in ids:
            found = links_of(conn, did, s.publisher_authority, preferred)
            hidden += found[0].local_semantics == NOT_VISIBLE
            batch = [link.row(link_auth) for link in found]
            if rows and len(rows) + len(batch) > maxrec:  # truncate between IDs only
                overflow = True
                break
            rows += batch
            descriptors.update((k.service_def, k.descriptor) for k in found
                               if k.service_def and k.descriptor)
    if hidden and hidden == len(ids) and current_caller().anonymous:
        # Signing in may show them. The same answer whether they exist or not,
        # as for the files; a request that also names public datasets gets
        # their links and error rows for the others.
        raise AuthorizationFault(
            f"{'dataset ' + ids[0] if hidden == 1 else 'these datasets'}: not "
            "public (or no such dataset); members sign in to see proprietary data",
            authenticate=True)
    infos = [Info("QUERY_STATUS", "OK"), Info("standardID", DATALINK_STANDARD)]
    descriptors = {CLASSIFY_SERVICE: classify_descriptor(), **descriptors} if any(
        r[2] == CLASSIFY_SERVICE for r in rows) else descriptors
    doc = TableDocument(FIELDS, infos, table_name="links",
                        trailing_resources=list(descriptors.values()))
    # stream_votable flags OVERFLOW when it is offered a row past its limit
    body = b"".join(stream_votable(doc, rows + rows[-1:], len(rows)) if overflow
                    else stream_votable(doc, rows, None))
    return Response(body, mimetype=DATALINK_FORMAT)
