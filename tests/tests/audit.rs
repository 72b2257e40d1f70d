//! The audit log: mutations (allowed, refused and failed), machine joins, filters, following,
//! who may read it, and retention.

use drover_client::{AuditFilter, Client, ClientError};
use drover_e2e::{TestDrover, fast_retry, no_cancel};
use drover_model::{AuditEntry, CreateJoinToken, MachineClassSpec, Role};

fn join_token(name: &str) -> CreateJoinToken {
    CreateJoinToken {
        name: name.into(),
        expires_at: None,
        make_default: false,
    }
}

/// (actor, action, target, result) of each entry.
fn summary(entries: &[AuditEntry]) -> Vec<(String, String, String, String)> {
    entries
        .iter()
        .map(|e| {
            (
                e.actor.clone(),
                e.action.clone(),
                e.target.clone(),
                e.result.clone(),
            )
        })
        .collect()
}

fn entry(
    actor: &str,
    action: &str,
    target: &str,
    result: &str,
) -> (String, String, String, String) {
    (actor.into(), action.into(), target.into(), result.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutation_is_recorded_with_actor_target_and_result() {
    let drover = TestDrover::start().await;
    let admin = drover.client();
    let reader_secret = drover.api_token("auditor", Role::Reader).await;
    let reader = Client::new(&drover.http_url(), Some(reader_secret)).unwrap();

    // Allowed, refused (role), failed (conflict, not found) and read-only calls.
    let lab = admin.create_join_token(&join_token("lab")).await.unwrap();
    admin
        .create_join_token(&join_token("lab"))
        .await
        .unwrap_err();
    reader
        .create_join_token(&join_token("sneaky"))
        .await
        .unwrap_err();
    admin
        .put_machine_class(&MachineClassSpec {
            name: "small".into(),
            selectors: vec!["drover.dev/cores<=4".into()],
        })
        .await
        .unwrap();
    admin.delete_machine_class("small").await.unwrap();
    admin.delete_machine_class("small").await.unwrap_err();
    admin.list_join_tokens().await.unwrap();
    reader.list_machines(None, None).await.unwrap();
    admin.revoke_join_token("lab").await.unwrap();

    // A machine that joins is recorded under its own name (a second token: lab is revoked).
    let join = drover.join_token("rack").await;
    let mut fleet = drover.fleet(&join.secret, 1, "audit", "v1.13.0");
    fleet
        .provision_all(&fast_retry(None), &no_cancel())
        .await
        .unwrap();
    let machine = fleet.nodes()[0].uuid().to_owned();

    let all = admin.audit_log(0, &AuditFilter::default()).await.unwrap();
    let mine: Vec<_> = summary(&all)
        .into_iter()
        .filter(|(_, action, target, _)| action != "joinToken.create" || target != "rack")
        .collect();
    let admin_actor = "token:initial-admin";
    assert_eq!(
        mine,
        [
            entry(admin_actor, "joinToken.create", "lab", "ok"),
            entry(
                admin_actor,
                "joinToken.create",
                "lab",
                "conflict: a join token named \"lab\" already exists"
            ),
            entry(
                "token:auditor",
                "joinToken.create",
                "sneaky",
                "denied: creating a join token needs the admin role; this credential has reader"
            ),
            entry(admin_actor, "machineClass.put", "small", "ok"),
            entry(admin_actor, "machineClass.delete", "small", "ok"),
            entry(admin_actor, "machineClass.delete", "small", "notFound"),
            entry(admin_actor, "joinToken.revoke", "lab", "ok"),
            entry(
                &format!("machine:{machine}"),
                "machine.join",
                "joinToken:rack",
                "ok"
            ),
        ],
        "reads are not recorded; refused and failed attempts are"
    );
    assert!(
        all.windows(2)
            .all(|w| w[0].id < w[1].id && w[0].at <= w[1].at)
    );
    // The secret of a token is never in the log.
    let text = serde_json::to_string(&all).unwrap();
    assert!(!text.contains(&lab.secret) && !text.contains(&join.secret));

    // Filters: by action prefix, by actor, after an id (how --follow reads), since a time.
    let filter = |action: Option<&str>, actor: Option<&str>| AuditFilter {
        since: None,
        action: action.map(Into::into),
        actor: actor.map(Into::into),
    };
    let classes = admin
        .audit_log(0, &filter(Some("machineClass."), None))
        .await
        .unwrap();
    assert_eq!(classes.len(), 3);
    let by_reader = admin
        .audit_log(0, &filter(None, Some("token:auditor")))
        .await
        .unwrap();
    assert_eq!(by_reader.len(), 1);
    let after = admin
        .audit_log(all[all.len() - 2].id, &AuditFilter::default())
        .await
        .unwrap();
    assert_eq!(summary(&after), summary(&all[all.len() - 1..]));
    let since = AuditFilter {
        since: Some(all[all.len() - 1].at),
        ..AuditFilter::default()
    };
    let recent = admin.audit_log(0, &since).await.unwrap();
    assert!(recent.iter().all(|e| e.at >= all[all.len() - 1].at));
    assert!(recent.iter().any(|e| e.id == all[all.len() - 1].id));

    // Only an Admin reads it.
    match reader
        .audit_log(0, &AuditFilter::default())
        .await
        .unwrap_err()
    {
        ClientError::Api { problem } => {
            assert_eq!(problem.status, 403);
            assert!(problem.detail.contains("audit log"), "{}", problem.detail);
        }
        other => panic!("expected 403, got {other}"),
    }

    // Retention: entries older than the setting go, newer ones stay.
    sqlx::query("UPDATE audit_log SET at = now() - interval '100 days' WHERE id = $1")
        .bind(all[0].id)
        .execute(drover.pool())
        .await
        .unwrap();
    let service = drover.server().service();
    let pruned = service
        .prune_audit_log(chrono::Duration::days(90))
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    let left = admin.audit_log(0, &AuditFilter::default()).await.unwrap();
    assert_eq!(left.len(), all.len() - 1);
    assert!(left.iter().all(|e| e.id != all[0].id));
    drover.stop().await;
}
