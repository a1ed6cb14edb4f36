"""Turning a request's credentials into a `Principal`: API keys, JWTs, or nobody in development.

Credentials come as `Authorization: Bearer <API key or JWT>` or `X-API-Key: <API key>`.
What they are is decided by their shape: API keys start with `rsk_`; anything else is
treated as a JWT where JWTs are accepted. The bootstrap admin key
(`RAGSERVE_ADMIN_API_KEY`) is compared in constant time and grants `admin` over every
tenant, so the first real keys can be created.
"""

from __future__ import annotations

import hashlib
import hmac

from ragserve.errors import AuthenticationError, ConfigurationError
from ragserve.observability.metrics import get_metrics
from ragserve.relational.database import Database
from ragserve.security.jwt import JwtConfig, JwtVerifier
from ragserve.security.keys import PREFIX, ApiKeys
from ragserve.security.principal import SCOPES, Principal
from ragserve.settings import Settings

ADMIN_KEY_ID = "admin"
_MAX_CREDENTIAL = 8192


class Authenticator:
    def __init__(
        self,
        *,
        mode: str,
        default_tenant: str,
        keys: ApiKeys,
        jwt: JwtVerifier | None = None,
        admin_key: str | None = None,
    ) -> None:
        self.mode = mode
        self.keys = keys
        self.jwt = jwt
        self._admin_digest = None if admin_key is None else _sha256(admin_key)
        self.anonymous = Principal(default_tenant, frozenset(SCOPES), "anonymous", "anonymous")
        self.operator = Principal(default_tenant, frozenset(SCOPES), "api_key", ADMIN_KEY_ID, operator=True)

    @classmethod
    def from_settings(cls, settings: Settings, db: Database) -> Authenticator:
        pepper = settings.api_key_pepper.get_secret_value().encode() if settings.api_key_pepper else b""
        return cls(
            mode=settings.auth_mode,
            default_tenant=settings.default_tenant,
            keys=ApiKeys(db, pepper=pepper),
            jwt=_jwt(settings) if "jwt" in settings.auth_mode else None,
            admin_key=settings.admin_api_key.get_secret_value() if settings.admin_api_key else None,
        )

    async def authenticate(self, authorization: str | None, api_key: str | None = None) -> Principal:
        """The caller; AuthenticationError (401) for missing or bad credentials."""
        if self.mode == "none":
            return self.anonymous
        try:
            return await self._authenticate(_credential(authorization, api_key))
        except AuthenticationError as exc:
            get_metrics().auth_failures.labels(reason=exc.reason).inc()
            raise

    async def _authenticate(self, credential: str) -> Principal:
        if self._admin_digest is not None and hmac.compare_digest(_sha256(credential), self._admin_digest):
            return self.operator
        if credential.startswith(PREFIX):
            if "api_key" not in self.mode:
                raise _refused("API keys are not accepted here; send a JWT", "api_key")
            return await self.keys.authenticate(credential)
        if self.jwt is None:
            raise _refused("malformed API key", "api_key")
        return self.jwt.verify(credential)


def _credential(authorization: str | None, api_key: str | None) -> str:
    if api_key:
        credential = api_key.strip()
    elif authorization:
        scheme, _, credential = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise _refused("Authorization must be 'Bearer <API key or token>'", "malformed")
        credential = credential.strip()
    else:
        raise _refused("missing credentials: send 'Authorization: Bearer <API key or token>'", "missing")
    if len(credential) > _MAX_CREDENTIAL:
        raise _refused("credentials too long", "malformed")
    return credential


def _refused(message: str, reason: str) -> AuthenticationError:
    return AuthenticationError(message, reason=reason)


def _sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _jwt(settings: Settings) -> JwtVerifier:
    try:
        return JwtVerifier(
            JwtConfig(
                algorithms=tuple(settings.jwt_algorithms),
                secret=settings.jwt_secret.get_secret_value() if settings.jwt_secret else None,
                public_key_pem=settings.jwt_public_key_file.read_text() if settings.jwt_public_key_file else None,
                jwks_path=settings.jwt_jwks_file,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                leeway_s=settings.jwt_leeway_s,
                tenant_claim=settings.jwt_tenant_claim,
                scopes_claim=settings.jwt_scopes_claim,
                collections_claim=settings.jwt_collections_claim,
            )
        )
    except (ValueError, OSError) as exc:
        raise ConfigurationError(f"JWT settings: {exc}") from exc
