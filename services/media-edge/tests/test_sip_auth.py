"""Who may call the edge over SIP: allowed networks, else a digest answered to our challenge."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicemesh.edge.sip.auth import Admit, Challenge, Decision, Refuse, SipAccess

pytestmark = pytest.mark.unit

SECRET = b"edge-cluster-secret"
PASSWORD = "Tr0ub4dor&3-horse"
URI = "sip:agent@edge.example.com"
NOW = 1_700_000_000.0
EDGE = SipAccess(allow=["10.0.0.0/8"], credentials={"alice": PASSWORD}, secret=SECRET)
OUTSIDE = "203.0.113.7"


def md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8", "surrogatepass")).hexdigest()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def challenge_params(header: str) -> dict[str, str]:
    assert header.startswith("Digest ")
    return {k.lower(): v for k, v in re.findall(r'(\w+)="?([^",]*)"?', header)}


def nonce_at(access: SipAccess, now: float) -> str:
    challenge = access.check(source_ip=OUTSIDE, method="INVITE", authorization=None, now=now)
    assert isinstance(challenge, Challenge)
    return challenge_params(challenge.header)["nonce"]


def answer(
    nonce: str,
    *,
    user: str = "alice",
    password: str = PASSWORD,
    realm: str = "voicemesh",
    method: str = "INVITE",
    qop: bool = True,
    algorithm: str | None = None,
) -> str:
    """A client's Authorization for `nonce`, computed here (RFC 2617 §3.2.2.1)."""
    h = sha256 if algorithm == "SHA-256" else md5
    ha1, ha2 = h(f"{user}:{realm}:{password}"), h(f"{method}:{URI}")
    header = f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{URI}"'
    if qop:
        response = h(f"{ha1}:{nonce}:00000001:0a4f113b:auth:{ha2}")
        header += ', qop=auth, nc=00000001, cnonce="0a4f113b"'
    else:
        response = h(f"{ha1}:{nonce}:{ha2}")
    if algorithm:
        header += f", algorithm={algorithm}"
    return header + f', response="{response}"'


def check(
    authorization: str | None, *, now: float = NOW, method: str = "INVITE", access: SipAccess = EDGE
) -> Decision:
    return access.check(source_ip=OUTSIDE, method=method, authorization=authorization, now=now)


# ---- by source network -------------------------------------------------------------------


def test_an_allowed_network_is_admitted_without_a_digest() -> None:
    assert EDGE.check(source_ip="10.1.2.3", method="INVITE", authorization=None, now=NOW) == Admit(None)
    assert EDGE.check(source_ip="11.1.2.3", method="INVITE", authorization=None, now=NOW) != Admit(None)


def test_a_bare_address_is_that_one_host() -> None:
    access = SipAccess(allow=["192.0.2.10", "2001:db8::1"], secret=SECRET)
    assert access.check(source_ip="192.0.2.10", method="BYE", authorization=None, now=NOW) == Admit(None)
    assert isinstance(access.check(source_ip="192.0.2.11", method="BYE", authorization=None, now=NOW), Refuse)
    assert access.check(source_ip="2001:db8::1", method="BYE", authorization=None, now=NOW) == Admit(None)
    assert isinstance(
        access.check(source_ip="2001:db8::2", method="BYE", authorization=None, now=NOW), Refuse
    )


def test_ipv6_networks_and_ipv4_mapped_sources() -> None:
    access = SipAccess(allow=["2001:db8::/32", "127.0.0.1/32"], secret=SECRET)
    for source in ("2001:db8:1::5", "::ffff:127.0.0.1", "127.0.0.1"):
        assert access.check(source_ip=source, method="INVITE", authorization=None, now=NOW) == Admit(None)
    refused = access.check(source_ip="::ffff:127.0.0.2", method="INVITE", authorization=None, now=NOW)
    assert isinstance(refused, Refuse) and refused.status == 403


def test_not_allowed_and_no_credentials_is_refused() -> None:
    access = SipAccess(allow=["10.0.0.0/8"], secret=SECRET)
    decision = access.check(source_ip=OUTSIDE, method="INVITE", authorization=answer("x"), now=NOW)
    assert decision == Refuse(
        403, f"{OUTSIDE} is not in the allowed networks and no SIP credentials are configured"
    )


def test_a_source_that_is_not_an_ip_address_is_refused() -> None:
    decision = EDGE.check(source_ip="edge.example.com", method="INVITE", authorization=None, now=NOW)
    assert isinstance(decision, Refuse) and decision.status == 403
    assert "edge.example.com" in decision.reason and "not an IP address" in decision.reason


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "10.0.0.1/8", "example.com", "", "::g"])
def test_a_bad_allowed_network_names_the_entry(entry: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(entry))):
        SipAccess(allow=["127.0.0.1", entry], secret=SECRET)
    if entry:  # parse_allow skips empty entries
        with pytest.raises(ValueError, match=re.escape(repr(entry))):
            SipAccess.parse_allow(f"127.0.0.1, {entry} , 10.0.0.0/8")


def test_parse_allow_reads_a_comma_separated_list() -> None:
    assert SipAccess.parse_allow(" 127.0.0.1/32, 10.0.0.0/8,::1 ,") == (
        "127.0.0.1/32",
        "10.0.0.0/8",
        "::1/128",
    )
    assert SipAccess.parse_allow("") == ()
    with pytest.raises(TypeError, match="parse_allow"):
        SipAccess(allow="10.0.0.0/8", secret=SECRET)


# ---- by digest ---------------------------------------------------------------------------


def test_no_credentials_gets_a_challenge() -> None:
    decision = check(None)
    assert isinstance(decision, Challenge) and decision.reason == "no credentials"
    assert decision.header.startswith('Digest realm="voicemesh", nonce="')
    assert decision.header.endswith(', algorithm=MD5, qop="auth"')
    assert "stale" not in decision.header


@pytest.mark.parametrize(
    ("qop", "algorithm"),
    [(True, None), (True, "MD5"), (False, None), (True, "SHA-256"), (False, "SHA-256")],
    ids=["md5-qop", "explicit-md5", "md5-rfc2069", "sha256-qop", "sha256-rfc2069"],
)
def test_a_correct_response_to_the_challenge_is_admitted(qop: bool, algorithm: str | None) -> None:
    nonce = nonce_at(EDGE, NOW)
    assert check(answer(nonce, qop=qop, algorithm=algorithm), now=NOW + 2) == Admit("alice")


def test_the_response_is_for_one_method() -> None:
    nonce = nonce_at(EDGE, NOW)
    assert check(answer(nonce, method="BYE"), method="BYE") == Admit("alice")
    decision = check(answer(nonce, method="INVITE"), method="BYE")
    assert isinstance(decision, Challenge) and decision.reason == "wrong credentials"


@pytest.mark.parametrize(
    "wrong",
    [{"password": PASSWORD + "!"}, {"user": "mallory"}, {"realm": "other"}],
    ids=["password", "user", "realm"],
)
def test_wrong_credentials_get_a_fresh_challenge(wrong: dict[str, str]) -> None:
    nonce = nonce_at(EDGE, NOW)
    decision = check(answer(nonce, **wrong), now=NOW + 1)  # type: ignore[arg-type]
    assert isinstance(decision, Challenge) and decision.reason == "wrong credentials"
    assert "stale" not in decision.header
    assert challenge_params(decision.header)["nonce"] != nonce  # issued at NOW + 1


def test_a_nonce_is_good_on_every_edge_with_the_same_secret_only() -> None:
    twin = SipAccess(credentials={"alice": PASSWORD}, secret=SECRET)
    stranger = SipAccess(credentials={"alice": PASSWORD}, secret=b"another-secret")
    assert check(answer(nonce_at(twin, NOW))) == Admit("alice")
    decision = check(answer(nonce_at(stranger, NOW)))
    assert isinstance(decision, Challenge) and decision.reason == "unknown nonce"
    assert "stale" not in decision.header


def test_an_expired_nonce_is_stale() -> None:
    nonce = nonce_at(EDGE, NOW)
    assert check(answer(nonce), now=NOW + 300) == Admit("alice")
    decision = check(answer(nonce), now=NOW + 301)
    assert isinstance(decision, Challenge) and decision.reason == "stale nonce"
    assert decision.header.endswith(", stale=TRUE")
    fresh = challenge_params(decision.header)["nonce"]
    assert check(answer(fresh), now=NOW + 302) == Admit("alice")  # the client's silent retry


def test_a_nonce_from_the_future_is_stale_beyond_clock_skew() -> None:
    nonce = nonce_at(EDGE, NOW)
    assert check(answer(nonce), now=NOW - 2) == Admit("alice")
    decision = check(answer(nonce), now=NOW - 60)
    assert isinstance(decision, Challenge) and decision.reason == "stale nonce"


def test_an_expired_nonce_with_a_wrong_password_is_not_retried_as_stale() -> None:
    # RFC 2617 §3.2.1: stale=TRUE only when the digest itself is right.
    decision = check(answer(nonce_at(EDGE, NOW), password="guess"), now=NOW + 1000)
    assert isinstance(decision, Challenge) and decision.reason == "wrong credentials"
    assert "stale" not in decision.header


def test_a_tampered_nonce_is_unknown() -> None:
    old = nonce_at(EDGE, NOW - 10_000)
    stamp, mac = old.rsplit(".", 1)
    refreshed = f"{NOW:.3f}.{mac}"  # an old signature on a fresh time
    flipped = old[:-1] + ("0" if old[-1] != "0" else "1")
    for nonce in (refreshed, flipped, old + "0", stamp, mac, f".{mac}", "", "abc"):
        decision = check(answer(nonce))
        assert isinstance(decision, Challenge) and decision.reason == "unknown nonce", nonce


# ---- the Authorization header ------------------------------------------------------------


def test_quoted_strings_escapes_commas_and_whitespace_are_read() -> None:
    user = 'o"neil, jr\\'
    access = SipAccess(credentials={user: PASSWORD}, secret=SECRET)
    nonce = nonce_at(access, NOW)
    ha1, ha2 = md5(f"{user}:voicemesh:{PASSWORD}"), md5(f"INVITE:{URI}")
    response = md5(f"{ha1}:{nonce}:00000001:c,n:auth:{ha2}")
    header = (
        f'  digest\tUSERNAME = "o\\"neil, jr\\\\" ,\r\n realm="voicemesh",nonce="{nonce}" ,  '
        f'uri="{URI}", response="{response.upper()}", cnonce="c,n", nc=00000001, qop="auth", opaque="",'
        ' x-extension="a, \\"b\\""  '
    )
    assert check(header, access=access) == Admit(user)


def test_undecodable_header_bytes_get_a_decision() -> None:
    # A SIP stack decoding with errors="surrogateescape" hands over lone surrogates.
    nonce = nonce_at(EDGE, NOW)
    for header in (
        answer(nonce).replace('"alice"', '"al\udcffice"'),
        answer(nonce + "\udcff"),
        answer(f"\udcff.{nonce}"),
    ):
        decision = check(header)
        assert isinstance(decision, Challenge) and decision.reason in {"wrong credentials", "unknown nonce"}


GOOD = f'Digest username="alice", realm="voicemesh", nonce="n", uri="{URI}", response="r"'


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("Basic YWxpY2U6cGFzcw==", "the scheme is not Digest"),
        ("", "the scheme is not Digest"),
        ('Digestusername="alice"', "the scheme is not Digest"),
        ("Digest", "missing username, realm, nonce, uri, response"),
        (GOOD.replace('username="alice", ', ""), "missing username"),
        (GOOD.replace('realm="voicemesh", ', ""), "missing realm"),
        (GOOD.replace('nonce="n", ', ""), "missing nonce"),
        (GOOD.replace(f'uri="{URI}", ', ""), "missing uri"),
        (GOOD.replace(', response="r"', ""), "missing response"),
        (GOOD.replace('response="r"', 'response="r'), "unbalanced quotes in response"),
        (GOOD.replace(', response="r"', ', response="r\\"'), "unbalanced quotes in response"),  # \" escapes
        (GOOD + ", qop=auth, cnonce=x", "qop=auth without nc and cnonce"),
        (GOOD + ", qop=auth, nc=00000001", "qop=auth without nc and cnonce"),
        (GOOD + ", qop=auth-int, nc=1, cnonce=x", "qop is not auth"),
        (GOOD + ", algorithm=MD5-sess", "algorithm is not MD5 or SHA-256"),
        (GOOD + ', algorithm=""', "algorithm is not MD5 or SHA-256"),
        (GOOD + ', nonce="m"', "nonce appears twice"),
        (GOOD + ", uri=", "uri has no value"),
        (GOOD + ' realm="x"', "expected a comma between parameters"),
        (GOOD + ", =x", "expected name=value"),
    ],
)
def test_a_malformed_header_is_a_400_naming_the_problem(header: str, problem: str) -> None:
    decision = check(header)
    assert isinstance(decision, Refuse) and decision.status == 400
    assert decision.reason.startswith("malformed Authorization header: ")
    assert problem in decision.reason


def test_no_reason_carries_the_password_or_a_hash() -> None:
    nonce = nonce_at(EDGE, NOW)
    leaky = [
        answer(nonce, password="wrong"),
        answer(nonce, user=PASSWORD),
        answer(nonce, algorithm=PASSWORD),
        answer(nonce).replace("qop=auth", f"qop={PASSWORD}"),
        answer(nonce).replace('response="', f'response="{PASSWORD}'),
        answer(f"{NOW:.3f}.{PASSWORD}"),
        f'Digest username="alice", {PASSWORD}',
        f'Digest username="{PASSWORD}',
        f"Digest {PASSWORD}",
        PASSWORD,
    ]
    decisions = [check(header, now=now) for header in leaky for now in (NOW, NOW + 10_000)]
    assert {type(d) for d in decisions} == {Challenge, Refuse}
    for decision in decisions:
        assert isinstance(decision, Challenge | Refuse)
        assert PASSWORD not in decision.reason
        assert not re.search(r"[0-9a-f]{32}", decision.reason)


PIECES = st.sampled_from(
    ["Digest ", "digest", " ", "\t", ",", "=", '"', "\\", "username", "realm", "nonce", "uri", "response",
     "qop", "auth", "nc", "cnonce", "algorithm", "MD5", "SHA-256", "voicemesh", "alice", PASSWORD, "\udcff"]
)  # fmt: skip
HEADERS = st.text() | st.lists(PIECES | st.text(max_size=3), max_size=40).map("".join)


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(params: Sequence[tuple[str, str, bool]]) -> str:
    return "Digest " + ", ".join(f"{k}={quote(v) if quoted else v}" for k, v, quoted in params)


VALUE = (
    st.text(st.characters() | st.characters(categories=["Cs"]))  # lone surrogates: undecodable bytes
    | st.sampled_from(["alice", "voicemesh", URI, "auth", "MD5", "SHA-256", "00000001", PASSWORD])
    | st.just(nonce_at(EDGE, NOW))
)
FIELDS = st.fixed_dictionaries(
    {name: st.tuples(VALUE, st.booleans()) for name in ("username", "realm", "nonce", "uri", "response")},
    optional={name: st.tuples(VALUE, st.booleans()) for name in ("algorithm", "qop", "nc", "cnonce", "x")},
)
# All the required fields, random values (quoted or bare), often a live nonce: they reach the digest check.
STRUCTURED = (
    FIELDS.map(lambda fields: [(name, value, quoted) for name, (value, quoted) in fields.items()])
    .flatmap(st.permutations)
    .map(render)
)


@settings(max_examples=500, deadline=None)
@given(header=HEADERS | STRUCTURED, now=st.just(NOW) | st.floats(allow_nan=False, allow_infinity=False))
def test_any_header_text_gets_a_decision_and_never_an_admission(header: str, now: float) -> None:
    decision = EDGE.check(source_ip=OUTSIDE, method="INVITE", authorization=header, now=now)
    assert isinstance(decision, Challenge | Refuse)
    assert PASSWORD not in decision.reason
    if isinstance(decision, Refuse):
        assert decision.status == 400
