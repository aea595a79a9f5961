"""TAP /examples: DALI 1.1 §2.3 RDFa examples; each query runs on the demo archive."""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr


@dataclass(frozen=True, slots=True)
class Example:
    """One example query."""

    id: str
    name: str
    description: str
    query: str
    tables: tuple[str, ...]


EXAMPLES: tuple[Example, ...] = (
    Example("cone", "Files near a position (cone search)",
            "Everything ObsCore knows within half a degree of a position, "
            "nearest first; the spatial test uses the GiST index.",
            "SELECT TOP 100 obs_publisher_did, dataproduct_type, target_name, s_ra, "
            "s_dec, access_url,\n  DISTANCE(POINT('ICRS', s_ra, s_dec), "
            "POINT('ICRS', 57.5, -37.2)) AS dist\nFROM ivoa.ObsCore\n"
            "WHERE 1 = CONTAINS(POINT('ICRS', s_ra, s_dec), "
            "CIRCLE('ICRS', 57.5, -37.2, 5.0))\nORDER BY dist",
            ("ivoa.ObsCore",)),
    Example("products-runs", "Science spectra with their observing runs",
            "Join products to runs: final science spectra and the ESO run "
            "and nights they were observed in.",
            "SELECT TOP 50 p.filename, p.object, p.night, r.eso_run, r.first_night, "
            "r.last_night\nFROM pessto.products AS p\nJOIN pessto.runs AS r ON "
            "r.run_id = p.run_id\nWHERE p.mode = 'spectroscopy' AND p.category = "
            "'science'\nORDER BY night",
            ("pessto.products", "pessto.runs")),
    Example("transient-spectra", "Spectra of one transient in time order",
            "All spectra of SN2012pni, oldest first, with their wavelength "
            "coverage and the file to download.",
            "SELECT obs_publisher_did, t_min, em_min, em_max, instrument_name, "
            "calib_level, access_url\nFROM ivoa.ObsCore\nWHERE target_name = "
            "'SN2012pni' AND dataproduct_type = 'spectrum'\nORDER BY t_min",
            ("ivoa.ObsCore",)),
    Example("per-run-counts", "How many products each run gave",
            "Counts of products per run and instrument (a full-table aggregate).",
            "SELECT r.name, r.instrument, COUNT(*) AS n_products\nFROM "
            "pessto.products AS p\nJOIN pessto.runs AS r ON r.run_id = p.run_id\n"
            "GROUP BY r.name, r.instrument\nORDER BY n_products DESC",
            ("pessto.products", "pessto.runs")),
    Example("provenance", "Raw frames behind a reduced file",
            "The inputs named in the header of each final spectrum "
            "(PROVn keywords), with the product they belong to.",
            "SELECT TOP 100 v.filename, pv.keyword, pv.relation, pv.ref_filename\n"
            "FROM pessto.versions AS v\nJOIN pessto.provenance AS pv ON "
            "pv.version_id = v.version_id\nWHERE pv.relation = 'raw'",
            ("pessto.versions", "pessto.provenance")),
    Example("targets-near", "Transients in a region of the sky",
            "Targets within 10 degrees of a position, with classification and "
            "redshift.",
            "SELECT name, ra, \"dec\", classification, redshift\nFROM pessto.targets\n"
            "WHERE 1 = CONTAINS(POINT('ICRS', ra, \"dec\"), "
            "CIRCLE('ICRS', 60.0, -30.0, 10.0))",
            ("pessto.targets",)),
)


def examples_document(base: str) -> bytes:
    """Return the XHTML examples page (strict XML, DALI RDFa)."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        '<html xmlns="http://www.w3.org/1999/xhtml"><head>'
        "<title>PESSTO archive TAP examples</title></head><body>"
        '<div vocab="http://www.ivoa.net/rdf/examples#">'
        "<h1>Example queries for the PESSTO TAP service</h1>",
    ]
    for ex in EXAMPLES:
        tables = "".join(f'<span property="table">{escape(t)}</span> ' for t in
                         ex.tables)
        parts.append(
            f'<div typeof="example" id={quoteattr(ex.id)} '
            f'resource={quoteattr("#" + ex.id)}>'
            f'<h2 property="name">{escape(ex.name)}</h2>'
            f"<p>{escape(ex.description)}</p>"
            f'<pre class="dachs-ex-tapquery" property="query">{escape(ex.query)}</pre>'
            f"<p>Tables: {tables}</p></div>")
    parts.append(f'<p>Service: <a href={quoteattr(base)}>{escape(base)}</a></p>'
                 "</div></body></html>\n")
    return "".join(parts).encode()
