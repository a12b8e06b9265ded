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

/// `key` made safe to sit between braces: a `}` inside would end the tag
/// early and a `{` would confuse readers, so both are percent-escaped (and
/// `%` itself, to keep distinct keys distinct).
fn tag(key: &str) -> String {
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
    fn prefixes_with_braces_or_nothing_are_refused() {
        assert!(Keys::new("ot{pd").is_err());
        assert!(Keys::new("otpd}").is_err());
        assert!(Keys::new("").is_err());
        assert!(Keys::new("tenant-a:otpd").is_ok());
    }
}
