//! `drover login`: a browser login that hands this CLI a session of its own.
//!
//! The CLI listens on a loopback port and sends the browser to droverd's `/auth/cli` with the
//! port and the challenge of a random verifier; after the login and the person's "Allow",
//! droverd redirects the browser to `http://127.0.0.1:PORT/callback?code=...`, and the CLI
//! exchanges the code with its verifier for a session token and a refresh token.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use drover_client::Client;
use drover_model::CliCredential;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// How long the CLI waits for the browser.
const WAIT: Duration = Duration::from_secs(5 * 60);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Logs in at `endpoint` (reached with `client`) through the browser; prints the address to
/// open on stderr.
pub async fn login(client: &Client, endpoint: &str, open_browser: bool) -> Result<CliCredential> {
    let verifier = b64(&rand::random::<[u8; 32]>());
    let challenge = b64(&Sha256::digest(verifier.as_bytes()));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on a loopback port for the browser's answer")?;
    let port = listener.local_addr()?.port();
    let url = format!(
        "{}/auth/cli?port={port}&challenge={challenge}",
        endpoint.trim_end_matches('/')
    );
    eprintln!("To log in, open this address in a browser:\n{url}");
    if open_browser {
        // Best effort: the address is printed above for when no browser opens.
        let _ = std::process::Command::new("xdg-open")
            .arg(&url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    let code = tokio::time::timeout(WAIT, answer(&listener))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "no answer from the browser within {} minutes",
                WAIT.as_secs() / 60
            )
        })??;
    Ok(client.cli_token_for_code(&code, &verifier).await?)
}

/// Waits for the browser's redirect to `/callback`; its code.
async fn answer(listener: &TcpListener) -> Result<String> {
    loop {
        let (mut stream, _) = listener.accept().await?;
        let Some(target) = request_target(&mut stream).await else {
            continue;
        };
        let Ok(url) = url::Url::parse(&format!("http://127.0.0.1{target}")) else {
            continue;
        };
        if url.path() != "/callback" {
            respond(&mut stream, "404 Not Found", "Not found.").await;
            continue;
        }
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        if let Some(code) = param("code") {
            respond(
                &mut stream,
                "200 OK",
                "The drover CLI is logged in. You can close this window.",
            )
            .await;
            return Ok(code);
        }
        let error = param("error").unwrap_or_else(|| "no code".into());
        respond(&mut stream, "200 OK", "The CLI login was cancelled.").await;
        bail!("the login was not completed in the browser ({error})");
    }
}

/// The request target of an HTTP request's first line (`GET /callback?code=... HTTP/1.1`).
async fn request_target(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head).lines().next()?.to_owned();
    let mut parts = line.split(' ');
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(target)) if target.starts_with('/') => Some(target.to_owned()),
        _ => None,
    }
}

async fn respond(stream: &mut TcpStream, status: &str, text: &str) {
    let body = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\"><p>{text}</p></body></html>"
    );
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
