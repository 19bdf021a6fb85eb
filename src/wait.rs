//! Running a future to completion on the current thread, for synchronous callers of code that
//! is written once as `async` (a management round: [`crate::mdm::manage::handle_round`]; the
//! PostgreSQL store's queries, `store::pg::pool`). The thread parks between polls; whatever the
//! future waits on (a Tokio mutex, a channel, a connection task) wakes it. Unlike
//! `Runtime::block_on`, it cannot panic with "cannot start a runtime from within a runtime",
//! whatever thread it is called from.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `f` on this thread until it is ready, parking in between.
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// Runs `f` on Tokio's blocking pool inside the caller's tracing span, so its log lines keep the
/// request's fields (trace id, actor, device).
pub async fn on_blocking_pool<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f)).await
}

/// Awaits `f`, turning a panic in any of its polls into `Err` with the panic's message (as a
/// spawned task's `JoinError` would), so a request handler answers 500 instead of dropping the
/// connection.
pub async fn catch_unwind<F: Future>(f: F) -> Result<F::Output, String> {
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f.as_mut().poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(p) => Poll::Ready(Err(panic_message(p.as_ref()))),
        }
    })
    .await
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_a_value_sent_from_another_thread() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send(7).ok();
        });
        assert_eq!(block_on(rx).ok(), Some(7));
        sender.join().ok();
    }

    #[test]
    fn takes_a_tokio_mutex_held_by_another_thread_once_released() {
        static M: tokio::sync::Mutex<u32> = tokio::sync::Mutex::const_new(0);
        let g = block_on(M.lock());
        let other = std::thread::spawn(|| {
            let mut g = block_on(M.lock());
            *g += 1;
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(g);
        other.join().ok();
        assert_eq!(*block_on(M.lock()), 1);
    }

    #[test]
    fn a_panicking_future_becomes_an_error() {
        let r = block_on(catch_unwind(async {
            if std::hint::black_box(true) {
                panic!("boom");
            }
            1
        }));
        assert_eq!(r, Err("boom".to_string()));
        assert_eq!(block_on(catch_unwind(async { 2 })), Ok(2));
    }
}
