"""Comparison keys of transient names, as surveys and the IAU write them.

One object goes by many spellings: ``SN 2018abc``, ``SN2018abc``, ``AT 2018abc``,
``AT2018abc`` and the bare ``2018abc`` are one IAU designation (the ``SN``/``AT``
prefix says only whether a spectrum classified it); survey designations come
with or without spaces and hyphens (``ASASSN-18abc``, ``ASAS-SN 18abc``,
``PS1-14abc``).  The key is what stays when those differences are removed:

- lower case, white space and underscores dropped, a Unicode minus read as ``-``;
- hyphens dropped, except the declination sign of a coordinate designation
  (``PSN J08364391+1631497``, ``MASTER OT J032814.9-321956.7``): there the sign
  is part of the position;
- the ``sn``/``at`` prefix of an IAU designation (year and letters) dropped;
- ``MASTER J…`` and ``MASTER OT J…`` one key.

The database has the same rules as ``archive.marshall_name_key(text)``
(``schema/versions/0013_marshall_match.py``), so that the refresh triggers key
names as this module does; ``tests/db/test_marshall.py`` runs this module's test
table through both.  No Flask, no database.
"""

from __future__ import annotations

import re

__all__ = ["name_key"]

_SPACE = re.compile(r"[\s_]+")
# A coordinate designation: anything, then J, HHMM[SS[.s]] and a signed declination.
_COORDS = re.compile(r"(.*?)(j\d{4}[\d.]*[+-]\d[\d.]*)")
# An IAU designation: year and letters, after an optional SN or AT.
_IAU = re.compile(r"^(?:sn|at)(?=\d{4}[a-z]+$)")
_MASTER = re.compile(r"^master(?:ot)?(?=j)")


def name_key(name: str) -> str:
    """Return the comparison key of a transient name.

    Parameters
    ----------
    name
        A name as written (``SN 2018abc``, ``ATLAS18xyz``, ``PSN J08364391+1631497``).

    Returns
    -------
    str
        The key; two names of one object have the same key.
    """
    s = _SPACE.sub("", name.strip().lower().replace("\u2212", "-"))
    m = _COORDS.fullmatch(s)
    s = m.group(1).replace("-", "") + m.group(2) if m else s.replace("-", "")
    s = _IAU.sub("", s)
    return _MASTER.sub("masterot", s)
