//! `droverd keys rotate`: a new key-encryption key, with every tenant's data key re-wrapped
//! under it, while droverd keeps serving.
//!
//! Crash-safe in three steps: the new key is written to `master.key.next` (kept if it is
//! there already, so a rerun finishes an interrupted rotation); the data keys are re-wrapped
//! in one transaction; then `master.key` becomes `master.key.previous` and `master.key.next`
//! becomes `master.key`. A running droverd reads the key files again when it meets a data key
//! wrapped by a key it does not know, so it keeps working at every step.

use anyhow::{Context, Result, bail};
use drover_postgres::{PrivatePostgres, PrivatePostgresOptions};
use drover_seal::Kek;
use drover_service::Keyring;
use drover_service::secrets::{self, KEK_FILE, NEXT_KEK_FILE, PREVIOUS_KEK_FILE};
use drover_store::Store;

use crate::settings::{Database, Settings};

/// What a rotation did.
#[derive(Debug)]
pub struct Rotation {
    pub old_id: String,
    pub new_id: String,
    pub rewrapped: usize,
}

pub async fn rotate(settings: &Settings) -> Result<Rotation> {
    if settings.master_key.is_some() {
        bail!(
            "the key-encryption key comes from configuration (master-key / DROVER_MASTER_KEY): \
             rotate it there; `keys rotate` manages <data-dir>/{KEK_FILE}"
        );
    }
    let dir = &settings.data_dir;
    let old = Kek::load(&dir.join(KEK_FILE))
        .with_context(|| format!("no key-encryption key in {}", dir.display()))?;
    let next_path = dir.join(NEXT_KEK_FILE);
    let next = Kek::load_or_create(&next_path)
        .with_context(|| format!("cannot create {}", next_path.display()))?;

    let (store, postgres) = connect(settings).await?;
    let keyring = Keyring::from_dir(dir).context("cannot read the key files")?;
    let rewrapped = secrets::rewrap_all(&store, &keyring, &next).await;
    store.close().await;
    if let Some(pg) = postgres {
        pg.stop().await.context("stopping the private PostgreSQL")?;
    }
    let rewrapped = rewrapped.context("re-wrapping the data keys")?;

    std::fs::rename(dir.join(KEK_FILE), dir.join(PREVIOUS_KEK_FILE))
        .context("keeping the old key as master.key.previous")?;
    std::fs::rename(&next_path, dir.join(KEK_FILE)).context("installing the new key")?;
    Ok(Rotation {
        old_id: old.id().to_owned(),
        new_id: next.id().to_owned(),
        rewrapped,
    })
}

/// The database: the configured URL, the private PostgreSQL a running droverd owns, or one
/// started for this command.
pub(crate) async fn connect(settings: &Settings) -> Result<(Store, Option<PrivatePostgres>)> {
    let (url, postgres) = database(settings).await?;
    Ok((Store::connect(&url, 2).await?, postgres))
}

/// The URL of the database (see [`connect`]), without connecting or migrating; the private
/// PostgreSQL started for the command, if one was.
pub(crate) async fn database(settings: &Settings) -> Result<(String, Option<PrivatePostgres>)> {
    let pg_dir = settings.data_dir.join("postgres");
    match &settings.database {
        Database::Url(url) => Ok((url.clone(), None)),
        Database::Private { extra_settings } => {
            let running = PrivatePostgres::url_for(&pg_dir)?;
            if Store::has_schema(&running).await.is_ok() {
                return Ok((running, None));
            }
            let mut opts = PrivatePostgresOptions::new(pg_dir);
            opts.extra_settings = extra_settings.clone();
            let pg = PrivatePostgres::start(opts)
                .await
                .context("cannot start the private PostgreSQL")?;
            Ok((pg.database_url().to_owned(), Some(pg)))
        }
    }
}
