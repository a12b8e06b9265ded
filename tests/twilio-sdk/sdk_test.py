#!/usr/bin/env python3
"""otpd's /v2 (Twilio Verify compatible) API driven by the official
twilio-python SDK, with only the Verify domain's base URL changed.

Env: OTPD_URL (http://127.0.0.1:8123), TWILIO_ACCOUNT_SID (AC + 32 hex),
TWILIO_AUTH_TOKEN. The codes come from otpd's dev outbox
(GET {OTPD_URL}/outbox/messages, no auth: native auth is off in the
runner). tests/twilio-sdk/run.sh installs the SDK and starts otpd.

Prints `ok   <step>: <detail>` per step; the first failure prints
`FAIL <step>: ...` and exits 1.
"""

import datetime
import json
import os
import re
import signal
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

# The SDK rewrites every request's host when TWILIO_EDGE or TWILIO_REGION
# is set (twilio/base/client_base.py get_hostname): 127.0.0.1:port would
# become 127.0.0.<region>.1:port. They must not leak in from the caller.
os.environ.pop("TWILIO_EDGE", None)
os.environ.pop("TWILIO_REGION", None)

import twilio  # noqa: E402
from twilio.base.exceptions import TwilioException, TwilioRestException  # noqa: E402
from twilio.rest import Client  # noqa: E402

OTPD_URL = os.environ.get("OTPD_URL", "").rstrip("/")
SID = os.environ.get("TWILIO_ACCOUNT_SID", "")
TOKEN = os.environ.get("TWILIO_AUTH_TOKEN", "")
TO = "+4915112345678"
TO2 = "+4915112345679"
CODE_LENGTH = 6
# A paging bug (a next_page_url that points back at the same page) would
# make list() loop forever: the whole run gets this long.
DEADLINE_SECS = 120


class Failed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failed(msg)


def ok(step, detail):
    print(f"ok   {step}: {detail}", flush=True)


def client(token=TOKEN):
    c = Client(SID, token)
    # The Verify domain builds every URL from its base_url
    # (twilio/base/domain.py Domain.absolute_url); client.verify is cached
    # on the client, so this one assignment moves all of Verify to otpd.
    c.verify.base_url = OTPD_URL
    return c


def outbox(to):
    """The dev outbox's messages to `to`, newest first."""
    query = urllib.parse.urlencode({"channel": "sms", "to": to})
    url = f"{OTPD_URL}/outbox/messages?{query}"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            entries = json.load(resp)
    except urllib.error.HTTPError as e:
        raise Failed(
            f"GET {url} answered {e.code}: {e.read()[:300]!r} "
            "(the dev outbox needs a channel on the `log` dev sink, and native auth off)"
        )
    check(isinstance(entries, list), f"GET {url}: a JSON list expected, got {entries!r:.300}")
    return [e for e in entries if e.get("to") == to]


def last_outbox_id(to):
    return max((e["id"] for e in outbox(to)), default=0)


def code_sent_after(to, after_id):
    """The code of the first message to `to` newer than `after_id`, read
    from its body (and checked against the entry's `code`)."""
    deadline = time.monotonic() + 5
    while True:
        newer = [e for e in outbox(to) if e["id"] > after_id]
        if newer:
            break
        check(time.monotonic() < deadline, f"no SMS to {to} reached the dev outbox within 5 s")
        time.sleep(0.1)
    entry = max(newer, key=lambda e: e["id"])
    body = entry.get("body", "")
    found = re.findall(r"(?<!\d)\d{%d}(?!\d)" % CODE_LENGTH, body)
    check(found, f"no {CODE_LENGTH}-digit code in the outbox body {body!r}")
    code = entry.get("code")
    if code is not None:
        check(code in found, f"the outbox entry's code {code!r} is not in its body {body!r}")
    else:
        check(len(set(found)) == 1, f"more than one {CODE_LENGTH}-digit run in {body!r}")
        code = found[0]
    return code


def expect_rest_error(call, code, status):
    """`call()` must raise TwilioRestException with this code and status."""
    try:
        got = call()
    except TwilioRestException as e:
        check(
            e.code == code and e.status == status,
            f"TwilioRestException code={e.code!r} status={e.status!r} "
            f"(msg {e.msg!r}), expected code={code} status={status}",
        )
        return e
    except TwilioException as e:
        # e.g. TwilioServiceException: an error body with type, title,
        # status and code is taken as RFC 9457 (twilio/base/version.py).
        raise Failed(
            f"{type(e).__name__} raised, expected TwilioRestException "
            f"code={code} status={status}: {e!r} {vars(e)!r:.400}"
        )
    raise Failed(f"no error, expected TwilioRestException {code}/{status}; got {got!r}")


def is_datetime(v):
    # deserialize.iso8601_datetime returns the string as it came when it is
    # not exactly %Y-%m-%dT%H:%M:%SZ.
    return isinstance(v, datetime.datetime)


def main():
    for name, value in [("OTPD_URL", OTPD_URL), ("TWILIO_ACCOUNT_SID", SID), ("TWILIO_AUTH_TOKEN", TOKEN)]:
        if not value:
            print(f"FAIL setup: {name} is not set", file=sys.stderr)
            return 1
    def too_long(*_):
        raise Failed(f"the run took over {DEADLINE_SECS} s (a paging loop, or otpd stopped answering?)")

    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(DEADLINE_SECS)

    c = client()
    state = {}
    steps = []

    def step(name):
        def register(fn):
            steps.append((name, fn))
            return fn

        return register

    @step("a. base url")
    def _():
        url = c.verify.v2.absolute_url("Services")
        check(url == f"{OTPD_URL}/v2/Services", f"the SDK would call {url}, not {OTPD_URL}/v2/Services")
        return f"twilio-python {twilio.__version__}, Verify at {url}"

    @step("b. create service")
    def _():
        s = c.verify.v2.services.create(friendly_name="Acme", code_length=6)
        check(isinstance(s.sid, str) and s.sid.startswith("VA") and len(s.sid) == 34, f"sid {s.sid!r}")
        check(s.friendly_name == "Acme", f"friendly_name {s.friendly_name!r}")
        check(s.code_length == 6, f"code_length {s.code_length!r}")
        check(s.account_sid == SID, f"account_sid {s.account_sid!r}, expected {SID}")
        check(is_datetime(s.date_created), f"date_created {s.date_created!r} did not parse as a datetime")
        state["va"] = s.sid
        return f"{s.sid} friendly_name={s.friendly_name!r} code_length={s.code_length}"

    @step("c. send")
    def _():
        before = last_outbox_id(TO)
        v = c.verify.v2.services(state["va"]).verifications.create(to=TO, channel="sms")
        check(isinstance(v.sid, str) and v.sid.startswith("VE") and len(v.sid) == 34, f"sid {v.sid!r}")
        check(v.status == "pending", f"status {v.status!r}")
        check(v.channel == "sms", f"channel {v.channel!r}")
        check(v.to == TO, f"to {v.to!r}")
        check(v.service_sid == state["va"], f"service_sid {v.service_sid!r}")
        check(
            isinstance(v.send_code_attempts, list) and len(v.send_code_attempts) == 1,
            f"send_code_attempts {v.send_code_attempts!r}, expected one",
        )
        check(is_datetime(v.date_created), f"date_created {v.date_created!r} did not parse as a datetime")
        state["ve"] = v.sid
        state["code"] = code_sent_after(TO, before)
        return f"{v.sid} status={v.status} attempts={len(v.send_code_attempts)}, outbox code {state['code']}"

    @step("d. fetch")
    def _():
        v = c.verify.v2.services(state["va"]).verifications(state["ve"]).fetch()
        check(v.sid == state["ve"], f"sid {v.sid!r}, expected {state['ve']}")
        check(v.status == "pending", f"status {v.status!r}")
        return f"{v.sid} status={v.status}"

    @step("e. wrong check")
    def _():
        wrong = "111111" if state["code"] == "000000" else "000000"
        r = c.verify.v2.services(state["va"]).verification_checks.create(to=TO, code=wrong)
        check(r.status == "pending", f"status {r.status!r}")
        check(r.valid is False, f"valid {r.valid!r}")
        return f"code {wrong}: status={r.status} valid={r.valid}"

    @step("f. right check")
    def _():
        r = c.verify.v2.services(state["va"]).verification_checks.create(to=TO, code=state["code"])
        check(r.status == "approved", f"status {r.status!r}")
        check(r.valid is True, f"valid {r.valid!r}")
        check(r.sid == state["ve"], f"sid {r.sid!r}, expected {state['ve']}")
        return f"code {state['code']}: status={r.status} valid={r.valid}"

    @step("g. fetch after approval")
    def _():
        verification = c.verify.v2.services(state["va"]).verifications(state["ve"])
        e = expect_rest_error(verification.fetch, 20404, 404)
        return f"TwilioRestException code={e.code} status={e.status}"

    @step("h. cancel")
    def _():
        svc = c.verify.v2.services(state["va"])
        v = svc.verifications.create(to=TO2, channel="sms")
        check(v.status == "pending", f"send to {TO2}: status {v.status!r}")
        u = svc.verifications(v.sid).update(status="canceled")
        check(u.status == "canceled", f"status {u.status!r}")
        check(u.sid == v.sid, f"sid {u.sid!r}, expected {v.sid}")
        e = expect_rest_error(lambda: svc.verifications(v.sid).fetch(), 20404, 404)
        return f"{v.sid} status={u.status}, then fetch: code={e.code} status={e.status}"

    @step("i. list services, paged")
    def _():
        services = c.verify.v2.services
        ours = [state["va"]] + [services.create(friendly_name=f"Acme {n}").sid for n in (2, 3)]
        listed = [s.sid for s in services.list(page_size=2)]
        check(len(listed) == len(set(listed)), f"a service listed twice: {listed}")
        check(len(listed) >= 3, f"{len(listed)} services listed with page_size=2: {listed}")
        missing = [s for s in ours if s not in listed]
        check(not missing, f"{missing} not listed (next_page_url not followed?): {listed}")
        page = services.page(page_size=2)
        first = [s.sid for s in page]
        check(len(first) == 2, f"page(page_size=2) held {len(first)} services")
        nxt = page.next_page_url
        check(nxt is not None, "page(page_size=2) has no next_page_url")
        check(nxt.startswith(("http://", "https://")), f"next_page_url {nxt!r} is not absolute")
        second = page.next_page()
        check(second is not None, "next_page() gave nothing")
        check(not set(first) & {s.sid for s in second}, "the second page repeats the first")
        return f"{len(listed)} services over pages of 2; next_page_url={nxt}"

    @step("j. wrong token")
    def _():
        bad = client("wrong")
        e = expect_rest_error(lambda: bad.verify.v2.services(state["va"]).fetch(), 20003, 401)
        return f"TwilioRestException code={e.code} status={e.status}"

    passed = 0
    for name, fn in steps:
        try:
            ok(name, fn())
            passed += 1
        except Failed as e:
            print(f"FAIL {name}: {e}", file=sys.stderr, flush=True)
            break
        except Exception as e:  # an SDK or transport error: show all of it
            print(f"FAIL {name}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            traceback.print_exc()
            break
    # The later steps build on the earlier ones: the first failure ends the run.
    if passed == len(steps):
        print(f"twilio-python: {passed} passed, 0 failed", flush=True)
        return 0
    skipped = len(steps) - passed - 1
    print(f"twilio-python: {passed} passed, 1 failed, {skipped} skipped", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
