"""Who may do what on the mesh's Valkey, NATS and gRPC: one user per service, each with only
the rights it uses. Pure: it builds the servers' user lists (a Valkey ACL, a nats-server
`authorization` block) from generated passwords; `localservers` writes them to files. On
gRPC the user is the identity in the caller's mTLS certificate (`mtls`), and GRPC_CALLERS
says which identities may call each internal service.

What each one does with the data stores (the reason for each right):

    every service   Valkey: its own registry entry (`registry.InstanceRegistry`): SET/HSET/
                    HSETNX/PEXPIRE/SADD/SREM/DEL in MULTI on vm:alive|inst|load:<service>:*,
                    vm:svc:<service>, vm:services.
                    NATS: publishes its session events on voicemesh.session.> with JetStream
                    acks, which come back on its own inbox (_INBOX.<user>.>).
    session-router  Valkey: everything under vm: (it reads every instance and its Lua
                    scripts reserve slots on any of them: EVALSHA, SCRIPT LOAD).
    cli             `voicemesh status`/`calls`/`events` and the tests' readers: Valkey read
                    only under vm:; NATS reads the session stream (stream info, ordered
                    consumers: create, info, delete, flow control), publishes nothing.
    mesh            the local mesh's supervisor: NATS only, creates the session stream
                    with its retention (`events.ensure_stream`) before the services start.

    gRPC            only media-edge calls stt, reasoning, tts and the router; only the
                    operator (`cli`: `voicemesh dial`) calls the edge's own service; any
                    certified identity may ask any instance's health. Nothing else is open.

No user may run FLUSHALL, CONFIG, KEYS, SCAN or anything in Valkey's @dangerous; the
`default` user is off. A user's NATS inbox is `_INBOX.<user>`, so no one can read another's
replies (`inbox_prefix`).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from .events import STREAM_NAME, SUBJECT_PREFIX
from .registry import Keys
from .urls import inbox_prefix

# The services that join the mesh (run_main's names), each its own user.
SERVICE_USERS = ("session-router", "stt", "reasoning", "tts", "media-edge")
CLI_USER = "cli"
MESH_USER = "mesh"
ALL_USERS = (*SERVICE_USERS, CLI_USER, MESH_USER)
ROUTER_USER = "session-router"

# Valkey rules. Categories, minus what lists or reaches beyond a user's own keys.
_NO_REACH = "-@dangerous -scan -randomkey -move -select"
REGISTRANT_COMMANDS = f"+@connection +@read +@write +@transaction {_NO_REACH}"
ROUTER_COMMANDS = f"{REGISTRANT_COMMANDS} +evalsha +script|load"
READER_COMMANDS = f"+@connection +@read {_NO_REACH}"

_JS_API = "$JS.API"

# The identities that get a certificate for the internal gRPC plane.
GRPC_IDENTITIES = (*SERVICE_USERS, CLI_USER)
HEALTH_SERVICE = "grpc.health.v1.Health"
# In GRPC_CALLERS: any identity the mesh's CA certified.
ANY_IDENTITY = "*"
# Who may call each gRPC service (its full proto name); a service not listed is closed.
GRPC_CALLERS: Mapping[str, frozenset[str]] = {
    "voicemesh.v1.SpeechToText": frozenset({"media-edge"}),
    "voicemesh.v1.Reasoning": frozenset({"media-edge"}),
    "voicemesh.v1.TextToSpeech": frozenset({"media-edge"}),
    "voicemesh.v1.SessionRouter": frozenset({"media-edge"}),
    "voicemesh.v1.MediaEdge": frozenset({CLI_USER}),
    HEALTH_SERVICE: frozenset({ANY_IDENTITY}),
}


@dataclass(frozen=True)
class Grant:
    """One user's rights. Empty Redis keys: no Valkey user."""

    user: str
    redis_keys: tuple[str, ...]
    redis_commands: str
    nats_publish: tuple[str, ...]
    nats_subscribe: tuple[str, ...]


def registrant_keys(service: str, keys: Keys) -> tuple[str, ...]:
    """The key patterns of one service's own registry entry."""
    return (
        keys.services,
        keys.members(service),
        keys.instance(service, "*"),
        keys.alive(service, "*"),
        keys.load(service, "*"),
    )


def grant_for(user: str, keys: Keys | None = None) -> Grant:
    keys = keys or Keys()
    everything = (f"{keys.prefix}*",)
    replies = (f"{inbox_prefix(user)}.>",)
    if user in SERVICE_USERS:
        router = user == ROUTER_USER
        return Grant(
            user,
            everything if router else registrant_keys(user, keys),
            ROUTER_COMMANDS if router else REGISTRANT_COMMANDS,
            (f"{SUBJECT_PREFIX}.>",),
            replies,
        )
    if user == CLI_USER:
        stream = STREAM_NAME
        return Grant(
            user,
            everything,
            READER_COMMANDS,
            (
                f"{_JS_API}.STREAM.INFO.{stream}",
                f"{_JS_API}.CONSUMER.CREATE.{stream}",
                f"{_JS_API}.CONSUMER.CREATE.{stream}.>",
                f"{_JS_API}.CONSUMER.INFO.{stream}.*",
                f"{_JS_API}.CONSUMER.DELETE.{stream}.*",
                f"$JS.FC.{stream}.>",
            ),
            replies,
        )
    if user == MESH_USER:
        api = tuple(f"{_JS_API}.STREAM.{op}.{STREAM_NAME}" for op in ("CREATE", "UPDATE", "INFO"))
        return Grant(user, (), "", api, replies)
    raise ValueError(f"no such mesh user {user!r} (users: {', '.join(ALL_USERS)})")


def generate_passwords(users: tuple[str, ...] = ALL_USERS) -> dict[str, str]:
    """A fresh random password per user (192 bits, URL-safe)."""
    return {user: secrets.token_urlsafe(24) for user in users}


def valkey_acl(passwords: Mapping[str, str], keys: Keys | None = None) -> list[str]:
    """ACL file lines: `default` off, then one user per grant that uses Valkey. Passwords
    are stored as SHA-256 (`#<hex>`), so the file holds no password."""
    lines = ["user default off resetkeys -@all"]
    for user, password in passwords.items():
        grant = grant_for(user, keys)
        if not grant.redis_keys:
            continue
        digest = hashlib.sha256(password.encode()).hexdigest()
        patterns = " ".join(f"~{p}" for p in grant.redis_keys)
        lines.append(f"user {user} on #{digest} resetchannels {patterns} -@all {grant.redis_commands}")
    return lines


def nats_authorization(passwords: Mapping[str, str]) -> dict[str, object]:
    """nats-server's `authorization` block: each user with its publish/subscribe allow
    lists (everything else is denied)."""
    users = []
    for user, password in passwords.items():
        grant = grant_for(user)
        users.append(
            {
                "user": user,
                "password": password,
                "permissions": {
                    "publish": {"allow": list(grant.nats_publish)},
                    "subscribe": {"allow": list(grant.nats_subscribe)},
                },
            }
        )
    return {"users": users}
