//! Issue 13, findings 3, 4, 9 and 10: bounded password work, the guessing lock under
//! concurrency, one spelling per user name, and RSA exponents other than 65537.

use std::time::{Duration, Instant};

use crate::manage::enrolled;
use crate::support::device::{self, element_text, fault_subcode, DeviceInfo};
use crate::support::{HttpResponse, TestServer};

const POLICY: &str = "/EnrollmentServer/Policy.svc";

fn policy_body(upn: &str, pw: &str) -> Vec<u8> {
    device::policy_xml(upn, pw, "x", "urn:uuid:1").into_bytes()
}

/// Whether `r` is the busy refusal: `s:EnrollmentServer` + `InMaintenance`, HTTP 500,
/// `Retry-After`.
fn is_busy(r: &HttpResponse) -> bool {
    let body = r.text();
    fault_subcode(&body).as_deref() == Some("s:EnrollmentServer")
        && element_text(&body, "ErrorType").as_deref() == Some("InMaintenance")
        && r.status == 500
        && r.headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.parse::<u32>().is_ok_and(|s| s > 0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn password_burst_is_bounded_refused_cleanly_and_management_still_served() {
    let srv = TestServer::start_with(|o| {
        o.password_workers = Some(2);
        o.password_wait_ms = Some(300);
    })
    .await;
    let mut dev = enrolled(&srv, 1).await;
    let before = srv.app.password_work.stats();
    // 120 unauthenticated GetPolicies for made-up users, all at once.
    let burst: Vec<_> = (0..120)
        .map(|i| {
            let c = srv.client();
            tokio::spawn(async move {
                c.soap(
                    POLICY,
                    &policy_body(&format!("ghost{i}@example.com"), "guess"),
                )
                .await
            })
        })
        .collect();
    // Meanwhile the enrolled device runs a management session.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    dev.session().await;
    let session_took = t.elapsed();
    let (mut wrong, mut busy) = (0, 0);
    for h in burst {
        let r = h.await.expect("join");
        if is_busy(&r) {
            busy += 1;
        } else {
            assert_eq!(
                fault_subcode(&r.text()).as_deref(),
                Some("s:Authentication"),
                "{}",
                r.text()
            );
            wrong += 1;
        }
    }
    let s = srv.app.password_work.stats();
    assert!(
        s.peak_running <= 2,
        "at most the 2 permits ran at once, saw {}",
        s.peak_running
    );
    assert!(
        busy > 0,
        "excess requests are refused ({wrong} were checked)"
    );
    assert_eq!(
        (s.refused - before.refused) as usize,
        busy,
        "every busy answer is a counted refusal"
    );
    assert!(
        session_took < Duration::from_secs(20),
        "management waited {session_took:?} behind the burst"
    );
    // After the burst, a real enrollment works again.
    srv.create_user("late@example.com", "pw-late").await;
    let r = srv
        .client()
        .soap(POLICY, &policy_body("late@example.com", "pw-late"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_password_work_gets_the_protocol_answer_and_the_login_page_error() {
    let srv = TestServer::start_with(|o| {
        o.password_workers = Some(1);
        o.password_wait_ms = Some(100);
        o.auth_policy = Some("both".into());
    })
    .await;
    srv.create_user("bob@example.com", "bob-password").await;
    let work = srv.app.clone();
    // Hold the only permit, as a burst would.
    let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
    let (held_tx, held_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = tokio::task::spawn_blocking(move || {
        let _permit = work.password_work.acquire().expect("free permit");
        let _ = held_tx.send(());
        let _ = hold_rx.recv();
    });
    held_rx.await.expect("permit held");
    let r = srv
        .client()
        .soap(POLICY, &policy_body("bob@example.com", "bob-password"))
        .await;
    assert!(is_busy(&r), "{} {:?}", r.text(), r.headers);
    assert_eq!(
        winmdm::lockout::failures(&srv.app, "bob@example.com").unwrap(),
        None,
        "a busy refusal is not counted as a guess"
    );
    let login = srv
        .client()
        .request(
            "POST",
            "/EnrollmentServer/Auth",
            &[("content-type", "application/x-www-form-urlencoded")],
            b"appru=ms-app%3A%2F%2Fwindows.immersivecontrolpanel&upn=bob%40example.com&password=bob-password"
                .to_vec(),
        )
        .await;
    assert!(
        login.text().contains("The server is busy"),
        "{}",
        login.text()
    );
    let _ = hold_tx.send(());
    holder.await.expect("join");
    let r = srv
        .client()
        .soap(POLICY, &policy_body("bob@example.com", "bob-password"))
        .await;
    assert_eq!(r.status, 200, "a free permit serves again: {}", r.text());
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_guesses_verify_at_most_five_and_the_lock_holds() {
    use winmdm::clock::{Clock, SystemClock};
    // A frozen application clock: the 30 s lock cannot run out on a slow machine mid-test.
    let clock = crate::support::TestClock::at(SystemClock.now_unix());
    let srv = TestServer::start_with_clock(std::sync::Arc::new(clock), |o| {
        // Enough permits that the bound on password work does not hide the race.
        o.password_workers = Some(64);
        o.password_wait_ms = Some(30_000);
    })
    .await;
    let upn = "target@example.com";
    srv.create_user(upn, "right-password").await;
    let before = srv.app.password_work.stats();
    let guesses: Vec<_> = (0..40)
        .map(|i| {
            let c = srv.client();
            tokio::spawn(async move {
                c.soap(POLICY, &policy_body(upn, &format!("guess-{i}")))
                    .await
            })
        })
        .collect();
    for g in guesses {
        let r = g.await.expect("join");
        assert_eq!(
            fault_subcode(&r.text()).as_deref(),
            Some("s:Authentication"),
            "{}",
            r.text()
        );
    }
    let s = srv.app.password_work.stats();
    let verified = s.verified - before.verified;
    println!("40 parallel wrong guesses: {verified} verified against the real hash");
    assert!(verified <= 5, "{verified} guesses were verified");
    let f = winmdm::lockout::failures(&srv.app, upn)
        .unwrap()
        .expect("counted");
    assert_eq!(
        f.count, 5,
        "exactly the allowed attempts were counted, the rest met the lock"
    );
    assert!(f.locked_until > 0);
    // The right password within the lock period is refused like a wrong one.
    let r = srv
        .client()
        .soap(POLICY, &policy_body(upn, "right-password"))
        .await;
    assert_eq!(
        fault_subcode(&r.text()).as_deref(),
        Some("s:Authentication")
    );
    srv.stop().await;
}

#[tokio::test]
async fn look_alike_user_names_are_one_user_or_refused() {
    let srv = TestServer::start().await;
    srv.create_user("alice@example.com", "alice-password").await;
    let spellings = [
        "\u{FF41}lice@example.com",  // fullwidth a: folds to alice (conflict)
        "al\u{0456}ce@example.com",  // Cyrillic i
        "alice@example.com\u{200D}", // zero-width joiner
        "alice@example.com.",        // trailing dot
        "\u{202E}moc.elpmaxe@ecila", // right-to-left override
        "ALICE@EXAMPLE.COM",         // case: the same user
        "alice@mallory.example@example.com", // two '@'
    ];
    for s in spellings {
        let (st, body) = srv
            .admin(
                "POST",
                "/api/v1/users",
                Some(serde_json::json!({"upn": s, "password": "mallory-pw"})),
            )
            .await;
        assert!(st == 400 || st == 409, "{s:?} created a user: {st} {body}");
    }
    let (_, page) = srv.admin("GET", "/api/v1/users", None).await;
    assert_eq!(
        page["users"].as_array().map(|u| u.len()),
        Some(1),
        "only alice exists: {page}"
    );
    // Nobody signs in as alice with another spelling and a password of their own, and the
    // fullwidth spelling with alice's password is alice herself.
    for s in spellings {
        let r = srv
            .client()
            .soap(POLICY, &policy_body(s, "mallory-pw"))
            .await;
        assert_eq!(
            fault_subcode(&r.text()).as_deref(),
            Some("s:Authentication"),
            "{s:?}"
        );
    }
    let r = srv
        .client()
        .soap(
            POLICY,
            &policy_body("\u{FF41}lice@example.com", "alice-password"),
        )
        .await;
    assert_eq!(r.status, 200, "NFKC folds fullwidth to alice: {}", r.text());
    let r = srv
        .client()
        .soap(
            POLICY,
            &policy_body("alice@example.com\u{200D}", "alice-password"),
        )
        .await;
    assert_eq!(
        fault_subcode(&r.text()).as_deref(),
        Some("s:Authentication"),
        "a hidden character is refused, even with the right password"
    );
    srv.stop().await;
}

fn exponent3_csr() -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("protocol-fixtures/csr/rsa2048-exponent3.der");
    std::fs::read(p).expect("fixture")
}

#[tokio::test]
async fn rsa_exponent_3_is_refused() {
    // Pure check first: the request is well formed and correctly signed, only e is wrong.
    let csr = exponent3_csr();
    match winmdm::ca::verify_csr(&csr, 2048) {
        Err(e) => {
            assert!(e.is_peer_fault(), "{e}");
            assert!(e.to_string().contains("exponent 3"), "{e}");
        }
        Ok(_) => panic!("an RSA key with e = 3 was accepted"),
    }
    let srv = TestServer::start().await;
    srv.create_user("eve@example.com", "right-password").await;
    let info = DeviceInfo::new(33, "eve@example.com", "right-password");
    let (_, url) = device::discover_and_policy(&srv.client(), &info).await;
    let r = device::send_rst(&srv.client(), &url, &info, &csr).await;
    assert_eq!(
        fault_subcode(&r.text()).as_deref(),
        Some("s:CertificateRequest"),
        "{}",
        r.text()
    );
    assert_eq!(srv.app.store.count_certs().unwrap(), 0, "nothing issued");
    // A normal (e = 65537) request from the same device still enrolls.
    device::enroll(&srv.client(), &info).await;
    srv.stop().await;
}
