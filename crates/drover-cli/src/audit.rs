//! `drover audit-log`: who did what, when.

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use drover_client::{AuditFilter, Client};

/// `--since`: an RFC 3339 time, or a duration back from now (`1h`, `7days`).
pub fn parse_since(text: &str) -> Result<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    match humantime::parse_duration(text) {
        Ok(ago) => Ok(Utc::now() - chrono::Duration::from_std(ago)?),
        Err(_) => bail!(
            "--since {text:?}: expected an RFC 3339 time (2026-11-30T08:00:00Z) or a duration such as 1h or 7days"
        ),
    }
}

/// Prints the entries that match, oldest first; with `follow`, keeps printing new ones.
pub async fn print(client: &Client, filter: AuditFilter, follow: bool) -> Result<()> {
    let mut after = 0;
    loop {
        let entries = client.audit_log(after, &filter).await?;
        for e in &entries {
            println!(
                "{}  {:<28} {:<24} {:<24} {}",
                e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                e.actor,
                e.action,
                if e.target.is_empty() { "-" } else { &e.target },
                e.result
            );
            after = e.id;
        }
        if !follow {
            return Ok(());
        }
        if entries.is_empty() {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_or_a_duration() {
        assert_eq!(
            parse_since("2026-11-30T08:00:00Z").unwrap().to_rfc3339(),
            "2026-11-30T08:00:00+00:00"
        );
        let hour_ago = parse_since("1h").unwrap();
        assert!(hour_ago < Utc::now() - chrono::Duration::minutes(59));
        assert!(hour_ago > Utc::now() - chrono::Duration::minutes(61));
        let err = parse_since("yesterday").unwrap_err().to_string();
        assert!(err.contains("--since \"yesterday\""), "{err}");
    }
}
