"""Hypothesis building blocks for request bodies: values at the edges of their ranges, odd
strings and numbers, and the names of the fixed world the bodies refer to (clusters, secrets,
route configs that exist). Used by ``strategies_filters`` and ``strategies_resources``."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

UINT32_MAX = 2**32 - 1
TEAM = "prop"
DATAPLANE = "dp"

# The resources every generated body may name (they exist: see property_harness.WORLD).
CLUSTERS = ("api", "grpc_h2", "Idp.Example-1", "9dns")
CERTIFICATE_SECRETS = ("cert-a", "cert_b")
CA_SECRETS = ("ca-a", "ca.b")
GENERIC_SECRETS = ("gen-a", "gen-b")
ROUTE_CONFIG = "rc-main"
FILTER_RESOURCES: dict[str, dict[str, Any]] = {  # named by {filterRef} and override keys
    "shared-jwt": {"filterType": "jwt_auth", "config": {"providers": [
        {"name": "p1", "issuer": "iss", "remoteJwks": {"uri": "https://idp.example/jwks",
                                                       "cluster": "Idp.Example-1"}}]}},
    "shared-authz": {"filterType": "ext_authz", "config": {"grpc": {"cluster": "grpc_h2"}}},
    "shared-rl": {"filterType": "rate_limit", "config": {
        "domain": "edge", "rateLimitService": {"cluster": "grpc_h2"}}},
    "shared-lua": {"filterType": "lua", "config": {"code": "function envoy_on_request(h) end"}},
}

# Invalid-ish values, so that the API's refusals are exercised too.
ODD_STRINGS: tuple[Any, ...] = (
    "", " ", "\t", "a\nb", "a\r\nb", "\x00", "\x7f", "é", "☃", "x" * 300, "-a", "a b", "../x",
    "*", "%", "%REQ(x)%", "%BOGUS%", "{}", '"', "\\", "a,b", ";", "x" * 2049,
    "\ud800", "a\udfffb",  # lone surrogates: JSON can carry them, UTF-8 cannot
)
ODD_NUMBERS: tuple[Any, ...] = (
    -1, 0, -0.0, 0.5, 1e-9, 2**31, UINT32_MAX, 2**32, 2**53 + 1, 2**64, 1e300,
    float("nan"), float("inf"), -float("inf"), True, False, "1", None,
)
ODD_VALUES: tuple[Any, ...] = (*ODD_STRINGS, *ODD_NUMBERS, [], {}, ["x"], {"a": 1})


def odd() -> st.SearchStrategy[Any]:
    """Any odd JSON value: a string, number or container where something else belongs."""
    return st.sampled_from(ODD_VALUES)


# One example in two is clean (no invalid-ish value anywhere, so that Envoy sees bodies with
# many filters and TLS settings); in the others each value is invalid-ish now and then.
_DIRTY = st.shared(st.booleans(), key="dirty")


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any] | None = None,
           one_in: int = 12) -> st.SearchStrategy[Any]:
    """``good``; in a dirty example about one time in ``one_in`` a value of ``bad`` (default:
    ``odd()``). The choice is not at an end of the range: Hypothesis favours those, and
    shrinks towards 0, i.e. ``good``."""
    other = bad if bad is not None else odd()
    return st.tuples(_DIRTY, st.integers(0, one_in - 1)).flatmap(
        lambda pick: other if pick[0] and pick[1] == one_in // 2 else good)


def rarely(one_in: int) -> st.SearchStrategy[bool]:
    """True about one time in ``one_in`` of the dirty examples."""
    return mostly(st.just(False), st.just(True), one_in)


def sometimes(one_in: int) -> st.SearchStrategy[bool]:
    """True about one time in ``one_in``, clean examples or dirty."""
    return st.integers(0, one_in - 1).map(lambda n: n == one_in // 2)


def edge_ints(lo: int, hi: int, one_in: int = 12) -> st.SearchStrategy[Any]:
    """Integers in [lo, hi], often at the ends; sometimes just outside or not an integer."""
    good = st.one_of(st.sampled_from(sorted({lo, min(lo + 1, hi), max(hi - 1, lo), hi})),
                     st.integers(lo, hi))
    bad = st.sampled_from([lo - 1, hi + 1, float(lo), *ODD_NUMBERS])
    return mostly(good, bad, one_in)


def edge_nums(lo: float, hi: float, positive: bool = False,
              one_in: int = 12) -> st.SearchStrategy[Any]:
    """Numbers in [lo, hi] (or (0, hi] when ``positive``), often at the ends or tiny."""
    low = 1e-9 if positive else lo
    ends = [low, hi, (low + hi) / 2, 1e-3 if positive else lo]
    good = st.one_of(st.sampled_from(ends),
                     st.floats(low, hi, allow_nan=False, allow_infinity=False),
                     st.integers(math.ceil(max(low, 1e-9)), math.floor(hi)))
    bad = st.sampled_from([lo - 1, lo - 1e-9, hi + 1, hi * 2, *ODD_NUMBERS])
    return mostly(good, bad, one_in)


def bools() -> st.SearchStrategy[Any]:
    return mostly(st.booleans(), st.sampled_from(["true", 1, 0, None]))


def texts(*samples: str, max_len: int = 40) -> st.SearchStrategy[Any]:
    """Printable text (samples first), sometimes an odd string."""
    printable = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF,
                                      blacklist_characters="\x7f"), min_size=1, max_size=max_len)
    return mostly(st.one_of(st.sampled_from(samples), printable) if samples else printable,
                  st.sampled_from(ODD_STRINGS))


def lists(element: st.SearchStrategy[Any], max_size: int = 4, long: int = 0,
          min_size: int = 0, unique: bool = False) -> st.SearchStrategy[Any]:
    """Lists, empty and short, and sometimes ``long`` items long (when given); ``unique``:
    no two items alike (strings compared case-insensitively) but in dirty examples."""
    def key(value: Any) -> Any:
        return value.lower() if isinstance(value, str) else repr(value)

    out = st.lists(element, min_size=min_size, max_size=max_size)
    if unique:
        out = mostly(st.lists(element, min_size=min_size, max_size=max_size, unique_by=key),
                     out)
    if long:
        out = mostly(out, st.lists(element, min_size=long, max_size=long), one_in=12)
    return mostly(out, st.sampled_from(["x", {}, None, 3]), one_in=30)


def header_names() -> st.SearchStrategy[Any]:
    """HTTP header names, sometimes pseudo, host, empty, spaced or longer than Envoy allows."""
    good = st.sampled_from(["x-a", "X-Upper", "content-type", "x_under", "x.dot", "a",
                            "x-" + "h" * 200, "~!#$%&'*+.^`|", "authorization"])
    bad = st.sampled_from(["", ":path", ":authority", "host", "Host", "x a", "x\n", "é",
                           "x" * 257, "x" * 16385, 7])
    return mostly(good, bad)


def header_values() -> st.SearchStrategy[Any]:
    """Header values: plain, empty, with Envoy formatters, tabs, long; or malformed formatters,
    CR/LF/NUL, too long, lone surrogates."""
    return mostly(st.sampled_from([
        "v", "", "v w", "a\tb", "é", "%REQ(x-a)%", "%START_TIME%", "%%", "100%%", "x" * 8192,
        "\x01", "%REQ(x?y):3%", "%START_TIME(%s)%", "%UNIQUE_ID%", "%DYNAMIC_METADATA(a:b)%"]),
        st.sampled_from(["100%", "%BOGUS%", "%REQ(", "x" * 16385, "a\nb", "\x00", 5, "a%20b",
                         "%PROTOCOL(x)%", "%REQ(x y)%", "%FILTER_STATE(a:PLAIN)%", "\ud800"]),
        one_in=6)


def paths() -> st.SearchStrategy[Any]:
    return mostly(st.sampled_from(["/", "/healthz", "/a/b", "/a b", "/é", "/x?y=1", "/%41",
                                   "/" + "p" * 2000]),
                  st.sampled_from(["", "healthz", "//", "/" + "p" * 2048, "*", 5]))


def cluster_refs() -> st.SearchStrategy[Any]:
    """A cluster that exists; sometimes one that does not or an invalid name."""
    return mostly(st.sampled_from(CLUSTERS),
                  st.sampled_from(["missing", "Bad Name!", "", "-x", "x" * 129, 3]))


def secret_refs(pool: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """A secret of the pool; sometimes one of another type, a missing one or a bad name."""
    others = [n for n in CERTIFICATE_SECRETS + CA_SECRETS + GENERIC_SECRETS if n not in pool]
    return mostly(st.sampled_from(pool),
                  st.sampled_from([*others, "missing", "bad name", "", 1]))


def urls() -> st.SearchStrategy[Any]:
    return mostly(st.sampled_from([
        "https://idp.example/token", "http://localhost:8080/auth?x=1&y=%20",
        "https://[::1]:8443/a", "https://10.0.0.1/a#frag", "https://idp.example",
        "http://u:p@idp.example/x", "https://" + "a" * 60 + ".example/" + "p" * 1900]),
        st.sampled_from(["", "ftp://x", "https://", "idp.example", "https:// a", "http:/x",
                         "https://a\nb", "//a.example/x", "https://[::1/x"]))


@st.composite
def fields(draw: st.DrawFn, required: dict[str, st.SearchStrategy[Any]],
           optional: dict[str, st.SearchStrategy[Any]] | None = None) -> dict[str, Any]:
    """An object with every ``required`` member and each ``optional`` one half the time
    (``st.fixed_dictionaries`` leaves optional members out far more often)."""
    out = {key: draw(value) for key, value in required.items()}
    for key, value in (optional or {}).items():
        if draw(st.booleans()):
            out[key] = draw(value)
    return out


def with_unknown(obj: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects of ``obj``, sometimes with a member no definition has."""
    return mostly(obj, obj.map(lambda o: {**o, "unknownField": 1}), one_in=30)
