//! Request bodies read ahead so that they can be sent more than once: to retry a request that
//! has a body (Envoy buffers it for its retry policy the same way) and to mirror it. Only a body
//! that ends within [`REPLAY_LIMIT`] (and before the route's deadline) is kept; a longer or
//! slower one streams on and is sent once.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use super::{BoxError, ProxyBody};

/// The most of a request body kept for replay (Envoy's default buffer limit, 1 MiB).
pub const REPLAY_LIMIT: u64 = 1 << 20;

/// A whole request body, kept to be sent again.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    data: Vec<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Replay {
    /// A new body with the same data and trailers.
    pub fn body(&self) -> ProxyBody {
        ReadAhead::new(self.clone(), None, None).boxed_unsync()
    }
}

/// Reads `body` ahead, up to `limit` bytes and until `deadline` (the route's): `Ok` with the
/// whole body when it ended within both, else `Err` with a body that yields what was read and
/// then the rest (or the error that stopped the reading), to be sent once.
pub async fn read_ahead(
    mut body: ProxyBody,
    limit: u64,
    deadline: Option<Instant>,
) -> Result<Replay, ProxyBody> {
    let mut kept = Replay::default();
    let mut read = 0u64;
    let rest = loop {
        let frame = match deadline {
            // A frame future only polls the body: dropping it at the deadline loses nothing.
            Some(at) => match tokio::time::timeout_at(at.into(), body.frame()).await {
                Ok(frame) => frame,
                Err(_) => break Ok(body),
            },
            None => body.frame().await,
        };
        match frame {
            None => return Ok(kept),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    read += data.len() as u64;
                    kept.data.push(data);
                    if read > limit {
                        break Ok(body);
                    }
                }
                // Trailers end a body.
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        kept.trailers = Some(trailers);
                    }
                }
            },
            Some(Err(e)) => break Err(e),
        }
    };
    let (rest, error) = match rest {
        Ok(body) => (Some(body), None),
        Err(e) => (None, Some(e)),
    };
    Err(ReadAhead::new(kept, rest, error).boxed_unsync())
}

/// Frames already read, then the rest of the body or the error that ended the reading.
struct ReadAhead {
    data: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    rest: Option<ProxyBody>,
    error: Option<BoxError>,
}

impl ReadAhead {
    fn new(kept: Replay, rest: Option<ProxyBody>, error: Option<BoxError>) -> Self {
        ReadAhead {
            data: kept.data.into(),
            trailers: kept.trailers,
            rest,
            error,
        }
    }
}

impl Body for ReadAhead {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(d) = self.data.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        if let Some(rest) = self.rest.as_mut() {
            return Pin::new(rest).poll_frame(cx);
        }
        if let Some(e) = self.error.take() {
            return Poll::Ready(Some(Err(e)));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
            && self.trailers.is_none()
            && self.error.is_none()
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let kept: u64 = self.data.iter().map(|d| d.len() as u64).sum();
        match &self.rest {
            None => SizeHint::with_exact(kept),
            Some(rest) => {
                let r = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(kept + r.lower());
                if let Some(u) = r.upper() {
                    hint.set_upper(kept + u);
                }
                hint
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn chunks(parts: &[&'static str], trailers: bool) -> ProxyBody {
        let mut frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        if trailers {
            let mut t = HeaderMap::new();
            t.insert("x-sum", "1".parse().unwrap());
            frames.push(Ok(Frame::trailers(t)));
        }
        StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    #[tokio::test]
    async fn a_short_body_is_kept_whole_and_replays_with_its_trailers() {
        let replay = read_ahead(chunks(&["ab", "cd"], true), 10, None)
            .await
            .unwrap();
        for _ in 0..2 {
            let got = replay.body().collect().await.unwrap();
            assert_eq!(got.trailers().unwrap()["x-sum"], "1");
            assert_eq!(got.to_bytes(), "abcd");
        }
    }

    #[tokio::test]
    async fn a_long_body_streams_on_whole_once() {
        let Err(body) = read_ahead(chunks(&["abc", "def", "gh"], false), 4, None).await else {
            panic!("kept a body over the limit");
        };
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcdefgh");
    }

    #[tokio::test]
    async fn a_body_still_coming_at_the_deadline_streams_on_once() {
        // Two chunks, then a sender that has not finished: reading ahead stops at the deadline
        // and what was read comes first.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        tx.send(Ok(Frame::data(Bytes::from_static(b"ab"))))
            .await
            .unwrap();
        let body = StreamBody::new(tokio_stream_from(rx)).boxed_unsync();
        let at = Instant::now();
        let Err(body) = read_ahead(body, 1 << 20, Some(at)).await else {
            panic!("kept a body that had not ended");
        };
        tx.send(Ok(Frame::data(Bytes::from_static(b"cd"))))
            .await
            .unwrap();
        drop(tx);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcd");
    }

    fn tokio_stream_from<T>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
