//! Message templating: `{password}` and `{lifetime}` (seconds).

use crate::types::{Code, Lifetime};

pub const PASSWORD: &str = "{password}";
pub const LIFETIME: &str = "{lifetime}";

/// Fills in the placeholders. Text without them is sent as given, as the
/// seed's callers put the code into the message themselves.
pub fn render(template: &str, code: &Code, lifetime: Lifetime) -> String {
    template
        .replace(PASSWORD, code.expose())
        .replace(LIFETIME, &lifetime.secs().to_string())
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
}
