//! The webhook outbox: events for the results webhook (`crate::webhook`), written in the same
//! store transaction as the change that causes them, and the dead-letter list.
//!
//! Records of the generic record table ([`super::records`]), so every backend (redb, mem,
//! PostgreSQL) keeps them with no table of its own, and a transaction of [`super::tx`] appends
//! through the same [`Tx`] that writes the change:
//!
//! * `webhook_outbox` — `device_id \0 seq` (seq zero-padded to 20 digits, so key order is
//!   per-device event order) → [`OutboxEvent`]. Per device the pending events are the
//!   contiguous range `[first, next)` of [`OutboxMeta`]: the deliverer only ever removes a
//!   device's head, so event n+1 is never sent before event n is acknowledged or dead-lettered.
//! * `webhook_outbox_meta` — `device_id` → [`OutboxMeta`].
//! * `webhook_dead` — `event_id` → the event, with why and when it was given up.
//! * `webhook` — `enabled` (present while a node runs with `--webhook-url`: transactions append
//!   events only then) and `dead_count` (a u64).
//!
//! Bounds: at most [`MAX_PENDING_PER_DEVICE`] pending events per device (when a device's receiver
//! side stays down that long, the device's *oldest* pending event moves to the dead-letter list to
//! make room: the newest state is what an integrator needs most, and nothing is dropped
//! silently); each event at most [`MAX_EVENT_BYTES`] of fields (large `results` are dropped and
//! `results_truncated` set); at most [`MAX_DEAD`] dead letters (the deliverer deletes the oldest
//! beyond, with a warning).

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::records::{record_key, RecordOp, RecordStore};
use super::tx::{decode, encode, Table, Tx};
use super::{CertRecord, CommandRecord, Device, StoreError};

/// Record kind of pending events.
pub const OUTBOX: &str = "webhook_outbox";
/// Record kind of the per-device pending range.
pub const META: &str = "webhook_outbox_meta";
/// Record kind of dead letters.
pub const DEAD: &str = "webhook_dead";
/// Record kind of the outbox switch and counters.
pub const STATE: &str = "webhook";
const ENABLED: &str = "enabled";
const DEAD_COUNT: &str = "dead_count";

/// Pending events kept per device; beyond, the oldest is dead-lettered.
pub const MAX_PENDING_PER_DEVICE: u64 = 1000;
/// Largest encoded `fields` of one event.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Dead letters kept; the deliverer deletes the oldest beyond.
pub const MAX_DEAD: u64 = 10_000;

/// The event types. Stored and sent as their [`EventType::name`]; the list grows (app install
/// state comes later), so a receiver must ignore types it does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventType {
    /// A command we queued reached a final state (its Status code, and Results for a `Get`).
    CommandCompleted,
    /// A device enrolled (or enrolled again).
    DeviceEnrolled,
    /// A device left management: deleted by an admin, its own unenroll alert, or replaced by a
    /// new enrollment of the same hardware under another DeviceID.
    DeviceUnenrolled,
    /// A device renewed its certificate.
    CertificateRenewed,
    /// A device was linked to its Autopilot registration.
    AutopilotLinked,
    /// A profile's status on a device changed.
    ProfileStateChanged,
}

impl EventType {
    /// The `type` of the JSON body.
    pub fn name(self) -> &'static str {
        match self {
            EventType::CommandCompleted => "command.completed",
            EventType::DeviceEnrolled => "device.enrolled",
            EventType::DeviceUnenrolled => "device.unenrolled",
            EventType::CertificateRenewed => "certificate.renewed",
            EventType::AutopilotLinked => "autopilot.linked",
            EventType::ProfileStateChanged => "profile.state_changed",
        }
    }
}

/// An event to append (see [`append`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Its type.
    pub ty: EventType,
    /// The device it is about.
    pub device_id: String,
    /// The type's fields.
    pub fields: Map<String, Value>,
}

/// A stored event (pending in the outbox, or a dead letter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEvent {
    /// Unique, the same in every delivery attempt: receivers de-duplicate by it. 32 hex
    /// digits, the first 10 the creation time, so ids sort by age.
    pub event_id: String,
    /// [`EventType::name`].
    #[serde(rename = "type")]
    pub ty: String,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// The device.
    pub device_id: String,
    /// Position in the device's outbox.
    pub seq: u64,
    /// The type's fields.
    pub fields: Map<String, Value>,
    /// Delivery attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// Not sent again before this time (Unix seconds).
    #[serde(default)]
    pub next_attempt_at: i64,
    /// The last attempt's failure (status code or error; never the body).
    #[serde(default)]
    pub last_error: Option<String>,
    /// When it was dead-lettered.
    #[serde(default)]
    pub dead_at: Option<i64>,
    /// Why it was dead-lettered.
    #[serde(default)]
    pub dead_reason: Option<String>,
}

impl OutboxEvent {
    /// The JSON body POSTed to the receiver: `event_id`, `type`, `created_at` (Unix seconds),
    /// `device_id`, then the type's fields. The same bytes in every attempt.
    pub fn body(&self) -> Vec<u8> {
        let mut m = Map::new();
        m.insert("event_id".into(), Value::from(self.event_id.clone()));
        m.insert("type".into(), Value::from(self.ty.clone()));
        m.insert("created_at".into(), Value::from(self.created_at));
        m.insert("device_id".into(), Value::from(self.device_id.clone()));
        for (k, v) in &self.fields {
            if !m.contains_key(k) {
                m.insert(k.clone(), v.clone());
            }
        }
        serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
    }
}

/// A device's pending range `[first, next)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMeta {
    /// Oldest pending seq.
    pub first: u64,
    /// Seq of the next event.
    pub next: u64,
}

/// The outbox key of a device's event `seq`.
pub fn event_key(device_id: &str, seq: u64) -> String {
    format!("{device_id}\0{seq:020}")
}

fn new_event_id(now: i64) -> String {
    format!(
        "{:010x}{}",
        u64::try_from(now).unwrap_or(0) & 0xff_ffff_ffff,
        crate::clock::random_hex(11)
    )
}

/// `fields` cut to [`MAX_EVENT_BYTES`]: `results` and nested statuses go first (with
/// `results_truncated: true`), then everything but the identifying fields.
pub fn bounded(mut fields: Map<String, Value>) -> Map<String, Value> {
    let size = |m: &Map<String, Value>| serde_json::to_vec(m).map_or(usize::MAX, |v| v.len());
    if size(&fields) <= MAX_EVENT_BYTES {
        return fields;
    }
    for k in ["results", "inner", "failures"] {
        if fields.remove(k).is_some() {
            fields.insert(k.into(), Value::Array(Vec::new()));
        }
    }
    fields.insert("results_truncated".into(), Value::Bool(true));
    if size(&fields) <= MAX_EVENT_BYTES {
        return fields;
    }
    let keep = ["command_id", "profile_id", "status", "state", "verb"];
    fields.retain(|k, v| keep.contains(&k.as_str()) && v.to_string().len() < 1024);
    fields.insert("truncated".into(), Value::Bool(true));
    fields
}

fn get_rec<X: Tx, T: serde::de::DeserializeOwned>(
    tx: &X,
    kind: &str,
    key: &str,
    what: &'static str,
) -> Result<Option<T>, X::E> {
    match tx.get(Table::Records, &record_key(kind, key))? {
        None => Ok(None),
        Some(b) => decode(what, &b).map(Some).map_err(X::abort),
    }
}

/// Whether events are recorded (a node runs with `--webhook-url`), read inside `tx`.
pub fn enabled<X: Tx>(tx: &X) -> Result<bool, X::E> {
    Ok(tx
        .get(Table::Records, &record_key(STATE, ENABLED))?
        .is_some())
}

/// Whether events are recorded, read outside a transaction.
pub fn is_enabled(s: &dyn RecordStore) -> Result<bool, StoreError> {
    Ok(s.get_record(STATE, ENABLED)?.is_some())
}

/// Switches recording on (a node started with `--webhook-url`) or off.
pub fn set_enabled(s: &dyn RecordStore, on: bool) -> Result<(), StoreError> {
    let op = if on {
        RecordOp::Put {
            kind: STATE,
            key: ENABLED.into(),
            value: encode(&true),
        }
    } else {
        RecordOp::Delete {
            kind: STATE,
            key: ENABLED.into(),
        }
    };
    s.apply_records(&[op]).map(|_| ())
}

fn bump_dead<X: Tx>(tx: &X, by: i64) -> Result<(), X::E> {
    let n: u64 = get_rec(tx, STATE, DEAD_COUNT, "dead-letter count")?.unwrap_or(0);
    let n = n.saturating_add_signed(by);
    tx.insert(Table::Records, &record_key(STATE, DEAD_COUNT), encode(&n))
}

/// Appends `ev` to its device's outbox inside `tx` when recording is on. A full outbox first
/// moves the device's oldest pending event to the dead letters.
pub fn append_if_enabled<X: Tx>(tx: &X, events: &[NewEvent], now: i64) -> Result<(), X::E> {
    if events.is_empty() || !enabled(tx)? {
        return Ok(());
    }
    for ev in events {
        append(tx, ev, now)?;
    }
    Ok(())
}

/// Appends `ev` inside `tx` (recording assumed on).
pub fn append<X: Tx>(tx: &X, ev: &NewEvent, now: i64) -> Result<(), X::E> {
    let dev = ev.device_id.as_str();
    let mut meta: OutboxMeta = get_rec(tx, META, dev, "webhook outbox meta")?.unwrap_or_default();
    while meta.next.saturating_sub(meta.first) >= MAX_PENDING_PER_DEVICE {
        let k = record_key(OUTBOX, &event_key(dev, meta.first));
        if let Some(b) = tx.get(Table::Records, &k)? {
            let mut old: OutboxEvent = decode("webhook event", &b).map_err(X::abort)?;
            tracing::warn!(device_id = dev, event_id = %old.event_id, pending = MAX_PENDING_PER_DEVICE, "webhook outbox of the device is full: its oldest event moves to the dead letters");
            old.dead_at = Some(now);
            old.dead_reason = Some(format!(
                "outbox full: {MAX_PENDING_PER_DEVICE} newer events of the device were waiting"
            ));
            tx.insert(
                Table::Records,
                &record_key(DEAD, &old.event_id),
                encode(&old),
            )?;
            bump_dead(tx, 1)?;
            tx.remove(Table::Records, &k)?;
        }
        meta.first += 1;
    }
    let seq = meta.next;
    meta.next += 1;
    let event = OutboxEvent {
        event_id: new_event_id(now),
        ty: ev.ty.name().to_string(),
        created_at: now,
        device_id: dev.to_string(),
        seq,
        fields: bounded(ev.fields.clone()),
        attempts: 0,
        next_attempt_at: 0,
        last_error: None,
        dead_at: None,
        dead_reason: None,
    };
    tx.insert(
        Table::Records,
        &record_key(OUTBOX, &event_key(dev, seq)),
        encode(&event),
    )?;
    tx.insert(Table::Records, &record_key(META, dev), encode(&meta))
}

// ---- event fields ---------------------------------------------------------------------------

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// `command.completed`: a command we queued reached a final state.
pub fn command_completed(c: &CommandRecord) -> NewEvent {
    NewEvent {
        ty: EventType::CommandCompleted,
        device_id: c.device_id.clone(),
        fields: obj(json!({
            "command_id": c.command_id,
            "verb": c.verb,
            "target": c.target,
            "state": c.state,
            "status": c.status,
            "results": c.results,
            "results_truncated": c.results_truncated,
            "inner": c.inner,
            "error": c.error,
            "queued_at": c.created_at,
            "sent_at": c.sent_at,
            "completed_at": c.completed_at,
            "send_count": c.send_count,
        })),
    }
}

/// `device.enrolled`.
pub fn device_enrolled(d: &Device, cert: &CertRecord, replaced: &[String]) -> NewEvent {
    NewEvent {
        ty: EventType::DeviceEnrolled,
        device_id: d.device_id.clone(),
        fields: obj(json!({
            "enrollment_type": d.enrollment_type,
            "upn": d.upn,
            "owner": d.owner,
            "bulk": d.bulk,
            "hw_dev_id": d.hw_dev_id,
            "device_name": d.device_name,
            "device_type": d.device_type,
            "os_version": d.os_version,
            "os_edition": d.os_edition,
            "cert_serial": cert.serial,
            "cert_thumbprint": cert.thumbprint,
            "cert_not_after": cert.not_after,
            "enrolled_at": d.enrolled_at,
            "replaced": replaced,
        })),
    }
}

/// `device.unenrolled`; `reason` is `deleted`, `user_request` or `replaced`.
pub fn device_unenrolled(d: &Device, reason: &str, by: Option<&str>) -> NewEvent {
    NewEvent {
        ty: EventType::DeviceUnenrolled,
        device_id: d.device_id.clone(),
        fields: obj(json!({
            "reason": reason,
            "replaced_by": by,
            "upn": d.upn,
            "cert_serial": d.cert_serial,
        })),
    }
}

/// `certificate.renewed`.
pub fn certificate_renewed(
    device_id: &str,
    old_serial: &str,
    cert: &CertRecord,
    revoked: &[String],
) -> NewEvent {
    NewEvent {
        ty: EventType::CertificateRenewed,
        device_id: device_id.to_string(),
        fields: obj(json!({
            "old_serial": old_serial,
            "new_serial": cert.serial,
            "new_thumbprint": cert.thumbprint,
            "new_not_after": cert.not_after,
            "revoked": revoked,
        })),
    }
}

/// `autopilot.linked`.
pub fn autopilot_linked(d: &Device) -> NewEvent {
    NewEvent {
        ty: EventType::AutopilotLinked,
        device_id: d.device_id.clone(),
        fields: obj(json!({
            "serial": d.autopilot_serial,
            "group_tag": d.group_tag,
        })),
    }
}

/// `profile.state_changed`: `fields` are the profile status as the admin API shows it.
pub fn profile_state_changed(device_id: &str, fields: Map<String, Value>) -> NewEvent {
    NewEvent {
        ty: EventType::ProfileStateChanged,
        device_id: device_id.to_string(),
        fields,
    }
}

// ---- delivery side (outside the changes' transactions) --------------------------------------

fn read<T: serde::de::DeserializeOwned>(
    s: &dyn RecordStore,
    kind: &'static str,
    key: &str,
) -> Result<Option<(Vec<u8>, T)>, StoreError> {
    match s.get_record(kind, key)? {
        None => Ok(None),
        Some(b) => {
            let v = decode(kind, &b)?;
            Ok(Some((b, v)))
        }
    }
}

fn expect(kind: &'static str, key: &str, value: Option<Vec<u8>>) -> RecordOp {
    RecordOp::Expect {
        kind,
        key: key.to_string(),
        value,
    }
}

fn put<T: Serialize>(kind: &'static str, key: &str, v: &T) -> RecordOp {
    RecordOp::Put {
        kind,
        key: key.to_string(),
        value: encode(v),
    }
}

/// Up to `limit` devices' oldest pending events, in DeviceID order after `after` (a DeviceID),
/// and the cursor of the next call (`None`: the walk reached the end).
pub fn heads(
    s: &dyn RecordStore,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<OutboxEvent>, Option<String>), StoreError> {
    let mut out: Vec<OutboxEvent> = Vec::new();
    // `device \x01` sorts after every `device \0 seq` key: the next device.
    let mut cursor = after.map(|d| format!("{d}\u{1}"));
    while out.len() < limit {
        let page = s.scan_records(OUTBOX, cursor.as_deref(), 64)?;
        let Some((last, _)) = page.last() else {
            return Ok((out, None));
        };
        let full = page.len() == 64;
        let last = last.clone();
        for (k, v) in page {
            let dev = k.split('\0').next().unwrap_or_default();
            if out.last().is_some_and(|e| e.device_id == dev) {
                continue;
            }
            out.push(decode("webhook event", &v)?);
            if out.len() == limit {
                return Ok((out, Some(dev.to_string())));
            }
        }
        if !full {
            return Ok((out, None));
        }
        cursor = match out.last() {
            Some(e) if last.starts_with(&format!("{}\0", e.device_id)) => {
                Some(format!("{}\u{1}", e.device_id))
            }
            _ => Some(last),
        };
    }
    let next = out.last().map(|e| e.device_id.clone());
    Ok((out, next))
}

/// The device's oldest pending event.
pub fn head(s: &dyn RecordStore, device_id: &str) -> Result<Option<OutboxEvent>, StoreError> {
    let page = s.scan_records(OUTBOX, Some(&format!("{device_id}\0")), 1)?;
    match page.into_iter().next() {
        Some((k, v)) if k.starts_with(&format!("{device_id}\0")) => {
            decode("webhook event", &v).map(Some)
        }
        _ => Ok(None),
    }
}

/// Removes `ev`, the head of its device's outbox, after a 2xx (`dead: None`), or moves it to
/// the dead letters (`dead: Some(reason)`). `false` when it was no longer there.
pub fn finish(
    s: &dyn RecordStore,
    ev: &OutboxEvent,
    dead: Option<&str>,
    now: i64,
) -> Result<bool, StoreError> {
    let key = event_key(&ev.device_id, ev.seq);
    for _ in 0..64 {
        let Some((cur_bytes, cur)) = read::<OutboxEvent>(s, OUTBOX, &key)? else {
            return Ok(false);
        };
        let meta = read::<OutboxMeta>(s, META, &ev.device_id)?;
        let (meta_bytes, mut m) = meta.map_or((None, OutboxMeta::default()), |(b, m)| (Some(b), m));
        let mut ops = vec![
            expect(OUTBOX, &key, Some(cur_bytes)),
            expect(META, &ev.device_id, meta_bytes),
            RecordOp::Delete {
                kind: OUTBOX,
                key: key.clone(),
            },
        ];
        if m.first <= ev.seq {
            m.first = ev.seq + 1;
            ops.push(put(META, &ev.device_id, &m));
        }
        if let Some(reason) = dead {
            let mut d = cur;
            d.attempts = d.attempts.max(ev.attempts);
            if ev.last_error.is_some() {
                d.last_error.clone_from(&ev.last_error);
            }
            d.dead_at = Some(now);
            d.dead_reason = Some(reason.to_string());
            let (cb, n) =
                read::<u64>(s, STATE, DEAD_COUNT)?.map_or((None, 0), |(b, n)| (Some(b), n));
            ops.push(put(DEAD, &d.event_id, &d));
            ops.push(expect(STATE, DEAD_COUNT, cb));
            ops.push(put(STATE, DEAD_COUNT, &(n + 1)));
        }
        if s.apply_records(&ops)? {
            return Ok(true);
        }
    }
    Err(StoreError::Backend {
        reason: "webhook outbox: too much contention".into(),
    })
}

/// Records a failed attempt of `ev`: attempts, the error and the time of the next attempt.
pub fn record_failure(
    s: &dyn RecordStore,
    ev: &OutboxEvent,
    error: &str,
    next_attempt_at: i64,
) -> Result<Option<OutboxEvent>, StoreError> {
    let key = event_key(&ev.device_id, ev.seq);
    let kind = super::records::Kind::<OutboxEvent>::new(OUTBOX);
    kind.update(s, &key, |cur| {
        Ok(cur.map(|mut e| {
            e.attempts = e.attempts.saturating_add(1);
            e.last_error = Some(super::clip_bytes(error, 512));
            e.next_attempt_at = next_attempt_at;
            e
        }))
    })
}

/// Pending events of one device.
pub fn pending(s: &dyn RecordStore, device_id: &str) -> Result<u64, StoreError> {
    Ok(read::<OutboxMeta>(s, META, device_id)?.map_or(0, |(_, m)| m.next.saturating_sub(m.first)))
}

/// Pending events of every device (one read per device that ever had an event).
pub fn depth(s: &dyn RecordStore) -> Result<u64, StoreError> {
    let mut n = 0u64;
    let mut after: Option<String> = None;
    loop {
        let page = s.scan_records(META, after.as_deref(), 512)?;
        for (_, v) in &page {
            let m: OutboxMeta = decode("webhook outbox meta", v)?;
            n += m.next.saturating_sub(m.first);
        }
        match page.last() {
            Some((k, _)) if page.len() == 512 => after = Some(k.clone()),
            _ => return Ok(n),
        }
    }
}

/// One page of dead letters, oldest first, after the event id `after`, with the next cursor.
pub fn dead_letters(
    s: &dyn RecordStore,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<OutboxEvent>, Option<String>), StoreError> {
    let (page, next) = super::records::Kind::<OutboxEvent>::new(DEAD).page(s, after, limit)?;
    Ok((page.into_iter().map(|(_, e)| e).collect(), next))
}

/// One dead letter.
pub fn dead_letter(s: &dyn RecordStore, event_id: &str) -> Result<Option<OutboxEvent>, StoreError> {
    Ok(read::<OutboxEvent>(s, DEAD, event_id)?.map(|(_, e)| e))
}

/// How many dead letters there are.
pub fn dead_count(s: &dyn RecordStore) -> Result<u64, StoreError> {
    Ok(read::<u64>(s, STATE, DEAD_COUNT)?.map_or(0, |(_, n)| n))
}

/// Deletes a dead letter; `false` when there is none with that id.
pub fn delete_dead(s: &dyn RecordStore, event_id: &str) -> Result<bool, StoreError> {
    for _ in 0..64 {
        let Some((b, _)) = read::<OutboxEvent>(s, DEAD, event_id)? else {
            return Ok(false);
        };
        let (cb, n) = read::<u64>(s, STATE, DEAD_COUNT)?.map_or((None, 0), |(b, n)| (Some(b), n));
        let ops = [
            expect(DEAD, event_id, Some(b)),
            expect(STATE, DEAD_COUNT, cb),
            RecordOp::Delete {
                kind: DEAD,
                key: event_id.to_string(),
            },
            put(STATE, DEAD_COUNT, &n.saturating_sub(1)),
        ];
        if s.apply_records(&ops)? {
            return Ok(true);
        }
    }
    Err(StoreError::Backend {
        reason: "webhook dead letters: too much contention".into(),
    })
}

/// What [`redeliver`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Redeliver {
    /// Back in its device's outbox, at the end (after the device's newer events), with its
    /// `event_id` and body unchanged and its attempts reset.
    Queued(OutboxEvent),
    /// No dead letter with that id.
    NotFound,
    /// The device's outbox is full.
    Full,
}

/// Moves a dead letter back into its device's outbox.
pub fn redeliver(s: &dyn RecordStore, event_id: &str) -> Result<Redeliver, StoreError> {
    for _ in 0..64 {
        let Some((b, mut e)) = read::<OutboxEvent>(s, DEAD, event_id)? else {
            return Ok(Redeliver::NotFound);
        };
        let meta = read::<OutboxMeta>(s, META, &e.device_id)?;
        let (meta_bytes, mut m) = meta.map_or((None, OutboxMeta::default()), |(b, m)| (Some(b), m));
        if m.next.saturating_sub(m.first) >= MAX_PENDING_PER_DEVICE {
            return Ok(Redeliver::Full);
        }
        let (cb, n) = read::<u64>(s, STATE, DEAD_COUNT)?.map_or((None, 0), |(b, n)| (Some(b), n));
        e.seq = m.next;
        m.next += 1;
        e.attempts = 0;
        e.next_attempt_at = 0;
        e.last_error = None;
        e.dead_at = None;
        e.dead_reason = None;
        let ops = [
            expect(DEAD, event_id, Some(b)),
            expect(META, &e.device_id, meta_bytes),
            expect(STATE, DEAD_COUNT, cb),
            RecordOp::Delete {
                kind: DEAD,
                key: event_id.to_string(),
            },
            put(OUTBOX, &event_key(&e.device_id, e.seq), &e),
            put(META, &e.device_id, &m),
            put(STATE, DEAD_COUNT, &n.saturating_sub(1)),
        ];
        if s.apply_records(&ops)? {
            return Ok(Redeliver::Queued(e));
        }
    }
    Err(StoreError::Backend {
        reason: "webhook dead letters: too much contention".into(),
    })
}

/// Deletes the oldest dead letters beyond [`MAX_DEAD`] (or `max`); returns how many.
pub fn prune_dead(s: &dyn RecordStore, max: u64) -> Result<u64, StoreError> {
    let n = dead_count(s)?;
    if n <= max {
        return Ok(0);
    }
    let extra = usize::try_from(n - max).unwrap_or(usize::MAX).min(1000);
    let (oldest, _) = dead_letters(s, None, extra)?;
    let mut deleted = 0;
    for e in oldest {
        if delete_dead(s, &e.event_id)? {
            deleted += 1;
        }
    }
    if deleted > 0 {
        tracing::warn!(
            deleted,
            kept = max,
            "webhook dead letters over their bound: the oldest were deleted"
        );
    }
    Ok(deleted)
}
