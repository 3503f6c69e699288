"""Entity-tag comparison as RFC 9110 section 8.8.3.2 and 13.1 define it."""

from __future__ import annotations

from shared.etag import etag_of, if_match_holds, if_none_match_hits

TAG = '"0123456789abcdef0123456789abcdef"'


def test_if_match_compares_strongly() -> None:
    assert if_match_holds(None, TAG)  # optional: absent holds
    assert if_match_holds("*", TAG) and if_match_holds(" * ", TAG)
    assert if_match_holds(TAG, TAG)
    assert if_match_holds(f'"other", {TAG}', TAG) and if_match_holds(f'"a",{TAG} ,"b"', TAG)
    assert not if_match_holds(f"W/{TAG}", TAG)  # a weak tag never matches strongly
    assert not if_match_holds('"other"', TAG)
    assert not if_match_holds(TAG.strip('"'), TAG)  # unquoted: no entity tag at all
    assert not if_match_holds(f"{TAG} garbage", TAG)
    assert not if_match_holds("", TAG)


def test_if_none_match_compares_weakly() -> None:
    assert if_none_match_hits(TAG, TAG) and if_none_match_hits(f"W/{TAG}", TAG)
    assert if_none_match_hits("*", TAG)
    assert not if_none_match_hits(None, TAG) and not if_none_match_hits('"other"', TAG)


def test_the_etag_digests_the_representation() -> None:
    assert etag_of({"a": 1, "b": [1, 2]}) == etag_of({"b": [1, 2], "a": 1})
    assert etag_of({"a": 1}) != etag_of({"a": 2})
