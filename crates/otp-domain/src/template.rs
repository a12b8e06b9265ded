//! Message templating: `{password}`, `{lifetime}` (seconds) and
//! `{minutes}` (the lifetime in whole minutes, rounded up).

use crate::types::{Code, Lifetime};

pub const PASSWORD: &str = "{password}";
pub const LIFETIME: &str = "{lifetime}";
pub const MINUTES: &str = "{minutes}";

/// Fills in the placeholders. Text without them is sent as given, as the
/// seed's callers put the code into the message themselves.
pub fn render(template: &str, code: &Code, lifetime: Lifetime) -> String {
    let mut text = template
        .replace(PASSWORD, code.expose())
        .replace(LIFETIME, &lifetime.secs().to_string());
    if text.contains(MINUTES) {
        text = text.replace(MINUTES, &lifetime.secs().div_ceil(60).to_string());
    }
    text
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
