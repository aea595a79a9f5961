"""SSA 1.1 getData: a spectrum as a VOTable following the Spectrum data model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from vo_archive.spectra import Spectrum
from vo_archive.vo.votable import Field, Info, Param, TableDocument


def flux_unit(unit: str) -> str:
    """Return the flux unit in VOUnit/CDS syntax (``erg/cm2/s/Angstrom`` is both)."""
    u = unit.strip()
    if u.startswith("10^20 "):
        return "1e-20" + u[6:]
    return u or "erg/cm2/s/Angstrom"


def spectrum_document(spec: Spectrum, did: str) -> TableDocument:
    """Return the document around a spectrum's points."""
    unit = flux_unit(spec.flux_unit)
    fields = [
        Field("WAVE", "double", unit="Angstrom", ucd="em.wl",
              utype="spec:Spectrum.Data.SpectralAxis.Value",
              description="Wavelength (vacuum)"),
        Field("FLUX", "double", unit=unit, ucd="phot.flux.density;em.wl",
              utype="spec:Spectrum.Data.FluxAxis.Value", description="Flux density"),
    ]
    if spec.error is not None:
        fields.append(Field("ERR", "double", unit=unit,
                            ucd="stat.error;phot.flux.density;em.wl",
                            utype="spec:Spectrum.Data.FluxAxis.Accuracy.StatError",
                            description="Error of the flux density"))
    params = [
        Param(Field("DataModel", "char", "*", utype="spec:Spectrum.DataModel"),
              "Spectrum-1.0"),
        Param(Field("PublisherDID", "char", "*", ucd="meta.ref.ivoid",
                    utype="spec:Spectrum.Curation.PublisherDID"), did),
        Param(Field("Title", "char", "*", ucd="meta.title",
                    utype="spec:Spectrum.DataID.Title"), spec.title),
        Param(Field("Length", "long", ucd="meta.number",
                    utype="spec:Spectrum.Length"), str(int(spec.wave.size))),
    ]
    return TableDocument(fields, infos=[Info("QUERY_STATUS", "OK")], params=params,
                         table_name="spectrum", description=f"Spectrum of {spec.title}")


def spectrum_rows(spec: Spectrum) -> Iterator[list[Any]]:
    """Yield the spectrum's points (NaN fluxes become empty cells)."""
    cols = [spec.wave, spec.flux] + ([spec.error] if spec.error is not None else [])
    stacked = np.column_stack(cols)
    for row in stacked.tolist():
        yield [None if x != x else x for x in row]
