"""DPoP (RFC 9449): the app's own key, and a fresh proof for each request.

With DPoP, Koppel binds the app's tokens to this key: a token that leaks is useless
without the private key. The key is made once and kept (encrypted) in the store.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from urllib.parse import urlsplit, urlunsplit

from joserfc import jws
from joserfc.jwk import ECKey

from examples.partner_app.store import Store

KEY_NAME = "dpop_key"


class DPoPKey:
    def __init__(self, store: Store) -> None:
        kept = store.secret(KEY_NAME)
        if kept is None:
            key = ECKey.generate_key("P-256")
            store.save_secret(KEY_NAME, json.dumps(key.as_dict(private=True)))
        else:
            key = ECKey.import_key(json.loads(kept))
        self._key = key
        self._public = key.as_dict(private=False)

    @property
    def thumbprint(self) -> str:
        """The key's RFC 7638 thumbprint: `dpop_jkt` in the authorization request."""
        return str(self._key.thumbprint())

    def proof(self, method: str, url: str, access_token: str | None = None) -> str:
        """A proof for one request: its method, its URL without query, now, a unique id,
        and at a resource server the hash of the access token (`ath`)."""
        scheme, netloc, path, _, _ = urlsplit(url)
        claims = {"jti": secrets.token_urlsafe(16), "htm": method,
                  "htu": urlunsplit((scheme, netloc, path, "", "")), "iat": int(time.time())}
        if access_token is not None:
            digest = hashlib.sha256(access_token.encode()).digest()
            claims["ath"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self._public}
        return jws.serialize_compact(header, json.dumps(claims), self._key)
