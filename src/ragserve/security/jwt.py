"""Verify bearer JWTs from an identity provider and turn them into a `Principal`.

Deployments that already run an identity provider should not have to mint ragserve API
keys as well; a signed token that names the tenant and the scopes is enough. Accepting
tokens from outside is also the easiest place to get authentication wrong, so this
module is deliberately narrow:

- The accepted algorithms come from configuration only. The header's `alg` is checked
  against them before any cryptography runs, and `none` can never be configured. HS*
  and asymmetric algorithms may not be mixed: a verifier that accepts both would let a
  token HMAC-signed with the (public!) RSA key as the secret pass, the classic
  key-confusion attack. Keys are also checked against the algorithm they verify (an
  RSA key never verifies ES256, a P-384 key never verifies ES256).
- Configuration mistakes (short secret, weak RSA key, no key at all) fail when the
  verifier is built, with a ValueError that says what to fix, not on the first request.
- Every refusal is an `AuthenticationError` (401) whose message tells the caller what
  was wrong but never echoes the token or a key. PyJWT's own exception is not chained,
  since its text can quote fragments of the token.
- A JWKS file is re-read when it changes (mtime, size or inode), so keys rotate without a
  restart. A file that does not load keeps the previous keys: refusing every caller
  because of a half-written file would be worse than honouring keys that were valid a
  moment ago.
- Claims that grant (scopes) are filtered down to the scopes ragserve knows, so junk can
  only take rights away; claims that restrict (collections) are refused when malformed,
  since ignoring them would widen access.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidJTIError, InvalidSubjectError
from jwt.types import Options

from ragserve.errors import AuthenticationError
from ragserve.security.principal import SCOPES, Principal

log = logging.getLogger(__name__)

# RFC 7518 §3.2: an HMAC key must be at least as long as the hash output.
_HMAC_MIN_SECRET_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256"})
_EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1"}
_SUPPORTED = frozenset(_HMAC_MIN_SECRET_BYTES) | _RSA_ALGORITHMS | frozenset(_EC_CURVES)
_MIN_RSA_BITS = 2048
_MAX_LEEWAY_S = 300.0
_TENANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_KNOWN_SCOPES = frozenset(SCOPES)

_PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
# What identifies one version of the JWKS file: (mtime_ns, size, inode).
_FileStamp: TypeAlias = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class JwtConfig:
    """How tokens are checked. `JwtVerifier` validates it and says what to fix.

    Exactly one key source fits the algorithms: `secret` for HS*, `public_key_pem` or
    `jwks_path` (keys chosen by the token's `kid`) for RS*/PS*/ES*. `issuer` and
    `audience` are checked only when set. Claim names may be dotted paths: the whole
    name is tried as one key first ("https://example.com/claims.tenant"), then as a
    path into nested objects ("org.id").
    """

    algorithms: tuple[str, ...]
    secret: str | None = None
    public_key_pem: str | None = None
    jwks_path: Path | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway_s: float = 30.0
    tenant_claim: str = "tenant"
    scopes_claim: str = "scope"
    collections_claim: str = "collections"
    require_exp: bool = True
    max_token_bytes: int = 8192


@dataclass(frozen=True, slots=True)
class _Jwk:
    key: _PublicKey
    alg: str | None  # the JWK's own `alg`, which then is the only algorithm it verifies


class _JwksFile:
    """The keys of a JWKS file, re-read when the file changes."""

    def __init__(self, path: Path, algorithms: tuple[str, ...]) -> None:
        self._path = path
        self._algorithms = algorithms
        self._lock = threading.Lock()
        # Stamp first: a change racing the load then shows up as a newer stamp.
        self._stamp = _stamp(path)
        self._keys = _load_jwks(path, algorithms)

    def get(self, kid: str) -> _Jwk | None:
        self._refresh()
        return self._keys.get(kid)

    def _refresh(self) -> None:
        stamp = _stamp(self._path)
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:  # another thread reloaded it meanwhile
                return
            # Remember the stamp even when loading fails, so a broken file is reported
            # once and re-read only when it changes again.
            self._stamp = stamp
            try:
                self._keys = _load_jwks(self._path, self._algorithms)
            except ValueError as exc:
                log.warning("JWKS reload failed, keeping the previous keys: %s", exc)


class JwtVerifier:
    """Checks bearer tokens against one `JwtConfig`; safe to share between threads."""

    def __init__(self, config: JwtConfig) -> None:
        self._config = config
        self._key_source = _key_source(config)

    def verify(self, token: str) -> Principal:
        """The caller the token names, or AuthenticationError saying why it is refused."""
        alg, header = self._checked_header(token)
        claims = self._decode(token, self._key_for(alg, header), alg)
        return self._principal(claims)

    def _checked_header(self, token: str) -> tuple[str, dict[str, Any]]:
        limit = self._config.max_token_bytes
        # An ASCII string has as many bytes as characters; anything else is refused below.
        if len(token) > limit:
            raise AuthenticationError(f"token too large (limit {limit} bytes)")
        if not token.isascii():
            raise AuthenticationError("token is malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationError("token is malformed") from None
        alg = header.get("alg")
        if isinstance(alg, str) and alg.lower() == "none":
            raise AuthenticationError('unsigned tokens (alg "none") are not accepted')
        if not isinstance(alg, str) or alg not in self._config.algorithms:
            accepted = ", ".join(self._config.algorithms)
            raise AuthenticationError(f"token algorithm is not accepted (accepted: {accepted})")
        return alg, header

    def _key_for(self, alg: str, header: dict[str, Any]) -> bytes | _PublicKey:
        source = self._key_source
        if not isinstance(source, _JwksFile):
            return source
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthenticationError("token has no key id (kid) to choose its key with")
        jwk = source.get(kid)
        if jwk is None:
            raise AuthenticationError("token key id (kid) is not known")
        if (jwk.alg is not None and jwk.alg != alg) or not _key_fits(alg, jwk.key):
            raise AuthenticationError("token algorithm does not match its key")
        return jwk.key

    def _decode(self, token: str, key: bytes | _PublicKey, alg: str) -> dict[str, Any]:
        config = self._config
        options: Options = {
            "require": ["exp"] if config.require_exp else [],
            "verify_aud": config.audience is not None,
        }
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=config.audience,
                issuer=config.issuer,
                leeway=config.leeway_s,
                options=options,
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationError("token is not yet valid (nbf or iat is in the future)") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError("token audience does not match") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationError("token issuer does not match") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationError(f"token has no {exc.claim!r} claim") from None
        except jwt.InvalidIssuedAtError:
            raise AuthenticationError("token 'iat' claim is not a number") from None
        except (InvalidSubjectError, InvalidJTIError):
            raise AuthenticationError("token 'sub' and 'jti' claims must be strings") from None
        except jwt.InvalidSignatureError:
            raise AuthenticationError("token signature is invalid") from None
        except jwt.DecodeError:
            raise AuthenticationError("token is malformed") from None
        except jwt.PyJWTError:
            raise AuthenticationError("token is invalid") from None

    def _principal(self, claims: dict[str, Any]) -> Principal:
        config = self._config
        tenant = _claim(claims, config.tenant_claim)
        if tenant is None:
            raise AuthenticationError(f"token has no tenant claim ({config.tenant_claim!r})")
        if not isinstance(tenant, str) or not _TENANT_RE.fullmatch(tenant):
            raise AuthenticationError(
                f"token tenant claim ({config.tenant_claim!r}) is not a valid tenant id: "
                "1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        subject = next((v for v in (claims.get("sub"), claims.get("jti")) if isinstance(v, str) and v), None)
        if subject is None:
            raise AuthenticationError("token has neither a subject (sub) nor a token id (jti)")
        return Principal(
            tenant=tenant,
            scopes=_scopes(_claim(claims, config.scopes_claim)),
            kind="jwt",
            key_id=f"jwt:{subject}",
            collections=_collections(_claim(claims, config.collections_claim), config.collections_claim),
        )


def _key_source(config: JwtConfig) -> bytes | _PublicKey | _JwksFile:
    """What verifies signatures under `config`; a ValueError that says what to fix when `config` is unsound."""
    algorithms = config.algorithms
    if isinstance(algorithms, str) or not algorithms:
        raise ValueError("JwtConfig.algorithms must be a non-empty tuple of names, e.g. ('RS256',)")
    for alg in algorithms:
        if alg.lower() == "none":
            raise ValueError('JWT algorithm "none" accepts unsigned tokens and is never allowed')
        if alg not in _SUPPORTED:
            raise ValueError(f"unsupported JWT algorithm {alg!r}; choose from {', '.join(sorted(_SUPPORTED))}")
    if not 0 <= config.leeway_s <= _MAX_LEEWAY_S:
        raise ValueError(f"JWT leeway_s must be between 0 and {_MAX_LEEWAY_S:g} seconds, got {config.leeway_s}")
    if config.max_token_bytes <= 0:
        raise ValueError("JWT max_token_bytes must be positive")
    hmac_algorithms = [alg for alg in algorithms if alg in _HMAC_MIN_SECRET_BYTES]
    if not hmac_algorithms:
        return _asymmetric_key_source(config)
    if len(hmac_algorithms) != len(algorithms):
        raise ValueError(
            "JWT algorithms mix HS* with asymmetric ones: a verifier accepting both lets a token "
            "HMAC-signed with the public key pass (key confusion); configure one kind only"
        )
    return _checked_secret(config, hmac_algorithms)


def _checked_secret(config: JwtConfig, hmac_algorithms: list[str]) -> bytes:
    if config.public_key_pem is not None or config.jwks_path is not None:
        raise ValueError("JWT public_key_pem and jwks_path are for RS*/PS*/ES*; HS* algorithms use only secret")
    if config.secret is None:
        raise ValueError(f"JWT algorithms {', '.join(hmac_algorithms)} need a secret")
    needed = max(_HMAC_MIN_SECRET_BYTES[alg] for alg in hmac_algorithms)
    if len(config.secret.encode()) < needed:
        raise ValueError(f"JWT secret must be at least {needed} bytes for {', '.join(hmac_algorithms)}")
    try:
        jwt.get_algorithm_by_name(hmac_algorithms[0]).prepare_key(config.secret)
    except jwt.InvalidKeyError:
        # Someone pasted a public key here: anyone holding it could sign tokens.
        raise ValueError("JWT secret looks like a PEM, SSH or DER key; HS* needs a random shared secret") from None
    return config.secret.encode()


def _asymmetric_key_source(config: JwtConfig) -> _PublicKey | _JwksFile:
    if config.secret is not None:
        raise ValueError("JWT secret is only for HS* algorithms; RS*/PS*/ES* use public_key_pem or jwks_path")
    if config.public_key_pem is not None and config.jwks_path is not None:
        raise ValueError("set JWT public_key_pem or jwks_path, not both")
    if config.public_key_pem is not None:
        return _load_pem(config.public_key_pem, config.algorithms)
    if config.jwks_path is not None:
        return _JwksFile(config.jwks_path, config.algorithms)
    raise ValueError(f"JWT algorithms {', '.join(config.algorithms)} need public_key_pem or jwks_path")


def _load_pem(pem: str, algorithms: tuple[str, ...]) -> _PublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("JWT public_key_pem is not a PEM public key (-----BEGIN PUBLIC KEY-----)") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError("JWT public_key_pem must be an RSA or EC public key")
    _check_strength(key, "JWT public_key_pem")
    for alg in algorithms:
        if not _key_fits(alg, key):
            raise ValueError(f"JWT public_key_pem ({_describe(key)}) cannot verify {alg}")
    return key


def _load_jwks(path: Path, algorithms: tuple[str, ...]) -> dict[str, _Jwk]:
    """The signing keys of a JWKS file usable with `algorithms`, by kid.

    Entries that are not for us (encryption keys, other key types, other algorithms,
    keys without a kid) are skipped; entries that are wrong (private key material,
    weak or broken keys, a kid used twice) make the whole file refused.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read JWKS file {path}: {exc.strerror}") from None
    except ValueError:
        raise ValueError(f"JWKS file {path} is not valid JSON") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f'JWKS file {path} has no "keys" list')
    keys: dict[str, _Jwk] = {}
    for entry in entries:
        parsed = _parse_jwk(entry, algorithms, path)
        if parsed is None:
            continue
        kid, jwk = parsed
        if kid in keys:
            raise ValueError(f"JWKS file {path} has two keys with kid {kid!r}")
        keys[kid] = jwk
    if not keys:
        raise ValueError(f"JWKS file {path} has no signing key with a kid usable with {', '.join(algorithms)}")
    return keys


def _parse_jwk(entry: Any, algorithms: tuple[str, ...], path: Path) -> tuple[str, _Jwk] | None:
    if not isinstance(entry, dict):
        return None
    kid = entry.get("kid")
    kty = entry.get("kty")
    alg = entry.get("alg")
    if not isinstance(kid, str) or not kid or entry.get("use", "sig") != "sig" or kty not in ("RSA", "EC"):
        return None
    if alg is not None and alg not in algorithms:
        return None
    if "d" in entry:
        raise ValueError(f"JWKS key {kid!r} in {path} holds private key material; publish public keys only")
    try:
        key = RSAAlgorithm.from_jwk(entry) if kty == "RSA" else ECAlgorithm.from_jwk(entry)
    except (jwt.PyJWTError, ValueError, TypeError):
        raise ValueError(f"JWKS key {kid!r} in {path} is not a valid {kty} public key") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError(f"JWKS key {kid!r} in {path} is not a public key")
    _check_strength(key, f"JWKS key {kid!r} in {path}")
    if not any(_key_fits(candidate, key) for candidate in ((alg,) if alg else algorithms)):
        return None
    return kid, _Jwk(key=key, alg=alg)


def _check_strength(key: _PublicKey, what: str) -> None:
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < _MIN_RSA_BITS:
        raise ValueError(f"{what} is a {key.key_size}-bit RSA key; at least {_MIN_RSA_BITS} bits are required")


def _key_fits(alg: str, key: _PublicKey) -> bool:
    if alg in _RSA_ALGORITHMS:
        return isinstance(key, rsa.RSAPublicKey)
    return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == _EC_CURVES.get(alg)


def _describe(key: _PublicKey) -> str:
    return f"RSA {key.key_size}-bit" if isinstance(key, rsa.RSAPublicKey) else f"EC {key.curve.name}"


def _stamp(path: Path) -> _FileStamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _claim(claims: dict[str, Any], name: str) -> Any:
    """The claim's value, None when absent: `name` as one key first, else as a dotted path."""
    if name in claims:
        return claims[name]
    node: Any = claims
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _scopes(raw: Any) -> frozenset[str]:
    # A space-separated string (RFC 8693 `scope`) or a list; anything else grants nothing.
    if isinstance(raw, str):
        names = raw.split()
    elif isinstance(raw, list):
        names = [name for name in raw if isinstance(name, str)]
    else:
        names = []
    return frozenset(names) & _KNOWN_SCOPES


def _collections(raw: Any, claim: str) -> frozenset[str] | None:
    if raw is None:
        return None
    if isinstance(raw, list) and all(isinstance(name, str) for name in raw):
        return frozenset(raw)
    raise AuthenticationError(f"token {claim!r} claim must be a list of collection names")
