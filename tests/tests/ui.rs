//! The web UI end to end in headless Chromium: sign in through the real OpenID provider, create a
//! join token and watch emulated machines appear without a reload, make a machine class and a
//! cluster by form and watch it become Ready, plan and run a Talos upgrade with per-node progress,
//! download a kubeconfig that real kubectl uses. Screenshots of the pages are saved (see
//! `drover_e2e::chromium::screenshots_dir`). Also: pages and forms without the bundle, the
//! cross-site guard, and the machines page over 10,000 machines.

use drover_e2e::chromium::{Chromium, PAGE_LIMIT};
use drover_e2e::oidc::{OidcProvider, ProviderConfig, login_settings};
use drover_e2e::{Extra, TestDrover, binary, eventually, spawn_fleet, web_root};
use drover_emu::{CancellationToken, Fleet};

const ADMIN: &str = "ops@example.com";
const FROM: &str = "v1.12.4";
const TO: &str = "v1.13.0";
const KUBERNETES: &str = "v1.31.2";

async fn start() -> (TestDrover, OidcProvider) {
    let bundle = web_root().join("pkg/drover_web.js");
    assert!(
        bundle.exists(),
        "{} is missing: build the UI bundle with scripts/build-web (scripts/test does)",
        bundle.display()
    );
    let pending = OidcProvider::listen().await;
    let drover = TestDrover::start_with(Extra {
        oidc: Some(login_settings(pending.issuer(), &[ADMIN])),
        ..Extra::default()
    })
    .await;
    let provider = pending
        .configure(&ProviderConfig::for_drover(&drover).user(ADMIN, "Olga Ops"))
        .await;
    (drover, provider)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_in_joins_machines_and_creates_and_upgrades_a_cluster_in_the_browser() {
    let (drover, _provider) = start().await;
    let url = drover.http_url();
    let browser = Chromium::start().await;

    // Signed out, a page says so and offers the sign-in.
    browser.goto(&format!("{url}/machines")).await;
    browser
        .wait_for("the signed-out notice", ".notice", |t| {
            t.contains("not signed in")
        })
        .await;
    browser.goto(&format!("{url}/login")).await;
    browser.screenshot("01-login").await;

    // Through the provider's login form and back.
    browser.click("#sign-in-oidc").await;
    browser.fill("input[name=email]", ADMIN).await;
    browser.click("button[type=submit]").await;
    browser
        .wait_for("the dashboard", "main h1", |t| t == "Dashboard")
        .await;
    browser
        .wait_for("the signed-in user", ".viewer", |t| t.contains(ADMIN))
        .await;
    browser.wait_hydrated().await;
    browser.screenshot("02-dashboard-empty").await;

    // A join token, created in the page: its secret and kernel arguments are shown once.
    browser.click("nav a[href='/join-tokens']").await;
    browser
        .wait_for("the join tokens page", "main h1", |t| t == "Join tokens")
        .await;
    // Only a page that was never reloaded keeps this.
    browser.eval("window.stayed = true; return null;").await;
    browser
        .fill("#create-join-token input[name=name]", "lab")
        .await;
    browser
        .click("#create-join-token button[type=submit]")
        .await;
    let created = browser
        .wait_for("the new token", "#created-token", |t| {
            t.contains("siderolink.api=")
        })
        .await;
    let secret = browser
        .text("#created-token .copyable pre")
        .await
        .expect("the secret is shown");
    assert!(created.contains("SideroLinkConfig"), "{created}");
    browser
        .wait_for("the token in the list", "#join-tokens", |t| {
            t.contains("lab")
        })
        .await;
    browser.screenshot("03-join-token-created").await;

    // Machines join while the machines page is open: they appear without a reload.
    browser.click("nav a[href='/machines']").await;
    browser
        .wait_for("no machines yet", "#machines-count", |t| {
            t.contains("of 0 machines")
        })
        .await;
    let mut config = drover.fleet_config(&secret, 3, "ui", FROM);
    config.lifecycle = drover_emu::Lifecycle::INSTANT;
    let cancel = CancellationToken::new();
    let running = spawn_fleet(Fleet::new(config), cancel.clone());
    browser
        .wait_for("three machines, live", "#machines-count", |t| {
            t.contains("of 3 machines")
        })
        .await;
    browser
        .wait_for("all connected", "#machines-table tbody", |t| {
            t.matches("connected").count() == 3 && !t.contains("disconnected")
        })
        .await;
    assert_eq!(
        browser.eval("return window.stayed === true;").await,
        serde_json::Value::Bool(true),
        "the machines appeared through a reload, not a live update"
    );
    browser.screenshot("04-machines-live").await;

    // A machine's page.
    browser.click("#machines-table tbody tr a").await;
    browser
        .wait_for("the machine's facts", "#machine-stage", |t| {
            t.contains("maintenance")
        })
        .await;
    browser.screenshot("05-machine").await;

    // A machine class, with its live preview.
    browser.click("nav a[href='/machine-classes']").await;
    browser.fill("#class-name", "all").await;
    browser
        .fill("#class-selectors", "drover.dev/connected")
        .await;
    browser
        .wait_for("the preview", "#class-preview-count", |t| {
            t.starts_with("3 ")
        })
        .await;
    browser.click("#save-class button[type=submit]").await;
    browser
        .wait_for("the class in the list", "#machine-classes", |t| {
            t.contains("all")
        })
        .await;
    browser.screenshot("06-machine-classes").await;

    // A cluster by form: a bad name is refused next to its field, then it is created.
    browser.click("nav a[href='/clusters']").await;
    browser.click("main a[href='/clusters/new']").await;
    browser
        .wait_for("the class choices", "#control_plane_class", |t| {
            t.contains("all")
        })
        .await;
    browser.fill("#name", "Not A Name").await;
    browser.fill("#talos_version", FROM).await;
    browser.fill("#kubernetes_version", KUBERNETES).await;
    browser.fill("#control_planes", "1").await;
    browser.fill("#workers", "2").await;
    browser
        .client()
        .find(fantoccini::Locator::Css("#worker_class"))
        .await
        .unwrap()
        .select_by_value("all")
        .await
        .unwrap();
    browser.click("#new-cluster button[type=submit]").await;
    let problem = browser
        .wait_for("the name's problem", "#new-cluster .field-error", |t| {
            !t.is_empty()
        })
        .await;
    assert!(
        problem.contains("lower-case") || problem.contains("name"),
        "{problem}"
    );
    browser.screenshot("07-new-cluster-invalid").await;
    browser.fill("#name", "web").await;
    browser.click("#new-cluster button[type=submit]").await;
    browser
        .wait_for("the cluster page", "main h1", |t| t.starts_with("web"))
        .await;
    browser
        .wait_for("the cluster Ready", "#cluster-ready", |t| t == "3 / 3")
        .await;
    browser
        .wait_for("phase running", "main h1 .badge", |t| t == "running")
        .await;
    browser.screenshot("08-cluster-ready").await;

    // The upgrade's plan, then the upgrade with per-node progress.
    browser.fill("#upgrade-form input[name=version]", TO).await;
    browser.click("#upgrade-form input[name=dry_run]").await;
    browser.click("#upgrade-form button[type=submit]").await;
    let plan = browser
        .wait_for("the plan", "#upgrade-plan", |t| {
            t.contains(TO.trim_start_matches('v'))
        })
        .await;
    assert!(plan.contains("control"), "{plan}");
    browser.screenshot("09-upgrade-plan").await;
    browser.click("#upgrade-form input[name=dry_run]").await;
    browser.click("#upgrade-form button[type=submit]").await;
    browser
        .wait_for("per-node progress", "#upgrade-nodes tbody", |t| {
            !t.is_empty()
        })
        .await;
    browser.screenshot("10-upgrade-progress").await;
    let nodes = browser
        .wait_for("the upgrade done", "#upgrade-progress h3 .badge", |t| {
            t == "done"
        })
        .await;
    assert_eq!(nodes, "done");
    let table = browser.text("#upgrade-nodes tbody").await.unwrap();
    assert_eq!(table.matches("done").count(), 3, "{table}");
    browser.screenshot("11-upgrade-done").await;

    // The kubeconfig the page offers, fetched by the signed-in browser, works with kubectl.
    let kubeconfig = browser
        .client()
        .execute_async(
            "const done = arguments[0];
             fetch(document.getElementById('download-kubeconfig').href)
               .then(r => r.text()).then(done);",
            Vec::new(),
        )
        .await
        .expect("the kubeconfig downloads");
    let kubeconfig = kubeconfig.as_str().expect("YAML text").to_owned();
    assert!(kubeconfig.contains("/clusters/web"), "{kubeconfig}");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &kubeconfig).unwrap();
    let cli_dir = binary("drover").parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        cli_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let nodes = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(file.path())
        .args(["get", "nodes", "-o", "name"])
        .env("PATH", path)
        .env("DROVER_TOKEN", drover.admin_token())
        .output()
        .expect("kubectl runs");
    assert!(
        nodes.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&nodes.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&nodes.stdout).lines().count(), 3);

    // The talosconfig form issues a certificate of Drover's Talos API proxy for this user.
    let talosconfig = browser
        .client()
        .execute_async(
            "const done = arguments[0];
             const form = document.getElementById('download-talosconfig').form;
             fetch(form.action, { method: 'POST' }).then(r => r.text()).then(done);",
            Vec::new(),
        )
        .await
        .expect("the talosconfig downloads");
    let talosconfig = talosconfig.as_str().expect("YAML text");
    assert!(talosconfig.contains("contexts:"), "{talosconfig}");
    assert!(
        talosconfig.contains("BEGIN CERTIFICATE") || talosconfig.contains("crt:"),
        "{talosconfig}"
    );

    // Scale the workers down to one: a worker is reset and returns to the pool.
    browser.fill("#scale-workers input[name=size]", "1").await;
    browser.click("#scale-workers button[type=submit]").await;
    browser
        .wait_for("two machines left", "#cluster-ready", |t| t == "2 / 2")
        .await;

    // Delete, with the name typed: a wrong one is refused at the field.
    browser.fill("#confirm", "webb").await;
    browser.click("#delete-cluster button[type=submit]").await;
    browser
        .wait_for("the refusal", "#delete-cluster .field-error", |t| {
            t.contains("web")
        })
        .await;
    browser.fill("#confirm", "web").await;
    browser.click("#delete-cluster button[type=submit]").await;
    browser
        .wait_for("the cluster list", "main h1", |t| t.starts_with("Clusters"))
        .await;
    browser
        .wait_for("the cluster gone", "main p.muted", |t| {
            t == "No clusters yet."
        })
        .await;

    // Settings and the audit log.
    browser.click("nav a[href='/settings']").await;
    browser
        .wait_for("the users", "#users", |t| t.contains(ADMIN))
        .await;
    browser.screenshot("12-settings").await;
    browser.click("main a[href='/settings/audit-log']").await;
    browser
        .wait_for("the audit log", "#audit-log", |t| {
            t.contains("cluster.create")
        })
        .await;
    browser.screenshot("13-audit-log").await;

    // The dashboard on a phone.
    browser.client().set_window_size(390, 844).await.unwrap();
    browser.click("a.brand").await;
    browser
        .wait_for("the dashboard's counts", "#machines-total", |t| t == "3")
        .await;
    browser.screenshot("14-dashboard-phone").await;

    // Signing out ends the session (then the provider's own logout page shows).
    browser.click("form[action='/ui/sign-out'] button").await;
    eventually("the session to end", PAGE_LIMIT, || async {
        let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
            .fetch_one(drover.pool())
            .await
            .ok()?;
        (sessions == 0).then_some(())
    })
    .await;
    browser.goto(&format!("{url}/machines")).await;
    browser
        .wait_for("signed out", ".notice", |t| t.contains("not signed in"))
        .await;

    browser.close().await;
    cancel.cancel();
    running.await.unwrap();
    drover.stop().await;
}

/// The same origin check the UI's changes rely on, from a browser that lacks the bundle: pages
/// render on the server, a plain form post works, a cross-site one does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_forms_work_without_the_bundle_and_cross_site_posts_are_refused() {
    let drover = TestDrover::start().await;
    let url = drover.http_url();
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Without the right origin, no sign-in.
    let refused = http
        .post(format!("{url}/ui/sign-in/token"))
        .header("origin", "http://evil.example")
        .form(&[("token", drover.admin_token())])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    let host = url.trim_start_matches("http://").to_owned();
    let signed_in = http
        .post(format!("{url}/ui/sign-in/token"))
        .header("origin", &url)
        .form(&[("token", drover.admin_token())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303, "{:?}", signed_in.text().await);
    let wrong = http
        .post(format!("{url}/ui/sign-in/token"))
        .header("origin", &url)
        .form(&[("token", "drt_nope")])
        .send()
        .await
        .unwrap();
    let location = wrong.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/login?error="), "{location}");

    // The join tokens page, rendered on the server, holds the create form.
    let page = http
        .get(format!("{url}/join-tokens"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let action = page
        .split("id=\"create-join-token\"")
        .next()
        .and_then(|before| before.rsplit("action=\"").next())
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no create form in {page}"))
        .to_owned();
    assert!(action.starts_with("/ui/fn/"), "{action}");

    // Cross-site, the form post is refused and nothing is created.
    let cross = http
        .post(format!("{url}{action}"))
        .header("origin", "http://evil.example")
        .header("referer", format!("{url}/join-tokens"))
        .form(&[("name", "evil"), ("expires_in", "")])
        .send()
        .await
        .unwrap();
    assert_ne!(cross.status(), 200);
    // Same-origin, it works and goes back to the page.
    let posted = http
        .post(format!("{url}{action}"))
        .header("origin", &url)
        .header("host", &host)
        .header("accept", "text/html")
        .header("referer", format!("{url}/join-tokens"))
        .form(&[("name", "plain"), ("expires_in", "")])
        .send()
        .await
        .unwrap();
    assert!(posted.status().is_redirection(), "{}", posted.status());
    let names: Vec<String> = drover
        .client()
        .list_join_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["plain"]);
    let page = http
        .get(format!("{url}/join-tokens"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(">plain"), "the new token is listed: {page}");
    drover.stop().await;
}

/// 10,000 machines: the page shows one page of 50, in order, with the total, on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_machines_page_pages_through_ten_thousand_machines() {
    let drover = TestDrover::start().await;
    let url = drover.http_url();
    insert_machines(&drover, 10_000).await;
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    http.post(format!("{url}/ui/sign-in/token"))
        .header("origin", &url)
        .form(&[("token", drover.admin_token())])
        .send()
        .await
        .unwrap();
    let page = eventually("page 100", PAGE_LIMIT, || async {
        let text = http
            .get(format!("{url}/machines?page=100&sort=id"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains("4951–5000 of 10000 machines").then_some(text)
    })
    .await;
    assert_eq!(page.matches("data-machine=").count(), 50);
    assert!(
        page.contains("00000000-0000-0000-0000-000000004951"),
        "first id of page 100"
    );
    assert!(page.contains("Page 100 of 200"));
    // Filtered: the label filter runs in the database too.
    let filtered = http
        .get(format!("{url}/machines?label=rack%3Dr7"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        filtered.contains("of 1000 machines"),
        "every tenth machine is in rack r7"
    );
    drover.stop().await;
}

/// Inserts `n` provisioned machines straight into the database (ids …0001 to …n, every tenth in
/// rack `r7`), as a large fleet would leave them.
pub async fn insert_machines(drover: &TestDrover, n: i64) {
    sqlx::query(
        "INSERT INTO machines (tenant_id, id, address, wireguard_public_key, talos_version,
             wireguard_over_grpc, first_provisioned_at, last_provisioned_at, connected, labels)
         SELECT (SELECT id FROM tenants LIMIT 1),
                '00000000-0000-0000-0000-' || lpad(i::text, 12, '0'),
                'fdae:41e4:649b:9303::' || to_hex(i),
                'key' || i, 'v1.13.0', false, now(), now(), i % 2 = 0,
                CASE WHEN i % 10 = 7 THEN '{\"rack\": \"r7\"}'::jsonb ELSE '{}'::jsonb END
         FROM generate_series(1, $1) AS i",
    )
    .bind(n)
    .execute(drover.pool())
    .await
    .expect("machines are inserted");
}

/// A person in two tenants switches between them; the session moves, an invitation in the other
/// tenant is claimed, and a tenant that is not theirs is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_in_two_tenants_switches_between_them() {
    use drover_e2e::oidc::{Browser, browser_login};
    const ANA: &str = "ana@example.com";
    let pending = OidcProvider::listen().await;
    let drover = TestDrover::start_with(Extra {
        oidc: Some(login_settings(pending.issuer(), &[])),
        tenancy: Some(drover_e2e::oidc::multi_tenant()),
        ..Extra::default()
    })
    .await;
    let _provider = pending
        .configure(&ProviderConfig::for_drover(&drover).user(ANA, "Ana"))
        .await;
    let url = drover.http_url();
    let browser = Browser::new();
    // Her first login signs her up into a tenant of her own.
    assert_eq!(browser_login(&browser, &url, ANA).await.status(), 200);
    let me = |browser: &Browser| {
        let url = url.clone();
        let http = browser.http.clone();
        async move {
            let me: serde_json::Value = http
                .get(format!("{url}/api/v1/me"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (
                me["tenant"].as_str().unwrap().to_owned(),
                me["role"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (own, role) = me(&browser).await;
    assert_eq!(role, "admin");
    // Another tenant invites her as a Reader.
    let (other, _) = drover.create_tenant("acme", None).await;
    other
        .invite_user(&drover_model::InviteUser {
            email: ANA.into(),
            role: drover_model::Role::Reader,
        })
        .await
        .unwrap();
    let acme: String = sqlx::query_scalar("SELECT id::text FROM tenants WHERE name = 'acme'")
        .fetch_one(drover.pool())
        .await
        .unwrap();
    // The header offers both.
    let page = browser
        .http
        .get(format!("{url}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"switch-tenant\""), "{page}");
    assert!(page.contains(&acme), "{page}");

    let switch = |tenant: String| {
        let url = url.clone();
        let http = browser.http.clone();
        async move {
            http.post(format!("{url}/ui/switch-tenant"))
                .header("origin", &url)
                .form(&[("tenant", tenant)])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // Not hers: refused, and nothing moves.
    let stranger = drover_model::TenantId::new_random().to_string();
    assert_eq!(switch(stranger).await, 404);
    assert_eq!(me(&browser).await.0, own);
    // Cross-site: refused.
    let cross = browser
        .http
        .post(format!("{url}/ui/switch-tenant"))
        .header("origin", "http://evil.example")
        .form(&[("tenant", acme.clone())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    // Hers: the same session now works in acme, as a Reader.
    assert!(switch(acme.clone()).await.is_success());
    assert_eq!(me(&browser).await, (acme.clone(), "reader".to_owned()));
    // And back.
    assert!(switch(own.clone()).await.is_success());
    assert_eq!(me(&browser).await, (own, "admin".to_owned()));
    drover.stop().await;
}
