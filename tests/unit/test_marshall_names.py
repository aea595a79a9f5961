"""Name keys of transients (vo_archive.marshall.names)."""

from __future__ import annotations

import pytest

from vo_archive.marshall.names import name_key

#: (name as written, key).  tests/db/test_marshall.py runs the same table
#: through the database's archive.marshall_name_key.
NAME_KEYS = [
    ("SN 2018abc", "2018abc"),
    ("SN2018abc", "2018abc"),
    ("2018abc", "2018abc"),
    ("AT 2018abc", "2018abc"),
    ("AT2018abc", "2018abc"),
    ("at 2018ABC", "2018abc"),
    ("  SN  2018abc ", "2018abc"),
    ("SN_2018abc", "2018abc"),
    ("SN 1987A", "1987a"),
    ("ATLAS18xyz", "atlas18xyz"),
    ("ATLAS 18xyz", "atlas18xyz"),
    ("Gaia17bzc", "gaia17bzc"),
    ("Gaia 17bzc", "gaia17bzc"),
    ("PSN J08364391+1631497", "psnj08364391+1631497"),
    ("PSNJ08364391+1631497", "psnj08364391+1631497"),
    ("PSN J08364391\u22121631497", "psnj08364391-1631497"),
    ("MASTER OT J032814.9-321956.7", "masterotj032814.9-321956.7"),
    ("MASTER J032814.9-321956.7", "masterotj032814.9-321956.7"),
    ("MASTEROTJ032814.9-321956.7", "masterotj032814.9-321956.7"),
    ("PS1-14abc", "ps114abc"),
    ("PS1 14abc", "ps114abc"),
    ("ASASSN-18abc", "asassn18abc"),
    ("ASAS-SN 18abc", "asassn18abc"),
    ("ASASSN18abc", "asassn18abc"),
    ("ZTF18abcdefg", "ztf18abcdefg"),
    ("DES16X1abc", "des16x1abc"),
    ("LSQ15abc", "lsq15abc"),
    ("iPTF16abc", "iptf16abc"),
    # not IAU designations: the prefix stays
    ("SNhunt275", "snhunt275"),
    ("ATLAS", "atlas"),
    ("AT 2018", "at2018"),
]


@pytest.mark.parametrize(("name", "key"), NAME_KEYS)
def test_name_key(name: str, key: str) -> None:
    assert name_key(name) == key


@pytest.mark.parametrize(("a", "b"), [
    ("PSN J08364391+1631497", "PSN J08364391-1631497"),
    ("SN 2018abc", "SN 2018abd"),
    ("ATLAS18xyz", "2018xyz"),
    ("MASTER OT J032814.9-321956.7", "MASTER OT J032814.9+321956.7"),
])
def test_different_objects_differ(a: str, b: str) -> None:
    assert name_key(a) != name_key(b)
