"""Logins for the Salesforce stand-in: SOAP partner login and the OAuth 2.0 token endpoint.

The bodies are the real ones, byte for byte where it matters, because simple-salesforce picks
``sessionId``/``serverUrl`` and ``sf:exceptionCode`` out of the SOAP XML with minidom and
``error``/``error_description`` out of the OAuth JSON. Sources: the loginResponse and LoginFault
envelopes recorded in simple-salesforce's and other clients' test suites, and Salesforce's
documented OAuth error pairs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import jwt

from sandbox.salesforce.schema import API_VERSIONS
from sandbox.server import Request, Response

LOGIN_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")
_ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
    'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" {ns} '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>{body}'
    "</soapenv:Body></soapenv:Envelope>"
)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    security_token: str
    consumer_key: str
    consumer_secret: str
    jwt_public_key_pem: bytes | None = None


@dataclass(frozen=True)
class Org:
    org_id: str
    user_id: str
    base_url: Callable[[], str]  # the server's own URL, known once it is bound


def soap_fault(code: str, message: str, fault: str = "LoginFault") -> Response:
    body = (
        f"<soapenv:Fault><faultcode>sf:{code}</faultcode><faultstring>{code}: "
        f'{escape(message)}</faultstring><detail><sf:{fault} xsi:type="sf:{fault}">'
        f"<sf:exceptionCode>{code}</sf:exceptionCode><sf:exceptionMessage>{escape(message)}"
        f"</sf:exceptionMessage></sf:{fault}></detail></soapenv:Fault>"
    )
    xml = _ENVELOPE.format(ns='xmlns:sf="urn:fault.partner.soap.sforce.com"', body=body)
    return Response.text(xml, 500, "text/xml; charset=utf-8")


def _oauth_error(error: str, description: str, status: int = 400) -> Response:
    return Response.json({"error": error, "error_description": description}, status)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


class Authenticator:
    """Checks credentials and answers as Salesforce does; ``issue`` mints a session id."""

    def __init__(self, creds: Credentials, org: Org, issue: Callable[[], str]) -> None:
        self.creds = creds
        self.org = org
        self.issue = issue

    def _user_ok(self, username: str | None) -> bool:
        return (username or "").casefold() == self.creds.username.casefold()

    # -- SOAP ---------------------------------------------------------------------------
    def soap(self, req: Request) -> Response:
        version = req.params.get("version", "")
        if version not in API_VERSIONS:
            return soap_fault(
                "UNSUPPORTED_API_VERSION",
                "Invalid Api version specified on URL",
                "UnexpectedErrorFault",
            )
        try:
            root = ET.fromstring(req.body)
        except ET.ParseError as exc:
            xml = _ENVELOPE.format(
                ns="",
                body="<soapenv:Fault><faultcode>soapenv:Client"
                f"</faultcode><faultstring>{escape(str(exc))}</faultstring>"
                "</soapenv:Fault>",
            )
            return Response.text(xml, 500, "text/xml; charset=utf-8")
        login = next((e for e in root.iter() if _local(e.tag) == "login"), None)
        fields = {_local(e.tag): (e.text or "") for e in login} if login is not None else {}
        # Real Salesforce wants password+token unless the caller's IP is trusted; the
        # sandbox trusts nobody, so the token is always required.
        if not self._user_ok(fields.get("username")) or fields.get("password") != (
            self.creds.password + self.creds.security_token
        ):
            return soap_fault(
                "INVALID_LOGIN", "Invalid username, password, security token; or user locked out."
            )
        return Response.text(self._login_response(version), 200, "text/xml; charset=utf-8")

    def _login_response(self, version: str) -> str:
        base, org, user = self.org.base_url(), self.org.org_id, self.org.user_id
        name = escape(self.creds.username)
        result = (
            f"<metadataServerUrl>{base}/services/Soap/m/{version}/{org[:15]}</metadataServerUrl>"
            "<passwordExpired>false</passwordExpired><sandbox>true</sandbox>"
            f"<serverUrl>{base}/services/Soap/u/{version}/{org[:15]}</serverUrl>"
            f"<sessionId>{self.issue()}</sessionId><userId>{user}</userId><userInfo>"
            "<accessibilityMode>false</accessibilityMode><currencySymbol>$</currencySymbol>"
            "<orgAttachmentFileSizeLimit>5242880</orgAttachmentFileSizeLimit>"
            "<orgDefaultCurrencyIsoCode>USD</orgDefaultCurrencyIsoCode>"
            "<orgDisallowHtmlAttachments>false</orgDisallowHtmlAttachments>"
            "<orgHasPersonAccounts>false</orgHasPersonAccounts>"
            f"<organizationId>{org}</organizationId>"
            "<organizationMultiCurrency>false</organizationMultiCurrency>"
            "<organizationName>syncd sandbox</organizationName>"
            '<profileId>00e5e000000QkPRAA0</profileId><roleId xsi:nil="true"/>'
            "<sessionSecondsValid>7200</sessionSecondsValid>"
            '<userDefaultCurrencyIsoCode xsi:nil="true"/>'
            f"<userEmail>{name}</userEmail><userFullName>Integration User</userFullName>"
            f"<userId>{user}</userId><userLanguage>en_US</userLanguage>"
            f"<userLocale>en_US</userLocale><userName>{name}</userName>"
            "<userTimeZone>America/Los_Angeles</userTimeZone><userType>Standard</userType>"
            "<userUiSkin>Theme3</userUiSkin></userInfo>"
        )
        body = f"<loginResponse><result>{result}</result></loginResponse>"
        return _ENVELOPE.format(ns='xmlns="urn:partner.soap.sforce.com"', body=body)

    # -- OAuth 2.0 ----------------------------------------------------------------------
    def oauth(self, req: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace")).items()}
        grant = form.get("grant_type", "")
        if grant == "password":
            if form.get("client_id") != self.creds.consumer_key:
                return _oauth_error("invalid_client_id", "client identifier invalid")
            if form.get("client_secret") != self.creds.consumer_secret:
                return _oauth_error("invalid_client", "invalid client credentials")
            password = form.get("password")
            if not self._user_ok(form.get("username")) or password not in (
                self.creds.password,
                self.creds.password + self.creds.security_token,
            ):
                return _oauth_error("invalid_grant", "authentication failure")
            return self._token()
        if grant == "client_credentials":
            key, secret = form.get("client_id"), form.get("client_secret")
            basic = (req.header("authorization") or "").removeprefix("Basic ")
            if basic and not key:
                key, _, secret = base64.b64decode(basic).decode("utf-8", "replace").partition(":")
            if key != self.creds.consumer_key or secret != self.creds.consumer_secret:
                return _oauth_error("invalid_client", "invalid client credentials")
            return self._token()
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._jwt_bearer(form.get("assertion", ""))
        return _oauth_error("unsupported_grant_type", "grant type not supported")

    def _jwt_bearer(self, assertion: str) -> Response:
        try:
            if self.creds.jwt_public_key_pem is not None:
                claims: dict[str, Any] = jwt.decode(
                    assertion,
                    self.creds.jwt_public_key_pem,
                    algorithms=["RS256"],
                    options={"verify_aud": False, "verify_iss": False, "require": ["exp"]},
                )
            else:  # no key configured: check the claims, trust the signature
                claims = jwt.decode(assertion, options={"verify_signature": False})
                if int(claims.get("exp", 0)) <= time.time():
                    raise jwt.ExpiredSignatureError("expired")
        except (jwt.PyJWTError, ValueError, TypeError):
            return _oauth_error("invalid_grant", "invalid assertion")
        if claims.get("iss") != self.creds.consumer_key:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if claims.get("aud") not in (*LOGIN_AUDIENCES, self.org.base_url()):
            return _oauth_error("invalid_grant", "audience is invalid")
        if not self._user_ok(claims.get("sub")):
            return _oauth_error("invalid_grant", "invalid assertion")
        return self._token(scope="api")

    def _token(self, scope: str | None = None) -> Response:
        base = self.org.base_url()
        ident = f"{base}/id/{self.org.org_id}/{self.org.user_id}"
        issued = str(int(time.time() * 1000))
        # Salesforce signs id+issued_at with the consumer secret so clients can check them.
        mac = hmac.new(
            self.creds.consumer_secret.encode(), (ident + issued).encode(), hashlib.sha256
        )
        body: dict[str, Any] = {
            "access_token": self.issue(),
            "instance_url": base,
            "id": ident,
            "token_type": "Bearer",
            "issued_at": issued,
            "signature": base64.b64encode(mac.digest()).decode(),
        }
        if scope:
            body["scope"] = scope
        return Response.json(body)
