//! Bodies through a filter chain. Request bodies are pumped by a local task (filters run on
//! the worker; the upstream client needs a `Send` body, fed through a channel) — unless no
//! filter takes them: then they go upstream as they are ([`RecordedBody`]). Response bodies
//! are filtered inside `poll_frame` ([`FilteredBody`], `!Send`, served by the worker's local
//! executor). Both deliver end-of-stream to filters exactly once, so filters that hold a body
//! until its end get it whole.

use crate::http::BoxError;
use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use weir_wasm::{
    BodyFlow, ChainStream, Flow, HeaderList, LocalResponse, RequestRecorder, ResponseRecorder,
    StreamError,
};

/// The chain stream of one request, shared by its request and response sides.
pub type SharedStream = Rc<super::stream_lock::StreamLock<ChainStream>>;

/// What stopped a request body early.
#[derive(Debug, Clone)]
pub enum BodyStop {
    Local(LocalResponse),
    Reset,
    TooLarge(u16),
}

#[derive(Debug, thiserror::Error)]
#[error("stream stopped by a filter")]
struct StoppedByFilter;

/// A `Send` body fed from a channel.
pub struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx)
    }
}

fn stop_of_flow(flow: BodyFlow) -> Result<Option<Bytes>, BodyStop> {
    match flow {
        BodyFlow::Continue(b) => Ok(Some(b)),
        BodyFlow::Hold => Ok(None),
        BodyFlow::LocalResponse(l) => Err(BodyStop::Local(l)),
        BodyFlow::Reset => Err(BodyStop::Reset),
    }
}

fn stop_of_error(e: StreamError) -> BodyStop {
    BodyStop::TooLarge(e.status())
}

/// Starts the request-body pump: downstream body → filters → returned channel body. A filter
/// that stops the body records why in `stopped` and fails the upstream body.
pub fn pump_request_body<B>(
    mut body: B,
    stream: SharedStream,
    stopped: Rc<RefCell<Option<BodyStop>>>,
) -> ChannelBody
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_local(async move {
        let mut eos_sent = false;
        let fail = |why: BodyStop| {
            *stopped.borrow_mut() = Some(why);
        };
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let out: Result<Vec<Frame<Bytes>>, BodyStop> = match frame.into_data() {
                Ok(data) => {
                    let eos = body.is_end_stream();
                    eos_sent |= eos;
                    let r = stream.lock().await.on_request_body(data, eos).await;
                    match r.map_err(stop_of_error).and_then(stop_of_flow) {
                        Ok(Some(b)) if !b.is_empty() => Ok(vec![Frame::data(b)]),
                        Ok(_) => Ok(vec![]),
                        Err(s) => Err(s),
                    }
                }
                Err(frame) => match frame.into_trailers() {
                    Ok(t) => {
                        eos_sent = true;
                        let r = stream
                            .lock()
                            .await
                            .on_request_trailers(HeaderList::from_header_map(&t))
                            .await;
                        match r {
                            Ok(tf) => {
                                let mut v = Vec::new();
                                if let Some(b) = tf.flushed_body.filter(|b| !b.is_empty()) {
                                    v.push(Frame::data(b));
                                }
                                match tf.flow {
                                    Flow::Continue => {
                                        let t = stream
                                            .lock()
                                            .await
                                            .request_trailers()
                                            .to_header_map()
                                            .unwrap_or(t);
                                        v.push(Frame::trailers(t));
                                        Ok(v)
                                    }
                                    Flow::LocalResponse(l) => Err(BodyStop::Local(l)),
                                    Flow::Reset => Err(BodyStop::Reset),
                                }
                            }
                            Err(e) => Err(stop_of_error(e)),
                        }
                    }
                    Err(_) => Ok(vec![]),
                },
            };
            match out {
                Ok(frames) => {
                    for f in frames {
                        if tx.send(Ok(f)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(why) => {
                    fail(why);
                    let _ = tx.send(Err(Box::new(StoppedByFilter))).await;
                    return;
                }
            }
        }
        if !eos_sent {
            let r = stream
                .lock()
                .await
                .on_request_body(Bytes::new(), true)
                .await;
            match r.map_err(stop_of_error).and_then(stop_of_flow) {
                Ok(Some(b)) if !b.is_empty() => {
                    let _ = tx.send(Ok(Frame::data(b))).await;
                }
                Ok(_) => {}
                Err(why) => {
                    fail(why);
                    let _ = tx.send(Err(Box::new(StoppedByFilter))).await;
                }
            }
        }
    });
    ChannelBody { rx }
}

/// What one step of the chain releases: at most a data frame and a trailers frame, in order
/// (no heap allocation per step).
type Frames = [Option<Frame<Bytes>>; 2];

type Step = LocalBoxFuture<'static, Result<Frames, BoxError>>;

/// A response body passed through the response phases of a chain (`!Send`).
pub struct FilteredBody<B> {
    inner: B,
    stream: SharedStream,
    /// Why a filter stopped the body, for the proxy to answer with while the response head
    /// has not been sent yet.
    stop: Rc<RefCell<Option<BodyStop>>>,
    pending: Option<Step>,
    /// Frames released by the last step, not yet returned (front first).
    out: Frames,
    eos_sent: bool,
    inner_done: bool,
}

impl<B> FilteredBody<B> {
    pub fn new(inner: B, stream: SharedStream) -> Self {
        FilteredBody {
            inner,
            stream,
            stop: Default::default(),
            pending: None,
            out: [None, None],
            eos_sent: false,
            inner_done: false,
        }
    }

    /// Where the reason a filter stopped the body is recorded.
    pub fn stop_slot(&self) -> Rc<RefCell<Option<BodyStop>>> {
        self.stop.clone()
    }
}

fn body_step(
    stream: SharedStream,
    stop: Rc<RefCell<Option<BodyStop>>>,
    data: Bytes,
    eos: bool,
) -> Step {
    Box::pin(async move {
        let r = stream.lock().await.on_response_body(data, eos).await;
        let why = match r {
            Ok(BodyFlow::Continue(b)) if !b.is_empty() => return Ok([Some(Frame::data(b)), None]),
            Ok(BodyFlow::Continue(_)) | Ok(BodyFlow::Hold) => return Ok([None, None]),
            Ok(BodyFlow::LocalResponse(l)) => BodyStop::Local(l),
            Ok(BodyFlow::Reset) => BodyStop::Reset,
            Err(e) => BodyStop::TooLarge(e.status()),
        };
        *stop.borrow_mut() = Some(why);
        Err(Box::new(StoppedByFilter) as BoxError)
    })
}

fn trailers_step(
    stream: SharedStream,
    stop: Rc<RefCell<Option<BodyStop>>>,
    trailers: http::HeaderMap,
) -> Step {
    Box::pin(async move {
        let mut s = stream.lock().await;
        let tf = match s
            .on_response_trailers(HeaderList::from_header_map(&trailers))
            .await
        {
            Ok(tf) => tf,
            Err(e) => {
                *stop.borrow_mut() = Some(BodyStop::TooLarge(e.status()));
                return Err(Box::new(e) as BoxError);
            }
        };
        let flushed = tf.flushed_body.filter(|b| !b.is_empty()).map(Frame::data);
        match tf.flow {
            Flow::Continue => {
                let t = s.response_trailers().to_header_map().unwrap_or(trailers);
                Ok([flushed, Some(Frame::trailers(t))])
            }
            Flow::LocalResponse(l) => {
                *stop.borrow_mut() = Some(BodyStop::Local(l));
                Err(Box::new(StoppedByFilter) as BoxError)
            }
            Flow::Reset => {
                *stop.borrow_mut() = Some(BodyStop::Reset);
                Err(Box::new(StoppedByFilter) as BoxError)
            }
        }
    })
}

impl<B> Body for FilteredBody<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(f) = this.out.iter_mut().find_map(Option::take) {
                return Poll::Ready(Some(Ok(f)));
            }
            if let Some(step) = this.pending.as_mut() {
                match step.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(frames)) => {
                        this.pending = None;
                        this.out = frames;
                        continue;
                    }
                    Poll::Ready(Err(e)) => {
                        this.pending = None;
                        this.inner_done = true;
                        this.eos_sent = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
            if this.inner_done {
                if !this.eos_sent {
                    this.eos_sent = true;
                    this.pending = Some(body_step(
                        this.stream.clone(),
                        this.stop.clone(),
                        Bytes::new(),
                        true,
                    ));
                    continue;
                }
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => this.inner_done = true,
                Poll::Ready(Some(Err(e))) => {
                    this.inner_done = true;
                    this.eos_sent = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let eos = this.inner.is_end_stream();
                        if eos {
                            this.eos_sent = true;
                            this.inner_done = true;
                        }
                        this.pending =
                            Some(body_step(this.stream.clone(), this.stop.clone(), data, eos));
                    }
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            this.eos_sent = true;
                            this.inner_done = true;
                            this.pending =
                                Some(trailers_step(this.stream.clone(), this.stop.clone(), t));
                        }
                    }
                },
            }
        }
    }

    /// True once the end went through the filters and every frame they released was returned.
    /// A server that stops at the declared content length (hyper does) then sees a complete
    /// body, not one dropped early.
    fn is_end_stream(&self) -> bool {
        self.eos_sent && self.pending.is_none() && self.out.iter().all(Option::is_none)
    }
}

/// Where a body that passes a chain untouched reports what it carried.
pub trait FrameRecorder {
    /// A data frame of `len` bytes went through.
    fn data(&self, len: usize);
    /// The body's trailers.
    fn trailers(&self, trailers: &http::HeaderMap);
}

impl FrameRecorder for ResponseRecorder {
    fn data(&self, len: usize) {
        ResponseRecorder::data(self, len)
    }
    fn trailers(&self, trailers: &http::HeaderMap) {
        ResponseRecorder::trailers(self, trailers)
    }
}

impl FrameRecorder for RequestRecorder {
    fn data(&self, len: usize) {
        RequestRecorder::data(self, len)
    }
    fn trailers(&self, trailers: &http::HeaderMap) {
        RequestRecorder::trailers(self, trailers)
    }
}

/// A body that no filter of the chain takes (no body or trailer callbacks in its modules'
/// `weir.callbacks`): frames pass unchanged, without a step through the chain (and, for a
/// request, without the pump task and its channel); their size and the trailers go to the
/// recorder `R`, for the `request.size` / `response.size` and `*.trailers` properties of the
/// filters' later callbacks. `K` is kept alive with the body: for a response, the chain stream,
/// so the filters' `done`/`log` callbacks still come after the whole response, as with
/// [`FilteredBody`]. `Send` when `B`, `R` and `K` are (a request body: the upstream client
/// needs one).
pub struct RecordedBody<B, R, K = ()> {
    inner: B,
    recorder: R,
    _keep: K,
}

/// A response body past the chain, holding the chain stream until it is done or dropped.
pub type Passthrough<B> = RecordedBody<B, ResponseRecorder, SharedStream>;

/// A request body past the chain, on its way upstream.
pub type RecordedRequestBody<B> = RecordedBody<B, RequestRecorder>;

impl<B> Passthrough<B> {
    pub fn new(inner: B, stream: SharedStream, recorder: ResponseRecorder) -> Self {
        RecordedBody {
            inner,
            recorder,
            _keep: stream,
        }
    }
}

impl<B> RecordedRequestBody<B> {
    pub fn new(inner: B, recorder: RequestRecorder) -> Self {
        RecordedBody {
            inner,
            recorder,
            _keep: (),
        }
    }
}

impl<B, R, K> Body for RecordedBody<B, R, K>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
    R: FrameRecorder + Unpin,
    K: Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.recorder.data(data.len());
            } else if let Some(trailers) = frame.trailers_ref() {
                self.recorder.trailers(trailers);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Turns a filter's local response into an HTTP response head + body bytes.
pub fn local_to_http(l: &LocalResponse) -> http::Response<Bytes> {
    let mut resp = http::Response::new(l.body.clone());
    *resp.status_mut() =
        http::StatusCode::from_u16(l.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(h) = l.headers.to_header_map() {
        resp.headers_mut().extend(h);
    }
    resp
}

/// A body whose first frame was already read (the proxy reads it before sending the response
/// head, so a response filter can still replace the whole response).
pub struct Prepend<B> {
    first: Option<Frame<Bytes>>,
    rest: B,
}

impl<B> Prepend<B> {
    pub fn new(first: Option<Frame<Bytes>>, rest: B) -> Self {
        Prepend { first, rest }
    }
}

impl<B> Body for Prepend<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(f) = self.first.take() {
            return Poll::Ready(Some(Ok(f)));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }
}
