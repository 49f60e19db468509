"""The notifier's record of which login each socket belongs to: what a revocation or an expiry ends, and what a
fresh token (`auth.refresh`) may change."""
from __future__ import annotations

import json

from reportflow_common.tokens import read_revocation
from reportflow_notifier.sessions import OpenSockets


def claims(user="u1", login="L1", jti="j1", exp=100):
    return {"sub": user, "sid": login, "jti": jti, "exp": exp}


def test_a_revocation_names_the_sockets_of_its_login_or_of_its_one_token():
    sockets = OpenSockets()
    sockets.add("a", claims(login="L1", jti="j1"))
    sockets.add("b", claims(login="L1", jti="j2"))
    sockets.add("c", claims(login="L2", jti="j3"))
    assert sorted(sockets.revoked("L1", "j1")) == ["a", "b"]
    assert sockets.revoked(None, "j3") == ["c"]
    assert sockets.revoked(None, None) == [] and sockets.revoked("L9", "j9") == []


def test_expiry_follows_the_latest_token_and_a_socket_is_ended_once():
    sockets = OpenSockets()
    sockets.add("a", claims(exp=100))
    sockets.add("b", claims(exp=100))
    assert sockets.renew("a", claims(jti="j2", exp=200))
    assert sockets.expired(99.9) == []
    assert sockets.expired(100) == ["b"]
    assert sockets.forget("b") is not None and sockets.forget("b") is None  # ended once
    assert sockets.expired(150) == []
    assert sockets.expired(200) == ["a"]


def test_a_fresh_token_of_another_user_changes_nothing():
    sockets = OpenSockets()
    sockets.add("a", claims(user="alice", login="L1", exp=100))
    assert not sockets.renew("a", claims(user="bob", login="L2", exp=500))
    assert not sockets.renew("gone", claims(user="alice"))
    assert sockets.expired(100) == ["a"]
    assert sockets.revoked("L2", None) == []


def test_a_renewed_socket_belongs_to_the_fresh_tokens_login():
    sockets = OpenSockets()
    sockets.add("a", claims(login="L1"))
    assert sockets.renew("a", claims(login="L2", jti="j2"))
    assert sockets.revoked("L1", "j1") == [] and sockets.revoked("L2", None) == ["a"]


def test_revocation_messages_are_read_defensively():
    assert read_revocation(json.dumps({"login": "L", "jti": "j", "reason": "logged_out"})) == ("L", "j", "logged_out")
    assert read_revocation(json.dumps({"login": None, "jti": 5, "reason": "revoked"})) == (None, None, "revoked")
    for raw in (b"not json", b"[]", json.dumps({"login": "L"}), None):
        assert read_revocation(raw) is None
