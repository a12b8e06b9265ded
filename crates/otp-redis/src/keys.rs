//! The key layout (see the crate docs' `# Layout`).
//!
//! Redis Cluster runs a script only when all its keys hash to one slot,
//! and a key's slot is decided by its hash tag: the text between its first
//! `{` and the next `}`. So every key one script touches shares a tag.

use otp_domain::{ChatId, CodeDigest};

use crate::error::RedisStoreError;

/// Builds every key of one deployment, under its prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Result<Self, RedisStoreError> {
        if prefix.is_empty() {
            return Err(RedisStoreError::Config("key_prefix must not be empty"));
        }
        // A brace in the prefix would become (part of) the hash tag.
        if prefix.contains(['{', '}']) {
            return Err(RedisStoreError::Config(
                "key_prefix must not contain `{` or `}`",
            ));
        }
        Ok(Keys {
            prefix: prefix.to_owned(),
        })
    }

    /// The record of the code sent to `key` (a destination such as
    /// `sms:+77011234567`), tagged with that key.
    pub(crate) fn code(&self, key: &str) -> String {
        format!("{}:{{{}}}:code", self.prefix, tag(key))
    }

    /// A rate bucket counted by a send to `code_key`. It sits under the code's
    /// tag so the send script may touch both. That is right because the
    /// domain's send buckets are per destination; a future bucket shared
    /// by several destinations would live in several slots and need a call
    /// of its own.
    pub(crate) fn code_bucket(&self, code_key: &str, bucket: &str) -> String {
        format!("{}:{{{}}}:bucket:{bucket}", self.prefix, tag(code_key))
    }

    /// A bucket that spans destinations (per end user, per channel), hit
    /// on its own: tagged with its own key, so such buckets spread over
    /// the cluster.
    pub(crate) fn bucket(&self, bucket: &str) -> String {
        format!("{}:bucket:{{{}}}", self.prefix, tag(bucket))
    }

    /// The key prefix, for scripts that build keys from stored data.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The latest verification of the destination `key`: its id (hex).
    pub(crate) fn latest(&self, key: &str) -> String {
        format!("{}:{{{}}}:latest", self.prefix, tag(key))
    }

    /// The record of verification `hex` (32 hex digits) of the code sent
    /// to `key`: in the code's slot, so one script changes both.
    pub(crate) fn verification(&self, key: &str, hex: &str) -> String {
        self.verification_in(&tag(key), hex)
    }

    /// As [`Keys::verification`], from the escaped tag (as the index
    /// stores it).
    pub(crate) fn verification_in(&self, tag: &str, hex: &str) -> String {
        format!("{}:{{{tag}}}:vrf:{hex}", self.prefix)
    }

    /// The code key, from the escaped tag.
    pub(crate) fn code_in(&self, tag: &str) -> String {
        format!("{}:{{{tag}}}:code", self.prefix)
    }

    /// The index of verification `hex`: the escaped tag of its
    /// destination, so a look-up by id finds the record's slot.
    pub(crate) fn index(&self, hex: &str) -> String {
        format!("{}:vidx:{{{hex}}}", self.prefix)
    }

    /// The outbox of one outbox tag: a sorted set of event ids by due time.
    pub(crate) fn due(&self, outbox: &str) -> String {
        format!("{}:{{{outbox}}}:due", self.prefix)
    }

    /// The pending verifications of one outbox tag, by `expires_at`, for
    /// the sweeper; members are the id (hex) followed by the escaped tag.
    pub(crate) fn pending(&self, outbox: &str) -> String {
        format!("{}:{{{outbox}}}:pending", self.prefix)
    }

    /// What the event keys of one outbox tag start with; the event id
    /// completes them.
    pub(crate) fn event_prefix(&self, outbox: &str) -> String {
        format!("{}:{{{outbox}}}:evt:", self.prefix)
    }

    /// Redis Cluster only: the outbox tags that have (or may have) work,
    /// scored by when to look at them next. Writers lower a score after
    /// a script wrote to that slot's outbox; claims and sweeps raise it.
    pub(crate) fn schedule(&self) -> String {
        format!("{}:{{outbox-slots}}", self.prefix)
    }

    /// The `/v2` services: one hash, sid -> record.
    pub(crate) fn services(&self) -> String {
        format!("{}:{{services}}:all", self.prefix)
    }

    /// An idempotency key, in a slot of its own.
    pub(crate) fn idempotency(&self, key: &str) -> String {
        format!("{}:idem:{{{}}}", self.prefix, tag(key))
    }

    // The fraud guard's keys all share the `{fraud}` tag, one slot, so
    // one script changes a block, the index of blocks and the outbox of
    // that slot. A prefix's counters are touched on every SMS or voice
    // send and approval; one slot takes that easily (a small hash each).

    /// A number prefix's sliding-window counters.
    pub(crate) fn fraud_counters(&self, prefix: &str) -> String {
        format!("{}:{{{FRAUD_TAG}}}:c:{prefix}", self.prefix)
    }

    /// What the block keys start with; the number prefix completes them.
    pub(crate) fn fraud_block_prefix(&self) -> String {
        format!("{}:{{{FRAUD_TAG}}}:b:", self.prefix)
    }

    /// A number prefix's block.
    pub(crate) fn fraud_block(&self, prefix: &str) -> String {
        format!("{}{prefix}", self.fraud_block_prefix())
    }

    /// The blocked number prefixes, scored by when their block ends.
    pub(crate) fn fraud_blocks(&self) -> String {
        format!("{}:{{{FRAUD_TAG}}}:blocks", self.prefix)
    }

    // Pairings are found both by digest and by chat, so no per-destination
    // tag fits: they all share the `{pairing}` tag, one slot. Pairings are
    // rare (a person linking a chat), so one slot carries them easily.

    /// The pairing with `digest`.
    pub(crate) fn pairing(&self, digest: &CodeDigest) -> String {
        format!("{}:{{pairing}}:d:{}", self.prefix, digest.to_hex())
    }

    /// What the chat keys start with; the chat id completes them.
    pub(crate) fn pairing_chat_prefix(&self) -> String {
        format!("{}:{{pairing}}:chat:", self.prefix)
    }

    /// The chat's current pairing (the name of its pairing key).
    pub(crate) fn pairing_chat(&self, chat: ChatId) -> String {
        format!("{}{}", self.pairing_chat_prefix(), chat.get())
    }

    /// A rate bucket counted by a pairing.
    pub(crate) fn pairing_bucket(&self, bucket: &str) -> String {
        format!("{}:{{pairing}}:bucket:{bucket}", self.prefix)
    }
}

/// The hash tag of every fraud key; on a cluster the fraud events go to
/// the outbox of its slot.
pub(crate) const FRAUD_TAG: &str = "fraud";

/// `key` made safe to sit between braces: a `}` inside would end the tag
/// early and a `{` would confuse readers, so both are percent-escaped (and
/// `%` itself, to keep distinct keys distinct).
pub(crate) fn tag(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out
}

/// The Redis Cluster slot of a hash tag: CRC16/XMODEM modulo 16384.
pub(crate) fn slot(tag: &str) -> u16 {
    let mut crc: u16 = 0;
    for &byte in tag.as_bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % SLOTS
}

/// Slots in a Redis Cluster.
pub(crate) const SLOTS: u16 = 16384;

/// For every slot, a short hash tag (`ob<n>`) that maps to it: the outbox
/// keys of a slot carry it, so a script that changes a code can write its
/// events in the same slot. The same on every instance.
pub(crate) static SLOT_TAGS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    let mut tags: Vec<Option<String>> = vec![None; usize::from(SLOTS)];
    let mut missing = tags.len();
    let mut n: u64 = 0;
    while missing > 0 {
        let candidate = format!("ob{n}");
        let entry = &mut tags[usize::from(slot(&candidate))];
        if entry.is_none() {
            *entry = Some(candidate);
            missing -= 1;
        }
        n += 1;
    }
    tags.into_iter().flatten().collect()
});

#[cfg(test)]
mod tests {
    use super::*;

    /// Redis's rule: the text between the first `{` and the next `}`, if
    /// non-empty; otherwise the whole key.
    fn hash_tag(key: &str) -> &str {
        if let Some(open) = key.find('{') {
            if let Some(len) = key[open + 1..].find('}') {
                if len > 0 {
                    return &key[open + 1..open + 1 + len];
                }
            }
        }
        key
    }

    fn keys() -> Keys {
        Keys::new("otpd").expect("valid prefix")
    }

    #[test]
    fn code_keys_follow_the_documented_layout() {
        let k = keys();
        assert_eq!(k.code("sms:+77011234567"), "otpd:{sms:+77011234567}:code");
        assert_eq!(
            k.code_bucket("sms:+77011234567", "cooldown:sms:+77011234567"),
            "otpd:{sms:+77011234567}:bucket:cooldown:sms:+77011234567"
        );
    }

    #[test]
    fn a_shared_bucket_has_a_slot_of_its_own() {
        let k = keys();
        let key = k.bucket("channel:sms");
        assert_eq!(key, "otpd:bucket:{channel:sms}");
        assert_eq!(hash_tag(&key), "channel:sms");
        assert_ne!(key, k.code("channel:sms"));
    }

    #[test]
    fn pairing_keys_share_one_tag() {
        let k = keys();
        let d = CodeDigest::from_bytes([0xab; 32]);
        let chat = ChatId::from_i64(-1002).expect("chat id");
        let all = [
            k.pairing(&d),
            k.pairing_chat(chat),
            k.pairing_bucket("cooldown:pairing:tg:-1002"),
            k.pairing_bucket("target-failures:user-7"),
        ];
        assert_eq!(all[0], format!("otpd:{{pairing}}:d:{}", "ab".repeat(32)));
        assert_eq!(all[1], "otpd:{pairing}:chat:-1002");
        for key in &all {
            assert_eq!(hash_tag(key), "pairing", "{key}");
        }
    }

    #[test]
    fn braces_in_a_destination_cannot_split_a_send_across_slots() {
        let k = keys();
        for dest in ["email:a}b@x.kz", "email:{x}@y", "email:}@y", "%7D", "}"] {
            let code = k.code(dest);
            let bucket = k.code_bucket(dest, "sends:{weird}");
            assert_eq!(hash_tag(&code), hash_tag(&bucket), "{dest}");
            assert_ne!(hash_tag(&code), code, "{dest} lost its tag");
        }
        // Escaping keeps distinct destinations distinct.
        assert_ne!(k.code("a}"), k.code("a%7D"));
    }

    #[test]
    fn fraud_keys_and_their_outbox_share_one_slot() {
        let k = keys();
        assert_eq!(k.fraud_counters("7701"), "otpd:{fraud}:c:7701");
        assert_eq!(k.fraud_block("7701"), "otpd:{fraud}:b:7701");
        assert_eq!(k.fraud_blocks(), "otpd:{fraud}:blocks");
        let outbox = &SLOT_TAGS[usize::from(slot(FRAUD_TAG))];
        for key in [
            k.fraud_counters("7701"),
            k.fraud_block("7701"),
            k.fraud_blocks(),
            k.due(outbox),
            format!("{}evt_fraud_7701_1_blocked", k.event_prefix(outbox)),
        ] {
            assert_eq!(slot(hash_tag(&key)), slot(FRAUD_TAG), "{key}");
        }
    }

    #[test]
    fn prefixes_with_braces_or_nothing_are_refused() {
        assert!(Keys::new("ot{pd").is_err());
        assert!(Keys::new("otpd}").is_err());
        assert!(Keys::new("").is_err());
        assert!(Keys::new("tenant-a:otpd").is_ok());
    }

    #[test]
    fn slots_follow_the_redis_cluster_spec() {
        // The examples of the Redis Cluster spec and of `CLUSTER KEYSLOT`.
        assert_eq!(slot("123456789"), 0x31C3 % SLOTS);
        assert_eq!(slot("somekey"), 11058);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(SLOT_TAGS.len(), usize::from(SLOTS));
        for (i, t) in SLOT_TAGS.iter().enumerate() {
            assert_eq!(usize::from(slot(t)), i, "{t}");
        }
    }

    #[test]
    fn a_verification_lives_in_its_codes_slot() {
        let k = keys();
        let dest = "email:a}b@x.kz";
        let hex = "ab".repeat(16);
        assert_eq!(
            hash_tag(&k.verification(dest, &hex)),
            hash_tag(&k.code(dest))
        );
        assert_eq!(hash_tag(&k.latest(dest)), hash_tag(&k.code(dest)));
        assert_eq!(
            k.verification_in(&tag(dest), &hex),
            k.verification(dest, &hex)
        );
        let outbox = &SLOT_TAGS[usize::from(slot(hash_tag(&k.code(dest))))];
        assert_eq!(
            slot(hash_tag(&k.due(outbox))),
            slot(hash_tag(&k.code(dest)))
        );
    }
}
