//! A real OpenID provider for tests: `tests/oidc-provider/server.mjs` (the certified
//! `oidc-provider` npm package) run with Node on a loopback port it picks, killed on drop.
//!
//! ```ignore
//! let pending = OidcProvider::listen().await;          // its issuer URL is known now
//! let drover = TestDrover::start_with(Extra { oidc: Some(login_settings(pending.issuer(), &[ADMIN])), ..Default::default() }).await;
//! let provider = pending.configure(ProviderConfig::for_drover(&drover).user(ADMIN, "Ops")).await;
//! ```

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// The client id droverd is registered under in tests.
pub const CLIENT_ID: &str = "drover";
/// The client secret of that client.
pub const CLIENT_SECRET: &str = "drover-test-client-secret";

/// Clients and users of the provider.
#[derive(Debug, Clone, Default)]
pub struct ProviderConfig {
    clients: Vec<Value>,
    users: Vec<Value>,
}

impl ProviderConfig {
    /// A confidential client for the droverd at `public_url` (its callback and start page).
    pub fn for_drover_at(public_url: &str) -> Self {
        let base = public_url.trim_end_matches('/');
        Self::default().client(json!({
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [format!("{base}/auth/callback")],
            "post_logout_redirect_uris": [format!("{base}/")],
        }))
    }

    pub fn for_drover(drover: &crate::TestDrover) -> Self {
        Self::for_drover_at(&drover.http_url())
    }

    pub fn client(mut self, client: Value) -> Self {
        self.clients.push(client);
        self
    }

    /// A user with a verified e-mail address.
    pub fn user(mut self, email: &str, name: &str) -> Self {
        self.users
            .push(json!({ "email": email, "name": name, "email_verified": true }));
        self
    }

    fn to_json(&self) -> String {
        json!({ "clients": self.clients, "users": self.users }).to_string()
    }
}

/// The provider process while it listens but has no configuration yet.
pub struct PendingOidcProvider {
    process: Process,
}

/// A running provider.
pub struct OidcProvider {
    process: Process,
}

struct Process {
    child: Child,
    issuer: String,
    lines: mpsc::UnboundedReceiver<String>,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// The next stdout line starting with `prefix`, or a panic with the logs if the process ends.
    async fn expect_line(&mut self, prefix: &str) -> String {
        let wait = async {
            while let Some(line) = self.lines.recv().await {
                if let Some(rest) = line.strip_prefix(prefix) {
                    return Some(rest.trim().to_owned());
                }
            }
            None
        };
        match tokio::time::timeout(Duration::from_secs(60), wait).await {
            Ok(Some(rest)) => rest,
            Ok(None) => panic!(
                "the test OpenID provider ended before printing {prefix:?}; its output:\n{}",
                self.logs.lock().unwrap().join("\n")
            ),
            Err(_) => panic!(
                "the test OpenID provider did not print {prefix:?} within a minute; its output:\n{}",
                self.logs.lock().unwrap().join("\n")
            ),
        }
    }
}

fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc-provider")
}

impl OidcProvider {
    /// Starts the provider on a free loopback port; configure it with
    /// [`PendingOidcProvider::configure`] once the redirect URIs are known.
    pub async fn listen() -> PendingOidcProvider {
        let dir = provider_dir();
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "the test OpenID provider is not installed in {}: run scripts/install-prereqs --for-tests",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .args(["--port", "0", "--config", "-"])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (install it with scripts/install-prereqs --for-tests)");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        for (stream, tx) in [
            (
                Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                Some(tx),
            ),
            (Box::new(stderr), None),
        ] {
            let logs = logs.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    eprintln!("[oidc-provider] {line}");
                    logs.lock().unwrap().push(line.clone());
                    if let Some(tx) = &tx {
                        let _ = tx.send(line);
                    }
                }
            });
        }
        let mut process = Process {
            child,
            issuer: String::new(),
            lines,
            logs,
        };
        process.issuer = process.expect_line("listening ").await;
        PendingOidcProvider { process }
    }

    /// Starts and configures in one step, when the redirect URIs are known in advance.
    pub async fn start(config: &ProviderConfig) -> OidcProvider {
        Self::listen().await.configure(config).await
    }

    pub fn issuer(&self) -> &str {
        &self.process.issuer
    }

    /// What the provider printed so far.
    pub fn logs(&self) -> Vec<String> {
        self.process.logs.lock().unwrap().clone()
    }
}

impl PendingOidcProvider {
    pub fn issuer(&self) -> &str {
        &self.process.issuer
    }

    pub async fn configure(mut self, config: &ProviderConfig) -> OidcProvider {
        let mut stdin = self.process.child.stdin.take().expect("piped");
        stdin
            .write_all(format!("{}\n", config.to_json()).as_bytes())
            .await
            .expect("the provider reads its config");
        stdin.flush().await.expect("flush");
        drop(stdin);
        let ready = self.process.expect_line("ready ").await;
        assert_eq!(ready, self.process.issuer);
        OidcProvider {
            process: self.process,
        }
    }
}

/// droverd's login settings for this provider (the confidential test client).
pub fn login_settings(issuer: &str, initial_admins: &[&str]) -> droverd::settings::OidcLogin {
    droverd::settings::OidcLogin {
        issuer: issuer.to_owned(),
        client_id: CLIENT_ID.to_owned(),
        client_secret: Some(CLIENT_SECRET.to_owned().into()),
        public_url: None,
        initial_admin_emails: initial_admins.iter().map(|s| (*s).to_owned()).collect(),
        session_ttl: Duration::from_secs(3600),
    }
}

/// HTTP clients that keep cookies in one jar, like a browser: `http` follows redirects,
/// `manual` does not (to look at a redirect itself).
#[derive(Clone)]
pub struct Browser {
    pub http: reqwest::Client,
    pub manual: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
}

impl Browser {
    pub fn new() -> Self {
        Self::with_redirects(reqwest::redirect::Policy::default())
    }

    /// `http` follows redirects by `policy`.
    pub fn with_redirects(policy: reqwest::redirect::Policy) -> Self {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let build = |policy| {
            reqwest::Client::builder()
                .cookie_provider(jar.clone())
                .redirect(policy)
                .build()
                .expect("client")
        };
        Self {
            http: build(policy),
            manual: build(reqwest::redirect::Policy::none()),
            jar,
        }
    }

    /// The value of cookie `name` the jar would send to `url`.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        use reqwest::cookie::CookieStore;
        let header = self.jar.cookies(&url.parse().expect("url"))?;
        header
            .to_str()
            .ok()?
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_owned())
    }
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

/// Submits the provider's login form (the page `form_page` shows) for `email`, following the
/// redirects that come back; returns the last response.
pub async fn submit_login_form(
    browser: &Browser,
    form_page: reqwest::Response,
    email: &str,
) -> reqwest::Response {
    let page_url = form_page.url().clone();
    let html = form_page.text().await.expect("login page");
    let action = html
        .split("action=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no login form at {page_url}: {html}"));
    let target = page_url.join(action).expect("form action URL");
    browser
        .http
        .post(target)
        .form(&[("email", email)])
        .send()
        .await
        .expect("the login form posts")
}

/// The whole browser login: droverd's `/auth/login`, the provider's form, the callback.
/// Returns the last response (droverd's start page when the login worked).
pub async fn browser_login(browser: &Browser, drover_url: &str, email: &str) -> reqwest::Response {
    let form = browser
        .http
        .get(format!("{drover_url}/auth/login"))
        .send()
        .await
        .expect("droverd answers /auth/login");
    assert_eq!(
        form.status(),
        200,
        "expected the provider's login form at {}",
        form.url()
    );
    submit_login_form(browser, form, email).await
}

/// Multi-tenant mode (a first login signs the person up) with the built-in plans.
pub fn multi_tenant() -> drover_service::Tenancy {
    let mode = drover_service::TenancyMode::MultiTenant;
    drover_service::Tenancy {
        mode,
        plans: drover_service::Plans::new(mode, None, None).expect("the built-in plans"),
    }
}
