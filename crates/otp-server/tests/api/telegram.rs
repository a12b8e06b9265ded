use serde_json::{json, Value};

use crate::helpers::{assert_error, Options, TestApp, PAIRING};

fn update(id: i64, chat: i64, kind: &str, is_bot: bool, text: Option<&str>) -> Value {
    let mut message = json!({
        "message_id": 1,
        "date": 1_700_000_000,
        "chat": {"id": chat, "type": kind},
        "from": {"id": chat.abs(), "is_bot": is_bot, "first_name": "A"},
    });
    if let Some(t) = text {
        message["text"] = json!(t);
    }
    json!({"update_id": id, "message": message})
}

/// A `hi` from private chat 5, as update `id`.
fn hi(id: i64) -> Value {
    update(id, 5, "private", false, Some("hi"))
}

#[tokio::test]
async fn bot_pairs_a_private_chat_and_target_trades_the_code_once() {
    let app = TestApp::spawn().await;
    let start = update(1, 4242, "private", false, Some("/start"));
    assert_eq!(app.telegram_webhook(None, start).await.0, 200);
    assert_eq!(
        app.sent(),
        vec![(
            "telegram".to_owned(),
            "4242".to_owned(),
            None,
            format!("Your code is {PAIRING}. Enter it in the app within 300 seconds.")
        )]
    );
    // The seed's form: GET /target with a JSON body; typed in lower case.
    let (status, body) = app
        .get_with_body(
            "/target",
            json!({"password": PAIRING.to_lowercase()}),
            false,
        )
        .await;
    assert_eq!((status, body), (200, json!({"chat_id": 4242})));
    let again = app
        .get(&format!("/telegram/target?password={PAIRING}"))
        .await;
    assert_error(&again, 404, "not_found");
}

#[tokio::test]
async fn groups_bots_and_non_text_updates_get_200_and_no_code() {
    let app = TestApp::spawn().await;
    for u in [
        update(1, -100123, "group", false, Some("hi")),
        update(2, 77, "private", true, Some("hi")),
        update(3, 77, "private", false, None),
        json!({"update_id": 4, "edited_message": {"text": "x"}}),
    ] {
        assert_eq!(app.telegram_webhook(None, u).await.0, 200);
    }
    assert!(app.sent().is_empty());
}

#[tokio::test]
async fn webhook_requires_the_secret_token_when_configured() {
    let app = TestApp::spawn_with(Options::toml(
        "[telegram]\nwebhook_secret = \"s3cret-token\"\n[auth]\nusername = \"admin\"\npassword = \"pw\"\n",
    ))
    .await;
    assert_eq!(app.telegram_webhook(None, hi(1)).await.0, 401);
    assert_eq!(app.telegram_webhook(Some("wrong"), hi(2)).await.0, 401);
    assert!(app.sent().is_empty(), "nothing is sent for a rejected call");
    // Basic auth does not apply to the webhook; the secret does.
    assert_eq!(
        app.telegram_webhook(Some("s3cret-token"), hi(3)).await.0,
        200
    );
    assert_eq!(app.sent().len(), 1);
}
