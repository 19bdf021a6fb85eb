//! Response bodies: whole (every handler's [`Resp`]) or streamed from a channel.
//!
//! Handlers build a [`Resp`] with a `Full` body. One that produces a large body as it goes (a
//! backup archive, later large downloads) marks its response with [`streamed`]: the connection
//! layer then sends the chunks of the channel instead, as they come, with back-pressure (the
//! producer blocks while the client is slow) and an aborted transfer when the producer fails or
//! the client goes away.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::Response;
use tokio::sync::mpsc;

use super::routes::Resp;

/// What a streamed body's producer sends: data, or the error that ends the transfer.
pub type Chunk = Result<Bytes, std::io::Error>;

/// The receiving end of a streamed body, carried in the response's extensions.
#[derive(Clone)]
struct Streamed(Arc<Mutex<Option<mpsc::Receiver<Chunk>>>>);

/// Marks `resp` so that its body is what `rx` yields instead of its `Full` body.
pub fn streamed(mut resp: Resp, rx: mpsc::Receiver<Chunk>) -> Resp {
    resp.extensions_mut()
        .insert(Streamed(Arc::new(Mutex::new(Some(rx)))));
    resp
}

/// A body sent by the connection layer.
pub enum Body {
    /// Known in full.
    Full(Full<Bytes>),
    /// Produced as it goes.
    Stream(mpsc::Receiver<Chunk>),
}

/// Turns a handler's response into what hyper sends.
pub fn into_wire(resp: Resp) -> Response<Body> {
    let rx = resp
        .extensions()
        .get::<Streamed>()
        .and_then(|s| s.0.lock().ok().and_then(|mut g| g.take()));
    match rx {
        Some(rx) => resp.map(|_| Body::Stream(rx)),
        None => resp.map(Body::Full),
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Body::Full(f) => Pin::new(f).poll_frame(cx).map_err(|never| match never {}),
            Body::Stream(rx) => rx.poll_recv(cx).map(|c| c.map(|c| c.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(f) => f.is_end_stream(),
            Body::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(f) => f.size_hint(),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

/// A blocking [`std::io::Write`] into a streamed body: buffers, then sends chunks of
/// [`ChannelWriter::CHUNK`] bytes, waiting while the channel is full. Writing fails with
/// `BrokenPipe` once the client is gone.
pub struct ChannelWriter {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    /// Bytes per chunk sent.
    pub const CHUNK: usize = 256 * 1024;

    /// A writer into `tx`.
    pub fn new(tx: mpsc::Sender<Chunk>) -> ChannelWriter {
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(Self::CHUNK),
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(Self::CHUNK),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= Self::CHUNK {
            self.send()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::Write;

    #[tokio::test]
    async fn streamed_body_carries_the_chunks_then_the_error() {
        let (tx, rx) = mpsc::channel(2);
        let resp = streamed(Response::new(Full::new(Bytes::from_static(b"ignored"))), rx);
        let body = into_wire(resp).into_body();
        let producer = tokio::task::spawn_blocking(move || {
            let mut w = ChannelWriter::new(tx.clone());
            w.write_all(&vec![1u8; ChannelWriter::CHUNK + 10]).unwrap();
            w.flush().unwrap();
            tx.blocking_send(Err(std::io::Error::other("disk gone")))
                .unwrap();
        });
        let mut body = body;
        let mut got = 0;
        let err = loop {
            match body.frame().await {
                Some(Ok(f)) => got += f.into_data().map(|d| d.len()).unwrap_or(0),
                Some(Err(e)) => break e,
                None => panic!("ended without the error"),
            }
        };
        producer.await.unwrap();
        assert_eq!(got, ChannelWriter::CHUNK + 10);
        assert_eq!(err.to_string(), "disk gone");
        // A plain response keeps its body.
        let plain = into_wire(Response::new(Full::new(Bytes::from_static(b"abc"))));
        let b = plain.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&b[..], b"abc");
    }

    #[test]
    fn writer_fails_once_the_client_is_gone() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let mut w = ChannelWriter::new(tx);
        let e = w.write_all(&vec![0u8; ChannelWriter::CHUNK]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
    }
}
