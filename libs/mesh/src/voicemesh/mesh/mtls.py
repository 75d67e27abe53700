"""mTLS on the internal gRPC plane: every connection between services is encrypted and
both ends prove who they are with a certificate from the mesh's CA.

- `MeshTls.load(dir, now)` reads one identity's `ca.crt`, `tls.crt`, `tls.key` (the layout
  of a Kubernetes TLS Secret, and of `certs.write_mesh_tls`) and refuses, naming the file
  and the fault, a set that cannot work: a missing or unreadable file, a certificate the
  CA did not issue, one outside its validity, a key that is not the certificate's.
- A server asks every client for a certificate (no certificate, no connection) and
  `Authorizer` lets an identity call only the services `access.GRPC_CALLERS` lists for it:
  anything else is PERMISSION_DENIED, counted (`voicemesh_errors_total{kind="grpc_denied"}`).
- A client checks the server's certificate against the identity it means to reach
  (`certs.server_name(peer)`), whatever address the registry gave: a tts instance cannot
  pose as stt.
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from .access import ANY_IDENTITY, GRPC_CALLERS
from .certs import CA_FILE, CERT_FILE, KEY_FILE


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"mesh TLS: {path} is missing") from None
    except OSError as exc:
        raise ValueError(f"mesh TLS: cannot read {path}: {exc.strerror or exc}") from None


def _certs(path: Path, data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ValueError(f"mesh TLS: {path} is not a PEM certificate") from None


def _issuer(cert: x509.Certificate, cas: list[x509.Certificate]) -> x509.Certificate | None:
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return ca
    return None


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class MeshTls:
    """One identity's credentials on the internal plane."""

    identity: str
    ca: bytes
    cert: bytes
    key: bytes
    not_after: dt.datetime

    @classmethod
    def load(cls, directory: Path, now: dt.datetime) -> MeshTls:
        """Read and check `directory`'s ca.crt, tls.crt and tls.key. Raises ValueError.

        ca.crt may hold several CAs (a rotation: the old and the new one, both trusted while
        the mesh moves from one to the other); tls.crt must be issued by one of them, which
        must be in date."""
        ca_pem, cert_pem, key_pem = (_read(directory / f) for f in (CA_FILE, CERT_FILE, KEY_FILE))
        cas = _certs(directory / CA_FILE, ca_pem)
        cert = _certs(directory / CERT_FILE, cert_pem)[0]
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError):
            raise ValueError(
                f"mesh TLS: {directory / KEY_FILE} is not an unencrypted PEM private key"
            ) from None
        ca = _issuer(cert, cas)
        if ca is None:
            raise ValueError(
                f"mesh TLS: {directory / CERT_FILE} was not issued by the CA in {directory / CA_FILE}"
            )
        for path, c in ((directory / CA_FILE, ca), (directory / CERT_FILE, cert)):
            if now < c.not_valid_before_utc:
                raise ValueError(
                    f"mesh TLS: {path} is not valid before {c.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
                )
            if now > c.not_valid_after_utc:
                raise ValueError(f"mesh TLS: {path} expired at {c.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
        public = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(*public) != cert.public_key().public_bytes(*public):
            raise ValueError(f"mesh TLS: {directory / KEY_FILE} is not the key of {directory / CERT_FILE}")
        identity = _common_name(cert)
        if not identity:
            raise ValueError(f"mesh TLS: {directory / CERT_FILE} names no identity (common name)")
        not_after = min(ca.not_valid_after_utc, cert.not_valid_after_utc)
        return cls(identity, ca_pem, cert_pem, key_pem, not_after)

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.ca, require_client_auth=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


def caller_identity(context: grpc.aio.ServicerContext) -> str:
    """The common name of the client's certificate ("" on a plaintext connection)."""
    names = context.auth_context().get("x509_common_name") or []
    return names[0].decode() if names else ""


def allowed(callers: Mapping[str, frozenset[str]], method: str, identity: str) -> bool:
    """May `identity` call `method` ("/package.Service/Method")?"""
    service = method.lstrip("/").partition("/")[0]
    permitted = callers.get(service, frozenset())
    return bool(identity) and (identity in permitted or ANY_IDENTITY in permitted)


Check = Callable[[grpc.aio.ServicerContext], Awaitable[None]]


def _guard(handler: grpc.RpcMethodHandler, check: Check) -> grpc.RpcMethodHandler:
    """The same handler, with `check` run before its behaviour."""
    kinds = {
        (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
        (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
        (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
        (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
    }
    attr, make = kinds[(handler.request_streaming, handler.response_streaming)]
    behaviour = getattr(handler, attr)

    if handler.response_streaming:

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await check(context)
            result = behaviour(request, context)
            if inspect.isasyncgen(result):
                async for item in result:
                    yield item
            else:  # a coroutine that writes with context.write
                await result

        guarded: Callable[..., Any] = streaming
    else:

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await check(context)
            return await behaviour(request, context)

        guarded = unary
    return make(
        guarded,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class Authorizer(grpc.aio.ServerInterceptor):
    """Lets each caller identity reach only the services `callers` lists for it."""

    def __init__(
        self, on_denied: Callable[[str, str], None], callers: Mapping[str, frozenset[str]] = GRPC_CALLERS
    ) -> None:
        self._callers = callers
        self._on_denied = on_denied  # (identity, method): count it, log it

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method

        async def check(context: grpc.aio.ServicerContext) -> None:
            identity = caller_identity(context)
            if not allowed(self._callers, method, identity):
                self._on_denied(identity, method)
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"identity {identity or '(none)'!r} may not call {method}",
                )

        return _guard(handler, check)
