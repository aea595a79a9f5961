"""VOResource records of the archive: its authority, its organisation, its services.

The records are what a VO registry harvests (IVOA Registry Interfaces 1.1,
VOResource 1.1, VODataService 1.1, VORegistry 1.0): one for the naming
authority, one for the publishing organisation, one for the publishing
registry itself, and one per service, all with identifiers under the
configured ``publisher_authority``. Each service record's capabilities are the
very :class:`~vo_archive.vo.vosi.Capability` objects its VOSI ``/capabilities``
serves, and the TAP record's tableset is the VOSI tableset, so the registry
never says something the services do not.

Records need a request context (access URLs are absolute external URLs, see
:func:`vo_archive.web.base_url`); the ``vo-archive registry`` command makes one
from the configured base URL.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.sax.saxutils import escape, quoteattr

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from vo_archive import web
from vo_archive.config import Settings
from vo_archive.vo.dali.errors import TransientFault
from vo_archive.vo.vosi import Capability, capability_xml

RI_NS = "http://www.ivoa.net/xml/RegistryInterface/v1.0"
VR_NS = "http://www.ivoa.net/xml/VOResource/v1.0"
VS_NS = "http://www.ivoa.net/xml/VODataService/v1.1"
VG_NS = "http://www.ivoa.net/xml/VORegistry/v1.0"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
#: Capability extension namespaces the service records use, by prefix.
EXTENSION_NS = {
    "cs": "http://www.ivoa.net/xml/ConeSearch/v1.0",
    "sia": "http://www.ivoa.net/xml/SIA/v1.1",
    "ssa": "http://www.ivoa.net/xml/SSA/v1.1",
    "tr": "http://www.ivoa.net/xml/TAPRegExt/v1.0",
}
#: The IVOA standard of an OAI-PMH harvesting interface (RI 1.1 §2.2).
HARVEST_STANDARD = "ivo://ivoa.net/std/Registry"
#: Resource key of the records (the part of the IVOID after the authority).
AUTHORITY_KEY = ""
SUBJECTS = ("Supernovae", "Transient sources", "Spectroscopy",
            "Astronomical techniques")
PUBLISHER = "PESSTO archive (IA2, Italian Center for Astronomical Archives)"
SURVEY = ("PESSTO, the Public ESO Spectroscopic Survey of Transient Objects: "
          "EFOSC2 optical and SOFI near-infrared spectra and images of supernovae "
          "and other transients taken at the ESO New Technology Telescope.")


@dataclass(frozen=True, slots=True)
class ServiceDescription:
    """What a registry record says of one of the archive's services.

    Parameters
    ----------
    key
        Resource key: the record's identifier is ``<authority>/<key>``.
    title
        Human name, also shown on the landing page.
    short_name
        At most 16 characters (VOResource 1.1 §3.1.1).
    description
        One paragraph for people choosing a service.
    base
        Path of the service's base (its VOSI ``/capabilities`` sits under it).
    capabilities
        The function that lists the service's capabilities (the same one its
        VOSI ``/capabilities`` route calls).
    xsi_type
        ``vs:CatalogService`` for services that serve tables of their own,
        ``vr:Service`` otherwise.
    standard
        Name of the main standard, for people (``TAP 1.1``).
    tableset
        Function returning the ``<tableset>`` XML for the record (TAP only).
    """

    key: str
    title: str
    short_name: str
    description: str
    base: str
    capabilities: Callable[[], Sequence[Capability]]
    xsi_type: str
    standard: str
    tableset: Callable[[], str] | None = None


@dataclass(frozen=True, slots=True)
class Record:
    """One harvestable record: its identifier, datestamp and XML."""

    identifier: str
    datestamp: datetime
    created: datetime
    xml: str
    title: str
    description: str
    resource_type: str


def authority_id(settings: Settings) -> str:
    """Return the archive's authority IVOID without a trailing slash."""
    return settings.publisher_authority.rstrip("/")


def registry_settings(settings: Settings) -> dict[str, str]:
    """Return the ``[registry]`` settings with their defaults."""
    table = settings.extra.get("registry", {})
    return {
        "contact_name": str(table.get("contact_name", "PESSTO archive team")),
        "contact_email": str(table.get("contact_email", "pessto-archive@ia2.inaf.it")),
        "organisation": str(table.get("organisation", PUBLISHER)),
        "reference_url": str(table.get("reference_url", "")),
        "repository_name": str(table.get("repository_name",
                                         "PESSTO archive publishing registry")),
    }


def services() -> list[ServiceDescription]:
    """Return the description of every service the archive offers."""
    # imported here: the protocol packages import vo_archive, not the reverse
    import classify.capability
    import conesearch.capability
    import siap.capability
    import siap.sia2.capability
    import soda.capability
    import ssap.capability
    import tap.capability
    import tap.tap_schema
    from vo_archive.vo import datalink

    def tap_caps() -> Sequence[Capability]:
        return tap.capability.capabilities(web.settings())

    def tableset() -> str:
        doc = tap.tap_schema.tableset_document("max").decode()
        inner = doc[doc.index(">", doc.index("<vosi:tableset")) + 1:
                    doc.rindex("</vosi:tableset>")]
        return f"<tableset>{inner}</tableset>"

    return [
        ServiceDescription(
            "tap", "PESSTO archive TAP service", "PESSTO TAP",
            "Table access (TAP 1.1, ADQL 2.1, synchronous and asynchronous) to the "
            "PESSTO archive: ObsCore 1.1 over every product, and the archive's own "
            "tables of products, versions, observing runs, targets and provenance. "
            + SURVEY, "/tap", tap_caps, "vs:CatalogService", "TAP 1.1", tableset),
        ServiceDescription(
            "scs", "PESSTO archive cone search", "PESSTO SCS",
            "Simple Cone Search over every current PESSTO product with a position "
            "(images and spectra). " + SURVEY, "/scs",
            conesearch.capability.capabilities, "vs:CatalogService",
            "Simple Cone Search 1.03"),
        ServiceDescription(
            "siap", "PESSTO archive image access (SIA 1.0)", "PESSTO SIA1",
            "Simple Image Access 1.0 to the PESSTO images (EFOSC2 and SOFI), with "
            "FITS files and previews. " + SURVEY, "/siap",
            siap.capability.capabilities, "vs:CatalogService", "SIA 1.0"),
        ServiceDescription(
            "sia2", "PESSTO archive image access (SIA 2.0)", "PESSTO SIA2",
            "Simple Image Access 2.0 to the PESSTO images, returning ObsCore "
            "records. " + SURVEY, "/sia2",
            siap.sia2.capability.capabilities, "vs:CatalogService", "SIA 2.0"),
        ServiceDescription(
            "ssap", "PESSTO archive spectra (SSA)", "PESSTO SSA",
            "Simple Spectral Access 1.1 to the PESSTO 1D spectra (EFOSC2 optical, "
            "SOFI near-infrared), as FITS or Spectrum-DM VOTables. " + SURVEY,
            "/ssap", ssap.capability.capabilities, "vs:CatalogService", "SSA 1.1"),
        ServiceDescription(
            "datalink", "PESSTO archive DataLink", "PESSTO DataLink",
            "DataLink 1.1 documents of every PESSTO product: its file, preview, "
            "other versions, raw inputs, calibrations and derived products.",
            "/datalink", datalink.capabilities, "vr:Service", "DataLink 1.1"),
        ServiceDescription(
            "soda", "PESSTO archive cutouts (SODA)", "PESSTO SODA",
            "SODA 1.0 synchronous cutouts of the PESSTO images (by position) and 1D "
            "spectra (by wavelength), as FITS; each dataset's DataLink document "
            "describes its ranges.", "/soda", soda.capability.capabilities,
            "vr:Service", "SODA 1.0"),
        ServiceDescription(
            "classify", "PESSTO spectral classification", "PESSTO classify",
            "Classification of supernova spectra by template cross-correlation "
            "(SNID-style, against a library of 517 supernovae): type, subtype, "
            "redshift and age of an archived PESSTO spectrum or of an uploaded one, "
            "synchronous or as UWS jobs.", "/classify",
            classify.capability.capabilities, "vr:Service",
            "PESSTO classification 1.0"),
    ]


# -- XML of the records --------------------------------------------------------


def _utc(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _curation(settings: Settings) -> str:
    reg = registry_settings(settings)
    org = f"{authority_id(settings)}/org"
    return (f"<curation><publisher ivo-id={quoteattr(org)}>"
            f"{escape(reg['organisation'])}</publisher>"
            f"<contact><name>{escape(reg['contact_name'])}</name>"
            f"<email>{escape(reg['contact_email'])}</email></contact></curation>")


def _content(settings: Settings, description: str, types: Sequence[str],
             level: Sequence[str] = ("Research",)) -> str:
    reg = registry_settings(settings)
    ref = reg["reference_url"] or web.absolute("/")
    return ("<content>"
            + "".join(f"<subject>{escape(s)}</subject>" for s in SUBJECTS)
            + f"<description>{escape(description)}</description>"
            f"<referenceURL>{escape(ref)}</referenceURL>"
            + "".join(f"<type>{escape(t)}</type>" for t in types)
            + "".join(f"<contentLevel>{escape(c)}</contentLevel>" for c in level)
            + "</content>")


def _resource(xsi_type: str, identifier: str, title: str, short_name: str,
              body: str, settings: Settings, created: datetime, updated: datetime,
              description: str, types: Sequence[str],
              level: Sequence[str] = ("Research",)) -> str:
    return (f"<ri:Resource xsi:type={quoteattr(xsi_type)}"
            f" created={quoteattr(_utc(created))}"
            f" updated={quoteattr(_utc(updated))} status=\"active\">"
            f"<title>{escape(title)}</title>"
            f"<shortName>{escape(short_name)}</shortName>"
            f"<identifier>{escape(identifier)}</identifier>"
            + _curation(settings) + _content(settings, description, types, level)
            + body + "</ri:Resource>")


def namespace_declarations() -> str:
    """Return the ``xmlns`` attributes every record's XML relies on."""
    ns = {"ri": RI_NS, "vr": VR_NS, "vs": VS_NS, "vg": VG_NS, "xsi": XSI_NS,
          **EXTENSION_NS}
    # xmlns="": the record's own elements are in no namespace (VOResource
    # 1.1 §2.2), also inside a document whose default namespace is another
    # (OAI-PMH's)
    return 'xmlns="" ' + " ".join(f"xmlns:{k}={quoteattr(v)}" for k, v in ns.items())


def _declare(xml: str) -> str:
    # each record carries its namespaces, so that it stands alone inside an
    # OAI-PMH <metadata> element and in `vo-archive registry` output
    return xml.replace("<ri:Resource ", f"<ri:Resource {namespace_declarations()} ", 1)


@dataclass(frozen=True, slots=True)
class _Draft:
    identifier: str
    title: str
    description: str
    resource_type: str
    make: Callable[[datetime, datetime], str]


def _drafts(settings: Settings, oai_path: str, page_size: int) -> list[_Draft]:
    auth = authority_id(settings)
    reg = registry_settings(settings)
    org_id, registry_id = f"{auth}/org", f"{auth}/registry"
    org_desc = (f"{reg['organisation']} publishes the archive of {SURVEY}")
    drafts = [
        _Draft(auth, f"{auth} naming authority",
               f"The naming authority of the PESSTO archive's resources. {SURVEY}",
               "vg:Authority",
               lambda c, u: _resource(
                   "vg:Authority", auth, f"PESSTO archive authority ({auth})",
                   "PESSTO auth", f"<managingOrg ivo-id={quoteattr(org_id)}>"
                   f"{escape(reg['organisation'])}</managingOrg>", settings, c, u,
                   f"The naming authority of the PESSTO archive's resources. {SURVEY}",
                   ("Other",), ("General",))),
        _Draft(org_id, reg["organisation"], org_desc, "vr:Organisation",
               lambda c, u: _resource(
                   "vr:Organisation", org_id, reg["organisation"], "PESSTO archive",
                   "<facility>ESO New Technology Telescope (NTT)</facility>"
                   "<instrument>EFOSC2</instrument><instrument>SOFI</instrument>",
                   settings, c, u, org_desc, ("Organisation",))),
        _Draft(registry_id, reg["repository_name"],
               "The publishing registry of the PESSTO archive: the records of its "
               "authority, organisation and services, harvestable by OAI-PMH.",
               "vg:Registry",
               lambda c, u: _resource(
                   "vg:Registry", registry_id, reg["repository_name"], "PESSTO reg",
                   '<capability xsi:type="vg:Harvest" '
                   f"standardID={quoteattr(HARVEST_STANDARD)}>"
                   '<interface xsi:type="vg:OAIHTTP" role="std" version="1.0">'
                   f'<accessURL use="base">{escape(web.absolute(oai_path))}'
                   "</accessURL></interface>"
                   f"<maxRecords>{page_size}</maxRecords></capability>"
                   "<full>false</full><managedAuthority>"
                   f"{escape(auth.removeprefix('ivo://'))}"
                   "</managedAuthority>", settings, c, u,
                   "The publishing registry of the PESSTO archive: the records of "
                   "its authority, organisation and services, harvestable by "
                   "OAI-PMH.", ("Registry",), ("General",))),
    ]
    for svc in services():
        ident = f"{auth}/{svc.key}"

        def make(c: datetime, u: datetime, svc: ServiceDescription = svc,
                 ident: str = ident) -> str:
            body = "".join(capability_xml(cap) for cap in svc.capabilities())
            if svc.xsi_type != "vr:Service":
                body += ("<facility>ESO New Technology Telescope (NTT)</facility>"
                         "<instrument>EFOSC2</instrument><instrument>SOFI</instrument>")
            if svc.tableset is not None:
                body += svc.tableset()
            return _resource(svc.xsi_type, ident, svc.title, svc.short_name, body,
                             settings, c, u, svc.description, ("Archive",))

        drafts.append(_Draft(ident, svc.title, svc.description, svc.xsi_type, make))
    return drafts


# -- datestamps ------------------------------------------------------------------

#: Where the datestamps are kept: ``archive_meta.setting`` rows named so.
DATESTAMP_PREFIX = "registry_record:"
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _digest(xml: str) -> str:
    # the datestamps themselves are not part of what "changed" means
    return hashlib.sha256(re.sub(r' (created|updated)="[^"]*"', "", xml)
                          .encode()).hexdigest()


def _stamps(engine: Engine | None, digests: dict[str, str]
            ) -> dict[str, tuple[datetime, datetime]]:
    """Return (created, updated) of each identifier, recording changes.

    A record keeps its datestamp while its content is the same, and gets a new
    one (now) when it changes, so that harvesters asking ``from`` a date see
    exactly the records changed since (OAI-PMH 2.0 §2.7.1). Where the database
    cannot be written (a read-only standby), new or changed records are dated
    now without being recorded.
    """
    now = datetime.now(UTC).replace(microsecond=0)
    known: dict[str, dict[str, str]] = {}
    if engine is not None:
        try:
            with engine.connect() as conn:
                rows = conn.execute(text(
                    "SELECT name, value FROM archive_meta.setting "
                    "WHERE name LIKE :p"), {"p": DATESTAMP_PREFIX + "%"}).all()
        except SQLAlchemyError as exc:
            # without the recorded dates every record would look new
            raise TransientFault("database unavailable") from exc
        for name, value in rows:
            try:
                known[name[len(DATESTAMP_PREFIX):]] = json.loads(value)
            except ValueError:
                continue  # written by hand: dated anew
    out: dict[str, tuple[datetime, datetime]] = {}
    changed: dict[str, dict[str, str]] = {}
    for ident, digest in digests.items():
        old = known.get(ident)
        if old and old.get("digest") == digest:
            out[ident] = (datetime.fromisoformat(old["created"]),
                          datetime.fromisoformat(old["updated"]))
            continue
        created = datetime.fromisoformat(old["created"]) if old else now
        out[ident] = (created, now)
        changed[ident] = {"digest": digest, "created": created.isoformat(),
                          "updated": now.isoformat()}
    if changed and engine is not None:
        try:
            with engine.begin() as conn:
                for ident, value in changed.items():
                    conn.execute(text(
                        "INSERT INTO archive_meta.setting (name, value) "
                        "VALUES (:n, :v) ON CONFLICT (name) DO UPDATE "
                        "SET value = EXCLUDED.value"),
                        {"n": DATESTAMP_PREFIX + ident, "v": json.dumps(value)})
        except SQLAlchemyError:
            pass  # read-only: dated now, recorded by the next writable node
    return out


def records(settings: Settings, engine: Engine | None, oai_path: str = "/oai",
            page_size: int = 100) -> list[Record]:
    """Return every record of the archive, in a stable order, with datestamps."""
    drafts = _drafts(settings, oai_path, page_size)
    bodies = {d.identifier: d.make(_EPOCH, _EPOCH) for d in drafts}
    stamps = _stamps(engine, {i: _digest(x) for i, x in bodies.items()})
    out = []
    for d in drafts:
        created, updated = stamps[d.identifier]
        out.append(Record(d.identifier, updated, created,
                          _declare(d.make(created, updated)), d.title,
                          d.description, d.resource_type))
    return out
