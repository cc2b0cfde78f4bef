"""The pseudonymization key and the masking of secrets in anything a human or a log can read.

The key (HMAC-SHA256, see `pii.py`) comes from, in order:
  - `WEWARD_PII_KEY`: the key itself. In production ECS injects it from Secrets Manager
    (deploy/<env>.env names the secret with `WEWARD_PII_KEY_SECRET`), locally the stack sets it;
  - `WEWARD_PII_KEY_SECRET_ID`: the name or ARN of a Secrets Manager secret read at run time
    (operators running `weward-pipeline erase` from outside ECS, with their own AWS role).

The key is never rotated (pseudonyms would stop joining across days; see infra/modules/secrets),
so the lake records a *key id*, an HMAC of a fixed label, not the key, and an export refuses to
mix pseudonyms made with two different keys in one table.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from urllib.parse import quote, unquote, urlsplit

from weward_pipeline.config import ConfigError

KEY_ENV = "WEWARD_PII_KEY"
SECRET_ID_ENV = "WEWARD_PII_KEY_SECRET_ID"
# 32 bytes is HMAC-SHA256's own output size; shorter keys weaken it (RFC 2104, section 3).
MIN_KEY_BYTES = 32
KEY_ID_LABEL = b"weward-pii-key-id/v1"
MASK = "***"


class PiiKey:
    """The HMAC key. Its repr, str and pickled form never contain the key material."""

    __slots__ = ("_material", "source")

    def __init__(self, material: bytes, source: str) -> None:
        if len(material) < MIN_KEY_BYTES:
            raise ConfigError(
                f"the PII key from {source} is {len(material)} bytes; it must be at least {MIN_KEY_BYTES} "
                "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        self._material = material
        self.source = source

    @property
    def material(self) -> bytes:
        return self._material

    @property
    def key_id(self) -> str:
        """Names the key in metadata (Glue, manifests, audit) without revealing it."""
        return hmac.new(self._material, KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"PiiKey(id={self.key_id}, source={self.source})"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("PiiKey cannot be pickled: the key must not leave the process")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PiiKey) and hmac.compare_digest(self._material, other._material)

    def __hash__(self) -> int:
        return hash(self.key_id)


def load_pii_key(env: dict[str, str] | None = None, secrets_client=None, *, needed_by: str = "") -> PiiKey:
    """The key from the environment (or Secrets Manager); ConfigError saying how to set it when missing."""
    env = os.environ if env is None else env
    why = f" ({needed_by})" if needed_by else ""
    value = env.get(KEY_ENV)
    if value:
        return PiiKey(value.encode(), KEY_ENV)
    secret_id = env.get(SECRET_ID_ENV)
    if secret_id:
        return PiiKey(_read_secret(secret_id, env, secrets_client), f"Secrets Manager secret {secret_id}")
    raise ConfigError(
        f"no PII key{why}: set {KEY_ENV} to the pseudonymization key (production: injected from Secrets "
        f"Manager by ECS) or {SECRET_ID_ENV} to the Secrets Manager secret holding it. Nothing was read."
    )


def _read_secret(secret_id: str, env, client) -> bytes:
    if client is None:
        from weward_pipeline import aws

        client = aws.client(aws.Endpoint.from_env(env), "secretsmanager")
    try:
        response = client.get_secret_value(SecretId=secret_id)
    except Exception as exc:  # noqa: BLE001 - botocore's error classes are generated per client
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", exc.__class__.__name__)
        raise ConfigError(
            f"cannot read the PII key from Secrets Manager secret {secret_id!r} ({code}); check "
            f"{SECRET_ID_ENV} and that this role may call secretsmanager:GetSecretValue on it"
        ) from None
    if response.get("SecretString"):
        return response["SecretString"].encode()
    if response.get("SecretBinary"):
        return bytes(response["SecretBinary"])
    raise ConfigError(f"the Secrets Manager secret {secret_id!r} is empty; put the PII key in it")


# -- masking --------------------------------------------------------------------------------

_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@", re.IGNORECASE)
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def url_password_forms(url: str) -> list[str]:
    """A URL's password as it may appear in text: as written, decoded, and re-encoded."""
    try:
        password = urlsplit(url).password  # urlsplit does not percent-decode
    except ValueError:
        return []
    if not password:
        return []
    decoded = unquote(password)
    return list(dict.fromkeys([password, decoded, quote(decoded, safe=""), quote(password, safe="")]))


def secret_values(env: dict[str, str] | None = None) -> list[str]:
    """The secret strings of the environment-variable contract, as they may appear in text."""
    env = os.environ if env is None else env
    values: list[str] = []
    for name in ("WEWARD_PG_URL", "WEWARD_PG_REDACT_URL", "WEWARD_PG_ERASE_URL"):
        if env.get(name):
            values += url_password_forms(env[name])
    if env.get(KEY_ENV):
        values.append(env[KEY_ENV])
    return [v for v in values if len(v) >= 4]


def scrub(text: str, secrets: list[str] | tuple[str, ...] = (), env: dict[str, str] | None = None) -> str:
    """`text` with every known secret and every URL/keyword password replaced by ***."""
    for value in sorted({*secrets, *secret_values(env)}, key=len, reverse=True):
        if value:
            text = text.replace(value, MASK)
    text = _URL_PASSWORD.sub(rf"\1{MASK}@", text)
    return _KEYWORD_PASSWORD.sub(rf"\1{MASK}", text)
