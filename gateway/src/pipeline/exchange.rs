//! The exchange with the upstream and response inspection: the request goes out through the
//! one upstream client, the response comes back redacted as the deciding rule's profile says,
//! streamed or read whole.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::header;
use tokio::time::Instant;

use super::response::{read_and_redact, response_redaction, stream_note, ResponseRedaction};
use super::stages::Authorized;
use crate::downstream::Downstream;
use crate::error::{Failure, Reject};
use crate::protocol::{BodyKind, ResponseHead};
use crate::redact::stream::StreamRedactor;
use crate::redact::Profile;
use crate::route::Route;
use crate::telemetry::millis;
use crate::upstream::{Outgoing, UpBody, UpFrame};

/// How the response ends once its audit record exists.
pub(super) enum Ending {
    /// It completes (with the upstream's trailers, if any).
    Finish(Option<http::HeaderMap>),
    /// Nothing was sent yet: the client gets this refusal.
    Reject(Reject),
    /// It cannot complete: the connection closes or the stream is reset.
    Abort,
}

/// What the exchange reports for the audit record and the log.
#[derive(Default)]
pub(super) struct Exchange {
    /// Status sent to the client (0: none).
    pub status: u16,
    /// Request sent to response head, ms.
    pub upstream_ms: Option<f64>,
    /// Response body bytes received from the upstream (or sent, when read whole).
    pub bytes_out: u64,
    /// Values redacted in the response, by entity.
    pub response_redactions: BTreeMap<&'static str, u64>,
    /// What failed, or the note of a response redaction that failed open.
    pub error: Option<Failure>,
}

impl Exchange {
    /// Forwards the request, inspects the response and sends it, all but its end.
    pub(super) async fn run<D: Downstream>(
        &mut self,
        d: &mut D,
        route: &Route,
        auth: &Authorized,
        o: Outgoing<'_>,
    ) -> Ending {
        let idle = route.http.body_idle_timeout;
        let request_id = o.request_id;
        let sent_at = Instant::now();
        let (mut resp, up) = match auth.upstream.forward(o, d).await {
            Ok(r) => r,
            Err(f) => return self.failed(f),
        };
        self.status = resp.status.as_u16();
        self.upstream_ms = Some(millis(sent_at));
        let ratio = route.http.max_decompression_ratio;
        match response_redaction(auth.profile.as_ref(), &mut resp, ratio) {
            ResponseRedaction::Buffered(p) => {
                self.buffered(d, up, resp, &p, auth, request_id, route)
                    .await
            }
            ResponseRedaction::Stream(r) => {
                self.relay(d, up, resp, Some(r), auth, request_id, idle)
                    .await
            }
            ResponseRedaction::None => self.relay(d, up, resp, None, auth, request_id, idle).await,
        }
    }

    fn failed(&mut self, f: Failure) -> Ending {
        let ending = match f.reject() {
            Some(r) => {
                self.status = r.status.as_u16();
                Ending::Reject(r)
            }
            None => Ending::Abort,
        };
        self.error = Some(f);
        ending
    }

    /// Streams the response body, redacted as it streams when `redactor` is set. Pieces that
    /// arrived together leave together; whatever is ready goes to the client before the
    /// upstream is waited on (this is what makes each event leave as soon as it arrives).
    #[expect(clippy::too_many_arguments, reason = "the exchange's own state")]
    async fn relay<D: Downstream>(
        &mut self,
        d: &mut D,
        mut up: UpBody,
        mut resp: ResponseHead,
        mut redactor: Option<Box<dyn StreamRedactor>>,
        auth: &Authorized,
        request_id: &str,
        idle: std::time::Duration,
    ) -> Ending {
        if redactor.is_some() && resp.body != BodyKind::Empty {
            // The redacted body's length differs from the upstream's.
            resp.body = BodyKind::Chunked;
            resp.headers.remove(header::CONTENT_LENGTH);
        }
        if let Err(e) = d.send_head(resp, request_id).await {
            self.error = Some(e.into());
            return Ending::Abort;
        }
        let mut trailers = None;
        let relayed: Result<(), Failure> = loop {
            let frame = match up.ready() {
                Ok(Some(f)) => Some(f),
                Ok(None) if up.is_done() => None,
                Ok(None) => {
                    if let Err(e) = d.flush().await {
                        break Err(e.into());
                    }
                    match up.next(idle).await {
                        Ok(f) => f,
                        Err(e) => break Err(e.into()),
                    }
                }
                Err(e) => break Err(e.into()),
            };
            match frame {
                None => break Ok(()),
                Some(UpFrame::Data(data)) => {
                    let data = match &mut redactor {
                        Some(r) => Bytes::from(r.push(&data)),
                        None => data,
                    };
                    if !data.is_empty() {
                        if let Err(e) = d.send_data(data).await {
                            break Err(e.into());
                        }
                    }
                    if redactor.as_ref().is_some_and(|r| r.failure().is_some()) {
                        // The error event ends the stream; nothing more is read or sent.
                        break Ok(());
                    }
                }
                // Trailers end the body; with a redactor they wait until its held text is out.
                Some(UpFrame::Trailers(t)) => trailers = Some(t),
            }
        };
        self.bytes_out = up.total();
        if let Err(f) = relayed {
            self.error = Some(f);
            return Ending::Abort;
        }
        if let Some(r) = &mut redactor {
            let rest = r.finish();
            self.response_redactions = r.counts().clone();
            self.error = stream_note(r.as_ref());
            if !rest.is_empty() {
                if let Err(e) = d.send_data(Bytes::from(rest)).await {
                    self.error = Some(e.into());
                    return Ending::Abort;
                }
            }
        }
        up.done(&auth.upstream);
        Ending::Finish(trailers.filter(|t| !t.is_empty()))
    }

    /// Reads a response whole (bounded), redacts it, and sends it with its new length. One
    /// that cannot be redacted under a fail-closed profile becomes a 502.
    #[expect(clippy::too_many_arguments, reason = "the exchange's own state")]
    async fn buffered<D: Downstream>(
        &mut self,
        d: &mut D,
        up: UpBody,
        mut resp: ResponseHead,
        p: &Profile,
        auth: &Authorized,
        request_id: &str,
        route: &Route,
    ) -> Ending {
        let (idle, ratio) = (
            route.http.body_idle_timeout,
            route.http.max_decompression_ratio,
        );
        let redacted = match read_and_redact(up, &auth.upstream, &mut resp, p, idle, ratio).await {
            Ok(r) => r,
            Err(f) => return self.failed(f),
        };
        self.error = redacted.note.map(Failure::Redaction);
        self.response_redactions = redacted.counts;
        let body = redacted.body;
        self.bytes_out = body.len() as u64;
        resp.headers.remove(header::TRANSFER_ENCODING);
        resp.headers
            .insert(header::CONTENT_LENGTH, http::HeaderValue::from(body.len()));
        resp.body = BodyKind::Length(body.len() as u64);
        let sent = match d.send_head(resp, request_id).await {
            Ok(()) if body.is_empty() => Ok(()),
            Ok(()) => d.send_data(body).await,
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => Ending::Finish(None),
            Err(e) => {
                self.error = Some(e.into());
                Ending::Abort
            }
        }
    }
}
