//! The request as the upstream gets it: hop-by-hop headers, client-supplied forwarding headers
//! and every client credential removed; moat's own forwarding headers, request id, identity
//! headers and the upstream's own credential added; framing restated. One set of fields for
//! both upstream protocols.

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName};

use super::Outgoing;
use crate::config::Credential;
use crate::protocol::h1;
use crate::protocol::io::put_header;
use crate::protocol::BodyKind;

/// The request head sent to an HTTP/1.1 upstream: hop-by-hop headers, client-supplied
/// forwarding headers and every client credential removed; moat's own forwarding headers,
/// request id, identity headers and the upstream's own credential added; framing restated.
pub(super) fn h1_head(o: &Outgoing<'_>, credential: Option<&Credential>) -> Bytes {
    let req = o.head;
    let mut out = BytesMut::with_capacity(512 + req.target.len() + req.headers.len() * 32);
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(&req.target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    fields(o, credential, |n, v| put_header(&mut out, n, v));
    match req.body {
        BodyKind::Empty | BodyKind::CloseDelimited => {}
        BodyKind::Length(n) => put_header(&mut out, b"content-length", n.to_string().as_bytes()),
        BodyKind::Chunked => put_header(&mut out, b"transfer-encoding", b"chunked"),
    }
    out.extend_from_slice(b"\r\n");
    out.freeze()
}

/// The same request for an `h2c` upstream: the same fields (the host as `:authority`),
/// `te: trailers` kept when the client sent it (gRPC needs it), the length restated when known.
pub(super) fn h2_request(
    o: &Outgoing<'_>,
    credential: Option<&Credential>,
) -> Result<http::Request<()>, &'static str> {
    let req = o.head;
    let host = std::str::from_utf8(&req.host).map_err(|_| "host is not ASCII")?;
    let target = std::str::from_utf8(&req.target).map_err(|_| "target is not ASCII")?;
    let uri: http::Uri = format!("http://{host}{target}")
        .parse()
        .map_err(|_| "host and target do not make a URI")?;
    let mut r = http::Request::new(());
    *r.method_mut() = req.method.clone();
    *r.uri_mut() = uri;
    let h = r.headers_mut();
    fields(o, credential, |n, v| {
        if n == b"host" {
            return;
        }
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n), http::HeaderValue::from_bytes(v)) {
            h.append(n, v);
        }
    });
    let trailers = req.headers.get_all(header::TE).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
    });
    if trailers {
        h.insert(header::TE, http::HeaderValue::from_static("trailers"));
    }
    if let BodyKind::Length(n) = req.body {
        h.insert(header::CONTENT_LENGTH, n.into());
    }
    Ok(r)
}

/// Every field moat sends upstream, whatever the protocol, except the framing.
fn fields(o: &Outgoing<'_>, credential: Option<&Credential>, mut put: impl FnMut(&[u8], &[u8])) {
    let req = o.head;
    for (name, value) in &req.headers {
        if h1::is_hop_by_hop(name, &req.headers) || is_replaced_upstream(name) {
            continue;
        }
        if credential.is_some_and(|c| c.header == name.as_str()) {
            continue;
        }
        put(name.as_str().as_bytes(), value.as_bytes());
    }
    let ip = o.client.0.ip();
    put(b"x-request-id", o.request_id.as_bytes());
    put(b"x-forwarded-for", ip.to_string().as_bytes());
    put(b"x-forwarded-proto", b"https");
    let for_ = match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    let host = String::from_utf8_lossy(&req.host);
    put(
        b"forwarded",
        format!("for={for_};proto=https;host=\"{host}\"").as_bytes(),
    );
    if let Some(p) = o.identity {
        // Ids and groups are configuration- or IdP-controlled; drop any that could not be a
        // header value rather than forward something malformed.
        for (name, value) in [
            ("x-moat-principal", p.id.clone()),
            ("x-moat-principal-kind", p.kind.as_str().to_owned()),
            ("x-moat-groups", p.groups.join(",")),
        ] {
            if http::HeaderValue::from_str(&value).is_ok() && !value.is_empty() {
                put(name.as_bytes(), value.as_bytes());
            }
        }
    }
    if let Some(c) = credential {
        put(c.header.as_bytes(), c.value.as_bytes());
    }
}

/// Headers moat sets itself toward the upstream, or that carry the caller's credentials: the
/// client's values are dropped (identity is forwarded only as moat's own `x-moat-*` headers).
fn is_replaced_upstream(name: &HeaderName) -> bool {
    name == header::CONTENT_LENGTH
        || name == header::EXPECT
        || name == header::FORWARDED
        || name == header::AUTHORIZATION
        || name == header::COOKIE
        || name.as_str().starts_with("x-moat-")
        || matches!(
            name.as_str(),
            "x-forwarded-for"
                | "x-forwarded-proto"
                | "x-forwarded-host"
                | "x-request-id"
                | "x-api-key"
        )
}
