// otpd's /v2 (Twilio Verify compatible) API driven by the official
// twilio-node SDK, with only the Verify domain's base URL changed.
//
// Env: OTPD_URL (http://127.0.0.1:8123), TWILIO_ACCOUNT_SID (AC + 32 hex),
// TWILIO_AUTH_TOKEN. The codes come from otpd's dev outbox
// (GET {OTPD_URL}/outbox/messages, no auth: native auth is off in the
// runner). The SDK is found through NODE_PATH (tests/twilio-sdk/run.sh
// installs it into a temporary prefix) or a node_modules above this file.
//
// Prints `ok   <step>: <detail>` per step; the first failure prints
// `FAIL <step>: ...` and exits 1.

import { createRequire } from "node:module";

// The SDK rewrites every request's hostname when TWILIO_EDGE or
// TWILIO_REGION is set (lib/base/BaseTwilio.js getHostname): they must not
// leak in from the caller.
delete process.env.TWILIO_EDGE;
delete process.env.TWILIO_REGION;

// A CommonJS require resolves through NODE_PATH, which an ESM import does not.
const require = createRequire(import.meta.url);
const twilio = require("twilio");
const sdkVersion = require("twilio/package.json").version;
const { RestException } = twilio;

const OTPD_URL = (process.env.OTPD_URL || "").replace(/\/+$/, "");
const SID = process.env.TWILIO_ACCOUNT_SID || "";
const TOKEN = process.env.TWILIO_AUTH_TOKEN || "";
const TO = "+4915112345678";
const TO2 = "+4915112345679";
const CODE_LENGTH = 6;
// A paging bug (a next_page_url that points back at the same page) would
// make list() loop forever: the whole run gets this long.
const DEADLINE_MS = 120_000;

class Failed extends Error {}

function check(cond, msg) {
  if (!cond) throw new Failed(msg);
}

const show = (v) => JSON.stringify(v)?.slice(0, 400);

function client(token = TOKEN) {
  const c = twilio(SID, token);
  // The Verify domain builds every URL from its baseUrl
  // (lib/base/Domain.js absoluteUrl); client.verify is cached on the
  // client, so this one assignment moves all of Verify to otpd.
  c.verify.baseUrl = OTPD_URL;
  return c;
}

async function outbox(to) {
  const query = new URLSearchParams({ channel: "sms", to });
  const url = `${OTPD_URL}/outbox/messages?${query}`;
  const resp = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  const text = await resp.text();
  check(
    resp.status === 200,
    `GET ${url} answered ${resp.status}: ${text.slice(0, 300)} ` +
      "(the dev outbox needs a channel on the `log` dev sink, and native auth off)",
  );
  const entries = JSON.parse(text);
  check(Array.isArray(entries), `GET ${url}: a JSON list expected, got ${text.slice(0, 300)}`);
  return entries.filter((e) => e.to === to);
}

async function lastOutboxId(to) {
  return Math.max(0, ...(await outbox(to)).map((e) => e.id));
}

// The code of the newest message to `to` after `afterId`, read from its
// body (and checked against the entry's `code`).
async function codeSentAfter(to, afterId) {
  const deadline = Date.now() + 5000;
  let newer;
  for (;;) {
    newer = (await outbox(to)).filter((e) => e.id > afterId);
    if (newer.length) break;
    check(Date.now() < deadline, `no SMS to ${to} reached the dev outbox within 5 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const entry = newer.reduce((a, b) => (b.id > a.id ? b : a));
  const body = entry.body ?? "";
  const found = body.match(new RegExp(`(?<!\\d)\\d{${CODE_LENGTH}}(?!\\d)`, "g")) ?? [];
  check(found.length, `no ${CODE_LENGTH}-digit code in the outbox body ${show(body)}`);
  if (entry.code !== undefined) {
    check(found.includes(entry.code), `the outbox entry's code ${entry.code} is not in its body ${show(body)}`);
    return entry.code;
  }
  check(new Set(found).size === 1, `more than one ${CODE_LENGTH}-digit run in ${show(body)}`);
  return found[0];
}

// `call()` must reject with a RestException of this code and status.
async function expectRestError(call, code, status) {
  let got;
  try {
    got = await call();
  } catch (e) {
    if (e instanceof RestException) {
      check(
        e.code === code && e.status === status,
        `RestException code=${e.code} status=${e.status} (message ${show(e.message)}), ` +
          `expected code=${code} status=${status}`,
      );
      return e;
    }
    // e.g. TwilioServiceException: an error body with string type and
    // title and numeric status and code is taken as RFC 9457
    // (lib/base/Version.js throwException).
    throw new Failed(
      `${e?.constructor?.name} raised, expected RestException code=${code} status=${status}: ` +
        `${e?.message} ${show({ ...e })}`,
    );
  }
  throw new Failed(`no error, expected RestException ${code}/${status}; got ${show(got)}`);
}

// deserialize.iso8601DateTime returns the string as it came when dayjs
// cannot parse it.
const isDate = (v) => v instanceof Date && !Number.isNaN(v.getTime());

async function main() {
  for (const [name, value] of [
    ["OTPD_URL", OTPD_URL],
    ["TWILIO_ACCOUNT_SID", SID],
    ["TWILIO_AUTH_TOKEN", TOKEN],
  ]) {
    if (!value) {
      console.error(`FAIL setup: ${name} is not set`);
      return 1;
    }
  }
  const c = client();
  const state = {};
  const steps = [];
  const step = (name, fn) => steps.push([name, fn]);

  step("a. base url", async () => {
    const url = c.verify.v2.absoluteUrl("Services");
    check(url === `${OTPD_URL}/v2/Services`, `the SDK would call ${url}, not ${OTPD_URL}/v2/Services`);
    return `twilio-node ${sdkVersion}, Verify at ${url}`;
  });

  step("b. create service", async () => {
    const s = await c.verify.v2.services.create({ friendlyName: "Acme", codeLength: 6 });
    check(typeof s.sid === "string" && s.sid.startsWith("VA") && s.sid.length === 34, `sid ${show(s.sid)}`);
    check(s.friendlyName === "Acme", `friendlyName ${show(s.friendlyName)}`);
    check(s.codeLength === 6, `codeLength ${show(s.codeLength)}`);
    check(s.accountSid === SID, `accountSid ${show(s.accountSid)}, expected ${SID}`);
    check(isDate(s.dateCreated), `dateCreated ${show(s.dateCreated)} did not parse as a Date`);
    state.va = s.sid;
    return `${s.sid} friendlyName=${show(s.friendlyName)} codeLength=${s.codeLength}`;
  });

  step("c. send", async () => {
    const before = await lastOutboxId(TO);
    const v = await c.verify.v2.services(state.va).verifications.create({ to: TO, channel: "sms" });
    check(typeof v.sid === "string" && v.sid.startsWith("VE") && v.sid.length === 34, `sid ${show(v.sid)}`);
    check(v.status === "pending", `status ${show(v.status)}`);
    check(v.channel === "sms", `channel ${show(v.channel)}`);
    check(v.to === TO, `to ${show(v.to)}`);
    check(v.serviceSid === state.va, `serviceSid ${show(v.serviceSid)}`);
    check(
      Array.isArray(v.sendCodeAttempts) && v.sendCodeAttempts.length === 1,
      `sendCodeAttempts ${show(v.sendCodeAttempts)}, expected one`,
    );
    check(isDate(v.dateCreated), `dateCreated ${show(v.dateCreated)} did not parse as a Date`);
    state.ve = v.sid;
    state.code = await codeSentAfter(TO, before);
    return `${v.sid} status=${v.status} attempts=${v.sendCodeAttempts.length}, outbox code ${state.code}`;
  });

  step("d. fetch", async () => {
    const v = await c.verify.v2.services(state.va).verifications(state.ve).fetch();
    check(v.sid === state.ve, `sid ${show(v.sid)}, expected ${state.ve}`);
    check(v.status === "pending", `status ${show(v.status)}`);
    return `${v.sid} status=${v.status}`;
  });

  step("e. wrong check", async () => {
    const wrong = state.code === "000000" ? "111111" : "000000";
    const r = await c.verify.v2.services(state.va).verificationChecks.create({ to: TO, code: wrong });
    check(r.status === "pending", `status ${show(r.status)}`);
    check(r.valid === false, `valid ${show(r.valid)}`);
    return `code ${wrong}: status=${r.status} valid=${r.valid}`;
  });

  step("f. right check", async () => {
    const r = await c.verify.v2.services(state.va).verificationChecks.create({ to: TO, code: state.code });
    check(r.status === "approved", `status ${show(r.status)}`);
    check(r.valid === true, `valid ${show(r.valid)}`);
    check(r.sid === state.ve, `sid ${show(r.sid)}, expected ${state.ve}`);
    return `code ${state.code}: status=${r.status} valid=${r.valid}`;
  });

  step("g. fetch after approval", async () => {
    const e = await expectRestError(
      () => c.verify.v2.services(state.va).verifications(state.ve).fetch(),
      20404,
      404,
    );
    return `RestException code=${e.code} status=${e.status}`;
  });

  step("h. cancel", async () => {
    const svc = c.verify.v2.services(state.va);
    const v = await svc.verifications.create({ to: TO2, channel: "sms" });
    check(v.status === "pending", `send to ${TO2}: status ${show(v.status)}`);
    const u = await svc.verifications(v.sid).update({ status: "canceled" });
    check(u.status === "canceled", `status ${show(u.status)}`);
    check(u.sid === v.sid, `sid ${show(u.sid)}, expected ${v.sid}`);
    const e = await expectRestError(() => svc.verifications(v.sid).fetch(), 20404, 404);
    return `${v.sid} status=${u.status}, then fetch: code=${e.code} status=${e.status}`;
  });

  step("i. list services, paged", async () => {
    const services = c.verify.v2.services;
    const ours = [state.va];
    for (const n of [2, 3]) ours.push((await services.create({ friendlyName: `Acme ${n}` })).sid);
    const listed = (await services.list({ pageSize: 2 })).map((s) => s.sid);
    check(listed.length === new Set(listed).size, `a service listed twice: ${listed}`);
    check(listed.length >= 3, `${listed.length} services listed with pageSize 2: ${listed}`);
    const missing = ours.filter((s) => !listed.includes(s));
    check(!missing.length, `${missing} not listed (next_page_url not followed?): ${listed}`);
    const page = await services.page({ pageSize: 2 });
    const first = page.instances.map((s) => s.sid);
    check(first.length === 2, `page({pageSize: 2}) held ${first.length} services`);
    const next = page.nextPageUrl;
    check(next, `page({pageSize: 2}) has no nextPageUrl (${show(next)})`);
    check(/^https?:\/\//.test(next), `nextPageUrl ${show(next)} is not absolute`);
    const second = await page.nextPage();
    check(second, "nextPage() gave nothing");
    check(!second.instances.some((s) => first.includes(s.sid)), "the second page repeats the first");
    return `${listed.length} services over pages of 2; nextPageUrl=${next}`;
  });

  step("j. wrong token", async () => {
    const bad = client("wrong");
    const e = await expectRestError(() => bad.verify.v2.services(state.va).fetch(), 20003, 401);
    return `RestException code=${e.code} status=${e.status}`;
  });

  let passed = 0;
  for (const [name, fn] of steps) {
    try {
      console.log(`ok   ${name}: ${await fn()}`);
      passed += 1;
    } catch (e) {
      if (e instanceof Failed) console.error(`FAIL ${name}: ${e.message}`);
      else console.error(`FAIL ${name}: ${e?.constructor?.name}: ${e?.message}\n${e?.stack}`);
      break;
    }
  }
  // The later steps build on the earlier ones: the first failure ends the run.
  if (passed === steps.length) {
    console.log(`twilio-node: ${passed} passed, 0 failed`);
    return 0;
  }
  console.log(`twilio-node: ${passed} passed, 1 failed, ${steps.length - passed - 1} skipped`);
  return 1;
}

const timer = setTimeout(() => {
  console.error(`FAIL: the run took over ${DEADLINE_MS / 1000} s (a paging loop, or otpd stopped answering?)`);
  process.exit(1);
}, DEADLINE_MS);
timer.unref();
process.exitCode = await main();
