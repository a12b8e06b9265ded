//! Locales: a send's `locale`, the country's locale, `GET /locales`, and
//! the overrides from `[templates]`.

use serde_json::json;

use crate::helpers::{assert_error, assert_error_for, Options, TestApp, GENERATED};

/// The texts of the last message in the outbox: (subject, body).
fn last(app: &TestApp) -> (Option<String>, String) {
    let sent = app.sent();
    let (_, _, subject, body) = sent.last().expect("a message went out").clone();
    (subject, body)
}

#[tokio::test]
async fn a_request_locale_picks_its_texts_along_the_fallback_chain() {
    let app = TestApp::spawn().await;
    for (locale, text) in [
        (
            "de",
            format!("Ihr Code lautet {GENERATED}. Er ist 5 Min. gültig."),
        ),
        (
            "DE-at",
            format!("Ihr Code lautet {GENERATED}. Er ist 5 Min. gültig."),
        ),
        (
            "fr",
            format!("Votre code est {GENERATED}. Il expire dans 5 min."),
        ),
        (
            "pt-BR",
            format!("Seu código é {GENERATED}. Ele expira em 5 min."),
        ),
        (
            "en",
            format!("Your code is {GENERATED}. It expires in 300 seconds."),
        ),
    ] {
        let (status, body) = app.send_sms_in("+4915123456789", locale).await;
        assert_eq!(status, 200, "{locale}: {body}");
        assert_eq!(last(&app).1, text, "{locale}");
    }
}

#[tokio::test]
async fn without_a_locale_a_phone_gets_its_countrys_and_others_the_default() {
    let app = TestApp::spawn().await;
    let (status, _) = app.send_sms("+4915123456789").await;
    assert_eq!(status, 200);
    assert_eq!(
        last(&app).1,
        format!("Ihr Code lautet {GENERATED}. Er ist 5 Min. gültig.")
    );
    // A region the map leaves out (Bulgaria) gets the default, English.
    let (status, _) = app.send_sms("+359888123456").await;
    assert_eq!(status, 200);
    assert_eq!(
        last(&app).1,
        format!("Your code is {GENERATED}. It expires in 300 seconds.")
    );
    // Email has no country: the default, unless the request names one.
    let (status, _) = app.post("/email", json!({"email": "a@example.com"})).await;
    assert_eq!(status, 200);
    assert_eq!(
        last(&app),
        (
            Some("Your verification code".to_owned()),
            format!("Your code is {GENERATED}. It expires in 300 seconds.")
        )
    );
    let (status, _) = app
        .post("/email", json!({"email": "a@example.com", "locale": "ja"}))
        .await;
    assert_eq!(status, 200);
    let (subject, body) = last(&app);
    assert!(subject.is_some_and(|s| !s.is_ascii()), "a Japanese subject");
    assert!(body.contains(GENERATED) && !body.is_ascii(), "{body}");
}

#[tokio::test]
async fn the_chosen_locale_is_on_the_verification() {
    let app = TestApp::spawn().await;
    let (status, sent) = app.send_sms_in("+4915123456789", "pt_br").await;
    assert_eq!(status, 200, "{sent}");
    let id = sent["id"].as_str().expect("id");
    let (status, v) = app.get(&format!("/verifications/{id}")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["locale"], "pt-BR");
    let (_, sent) = app.send_sms("+4915123456780").await;
    let (_, v) = app
        .get(&format!(
            "/verifications/{}",
            sent["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(v["locale"], "de");
}

#[tokio::test]
async fn an_unserved_locale_is_unsupported_and_a_malformed_one_invalid() {
    let app = TestApp::spawn().await;
    let answer = app.send_sms_in("+4915123456789", "xx").await;
    assert_error(&answer, 400, "unsupported_locale");
    let body = answer.1;
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains("xx")),
        "{body}"
    );
    for bad in ["german!", "d", "de--DE", "x-private-only-too-long-subtag"] {
        let answer = app.send_sms_in("+4915123456789", bad).await;
        assert_error_for(bad, &answer, 400, "invalid_request");
    }
    assert!(app.sent().is_empty(), "nothing went out");
}

#[tokio::test]
async fn a_requests_own_message_wins_over_every_locale() {
    let app = TestApp::spawn().await;
    let send = json!({"phone": "+4915123456789", "locale": "fr", "message": "Code {password}!"});
    let (status, _) = app.post("/sms", send).await;
    assert_eq!(status, 200);
    assert_eq!(last(&app).1, format!("Code {GENERATED}!"));
}

#[tokio::test]
async fn get_locales_lists_every_built_in_locale() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/locales").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["default"], "en");
    let tags: Vec<&str> = body["locales"]
        .as_array()
        .expect("list")
        .iter()
        .map(|l| l["tag"].as_str().expect("tag"))
        .collect();
    for tag in [
        "af", "ar", "ca", "cs", "da", "de", "el", "en", "en-GB", "es", "et", "fi", "fr", "he",
        "hi", "hr", "hu", "id", "it", "ja", "kk", "kn", "ko", "lt", "mr", "ms", "nb", "nl", "pl",
        "pt", "pt-BR", "ro", "ru", "sk", "sv", "te", "th", "tl", "tr", "uk", "vi", "zh", "zh-CN",
        "zh-HK",
    ] {
        assert!(tags.contains(&tag), "{tag} in {tags:?}");
    }
    let de = body["locales"]
        .as_array()
        .expect("list")
        .iter()
        .find(|l| l["tag"] == "de")
        .expect("de");
    assert_eq!(
        de,
        &json!({"tag": "de", "name": "Deutsch", "source": "builtin"})
    );
}

#[tokio::test]
async fn config_overrides_texts_adds_locales_and_remaps_countries() {
    let app = TestApp::spawn_with(Options::toml(
        r#"
[limits]
cooldown_secs = 0
[templates.country_locales]
KZ = "kk"
DE = "de-CH"
[templates.locales.fr]
sms = "Code : {password}"
[templates.locales.de-CH]
name = "Schwiizerdütsch"
sms = "Din Code isch {password}."
"#,
    ))
    .await;
    let (_, _) = app.send_sms("+77011234567").await;
    assert_eq!(
        last(&app).1,
        format!("Сіздің кодыңыз: {GENERATED}. Ол 5 минут бойы жарамды.")
    );
    let (_, _) = app.send_sms_in("+4915123456789", "fr").await;
    assert_eq!(last(&app).1, format!("Code : {GENERATED}"));
    let (_, _) = app.send_sms("+4915123456789").await;
    assert_eq!(last(&app).1, format!("Din Code isch {GENERATED}."));
    // What de-CH does not set comes from de.
    let email = json!({"email": "a@example.com", "locale": "de-CH"});
    let (_, _) = app.post("/email", email).await;
    assert_eq!(last(&app).0.as_deref(), Some("Ihr Bestätigungscode"));
    let (_, body) = app.get("/locales").await;
    let find = |tag: &str| {
        body["locales"]
            .as_array()
            .expect("list")
            .iter()
            .find(|l| l["tag"] == tag)
            .cloned()
            .expect("listed")
    };
    assert_eq!(find("fr")["source"], "overridden");
    assert_eq!(find("de-CH")["source"], "configured");
    assert_eq!(find("de-CH")["name"], "Schwiizerdütsch");
}
