"""JwtVerifier: valid HS256/RS256/ES256 tokens, every refusal and its message, key confusion, JWKS rotation.

Keys are generated here (RSA 2048, EC P-256) and JWKS files written to tmp_path, so the
tests need no fixtures on disk and no network.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from ragserve.errors import AuthenticationError
from ragserve.security.jwt import JwtConfig, JwtVerifier
from ragserve.security.principal import Principal

SECRET = "s3cret-" + "x" * 41  # 48 bytes: enough for HS256 and HS384, not HS512
ISSUER = "https://id.example.com/"
AUDIENCE = "ragserve"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def public_jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str, **extra: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig", **extra}


def write_jwks(path: Path, *keys: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"keys": list(keys)}), encoding="utf-8")
    return path


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "alice",
        "tenant": "acme",
        "scope": "query ingest",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 300,
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def hs_token(payload: dict[str, Any], secret: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(payload, secret, algorithm=alg)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value).encode())


def hs_config(**overrides: Any) -> JwtConfig:
    return replace(JwtConfig(algorithms=("HS256",), secret=SECRET, issuer=ISSUER, audience=AUDIENCE), **overrides)


def refused(verifier: JwtVerifier, token: str, match: str) -> str:
    """Verification fails with a 401 whose message matches and quotes neither token nor secret."""
    with pytest.raises(AuthenticationError, match=match) as caught:
        verifier.verify(token)
    message = caught.value.message
    assert caught.value.type == "unauthenticated"
    assert SECRET not in message
    for part in token.split("."):
        assert len(part) < 8 or part not in message
    return message


# -- valid tokens -----------------------------------------------------------------------------


def test_hs256_token_gives_the_principal() -> None:
    token = hs_token(claims(scope="query ingest fly-to-the-moon"))

    principal = JwtVerifier(hs_config()).verify(token)

    assert principal == Principal(
        tenant="acme", scopes=frozenset({"query", "ingest"}), kind="jwt", key_id="jwt:alice", collections=None
    )


def test_rs256_token_from_pem_with_collections_and_list_scopes(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(JwtConfig(algorithms=("RS256",), public_key_pem=public_pem(rsa_key), audience=AUDIENCE))
    token = jwt.encode(claims(scope=["admin", 7, "query"], collections=["docs", "faq"]), rsa_key, algorithm="RS256")

    principal = verifier.verify(token)

    assert principal.scopes == frozenset({"admin", "query", "ingest"})  # admin implies the others
    assert principal.collections == frozenset({"docs", "faq"})
    assert principal.tenant == "acme"


def test_es256_token_from_jwks(tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey) -> None:
    jwks = write_jwks(tmp_path / "jwks.json", public_jwk(ec_key, "ec-1", alg="ES256"))
    verifier = JwtVerifier(JwtConfig(algorithms=("ES256",), jwks_path=jwks, issuer=ISSUER))
    token = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "ec-1"})

    assert verifier.verify(token).key_id == "jwt:alice"


def test_key_id_falls_back_to_jti_and_unknown_scopes_grant_nothing() -> None:
    token = hs_token(claims(sub=None, jti="tok-42", scope="read write"))

    principal = JwtVerifier(hs_config()).verify(token)

    assert principal.key_id == "jwt:tok-42"
    assert principal.scopes == frozenset()


def test_empty_collections_list_allows_no_collection() -> None:
    principal = JwtVerifier(hs_config()).verify(hs_token(claims(collections=[])))

    assert principal.collections == frozenset()
    assert not principal.may_use("docs")


def test_audience_and_issuer_are_not_checked_when_not_configured() -> None:
    verifier = JwtVerifier(hs_config(issuer=None, audience=None))

    assert verifier.verify(hs_token(claims(iss="someone-else", aud="other"))).tenant == "acme"


def test_exp_may_be_omitted_when_not_required() -> None:
    verifier = JwtVerifier(hs_config(require_exp=False))

    assert verifier.verify(hs_token(claims(exp=None))).tenant == "acme"


# -- tenant claim paths -----------------------------------------------------------------------


def test_nested_tenant_claim() -> None:
    verifier = JwtVerifier(hs_config(tenant_claim="org.id"))
    token = hs_token(claims(tenant=None, org={"id": "globex", "name": "Globex"}))

    assert verifier.verify(token).tenant == "globex"


def test_dotted_claim_name_is_first_a_plain_key() -> None:
    name = "https://example.com/claims.tenant"
    verifier = JwtVerifier(hs_config(tenant_claim=name))

    assert verifier.verify(hs_token(claims(tenant=None, **{name: "initech"}))).tenant == "initech"


def test_nested_scopes_claim() -> None:
    verifier = JwtVerifier(hs_config(scopes_claim="realm_access.roles"))
    token = hs_token(claims(scope=None, realm_access={"roles": ["ingest", "offline_access"]}))

    assert verifier.verify(token).scopes == frozenset({"ingest"})


@pytest.mark.parametrize(
    ("tenant", "match"),
    [
        (None, "no tenant claim"),
        ("", "not a valid tenant id"),
        ("../etc", "not a valid tenant id"),
        ("acme\n", "not a valid tenant id"),
        ("a" * 129, "not a valid tenant id"),
        (42, "not a valid tenant id"),
        (["acme"], "not a valid tenant id"),
    ],
)
def test_missing_or_invalid_tenant_is_refused(tenant: Any, match: str) -> None:
    payload = claims(tenant=None)
    if tenant is not None:
        payload["tenant"] = tenant

    refused(JwtVerifier(hs_config()), hs_token(payload), match)


def test_longest_valid_tenant_is_accepted() -> None:
    tenant = "A" + "b.-_9" * 25 + "zz"  # 128 characters

    assert JwtVerifier(hs_config()).verify(hs_token(claims(tenant=tenant))).tenant == tenant


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "not-a-token", "a.b.c", "e30.e30", "e30.e30.e30.e30", "ëëë.ëëë.ëëë"])
def test_malformed_token_is_refused(token: str) -> None:
    refused(JwtVerifier(hs_config()), token, "^token is malformed$")


def test_header_that_is_not_json_is_malformed() -> None:
    token = b64url(b"{nope") + "." + b64json(claims()) + ".c2ln"

    refused(JwtVerifier(hs_config()), token, "^token is malformed$")


def test_bad_signature_is_refused() -> None:
    token = hs_token(claims(), secret="another-secret-that-is-long-enough-0123456789")

    refused(JwtVerifier(hs_config()), token, "^token signature is invalid$")


def test_tampered_payload_is_refused() -> None:
    header, _, signature = hs_token(claims()).split(".")
    forged = f"{header}.{b64json(claims(scope='admin'))}.{signature}"

    refused(JwtVerifier(hs_config()), forged, "^token signature is invalid$")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(alg: str) -> None:
    token = f"{b64json({'alg': alg, 'typ': 'JWT'})}.{b64json(claims(scope='admin'))}."

    refused(JwtVerifier(hs_config()), token, 'alg "none"')


def test_alg_not_configured_is_refused_before_verifying() -> None:
    token = hs_token(claims(), alg="HS384")  # correct secret, wrong algorithm

    refused(JwtVerifier(hs_config()), token, r"algorithm is not accepted \(accepted: HS256\)")


def test_missing_alg_is_refused() -> None:
    header = b64json({"typ": "JWT"})
    payload = b64json(claims())
    signature = b64url(hmac.new(SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest())

    refused(JwtVerifier(hs_config()), f"{header}.{payload}.{signature}", "algorithm is not accepted")


def test_expired_token_is_refused() -> None:
    now = int(time.time())

    refused(JwtVerifier(hs_config()), hs_token(claims(iat=now - 600, exp=now - 120)), "^token expired$")


def test_token_not_yet_valid_is_refused() -> None:
    token = hs_token(claims(nbf=int(time.time()) + 120))

    refused(JwtVerifier(hs_config()), token, "not yet valid")


def test_token_issued_in_the_future_is_refused() -> None:
    token = hs_token(claims(iat=int(time.time()) + 120))

    refused(JwtVerifier(hs_config()), token, "not yet valid")


def test_wrong_issuer_is_refused() -> None:
    refused(JwtVerifier(hs_config()), hs_token(claims(iss="https://evil.example/")), "^token issuer does not match$")


def test_missing_issuer_is_refused_when_configured() -> None:
    refused(JwtVerifier(hs_config()), hs_token(claims(iss=None)), "no 'iss' claim")


def test_wrong_audience_is_refused() -> None:
    refused(JwtVerifier(hs_config()), hs_token(claims(aud=["other", "api"])), "^token audience does not match$")


def test_missing_audience_is_refused_when_configured() -> None:
    refused(JwtVerifier(hs_config()), hs_token(claims(aud=None)), "no 'aud' claim")


def test_missing_exp_is_refused_when_required() -> None:
    refused(JwtVerifier(hs_config()), hs_token(claims(exp=None)), "no 'exp' claim")


def test_token_too_large_is_refused() -> None:
    token = hs_token(claims(padding="p" * 9000))

    refused(JwtVerifier(hs_config()), token, r"too large \(limit 8192 bytes\)")


def test_token_without_subject_or_id_is_refused() -> None:
    refused(JwtVerifier(hs_config()), hs_token(claims(sub=None)), "neither a subject")


@pytest.mark.parametrize("collections", ["docs", [1, 2], {"docs": True}])
def test_malformed_collections_claim_is_refused_not_ignored(collections: Any) -> None:
    refused(JwtVerifier(hs_config()), hs_token(claims(collections=collections)), "list of collection names")


# -- leeway -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("expired_s_ago", "leeway_s", "ok"), [(10, 30.0, True), (60, 30.0, False), (10, 0.0, False)])
def test_leeway_on_exp(expired_s_ago: int, leeway_s: float, ok: bool) -> None:
    now = int(time.time())
    verifier = JwtVerifier(hs_config(leeway_s=leeway_s))
    token = hs_token(claims(iat=now - 600, exp=now - expired_s_ago))

    if ok:
        assert verifier.verify(token).tenant == "acme"
    else:
        refused(verifier, token, "^token expired$")


def test_leeway_on_nbf() -> None:
    verifier = JwtVerifier(hs_config(leeway_s=30.0))

    assert verifier.verify(hs_token(claims(nbf=int(time.time()) + 10))).tenant == "acme"
    refused(verifier, hs_token(claims(nbf=int(time.time()) + 60)), "not yet valid")


# -- algorithm confusion ----------------------------------------------------------------------


def hs256_signed_with(secret: bytes, payload: dict[str, Any], kid: str | None = None) -> str:
    """An HS256 token made by hand, as an attacker holding only the public key would."""
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    return f"{signing_input}.{b64url(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def test_rs256_verifier_refuses_hs256_token_signed_with_the_public_key(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = public_pem(rsa_key)
    verifier = JwtVerifier(JwtConfig(algorithms=("RS256",), public_key_pem=pem))
    forged = hs256_signed_with(pem.encode(), claims(scope="admin"))

    message = refused(verifier, forged, r"algorithm is not accepted \(accepted: RS256\)")
    assert "BEGIN PUBLIC KEY" not in message


def test_jwks_verifier_refuses_hs256_token_signed_with_the_public_key(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    jwk = public_jwk(rsa_key, "rsa-1")
    verifier = JwtVerifier(JwtConfig(algorithms=("RS256",), jwks_path=write_jwks(tmp_path / "jwks.json", jwk)))

    for secret in (public_pem(rsa_key).encode(), json.dumps(jwk).encode()):
        refused(verifier, hs256_signed_with(secret, claims(scope="admin"), kid="rsa-1"), "algorithm is not accepted")


def test_jwks_key_only_verifies_its_own_algorithm(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    jwks = write_jwks(
        tmp_path / "jwks.json", public_jwk(rsa_key, "rsa-1", alg="RS256"), public_jwk(ec_key, "ec-1", alg="ES256")
    )
    verifier = JwtVerifier(JwtConfig(algorithms=("RS256", "PS256", "ES256"), jwks_path=jwks))

    # The token names the EC key but is signed with RSA (ES256 header and RS256 kid alike).
    wrong_kid = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "ec-1"})
    other_alg = jwt.encode(claims(), rsa_key, algorithm="PS256", headers={"kid": "rsa-1"})

    refused(verifier, wrong_kid, "does not match its key")
    refused(verifier, other_alg, "does not match its key")
    assert verifier.verify(jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "ec-1"})).tenant == "acme"


# -- JWKS: kid, rotation, broken files --------------------------------------------------------


def test_unknown_and_missing_kid_are_refused(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    jwks = write_jwks(tmp_path / "jwks.json", public_jwk(rsa_key, "rsa-1"))
    verifier = JwtVerifier(JwtConfig(algorithms=("RS256",), jwks_path=jwks))

    refused(verifier, jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "rsa-9"}), "kid.*not known")
    refused(verifier, jwt.encode(claims(), rsa_key, algorithm="RS256"), "no key id")


def bump_mtime(path: Path) -> None:
    """Move the file's mtime forward, so a rewrite within one timestamp tick is still seen."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_key_added_to_the_jwks_file_is_picked_up(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    path = write_jwks(tmp_path / "jwks.json", public_jwk(rsa_key, "old"))
    verifier = JwtVerifier(JwtConfig(algorithms=("RS256", "ES256"), jwks_path=path))
    rotated = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "new"})
    refused(verifier, rotated, "not known")

    write_jwks(path, public_jwk(rsa_key, "old"), public_jwk(ec_key, "new"))
    bump_mtime(path)

    assert verifier.verify(rotated).tenant == "acme"
    assert verifier.verify(jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "old"})).tenant == "acme"


def test_key_removed_from_the_jwks_file_stops_verifying(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    path = write_jwks(tmp_path / "jwks.json", public_jwk(rsa_key, "old"), public_jwk(ec_key, "new"))
    verifier = JwtVerifier(JwtConfig(algorithms=("RS256", "ES256"), jwks_path=path))
    retired = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "old"})
    assert verifier.verify(retired).tenant == "acme"

    write_jwks(path, public_jwk(ec_key, "new"))
    bump_mtime(path)

    refused(verifier, retired, "not known")


def test_broken_jwks_file_keeps_the_previous_keys(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_jwks(tmp_path / "jwks.json", public_jwk(rsa_key, "rsa-1"))
    verifier = JwtVerifier(JwtConfig(algorithms=("RS256",), jwks_path=path))
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})

    path.write_text('{"keys": [', encoding="utf-8")
    bump_mtime(path)
    with caplog.at_level(logging.WARNING, logger="ragserve.security.jwt"):
        assert verifier.verify(token).tenant == "acme"
        assert verifier.verify(token).tenant == "acme"
    assert [r.getMessage() for r in caplog.records if "JWKS reload failed" in r.getMessage()] == [
        f"JWKS reload failed, keeping the previous keys: JWKS file {path} is not valid JSON"
    ]

    path.unlink()
    assert verifier.verify(token).tenant == "acme"


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"algorithms": ()}, "non-empty tuple"),
        ({"algorithms": "HS256"}, "non-empty tuple"),
        ({"algorithms": ("none",)}, '"none" accepts unsigned tokens'),
        ({"algorithms": ("HS256", "None")}, '"none" accepts unsigned tokens'),
        ({"algorithms": ("hs256",)}, "unsupported JWT algorithm 'hs256'"),
        ({"algorithms": ("ES512",)}, "unsupported JWT algorithm 'ES512'"),
        ({"algorithms": ("HS256", "RS256")}, "key confusion"),
        ({"secret": None}, "need a secret"),
        ({"secret": "x" * 31}, "at least 32 bytes"),
        ({"algorithms": ("HS512",)}, "at least 64 bytes for HS512"),
        ({"jwks_path": Path("jwks.json")}, "HS\\* algorithms use only secret"),
        ({"leeway_s": 301.0}, "between 0 and 300"),
        ({"leeway_s": -1.0}, "between 0 and 300"),
        ({"leeway_s": float("nan")}, "between 0 and 300"),
        ({"max_token_bytes": 0}, "must be positive"),
    ],
)
def test_invalid_hs_config_is_refused(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        JwtVerifier(hs_config(**overrides))


def test_public_key_as_hmac_secret_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match="looks like a PEM"):
        JwtVerifier(JwtConfig(algorithms=("HS256",), secret=public_pem(rsa_key)))


def test_asymmetric_config_needs_exactly_one_key_source(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    pem = public_pem(rsa_key)
    jwks = write_jwks(tmp_path / "jwks.json", public_jwk(rsa_key, "rsa-1"))

    with pytest.raises(ValueError, match="need public_key_pem or jwks_path"):
        JwtVerifier(JwtConfig(algorithms=("RS256",)))
    with pytest.raises(ValueError, match="not both"):
        JwtVerifier(JwtConfig(algorithms=("RS256",), public_key_pem=pem, jwks_path=jwks))
    with pytest.raises(ValueError, match="secret is only for HS"):
        JwtVerifier(JwtConfig(algorithms=("RS256",), public_key_pem=pem, secret=SECRET))


def test_unusable_public_key_pem_is_refused(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> None:
    private_pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    p384 = ec.generate_private_key(ec.SECP384R1())

    with pytest.raises(ValueError, match="not a PEM public key") as caught:
        JwtVerifier(JwtConfig(algorithms=("RS256",), public_key_pem=private_pem))
    assert "PRIVATE" not in str(caught.value)
    with pytest.raises(ValueError, match="not a PEM public key"):
        JwtVerifier(JwtConfig(algorithms=("RS256",), public_key_pem="garbage"))
    with pytest.raises(ValueError, match="1024-bit RSA key"):
        JwtVerifier(JwtConfig(algorithms=("RS256",), public_key_pem=public_pem(weak)))
    with pytest.raises(ValueError, match=r"\(RSA 2048-bit\) cannot verify ES256"):
        JwtVerifier(JwtConfig(algorithms=("RS256", "ES256"), public_key_pem=public_pem(rsa_key)))
    with pytest.raises(ValueError, match=r"\(EC secp384r1\) cannot verify ES256"):
        JwtVerifier(JwtConfig(algorithms=("ES256",), public_key_pem=public_pem(p384)))
    # The right key for each algorithm family is accepted.
    JwtVerifier(JwtConfig(algorithms=("ES256",), public_key_pem=public_pem(ec_key)))
    JwtVerifier(JwtConfig(algorithms=("ES384",), public_key_pem=public_pem(p384)))


def test_unusable_jwks_file_is_refused(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    path = tmp_path / "jwks.json"

    def build() -> JwtVerifier:
        return JwtVerifier(JwtConfig(algorithms=("RS256",), jwks_path=path))

    with pytest.raises(ValueError, match="cannot read JWKS file"):
        build()
    path.write_text("not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        build()
    path.write_text('{"kty": "RSA"}', encoding="utf-8")
    with pytest.raises(ValueError, match='no "keys" list'):
        build()
    private = RSAAlgorithm.to_jwk(rsa_key, as_dict=True)
    write_jwks(path, {**private, "kid": "leaked"})
    with pytest.raises(ValueError, match="private key material") as caught:
        build()
    assert str(private["d"]) not in str(caught.value)
    write_jwks(path, public_jwk(rsa_key, "a"), public_jwk(rsa_key, "a"))
    with pytest.raises(ValueError, match="two keys with kid 'a'"):
        build()
    write_jwks(path, {**public_jwk(rsa_key, "a"), "n": "!!"})
    with pytest.raises(ValueError, match=r"'a' .* is not a valid RSA public key"):
        build()
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    write_jwks(path, public_jwk(weak, "weak"))
    with pytest.raises(ValueError, match="1024-bit RSA key"):
        build()


def test_jwks_entries_not_for_us_are_skipped(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    not_for_us: list[Any] = [
        {"kty": "oct", "k": b64url(SECRET.encode()), "kid": "hmac"},
        public_jwk(rsa_key, "enc", use="enc"),
        public_jwk(rsa_key, "other-alg", alg="RS512"),
        {k: v for k, v in public_jwk(rsa_key, "x").items() if k != "kid"},
        public_jwk(ec_key, "ec"),  # fits no configured algorithm
        "not a key",
    ]
    path = write_jwks(tmp_path / "jwks.json", *not_for_us)

    with pytest.raises(ValueError, match="no signing key with a kid usable with RS256"):
        JwtVerifier(JwtConfig(algorithms=("RS256",), jwks_path=path))

    write_jwks(path, *not_for_us, public_jwk(rsa_key, "good"))
    verifier = JwtVerifier(JwtConfig(algorithms=("RS256",), jwks_path=path))
    for kid in ("hmac", "enc", "other-alg", "ec"):
        refused(verifier, jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": kid}), "not known")
    assert verifier.verify(jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "good"})).tenant == "acme"
