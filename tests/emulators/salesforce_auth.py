"""Users, connected apps, sessions and the two login endpoints of the Salesforce emulator.

- ``POST /services/oauth2/token``: grant_type ``password``, ``client_credentials`` (HTTP Basic
  or form credentials) and ``urn:ietf:params:oauth:grant-type:jwt-bearer`` (RS256 assertion;
  the signature is verified when the app was registered with a public key, otherwise the
  token is only decoded). Errors are ``400 {"error", "error_description"}``.
- ``POST /services/Soap/u/{version}``: the partner ``login()`` call that simple-salesforce's
  username + password + security_token mode sends. It answers the same XML Salesforce does
  (``sessionId``, ``serverUrl``), a ``sf:INVALID_LOGIN`` fault otherwise, and refuses API
  versions above 64.0, where ``login()`` no longer exists (that fault's wording is ours).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .salesforce_schema import ORG_ID, IdFactory, to18

DEFAULT_USERNAME = "integration@segsync.example"
DEFAULT_PASSWORD = "emulator-password"
DEFAULT_SECURITY_TOKEN = "EMULATORTOKEN"
DEFAULT_CONSUMER_KEY = "segsync-consumer-key"
DEFAULT_CONSUMER_SECRET = "segsync-consumer-secret"
LAST_SOAP_LOGIN_VERSION = 64.0
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass
class User:
    username: str
    password: str
    security_token: str
    user_id: str


@dataclass
class ConnectedApp:
    consumer_key: str
    consumer_secret: str | None
    public_key: rsa.RSAPublicKey | None
    run_as: str | None  # client-credentials "Run As" user


@dataclass
class Session:
    token: str
    username: str
    valid: bool = True


class AuthError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class Auth:
    """Who may log in, and which bearer tokens are currently valid."""

    def __init__(self, ids: IdFactory) -> None:
        self._ids = ids
        self.users: dict[str, User] = {}
        self.apps: dict[str, ConnectedApp] = {}
        self.sessions: dict[str, Session] = {}
        self._issued = 0

    def add_user(
        self, username: str, password: str, security_token: str = "", user_id: str | None = None
    ) -> str:
        user = User(username, password, security_token, user_id or self._ids.next("005"))
        self.users[username] = user
        return user.user_id

    def add_app(
        self,
        consumer_key: str,
        consumer_secret: str | None = None,
        public_key_pem: bytes | str | None = None,
        run_as: str | None = None,
    ) -> None:
        public_key = None
        if public_key_pem is not None:
            pem = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
            loaded = serialization.load_pem_public_key(pem)
            if not isinstance(loaded, rsa.RSAPublicKey):
                raise ValueError("JWT bearer apps need an RSA public key (RS256)")
            public_key = loaded
        self.apps[consumer_key] = ConnectedApp(consumer_key, consumer_secret, public_key, run_as)

    def issue(self, username: str) -> str:
        if username not in self.users:
            raise KeyError(f"unknown user {username!r}")
        self._issued += 1
        token = f"{ORG_ID}!EMSESSION{self._issued:08d}"
        self.sessions[token] = Session(token, username)
        return token

    def valid(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() not in ("bearer", "oauth"):
            return False
        session = self.sessions.get(token.strip())
        return session is not None and session.valid

    def expire_all(self) -> None:
        for session in self.sessions.values():
            session.valid = False

    def user_id(self, username: str) -> str:
        return self.users[username].user_id

    # --- OAuth 2.0 token endpoint ------------------------------------------------------------

    def token(
        self, form: Mapping[str, str], authorization: str | None, instance_url: str
    ) -> dict[str, Any]:
        grant = form.get("grant_type", "")
        if grant == "password":
            username = self._password_grant(form)
        elif grant == "client_credentials":
            username = self._client_credentials(form, authorization)
        elif grant == JWT_GRANT:
            username = self._jwt_bearer(form.get("assertion", ""))
        else:
            raise AuthError("unsupported_grant_type", "grant type not supported")
        user = self.users[username]
        return {
            "access_token": self.issue(username),
            "instance_url": instance_url,
            "id": f"https://login.salesforce.com/id/{to18(ORG_ID)}/{user.user_id}",
            "token_type": "Bearer",
            "issued_at": str(int(time.time() * 1000)),
            "signature": base64.b64encode(f"emulator:{username}".encode()).decode(),
            "scope": "api",
        }

    def _app(self, consumer_key: str | None) -> ConnectedApp:
        app = self.apps.get(consumer_key or "")
        if app is None:
            raise AuthError("invalid_client_id", "client identifier invalid")
        return app

    def _password_grant(self, form: Mapping[str, str]) -> str:
        app = self._app(form.get("client_id"))
        if app.consumer_secret is not None and form.get("client_secret") != app.consumer_secret:
            raise AuthError("invalid_client", "invalid client credentials")
        user = self.users.get(form.get("username", ""))
        given = form.get("password", "")
        if user is None or given not in (user.password + user.security_token, user.password):
            raise AuthError("invalid_grant", "authentication failure")
        return user.username

    def _client_credentials(self, form: Mapping[str, str], authorization: str | None) -> str:
        key, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip()).decode()
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise AuthError("invalid_client", "invalid client credentials") from exc
            key, _, secret = decoded.partition(":")
        app = self._app(key)
        if app.consumer_secret is None or secret != app.consumer_secret:
            raise AuthError("invalid_client", "invalid client credentials")
        if app.run_as is None or app.run_as not in self.users:
            raise AuthError("invalid_grant", "no client credentials user enabled")
        return app.run_as

    def _jwt_bearer(self, assertion: str) -> str:
        parts = assertion.split(".")
        if len(parts) != 3:
            raise AuthError("invalid_grant", "invalid assertion")
        try:
            header = json.loads(_b64url_decode(parts[0]))
            claims = json.loads(_b64url_decode(parts[1]))
            signature = _b64url_decode(parts[2])
        except (ValueError, binascii.Error) as exc:
            raise AuthError("invalid_grant", "invalid assertion") from exc
        if header.get("alg") != "RS256":
            raise AuthError("invalid_grant", "invalid assertion")
        app = self._app(claims.get("iss"))
        if app.public_key is not None:
            try:
                app.public_key.verify(
                    signature,
                    f"{parts[0]}.{parts[1]}".encode(),
                    padding.PKCS1v15(),
                    hashes.SHA256(),
                )
            except InvalidSignature as exc:
                raise AuthError("invalid_grant", "invalid assertion") from exc
        try:
            expires = float(claims.get("exp", 0))
        except (TypeError, ValueError) as exc:
            raise AuthError("invalid_grant", "invalid assertion") from exc
        if expires < time.time():
            raise AuthError("invalid_grant", "expired authorization code")
        if not str(claims.get("aud", "")).startswith("https://"):
            raise AuthError("invalid_grant", "audience is invalid")
        username = str(claims.get("sub", ""))
        if username not in self.users:
            raise AuthError("invalid_grant", "user hasn't approved this consumer")
        return username

    # --- SOAP login() -----------------------------------------------------------------------

    def soap_login(self, body: bytes, version: str, instance_url: str) -> tuple[int, str]:
        try:
            if float(version) > LAST_SOAP_LOGIN_VERSION:
                return 500, _soap_fault(
                    "UNSUPPORTED_API_VERSION",
                    f"login() is not available from API version {LAST_SOAP_LOGIN_VERSION + 1:.1f} on",
                )
        except ValueError:
            return 404, _soap_fault("UNSUPPORTED_API_VERSION", f"unknown API version {version}")
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return 500, _soap_fault(
                "INVALID_LOGIN", "Invalid username, password, security token; or user locked out."
            )
        found: dict[str, str] = {}
        for element in root.iter():
            local = element.tag.rsplit("}", 1)[-1]
            if local in ("username", "password"):
                found[local] = element.text or ""
        user = self.users.get(found.get("username", ""))
        if user is None or found.get("password") not in (user.password + user.security_token,):
            return 500, _soap_fault(
                "INVALID_LOGIN", "Invalid username, password, security token; or user locked out."
            )
        token = self.issue(user.username)
        org15 = ORG_ID
        return 200, (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            "<soapenv:Body><loginResponse><result>"
            f"<metadataServerUrl>{instance_url}/services/Soap/m/{version}/{org15}</metadataServerUrl>"
            "<passwordExpired>false</passwordExpired><sandbox>true</sandbox>"
            f"<serverUrl>{instance_url}/services/Soap/u/{version}/{org15}</serverUrl>"
            f"<sessionId>{escape(token)}</sessionId><userId>{user.user_id}</userId>"
            "<userInfo>"
            f"<organizationId>{to18(ORG_ID)}</organizationId><organizationName>segsync emulator</organizationName>"
            "<sessionSecondsValid>7200</sessionSecondsValid>"
            f"<userEmail>{escape(user.username)}</userEmail><userId>{user.user_id}</userId>"
            f"<userName>{escape(user.username)}</userName><userTimeZone>UTC</userTimeZone>"
            "</userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>"
        )


def _soap_fault(code: str, message: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><soapenv:Fault>"
        f"<faultcode>sf:{code}</faultcode><faultstring>{code}: {escape(message)}</faultstring>"
        '<detail><sf:LoginFault xsi:type="sf:LoginFault">'
        f"<sf:exceptionCode>{code}</sf:exceptionCode><sf:exceptionMessage>{escape(message)}</sf:exceptionMessage>"
        "</sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
