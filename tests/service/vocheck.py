"""Checks every VO response of the tests goes through: astropy's VOTable validator."""

from __future__ import annotations

import io
import warnings

from astropy.io.votable import parse
from astropy.io.votable.exceptions import VOWarning
from astropy.io.votable.tree import VOTableFile

#: UCD1 words that SIA 1.0 mandates (pyvo reads them) and that astropy's UCD1+
#: check reports as W06 in any VOTable version that also allows ``VOX:`` words.
SIA1_UCD1 = ("POS_EQ_RA_MAIN", "POS_EQ_DEC_MAIN", "INST_ID")
#: The UCD1 words that SCS 1.03 §2 mandates (TOPCAT and pyvo find the columns by them).
SCS_UCD1 = ("ID_MAIN", "POS_EQ_RA_MAIN", "POS_EQ_DEC_MAIN", "OBS_ANG-SIZE")


def strict_votable(body: bytes, allowed_ucd1: tuple[str, ...] = ()) -> VOTableFile:
    """Parse a VOTable with every astropy warning an error (E and W codes alike).

    ``allowed_ucd1`` names UCD1 words whose W06 ("invalid UCD") is tolerated;
    nothing else is.
    """
    if not allowed_ucd1:
        return parse(io.BytesIO(body), verify="exception")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = parse(io.BytesIO(body), verify="warn")
    problems = [str(w.message) for w in caught if issubclass(w.category, VOWarning)
                and not (" W06: " in str(w.message)
                         and any(f"'{u}'" in str(w.message) for u in allowed_ucd1))]
    assert not problems, problems
    return table


def query_status(table: VOTableFile) -> list[str]:
    """Return the QUERY_STATUS values of the results resource, in order."""
    res = next(r for r in table.resources if r.type == "results")
    return [i.value for i in res.infos if i.name == "QUERY_STATUS"]
