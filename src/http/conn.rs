//! Connection bookkeeping: the defences against slow and idle clients.
//!
//! Every accepted TCP stream is wrapped in [`Tracked`], which stamps the connection's
//! [`ConnState`] on every byte read or written (the TLS handshake included). A connection is
//! closed when
//! - it has carried no traffic for `idle_timeout` while no request is being handled
//!   ([`idle_expired`]), which ends idle keep-alive and idle HTTP/2 connections, and
//! - the server is at `max_connections` and a new client arrives: the idlest connection that is
//!   not handling a request is evicted ([`Conns::evict_idlest`]), so a flood of idle or
//!   trickling connections delays a real device by one eviction instead of locking it out.
//!
//! Slow headers and bodies are bounded separately (hyper's header timeout, the body timeout in
//! `routes::read_body`).

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// The live connections of one server.
#[derive(Debug)]
pub struct Conns {
    epoch: Instant,
    next_id: AtomicU64,
    live: Mutex<HashMap<u64, Arc<ConnState>>>,
    evicted: AtomicU64,
}

/// What one connection is doing.
#[derive(Debug)]
pub struct ConnState {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last byte in or out.
    last: AtomicU64,
    /// Requests being handled right now.
    busy: AtomicUsize,
    /// Signalled to close the connection at once.
    pub kill: Notify,
}

impl ConnState {
    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// How long since the last byte in or out.
    pub fn idle_for(&self) -> Duration {
        let now = self.epoch.elapsed();
        now.saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }

    /// Whether a request is being handled.
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::Relaxed) > 0
    }

    /// Marks a request in progress until the guard drops.
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.busy.fetch_add(1, Ordering::Relaxed);
        RequestGuard(self.clone())
    }
}

/// A request in progress on a connection (see [`ConnState::request`]).
#[derive(Debug)]
pub struct RequestGuard(Arc<ConnState>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A registered connection; unregisters itself when dropped.
#[derive(Debug)]
pub struct ConnGuard {
    conns: Arc<Conns>,
    id: u64,
    /// The connection's state.
    pub state: Arc<ConnState>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.conns
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Default for Conns {
    fn default() -> Self {
        Conns {
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
            evicted: AtomicU64::new(0),
        }
    }
}

impl Conns {
    /// An empty table.
    pub fn new() -> Arc<Conns> {
        Arc::new(Conns::default())
    }

    /// Registers a new connection (stamped active now).
    pub fn register(self: &Arc<Self>) -> ConnGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            epoch: self.epoch,
            last: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            kill: Notify::new(),
        });
        state.touch();
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, state.clone());
        ConnGuard {
            conns: self.clone(),
            id,
            state,
        }
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Connections evicted so far to admit new ones.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Tells the connection that has been silent longest, among those not handling a request,
    /// to close. Returns how long it had been idle, or `None` when every connection is busy.
    pub fn evict_idlest(&self) -> Option<Duration> {
        let victim = {
            let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            live.values()
                .filter(|c| !c.busy())
                .max_by_key(|c| c.idle_for())
                .cloned()
        }?;
        let idle = victim.idle_for();
        victim.kill.notify_one();
        self.evicted.fetch_add(1, Ordering::Relaxed);
        Some(idle)
    }
}

/// Completes when `state` has been idle (no bytes, no request in progress) for `limit`.
pub async fn idle_expired(state: &ConnState, limit: Duration) {
    let tick = (limit / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    loop {
        tokio::time::sleep(tick).await;
        if !state.busy() && state.idle_for() >= limit {
            return;
        }
    }
}

/// A stream that stamps its connection's [`ConnState`] on every successful read or write.
#[derive(Debug)]
pub struct Tracked<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S> Tracked<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, state: Arc<ConnState>) -> Tracked<S> {
        Tracked { inner, state }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.state.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.state.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_picks_the_idlest_connection_that_is_not_busy() {
        let conns = Conns::new();
        let a = conns.register();
        std::thread::sleep(Duration::from_millis(30));
        let b = conns.register();
        std::thread::sleep(Duration::from_millis(30));
        let c = conns.register();
        let _busy = a.state.request();
        // `a` is oldest but busy: `b`, silent longer than `c`, goes.
        assert!(conns.evict_idlest().is_some());
        assert_eq!(conns.evicted(), 1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(100), b.state.kill.notified())
                .await
                .expect("b was told to close");
            assert!(
                tokio::time::timeout(Duration::from_millis(20), c.state.kill.notified())
                    .await
                    .is_err(),
                "c was left alone"
            );
        });
        drop((b, c));
        assert_eq!(conns.len(), 1);
        drop(_busy);
        assert!(
            conns.evict_idlest().is_some(),
            "a is idle once its request ends"
        );
    }

    #[test]
    fn nothing_to_evict_when_all_are_busy() {
        let conns = Conns::new();
        let a = conns.register();
        let _r = a.state.request();
        assert_eq!(conns.evict_idlest(), None);
    }
}
