//! Issue 3, point 4: every HTTP phase through weir — headers, bodies and trailers (HTTP/2 on
//! both sides); bodies stream chunk by chunk to continuing filters and are buffered for filters
//! that pause until end of stream (over the limit: 413 / 500); local responses from every
//! phase; pause + continue; `proxy_on_log` / `proxy_on_done` / `proxy_on_delete` once per
//! stream, also when the client disconnects mid-request.

use crate::guest::example;
use crate::support::{Client, DEADLINE};
use crate::upstream::HostUpstream;
use crate::util::{
    act, channel_body, e2e, filter, metric, metrics, next_data, post, simple, start, wait_metric,
};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

fn trailers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut t = HeaderMap::new();
    for (k, v) in pairs {
        t.insert(*k, HeaderValue::from_static(v));
    }
    t
}

/// POST /echo-body over h2c with `chunks` then `trailers`; returns (status, headers, body,
/// trailers) or the transport error.
async fn h2_echo(
    c: &mut Client,
    act_: &str,
    chunks: &[&'static [u8]],
    tr: Option<HeaderMap>,
) -> Result<(u16, HeaderMap, Bytes, Option<HeaderMap>), String> {
    h2_post(c, "/echo-body", act_, chunks, tr).await
}

/// POST `path` over h2c with `chunks` then `trailers`.
async fn h2_post(
    c: &mut Client,
    path: &str,
    act_: &str,
    chunks: &[&'static [u8]],
    tr: Option<HeaderMap>,
) -> Result<(u16, HeaderMap, Bytes, Option<HeaderMap>), String> {
    let (tx, body) = channel_body();
    let req = c
        .request(Method::POST, path)
        .header("x-act", act_)
        .body(body)
        .expect("request");
    let frames: Vec<Frame<Bytes>> = chunks
        .iter()
        .map(|c| Frame::data(Bytes::from_static(c)))
        .chain(tr.map(Frame::trailers))
        .collect();
    let feeder = tokio::spawn(async move {
        for f in frames {
            if tx.send(f).await.is_err() {
                return;
            }
        }
    });
    let resp = tokio::time::timeout(DEADLINE, c.send(req))
        .await
        .expect("response in time")
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let collected = tokio::time::timeout(DEADLINE, resp.into_body().collect())
        .await
        .expect("body in time")
        .map_err(|e| format!("{e:?}"))?;
    feeder.abort();
    let trailers = collected.trailers().cloned();
    Ok((status, headers, collected.to_bytes(), trailers))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_bodies_and_trailers_over_h2() {
    let up = HostUpstream::start().await;
    let weir = start(&simple(&up, &["f"], &e2e("f", "F", "")), 1).await;
    let mut c = Client::h2c(weir.addr("edge")).await;
    let (status, headers, body, tr) = h2_echo(
        &mut c,
        "upper@req,trailers",
        &[b"abc", b"def"],
        Some(trailers(&[("x-client-trailer", "1")])),
    )
    .await
    .expect("exchange");
    assert_eq!(status, 200);
    assert_eq!(headers.get("x-order-resp").unwrap(), "F");
    assert_eq!(&body[..], b"ABCDEF");
    let tr = tr.expect("response trailers");
    // Request trailers (the client's + the filter's) reached the upstream, which echoed them;
    // the filter added one to the response trailers.
    for k in [
        "x-client-trailer",
        "x-filter-req-trailer",
        "x-up-trailer",
        "x-filter-resp-trailer",
    ] {
        assert_eq!(
            tr.get(k).map(|v| v.as_bytes()),
            Some(&b"1"[..]),
            "{k} in {tr:?}"
        );
    }
}

/// A chain whose filters take no body callbacks (header_rewrite lists only `request_headers
/// response_headers` in `weir.callbacks`) sends both bodies past it: request data and trailers
/// go upstream as the client sent them, the upstream's come back as it sent them, over HTTP/2
/// on both sides — while the filter's header phases still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_go_past_a_chain_that_takes_no_bodies_over_h2() {
    let up = HostUpstream::start().await;
    let module = example("header_rewrite.wasm");
    let config =
        r#"{"request": {"set": {"x-env": "t"}}, "response": {"set": {"x-proxied-by": "weir"}}}"#;
    let filters = filter("hr", &module, config, "");
    let weir = start(&simple(&up, &["hr"], &filters), 1).await;
    let mut c = Client::h2c(weir.addr("edge")).await;
    let (status, headers, body, tr) = h2_echo(
        &mut c,
        "",
        &[b"abc", b"def", b"ghi"],
        Some(trailers(&[("x-client-trailer", "1")])),
    )
    .await
    .expect("exchange");
    assert_eq!(status, 200);
    assert_eq!(headers.get("x-proxied-by").unwrap(), "weir", "{headers:?}");
    assert_eq!(&body[..], b"abcdefghi");
    let tr = tr.expect("response trailers");
    for k in ["x-client-trailer", "x-up-trailer"] {
        assert_eq!(
            tr.get(k).map(|v| v.as_bytes()),
            Some(&b"1"[..]),
            "{k} in {tr:?}"
        );
    }
    // Nothing was held back: no body callback ran.
    let m = metrics(&weir).await;
    for phase in [
        "request_body",
        "request_trailers",
        "response_body",
        "response_trailers",
    ] {
        assert_eq!(
            metric(
                &m,
                &format!("weir_filter_duration_seconds_count{{filter=\"hr\",phase=\"{phase}\"}}")
            ),
            None,
            "{phase} ran"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_chunk_by_chunk_through_continuing_filters() {
    let up = HostUpstream::start().await;
    let weir = start(&simple(&up, &["f"], &e2e("f", "F", "")), 1).await;
    let mut c = Client::h2c(weir.addr("edge")).await;
    // upper@req: the filter uppercases each request chunk; upper@resp: each response chunk.
    // Chunk 2 is only sent once chunk 1 came back through upstream and proxy: streaming.
    for a in ["upper@req", "upper@resp"] {
        let (tx, body) = channel_body();
        let req = c
            .request(Method::POST, "/echo-body")
            .header("x-act", a)
            .body(body)
            .expect("request");
        tx.send(Frame::data(Bytes::from_static(b"one")))
            .await
            .unwrap();
        let resp = tokio::time::timeout(DEADLINE, c.send(req))
            .await
            .expect("headers in time")
            .expect("response");
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        assert_eq!(
            next_data(&mut body).await.as_deref(),
            Some(&b"ONE"[..]),
            "{a}"
        );
        tx.send(Frame::data(Bytes::from_static(b"two")))
            .await
            .unwrap();
        assert_eq!(
            next_data(&mut body).await.as_deref(),
            Some(&b"TWO"[..]),
            "{a}"
        );
        drop(tx);
        assert_eq!(next_data(&mut body).await, None, "{a}: end of body");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffering_filters_get_whole_bodies_up_to_their_limit() {
    let up = HostUpstream::start().await;
    let f = e2e("f", "F", "limits: { max_body_bytes: 64 }");
    let weir = start(&simple(&up, &["f"], &f), 1).await;
    let mut c = weir.h1("edge").await;
    // Held until end of stream, then uppercased whole.
    let r = post(&mut c, "/echo-body", "buffer@req", b"abcdefgh").await;
    assert_eq!((r.status, &r.body[..]), (200, &b"ABCDEFGH"[..]));
    let r = act(&mut c, "/big/40", "buffer@resp", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], &[b'A'; 40][..]);
    // Over the limit (two chunks of 40 held, limit 64): 413 for a request body.
    let mut c = weir.h1("edge").await;
    let (tx, body) = channel_body();
    let req = c
        .request(Method::POST, "/echo-body")
        .header("x-act", "buffer@req")
        .body(body)
        .unwrap();
    let feeder = tokio::spawn(async move {
        for _ in 0..2 {
            let _ = tx.send(Frame::data(Bytes::from_static(&[b'x'; 40]))).await;
        }
    });
    let r = c.fetch(req).await.expect("a response");
    assert_eq!(r.status, 413, "{}", r.text());
    feeder.abort();
    // Over the limit on a response body: the response head went out before the body reached
    // the filters, so the stream is broken off (Envoy resets such a stream too) — never a
    // complete 200.
    let mut c = weir.h1("edge").await;
    let req = c
        .request(Method::GET, "/big/100000")
        .header("x-act", "buffer@resp")
        .body(crate::support::empty())
        .unwrap();
    match c.fetch(req).await {
        Ok(r) => assert_eq!(r.status, 500, "{}", r.text()),
        Err(e) => assert!(
            e.is_incomplete_message()
                || e.is_body_write_aborted()
                || format!("{e:?}").contains("Body"),
            "{e:?}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_response_from_every_phase() {
    let up = HostUpstream::start().await;
    let weir = start(&simple(&up, &["f"], &e2e("f", "F", "")), 1).await;
    for phase in ["reqh", "reqb", "reqt", "resph", "respb", "respt"] {
        let mut c = Client::h2c(weir.addr("edge")).await;
        // Request phases: an upstream that reads the whole body before answering (the local
        // response must win over an upstream answer); response phases: the echo upstream.
        let path = if phase.starts_with("req") {
            "/drain"
        } else {
            "/echo-body"
        };
        let r = h2_post(
            &mut c,
            path,
            &format!("local@{phase}"),
            &[b"abc"],
            Some(trailers(&[("x-client-trailer", "1")])),
        )
        .await;
        if phase == "respt" {
            // The response head (and the first body frame) are already downstream when the
            // trailers reach the filters: a local response there resets the stream (as in
            // Envoy). From the first response body frame it still replaces the response.
            let e = r.expect_err("local response after the response head");
            assert!(e.contains("Reset"), "local@{phase}: {e}");
            continue;
        }
        let (status, headers, body, _) =
            r.unwrap_or_else(|e| panic!("local@{phase}: broken response: {e}"));
        assert_eq!(status, 451, "local@{phase}: {body:?}");
        assert_eq!(headers.get("x-local-phase").unwrap(), phase);
        assert_eq!(&body[..], format!("local {phase}").as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_then_continue_from_a_tick() {
    let up = HostUpstream::start().await;
    let weir = start(&simple(&up, &["f"], &e2e("f", "F", "")), 1).await;
    let mut c = weir.h1("edge").await;
    let r = act(&mut c, "/x", "pause@reqh", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-resumed").as_deref(), Some("tick"));
    let r = act(&mut c, "/x", "pause@resph", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-resumed").as_deref(), Some("tick"));
    assert_eq!(r.header("x-order-resp").as_deref(), Some("F"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_done_delete_once_per_stream_also_on_client_disconnect() {
    let up = HostUpstream::start().await;
    let weir = start(&simple(&up, &["life"], &e2e("life", "L", "")), 1).await;
    let mut c = weir.h1("edge").await;
    for _ in 0..5 {
        assert_eq!(c.get("/x").await.status, 200);
    }
    let series = |phase: &str| {
        format!("weir_filter_duration_seconds_count{{filter=\"life\",phase=\"{phase}\"}}")
    };
    wait_metric(&weir, &series("delete"), |v| v >= 5.0).await;

    // A request whose body never completes: the filter holds it; then the client goes away.
    let mut s = tokio::net::TcpStream::connect(weir.addr("edge"))
        .await
        .unwrap();
    s.write_all(b"POST /echo-body HTTP/1.1\r\nhost: x\r\nx-act: buffer@req\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    wait_metric(&weir, "e2e_life_requests_total", |v| v >= 6.0).await;
    wait_metric(&weir, &series("request_body"), |v| v >= 1.0).await;
    drop(s);
    wait_metric(&weir, &series("delete"), |v| v >= 6.0).await;
    let text = metrics(&weir).await;
    for phase in ["context_create", "done", "log", "delete"] {
        assert_eq!(metric(&text, &series(phase)), Some(6.0), "{phase}:\n{text}");
    }
    assert_eq!(metric(&text, "e2e_life_logs_total"), Some(6.0), "{text}");
    assert_eq!(metric(&text, "e2e_life_done_total"), Some(6.0), "{text}");
    // One more stream: exactly one more of each.
    assert_eq!(c.get("/x").await.status, 200);
    wait_metric(&weir, &series("delete"), |v| v >= 7.0).await;
    let text = metrics(&weir).await;
    for phase in ["done", "log", "delete"] {
        assert_eq!(metric(&text, &series(phase)), Some(7.0), "{phase}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_in_trailer_phases_then_continue() {
    let up = HostUpstream::start().await;
    let weir = start(&simple(&up, &["f"], &e2e("f", "F", "")), 1).await;
    let mut c = Client::h2c(weir.addr("edge")).await;
    let (status, _, body, tr) = h2_echo(
        &mut c,
        "pause@reqt,pause@respt,trailers",
        &[b"abc"],
        Some(trailers(&[("x-client-trailer", "1")])),
    )
    .await
    .expect("exchange");
    assert_eq!((status, &body[..]), (200, &b"abc"[..]));
    let tr = tr.expect("response trailers");
    for k in [
        "x-client-trailer",
        "x-filter-req-trailer",
        "x-filter-resp-trailer",
    ] {
        assert!(tr.contains_key(k), "{k} in {tr:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_paused_streams_resume_independently() {
    const N: usize = 32;
    let up = HostUpstream::start().await;
    let weir = start(&simple(&up, &["f"], &e2e("f", "F", "")), 1).await;
    let c = Client::h2c(weir.addr("edge")).await;
    let mut tasks = Vec::new();
    for i in 0..N {
        let mut c = c.h2_clone();
        tasks.push(tokio::spawn(async move {
            let id = i.to_string();
            let r = act(&mut c, "/x", "pause@reqh,pause@resph", &[("x-id", &id)]).await;
            assert_eq!(r.status, 200);
            assert_eq!(r.upstream_header("x-id"), Some(id));
            assert_eq!(r.upstream_header("x-resumed").as_deref(), Some("tick"));
            assert_eq!(r.header("x-resumed").as_deref(), Some("tick"));
        }));
    }
    for t in tasks {
        t.await.expect("stream");
    }
}
