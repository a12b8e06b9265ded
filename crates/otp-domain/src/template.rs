//! Message templating: `{password}`, `{lifetime}` (seconds) and
//! `{minutes}` (the lifetime in whole minutes, rounded up).

use crate::types::{Code, Lifetime};

pub const PASSWORD: &str = "{password}";
pub const LIFETIME: &str = "{lifetime}";
pub const MINUTES: &str = "{minutes}";

/// Fills in the placeholders, in one pass: a value is never read again,
/// so a password such as `{minutes}` is sent as typed. Text without them
/// is sent as given, as the seed's callers put the code into the message
/// themselves.
pub fn render(template: &str, code: &Code, lifetime: Lifetime) -> String {
    let secs = lifetime.secs();
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let tail = &rest[open..];
        if let Some(after) = tail.strip_prefix(PASSWORD) {
            out.push_str(code.expose());
            rest = after;
        } else if let Some(after) = tail.strip_prefix(LIFETIME) {
            out.push_str(&secs.to_string());
            rest = after;
        } else if let Some(after) = tail.strip_prefix(MINUTES) {
            out.push_str(&secs.div_ceil(60).to_string());
            rest = after;
        } else {
            out.push('{');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_password_and_lifetime() {
        let code = Code::parse("4821").expect("valid");
        let lifetime = Lifetime::parse(300, 30, 86400).expect("valid");
        assert_eq!(
            render(
                "Code {password}, valid {lifetime} s. {password}",
                &code,
                lifetime
            ),
            "Code 4821, valid 300 s. 4821"
        );
        assert_eq!(
            render("Your OTP is 12345", &code, lifetime),
            "Your OTP is 12345"
        );
    }

    #[test]
    fn a_value_is_never_expanded_again() {
        let code = Code::parse("{minutes}").expect("printable ASCII is a code");
        let lifetime = Lifetime::parse(300, 30, 86400).expect("valid");
        assert_eq!(
            render(
                "{password} / {lifetime} / {minutes} / {other} {",
                &code,
                lifetime
            ),
            "{minutes} / 300 / 5 / {other} {"
        );
    }

    #[test]
    fn minutes_are_the_lifetime_rounded_up() {
        let code = Code::parse("4821").expect("valid");
        for (secs, minutes) in [
            (30, "1"),
            (60, "1"),
            (61, "2"),
            (300, "5"),
            (86_400, "1440"),
        ] {
            let lifetime = Lifetime::parse(secs, 30, 86_400).expect("valid");
            assert_eq!(
                render("{password}: {minutes} Min.", &code, lifetime),
                format!("4821: {minutes} Min.")
            );
        }
    }
}
