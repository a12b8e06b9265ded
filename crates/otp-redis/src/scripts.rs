//! The Lua scripts, one per rule that must be atomic. Each file's header
//! gives its KEYS, ARGV and reply. `Script` sends EVALSHA and loads the
//! script on NOSCRIPT, so a restarted or new Redis node needs no setup.
//! Shared functions (`buckets.lua`, `vrf.lua`, `fraud.lua`, `counters.lua`) are prepended at build
//! time, as Redis has no include.

use std::sync::LazyLock;

use redis::Script;

pub(crate) static PUT_CODE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/buckets.lua"),
        include_str!("scripts/vrf.lua"),
        include_str!("scripts/put_code.lua")
    ))
});

pub(crate) static CHECK_CODE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/vrf.lua"),
        include_str!("scripts/counters.lua"),
        include_str!("scripts/check_code.lua")
    ))
});

pub(crate) static DISCARD_CODE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/vrf.lua"),
        include_str!("scripts/discard_code.lua")
    ))
});

pub(crate) static DELIVERED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/vrf.lua"),
        include_str!("scripts/counters.lua"),
        include_str!("scripts/delivered.lua")
    ))
});

pub(crate) static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/vrf.lua"),
        include_str!("scripts/cancel.lua")
    ))
});

pub(crate) static REPORT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/vrf.lua"),
        include_str!("scripts/report.lua")
    ))
});

pub(crate) static SWEEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/vrf.lua"),
        include_str!("scripts/sweep.lua")
    ))
});

pub(crate) static CLAIM_EVENTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/vrf.lua"),
        include_str!("scripts/claim_events.lua")
    ))
});

pub(crate) static SETTLE_EVENT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/settle_event.lua")));

pub(crate) static LATEST: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/latest.lua")));

pub(crate) static IDEMPOTENCY_BEGIN: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/idempotency_begin.lua")));

pub(crate) static IDEMPOTENCY_END: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/idempotency_end.lua")));

pub(crate) static PUT_PAIRING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/buckets.lua"),
        include_str!("scripts/put_pairing.lua")
    ))
});

pub(crate) static TAKE_PAIRING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/buckets.lua"),
        include_str!("scripts/take_pairing.lua")
    ))
});

pub(crate) static DISCARD_PAIRING: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/discard_pairing.lua")));

pub(crate) static HIT_BUCKET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/buckets.lua"),
        include_str!("scripts/hit_bucket.lua")
    ))
});

pub(crate) static FRAUD_COUNT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/counters.lua"),
        include_str!("scripts/fraud_count.lua")
    ))
});

pub(crate) static FRAUD_BLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/fraud.lua"),
        include_str!("scripts/fraud_block.lua")
    ))
});

pub(crate) static FRAUD_UNBLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/fraud.lua"),
        include_str!("scripts/fraud_unblock.lua")
    ))
});

pub(crate) static FRAUD_EXPIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/fraud.lua"),
        include_str!("scripts/fraud_expire.lua")
    ))
});

pub(crate) static FRAUD_BLOCKS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/fraud_blocks.lua")));
