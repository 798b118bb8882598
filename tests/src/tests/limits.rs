//! Client-side limits end to end: request bodies that fall behind their pace, and connection
//! caps per listener and per client address.

use std::time::Duration;

use crate::client::Raw;
use crate::gateway;
use crate::origin::Origin;

/// A body trickled one byte every 400 ms (each byte well inside the idle timeout, so only the
/// pace stops it) is cut off once its allowance (`http.body_timeout = "2s"`, 500 bytes/s earn
/// a second) is spent: 408, the connection closed, nothing more forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_falls_behind_its_pace_is_cut_off() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string())
        .http("body_timeout = \"2s\"\nmin_body_rate = 500")
        .run();
    let mut c = Raw::connect(gw.addr, &gw.ca).await;
    c.send(b"POST /sink HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n")
        .await
        .expect("head");
    let started = tokio::time::Instant::now();
    let trickle = async {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            if c.send(b"x").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(4), trickle).await;
    assert!(
        c.is_closed().await,
        "the slow body's connection is still open"
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(12), "closed only after {took:?}");
    let refused = gw
        .wait_for_records(1, |r| r["status"] == 408 && r["path"] == "/sink")
        .await;
    assert!(!refused.is_empty(), "no 408 record for the slow body");
}

/// With `max_connections_per_ip = 2`, a third connection from the same address is closed before
/// TLS while the two are served; once one closes, a new one is served; the metric counts the
/// refusal. `max_connections = 3` caps the listener the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_refuse_the_one_too_many() {
    let origin = Origin::start().await;
    let port = gateway::free_port();
    let gw = gateway::new(origin.addr.to_string())
        .listener("max_connections = 3\nmax_connections_per_ip = 2")
        .section(&format!("[admin]\naddress = \"127.0.0.1:{port}\""))
        .run();
    let get = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut first = Raw::connect(gw.addr, &gw.ca).await;
    let mut second = Raw::connect(gw.addr, &gw.ca).await;
    let third = Raw::try_connect(gw.addr, &gw.ca, None).await;
    assert!(
        third.is_err(),
        "a third connection from one address got TLS"
    );
    for c in [&mut first, &mut second] {
        c.send(get).await.expect("send");
        assert_eq!(c.read_response(false).await.expect("served").status, 200);
    }
    drop(first);
    let mut again = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok(c) = Raw::try_connect(gw.addr, &gw.ca, None).await {
            again = Some(c);
            break;
        }
    }
    let mut again = again.expect("a place came free, yet new connections are refused");
    again.send(get).await.expect("send");
    assert_eq!(
        again.read_response(false).await.expect("served").status,
        200
    );

    // From another address (127.0.0.2 is loopback too): the listener's cap of 3 is what holds.
    let from_other = || async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.2:0".parse().expect("addr"))
            .expect("bind");
        let tcp = socket.connect(gw.addr).await.expect("tcp");
        Raw::over(tcp, &gw.ca).await
    };
    let third_in_all = from_other().await;
    assert!(
        third_in_all.is_ok(),
        "the third connection in all, from another address, was refused"
    );
    assert!(
        from_other().await.is_err(),
        "a fourth connection in all got TLS"
    );
    drop((second, again, third_in_all));

    let metrics = crate::client::http(&gw.ca)
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for reason in ["max_connections_per_ip", "max_connections"] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("moat_connections_refused_total{")
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .unwrap_or_else(|| panic!("no {reason} refusals counted:\n{metrics}"));
        let n: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a count");
        assert!(n >= 1.0, "{line}");
    }
}

/// Slowloris and slow POST together: 250 connections trickling a request head and 250 trickling
/// a body, one byte a second each, opened at 200 a second, are all closed within their windows
/// (`http.header_timeout`, `http.body_timeout`, shortened here to 3 s), while a normal client
/// keeps being served on a connection of its own (its latencies are printed, not asserted:
/// timings are measured, see docs/http.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_and_slow_bodies_are_closed_while_others_are_served() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string())
        .http("header_timeout = \"3s\"\nbody_timeout = \"3s\"\nmin_body_rate = 500")
        .run();
    let started = tokio::time::Instant::now();
    let (addr, ca) = (gw.addr, gw.ca.clone());
    // Opened as slowloris tools open them: at a rate (200 a second here), not all at once.
    let opener = tokio::spawn(async move {
        let mut slow = tokio::task::JoinSet::new();
        for i in 0..500 {
            let ca = ca.clone();
            tokio::time::sleep(Duration::from_millis(5)).await;
            slow.spawn(async move {
                let mut c = Raw::connect(addr, &ca).await;
                let (first, trickle): (&[u8], &[u8]) = if i % 2 == 0 {
                    (b"GET / HTTP/1.1\r\n", b"x")
                } else {
                    (
                        b"POST /sink HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n",
                        b"y",
                    )
                };
                let _ = c.send(first).await;
                // One byte a second until moat closes the connection (or 30 s pass).
                for _ in 0..30 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if c.send(trickle).await.is_err() {
                        break;
                    }
                }
                c.is_closed().await
            });
        }
        slow
    });
    // A normal client, on its own connection, throughout.
    let mut normal = Raw::connect(gw.addr, &gw.ca).await;
    let mut times = Vec::new();
    while started.elapsed() < Duration::from_secs(8) {
        let t = tokio::time::Instant::now();
        normal
            .send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("send");
        let r = normal.read_response(false).await.expect("served");
        assert_eq!(r.status, 200);
        times.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut slow = opener.await.expect("opener");
    let mut closed = 0;
    while let Some(c) = slow.join_next().await {
        if c.expect("slow client") {
            closed += 1;
        }
    }
    assert_eq!(closed, 500, "slow connections left open");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "closing them all took {took:?}"
    );
    assert!(
        times.len() >= 30,
        "only {} normal requests in 8 s",
        times.len()
    );
    times.sort();
    eprintln!(
        "500 slow connections closed in {took:?}; {} normal requests, median {:?}, slowest {:?}",
        times.len(),
        times[times.len() / 2],
        times[times.len() - 1]
    );
}

/// A client that goes away in the middle of a request body (HTTP/1.1: the connection closed;
/// HTTP/2: the stream reset) is recorded as `client_aborted` with status 0 and the body bytes
/// that arrived — not as a 400 refusal — and leaves no WARN line and no library URL in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_body_is_client_aborted_not_refused() {
    let origin = Origin::start().await;
    // `/sink` names models, so its body's start is read before anything is forwarded; `/echo`
    // streams its body to the upstream.
    let gw = gateway::new(origin.addr.to_string())
        .policy(
            "[[policy.rules]]\nid = \"models\"\npaths = [\"/sink\"]\nmodels = [\"m\"]\nrequire_region = false\naction = \"allow\"\n\n[[policy.rules]]\nid = \"echo\"\npaths = [\"/echo\"]\nrequire_region = false\naction = \"allow\"\n",
        )
        .run();
    let mut c = Raw::connect(gw.addr, &gw.ca).await;
    c.send(b"POST /sink HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"messages\"")
        .await
        .expect("send");
    // Gone without a TLS close_notify, as a crashed client goes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(c);
    let mut h2 = crate::h2raw::H2Raw::connect(gw.addr, &gw.ca).await;
    let mut fields = crate::h2raw::request("POST", "/echo");
    fields.push(("content-length", "1000".into()));
    let block = crate::h2raw::block_owned(&fields);
    h2.frame(crate::h2raw::HEADERS, crate::h2raw::END_HEADERS, 1, &block)
        .await;
    h2.frame(crate::h2raw::DATA, 0, 1, b"0123456789").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    h2.frame(
        crate::h2raw::RST_STREAM,
        0,
        1,
        &crate::h2raw::CANCEL.to_be_bytes(),
    )
    .await;
    let aborted = gw
        .wait_for_records(2, |r| {
            r["reason"] == "client_aborted" || r["failed"] == "client_aborted"
        })
        .await;
    assert_eq!(aborted.len(), 2, "{aborted:?}");
    let kinds: Vec<&str> = aborted.iter().filter_map(|r| r["kind"].as_str()).collect();
    assert!(
        kinds.contains(&"reject") && kinds.contains(&"request"),
        "{aborted:?}"
    );
    for r in &aborted {
        assert_eq!(r["status"], 0, "{r}");
        // Refused before forwarding: a `reject` record saying so; after (the body streams to
        // the upstream): the request's record, its failure `client_aborted`.
        let said = match r["kind"].as_str() {
            Some("reject") => {
                let detail = r["detail"].as_str().expect("detail");
                assert!(detail.contains("after 11 request body bytes"), "{detail}");
                detail.to_owned()
            }
            _ => {
                assert_eq!(r["bytes_in"], 10, "{r}");
                r["reason"].as_str().expect("reason").to_owned()
            }
        };
        assert!(!said.contains("https://"), "{said}");
    }
    assert!(
        !gw.audit_records().iter().any(|r| r["status"] == 400),
        "a client that went away was recorded as a 400"
    );
    let log = gw.log();
    assert!(!log.contains("WARN") && !log.contains("https://"), "{log}");
}
