//! Prometheus metrics: every counter, gauge and histogram of the server, in one place.
//!
//! Owns: the metric families (names, types, labels, help texts), the cheap recording calls the
//! rest of the server makes, and [`Metrics::render`], which writes the OpenMetrics text
//! exposition served at `GET /metrics` ([`http`]). The list is in the README ("Metrics").
//!
//! **Cost on the hot path.** Labels are enums (never strings built per request), and the series a
//! management round touches are created once and kept as handles ([`OnceLock`] cells), so
//! recording is an atomic add, or one uncontended mutex for a histogram observation; nothing is
//! allocated per request. Store operations are timed by [`MeteredStore`], a decorator around the
//! backend (two `Instant::now()` and one histogram observation per call). [`Metrics::set_enabled`]
//! turns recording off (one relaxed load per call then): it exists to measure what recording
//! costs (`examples/loadgen --compare-metrics`).
//!
//! **Gauges computed at scrape time**: password-check workers running and waiting (a lock on
//! [`crate::password_work`]'s pool), the embedded store's commit batches
//! ([`crate::store::redb::CommitStats`]), and the command queue by verb and state with the oldest
//! pending command's age. The queue is read from the store (so with several nodes on one database
//! every node reports the whole fleet's queue: aggregate with `max`, not `sum`), at most once per
//! [`QUEUE_STATS_TTL`] or ten times the last reading's duration, whichever is longer, whatever
//! the number of scrapers (so at most a tenth of one core), and reads at most [`QUEUE_SCAN_LIMIT`]
//! unanswered commands (the queue index only, never the history; see
//! [`crate::store::CommandQueue::queue_stats`]).
//!
//! **Webhook deliveries** are counted by the results webhook through [`Metrics::webhook_delivery`]
//! and [`Metrics::set_webhook_outbox_depth`].

pub mod http;
mod labels;
mod store;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
pub(crate) use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

pub use labels::*;
pub use store::MeteredStore;

use crate::store::{CommandState, QueueStats, StoreError};

/// The queue gauges are read from the store at most this often (a cached value serves the
/// scrapes in between).
pub const QUEUE_STATS_TTL: Duration = Duration::from_secs(5);
/// Unanswered commands read at most per queue reading (the gauges say when it was cut:
/// `winmdm_queue_stats_complete 0`).
pub const QUEUE_SCAN_LIMIT: usize = 1_000_000;
/// Media type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub use store::StoreOp;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EnrollLabels {
    endpoint: EnrollEndpoint,
    outcome: Outcome,
    fault: Fault,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RoundLabels {
    outcome: RoundOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SessionLabels {
    outcome: SessionEnd,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CommandLabels {
    from: CmdFrom,
    to: CmdTo,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ListenerLabels {
    listener: Listener,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TlsLabels {
    listener: Listener,
    reason: TlsFailure,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OpLabels {
    op: StoreOp,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OpErrorLabels {
    op: StoreOp,
    kind: StoreErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct JobLabels {
    event: JobEvent,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SweepLabels {
    sweep: Sweep,
    outcome: SweepOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SweepOnly {
    sweep: Sweep,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct WebhookLabels {
    outcome: WebhookOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct QueueLabels {
    verb: Verb,
    state: QueueState,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PasswordLabels {
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs … 1.6 s (16 buckets, doubling) and +Inf.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

fn round_histogram() -> Histogram {
    // 0.5 ms … 8 s (15 buckets, doubling) and +Inf.
    Histogram::new(exponential_buckets(0.000_5, 2.0, 15))
}

fn sweep_histogram() -> Histogram {
    // 1 ms … 16 s and +Inf.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// A counter of a family, made once on first use and then reached without a lookup.
struct Cell(OnceLock<Counter>);

impl Cell {
    fn new() -> Cell {
        Cell(OnceLock::new())
    }
    fn get<L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug>(
        &self,
        family: &Family<L, Counter>,
        label: impl FnOnce() -> L,
    ) -> &Counter {
        self.0.get_or_init(|| family.get_or_create_owned(&label()))
    }
}

/// Every metric of the server (one per [`App`](crate::app::App), shared through an [`Arc`]).
pub struct Metrics {
    enabled: AtomicBool,
    registry: Registry,
    enroll: Family<EnrollLabels, Counter>,
    rounds: Vec<Counter>,
    round_seconds: Histogram,
    sessions_started: Counter,
    sessions_ended: Vec<Counter>,
    commands: Family<CommandLabels, Counter>,
    command_cells: Vec<Cell>,
    handshakes: Family<ListenerLabels, Counter>,
    tls_failures: Family<TlsLabels, Counter>,
    store_seconds: Vec<Histogram>,
    store_errors: Family<OpErrorLabels, Counter>,
    jobs: Family<JobLabels, Counter>,
    jobs_running: Gauge,
    sweeps: Family<SweepLabels, Counter>,
    sweep_seconds: HistFamily<SweepOnly>,
    webhook: Vec<Counter>,
    webhook_depth: Gauge,
    /// The last queue reading: when, what, and how long it took.
    queue: Mutex<Option<(Instant, QueueStats, Duration)>>,
    queue_ttl_ms: AtomicU64,
    commits: OnceLock<crate::store::redb::RedbStore>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.enabled())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family registered, recording on.
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("winmdm");
        let enroll = Family::<EnrollLabels, Counter>::default();
        r.register(
            "enrollment_requests",
            "Enrollment SOAP requests (discovery, policy, enrollment, renewal) by outcome and fault",
            enroll.clone(),
        );
        let rounds_f = Family::<RoundLabels, Counter>::default();
        r.register(
            "management_rounds",
            "Management requests (OMA-DM rounds) by outcome",
            rounds_f.clone(),
        );
        let rounds = RoundOutcome::ALL
            .iter()
            .map(|o| rounds_f.get_or_create_owned(&RoundLabels { outcome: *o }))
            .collect();
        let round_seconds = round_histogram();
        r.register(
            "management_round_duration_seconds",
            "Time to process one management request once its body arrived (authentication, round, commit)",
            round_seconds.clone(),
        );
        let sessions_started = Counter::default();
        r.register(
            "management_sessions_started",
            "Management sessions started (package 1 of a new session applied)",
            sessions_started.clone(),
        );
        let sessions_f = Family::<SessionLabels, Counter>::default();
        r.register(
            "management_sessions_ended",
            "Management sessions ended, by how",
            sessions_f.clone(),
        );
        let sessions_ended = SessionEnd::ALL
            .iter()
            .map(|o| sessions_f.get_or_create_owned(&SessionLabels { outcome: *o }))
            .collect();
        let commands = Family::<CommandLabels, Counter>::default();
        r.register(
            "commands",
            "Command state transitions (from, to), counted once committed",
            commands.clone(),
        );
        let command_cells = (0..CmdFrom::ALL.len() * CmdTo::ALL.len())
            .map(|_| Cell::new())
            .collect();
        let handshakes = Family::<ListenerLabels, Counter>::default();
        r.register(
            "tls_handshakes",
            "TLS handshakes completed, by listener",
            handshakes.clone(),
        );
        let tls_failures = Family::<TlsLabels, Counter>::default();
        r.register(
            "tls_handshake_failures",
            "TLS handshakes that failed, by listener and reason",
            tls_failures.clone(),
        );
        let store_f: HistFamily<OpLabels> = Family::new_with_constructor(latency_histogram);
        r.register(
            "store_operation_duration_seconds",
            "Store calls by operation (every backend; on the embedded store a write includes its share of the group commit's fsync)",
            store_f.clone(),
        );
        let store_seconds = StoreOp::ALL
            .iter()
            .map(|op| store_f.get_or_create_owned(&OpLabels { op: *op }))
            .collect();
        let store_errors = Family::<OpErrorLabels, Counter>::default();
        r.register(
            "store_operation_errors",
            "Store calls that failed, by operation and kind",
            store_errors.clone(),
        );
        let jobs = Family::<JobLabels, Counter>::default();
        r.register(
            "jobs",
            "Background jobs on this node, by event",
            jobs.clone(),
        );
        let jobs_running = Gauge::default();
        r.register(
            "jobs_running",
            "Background jobs this node is running now",
            jobs_running.clone(),
        );
        let sweeps = Family::<SweepLabels, Counter>::default();
        r.register(
            "sweeps",
            "Background sweep passes, by sweep and outcome",
            sweeps.clone(),
        );
        let sweep_seconds: HistFamily<SweepOnly> = Family::new_with_constructor(sweep_histogram);
        r.register(
            "sweep_duration_seconds",
            "Duration of sweep passes that ran",
            sweep_seconds.clone(),
        );
        let webhook_f = Family::<WebhookLabels, Counter>::default();
        r.register(
            "webhook_deliveries",
            "Results-webhook delivery attempts, by outcome",
            webhook_f.clone(),
        );
        let webhook = WebhookOutcome::ALL
            .iter()
            .map(|o| webhook_f.get_or_create_owned(&WebhookLabels { outcome: *o }))
            .collect();
        let webhook_depth = Gauge::default();
        r.register(
            "webhook_outbox_depth",
            "Results-webhook events waiting in the outbox",
            webhook_depth.clone(),
        );
        Metrics {
            enabled: AtomicBool::new(true),
            registry: r,
            enroll,
            rounds,
            round_seconds,
            sessions_started,
            sessions_ended,
            commands,
            command_cells,
            handshakes,
            tls_failures,
            store_seconds,
            store_errors,
            jobs,
            jobs_running,
            sweeps,
            sweep_seconds,
            webhook,
            webhook_depth,
            queue: Mutex::new(None),
            queue_ttl_ms: AtomicU64::new(QUEUE_STATS_TTL.as_millis() as u64),
            commits: OnceLock::new(),
        }
    }

    /// Whether recording is on.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// The embedded store's group-commit counters, when that store is in use (the load tool
    /// reports writers per commit from them).
    pub fn commit_stats(&self) -> Option<crate::store::redb::CommitStats> {
        self.commits.get().map(|s| s.commit_stats())
    }

    /// Turns recording on or off (to measure its cost; scrapes still answer).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// How long a queue reading is reused (tests shorten it).
    pub fn set_queue_stats_ttl(&self, ttl: Duration) {
        self.queue_ttl_ms
            .store(ttl.as_millis() as u64, Ordering::Relaxed);
    }

    /// Exposes the embedded store's commit batches (no effect on other backends).
    pub fn watch_commits(&self, store: crate::store::redb::RedbStore) {
        let _ = self.commits.set(store);
    }

    /// One enrollment SOAP request answered.
    pub fn enrollment(&self, endpoint: EnrollEndpoint, fault: Option<Fault>) {
        if !self.enabled() {
            return;
        }
        let labels = EnrollLabels {
            endpoint,
            outcome: if fault.is_some() {
                Outcome::Fault
            } else {
                Outcome::Ok
            },
            fault: fault.unwrap_or(Fault::None),
        };
        self.enroll.get_or_create(&labels).inc();
    }

    /// One management request answered with `status`, `took` after its body arrived.
    pub fn round(&self, status: u16, took: Option<Duration>) {
        if !self.enabled() {
            return;
        }
        if let Some(c) = self.rounds.get(RoundOutcome::of_status(status) as usize) {
            c.inc();
        }
        if let Some(t) = took {
            self.round_seconds.observe(t.as_secs_f64());
        }
    }

    /// A management session started.
    pub fn session_started(&self) {
        if self.enabled() {
            self.sessions_started.inc();
        }
    }

    /// A management session ended.
    pub fn session_ended(&self, how: SessionEnd) {
        if !self.enabled() {
            return;
        }
        if let Some(c) = self.sessions_ended.get(how as usize) {
            c.inc();
        }
    }

    /// `n` commands went `from` → `to` (committed).
    pub fn commands(&self, from: CmdFrom, to: CmdTo, n: u64) {
        if n == 0 || !self.enabled() {
            return;
        }
        let i = from as usize * CmdTo::ALL.len() + to as usize;
        if let Some(cell) = self.command_cells.get(i) {
            cell.get(&self.commands, || CommandLabels { from, to })
                .inc_by(n);
        }
    }

    /// A command's state changed from `from` to `to` in a committed management round.
    pub fn command_state(&self, from: CommandState, to: CommandState) {
        if from != to {
            self.commands(CmdFrom::of(from), CmdTo::of(to), 1);
        }
    }

    /// A TLS handshake finished on `listener`: `Ok` or why not.
    pub fn handshake(&self, listener: Listener, failure: Option<TlsFailure>) {
        if !self.enabled() {
            return;
        }
        match failure {
            None => self
                .handshakes
                .get_or_create(&ListenerLabels { listener })
                .inc(),
            Some(reason) => self
                .tls_failures
                .get_or_create(&TlsLabels { listener, reason })
                .inc(),
        };
    }

    /// A store call `op` took `took` and failed with `err` if given.
    pub fn store_op(&self, op: StoreOp, took: Duration, err: Option<&StoreError>) {
        if let Some(h) = self.store_seconds.get(op as usize) {
            h.observe(took.as_secs_f64());
        }
        if let Some(e) = err {
            self.store_errors
                .get_or_create(&OpErrorLabels {
                    op,
                    kind: StoreErrorKind::of(e),
                })
                .inc();
        }
    }

    /// A background job event on this node.
    pub fn job(&self, event: JobEvent) {
        if !self.enabled() {
            return;
        }
        self.jobs.get_or_create(&JobLabels { event }).inc();
        match event {
            JobEvent::Started => {
                self.jobs_running.inc();
            }
            JobEvent::Done | JobEvent::Failed | JobEvent::LeaseLost => {
                self.jobs_running.dec();
            }
            JobEvent::StepFailed => {}
        }
    }

    /// A job run ended for another reason than [`JobEvent::Done`]/`Failed`/`LeaseLost` (a step
    /// failed and the sweep retries it later, or its progress could not be saved).
    pub fn job_paused(&self) {
        if self.enabled() {
            self.jobs_running.dec();
        }
    }

    /// A sweep pass ended.
    pub fn sweep(&self, sweep: Sweep, outcome: SweepOutcome, took: Duration) {
        if !self.enabled() {
            return;
        }
        self.sweeps
            .get_or_create(&SweepLabels { sweep, outcome })
            .inc();
        if outcome == SweepOutcome::Ok {
            self.sweep_seconds
                .get_or_create(&SweepOnly { sweep })
                .observe(took.as_secs_f64());
        }
    }

    /// One results-webhook delivery attempt ended (for the webhook's delivery loop).
    pub fn webhook_delivery(&self, outcome: WebhookOutcome) {
        if let Some(c) = self.webhook.get(outcome as usize) {
            c.inc();
        }
    }

    /// Events waiting in the results-webhook outbox (for the webhook's delivery loop).
    pub fn set_webhook_outbox_depth(&self, n: u64) {
        self.webhook_depth.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The queue reading, from the cache when it is fresh enough. Blocking.
    fn queue_stats(&self, store: &dyn crate::store::Store) -> Option<QueueStats> {
        // Held across the read: concurrent scrapes wait for one reading instead of each making one.
        let mut cached = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let ttl = Duration::from_millis(self.queue_ttl_ms.load(Ordering::Relaxed));
        if let Some((at, s, took)) = cached.as_ref() {
            // A reading is reused for at least ten times what it cost, so the queue gauges
            // take at most a tenth of one core however often they are scraped (a zero TTL,
            // for tests, always reads).
            let fresh = if ttl.is_zero() {
                Duration::ZERO
            } else {
                ttl.max(*took * 10)
            };
            if at.elapsed() < fresh {
                return Some(s.clone());
            }
        }
        let started = Instant::now();
        match store.queue_stats(QUEUE_SCAN_LIMIT) {
            Ok(s) => {
                *cached = Some((Instant::now(), s.clone(), started.elapsed()));
                Some(s)
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: the command queue could not be read; queue gauges left out of this scrape");
                None
            }
        }
    }

    /// The OpenMetrics text of every metric, the scrape-time ones read now (blocking: it may
    /// read the store; see the module docs for the bound).
    pub fn render(&self, app: &crate::app::App) -> String {
        let mut out = String::with_capacity(32 * 1024);
        let mut now = Registry::with_prefix("winmdm");
        let info = Family::<VersionLabels, Gauge>::default();
        info.get_or_create(&VersionLabels {
            version: env!("CARGO_PKG_VERSION"),
        })
        .set(1);
        now.register("build_info", "The running winmdm version", info);
        self.password_gauges(app, &mut now);
        self.queue_gauges(app, &mut now);
        self.commit_gauges(&mut now);
        let r = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry)
            .and_then(|()| prometheus_client::encoding::text::encode_registry(&mut out, &now))
            .and_then(|()| prometheus_client::encoding::text::encode_eof(&mut out));
        if let Err(e) = r {
            tracing::error!(error = %e, "metrics: encoding failed");
        }
        out
    }

    fn password_gauges(&self, app: &crate::app::App, r: &mut Registry) {
        let pw = &app.password_work;
        let load = pw.load();
        r.register(
            "password_check_workers",
            "Password-check permits (--password-workers)",
            ConstGauge::new(pw.permits() as i64),
        );
        r.register(
            "password_checks_running",
            "Password checks (argon2id) running now",
            ConstGauge::new(load.running as i64),
        );
        r.register(
            "password_checks_waiting",
            "Password checks waiting for a worker now",
            ConstGauge::new(load.waiting as i64),
        );
        let st = pw.stats();
        let fam = Family::<PasswordLabels, Counter>::default();
        for (result, v) in [
            ("verified", st.verified),
            ("equalised", st.equalised),
            ("refused_busy", st.refused),
        ] {
            fam.get_or_create(&PasswordLabels { result }).inc_by(v);
        }
        r.register(
            "password_checks",
            "Password checks since start: verified against a stored hash, timing-equalising work, refused because every worker was busy",
            fam,
        );
    }

    fn queue_gauges(&self, app: &crate::app::App, r: &mut Registry) {
        let Some(s) = self.queue_stats(app.store.as_ref()) else {
            return;
        };
        let fam = Family::<QueueLabels, Gauge>::default();
        for verb in Verb::ALL {
            for state in QueueState::ALL {
                // Every series exists (0 when empty), so a drained queue reads 0, not absent.
                fam.get_or_create(&QueueLabels {
                    verb: *verb,
                    state: *state,
                })
                .set(0);
            }
        }
        for ((verb, state), n) in &s.counts {
            let state = match state {
                CommandState::Pending => QueueState::Pending,
                CommandState::Sent => QueueState::Sent,
                _ => continue,
            };
            fam.get_or_create(&QueueLabels {
                verb: Verb::of(verb),
                state,
            })
            .inc_by(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        r.register(
            "queue_commands",
            "Unanswered commands in the store, by verb and state (the whole store: with several nodes, aggregate with max)",
            fam,
        );
        let age = s
            .oldest_pending
            .map_or(0, |t| (app.clock.now_unix() - t).max(0));
        r.register(
            "queue_oldest_pending_age_seconds",
            "Age of the oldest pending command (0 when none is pending)",
            ConstGauge::new(age),
        );
        r.register(
            "queue_stats_complete",
            "1 when the last queue reading counted every unanswered command, 0 when it stopped at the scan limit",
            ConstGauge::new(i64::from(s.complete)),
        );
    }

    fn commit_gauges(&self, r: &mut Registry) {
        let Some(store) = self.commits.get() else {
            return;
        };
        let s = store.commit_stats();
        r.register(
            "store_commits",
            "Group commits of the embedded store that reached the disk",
            ConstCounter::new(s.commits),
        );
        r.register(
            "store_commit_failures",
            "Group commits of the embedded store that failed (no writer of the batch acknowledged)",
            ConstCounter::new(s.failed),
        );
        let mut buckets = Vec::with_capacity(s.by_size.len());
        for (i, n) in s.by_size.iter().enumerate() {
            let upper = if i + 1 == s.by_size.len() {
                f64::INFINITY
            } else {
                (1u64 << i) as f64
            };
            buckets.push((upper, *n));
        }
        r.register(
            "store_commit_batch_size",
            "Writers carried by each group commit of the embedded store",
            ConstHistogram {
                sum: s.writes as f64,
                count: s.commits,
                buckets,
            },
        );
    }
}

/// A histogram whose buckets were counted elsewhere (per-bucket counts, not cumulative).
#[derive(Debug)]
struct ConstHistogram {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl EncodeMetric for ConstHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Shared handle.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_tables_index_by_discriminant() {
        for (i, v) in RoundOutcome::ALL.iter().enumerate() {
            assert_eq!(*v as usize, i);
        }
        for (i, v) in CmdTo::ALL.iter().enumerate() {
            assert_eq!(*v as usize, i);
        }
        for (i, v) in StoreOp::ALL.iter().enumerate() {
            assert_eq!(*v as usize, i);
        }
        assert_eq!(Verb::of("Replace"), Verb::Replace);
        assert_eq!(Verb::of("replace"), Verb::Other);
    }

    #[test]
    fn recording_shows_in_the_exposition_and_off_records_nothing() {
        let m = Metrics::new();
        m.round(200, Some(Duration::from_millis(3)));
        m.commands(CmdFrom::Sent, CmdTo::Done, 2);
        m.enrollment(EnrollEndpoint::Enrollment, Some(Fault::Authentication));
        m.webhook_delivery(WebhookOutcome::Delivered);
        m.set_enabled(false);
        m.round(200, None);
        m.commands(CmdFrom::Sent, CmdTo::Done, 5);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).unwrap();
        assert!(
            out.contains("winmdm_management_rounds_total{outcome=\"ok\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("winmdm_commands_total{from=\"sent\",to=\"done\"} 2\n"));
        assert!(out.contains(
            "winmdm_enrollment_requests_total{endpoint=\"enrollment\",outcome=\"fault\",fault=\"Authentication\"} 1\n"
        ));
        assert!(out.contains("winmdm_webhook_deliveries_total{outcome=\"delivered\"} 1\n"));
        assert!(out.contains("winmdm_management_round_duration_seconds_count 1\n"));
    }
}
