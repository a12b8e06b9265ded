"""Schemathesis hooks for otpd: generators for the two string formats
that no JSON Schema keyword can state (see crates/otp-server/src/api/fields.rs).

- `phone`: a number libphonenumber knows as valid. Generated from a few
  national numbering plans, in the spellings people type.
- `otpd-email`: an address the domain accepts, at most 64 characters before @.
- `otpd-locale`: a tag a served locale matches after fallback: a built-in
  tag (crates/otp-config/locales/), in any case, with `_` or `-`, and
  sometimes a region or variant that falls back to it (`de-AT`, `pt-BR-x1`).
"""
import pathlib
import schemathesis
from hypothesis import strategies as st

# (calling code, national number pattern) from ranges that are allocated
# in libphonenumber's metadata: KZ mobile, DE Berlin, GB mobile, US.
_PLANS = [
    ("7", r"7(01|05|77)[0-9]{7}"),
    ("49", r"30[1-9][0-9]{7}"),
    ("44", r"7(400|412|912)[0-9]{6}"),
    ("1", r"(415|212)[2-9][0-9]{6}"),
]


@st.composite
def _phone(draw):
    code, pattern = draw(st.sampled_from(_PLANS))
    national = draw(st.from_regex(rf"\A{pattern}\Z"))
    plus = draw(st.sampled_from(["+", ""]))
    sep = draw(st.sampled_from(["", " ", "-"]))
    # Split the national number so separators land where people put them.
    head, tail = national[:3], national[3:]
    return f"{plus}{code}{sep}{head}{sep}{tail}"


_ATOM = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]{1,10}"
_LABEL = r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"

_email = st.builds(
    lambda local, labels: f"{local}@{'.'.join(labels)}",
    st.from_regex(rf"\A{_ATOM}(\.{_ATOM}){{0,3}}\Z").filter(lambda l: len(l) <= 64),
    st.lists(st.from_regex(rf"\A{_LABEL}\Z"), min_size=2, max_size=4),
)

_LOCALES = sorted(
    p.stem
    for p in (pathlib.Path(__file__).parent.parent / "crates/otp-config/locales").glob("*.toml")
    if p.stem != "countries"
)


@st.composite
def _locale(draw):
    tag = draw(st.sampled_from(_LOCALES))
    # Chinese tags with a script subtag fall back by script, not language.
    if draw(st.booleans()) and not tag.startswith("zh"):
        tag += draw(st.from_regex(r"\A-[A-Z]{2}(-[a-z0-9]{5,8})?\Z"))
    tag = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in tag)
    return tag.replace("-", draw(st.sampled_from(["-", "_"])))


schemathesis.openapi.format("phone", _phone())
schemathesis.openapi.format("otpd-locale", _locale())
schemathesis.openapi.format("otpd-email", _email)
