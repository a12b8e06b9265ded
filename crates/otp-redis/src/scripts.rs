//! The Lua scripts, one per rule that must be atomic. Each file's header
//! gives its KEYS, ARGV and reply. `Script` sends EVALSHA and loads the
//! script on NOSCRIPT, so a restarted or new Redis node needs no setup.

use std::sync::LazyLock;

use redis::Script;

pub(crate) static PUT_CODE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/buckets.lua"),
        include_str!("scripts/put_code.lua")
    ))
});

pub(crate) static CHECK_CODE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/check_code.lua")));

pub(crate) static DISCARD_CODE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/discard_code.lua")));

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
