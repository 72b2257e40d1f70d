//! Browser login end to end against a real OpenID provider (`oidc-provider` on Node): the
//! authorization code flow with PKCE through droverd's `/auth` routes, users, sessions in
//! PostgreSQL, CSRF protection of cookie-authenticated changes, logout.

use drover_e2e::oidc::{Browser, OidcProvider, ProviderConfig, browser_login, login_settings};
use drover_e2e::{Extra, TestDrover};
use drover_model::{InviteUser, Role, UserStatus};
use serde_json::Value;

const ADMIN: &str = "ops@example.com";
const STRANGER: &str = "eve@example.com";

/// droverd with login through a fresh provider knowing ADMIN and STRANGER; ADMIN is an
/// initial admin.
async fn start() -> (TestDrover, OidcProvider) {
    let pending = OidcProvider::listen().await;
    let drover = TestDrover::start_with(Extra {
        oidc: Some(login_settings(pending.issuer(), &[ADMIN])),
        ..Extra::default()
    })
    .await;
    let provider = pending
        .configure(
            &ProviderConfig::for_drover(&drover)
                .user(ADMIN, "Olga Ops")
                .user(STRANGER, "Eve"),
        )
        .await;
    (drover, provider)
}

async fn whoami(browser: &Browser, drover: &TestDrover) -> (u16, Value) {
    let response = browser
        .http
        .get(format!("{}/api/v1/me", drover.http_url()))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn session_count(drover: &TestDrover) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(drover.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initial_admin_logs_in_holds_a_hashed_session_and_logs_out() {
    let (drover, provider) = start().await;
    let browser = Browser::new();
    let landed = browser_login(&browser, &drover.http_url(), ADMIN).await;
    assert_eq!(landed.status(), 200);
    assert_eq!(
        landed.url().as_str(),
        format!("{}/", drover.http_url()),
        "after the callback the browser lands on droverd's start page"
    );

    let (status, me) = whoami(&browser, &drover).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["principal"]["kind"], "user");
    assert_eq!(me["principal"]["email"], ADMIN);
    assert_eq!(me["principal"]["name"], "Olga Ops");
    assert_eq!(me["role"], "admin");
    let csrf = me["csrfToken"]
        .as_str()
        .expect("a session gets a CSRF token");

    // The cookie and what the database holds.
    let secret = browser
        .cookie(&drover.http_url(), "drover_session")
        .expect("a session cookie");
    let (rows, plain, hashed): (i64, bool, bool) = sqlx::query_as(
        "SELECT count(*),
                bool_or(s::text LIKE '%' || $1 || '%' OR id_hash = convert_to($1, 'UTF8')),
                bool_and(id_hash = sha256(convert_to($1, 'UTF8')))
         FROM sessions s",
    )
    .bind(&secret)
    .fetch_one(drover.pool())
    .await
    .unwrap();
    assert_eq!(rows, 1);
    assert!(!plain, "the session row must not hold the session id");
    assert!(
        hashed,
        "the session row holds the SHA-256 of the session id"
    );
    let (role, subject): (String, Option<String>) =
        sqlx::query_as("SELECT role, oidc_subject FROM users WHERE email = $1")
            .bind(ADMIN)
            .fetch_one(drover.pool())
            .await
            .unwrap();
    assert_eq!(role, "admin");
    assert!(
        subject.is_some(),
        "the first login binds the provider identity"
    );

    // The initial admin API token keeps working next to sessions.
    drover.client().list_join_tokens().await.unwrap();

    // Logout is a change: without the CSRF token it is refused and the session stays.
    let logout = format!("{}/auth/logout", drover.http_url());
    let refused = browser.manual.post(&logout).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(whoami(&browser, &drover).await.0, 200);

    let out = browser
        .manual
        .post(&logout)
        .header("X-CSRF-Token", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    let location = out.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{}/session/end?", provider.issuer())),
        "logout continues at the provider's end_session_endpoint: {location}"
    );
    assert!(location.contains("client_id=drover"), "{location}");
    assert_eq!(session_count(&drover).await, 0);
    assert_eq!(whoami(&browser, &drover).await.0, 401);
    // The old cookie, presented again, no longer works either.
    let replayed = reqwest::Client::new()
        .get(format!("{}/api/v1/me", drover.http_url()))
        .header("cookie", format!("drover_session={secret}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 401);
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_is_refused_and_gets_no_session() {
    let (drover, _provider) = start().await;
    let browser = Browser::new();
    let refused = browser_login(&browser, &drover.http_url(), STRANGER).await;
    assert_eq!(refused.url().path(), "/auth/callback");
    assert_eq!(refused.status(), 403);
    let problem: Value = refused.json().await.unwrap();
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains(STRANGER) && detail.contains("not a user of this Drover"),
        "{detail}"
    );
    assert!(
        browser
            .cookie(&drover.http_url(), "drover_session")
            .is_none()
    );
    assert_eq!(session_count(&drover).await, 0);
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(drover.pool())
        .await
        .unwrap();
    assert_eq!(users, 0);
    assert_eq!(whoami(&browser, &drover).await.0, 401);
    drover.stop().await;
}

/// Logs in up to the provider's redirect back to droverd, and returns that callback URL.
async fn callback_url(browser: &Browser, drover: &TestDrover, email: &str) -> reqwest::Url {
    let form = browser
        .http
        .get(format!("{}/auth/login", drover.http_url()))
        .send()
        .await
        .unwrap();
    let stopped = drover_e2e::oidc::submit_login_form(browser, form, email).await;
    assert_eq!(
        stopped.status(),
        303,
        "stopped at the redirect to the callback"
    );
    let location = stopped.headers()["location"].to_str().unwrap();
    let url: reqwest::Url = location.parse().unwrap();
    assert_eq!(url.path(), "/auth/callback");
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_replayed_and_foreign_callbacks_are_refused() {
    let (drover, _provider) = start().await;
    // A browser that stops at droverd's callback, so the test can play with it.
    let stop_at_callback = || {
        reqwest::redirect::Policy::custom(|attempt| {
            if attempt.url().path() == "/auth/callback" {
                attempt.stop()
            } else {
                attempt.follow()
            }
        })
    };
    let browser = Browser::with_redirects(stop_at_callback());
    let callback = callback_url(&browser, &drover, ADMIN).await;

    // A changed state is unknown.
    let mut tampered = callback.clone();
    let pairs: Vec<(String, String)> = callback
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                format!("{v}x")
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(&pairs);
    let response = browser.manual.get(tampered).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("state is unknown"),
        "{problem}"
    );
    assert_eq!(session_count(&drover).await, 0);

    // The real callback works once ...
    let response = browser.manual.get(callback.clone()).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(session_count(&drover).await, 1);
    // ... and not twice.
    let response = browser.manual.get(callback).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("already used"),
        "{problem}"
    );
    assert_eq!(session_count(&drover).await, 1);

    // A callback from a login another browser started (login CSRF) is refused.
    let victim = Browser::with_redirects(stop_at_callback());
    let attacker = Browser::with_redirects(stop_at_callback());
    let foreign = callback_url(&attacker, &drover, ADMIN).await;
    let response = victim.manual.get(foreign).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("not started by this browser"),
        "{problem}"
    );
    assert!(
        victim
            .cookie(&drover.http_url(), "drover_session")
            .is_none()
    );
    assert_eq!(session_count(&drover).await, 1);
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_authenticated_changes_need_the_csrf_token() {
    let (drover, _provider) = start().await;
    let browser = Browser::new();
    assert_eq!(
        browser_login(&browser, &drover.http_url(), ADMIN)
            .await
            .status(),
        200
    );
    let (_, me) = whoami(&browser, &drover).await;
    let csrf = me["csrfToken"].as_str().unwrap().to_owned();
    let url = format!("{}/api/v1/jointokens", drover.http_url());
    let body = serde_json::json!({ "name": "from-the-browser" });

    let response = browser.http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 403);
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("X-CSRF-Token"),
        "{problem}"
    );
    let response = browser
        .http
        .post(&url)
        .header("X-CSRF-Token", "0".repeat(64))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // Reads need no token; the refused attempts created nothing.
    let list: Vec<Value> = browser
        .http
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list.is_empty(), "{list:?}");

    let response = browser
        .http
        .post(&url)
        .header("X-CSRF-Token", &csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let names: Vec<String> = drover
        .client()
        .list_join_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["from-the-browser"]);

    // Bearer tokens need no CSRF token.
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(drover.admin_token())
        .json(&serde_json::json!({ "name": "from-a-script" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    drover.stop().await;
}

const BOB: &str = "bob@example.com";

/// droverd with login through a provider knowing ADMIN, STRANGER and BOB; ADMIN is an initial
/// admin, the others have to be invited.
async fn start_with_bob() -> (TestDrover, OidcProvider) {
    let pending = OidcProvider::listen().await;
    let drover = TestDrover::start_with(Extra {
        oidc: Some(login_settings(pending.issuer(), &[ADMIN])),
        ..Extra::default()
    })
    .await;
    let provider = pending
        .configure(
            &ProviderConfig::for_drover(&drover)
                .user(ADMIN, "Olga Ops")
                .user(STRANGER, "Eve")
                .user(BOB, "Bob"),
        )
        .await;
    (drover, provider)
}

fn problem_of(err: drover_client::ClientError) -> (u16, String) {
    match err {
        drover_client::ClientError::Api { problem } => (problem.status, problem.detail),
        other => panic!("expected a problem response, got {other}"),
    }
}

/// A request with the browser's session cookie and its CSRF token.
async fn session_change(
    browser: &Browser,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let (_, me) = whoami_at(browser, &url).await;
    let csrf = me["csrfToken"].as_str().unwrap().to_owned();
    let mut req = browser
        .http
        .request(method, url)
        .header("X-CSRF-Token", csrf);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let response = req.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn whoami_at(browser: &Browser, any_url: &str) -> (u16, Value) {
    let url: reqwest::Url = any_url.parse().unwrap();
    let response = browser
        .http
        .get(url.join("/api/v1/me").unwrap())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_becomes_an_active_user_with_the_invited_role_at_first_login() {
    let (drover, _provider) = start_with_bob().await;
    let admin = drover.client();
    let invited = admin
        .invite_user(&InviteUser {
            email: "Eve@Example.com".into(),
            role: Role::Operator,
        })
        .await
        .unwrap();
    assert_eq!(invited.email, STRANGER);
    assert_eq!(invited.status, UserStatus::Invited);
    let (status, detail) = problem_of(
        admin
            .invite_user(&InviteUser {
                email: STRANGER.into(),
                role: Role::Admin,
            })
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 409, "{detail}");
    assert!(detail.contains(STRANGER), "{detail}");
    admin
        .invite_user(&InviteUser {
            email: BOB.into(),
            role: Role::Admin,
        })
        .await
        .unwrap();
    admin.cancel_invitation(BOB).await.unwrap();
    let pending: Vec<String> = admin
        .list_invitations()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.email)
        .collect();
    assert_eq!(pending, [STRANGER]);

    // The first login through the real provider binds the invitation.
    let browser = Browser::new();
    let landed = browser_login(&browser, &drover.http_url(), STRANGER).await;
    assert_eq!(landed.status(), 200);
    let (status, me) = whoami(&browser, &drover).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["principal"]["email"], STRANGER);
    assert_eq!(me["principal"]["id"], invited.id.to_string());
    assert_eq!(me["role"], "operator");
    let users = admin.list_users().await.unwrap();
    let eve = users.iter().find(|u| u.email == STRANGER).unwrap();
    assert_eq!(eve.status, UserStatus::Active);
    assert_eq!(eve.name, "Eve");
    assert_eq!(eve.role, Role::Operator);
    assert!(eve.last_login_at.is_some());
    assert!(admin.list_invitations().await.unwrap().is_empty());
    let (status, detail) = problem_of(admin.cancel_invitation(STRANGER).await.unwrap_err());
    assert_eq!(status, 404, "an active user is no invitation: {detail}");

    // As an Operator she may not manage users.
    let listed = browser
        .http
        .get(format!("{}/api/v1/users", drover.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 403);

    // A cancelled invitation lets nobody in.
    let refused = browser_login(&Browser::new(), &drover.http_url(), BOB).await;
    assert_eq!(refused.status(), 403);
    let problem: Value = refused.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("not a user of this Drover"),
        "{problem}"
    );
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_changes_and_removals_apply_at_once_but_never_to_the_last_admin() {
    let (drover, _provider) = start_with_bob().await;
    let admin = drover.client();
    let olga = Browser::new();
    assert_eq!(
        browser_login(&olga, &drover.http_url(), ADMIN)
            .await
            .status(),
        200
    );

    // Olga is the only Admin user: she can be neither demoted nor removed.
    for err in [
        admin.set_user_role(ADMIN, Role::Reader).await.unwrap_err(),
        admin.remove_user(ADMIN).await.unwrap_err(),
    ] {
        let (status, detail) = problem_of(err);
        assert_eq!(status, 409, "{detail}");
        assert!(
            detail.contains(ADMIN) && detail.contains("last Admin"),
            "{detail}"
        );
    }

    // With a second Admin she can be demoted; it applies to her next request.
    admin
        .invite_user(&InviteUser {
            email: STRANGER.into(),
            role: Role::Admin,
        })
        .await
        .unwrap();
    let eve = Browser::new();
    assert_eq!(
        browser_login(&eve, &drover.http_url(), STRANGER)
            .await
            .status(),
        200
    );
    let demoted = admin.set_user_role(ADMIN, Role::Reader).await.unwrap();
    assert_eq!(demoted.role, Role::Reader);
    let (status, me) = whoami(&olga, &drover).await;
    assert_eq!((status, me["role"].clone()), (200, Value::from("reader")));
    let listed = olga
        .http
        .get(format!("{}/api/v1/users", drover.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 403);

    // Eve is now the last Admin: her own session cannot demote or remove her.
    let base = drover.http_url();
    let (status, problem) = session_change(
        &eve,
        reqwest::Method::PUT,
        format!("{base}/api/v1/users/{STRANGER}/role"),
        Some(serde_json::json!({ "role": "operator" })),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("last Admin"),
        "{problem}"
    );
    let (status, _) = session_change(
        &eve,
        reqwest::Method::DELETE,
        format!("{base}/api/v1/users/{STRANGER}"),
        None,
    )
    .await;
    assert_eq!(status, 409);

    // Removing Olga ends her session at once.
    let (status, removed) = session_change(
        &eve,
        reqwest::Method::DELETE,
        format!("{base}/api/v1/users/{ADMIN}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(whoami(&olga, &drover).await.0, 401);
    let emails: Vec<String> = admin
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.email)
        .collect();
    assert_eq!(emails, [STRANGER]);
    assert_eq!(
        session_count(&drover).await,
        1,
        "only Eve's session is left"
    );
    drover.stop().await;
}
