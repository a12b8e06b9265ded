use serde_json::{json, Value};

use crate::helpers::{error_code, Options, TestApp, PAIRING};

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

async fn webhook(app: &TestApp, secret: Option<&str>, body: Value) -> u16 {
    let mut req = app
        .client
        .post(format!("{}/telegram/webhook", app.base))
        .json(&body);
    if let Some(s) = secret {
        req = req.header("X-Telegram-Bot-Api-Secret-Token", s);
    }
    req.send().await.expect("request").status().as_u16()
}

#[tokio::test]
async fn bot_pairs_a_private_chat_and_target_trades_the_code_once() {
    let app = TestApp::spawn().await;
    assert_eq!(
        webhook(
            &app,
            None,
            update(1, 4242, "private", false, Some("/start"))
        )
        .await,
        200
    );
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
    let (status, body) = app
        .get(&format!("/telegram/target?password={PAIRING}"))
        .await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
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
        assert_eq!(webhook(&app, None, u).await, 200);
    }
    assert!(app.sent().is_empty());
}

#[tokio::test]
async fn webhook_requires_the_secret_token_when_configured() {
    let app = TestApp::spawn_with(Options {
        toml: "[telegram]\nwebhook_secret = \"s3cret-token\"\n[auth]\nusername = \"admin\"\npassword = \"pw\"\n",
        ..Default::default()
    })
    .await;
    assert_eq!(
        webhook(&app, None, update(1, 5, "private", false, Some("hi"))).await,
        401
    );
    assert_eq!(
        webhook(
            &app,
            Some("wrong"),
            update(2, 5, "private", false, Some("hi"))
        )
        .await,
        401
    );
    assert!(app.sent().is_empty(), "nothing is sent for a rejected call");
    // Basic auth does not apply to the webhook; the secret does.
    assert_eq!(
        webhook(
            &app,
            Some("s3cret-token"),
            update(3, 5, "private", false, Some("hi"))
        )
        .await,
        200
    );
    assert_eq!(app.sent().len(), 1);
}
