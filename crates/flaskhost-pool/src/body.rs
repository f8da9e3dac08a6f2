//! The response body handed to the front: whole, or streamed from a worker through a small
//! bounded channel (so a slow client slows the worker down instead of filling memory).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;

use crate::error::StreamError;

pub enum ResponseBody {
    Full(Option<Bytes>),
    Stream(Stream),
}

/// A streamed body. An error right after data is held back for one poll: hyper buffers the
/// data and would drop the connection on the error before flushing it, losing bytes the app
/// produced. Returning `Pending` once (with a wake-up) lets hyper flush first.
pub struct Stream {
    rx: mpsc::Receiver<Result<Bytes, StreamError>>,
    after_data: bool,
    deferred: Option<StreamError>,
}

impl Stream {
    pub(crate) fn new(rx: mpsc::Receiver<Result<Bytes, StreamError>>) -> Stream {
        Stream {
            rx,
            after_data: false,
            deferred: None,
        }
    }
}

impl ResponseBody {
    pub fn empty() -> ResponseBody {
        ResponseBody::Full(None)
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        match self.get_mut() {
            ResponseBody::Full(b) => Poll::Ready(
                b.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            ResponseBody::Stream(s) => {
                if let Some(e) = s.deferred.take() {
                    return Poll::Ready(Some(Err(e)));
                }
                match s.rx.poll_recv(cx) {
                    Poll::Ready(Some(Ok(b))) => {
                        s.after_data = true;
                        Poll::Ready(Some(Ok(Frame::data(b))))
                    }
                    Poll::Ready(Some(Err(e))) if s.after_data => {
                        s.after_data = false;
                        s.deferred = Some(e);
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    other => {
                        s.after_data = false;
                        other.map(|o| o.map(|r| r.map(Frame::data)))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ResponseBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ResponseBody::Stream(_) => SizeHint::default(),
        }
    }
}
