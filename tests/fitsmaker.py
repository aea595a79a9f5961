"""Small FITS files for tests, built with astropy from header dictionaries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

BASE: dict[str, Any] = {
    "ORIGIN": "ESO", "TELESCOP": "ESO-NTT", "INSTRUME": "EFOSC", "OBJECT": "SN2018abc",
    "RA": 159.068754, "DEC": -59.59763, "DATE-OBS": "2018-03-28T07:15:31.332",
    "MJD-OBS": 58205.30244598, "EXPTIME": 300.0, "PROG_ID": "199.D-0143(I)",
    "PROCSOFT": "ntt_2.4.0", "QUALITY": "Final",
}


def write_fits(path: Path, filetype: int | None, shape: tuple[int, ...] = (8, 8),
               **cards: Any) -> Path:
    """Write a FITS file with the base header, FILETYPE and extra cards.

    A card given as None is removed from the base header.
    """
    header = dict(BASE)
    if filetype is not None:
        header["FILETYPE"] = filetype
    for key, value in cards.items():
        key = key.replace("__", "-")
        if value is None:
            header.pop(key, None)
        else:
            header[key] = value
    hdu = fits.PrimaryHDU(np.zeros(shape, dtype=np.float32))
    for key, value in header.items():
        hdu.header[key] = value
    hdu.writeto(path, overwrite=True, checksum=True)
    return path
