//! The recorder. Which devices are traced lives in the store ([`RULES`]); every node keeps a
//! copy in memory, refreshed every [`REFRESH`] and at once when a rule changes on that node, so
//! a request of an untraced device costs one relaxed atomic load when nothing is traced and
//! one hash lookup when something is.
//!
//! Discovery, policy and the sign-in page carry no DeviceID. While anything is traced, their
//! exchanges are held in memory for [`HOLD`] (at most [`HOLD_MAX`] of them) by client address;
//! when an enrollment of a traced device then arrives from the same address, they are written
//! before it, marked `correlated`. Enrollment exchanges are attributed by the DeviceID the
//! request claims (the device has no certificate yet); OMA-DM and renewal exchanges by the
//! authenticated certificate.
//!
//! Writes happen after the answer is built, one record batch per exchange, only for traced
//! devices. A trace stops by itself when its window ends, when its session count is reached,
//! or when it is full ([`MAX_TRACE_BYTES`], [`MAX_TRACE_EXCHANGES`]).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use super::format::{Endpoint, Exchange};
use super::{
    Rule, Stopped, TraceMeta, UserRule, DEVICE_TRACES, ENTRIES, MAX_TRACE_BYTES,
    MAX_TRACE_EXCHANGES, RULES, TRACES, USER_RULES,
};
use crate::groups::pair_key;
use crate::store::records::RecordStore;
use crate::store::StoreError;

/// How often each node re-reads the rules.
pub const REFRESH: Duration = Duration::from_secs(5);
/// How long an exchange without a DeviceID waits for its enrollment.
pub const HOLD: Duration = Duration::from_secs(300);
/// Most exchanges held.
pub const HOLD_MAX: usize = 64;

struct Held {
    ip: IpAddr,
    at: Instant,
    x: Exchange,
}

/// The per-node recorder state.
#[derive(Default)]
pub struct Tracer {
    any: AtomicBool,
    rules: RwLock<HashMap<String, Rule>>,
    users: RwLock<HashMap<String, UserRule>>,
    held: Mutex<VecDeque<Held>>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("any", &self.any.load(Ordering::Relaxed))
            .finish()
    }
}

impl Tracer {
    /// Nothing traced.
    pub fn new() -> Tracer {
        Tracer::default()
    }

    /// Whether any device is traced (the fast path of every request).
    pub fn is_on(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    /// Whether `device_id` is traced (per the cached rules).
    pub fn wants(&self, device_id: &str) -> bool {
        self.is_on()
            && self
                .rules
                .read()
                .map(|r| r.contains_key(device_id))
                .unwrap_or(false)
    }

    /// Whether the next enrollments of `upn` (lower-case) are traced (per the cached rules).
    pub fn wants_user(&self, upn: &str) -> bool {
        self.is_on()
            && self
                .users
                .read()
                .map(|r| r.contains_key(upn))
                .unwrap_or(false)
    }

    fn recompute(&self) {
        let devices = self.rules.read().map(|r| !r.is_empty()).unwrap_or(false);
        let users = self.users.read().map(|r| !r.is_empty()).unwrap_or(false);
        self.any.store(devices || users, Ordering::Relaxed);
    }

    /// Re-reads every rule from the store.
    pub fn load(&self, store: &dyn RecordStore) -> Result<(), StoreError> {
        let all: HashMap<String, Rule> = RULES.all(store)?.into_iter().collect();
        let users: HashMap<String, UserRule> = USER_RULES.all(store)?.into_iter().collect();
        if let Ok(mut r) = self.rules.write() {
            *r = all;
        }
        if let Ok(mut r) = self.users.write() {
            *r = users;
        }
        self.recompute();
        let on = self.is_on();
        if !on {
            if let Ok(mut h) = self.held.lock() {
                h.clear();
            }
        }
        Ok(())
    }

    /// Notes a rule this node just wrote (other nodes see it at their next refresh).
    pub fn note_rule(&self, device_id: &str, rule: Option<Rule>) {
        if let Ok(mut r) = self.rules.write() {
            match rule {
                Some(rule) => {
                    r.insert(device_id.to_string(), rule);
                }
                None => {
                    r.remove(device_id);
                }
            }
        }
        self.recompute();
    }

    /// Notes a user rule this node just wrote.
    pub fn note_user_rule(&self, upn: &str, rule: Option<UserRule>) {
        if let Ok(mut r) = self.users.write() {
            match rule {
                Some(rule) => {
                    r.insert(upn.to_string(), rule);
                }
                None => {
                    r.remove(upn);
                }
            }
        }
        self.recompute();
    }

    /// A successful enrollment of `device_id` claiming `upn`: if a user rule wants it, starts
    /// the device's trace (consuming one of the rule's enrollments). Only a 200 answer counts,
    /// so an unauthenticated request claiming the UPN cannot use the rule up.
    pub fn enrolled_by_user(
        &self,
        store: &dyn RecordStore,
        now: i64,
        device_id: &str,
        upn: &str,
    ) -> Result<(), StoreError> {
        if !self.wants_user(upn) || self.wants(device_id) {
            return Ok(());
        }
        let Some(rule) = USER_RULES.get(store, upn)? else {
            self.note_user_rule(upn, None);
            return Ok(());
        };
        let old = crate::store::tx::encode(&rule);
        if now >= rule.until || rule.enrollments_left == 0 {
            USER_RULES.delete(store, upn)?;
            self.note_user_rule(upn, None);
            return Ok(());
        }
        if RULES.get(store, device_id)?.is_some() {
            return Ok(());
        }
        let note = Some(match &rule.note {
            Some(n) => format!("enrollment of {upn}: {n}"),
            None => format!("enrollment of {upn}"),
        });
        let (meta, device_rule) = TraceMeta::start(
            device_id,
            &rule.started_by,
            now,
            rule.window_secs,
            rule.max_sessions,
            note,
        );
        let mut left = rule.clone();
        left.enrollments_left -= 1;
        let mut ops = vec![
            crate::store::RecordOp::Expect {
                kind: USER_RULES.name,
                key: upn.to_string(),
                value: Some(old),
            },
            RULES.expect_absent(device_id),
            RULES.put_op(device_id, &device_rule),
            TRACES.put_op(&meta.id, &meta),
            DEVICE_TRACES.put_op(&pair_key(device_id, &meta.id), &true),
        ];
        if left.enrollments_left == 0 {
            ops.push(USER_RULES.delete_op(upn));
        } else {
            ops.push(USER_RULES.put_op(upn, &left));
        }
        if store.apply_records(&ops)? {
            tracing::info!(device_id, upn, trace_id = %meta.id, "device trace started by the user's enrollment rule");
            self.note_rule(device_id, Some(device_rule));
            self.note_user_rule(upn, (left.enrollments_left > 0).then_some(left));
        }
        Ok(())
    }

    /// Holds an exchange that names no device (discovery, policy, sign-in) for the enrollment
    /// that may follow from the same address. Does nothing when nothing is traced.
    pub fn hold(&self, ip: IpAddr, x: Exchange) {
        if !self.is_on() {
            return;
        }
        if let Ok(mut h) = self.held.lock() {
            let now = Instant::now();
            while h.front().is_some_and(|f| now.duration_since(f.at) > HOLD) {
                h.pop_front();
            }
            if h.len() >= HOLD_MAX {
                h.pop_front();
            }
            h.push_back(Held { ip, at: now, x });
        }
    }

    fn take_held(&self, ip: IpAddr) -> Vec<Exchange> {
        let Ok(mut h) = self.held.lock() else {
            return Vec::new();
        };
        let now = Instant::now();
        let mut out = Vec::new();
        h.retain(|e| {
            if e.ip == ip && now.duration_since(e.at) <= HOLD {
                let mut x = e.x.clone();
                x.correlated = true;
                out.push(x);
                false
            } else {
                true
            }
        });
        out
    }

    /// Records one exchange of `device_id` if it is traced (a blocking store call). `ip` is the
    /// client's address: an enrollment first takes the exchanges held for it.
    pub fn record(
        &self,
        store: &dyn RecordStore,
        now: i64,
        device_id: &str,
        ip: Option<IpAddr>,
        x: Exchange,
    ) -> Result<(), StoreError> {
        if !self.wants(device_id) {
            return Ok(());
        }
        let Some(rule) = RULES.get(store, device_id)? else {
            self.note_rule(device_id, None);
            return Ok(());
        };
        let mut batch = Vec::new();
        if x.endpoint == Endpoint::Enrollment {
            if let Some(ip) = ip {
                batch.extend(self.take_held(ip));
            }
        }
        batch.push(x);
        for _ in 0..16 {
            let Some(meta) = TRACES.get(store, &rule.trace_id)? else {
                return self.stop_rule(store, device_id, &rule);
            };
            let old = crate::store::tx::encode(&meta);
            let mut new = meta.clone();
            let mut ops = Vec::new();
            let mut stop = None;
            for x in &batch {
                if !new.recording(now) {
                    stop = Some(new.stopped.unwrap_or(Stopped::Expired));
                    break;
                }
                if x.endpoint == Endpoint::Management {
                    if let Some(s) = &x.session_id {
                        if new.last_session.as_deref() != Some(s.as_str()) {
                            if new.sessions >= new.max_sessions {
                                stop = Some(Stopped::Sessions);
                                break;
                            }
                            new.sessions += 1;
                            new.last_session = Some(s.clone());
                        }
                    }
                }
                let size = (x.request.body.len() + x.response.body.len()) as u64;
                if new.exchanges >= MAX_TRACE_EXCHANGES || new.bytes + size > MAX_TRACE_BYTES {
                    stop = Some(Stopped::Full);
                    break;
                }
                new.exchanges += 1;
                new.bytes += size;
                let mut x = x.clone();
                x.seq = new.exchanges;
                let key = pair_key(
                    &new.id,
                    &format!(
                        "{:016x}{}",
                        x.at_ms.max(0) as u64 * 1000 + u64::from(new.exchanges % 1000),
                        crate::clock::random_hex(2)
                    ),
                );
                ops.push(ENTRIES.put_op(&key, &x));
            }
            new.updated_at = now;
            if let Some(why) = stop {
                new.stopped = Some(why);
                ops.push(RULES.delete_op(device_id));
            }
            ops.push(crate::store::RecordOp::Expect {
                kind: TRACES.name,
                key: new.id.clone(),
                value: Some(old),
            });
            ops.push(TRACES.put_op(&new.id, &new));
            if store.apply_records(&ops)? {
                if let Some(why) = stop {
                    self.note_rule(device_id, None);
                    tracing::info!(device_id, trace_id = %new.id, reason = ?why, "device trace stopped");
                }
                return Ok(());
            }
        }
        Err(StoreError::Backend {
            reason: format!("trace {}: too much contention", rule.trace_id),
        })
    }

    fn stop_rule(
        &self,
        store: &dyn RecordStore,
        device_id: &str,
        _rule: &Rule,
    ) -> Result<(), StoreError> {
        self.stop(store, i64::MAX, device_id, Stopped::Expired)
            .map(|_| ())
    }

    /// Stops the device's recording, if any (the trace is kept, saying why it stopped).
    pub fn stop(
        &self,
        store: &dyn RecordStore,
        now: i64,
        device_id: &str,
        why: Stopped,
    ) -> Result<Option<TraceMeta>, StoreError> {
        let Some(rule) = RULES.get(store, device_id)? else {
            self.note_rule(device_id, None);
            return Ok(None);
        };
        let mut ops = vec![RULES.delete_op(device_id)];
        let meta = TRACES.get(store, &rule.trace_id)?.map(|mut m| {
            m.stopped.get_or_insert(why);
            if now != i64::MAX {
                m.updated_at = now;
            }
            m
        });
        if let Some(m) = &meta {
            ops.push(TRACES.put_op(&m.id, m));
        }
        store.apply_records(&ops)?;
        self.note_rule(device_id, None);
        Ok(meta)
    }

    /// Ends every rule whose window is over (their traces say `expired`), and deletes finished
    /// traces older than `retention_secs`. Returns (stopped, deleted).
    pub fn sweep(
        &self,
        store: &dyn RecordStore,
        now: i64,
        retention_secs: i64,
    ) -> Result<(usize, usize), StoreError> {
        let mut stopped = 0;
        for (upn, rule) in USER_RULES.all(store)? {
            if now >= rule.until {
                USER_RULES.delete(store, &upn)?;
                stopped += 1;
            }
        }
        for (device_id, rule) in RULES.all(store)? {
            if now >= rule.until {
                self.stop_rule(store, &device_id, &rule)?;
                stopped += 1;
            }
        }
        let mut deleted = 0;
        for (id, meta) in TRACES.all(store)? {
            if meta.stopped.is_some() && meta.updated_at + retention_secs < now {
                delete_trace(store, &id, &meta.device_id)?;
                deleted += 1;
            }
        }
        self.load(store)?;
        Ok((stopped, deleted))
    }
}

/// Deletes a trace, its entries and its index record (in batches of 500).
pub fn delete_trace(
    store: &dyn RecordStore,
    trace_id: &str,
    device_id: &str,
) -> Result<(), StoreError> {
    loop {
        let page = crate::groups::scan_pairs(store, ENTRIES, trace_id, None, 500)?;
        if page.is_empty() {
            break;
        }
        let ops: Vec<_> = page
            .iter()
            .map(|(k, _)| ENTRIES.delete_op(&pair_key(trace_id, k)))
            .collect();
        store.apply_records(&ops)?;
    }
    let mut ops = vec![
        TRACES.delete_op(trace_id),
        DEVICE_TRACES.delete_op(&pair_key(device_id, trace_id)),
    ];
    if let Some(rule) = RULES.get(store, device_id)? {
        if rule.trace_id == trace_id {
            ops.push(RULES.delete_op(device_id));
        }
    }
    store.apply_records(&ops)?;
    Ok(())
}

/// Every exchange of a trace, in arrival order, numbered from 1.
pub fn read_exchanges(
    store: &dyn RecordStore,
    trace_id: &str,
) -> Result<Vec<Exchange>, StoreError> {
    let mut out: Vec<Exchange> = crate::groups::scan_all_pairs(store, ENTRIES, trace_id)?
        .into_iter()
        .map(|(_, x)| x)
        .collect();
    for (i, x) in out.iter_mut().enumerate() {
        x.seq = (i + 1) as u32;
    }
    Ok(out)
}

/// The traces of a device, newest first.
pub fn traces_of(store: &dyn RecordStore, device_id: &str) -> Result<Vec<TraceMeta>, StoreError> {
    let mut out = Vec::new();
    for (trace_id, _) in crate::groups::scan_all_pairs(store, DEVICE_TRACES, device_id)? {
        if let Some(m) = TRACES.get(store, &trace_id)? {
            out.push(m);
        }
    }
    out.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
    Ok(out)
}

/// Refreshes the rules every [`REFRESH`] and sweeps expired rules and old traces every 10
/// minutes, until `stop` turns true.
pub async fn run(
    app: std::sync::Arc<crate::app::App>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut last_sweep = Instant::now();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(REFRESH) => {}
        }
        let a = app.clone();
        let sweep = last_sweep.elapsed() >= Duration::from_secs(600);
        if sweep {
            last_sweep = Instant::now();
        }
        let r = tokio::task::spawn_blocking(move || {
            if sweep {
                a.tracer
                    .sweep(a.store.as_ref(), a.clock.now_unix(), super::RETENTION_SECS)
                    .map(|_| ())
            } else {
                a.tracer.load(a.store.as_ref())
            }
        })
        .await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "device trace rules could not be read"),
            Err(e) => tracing::warn!(error = %e, "device trace refresh task failed"),
        }
    }
}
