//! A lean HTTP/1.1 client for plain-TCP upstreams that runs inside the request's own task.
//!
//! hyper's client runs every connection as a task of its own and hands it each request through
//! a channel, and each response back through another: two task switches, two wake-ups and a
//! channel round trip per request, about a third of the plain proxy path's instructions. For
//! the common case — a body-less request (GET, HEAD, DELETE…) to a plain HTTP/1.1 cluster — the
//! pool uses this client instead: the request's task writes the head, reads the response head
//! and then reads the body as the downstream connection pulls it ([`ResponseBody`]). Requests
//! with a body, upgrades, TLS and HTTP/2 clusters keep using hyper (see `pool::ClusterPool`).
//!
//! What it does, per RFC 9112:
//! - the request head goes out in one write; `Host` is the endpoint's when the request has none;
//! - 1xx interim responses are skipped (101 is an error: no upgrade was asked for);
//! - response framing: no body for HEAD, 204 and 304; `Transfer-Encoding` with `chunked` last is
//!   decoded (trailers are passed on as a trailers frame, less framing and hop-by-hop fields),
//!   any other transfer coding or no length at all
//!   means "until the upstream closes"; `Content-Length` must be one consistent number;
//! - a connection is reused only after an HTTP/1.1 response without `Connection: close`, read
//!   to its exact end with no stray bytes after it;
//! - an idle connection the upstream closed is seen as readable without a syscall (tokio's
//!   cached readiness), so it is never handed out ([`RawConn::is_usable`]).
//!
//! Example: any e2e test proxying a GET to an HTTP/1.1 cluster, e.g. `tests/e2e/pooling.rs`.

use super::limits::ConnSlot;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest response head (status line and headers) accepted: Envoy's default limit on
/// response headers is 60 KiB.
const MAX_HEAD: usize = 64 * 1024;
/// At most this many response headers (hyper's default).
const MAX_HEADERS: usize = 100;
/// The largest chunk-size line or trailer section accepted.
const MAX_CHUNK_LINE: usize = 4 * 1024;
const MAX_TRAILERS: usize = 16 * 1024;
/// Bytes reserved before each read of the response.
const READ_CHUNK: usize = 16 * 1024;

/// Why an upstream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    #[error("upstream connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("upstream closed the connection before responding")]
    ClosedBeforeResponse,
    #[error("upstream closed the connection in the middle of the response head")]
    TruncatedHead,
    #[error("upstream closed the connection before the end of the response body")]
    TruncatedBody,
    #[error("malformed upstream response: {0}")]
    Malformed(&'static str),
    #[error("upstream response head is over {MAX_HEAD} bytes")]
    HeadTooLarge,
}

/// A failed exchange, and whether the request may be sent again on another connection: the
/// head never got written, or (for an idempotent request) the upstream closed without sending
/// a byte — a reused keep-alive connection the upstream had just closed.
#[derive(Debug)]
pub struct SendFailure {
    pub error: H1Error,
    pub may_resend: bool,
}

// === impl RawConn ===

/// A plain-TCP HTTP/1.1 connection to one endpoint, owned by one request at a time. It holds
/// its place under the cluster's `max_connections` until it is dropped (closed). Boxed once
/// when dialed: requests move it around (pool, futures, response body) as one pointer.
pub struct RawConn(Box<ConnState>);

struct ConnState {
    stream: TcpStream,
    /// Response bytes read but not yet consumed.
    buf: BytesMut,
    /// The request head being written (kept for its capacity).
    head: Vec<u8>,
    _slot: ConnSlot,
}

impl RawConn {
    pub fn new(stream: TcpStream, slot: ConnSlot) -> RawConn {
        RawConn(Box::new(ConnState {
            stream,
            buf: BytesMut::new(),
            head: Vec::new(),
            _slot: slot,
        }))
    }

    /// The connection split back into its socket and slot (to hand it to hyper).
    pub fn into_parts(self) -> (TcpStream, ConnSlot) {
        let state = *self.0;
        (state.stream, state._slot)
    }

    /// Whether an idle connection can take a request: the upstream has neither closed it nor
    /// sent anything unasked. No syscall unless the socket was reported readable.
    pub fn is_usable(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.0.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Writes `req` (whose body is empty) and reads the response head. The response body is
    /// read by the returned [`ResponseBody`], which gives the connection back when it is
    /// reusable.
    pub async fn send<B>(
        mut self,
        req: &http::Request<B>,
        endpoint: &http::uri::Authority,
    ) -> Result<http::Response<ResponseBody>, SendFailure> {
        let conn = &mut *self.0;
        conn.encode_head(req, endpoint);
        if let Err(e) = conn.stream.write_all(&conn.head).await {
            // Not even the whole head reached the upstream: nothing was processed.
            return Err(SendFailure {
                error: e.into(),
                may_resend: true,
            });
        }
        let idempotent = req.method().is_idempotent();
        let (mut parts, framing, seen) =
            match conn.read_head(req.method() == http::Method::HEAD).await {
                Ok(h) => h,
                Err(error) => {
                    let may_resend = idempotent
                        && matches!(&error, H1Error::ClosedBeforeResponse | H1Error::Io(_))
                        && conn.buf.is_empty();
                    return Err(SendFailure { error, may_resend });
                }
            };
        let keep_alive = parts.version == http::Version::HTTP_11
            && !(seen.connection && has_token(&parts.headers, http::header::CONNECTION, "close"));
        if seen.content_length && (framing == Framing::Chunked || framing == Framing::UntilClose) {
            // The body's framing is the proxy's to choose downstream; a stale length is not.
            parts.headers.remove(http::header::CONTENT_LENGTH);
        }
        let body = ResponseBody::new(self, framing, keep_alive);
        Ok(http::Response::from_parts(parts, body))
    }
}

impl ConnState {
    /// The request head, as it goes on the wire, in `self.head`.
    fn encode_head<B>(&mut self, req: &http::Request<B>, endpoint: &http::uri::Authority) {
        let h = &mut self.head;
        h.clear();
        h.extend_from_slice(req.method().as_str().as_bytes());
        h.push(b' ');
        match req.uri().path_and_query() {
            Some(pq) => h.extend_from_slice(pq.as_str().as_bytes()),
            None => h.push(b'/'),
        }
        h.extend_from_slice(b" HTTP/1.1\r\n");
        if !req.headers().contains_key(http::header::HOST) {
            h.extend_from_slice(b"host: ");
            h.extend_from_slice(endpoint.as_str().as_bytes());
            h.extend_from_slice(b"\r\n");
        }
        for (name, value) in req.headers() {
            h.extend_from_slice(name.as_str().as_bytes());
            h.extend_from_slice(b": ");
            h.extend_from_slice(value.as_bytes());
            h.extend_from_slice(b"\r\n");
        }
        // A method whose requests usually carry a body says explicitly that this one has none
        // (as hyper does), so the upstream does not wait for one.
        let bodied_method = matches!(
            *req.method(),
            http::Method::POST | http::Method::PUT | http::Method::PATCH
        );
        if bodied_method && !req.headers().contains_key(http::header::CONTENT_LENGTH) {
            h.extend_from_slice(b"content-length: 0\r\n");
        }
        h.extend_from_slice(b"\r\n");
    }

    /// Reads until a final (non-1xx) response head is complete, and its body's framing.
    async fn read_head(
        &mut self,
        head_request: bool,
    ) -> Result<(http::response::Parts, Framing, Seen), H1Error> {
        let mut received = false;
        loop {
            if !self.buf.is_empty() {
                received = true;
                if let Some(head) = parse_head(&mut self.buf, head_request)? {
                    return Ok(head);
                }
                if self.buf.len() >= MAX_HEAD {
                    return Err(H1Error::HeadTooLarge);
                }
            }
            self.buf.reserve(READ_CHUNK);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(if received {
                    H1Error::TruncatedHead
                } else {
                    H1Error::ClosedBeforeResponse
                });
            }
        }
    }
}

/// Parses one response head from the front of `buf`, consuming it. `None`: incomplete. 1xx
/// interim responses are consumed and skipped.
fn parse_head(
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Option<(http::response::Parts, Framing, Seen)>, H1Error> {
    loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut slots);
        let len = match resp.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(H1Error::Malformed("too many headers"))
            }
            Err(_) => return Err(H1Error::Malformed("invalid response head")),
        };
        if len > MAX_HEAD {
            return Err(H1Error::HeadTooLarge);
        }
        let code = resp.code.unwrap_or(0);
        if (100..200).contains(&code) {
            if code == 101 {
                return Err(H1Error::Malformed(
                    "101 Switching Protocols without an upgrade",
                ));
            }
            buf.advance(len);
            continue;
        }
        let status = http::StatusCode::from_u16(code)
            .map_err(|_| H1Error::Malformed("invalid status code"))?;
        let version = if resp.version == Some(1) {
            http::Version::HTTP_11
        } else {
            http::Version::HTTP_10
        };
        // Header names and values become views of the head's bytes (no copy per header): note
        // where each one is (`len` is at most MAX_HEAD, so offsets fit in u32), then freeze.
        let base = buf.as_ptr() as usize;
        let count = resp.headers.len();
        let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
        for (span, h) in spans.iter_mut().zip(resp.headers.iter()) {
            let name = h.name.as_ptr() as usize - base;
            let value = h.value.as_ptr() as usize - base;
            *span = (
                name as u32,
                h.name.len() as u32,
                value as u32,
                h.value.len() as u32,
            );
        }
        let head = buf.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(count);
        let mut seen = Seen::default();
        for &(n, nl, v, vl) in &spans[..count] {
            let (n, v) = (n as usize, v as usize);
            let name = HeaderName::from_bytes(&head[n..n + nl as usize])
                .map_err(|_| H1Error::Malformed("invalid header name"))?;
            let value = HeaderValue::from_maybe_shared(head.slice(v..v + vl as usize))
                .map_err(|_| H1Error::Malformed("invalid header value"))?;
            seen.note(&name);
            headers.append(name, value);
        }
        let framing = framing(status, &headers, seen, head_request)?;
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = status;
        parts.version = version;
        parts.headers = headers;
        return Ok(Some((parts, framing, seen)));
    }
}

/// Which framing-related headers a response head has (noted while it is parsed, so a head
/// without them costs no lookups).
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    content_length: bool,
    transfer_encoding: bool,
    connection: bool,
}

impl Seen {
    fn note(&mut self, name: &HeaderName) {
        if name == http::header::CONTENT_LENGTH {
            self.content_length = true;
        } else if name == http::header::TRANSFER_ENCODING {
            self.transfer_encoding = true;
        } else if name == http::header::CONNECTION {
            self.connection = true;
        }
    }
}

/// Whether a comma-separated header has `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        let b = v.as_bytes();
        // Usually the value is one token (`keep-alive`, `close`): no splitting then.
        if !b.contains(&b',') {
            return b.trim_ascii().eq_ignore_ascii_case(token.as_bytes());
        }
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// How a response body ends (RFC 9112 §6.3).
fn framing(
    status: http::StatusCode,
    headers: &HeaderMap,
    seen: Seen,
    head_request: bool,
) -> Result<Framing, H1Error> {
    if head_request
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Length(0));
    }
    let transfer_encoding = match seen.transfer_encoding {
        true => headers
            .get_all(http::header::TRANSFER_ENCODING)
            .iter()
            .next_back(),
        false => None,
    };
    if let Some(last) = transfer_encoding {
        let chunked = last.to_str().is_ok_and(|s| {
            s.rsplit(',')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"))
        });
        return Ok(if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    if !seen.content_length {
        return Ok(Framing::UntilClose);
    }
    let mut length: Option<u64> = None;
    for v in headers.get_all(http::header::CONTENT_LENGTH) {
        for part in v.as_bytes().split(|&b| b == b',') {
            let n =
                decimal(part.trim_ascii()).ok_or(H1Error::Malformed("invalid content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(H1Error::Malformed("conflicting content-length values"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    })
}

/// A non-empty run of ASCII digits as a number (`None`: anything else, or over `u64`).
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let d = (b as char).to_digit(10)?;
        n.checked_mul(10)?.checked_add(d as u64)
    })
}

// === impl ResponseBody ===

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// This many bytes (0: no body).
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// Where a chunked body's decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// In a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one; bytes of trailers seen so far.
    Trailers(usize),
}

/// What the body still expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Remaining {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

/// An upstream response body read straight from its connection, in the downstream's task, as
/// the downstream pulls it. When it has been read to its end, [`ResponseBody::take_conn`] gives
/// back the connection if it can carry another request.
pub struct ResponseBody {
    conn: Option<RawConn>,
    remaining: Remaining,
    /// The whole body, when it was already read with the head.
    ready: Option<Bytes>,
    keep_alive: bool,
    /// The connection, once the body ended and it is reusable.
    done: Option<RawConn>,
    /// Trailer fields read so far (chunked bodies that have any).
    trailers: Option<HeaderMap>,
}

impl ResponseBody {
    fn new(mut conn: RawConn, framing: Framing, keep_alive: bool) -> ResponseBody {
        let mut body = ResponseBody {
            conn: None,
            remaining: Remaining::Done,
            ready: None,
            keep_alive,
            done: None,
            trailers: None,
        };
        match framing {
            Framing::Length(n) if (conn.0.buf.len() as u64) >= n => {
                // The common small response: all of it came with the head.
                if n > 0 {
                    body.ready = Some(conn.0.buf.split_to(n as usize).freeze());
                }
                body.conn = Some(conn);
                body.finish();
            }
            Framing::Length(n) => {
                body.remaining = Remaining::Length(n);
                body.conn = Some(conn);
            }
            Framing::Chunked => {
                body.remaining = Remaining::Chunked(Chunk::Size);
                body.conn = Some(conn);
            }
            Framing::UntilClose => {
                body.remaining = Remaining::UntilClose;
                body.keep_alive = false;
                body.conn = Some(conn);
            }
        }
        body
    }

    /// The connection, once the body has been read to its end and the connection may carry
    /// another request.
    pub fn take_conn(&mut self) -> Option<RawConn> {
        self.done.take()
    }

    /// The body has ended: keep the connection for reuse when that is safe.
    fn finish(&mut self) {
        self.remaining = Remaining::Done;
        if let Some(conn) = self.conn.take() {
            if self.keep_alive && conn.0.buf.is_empty() {
                self.done = Some(conn);
            }
        }
    }

    /// Reads more of the response into the connection's buffer; `Ok(0)`: the upstream closed.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, H1Error>> {
        let Some(RawConn(conn)) = self.conn.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        conn.buf.reserve(READ_CHUNK);
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut conn.stream),
            cx,
            &mut conn.buf
        ))?;
        Poll::Ready(Ok(n))
    }

    /// The next frame of a chunked body, decoding what is buffered and reading when needed:
    /// data, then the trailers when the upstream sent any.
    fn poll_chunked(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        loop {
            let Remaining::Chunked(state) = self.remaining else {
                return Poll::Ready(None);
            };
            let Some(RawConn(conn)) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let buf = &mut conn.buf;
            let step = match state {
                Chunk::Size => match take_line(buf, MAX_CHUNK_LINE)? {
                    Some(line) => {
                        let size = chunk_size(&line)?;
                        Some(if size == 0 {
                            Chunk::Trailers(0)
                        } else {
                            Chunk::Data(size)
                        })
                    }
                    None => None,
                },
                Chunk::Data(left) if !buf.is_empty() => {
                    let n = left.min(buf.len() as u64);
                    let data = buf.split_to(n as usize).freeze();
                    self.remaining = Remaining::Chunked(if n == left {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left - n)
                    });
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Chunk::Data(_) => None,
                Chunk::DataEnd if buf.len() >= 2 => {
                    if &buf[..2] != b"\r\n" {
                        return Poll::Ready(Some(Err(H1Error::Malformed(
                            "chunk data not followed by CRLF",
                        ))));
                    }
                    buf.advance(2);
                    Some(Chunk::Size)
                }
                Chunk::DataEnd => None,
                Chunk::Trailers(seen) => match take_line(buf, MAX_TRAILERS)? {
                    Some(line) if line.is_empty() => {
                        self.finish();
                        return Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))));
                    }
                    Some(line) => {
                        let seen = seen + line.len() + 2;
                        if seen > MAX_TRAILERS {
                            return Poll::Ready(Some(Err(H1Error::Malformed(
                                "trailers too large",
                            ))));
                        }
                        if let Some((name, value)) = trailer_field(&line)? {
                            self.trailers
                                .get_or_insert_with(HeaderMap::new)
                                .append(name, value);
                        }
                        Some(Chunk::Trailers(seen))
                    }
                    None => None,
                },
            };
            match step {
                Some(next) => self.remaining = Remaining::Chunked(next),
                None => {
                    if ready!(self.poll_fill(cx))? == 0 {
                        return Poll::Ready(Some(Err(H1Error::TruncatedBody)));
                    }
                }
            }
        }
    }
}

/// One CRLF-terminated line from the front of `buf` (without the CRLF); `None` when it is not
/// complete yet. A bare LF ends a line too (RFC 9112 §2.2 allows accepting it).
fn take_line(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, H1Error> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let mut line = buf.split_to(i + 1).freeze();
            line.truncate(i);
            if line.last() == Some(&b'\r') {
                line.truncate(i - 1);
            }
            Ok(Some(line))
        }
        None if buf.len() > max => Err(H1Error::Malformed("chunk line too long")),
        None => Ok(None),
    }
}

/// One trailer line as a field; `None` for fields that must not be passed on as trailers
/// (framing, routing and hop-by-hop fields: RFC 9110 §6.5.1).
fn trailer_field(line: &[u8]) -> Result<Option<(HeaderName, HeaderValue)>, H1Error> {
    let bad = || H1Error::Malformed("invalid trailer field");
    let colon = line.iter().position(|&b| b == b':').ok_or_else(bad)?;
    let name = HeaderName::from_bytes(&line[..colon]).map_err(|_| bad())?;
    let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).map_err(|_| bad())?;
    const NOT_TRAILERS: [&str; 9] = [
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "host",
        "proxy-connection",
    ];
    if NOT_TRAILERS.contains(&name.as_str()) {
        return Ok(None);
    }
    Ok(Some((name, value)))
}

/// The size of a chunk from its size line (extensions after `;` are ignored).
fn chunk_size(line: &[u8]) -> Result<u64, H1Error> {
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits = digits.trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(H1Error::Malformed("invalid chunk size"));
    }
    let mut n = 0u64;
    for &b in digits {
        let d = (b as char)
            .to_digit(16)
            .ok_or(H1Error::Malformed("invalid chunk size"))?;
        n = n * 16 + d as u64;
    }
    Ok(n)
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let this = &mut *self;
        if let Some(data) = this.ready.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        let result = match this.remaining {
            Remaining::Done => return Poll::Ready(None),
            Remaining::Chunked(_) => {
                let frame = ready!(this.poll_chunked(cx));
                if let Some(Err(_)) = frame {
                    // A broken body leaves the connection unusable.
                    this.conn = None;
                    this.remaining = Remaining::Done;
                }
                return Poll::Ready(frame);
            }
            Remaining::Length(left) => loop {
                let Some(RawConn(conn)) = this.conn.as_mut() else {
                    break None;
                };
                if !conn.buf.is_empty() {
                    let n = left.min(conn.buf.len() as u64);
                    let data = conn.buf.split_to(n as usize).freeze();
                    if n == left {
                        this.finish();
                    } else {
                        this.remaining = Remaining::Length(left - n);
                    }
                    break Some(Ok(data));
                }
                match ready!(this.poll_fill(cx)) {
                    Ok(0) => break Some(Err(H1Error::TruncatedBody)),
                    Ok(_) => {}
                    Err(e) => break Some(Err(e)),
                }
            },
            Remaining::UntilClose => loop {
                let Some(RawConn(conn)) = this.conn.as_mut() else {
                    break None;
                };
                if !conn.buf.is_empty() {
                    break Some(Ok(conn.buf.split().freeze()));
                }
                match ready!(this.poll_fill(cx)) {
                    Ok(0) => {
                        this.finish();
                        break None;
                    }
                    Ok(_) => {}
                    Err(e) => break Some(Err(e)),
                }
            },
        };
        match result {
            Some(Err(e)) => {
                // A broken body leaves the connection unusable.
                this.conn = None;
                this.remaining = Remaining::Done;
                Poll::Ready(Some(Err(e)))
            }
            Some(Ok(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_none() && self.remaining == Remaining::Done
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.ready, self.remaining) {
            (Some(b), _) => SizeHint::with_exact(b.len() as u64),
            (None, Remaining::Length(n)) => SizeHint::with_exact(n),
            (None, Remaining::Done) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_digits() {
        assert_eq!(decimal(b"0"), Some(0));
        assert_eq!(decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(decimal(b"18446744073709551616"), None);
        assert_eq!(decimal(b""), None);
        assert_eq!(decimal(b"+5"), None);
        assert_eq!(decimal(b"5 5"), None);
    }

    #[test]
    fn trailer_fields() {
        let (n, v) = trailer_field(b"Grpc-Status:  0 ").unwrap().unwrap();
        assert_eq!((n.as_str(), v.as_bytes()), ("grpc-status", &b"0"[..]));
        assert!(trailer_field(b"content-length: 5").unwrap().is_none());
        assert!(trailer_field(b"Connection: close").unwrap().is_none());
        assert!(trailer_field(b"no colon").is_err());
        assert!(trailer_field(b" folded: x").is_err());
        assert!(trailer_field(b"name : x").is_err());
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(b"1a").unwrap(), 26);
        assert_eq!(chunk_size(b"FF ; name=value").unwrap(), 255);
        assert_eq!(chunk_size(b"0").unwrap(), 0);
        assert!(chunk_size(b"").is_err());
        assert!(chunk_size(b"g").is_err());
        assert!(chunk_size(b"1000000000000000").is_err()); // 16 hex digits: too large
    }

    #[test]
    fn lines_end_at_lf_with_or_without_cr() {
        let mut buf = BytesMut::from(&b"5\r\nab\ncd"[..]);
        assert_eq!(take_line(&mut buf, 64).unwrap().as_deref(), Some(&b"5"[..]));
        assert_eq!(
            take_line(&mut buf, 64).unwrap().as_deref(),
            Some(&b"ab"[..])
        );
        assert_eq!(take_line(&mut buf, 64).unwrap(), None);
        assert!(take_line(&mut buf, 1).is_err());
    }
}
