//! Issue 3, points 8–9: metrics defined by a filter (counter, gauge, histogram) on the admin
//! /metrics with their values; properties over real sockets (plain and mTLS listeners), encoded
//! as Envoy encodes them; an unknown property is NOT_FOUND.

use crate::support::certs::CLIENT_SPIFFE_ID;
use crate::support::{Certs, Client, TempDir, Weir};
use crate::upstream::HostUpstream;
use crate::util::{act, clusters, decode_map, e2e, metric, metrics, parse_props, simple, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_metrics_on_admin_metrics() {
    let up = HostUpstream::start().await;
    let weir = start(&simple(&up, &["m"], &e2e("m", "M", "")), 1).await;
    let mut c = weir.h1("edge").await;
    for _ in 0..3 {
        assert_eq!(c.get("/x").await.status, 200);
    }
    let text = metrics(&weir).await;
    for t in [
        "# TYPE e2e_m_requests_total counter",
        "# TYPE e2e_m_gauge gauge",
        "# TYPE e2e_m_hist histogram",
    ] {
        assert!(text.lines().any(|l| l == t), "{t}:\n{text}");
    }
    assert_eq!(metric(&text, "e2e_m_requests_total"), Some(3.0), "{text}");
    assert_eq!(metric(&text, "e2e_m_gauge"), Some(7.0), "{text}");
    assert_eq!(metric(&text, "e2e_m_hist_count"), Some(3.0), "{text}");
    assert_eq!(metric(&text, "e2e_m_hist_sum"), Some(126.0), "{text}");
    assert_eq!(
        metric(&text, "e2e_m_hist_bucket{le=\"25\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "e2e_m_hist_bucket{le=\"50\"}"),
        Some(3.0),
        "{text}"
    );
}

const PATHS: &str = "source.address,source.port,destination.address,destination.port,\
request.path,request.url_path,request.query,request.host,request.scheme,request.method,\
request.headers,request.headers.x-twice,request.id,request.protocol,connection.mtls,connection.requested_server_name,\
connection.uri_san_peer_certificate,connection.tls_version,plugin_name,plugin_root_id,\
plugin_vm_id,route_name,cluster_name,xds.cluster_name,no.such.property";

fn i64_le(v: &[u8]) -> i64 {
    i64::from_le_bytes(v.try_into().expect("8 bytes"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn properties_over_sockets_as_envoy_encodes_them() {
    let up = HostUpstream::start().await;
    let dir = TempDir::new("props");
    let certs = Certs::generate(dir.path());
    let yaml = format!(
        "listeners:\n  - name: edge\n    address: 127.0.0.1:0\n    filters: [p]\n    routes:\n      - name: plain-route\n        match: {{ path_prefix: / }}\n        cluster: up\n  - name: sec\n    address: 127.0.0.1:0\n    tls: {{ cert: {cert}, key: {key}, client_ca: {ca} }}\n    filters: [p]\n    routes:\n      - name: tls-route\n        match: {{ path_prefix: / }}\n        cluster: up\n{clusters}filters:\n{f}",
        cert = certs.server_cert.display(),
        key = certs.server_key.display(),
        ca = certs.ca.display(),
        clusters = clusters(&up),
        f = e2e("p", "P", "root_id: the-root\nvm_id: the-vm"),
    );
    let weir = Weir::start_with(&yaml, 1, dir).await;

    // Plain HTTP/1.1.
    let mut c = weir.h1("edge").await;
    let r = act(
        &mut c,
        "/a/b?x=1&y=2",
        "props",
        &[
            ("x-props", PATHS),
            ("x-request-id", "rid-1"),
            ("x-twice", "a"),
            ("x-twice", "b"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let p = parse_props(&r.text());
    let s = |k: &str| -> String {
        String::from_utf8(p[k].clone().unwrap_or_else(|e| panic!("{k}: {e}"))).unwrap()
    };
    let b = |k: &str| -> Vec<u8> { p[k].clone().unwrap_or_else(|e| panic!("{k}: {e}")) };
    let edge = weir.addr("edge");
    assert!(
        s("source.address").starts_with("127.0.0.1:"),
        "{}",
        s("source.address")
    );
    let src_port: i64 = s("source.address")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(i64_le(&b("source.port")), src_port);
    assert_eq!(s("destination.address"), edge.to_string());
    assert_eq!(i64_le(&b("destination.port")), edge.port() as i64);
    assert_eq!(s("request.path"), "/a/b?x=1&y=2");
    assert_eq!(s("request.url_path"), "/a/b");
    assert_eq!(s("request.query"), "x=1&y=2");
    assert_eq!(s("request.host"), edge.to_string());
    assert_eq!(s("request.scheme"), "http");
    assert_eq!(s("request.method"), "GET");
    assert_eq!(s("request.id"), "rid-1");
    assert_eq!(s("request.protocol"), "HTTP/1.1");
    let hdrs = decode_map(&b("request.headers"));
    assert!(hdrs.contains(&("x-act".into(), "props".into())), "{hdrs:?}");
    assert!(
        hdrs.contains(&("x-request-id".into(), "rid-1".into())),
        "{hdrs:?}"
    );
    // As Envoy: pseudo-headers included, a repeated header once with its values joined by ",".
    assert!(hdrs.contains(&(":method".into(), "GET".into())), "{hdrs:?}");
    assert!(hdrs.contains(&("x-twice".into(), "a,b".into())), "{hdrs:?}");
    assert_eq!(s("request.headers.x-twice"), "a,b");
    assert_eq!(b("connection.mtls"), vec![0]);
    assert_eq!(s("plugin_name"), "p");
    assert_eq!(s("plugin_root_id"), "the-root");
    assert_eq!(s("plugin_vm_id"), "the-vm");
    assert_eq!(s("route_name"), "plain-route");
    // The cluster is known once the route is chosen, before any request phase (as in Envoy).
    assert_eq!(s("cluster_name"), "up");
    assert_eq!(s("xds.cluster_name"), "up");
    assert_eq!(p["no.such.property"], Err("NotFound".to_string()));

    // mTLS with a client certificate (URI SAN spiffe://...), ALPN http/1.1.
    let mut c = Client::tls(
        weir.addr("sec"),
        certs.client_config(&["http/1.1"], true),
        "localhost",
    )
    .await
    .expect("mTLS handshake");
    let r = act(&mut c, "/t", "props", &[("x-props", PATHS)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let p = parse_props(&r.text());
    let s = |k: &str| -> String {
        String::from_utf8(p[k].clone().unwrap_or_else(|e| panic!("{k}: {e}"))).unwrap()
    };
    assert_eq!(p["connection.mtls"], Ok(vec![1]));
    assert_eq!(s("request.scheme"), "https");
    assert_eq!(s("connection.requested_server_name"), "localhost");
    assert_eq!(s("connection.uri_san_peer_certificate"), CLIENT_SPIFFE_ID);
    assert!(
        s("connection.tls_version").starts_with("TLSv1."),
        "{}",
        s("connection.tls_version")
    );
    assert_eq!(s("route_name"), "tls-route");
}
