//! Headless Chromium (Debian's `chromium`), driven through `chromedriver` over WebDriver, for
//! the web UI's end-to-end tests. Each [`Chromium`] has its own driver process and empty profile;
//! screenshots go to [`screenshots_dir`].

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use crate::eventually;

/// How long a page may take to show what a test waits for.
pub const PAGE_LIMIT: Duration = Duration::from_secs(60);

pub struct Chromium {
    client: Client,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

/// `$DROVER_SCREENSHOTS`, else `<target dir>/screenshots`.
pub fn screenshots_dir() -> PathBuf {
    std::env::var_os("DROVER_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::target_dir().join("screenshots"))
}

impl Chromium {
    /// Starts chromedriver and a headless Chromium with a laptop-sized window.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect(
                "chromedriver runs (scripts/install-prereqs --for-tests installs chromium-driver)",
            );
        let url = format!("http://127.0.0.1:{port}");
        let status = format!("{url}/status");
        eventually("chromedriver to answer", PAGE_LIMIT, || {
            let status = status.clone();
            async move {
                let response = reqwest::get(&status).await.ok()?;
                response.status().is_success().then_some(())
            }
        })
        .await;
        let profile = tempfile::tempdir().expect("a profile directory");
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    "--window-size=1366,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("an object")
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await
            .expect("a Chromium session");
        Self {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("the page loads");
    }

    /// Waits until the bundle hydrated the page (it marks `<body data-hydrated>`).
    pub async fn wait_hydrated(&self) {
        self.wait_for("the page to hydrate", "body[data-hydrated]", |_| true)
            .await;
    }

    /// Waits until an element matching `css` has text for which `ready` holds; returns it. On
    /// timeout, saves a screenshot `failed-<css>` and panics with the last text seen.
    pub async fn wait_for(&self, what: &str, css: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + PAGE_LIMIT;
        loop {
            let text = self.text(css).await;
            if let Some(text) = text.as_ref().filter(|t| ready(t)) {
                return text.clone();
            }
            if tokio::time::Instant::now() > deadline {
                let name: String = css.chars().filter(char::is_ascii_alphanumeric).collect();
                let shot = self.screenshot(&format!("failed-{name}")).await;
                panic!(
                    "timed out waiting for {what}: {css} shows {text:?} (see {})",
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The visible text of the first element matching `css`, if there is one.
    pub async fn text(&self, css: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.text().await.ok()
    }

    /// Types `text` into the field matching `css` (after clearing it).
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no field {css}: {e}"));
        field.clear().await.expect("the field clears");
        field.send_keys(text).await.expect("typing works");
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("nothing to click at {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css} failed: {e}"));
    }

    /// Runs `script` in the page and returns its result.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// Saves a PNG of the window as `<screenshots_dir>/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = screenshots_dir();
        std::fs::create_dir_all(&dir).expect("the screenshots directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("the screenshot is written");
        path
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
