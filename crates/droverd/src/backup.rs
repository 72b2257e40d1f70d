//! `droverd backup --out FILE` and `droverd restore FILE`: the database as a `pg_dump` archive
//! (custom format), made while droverd runs and restored into a fresh database. The
//! key-encryption key (`<data-dir>/master.key`) is not in the archive: it must be kept apart,
//! and without it the sealed cluster secrets in the archive cannot be opened.

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use drover_postgres::{PrivatePostgres, find_client};
use drover_service::secrets::KEK_FILE;
use drover_store::Store;

use crate::settings::Settings;

/// Writes the database to `out` with `pg_dump`.
pub async fn backup(settings: &Settings, out: &Path) -> Result<()> {
    let (url, postgres) = crate::keys::database(settings).await?;
    let dumped = run(
        "pg_dump",
        &url,
        &[
            "--format=custom".as_ref(),
            "--no-owner".as_ref(),
            "--file".as_ref(),
            out.as_os_str(),
        ],
    )
    .await;
    stop(postgres).await?;
    dumped.with_context(|| format!("cannot back the database up to {}", out.display()))
}

/// Restores the archive `file` into the database, which must not hold Drover's tables yet (a
/// fresh data dir, or a new empty database), in one transaction.
pub async fn restore(settings: &Settings, file: &Path) -> Result<()> {
    if !file.is_file() {
        bail!("{} is not a backup file", file.display());
    }
    let kek_file = settings.data_dir.join(KEK_FILE);
    if settings.master_key.is_none() && !kek_file.exists() {
        bail!(
            "put the key-encryption key of the backup in {} first (or set master-key): without \
             it the restored cluster secrets cannot be opened",
            kek_file.display()
        );
    }
    let (url, postgres) = crate::keys::database(settings).await?;
    let restored = restore_into(&url, file)
        .await
        .with_context(|| format!("cannot restore {}", file.display()));
    let checked = match restored {
        Ok(()) => check_keys(settings, &url).await,
        Err(err) => Err(err),
    };
    stop(postgres).await?;
    checked
}

/// Fails unless the configured key-encryption keys include every key that wraps a restored
/// data key (the tenants' and the installation's).
async fn check_keys(settings: &Settings, url: &str) -> Result<()> {
    let store = Store::connect(url, 1).await?;
    let tenants = drover_store::tenant_keys::kek_ids(store.pool()).await;
    let installation = drover_store::installation_secrets::kek_ids(store.pool()).await;
    store.close().await;
    let keyring = crate::server::keyring(settings)?;
    let mut ids = tenants?;
    ids.extend(installation?);
    ids.sort();
    ids.dedup();
    let missing: Vec<String> = ids.into_iter().filter(|id| !keyring.has(id)).collect();
    if !missing.is_empty() {
        bail!(
            "restored, but the data keys are wrapped by key-encryption key {}, which \
             is not the configured one ({}): put the backup's master.key there",
            missing.join(", "),
            keyring.current().id()
        );
    }
    Ok(())
}

async fn restore_into(url: &str, file: &Path) -> Result<()> {
    if Store::has_schema(url).await? {
        bail!(
            "the database already holds Drover's data; restore into a fresh data dir (or a new, \
             empty database) and stop droverd while restoring"
        );
    }
    run(
        "pg_restore",
        url,
        &[
            "--no-owner".as_ref(),
            "--exit-on-error".as_ref(),
            "--single-transaction".as_ref(),
            file.as_os_str(),
        ],
    )
    .await
}

async fn stop(postgres: Option<PrivatePostgres>) -> Result<()> {
    if let Some(pg) = postgres {
        pg.stop().await.context("stopping the private PostgreSQL")?;
    }
    Ok(())
}

/// Runs the PostgreSQL client `program` against `url` (its password passed in the
/// environment, not on the command line), failing with its error output.
async fn run(program: &'static str, url: &str, args: &[&std::ffi::OsStr]) -> Result<()> {
    let path = find_client(program)?;
    let mut command = tokio::process::Command::new(&path);
    command
        .args(args)
        .env_remove("PGPASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(password) = password(url)? {
        command.env("PGPASSWORD", password);
    }
    command.arg("--dbname").arg(url_without_password(url)?);
    let output = command
        .output()
        .await
        .with_context(|| format!("cannot run {}", path.display()))?;
    if !output.status.success() {
        bail!(
            "{program} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn parse(url: &str) -> Result<url::Url> {
    url::Url::parse(url).context("the database URL is not a URL")
}

/// The URL's password, percent-decoded.
fn password(url: &str) -> Result<Option<String>> {
    Ok(parse(url)?.password().map(|p| {
        // Form decoding, with `+` kept literal as in a URL's user info.
        let encoded = format!("p={}", p.replace('+', "%2B"));
        url::form_urlencoded::parse(encoded.as_bytes())
            .next()
            .map_or_else(|| p.to_owned(), |(_, v)| v.into_owned())
    }))
}

/// The URL without its password, for a command line.
fn url_without_password(url: &str) -> Result<String> {
    let mut url = parse(url)?;
    url.set_password(None)
        .map_err(|()| anyhow::anyhow!("the database URL cannot carry a password"))?;
    Ok(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_off_the_command_line() {
        let url = "postgres://drover:s%40cr+t@db.internal:5432/drover?sslmode=require";
        assert_eq!(password(url).unwrap().as_deref(), Some("s@cr+t"));
        assert_eq!(
            url_without_password(url).unwrap(),
            "postgres://drover@db.internal:5432/drover?sslmode=require"
        );
        let private = "postgres://drover@localhost:5432/drover?host=%2Ftmp%2Fpg&sslmode=disable";
        assert_eq!(password(private).unwrap(), None);
        assert_eq!(url_without_password(private).unwrap(), private);
    }
}
