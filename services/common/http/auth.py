"""HTTP Basic authentication against a users file, the way Confluent's servers do it.

ksqlDB and Schema Registry take their users from a Jetty `PropertyFileLoginModule` realm: a file
of `username: password[,role ...]` lines, where the password is plaintext or one of Jetty's
credential forms. The same file works here unchanged (the JAAS file that names it is not needed:
the path is given directly). Supported password forms: plaintext and `MD5:<hex digest>`; Jetty's
`OBF:` and `CRYPT:` are refused at load time, so a realm file never half-works.

Every comparison runs in constant time, and an unknown user costs the same as a wrong password,
so response timing tells an attacker neither.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from services.common.errors import FraudstreamError

_DUMMY_CREDENTIAL = "MD5:" + hashlib.md5(b"no such user").hexdigest()  # Jetty's MD5: form
"""Checked for unknown users, so they take as long as known ones."""


@dataclass(frozen=True)
class User:
    name: str
    credential: str = ""
    """As written in the file: plaintext or `MD5:<hex>`."""
    roles: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never show the credential
        return f"User(name={self.name!r}, roles={self.roles!r})"

    def password_matches(self, password: str) -> bool:
        return credential_matches(self.credential, password)


def credential_matches(credential: str, password: str) -> bool:
    """Constant-time check of `password` against a stored credential."""
    if credential[:4].upper() == "MD5:":
        digest = hashlib.md5(password.encode("utf-8")).hexdigest()  # Jetty's MD5: form
        return hmac.compare_digest(digest.encode(), credential[4:].strip().lower().encode())
    return hmac.compare_digest(credential.encode("utf-8"), password.encode("utf-8"))


def parse_users(lines: Iterable[str], source: str = "users file") -> dict[str, User]:
    """`username: password[,role ...]` lines (`=` also separates, as in Java properties);
    blank lines and `#`/`!` comments are skipped."""
    users: dict[str, User] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        cut = min((i for i in (line.find(":"), line.find("=")) if i >= 0), default=-1)
        if cut <= 0:
            raise FraudstreamError(
                f"{source}:{number}: expected 'username: password[,role...]'", code="users_file"
            )
        name = line[:cut].strip()
        credential, *roles = (part.strip() for part in line[cut + 1 :].split(","))
        if not credential:
            raise FraudstreamError(
                f"{source}:{number}: user {name!r} has no password", code="users_file"
            )
        if credential[:4].upper() in ("OBF:", "CRYP"):
            raise FraudstreamError(
                f"{source}:{number}: password form {credential.split(':')[0]}: is not "
                "supported; use plaintext or MD5:<hex>",
                code="users_file",
            )
        users[name] = User(name, credential, tuple(r for r in roles if r))
    return users


def load_users(path: Path) -> dict[str, User]:
    """The users of a realm file; FraudstreamError when it is missing, unreadable or empty."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FraudstreamError(
            f"cannot read users file {path}: {exc.strerror}", code="users_file"
        ) from None
    users = parse_users(text.splitlines(), str(path))
    if not users:
        raise FraudstreamError(f"users file {path} names no user", code="users_file")
    return users


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic …` header, None when absent or malformed."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class BasicAuthenticator:
    """Answers: do these credentials name a user of the realm with an allowed role?"""

    def __init__(self, users: dict[str, User], roles: Iterable[str] = ()) -> None:
        self.users = users
        self.roles = frozenset(roles) - {"*"}
        """Empty: any authenticated user (Confluent's default `authentication.roles=*`)."""

    @classmethod
    def from_file(cls, path: Path, roles: Iterable[str] = ()) -> BasicAuthenticator:
        return cls(load_users(path), roles)

    def authenticate(self, header: str | None) -> User | None:
        """The user an Authorization header proves, or None."""
        credentials = basic_credentials(header)
        if credentials is None:
            return None
        name, password = credentials
        user = self.users.get(name)
        if user is None:
            credential_matches(_DUMMY_CREDENTIAL, password)
            return None
        return user if user.password_matches(password) else None

    def permitted(self, user: User) -> bool:
        return not self.roles or bool(self.roles.intersection(user.roles))
