//! Standard Webhooks signatures checked by the reference library (PyPI
//! `standardwebhooks`), not by otpd's own code.

use crate::http::Recorded;

/// Runs the reference library's `Webhook.verify` on every request with
/// `secret` (`whsec_…`). Panics with the library's message when one
/// fails, and with an install hint when the library is missing.
pub fn verify_all(secret: &str, requests: &[Recorded]) {
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
given = json.load(sys.stdin)
hook = Webhook(given["secret"])
for r in given["requests"]:
    hook.verify(r["body"], r["headers"])
print(len(given["requests"]))
"#;
    let input = serde_json::json!({
        "secret": secret,
        "requests": requests.iter().map(|r| serde_json::json!({
            "body": r.body_text(),
            "headers": r.headers.iter().cloned().collect::<std::collections::HashMap<_, _>>(),
        })).collect::<Vec<_>>(),
    });
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (apt-get install python3)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(input.to_string().as_bytes())
            .expect("write to python3");
    }
    let out = child.wait_with_output().expect("python3 ends");
    assert!(
        out.status.success(),
        "standardwebhooks refused a request (install it: python3 -m pip install standardwebhooks): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        requests.len().to_string()
    );
}
