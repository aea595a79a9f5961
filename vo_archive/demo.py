"""A realistic synthetic PESSTO data set, for demonstrations, tests and benchmarks.

The generator follows ``../shared/pessto-data-model.md``: EFOSC2 and SOFI runs
split in sub-runs of nights, per night the calibrations of each setup and the
reduction chain of each transient observed (2D, extracted, flux-calibrated,
telluric-corrected, Phase 3 1D binary table and 2D spectrum; reduced, merged
and weight-map images), file names and FILETYPE codes as the pipeline writes
them, provenance keywords (PROVn, TRACEn, ZEROCOR, ...), and a share of
products reprocessed with a newer pipeline so that they have several versions.
Images and 2D spectra are smaller than the detector (the headers keep the real
field of view and dispersion) so that 20,000 products fit in a few GB.

Everything is drawn from one seeded random generator: the same seed gives the
same files.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from vo_archive.ingest.facts import mjd_of

RMJD_EPOCH = date(2012, 1, 1)

# (grism, filter, range Å, Å/pix, nelem, R) -- data model §2
EFOSC_GRISMS = [
    ("Gr13", "Free", 3650.0, 9250.0, 5.52, 1015, 357.0),
    ("Gr11", "Free", 3345.0, 7470.0, 4.1, 1011, 398.0),
    ("Gr16", "OG530", 6000.0, 9995.0, 4.2, 950, 600.0),
]
SOFI_GRISMS = [
    ("GB", "GBF", 9350.0, 16540.0, 6.95, 1024, 575.0),
    ("GR", "GRF", 14970.0, 25360.0, 10.2, 1024, 600.0),
]
EFOSC_FILTERS = ["B639", "V641", "R642", "g782", "r784", "i705"]
SOFI_FILTERS = ["J", "H", "Ks"]
STANDARDS = [("LTT3864", 178.0, -35.03), ("EG274", 245.89, -39.23),
             ("LTT3218", 133.17, -32.94), ("Feige110", 349.99, -5.17)]

# (ESO run, instrument, first night, nights) -- sub-runs as PESSTO observed them
RUNS = [
    ("188.D-3003(O)", "EFOSC", date(2012, 11, 10), 4),
    ("191.D-0935(C)", "EFOSC", date(2014, 9, 20), 3),
    ("191.D-0935(D)", "SOFI", date(2014, 10, 2), 3),
    ("199.D-0143(I)", "EFOSC", date(2018, 3, 7), 4),
    ("199.D-0143(G)", "SOFI", date(2018, 3, 8), 2),
    ("199.D-0143(I)", "EFOSC", date(2018, 3, 23), 6),
    ("199.D-0143(G)", "SOFI", date(2018, 3, 23), 5),
    ("199.D-0143(K)", "EFOSC", date(2026, 10, 12), 3),
]
TRANSIENT_PREFIXES = ["SN", "AT", "ASASSN-", "PS", "ATLAS", "Gaia", "ZTF"]
#: Makes the flux of the optical science spectra from the classifier's template
#: library ("module:function", so that the core does not import the package):
#: called with the wavelengths, object, night and seed; returns the noiseless
#: flux (peak 1) and what it was made from.
SCIENCE_FLUX = "classify.synth:demo_flux"
#: Peak flux of a demo spectrum (erg/cm2/s/Å) and its error: a share of the flux
#: and a floor.
PEAK_FLUX = 3e-16
ERR_SHARE, ERR_FLOOR = 0.05, 2e-18


@dataclass
class FileSpec:
    """One file to write: name, header cards and a data maker."""

    name: str
    kind: str
    header: dict[str, Any]
    shape: tuple[int, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


def _rmjd(
    night: date, rng: np.random.Generator, delay: tuple[int, int] = (1, 40)
) -> int:
    return 55927 + (night - RMJD_EPOCH).days + int(rng.integers(*delay))


def _arcfile(inst: str, t: datetime) -> str:
    return f"{inst}.{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond // 1000:03d}.fits"


def _common(inst: str, obj: str, ra: float | None, dec: float | None, t: datetime,
            exptime: float, prog: str, filetype: int, description: str,
            procsoft: str, ncombine: int = 1) -> dict[str, Any]:
    mjd = mjd_of(t)
    h: dict[str, Any] = {
        "ORIGIN": "ESO", "TELESCOP": "ESO-NTT", "INSTRUME": inst, "OBJECT": obj,
    }
    if ra is not None and dec is not None:
        h.update({"RA": round(ra, 6), "DEC": round(dec, 6), "EQUINOX": 2000.0,
                  "RADECSYS": "FK5"})
    h.update({
        "DATE-OBS": t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
        "MJD-OBS": round(mjd, 8), "MJD-END": round(mjd + exptime / 86400.0, 10),
        "EXPTIME": exptime, "TEXPTIME": exptime, "PROG_ID": prog,
        # the OB of the science frame (mandatory for ESO Phase 3 products);
        # derived from the time, not drawn, so the random sequence is unchanged
        "OBID1": 100_000_000 + int(mjd * 1440) % 100_000_000,
        "PI-COI": "Smartt", "PROCSOFT": procsoft, "REFERENC": "Smartt et al 2015",
        "FILETYPE": (filetype, description), "QUALITY": "Final",
        "NCOMBINE": ncombine, "SINGLEXP": ncombine == 1, "M_EPOCH": False,
        "GAIN": 1.18 if inst == "EFOSC" else 5.4,
        "DETRON": 11.6 if inst == "EFOSC" else 12.0,
        "HIERARCH ESO OBS PROG ID": prog,
    })
    return h


class DemoPlan:
    """Decides which files make up a demo data set of about ``n`` products."""

    def __init__(self, n: int, seed: int = 2012) -> None:
        self.n = n
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.specs: list[FileSpec] = []
        self.transients = self._transients(max(8, n // 40))

    def _transients(self, k: int) -> list[tuple[str, float, float]]:
        out = []
        for i in range(k):
            ra = float(self.rng.uniform(0, 360))
            dec = float(np.degrees(np.arcsin(self.rng.uniform(-1, 0.45))))
            prefix = TRANSIENT_PREFIXES[i % len(TRANSIENT_PREFIXES)]
            year = 12 + (i % 7)
            letters = "".join(chr(97 + int(x)) for x in self.rng.integers(0, 26, 3))
            name = f"{prefix}20{year}{letters}" if prefix in ("SN", "AT") else \
                f"{prefix}{year}{letters}"
            out.append((name, ra, dec))
        # one close to each pole and one across RA = 0/360, for the edge cases
        out[0] = ("SN2014pol", 201.3, -89.7)
        out[1] = ("AT2018zro", 359.9995, -12.5)
        return out

    def build(self) -> list[FileSpec]:
        """Return the file specifications, about ``n`` of them.

        Past the listed runs, the same sub-runs are observed again a year earlier
        each cycle, under the next ESO run letter.
        """
        cycle = 0
        while len(self.specs) < self.n:
            for prog, inst, first, nights in RUNS:
                if cycle:
                    letter = chr(ord("A") + (ord(prog[-2]) - ord("A") + cycle) % 26)
                    prog = f"{prog[:-2]}{letter})"
                    first = first.replace(year=first.year - cycle)
                self._run(prog, inst, first, nights)
                if len(self.specs) >= self.n:
                    break
            cycle += 1
        return self.specs[: self.n]

    def _run(self, prog: str, inst: str, first: date, nights: int) -> None:
        for k in range(nights):
            night = first + timedelta(days=k)
            if len(self.specs) >= self.n:
                return
            if inst == "EFOSC":
                self._efosc_night(prog, night)
            else:
                self._sofi_night(prog, night)

    def _night_time(self, night: date, hour: float) -> datetime:
        base = datetime(night.year, night.month, night.day, 12) + timedelta(hours=hour)
        return base + timedelta(seconds=float(self.rng.uniform(0, 600)))

    def _pick_objects(self, k: int) -> list[tuple[str, float, float]]:
        idx = self.rng.choice(len(self.transients), size=k, replace=False)
        return [self.transients[int(i)] for i in idx]

    # -- EFOSC2 ---------------------------------------------------------------
    def _efosc_night(self, prog: str, night: date) -> None:
        d = f"{night:%Y%m%d}"
        rng = self.rng
        soft = "ntt_2.4.0" if night.year >= 2018 else "ntt_2.2.9"
        rmjd = _rmjd(night, rng)
        tcal = self._night_time(night, 3.0)
        grism, filt, lo, hi, step, nelem, res = EFOSC_GRISMS[int(rng.integers(0, 3))]
        setup = f"{grism}_{filt}_slit1.0"
        raws = [_arcfile("EFOSC", tcal + timedelta(minutes=i)) for i in range(11)]
        bias = f"bias_{d}_{grism}_{filt}_{rmjd}.fits"
        self._add(bias, "spec_cal2d", _common("EFOSC", "BIAS", None, None, tcal, 0.0,
                  prog, 21201, "bias", soft, 11), (32, nelem), prov=raws)
        obid = int(rng.integers(100_000_000, 200_000_000))
        flat = f"flat_{d}_{setup}_{obid}_{rmjd}.fits"
        self._add(flat, "spec_cal2d", _common("EFOSC", "FLAT", None, None, tcal, 5.0,
                  prog, 21102, "flat", soft, 5), (32, nelem), prov=raws[:5],
                  calib={"ZEROCOR": bias})
        nflat = f"n{flat}"
        self._add(nflat, "spec_cal2d", _common("EFOSC", "FLAT", None, None, tcal, 5.0,
                  prog, 21203, "normalised flat", soft, 5), (32, nelem), prov=raws[:5],
                  calib={"ZEROCOR": bias}, trace=[flat])
        std, sra, sdec = STANDARDS[int(rng.integers(0, len(STANDARDS)))]
        tstd = self._night_time(night, 1.0)
        sens = f"sens_{d}_{grism}_{filt}_{std.lower()}_{rmjd}_1.fits"
        spec = dict(lo=lo, hi=hi, step=step, nelem=nelem, res=res, grism=grism,
                    filt=filt)
        self._add(sens, "spec_1d", _common("EFOSC", std, sra, sdec, tstd, 80.0, prog,
                  21212, "sensitivity function", soft), (nelem,),
                  prov=[_arcfile("EFOSC", tstd)], spec=spec)
        atmo = f"atmo_t{std}_{d}_{setup}_{rmjd}_1_ex.fits"
        self._add(atmo, "spec_1d", _common("EFOSC", std, sra, sdec, tstd, 80.0, prog,
                  21211, "telluric-absorption spectrum", soft), (4, 1, nelem),
                  prov=[_arcfile("EFOSC", tstd)], spec=spec)
        for obj, ra, dec in self._pick_objects(int(rng.integers(2, 5))):
            self._efosc_spectrum(prog, night, obj, ra, dec, setup, spec, soft, rmjd,
                                 bias, nflat, sens, atmo)
            if rng.random() < 0.5:
                self._efosc_image(prog, night, obj, ra, dec, soft, rmjd)

    def _efosc_spectrum(self, prog: str, night: date, obj: str, ra: float, dec: float,
                        setup: str, spec: dict[str, Any], soft: str, rmjd: int,
                        bias: str, nflat: str, sens: str, atmo: str) -> None:
        rng = self.rng
        d = f"{night:%Y%m%d}"
        t = self._night_time(night, float(rng.uniform(1, 9)))
        exp = float(rng.choice([300.0, 600.0, 900.0, 1500.0]))
        raw = _arcfile("EFOSC", t)
        nelem = spec["nelem"]
        arc = f"arc_{obj}_{d}_{setup}_{rmjd}_1.fits"

        def hdr(ft: int, desc: str) -> dict[str, Any]:
            return _common("EFOSC", obj, ra, dec, t, exp, prog, ft, desc, soft)

        self._add(arc, "spec_cal2d", {**hdr(22104, "pre-reduced image"),
                  "OBJECT": "LAMP"}, (32, nelem), prov=[raw], calib={"ZEROCOR": bias})
        base = f"t{obj}_{d}_{setup}_{rmjd}_1"
        cal = {"ZEROCOR": bias, "FLATCOR": nflat, "ARC": arc}
        self._add(f"{base}.fits", "spec_2d", hdr(22106, "wavelength calibrated 2D"),
                  (32, nelem), prov=[raw], calib=cal, spec=spec)
        sim = (obj, d, self.seed)  # the science spectra: from a template
        self._add(f"{base}_ex.fits", "spec_1d", hdr(22107, "extracted 1D"),
                  (4, 1, nelem), prov=[raw], trace=[f"{base}.fits"], spec=spec,
                  sim=sim)
        self._add(f"{base}_f.fits", "spec_1d", hdr(22208, "flux calibrated 1D"),
                  (4, 1, nelem), prov=[raw], trace=[f"{base}_ex.fits"],
                  calib={"SENSFUN": sens}, spec=spec, sim=sim)
        self._add(f"{base}_e.fits", "spec_1d", hdr(22210, "telluric corrected 1D"),
                  (4, 1, nelem), prov=[raw], trace=[f"{base}_f.fits"],
                  calib={"SENSFUN": sens, "ATMOFILE": atmo}, spec=spec, sim=sim)
        self._add(f"{base}_2df.fits", "spec_2d", hdr(22209, "2D flux calibrated"),
                  (32, nelem), prov=[raw], trace=[f"{base}.fits"],
                  calib={"SENSFUN": sens}, spec=spec)
        p3 = f"{obj[:20]}_{d}_{setup}_{rmjd}_1"
        self._add(f"{p3}_sb.fits", "phase3_1d", hdr(22210, "pre-reduced image"),
                  (nelem,), prov=[raw], trace=[f"{base}_e.fits"], spec=spec,
                  assoc=f"{p3}_si.fits", sim=sim)
        self._add(f"{p3}_si.fits", "spec_2d", hdr(22209, "2D flux calibrated"),
                  (32, nelem), prov=[raw], trace=[f"{base}_2df.fits"], spec=spec,
                  prodcatg="ANCILLARY.2DSPECTRUM")
        if rng.random() < 0.15:
            # reprocessed later with a newer pipeline: a second version
            new = _rmjd(night, rng, (200, 900))
            soft2 = "ntt_3.0.1"
            p3b = f"{obj[:20]}_{d}_{setup}_{new}_1"
            h2 = _common(
                "EFOSC", obj, ra, dec, t, exp, prog, 22210, "1D spectrum", soft2
            )
            self._add(f"{p3b}_sb.fits", "phase3_1d", h2, (nelem,), prov=[raw],
                      trace=[f"{base}_e.fits"], spec=spec, assoc=f"{p3b}_si.fits",
                      sim=sim)

    def _efosc_image(self, prog: str, night: date, obj: str, ra: float, dec: float,
                     soft: str, rmjd: int) -> None:
        rng = self.rng
        d = f"{night:%Y%m%d}"
        filt = EFOSC_FILTERS[int(rng.integers(0, len(EFOSC_FILTERS)))]
        t = self._night_time(night, float(rng.uniform(1, 9)))
        bias = f"bias_{d}_{rmjd}.fits"
        flat = f"flat_{d}_{filt}_{rmjd}.fits"
        tcal = self._night_time(night, 2.5)
        if not any(s.name == bias for s in self.specs[-40:]):
            self._add(bias, "image_cal", _common("EFOSC", "BIAS", None, None, tcal, 0.0,
                      prog, 11201, "bias", soft, 11), (64, 64),
                      prov=[_arcfile("EFOSC", tcal)])
        if not any(s.name == flat for s in self.specs[-40:]):
            self._add(flat, "image_cal", _common("EFOSC", "SKY,FLAT", None, None, tcal,
                      10.0, prog, 11202, "flat", soft, 5), (64, 64),
                      prov=[_arcfile("EFOSC", tcal)], calib={"ZEROCOR": bias})
        exp = float(rng.choice([20.0, 60.0, 120.0]))
        h = _common(
            "EFOSC", obj, ra, dec, t, exp, prog, 12204, "pre-reduced image", soft
        )
        h["FILTER"] = filt
        self._add(f"{obj}_{d}_{filt}_{rmjd}_1.fits", "image", h, (200, 200),
                  prov=[_arcfile("EFOSC", t)], calib={"ZEROCOR": bias, "FLATCOR": flat},
                  image=dict(scale=0.24 * 1024 / 200, pixscale=0.24))
        h2 = dict(h)
        h2["EXPTIME"] = h2["TEXPTIME"] = 5.0
        self._add(f"acq_{obj}_{d}_{filt}_{rmjd}_1.fits", "image", h2, (200, 200),
                  prov=[_arcfile("EFOSC", t - timedelta(minutes=5))],
                  image=dict(scale=0.24 * 1024 / 200, pixscale=0.24))

    # -- SOFI -----------------------------------------------------------------
    def _sofi_night(self, prog: str, night: date) -> None:
        rng = self.rng
        d = f"{night:%Y%m%d}"
        soft = "ntt_2.4.0" if night.year >= 2018 else "ntt_2.2.9"
        rmjd = _rmjd(night, rng)
        tcal = self._night_time(night, 2.0)
        grism, filt, lo, hi, step, nelem, res = SOFI_GRISMS[int(rng.integers(0, 2))]
        spec = dict(lo=lo, hi=hi, step=step, nelem=nelem, res=res, grism=grism,
                    filt=filt)
        raws = [_arcfile("SOFI", tcal + timedelta(minutes=i)) for i in range(6)]
        flat = f"flat_{d}_{grism}_{rmjd}.fits"
        self._add(flat, "spec_cal2d", _common("SOFI", "FLAT", None, None, tcal, 10.0,
                  prog, 41102, "flat", soft, 6), (32, nelem), prov=raws)
        self._add(f"n{flat}", "spec_cal2d", _common("SOFI", "FLAT", None, None, tcal,
                  10.0, prog, 41203, "normalised flat", soft, 6), (32, nelem),
                  prov=raws, trace=[flat])
        arc = f"arc_{d}_{grism}_{rmjd}.fits"
        self._add(arc, "spec_cal2d", _common("SOFI", "LAMP", None, None, tcal, 2.0,
                  prog, 41104, "arc", soft, 2), (32, nelem), prov=raws[:2])
        for obj, ra, dec in self._pick_objects(int(rng.integers(1, 3))):
            t = self._night_time(night, float(rng.uniform(1, 9)))
            frames = [_arcfile("SOFI", t + timedelta(minutes=4 * i)) for i in range(4)]

            def hdr(
                ft: int,
                desc: str,
                exp: float = 960.0,
                obj: str = obj,
                ra: float = ra,
                dec: float = dec,
                t: datetime = t,
            ) -> dict[str, Any]:
                return _common("SOFI", obj, ra, dec, t, exp, prog, ft, desc, soft, 4)

            for i in range(4):
                self._add(
                    f"{obj}_1_{d}_{grism}_{rmjd}_{i}.fits",
                    "spec_2d",
                    hdr(42104, "pre-reduced", 240.0),
                    (32, nelem),
                    prov=[frames[i]],
                    calib={"FLATCOR": f"n{flat}"},
                    spec=spec,
                )
            for i, j in ((0, 1), (1, 0), (2, 3), (3, 2)):
                self._add(f"{obj}_1_{d}_{grism}_{rmjd}_{i}_{j}.fits", "spec_2d",
                          hdr(42115, "pair subtracted", 240.0), (32, nelem),
                          prov=[frames[i], frames[j]], spec=spec)
            merge = f"{obj}_{d}_{grism}_merge_{rmjd}_1"
            self._add(f"{merge}.fits", "spec_2d", hdr(42116, "merged"), (32, nelem),
                      prov=frames, calib={"ARC": arc}, spec=spec)
            self._add(f"{merge}_ex.fits", "spec_1d", hdr(42107, "extracted"),
                      (4, 1, nelem), prov=frames, trace=[f"{merge}.fits"], spec=spec)
            self._add(f"{merge}_f.fits", "spec_1d", hdr(42208, "flux calibrated"),
                      (4, 1, nelem), prov=frames, trace=[f"{merge}_ex.fits"], spec=spec)
            self._add(f"{merge}_sc.fits", "spec_1d", hdr(42208, "flux scaled"),
                      (4, 1, nelem), prov=frames, trace=[f"{merge}_f.fits"], spec=spec)
            self._add(f"{merge}_2df.fits", "spec_2d", hdr(42209, "2D flux calibrated"),
                      (32, nelem), prov=frames, trace=[f"{merge}.fits"], spec=spec)
            p3 = f"{obj[:20]}_{d}_{grism}_merge_{rmjd}_1"
            self._add(f"{p3}_sb.fits", "phase3_1d", hdr(42208, "1D spectrum"), (nelem,),
                      prov=frames, trace=[f"{merge}_sc.fits"], spec=spec,
                      assoc=f"{p3}_si.fits")
            self._add(f"{p3}_si.fits", "spec_2d", hdr(42209, "2D spectrum"),
                      (32, nelem), prov=frames, trace=[f"{merge}_2df.fits"], spec=spec,
                      prodcatg="ANCILLARY.2DSPECTRUM")
            if rng.random() < 0.6:
                self._sofi_image(prog, night, obj, ra, dec, soft, rmjd, hdr)

    def _sofi_image(
        self,
        prog: str,
        night: date,
        obj: str,
        ra: float,
        dec: float,
        soft: str,
        rmjd: int,
        hdr_fn: Callable[..., dict[str, Any]],
    ) -> None:
        d = f"{night:%Y%m%d}"
        filt = SOFI_FILTERS[int(self.rng.integers(0, 3))]
        t = self._night_time(night, float(self.rng.uniform(1, 9)))
        img = dict(scale=0.288 * 1024 / 200, pixscale=0.288)
        flat = f"flat_{d}_{filt}_{rmjd}.fits"
        self._add(flat, "image_cal", _common("SOFI", "FLAT", None, None, t, 10.0, prog,
                  31202, "flat", soft, 10), (64, 64), prov=[_arcfile("SOFI", t)])
        frames = [_arcfile("SOFI", t + timedelta(minutes=2 * i)) for i in range(4)]
        for i in range(4):
            h = hdr_fn(32104, "pre-reduced", 120.0, t=t)
            h["FILTER"] = filt
            self._add(f"{obj}_{d}_{filt}_{rmjd}_{i + 1}.fits", "image", h, (200, 200),
                      prov=[frames[i]], calib={"FLATCOR": flat}, image=img)
        merge = f"{obj}_{d}_{filt}_merge_{rmjd}_1"
        h = hdr_fn(32216, "merged image", 480.0, t=t)
        h["FILTER"] = filt
        self._add(f"{merge}.fits", "image", h, (200, 200), prov=frames, image=img,
                  assoc=f"{merge}.weight.fits")
        hw = hdr_fn(31214, "weight map", 480.0, t=t)
        hw["FILTER"] = filt
        self._add(f"{merge}.weight.fits", "weight", hw, (200, 200), prov=frames,
                  image=img, prodcatg="ANCILLARY.WEIGHTMAP")

    # -- common ---------------------------------------------------------------
    def _add(self, name: str, kind: str, header: dict[str, Any], shape: tuple[int, ...],
             prov: list[str] | None = None, trace: list[str] | None = None,
             calib: dict[str, str] | None = None, spec: dict[str, Any] | None = None,
             image: dict[str, Any] | None = None, assoc: str | None = None,
             prodcatg: str | None = None, sim: tuple[str, str, int] | None = None
             ) -> None:
        h = dict(header)
        for i, p in enumerate(prov or [], 1):
            h[f"PROV{i}"] = p
        if prov:
            h["ARCFILE"] = prov[0]
        for i, p in enumerate(trace or [], 1):
            h[f"TRACE{i}"] = p
        h.update(calib or {})
        if assoc:
            h["ASSON1"] = assoc
        if prodcatg:
            h["PRODCATG"] = prodcatg
        self.specs.append(FileSpec(name, kind, h, shape,
                                   {"spec": spec, "image": image, "sim": sim,
                                    "seed": int(self.rng.integers(0, 2**31))}))


def _spectrum(spec: dict[str, Any], rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    n = spec["nelem"]
    wave = spec["lo"] + spec["step"] * np.arange(n)
    temp = rng.uniform(6000, 15000)
    x = 1.4388e8 / (wave * temp)
    flux = 1e-15 / (wave / 5000.0) ** 5 / np.expm1(np.clip(x, 1e-3, 50))
    flux /= flux.max() / 3e-16
    for line, width, depth in ((6563.0, 60.0, 0.8), (4861.0, 40.0, 0.4),
                               (6355.0, 120.0, -0.5), (8542.0, 80.0, -0.3)):
        flux *= 1 + depth * np.exp(-0.5 * ((wave - line * (1 + rng.uniform(0, 0.03)))
                                           / width) ** 2)
    err = flux * 0.05 + 2e-18
    flux = flux + rng.normal(0, 1, n) * err
    sky = np.abs(rng.normal(1e-17, 3e-18, n))
    return wave, flux.astype(np.float32), err.astype(np.float32), sky.astype(np.float32)


def _science_spectrum(spec: dict[str, Any], sim: tuple[str, str, int],
                      rng: np.random.Generator, cards: dict[str, Any]
                      ) -> tuple[np.ndarray, ...]:
    """Return a science spectrum made from a template (:data:`SCIENCE_FLUX`).

    What it was made from goes into ``cards`` (``PSIM*`` keywords), so that the
    demo archive's classifications can be checked against it.
    """
    n = spec["nelem"]
    wave = spec["lo"] + spec["step"] * np.arange(n)
    module, _, func = SCIENCE_FLUX.partition(":")
    shape, truth = getattr(importlib.import_module(module), func)(wave, *sim)
    flux = PEAK_FLUX * shape
    err = flux * ERR_SHARE + ERR_FLOOR
    flux = flux + rng.normal(0, 1, n) * err
    sky = np.abs(rng.normal(1e-17, 3e-18, n))
    cards.update({
        "PSIMTMPL": (truth.template, "simulated: template (SNID library)"),
        "PSIMTYPE": (truth.type, "simulated: supernova type"),
        "PSIMSUB": (truth.subtype, "simulated: supernova subtype"),
        "PSIMPHAS": (round(truth.phase, 2), "[d] simulated: days from maximum"),
        "PSIMZ": (truth.z, "simulated: redshift"),
        "PSIMHOST": (truth.host, "simulated: host light / mean SN flux"),
    })
    return wave, flux.astype(np.float32), err.astype(np.float32), sky.astype(np.float32)


def _spec_cards(h: dict[str, Any], spec: dict[str, Any]) -> None:
    lo, step, n = spec["lo"], spec["step"], spec["nelem"]
    hi = lo + step * (n - 1)
    h.update({
        "DISPELEM": f"Gr#{spec['grism']}", "SPECSYS": "TOPOCENT",
        "WAVELMIN": round(lo / 10, 3), "WAVELMAX": round(hi / 10, 3),
        "XMIN": lo, "XMAX": hi, "SPEC_BIN": step / 10, "SPEC_VAL": (lo + hi) / 20,
        "SPEC_BW": (hi - lo) / 10, "SPEC_RES": spec["res"], "LAMRMS": 0.0144,
        "LAMNLIN": 10, "SPEC_ERR": 0.0046, "SPEC_SYE": 0.1, "APERTURE": 0.0002778,
        "FLUXCAL": "ABSOLUTE", "FLUXERR": 15.2, "OBSTECH": "SPECTRUM",
        "FILTER": spec["filt"], "TELAPSE": h.get("EXPTIME", 0.0),
        "TMID": h.get("MJD-OBS", 0.0) + h.get("EXPTIME", 0.0) / 172800.0,
        "TITLE": h.get("OBJECT", ""), "VOCLASS": "SPECTRUM V1.0", "VOPUB": "ESO/SAF",
        "LACOSMIC": True, "EXT_OBJ": False, "CONTNORM": False, "TOT_FLUX": False,
    })
    if h.get("INSTRUME") == "EFOSC":
        h["HIERARCH ESO INS GRIS1 NAME"] = f"Gr#{spec['grism'][2:]}"
        h["HIERARCH ESO INS SLIT1 NAME"] = "slit#1.0"
    else:
        h["HIERARCH ESO INS OPTI2 NAME"] = spec["grism"]
        h["HIERARCH ESO INS OPTI1 NAME"] = "long_slit_1"


def write_spec(spec_: FileSpec, out_dir: str) -> str:
    """Write one file of the plan; return its path."""
    rng = np.random.default_rng(spec_.extra["seed"])
    h = fits.Header()
    cards = dict(spec_.header)
    spec = spec_.extra.get("spec")
    image = spec_.extra.get("image")
    if spec:
        _spec_cards(cards, spec)
    hdus: list[Any]
    if spec_.kind == "phase3_1d":
        if spec is None:
            raise AssertionError(f"{spec_.name}: a spectrum file without its spectrum")
        sim = spec_.extra.get("sim")
        wave, flux, err, sky = (_science_spectrum(spec, sim, rng, cards) if sim
                                else _spectrum(spec, rng))
        cards.update({"PRODCATG": "SCIENCE.SPECTRUM", "DATA_REL": "SSDR4",
                      "SNR": round(float(np.median(flux / err)), 1),
                      "BUNIT": "erg/cm2/s/Angstrom", "NELEM": spec["nelem"]})
        if "ASSON1" in cards:
            cards["ASSOC1"] = "ANCILLARY.2DSPECTRUM"
        n = spec["nelem"]
        unit = "erg cm**(-2) s**(-1) angstrom**(-1)"
        cols = [
            fits.Column(
                "WAVE", f"{n}E", unit="angstrom", array=[wave.astype(np.float32)]
            ),
            fits.Column("FLUX", f"{n}E", unit=unit, array=[flux]),
            fits.Column("ERR", f"{n}E", unit=unit, array=[err]),
            fits.Column("SKYBACK", f"{n}E", unit=unit, array=[sky]),
        ]
        tab = fits.BinTableHDU.from_columns(cols, name="PHASE3BINTABLE")
        for i, (utype, ucd) in enumerate(
            (
                ("Spectrum.Data.SpectralAxis.Value", "em.wl"),
                (
                    "Spectrum.Data.FluxAxis.Value",
                    "phot.flux.density;em.wl;src.net;meta.main",
                ),
                (
                    "Spectrum.Data.FluxAxis.Accuracy.StatError",
                    "stat.error;phot.flux.density;meta.main",
                ),
                ("Spectrum.Data.BackgroundModel.Value", "phot.flux.density;em.wl"),
            ),
            1,
        ):
            tab.header[f"TUTYP{i}"] = utype
            tab.header[f"TUCD{i}"] = ucd
        tab.header["INHERIT"] = True
        for key in ("OBJECT", "RA", "DEC", "TITLE", "APERTURE", "TELAPSE", "TMID",
                    "SPEC_VAL", "SPEC_BW", "VOCLASS", "VOPUB"):
            if key in cards:
                tab.header[key] = cards[key]
        tab.header["NELEM"] = n
        tab.header["TDMIN1"] = float(wave[0])
        tab.header["TDMAX1"] = float(wave[-1])
        prim = fits.PrimaryHDU()
        hdus = [prim, tab]
    elif spec_.kind in ("spec_1d",):
        if spec is None:
            raise AssertionError(f"{spec_.name}: a spectrum file without its spectrum")
        sim = spec_.extra.get("sim")
        wave, flux, err, sky = (_science_spectrum(spec, sim, rng, cards) if sim
                                else _spectrum(spec, rng))
        if len(spec_.shape) == 3:
            data = np.stack([flux, flux * 1.02, sky, err]).reshape(4, 1, -1)
        else:
            data = -2.5 * np.log10(np.abs(flux) + 1e-20).astype(np.float32)
        cards.update({"CRVAL1": spec["lo"], "CD1_1": spec["step"], "CRPIX1": 1.0,
                      "CTYPE1": "LINEAR", "BUNIT": "erg/cm2/s/Angstrom"})
        if "_f" in spec_.name or "_e" in spec_.name:
            cards["SNR"] = round(float(np.median(flux / err)), 1)
        prim = fits.PrimaryHDU(data.astype(np.float32))
        hdus = [prim]
    elif spec_.kind in ("spec_2d", "spec_cal2d"):
        ny, nx = spec_.shape
        data = rng.normal(100, 5, (nx, ny)).astype(np.float32)
        if spec_.kind == "spec_2d" and spec:
            _, flux, _, _ = _spectrum(spec, rng)
            prof = np.exp(-0.5 * ((np.arange(ny) - ny / 2) / 2.0) ** 2)
            data += np.outer(flux / flux.max() * 400, prof).astype(np.float32)
        if spec:
            cards.update({"DISPAXIS": 2, "CRVAL2": spec["lo"], "CD2_2": spec["step"],
                          "CRPIX2": 1.0, "CTYPE2": "LINEAR"})
        cards["BUNIT"] = "10^20 erg/cm2/s/Angstrom" if "2df" in spec_.name or \
            "_si" in spec_.name else "ADU"
        prim = fits.PrimaryHDU(data)
        hdus = [prim]
    else:  # images and weight maps
        ny, nx = spec_.shape
        yy, xx = np.mgrid[0:ny, 0:nx]
        data = rng.normal(200, 8, (ny, nx)).astype(np.float32)
        if spec_.kind in ("image", "weight") and image:
            for _ in range(25):
                x0, y0 = rng.uniform(0, nx), rng.uniform(0, ny)
                amp = rng.lognormal(6, 1)
                data += (amp * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / 4.0)).astype(
                    np.float32)
            data += (2000 * np.exp(-((xx - nx / 2) ** 2 + (yy - ny / 2) ** 2) / 5.0)
                     ).astype(np.float32)
            if spec_.kind == "weight":
                data = np.ones_like(data)
            scale = image["scale"] / 3600.0
            ra, dec = cards.get("RA"), cards.get("DEC")
            cards.update({
                "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": ra, "CRVAL2": dec,
                "CRPIX1": nx / 2 + 0.5, "CRPIX2": ny / 2 + 0.5, "CD1_1": -scale,
                "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": scale, "CUNIT1": "deg",
                "CUNIT2": "deg", "PIXSCALE": round(image["scale"], 4),
                "PSF_FWHM": round(float(rng.uniform(0.7, 1.6)), 2),
                "ELLIPTIC": 0.1, "PHOTZP": 23.655, "PHOTZPER": 0.02,
                "PHOTSYS": "VEGA", "ABMAGLIM": 22.0, "ABMAGSAT": 14.7,
                "FLUXCAL": "ABSOLUTE", "OBSTECH": "IMAGE", "BUNIT": "ADU",
            })
            if spec_.kind == "image" and cards["FILETYPE"][0] in (12204, 32216):
                cards.setdefault("PRODCATG", "SCIENCE.IMAGE")
            if "ASSON1" in cards:
                cards["ASSOC1"] = "ANCILLARY.WEIGHTMAP"
        prim = fits.PrimaryHDU(data)
        hdus = [prim]
    for key, value in cards.items():
        h[key] = value
    hdus[0].header.extend(h, update=True)
    path = os.path.join(out_dir, spec_.name)
    fits.HDUList(hdus).writeto(path, overwrite=True, checksum=True)
    return path


def generate(out_dir: Path, n: int = 500, seed: int = 2012, workers: int | None = None,
             progress: Callable[[int], None] | None = None) -> list[Path]:
    """Write a demo data set of about ``n`` FITS files into ``out_dir``.

    Returns
    -------
    list of Path
        The files written, in plan order.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = DemoPlan(n, seed).build()
    workers = workers or min(4, os.cpu_count() or 1)
    paths: list[Path] = []
    if workers > 1 and len(specs) > 50:
        with ProcessPoolExecutor(workers) as pool:
            for i, p in enumerate(
                pool.map(write_spec, specs, [str(out_dir)] * len(specs), chunksize=32),
                1,
            ):
                paths.append(Path(p))
                if progress and i % 100 == 0:
                    progress(i)
    else:
        for i, s in enumerate(specs, 1):
            paths.append(Path(write_spec(s, str(out_dir))))
            if progress and i % 100 == 0:
                progress(i)
    return paths


def iter_names(n: int, seed: int = 2012) -> Iterator[str]:
    """Yield the file names a demo of ``n`` products would have."""
    for s in DemoPlan(n, seed).build():
        yield s.name

