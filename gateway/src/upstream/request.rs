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
        if let (Ok(n), Ok(mut v)) = (HeaderName::from_bytes(n), http::HeaderValue::from_bytes(v)) {
            // Unique to the request: not worth a place in the connection's HPACK table.
            v.set_sensitive(n == "x-request-id");
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
    let hop_by_hop = h1::hop_by_hop(&req.headers);
    let dropped = |name: &HeaderName| {
        hop_by_hop(name)
            || is_replaced_upstream(name)
            || credential.is_some_and(|c| c.header == name.as_str())
    };
    for (name, value) in &req.headers {
        if dropped(name) {
            continue;
        }
        if name.as_str().contains('_') {
            // Read with `_` as `-` (CGI, WSGI), the name must not become one moat drops or
            // sets: `X_Moat_Principal`, `transfer_encoding`.
            let folded = HeaderName::from_bytes(name.as_str().replace('_', "-").as_bytes());
            if !o.underscores || folded.as_ref().is_ok_and(dropped) {
                continue;
            }
        }
        put(name.as_str().as_bytes(), value.as_bytes());
    }
    put(b"x-request-id", o.request_id.as_bytes());
    put(b"x-forwarded-for", o.client.ip.as_bytes());
    put(b"x-forwarded-proto", b"https");
    let mut forwarded = Vec::with_capacity(40 + o.client.forwarded_for.len() + req.host.len());
    forwarded.extend_from_slice(b"for=");
    forwarded.extend_from_slice(o.client.forwarded_for.as_bytes());
    forwarded.extend_from_slice(b";proto=https;host=\"");
    forwarded.extend_from_slice(String::from_utf8_lossy(&req.host).as_bytes());
    forwarded.push(b'"');
    put(b"forwarded", &forwarded);
    if let Some(p) = o.identity {
        // Ids and groups are configuration- or IdP-controlled; drop any that could not be a
        // header value rather than forward something malformed.
        let groups = match &*p.groups {
            [] => std::borrow::Cow::Borrowed(""),
            [one] => std::borrow::Cow::Borrowed(one.as_str()),
            many => std::borrow::Cow::Owned(many.join(",")),
        };
        for (name, value) in [
            ("x-moat-principal", p.id.as_str()),
            ("x-moat-principal-kind", p.kind.as_str()),
            ("x-moat-groups", &groups),
        ] {
            if !value.is_empty() && is_header_value(value.as_bytes()) {
                put(name.as_bytes(), value.as_bytes());
            }
        }
    }
    if let Some(c) = credential {
        put(c.header.as_bytes(), c.value.as_bytes());
    }
}

/// Whether `v` may be sent as a header value as it is: visible ASCII, spaces and tabs, and
/// (as `http::HeaderValue` allows) obs-text; no control characters.
fn is_header_value(v: &[u8]) -> bool {
    v.iter().all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t')
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::identity::{Principal, PrincipalKind};
    use crate::protocol::{ClientAddr, ClientText, RequestHead, Version};

    fn head(host: &str) -> RequestHead {
        let mut headers = http::HeaderMap::new();
        headers.insert("host", host.parse().expect("host"));
        headers.insert("x-forwarded-for", "6.6.6.6".parse().expect("value"));
        headers.insert("x-moat-principal", "mallory".parse().expect("value"));
        RequestHead {
            method: http::Method::GET,
            target: Bytes::from_static(b"/v1/models?x=1"),
            version: Version::Http11,
            headers,
            host: Bytes::copy_from_slice(host.as_bytes()),
            body: BodyKind::Empty,
            keep_alive: true,
            expect_continue: false,
        }
    }

    fn sent(client: &str, identity: Option<&Principal>) -> String {
        sent_with(&head("model.example:8443"), client, identity, false)
    }

    fn sent_with(
        req: &RequestHead,
        client: &str,
        identity: Option<&Principal>,
        underscores: bool,
    ) -> String {
        let text = ClientText::of(ClientAddr(client.parse().expect("client")));
        let o = Outgoing {
            head: req,
            request_id: "0123abcd",
            client: &text,
            identity,
            first: Bytes::new(),
            streaming: false,
            idle: Duration::from_secs(1),
            underscores,
        };
        let credential = Credential {
            header: "x-upstream-key".into(),
            value: "s3cret".into(),
        };
        String::from_utf8(h1_head(&o, Some(&credential)).to_vec()).expect("ascii head")
    }

    /// Names with `_` are dropped unless allowed; allowed, a name that an upstream folding `_`
    /// into `-` would read as a field moat sets or removes is dropped all the same.
    #[test]
    fn header_names_with_underscores_cannot_spoof_what_moat_sets() {
        let mut req = head("model.example");
        for (name, value) in [
            ("x_moat_principal", "admin"),
            ("X_Moat_Groups", "root"),
            ("transfer_encoding", "chunked"),
            ("content_length", "5"),
            ("x_forwarded_for", "6.6.6.6"),
            ("x_upstream_key", "forged"),
            ("proxy_authorization", "Basic x"),
            ("x_custom_flag", "1"),
        ] {
            let n = HeaderName::from_bytes(name.as_bytes()).expect("name");
            req.headers.insert(n, value.parse().expect("value"));
        }
        let spoofed = [
            "admin",
            "root",
            "chunked",
            "content_length",
            "6.6.6.6",
            "forged",
            "Basic",
        ];
        for underscores in [false, true] {
            let h = sent_with(&req, "192.0.2.7:1", None, underscores);
            for s in spoofed {
                assert!(
                    !h.contains(s),
                    "underscores {underscores}: {s} forwarded: {h}"
                );
            }
            assert!(h.contains("x-upstream-key: s3cret\r\n"), "{h}");
            assert_eq!(h.contains("x_custom_flag: 1\r\n"), underscores, "{h}");
        }
    }

    #[test]
    fn forwarding_headers_name_the_client_not_what_it_claimed() {
        let h = sent("192.0.2.7:50123", None);
        assert!(h.starts_with("GET /v1/models?x=1 HTTP/1.1\r\n"), "{h}");
        assert!(h.contains("x-forwarded-for: 192.0.2.7\r\n"), "{h}");
        assert!(!h.contains("6.6.6.6"), "{h}");
        assert!(!h.contains("mallory"), "{h}");
        assert!(h.contains("x-request-id: 0123abcd\r\n"), "{h}");
        assert!(
            h.contains("forwarded: for=192.0.2.7;proto=https;host=\"model.example:8443\"\r\n"),
            "{h}"
        );
        let h = sent("[2001:db8::7]:50123", None);
        assert!(h.contains("x-forwarded-for: 2001:db8::7\r\n"), "{h}");
        assert!(
            h.contains("forwarded: for=\"[2001:db8::7]\";proto=https;"),
            "{h}"
        );
    }

    #[test]
    fn identity_headers_carry_the_principal_and_drop_what_cannot_be_a_value() {
        let mut p = Principal {
            kind: PrincipalKind::Jwt,
            id: "carol".into(),
            groups: ["ml".to_owned(), "ops".to_owned()].into(),
            regions: [].into(),
            cert_sha256: None,
            attributes: Default::default(),
        };
        let h = sent("192.0.2.7:1", Some(&p));
        assert!(h.contains("x-moat-principal: carol\r\n"), "{h}");
        assert!(h.contains("x-moat-principal-kind: jwt\r\n"), "{h}");
        assert!(h.contains("x-moat-groups: ml,ops\r\n"), "{h}");
        p.groups = ["solo".to_owned()].into();
        assert!(sent("192.0.2.7:1", Some(&p)).contains("x-moat-groups: solo\r\n"));
        p.groups = [].into();
        p.id = "bad\r\nx-injected: 1".into();
        let h = sent("192.0.2.7:1", Some(&p));
        assert!(!h.contains("x-moat-principal:"), "{h}");
        assert!(!h.contains("x-injected"), "{h}");
        assert!(!h.contains("x-moat-groups"), "{h}");
        assert!(h.contains("x-moat-principal-kind: jwt\r\n"), "{h}");
    }
}
