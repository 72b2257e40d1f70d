//! Browser login end to end against a real OpenID provider (`oidc-provider` on Node): the
//! authorization code flow with PKCE through droverd's `/auth` routes, users, sessions in
//! PostgreSQL, CSRF protection of cookie-authenticated changes, logout.

use drover_e2e::oidc::{
    Browser, OidcProvider, ProviderConfig, browser_login, login_settings, submit_login_form,
};
use drover_e2e::{Extra, TestDrover, drover_cli};
use drover_model::{InviteUser, Role, UserStatus};
use serde_json::Value;

const ADMIN: &str = "ops@example.com";
const STRANGER: &str = "eve@example.com";
const BOB: &str = "bob@example.com";

/// droverd with login through a fresh provider knowing ADMIN, STRANGER and BOB; ADMIN is an
/// initial admin, the others are strangers until invited.
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
                .user(STRANGER, "Eve")
                .user(BOB, "Bob"),
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

    // The login and the logout are in the audit log under the person's name.
    let log = drover
        .client()
        .audit_log(0, &drover_client::AuditFilter::default())
        .await
        .unwrap();
    let actor = format!("user:{ADMIN}");
    let mine: Vec<(&str, &str)> = (log.iter())
        .filter(|e| e.actor == actor)
        .map(|e| (e.action.as_str(), e.result.as_str()))
        .collect();
    assert_eq!(mine, [("login", "ok"), ("logout", "ok")], "{log:#?}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_logs_in_through_the_browser_keeps_a_context_and_refreshes() {
    use tokio::io::AsyncBufReadExt;
    let (drover, _provider) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("drover/config.yaml");

    // `drover login` prints the address to open and waits on a loopback port.
    let mut login = tokio::process::Command::new(drover_e2e::binary("drover"))
        .env("DROVER_CONFIG", &config)
        .env_remove("DROVER_TOKEN")
        .args(["login", "--no-browser", "--endpoint", &drover.http_url()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(login.stderr.take().unwrap()).lines();
    let address = loop {
        let line = stderr
            .next_line()
            .await
            .unwrap()
            .expect("drover login prints the address");
        if line.starts_with("http") {
            break line;
        }
    };
    assert!(
        address.starts_with(&format!("{}/auth/cli?port=", drover.http_url())),
        "{address}"
    );

    // The browser logs in, then is asked to allow the CLI.
    let browser = Browser::new();
    let form = browser.http.get(&address).send().await.unwrap();
    assert_eq!(form.status(), 200, "the provider's login form");
    let page = submit_login_form(&browser, form, ADMIN).await;
    assert_eq!(page.url().path(), "/auth/cli/authorize");
    let html = page.text().await.unwrap();
    assert!(
        html.contains(ADMIN),
        "the page says who the CLI will act as: {html}"
    );
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF field")
        .to_owned();
    let authorize = format!("{}/auth/cli/authorize", drover.http_url());
    // Without the CSRF field the page's form is refused.
    let forged = browser
        .manual
        .post(&authorize)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("decision=allow")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let allowed = browser
        .manual
        .post(&authorize)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&decision=allow"))
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 303);
    let to_cli = allowed.headers()["location"].to_str().unwrap().to_owned();
    assert!(to_cli.starts_with("http://127.0.0.1:"), "{to_cli}");
    let code = url::Url::parse(&to_cli)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let answer = browser.http.get(&to_cli).send().await.unwrap();
    assert!(answer.text().await.unwrap().contains("logged in"));
    let status = login.wait().await.unwrap();
    let mut out = String::new();
    tokio::io::AsyncReadExt::read_to_string(login.stdout.as_mut().unwrap(), &mut out)
        .await
        .unwrap();
    assert!(status.success(), "{out}");
    assert!(out.contains(&format!("logged in as {ADMIN}")), "{out}");

    // The code worked once: presented again (even with a verifier) it is refused.
    let anonymous = drover_client::Client::new(&drover.http_url(), None).unwrap();
    let again = anonymous
        .cli_token_for_code(&code, "a-verifier-of-43-characters-aaaaaaaaaaaaaaa")
        .await
        .unwrap_err()
        .to_string();
    assert!(again.contains("already used"), "{again}");

    // The context is saved owner-only and used by later commands.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let contexts = drover_cli(&config, &["config", "contexts"]).unwrap();
    assert!(contexts.contains(&format!("login ({ADMIN})")), "{contexts}");
    drover_cli(&config, &["jointoken", "create", "from-cli"])
        .expect("an Admin's CLI login may create a join token");

    // An expired session is renewed with the refresh token, which then is used up.
    let saved: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let old_token = saved["contexts"]["default"]["login"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let old_refresh = saved["contexts"]["default"]["login"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let text = std::fs::read_to_string(&config).unwrap();
    let expires = saved["contexts"]["default"]["login"]["expiresAt"]
        .as_str()
        .unwrap();
    std::fs::write(&config, text.replace(expires, "2000-01-01T00:00:00Z")).unwrap();
    let log = drover_cli(&config, &["audit-log", "--action", "cli."]).unwrap();
    for action in ["cli.authorize", "cli.login", "cli.refresh"] {
        assert!(log.contains(action), "{action} missing from:\n{log}");
    }
    let renewed: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_ne!(
        renewed["contexts"]["default"]["login"]["token"]
            .as_str()
            .unwrap(),
        old_token
    );
    let reused = anonymous
        .cli_token_for_refresh(&old_refresh)
        .await
        .unwrap_err()
        .to_string();
    assert!(reused.contains("refresh token"), "{reused}");

    // Contexts: add one with a token, switch, delete; logout forgets the login.
    let admin_token = drover.admin_token().to_owned();
    drover_cli(
        &config,
        &[
            "config",
            "add",
            "tokened",
            "--server",
            &drover.http_url(),
            "--with-token",
            &admin_token,
        ],
    )
    .unwrap();
    drover_cli(&config, &["config", "use", "tokened"]).unwrap();
    drover_cli(&config, &["get", "machines"]).unwrap();
    let err = drover_cli(&config, &["config", "use", "missing"]).unwrap_err();
    assert!(err.contains("no context \"missing\""), "{err}");
    drover_cli(&config, &["--context", "default", "logout"]).unwrap();
    let err = drover_cli(&config, &["--context", "default", "get", "machines"]).unwrap_err();
    assert!(err.contains("(401)"), "without the login: {err}");
    drover.stop().await;
}

async fn tenant_of(browser: &Browser, drover: &TestDrover) -> Value {
    let response = browser
        .http
        .get(format!("{}/api/v1/tenant", drover.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn tenant_count(drover: &TestDrover) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(drover.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_tenant_sign_up_creates_a_tenant_per_person_on_the_default_plan() {
    let pending = OidcProvider::listen().await;
    let drover = TestDrover::start_with(Extra {
        oidc: Some(login_settings(pending.issuer(), &[])),
        tenancy: Some(drover_e2e::oidc::multi_tenant()),
        ..Extra::default()
    })
    .await;
    let _provider = pending
        .configure(
            &ProviderConfig::for_drover(&drover)
                .user(ADMIN, "Olga Ops")
                .user(STRANGER, "Eve"),
        )
        .await;
    assert_eq!(
        tenant_count(&drover).await,
        1,
        "the operator's default tenant"
    );
    assert_eq!(drover.client().tenant().await.unwrap().plan, "unlimited");

    let eve = Browser::new();
    assert_eq!(
        browser_login(&eve, &drover.http_url(), STRANGER)
            .await
            .status(),
        200
    );
    let (_, me) = whoami(&eve, &drover).await;
    assert_eq!(
        me["role"], "admin",
        "the person who signs up administers the new tenant"
    );
    let tenant = tenant_of(&eve, &drover).await;
    assert_eq!(tenant["name"], STRANGER);
    assert_eq!(tenant["plan"], "hobby");
    assert_eq!(tenant["id"], me["tenant"]);
    let users = tenant["usage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["resource"] == "users")
        .unwrap()
        .clone();
    assert_eq!(users["used"], 1);
    assert_eq!(users["limit"], 3);
    assert_eq!(tenant_count(&drover).await, 2);

    // Eve again (another browser): the same tenant, no new one.
    let again = Browser::new();
    assert_eq!(
        browser_login(&again, &drover.http_url(), STRANGER)
            .await
            .status(),
        200
    );
    assert_eq!(tenant_of(&again, &drover).await["id"], tenant["id"]);
    assert_eq!(tenant_count(&drover).await, 2);

    // Another person gets a tenant of their own, and sees nothing of Eve's.
    let olga = Browser::new();
    assert_eq!(
        browser_login(&olga, &drover.http_url(), ADMIN)
            .await
            .status(),
        200
    );
    let olgas = tenant_of(&olga, &drover).await;
    assert_eq!(olgas["name"], ADMIN);
    assert_ne!(olgas["id"], tenant["id"]);
    assert_eq!(tenant_count(&drover).await, 3);
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_login_past_the_plans_user_limit_is_refused() {
    let pending = OidcProvider::listen().await;
    let mode = drover_service::TenancyMode::SingleTenant;
    let file = drover_service::Plans::parse_file("[plans.solo]\nusers = 1\n").unwrap();
    let drover = TestDrover::start_with(Extra {
        oidc: Some(login_settings(pending.issuer(), &[ADMIN, STRANGER])),
        tenancy: Some(drover_service::Tenancy {
            mode,
            plans: drover_service::Plans::new(mode, Some(file), Some("solo".into())).unwrap(),
        }),
        ..Extra::default()
    })
    .await;
    let _provider = pending
        .configure(
            &ProviderConfig::for_drover(&drover)
                .user(ADMIN, "Olga Ops")
                .user(STRANGER, "Eve"),
        )
        .await;
    assert_eq!(drover.client().tenant().await.unwrap().plan, "solo");
    let olga = Browser::new();
    assert_eq!(
        browser_login(&olga, &drover.http_url(), ADMIN)
            .await
            .status(),
        200
    );
    let eve = Browser::new();
    let refused = browser_login(&eve, &drover.http_url(), STRANGER).await;
    assert_eq!(refused.status(), 403);
    let body = refused.text().await.unwrap();
    assert!(body.contains("solo plan allows 1 users"), "{body}");
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(drover.pool())
        .await
        .unwrap();
    assert_eq!(users, 1, "the refused login stored no user");
    // Olga's next login still works at the limit.
    let again = Browser::new();
    assert_eq!(
        browser_login(&again, &drover.http_url(), ADMIN)
            .await
            .status(),
        200
    );
    drover.stop().await;
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
    let (drover, _provider) = start().await;
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
    let (drover, _provider) = start().await;
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
