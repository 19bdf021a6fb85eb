//! Entry points for `fuzz/` and `tests/fuzz_corpus` (not a stable API).
#![doc(hidden)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::app::{App, TlsMaterial};
use crate::ca::{fuzzing as cafz, testing, KeyAlgorithm};
use crate::clock::FixedClock;
use crate::config::Config;
use crate::mdm::commands::{self, NewCommand};
use crate::mdm::identity::{authenticate, DeviceAuthenticated};
use crate::mdm::{manage, session};
use crate::store::mem::MemStore;
use crate::store::{CertRecord, CommandState, Device, DeviceState, Store};
use crate::syncml::{self, Command};

/// DeviceID of the device `session_steps` plays.
pub const DEVICE_ID: &str = "FUZZ0000000000000000000000000001";

/// Properties: any bytes as an admin command request never panic; a request `prepare` accepts
/// holds a SyncML fragment that parses back to exactly one command and is written back
/// byte-identical. The bytes are also tried as the `syncml` field.
pub fn admin_json(data: &[u8]) {
    if let Ok(req) = serde_json::from_slice::<NewCommand>(data) {
        check_prepared(req);
    }
    check_prepared(NewCommand {
        syncml: Some(String::from_utf8_lossy(data).into_owned()),
        ..NewCommand::default()
    });
}

fn check_prepared(req: NewCommand) {
    let Ok(rec) = commands::prepare(DEVICE_ID, req, 0) else {
        return;
    };
    assert_eq!(rec.state, CommandState::Pending);
    let cmds = syncml::parse_fragment(rec.syncml.as_bytes())
        .unwrap_or_else(|e| panic!("prepared fragment does not parse: {e}\n{}", rec.syncml));
    assert_eq!(cmds.len(), 1, "{}", rec.syncml);
    assert_eq!(cmds[0].name(), rec.verb);
    let mut out = Vec::new();
    syncml::write_fragment(&cmds, &mut out);
    assert_eq!(
        String::from_utf8_lossy(&out),
        rec.syncml,
        "prepared fragment does not round-trip"
    );
}

struct Fixture {
    app: App,
    cert_der: Vec<u8>,
    serial: String,
    thumbprint: String,
    not_after: i64,
}

const NOW: i64 = 1_800_000_000;

fn fixture() -> &'static Mutex<Fixture> {
    static F: OnceLock<Mutex<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        let ca = crate::ca::Ca::generate(KeyAlgorithm::EcdsaP256, "winmdm fuzz CA", cafz::now())
            .expect("CA");
        let (csr, _key) = testing::device_csr(DEVICE_ID, KeyAlgorithm::EcdsaP256);
        let v = crate::ca::verify_csr(&csr, 2048).expect("device CSR");
        let cert = ca
            .issue_device_cert(&v, DEVICE_ID, Duration::from_secs(86_400), cafz::now())
            .expect("device certificate");
        let app = App {
            cfg: Config::for_tests(&std::env::temp_dir().join("winmdm-fuzz-unused")),
            store: Arc::new(MemStore::new()),
            ca,
            clock: Arc::new(FixedClock(NOW)),
            admin_token: "fuzz".into(),
            tls: TlsMaterial {
                chain: Vec::new(),
                key: rustls::pki_types::PrivateKeyDer::Pkcs8(Vec::new().into()),
            },
            throttle: None,
            password_cache: crate::auth::VerifyCache::new(),
            password_work: crate::password_work::PasswordWork::new(
                1,
                std::time::Duration::from_secs(1),
            ),
            node_id: "fuzz".into(),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            webhook: None,
            tenant: Arc::new(crate::tenant::Runtime::new(Default::default())),
            ui_sign_in: crate::ui::session::SignInLimiter::per_node(),
            app_urls: crate::apps::token::Signer::random(),
            refusals: crate::mdm::refusals::Recorder::default(),
            tracer: crate::trace::Tracer::new(),
            federation: crate::federation::Federation::ephemeral(),
        };
        Mutex::new(Fixture {
            app,
            cert_der: cert.der,
            serial: cert.serial_hex,
            thumbprint: cert.thumbprint,
            not_after: cert.not_after.unix_timestamp(),
        })
    })
}

/// Commands queued before every run of [`session_steps`].
fn queue_commands(app: &App) {
    let reqs = [
        r#"{"verb":"Get","target":"./DevDetail/SwV","command_id":"get-swv"}"#.to_string(),
        r#"{"verb":"Replace","target":"./Vendor/MSFT/Personalization/DesktopImageUrl","format":"chr","data":"https://example.com/d.jpg","command_id":"replace"}"#.to_string(),
        r#"{"verb":"Exec","target":"./Vendor/MSFT/Reboot/RebootNow","format":"null","command_id":"exec"}"#.to_string(),
        r#"{"syncml":"<Atomic><CmdID>1</CmdID><Add><CmdID>2</CmdID><Item><Target><LocURI>./Vendor/MSFT/Policy/Config/Camera/AllowCamera</LocURI></Target><Meta><Format xmlns=\"syncml:metinf\">int</Format></Meta><Data>0</Data></Item></Add></Atomic>","command_id":"atomic"}"#.to_string(),
        format!(
            r#"{{"verb":"Add","target":"./Vendor/MSFT/Policy/Config/Big/Blob","format":"b64","data":"{}","command_id":"large"}}"#,
            "QUFB".repeat(1200)
        ),
    ];
    for r in reqs {
        let req: NewCommand = serde_json::from_str(&r).expect("fixture command");
        commands::enqueue(app, DEVICE_ID, req).expect("queue fixture command");
    }
}

/// A stateful OMA-DM session: a fresh in-memory store with one enrolled device and five queued
/// commands, then the input split at NUL bytes into up to 8 messages, each handled as the next
/// message from that device. Properties after every step: no panic; an accepted message gets a
/// reply that parses, starts with the Status for the SyncHdr and repeats no CmdID; every queued
/// command is in one of its states and `queued()` returns only Pending/Sent ones; a reply that
/// carries commands never exceeds the `MaxMsgSize` in force ([`MaxMsgSizes`]). Across steps,
/// within one stored SessionID: no server MsgID carries two different replies and no CmdID two
/// different commands; a byte-identical copy of the session's last accepted message gets the
/// identical reply; a command becomes done or failed only in a step whose message carried a
/// Status with that code (or by the server's own decision, with an `error`). Returns how many
/// messages were accepted.
pub fn session_steps(data: &[u8]) -> usize {
    let mut f = fixture().lock().unwrap_or_else(|p| p.into_inner());
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    f.app.store = store.clone();
    let device = device_record(&f);
    let cert = CertRecord {
        serial: f.serial.clone(),
        device_id: DEVICE_ID.into(),
        thumbprint: f.thumbprint.clone(),
        issued_at: NOW,
        not_after: f.not_after,
        revoked_at: None,
        revoke_reason: None,
    };
    store
        .record_enrollment(&device, &cert, NOW, None)
        .expect("enrollment");
    queue_commands(&f.app);
    let auth: DeviceAuthenticated = authenticate(store.as_ref(), &f.app.ca, Some(&f.cert_der), NOW)
        .expect("fixture device authenticates");
    let mut accepted = 0;
    let mut sizes = MaxMsgSizes::default();
    let mut seen = SessionLog::default();
    let mut finished: HashSet<String> = HashSet::new();
    for body in data.split(|b| *b == 0).take(8) {
        if let Ok(reply) = manage::handle(&f.app, &auth, body) {
            check_reply(&reply);
            sizes.check(body, &reply);
            seen.check(body, &reply);
            accepted += 1;
        }
        check_store(store.as_ref());
        check_completions(store.as_ref(), body, &mut finished);
        seen.forget_dropped(store.as_ref());
    }
    accepted
}

/// The `MaxMsgSize` in force in the fuzzed session, for the invariant "no reply that carries
/// our commands exceeds the announced MaxMsgSize" (announced in a message, it holds for the
/// rest of its session; the Statuses a reply must carry are not ours to shrink).
#[derive(Default)]
struct MaxMsgSizes {
    session: Option<String>,
    announced: Option<u32>,
    last_reply: Vec<u8>,
}

impl MaxMsgSizes {
    fn check(&mut self, body: &[u8], reply: &[u8]) {
        let Ok(msg) = syncml::parse(body) else {
            return;
        };
        let session = msg.hdr.session_id.trim().to_string();
        if self.session.as_deref() != Some(session.as_str()) || msg.hdr.msg_id() == Some(1) {
            self.session = Some(session);
            self.announced = None;
        }
        if let Some(n) = msg.hdr.max_msg_size() {
            self.announced = Some(n);
        }
        let replay = reply == self.last_reply.as_slice();
        self.last_reply = reply.to_vec();
        if replay {
            return; // a retransmission gets the earlier reply as it was
        }
        let budget = self
            .announced
            .map_or(manage::DEFAULT_MAX_MSG_SIZE, |n| n as usize);
        let Ok(out) = syncml::parse(reply) else {
            return;
        };
        let ours = out
            .body
            .commands
            .iter()
            .any(|c| !matches!(c, Command::Status(_) | Command::Alert(_)));
        assert!(
            !ours || reply.len() <= budget,
            "a reply carrying commands is {} bytes, over the announced MaxMsgSize {budget}:\n{}",
            reply.len(),
            String::from_utf8_lossy(reply)
        );
    }
}

/// What the server said in each stored session, for the cross-step properties.
#[derive(Default)]
struct SessionLog {
    /// (SessionID, server MsgID) → reply.
    replies: HashMap<(String, String), Vec<u8>>,
    /// (SessionID, CmdID) → the command as written.
    cmd_ids: HashMap<(String, String), String>,
    /// SessionID → (last accepted message, its reply).
    last: HashMap<String, (Vec<u8>, Vec<u8>)>,
}

impl SessionLog {
    fn check(&mut self, body: &[u8], reply: &[u8]) {
        let Ok(msg) = syncml::parse(reply) else {
            return;
        };
        let sid = msg.hdr.session_id.trim().to_string();
        if let Some((prev_body, prev_reply)) = self.last.get(&sid) {
            if prev_body.as_slice() == body {
                assert_eq!(
                    String::from_utf8_lossy(prev_reply),
                    String::from_utf8_lossy(reply),
                    "a retransmission got another reply"
                );
            }
        }
        self.last
            .insert(sid.clone(), (body.to_vec(), reply.to_vec()));
        let key = (sid.clone(), msg.hdr.msg_id.trim().to_string());
        if let Some(prev) = self.replies.get(&key) {
            assert_eq!(
                String::from_utf8_lossy(prev),
                String::from_utf8_lossy(reply),
                "server MsgID {} reused with other content in session {sid}",
                key.1
            );
            return;
        }
        self.replies.insert(key, reply.to_vec());
        let mut stack: Vec<&Command<'_>> = msg.body.commands.iter().collect();
        while let Some(c) = stack.pop() {
            if let Command::Atomic(g) | Command::Sequence(g) = c {
                stack.extend(g.commands.iter());
            }
            let Some(id) = c.cmd_id() else { continue };
            let mut text = Vec::new();
            syncml::write_fragment(std::slice::from_ref(c), &mut text);
            let text = String::from_utf8_lossy(&text).into_owned();
            let k = (sid.clone(), id.to_string());
            if let Some(prev) = self.cmd_ids.get(&k) {
                assert_eq!(prev, &text, "CmdID {id} reused in session {sid}");
            }
            self.cmd_ids.insert(k, text);
        }
    }

    /// A session the server no longer stores because more than
    /// [`session::MAX_SESSIONS_PER_DEVICE`] were started may start its numbering again: the
    /// properties hold per stored session. (A session that ended stays stored.)
    fn forget_dropped(&mut self, store: &dyn Store) {
        if self.last.len() <= session::MAX_SESSIONS_PER_DEVICE {
            return;
        }
        let gone: Vec<String> = self
            .last
            .keys()
            .filter(|sid| !matches!(store.get_session(DEVICE_ID, sid), Ok(Some(_))))
            .cloned()
            .collect();
        for sid in gone {
            self.last.remove(&sid);
            self.replies.retain(|(s, _), _| *s != sid);
            self.cmd_ids.retain(|(s, _), _| *s != sid);
        }
    }
}

/// A command reported done or failed has the device's Status code, from this step's message.
fn check_completions(store: &dyn Store, body: &[u8], finished: &mut HashSet<String>) {
    let codes: Vec<String> = syncml::parse(body)
        .map(|m| {
            let mut out = Vec::new();
            let mut stack: Vec<&Command<'_>> = m.body.commands.iter().collect();
            while let Some(c) = stack.pop() {
                match c {
                    Command::Status(s) => out.push(s.data.trim().to_string()),
                    Command::Atomic(g) | Command::Sequence(g) => stack.extend(g.commands.iter()),
                    _ => {}
                }
            }
            out
        })
        .unwrap_or_default();
    for c in store.list_commands(DEVICE_ID).expect("list commands") {
        if !matches!(c.state, CommandState::Done | CommandState::Failed) {
            continue;
        }
        if !finished.insert(c.command_id.clone()) {
            continue;
        }
        if c.error.is_some() {
            continue; // failed by the server (too large, results lost), not by a Status
        }
        let code = c
            .status
            .unwrap_or_else(|| panic!("{} {:?} without a Status", c.command_id, c.state));
        assert!(
            codes.iter().any(|s| *s == code.to_string()),
            "{} reported {:?}/{code} without a Status {code} in the message",
            c.command_id,
            c.state
        );
    }
}

fn device_record(f: &Fixture) -> Device {
    Device {
        device_id: DEVICE_ID.into(),
        hw_dev_id: None,
        upn: Some("fuzz@example.com".into()),
        enrollment_type: "Full".into(),
        device_type: None,
        os_version: None,
        os_edition: None,
        device_name: None,
        application_version: None,
        locale: None,
        macs: Vec::new(),
        not_in_oobe: None,
        ux_initiated: None,
        cert_serial: f.serial.clone(),
        cert_thumbprint: f.thumbprint.clone(),
        cert_not_after: f.not_after,
        enrolled_at: NOW,
        state: DeviceState::Enrolled,
        ..Default::default()
    }
}

fn check_reply(reply: &[u8]) {
    let text = String::from_utf8_lossy(reply);
    let msg = syncml::parse(reply).unwrap_or_else(|e| panic!("reply does not parse: {e}\n{text}"));
    match msg.body.commands.first() {
        Some(Command::Status(s)) if &*s.cmd == "SyncHdr" && &*s.cmd_ref == "0" => {}
        _ => panic!("reply does not start with the SyncHdr Status:\n{text}"),
    }
    let mut seen = HashSet::new();
    let mut stack: Vec<&Command<'_>> = msg.body.commands.iter().collect();
    while let Some(c) = stack.pop() {
        if let Some(id) = c.cmd_id() {
            assert!(seen.insert(id.to_string()), "CmdID {id} repeats:\n{text}");
        }
        if let Command::Atomic(g) | Command::Sequence(g) = c {
            stack.extend(g.commands.iter());
        }
    }
}

fn check_store(store: &dyn Store) {
    for c in store.list_commands(DEVICE_ID).expect("list commands") {
        match c.state {
            CommandState::Pending
            | CommandState::Sent
            | CommandState::Done
            | CommandState::Failed
            | CommandState::Cancelled
            | CommandState::CancelledByDevice
            | CommandState::NotExecuted
            | CommandState::RolledBack => {}
        }
    }
    for c in store.queued(DEVICE_ID).expect("queued") {
        assert!(
            matches!(c.state, CommandState::Pending | CommandState::Sent),
            "queued() returned {} in state {:?}",
            c.command_id,
            c.state
        );
    }
}
