//! Named tokens: roles on every route, revocation, and the actor of audit entries.

use serde_json::json;

use super::{audit, make_token};
use crate::support::TestServer;

/// A request path for a route template (ids that do not exist; the bulk package with its query).
fn concrete(template: &str) -> String {
    let p = template
        .replace("{upn}", "nobody%40example.com")
        .replace("{device_id}", "no-such-device")
        .replace("{command_id}", "cmd-1")
        .replace("{action_id}", "act-1")
        .replace("{token_name}", "no-such-token")
        .replace("{invitation_id}", "inv-none")
        .replace("{package_id}", "00000000-0000-4000-8000-000000000000");
    if p == "/api/v1/bulk-enrollment/package" {
        format!("{p}?upn=windows-bulkenroll-none%40example.com")
    } else {
        p
    }
}

#[tokio::test]
async fn every_route_checks_the_token_and_its_role() {
    let srv = TestServer::start().await;
    let ro = make_token(&srv, "auditor", "read-only").await;
    let revoked = make_token(&srv, "old-ops", "admin").await;
    let (st, _) = srv.admin("DELETE", "/api/v1/tokens/old-ops", None).await;
    assert_eq!(st, 204);
    let before = audit(&srv).await;
    let c = srv.client();
    // A token with a real name and a wrong secret, one with a made-up name, and garbage.
    let (name, _) = ro.rsplit_once('_').unwrap();
    let wrong_secret = format!("{name}_{}", "0".repeat(64));
    let body = Some(json!({}));
    for (m, t) in winmdm::admin::ROUTES {
        let path = concrete(t);
        // (a) no token
        let (st, v) = c.admin(m, &path, body.clone(), None).await;
        assert_eq!(st, 401, "{m} {t} without a token: {v}");
        // (b) invalid tokens
        for bad in [
            "garbage",
            "wmdm_ghost_0123456789abcdef",
            wrong_secret.as_str(),
            "",
        ] {
            let (st, v) = c.admin(m, &path, body.clone(), Some(bad)).await;
            assert_eq!(st, 401, "{m} {t} with token {bad:?}: {v}");
        }
        // (d) a revoked token
        let (st, v) = c.admin(m, &path, body.clone(), Some(&revoked)).await;
        assert_eq!(st, 401, "{m} {t} with a revoked token: {v}");
        // (c) read-only: reads pass authorization, everything else is 403 {"error"}.
        let (st, v) = c.admin(m, &path, body.clone(), Some(&ro)).await;
        let admin_only = winmdm::admin::tokens::ADMIN_ONLY_GETS.contains(t);
        if *m == "GET" && !admin_only {
            assert!(st != 401 && st != 403, "{m} {t} read-only got {st}: {v}");
        } else {
            assert_eq!(st, 403, "{m} {t} read-only: {v}");
            assert!(v["error"].as_str().unwrap().contains("read-only"), "{v}");
        }
    }
    // Percent-encoding the path does not get a read-only token around the admin-only GET.
    let (st, _) = c
        .admin(
            "GET",
            "/api/v1/bulk%2Denrollment/package/?upn=windows-bulkenroll-none%40example.com",
            None,
            Some(&ro),
        )
        .await;
    assert_eq!(st, 403);
    // Nothing was changed by any refused request.
    assert_eq!(audit(&srv).await, before);
    // The read-only token really reads.
    let (st, v) = c.admin("GET", "/api/v1/tokens", None, Some(&ro)).await;
    assert_eq!(st, 200);
    let names: Vec<&str> = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["auditor"], "the revoked token is gone: {v}");
    assert!(!v.to_string().contains(ro.rsplit_once('_').unwrap().1));
    assert!(v["tokens"][0].get("digest").is_none());
    // Basic auth is not a bearer token.
    let r = c
        .request(
            "GET",
            "/api/v1/users",
            &[("authorization", "Basic YWRtaW46YWRtaW4=")],
            vec![],
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.headers.get("www-authenticate").map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    srv.stop().await;
}

#[tokio::test]
async fn named_tokens_create_list_revoke_and_name_the_actor() {
    let srv = TestServer::start().await;
    let ops = make_token(&srv, "ops", "admin").await;
    assert!(
        ops.starts_with("wmdm_ops_") && ops.len() == "wmdm_ops_".len() + 64,
        "{ops}"
    );
    let c = srv.client();
    // The named admin token works, and is the actor of what it does.
    let (st, v) = c
        .admin(
            "POST",
            "/api/v1/users",
            Some(json!({"upn": "carol@example.com", "password": "pw-carol-1"})),
            Some(&ops),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    // A named admin token may create and revoke tokens too; a read-only one may not.
    let (st, v) = c
        .admin(
            "POST",
            "/api/v1/tokens",
            Some(json!({"name": "ci", "role": "read-only"})),
            Some(&ops),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["created_by"], "ops");
    assert_eq!(v["role"], "read-only");
    let ci = v["token"].as_str().unwrap().to_string();
    let (st, _) = c
        .admin(
            "POST",
            "/api/v1/tokens",
            Some(json!({"name": "ci2", "role": "admin"})),
            Some(&ci),
        )
        .await;
    assert_eq!(st, 403, "a read-only token cannot mint tokens");
    let (st, _) = c
        .admin("DELETE", "/api/v1/tokens/ops", None, Some(&ci))
        .await;
    assert_eq!(st, 403);

    // Errors: duplicates, reserved and malformed names, bad roles, unknown tokens.
    for (body, want) in [
        (json!({"name": "ops", "role": "admin"}), 409),
        (json!({"name": "bootstrap", "role": "admin"}), 409),
        (json!({"name": "Bad_Name", "role": "admin"}), 400),
        (json!({"name": "", "role": "admin"}), 400),
        (json!({"name": "x".repeat(64), "role": "admin"}), 400),
        (json!({"name": "ok", "role": "root"}), 400),
        (json!({"name": "ok"}), 400),
    ] {
        let (st, v) = srv
            .admin("POST", "/api/v1/tokens", Some(body.clone()))
            .await;
        assert_eq!(st, want, "{body} → {v}");
        assert!(v["error"].is_string());
    }
    let (st, _) = srv.admin("DELETE", "/api/v1/tokens/nope", None).await;
    assert_eq!(st, 404);
    let (st, v) = srv.admin("GET", "/api/v1/tokens?limit=1", None).await;
    assert_eq!(st, 200);
    assert_eq!(v["tokens"].as_array().unwrap().len(), 1);
    assert_eq!(v["next"], "ci");
    let (_, v2) = srv.admin("GET", "/api/v1/tokens?cursor=ci", None).await;
    assert_eq!(v2["tokens"][0]["name"], "ops");
    assert!(v2["next"].is_null());
    let (st, _) = srv.admin("GET", "/api/v1/tokens?limit=0", None).await;
    assert_eq!(st, 400);

    // Revocation is immediate; the bootstrap token is unaffected.
    let (st, _) = c
        .admin("DELETE", "/api/v1/tokens/ops", None, Some(&ops))
        .await;
    assert_eq!(st, 204, "a token may revoke itself");
    let (st, _) = c.admin("GET", "/api/v1/users", None, Some(&ops)).await;
    assert_eq!(st, 401);
    // The same name again is a new secret: the old token stays dead.
    let ops2 = make_token(&srv, "ops", "admin").await;
    assert_ne!(ops2, ops);
    let (st, _) = c.admin("GET", "/api/v1/users", None, Some(&ops)).await;
    assert_eq!(st, 401);
    let (st, _) = c.admin("GET", "/api/v1/users", None, Some(&ops2)).await;
    assert_eq!(st, 200);

    // The store holds no usable secret.
    let stored = winmdm::admin::tokens::TOKENS
        .all(srv.app.store.records())
        .unwrap();
    let secret2 = ops2.rsplit_once('_').unwrap().1;
    for (_, t) in &stored {
        assert_ne!(t.digest, secret2);
        assert!(!serde_json::to_string(t).unwrap().contains(secret2));
    }

    let entries = audit(&srv).await;
    let actors: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let pairs: Vec<(&str, &str)> = actors
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("bootstrap", "token.create"),
            ("ops", "user.create"),
            ("ops", "token.create"),
            ("ops", "token.revoke"),
            ("bootstrap", "token.create"),
        ]
    );
    assert_eq!(entries[0]["target"], "ops");
    assert_eq!(entries[0]["detail"]["role"], "admin");
    assert!(!serde_json::to_string(&entries).unwrap().contains(secret2));
    srv.stop().await;
}
