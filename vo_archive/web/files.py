"""Single archived files: ``/products/<id>`` and ``/products/<id>/versions/<n>``.

Files are served with HTTP Range requests, an ETag (the SHA-256) and checksum
headers, only to callers who may see the product (the access filter).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from flask import Blueprint, Response, send_file
from sqlalchemy import text

from vo_archive import web
from vo_archive.access import caller_connection, current_caller
from vo_archive.ingest.storage import Storage
from vo_archive.vo.dali.errors import AuthorizationFault, FaultStyle, NotFoundFault

bp = Blueprint("files", __name__)
web.set_fault_style(bp.name, FaultStyle.TEXT)


@dataclass(frozen=True, slots=True)
class ArchivedFile:
    """Where a visible version's file is, and what it is."""

    product_id: int
    version_no: int
    filename: str
    storage_key: str
    file_size: int
    sha256: str
    md5: str


def find_version(product_id: int, version_no: int | None) -> ArchivedFile:
    """Return a visible version of a product (the current one if no ``version_no``).

    Raises
    ------
    AuthorizationFault
        401 for an anonymous caller if there is no such product or version or
        it is not public.
    NotFoundFault
        If there is no such product or version, or the caller may not see it.
    """
    if not 0 < product_id < 1 << 63 or (version_no is not None
                                        and not 0 < version_no < 1 << 31):
        raise NotFoundFault(f"no product {product_id}")
    where = "v.version_no = :vno" if version_no is not None else "v.is_current"
    sql = text(
        # where is one of two fixed conditions; values are bound
        "SELECT v.product_id, v.version_no, v.filename, v.storage_key, "  # noqa: S608
        "v.file_size, v.sha256, v.md5 FROM archive.version v "
        "JOIN archive.product p USING (product_id) "
        f"WHERE v.product_id = :pid AND {where} "
        "AND archive.visible(p.release_date)"
    )
    values = {"pid": product_id, "vno": version_no}
    with web.reading() as conn:
        row = conn.execute(sql, values).first()
    if row is None and web.settings().read_dsns:
        # a product just uploaded may not have reached the standby yet: its
        # uploader follows the Location of the answer at once
        with caller_connection(web.engine()) as conn:
            row = conn.execute(sql, values).first()
    if row is None:
        what = f"version {version_no} of product {product_id}" if version_no else \
            f"product {product_id}"
        if current_caller().anonymous:
            # Signing in may show it. Also the answer for products that do not
            # exist, so that an anonymous caller cannot tell them apart.
            raise AuthorizationFault(f"{what} is not public (or does not exist); "
                                     "members sign in to see proprietary products",
                                     authenticate=True)
        raise NotFoundFault(f"no {what} (or it is not public)")
    return ArchivedFile(*row)


def file_response(f: ArchivedFile) -> Response:
    """Serve an archived file with Range support, ETag and checksum headers."""
    path = Storage(web.settings().storage_dir).path_of(f.storage_key)
    resp = send_file(path, mimetype="application/fits", as_attachment=True,
                     download_name=f.filename, conditional=True, etag=f.sha256,
                     max_age=3600)
    sha_b64 = base64.b64encode(bytes.fromhex(f.sha256)).decode()
    md5_b64 = base64.b64encode(bytes.fromhex(f.md5)).decode()
    resp.headers["Repr-Digest"] = f"sha-256=:{sha_b64}:"
    resp.headers["Digest"] = f"SHA-256={sha_b64}"
    resp.headers["Content-MD5"] = md5_b64
    resp.headers["X-Checksum-SHA256"] = f.sha256
    resp.headers["Accept-Ranges"] = "bytes"
    return resp


@bp.get("/products/<int:product_id>")
def current_file(product_id: int) -> Response:
    """Serve the current version of a product."""
    return file_response(find_version(product_id, None))


@bp.get("/products/<int:product_id>/versions/<int:version_no>")
def version_file(product_id: int, version_no: int) -> Response:
    """Serve one version of a product."""
    return file_response(find_version(product_id, version_no))
