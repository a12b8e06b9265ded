#!/usr/bin/env python3
"""Check otpd's built-in locale data (crates/otp-config/locales/).

Run from anywhere: python3 scripts/check-locales.py [LOCALES_DIR]
Exits 1 and prints every problem if any rule is broken; prints a summary otherwise.

Rules (issue 21):
- exactly one <tag>.toml per built-in tag, plus countries.toml, nothing else;
- each locale file parses, starts with "# <English name> (<tag>)", and has exactly
  the keys name, voice, sms, call, email_subject, email_text, telegram, pairing, all strings;
- en.toml is byte for byte otpd's English defaults (seconds, {lifetime});
- every other locale says the lifetime with {minutes}, never {lifetime};
- sms, email_text, telegram, pairing hold {password} and the lifetime placeholder;
  call holds {password} only; email_subject holds no placeholder;
- no other {...} placeholder, no stray brace, no line break, no "minute(s)";
- voice is a language code of Twilio's <Say> voices; a voice in another language
  than the locale's needs a "# voice: ..." comment that explains the fallback;
- an SMS renders under 1600 characters (a 6-digit code, 2-digit minutes); over 160 is reported;
- countries.toml is one [countries] table of ISO 3166-1 alpha-2 codes to built-in tags.
"""
import os
import re
import sys
import tomllib

TAGS = ["af", "ar", "ca", "cs", "da", "de", "el", "en", "en-GB", "es", "et", "fi", "fr", "he",
        "hi", "hr", "hu", "id", "it", "ja", "kk", "kn", "ko", "lt", "mr", "ms", "nb", "nl", "pl",
        "pt", "pt-BR", "ro", "ru", "sk", "sv", "te", "th", "tl", "tr", "uk", "vi", "zh", "zh-CN",
        "zh-HK"]
KEYS = ["name", "voice", "sms", "call", "email_subject", "email_text", "telegram", "pairing"]
WITH_LIFETIME = ["sms", "email_text", "telegram", "pairing"]
TEMPLATES = ["sms", "call", "email_subject", "email_text", "telegram", "pairing"]

EN = {
    "name": "English",
    "voice": "en-US",
    "sms": "Your code is {password}. It expires in {lifetime} seconds.",
    "call": "Your code is {password}.",
    "email_subject": "Your verification code",
    "email_text": "Your code is {password}. It expires in {lifetime} seconds.",
    "telegram": "Your code is {password}. It expires in {lifetime} seconds.",
    "pairing": "Your code is {password}. Enter it in the app within {lifetime} seconds.",
}

# Language codes of Twilio <Say> (twilio-node VoiceResponse SayLanguage), plus lt-LT:
# Twilio offers Google.lt-LT-Standard-A/B voices although the short list omits it.
TWILIO_SAY = {
    "af-ZA", "am-ET", "ar-AE", "ar-XA", "arb", "bg-BG", "bn-IN", "ca-ES", "cmn-CN", "cmn-TW",
    "cs-CZ", "cy-GB", "da-DK", "de-AT", "de-DE", "el-GR", "en-AU", "en-CA", "en-GB",
    "en-GB-WLS", "en-IE", "en-IN", "en-NZ", "en-US", "en-ZA", "es-ES", "es-MX", "es-US",
    "fi-FI", "fil-PH", "fr-CA", "fr-FR", "fr-BE", "gu-IN", "he-IL", "hi-IN", "hu-HU", "id-ID",
    "is-IS", "it-IT", "ja-JP", "kn-IN", "ko-KR", "lv-LV", "ml-IN", "mr-IN", "ms-MY", "nb-NO",
    "nl-BE", "nl-NL", "pa-IN", "pl-PL", "pt-BR", "pt-PT", "ro-RO", "ru-RU", "sk-SK", "sr-RS",
    "sv-SE", "ta-IN", "te-IN", "th-TH", "tr-TR", "uk-UA", "vi-VN", "yue-HK", "zh-CN", "zh-HK",
    "zh-TW", "lt-LT",
}
# Voice languages that are the locale's own language under another code.
SAME_LANGUAGE = {"tl": {"fil"}, "zh": {"cmn", "yue"}, "ar": {"arb"}}

# ISO 3166-1 alpha-2 codes currently assigned (249, as in tzdata's iso3166.tab),
# plus XK, the user-assigned code phone-number libraries use for Kosovo.
ISO_3166 = set("""
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI
    BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN
    CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK
    FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM
    HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK
    ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP
    NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
    SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF
    TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW
    XK
""".split())

PLACEHOLDER = re.compile(r"\{[^{}]*\}")
LINE_BREAKS = "\n\r\u0085\u2028\u2029\v\f"


def render(text):
    return text.replace("{password}", "123456").replace("{minutes}", "10").replace("{lifetime}", "600")


def check_locale(path, tag, problems):
    def bad(msg):
        problems.append(f"{tag}.toml: {msg}")

    raw = open(path, "rb").read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return bad(f"not UTF-8: {e}")
    if text.startswith("\ufeff"):
        bad("starts with a byte-order mark")
    first = text.split("\n", 1)[0]
    if not re.fullmatch(r"# [^()]+(?:\([^()]*\))?[^()]* \(" + re.escape(tag) + r"\)", first):
        bad(f"first line must be '# <English name> ({tag})', is {first!r}")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return bad(f"does not parse: {e}")

    if sorted(data) != sorted(KEYS):
        missing = [k for k in KEYS if k not in data]
        extra = [k for k in data if k not in KEYS]
        bad(f"keys must be exactly {KEYS}; missing {missing}, extra {extra}")
    for k, v in data.items():
        if not isinstance(v, str):
            bad(f"{k} must be a string, is {type(v).__name__}")
    data = {k: v for k, v in data.items() if isinstance(v, str)}

    if tag == "en":
        for k, want in EN.items():
            if data.get(k) != want:
                bad(f"{k} must be exactly {want!r}, is {data.get(k)!r}")

    life = "{lifetime}" if tag == "en" else "{minutes}"
    allowed = {"{password}", life}
    for k, v in data.items():
        if not v.strip():
            bad(f"{k} is empty")
        if v != v.strip():
            bad(f"{k} has leading or trailing whitespace")
        if any(c in v for c in LINE_BREAKS):
            bad(f"{k} contains a line break")
        found = PLACEHOLDER.findall(v)
        if k in ("name", "voice") and found:
            bad(f"{k} must hold no placeholder, has {found}")
        for p in found:
            if k in TEMPLATES and p not in allowed:
                bad(f"{k} has placeholder {p}; only {sorted(allowed)} are allowed here")
        if PLACEHOLDER.sub("", v).count("{") or PLACEHOLDER.sub("", v).count("}"):
            bad(f"{k} has a stray brace")
        if re.search(r"\(s\)|\(e?n\)|\(lar\)", v, re.I):
            bad(f"{k} spells a plural with parentheses: {v!r}")

    for k in WITH_LIFETIME:
        v = data.get(k, "")
        if "{password}" not in v:
            bad(f"{k} must contain {{password}}")
        if life not in v:
            bad(f"{k} must contain {life}")
    if "{password}" not in data.get("call", ""):
        bad("call must contain {password}")
    if life in data.get("call", ""):
        bad(f"call must not contain {life}")
    if PLACEHOLDER.search(data.get("email_subject", "")):
        bad("email_subject must contain no placeholder")

    voice = data.get("voice", "")
    if voice not in TWILIO_SAY:
        bad(f"voice {voice!r} is not a Twilio <Say> language code")
    lang = tag.split("-")[0]
    vlang = voice.split("-")[0]
    if vlang != lang and vlang not in SAME_LANGUAGE.get(lang, set()):
        if not re.search(r"^# voice: " + re.escape(voice) + r"\b", text, re.M):
            bad(f"voice {voice} is another language than {tag}: explain it in a '# voice: {voice} ...' comment")

    sms = render(data.get("sms", ""))
    if len(sms) >= 1600:
        bad(f"sms renders to {len(sms)} characters (limit 1600)")
    elif len(sms) > 160:
        print(f"note: {tag}.toml: sms renders to {len(sms)} characters (over 160)")
    return data


def check_countries(path, problems):
    def bad(msg):
        problems.append(f"countries.toml: {msg}")

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        bad(f"does not parse: {e}")
        return {}
    if list(data) != ["countries"] or not isinstance(data["countries"], dict):
        bad(f"must hold exactly one table [countries], holds {list(data)}")
        return {}
    countries = data["countries"]
    for code, tag in countries.items():
        if not re.fullmatch(r"[A-Z]{2}", code):
            bad(f"key {code!r} is not an uppercase ISO 3166-1 alpha-2 code")
        elif code not in ISO_3166:
            bad(f"key {code} is not an assigned ISO 3166-1 alpha-2 code")
        if not isinstance(tag, str) or tag not in TAGS:
            bad(f"{code} = {tag!r} is not one of the built-in tags")
    return countries


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "crates", "otp-config", "locales")
    problems = []
    present = sorted(os.listdir(root))
    expected = sorted([f"{t}.toml" for t in TAGS] + ["countries.toml"])
    for name in present:
        if name not in expected:
            problems.append(f"unexpected file {name} (tags are case-sensitive: {TAGS})")
    locales = {}
    for tag in TAGS:
        path = os.path.join(root, f"{tag}.toml")
        if not os.path.isfile(path):
            problems.append(f"missing {tag}.toml")
            continue
        d = check_locale(path, tag, problems)
        if d:
            locales[tag] = d
    names = {}
    for tag, d in locales.items():
        if d.get("name") in names:
            problems.append(f"{tag}.toml: name {d['name']!r} is also {names[d['name']]}'s")
        names[d.get("name")] = tag
    countries = {}
    cpath = os.path.join(root, "countries.toml")
    if os.path.isfile(cpath):
        countries = check_countries(cpath, problems)
    else:
        problems.append("missing countries.toml")

    if problems:
        for p in problems:
            print(f"error: {p}")
        print(f"{len(problems)} problem(s)")
        return 1
    used = sorted({t for t in countries.values()})
    print(f"ok: {len(locales)} locales, {len(countries)} regions in countries.toml "
          f"(mapped to {len(used)} locales)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
